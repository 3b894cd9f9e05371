//! Size sanity: a linearizable 2,000-op history of 8 concurrent clients passes within the
//! default limit, a stale read at its end is found, and under a tiny limit the search ends
//! as unknown, not as a pass. No timing is asserted.
//!
//! Does not compare with another checker (see `agreement_with_stateright`).

use super::simulate::{Rng, Workload, simulate};
use crate::{Action, Op, ReadOutcome, SearchLimits, Verdict, check_key};

/// 8 clients × 250 ops, with faults that keep the history linearizable.
const BUSY_KEY: Workload = Workload {
    key: "busy",
    clients: 8,
    ops_per_client: 250..=250,
    set_percent: 35,
    delete_percent: 5,
    failed_write_percent: 2,
    indeterminate_write_percent: 3,
    failed_read_percent: 2,
    spurious_miss_percent: 5,
    wrong_read_percent: 0,
};

fn busy_history() -> Vec<Op> {
    simulate(&mut Rng::new(0xb0_5e_ed), &BUSY_KEY)
}

#[test]
fn a_linearizable_history_of_2000_ops_passes_within_the_default_limit() {
    let ops = busy_history();
    assert_eq!(ops.len(), 2_000);
    let verdict = check_key(&ops, &SearchLimits::default());
    assert_eq!(verdict, Verdict::Linearizable);
}

#[test]
fn a_search_past_its_limit_is_unknown() {
    let verdict = check_key(
        &busy_history(),
        &SearchLimits {
            max_configurations: 100,
        },
    );
    assert!(
        matches!(&verdict, Verdict::Unknown { reason } if reason.contains("gave up")),
        "{verdict}"
    );
}

#[test]
fn a_stale_read_at_the_end_of_a_2000_op_history_is_found_and_blamed() {
    // The search must exhaust every order of the 2,000 ops before it to rule the read out.
    let mut ops = busy_history();
    let first_value = ops
        .iter()
        .filter(|op| op.is_applied_write())
        .filter_map(|op| Some((op.complete, op.written_value()?)))
        .min()
        .map(|(_, value)| value)
        .expect("the history starts with a Set")
        .to_owned();
    let last_hit = (0..ops.len())
        .filter(|&index| ops[index].hit_value().is_some())
        .max_by_key(|&index| ops[index].invoke)
        .expect("the history has hits");
    ops[last_hit].action = Action::get(ReadOutcome::Hit(first_value));
    let verdict = check_key(&ops, &SearchLimits::default());
    assert_eq!(
        verdict.violation().map(|violation| &violation.read),
        Some(&ops[last_hit]),
        "{verdict}"
    );
}
