//! Values written by kustomize's generators and transformers, tied to the kustomization lines
//! that configure them: `namePrefix` for a name, a `commonLabels` key for a label, an `images:`
//! entry's `newTag` for an image, a `configMapGenerator` literal for a data key.
//!
//! kustomize's build metadata says which kustomizations ran which builtins over an object, not
//! which field each one changed; a transformer runs over every object of its kustomization. So a
//! line is claimed only when its own setting yields the value: the prefix is in the name, the
//! label's value is the one written, the tag is `newTag`. When several lines yield a value (a
//! prefix and a suffix, a base's prefix and an overlay's), the most recently changed one is the
//! value's last change, as `git blame` would say. Values no line yields are left to the caller.

use serde_json::Value;

use crate::drift;
use crate::fields::lines::LineIndex;
use crate::fields::{FieldPath, Segment};
use crate::git::BlameLine;

/// A kustomization that generated the blamed object or ran transformers over it, as written.
pub struct KustomizationSide {
    /// Its repository path.
    pub file: String,
    pub object: Value,
    pub lines: LineIndex,
    pub blame: Vec<BlameLine>,
    /// The builtins it ran over the object (`PrefixTransformer`, `LabelTransformer`...), as
    /// kustomize's transformer annotations name them.
    pub transformers: Vec<String>,
    /// Whether its `configMapGenerator` or `secretGenerator` made the object.
    pub generated: bool,
    /// Files its generator entries read (`envs:`, `files:`), with their blame.
    pub inputs: Vec<GeneratorInput>,
}

/// A file a generator entry reads.
pub struct GeneratorInput {
    /// The path as the entry writes it (relative to the kustomization).
    pub written: String,
    /// Its repository path.
    pub file: String,
    pub text: String,
    pub blame: Vec<BlameLine>,
}

/// One line that yields a value, with its blame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim<'a> {
    pub file: &'a str,
    pub line: usize,
    pub blame: &'a BlameLine,
}

/// The line of `sides` that last set `path` of `desired` to `value` through a generator or a
/// transformer; None when no kustomization line yields it. `written` is the object as its
/// source file writes it (null for a generated object).
pub fn attribute<'a>(
    sides: &'a [KustomizationSide],
    desired: &Value,
    written: &Value,
    path: &FieldPath,
    value: &Value,
) -> Option<Claim<'a>> {
    let generated = sides.iter().any(|s| s.generated);
    let mut claims = Vec::new();
    match value {
        // A map that the source file does not write (labels that only `commonLabels` adds):
        // whatever set its keys.
        Value::Object(map) if !generated => {
            for (key, v) in map.iter().filter(|(_, v)| !v.is_object() && !v.is_array()) {
                let child = path.child(Segment::field(key.as_str()));
                claims.extend(claims_for(sides, desired, written, &child, v));
            }
        }
        Value::Object(_) | Value::Array(_) => {}
        scalar => claims = claims_for(sides, desired, written, path, scalar),
    }
    if claims.is_empty() && generated {
        // The rest of a generated object (its kind, its data map) is the generator entry's.
        claims.extend(sides.iter().filter_map(|side| {
            let (list, i, _) = generator_entry(side, desired)?;
            side.claim(&entry_path(list, i))
        }));
    }
    newest(claims)
}

/// The files (as written, relative to the kustomization) that generator entries of
/// `kustomization` read for the object `desired`: what [`GeneratorInput`]s to load.
pub fn generator_inputs(kustomization: &Value, desired: &Value) -> Vec<String> {
    let Some((_, entry)) =
        generator_list(desired).and_then(|list| matching_entry(kustomization, list, desired))
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = env_sources(entry).map(str::to_owned).collect();
    out.extend(file_sources(entry).map(|(_, path)| path.to_owned()));
    out
}

