//! Offline against the server: manifests that leave out every field the API server defaults,
//! for every built-in kind a GitOps repository commonly holds, applied as Flux applies them.
//! `diff --server-side=false` (our table of server defaults) and `--server-side=true` (the
//! server's own dry run) must agree object by object: in sync after the apply, and the same
//! objects drifted after real out-of-band edits.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::fixture::{ALICE, GitRepo};
use crate::support::{kubectl, kubectl_gitops, reconciled_by_flux, run};

/// The pod template every workload uses: ports without protocol, probes without their timing
/// or HTTP path and scheme, env from fieldRef without apiVersion and resourceFieldRef without
/// divisor, volumes of several types without defaultMode, a projected service-account token
/// without expirationSeconds, security contexts, tolerations, affinity, spread constraints.
const POD_SPEC: &str = "
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 80
            - {containerPort: 53, protocol: UDP, name: dns}
          env:
            - {name: PLAIN, value: x}
            - name: NODE
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - name: CPU_LIMIT
              valueFrom: {resourceFieldRef: {resource: limits.cpu}}
            - name: FROM_CM
              valueFrom: {configMapKeyRef: {name: settings, key: key}}
            - name: FROM_SECRET
              valueFrom: {secretKeyRef: {name: creds, key: password, optional: true}}
          envFrom:
            - configMapRef: {name: settings}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: '1', memory: 128Mi}
          livenessProbe:
            httpGet: {port: 80}
          readinessProbe:
            tcpSocket: {port: 80}
            initialDelaySeconds: 2
          startupProbe:
            exec: {command: [cat, /tmp/ready]}
          lifecycle:
            preStop:
              httpGet: {port: 80, path: /drain}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
            readOnlyRootFilesystem: true
          volumeMounts:
            - {name: config, mountPath: /etc/config}
            - {name: secret, mountPath: /etc/secret, readOnly: true}
            - {name: scratch, mountPath: /tmp}
            - {name: projected, mountPath: /var/run/projected}
            - {name: podinfo, mountPath: /etc/podinfo}
      initContainers:
        - name: init
          image: busybox:1.36
          command: [sh, -c, 'true']
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        fsGroup: 2000
        seccompProfile: {type: RuntimeDefault}
      tolerations:
        - {key: dedicated, value: web, effect: NoSchedule}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: kubernetes.io/os, operator: In, values: [linux]}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector: {matchLabels: {tier: web}}
      imagePullSecrets:
        - name: registry
      volumes:
        - name: config
          configMap:
            name: settings
            items: [{key: key, path: key.txt}]
        - name: secret
          secret: {secretName: creds}
        - name: scratch
          emptyDir: {sizeLimit: 64Mi}
        - name: projected
          projected:
            sources:
              - serviceAccountToken: {path: token, audience: api}
              - configMap: {name: settings}
              - secret: {name: creds, items: [{key: password, path: password}]}
              - downwardAPI:
                  items:
                    - path: labels
                      fieldRef: {fieldPath: metadata.labels}
        - name: podinfo
          downwardAPI:
            items:
              - path: name
                fieldRef: {fieldPath: metadata.name}
              - path: cpu
                resourceFieldRef: {containerName: web, resource: requests.cpu}
";

