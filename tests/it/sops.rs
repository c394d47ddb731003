//! SOPS-encrypted Secrets: real kustomize-controller decrypts a Secret that Git holds encrypted
//! with `sops` (built from its Go module) for an age key made here, and our diff compares it
//! without ever showing a value, with the key (decrypted in memory) and without it (keys only).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fixture::{ALICE, BOB, GitRepo};
use crate::support::{Ran, flux_origin, kubectl, kubectl_gitops, run};

/// The plaintext values; none may appear in any output, nor their base64.
const PASSWORD: &str = "sops-plain-password-7f3a";
const USER: &str = "sops-plain-user-91c2";
const CHANGED: &str = "changed-by-hand-5e0d";

const SECRET: &str = "apps/db.yaml";

fn plain_secret() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {PASSWORD}\n\
         data:\n  user: {}\n",
        base64(USER)
    )
}

const SETTINGS: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
";

fn base64(text: &str) -> String {
    kubectl_gitops::drift::base64(text.as_bytes())
}

/// sops and an age key made with the built age-keygen: (sops, key file, public key).
fn sops_and_key(dir: &Path) -> (PathBuf, PathBuf, String) {
    let tools = testenv::ensure_sops().expect("building sops and age-keygen");
    let key = dir.join("keys.txt");
    let out = Command::new(&tools.age_keygen)
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&key).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_owned();
    (tools.sops, key, recipient)
}

/// `plain` encrypted for `recipient` the way Flux's guide says: only `data` and `stringData`.
fn encrypt(sops: &Path, dir: &Path, recipient: &str, plain: &str) -> String {
    let input = dir.join("plain-secret.yaml");
    std::fs::write(&input, plain).unwrap();
    let out = Command::new(sops)
        .current_dir(dir)
        .args(["--encrypt", "--age", recipient])
        .args(["--encrypted-regex", "^(data|stringData)$"])
        .args(["--input-type", "yaml", "--output-type", "yaml"])
        .arg(&input)
        .output()
        .unwrap();
    std::fs::remove_file(&input).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the plugin in the work tree with `sops` on PATH, and the key given to sops when
/// `key` is set. No output ever holds a value, plain, base64 or encrypted.
fn gitops(ns: &str, repo: &GitRepo, env: &Env, key: bool, args: &[&str]) -> Ran {
    let kc = testenv::shared().kubeconfig.display().to_string();
    let mut full = vec![args[0], "--kubeconfig", kc.as_str(), "-n", ns];
    full.extend_from_slice(&args[1..]);
    let mut cmd = kubectl_gitops(&full);
    let path = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(|v| v.to_owned()))
        .unwrap();
    let mut dirs = vec![env.sops.parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap())
        .env("XDG_CACHE_HOME", env.cache.path())
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .current_dir(repo.path());
    if key {
        cmd.env("SOPS_AGE_KEY_FILE", &env.key);
    }
    let ran = run(&mut cmd);
    assert_no_value(args, &ran, &env.ciphertexts);
    ran
}

#[track_caller]
fn assert_no_value(args: &[&str], ran: &Ran, ciphertexts: &[String]) {
    let mut forbidden = vec!["ENC[".to_owned(), "AES256_GCM".to_owned()];
    for value in [PASSWORD, USER, CHANGED] {
        forbidden.push(value.to_owned());
        forbidden.push(base64(value));
    }
    forbidden.extend(ciphertexts.iter().cloned());
    for text in [&ran.stdout, &ran.stderr] {
        for value in &forbidden {
            assert!(
                !text.contains(value.as_str()),
                "{args:?}: a value leaked ({value}):\n{text}"
            );
        }
    }
}

struct Env {
    sops: PathBuf,
    key: PathBuf,
    cache: tempfile::TempDir,
    /// The `data:` part of every encrypted value in Git.
    ciphertexts: Vec<String>,
}

fn ciphertexts(encrypted: &str) -> Vec<String> {
    encrypted
        .split("ENC[AES256_GCM,data:")
        .skip(1)
        .filter_map(|rest| rest.split(',').next())
        .filter(|data| data.len() >= 8)
        .map(str::to_owned)
        .collect()
}

/// `diff --server-side=MODE -o json`, with or without the key: what it printed, and the report.
fn diff(ns: &str, repo: &GitRepo, env: &Env, key: bool, mode: &str) -> (Ran, Value) {
    let ran = gitops(
        ns,
        repo,
        env,
        key,
        &["diff", &format!("--server-side={mode}"), "-o", "json"],
    );
    let report = report(&ran);
    (ran, report)
}

fn report(ran: &Ran) -> Value {
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}\n{}", ran.stdout, ran.stderr))
}

