//! Charts from Helm chart repositories (a Flux HelmRepository over HTTP(S)): the repository's
//! `index.yaml`, read once per run, and chart archives, downloaded once and kept under the
//! plugin's cache by their digest (checked against the index's). A chart archive holds no
//! value of the user's: the values go to `helm` on stdin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;

use super::oci::{Layer, OciRepo};
use crate::git::RepoPath;

/// The largest index and archive read: source-controller's defaults (`--helm-index-max-size`,
/// `--helm-chart-max-size`), so a chart Flux refuses is not rendered here.
const MAX_INDEX: u64 = 50 << 20;
const MAX_ARCHIVE: u64 = 10 << 20;

/// Basic-auth credentials for a chart repository; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they come from, for messages: `Secret ns/name`, `your Helm config (PATH)`.
    pub from: String,
    /// `spec.passCredentials`: sent to every host the index names, not only the repository's.
    pub pass_to_any_host: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(not shown)")
    }
}

/// A repository's `index.yaml`, as far as it is read.
#[derive(Debug, Default, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub entries: HashMap<String, Vec<Entry>>,
}

/// One chart version of an index.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub urls: Vec<String>,
    /// `sha256` of the archive, hex.
    #[serde(default)]
    pub digest: String,
}

impl Index {
    /// The entry `constraint` picks for `chart`, as source-controller picks it.
    pub fn pick(&self, chart: &str, constraint: &str) -> Result<&Entry, String> {
        let entries = self
            .entries
            .get(chart)
            .ok_or_else(|| format!("its index has no chart named {chart}"))?;
        let versions: Vec<&str> = entries.iter().map(|e| e.version.as_str()).collect();
        let picked = super::chart_version::pick(constraint, &versions)
            .map_err(|e| format!("version {constraint:?}: {e}"))?
            .ok_or_else(|| no_match(chart, constraint, &versions))?;
        Ok(entries
            .iter()
            .find(|e| e.version == picked)
            .expect("picked from these entries"))
    }
}

type IndexSlot = Arc<OnceLock<Result<Arc<Index>, String>>>;
type TagsSlot = Arc<OnceLock<Result<Arc<Vec<String>>, String>>>;
type LayerSlot = Arc<OnceLock<Result<super::oci::Layer, String>>>;

/// What kind of chart repository a URL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKind {
    /// `index.yaml` and archives over HTTP(S).
    Index,
    /// An OCI registry (`oci://`).
    Oci(OciRepo),
}

/// Which version of a chart is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A version constraint (`0.1.x`, `1.2.3`, `*`), as a HelmRepository's chart names one.
    Constraint(String),
    /// An OCI tag as written (an OCIRepository's `ref.tag`: `latest`, `0.1.0`).
    Tag(String),
    /// An OCI manifest digest (`sha256:..`: an OCIRepository's `ref.digest`).
    Digest(String),
}

/// A chart of a chart repository with a version constraint: what `watch` polls to see the
/// repository offer another version for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartPoll {
    pub url: String,
    pub kind: RepoKind,
    pub chart: String,
    pub constraint: String,
    /// Sent with each poll; never shown.
    pub credentials: Option<Credentials>,
}

impl ChartPoll {
    /// What a poll of `constraint` over `url` is, when one can pick another version: a range
    /// can, an exact version cannot.
    pub fn of(
        url: &str,
        kind: &RepoKind,
        (chart, wanted): (&str, &Wanted),
        credentials: Option<&Credentials>,
    ) -> Option<ChartPoll> {
        match wanted {
            Wanted::Constraint(c) if !super::chart_version::is_strict(c) => Some(ChartPoll {
                url: url.to_owned(),
                kind: kind.clone(),
                chart: chart.to_owned(),
                constraint: c.clone(),
                credentials: credentials.cloned(),
            }),
            _ => None,
        }
    }
}

/// A chart version picked in a repository, and where its archive is.
#[derive(Debug, Clone)]
pub struct Picked {
    pub version: String,
    /// `sha256` of the archive, hex (empty when an index gives none).
    pub digest: String,
    from: PickedFrom,
    /// Rendered with this version in its Chart.yaml, not the archive's own.
    render_as: Option<String>,
}

