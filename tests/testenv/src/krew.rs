//! Krew packaging: the release archive for this platform, and Krew manifests rendered from
//! `krew/.krew.yaml` exactly as krew-release-bot renders it on a release, so that the manifest
//! installed in tests, the one submitted to krew-index and the bot's agree. The version is the
//! plugin's, from Cargo.toml; it is written nowhere else.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The plugin's name in Krew: `kubectl gitops`.
pub const PLUGIN: &str = "gitops";

/// What `sha256:` holds in a manifest rendered before the release archives exist.
pub const PLACEHOLDER_SHA256: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The files every archive holds, besides the two binaries.
const DOCUMENTS: [&str; 2] = ["LICENSE", "README.md"];

/// The two binaries every archive holds: the plugin, and the completion helper kubectl runs
/// for `kubectl gitops <TAB>`.
pub const BINARIES: [&str; 2] = ["kubectl-gitops", "kubectl_complete-gitops"];

/// The repository root (where Cargo.toml, LICENSE and `krew/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("tests/testenv is inside the repository")
}

/// `krew/.krew.yaml`: the template krew-release-bot fills on a release.
pub fn template_path() -> PathBuf {
    repo_root().join("krew").join(".krew.yaml")
}

/// `plugin-manifest/gitops.yaml`: the manifest for krew-index.
pub fn committed_manifest_path() -> PathBuf {
    repo_root()
        .join("plugin-manifest")
        .join(format!("{PLUGIN}.yaml"))
}

/// The release tag, `v` and the `[package]` version of the repository's Cargo.toml.
pub fn tag() -> Result<String> {
    let path = repo_root().join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let version = package_version(&text)
        .with_context(|| format!("{} has no version in [package]", path.display()))?;
    Ok(format!("v{version}"))
}

/// The `version = "..."` of the `[package]` table.
fn package_version(cargo_toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        let Some(value) = line
            .strip_prefix("version")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        if in_package {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// A Krew platform: `os` and `arch` as Go names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub arch: &'static str,
}

impl Platform {
    /// The platform this program runs on.
    pub fn current() -> Result<Platform> {
        let os = match std::env::consts::OS {
            "linux" => "linux",
            "macos" => "darwin",
            "windows" => "windows",
            other => bail!("Krew has no platform for the OS {other}"),
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => bail!("Krew has no platform for the architecture {other}"),
        };
        Ok(Platform { os, arch })
    }

    fn exe_suffix(self) -> &'static str {
        if self.os == "windows" { ".exe" } else { "" }
    }

    /// The release archive's file name, as the template's URLs name it:
    /// `kubectl-gitops_v0.1.0_linux_amd64.tar.gz` (`.zip` for Windows).
    pub fn archive_name(self, tag: &str) -> String {
        let ext = if self.os == "windows" {
            "zip"
        } else {
            "tar.gz"
        };
        format!("kubectl-gitops_{tag}_{}_{}.{ext}", self.os, self.arch)
    }
}

/// A packaged release for this platform.
#[derive(Debug, Clone)]
pub struct Package {
    pub tag: String,
    pub archive: PathBuf,
    pub sha256: String,
    /// A manifest listing this platform only, for
    /// `kubectl krew install --manifest=MANIFEST --archive=ARCHIVE`.
    pub manifest: PathBuf,
}

