//! Hand-written histories whose verdict is known, one per rule of the cache register:
//! linearizable ones first, then violations (checking which read is blamed and why), then
//! inputs that must end as unknown rather than pass.
//!
//! Does not check explanation texts (see `explanations`).

use super::fixtures::*;
use crate::{Cause, Op, ReadOutcome, SearchLimits, Verdict, WriteOutcome, check_key};

#[test]
fn an_empty_history_is_linearizable() {
    assert_linearizable(&[]);
}

#[test]
fn a_sequential_history_is_linearizable() {
    assert_linearizable(&[
        set(1, 0..10, "v1"),
        hit(2, 20..30, "v1"),
        set(1, 40..50, "v2"),
        hit(2, 60..70, "v2"),
        delete(1, 80..90),
        miss(2, 100..110),
    ]);
}

#[test]
fn a_get_overlapping_a_set_may_return_either_value() {
    for value in ["v1", "v2"] {
        assert_linearizable(&[set(1, 0..10, "v1"), set(1, 20..40, "v2"), hit(2, 25..35, value)]);
    }
}

#[test]
fn a_miss_is_legal_anywhere() {
    assert_linearizable(&[
        miss(3, 0..5),
        set(1, 10..20, "v1"),
        miss(2, 30..40),
        hit(3, 50..60, "v1"),
        miss(2, 55..65),
    ]);
}

#[test]
fn a_delete_then_a_miss_is_linearizable() {
    assert_linearizable(&[set(1, 0..10, "v1"), delete(1, 20..30), miss(2, 40..50)]);
}

#[test]
fn an_indeterminate_set_may_show_up_later_even_after_a_newer_set() {
    assert_linearizable(&[
        set_with(1, 0..10, "v1", WriteOutcome::Indeterminate),
        set(2, 20..30, "v2"),
        hit(3, 40..50, "v2"),
        hit(3, 60..70, "v1"),
    ]);
}

#[test]
fn an_indeterminate_set_may_never_take_effect() {
    assert_linearizable(&[
        set(1, 0..10, "v1"),
        set_with(2, 20..30, "v2", WriteOutcome::Indeterminate),
        hit(3, 40..50, "v1"),
    ]);
}

#[test]
fn an_indeterminate_delete_may_never_take_effect() {
    assert_linearizable(&[
        set(1, 0..10, "v1"),
        delete_with(2, 20..30, WriteOutcome::Indeterminate),
        hit(3, 40..50, "v1"),
    ]);
}

#[test]
fn failed_and_unanswered_gets_tell_nothing() {
    assert_linearizable(&[
        set(1, 0..10, "v1"),
        get_with(2, 20..30, ReadOutcome::Failed),
        get_with(3, 20..30, ReadOutcome::Indeterminate),
        hit(2, 40..50, "v1"),
    ]);
}

#[test]
fn a_failed_set_changes_nothing() {
    assert_linearizable(&[
        set(1, 0..10, "v1"),
        set_with(2, 20..30, "v2", WriteOutcome::Failed),
        hit(3, 40..50, "v1"),
    ]);
}

#[test]
fn equal_times_count_as_overlapping() {
    // v2's Set completes at the instant the Get begins: either may have come first.
    assert_linearizable(&[set(1, 0..10, "v1"), set(2, 10..20, "v2"), hit(3, 20..30, "v1")]);
}

#[test]
fn concurrent_sets_may_be_ordered_as_the_reads_require() {
    assert_linearizable(&[
        set(1, 0..100, "v1"),
        set(2, 0..100, "v2"),
        hit(3, 10..20, "v2"),
        hit(4, 15..25, "v2"),
        hit(3, 30..40, "v1"),
        hit(4, 50..60, "v1"),
    ]);
}

#[test]
fn a_stale_read_after_a_newer_read_is_a_violation() {
    let violation = assert_violation(&[
        set(1, 0..10, "v1"),
        set(1, 20..30, "v2"),
        hit(2, 40..50, "v2"),
        hit(3, 60..70, "v1"),
    ]);
    assert_eq!(violation.read, hit(3, 60..70, "v1"));
    assert_eq!(violation.write_of_value, Some(set(1, 0..10, "v1")));
    assert_eq!(
        violation.cause,
        Cause::Overwritten {
            by: set(1, 20..30, "v2")
        }
    );
}

