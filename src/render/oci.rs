//! Charts in OCI registries (a Flux HelmRepository of `type: oci`): the chart's tags, the
//! manifest of the tag a version names, and the chart layer, read over the OCI distribution
//! API as `helm pull oci://..` reads them. A registry that asks for credentials gets them as
//! it asks: basic auth, or a token from its token service (`WWW-Authenticate: Bearer`).
//! Neither the credentials nor a token is ever shown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Deserialize;

use super::chart_repo::Credentials;
use super::http::{self, Auth, Reply};

/// The media type of a Helm chart's layer (Helm 3.8 and later push only this one).
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// What a manifest is asked for as.
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The largest tag list page and manifest read.
const MAX_DOCUMENT: u64 = 4 << 20;

/// Pages of a tag list followed, at most.
const MAX_PAGES: usize = 200;

/// A chart repository in an OCI registry: `oci://HOST[:PORT][/PATH]`; a chart `NAME` in it is
/// the registry's repository `PATH/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRepo {
    /// `HOST[:PORT]`.
    pub registry: String,
    pub path: String,
    /// Plain HTTP (Flux's `spec.insecure`), not HTTPS.
    pub plain_http: bool,
}

impl OciRepo {
    pub fn parse(url: &str, plain_http: bool) -> Result<OciRepo, String> {
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| format!("{url:?} is not an oci:// URL"))?
            .trim_end_matches('/');
        let (registry, path) = rest.split_once('/').unwrap_or((rest, ""));
        if registry.is_empty()
            || registry.contains('@')
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(format!("{url:?} names no registry host"));
        }
        if path.split('/').any(|p| p == "." || p == "..") || path.contains(['?', '#']) {
            return Err(format!("{url:?} is not a repository path"));
        }
        Ok(OciRepo {
            registry: registry.to_owned(),
            path: path.to_owned(),
            plain_http,
        })
    }

    /// The registry's repository of `chart`.
    fn repository(&self, chart: &str) -> String {
        if self.path.is_empty() {
            chart.to_owned()
        } else {
            format!("{}/{chart}", self.path)
        }
    }

    fn base(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }

    /// `oci://HOST/PATH/CHART`, for messages.
    pub fn chart_ref(&self, chart: &str) -> String {
        format!("oci://{}/{}", self.registry, self.repository(chart))
    }
}

/// A chart layer: its `sha256` digest (hex) and size, and the chart version its manifest
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub version: Option<String>,
    /// `sha256` of the manifest, hex.
    pub manifest: String,
}

/// The tokens registries gave in this run, by registry, repository and credentials.
#[derive(Debug, Default)]
pub struct Client {
    tokens: Mutex<HashMap<String, String>>,
}