impl KustomizationSide {
    fn claim(&self, path: &FieldPath) -> Option<Claim<'_>> {
        // An entry's setting, or the entry itself when the setting is not on a line of its own.
        let line = self.lines.line(path)?;
        Some(Claim {
            file: &self.file,
            line,
            blame: self.blame.get(line.checked_sub(1)?)?,
        })
    }

    fn ran(&self, transformer: &str) -> bool {
        self.transformers.iter().any(|t| t == transformer)
    }
}

/// Among lines that all yield a value, the one whose commit is newest by author time (the first
/// of equals).
fn newest(claims: Vec<Claim<'_>>) -> Option<Claim<'_>> {
    claims.into_iter().fold(None, |best, c| match best {
        Some(b) if b.blame.author_time >= c.blame.author_time => Some(b),
        _ => Some(c),
    })
}

fn claims_for<'a>(
    sides: &'a [KustomizationSide],
    desired: &Value,
    written: &Value,
    path: &FieldPath,
    value: &Value,
) -> Vec<Claim<'a>> {
    let as_written = path.resolve(written);
    if as_written == Some(value) {
        return Vec::new();
    }
    let text = scalar_text(value);
    let last = last_field(path);
    let parent = path
        .parent()
        .and_then(|p| last_field(&p).map(str::to_owned));
    let mut claims = Vec::new();
    for side in sides {
        let k = &side.object;
        let mut paths: Vec<FieldPath> = Vec::new();
        if let (Some(v), Some(last)) = (text.as_deref(), last) {
            // A name, or a reference to one (`configMapRef.name`, `serviceAccountName`).
            let name_like = last == "name" || last.ends_with("Name");
            let contains_written = as_written
                .and_then(Value::as_str)
                .is_none_or(|w| v.contains(w));
            for (setting, transformer) in [
                ("namePrefix", "PrefixTransformer"),
                ("nameSuffix", "SuffixTransformer"),
            ] {
                if name_like
                    && contains_written
                    && side.ran(transformer)
                    && k[setting]
                        .as_str()
                        .is_some_and(|s| !s.is_empty() && v.contains(s))
                {
                    paths.push(FieldPath::fields([setting]));
                }
            }
            if last == "namespace"
                && side.ran("NamespaceTransformer")
                && k["namespace"].as_str() == Some(v)
            {
                paths.push(FieldPath::fields(["namespace"]));
            }
            let parent = parent.as_deref();
            if matches!(parent, Some("labels" | "matchLabels" | "selector"))
                && side.ran("LabelTransformer")
            {
                if scalar_text(&k["commonLabels"][last]).as_deref() == Some(v) {
                    paths.push(FieldPath::fields(["commonLabels", last]));
                }
                for (i, entry) in k["labels"].as_array().into_iter().flatten().enumerate() {
                    if scalar_text(&entry["pairs"][last]).as_deref() == Some(v) {
                        paths.push(
                            FieldPath::fields(["labels"])
                                .child(Segment::Index(i))
                                .child(Segment::field("pairs"))
                                .child(Segment::field(last)),
                        );
                    }
                }
            }
            if parent == Some("annotations")
                && side.ran("AnnotationsTransformer")
                && scalar_text(&k["commonAnnotations"][last]).as_deref() == Some(v)
            {
                paths.push(FieldPath::fields(["commonAnnotations", last]));
            }
            if last == "image" && side.ran("ImageTagTransformer") {
                paths.extend(image_settings(k, v));
            }
            if name_like
                && let Some(w) = as_written.and_then(Value::as_str)
                && has_hash_suffix(v)
                && v.contains(w)
            {
                // A reference to a generated object: its name carries the generator's hash.
                for list in ["configMapGenerator", "secretGenerator"] {
                    for (i, entry) in k[list].as_array().into_iter().flatten().enumerate() {
                        if entry["name"] == w {
                            paths.push(entry_path(list, i).child(Segment::field("name")));
                        }
                    }
                }
            }
        }
        if path.segments() == FieldPath::fields(["spec", "replicas"]).segments()
            && side.ran("ReplicaCountTransformer")
        {
            let name = desired["metadata"]["name"].as_str().unwrap_or_default();
            for (i, entry) in k["replicas"].as_array().into_iter().flatten().enumerate() {
                if entry["name"].as_str().is_some_and(|n| name.contains(n))
                    && drift::equivalent(&entry["count"], value, None)
                {
                    paths.push(
                        FieldPath::fields(["replicas"])
                            .child(Segment::Index(i))
                            .child(Segment::field("count")),
                    );
                }
            }
        }
        claims.extend(paths.iter().filter_map(|p| side.claim(p)));
        claims.extend(generated_claims(side, desired, path, value));
    }
    claims
}