#[derive(Debug, Clone)]
enum PickedFrom {
    Entry(Entry),
    /// The registry, the chart, the tag or digest it was read at, its layer.
    Layer(OciRepo, String, String, Layer),
}

impl Picked {
    /// The chart as helm-controller installs it from an OCIRepository: the first 12 hex
    /// digits of the manifest's digest as the version's build metadata (`0.1.0+c22fced2ace5`),
    /// so a tag pushed again is a new version. The same `Picked` for an index's chart.
    pub fn tracking_digest(mut self) -> Picked {
        if let PickedFrom::Layer(_, _, _, layer) = &self.from {
            let version = with_build(&self.version, &layer.manifest[..12]);
            self.render_as = Some(version.clone());
            self.version = version;
        }
        self
    }
}

impl Picked {
    /// The chart rendered as `version` in its Chart.yaml (unpacked to be rendered): as
    /// source-controller packages a chart again with its values files merged in.
    pub fn rendered_as(mut self, version: String) -> Picked {
        self.render_as = Some(version.clone());
        self.version = version;
        self
    }
}

/// `version` as semver's `SetMetadata` then `String` make it: `build` in place of any build
/// metadata, a leading `v` dropped and a missing minor or patch made `0` (`v1.2` with `abc`:
/// `1.2.0+abc`).
pub fn with_build(version: &str, build: &str) -> String {
    let core = version.split_once('+').map_or(version, |(core, _)| core);
    let core = core.strip_prefix(['v', 'V']).unwrap_or(core);
    let (numbers, pre) = match core.split_once('-') {
        Some((n, pre)) => (n, Some(pre)),
        None => (core, None),
    };
    let mut parts: Vec<&str> = numbers.split('.').collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut out = parts.join(".");
    if let Some(pre) = pre {
        out.push('-');
        out.push_str(pre);
    }
    format!("{out}+{build}")
}

/// Indexes read in this run, and where archives are kept between runs.
#[derive(Debug, Default)]
pub struct ChartRepos {
    /// `<cache>/charts`; None: archives are downloaded for each run.
    dir: Option<PathBuf>,
    /// The user's Helm repositories file (`helm repo add`), asked for credentials when a
    /// HelmRepository's secretRef may not be read.
    helm_config: Option<PathBuf>,
    /// The user's registry credentials files (`helm registry login`, `docker login`), asked
    /// in order for an OCI registry's.
    registry_configs: Vec<PathBuf>,
    indexes: Mutex<HashMap<String, IndexSlot>>,
    /// OCI charts' tags listed in this run.
    tags: Mutex<HashMap<String, TagsSlot>>,
    /// OCI charts' manifests read in this run, by tag or digest: each object of a chart
    /// picks its dependencies again.
    layers: Mutex<HashMap<String, LayerSlot>>,
    oci: super::oci::Client,
}

impl ChartRepos {
    pub fn new(
        dir: Option<PathBuf>,
        helm_config: Option<PathBuf>,
        registry_configs: Vec<PathBuf>,
    ) -> ChartRepos {
        ChartRepos {
            dir,
            helm_config,
            registry_configs,
            indexes: Mutex::default(),
            tags: Mutex::default(),
            layers: Mutex::default(),
            oci: Default::default(),
        }
    }

    /// The credentials the user's own config keeps for the repository at `url`, if any; an
    /// unreadable file is as none. For an index, Helm's repositories file (`helm repo add NAME
    /// URL --username U --password P`); for an OCI registry, the first registry config with an
    /// entry for its host (`helm registry login`, `docker login`).
    pub fn user_credentials(&self, url: &str, kind: &RepoKind) -> Option<Credentials> {
        match kind {
            RepoKind::Index => {
                let file = self.helm_config.as_ref()?;
                let text = std::fs::read_to_string(file).ok()?;
                credentials_in(&text, url, &file.display().to_string())
            }
            RepoKind::Oci(repo) => self.registry_configs.iter().find_map(|file| {
                let text = std::fs::read_to_string(file).ok()?;
                super::oci::docker_config_credentials(
                    &text,
                    &repo.registry,
                    &format!("your registry config ({})", file.display()),
                )
            }),
        }
    }

