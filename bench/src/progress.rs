//! The once-a-second progress line on stderr while a run goes on.
//!
//! Owns: the shared counters the clients bump (relaxed atomics: a progress line
//! needs no ordering) and the task that prints them. Does not own: the final
//! numbers, which come from the clients' own recorders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Counters {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn completed(&self, failed: bool) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints a line each second until the returned handle is aborted.
pub fn spawn_reporter(
    label: String,
    counters: Arc<Counters>,
    started: Instant,
    measure_from: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval_at((started + Duration::from_secs(1)).into(), Duration::from_secs(1));
        let mut last = 0u64;
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let completed = counters.completed.load(Ordering::Relaxed);
            let errors = counters.errors.load(Ordering::Relaxed);
            let phase = if now < measure_from { "warm-up" } else { "measure" };
            eprintln!(
                "[{label}] {:>5.1}s {phase}: {:>9} ops/s  ({completed} ops, {errors} errors so far)",
                now.duration_since(started).as_secs_f64(),
                completed - last,
            );
            last = completed;
        }
    })
}