impl Client {
    /// The chart versions the tags of `chart` name (Helm writes a `+` of a version as `_` in a
    /// tag), every page of the list.
    pub fn versions(
        &self,
        repo: &OciRepo,
        chart: &str,
        auth: Option<&Credentials>,
    ) -> Result<Vec<String>, String> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let repository = repo.repository(chart);
        let mut url = format!("{}/v2/{repository}/tags/list", repo.base());
        let mut versions = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self.get(repo, &repository, &url, None, auth, MAX_DOCUMENT)?;
            let page: Page = serde_json::from_slice(&reply.bytes)
                .map_err(|e| format!("the tag list at {url} does not parse: {e}"))?;
            versions.extend(
                page.tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.replace('_', "+")),
            );
            match reply.next {
                Some(next) if next.starts_with('/') => url = format!("{}{next}", repo.base()),
                Some(next) if next.starts_with(&repo.base()) => url = next,
                _ => return Ok(versions),
            }
        }
        Err(format!(
            "the tag list of {} has more than {MAX_PAGES} pages",
            repo.chart_ref(chart)
        ))
    }

    /// The chart layer of `chart` at `reference`: a tag (a version's, with `_` for `+`) or a
    /// manifest digest (`sha256:..`). The chart's version is the manifest's
    /// `org.opencontainers.image.version` (`helm push` writes it), else its config's.
    pub fn layer(
        &self,
        repo: &OciRepo,
        chart: &str,
        reference: &str,
        auth: Option<&Credentials>,
    ) -> Result<Layer, String> {
        #[derive(Deserialize)]
        struct Manifest {
            #[serde(default)]
            layers: Vec<Descriptor>,
            config: Option<Descriptor>,
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            version: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Descriptor {
            #[serde(default)]
            media_type: String,
            #[serde(default)]
            digest: String,
            #[serde(default)]
            size: u64,
        }
        let repository = repo.repository(chart);
        let tag = reference;
        if tag.is_empty() || tag.contains(['/', '?', '#']) {
            return Err(format!("{tag:?} is neither a tag nor a digest"));
        }
        let url = format!("{}/v2/{repository}/manifests/{tag}", repo.base());
        let reply = self.get(repo, &repository, &url, Some(MANIFEST), auth, MAX_DOCUMENT)?;
        let manifest_digest = super::chart_repo::sha256_hex(&reply.bytes);
        if let Some(asked) = tag.strip_prefix("sha256:")
            && !asked.eq_ignore_ascii_case(&manifest_digest)
        {
            return Err(format!(
                "the manifest at {url} has digest sha256:{manifest_digest}, not the one asked for"
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&reply.bytes)
            .map_err(|e| format!("the manifest at {url} does not parse: {e}"))?;
        let mut version = manifest
            .annotations
            .get("org.opencontainers.image.version")
            .filter(|v| !v.is_empty())
            .cloned();
        if version.is_none()
            && let Some(config) = manifest.config.as_ref().and_then(|c| {
                c.digest
                    .strip_prefix("sha256:")
                    .map(|d| (d.to_owned(), c.size))
            })
        {
            let url = format!("{}/v2/{repository}/blobs/sha256:{}", repo.base(), config.0);
            let reply = self.get(repo, &repository, &url, None, auth, MAX_DOCUMENT)?;
            version = serde_json::from_slice::<Config>(&reply.bytes)
                .ok()
                .map(|c| c.version)
                .filter(|v| !v.is_empty());
        }
        let layer = manifest
            .layers
            .into_iter()
            .find(|l| l.media_type == CHART_LAYER)
            .ok_or_else(|| {
                format!(
                    "{}:{tag} is not a Helm chart (its manifest has no {CHART_LAYER} layer)",
                    repo.chart_ref(chart)
                )
            })?;
        let digest = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|d| super::chart_repo::is_sha256_hex(d))
            .ok_or_else(|| {
                format!(
                    "the chart layer of {}:{tag} has digest {:?}; only sha256 is read",
                    repo.chart_ref(chart),
                    layer.digest
                )
            })?;
        Ok(Layer {
            digest: digest.to_ascii_lowercase(),
            size: layer.size,
            version,
            manifest: manifest_digest,
        })
    }

    /// The bytes of the blob `layer` of `chart` (at most `limit`).
    pub fn blob(
        &self,
        repo: &OciRepo,
        chart: &str,
        layer: &Layer,
        auth: Option<&Credentials>,
        limit: u64,
    ) -> Result<Vec<u8>, String> {
        if layer.size > limit {
            return Err(format!(
                "the chart layer of {} is larger than {} MiB",
                repo.chart_ref(chart),
                limit >> 20
            ));
        }
        let repository = repo.repository(chart);
        let url = format!(
            "{}/v2/{repository}/blobs/sha256:{}",
            repo.base(),
            layer.digest
        );
        Ok(self.get(repo, &repository, &url, None, auth, limit)?.bytes)
    }

    /// GET `url` of `repository`, answering the registry's challenge once: basic auth, or a
    /// token for pulling `repository` from its token service, kept for the run.
    fn get(
        &self,
        repo: &OciRepo,
        repository: &str,
        url: &str,
        accept: Option<&str>,
        auth: Option<&Credentials>,
        limit: u64,
    ) -> Result<Reply, String> {
        let token_key = format!(
            "{}\0{repository}\0{}",
            repo.registry,
            auth.map_or("", |a| a.from.as_str())
        );
        let token = self
            .tokens
            .lock()
            .expect("registry token lock")
            .get(&token_key)
            .cloned();
        let first = match &token {
            Some(t) => Auth::Bearer(t),
            None => Auth::None,
        };
        let mut reply = http::get(url, first, accept, limit)?;
        if reply.status == 401 {
            let challenge = reply.challenge.clone().unwrap_or_default();
            let (scheme, params) = parse_challenge(&challenge);
            if scheme.eq_ignore_ascii_case("bearer") {
                let token = self.token(&params, repository, auth)?;
                reply = http::get(url, Auth::Bearer(&token), accept, limit)?;
                self.tokens
                    .lock()
                    .expect("registry token lock")
                    .insert(token_key, token);
            } else if let Some(a) = auth {
                reply = http::get(url, Auth::Basic(a), accept, limit)?;
            }
        }
        if (200..300).contains(&reply.status) {
            return Ok(reply);
        }
        Err(super::chart_repo::refusal(url, reply.status, auth))
    }

    /// A token for pulling `repository` from the token service a challenge names.
    fn token(
        &self,
        challenge: &BTreeMap<String, String>,
        repository: &str,
        auth: Option<&Credentials>,
    ) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let realm = challenge
            .get("realm")
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
            .ok_or("the registry asks for a token and names no token service (realm)")?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| format!("its token service {realm} is not a URL: {e}"))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.get("service") {
                query.append_pair("service", service);
            }
            let own = format!("repository:{repository}:pull");
            query.append_pair("scope", challenge.get("scope").unwrap_or(&own));
        }
        let url = url.to_string();
        let reply = http::get(
            &url,
            auth.map_or(Auth::None, Auth::Basic),
            None,
            MAX_DOCUMENT,
        )?;
        // The URL without its query, in messages.
        let shown = realm.as_str();
        if !(200..300).contains(&reply.status) {
            return Err(super::chart_repo::refusal(shown, reply.status, auth));
        }
        let token: Token = serde_json::from_slice(&reply.bytes)
            .map_err(|_| format!("the token service {shown} answered no token"))?;
        [token.token, token.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
            .ok_or_else(|| format!("the token service {shown} answered no token"))
    }
}