/// Every manifest: namespaced ones, and cluster-scoped ones named after the namespace.
fn manifests(ns: &str) -> Vec<(String, String)> {
    let template = POD_SPEC;
    let docs = [
        (
            "workloads.yaml",
            format!(
                "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:{template}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-strategy
spec:
  selector:
    matchLabels: {{app: web-strategy}}
  strategy:
    rollingUpdate: {{maxSurge: 1}}
  template:
    metadata:
      labels: {{app: web-strategy}}
    spec:
      containers:
        - {{name: web, image: nginx:1.27}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:{template}  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests: {{storage: 1Gi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:{template}---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  podFailurePolicy:
    rules:
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
      - action: FailJob
        onExitCodes: {{operator: In, values: [42]}}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
          command: [sh, -c, 'true']
          env:
            - name: NODE
              valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: backup
              image: busybox:1.36
              command: [sh, -c, 'true']
              ports:
                - containerPort: 9090
              env:
                - name: NS
                  valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: standalone
spec:
  containers:
    - name: web
      image: nginx:1.27
      ports:
        - containerPort: 8080
      env:
        - name: NODE
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        - name: MEM
          valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
      readinessProbe:
        httpGet: {{port: 8080, path: /ready}}
      resources:
        limits: {{cpu: 200m, memory: 128Mi}}
  volumes:
    - name: info
      downwardAPI:
        items:
          - path: ns
            fieldRef: {{fieldPath: metadata.namespace}}
"
            ),
        ),
        (
            "network.yaml",
            "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80}
    - {name: dns, port: 53, protocol: UDP, targetPort: dns}
---
apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: web}
  ports:
    - {port: 443, targetPort: 8443}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
    - from:
        - podSelector: {matchLabels: {role: frontend}}
        - namespaceSelector: {matchLabels: {team: web}}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
      ports:
        - port: 80
        - {port: 53, protocol: UDP}
        - {port: 8000, endPort: 8100}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: egress
spec:
  podSelector: {}
  egress:
    - to:
        - namespaceSelector: {}
      ports:
        - port: 53
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: web
  tls:
    - hosts: [web.example.com]
      secretName: tls
  rules:
    - host: web.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: web
                port: {number: 80}
"
            .to_owned(),
        ),
        (
            "policy.yaml",
            "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: web}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 60}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: bare
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web-strategy}
  maxReplicas: 3
---
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
    - type: Container
      max: {cpu: '2', memory: 1Gi}
      min: {cpu: 10m, memory: 8Mi}
    - type: Pod
      max: {cpu: '4'}
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: quota
spec:
  hard: {pods: '50', requests.cpu: '10', limits.memory: 20Gi}
  scopeSelector:
    matchExpressions:
      - {scopeName: PriorityClass, operator: In, values: [high]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 2Gi}
"
            .to_owned(),
        ),
        (
            "config.yaml",
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  key: value
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
automountServiceAccountToken: false
imagePullSecrets:
  - name: registry
"
            .to_owned(),
        ),
        (
            "rbac.yaml",
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
  - apiGroups: ['']
    resources: [configmaps, pods]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: readers
roleRef:
  kind: Role
  name: reader
subjects:
  - {{kind: User, name: alice}}
  - {{kind: Group, name: devs}}
  - {{kind: ServiceAccount, name: web, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {ns}-viewer
rules:
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get]
  - nonResourceURLs: [/healthz]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {ns}-viewers
roleRef:
  kind: ClusterRole
  name: {ns}-viewer
subjects:
  - {{kind: User, name: bob}}
"
            ),
        ),
        (
            "cluster.yaml",
            format!(
                "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: {ns}-high
value: 1000
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {ns}-web
spec:
  controller: example.com/ingress
  parameters:
    apiGroup: example.com
    kind: IngressParameters
    name: web
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {ns}-fast
provisioner: example.com/fast
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {ns}-check
webhooks:
  - name: check.example.com
    sideEffects: None
    admissionReviewVersions: [v1]
    clientConfig:
      service: {{name: check, namespace: {ns}}}
    rules:
      - apiGroups: [example.invalid]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [widgets]
"
            ),
        ),
    ];
    docs.into_iter()
        .map(|(path, text)| (format!("deploy/{path}"), text))
        .collect()
}

/// `diff --server-side=MODE -o json` over this Kustomization's objects (`-A -l` its label),
/// and its Pod (diff leaves Pods out unless they are named): each object's report.
fn statuses(ns: &str, repo: &GitRepo, cache: &std::path::Path, mode: &str) -> Verdicts {
    let selector = format!("kustomize.toolkit.fluxcd.io/namespace={ns}");
    let mut all = diff(repo, cache, mode, &["-A", "-l", &selector]);
    all.extend(diff(repo, cache, mode, &["-n", ns, "pod/standalone"]));
    all
}

fn diff(repo: &GitRepo, cache: &std::path::Path, mode: &str, scope: &[&str]) -> Verdicts {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mode = format!("--server-side={mode}");
    let mut args = vec!["diff", "--kubeconfig", &kc, &mode, "-o", "json"];
    args.extend_from_slice(scope);
    let ran = run(kubectl_gitops(&args)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(repo.path()));
    let doc: Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("{mode}: {e}\n{}\n{}", ran.stdout, ran.stderr));
    assert!(
        matches!(ran.code, Some(0 | 1)),
        "{mode}: exit {:?}\n{}",
        ran.code,
        ran.stderr
    );
    doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let o = &i["object"];
            let key = format!(
                "{}/{}",
                if o["group"] == "" {
                    o["kind"].as_str().unwrap().to_owned()
                } else {
                    format!(
                        "{}.{}",
                        o["kind"].as_str().unwrap(),
                        o["group"].as_str().unwrap()
                    )
                },
                o["name"].as_str().unwrap()
            );
            (key, i.clone())
        })
        .collect()
}

