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
    // Both ring and aws-lc are linked (gix's HTTPS brings aws-lc), so rustls has no default
    // provider of its own: the first call installs ring; later ones find it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
                reason: crate::text::single_line(&e.to_string()),
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
    // kube's own retry layer tries 15 times with waits of up to 1000 s: minutes, for a server
    // that stays overloaded. Ours ([`retrying`]) is bounded.
    config.default_retry = false;
    if let Some(limit) = options.request_timeout {
        config.connect_timeout = Some(config.connect_timeout.map_or(limit, |c| c.min(limit)));
        config.read_timeout = Some(limit);
        config.write_timeout = Some(limit);
    }
    let client = build_client(config, &target, options.request_timeout).await?;
    Ok(Cluster {
        target,
        client,
        request_timeout: options.request_timeout,
    })
}

/// Builds the client. An exec credential plugin runs here, and may fail or hang (a login
/// that waits for a browser, a dead network): it is run off the async threads and waited for
/// no longer than `--request-timeout`.
async fn build_client(
    config: kube::Config,
    target: &Target,
    request_timeout: Option<Duration>,
) -> Result<kube::Client, ClusterError> {
    let plugin = config
        .auth_info
        .exec
        .as_ref()
        .and_then(|exec| exec.command.clone());
    let user = target.user.clone().unwrap_or_else(|| "(none)".to_owned());
    let build = tokio::task::spawn_blocking(move || kube::Client::try_from(config));
    let built = match request_timeout {
        Some(limit) => match tokio::time::timeout(limit, build).await {
            Ok(built) => built,
            Err(_) => {
                return Err(ClusterError::Credentials {
                    user,
                    reason: format!(
                        "the exec plugin '{}' did not answer within {} (--request-timeout)",
                        plugin.as_deref().unwrap_or("?"),
                        super::error::humanize(limit)
                    ),
                });
            }
        },
        None => build.await,
    };
    let built = built.map_err(|e| ClusterError::InvalidConfig {
        context: target.context.clone(),
        reason: format!("building the client failed: {e}"),
    })?;
    built.map_err(|e| match e {
        kube::Error::Auth(auth) => ClusterError::Credentials {
            user,
            reason: credential_failure(&auth, plugin.as_deref().unwrap_or("?")),
        },
        other => ClusterError::InvalidConfig {
            context: target.context.clone(),
            reason: crate::text::single_line(&other.to_string()),
        },
    })
}