/// The scheme and parameters of a `WWW-Authenticate` header: `Bearer realm="..",scope=".."`.
fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (scheme.to_owned(), params)
}

/// The credentials a Docker config (`~/.docker/config.json`, Helm's `registry/config.json`, a
/// Secret's `.dockerconfigjson`) keeps for `registry` (`HOST[:PORT]`), if any: `auth`
/// (base64 of `user:password`) or `username` and `password`. A credentials store or helper
/// is not asked.
pub fn docker_config_credentials(text: &str, registry: &str, from: &str) -> Option<Credentials> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: String,
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    }
    let file: File = serde_json::from_str(text).ok()?;
    let host_of = |key: &str| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        key.split('/').next().unwrap_or(key).to_owned()
    };
    let entry = file
        .auths
        .iter()
        .find(|(k, _)| host_of(k) == registry)
        .map(|(_, e)| e)?;
    let (username, password) = if entry.username.is_empty() {
        let decoded = crate::text::base64_bytes(entry.auth.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        (u.to_owned(), p.to_owned())
    } else {
        (entry.username.clone(), entry.password.clone())
    };
    (!username.is_empty()).then(|| Credentials {
        username,
        password,
        from: from.to_owned(),
        pass_to_any_host: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_url_is_a_registry_and_a_path() {
        let repo = OciRepo::parse("oci://ghcr.io/org/charts/", false).unwrap();
        assert_eq!(repo.registry, "ghcr.io");
        assert_eq!(repo.repository("web"), "org/charts/web");
        assert_eq!(repo.base(), "https://ghcr.io");
        assert_eq!(repo.chart_ref("web"), "oci://ghcr.io/org/charts/web");
        let local = OciRepo::parse("oci://127.0.0.1:5000", true).unwrap();
        assert_eq!(local.repository("web"), "web");
        assert_eq!(local.base(), "http://127.0.0.1:5000");
        assert!(OciRepo::parse("https://ghcr.io/org", false).is_err());
        assert!(OciRepo::parse("oci://user:pw@ghcr.io/org", false).is_err());
        assert!(OciRepo::parse("oci://ghcr.io/org/../x", false).is_err());
    }

    #[test]
    fn challenges_are_read_as_registries_write_them() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:org/web:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.example.com/token");
        assert_eq!(params["service"], "registry.example.com");
        assert_eq!(params["scope"], "repository:org/web:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(
            (scheme.as_str(), params["realm"].as_str()),
            ("Basic", "basic-realm")
        );
        assert!(parse_challenge("").1.is_empty());
    }

    #[test]
    fn credentials_from_a_docker_config() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "ZG9ja2VyOnB3"},
            "127.0.0.1:5000": {"auth": "ZGVwbG95OnMzY3JldA=="},
            "ghcr.io": {"username": "me", "password": "tok"},
            "quay.io": {}
        }, "credsStore": "desktop"}"#;
        let found = docker_config_credentials(text, "127.0.0.1:5000", "f").unwrap();
        assert_eq!(
            (
                found.username.as_str(),
                found.password.as_str(),
                found.from.as_str()
            ),
            ("deploy", "s3cret", "f")
        );
        assert_eq!(
            docker_config_credentials(text, "ghcr.io", "f")
                .unwrap()
                .password,
            "tok"
        );
        assert_eq!(
            docker_config_credentials(text, "index.docker.io", "f")
                .unwrap()
                .username,
            "docker"
        );
        assert_eq!(docker_config_credentials(text, "quay.io", "f"), None);
        assert_eq!(docker_config_credentials(text, "other.io", "f"), None);
        assert_eq!(docker_config_credentials("{", "ghcr.io", "f"), None);
    }
}
