//! Draining: after a stop signal, new client calls are turned away with
//! UNAVAILABLE while the calls already running are counted down to zero.
//!
//! Owns: the draining flag and the in-flight count.
//! Does not own: signals (`main`) or stopping the listener (`node`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Held for the duration of one client call.
pub struct CallGuard(Arc<Drain>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Admits a call, or `None` once draining has begun.
    pub fn enter(self: &Arc<Self>) -> Option<CallGuard> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard(self.clone());
        // Checked after counting, so a call admitted here is always waited for.
        if self.draining.load(Ordering::SeqCst) {
            None
        } else {
            Some(guard)
        }
    }

    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no call is in flight, or `timeout`; returns the calls left.
    pub async fn wait_idle(&self, timeout: Duration) -> usize {
        let idle = async {
            loop {
                let notified = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, idle).await;
        self.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_calls_admitted_before_draining_and_turns_new_ones_away() {
        let drain = Drain::new();
        let running = drain.enter().unwrap();
        drain.start();
        assert!(drain.enter().is_none(), "no call is admitted while draining");
        let released = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(running);
        });
        assert_eq!(drain.wait_idle(Duration::from_secs(10)).await, 0);
        released.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_timeout_and_reports_what_is_left() {
        let drain = Drain::new();
        let _stuck = drain.enter().unwrap();
        drain.start();
        let started = tokio::time::Instant::now();
        assert_eq!(drain.wait_idle(Duration::from_secs(3)).await, 1);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