    /// The index of the repository at `url`, read once per run for each set of credentials
    /// (two HelmRepositories may name one URL with different ones).
    pub fn index(&self, url: &str, auth: Option<&Credentials>) -> Result<Arc<Index>, String> {
        let with = auth.map_or("", |a| a.from.as_str());
        let slot = self
            .indexes
            .lock()
            .expect("chart index lock")
            .entry(format!("{url}\0{with}"))
            .or_default()
            .clone();
        slot.get_or_init(|| {
            let index_url = join(url, "index.yaml")?;
            let bytes = get(&index_url, auth, MAX_INDEX)?;
            parse_index(&bytes)
        })
        .clone()
    }

    /// Forgets the indexes and tag lists that could not be read; keeps those that were.
    pub fn forget_failures(&self) {
        self.indexes
            .lock()
            .expect("chart index lock")
            .retain(|_, slot| !matches!(slot.get(), Some(Err(_))));
        self.tags
            .lock()
            .expect("chart tags lock")
            .retain(|_, slot| !matches!(slot.get(), Some(Err(_))));
        self.layers
            .lock()
            .expect("chart layers lock")
            .retain(|_, slot| !matches!(slot.get(), Some(Err(_))));
    }

    /// The chart layer of `chart` in `repo` at `reference`, its manifest read once per run
    /// for each set of credentials.
    fn oci_layer(
        &self,
        repo: &OciRepo,
        chart: &str,
        reference: &str,
        auth: Option<&Credentials>,
    ) -> Result<super::oci::Layer, String> {
        let with = auth.map_or("", |a| a.from.as_str());
        let slot = self
            .layers
            .lock()
            .expect("chart layers lock")
            .entry(format!("{}\0{reference}\0{with}", repo.chart_ref(chart)))
            .or_default()
            .clone();
        slot.get_or_init(|| self.oci.layer(repo, chart, reference, auth))
            .clone()
    }

    /// The version `constraint` picks for `chart` in the repository at `url`, as
    /// source-controller picks it: in an index, the exact string first, then the highest
    /// match; in an OCI registry, an exact version as its tag without listing the tags, else
    /// the highest tag that matches.
    pub fn pick(
        &self,
        url: &str,
        kind: &RepoKind,
        (chart, wanted): (&str, &Wanted),
        auth: Option<&Credentials>,
    ) -> Result<Picked, String> {
        match (kind, wanted) {
            (RepoKind::Index, Wanted::Constraint(constraint)) => {
                let entry = self.index(url, auth)?.pick(chart, constraint)?.clone();
                Ok(Picked {
                    version: entry.version.clone(),
                    digest: entry.digest.to_ascii_lowercase(),
                    from: PickedFrom::Entry(entry),
                    render_as: None,
                })
            }
            (RepoKind::Index, _) => Err(format!(
                "a chart repository index has versions, not tags or digests ({url})"
            )),
            (RepoKind::Oci(repo), wanted) => {
                let reference = match wanted {
                    Wanted::Constraint(c) if super::chart_version::is_strict(c) => {
                        c.replace('+', "_")
                    }
                    Wanted::Constraint(constraint) => {
                        let versions = self.oci_versions(repo, chart, auth)?;
                        let listed: Vec<&str> = versions.iter().map(String::as_str).collect();
                        super::chart_version::pick(constraint, &listed)
                            .map_err(|e| format!("version {constraint:?}: {e}"))?
                            .ok_or_else(|| no_match(chart, constraint, &listed))?
                            .replace('+', "_")
                    }
                    Wanted::Tag(tag) => tag.clone(),
                    Wanted::Digest(digest) => digest.clone(),
                };
                let layer = self.oci_layer(repo, chart, &reference, auth)?;
                let version = match (&layer.version, wanted) {
                    (Some(v), _) => v.clone(),
                    (None, Wanted::Constraint(_)) => reference.replace('_', "+"),
                    (None, _) => {
                        return Err(format!(
                            "{}@{reference} names no chart version (no \
                             org.opencontainers.image.version annotation, no config version)",
                            repo.chart_ref(chart)
                        ));
                    }
                };
                Ok(Picked {
                    version,
                    digest: layer.digest.clone(),
                    from: PickedFrom::Layer(repo.clone(), chart.to_owned(), reference, layer),
                    render_as: None,
                })
            }
        }
    }

