//! Applying as Argo CD's application controller does, for the tests and the benchmarks (there
//! is no Argo CD controller here).

use anyhow::Result;
use serde_json::{Value, json};

use crate::ControlPlane;

/// The field manager Argo CD's application controller applies as.
pub const FIELD_MANAGER: &str = "argocd-controller";

/// Applies `manifests` as Argo CD's controller does for Application `app` of namespace `ns`:
/// every object in that destination namespace with its tracking id
/// (`<ns>_<app>:<group>/<kind>:<ns>/<name>`), server-side as argocd-controller.
pub fn apply(cp: &ControlPlane, ns: &str, app: &str, manifests: &str) -> Result<()> {
    let objects = cp.kubectl_run(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(manifests),
    )?;
    // One JSON document per object, one after the other.
    let mut items = Vec::new();
    for object in serde_json::Deserializer::from_str(&objects).into_iter::<Value>() {
        let mut o = object?;
        let group = o["apiVersion"]
            .as_str()
            .and_then(|v| v.rsplit_once('/'))
            .map(|(g, _)| g.to_owned())
            .unwrap_or_default();
        let id = format!(
            "{ns}_{app}:{group}/{}:{ns}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        o["metadata"]["namespace"] = ns.into();
        o["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = id.into();
        items.push(o);
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    cp.kubectl_run(
        &[
            "apply",
            "-n",
            ns,
            "--server-side",
            &format!("--field-manager={FIELD_MANAGER}"),
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    )?;
    Ok(())
}
