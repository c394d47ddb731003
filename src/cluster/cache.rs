//! The disk cache of what a server says about itself (discovery, OpenAPI schemas), so that a run
//! does not ask again what the last one learned minutes ago. One directory per server; a file is
//! written whole or not at all, and one that cannot be read is fetched again, never trusted.
//!
//! The cache is an optimisation: when it cannot be written (a read-only home), runs carry on
//! without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::discovery::{Discovery, Resource, UnknownType};
use super::{Cluster, ClusterError};

/// How long a cached answer is used without asking the server: ten minutes, kubectl's discovery
/// cache lifetime before v1.24 (it has been six hours since).
pub const TTL: Duration = Duration::from_secs(10 * 60);

/// The served resources, from `<cache_dir>/discovery/<server>/aggregated.json` when younger than
/// [`TTL`], else from the server (then cached). `refresh` skips the cache; no `cache_dir`, no
/// cache.
pub async fn discovery(
    cluster: &Cluster,
    cache_dir: Option<&Path>,
    refresh: bool,
) -> Result<Discovery, ClusterError> {
    read_discovery(cluster, cache_dir, refresh)
        .await
        .map(|(discovery, _)| discovery)
}

/// [`discovery`], and whether it came from the server (not the cache).
async fn read_discovery(
    cluster: &Cluster,
    cache_dir: Option<&Path>,
    refresh: bool,
) -> Result<(Discovery, bool), ClusterError> {
    let file = cache_dir
        .map(|dir| server_dir(dir, "discovery", &cluster.target.server).join("aggregated.json"));
    if !refresh {
        let cached = file
            .as_deref()
            .and_then(read_fresh)
            .and_then(|text| serde_json::from_str::<Discovery>(&text).ok())
            // A server always serves something: an empty answer is a damaged file.
            .filter(|d| !d.resources.is_empty());
        if let Some(cached) = cached {
            return Ok((cached, false));
        }
    }
    let discovery = cluster.discovery().await?;
    if let Some(file) = &file {
        let text = serde_json::to_string(&discovery).expect("Discovery serialises to JSON");
        // Best effort: see the module comment.
        let _ = write(file, &text);
    }
    Ok((discovery, true))
}

/// Discovery as a run sees it: the disk cache's answer, read again from the server once, on the
/// first lookup that misses, as kubectl re-reads its cache when a kind it needs is not there.
/// A CRD installed since the cache was written is then found; a miss after a fresh read is an
/// answer (the server does not serve that type).
pub struct CachedDiscovery {
    current: std::sync::RwLock<std::sync::Arc<Discovery>>,
    /// Whether `current` came from the server during this run.
    fresh: std::sync::atomic::AtomicBool,
    /// Held while the server is asked again, so concurrent misses wait for one read.
    reading: tokio::sync::Mutex<()>,
    /// Where to ask again: the cluster, and the cache directory to write the answer to.
    server: Option<(Cluster, Option<PathBuf>)>,
}

impl CachedDiscovery {
    /// Reads [`discovery`] (from the cache when it is fresh enough and `refresh` is unset).
    pub async fn read(
        cluster: &Cluster,
        cache_dir: Option<&Path>,
        refresh: bool,
    ) -> Result<CachedDiscovery, ClusterError> {
        let (discovery, fresh) = read_discovery(cluster, cache_dir, refresh).await?;
        Ok(CachedDiscovery {
            current: std::sync::RwLock::new(std::sync::Arc::new(discovery)),
            fresh: fresh.into(),
            reading: tokio::sync::Mutex::new(()),
            server: Some((cluster.clone(), cache_dir.map(Path::to_path_buf))),
        })
    }

    /// A discovery that is never read again: one just read from the server, or a test's.
    pub fn fixed(discovery: Discovery) -> CachedDiscovery {
        CachedDiscovery {
            current: std::sync::RwLock::new(std::sync::Arc::new(discovery)),
            fresh: true.into(),
            reading: tokio::sync::Mutex::new(()),
            server: None,
        }
    }

    /// What is known now, for walking every served type.
    pub fn snapshot(&self) -> std::sync::Arc<Discovery> {
        self.current.read().expect("discovery lock").clone()
    }

    /// [`Discovery::resolve`], asking the server again on a miss.
    pub async fn resolve(&self, text: &str) -> Result<Resource, UnknownType> {
        match self.snapshot().resolve(text) {
            Ok(found) => return Ok(found.clone()),
            Err(e) if !self.read_again().await => return Err(e),
            Err(_) => {}
        }
        self.snapshot().resolve(text).cloned()
    }

