//! The disk cache of what a server says about itself (discovery, OpenAPI schemas), so that a run
//! does not ask again what the last one learned minutes ago. One directory per server; a file is
//! written whole or not at all, and one that cannot be read is fetched again, never trusted.
//!
//! The cache is an optimisation: when it cannot be written (a read-only home), runs carry on
//! without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::discovery::Discovery;
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
            return Ok(cached);
        }
    }
    let discovery = cluster.discovery().await?;
    if let Some(file) = &file {
        let text = serde_json::to_string(&discovery).expect("Discovery serialises to JSON");
        // Best effort: see the module comment.
        let _ = write(file, &text);
    }
    Ok(discovery)
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