/// Why credentials could not be had, without what kube's own message carries: the plugin's
/// whole command line with its environment, and its output (which may hold a token).
fn credential_failure(err: &kube::client::AuthError, plugin: &str) -> String {
    use kube::client::AuthError;
    match err {
        AuthError::AuthExecStart(io) => format!("cannot run the exec plugin '{plugin}': {io}"),
        AuthError::AuthExecRun { out, .. } => {
            // Its stderr went to ours already (interactive mode); else its last line says why.
            let said = String::from_utf8_lossy(&out.stderr);
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            match last {
                Some(line) => format!(
                    "the exec plugin '{plugin}' failed ({}): {}",
                    out.status,
                    crate::text::single_line(line)
                ),
                None => format!("the exec plugin '{plugin}' failed ({})", out.status),
            }
        }
        AuthError::AuthExecParse(_) | AuthError::ExecPluginFailed => {
            format!("the exec plugin '{plugin}' did not print an ExecCredential with a status")
        }
        other => crate::text::single_line(&other.to_string()),
    }
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
        reason: crate::text::single_line(&e.to_string()),
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
                message: crate::text::single_line(&status.message),
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
            documents.push(self.send(&what, request).await?);
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
        let mut items = Vec::new();
        let version = self
            .list_pages(resource, namespace, selector, |page| {
                items.extend(page);
                std::future::ready(())
            })
            .await?;
        Ok((items, version))
    }

    /// [`Cluster::list_versioned`], one page (500 objects) at a time: `page` gets each as it
    /// arrives, and the next is asked for once it returns, so a caller that waits holds the
    /// LIST back and memory follows the pages, not the whole list.
    pub async fn list_pages<F, Fut>(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selector: Option<&str>,
        mut page_done: F,
    ) -> Result<String, ClusterError>
    where
        F: FnMut(Vec<LiveObject>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let base = resource.collection_path(namespace);
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
            continue_token = page["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if let serde_json::Value::Array(list) = page["items"].take() {
                // Items of a LIST carry no apiVersion/kind; give them back, as kubectl does.
                let api_version = resource.api_version();
                page_done(
                    list.into_iter()
                        .map(|mut item| {
                            item["apiVersion"] = api_version.as_str().into();
                            item["kind"] = resource.kind.as_str().into();
                            item
                        })
                        .collect(),
                )
                .await;
            }
            if continue_token.is_none() {
                let version = page["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                return Ok(version);
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
        self.send_json(what, request).await
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
        self.send_json(&what, request).await
    }

    /// `GET /version`.
    pub async fn server_version(&self) -> Result<Info, ClusterError> {
        let request = http::Request::get("/version")
            .body(Vec::new())
            .expect("a GET request with a static path is valid");
        self.send_json("GET /version", request).await
    }

    /// [`Cluster::send`], with the answer read as JSON.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<T, ClusterError> {
        let text = self.send(what, request).await?;
        serde_json::from_str(&text).map_err(|e| ClusterError::Request {
            server: self.target.server.clone(),
            what: what.to_owned(),
            reason: format!("unreadable answer: {e}"),
        })
    }

    /// Sends one request and returns the body of its answer. An answer of 429 (too many
    /// requests), 503 (unavailable) or 504 (gateway timeout) is asked again, after the server's
    /// `Retry-After` or an exponential backoff, at most [`ATTEMPTS`] times in all.
    /// `--request-timeout` bounds the whole, retries included.
    async fn send(
        &self,
        what: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<String, ClusterError> {
        self.request(what, retrying(&self.client, request)).await
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

/// Tries of one request in all, when the server answers 429, 503 or 504.
const ATTEMPTS: u32 = 5;
/// The first wait when the server names none; it doubles after each try (0.25, 0.5, 1, 2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries, whatever `Retry-After` asks.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Sends `request` until it gets an answer that is not 429, 503 or 504, or [`ATTEMPTS`] are
/// used; the last answer's message then says how many. 429 and 503 mean the server did
/// not act on the request (API priority and fairness rejects before doing anything; 503 is an
/// apiserver not ready or a proxy without a backend); after a 504 it may have, but every write
/// we send is a server-side apply or a patch guarded by a `test` of `resourceVersion`, so
/// trying again is safe for all of them.
async fn retrying(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
) -> Result<String, kube::Error> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let retry_after = match send_once(client, copy_request(&request)).await {
            Err((kube::Error::Api(status), retry_after))
                if matches!(status.code, 429 | 503 | 504) && attempt < ATTEMPTS =>
            {
                retry_after
            }
            Err((kube::Error::Api(mut status), _)) if matches!(status.code, 429 | 503 | 504) => {
                status.message = format!("{} (gave up after {attempt} attempts)", status.message);
                return Err(kube::Error::Api(status));
            }
            result => return result.map_err(|(e, _)| e),
        };
        let wait = retry_after.unwrap_or(backoff).min(MAX_BACKOFF);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// One try: the body of a 2xx answer; else the server's `Status` as [`kube::Error::Api`] (as
/// kube's own request functions make it), with the wait `Retry-After` asks for, if any (the
/// header, else the Status's `details.retryAfterSeconds`).
async fn send_once(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
) -> Result<String, (kube::Error, Option<Duration>)> {
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(|e| (e, None))?;
    let code = response.status();
    let header_wait = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| (e, None))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| (kube::Error::FromUtf8(e), None))?;
    if !(code.is_client_error() || code.is_server_error()) {
        return Ok(text);
    }
    let status = match serde_json::from_str::<kube::core::Status>(&text) {
        Ok(status) if status.code != 0 => status,
        // A proxy or load balancer answers in text or HTML: its start is enough to say.
        _ => {
            let start: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let start: String = start.chars().take(200).collect();
            kube::core::Status::failure(&start, code.canonical_reason().unwrap_or(""))
                .with_code(code.as_u16())
        }
    };
    let wait = header_wait.or_else(|| {
        status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.into()))
    });
    Err((kube::Error::Api(Box::new(status)), wait))
}

/// A copy of a request to send again (`http::Request` is not `Clone`).
fn copy_request(request: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut copy = http::Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
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
        self.send(&what, request).await
    }
}
