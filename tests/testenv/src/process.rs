//! Starting the control-plane processes so that none outlives its owner.
//!
//! For tests, the processes are children of one thread that lives as long as the test binary,
//! with `PR_SET_PDEATHSIG`: when the binary ends for any reason (a panic, SIGKILL, Ctrl-C), the
//! kernel kills them. A normal exit also removes their directory. For `cluster up`, they are
//! detached into their own session and stopped by `cluster down`.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long the started processes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until this process ends, however it ends.
    TiedToThisProcess,
    /// Until stopped by pid (`cluster down`).
    Detached,
}

/// Test binaries keep their control plane in `<tmp>/<prefix><pid>`.
pub(crate) const TEST_DIR_PREFIX: &str = "kubectl-gitops-testenv-";

/// The names of the processes in the order they are started, for messages.
const NAMES: [&str; 2] = ["etcd", "kube-apiserver"];

type SpawnRequest = (Command, Sender<std::io::Result<u32>>);

/// Starts `cmd` with its output in `log` and returns its pid.
pub(crate) fn spawn(mut cmd: Command, log: &Path, lifetime: Lifetime) -> Result<u32> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let pid = match lifetime {
        Lifetime::Detached => {
            // SAFETY: setsid is async-signal-safe; it only detaches the child from our terminal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            let child = cmd.spawn();
            child.map(|c| c.id())
        }
        Lifetime::TiedToThisProcess => {
            let (reply, answer) = channel();
            keeper()
                .lock()
                .expect("the keeper thread lock is never poisoned")
                .send((cmd, reply))
                .expect("the keeper thread lives as long as the process");
            answer
                .recv()
                .expect("the keeper thread always answers a spawn request")
        }
    };
    pid.with_context(|| format!("starting {program}"))
}

/// The thread that spawns tied processes. PDEATHSIG fires when the *thread* that forked a child
/// ends, so it must be one that lives until the process exits, not a test's thread.
fn keeper() -> &'static Mutex<Sender<SpawnRequest>> {
    static KEEPER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl and getppid are async-signal-safe.
                    let parent = std::process::id() as libc::pid_t;
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            // The parent may have died between fork and prctl.
                            if libc::getppid() != parent {
                                libc::_exit(1);
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn().map(|child| {
                        let pid = child.id();
                        // Reaped in kill_all; dropping a Child neither kills nor waits.
                        drop(child);
                        pid
                    }));
                }
            })
            .expect("spawning the testenv keeper thread");
        Mutex::new(tx)
    })
}

static AT_EXIT: Mutex<Option<(Vec<u32>, PathBuf)>> = Mutex::new(None);

/// On a normal exit of the test binary, stop the processes and remove their directory.
pub(crate) fn stop_at_exit(pids: Vec<u32>, dir: PathBuf) {
    *AT_EXIT.lock().expect("at-exit lock") = Some((pids, dir));
    extern "C" fn cleanup() {
        if let Ok(mut guard) = AT_EXIT.lock()
            && let Some((pids, dir)) = guard.take()
        {
            kill_all(&pids);
            let _ = fs::remove_dir_all(dir);
        }
    }
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(cleanup);
    }
}

/// Kills the processes and waits until they are gone.
pub(crate) fn kill_all(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: sending a signal to a pid we started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for &pid in pids {
        while alive(pid) && Instant::now() < deadline {
            // Reap it if it is our child; otherwise wait for init to.
            // SAFETY: waitpid on a pid with WNOHANG has no other effect.
            unsafe {
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The name of the first of `pids` (started in [`NAMES`] order) that is no longer running.
pub(crate) fn first_exited(pids: &[u32]) -> Option<&'static str> {
    pids.iter()
        .zip(NAMES)
        .find(|(pid, _)| !alive(**pid))
        .map(|(_, name)| name)
}

/// Whether `pid` runs (a zombie does not).
pub(crate) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Removes directories left by test binaries that were killed before they could clean up.
pub(crate) fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEST_DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
