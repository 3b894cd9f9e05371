//! Cross-checks the verdicts against stateright's `LinearizabilityTester`, an independent
//! exhaustive search, on thousands of small simulated histories, both linearizable and not.
//!
//! The mapping onto stateright:
//! - The cache register is a `SequentialSpec` written here (`CacheRegister`), on which a miss
//!   is always legal; stateright's own `Register<Option<String>>` (Delete as a write of
//!   `None`, a hit as a read of `Some(value)`) is also run on the histories without misses,
//!   which it cannot express.
//! - Ops with a known outcome are invoked and returned on their client's thread, in time
//!   order, calls before returns at equal times (equal times overlap, as in the checker).
//! - An indeterminate write is invoked on a thread of its own and never returns: stateright
//!   then may linearize it anywhere after its invocation, or leave it out.
//! - Failed writes and failed or indeterminate Gets are not given to stateright at all.
//!
//! Does not generate the histories (see `simulate`).

use super::simulate::{Rng, Workload, simulate};
use crate::{Action, Op, ReadOutcome, SearchLimits, Verdict, WriteOutcome, check_key, write_key_history};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::fmt::Debug;

/// Per test; there are two.
const HISTORIES_PER_TEST: usize = 1_000;

const SMALL_CONCURRENT: Workload = Workload {
    key: "k",
    clients: 3,
    ops_per_client: 2..=6,
    set_percent: 40,
    delete_percent: 10,
    failed_write_percent: 8,
    indeterminate_write_percent: 15,
    failed_read_percent: 6,
    spurious_miss_percent: 10,
    wrong_read_percent: 12,
};

/// The cache register as a stateright reference object.
#[derive(Debug, Clone, Default, PartialEq)]
struct CacheRegister(Option<String>);

#[derive(Debug, Clone, PartialEq)]
enum CacheCall {
    Set(String),
    Delete,
    Get,
}

#[derive(Debug, Clone, PartialEq)]
enum CacheReturn {
    Written,
    Hit(String),
    Miss,
}

impl SequentialSpec for CacheRegister {
    type Op = CacheCall;
    type Ret = CacheReturn;

    fn invoke(&mut self, call: &CacheCall) -> CacheReturn {
        match call {
            CacheCall::Set(value) => self.0 = Some(value.clone()),
            CacheCall::Delete => self.0 = None,
            CacheCall::Get => return self.0.clone().map_or(CacheReturn::Miss, CacheReturn::Hit),
        }
        CacheReturn::Written
    }

    fn is_valid_step(&mut self, call: &CacheCall, ret: &CacheReturn) -> bool {
        match (call, ret) {
            (CacheCall::Get, CacheReturn::Miss) => true,
            (CacheCall::Get, CacheReturn::Hit(value)) => self.0.as_ref() == Some(value),
            (CacheCall::Set(_) | CacheCall::Delete, CacheReturn::Written) => {
                self.invoke(call);
                true
            }
            _ => false,
        }
    }
}

/// An op as stateright sees it: the call, and its return unless it never returned.
type Translated<Spec> = (
    <Spec as SequentialSpec>::Op,
    Option<<Spec as SequentialSpec>::Ret>,
);

fn as_cache_register_op(op: &Op) -> Option<Translated<CacheRegister>> {
    let call = match &op.action {
        Action::Set { value, .. } => CacheCall::Set(value.clone()),
        Action::Delete { .. } => CacheCall::Delete,
        Action::Get {
            outcome: ReadOutcome::Hit(value),
        } => return Some((CacheCall::Get, Some(CacheReturn::Hit(value.clone())))),
        Action::Get {
            outcome: ReadOutcome::Miss,
        } => return Some((CacheCall::Get, Some(CacheReturn::Miss))),
        Action::Get { .. } => return None,
    };
    write_return(op, CacheReturn::Written).map(|ret| (call, ret))
}

/// Only for histories without misses, which the plain register cannot express.
fn as_plain_register_op(op: &Op) -> Option<Translated<Register<Option<String>>>> {
    let call = match &op.action {
        Action::Set { value, .. } => RegisterOp::Write(Some(value.clone())),
        Action::Delete { .. } => RegisterOp::Write(None),
        Action::Get {
            outcome: ReadOutcome::Hit(value),
        } => {
            return Some((RegisterOp::Read, Some(RegisterRet::ReadOk(Some(value.clone())))));
        }
        Action::Get { .. } => return None,
    };
    write_return(op, RegisterRet::WriteOk).map(|ret| (call, ret))
}

/// `None` to leave a failed write out; `Some(None)` for a write that never returns.
fn write_return<Ret>(op: &Op, written: Ret) -> Option<Option<Ret>> {
    match op.write_outcome()? {
        WriteOutcome::Ok => Some(Some(written)),
        WriteOutcome::Indeterminate => Some(None),
        WriteOutcome::Failed => None,
    }
}

enum TesterEvent<Spec: SequentialSpec> {
    Invoke(usize, Spec::Op),
    Return(usize, Spec::Ret),
}

