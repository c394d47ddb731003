//! What the API server fills in when a manifest leaves a field out, so that the offline
//! comparison does not call a server default drift. Pure: a table and lookups.
//!
//! Two sources, both keyed by the OpenAPI definition (type) the field belongs to, so a default
//! applies wherever that type appears (a PodSpec in a Deployment, a Job, a CronJob...):
//!
//! 1. The `default` the server's own OpenAPI v3 schema publishes for a field
//!    ([`crate::schema::Node::declared_default`]): built-ins' declarative `+default` markers
//!    (a container port's `protocol: TCP`, a gRPC probe's `service: ""`) and zero values of
//!    fields Go always serialises, and every CRD's structural defaults. Read at run time.
//! 2. [`TABLE`]: the imperative defaults, which the server applies but does not publish.
//!
//! How [`TABLE`] was derived: from k8s.io/kubernetes v1.35.4 (the version the test control
//! plane pins), every `SetDefaults_*` function in `pkg/apis/*/v1/defaults.go` and
//! `pkg/apis/autoscaling/v2/defaults.go` for the groups kube-apiserver serves at v1 (core,
//! apps, batch, networking, rbac, autoscaling, scheduling, discovery, storage,
//! admissionregistration), read by hand; `zz_generated.defaults.go` of each group says which
//! types a function reaches. An assignment `if obj.F == nil/"" { obj.F = CONSTANT }` is one row,
//! under the definition that holds `F`. A function that takes a whole object
//! (`SetDefaults_Job(*Job)`) defaults its spec in that kind only: those rows name the kind
//! (CronJob's `jobTemplate` holds a JobSpec the server does not default). A default that holds
//! only when a sibling field has a value (a Subject's `apiGroup` for kind User) says so in
//! `when`; one made of sibling values (a LimitRange item's `default` is its `max`) is a
//! [`Val::Union`]. Three rows are not defaulting but have its effect, found by the integration
//! test `tests/it/defaults.rs`: apps/v1 conversion writes `apiVersion` and `kind` into each of a
//! StatefulSet's `volumeClaimTemplates`, and a resourceFieldRef's `divisor`, a Quantity that is
//! not a pointer, is always serialised (`"0"`). Left out on purpose, because
//! the value depends on more than a sibling or on the original manifest (the offline report
//! says "may be a server default" there instead): a container's `imagePullPolicy` (from the
//! image tag), a Service port's `targetPort` (= `port`), `externalTrafficPolicy`, a Job's
//! `completions` and its labels from the template, a ReplicationController's selector, a volume
//! with no source becoming `emptyDir`, the Namespace name label, a Pod's requests copied from its
//! limits and its host ports under `hostNetwork`, the StatefulSet `rollingUpdate` made only when
//! `type` was empty, HPA v2 `behavior` rules (different for scale up and down), and defaults
//! behind feature gates that are off by default. Status fields are not compared.

use serde_json::Value;

use crate::schema::Node;

/// One imperative default: in objects of type `definition`, field `field` left out becomes
/// `value`.
#[derive(Debug)]
pub struct Row {
    /// The OpenAPI definition that holds the field.
    pub definition: &'static str,
    pub field: &'static str,
    /// The value the server stores.
    pub value: Val,
    /// Only in objects of this kind (the function defaults a whole object); None: wherever the
    /// type appears.
    pub kind: Option<&'static str>,
    /// Only when this is true of the sibling fields.
    pub when: When,
    /// The function that sets it, in `pkg/apis/<group>/<version>/defaults.go`.
    pub from: &'static str,
}

/// A default value.
#[derive(Debug, Clone, Copy)]
pub enum Val {
    /// This JSON text.
    Json(&'static str),
    /// The union of these sibling maps, the first one's value winning for a key in several (a
    /// LimitRange item's `defaultRequest` is its `default`, then its `min`).
    Union(&'static [&'static str]),
}