#[test]
fn a_stale_read_after_a_newer_read_during_the_newer_set_is_a_violation() {
    let violation = assert_violation(&[
        set(1, 0..10, "v1"),
        set(1, 20..200, "v2"),
        hit(2, 40..50, "v2"),
        hit(3, 60..70, "v1"),
    ]);
    assert_eq!(violation.read, hit(3, 60..70, "v1"));
    let expected = Cause::NewerValueRead {
        read: hit(2, 40..50, "v2"),
        write: set(1, 20..200, "v2"),
    };
    assert_eq!(violation.cause, expected);
}

#[test]
fn a_hit_after_a_completed_delete_is_a_violation() {
    let violation = assert_violation(&[set(1, 0..10, "v1"), delete(2, 20..30), hit(3, 40..50, "v1")]);
    assert_eq!(
        violation.cause,
        Cause::Overwritten {
            by: delete(2, 20..30)
        }
    );
}

#[test]
fn a_hit_of_a_value_never_written_is_a_violation() {
    let violation = assert_violation(&[set(1, 0..10, "v1"), hit(2, 20..30, "v9")]);
    assert_eq!(
        (violation.write_of_value, violation.cause),
        (None, Cause::NeverWritten)
    );
}

#[test]
fn a_hit_of_a_failed_sets_value_is_a_violation() {
    let failed = set_with(1, 0..10, "v1", WriteOutcome::Failed);
    let violation = assert_violation(&[failed.clone(), hit(2, 20..30, "v1")]);
    assert_eq!(
        (violation.write_of_value, violation.cause),
        (Some(failed), Cause::WriteFailed)
    );
}

#[test]
fn a_hit_before_its_set_was_invoked_is_a_violation() {
    let violation = assert_violation(&[hit(2, 0..10, "v1"), set(1, 20..30, "v1")]);
    assert_eq!(violation.cause, Cause::ReadBeforeWrite);
    let indeterminate = [
        hit(2, 0..10, "v1"),
        set_with(1, 20..30, "v1", WriteOutcome::Indeterminate),
    ];
    assert_eq!(assert_violation(&indeterminate).cause, Cause::ReadBeforeWrite);
}

#[test]
fn a_value_returning_after_being_overwritten_by_a_concurrent_set_is_a_violation() {
    // v1 → v2 → v1 would need v1 written twice; no single op proves it, only the search.
    let violation = assert_violation(&[
        set(1, 0..100, "v1"),
        set(2, 0..100, "v2"),
        hit(3, 10..20, "v1"),
        hit(3, 30..40, "v2"),
        hit(3, 50..60, "v1"),
    ]);
    assert_eq!(violation.read, hit(3, 50..60, "v1"));
    assert!(matches!(violation.cause, Cause::NoOrder { .. }), "{violation}");
}

#[test]
fn a_malformed_history_is_unknown() {
    let backwards_in_time = [
        set(1, 10..10, "v1"),
        Op {
            complete: 20,
            ..hit(2, 30..31, "v1")
        },
    ];
    let value_written_twice = [set(1, 0..10, "v1"), set(2, 20..30, "v1")];
    let mixed_keys = [
        set(1, 0..10, "v1"),
        on_key("other", vec![set(2, 20..30, "v2")]).remove(0),
    ];
    for ops in [&backwards_in_time[..], &value_written_twice, &mixed_keys] {
        let verdict = verdict(ops);
        assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict}");
    }
}

#[test]
fn exceeding_the_search_limit_is_unknown_not_a_pass() {
    let ops = [
        set(1, 0..10, "v1"),
        hit(2, 20..30, "v1"),
        set(1, 40..50, "v2"),
        hit(2, 60..70, "v2"),
    ];
    let verdict = check_key(
        &ops,
        &SearchLimits {
            max_configurations: 2,
        },
    );
    assert!(matches!(verdict, Verdict::Unknown { .. }), "{verdict}");
    assert!(!verdict.is_linearizable());
}
