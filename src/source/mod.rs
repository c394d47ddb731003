//! Live object → where it came from. The rules of DESIGN.md are tried in order and the first
//! that answers wins: our annotations, kustomize's origin, Flux, Argo CD, then a search of the
//! repository. [`pointer`] reads what the object and its reconciler say (cluster only);
//! [`locate`] then reads Git to find the file, lines and commits.

mod helm;
mod locate;
mod prefetch;
mod reconciler;

pub use helm::{
    ChartTrace, HELM_CONTROLLER, HelmSource, HelmTrace, ReleaseRecord, ValuesSource, decode_release,
};
pub use locate::{GitReads, Located, Locator, RepoChoice};
pub use prefetch::Prefetch;
pub use reconciler::{ArgoHelm, ArgoValueFile, Reconciler, ReconcilerCache, reconciler_pointer};

use serde::Serialize;

use crate::cluster::{ClusterError, LiveObject};
use crate::git::{GitError, RepoPath, RepoUrl};
use crate::markers::{self, BadAnnotation};
use crate::object::ObjectKey;
use crate::render::{Overlay, RenderError};

/// Which rule found the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `kubectl-gitops.dev/*`, written by `stamp`.
    Annotations,
    /// `config.kubernetes.io/origin`.
    KustomizeOrigin,
    /// A Flux Kustomization's labels.
    Flux,
    /// Argo CD's tracking id or instance label.
    ArgoCd,
    /// helm-controller's labels: a Flux HelmRelease.
    Helm,
    /// A search of the repository for the same group, kind, namespace and name.
    Fallback,
}

impl Rule {
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Annotations => "kubectl-gitops annotations",
            Rule::KustomizeOrigin => "kustomize origin annotation",
            Rule::Flux => "Flux Kustomization labels",
            Rule::ArgoCd => "Argo CD tracking",
            Rule::Helm => "Flux HelmRelease labels",
            Rule::Fallback => "search of the repository",
        }
    }
}

/// Where to look in Git, as the object and its reconciler tell it (nothing read from Git yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    pub rule: Rule,
    /// The repository URL; None when only a local checkout can answer (origin without repo).
    pub repo: Option<RepoUrl>,
    /// The file, when the rule names one.
    pub file: Option<RepoPath>,
    /// kustomize's origin path, relative to a build directory we do not know.
    pub origin_path: Option<String>,
    /// The directory a reconciler renders (Flux `spec.path`, Argo `spec.source.path`).
    pub render_root: Option<RepoPath>,
    /// Whether a render root without a kustomization gets a generated one (Flux), or is read
    /// as plain manifests (Argo), and whether subdirectories count (Argo `directory.recurse`).
    pub generate_kustomization: bool,
    pub recurse: bool,
    pub overlay: Overlay,
    /// Flux `postBuild.substitute` variables; values from Secrets are used, never shown.
    pub substitute: Option<std::collections::BTreeMap<String, String>>,
    /// The names of the `substitute` variables whose values come from a Secret.
    pub secret_variables: Vec<String>,
    /// The commit that was applied, when known.
    pub applied_commit: Option<String>,
    /// A commit read as applied, with a warning, when `applied_commit` is not in the
    /// repository (an abbreviated id from a Helm release's chart version whose commit was
    /// force-pushed away), and what it is.
    pub applied_fallback: Option<(String, String)>,
    /// The branch, tag or revision the reconciler follows.
    pub tracked_ref: Option<String>,
    pub reconciler: Option<Reconciler>,
    /// For [`Rule::Helm`]: the release, its chart and values, and what it applied.
    pub helm: Option<std::sync::Arc<HelmSource>>,
    /// For [`Rule::ArgoCd`]: how the source renders when it is a Helm chart.
    pub argo_helm: Option<std::sync::Arc<ArgoHelm>>,
    /// An Argo CD multi-source Application's other sources, in order: an object is the first
    /// source's that declares it.
    pub more_sources: Vec<Pointer>,
    /// The sources of the same Application that cannot be used (a chart from a Helm
    /// repository...), each as `field: why`: the answer for an object no other source declares.
    pub unusable_sources: Vec<String>,
}

impl Pointer {
    fn new(rule: Rule) -> Pointer {
        Pointer {
            rule,
            repo: None,
            file: None,
            origin_path: None,
            render_root: None,
            generate_kustomization: false,
            recurse: false,
            overlay: Overlay::default(),
            substitute: None,
            secret_variables: Vec::new(),
            applied_commit: None,
            applied_fallback: None,
            tracked_ref: None,
            reconciler: None,
            helm: None,
            argo_helm: None,
            more_sources: Vec::new(),
            unusable_sources: Vec::new(),
        }
    }

