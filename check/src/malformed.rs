//! Rejects a key's history that the checker cannot judge: an op that completes before it
//! is invoked, ops of several keys passed as one, or a value written twice (the recorder
//! promises unique values, and the explanations rely on it).
//!
//! Does not judge linearizability; a malformed history is reported as unknown, never as a
//! pass.

use super::history::Op;
use std::collections::HashMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedHistory {
    #[error("{op} completes before it is invoked")]
    CompletesBeforeInvoked { op: Box<Op> },
    #[error("ops of keys {first:?} and {other:?} were passed as one key's history")]
    MixedKeys { first: String, other: String },
    #[error("{first} and {second} write the same value, but written values must be unique")]
    ValueWrittenTwice { first: Box<Op>, second: Box<Op> },
}

/// Checks what the search and the explanations take for granted about one key's ops.
pub fn validate_key_history(ops: &[Op]) -> Result<(), MalformedHistory> {
    let mut writes_by_value: HashMap<&str, &Op> = HashMap::new();
    for op in ops {
        if op.complete < op.invoke {
            return Err(MalformedHistory::CompletesBeforeInvoked {
                op: Box::new(op.clone()),
            });
        }
        if op.key != ops[0].key {
            return Err(MalformedHistory::MixedKeys {
                first: ops[0].key.clone(),
                other: op.key.clone(),
            });
        }
        if let Some(value) = op.written_value()
            && let Some(first) = writes_by_value.insert(value, op)
        {
            return Err(MalformedHistory::ValueWrittenTwice {
                first: Box::new(first.clone()),
                second: Box::new(op.clone()),
            });
        }
    }
    Ok(())
}
