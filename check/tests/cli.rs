//! The `qc-check` command on real files: a linearizable history passes, a
//! stale read is named with exit code 1, and bad input is refused with a
//! precise message and exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const QC_CHECK: &str = env!("CARGO_BIN_EXE_qc-check");

fn op(key: &str, client: u32, invoke: u64, complete: u64, action: &str) -> String {
    format!(
        r#"{{"key":"{key}","client":{client},"invoke":{invoke},"complete":{complete},"action":{action}}}"#
    )
}

fn set(value: &str) -> String {
    format!(r#"{{"Set":{{"value":"{value}","outcome":"Ok"}}}}"#)
}

fn hit(value: &str) -> String {
    format!(r#"{{"Get":{{"outcome":{{"Hit":"{value}"}}}}}}"#)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&Path]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(QC_CHECK).args(args).output().expect("qc-check runs");
    (
        status.code(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn a_linearizable_history_in_a_json_array_passes() {
    let dir = tempfile::tempdir().unwrap();
    let ops = [
        op("k", 0, 0, 10, &set("a")),
        op("k", 1, 20, 30, &hit("a")),
        op("other", 2, 5, 6, &set("z")),
    ];
    let file = write(dir.path(), "good.json", &format!("[{}]", ops.join(",")));
    let (code, stdout, stderr) = run(&[&file]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("3 ops, 2 keys: 2 linearizable, 0 not linearizable, 0 undecided"),
        "{stdout}"
    );
}

#[test]
fn a_stale_read_in_json_lines_is_named_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ops = [
        op("k", 0, 0, 10, &set("a")),
        op("k", 1, 20, 30, &set("b")),
        op("k", 2, 40, 50, &hit("a")),
    ];
    let file = write(dir.path(), "stale.jsonl", &(ops.join("\n") + "\n"));
    let (code, stdout, _) = run(&[&file]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("key \"k\": not linearizable"), "{stdout}");
    assert!(stdout.contains("0 linearizable, 1 not linearizable"), "{stdout}");
}

#[test]
fn bad_input_is_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "broken.jsonl",
        &format!("{}\nnot json\n", op("k", 0, 0, 10, &set("a"))),
    );
    let (code, stdout, stderr) = run(&[&broken]);
    assert_eq!(code, Some(2));
    assert!(
        stdout.is_empty(),
        "nothing is checked from a file that cannot be read whole: {stdout}"
    );
    assert!(stderr.contains("broken.jsonl:2: not an op"), "{stderr}");

    let missing = dir.path().join("missing.json");
    let (code, _, stderr) = run(&[&missing]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("missing.json") && stderr.contains("No such file"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no history file given") && stderr.contains("usage: qc-check"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&[Path::new("--max-configurations"), Path::new("many")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--max-configurations takes a whole number, got \"many\""),
        "{stderr}"
    );
}

/// A history the checker cannot judge (an op that completes before it is
/// invoked) is undecided, never a pass.
#[test]
fn a_malformed_history_is_undecided_not_passed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "backwards.json",
        &format!("[{}]", op("k", 0, 10, 5, &set("a"))),
    );
    let (code, stdout, _) = run(&[&file]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("1 undecided"), "{stdout}");
}
