//! A connected client for the resolved context, with kubectl's request timeout and impersonation,
//! whose every failure comes back as a [`ClusterError`].

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::config::KubeConfigOptions;
use serde::Serialize;

use super::discovery::{AGGREGATED_ACCEPT, Discovery, Resource};
use super::error::{ClusterError, RequestContext};
use super::kubeconfig::{self, KubeconfigOrigin, NamespaceOrigin, Selectors};
use crate::env::Env;

/// Sent with every request: `kubectl-gitops/<version>`.
pub const USER_AGENT: &str = concat!("kubectl-gitops/", env!("CARGO_PKG_VERSION"));

/// How to connect: the kubeconfig selectors plus kubectl's request flags.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub selectors: Selectors,
    pub impersonate: Option<Impersonation>,
    /// None: no limit (kubectl's `--request-timeout=0`).
    pub request_timeout: Option<Duration>,
}

/// `--as` and `--as-group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
}

/// What the connection points at: the answer of `kubectl gitops context`, less the server's
/// own version.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub context: String,
    pub cluster: String,
    pub user: Option<String>,
    pub namespace: String,
    pub namespace_origin: NamespaceOrigin,
    pub server: String,
    /// The kubeconfig files read, in precedence order (empty in a pod).
    pub kubeconfig: Vec<PathBuf>,
    pub kubeconfig_origin: Option<KubeconfigOrigin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonate: Option<Impersonation>,
}

/// A client bound to one resolved context.
#[derive(Clone)]
pub struct Cluster {
    pub target: Target,
    client: kube::Client,
    request_timeout: Option<Duration>,
}

/// Resolves the context and builds a client for it. Makes no request.
pub async fn connect(options: &ConnectOptions, env: &Env) -> Result<Cluster, ClusterError> {
    let files = kubeconfig::kubeconfig_files(options.selectors.kubeconfig.as_deref(), env)?;
    let (mut config, mut target) = if files.paths.is_empty() {
        in_cluster(options, env)?
    } else {
        let merged = kubeconfig::load(&files)?;
        let selection = kubeconfig::select(&merged, &files, &options.selectors)?;
        let kube_options = KubeConfigOptions {
            context: Some(selection.context.clone()),
            cluster: Some(selection.cluster.clone()),
            user: selection.user.clone(),
        };
        let config = kube::Config::from_custom_kubeconfig(merged, &kube_options)
            .await
            .map_err(|e| ClusterError::InvalidConfig {
                context: selection.context.clone(),
                reason: super::error::single_line(&e.to_string()),
            })?;
        let target = Target {
            context: selection.context,
            cluster: selection.cluster,
            user: selection.user,
            namespace: selection.namespace,
            namespace_origin: selection.namespace_origin,
            server: selection.server,
            kubeconfig: files.paths,
            kubeconfig_origin: Some(files.origin),
            impersonate: None,
        };
        (config, target)
    };
    config.default_namespace = target.namespace.clone();
    // Like kubectl's, our user agent names us, so audit logs tell our requests apart.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    if let Some(imp) = &options.impersonate {
        config.auth_info.impersonate = Some(imp.user.clone());
        config.auth_info.impersonate_groups = (!imp.groups.is_empty()).then(|| imp.groups.clone());
        target.impersonate = Some(imp.clone());
    }
    if let Some(limit) = options.request_timeout {
        config.connect_timeout = Some(config.connect_timeout.map_or(limit, |c| c.min(limit)));
        config.read_timeout = Some(limit);
        config.write_timeout = Some(limit);
    }
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::InvalidConfig {
        context: target.context.clone(),
        reason: super::error::single_line(&e.to_string()),
    })?;
    Ok(Cluster {
        target,
        client,
        request_timeout: options.request_timeout,
    })
}

