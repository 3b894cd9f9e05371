//! Terse builders for hand-written histories on one key, e.g. `hit(4, 120..130, "v17")`
//! (client, invoke..complete, value), and the assertions the tests share.
//!
//! Does not generate histories (see `simulate`).

use crate::{Action, Op, ReadOutcome, SearchLimits, Verdict, Violation, WriteOutcome, check_key};
use std::ops::Range;

pub(super) const KEY: &str = "k";

fn op(client: usize, span: Range<u64>, action: Action) -> Op {
    Op::new(KEY, client, span.start, span.end, action)
}

pub(super) fn set(client: usize, span: Range<u64>, value: &str) -> Op {
    set_with(client, span, value, WriteOutcome::Ok)
}

pub(super) fn set_with(client: usize, span: Range<u64>, value: &str, outcome: WriteOutcome) -> Op {
    op(client, span, Action::set(value, outcome))
}

pub(super) fn delete(client: usize, span: Range<u64>) -> Op {
    delete_with(client, span, WriteOutcome::Ok)
}

pub(super) fn delete_with(client: usize, span: Range<u64>, outcome: WriteOutcome) -> Op {
    op(client, span, Action::delete(outcome))
}

pub(super) fn hit(client: usize, span: Range<u64>, value: &str) -> Op {
    get_with(client, span, ReadOutcome::Hit(value.to_owned()))
}

pub(super) fn miss(client: usize, span: Range<u64>) -> Op {
    get_with(client, span, ReadOutcome::Miss)
}

pub(super) fn get_with(client: usize, span: Range<u64>, outcome: ReadOutcome) -> Op {
    op(client, span, Action::get(outcome))
}

/// The same ops on another key.
pub(super) fn on_key(key: &str, ops: Vec<Op>) -> Vec<Op> {
    ops.into_iter()
        .map(|op| Op {
            key: key.to_owned(),
            ..op
        })
        .collect()
}

pub(super) fn verdict(ops: &[Op]) -> Verdict {
    check_key(ops, &SearchLimits::default())
}

pub(super) fn assert_linearizable(ops: &[Op]) {
    let verdict = verdict(ops);
    assert!(verdict.is_linearizable(), "expected linearizable, got {verdict}");
}

pub(super) fn assert_violation(ops: &[Op]) -> Violation {
    match verdict(ops) {
        Verdict::NotLinearizable(violation) => *violation,
        other => panic!("expected a violation, got {other}"),
    }
}
