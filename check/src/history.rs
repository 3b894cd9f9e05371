//! The recorded history: [`Op`], one client call on one key with its invocation and
//! completion times and its outcome, and [`History`], the ops of many keys with a per-key
//! split. Owns the data model, its JSON shape and how an op is named in messages.
//!
//! Does not check anything (see `key`), decide which ops constrain a linearization (see
//! `reduce`) or reject malformed input (see `malformed`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One client call on one key, as the recorder saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    pub client: usize,
    /// When the call was sent: nanoseconds, or any integer clock that is monotonic and
    /// shared by all clients.
    pub invoke: u64,
    /// When its answer (or, for an indeterminate outcome, its timeout) arrived, on the same
    /// clock; never before `invoke`.
    pub complete: u64,
    pub action: Action,
}

/// What was called, with what the caller learned about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Set { value: String, outcome: WriteOutcome },
    Delete { outcome: WriteOutcome },
    Get { outcome: ReadOutcome },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    Ok,
    /// Certainly did not take effect.
    Failed,
    /// May have taken effect at any time after its invocation (even after `complete`),
    /// or never.
    Indeterminate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadOutcome {
    Hit(String),
    /// Legal whatever the value: a cache may always miss.
    Miss,
    /// The read failed: it tells nothing.
    Failed,
    /// The answer never arrived: it tells nothing.
    Indeterminate,
}

impl Action {
    pub fn set(value: impl Into<String>, outcome: WriteOutcome) -> Self {
        Action::Set {
            value: value.into(),
            outcome,
        }
    }

    pub fn delete(outcome: WriteOutcome) -> Self {
        Action::Delete { outcome }
    }

    pub fn get(outcome: ReadOutcome) -> Self {
        Action::Get { outcome }
    }
}

impl Op {
    pub fn new(key: impl Into<String>, client: usize, invoke: u64, complete: u64, action: Action) -> Self {
        Op {
            key: key.into(),
            client,
            invoke,
            complete,
            action,
        }
    }

    /// The value a Get returned, if it hit.
    pub fn hit_value(&self) -> Option<&str> {
        match &self.action {
            Action::Get {
                outcome: ReadOutcome::Hit(value),
            } => Some(value),
            _ => None,
        }
    }

    /// The value a Set tried to write, whatever its outcome.
    pub fn written_value(&self) -> Option<&str> {
        match &self.action {
            Action::Set { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The outcome of a Set or Delete; `None` for a Get.
    pub fn write_outcome(&self) -> Option<WriteOutcome> {
        match &self.action {
            Action::Set { outcome, .. } | Action::Delete { outcome } => Some(*outcome),
            Action::Get { .. } => None,
        }
    }

    /// Whether this is a Set or Delete that certainly took effect before `complete`.
    pub fn is_applied_write(&self) -> bool {
        self.write_outcome() == Some(WriteOutcome::Ok)
    }

    /// Whether this op certainly returned before `later` was invoked, so that any
    /// linearization orders it first. Equal times count as overlapping: two clocks reading
    /// the same instant cannot tell which came first. An indeterminate op never returned.
    pub fn certainly_precedes(&self, later: &Op) -> bool {
        !self.is_indeterminate() && self.complete < later.invoke
    }

    fn is_indeterminate(&self) -> bool {
        matches!(
            self.action,
            Action::Set {
                outcome: WriteOutcome::Indeterminate,
                ..
            } | Action::Delete {
                outcome: WriteOutcome::Indeterminate
            } | Action::Get {
                outcome: ReadOutcome::Indeterminate
            }
        )
    }

    fn is_failed(&self) -> bool {
        matches!(
            self.action,
            Action::Set {
                outcome: WriteOutcome::Failed,
                ..
            } | Action::Delete {
                outcome: WriteOutcome::Failed
            } | Action::Get {
                outcome: ReadOutcome::Failed
            }
        )
    }
}

/// Names the call, its client and interval, e.g. `Set("v21") by client 2 [t=100..110]`,
/// noting a failed or indeterminate outcome. A Get's answer is left to the caller, who
/// knows whether it matters.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Set { value, .. } => write!(f, "Set({value:?})")?,
            Action::Delete { .. } => f.write_str("Delete")?,
            Action::Get { .. } => f.write_str("Get")?,
        }
        write!(
            f,
            " by client {} [t={}..{}]",
            self.client, self.invoke, self.complete
        )?;
        if self.is_failed() {
            f.write_str(" (failed)")?;
        } else if self.is_indeterminate() {
            f.write_str(" (outcome unknown)")?;
        }
        Ok(())
    }
}

/// The ops of any number of keys, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Each key's ops, in recorded order: linearizability is compositional, so each key
    /// can be checked on its own.
    pub fn by_key(&self) -> BTreeMap<String, Vec<Op>> {
        let mut keys: BTreeMap<String, Vec<Op>> = BTreeMap::new();
        for op in &self.ops {
            keys.entry(op.key.clone()).or_default().push(op.clone());
        }
        keys
    }

    /// The ops of one key, in recorded order.
    pub fn key(&self, key: &str) -> Vec<Op> {
        self.ops.iter().filter(|op| op.key == key).cloned().collect()
    }
}

impl From<Vec<Op>> for History {
    fn from(ops: Vec<Op>) -> Self {
        History { ops }
    }
}

impl FromIterator<Op> for History {
    fn from_iter<I: IntoIterator<Item = Op>>(ops: I) -> Self {
        History {
            ops: ops.into_iter().collect(),
        }
    }
}

impl Extend<Op> for History {
    fn extend<I: IntoIterator<Item = Op>>(&mut self, ops: I) {
        self.ops.extend(ops);
    }
}
