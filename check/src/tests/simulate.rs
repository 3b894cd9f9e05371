//! Seeded, deterministic random histories of one key: sequential clients call a simulated
//! register, each op taking effect at a random instant inside its interval (or, if
//! indeterminate, possibly later or never), so that without injected faults every history
//! is linearizable. Injected wrong reads (a random value of the history: stale, future, or
//! from a failed Set) make some histories not linearizable.
//!
//! Does not check anything (see `agreement_with_stateright` and `performance`).

use crate::{Action, Op, ReadOutcome, WriteOutcome};
use std::ops::RangeInclusive;

/// xorshift64*: small, fast and good enough to vary test histories.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed.max(1)) // xorshift is stuck at zero
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    fn in_range(&mut self, range: RangeInclusive<usize>) -> usize {
        range.start() + self.below((range.end() - range.start() + 1) as u64) as usize
    }

    fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// The shape of a simulated history; percentages are per op.
#[derive(Debug, Clone)]
pub(super) struct Workload {
    pub(super) key: &'static str,
    pub(super) clients: usize,
    pub(super) ops_per_client: RangeInclusive<usize>,
    pub(super) set_percent: u32,
    pub(super) delete_percent: u32,
    /// Writes that fail (never take effect) and that end indeterminate.
    pub(super) failed_write_percent: u32,
    pub(super) indeterminate_write_percent: u32,
    /// Gets that fail or end indeterminate.
    pub(super) failed_read_percent: u32,
    /// Gets that miss although the register holds a value.
    pub(super) spurious_miss_percent: u32,
    /// Gets that return a random value of the history instead of the register's.
    pub(super) wrong_read_percent: u32,
}

/// Calls last 1..=MAX_DURATION ticks, with 1..=MAX_GAP ticks between a client's calls.
const MAX_DURATION: u64 = 30;
const MAX_GAP: u64 = 12;

/// An op whose Get outcome is not known until the register is replayed.
struct Planned {
    op: Op,
    takes_effect_at: Option<u64>,
}

pub(super) fn simulate(rng: &mut Rng, workload: &Workload) -> Vec<Op> {
    let mut planned = Vec::new();
    let mut values_written = 0;
    for client in 0..workload.clients {
        let mut clock = rng.below(MAX_GAP);
        for _ in 0..rng.in_range(workload.ops_per_client.clone()) {
            let invoke = clock;
            let complete = invoke + 1 + rng.below(MAX_DURATION);
            clock = complete + 1 + rng.below(MAX_GAP);
            let span = Span::new(workload.clients, client, invoke, complete);
            planned.push(plan_op(rng, workload, client, span, &mut values_written));
        }
    }
    replay(rng, workload, planned)
}

/// An op's interval, in times that are distinct across clients and between calls and
/// returns (so every real-time order is unambiguous).
#[derive(Debug, Clone, Copy)]
struct Span {
    invoke: u64,
    complete: u64,
}

impl Span {
    fn new(clients: usize, client: usize, invoke_tick: u64, complete_tick: u64) -> Self {
        let time = |tick: u64, is_return: u64| (tick * clients as u64 + client as u64) * 2 + is_return;
        Span {
            invoke: time(invoke_tick, 0),
            complete: time(complete_tick, 1),
        }
    }

    fn random_instant(self, rng: &mut Rng) -> u64 {
        self.invoke + rng.below(self.complete - self.invoke + 1)
    }
}

fn plan_op(
    rng: &mut Rng,
    workload: &Workload,
    client: usize,
    span: Span,
    values_written: &mut usize,
) -> Planned {
    let roll = rng.below(100) as u32;
    let (action, takes_effect_at) = if roll < workload.set_percent + workload.delete_percent {
        let outcome = write_outcome(rng, workload);
        let action = if roll < workload.set_percent {
            *values_written += 1;
            Action::set(format!("v{values_written}"), outcome)
        } else {
            Action::delete(outcome)
        };
        (action, write_takes_effect_at(rng, span, outcome))
    } else {
        // The Get's outcome is a placeholder until `replay` knows the register's value.
        (Action::get(ReadOutcome::Miss), Some(span.random_instant(rng)))
    };
    Planned {
        op: Op::new(workload.key, client, span.invoke, span.complete, action),
        takes_effect_at,
    }
}

fn write_outcome(rng: &mut Rng, workload: &Workload) -> WriteOutcome {
    if rng.percent(workload.failed_write_percent) {
        WriteOutcome::Failed
    } else if rng.percent(workload.indeterminate_write_percent) {
        WriteOutcome::Indeterminate
    } else {
        WriteOutcome::Ok
    }
}

/// Within its interval if it succeeded; never if it failed; if indeterminate, never half
/// the time, else at any instant from its invocation to well after its caller gave up.
fn write_takes_effect_at(rng: &mut Rng, span: Span, outcome: WriteOutcome) -> Option<u64> {
    match outcome {
        WriteOutcome::Ok => Some(span.random_instant(rng)),
        WriteOutcome::Failed => None,
        WriteOutcome::Indeterminate if rng.percent(50) => None,
        WriteOutcome::Indeterminate => {
            let late = Span {
                complete: span.complete + 4 * MAX_DURATION * 2,
                ..span
            };
            Some(late.random_instant(rng))
        }
    }
}

/// Applies the ops to a register in the order they take effect, filling in each Get's
/// outcome (and injecting the workload's read faults).
fn replay(rng: &mut Rng, workload: &Workload, mut planned: Vec<Planned>) -> Vec<Op> {
    let all_values: Vec<String> = planned
        .iter()
        .filter_map(|p| p.op.written_value().map(str::to_owned))
        .collect();
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].takes_effect_at.is_some())
        .collect();
    order.sort_by_key(|&i| (planned[i].takes_effect_at, i));
    let mut register: Option<String> = None;
    for index in order {
        let op = &mut planned[index].op;
        match &mut op.action {
            Action::Set { value, .. } => register = Some(value.clone()),
            Action::Delete { .. } => register = None,
            Action::Get { outcome } => *outcome = read_outcome(rng, workload, &register, &all_values),
        }
    }
    planned.into_iter().map(|p| p.op).collect()
}

fn read_outcome(
    rng: &mut Rng,
    workload: &Workload,
    register: &Option<String>,
    all_values: &[String],
) -> ReadOutcome {
    if rng.percent(workload.failed_read_percent) {
        return if rng.percent(50) {
            ReadOutcome::Failed
        } else {
            ReadOutcome::Indeterminate
        };
    }
    if rng.percent(workload.wrong_read_percent) && !all_values.is_empty() {
        let wrong = &all_values[rng.below(all_values.len() as u64) as usize];
        return ReadOutcome::Hit(wrong.clone());
    }
    match register {
        Some(value) if !rng.percent(workload.spurious_miss_percent) => ReadOutcome::Hit(value.clone()),
        _ => ReadOutcome::Miss,
    }
}