/// Lines of the generator entry that made `desired` which yield `path`: a literal, an env
/// file's line, a file's content, the entry's name, type and options.
fn generated_claims<'a>(
    side: &'a KustomizationSide,
    desired: &Value,
    path: &FieldPath,
    value: &Value,
) -> Vec<Claim<'a>> {
    let Some((list, i, entry)) = generator_entry(side, desired) else {
        return Vec::new();
    };
    let item = entry_path(list, i);
    let fields: Vec<&str> = path
        .segments()
        .iter()
        .map(|s| match s {
            Segment::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    // An option of the entry, else of the kustomization's `generatorOptions`.
    let option = |names: &[&str]| -> Option<FieldPath> {
        [
            item.child(Segment::field("options")),
            FieldPath::fields(["generatorOptions"]),
        ]
        .into_iter()
        .map(|base| names.iter().fold(base, |p, n| p.child(Segment::field(*n))))
        .find(|p| p.resolve(&side.object).is_some())
    };
    let mut paths = Vec::new();
    match fields.as_slice() {
        ["data" | "binaryData", key] => {
            let is_secret = list == "secretGenerator";
            for (j, literal) in entry["literals"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some((k, v)) = literal.as_str().and_then(|l| l.split_once('=')) else {
                    continue;
                };
                // Secret data is base64 in the object: the key decides.
                if k == *key && (is_secret || Some(unquote(v)) == value.as_str()) {
                    paths.push(
                        item.child(Segment::field("literals"))
                            .child(Segment::Index(j)),
                    );
                }
            }
            // kustomize refuses a key that two sources of an entry define: one source has it.
            let mut claims: Vec<Claim<'a>> = paths.iter().filter_map(|p| side.claim(p)).collect();
            // A source file that could not be read: its line in the entry, if nothing else.
            let mut unread = Vec::new();
            for (j, env) in env_sources(entry).enumerate() {
                match side.inputs.iter().find(|input| input.written == env) {
                    Some(input) => claims.extend(env_line(input, key)),
                    None => unread.extend(side.claim(&env_path(entry, &item, j))),
                }
            }
            for (j, (file_key, file)) in file_sources(entry).enumerate() {
                if file_key != *key {
                    continue;
                }
                match side.inputs.iter().find(|input| input.written == file) {
                    // The whole file is the value: its last change.
                    Some(input) => claims.extend(newest(
                        input
                            .blame
                            .iter()
                            .map(|b| Claim {
                                file: &input.file,
                                line: b.line,
                                blame: b,
                            })
                            .collect(),
                    )),
                    None => claims.extend(
                        side.claim(&item.child(Segment::field("files")).child(Segment::Index(j))),
                    ),
                }
            }
            if claims.is_empty() {
                claims = unread;
            }
            return claims;
        }
        ["metadata", "name"] => paths.push(item.child(Segment::field("name"))),
        ["metadata", "namespace"] if entry["namespace"].is_string() => {
            paths.push(item.child(Segment::field("namespace")))
        }
        ["metadata", what @ ("labels" | "annotations"), key] => paths.extend(option(&[what, key])),
        ["type"] if entry["type"].is_string() => paths.push(item.child(Segment::field("type"))),
        ["immutable"] => paths.extend(option(&["immutable"])),
        _ => {}
    }
    paths.iter().filter_map(|p| side.claim(p)).collect()
}

/// `KEY=value` in an env file, as kustomize reads it (comments and blank lines skipped).
fn env_line<'a>(input: &'a GeneratorInput, key: &str) -> Option<Claim<'a>> {
    // kustomize refuses a key defined twice, so the first is the one.
    let (n, _) = input.text.lines().enumerate().find(|(_, l)| {
        let l = l.trim_start();
        !l.starts_with('#') && l.split_once('=').map_or(l, |(k, _)| k) == key
    })?;
    Some(Claim {
        file: &input.file,
        line: n + 1,
        blame: input.blame.get(n)?,
    })
}