/// Builds the release archive for this platform from the binaries in `bin_dir` (a cargo
/// target directory such as `target/release`) and the repository's LICENSE and README.md,
/// into `out_dir`, and writes `out_dir/gitops.yaml` for a local install.
pub fn package(bin_dir: &Path, out_dir: &Path) -> Result<Package> {
    let tag = tag()?;
    let platform = Platform::current()?;
    let root = repo_root();
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let staging = tempfile::tempdir_in(out_dir).context("creating a staging directory")?;
    let mut names = Vec::new();
    for binary in BINARIES {
        let name = format!("{binary}{}", platform.exe_suffix());
        let from = bin_dir.join(&name);
        if !from.is_file() {
            bail!(
                "{} does not exist; build it first (cargo build --release --bins)",
                from.display()
            );
        }
        fs::copy(&from, staging.path().join(&name))
            .with_context(|| format!("copying {}", from.display()))?;
        names.push(name);
    }
    check_binary_version(&staging.path().join(&names[0]), &tag)?;
    for document in DOCUMENTS {
        fs::copy(root.join(document), staging.path().join(document))
            .with_context(|| format!("copying {document}"))?;
        names.push(document.to_owned());
    }

    let archive = out_dir.join(platform.archive_name(&tag));
    let _ = fs::remove_file(&archive);
    let mut tar = Command::new("tar");
    if platform.os == "windows" {
        // bsdtar, which Windows ships, picks zip from the extension.
        tar.arg("-a").arg("-cf");
    } else {
        tar.arg("-czf");
    }
    tar.arg(&archive).arg("-C").arg(staging.path()).args(&names);
    let out = tar
        .output()
        .context("running tar (needed to build the archive)")?;
    if !out.status.success() {
        bail!(
            "tar failed to write {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sha256 = sha256_file(&archive)?;

    let template = fs::read_to_string(template_path())
        .with_context(|| format!("reading {}", template_path().display()))?;
    let archive_name = platform.archive_name(&tag);
    let manifest_text = render(&template, &tag, |url| {
        Ok((url.rsplit('/').next() == Some(archive_name.as_str())).then(|| sha256.clone()))
    })?;
    let manifest = out_dir.join(format!("{PLUGIN}.yaml"));
    fs::write(&manifest, manifest_text)
        .with_context(|| format!("writing {}", manifest.display()))?;
    Ok(Package {
        tag,
        archive,
        sha256,
        manifest,
    })
}

/// Where a manifest for every platform gets its sha256 values.
#[derive(Debug, Clone, Copy)]
pub enum Shas<'a> {
    /// From the release archives in this directory, named as the template's URLs name them.
    Archives(&'a Path),
    /// [`PLACEHOLDER_SHA256`], before the release archives exist.
    Placeholder,
}

/// The manifest for krew-index: every platform of the template, for the current version.
pub fn release_manifest(shas: Shas) -> Result<String> {
    let tag = tag()?;
    let template = fs::read_to_string(template_path())
        .with_context(|| format!("reading {}", template_path().display()))?;
    let text = render(&template, &tag, |url| match shas {
        // Quoted: YAML would read zeros alone as the number 0.
        Shas::Placeholder => Ok(Some(format!("\"{PLACEHOLDER_SHA256}\""))),
        Shas::Archives(dir) => {
            let name = url.rsplit('/').next().unwrap_or(url);
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: every platform's archive is needed (krew/package builds \
                     one on each platform)",
                    path.display()
                );
            }
            sha256_file(&path).map(Some)
        }
    })?;
    let header = match shas {
        Shas::Placeholder => format!(
            "# Rendered from krew/.krew.yaml by `krew/package manifest --placeholder`.\n\
             # The sha256 values are placeholders until the {tag} release archives exist; then\n\
             # `krew/package manifest DIR` writes the real ones. Do not edit by hand.\n"
        ),
        Shas::Archives(_) => format!(
            "# Rendered from krew/.krew.yaml by `krew/package manifest DIR` from the {tag}\n\
             # release archives. Do not edit by hand.\n"
        ),
    };
    Ok(format!("{header}{text}"))
}

/// Renders a krew-release-bot template: `{{ .TagName }}` becomes `tag`, and
/// `{{addURIAndSha "URL" .TagName }}` becomes `uri: URL` and `sha256: SHA` (the URL's own
/// `{{ .TagName }}` filled in), as the bot writes them. `sha` gives a URL's sha256; a platform
/// whose URL has none is left out. Any other template action is an error.
pub fn render(
    template: &str,
    tag: &str,
    sha: impl Fn(&str) -> Result<Option<String>>,
) -> Result<String> {
    // Marks a platform to leave out; removed with its list item below.
    const NO_ARCHIVE: &str = "\u{0}no-archive\u{0}";
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let action = &rest[start + 2..];
        let trimmed = action.trim_start();
        if let Some(call) = trimmed.strip_prefix("addURIAndSha") {
            let call = call.trim_start();
            let Some(quoted) = call.strip_prefix('"') else {
                bail!("addURIAndSha needs a quoted URL: {}", first_line(trimmed));
            };
            let Some(end_quote) = quoted.find('"') else {
                bail!("unterminated URL in: {}", first_line(trimmed));
            };
            let url = fill_tag(&quoted[..end_quote], tag)?;
            let after = quoted[end_quote + 1..].trim_start();
            let Some(after) = after
                .strip_prefix(".TagName")
                .map(str::trim_start)
                .and_then(|a| a.strip_prefix("}}"))
            else {
                bail!(
                    "addURIAndSha takes the URL and .TagName: {}",
                    first_line(trimmed)
                );
            };
            match sha(&url)? {
                // The bot's own layout: `sha256` on the next line, indented four spaces.
                Some(sha256) => out.push_str(&format!("uri: {url}\n    sha256: {sha256}")),
                None => out.push_str(NO_ARCHIVE),
            }
            rest = after;
        } else {
            let Some(end) = action.find("}}") else {
                bail!("unterminated template action: {}", first_line(action));
            };
            if action[..end].trim() != ".TagName" {
                bail!(
                    "unsupported template action {{{{{}}}}}: krew-release-bot templates use \
                     .TagName and addURIAndSha",
                    &action[..end]
                );
            }
            out.push_str(tag);
            rest = &action[end + 2..];
        }
    }
    out.push_str(rest);
    let kept = drop_list_items(&out, "platforms:", NO_ARCHIVE);
    if !kept.contains("uri: ") {
        bail!("no platform of the template has an archive");
    }
    Ok(kept)
}

fn fill_tag(text: &str, tag: &str) -> Result<String> {
    let filled = text
        .replace("{{ .TagName }}", tag)
        .replace("{{.TagName}}", tag);
    if filled.contains("{{") {
        bail!("unsupported template action in {text}");
    }
    Ok(filled)
}

