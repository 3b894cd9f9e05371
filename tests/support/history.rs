//! Hands recorded histories to the linearizability checker (`qc_check`, the workspace's `check/` crate);
//! on a failure, writes the offending keys' histories to files and returns the
//! checker's explanation with their paths.

use super::workload::{Call, Outcome, Recorded};
use qc_check::{self as check, Action, History, Op, ReadOutcome, SearchLimits, Verdict, WriteOutcome};
use std::path::PathBuf;

/// The checker's view of a recorded run.
pub fn to_history(recorded: &[Recorded]) -> History {
    recorded
        .iter()
        .map(|op| {
            let write = |outcome: &Outcome| match outcome {
                Outcome::Ok => WriteOutcome::Ok,
                Outcome::Failed => WriteOutcome::Failed,
                _ => WriteOutcome::Indeterminate,
            };
            let action = match &op.call {
                Call::Set { value, .. } => Action::set(value.clone(), write(&op.outcome)),
                Call::Delete => Action::delete(write(&op.outcome)),
                Call::Get => Action::get(match &op.outcome {
                    Outcome::Hit(value) => ReadOutcome::Hit(value.clone()),
                    Outcome::Miss => ReadOutcome::Miss,
                    Outcome::Indeterminate => ReadOutcome::Indeterminate,
                    Outcome::Ok | Outcome::Failed => ReadOutcome::Failed,
                }),
            };
            Op::new(op.key.clone(), op.client, op.invoke_ns, op.complete_ns, action)
        })
        .collect()
}

/// Where failing histories are written: QC_HISTORY_DIR, or a folder under the
/// system's temporary directory.
fn history_dir() -> PathBuf {
    std::env::var_os("QC_HISTORY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("quorum-cache-histories"))
}

/// Whether the failures are proven violations (rather than searches that ran
/// out of room).
pub struct Failure {
    pub proven: bool,
    pub explanation: String,
}

/// Checks every key; a key that is not linearizable, or that the search could not
/// decide, fails the check.
pub fn verdict(recorded: &[Recorded], label: &str) -> Result<usize, Failure> {
    let history = to_history(recorded);
    let report = check::check_history(&history, &SearchLimits::default());
    if report.all_linearizable() {
        return Ok(report.ops);
    }
    let dir = history_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut explanation = format!("{report}");
    let mut proven = false;
    for (key, verdict) in report.failures() {
        proven |= matches!(verdict, Verdict::NotLinearizable(_));
        if let Ok(path) = check::write_key_history(&dir, label, key, &history.key(key)) {
            explanation.push_str(&format!("\n  history of {key}: {}", path.display()));
        }
    }
    Err(Failure { proven, explanation })
}

/// Checks `recorded`; the error explains every failing key.
pub fn check(recorded: &[Recorded], label: &str) -> Result<(), String> {
    verdict(recorded, label)
        .map(|_| ())
        .map_err(|failure| failure.explanation)
}