    /// The values that come from Secrets and go into what this source renders, for reports
    /// to hide: each `postBuild` variable substituted from a Secret, and a HelmRelease's
    /// [Secret values](HelmSource::secret_texts); never shown.
    pub fn secret_texts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .substitute
            .iter()
            .flat_map(|vars| {
                self.secret_variables
                    .iter()
                    .filter_map(|name| vars.get(name).cloned())
            })
            .collect();
        if let Some(helm) = &self.helm {
            out.extend(helm.secret_texts());
        }
        out.extend(self.more_sources.iter().flat_map(Pointer::secret_texts));
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }
}

/// Why an object's source could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("bad annotation {0}")]
    BadAnnotation(#[from] BadAnnotation),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{reconciler} named by the object's labels does not exist")]
    ReconcilerMissing { reconciler: String },
    /// A Helm release that cannot be read or rendered: what and the fix, in one line.
    #[error("{release}: {reason}")]
    Helm { release: String, reason: String },
    /// A Secret the reconciler renders values from that the user may not read: which of the
    /// object's values came from it is unknown (what, and the fix).
    #[error("{0}")]
    SecretUnreadable(String),
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    /// The object's markers name a reconciler object of a type the cluster does not serve.
    #[error(
        "{named} is named by {by}, but the cluster has no {crd} CRD: the object cannot be mapped \
         to its source without it (install the CRD, or check that this is the right context)"
    )]
    MissingCrd {
        named: String,
        by: String,
        crd: String,
    },
    #[error("{file} at {commit} does not declare {key}")]
    NotDeclared {
        file: String,
        commit: String,
        key: String,
    },
    /// An error met before in this run, for another object using the same file.
    #[error("{0}")]
    Repeated(String),
    #[error("no source found for {key}; looked for: {}", looked_for.join("; "))]
    NoSource {
        key: String,
        looked_for: Vec<String>,
    },
}

/// Reads what the object itself says, in rule order, asking the cluster for Flux and Argo CD
/// objects. Ok(None) means "no rule but the fallback search can answer".
pub async fn pointer(
    cluster: &crate::cluster::Cluster,
    discovery: &crate::cluster::cache::CachedDiscovery,
    cache: &ReconcilerCache,
    live: &LiveObject,
) -> Result<Option<Pointer>, SourceError> {
    let annotation = |key: &str| {
        live["metadata"]["annotations"][key]
            .as_str()
            .map(str::to_owned)
    };
    let label = |key: &str| live["metadata"]["labels"][key].as_str().map(str::to_owned);

    if let Some(stamp) = markers::parse_stamp(annotation)? {
        let mut p = Pointer::new(Rule::Annotations);
        p.repo = Some(stamp.repo);
        p.file = Some(stamp.path);
        p.applied_commit = stamp.commit;
        return Ok(Some(p));
    }
    if let Some(text) = annotation(markers::KUSTOMIZE_ORIGIN) {
        let origin = markers::parse_origin(&text)?;
        let mut p = Pointer::new(Rule::KustomizeOrigin);
        p.repo = origin.repo;
        p.origin_path = Some(origin.path);
        p.tracked_ref = origin.reference;
        return Ok(Some(p));
    }
    let key = ObjectKey::of(live);
    if let Some(p) = reconciler_pointer(
        cluster,
        discovery,
        cache,
        live,
        key.as_ref(),
        &label,
        &annotation,
    )
    .await?
    {
        return Ok(Some(p));
    }
    // Helm's own markers without a reconciler that we read: say that Helm made it.
    if let Some(release) = annotation(markers::HELM_RELEASE_NAME) {
        let ns = annotation(markers::HELM_RELEASE_NAMESPACE).unwrap_or_default();
        return Err(SourceError::Unsupported {
            what: format!(
                "an object of Helm release {ns}/{release}, which no Flux HelmRelease manages \
                 (installed with helm itself?), as a source"
            ),
        });
    }
    Ok(None)
}

/// Whether an object carries any marker a mapping rule reads (without the fallback search):
/// the cheap test of which objects `diff` considers when no object is named.
pub fn has_marker(live: &LiveObject) -> bool {
    let annotations = &live["metadata"]["annotations"];
    let labels = &live["metadata"]["labels"];
    [
        markers::REPO,
        markers::PATH,
        markers::KUSTOMIZE_ORIGIN,
        markers::ARGO_TRACKING_ID,
    ]
    .iter()
    .any(|k| annotations[*k].is_string())
        || labels[markers::FLUX_NAME].is_string()
        || (labels[markers::FLUX_HELM_NAME].is_string()
            && annotations[markers::HELM_RELEASE_NAME].is_string())
        || labels[markers::ARGO_INSTANCE].is_string()
}
