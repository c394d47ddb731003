//! `testenv up|down|status|build|build-flux|build-helm`: the test control plane for people (see
//! `tests/testenv/cluster`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use testenv::{ControlPlane, Lifetime};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn state_dir() -> PathBuf {
    testenv::cache_dir().join("cluster")
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = state_dir();
    match args.first().map(String::as_str) {
        Some("up") => {
            let kubeconfig = dir.join("kubeconfig");
            if dir.join("state").is_file() && kubeconfig.is_file() {
                eprintln!("testenv: already running (stop it with tests/testenv/cluster down)");
            } else {
                ControlPlane::stop_dir(&dir)?;
                let cp = ControlPlane::start(&dir, Lifetime::Detached)?;
                eprintln!(
                    "testenv: kube-apiserver {} at {} (etcd and kube-apiserver logs in {})",
                    cp.version,
                    cp.server,
                    cp.dir.display()
                );
                eprintln!(
                    "testenv: contexts {} (admin, current) and {} (read-only)",
                    testenv::ADMIN_CONTEXT,
                    testenv::VIEWER_CONTEXT
                );
            }
            println!("export KUBECONFIG={}", kubeconfig.display());
            Ok(())
        }
        Some("down") => {
            if ControlPlane::stop_dir(&dir)? {
                eprintln!("testenv: stopped");
            } else {
                eprintln!("testenv: not running");
            }
            Ok(())
        }
        Some("status") => {
            if dir.join("state").is_file() {
                println!(
                    "running; export KUBECONFIG={}",
                    dir.join("kubeconfig").display()
                );
            } else {
                println!("not running");
            }
            Ok(())
        }
        Some("build") => {
            let bins = testenv::ensure_binaries()?;
            println!("{}", bins.kube_apiserver.display());
            println!("{}", bins.etcd.display());
            Ok(())
        }
        Some("build-flux") => {
            let bins = testenv::ensure_flux()?;
            for path in [
                &bins.source_controller,
                &bins.kustomize_controller,
                &bins.flux,
                &bins.gitserver,
            ] {
                println!("{}", path.display());
            }
            Ok(())
        }
        Some("build-helm") => {
            let bins = testenv::ensure_helm()?;
            println!("{}", bins.helm.display());
            println!("{}", bins.helm_controller.display());
            let (registry, _) = testenv::ensure_registry()?;
            println!("{}", registry.display());
            Ok(())
        }
        // For the lifecycle test: start a control plane tied to this process, print its pids,
        // and die without any cleanup; the processes must die with it.
        Some("start-then-abort") => {
            let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("."));
            let cp = ControlPlane::start(&dir, Lifetime::TiedToThisProcess)?;
            let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
            println!("{}", pids.join(" "));
            use std::io::Write;
            std::io::stdout().flush()?;
            std::process::abort();
        }
        // The same with Flux's controllers and Git server started too.
        Some("start-flux-then-abort") => {
            let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("."));
            let cp = ControlPlane::start(&dir, Lifetime::TiedToThisProcess)?;
            let flux = testenv::flux::Flux::start(&cp)?;
            let mut pids: Vec<u32> = cp.pids().to_vec();
            pids.extend(flux.pids());
            pids.push(flux.git.pid());
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("{}", pids.join(" "));
            use std::io::Write;
            std::io::stdout().flush()?;
            std::process::abort();
        }
        _ => bail!("usage: tests/testenv/cluster up|down|status|build|build-flux|build-helm"),
    }
}