fn item<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["object"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {report:#}"))
}

/// A `data` value of the live Secret; None when it or the Secret is not there.
fn live_data(ns: &str, key: &str) -> Option<String> {
    let out = testenv::shared()
        .kubectl_run(
            &[
                "get",
                "-n",
                ns,
                "secret/db",
                "-o",
                "json",
                "--ignore-not-found",
            ],
            None,
        )
        .unwrap();
    if out.trim().is_empty() {
        return None;
    }
    let secret: Value = serde_json::from_str(&out).unwrap();
    secret["data"][key].as_str().map(str::to_owned)
}

#[test]
fn a_sops_encrypted_secret_is_compared_without_showing_a_value() {
    let ns = testenv::shared().namespace("sops");
    let work = tempfile::tempdir().unwrap();
    let (sops, key, recipient) = sops_and_key(work.path());
    let encrypted = encrypt(&sops, work.path(), &recipient, &plain_secret());
    assert!(encrypted.contains("ENC[AES256_GCM") && encrypted.contains("mac: ENC["));
    let env = Env {
        sops,
        key: key.clone(),
        cache: tempfile::tempdir().unwrap(),
        ciphertexts: ciphertexts(&encrypted),
    };
    assert!(env.ciphertexts.len() >= 3, "{encrypted}");

    let mut repo = GitRepo::new();
    repo.write(SECRET, &encrypted)
        .write("apps/settings.yaml", SETTINGS);
    repo.commit(ALICE, "An encrypted Secret and its settings");
    flux_origin(&repo);
    // kustomize-controller decrypts with the age key in Secret sops-age (a key ending .agekey).
    testenv::shared()
        .kubectl_run(
            &[
                "create",
                "secret",
                "generic",
                "sops-age",
                "-n",
                &ns,
                &format!("--from-file=identity.agekey={}", key.display()),
            ],
            None,
        )
        .unwrap();
    testenv::flux::shared()
        .reconcile(
            &ns,
            "apps",
            repo.path(),
            "./apps",
            json!({"targetNamespace": ns,
                   "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}}),
        )
        .unwrap();
    // The live Secret is Flux's decryption of Git's.
    assert_eq!(live_data(&ns, "password"), Some(base64(PASSWORD)));
    assert_eq!(live_data(&ns, "user"), Some(base64(USER)));

    // As Flux applied it: in sync in every mode, with the key and without it.
    for mode in ["false", "auto", "true"] {
        let (ran, with_key) = diff(&ns, &repo, &env, true, mode);
        assert_eq!(ran.code, Some(0), "{mode}: {}\n{with_key:#}", ran.stderr);
        assert_eq!(with_key["summary"]["inSync"], 2, "{mode}: {with_key:#}");
        assert_eq!(item(&with_key, "Secret")["notCompared"], Value::Null);
        assert!(!ran.stderr.contains("note:"), "{mode}: {}", ran.stderr);

        let (ran, without) = diff(&ns, &repo, &env, false, mode);
        assert_eq!(ran.code, Some(0), "{mode}: {}\n{without:#}", ran.stderr);
        assert_eq!(without["summary"]["inSync"], 2, "{mode}: {without:#}");
        let secret = item(&without, "Secret");
        assert_eq!(secret["status"], "in-sync");
        let paths: Vec<&str> = secret["notCompared"]
            .as_array()
            .unwrap_or_else(|| panic!("{secret:#}"))
            .iter()
            .map(|n| {
                assert_eq!(n["reason"], "encrypted in Git: not compared");
                n["path"].as_str().unwrap()
            })
            .collect();
        assert_eq!(paths, [".stringData.password", ".data.user"], "{mode}");
        // Said once, with the fix.
        assert_eq!(ran.stderr.matches("note:").count(), 1, "{}", ran.stderr);
        assert!(
            ran.stderr.contains(&format!("Secret {ns}/db ({SECRET})"))
                && ran.stderr.contains("no key of yours opens it")
                && ran.stderr.contains("SOPS_AGE_KEY_FILE"),
            "{}",
            ran.stderr
        );
    }

    // Every format, with and without the key, verbose: never a value (gitops() greps each).
    for key in [true, false] {
        for format in ["diff", "table", "json", "yaml", "markdown"] {
            let ran = gitops(&ns, &repo, &env, key, &["diff", "-o", format, "-v=2"]);
            assert_eq!(ran.code, Some(0), "{format}: {}", ran.stderr);
            if !key && format != "json" && format != "yaml" {
                assert!(
                    ran.stdout.contains(&format!(
                        "note: Secret {ns}/db: .stringData.password, .data.user: encrypted in Git: not compared"
                    )),
                    "{format}:\n{}",
                    ran.stdout
                );
            }
        }
    }

    // A value changed out of band: found with the key, masked; keys alone match without it.
    kubectl(
        &ns,
        &[
            "patch",
            "secret",
            "db",
            "-p",
            &json!({"stringData": {"password": CHANGED}}).to_string(),
        ],
        None,
    );
    for mode in ["false", "auto", "true"] {
        let (ran, with_key) = diff(&ns, &repo, &env, true, mode);
        assert_eq!(ran.code, Some(1), "{mode}: {}\n{with_key:#}", ran.stderr);
        let secret = item(&with_key, "Secret");
        assert_eq!(secret["status"], "drifted", "{mode}: {secret:#}");
        assert_eq!(secret["fields"][0]["path"], ".data.password", "{secret:#}");
        assert_eq!(secret["fields"][0]["git"], "(hidden git value)");
        assert_eq!(secret["fields"][0]["live"], "(hidden live value)");
        assert_eq!(secret["fields"][0]["why"]["manager"], "kubectl-patch");
        let (ran, without) = diff(&ns, &repo, &env, false, mode);
        assert_eq!(ran.code, Some(0), "{mode}: {}\n{without:#}", ran.stderr);
    }
    for format in ["diff", "table", "markdown", "yaml"] {
        let ran = gitops(&ns, &repo, &env, true, &["diff", "-o", format]);
        assert_eq!(ran.code, Some(1), "{format}: {}", ran.stderr);
    }

    // A key added out of band is drift without the key too; revert without the key refuses
    // the Secret (its values are unknown) and exits 2.
    kubectl(
        &ns,
        &[
            "patch",
            "secret",
            "db",
            "-p",
            r#"{"stringData":{"extra":"x"}}"#,
        ],
        None,
    );
    let (ran, without) = diff(&ns, &repo, &env, false, "auto");
    assert_eq!(ran.code, Some(1), "{}\n{without:#}", ran.stderr);
    let secret = item(&without, "Secret");
    assert_eq!(secret["fields"][0]["path"], ".data.extra", "{secret:#}");
    let ran = gitops(&ns, &repo, &env, false, &["revert", "secret/db", "--yes"]);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("encrypted with SOPS in Git"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert_eq!(live_data(&ns, "password"), Some(base64(CHANGED)));

    // With the key, revert writes Git's decrypted values, as Flux would.
    let ran = gitops(&ns, &repo, &env, true, &["revert", "secret/db", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(live_data(&ns, "password"), Some(base64(PASSWORD)));
    assert_eq!(live_data(&ns, "extra"), None);
    let (ran, with_key) = diff(&ns, &repo, &env, true, "true");
    assert_eq!(ran.code, Some(0), "{}\n{with_key:#}", ran.stderr);

    // Deleted: missing, with or without the key; created again only with it, decrypted.
    testenv::shared()
        .kubectl_run(&["delete", "-n", &ns, "secret/db"], None)
        .unwrap();
    let (ran, without) = diff(&ns, &repo, &env, false, "auto");
    assert_eq!(ran.code, Some(1), "{}\n{without:#}", ran.stderr);
    assert_eq!(item(&without, "Secret")["status"], "missing", "{without:#}");
    let ran = gitops(
        &ns,
        &repo,
        &env,
        false,
        &["diff", "-f", SECRET, "-o", "json"],
    );
    assert_eq!(ran.code, Some(1), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(item(&report(&ran), "Secret")["status"], "missing");
    let ran = gitops(&ns, &repo, &env, false, &["revert", "secret/db", "--yes"]);
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(live_data(&ns, "password"), None);
    let ran = gitops(&ns, &repo, &env, true, &["revert", "secret/db", "--yes"]);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(live_data(&ns, "password"), Some(base64(PASSWORD)));
    assert_eq!(live_data(&ns, "user"), Some(base64(USER)));

    // A damaged document in Git (a value's ciphertext edited without sops): one line naming
    // the object and the file, exit 2; the ConfigMap is still reported.
    let damaged = env.ciphertexts[0].clone();
    let mut flipped = damaged.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    repo.write(SECRET, &encrypted.replacen(&damaged, &flipped, 1));
    repo.commit(BOB, "Edit the encrypted file by hand");
    for mode in ["false", "auto", "true"] {
        let (ran, with_key) = diff(&ns, &repo, &env, true, mode);
        assert_eq!(ran.code, Some(2), "{mode}: {}\n{with_key:#}", ran.stderr);
        let errors = ran.error_lines();
        assert_eq!(errors.len(), 1, "{}", ran.stderr);
        assert!(
            errors[0].starts_with(&format!(
                "error: Secret {ns}/db: cannot decrypt {SECRET} with sops: "
            )) && errors[0].contains("sops --encrypt"),
            "{}",
            errors[0]
        );
        assert_eq!(item(&with_key, "Secret")["status"], "error");
        assert_eq!(item(&with_key, "ConfigMap")["status"], "in-sync");
    }
}