type Verdicts = BTreeMap<String, Value>;

/// The objects whose status differs between the two modes, with both reports.
fn disagreements(offline: &Verdicts, server: &Verdicts) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = offline.keys().chain(server.keys()).collect();
    keys.into_iter()
        .filter(|k| offline.get(*k).map(|i| &i["status"]) != server.get(*k).map(|i| &i["status"]))
        .map(|k| {
            format!(
                "{k}:\n  offline: {}\n  server: {}",
                offline.get(k).map_or("absent".into(), |i| i.to_string()),
                server.get(k).map_or("absent".into(), |i| i.to_string()),
            )
        })
        .collect()
}

fn drifted(verdicts: &Verdicts) -> Vec<&str> {
    verdicts
        .iter()
        .filter(|(_, i)| i["status"] != "in-sync")
        .map(|(k, _)| k.as_str())
        .collect()
}

#[test]
fn offline_agrees_with_the_servers_dry_run_on_every_built_in_kind() {
    let cp = testenv::shared();
    cp.install_gitops_crds();
    let ns = cp.namespace("defaults");
    let mut repo = GitRepo::new();
    let files = manifests(&ns);
    for (path, text) in &files {
        repo.write(path, text);
    }
    let applied = repo.commit(ALICE, "Every built-in kind, server defaults left out");
    assert_eq!(reconciled_by_flux(&ns, &repo, "./deploy"), applied);
    let cache = tempfile::tempdir().unwrap();

    let offline = statuses(&ns, &repo, cache.path(), "false");
    let server = statuses(&ns, &repo, cache.path(), "true");
    let kinds: std::collections::BTreeSet<&str> = offline
        .keys()
        .map(|k| k.split('/').next().unwrap())
        .collect();
    let expected = files
        .iter()
        .map(|(_, text)| text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: ")))
        .sum::<usize>();
    assert_eq!(
        offline.len(),
        expected,
        "every object compared: {:?}",
        offline.keys()
    );
    let disagree = disagreements(&offline, &server);
    assert!(
        disagree.is_empty(),
        "offline and --server-side=true disagree:\n{}",
        disagree.join("\n")
    );
    assert_eq!(drifted(&server), Vec::<&str>::new(), "{server:#?}");
    assert_eq!(drifted(&offline), Vec::<&str>::new(), "{offline:#?}");

    // Real out-of-band edits: both modes find the same objects drifted.
    let edits: &[&[&str]] = &[
        &["set", "env", "deployment/web", "-c", "web", "EXTRA=1"],
        &[
            "patch",
            "networkpolicy/web",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": 8080}]"#,
        ],
        &[
            "patch",
            "rolebinding/readers",
            "--type=json",
            "-p",
            r#"[{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}}]"#,
        ],
        &["label", "configmap/settings", "edited=by-hand"],
        &[
            "patch",
            "statefulset/db",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/template/spec/volumes/0/configMap/items/0/path", "value": "other.txt"}]"#,
        ],
        &[
            "patch",
            "service/web",
            "--type=merge",
            "-p",
            r#"{"spec": {"sessionAffinity": "ClientIP"}}"#,
        ],
    ];
    for edit in edits {
        kubectl(&ns, edit, None);
    }
    let offline_after = statuses(&ns, &repo, cache.path(), "false");
    let server_after = statuses(&ns, &repo, cache.path(), "true");
    let disagree_after = disagreements(&offline_after, &server_after);
    assert!(
        disagree_after.is_empty(),
        "after out-of-band edits, offline and --server-side=true disagree:\n{}",
        disagree_after.join("\n")
    );
    assert_eq!(
        drifted(&server_after),
        [
            "ConfigMap/settings",
            "Deployment.apps/web",
            "NetworkPolicy.networking.k8s.io/web",
            "RoleBinding.rbac.authorization.k8s.io/readers",
            "Service/web",
            "StatefulSet.apps/db",
        ]
    );
    // The figure the README quotes.
    println!(
        "offline vs --server-side=true: {} built-in kinds, {} objects, compared twice (as applied, \
         after {} out-of-band edits); {} disagreements",
        kinds.len(),
        offline.len(),
        edits.len(),
        disagree.len() + disagree_after.len()
    );
}