    /// What `poll`'s constraint picks, from the index or tags read in this run: the version,
    /// and in an index its digest (an archive published again under the same version).
    pub fn picked(&self, poll: &ChartPoll) -> Result<String, String> {
        let auth = poll.credentials.as_ref();
        match &poll.kind {
            RepoKind::Index => {
                let index = self.index(&poll.url, auth)?;
                let entry = index.pick(&poll.chart, &poll.constraint)?;
                Ok(format!("{} {}", entry.version, entry.digest))
            }
            RepoKind::Oci(repo) => {
                let versions = self.oci_versions(repo, &poll.chart, auth)?;
                let listed: Vec<&str> = versions.iter().map(String::as_str).collect();
                let picked = super::chart_version::pick(&poll.constraint, &listed)
                    .map_err(|e| format!("version {:?}: {e}", poll.constraint))?
                    .ok_or_else(|| no_match(&poll.chart, &poll.constraint, &listed))?;
                Ok(picked.to_owned())
            }
        }
    }

    /// The tags of `chart` in `repo` as versions, listed once per run for each set of
    /// credentials.
    fn oci_versions(
        &self,
        repo: &OciRepo,
        chart: &str,
        auth: Option<&Credentials>,
    ) -> Result<Arc<Vec<String>>, String> {
        let with = auth.map_or("", |a| a.from.as_str());
        let slot = self
            .tags
            .lock()
            .expect("chart tags lock")
            .entry(format!("{}\0{chart}\0{with}", repo.chart_ref("")))
            .or_default()
            .clone();
        slot.get_or_init(|| self.oci.versions(repo, chart, auth).map(Arc::new))
            .clone()
    }

    /// The chart of `picked` on disk, for `helm template`: its archive, or (when it is
    /// rendered as another version) the chart unpacked into `scratch` with that version.
    pub fn fetch(
        &self,
        url: &str,
        picked: &Picked,
        auth: Option<&Credentials>,
        scratch: &Path,
    ) -> Result<PathBuf, String> {
        let archive = self.archive(url, picked, auth, scratch)?;
        match &picked.render_as {
            None => Ok(archive),
            Some(version) => unpack_as(&archive, version, &scratch.join("unpacked")),
        }
    }

