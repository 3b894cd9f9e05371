//! `qc-check`: checks recorded cache histories for linearizability from the
//! command line.
//!
//! Owns: reading history files (a JSON array of ops, as a failing test leaves
//! behind with `write_key_history`, or JSON Lines, one op per line), checking
//! every key, printing one line per key that is not linearizable, and the exit
//! code. Does not own the checking itself (the library).
//!
//! Exit codes: 0 every key linearizable, 1 a key is not linearizable, 2 the
//! check could not decide (a search limit, a malformed history) or the input
//! could not be read.

use qc_check::{History, Op, SearchLimits, Verdict, check_history};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: qc-check [--max-configurations N] FILE...\n\
    Each FILE is a JSON array of ops or JSON Lines (one op per line), as\n\
    quorum-cache's tests write them; all files are checked as one history.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("qc-check: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut limits = SearchLimits::default();
    let mut files = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            "--max-configurations" => {
                let value = args.next().ok_or("--max-configurations needs a number")?;
                limits.max_configurations = value
                    .parse()
                    .map_err(|_| format!("--max-configurations takes a whole number, got {value:?}"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag:?}\n{USAGE}")),
            file => files.push(file),
        }
    }
    if files.is_empty() {
        return Err(format!("no history file given\n{USAGE}"));
    }
    let mut history = History::new();
    for file in files {
        history.extend(read_ops(Path::new(file))?);
    }
    let report = check_history(&history, &limits);
    for (key, verdict) in report.failures() {
        println!("key {key:?}: {verdict}");
    }
    let counts = report.counts();
    println!(
        "{} ops, {} keys: {} linearizable, {} not linearizable, {} undecided",
        report.ops,
        report.verdicts.len(),
        counts.linearizable,
        counts.not_linearizable,
        counts.unknown
    );
    let undecided = report
        .verdicts
        .values()
        .any(|verdict| matches!(verdict, Verdict::Unknown { .. }));
    Ok(if counts.not_linearizable > 0 {
        ExitCode::from(1)
    } else if undecided {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The ops of one file: a JSON array, or one JSON object per line.
fn read_ops(path: &Path) -> Result<Vec<Op>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|error| format!("{}: not a JSON array of ops: {error}", path.display()));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(at, line)| {
            serde_json::from_str(line)
                .map_err(|error| format!("{}:{}: not an op: {error}", path.display(), at + 1))
        })
        .collect()
}