/// `yaml` without the items of the block list under `key` (a line `  platforms:`) whose text
/// contains `marker`. Items are the lines from one `- ` at the key's indentation to the next,
/// or to the first line indented no deeper than the key.
fn drop_list_items(yaml: &str, key: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut list_indent: Option<usize> = None;
    let mut item = String::new();
    let flush = |item: &mut String, out: &mut String| {
        if !item.contains(marker) {
            out.push_str(item);
        }
        item.clear();
    };
    for line in yaml.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty();
        if let Some(at) = list_indent {
            if line.trim_start().starts_with("- ") && indent == at {
                flush(&mut item, &mut out);
                item.push_str(line);
                continue;
            }
            if blank || indent > at {
                item.push_str(line);
                continue;
            }
            flush(&mut item, &mut out);
            list_indent = None;
        }
        if line.trim() == key {
            list_indent = Some(indent);
        }
        out.push_str(line);
    }
    flush(&mut item, &mut out);
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The binary must say the version it is packaged as; a stale build would not.
fn check_binary_version(binary: &Path, tag: &str) -> Result<()> {
    let out = Command::new(binary)
        .args(["version", "-o", "json"])
        .output()
        .with_context(|| format!("running {} version", binary.display()))?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the output of {} version", binary.display()))?;
    let reported = doc["version"].as_str().unwrap_or_default();
    if format!("v{reported}") != tag {
        bail!(
            "{} reports version {reported}, but Cargo.toml says {}; rebuild it",
            binary.display(),
            tag.trim_start_matches('v')
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: gitops
spec:
  version: {{ .TagName }}
  platforms:
  - selector:
      matchLabels:
        os: linux
        arch: amd64
    {{addURIAndSha "https://x.example/{{ .TagName }}/a_{{ .TagName }}_linux_amd64.tar.gz" .TagName }}
    bin: kubectl-gitops
    files:
    - from: kubectl-gitops
      to: .

  - selector:
      matchLabels:
        os: darwin
        arch: arm64
    {{ addURIAndSha "https://x.example/{{.TagName}}/a_{{.TagName}}_darwin_arm64.tar.gz" .TagName }}
    bin: kubectl-gitops
  shortDescription: Something
"#;

    #[test]
    fn renders_as_krew_release_bot_does() {
        let all = render(TEMPLATE, "v1.2.3", |url| {
            Ok(Some(format!("sha-{}", url.rsplit('/').next().unwrap())))
        })
        .unwrap();
        assert!(all.contains("  version: v1.2.3\n"), "{all}");
        assert!(
            all.contains(
                "    uri: https://x.example/v1.2.3/a_v1.2.3_linux_amd64.tar.gz\n    sha256: sha-a_v1.2.3_linux_amd64.tar.gz\n    bin:"
            ),
            "{all}"
        );
        assert!(all.contains("darwin_arm64.tar.gz\n    sha256: "), "{all}");
        assert!(!all.contains("{{"), "{all}");
    }

    #[test]
    fn platforms_without_an_archive_are_left_out() {
        let linux = render(TEMPLATE, "v1.2.3", |url| {
            Ok(url.contains("linux").then(|| "abc".to_owned()))
        })
        .unwrap();
        assert!(linux.contains("os: linux"), "{linux}");
        assert!(!linux.contains("darwin"), "{linux}");
        // What follows the list is kept.
        assert!(
            linux.ends_with(
                "    - from: kubectl-gitops\n      to: .\n\n  shortDescription: Something\n"
            ),
            "{linux:?}"
        );
        let none = render(TEMPLATE, "v1.2.3", |_| Ok(None)).unwrap_err();
        assert_eq!(
            none.to_string(),
            "no platform of the template has an archive"
        );
    }

    #[test]
    fn unknown_actions_are_refused() {
        let err = render("version: {{ .Version }}\n", "v1", |_| Ok(None)).unwrap_err();
        assert!(
            err.to_string().starts_with("unsupported template action"),
            "{err}"
        );
        let err = render("{{addURIAndSha \"u\" }}\n", "v1", |_| Ok(None)).unwrap_err();
        assert!(err.to_string().starts_with("addURIAndSha takes"), "{err}");
    }

    #[test]
    fn version_comes_from_the_package_table() {
        let toml =
            "[package]\nname = \"x\"\nversion = \"0.3.1\"\n\n[dependencies]\nversion = \"9\"\n";
        assert_eq!(package_version(toml).as_deref(), Some("0.3.1"));
        let toml = "[workspace.package]\nversion = \"1.0.0\"\n[package]\nname = \"x\"\n";
        assert_eq!(package_version(toml), None);
        assert!(tag().unwrap().starts_with('v'));
    }

    #[test]
    fn archive_names_match_the_template() {
        let template = fs::read_to_string(template_path()).unwrap();
        for (os, arch) in [
            ("linux", "amd64"),
            ("linux", "arm64"),
            ("darwin", "amd64"),
            ("darwin", "arm64"),
            ("windows", "amd64"),
        ] {
            let name = Platform { os, arch }.archive_name("{{ .TagName }}");
            assert!(
                template.contains(&format!("/{name}\"")),
                "{name} in the template"
            );
        }
    }

    #[test]
    fn sha256_is_the_standard_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, "abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