/// The generator list for `desired`'s kind.
fn generator_list(desired: &Value) -> Option<&'static str> {
    match (desired["apiVersion"].as_str(), desired["kind"].as_str()) {
        (Some("v1"), Some("ConfigMap")) => Some("configMapGenerator"),
        (Some("v1"), Some("Secret")) => Some("secretGenerator"),
        _ => None,
    }
}

/// The entry of `list` whose name is in the object's name (prefix, suffix and hash added); the
/// longest such name, so `web` does not take `web-extra`'s object.
fn matching_entry<'k>(
    kustomization: &'k Value,
    list: &str,
    desired: &Value,
) -> Option<(usize, &'k Value)> {
    let name = desired["metadata"]["name"].as_str()?;
    kustomization[list]
        .as_array()?
        .iter()
        .enumerate()
        .filter(|(_, e)| e["name"].as_str().is_some_and(|n| name.contains(n)))
        .max_by_key(|(_, e)| e["name"].as_str().map_or(0, str::len))
}

/// The generator entry of `side` that made (or, with `behavior: merge`, changed) `desired`.
fn generator_entry<'k>(
    side: &'k KustomizationSide,
    desired: &Value,
) -> Option<(&'static str, usize, &'k Value)> {
    let list = generator_list(desired)?;
    let (i, entry) = matching_entry(&side.object, list, desired)?;
    // A base's entry merged into by an overlay names the object too; one that did not make it
    // must say it merges or replaces.
    (side.generated || entry["behavior"].is_string()).then_some((list, i, entry))
}

fn entry_path(list: &str, i: usize) -> FieldPath {
    FieldPath::fields([list]).child(Segment::Index(i))
}

/// `envs:` entries, and the older single `env:`.
fn env_sources(entry: &Value) -> impl Iterator<Item = &str> {
    entry["envs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&entry["env"]))
        .filter_map(Value::as_str)
}

fn env_path(entry: &Value, item: &FieldPath, j: usize) -> FieldPath {
    let envs = entry["envs"].as_array().map_or(0, Vec::len);
    if j < envs {
        item.child(Segment::field("envs")).child(Segment::Index(j))
    } else {
        item.child(Segment::field("env"))
    }
}

/// `files:` entries as (data key, path): `key=path`, or the path whose file name is the key.
fn file_sources(entry: &Value) -> impl Iterator<Item = (&str, &str)> {
    entry["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|f| match f.split_once('=') {
            Some((key, path)) => (key, path),
            None => (f.rsplit('/').next().unwrap_or(f), f),
        })
}

/// The `images:` settings that yield `image`: `newTag`, `digest`, `tagSuffix`, `newName`.
fn image_settings(kustomization: &Value, image: &str) -> Vec<FieldPath> {
    let (name, tag, digest) = split_image(image);
    let mut out = Vec::new();
    for (i, entry) in kustomization["images"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(original) = entry["name"].as_str() else {
            continue;
        };
        let new_name = entry["newName"].as_str().filter(|n| !n.is_empty());
        if new_name.unwrap_or(original) != name {
            continue;
        }
        let item = FieldPath::fields(["images"]).child(Segment::Index(i));
        let setting = |s: &str| item.child(Segment::field(s));
        if scalar_text(&entry["newTag"]).is_some_and(|t| same_tag(&t, tag, &entry["newTag"])) {
            out.push(setting("newTag"));
        }
        if entry["digest"].as_str().is_some_and(|d| d == digest) {
            out.push(setting("digest"));
        }
        if scalar_text(&entry["tagSuffix"]).is_some_and(|s| !s.is_empty() && tag.ends_with(&s)) {
            out.push(setting("tagSuffix"));
        }
        if new_name.is_some_and(|n| n != original) {
            out.push(setting("newName"));
        }
    }
    out
}

