//! Releases the calls of an open-loop run on time: within `TICK` of their
//! intended send time, rather than within tokio's timer resolution.
//!
//! Owns: one thread that sleeps with the operating system's fine-grained timer
//! and ticks when calls come due, and one task that, on each tick, wakes the
//! clients whose calls have come due.
//! Also owns `Schedule`, when each call is due. Does not own: sending calls, or
//! latency, which is still taken from the intended send time.
//!
//! Why a thread: tokio's timer wheel has millisecond slots and its driver parks
//! in whole milliseconds, so `sleep_until` returned on average 1.2 ms after the
//! intended time on the 2-core test machine (measured at 8k calls/s). That lag is
//! the generator's own, yet it was added to every open-loop latency, on the
//! scale of the 5 ms p99 the benchmark is read against. The thread wakes at most
//! once per `TICK`, so its cost stays bounded at any rate; it shows in the
//! generator's CPU figure like the rest of the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The pacer's resolution: calls due within one tick leave together at its end.
/// 1 ms, measured against 100, 250 and 500 µs on the 2-core machine (echo at
/// 8k calls/s): finer ticks cut the lag further (p50 0.29 ms at 100 µs against
/// 1.1 ms at 1 ms) but spread the calls so thin that the echo server spent
/// 2-2.5x the CPU per call and the generator as much again, which moved every
/// system's saturation point; 1 ms keeps the old cost with a bounded lag
/// (the old timer's was 1-2 ms, 1.2 ms on average).
pub const TICK: Duration = Duration::from_millis(1);

/// When each call of an open-loop run is due: calls are numbered in one
/// sequence over all clients (call `slot` belongs to client `slot % clients`).
#[derive(Clone, Copy)]
pub struct Schedule {
    pub started: Instant,
    pub rate: f64,
    pub clients: usize,
    /// No call is due from here on.
    pub end: Instant,
}

impl Schedule {
    /// When the `call`-th call of client `client` is due. Computed from the start
    /// each time rather than accumulated, so rounding does not drift.
    pub fn intended(&self, client: usize, call: u64) -> Instant {
        self.due(client as u64 + call * self.clients as u64)
    }

    fn due(&self, slot: u64) -> Instant {
        self.started + Duration::from_secs_f64(slot as f64 / self.rate)
    }
}

/// Wakes clients when their calls come due; stops when dropped.
pub struct Pacer {
    due: Arc<[Notify]>,
    tick: Arc<Notify>,
    /// Set when the schedule has ended or the pacer was dropped: nothing is
    /// released any more, so nobody may wait.
    stopped: Arc<AtomicBool>,
}

impl Pacer {
    /// Starts the ticking thread and, on the current tokio runtime, the task
    /// that releases the calls on each tick. The thread wakes the runtime once
    /// per tick and the task wakes the due clients from inside it: woken from
    /// another thread one by one, the calls of one tick would leave in several
    /// writes instead of one, which cost the echo server half again as much CPU
    /// per call here.
    pub fn start(schedule: Schedule) -> std::io::Result<Self> {
        let pacer = Self {
            due: (0..schedule.clients).map(|_| Notify::new()).collect(),
            tick: Arc::new(Notify::new()),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let (tick, stopped) = (Arc::clone(&pacer.tick), Arc::clone(&pacer.stopped));
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || tick_until_the_end(schedule, &tick, &stopped))?;
        let (due, tick, stopped) = (
            Arc::clone(&pacer.due),
            Arc::clone(&pacer.tick),
            Arc::clone(&pacer.stopped),
        );
        tokio::spawn(async move { release_calls(schedule, &due, &tick, &stopped).await });
        Ok(pacer)
    }