    /// The archive of `picked` on disk: from the cache when its digest is there, else
    /// downloaded, checked against the digest and kept. `scratch` holds it when it cannot be
    /// kept (no digest, no cache).
    fn archive(
        &self,
        url: &str,
        picked: &Picked,
        auth: Option<&Credentials>,
        scratch: &Path,
    ) -> Result<PathBuf, String> {
        let digest = &picked.digest;
        let digest_ok = is_sha256_hex(digest);
        let kept = match (&self.dir, digest_ok) {
            (Some(dir), true) => Some(dir.join(format!("sha256-{digest}.tgz"))),
            _ => None,
        };
        if let Some(path) = &kept
            && path.is_file()
        {
            return Ok(path.clone());
        }
        let (bytes, fetched_from) = match &picked.from {
            PickedFrom::Entry(entry) => entry_archive(url, entry, auth)?,
            PickedFrom::Layer(repo, chart, reference, layer) => (
                self.oci.blob(repo, chart, layer, auth, MAX_ARCHIVE)?,
                match reference.starts_with("sha256:") {
                    true => format!("{}@{reference}", repo.chart_ref(chart)),
                    false => format!("{}:{reference}", repo.chart_ref(chart)),
                },
            ),
        };
        if digest_ok {
            let got = sha256_hex(&bytes);
            if got != *digest {
                return Err(format!(
                    "the archive of version {} at {fetched_from} has digest sha256:{got}, its \
                     repository says sha256:{digest}",
                    picked.version
                ));
            }
        }
        let path = match &kept {
            Some(path) => {
                let dir = path.parent().expect("a cache file has a directory");
                let write = || -> std::io::Result<()> {
                    std::fs::create_dir_all(dir)?;
                    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                    std::io::Write::write_all(&mut tmp, &bytes)?;
                    tmp.persist(path).map_err(|e| e.error)?;
                    Ok(())
                };
                match write() {
                    Ok(()) => return Ok(path.clone()),
                    // Not kept: rendered from the scratch copy.
                    Err(_) => scratch.join("chart.tgz"),
                }
            }
            None => scratch.join("chart.tgz"),
        };
        std::fs::write(&path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Whether `digest` is a sha256 in hex: what an archive is known by, kept and checked by.
pub fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The file at `path` inside the chart archive `archive`, under its one top-level directory
/// (the chart's), or None when the archive holds none there; at most as large as an archive.
pub fn archive_file(archive: &Path, path: &RepoPath) -> Result<Option<Vec<u8>>, String> {
    let file =
        std::fs::File::open(archive).map_err(|e| format!("reading {}: {e}", archive.display()))?;
    file_in_archive(file, &archive.display().to_string(), path)
}

/// [`archive_file`] of the chart archive `archive` reads, named `what` in errors.
pub fn file_in_archive(
    archive: impl std::io::Read,
    what: &str,
    path: &RepoPath,
) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    let failed = |e: &dyn std::fmt::Display| format!("reading {what}: {e}");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().map_err(|e| failed(&e))? {
        let entry = entry.map_err(|e| failed(&e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| failed(&e))?.into_owned();
        let mut parts = name.components().map(|c| c.as_os_str().to_string_lossy());
        parts.next();
        let inside: Vec<_> = parts.collect();
        if inside.join("/") != path.as_str() {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_ARCHIVE)
            .read_to_end(&mut bytes)
            .map_err(|e| failed(&e))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

/// The chart archive `archive` unpacked under `into` (regular files and directories only, none
/// outside it), its Chart.yaml saying `version`: the chart's directory.
fn unpack_as(archive: &Path, version: &str, into: &Path) -> Result<PathBuf, String> {
    let failed = |e: &dyn std::fmt::Display| format!("unpacking {}: {e}", archive.display());
    let file = std::fs::File::open(archive).map_err(|e| failed(&e))?;
    std::fs::create_dir_all(into).map_err(|e| failed(&e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut top: Option<PathBuf> = None;
    for entry in tar.entries().map_err(|e| failed(&e))? {
        let mut entry = entry.map_err(|e| failed(&e))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(|e| failed(&e))?.into_owned();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if !(kind.is_file() || kind.is_dir()) {
            return Err(failed(&format!(
                "{} is neither a file nor a directory; a chart holds only those",
                path.display()
            )));
        }
        let first = path
            .components()
            .next()
            .map(|c| PathBuf::from(c.as_os_str()));
        if top.is_none() {
            top = first.clone();
        }
        if first != top {
            return Err(failed(&"a chart archive has one top-level directory"));
        }
        if !entry.unpack_in(into).map_err(|e| failed(&e))? {
            return Err(failed(&format!(
                "{} is outside the archive's directory",
                path.display()
            )));
        }
    }
    let chart = into.join(top.ok_or_else(|| failed(&"the archive is empty"))?);
    set_chart_version(&chart.join("Chart.yaml"), |_| version.to_owned()).map_err(|e| failed(&e))?;
    Ok(chart)
}

/// Rewrites the `version:` of the Chart.yaml at `chart_yaml` to what `version` makes of it
/// (given it unquoted, without a comment), as source-controller does when it packages a
/// chart with another version.
pub(super) fn set_chart_version(
    chart_yaml: &Path,
    version: impl FnOnce(&str) -> String,
) -> Result<(), String> {
    let text = std::fs::read_to_string(chart_yaml).map_err(|e| e.to_string())?;
    let mut version = Some(version);
    let mut lines = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("version:")
            && let Some(version) = version.take()
        {
            let value = value.split(" #").next().unwrap_or(value).trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            lines.push(format!("version: {}", version(value)));
        } else {
            lines.push(line.to_owned());
        }
    }
    if version.is_some() {
        return Err("its Chart.yaml has no version".into());
    }
    std::fs::write(chart_yaml, lines.join("\n") + "\n").map_err(|e| e.to_string())
}

/// The archive an index entry names, downloaded, and its URL.
fn entry_archive(
    repo_url: &str,
    entry: &Entry,
    auth: Option<&Credentials>,
) -> Result<(Vec<u8>, String), String> {
    let url = entry
        .urls
        .first()
        .ok_or_else(|| format!("its index names no URL for version {}", entry.version))?;
    let url = join(repo_url, url)?;
    // Credentials go only to the repository's own scheme, host and port, as Helm sends
    // them, unless passCredentials says otherwise.
    let same_host = host(&url) == host(repo_url);
    let sent = auth.filter(|a| same_host || a.pass_to_any_host);
    let bytes = get(&url, sent, MAX_ARCHIVE).map_err(|e| match (auth, sent) {
        (Some(a), None) => format!(
            "{e} (the credentials from {} were not sent: {url} is not on the repository's \
             host; spec.passCredentials sends them anyway)",
            a.from
        ),
        _ => e,
    })?;
    Ok((bytes, url))
}

/// No version of `chart` matches: the newest ones, to pick from.
fn no_match(chart: &str, constraint: &str, versions: &[&str]) -> String {
    let mut known = versions.to_vec();
    known.sort_by_key(|v| std::cmp::Reverse(super::chart_version::Version::parse(v)));
    known.truncate(5);
    format!(
        "no version of chart {chart} matches {constraint:?} (newest: {})",
        known.join(", ")
    )
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `relative` against the repository's URL (a directory), or itself when absolute.
fn join(base: &str, relative: &str) -> Result<String, String> {
    if relative.contains("://") {
        return Ok(relative.to_owned());
    }
    let base = format!("{}/", base.trim_end_matches('/'));
    let base =
        reqwest::Url::parse(&base).map_err(|e| format!("its URL {base} is not valid: {e}"))?;
    base.join(relative)
        .map(String::from)
        .map_err(|e| format!("{relative} is not a URL under {base}: {e}"))
}

/// An index, parsed with room for the largest one read (the default budget of the YAML
/// parser is sized for manifests: a public repository's index has far more nodes).
fn parse_index(bytes: &[u8]) -> Result<Arc<Index>, String> {
    let mut budget = serde_saphyr::Budget::default();
    let limit = MAX_INDEX as usize;
    budget.max_total_scalar_bytes = limit;
    budget.max_events = limit / 2;
    budget.max_nodes = limit / 2;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let index: Index = serde_saphyr::from_slice_with_options(bytes, options).map_err(|e| {
        format!(
            "its index.yaml does not parse: {}",
            crate::text::single_line(&e.to_string())
        )
    })?;
    Ok(Arc::new(index))
}

/// Scheme, host and port: where credentials may go.
fn host(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().map(|u| {
        format!(
            "{}://{}:{:?}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port_or_known_default()
        )
    })
}

/// GET `url` into memory (at most `limit` bytes); anything but a success is an error.
fn get(url: &str, auth: Option<&Credentials>, limit: u64) -> Result<Vec<u8>, String> {
    let reply = super::http::get(
        url,
        auth.map_or(super::http::Auth::None, super::http::Auth::Basic),
        None,
        limit,
    )?;
    if (200..300).contains(&reply.status) {
        return Ok(reply.bytes);
    }
    Err(refusal(url, reply.status, auth))
}

/// What an answer other than success means, in one line.
pub(super) fn refusal(url: &str, status: u16, auth: Option<&Credentials>) -> String {
    let why = match status {
        401 | 403 => match auth {
            Some(a) => format!(": the credentials from {} are refused", a.from),
            None => ": it asks for credentials".to_owned(),
        },
        404 => ": not found".to_owned(),
        _ => String::new(),
    };
    let status = reqwest::StatusCode::from_u16(status)
        .map_or_else(|_| status.to_string(), |s| s.to_string());
    format!("{url} answered {status}{why}")
}

/// The entry for `url` in the text of a Helm repositories file, with a username.
fn credentials_in(text: &str, url: &str, file: &str) -> Option<Credentials> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        repositories: Vec<Repository>,
    }
    #[derive(Deserialize)]
    struct Repository {
        #[serde(default)]
        url: String,
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    }
    let parsed: File = serde_saphyr::from_str(text).ok()?;
    let wanted = url.trim_end_matches('/');
    parsed
        .repositories
        .into_iter()
        .find(|r| r.url.trim_end_matches('/') == wanted && !r.username.is_empty())
        .map(|r| Credentials {
            username: r.username,
            password: r.password,
            from: format!("your Helm config ({file})"),
            pass_to_any_host: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.tgz` of `entries` (path, kind, contents), names written as given.
    fn archive(dir: &Path, entries: &[(&str, tar::EntryType, &str)]) -> PathBuf {
        let path = dir.join("chart.tgz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, kind, text) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            if kind.is_symlink() {
                header.set_link_name(text).unwrap();
                header.set_size(0);
            }
            header.set_cksum();
            let data: &[u8] = if kind.is_symlink() {
                b""
            } else {
                text.as_bytes()
            };
            tar.append(&header, data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn a_version_gets_build_metadata_as_semver_writes_it() {
        assert_eq!(
            with_build("0.1.0", "e87e77fafdf6.1"),
            "0.1.0+e87e77fafdf6.1"
        );
        assert_eq!(with_build("0.1.0+old", "abc"), "0.1.0+abc");
        assert_eq!(with_build("v1.2", "abc"), "1.2.0+abc");
        assert_eq!(with_build("1.0.0-rc.1", "3"), "1.0.0-rc.1+3");
    }

    #[test]
    fn a_chart_rendered_as_another_version_says_it_in_its_chart_yaml() {
        assert_eq!(with_build("0.1.0", "c22fced2ace5"), "0.1.0+c22fced2ace5");
        assert_eq!(
            with_build("0.1.0+old", "c22fced2ace5"),
            "0.1.0+c22fced2ace5"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = tar::EntryType::Regular;
        let tgz = archive(
            dir.path(),
            &[
                (
                    "web/Chart.yaml",
                    file,
                    "apiVersion: v2\nname: web\nversion: 0.1.0\n",
                ),
                ("web/templates/cm.yaml", file, "kind: ConfigMap\n"),
            ],
        );
        let chart = unpack_as(&tgz, "0.1.0+c22fced2ace5", &dir.path().join("out")).unwrap();
        assert_eq!(chart, dir.path().join("out/web"));
        assert_eq!(
            std::fs::read_to_string(chart.join("Chart.yaml")).unwrap(),
            "apiVersion: v2\nname: web\nversion: 0.1.0+c22fced2ace5\n"
        );
        assert_eq!(
            std::fs::read_to_string(chart.join("templates/cm.yaml")).unwrap(),
            "kind: ConfigMap\n"
        );
    }

    #[test]
    fn a_file_inside_an_archive_is_read_under_its_chart_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = tar::EntryType::Regular;
        let tgz = archive(
            dir.path(),
            &[
                ("web/Chart.yaml", file, "version: 0.1.0\n"),
                ("web/values-prod.yaml", file, "greeting: prod\n"),
                ("web/env/staging.yaml", file, "greeting: staging\n"),
                ("web/../outside.yaml", file, "x"),
                ("web/linked.yaml", tar::EntryType::Symlink, "/etc/passwd"),
            ],
        );
        let read = |path: &str| archive_file(&tgz, &RepoPath::parse(path).unwrap()).unwrap();
        assert_eq!(
            read("values-prod.yaml").as_deref(),
            Some(&b"greeting: prod\n"[..])
        );
        assert_eq!(
            read("env/staging.yaml").as_deref(),
            Some(&b"greeting: staging\n"[..])
        );
        // Not the chart's: absent, outside its directory, or not a file.
        for path in [
            "missing.yaml",
            "web/values-prod.yaml",
            "outside.yaml",
            "linked.yaml",
        ] {
            assert_eq!(read(path), None, "{path}");
        }
    }

    #[test]
    fn an_archive_that_reaches_outside_or_links_is_refused() {
        let file = tar::EntryType::Regular;
        for (entries, said) in [
            (
                vec![
                    ("web/Chart.yaml", file, "version: 0.1.0\n"),
                    ("web/../../escaped", file, "x"),
                ],
                "outside",
            ),
            (
                vec![
                    ("web/Chart.yaml", file, "version: 0.1.0\n"),
                    ("web/link", tar::EntryType::Symlink, "/etc/passwd"),
                ],
                "neither a file nor a directory",
            ),
            (
                vec![
                    ("web/Chart.yaml", file, "version: 0.1.0\n"),
                    ("other/x", file, "x"),
                ],
                "one top-level directory",
            ),
            (vec![("web/Chart.yaml", file, "name: web\n")], "no version"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let tgz = archive(dir.path(), &entries);
            let e = unpack_as(&tgz, "1.0.0", &dir.path().join("out/in")).unwrap_err();
            assert!(e.contains(said), "{said}: {e}");
            assert!(!dir.path().join("escaped").exists());
            assert!(!dir.path().join("out/escaped").exists());
        }
    }

    #[test]
    fn urls_in_an_index_are_under_the_repository() {
        assert_eq!(
            join("http://h:1/charts", "web-0.1.0.tgz").unwrap(),
            "http://h:1/charts/web-0.1.0.tgz"
        );
        assert_eq!(
            join("http://h:1/charts/", "web-0.1.0.tgz").unwrap(),
            "http://h:1/charts/web-0.1.0.tgz"
        );
        assert_eq!(
            join("http://h:1/charts", "https://cdn/web.tgz").unwrap(),
            "https://cdn/web.tgz"
        );
        assert_eq!(host("https://a/x"), host("https://a:443/y"));
        assert_ne!(host("https://a/x"), host("https://b/x"));
        // Never in clear text to where they were sent over TLS.
        assert_ne!(host("https://a:8443/x"), host("http://a:8443/x"));
    }

    #[test]
    fn an_index_picks_as_source_controller_does() {
        let index: Index = serde_saphyr::from_str(
            "apiVersion: v1\nentries:\n  web:\n  - version: 0.1.0\n    urls: [web-0.1.0.tgz]\n    digest: aa\n  - version: 0.2.0\n    urls: [web-0.2.0.tgz]\n",
        )
        .unwrap();
        assert_eq!(index.pick("web", "0.1.x").unwrap().version, "0.1.0");
        assert_eq!(index.pick("web", "*").unwrap().version, "0.2.0");
        assert_eq!(
            index.pick("web", "1.x").unwrap_err(),
            "no version of chart web matches \"1.x\" (newest: 0.2.0, 0.1.0)"
        );
        assert_eq!(
            index.pick("api", "*").unwrap_err(),
            "its index has no chart named api"
        );
        assert!(
            !format!(
                "{:?}",
                Credentials {
                    username: "u".into(),
                    password: "hunter2".into(),
                    from: "Secret a/b".into(),
                    pass_to_any_host: false,
                }
            )
            .contains("hunter2")
        );
    }

    #[test]
    fn credentials_from_a_helm_repositories_file() {
        let text = "\
apiVersion: \"\"
generated: \"2026-01-01T00:00:00Z\"
repositories:
- name: open
  url: https://charts.example.com/open
- name: team
  url: https://charts.example.com/team/
  username: deploy
  password: s3cret
";
        let found = credentials_in(text, "https://charts.example.com/team", "f").unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("deploy", "s3cret")
        );
        assert_eq!(found.from, "your Helm config (f)");
        assert_eq!(
            credentials_in(text, "https://charts.example.com/open", "f"),
            None
        );
        assert_eq!(credentials_in(text, "https://other.example.com", "f"), None);
        assert_eq!(credentials_in("not: [yaml", "https://a", "f"), None);
    }

    #[test]
    fn an_unreachable_repository_says_so_in_one_line() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let repos = ChartRepos::new(None, None, Vec::new());
        let e = repos
            .index(&format!("http://127.0.0.1:{port}"), None)
            .unwrap_err();
        assert!(
            e.starts_with(&format!("cannot reach http://127.0.0.1:{port}/index.yaml")),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        assert!(!e.contains("error sending request"), "{e}");
    }
}
