//! Charts from Helm chart repositories (a Flux HelmRepository over HTTP(S)): the repository's
//! `index.yaml`, read once per run, and chart archives, downloaded once and kept under the
//! plugin's cache by their digest (checked against the index's). A chart archive holds no
//! value of the user's: the values go to `helm` on stdin.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

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
            .map_err(|e| format!("spec.chart.spec.version: {e}"))?
            .ok_or_else(|| {
                let mut known = versions.clone();
                known.sort_by_key(|v| std::cmp::Reverse(super::chart_version::Version::parse(v)));
                known.truncate(5);
                format!(
                    "no version of chart {chart} matches {constraint:?} (newest: {})",
                    known.join(", ")
                )
            })?;
        Ok(entries
            .iter()
            .find(|e| e.version == picked)
            .expect("picked from these entries"))
    }
}

type IndexSlot = Arc<OnceLock<Result<Arc<Index>, String>>>;

/// Indexes read in this run, and where archives are kept between runs.
#[derive(Debug, Default)]
pub struct ChartRepos {
    /// `<cache>/charts`; None: archives are downloaded for each run.
    dir: Option<PathBuf>,
    /// The user's Helm repositories file (`helm repo add`), asked for credentials when a
    /// HelmRepository's secretRef may not be read.
    helm_config: Option<PathBuf>,
    indexes: Mutex<HashMap<String, IndexSlot>>,
}

impl ChartRepos {
    pub fn new(dir: Option<PathBuf>, helm_config: Option<PathBuf>) -> ChartRepos {
        ChartRepos {
            dir,
            helm_config,
            indexes: Mutex::default(),
        }
    }

    /// The credentials the user's Helm config keeps for the repository at `url` (`helm repo
    /// add NAME URL --username U --password P`), if any; an unreadable file is as none.
    pub fn helm_config_credentials(&self, url: &str) -> Option<Credentials> {
        let file = self.helm_config.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        credentials_in(&text, url, &file.display().to_string())
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

    /// Forgets the indexes read: the next [`ChartRepos::index`] reads them again (`watch`, at
    /// each poll, sees a newly published version).
    pub fn forget_indexes(&self) {
        self.indexes.lock().expect("chart index lock").clear();
    }

    /// The archive of `entry` on disk: from the cache when its digest is there, else
    /// downloaded, checked against the digest and kept. `scratch` holds it when it cannot be
    /// kept (no digest, no cache).
    pub fn archive(
        &self,
        repo_url: &str,
        entry: &Entry,
        auth: Option<&Credentials>,
        scratch: &Path,
    ) -> Result<PathBuf, String> {
        let digest = entry.digest.to_ascii_lowercase();
        let digest_ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        let kept = match (&self.dir, digest_ok) {
            (Some(dir), true) => Some(dir.join(format!("sha256-{digest}.tgz"))),
            _ => None,
        };
        if let Some(path) = &kept
            && path.is_file()
        {
            return Ok(path.clone());
        }
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
        if digest_ok {
            let got = sha256_hex(&bytes);
            if got != digest {
                return Err(format!(
                    "the archive of version {} at {url} has digest sha256:{got}, the index says \
                     sha256:{digest}",
                    entry.version
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

fn sha256_hex(bytes: &[u8]) -> String {
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

/// GET `url` into memory (at most `limit` bytes). On a thread of its own: the blocking client
/// runs a runtime of its own, which must not start or end on one of the caller's.
fn get(url: &str, auth: Option<&Credentials>, limit: u64) -> Result<Vec<u8>, String> {
    let auth = auth.cloned();
    std::thread::scope(|s| {
        s.spawn(|| {
            let client = reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .timeout(Duration::from_secs(120))
                .user_agent(concat!("kubectl-gitops/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot make an HTTP client: {}", chain(&e)))?;
            let mut request = client.get(url);
            if let Some(a) = &auth {
                request = request.basic_auth(&a.username, Some(&a.password));
            }
            let response = request.send().map_err(|e| {
                format!(
                    "cannot reach {url}: {}; check that the repository is reachable from \
                         this machine (a proxy is taken from HTTPS_PROXY) and that its URL is \
                         right",
                    chain(&e)
                )
            })?;
            let status = response.status();
            if !status.is_success() {
                let why = match status.as_u16() {
                    401 | 403 => match &auth {
                        Some(a) => format!("the credentials from {} are refused", a.from),
                        None => "it asks for credentials".to_owned(),
                    },
                    404 => "not found".to_owned(),
                    _ => String::new(),
                };
                return Err(format!(
                    "{url} answered {status}{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                ));
            }
            let mut bytes = Vec::new();
            response
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("reading {url}: {e}"))?;
            if bytes.len() as u64 > limit {
                return Err(format!("{url} is larger than {} MiB", limit >> 20));
            }
            Ok(bytes)
        })
        .join()
        .unwrap_or_else(|_| Err(format!("fetching {url} failed")))
    })
}

/// An error and its causes, one line, without reqwest's and hyper's generic wrappers ("error
/// sending request for url (..)", "client error (Connect)") where a cause says more.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    let generic =
        |p: &String| p.starts_with("error sending request") || p.starts_with("client error");
    if parts.iter().any(|p| !generic(p)) {
        parts.retain(|p| !generic(p));
    }
    parts.join(": ")
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
        let repos = ChartRepos::new(None, None);
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
