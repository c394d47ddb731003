//! The process around the plugin: the stop signals it obeys, the memory it gives back, and the
//! shell commands it runs (`watch --exec`), bounded by a timeout and killed with their whole
//! process group.

use std::time::Duration;

use anyhow::Result;

use crate::text::duration;

/// Ctrl-C, and SIGTERM where there is one.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn new() -> Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch =
                |kind| signal(kind).map_err(|e| anyhow::anyhow!("cannot catch signals: {e}"));
            Ok(StopSignals {
                interrupt: catch(SignalKind::interrupt())?,
                terminate: catch(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next stop signal and names it.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "interrupted",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

/// Gives back to the system what was freed (an evaluation's live objects, parsed documents):
/// glibc keeps freed heap otherwise, and watch then idles at the evaluation's peak.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `command` with `sh -c`, `input` and a newline on its stdin, its output on our stderr;
/// past `timeout` it is killed with its process group.
pub async fn run_hook(command: &str, json: &str, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        // Its output goes to our stderr: stdout carries the events.
        .stdout(hook_stdout())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    let mut group = KillGroup(child.id());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let work = async {
        // A hook that does not read its input closes the pipe; that is its choice.
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
        drop(stdin);
        child.wait().await
    };
    let result = tokio::time::timeout(timeout, work).await;
    match result {
        Ok(Ok(status)) if status.success() => {
            group.0 = None;
            Ok(())
        }
        Ok(Ok(status)) => {
            group.0 = None;
            Err(format!("it failed ({status})"))
        }
        Ok(Err(e)) => Err(format!("waiting for it: {e}")),
        Err(_) => Err(format!(
            "it did not finish within {} (--exec-timeout); it was killed",
            duration(timeout)
        )),
    }
}

/// Kills a hook's whole process group when dropped armed: on a timeout, or when watch stops
/// while it runs (a shell's children would outlive it otherwise).
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0
            && let Ok(pid) = libc::pid_t::try_from(pid)
        {
            // SAFETY: kill(2) on the process group this program created for its own child.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(unix)]
fn hook_stdout() -> std::process::Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => std::process::Stdio::from(fd),
        Err(_) => std::process::Stdio::null(),
    }
}

#[cfg(not(unix))]
fn hook_stdout() -> std::process::Stdio {
    std::process::Stdio::null()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_failing_or_hanging_hook_is_reported_not_fatal() {
        assert_eq!(
            run_hook("cat >/dev/null", "{}", Duration::from_secs(10)).await,
            Ok(())
        );
        let failed = run_hook("exit 3", "{}", Duration::from_secs(10)).await;
        assert!(
            failed.as_ref().is_err_and(|m| m.contains('3')),
            "{failed:?}"
        );
        let started = Instant::now();
        let hung = run_hook("sleep 30", "{}", Duration::from_millis(300)).await;
        assert!(
            hung.as_ref().is_err_and(|m| m.contains("killed")),
            "{hung:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
