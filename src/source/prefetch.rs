//! Renders started early: as soon as a page of live objects names a reconciler, the renders
//! its objects will need start on blocking threads, at most one per core, while the LISTs and
//! the comparison of other objects go on. `Locator::locate` then finds each render done, or
//! waits for the one it needs.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Locator, ReconcilerCache, Rule};
use crate::cluster::cache::CachedDiscovery;
use crate::cluster::{Cluster, LiveObject};
use crate::markers::{
    ARGO_INSTANCE, ARGO_TRACKING_ID, FLUX_HELM_NAME, FLUX_HELM_NAMESPACE, FLUX_NAME, FLUX_NAMESPACE,
};
use crate::object::ObjectKey;

/// The renders started in one evaluation.
pub struct Prefetch {
    locator: Arc<Locator>,
    slots: Arc<Semaphore>,
    /// Reconcilers already seen (their labels), and pointers already started.
    seen: HashSet<String>,
    started: HashSet<String>,
}

impl Prefetch {
    /// Renders through `locator`, as many at once as there are cores.
    pub fn new(locator: Arc<Locator>) -> Prefetch {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Prefetch {
            locator,
            slots: Arc::new(Semaphore::new(cores)),
            seen: HashSet::new(),
            started: HashSet::new(),
        }
    }

    /// Starts the renders of the reconcilers `objects` name that were not started yet. Only
    /// the first object of each reconciler is looked at (one cached lookup of the reconciler);
    /// a reconciler that cannot be read is left for `locate` to report.
    pub async fn start(
        &mut self,
        cluster: &Cluster,
        discovery: &CachedDiscovery,
        reconcilers: &ReconcilerCache,
        objects: &[LiveObject],
    ) {
        for live in objects {
            let Some(reconciler) = reconciler_of(live) else {
                continue;
            };
            if !self.seen.insert(reconciler) {
                continue;
            }
            let Some(key) = ObjectKey::of(live) else {
                continue;
            };
            let Ok(Some(pointer)) = super::pointer(cluster, discovery, reconcilers, live).await
            else {
                continue;
            };
            if !matches!(pointer.rule, Rule::Flux | Rule::ArgoCd | Rule::Helm)
                || !self.started.insert(format!("{pointer:?}"))
            {
                continue;
            }
            let locator = self.locator.clone();
            let slots = self.slots.clone();
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || locator.prefetch(&pointer, &key)).await;
            });
        }
    }
}

/// What names an object's reconciler, for the labels the Flux and Argo CD rules read.
fn reconciler_of(live: &LiveObject) -> Option<String> {
    let labels = &live["metadata"]["labels"];
    let annotations = &live["metadata"]["annotations"];
    if let (Some(name), Some(ns)) = (labels[FLUX_NAME].as_str(), labels[FLUX_NAMESPACE].as_str()) {
        return Some(format!("flux:{ns}/{name}"));
    }
    if let (Some(name), Some(ns)) = (
        labels[FLUX_HELM_NAME].as_str(),
        labels[FLUX_HELM_NAMESPACE].as_str(),
    ) {
        return Some(format!("helm:{ns}/{name}"));
    }
    if let Some(id) = annotations[ARGO_TRACKING_ID].as_str() {
        // `<app>:<group>/<kind>:<ns>/<name>`: the application is what the objects share.
        return Some(format!("argo:{}", id.split(':').next().unwrap_or(id)));
    }
    labels[ARGO_INSTANCE]
        .as_str()
        .map(|app| format!("argo-instance:{app}"))
}
