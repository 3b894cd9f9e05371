//! Drives the clients: the optional preload, then the warm-up and the measured
//! window, closed-loop or open-loop.
//!
//! Owns: scheduling and timing of calls. Closed loop: each of C clients sends its
//! next call as soon as the previous one answers. Open loop (`--rate R`): the
//! calls follow a fixed schedule (client i sends its k-th call at
//! start + (i + k*C)/R, released by `pacer` to within its tick), and latency is
//! taken from the *intended* send time, so a stall delays and counts against every
//! call that should have gone out during it (no coordinated omission). At most C
//! calls are in flight, so a system that cannot keep up shows growing latency
//! rather than unbounded queues in the bench.
//! The CPU readings (`cpu`) are taken at the window's opening and closing.
//! Does not own: what a call is (`targets`, `workload`) or the report.

use crate::pacer::{Pacer, Schedule};
use crate::progress::{self, Counters};
use crate::recorder::Recorder;
use crate::targets::{OpError, Outcome, Session, Target};
use crate::workload::{Op, OpKind, Workload};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Plan {
    pub clients: usize,
    /// Total calls per second; 0 = closed loop.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// A call that takes longer is abandoned and counted as a "timeout" error.
    pub op_timeout: Duration,
    /// Prefix of the progress lines.
    pub label: String,
    pub seed: u64,
    /// Whose CPU time the measured window is charged with.
    pub cpu: crate::cpu::Watch,
}

pub struct Measurement {
    pub recorder: Recorder,
    /// The measured window: calls started (or scheduled) in it are the ones counted.
    pub window: Duration,
    /// From the end of the warm-up until the last client finished (the window
    /// plus the tail of the calls still in flight at its end).
    pub elapsed: Duration,
    /// CPU used during the window, or why it could not be read.
    pub cpu: Result<crate::cpu::Spent, String>,
}

pub struct PreloadSummary {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// Sets every key once, `clients` at a time, so that later Gets hit.
pub async fn preload(
    target: &Target,
    workload: &Arc<Workload>,
    clients: usize,
    op_timeout: Duration,
) -> PreloadSummary {
    let started = Instant::now();
    let clients = clients.max(1);
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let mut session = target.session(index);
        let workload = Arc::clone(workload);
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            for key in (index..workload.keys.len()).step_by(clients) {
                if execute(
                    &mut session,
                    &workload,
                    Op {
                        kind: OpKind::Set,
                        key,
                    },
                    op_timeout,
                )
                .await
                .is_err()
                {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for task in tasks {
        errors += task.await.expect("a preload client does not panic");
    }
    PreloadSummary {
        ops: workload.keys.len() as u64,
        errors,
        elapsed: started.elapsed(),
    }
}

/// Runs the warm-up and the measured window; only calls *started* (or, open-loop,
/// *scheduled*) inside the window are recorded. Fails only when the open loop's
/// pacer cannot be started.
pub async fn run(target: &Target, workload: &Arc<Workload>, plan: &Plan) -> Result<Measurement, String> {
    let clients = plan.clients.max(1);
    // A short head start so that every client task exists before the schedule begins.
    let started = Instant::now() + Duration::from_millis(20);
    let measure_from = started + plan.warmup;
    let window = Window {
        started,
        measure_from,
        end: measure_from + plan.duration,
    };
    let pacing = open_loop_pacing(plan.rate, clients, window)?;
    let counters = Arc::new(Counters::default());
    let reporter = progress::spawn_reporter(plan.label.clone(), Arc::clone(&counters), started, measure_from);
    let watch = plan.cpu.clone();
    let cpu = tokio::spawn(async move { watch.spent_between(measure_from, window.end).await });
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let client = Client {
            index,
            pacing: pacing.clone(),
            window,
            session: target.session(index),
            workload: Arc::clone(workload),
            counters: Arc::clone(&counters),
            op_timeout: plan.op_timeout,
            seed: plan.seed,
        };
        tasks.push(tokio::spawn(client.run()));
    }
    let mut recorder = Recorder::new();
    for task in tasks {
        recorder.merge(&task.await.expect("a client does not panic"));
    }
    reporter.abort();
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(Measurement {
        recorder,
        window: plan.duration,
        elapsed,
        cpu: cpu
            .await
            .unwrap_or_else(|error| Err(format!("the CPU reader failed: {error}"))),
    })
}

/// Open loop (`rate` > 0): the schedule of the run and its pacer; closed loop: none.
fn open_loop_pacing(
    rate: f64,
    clients: usize,
    window: Window,
) -> Result<Option<(Schedule, Arc<Pacer>)>, String> {
    if rate <= 0.0 {
        return Ok(None);
    }
    let schedule = Schedule {
        started: window.started,
        rate,
        clients,
        end: window.end,
    };
    let pacer = Pacer::start(schedule)
        .map_err(|error| format!("cannot start the open loop's pacer thread: {error}"))?;
    Ok(Some((schedule, Arc::new(pacer))))
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    measure_from: Instant,
    end: Instant,
}

struct Client {
    index: usize,
    /// Open loop: the schedule and what releases the calls on it.
    pacing: Option<(Schedule, Arc<Pacer>)>,
    window: Window,
    session: Session,
    workload: Arc<Workload>,
    counters: Arc<Counters>,
    op_timeout: Duration,
    seed: u64,
}

impl Client {
    async fn run(mut self) -> Recorder {
        // Distinct, reproducible streams per client.
        let mut rng =
            crate::rng::SplitMix64::new(self.seed ^ (self.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut recorder = Recorder::new();
        tokio::time::sleep_until(self.window.started.into()).await;
        for call in 0u64.. {
            let intended = match &self.pacing {
                Some((schedule, _)) => schedule.intended(self.index, call),
                None => Instant::now(),
            };
            if intended >= self.window.end {
                break;
            }
            if let Some((_, pacer)) = &self.pacing {
                pacer.wait_until(self.index, intended).await;
            }
            let op = self.workload.next_op(&mut rng);
            let result = execute(&mut self.session, &self.workload, op, self.op_timeout).await;
            let latency = Instant::now().saturating_duration_since(intended);
            self.counters.completed(result.is_err());
            if intended >= self.window.measure_from {
                recorder.record(op.kind, latency, &result);
            }
        }
        recorder
    }
}

async fn execute(
    session: &mut Session,
    workload: &Workload,
    op: Op,
    op_timeout: Duration,
) -> Result<Outcome, OpError> {
    let key = &workload.keys[op.key];
    let call = async {
        match op.kind {
            OpKind::Get => session.get(op.key, key).await,
            OpKind::Set => session.set(op.key, key, &workload.value).await,
        }
    };
    tokio::time::timeout(op_timeout, call)
        .await
        .unwrap_or_else(|_| Err(OpError::new("timeout")))
}
