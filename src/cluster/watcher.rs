//! Following one kind with the WATCH API, as kube-runtime's `watcher` does: resume from the last
//! resourceVersion, LIST again on `410 Gone`, retry an unreachable server with backoff.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::discovery::Resource;
use super::{Cluster, ClusterError, LiveObject, WatchEvent};
use crate::text::single_line;

/// The kind to follow, and from where.
pub struct Kind {
    pub resource: Resource,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub selector: Option<String>,
    /// The LIST's resourceVersion: the watch starts there.
    pub resource_version: String,
}

/// What a watch of one kind tells its follower.
pub enum Event {
    /// A change of an object.
    Changed(WatchEvent),
    /// The watch lost its place (410 Gone) and listed the kind again.
    Relisted(Vec<LiveObject>),
    /// The watch cannot reach the server; it retries with backoff.
    Down(String),
    /// It reaches the server again.
    Up,
    /// The watch gave up (forbidden, or the kind is gone).
    Stopped(String),
    /// A line for `-v`.
    Debug(String),
}

/// Delays between attempts to reach a server that went away: 0.5 s doubling to 30 s, with
/// jitter so that many watches do not knock at once.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // ±20 %.
        let jitter = (random() % 400) as f64 / 1000.0 - 0.2;
        delay.mul_f64(1.0 + jitter)
    }
}

/// A random number from the standard library's per-process hash keys.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

/// How long the server keeps one watch open: 5 to 10 minutes, spread as client-go spreads it.
fn watch_timeout() -> Duration {
    Duration::from_secs(300 + random() % 300)
}

/// Follows one kind: WATCH from the LIST's resourceVersion; on a closed stream, resume from
/// the last resourceVersion seen (bookmarks keep it fresh); on 410 Gone, LIST again and hand the
/// whole list over; when the server is unreachable, retry with backoff.
///
/// What happens is sent on `tx`, each [`Event`] made a message by `wrap`; it ends when the
/// receiver is gone, or the watch gives up ([`Event::Stopped`]).
pub async fn follow<M>(
    cluster: Cluster,
    kind: Kind,
    tx: mpsc::Sender<M>,
    wrap: impl Fn(Event) -> M,
) {
    let Kind {
        resource,
        namespace,
        selector,
        resource_version: mut rv,
    } = kind;
    let name = resource.qualified_name();
    let ns = namespace.as_deref();
    let mut backoff = Backoff::new();
    // Failures in a row; from two on, the main loop knows the server is down.
    let mut failures = 0;
    let mut relist = false;
    loop {
        if relist {
            match cluster
                .list_versioned(&resource, ns, selector.as_deref())
                .await
            {
                Ok((objects, version)) => {
                    rv = version;
                    relist = false;
                    if tx.send(wrap(Event::Relisted(objects))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if !report_down(&tx, &wrap, &name, &e, &mut failures).await {
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        let timeout = watch_timeout();
        let mut stream = match cluster
            .watch(&resource, ns, selector.as_deref(), &rv, timeout)
            .await
        {
            Ok(stream) => stream,
            Err(ClusterError::Api { code: 410, .. }) => {
                relist = true;
                continue;
            }
            Err(e @ (ClusterError::Forbidden { .. } | ClusterError::NotFound { .. })) => {
                let _ = tx
                    .send(wrap(Event::Stopped(single_line(&e.to_string()))))
                    .await;
                return;
            }
            Err(e) => {
                if !report_down(&tx, &wrap, &name, &e, &mut failures).await {
                    return;
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if failures >= 2 && tx.send(wrap(Event::Up)).await.is_err() {
            return;
        }
        failures = 0;
        let _ = tx
            .send(wrap(Event::Debug(format!(
                "{name}: watching from resourceVersion {rv}"
            ))))
            .await;
        let opened = Instant::now();
        let mut received = false;
        // The server ends the stream after `timeout`; silence well past it is a dead connection.
        let silence = timeout + Duration::from_secs(30);
        loop {
            let next = match tokio::time::timeout(silence, stream.next()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => break,
            };
            match next {
                Ok(WatchEvent::Bookmark(version)) => {
                    received = true;
                    rv = version;
                }
                Ok(event) => {
                    received = true;
                    if let WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) =
                        &event
                    {
                        let version = o["metadata"]["resourceVersion"].as_str();
                        if let Some(version) = version.filter(|v| !v.is_empty()) {
                            rv = version.to_owned();
                        }
                    }
                    if tx.send(wrap(Event::Changed(event))).await.is_err() {
                        return;
                    }
                }
                Err(ClusterError::Api { code: 410, .. }) => {
                    relist = true;
                    break;
                }
                Err(e) => {
                    let _ = tx
                        .send(wrap(Event::Debug(format!(
                            "{name}: the watch broke: {}",
                            single_line(&e.to_string())
                        ))))
                        .await;
                    break;
                }
            }
        }
        // A stream that ends at once, with nothing in it, is a server in trouble: wait.
        if received || relist || opened.elapsed() > Duration::from_secs(5) {
            backoff.reset();
        } else {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// Tells the main loop the server is out of reach, from the second failure in a row on (a
/// pooled connection the server closed fails once, and the retry works); false when the loop is
/// gone.
async fn report_down<M>(
    tx: &mpsc::Sender<M>,
    wrap: &impl Fn(Event) -> M,
    name: &str,
    error: &ClusterError,
    failures: &mut u32,
) -> bool {
    *failures += 1;
    let error = single_line(&error.to_string());
    let event = if *failures >= 2 {
        Event::Down(error)
    } else {
        Event::Debug(format!("{name}: the watch failed once: {error}"))
    };
    tx.send(wrap(event)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(400) && first <= Duration::from_millis(600));
        for _ in 0..10 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped <= Duration::from_secs(36) && capped >= Duration::from_secs(24));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }
}
