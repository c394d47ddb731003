//! The OpenAPI v3 documents of the group-versions a run needs, from the server or the disk cache,
//! read into [`Schemas`] (how each field merges).
//!
//! The index (`GET /openapi/v3`) names each group-version's document by a URL whose `?hash=`
//! changes whenever that schema does. The index is cached for ten minutes; documents are cached
//! under their hash, so one is downloaded again only when the server's schema changed, however
//! old the file is (kubectl's HTTP cache gets the same effect from the server's
//! `Cache-Control: immutable` on these URLs).
//!
//! Cache layout: `<cache_dir>/openapi/<server>/index.json` and
//! `<cache_dir>/openapi/<server>/apis/apps/v1/<hash>.json` (`api/v1/<hash>.json` for the core
//! group).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::task::JoinSet;

use super::cache;
use super::{Cluster, ClusterError};
use crate::schema::Schemas;

const ACCEPT: &str = "application/json";
const INDEX_PATH: &str = "/openapi/v3";
const INDEX_FILE: &str = "index.json";
/// Documents downloaded at once.
const IN_FLIGHT: usize = 8;

/// OpenAPI v3 documents for the group-versions asked for (`v1`, `apps/v1`), from the disk cache
/// when fresh, else from the server: one `GET /openapi/v3` for the index, then one GET per
/// missing group-version at its `serverRelativeURL`. `refresh` skips the cache (and rewrites
/// it); no `cache_dir`, no cache.
///
/// A group-version the server does not serve is left out: [`Schemas::kind`] then finds nothing
/// for it. A cached index that lacks a group-version asked for is fetched again first, since a
/// CRD may have been installed since.
pub async fn schemas(
    cluster: &Cluster,
    group_versions: &[String],
    cache_dir: Option<&Path>,
    refresh: bool,
) -> Result<Schemas, ClusterError> {
    let dir = cache_dir.map(|d| cache::server_dir(d, "openapi", &cluster.target.server));
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for gv in group_versions {
        if !wanted.iter().any(|(seen, _)| seen == gv) {
            wanted.push((gv, document_path(gv)));
        }
    }

    let cached_index = (!refresh)
        .then(|| dir.as_ref().map(|d| d.join(INDEX_FILE)))
        .flatten()
        .and_then(|file| cache::read_fresh(&file))
        .and_then(|text| serde_json::from_str::<Index>(&text).ok())
        .filter(|index| wanted.iter().all(|(_, path)| index.url(path).is_some()));
    let index = match cached_index {
        Some(index) => index,
        None => fetch_index(cluster, dir.as_deref()).await?,
    };

    let mut schemas = Schemas::new();
    let mut missing = Vec::new();
    for (gv, path) in wanted {
        let Some(url) = index.url(&path) else {
            continue;
        };
        let file = dir.as_deref().map(|d| document_file(d, &path, url));
        if !refresh {
            let cached = file.as_deref().and_then(|f| match hash(url) {
                Some(_) => cache::read(f),
                // Without a hash the file cannot tell whether it is current: only its age can.
                None => cache::read_fresh(f),
            });
            if cached.is_some_and(|text| schemas.add_document(gv, &text).is_ok()) {
                continue;
            }
        }
        missing.push(Missing {
            group_version: gv.to_owned(),
            url: url.to_owned(),
            file,
        });
    }

    let mut missing = missing.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < IN_FLIGHT {
            let Some(next) = missing.next() else {
                break;
            };
            let cluster = cluster.clone();
            running.spawn(async move {
                let text = cluster.get_text(&next.url, Some(ACCEPT)).await;
                (next, text)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (fetched, text) = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let text = match text {
            Ok(text) => text,
            // Gone between the index and now (a CRD version removed): not served.
            Err(ClusterError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        schemas
            .add_document(&fetched.group_version, &text)
            .map_err(|e| ClusterError::Request {
                server: cluster.target.server.clone(),
                what: format!("GET {}", strip_query(&fetched.url)),
                reason: e.to_string(),
            })?;
        if let Some(file) = &fetched.file {
            store_document(file, &text);
        }
    }
    Ok(schemas)
}

/// A document to download.
struct Missing {
    group_version: String,
    url: String,
    file: Option<PathBuf>,
}

/// `GET /openapi/v3`: which documents the server has, each with its current URL.
#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    paths: BTreeMap<String, IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "serverRelativeURL", default)]
    server_relative_url: String,
}

impl Index {
    fn url(&self, path: &str) -> Option<&str> {
        self.paths
            .get(path)
            .map(|e| e.server_relative_url.as_str())
            .filter(|u| u.starts_with('/'))
    }
}

async fn fetch_index(cluster: &Cluster, dir: Option<&Path>) -> Result<Index, ClusterError> {
    let text = cluster.get_text(INDEX_PATH, Some(ACCEPT)).await?;
    let index = serde_json::from_str(&text).map_err(|e| ClusterError::Request {
        server: cluster.target.server.clone(),
        what: format!("GET {INDEX_PATH}"),
        reason: format!("unreadable OpenAPI v3 index: {e}"),
    })?;
    if let Some(dir) = dir {
        // Best effort: the cache is an optimisation.
        let _ = cache::write(&dir.join(INDEX_FILE), &text);
    }
    Ok(index)
}

/// The index key of a group-version: `api/v1` for the core group, `apis/apps/v1` otherwise.
fn document_path(group_version: &str) -> String {
    if group_version.contains('/') {
        format!("apis/{group_version}")
    } else {
        format!("api/{group_version}")
    }
}

/// `<dir>/apis/apps/v1/<hash>.json`, or `latest.json` when the URL has no hash.
fn document_file(dir: &Path, path: &str, url: &str) -> PathBuf {
    let mut file = dir.to_path_buf();
    for part in path.split('/') {
        file.push(cache::file_name(part));
    }
    file.push(format!(
        "{}.json",
        hash(url).map_or_else(|| "latest".to_owned(), cache::file_name)
    ));
    file
}

/// Writes a document's file and removes the files of its earlier versions.
fn store_document(file: &Path, text: &str) {
    if cache::write(file, text).is_err() {
        return;
    }
    let Some(dir) = file.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != file && path.extension().is_some_and(|e| e == "json") && path.is_file() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `hash` query parameter of a document URL.
fn hash(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("hash="))
        .filter(|h| !h.is_empty())
}

fn strip_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_versions_map_to_index_paths_and_files() {
        assert_eq!(document_path("v1"), "api/v1");
        assert_eq!(document_path("apps/v1"), "apis/apps/v1");
        assert_eq!(
            document_path("kustomize.toolkit.fluxcd.io/v1"),
            "apis/kustomize.toolkit.fluxcd.io/v1"
        );
        let dir = Path::new("/c/openapi/127.0.0.1_6443");
        assert_eq!(
            document_file(dir, "apis/apps/v1", "/openapi/v3/apis/apps/v1?hash=ABC123"),
            dir.join("apis/apps/v1/ABC123.json")
        );
        assert_eq!(
            document_file(dir, "api/v1", "/openapi/v3/api/v1?timeout=1s&hash=F0"),
            dir.join("api/v1/F0.json")
        );
        assert_eq!(
            document_file(dir, "apis/x/v1", "/openapi/v3/apis/x/v1"),
            dir.join("apis/x/v1/latest.json")
        );
        assert_eq!(
            document_file(dir, "apis/../v1", "/x?hash=../../etc"),
            dir.join("apis/_/v1/.._.._etc.json")
        );
    }

    #[test]
    fn the_index_gives_each_path_its_url() {
        let index: Index = serde_json::from_str(
            r#"{"paths": {
                "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=AB"},
                "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=CD"},
                "apis/broken/v1": {}
            }}"#,
        )
        .unwrap();
        assert_eq!(index.url("api/v1"), Some("/openapi/v3/api/v1?hash=AB"));
        assert_eq!(hash(index.url("apis/apps/v1").unwrap()), Some("CD"));
        assert_eq!(index.url("apis/broken/v1"), None);
        assert_eq!(index.url("apis/other/v1"), None);
        assert_eq!(
            strip_query("/openapi/v3/api/v1?hash=AB"),
            "/openapi/v3/api/v1"
        );
    }

    #[test]
    fn storing_a_document_removes_its_older_versions() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("apis/apps/v1/OLD.json");
        let new = dir.path().join("apis/apps/v1/NEW.json");
        let other = dir.path().join("apis/apps/v2/OTHER.json");
        store_document(&old, "{}");
        store_document(&other, "{}");
        store_document(&new, "{}");
        assert!(!old.exists());
        assert!(new.exists());
        assert!(other.exists());
    }
}