    /// Returns once `intended` has passed, as told by the pacer, or at once when
    /// the schedule has ended (a call due after its end is never released: the
    /// caller should not send it).
    pub async fn wait_until(&self, client: usize, intended: Instant) {
        // A wake-up may be left over from an earlier call that came due while
        // this client was busy; the clock, not the wake-up, decides.
        while Instant::now() < intended && !self.stopped.load(Ordering::Acquire) {
            self.due[client].notified().await;
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        self.tick.notify_one();
    }
}

/// The thread: wakes the releasing task when the next call is due, but at most
/// once per `TICK`, until the schedule ends.
fn tick_until_the_end(schedule: Schedule, tick: &Notify, stopped: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= schedule.end || stopped.load(Ordering::Acquire) {
            break;
        }
        tick.notify_one();
        let next_slot = ((now - schedule.started).as_secs_f64() * schedule.rate).floor() as u64 + 1;
        let wake_at = schedule.due(next_slot).max(now + TICK);
        std::thread::sleep(wake_at.saturating_duration_since(Instant::now()));
    }
    stopped.store(true, Ordering::Release);
    tick.notify_one();
}

/// The task: on each tick, wakes the clients whose calls have come due.
async fn release_calls(schedule: Schedule, due: &[Notify], tick: &Notify, stopped: &AtomicBool) {
    let mut next_slot = 0u64;
    loop {
        tick.notified().await;
        let now = Instant::now();
        while schedule.due(next_slot) <= now {
            due[(next_slot % schedule.clients as u64) as usize].notify_one();
            next_slot += 1;
        }
        if stopped.load(Ordering::Acquire) {
            break;
        }
    }
    // Whoever still waits must not wait for a wake-up that will never come.
    due.iter().for_each(Notify::notify_one);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate: f64, clients: usize, length: Duration) -> Schedule {
        let started = Instant::now();
        Schedule {
            started,
            rate,
            clients,
            end: started + length,
        }
    }

    #[test]
    fn calls_are_spread_over_the_clients_in_turn() {
        let schedule = schedule(1000.0, 4, Duration::from_secs(1));
        let step = |client, call| schedule.intended(client, call) - schedule.started;
        assert_eq!(step(0, 0), Duration::ZERO);
        assert_eq!(step(1, 0), Duration::from_millis(1));
        assert_eq!(step(3, 0), Duration::from_millis(3));
        assert_eq!(step(0, 1), Duration::from_millis(4));
        assert_eq!(step(2, 250), Duration::from_millis(1002));
    }

    #[tokio::test]
    async fn a_client_is_released_no_earlier_than_its_intended_time() {
        let schedule = schedule(2000.0, 2, Duration::from_secs(5));
        let pacer = Pacer::start(schedule).expect("a thread can be started");
        for call in 0..20 {
            let intended = schedule.intended(1, call);
            pacer.wait_until(1, intended).await;
            assert!(
                Instant::now() >= intended,
                "call {call} was released before it was due"
            );
        }
    }

    #[tokio::test]
    async fn every_call_due_before_the_end_is_released() {
        let schedule = schedule(1000.0, 3, Duration::from_millis(60));
        let pacer = Pacer::start(schedule).expect("a thread can be started");
        let calls_before_the_end = (0..).take_while(|&call| schedule.intended(2, call) < schedule.end);
        let released = tokio::time::timeout(Duration::from_secs(10), async {
            let mut released = 0;
            for call in calls_before_the_end {
                pacer.wait_until(2, schedule.intended(2, call)).await;
                released += 1;
            }
            released
        })
        .await
        .expect("a client was left waiting for a call due before the end");
        assert_eq!(released, 20);
    }

    #[tokio::test]
    async fn a_client_waiting_when_the_schedule_ends_is_let_go() {
        let schedule = schedule(1.0, 1, Duration::from_millis(30));
        let pacer = Pacer::start(schedule).expect("a thread can be started");
        let long_after_the_end = schedule.end + Duration::from_secs(3600);
        let waited =
            tokio::time::timeout(Duration::from_secs(10), pacer.wait_until(0, long_after_the_end)).await;
        assert!(
            waited.is_ok(),
            "a client was left waiting after the schedule ended"
        );
        assert!(
            Instant::now() >= schedule.end,
            "the client was let go before the schedule ended"
        );
    }
}