/// No kubeconfig anywhere: in a pod, use its service account as kubectl does; elsewhere, say
/// where we looked. A kubeconfig that exists always wins over this.
fn in_cluster(options: &ConnectOptions, env: &Env) -> Result<(kube::Config, Target), ClusterError> {
    if !env.in_cluster {
        let searched = env
            .home
            .as_ref()
            .map(|h| h.join(".kube").join("config").display().to_string())
            .unwrap_or_else(|| "~/.kube/config (no home directory)".to_owned());
        return Err(ClusterError::NoKubeconfig { searched });
    }
    let config = kube::Config::incluster().map_err(|e| ClusterError::InvalidConfig {
        context: "in-cluster".to_owned(),
        reason: super::error::single_line(&e.to_string()),
    })?;
    let (namespace, namespace_origin) = match &options.selectors.namespace {
        Some(ns) => (ns.clone(), NamespaceOrigin::Flag),
        None => (config.default_namespace.clone(), NamespaceOrigin::Pod),
    };
    let target = Target {
        context: "in-cluster".to_owned(),
        cluster: "in-cluster".to_owned(),
        user: Some("service account".to_owned()),
        namespace,
        namespace_origin,
        server: config.cluster_url.to_string(),
        kubeconfig: Vec::new(),
        kubeconfig_origin: None,
        impersonate: None,
    };
    Ok((config, target))
}

/// A live object as the server returns it.
pub type LiveObject = serde_json::Value;

/// One change of a watched collection.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(LiveObject),
    Modified(LiveObject),
    Deleted(LiveObject),
    /// Nothing changed; the collection has reached this resourceVersion.
    Bookmark(String),
}

type RawEvents = std::pin::Pin<
    Box<dyn Stream<Item = Result<kube::core::WatchEvent<LiveObject>, kube::Error>> + Send>,
>;

/// The changes of one collection, as the server streams them.
pub struct WatchStream {
    events: RawEvents,
    server: String,
    context: String,
    user: String,
    what: String,
}

impl WatchStream {
    /// The next change. `None` when the stream ended (the server's timeout, or a dropped
    /// connection): resume from the last resourceVersion seen.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, ClusterError>> {
        let event = match self.events.next().await? {
            Ok(event) => event,
            Err(e) => {
                let at = RequestContext {
                    server: &self.server,
                    context: &self.context,
                    user: &self.user,
                    what: &self.what,
                };
                return Some(Err(ClusterError::from_kube(e, &at)));
            }
        };
        Some(match event {
            kube::core::WatchEvent::Added(o) => Ok(WatchEvent::Added(o)),
            kube::core::WatchEvent::Modified(o) => Ok(WatchEvent::Modified(o)),
            kube::core::WatchEvent::Deleted(o) => Ok(WatchEvent::Deleted(o)),
            kube::core::WatchEvent::Bookmark(b) => {
                Ok(WatchEvent::Bookmark(b.metadata.resource_version))
            }
            kube::core::WatchEvent::Error(status) => Err(ClusterError::Api {
                server: self.server.clone(),
                what: self.what.clone(),
                code: status.code,
                reason: status.reason.clone(),
                message: super::error::single_line(&status.message),
            }),
        })
    }
}

impl Cluster {
    /// The served resources (aggregated discovery: `GET /api` and `GET /apis`).
    pub async fn discovery(&self) -> Result<Discovery, ClusterError> {
        let mut documents = Vec::new();
        for path in ["/api", "/apis"] {
            let request = http::Request::get(path)
                .header(http::header::ACCEPT, AGGREGATED_ACCEPT)
                .body(Vec::new())
                .expect("a GET request with a static path is valid");
            let what = format!("GET {path}");
            documents.push(
                self.request(&what, self.client.request_text(request))
                    .await?,
            );
        }
        let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
        Discovery::from_aggregated(&refs).map_err(|e| ClusterError::Request {
            server: self.target.server.clone(),
            what: "discovery".to_owned(),
            reason: format!("unreadable discovery document: {e}"),
        })
    }

