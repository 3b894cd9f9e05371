//! What a failing test prints and leaves behind: violation sentences that name the read and
//! the writes against it, the multi-key report, and the JSON file of a key's history.
//!
//! Does not decide verdicts of tricky histories (see `known_histories`).

use super::fixtures::*;
use crate::{
    History, Op, SearchLimits, Verdict, WriteOutcome, check_history, read_key_history, write_key_history,
};

fn explanation(ops: &[Op]) -> String {
    assert_violation(ops).to_string()
}

#[test]
fn an_overwritten_read_names_the_read_its_write_and_the_overwriting_write() {
    let ops = on_key(
        "k3",
        vec![
            set(1, 10..20, "v17"),
            set(2, 100..110, "v21"),
            hit(4, 120..130, "v17"),
        ],
    );
    assert_eq!(
        explanation(&ops),
        "key k3: Get by client 4 [t=120..130] returned \"v17\", but Set(\"v21\") by client 2 [t=100..110] \
         completed before it began and after Set(\"v17\") by client 1 [t=10..20] completed, and no later write \
         of \"v17\" exists"
    );
}

#[test]
fn a_read_after_a_delete_names_the_delete() {
    let text = explanation(&[set(1, 0..10, "v1"), delete(2, 20..30), hit(3, 40..50, "v1")]);
    assert!(
        text.contains("Get by client 3 [t=40..50] returned \"v1\""),
        "{text}"
    );
    assert!(
        text.contains("Delete by client 2 [t=20..30] completed before it began"),
        "{text}"
    );
}

#[test]
fn a_stale_read_names_the_newer_read_and_both_writes() {
    let text = explanation(&[
        set(1, 0..10, "v1"),
        set(1, 20..200, "v2"),
        hit(2, 40..50, "v2"),
        hit(3, 60..70, "v1"),
    ]);
    assert_eq!(
        text,
        "key k: Get by client 3 [t=60..70] returned \"v1\", but Get by client 2 [t=40..50] had already returned \
         \"v2\" before it began, and Set(\"v2\") by client 1 [t=20..200] began after Set(\"v1\") by client 1 \
         [t=0..10] completed"
    );
}

#[test]
fn reads_ruled_out_by_times_alone_say_why() {
    let never = explanation(&[hit(2, 0..10, "v9")]);
    assert_eq!(
        never,
        "key k: Get by client 2 [t=0..10] returned \"v9\", which no Set wrote"
    );
    let failed = explanation(&[
        set_with(1, 0..10, "v1", WriteOutcome::Failed),
        hit(2, 20..30, "v1"),
    ]);
    assert!(
        failed.ends_with("but its only write, Set(\"v1\") by client 1 [t=0..10] (failed), failed"),
        "{failed}"
    );
    let early = explanation(&[hit(2, 0..10, "v1"), set(1, 20..30, "v1")]);
    assert!(
        early.ends_with("returned \"v1\" before Set(\"v1\") by client 1 [t=20..30] was invoked"),
        "{early}"
    );
}

#[test]
fn a_conflict_among_concurrent_ops_names_the_read_its_write_and_the_partial_linearization() {
    let text = explanation(&[
        set(1, 0..100, "v1"),
        set(2, 0..100, "v2"),
        hit(3, 10..20, "v1"),
        hit(3, 30..40, "v2"),
        hit(3, 50..60, "v1"),
    ]);
    assert!(
        text.starts_with("key k: Get by client 3 [t=50..60] returned \"v1\" (written by Set(\"v1\")"),
        "{text}"
    );
    assert!(text.contains("placed 4 of 5 ops and held \"v2\""), "{text}");
}

#[test]
fn the_report_counts_verdicts_and_names_failing_keys() {
    let mut history: History = on_key("good", vec![set(1, 0..10, "g1"), hit(2, 20..30, "g1")]).into();
    history.extend(on_key(
        "bad",
        vec![set(1, 0..10, "b1"), delete(1, 20..30), hit(2, 40..50, "b1")],
    ));
    history.extend(on_key("empty", vec![miss(3, 0..10)]));
    let report = check_history(&history, &SearchLimits::default());
    let counts = report.counts();
    assert_eq!(
        (counts.linearizable, counts.not_linearizable, counts.unknown),
        (2, 1, 0)
    );
    assert!(!report.all_linearizable());
    let failing: Vec<&str> = report.failures().map(|(key, _)| key).collect();
    assert_eq!(failing, ["bad"]);
    let text = report.to_string();
    assert!(
        text.starts_with("3 keys, 6 ops: 2 linearizable, 1 not linearizable, 0 unknown\nkey bad: "),
        "{text}"
    );
    assert!(matches!(report.verdicts["bad"], Verdict::NotLinearizable(_)));
}

#[test]
fn a_keys_history_round_trips_through_its_json_file() {
    let ops = on_key(
        "user/42",
        vec![
            set(1, 0..10, "v1"),
            delete(2, 5..15),
            hit(3, 20..30, "v1"),
            miss(4, 1..2),
        ],
    );
    let dir = std::env::temp_dir().join(format!("check-json-test-{}", std::process::id()));
    let path = write_key_history(&dir, "round trip", "user/42", &ops).expect("writes");
    assert_eq!(path, dir.join("round_trip-user_42.json"));
    assert_eq!(read_key_history(&path).expect("reads"), ops);
    std::fs::remove_dir_all(&dir).expect("cleans up");
}