    /// [`Discovery::for_kind`], asking the server again on a miss.
    pub async fn for_kind(&self, api_version: &str, kind: &str) -> Option<Resource> {
        if let Some(found) = self.snapshot().for_kind(api_version, kind) {
            return Some(found.clone());
        }
        if !self.read_again().await {
            return None;
        }
        self.snapshot().for_kind(api_version, kind).cloned()
    }

    /// Reads discovery from the server once, unless this run already did; whether a lookup
    /// should be tried again. A failed read keeps what was known (the miss stands).
    async fn read_again(&self) -> bool {
        use std::sync::atomic::Ordering;
        let Some((cluster, cache_dir)) = &self.server else {
            return false;
        };
        if self.fresh.load(Ordering::Acquire) {
            return false;
        }
        let _reading = self.reading.lock().await;
        if self.fresh.load(Ordering::Acquire) {
            return true; // another lookup read it while this one waited
        }
        let read = read_discovery(cluster, cache_dir.as_deref(), true).await;
        // Once per run, whatever the outcome: a server that fails now is not asked per object.
        self.fresh.store(true, Ordering::Release);
        match read {
            Ok((discovery, _)) => {
                *self.current.write().expect("discovery lock") = std::sync::Arc::new(discovery);
                true
            }
            Err(_) => false,
        }
    }
}

/// `<cache_dir>/<what>/<server>`, the server named by its host, port and path
/// (`https://127.0.0.1:6443` → `127.0.0.1_6443`). kubectl names its cache by host and port only;
/// the path is kept here so that two clusters behind one proxy host do not share a cache.
pub fn server_dir(cache_dir: &Path, what: &str, server: &str) -> PathBuf {
    let name = match server.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() => {
            let mut name = uri.host().unwrap_or_default().to_owned();
            if let Some(port) = uri.port_u16() {
                name.push_str(&format!(":{port}"));
            }
            let path = uri.path().trim_matches('/');
            if !path.is_empty() {
                name.push('/');
                name.push_str(path);
            }
            name
        }
        _ => server.to_owned(),
    };
    cache_dir.join(what).join(file_name(&name))
}

/// `text` as one safe file name: anything but letters, digits, `.`, `-` and `_` becomes `_`.
pub(crate) fn file_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.as_str() {
        "" | "." | ".." => "_".to_owned(),
        _ => name,
    }
}

/// The file's text, if it exists and is younger than [`TTL`].
pub(crate) fn read_fresh(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    // A time in the future (a clock moved back) counts as stale.
    let age = SystemTime::now().duration_since(modified).ok()?;
    (age < TTL).then(|| read(path)).flatten()
}

/// The file's text, if it exists and is UTF-8, whatever its age.
pub(crate) fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, renamed over
/// the old one, so that a concurrent run reads the old file or the new one, never half of one.
pub(crate) fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    temp.write_all(contents.as_bytes())?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_one_safe_directory_each() {
        let root = Path::new("/cache");
        let cases = [
            ("https://127.0.0.1:6443", "127.0.0.1_6443"),
            ("https://127.0.0.1:6443/", "127.0.0.1_6443"),
            ("https://kube.example.com", "kube.example.com"),
            (
                "https://rancher.example.com/k8s/clusters/c-m-abc",
                "rancher.example.com_k8s_clusters_c-m-abc",
            ),
            ("https://[::1]:6443", "___1__6443"),
            ("not a url/..", "not_a_url_.."),
        ];
        for (server, want) in cases {
            assert_eq!(
                server_dir(root, "openapi", server),
                root.join("openapi").join(want),
                "{server}"
            );
        }
        assert_eq!(file_name(".."), "_");
        assert_eq!(file_name(""), "_");
    }

    #[test]
    fn writes_are_whole_and_reads_respect_age() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a").join("b.json");
        assert_eq!(read_fresh(&file), None);
        write(&file, "one").unwrap();
        write(&file, "two").unwrap();
        assert_eq!(read_fresh(&file).as_deref(), Some("two"));
        // Only the file: no temporary left behind.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b.json"]);
        let old = SystemTime::now() - TTL - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(read_fresh(&file), None);
        assert_eq!(read(&file).as_deref(), Some("two"));
    }
}