/// A condition on the sibling fields of a defaulted field.
#[derive(Debug, Clone, Copy)]
pub enum When {
    Always,
    /// The sibling is one of these strings.
    OneOf(&'static str, &'static [&'static str]),
    /// The sibling is absent or empty.
    Absent(&'static str),
    /// The sibling is present and not empty.
    Present(&'static str),
}

macro_rules! row {
    ($def:literal . $field:literal = $value:literal, $from:literal) => {
        row!($def.$field = $value, None, When::Always, $from)
    };
    ($def:literal . $field:literal = $value:literal, in $kind:literal, $from:literal) => {
        row!($def.$field = $value, Some($kind), When::Always, $from)
    };
    ($def:literal . $field:literal = $value:literal, when $when:expr, $from:literal) => {
        row!($def.$field = $value, None, $when, $from)
    };
    ($def:literal . $field:literal = $value:literal, $kind:expr, $when:expr, $from:literal) => {
        Row {
            definition: $def,
            field: $field,
            value: Val::Json($value),
            kind: $kind,
            when: $when,
            from: $from,
        }
    };
}

/// The imperative defaults of kube-apiserver v1.35.4 (see the module comment for how they were
/// derived). `{}` means the server makes the object, then defaults its own fields.
pub const TABLE: &[Row] = &[
    // core/v1
    row!("io.k8s.api.core.v1.Container"."terminationMessagePath" = r#""/dev/termination-log""#, "SetDefaults_Container"),
    row!("io.k8s.api.core.v1.Container"."terminationMessagePolicy" = r#""File""#, "SetDefaults_Container"),
    row!("io.k8s.api.core.v1.EphemeralContainer"."terminationMessagePath" = r#""/dev/termination-log""#, "SetDefaults_EphemeralContainer"),
    row!("io.k8s.api.core.v1.EphemeralContainer"."terminationMessagePolicy" = r#""File""#, "SetDefaults_EphemeralContainer"),
    row!("io.k8s.api.core.v1.PodSpec"."dnsPolicy" = r#""ClusterFirst""#, "SetDefaults_PodSpec"),
    row!("io.k8s.api.core.v1.PodSpec"."restartPolicy" = r#""Always""#, "SetDefaults_PodSpec"),
    row!("io.k8s.api.core.v1.PodSpec"."securityContext" = "{}", "SetDefaults_PodSpec"),
    row!("io.k8s.api.core.v1.PodSpec"."terminationGracePeriodSeconds" = "30", "SetDefaults_PodSpec"),
    row!("io.k8s.api.core.v1.PodSpec"."schedulerName" = r#""default-scheduler""#, "SetDefaults_PodSpec"),
    row!("io.k8s.api.core.v1.PodSpec"."enableServiceLinks" = "true", in "Pod", "SetDefaults_Pod"),
    row!("io.k8s.api.core.v1.Probe"."timeoutSeconds" = "1", "SetDefaults_Probe"),
    row!("io.k8s.api.core.v1.Probe"."periodSeconds" = "10", "SetDefaults_Probe"),
    row!("io.k8s.api.core.v1.Probe"."successThreshold" = "1", "SetDefaults_Probe"),
    row!("io.k8s.api.core.v1.Probe"."failureThreshold" = "3", "SetDefaults_Probe"),
    row!("io.k8s.api.core.v1.HTTPGetAction"."path" = r#""/""#, "SetDefaults_HTTPGetAction"),
    row!("io.k8s.api.core.v1.HTTPGetAction"."scheme" = r#""HTTP""#, "SetDefaults_HTTPGetAction"),
    row!("io.k8s.api.core.v1.ObjectFieldSelector"."apiVersion" = r#""v1""#, "SetDefaults_ObjectFieldSelector"),
    // Not a default: a Quantity that is not a pointer, always serialised, zero when left out.
    row!("io.k8s.api.core.v1.ResourceFieldSelector"."divisor" = r#""0""#, "zero value of ResourceFieldSelector.Divisor"),
    // 0644: SecretVolumeSourceDefaultMode and its siblings.
    row!("io.k8s.api.core.v1.SecretVolumeSource"."defaultMode" = "420", "SetDefaults_SecretVolumeSource"),
    row!("io.k8s.api.core.v1.ConfigMapVolumeSource"."defaultMode" = "420", "SetDefaults_ConfigMapVolumeSource"),
    row!("io.k8s.api.core.v1.DownwardAPIVolumeSource"."defaultMode" = "420", "SetDefaults_DownwardAPIVolumeSource"),
    row!("io.k8s.api.core.v1.ProjectedVolumeSource"."defaultMode" = "420", "SetDefaults_ProjectedVolumeSource"),
    row!("io.k8s.api.core.v1.ServiceAccountTokenProjection"."expirationSeconds" = "3600", "SetDefaults_ServiceAccountTokenProjection"),
    row!("io.k8s.api.core.v1.PersistentVolumeClaimSpec"."volumeMode" = r#""Filesystem""#, "SetDefaults_PersistentVolumeClaimSpec"),
    row!("io.k8s.api.core.v1.PersistentVolumeClaimStatus"."phase" = r#""Pending""#, "SetDefaults_PersistentVolumeClaim"),
    row!("io.k8s.api.core.v1.PersistentVolumeSpec"."persistentVolumeReclaimPolicy" = r#""Retain""#, "SetDefaults_PersistentVolume"),
    row!("io.k8s.api.core.v1.PersistentVolumeSpec"."volumeMode" = r#""Filesystem""#, "SetDefaults_PersistentVolume"),
    row!("io.k8s.api.core.v1.Secret"."type" = r#""Opaque""#, "SetDefaults_Secret"),
    row!("io.k8s.api.core.v1.ServiceSpec"."sessionAffinity" = r#""None""#, "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.ServiceSpec"."type" = r#""ClusterIP""#, "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.ServiceSpec"."internalTrafficPolicy" = r#""Cluster""#,
        when When::OneOf("type", &["ClusterIP", "NodePort", "LoadBalancer"]), "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.ServiceSpec"."allocateLoadBalancerNodePorts" = "true",
        when When::OneOf("type", &["LoadBalancer"]), "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.ClientIPConfig"."timeoutSeconds" = "10800", "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.ServicePort"."protocol" = r#""TCP""#, "SetDefaults_Service"),
    row!("io.k8s.api.core.v1.EndpointPort"."protocol" = r#""TCP""#, "SetDefaults_Endpoints"),
    Row {
        definition: "io.k8s.api.core.v1.LimitRangeItem",
        field: "default",
        value: Val::Union(&["max"]),
        kind: None,
        when: When::OneOf("type", &["Container"]),
        from: "SetDefaults_LimitRangeItem",
    },
    Row {
        definition: "io.k8s.api.core.v1.LimitRangeItem",
        field: "defaultRequest",
        value: Val::Union(&["default", "min"]),
        kind: None,
        when: When::OneOf("type", &["Container"]),
        from: "SetDefaults_LimitRangeItem",
    },
    // apps/v1
    row!("io.k8s.api.apps.v1.DeploymentSpec"."replicas" = "1", "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.DeploymentSpec"."revisionHistoryLimit" = "10", "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.DeploymentSpec"."progressDeadlineSeconds" = "600", "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.DeploymentStrategy"."type" = r#""RollingUpdate""#, "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.DeploymentStrategy"."rollingUpdate" = "{}",
        when When::OneOf("type", &["RollingUpdate"]), "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.RollingUpdateDeployment"."maxUnavailable" = r#""25%""#, "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.RollingUpdateDeployment"."maxSurge" = r#""25%""#, "SetDefaults_Deployment"),
    row!("io.k8s.api.apps.v1.DaemonSetSpec"."revisionHistoryLimit" = "10", "SetDefaults_DaemonSet"),
    row!("io.k8s.api.apps.v1.DaemonSetUpdateStrategy"."type" = r#""RollingUpdate""#, "SetDefaults_DaemonSet"),
    row!("io.k8s.api.apps.v1.DaemonSetUpdateStrategy"."rollingUpdate" = "{}",
        when When::OneOf("type", &["RollingUpdate"]), "SetDefaults_DaemonSet"),
    row!("io.k8s.api.apps.v1.RollingUpdateDaemonSet"."maxUnavailable" = "1", "SetDefaults_DaemonSet"),
    row!("io.k8s.api.apps.v1.RollingUpdateDaemonSet"."maxSurge" = "0", "SetDefaults_DaemonSet"),
    row!("io.k8s.api.apps.v1.StatefulSetSpec"."replicas" = "1", "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetSpec"."revisionHistoryLimit" = "10", "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetSpec"."podManagementPolicy" = r#""OrderedReady""#, "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetSpec"."persistentVolumeClaimRetentionPolicy" = "{}", "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy"."whenDeleted" = r#""Retain""#, "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy"."whenScaled" = r#""Retain""#, "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.StatefulSetUpdateStrategy"."type" = r#""RollingUpdate""#, "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.RollingUpdateStatefulSetStrategy"."partition" = "0", "SetDefaults_StatefulSet"),
    row!("io.k8s.api.apps.v1.ReplicaSetSpec"."replicas" = "1", "SetDefaults_ReplicaSet"),
    row!("io.k8s.api.core.v1.PersistentVolumeClaim"."apiVersion" = r#""v1""#, "Convert_apps_StatefulSetSpec_To_v1_StatefulSetSpec"),
    row!("io.k8s.api.core.v1.PersistentVolumeClaim"."kind" = r#""PersistentVolumeClaim""#, "Convert_apps_StatefulSetSpec_To_v1_StatefulSetSpec"),
    // batch/v1: SetDefaults_Job takes a Job, so a CronJob's jobTemplate is not defaulted.
    row!("io.k8s.api.batch.v1.JobSpec"."parallelism" = "1", in "Job", "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."backoffLimit" = "6",
        Some("Job"), When::Absent("backoffLimitPerIndex"), "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."completionMode" = r#""NonIndexed""#, in "Job", "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."suspend" = "false", in "Job", "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."manualSelector" = "false", in "Job", "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."podReplacementPolicy" = r#""TerminatingOrFailed""#,
        Some("Job"), When::Absent("podFailurePolicy"), "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.JobSpec"."podReplacementPolicy" = r#""Failed""#,
        Some("Job"), When::Present("podFailurePolicy"), "SetDefaults_Job"),
    row!("io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern"."status" = r#""True""#, "SetDefaults_PodFailurePolicyOnPodConditionsPattern"),
    row!("io.k8s.api.batch.v1.CronJobSpec"."concurrencyPolicy" = r#""Allow""#, "SetDefaults_CronJob"),
    row!("io.k8s.api.batch.v1.CronJobSpec"."suspend" = "false", "SetDefaults_CronJob"),
    row!("io.k8s.api.batch.v1.CronJobSpec"."successfulJobsHistoryLimit" = "3", "SetDefaults_CronJob"),
    row!("io.k8s.api.batch.v1.CronJobSpec"."failedJobsHistoryLimit" = "1", "SetDefaults_CronJob"),
    // networking/v1
    row!("io.k8s.api.networking.v1.NetworkPolicyPort"."protocol" = r#""TCP""#, "SetDefaults_NetworkPolicyPort"),
    row!("io.k8s.api.networking.v1.NetworkPolicySpec"."policyTypes" = r#"["Ingress"]"#,
        when When::Absent("egress"), "SetDefaults_NetworkPolicy"),
    row!("io.k8s.api.networking.v1.NetworkPolicySpec"."policyTypes" = r#"["Ingress","Egress"]"#,
        when When::Present("egress"), "SetDefaults_NetworkPolicy"),
    row!("io.k8s.api.networking.v1.IngressClassParametersReference"."scope" = r#""Cluster""#, "SetDefaults_IngressClass"),
    // rbac/v1
    row!("io.k8s.api.rbac.v1.RoleRef"."apiGroup" = r#""rbac.authorization.k8s.io""#, "SetDefaults_RoleBinding, SetDefaults_ClusterRoleBinding"),
    row!("io.k8s.api.rbac.v1.Subject"."apiGroup" = r#""rbac.authorization.k8s.io""#,
        when When::OneOf("kind", &["User", "Group"]), "SetDefaults_Subject"),
    // autoscaling/v1 and v2
    row!("io.k8s.api.autoscaling.v1.HorizontalPodAutoscalerSpec"."minReplicas" = "1", "SetDefaults_HorizontalPodAutoscaler"),
    row!("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec"."minReplicas" = "1", "SetDefaults_HorizontalPodAutoscaler"),
    row!("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec"."metrics" =
        r#"[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}]"#,
        "SetDefaults_HorizontalPodAutoscaler"),
    // scheduling/v1
    row!("io.k8s.api.scheduling.v1.PriorityClass"."preemptionPolicy" = r#""PreemptLowerPriority""#, "SetDefaults_PriorityClass"),
    // discovery/v1
    row!("io.k8s.api.discovery.v1.EndpointPort"."name" = r#""""#, "SetDefaults_EndpointPort"),
    row!("io.k8s.api.discovery.v1.EndpointPort"."protocol" = r#""TCP""#, "SetDefaults_EndpointPort"),
    // storage/v1
    row!("io.k8s.api.storage.v1.StorageClass"."reclaimPolicy" = r#""Delete""#, "SetDefaults_StorageClass"),
    row!("io.k8s.api.storage.v1.StorageClass"."volumeBindingMode" = r#""Immediate""#, "SetDefaults_StorageClass"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."attachRequired" = "true", "SetDefaults_CSIDriver"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."podInfoOnMount" = "false", "SetDefaults_CSIDriver"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."storageCapacity" = "false", "SetDefaults_CSIDriver"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."fsGroupPolicy" = r#""ReadWriteOnceWithFSType""#, "SetDefaults_CSIDriver"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."volumeLifecycleModes" = r#"["Persistent"]"#, "SetDefaults_CSIDriver"),
    row!("io.k8s.api.storage.v1.CSIDriverSpec"."requiresRepublish" = "false", "SetDefaults_CSIDriver"),
    // admissionregistration/v1
    row!("io.k8s.api.admissionregistration.v1.ValidatingWebhook"."failurePolicy" = r#""Fail""#, "SetDefaults_ValidatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.ValidatingWebhook"."matchPolicy" = r#""Equivalent""#, "SetDefaults_ValidatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.ValidatingWebhook"."namespaceSelector" = "{}", "SetDefaults_ValidatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.ValidatingWebhook"."objectSelector" = "{}", "SetDefaults_ValidatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.ValidatingWebhook"."timeoutSeconds" = "10", "SetDefaults_ValidatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."failurePolicy" = r#""Fail""#, "SetDefaults_MutatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."matchPolicy" = r#""Equivalent""#, "SetDefaults_MutatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."namespaceSelector" = "{}", "SetDefaults_MutatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."objectSelector" = "{}", "SetDefaults_MutatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."timeoutSeconds" = "10", "SetDefaults_MutatingWebhook"),
    row!("io.k8s.api.admissionregistration.v1.MutatingWebhook"."reinvocationPolicy" = r#""Never""#, "SetDefaults_MutatingWebhook"),
    // RuleWithOperations embeds Rule inline; so does NamedRuleWithOperations.
    row!("io.k8s.api.admissionregistration.v1.RuleWithOperations"."scope" = r#""*""#, "SetDefaults_Rule"),
    row!("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations"."scope" = r#""*""#, "SetDefaults_Rule"),
    row!("io.k8s.api.admissionregistration.v1.ServiceReference"."port" = "443", "SetDefaults_ServiceReference"),
    row!("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec"."failurePolicy" = r#""Fail""#, "SetDefaults_ValidatingAdmissionPolicySpec"),
    row!("io.k8s.api.admissionregistration.v1.MatchResources"."matchPolicy" = r#""Equivalent""#, "SetDefaults_MatchResources"),
    row!("io.k8s.api.admissionregistration.v1.MatchResources"."namespaceSelector" = "{}", "SetDefaults_MatchResources"),
    row!("io.k8s.api.admissionregistration.v1.MatchResources"."objectSelector" = "{}", "SetDefaults_MatchResources"),
];

/// Associative-list keys the server fills in when an item leaves them out: the list's key
/// fields, the key left out, its default as canonical JSON. For matching paths (from
/// managedFields, or written by us) against desired items where no schema is at hand. These are
/// the rows of [`TABLE`] and the published defaults whose field is an
/// `x-kubernetes-list-map-keys` key: a container's and a Service's port protocol.
const LIST_KEYS: &[(&[&str], &str, &str)] = &[
    (&["containerPort", "protocol"], "protocol", "\"TCP\""),
    (&["port", "protocol"], "protocol", "\"TCP\""),
];

/// Whether an associative-list item that leaves out key `field` is recorded under `value`
/// (canonical JSON), in a list keyed by `keys`: a port written without `protocol` is the port
/// with `protocol: TCP`.
pub fn fills_list_key<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    field: &str,
    value: &str,
) -> bool {
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    LIST_KEYS.iter().any(|(list, f, v)| {
        *f == field && *v == value && {
            let mut list = list.to_vec();
            list.sort_unstable();
            list == keys
        }
    })
}

/// The defaults in force inside one object (some hold only in a kind).
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    kind: &'a str,
}

impl<'a> Defaults<'a> {
    /// The defaults inside an object of `kind` (`Deployment`, `Job`...).
    pub fn of_kind(kind: &'a str) -> Defaults<'a> {
        Defaults { kind }
    }

    /// Whether `value`, found in live at field `field` of an object `parent` (live too) of type
    /// `node`, is what the server fills in when a manifest leaves the field out. Empty values
    /// always are.
    pub fn is_default(
        &self,
        node: Option<Node<'_>>,
        parent: &serde_json::Map<String, Value>,
        field: &str,
        value: &Value,
    ) -> bool {
        if is_empty(value) {
            return true;
        }
        let Some(node) = node else {
            return false;
        };
        let child = node.field(field);
        if let Some(declared) = child.and_then(|c| c.declared_default())
            && self.matches(declared, value, child)
        {
            return true;
        }
        let Some(definition) = node.definition() else {
            return false;
        };
        self.rows(definition, field)
            .filter(|r| r.when.holds(parent))
            .any(|r| self.matches(&r.value.resolve(parent), value, child))
    }

    /// Whether a default is known for field `field` of an object `parent` (live) of type
    /// `node`, whatever its value.
    pub fn knows(
        &self,
        node: Option<Node<'_>>,
        parent: &serde_json::Map<String, Value>,
        field: &str,
    ) -> bool {
        let Some(node) = node else {
            return false;
        };
        node.field(field)
            .and_then(|c| c.declared_default())
            .is_some()
            || node.definition().is_some_and(|definition| {
                self.rows(definition, field).any(|r| r.when.holds(parent))
            })
    }

    fn rows<'t>(
        &self,
        definition: &'t str,
        field: &'t str,
    ) -> impl Iterator<Item = &'static Row> + 't
    where
        'a: 't,
    {
        let kind = self.kind;
        TABLE
            .iter()
            .filter(move |r| r.definition == definition && r.field == field)
            .filter(move |r| r.kind.is_none_or(|k| k == kind))
    }

    /// Whether live `value` is the default `default`: equal, or, for an object the server makes
    /// (`{}`), every field of it is that field's own default.
    fn matches(&self, default: &Value, value: &Value, node: Option<Node<'_>>) -> bool {
        match (default, value) {
            (Value::Object(d), Value::Object(v)) => v.iter().all(|(k, item)| match d.get(k) {
                Some(dv) => crate::drift::equivalent(dv, item, node.and_then(|n| n.field(k))),
                None => self.is_default(node, v, k, item),
            }),
            _ => crate::drift::equivalent(default, value, node),
        }
    }
}

impl Val {
    /// The value, given the sibling fields (live).
    fn resolve(&self, siblings: &serde_json::Map<String, Value>) -> Value {
        match self {
            Val::Json(text) => serde_json::from_str(text).expect("the table holds JSON"),
            Val::Union(fields) => {
                let mut union = serde_json::Map::new();
                for field in *fields {
                    let map = siblings.get(*field).and_then(Value::as_object);
                    for (k, v) in map.into_iter().flatten() {
                        union.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                Value::Object(union)
            }
        }
    }
}

impl When {
    fn holds(&self, siblings: &serde_json::Map<String, Value>) -> bool {
        let present = |f: &str| siblings.get(f).is_some_and(|v| !is_empty(v));
        match self {
            When::Always => true,
            When::OneOf(f, values) => siblings
                .get(*f)
                .and_then(Value::as_str)
                .is_some_and(|v| values.contains(&v)),
            When::Absent(f) => !present(f),
            When::Present(f) => present(f),
        }
    }
}

/// Empty maps, empty lists and nulls, all the way down: what the server drops.
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schemas;
    use serde_json::json;

    #[test]
    fn every_row_is_json_and_names_a_built_in_definition() {
        for row in TABLE {
            if let Val::Json(text) = row.value {
                assert!(serde_json::from_str::<Value>(text).is_ok(), "{row:?}");
            }
            assert!(row.definition.starts_with("io.k8s.api."), "{row:?}");
            assert!(
                ["SetDefaults_", "Convert_", "zero value of "]
                    .iter()
                    .any(|p| row.from.starts_with(p)),
                "{row:?}"
            );
        }
    }

    #[test]
    fn list_keys_the_server_fills_in() {
        let cases = [
            (
                &["containerPort", "protocol"][..],
                "protocol",
                "\"TCP\"",
                true,
            ),
            (&["protocol", "port"][..], "protocol", "\"TCP\"", true),
            (
                &["containerPort", "protocol"][..],
                "protocol",
                "\"UDP\"",
                false,
            ),
            (&["name"][..], "protocol", "\"TCP\"", false),
            (&["port", "protocol"][..], "port", "80", false),
        ];
        for (keys, field, value, want) in cases {
            assert_eq!(
                fills_list_key(keys.iter().copied(), field, value),
                want,
                "{keys:?} {field} {value}"
            );
        }
    }

    /// A trimmed OpenAPI document: the types the rows below name, and one published default.
    const DOC: &str = r##"{"components": {"schemas": {
      "io.k8s.api.networking.v1.NetworkPolicy": {"type": "object",
        "properties": {"spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicySpec"}]}},
        "x-kubernetes-group-version-kind": [{"group": "networking.k8s.io", "kind": "NetworkPolicy", "version": "v1"}]},
      "io.k8s.api.networking.v1.NetworkPolicySpec": {"type": "object", "properties": {
        "policyTypes": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
        "egress": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "atomic"},
        "ingress": {"type": "array", "x-kubernetes-list-type": "atomic",
          "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicyIngressRule"}]}}}},
      "io.k8s.api.networking.v1.NetworkPolicyIngressRule": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "atomic",
          "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.NetworkPolicyPort"}]}}}},
      "io.k8s.api.networking.v1.NetworkPolicyPort": {"type": "object", "properties": {
        "port": {"format": "int-or-string"}, "protocol": {"type": "string"}, "endPort": {"type": "integer"}}},
      "io.k8s.api.core.v1.ContainerPort": {"type": "object", "properties": {
        "containerPort": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}},
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "ContainerPort", "version": "v1"}]},
      "io.k8s.api.rbac.v1.Subject": {"type": "object", "properties": {
        "kind": {"type": "string"}, "name": {"type": "string"}, "apiGroup": {"type": "string"}},
        "x-kubernetes-group-version-kind": [{"group": "rbac.authorization.k8s.io", "kind": "Subject", "version": "v1"}]},
      "io.k8s.api.apps.v1.StatefulSetSpec": {"type": "object", "properties": {
        "persistentVolumeClaimRetentionPolicy": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy"}]}},
        "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "StatefulSetSpec", "version": "v1"}]},
      "io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy": {"type": "object", "properties": {
        "whenDeleted": {"type": "string"}, "whenScaled": {"type": "string"}}},
      "io.k8s.api.batch.v1.JobSpec": {"type": "object", "properties": {
        "suspend": {"type": "boolean"}, "backoffLimit": {"type": "integer"}, "backoffLimitPerIndex": {"type": "integer"}},
        "x-kubernetes-group-version-kind": [{"group": "batch", "kind": "JobSpec", "version": "v1"}]}
    }}}"##;

    #[test]
    fn defaults_by_definition_kind_and_sibling() {
        let mut schemas = Schemas::new();
        schemas.add_document("v1", DOC).unwrap();
        let policy = schemas
            .kind("networking.k8s.io", "v1", "NetworkPolicy")
            .unwrap();
        let port = policy
            .field("spec")
            .and_then(|n| n.field("ingress"))
            .and_then(|n| n.items())
            .and_then(|n| n.field("ports"))
            .and_then(|n| n.items());
        let container_port = schemas.kind("", "v1", "ContainerPort");
        let subject = schemas.kind("rbac.authorization.k8s.io", "v1", "Subject");
        let sts = schemas.kind("apps", "v1", "StatefulSetSpec");
        let job = schemas.kind("batch", "v1", "JobSpec");
        let spec = policy.field("spec");
        let obj = |v: Value| v.as_object().unwrap().clone();
        // (kind, node, live parent, field, live value, want)
        let cases = [
            // SetDefaults_NetworkPolicyPort, from the table.
            (
                "NetworkPolicy",
                port,
                json!({"port": 80, "protocol": "TCP"}),
                "protocol",
                json!("TCP"),
                true,
            ),
            (
                "NetworkPolicy",
                port,
                json!({"port": 80, "protocol": "UDP"}),
                "protocol",
                json!("UDP"),
                false,
            ),
            (
                "NetworkPolicy",
                port,
                json!({"port": 80, "endPort": 90}),
                "endPort",
                json!(90),
                false,
            ),
            // Published in OpenAPI.
            (
                "Pod",
                container_port,
                json!({"containerPort": 80}),
                "protocol",
                json!("TCP"),
                true,
            ),
            (
                "Pod",
                container_port,
                json!({"containerPort": 80}),
                "protocol",
                json!("SCTP"),
                false,
            ),
            // Only for a sibling's value.
            (
                "RoleBinding",
                subject,
                json!({"kind": "User"}),
                "apiGroup",
                json!("rbac.authorization.k8s.io"),
                true,
            ),
            (
                "RoleBinding",
                subject,
                json!({"kind": "ServiceAccount"}),
                "apiGroup",
                json!("rbac.authorization.k8s.io"),
                false,
            ),
            (
                "NetworkPolicy",
                spec,
                json!({}),
                "policyTypes",
                json!(["Ingress"]),
                true,
            ),
            (
                "NetworkPolicy",
                spec,
                json!({"egress": [{}]}),
                "policyTypes",
                json!(["Ingress"]),
                false,
            ),
            (
                "NetworkPolicy",
                spec,
                json!({"egress": [{}]}),
                "policyTypes",
                json!(["Ingress", "Egress"]),
                true,
            ),
            // An object the server makes, with its own fields defaulted.
            (
                "StatefulSet",
                sts,
                json!({}),
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                true,
            ),
            (
                "StatefulSet",
                sts,
                json!({}),
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Delete", "whenScaled": "Retain"}),
                false,
            ),
            // Only in the kind whose function sets it.
            ("Job", job, json!({}), "suspend", json!(false), true),
            ("CronJob", job, json!({}), "suspend", json!(false), false),
            (
                "Job",
                job,
                json!({"backoffLimitPerIndex": 1}),
                "backoffLimit",
                json!(6),
                false,
            ),
            ("Job", job, json!({}), "backoffLimit", json!(6), true),
            // Empty is always the same as absent; without a schema nothing else is known.
            ("Job", None, json!({}), "anything", json!({}), true),
            ("Job", None, json!({}), "suspend", json!(false), false),
        ];
        for (kind, node, parent, field, value, want) in cases {
            assert_eq!(
                Defaults::of_kind(kind).is_default(node, &obj(parent.clone()), field, &value),
                want,
                "{kind} {node:?} {parent} {field}={value}"
            );
        }
    }
}