/// A tag equals `newTag`; an unquoted `newTag: 1.10` reads as the number 1.1.
fn same_tag(written: &str, tag: &str, raw: &Value) -> bool {
    written == tag || (raw.is_number() && tag.parse::<f64>().is_ok_and(|t| raw.as_f64() == Some(t)))
}

/// An image reference as kustomize splits it: name, tag, digest (`api/internal/image`).
fn split_image(image: &str) -> (&str, &str, &str) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let at = search.find('@').map(|i| i + slash);
    let colon = search.find(':').map(|i| i + slash);
    match (colon, at) {
        (None, None) => (image, "", ""),
        // A digest only (a colon after the `@` is the digest's own).
        (None, Some(a)) => (&image[..a], "", &image[a + 1..]),
        (Some(c), Some(a)) if a < c => (&image[..a], "", &image[a + 1..]),
        (Some(c), Some(a)) => (&image[..c], &image[c + 1..a], &image[a + 1..]),
        (Some(c), None) => (&image[..c], &image[c + 1..], ""),
    }
}

/// kustomize's name hash: `-` and ten characters of `[a-z0-9]` at the end.
fn has_hash_suffix(name: &str) -> bool {
    name.len() > 11
        && name.as_bytes()[name.len() - 11] == b'-'
        && name[name.len() - 10..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn last_field(path: &FieldPath) -> Option<&str> {
    match path.segments().last()? {
        Segment::Field(f) => Some(f),
        _ => None,
    }
}

/// A scalar as kustomize reads it into a string field.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A literal's value without the quotes kustomize strips.
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [web.yaml]
namePrefix: prod-
nameSuffix: -eu
namespace: shop
commonLabels:
  team: payments
labels:
  - pairs:
      env: prod
commonAnnotations:
  owner: sre
images:
  - name: nginx
    newTag: \"1.27\"
  - name: busybox
    newName: registry.local/busybox
    digest: sha256:abc
replicas:
  - name: web
    count: 3
configMapGenerator:
  - name: settings
    literals:
      - MODE=prod
      - LEVEL=\"info\"
    envs: [app.env]
    files: [conf/app.properties, extra=conf/x.txt]
    options:
      labels:
        generated: \"yes\"
secretGenerator:
  - name: creds
    literals:
      - PASSWORD=hunter2
";

    const ALL: [&str; 9] = [
        "PrefixTransformer",
        "SuffixTransformer",
        "NamespaceTransformer",
        "LabelTransformer",
        "LabelTransformer",
        "AnnotationsTransformer",
        "ReplicaCountTransformer",
        "ImageTagTransformer",
        "PatchTransformer",
    ];

    /// Blame of a file of `n` lines; line L was changed at time `times(L)`, by commit L.
    fn blame_of(n: usize, times: impl Fn(usize) -> i64) -> Vec<BlameLine> {
        (1..=n)
            .map(|l| BlameLine {
                line: l,
                commit: format!("{l:040}"),
                original_path: "k".into(),
                original_line: l,
                author_name: format!("author{l}"),
                author_email: "a@x".into(),
                author_time: times(l),
                author_offset_seconds: 0,
                summary: "s".into(),
            })
            .collect()
    }

    fn side(
        times: impl Fn(usize) -> i64,
        transformers: &[&str],
        generated: bool,
    ) -> KustomizationSide {
        let doc = &crate::render::documents("apps/kustomization.yaml", KUSTOMIZATION.as_bytes())
            .unwrap()[0];
        KustomizationSide {
            file: "apps/kustomization.yaml".into(),
            object: doc.object.clone(),
            lines: LineIndex::of_document(KUSTOMIZATION, doc.lines).unwrap(),
            blame: blame_of(KUSTOMIZATION.lines().count(), times),
            transformers: transformers.iter().map(|t| t.to_string()).collect(),
            generated,
            inputs: Vec::new(),
        }
    }

    /// `.a.b[name=x].c`, as blame's paths print.
    fn path(text: &str) -> FieldPath {
        let mut p = FieldPath::root();
        for part in text.split('.').filter(|s| !s.is_empty()) {
            match part.split_once('[') {
                Some((field, rest)) => {
                    p = p.child(Segment::field(field));
                    let (k, v) = rest.trim_end_matches(']').split_once('=').unwrap();
                    p = p.child(Segment::key([(k, &Value::String(v.into()))]));
                }
                None => p = p.child(Segment::field(part)),
            }
        }
        p
    }

    fn line_of(
        sides: &[KustomizationSide],
        desired: &Value,
        written: &Value,
        p: &str,
    ) -> Option<(String, usize)> {
        let p = path(p);
        let value = p
            .resolve(desired)
            .unwrap_or_else(|| panic!("{p} in desired"));
        attribute(sides, desired, written, &p, value).map(|c| (c.file.to_owned(), c.line))
    }

    fn web(name: &str, images: (&str, &str), labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {
                    "containers": [{"name": "web", "image": images.0}, {"name": "side", "image": images.1}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]
                }}
            }
        })
    }

    #[test]
    fn transformed_values_point_at_the_setting_that_yields_them() {
        let mut written = web("web", ("nginx:1.25", "busybox:1.36"), json!({"app": "web"}));
        written["spec"]["replicas"] = json!(2);
        let mut desired = web(
            "prod-web-eu",
            ("nginx:1.27", "registry.local/busybox@sha256:abc"),
            json!({"app": "web", "team": "payments", "env": "prod"}),
        );
        desired["metadata"]["namespace"] = json!("shop");
        desired["metadata"]["annotations"] = json!({"owner": "sre"});
        desired["spec"]["selector"]["matchLabels"]["team"] = json!("payments");
        desired["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] =
            json!("prod-settings-eu-5f7k9m2b4c");
        // The generator's name line (24) changed last, then the suffix (5), then the digest (19).
        let times = |l: usize| match l {
            24 => 40,
            5 => 30,
            19 => 20,
            _ => 10,
        };
        let sides = [side(times, &ALL, false)];
        let at = |p: &str| line_of(&sides, &desired, &written, p).map(|(_, l)| l);
        let cases = [
            // Prefix (4) and suffix (5) both yield the name: the suffix changed last.
            (".metadata.name", Some(5)),
            (".metadata.namespace", Some(6)),
            (".metadata.labels.team", Some(8)),
            (".spec.selector.matchLabels.team", Some(8)),
            (".metadata.labels.env", Some(11)),
            (".metadata.annotations.owner", Some(13)),
            // A map the source does not write: whatever set its keys.
            (".metadata.annotations", Some(13)),
            (".spec.template.spec.containers[name=web].image", Some(16)),
            // newName (18) and digest (19) both yield it: the digest changed last.
            (".spec.template.spec.containers[name=side].image", Some(19)),
            (".spec.replicas", Some(22)),
            // A reference to the generated ConfigMap: prefix, suffix, and the generator's name.
            (
                ".spec.template.spec.volumes[name=cfg].configMap.name",
                Some(24),
            ),
            // As written: not a kustomization's.
            (".spec.template.spec.containers[name=web].name", None),
            (".metadata.labels.app", None),
        ];
        for (p, want) in cases {
            assert_eq!(at(p), want, "{p}");
        }
        assert_eq!(
            line_of(&sides, &desired, &written, ".metadata.name")
                .unwrap()
                .0,
            "apps/kustomization.yaml"
        );
    }

    #[test]
    fn a_setting_claims_only_what_it_yields() {
        let written = web("web", ("nginx:1.25", "busybox:1.36"), json!({"app": "web"}));
        // Values the kustomization does not yield: another tag, another label value, a name
        // without the prefix, another count.
        let mut desired = web(
            "web",
            ("nginx:1.28", "busybox:1.37"),
            json!({"app": "web", "team": "billing"}),
        );
        desired["spec"]["replicas"] = json!(4);
        desired["metadata"]["namespace"] = json!("other");
        let sides = [side(|_| 0, &ALL, false)];
        for p in [
            ".metadata.name",
            ".metadata.namespace",
            ".metadata.labels.team",
            ".spec.template.spec.containers[name=web].image",
            ".spec.template.spec.containers[name=side].image",
            ".spec.replicas",
        ] {
            assert_eq!(line_of(&sides, &desired, &written, p), None, "{p}");
        }
        // A transformer that did not run over the object claims nothing, even when its value
        // matches (a base's settings, for an object the base does not list).
        let desired = web(
            "prod-web-eu",
            ("nginx:1.27", "busybox:1.36"),
            json!({"app": "web", "team": "payments"}),
        );
        let only_patches = [side(|_| 0, &["PatchTransformer"], false)];
        for p in [
            ".metadata.name",
            ".metadata.labels.team",
            ".spec.template.spec.containers[name=web].image",
        ] {
            assert_eq!(line_of(&only_patches, &desired, &written, p), None, "{p}");
        }
    }

    #[test]
    fn a_base_and_an_overlay_each_claim_their_own_settings() {
        let kustomization = |file: &str, text: &str, time: i64, transformers: &[&str]| {
            let doc = &crate::render::documents(file, text.as_bytes()).unwrap()[0];
            KustomizationSide {
                file: file.into(),
                object: doc.object.clone(),
                lines: LineIndex::of_document(text, doc.lines).unwrap(),
                blame: blame_of(text.lines().count(), |_| time),
                transformers: transformers.iter().map(|t| t.to_string()).collect(),
                generated: false,
                inputs: Vec::new(),
            }
        };
        let base = "resources: [web.yaml]\nnamePrefix: base-\ncommonLabels:\n  tier: front\n";
        let overlay = "resources: [../base]\nnamePrefix: prod-\ncommonLabels:\n  env: prod\n";
        let written = json!({"metadata": {"name": "web"}});
        let desired = json!({"metadata": {"name": "prod-base-web",
                                          "labels": {"tier": "front", "env": "prod"}}});
        let both = ["PrefixTransformer", "LabelTransformer"];
        // kustomize lists the base's transformers first.
        for (base_time, overlay_time, name_from) in [(1, 2, "overlay"), (2, 1, "base")] {
            let sides = [
                kustomization("base/kustomization.yaml", base, base_time, &both),
                kustomization("overlay/kustomization.yaml", overlay, overlay_time, &both),
            ];
            let at = |p: &str| line_of(&sides, &desired, &written, p);
            // Both prefixes are in the name: the one changed last.
            assert_eq!(
                at(".metadata.name"),
                Some((format!("{name_from}/kustomization.yaml"), 2))
            );
            assert_eq!(
                at(".metadata.labels.tier"),
                Some(("base/kustomization.yaml".to_owned(), 4))
            );
            assert_eq!(
                at(".metadata.labels.env"),
                Some(("overlay/kustomization.yaml".to_owned(), 4))
            );
        }
    }

    #[test]
    fn generated_values_point_at_the_generator_entry() {
        let desired = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "prod-settings-eu-5f7k9m2b4c",
                "namespace": "shop",
                "labels": {"team": "payments", "generated": "yes"}
            },
            "data": {
                "MODE": "prod", "LEVEL": "info", "FROM_ENV": "1",
                "app.properties": "a=1\nb=2\n", "extra": "x"
            }
        });
        let mut generated = side(|l| if l == 4 { 50 } else { 10 }, &ALL, true);
        generated.inputs = vec![
            GeneratorInput {
                written: "app.env".into(),
                file: "apps/app.env".into(),
                text: "# settings\nOTHER=2\nFROM_ENV=1\n".into(),
                blame: blame_of(3, |_| 0),
            },
            GeneratorInput {
                written: "conf/app.properties".into(),
                file: "apps/conf/app.properties".into(),
                text: "a=1\nb=2\n".into(),
                blame: blame_of(2, |l| if l == 2 { 7 } else { 3 }),
            },
        ];
        let sides = [generated];
        let at = |p: &str| line_of(&sides, &desired, &Value::Null, p);
        let kustomization = |l: usize| Some(("apps/kustomization.yaml".to_owned(), l));
        assert_eq!(
            generator_inputs(&sides[0].object, &desired),
            ["app.env", "conf/app.properties", "conf/x.txt"]
        );
        let cases = [
            (".data.MODE", kustomization(26)),
            // Quotes around a literal's value are kustomize's, not the value's.
            (".data.LEVEL", kustomization(27)),
            (".data.FROM_ENV", Some(("apps/app.env".to_owned(), 3))),
            // A whole file is the value: its last change.
            (".data[app.properties]", None),
            // A file not read: the `files:` line.
            (".data.extra", kustomization(29)),
            // The name: prefix (4, changed last), suffix (5), entry name (24).
            (".metadata.name", kustomization(4)),
            (".metadata.namespace", kustomization(6)),
            (".metadata.labels.team", kustomization(8)),
            (".metadata.labels.generated", kustomization(32)),
            (".kind", kustomization(24)),
            (".data", kustomization(24)),
        ];
        for (p, want) in cases {
            if p == ".data[app.properties]" {
                let p = FieldPath::fields(["data", "app.properties"]);
                let claim = attribute(
                    &sides,
                    &desired,
                    &Value::Null,
                    &p,
                    &desired["data"]["app.properties"],
                );
                assert_eq!(
                    claim.map(|c| (c.file, c.line)),
                    Some(("apps/conf/app.properties", 2))
                );
                continue;
            }
            assert_eq!(at(p), want, "{p}");
        }
        // A Secret's data is base64: its literals are matched by key; and only
        // `secretGenerator` makes Secrets.
        let secret = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                   "data": {"PASSWORD": "c2VjcmV0", "MODE": "cHJvZA=="}})
        };
        let creds = secret("prod-creds-eu-5f7k9m2b4c");
        assert_eq!(
            line_of(&sides, &creds, &Value::Null, ".data.PASSWORD"),
            kustomization(36)
        );
        let settings = secret("prod-settings-eu-5f7k9m2b4c");
        assert_eq!(line_of(&sides, &settings, &Value::Null, ".data.MODE"), None);
    }

    #[test]
    fn image_references_split_as_kustomize_splits_them() {
        let cases = [
            ("nginx", ("nginx", "", "")),
            ("nginx:1.27", ("nginx", "1.27", "")),
            (
                "registry:5000/team/app:v1",
                ("registry:5000/team/app", "v1", ""),
            ),
            ("app@sha256:abc", ("app", "", "sha256:abc")),
            ("app:v1@sha256:abc", ("app", "v1", "sha256:abc")),
            (
                "host:5000/app@sha256:abc",
                ("host:5000/app", "", "sha256:abc"),
            ),
        ];
        for (image, want) in cases {
            assert_eq!(split_image(image), want, "{image}");
        }
        assert!(has_hash_suffix("prod-settings-5f7k9m2b4c"));
        assert!(!has_hash_suffix("prod-settings"));
        assert!(!has_hash_suffix("prod-settings-5F7K9M2B4C"));
    }
}
