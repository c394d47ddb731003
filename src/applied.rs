//! What a reconciler really sends to the API server for a document Git declares, where that is
//! not the document as rendered. Pure.
//!
//! Flux's kustomize-controller normalises every object of a built-in kind before it applies it
//! (fluxcd/pkg/ssa `normalize.UnstructuredList`, found by running the real controller in the
//! tests): it converts the object to its Go type and back, which writes every struct field that
//! is not a pointer as `{}` (a Deployment's `strategy`, a container's `resources`, a pod
//! template's `metadata`); it sets `protocol: TCP` on Service ports and on the ports of a pod's
//! containers; and it moves a Secret's `stringData` into `data`. Roles and ClusterRoles are left
//! as they are (an upstream serialisation bug), and so is every custom resource. Its field
//! manager then owns those fields. Compared with the document as rendered they would read as
//! fields the reconciler applied and Git dropped, a dry run without them would give their
//! ownership away, and a revert without them would be undone by the next reconcile.
//!
//! Which struct fields Go always writes comes from the server's OpenAPI schema: a property of a
//! built-in whose published `default` is `{}` is one (kube-openapi gives that default to every
//! non-pointer struct member).

use serde_json::{Map, Value};

use crate::schema::{Node, Schemas};

/// The kinds whose pod spec's container ports get `protocol: TCP`, with the path to the pod
/// spec.
const POD_SPECS: &[(&str, &[&str])] = &[
    ("Pod", &["spec"]),
    ("Deployment", &["spec", "template", "spec"]),
    ("StatefulSet", &["spec", "template", "spec"]),
    ("DaemonSet", &["spec", "template", "spec"]),
    ("ReplicaSet", &["spec", "template", "spec"]),
    ("Job", &["spec", "template", "spec"]),
    (
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
];

/// Makes `desired` what kustomize-controller applies for it, by the schema of its own
/// apiVersion and kind (the Go type Flux converts it to). Without a schema, or for a kind that
/// is not built in, the object is left as it is.
pub fn as_flux_applies(desired: &mut Value, schemas: &Schemas) {
    let api_version = desired["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = desired["kind"].as_str().unwrap_or_default();
    let Some(node) = schemas.kind(group, version, kind) else {
        return;
    };
    if !node
        .definition()
        .is_some_and(|d| d.starts_with("io.k8s.api."))
    {
        return;
    }
    let kind = desired["kind"].as_str().unwrap_or_default().to_owned();
    if desired["apiVersion"] == "rbac.authorization.k8s.io/v1"
        && matches!(kind.as_str(), "Role" | "ClusterRole")
    {
        return;
    }
    if let Some(object) = desired.as_object_mut() {
        for (name, value) in object.iter_mut() {
            // Flux drops status and clears metadata.creationTimestamp itself.
            if name != "status" && name != "metadata" {
                write_structs(value, node.field(name));
            }
        }
    }
    if kind == "Service"
        && desired["apiVersion"] == "v1"
        && let Some(ports) = desired.get_mut("spec").and_then(|s| s.get_mut("ports"))
    {
        default_protocols(ports);
    }
    if let Some((_, path)) = POD_SPECS.iter().find(|(k, _)| *k == kind) {
        let spec = path.iter().try_fold(&mut *desired, |v, p| v.get_mut(*p));
        if let Some(containers) = spec
            .and_then(|s| s.get_mut("containers"))
            .and_then(Value::as_array_mut)
        {
            // Never `container["ports"]`: indexing would write `ports: null`.
            for ports in containers.iter_mut().filter_map(|c| c.get_mut("ports")) {
                default_protocols(ports);
            }
        }
    }
    if kind == "Secret" && desired["apiVersion"] == "v1" {
        crate::drift::secret_string_data(desired);
    }
}

/// Writes `{}` for every struct field of `value` (and of its structs, lists and maps) that it
/// leaves out and Go always serialises.
fn write_structs(value: &mut Value, node: Option<Node<'_>>) {
    let Some(node) = node else {
        return;
    };
    match value {
        Value::Object(map) => {
            for name in node.properties() {
                let child = node.field(name);
                if !map.contains_key(name) && child.is_some_and(is_struct_default) {
                    map.insert(name.to_owned(), Value::Object(Map::new()));
                }
            }
            for (name, child) in map.iter_mut() {
                write_structs(child, node.field(name));
            }
        }
        Value::Array(items) => {
            for item in items {
                write_structs(item, node.items());
            }
        }
        _ => {}
    }
}

fn is_struct_default(node: Node<'_>) -> bool {
    node.declared_default()
        .is_some_and(|d| d.as_object().is_some_and(Map::is_empty))
}

/// `protocol: TCP` on each port of a list that leaves it out.
fn default_protocols(ports: &mut Value) {
    for port in ports.as_array_mut().into_iter().flatten() {
        if let Some(port) = port.as_object_mut()
            && port.get("protocol").is_none_or(|p| p.as_str() == Some(""))
        {
            port.insert("protocol".into(), "TCP".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::Schemas;

    /// The parts of the apps/v1, v1 and rbac schemas the tests need, as the server publishes
    /// them: `default: {}` on struct fields, none on pointers.
    const SCHEMAS: &str = r##"{"components": {"schemas": {
      "io.k8s.api.apps.v1.Deployment": {"type": "object",
        "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
        "properties": {
          "apiVersion": {"type": "string"}, "kind": {"type": "string"},
          "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
          "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]},
          "status": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStatus"}]}}},
      "io.k8s.api.apps.v1.DeploymentSpec": {"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "selector": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}]},
        "strategy": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}]},
        "template": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}]}}},
      "io.k8s.api.apps.v1.DeploymentStrategy": {"type": "object", "properties": {
        "type": {"type": "string"},
        "rollingUpdate": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.RollingUpdateDeployment"}]}}},
      "io.k8s.api.apps.v1.RollingUpdateDeployment": {"type": "object", "properties": {}},
      "io.k8s.api.apps.v1.DeploymentStatus": {"type": "object", "properties": {}},
      "io.k8s.api.core.v1.PodTemplateSpec": {"type": "object", "properties": {
        "metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
        "spec": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}}},
      "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
        "containers": {"type": "array", "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}]}},
        "securityContext": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSecurityContext"}]}}},
      "io.k8s.api.core.v1.PodSecurityContext": {"type": "object", "properties": {}},
      "io.k8s.api.core.v1.Container": {"type": "object", "properties": {
        "name": {"type": "string", "default": ""},
        "image": {"type": "string"},
        "ports": {"type": "array", "items": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}]}},
        "resources": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"}]}}},
      "io.k8s.api.core.v1.ContainerPort": {"type": "object", "properties": {
        "containerPort": {"type": "integer", "default": 0}, "protocol": {"type": "string", "default": "TCP"}}},
      "io.k8s.api.core.v1.ResourceRequirements": {"type": "object", "properties": {
        "limits": {"type": "object", "additionalProperties": {"type": "string"}}}},
      "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
        "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
      "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector": {"type": "object", "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
      "io.k8s.api.rbac.v1.Role": {"type": "object",
        "x-kubernetes-group-version-kind": [{"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "Role"}],
        "properties": {"metadata": {"default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                       "aggregation": {"default": {}, "type": "object", "properties": {}}}},
      "com.example.v1.Widget": {"type": "object",
        "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Widget"}],
        "properties": {"spec": {"default": {}, "type": "object", "properties": {}}}}
    }}}"##;

    fn schemas() -> Schemas {
        let mut schemas = Schemas::new();
        schemas.add_document("apps/v1", SCHEMAS).unwrap();
        schemas
    }

    #[test]
    fn struct_fields_are_written_as_go_writes_them_and_ports_get_tcp() {
        let schemas = schemas();
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
                        {"name": "udp", "ports": [{"containerPort": 53, "protocol": "UDP"}],
                         "resources": {"limits": {"cpu": "1"}}},
                    ]},
                },
            },
        });
        as_flux_applies(&mut d, &schemas);
        assert_eq!(
            d["spec"],
            json!({
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": "nginx", "resources": {},
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "udp", "ports": [{"containerPort": 53, "protocol": "UDP"}],
                         "resources": {"limits": {"cpu": "1"}}},
                    ]},
                },
            }),
            "pointers (selector's absence, securityContext) stay out, scalars keep no zero value"
        );
        assert!(d.get("status").is_none(), "status is never written");

        // No ports, no `ports`; no spec, no `spec`.
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                           "spec": {"template": {"spec": {"containers": [{"name": "w"}]}}}});
        as_flux_applies(&mut d, &schemas);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "w", "resources": {}})
        );
    }

    #[test]
    fn roles_custom_resources_and_unknown_kinds_stay_as_written() {
        let schemas = schemas();
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": "r"}});
        let mut d = role.clone();
        assert!(
            schemas
                .kind("rbac.authorization.k8s.io", "v1", "Role")
                .is_some()
        );
        as_flux_applies(&mut d, &schemas);
        assert_eq!(d, role);

        let widget = json!({"apiVersion": "apps/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let mut d = widget.clone();
        as_flux_applies(&mut d, &schemas);
        assert_eq!(d, widget, "not a built-in");
        as_flux_applies(&mut d, &Schemas::new());
        assert_eq!(d, widget, "no schema");
    }

    #[test]
    fn service_ports_get_tcp_and_secret_string_data_moves_to_data() {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                           "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}});
        let mut schemas = Schemas::new();
        schemas
            .add_document(
                "v1",
                r#"{"components": {"schemas": {
                  "io.k8s.api.core.v1.Service": {"type": "object",
                    "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}],
                    "properties": {"spec": {"type": "object", "properties": {}}}},
                  "io.k8s.api.core.v1.Secret": {"type": "object",
                    "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Secret"}],
                    "properties": {}}}}}"#,
            )
            .unwrap();
        let mut bare = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}});
        as_flux_applies(&mut bare, &schemas);
        assert!(bare.get("spec").is_none(), "{bare}");
        as_flux_applies(&mut s, &schemas);
        assert_eq!(
            s["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
                                "data": {"a": "YQ=="}, "stringData": {"b": "b"}});
        as_flux_applies(&mut secret, &schemas);
        assert_eq!(secret["data"], json!({"a": "YQ==", "b": "Yg=="}));
        assert!(secret.get("stringData").is_none());
    }
}
