//! `krew-package`: the Krew packaging behind `krew/package` (see that script for the usage).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use testenv::krew::{self, Shas};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: krew-package archive --binaries DIR --out DIR | \
                     krew-package manifest (--archives DIR | --placeholder)";

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<PathBuf> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(PathBuf::from)
    };
    match args.first().map(String::as_str) {
        Some("archive") => {
            let (Some(binaries), Some(out)) = (value("--binaries"), value("--out")) else {
                bail!("{USAGE}");
            };
            let package = krew::package(&binaries, &out)?;
            println!("archive:  {}", package.archive.display());
            println!("sha256:   {}", package.sha256);
            println!("manifest: {}", package.manifest.display());
            println!();
            println!("Install it with Krew:");
            println!(
                "  kubectl krew install --manifest={} --archive={}",
                package.manifest.display(),
                package.archive.display()
            );
            Ok(())
        }
        Some("manifest") => {
            let archives = value("--archives");
            let shas = match (&archives, args.iter().any(|a| a == "--placeholder")) {
                (Some(dir), false) => Shas::Archives(dir),
                (None, true) => Shas::Placeholder,
                _ => bail!("{USAGE}"),
            };
            let text = krew::release_manifest(shas)?;
            let path = krew::committed_manifest_path();
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