    /// `GET` one object; None when it does not exist.
    pub async fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<LiveObject>, ClusterError> {
        let path = format!("{}/{}", resource.collection_path(namespace), name);
        match self.get_path(&path).await {
            Ok(object) => Ok(Some(object)),
            Err(ClusterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `LIST` a collection (every page), optionally with a label selector.
    pub async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<LiveObject>, ClusterError> {
        Ok(self.list_versioned(resource, namespace, selector).await?.0)
    }

    /// [`Cluster::list`], with the list's resourceVersion: where a watch of the same scope
    /// starts so that nothing is missed between the two.
    pub async fn list_versioned(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<(Vec<LiveObject>, String), ClusterError> {
        let base = resource.collection_path(namespace);
        let mut items = Vec::new();
        let mut continue_token: Option<String> = None;
        loop {
            let mut query = vec!["limit=500".to_owned()];
            if let Some(sel) = selector {
                query.push(format!("labelSelector={}", query_escape(sel)));
            }
            if let Some(token) = &continue_token {
                query.push(format!("continue={}", query_escape(token)));
            }
            let mut page = self
                .get_path(&format!("{base}?{}", query.join("&")))
                .await?;
            if let serde_json::Value::Array(list) = page["items"].take() {
                // Items of a LIST carry no apiVersion/kind; give them back, as kubectl does.
                items.extend(list.into_iter().map(|mut item| {
                    item["apiVersion"] = resource.api_version().into();
                    item["kind"] = resource.kind.clone().into();
                    item
                }));
            }
            continue_token = page["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if continue_token.is_none() {
                let version = page["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                return Ok((items, version));
            }
        }
    }

    /// `WATCH` a collection from `resource_version` (a LIST's, or the last one seen), with
    /// bookmarks on; the server ends the stream after `timeout` and the caller resumes from the
    /// last resourceVersion. A version the server no longer has is `Api { code: 410 }`, here or
    /// from [`WatchStream::next`]: list again.
    pub async fn watch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: Option<&str>,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<WatchStream, ClusterError> {
        let base = resource.collection_path(namespace);
        let mut query = vec![
            "watch=1".to_owned(),
            "allowWatchBookmarks=true".to_owned(),
            format!("timeoutSeconds={}", timeout.as_secs().max(1)),
        ];
        if !resource_version.is_empty() {
            query.push(format!(
                "resourceVersion={}",
                query_escape(resource_version)
            ));
        }
        if let Some(sel) = selector {
            query.push(format!("labelSelector={}", query_escape(sel)));
        }
        let what = format!("WATCH {base}");
        let request = http::Request::get(format!("{base}?{}", query.join("&")))
            .body(Vec::new())
            .map_err(|e| ClusterError::Request {
                server: self.target.server.clone(),
                what: what.clone(),
                reason: e.to_string(),
            })?;
        // The request timeout bounds the wait for the response's headers, not the stream.
        let events = self
            .request(&what, self.client.request_events::<LiveObject>(request))
            .await?;
        Ok(WatchStream {
            events: Box::pin(events),
            server: self.target.server.clone(),
            context: self.target.context.clone(),
            user: self.target.user.clone().unwrap_or_else(|| "(none)".into()),
            what,
        })
    }

    /// Server-side apply of `object` with `dryRun=All` and `force`, under `field_manager`: what
    /// the object would become if the reconciler applied it now. Nothing is written.
    pub async fn apply_dry_run(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        object: &LiveObject,
        field_manager: &str,
    ) -> Result<LiveObject, ClusterError> {
        self.apply(resource, namespace, object, field_manager, true, true)
            .await
    }

    /// Server-side apply of `object` under `field_manager`, creating it when it does not
    /// exist. `force` takes over fields other managers own (else their differing values are a
    /// 409 conflict). A `metadata.resourceVersion` (and `uid`) in `object` makes it conditional:
    /// 409 when the object changed (or was deleted) since that version. `dry_run` sends
    /// `dryRun=All`: nothing is written.
    pub async fn apply(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        object: &LiveObject,
        field_manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<LiveObject, ClusterError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let mut query = vec![format!("fieldManager={}", query_escape(field_manager))];
        if force {
            query.push("force=true".into());
        }
        let what = format!(
            "PATCH{} {}/{name}",
            if dry_run { " (dry run)" } else { "" },
            resource.qualified_name()
        );
        self.patch(
            resource,
            namespace,
            name,
            "application/apply-patch+yaml",
            object,
            query,
            dry_run,
            &what,
        )
        .await
    }

    /// A JSON patch (RFC 6902) of one object, as `field_manager`. `ops` usually starts with a
    /// `test` of `/metadata/resourceVersion`, so that it applies only to the version it was
    /// made for; the server answers 422 when a test fails. `dry_run` sends `dryRun=All`.
    pub async fn json_patch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        ops: &serde_json::Value,
        field_manager: &str,
        dry_run: bool,
    ) -> Result<LiveObject, ClusterError> {
        let query = vec![format!("fieldManager={}", query_escape(field_manager))];
        let what = format!(
            "PATCH{} (JSON patch) {}/{name}",
            if dry_run { " (dry run)" } else { "" },
            resource.qualified_name()
        );
        self.patch(
            resource,
            namespace,
            name,
            "application/json-patch+json",
            ops,
            query,
            dry_run,
            &what,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        content_type: &str,
        body: &serde_json::Value,
        mut query: Vec<String>,
        dry_run: bool,
        what: &str,
    ) -> Result<LiveObject, ClusterError> {
        if dry_run {
            query.insert(0, "dryRun=All".into());
        }
        let path = format!(
            "{}/{}?{}",
            resource.collection_path(namespace),
            name,
            query.join("&")
        );
        let body = serde_json::to_vec(body).map_err(|e| ClusterError::Request {
            server: self.target.server.clone(),
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        let request = http::Request::patch(&path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| ClusterError::Request {
                server: self.target.server.clone(),
                what: what.to_owned(),
                reason: e.to_string(),
            })?;
        self.request(what, self.client.request::<LiveObject>(request))
            .await
    }

    async fn get_path(&self, path: &str) -> Result<LiveObject, ClusterError> {
        let request =
            http::Request::get(path)
                .body(Vec::new())
                .map_err(|e| ClusterError::Request {
                    server: self.target.server.clone(),
                    what: format!("GET {path}"),
                    reason: e.to_string(),
                })?;
        let what = format!("GET {}", path.split('?').next().unwrap_or(path));
        self.request(&what, self.client.request::<LiveObject>(request))
            .await
    }

    /// `GET /version`.
    pub async fn server_version(&self) -> Result<Info, ClusterError> {
        self.request("GET /version", self.client.apiserver_version())
            .await
    }

    /// Runs one request under `--request-timeout` and classifies its failure.
    async fn request<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ClusterError> {
        let at = RequestContext {
            server: &self.target.server,
            context: &self.target.context,
            user: self.target.user.as_deref().unwrap_or("(none)"),
            what,
        };
        let result = match self.request_timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(ClusterError::Timeout {
                        server: self.target.server.clone(),
                        what: what.to_owned(),
                        after: limit,
                    });
                }
            },
            None => call.await,
        };
        result.map_err(|e| {
            let err = ClusterError::from_kube(e, &at);
            // A timeout inside the client (connect or read) is still the user's timeout.
            match (err, self.request_timeout) {
                (ClusterError::Unreachable { reason, .. }, Some(limit))
                    if reason == "connection timed out" =>
                {
                    ClusterError::Timeout {
                        server: self.target.server.clone(),
                        what: what.to_owned(),
                        after: limit,
                    }
                }
                (err, _) => err,
            }
        })
    }
}

/// Percent-encodes a query value (label selectors have `=`, `,`, `!` and spaces).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Cluster {
    /// `GET` a path with its query (an OpenAPI document: `/openapi/v3/apis/apps/v1?hash=...`)
    /// and returns the body as text, under `--request-timeout` and with errors classified.
    /// `accept` is the `Accept` header; None leaves the client's default.
    pub async fn get_text(
        &self,
        path_and_query: &str,
        accept: Option<&str>,
    ) -> Result<String, ClusterError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let what = format!("GET {path}");
        let mut builder = http::Request::get(path_and_query);
        if let Some(accept) = accept {
            builder = builder.header(http::header::ACCEPT, accept);
        }
        let request = builder
            .body(Vec::new())
            .map_err(|e| ClusterError::Request {
                server: self.target.server.clone(),
                what: what.clone(),
                reason: e.to_string(),
            })?;
        self.request(&what, self.client.request_text(request)).await
    }
}