/// Feeds the history to stateright's tester, in time order, and asks for its verdict.
fn stateright_says<Spec>(
    ops: &[Op],
    initial: Spec,
    translate: impl Fn(&Op) -> Option<Translated<Spec>>,
) -> bool
where
    Spec: SequentialSpec + Clone,
    Spec::Op: Clone + Debug,
    Spec::Ret: Clone + Debug + PartialEq,
{
    // Threads for ops that never return come after every client's.
    let first_open_thread = ops.iter().map(|op| op.client + 1).max().unwrap_or(0);
    let mut events: Vec<((u64, u8), TesterEvent<Spec>)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let Some((call, ret)) = translate(op) else {
            continue;
        };
        let thread = if ret.is_some() {
            op.client
        } else {
            first_open_thread + index
        };
        events.push(((op.invoke, 0), TesterEvent::Invoke(thread, call)));
        if let Some(ret) = ret {
            events.push(((op.complete, 1), TesterEvent::Return(thread, ret)));
        }
    }
    events.sort_by_key(|(order, _)| *order);
    let mut tester = LinearizabilityTester::new(initial);
    for (_, event) in events {
        let recorded = match event {
            TesterEvent::Invoke(thread, call) => tester.on_invoke(thread, call).map(drop),
            TesterEvent::Return(thread, ret) => tester.on_return(thread, ret).map(drop),
        };
        recorded.expect("a client has one op in flight at a time");
    }
    tester.is_consistent()
}

/// What the random histories covered, to show the agreement means something.
#[derive(Debug, Default)]
struct Coverage {
    linearizable: usize,
    not_linearizable: usize,
    checked_by_plain_register: usize,
    with_misses: usize,
    with_deletes: usize,
    with_a_read_indeterminate_write: usize,
}

impl Coverage {
    fn count(&mut self, ops: &[Op], linearizable: bool) {
        self.linearizable += usize::from(linearizable);
        self.not_linearizable += usize::from(!linearizable);
        self.with_misses += usize::from(ops.iter().any(is_miss));
        self.with_deletes += usize::from(ops.iter().any(|op| matches!(op.action, Action::Delete { .. })));
        self.with_a_read_indeterminate_write += usize::from(has_a_read_indeterminate_write(ops));
    }

    fn assert_significant(&self) {
        let significant = HISTORIES_PER_TEST / 10;
        let counts = [
            self.linearizable,
            self.not_linearizable,
            self.checked_by_plain_register,
            self.with_misses,
            self.with_deletes,
            self.with_a_read_indeterminate_write,
        ];
        assert!(
            counts.iter().all(|&count| count >= significant),
            "too few of some kind: {self:?}"
        );
    }
}

fn is_miss(op: &Op) -> bool {
    op.action == Action::get(ReadOutcome::Miss)
}

fn has_a_read_indeterminate_write(ops: &[Op]) -> bool {
    let values_read: Vec<&str> = ops.iter().filter_map(Op::hit_value).collect();
    let is_read = |value: &str| values_read.contains(&value);
    ops.iter().any(|op| {
        op.write_outcome() == Some(WriteOutcome::Indeterminate) && op.written_value().is_some_and(is_read)
    })
}

/// Leaves the history in a file and names it, so that a disagreement can be replayed.
fn disagreement(ops: &[Op], ours: &Verdict, checker: &str) -> String {
    let dir = std::env::temp_dir().join("check-disagreements");
    let saved = write_key_history(&dir, checker, "k", ops)
        .map_or_else(|e| e.to_string(), |p| p.display().to_string());
    format!("{checker} disagrees with {ours}; history saved in {saved}")
}

fn cross_check(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut coverage = Coverage::default();
    for _ in 0..HISTORIES_PER_TEST {
        let ops = simulate(&mut rng, &SMALL_CONCURRENT);
        let ours = check_key(&ops, &SearchLimits::default());
        assert!(!matches!(ours, Verdict::Unknown { .. }), "{ours}");
        let cache_register = stateright_says(&ops, CacheRegister::default(), as_cache_register_op);
        assert_eq!(
            ours.is_linearizable(),
            cache_register,
            "{}",
            disagreement(&ops, &ours, "cache-register")
        );
        if !ops.iter().any(is_miss) {
            let plain = stateright_says(&ops, Register(None), as_plain_register_op);
            assert_eq!(
                ours.is_linearizable(),
                plain,
                "{}",
                disagreement(&ops, &ours, "plain-register")
            );
            coverage.checked_by_plain_register += 1;
        }
        coverage.count(&ops, ours.is_linearizable());
    }
    coverage.assert_significant();
}

// Two tests rather than one loop, so that the harness runs them on two cores: stateright's
// search has no memo and takes nearly all of the time.

#[test]
fn agrees_with_stateright_on_random_histories() {
    cross_check(0x5eed_2024);
}

#[test]
fn agrees_with_stateright_on_more_random_histories() {
    cross_check(0x5eed_2025);
}
