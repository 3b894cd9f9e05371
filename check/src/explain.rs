//! Turns a failed check into a [`Violation`]: the read that could not be placed, the write
//! of the value it returned, and a [`Cause`] naming the writes (or the read) that rule it
//! out, printable as one sentence.
//!
//! How the read is chosen: a read ruled out by the recorded times alone (its value was never
//! written, or only by a failed Set, or its Set was invoked after the read returned) is found
//! before any search. Otherwise it is the read whose deadline ended the longest partial
//! linearization the search found. For that read, the causes below are tried in order; each
//! is a proof from the recorded times that no linearization can place the read, and the
//! first that holds is reported. When none holds, the conflict involves several concurrent
//! ops, and the explanation falls back to the state that partial linearization had reached.
//!
//! Does not search (see `search`).

use super::history::{Op, WriteOutcome};
use std::collections::HashMap;
use std::fmt;

/// Why a key's history is not linearizable, around one read that no linearization places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The Get whose returned value could not be placed.
    pub read: Op,
    /// The Set of that value, if there is one (whatever its outcome).
    pub write_of_value: Option<Op>,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No Set ever tried to write the value.
    NeverWritten,
    /// The only Set of the value failed.
    WriteFailed,
    /// The read returned before the Set of its value was invoked.
    ReadBeforeWrite,
    /// `by`, a Set of another value or a Delete, certainly took effect after the Set of the
    /// read's value and before the read began (it was invoked after that Set returned, and
    /// returned before the read was invoked); values are written once, so the value was gone.
    Overwritten { by: Op },
    /// `read` returned another value, whose Set `write` was invoked after the Set of this
    /// read's value returned, before this read began.
    NewerValueRead { read: Op, write: Op },
    /// No single op rules the read out; the longest partial linearization found placed
    /// `linearized` of the `considered` ops and held `value_held` when the read's deadline
    /// passed.
    NoOrder {
        value_held: Option<String>,
        linearized: usize,
        considered: usize,
    },
}

/// How far the search got before it had to give up on the read.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartialLinearization<'a> {
    pub(super) value_held: Option<&'a str>,
    pub(super) linearized: usize,
    pub(super) considered: usize,
}

/// The recorded ops of one key, with each value's Set found in one step.
pub(super) struct Evidence<'a> {
    ops: &'a [Op],
    write_by_value: HashMap<&'a str, &'a Op>,
}

impl<'a> Evidence<'a> {
    /// `ops` must have unique written values (see `malformed`).
    pub(super) fn new(ops: &'a [Op]) -> Self {
        let write_by_value = ops
            .iter()
            .filter_map(|op| Some((op.written_value()?, op)))
            .collect();
        Evidence { ops, write_by_value }
    }

    /// The first read (by invocation) that the recorded times alone rule out, if any.
    pub(super) fn first_impossible_read(&self) -> Option<Violation> {
        self.ops
            .iter()
            .filter_map(|read| Some((read, self.impossible_read_cause(read)?)))
            .min_by_key(|(read, _)| read.invoke)
            .map(|(read, cause)| self.violation(read, cause))
    }

    /// Explains why the read at `read_index` could not be placed.
    pub(super) fn explain_stuck_read(&self, read_index: usize, partial: PartialLinearization) -> Violation {
        let read = &self.ops[read_index];
        let cause = self
            .impossible_read_cause(read)
            .or_else(|| self.overwritten_cause(read))
            .or_else(|| self.newer_value_read_cause(read))
            .unwrap_or_else(|| Cause::NoOrder {
                value_held: partial.value_held.map(str::to_owned),
                linearized: partial.linearized,
                considered: partial.considered,
            });
        self.violation(read, cause)
    }

    fn violation(&self, read: &Op, cause: Cause) -> Violation {
        let write_of_value = self.write_of_value(read).cloned();
        Violation {
            read: read.clone(),
            write_of_value,
            cause,
        }
    }

    fn write_of_value(&self, read: &Op) -> Option<&'a Op> {
        self.write_by_value.get(read.hit_value()?).copied()
    }

    /// A cause that rules out a hit whatever the other ops did.
    fn impossible_read_cause(&self, read: &Op) -> Option<Cause> {
        read.hit_value()?;
        let Some(write) = self.write_of_value(read) else {
            return Some(Cause::NeverWritten);
        };
        if write.write_outcome() == Some(WriteOutcome::Failed) {
            return Some(Cause::WriteFailed);
        }
        read.certainly_precedes(write).then_some(Cause::ReadBeforeWrite)
    }

    /// The latest write that certainly lies between the Set of the read's value and the read.
    fn overwritten_cause(&self, read: &Op) -> Option<Cause> {
        let write = self
            .write_of_value(read)
            .filter(|write| write.is_applied_write())?;
        self.ops
            .iter()
            .filter(|other| other.is_applied_write() && write.certainly_precedes(other))
            .filter(|other| other.certainly_precedes(read))
            .max_by_key(|other| other.complete)
            .map(|other| Cause::Overwritten { by: other.clone() })
    }

    /// The latest earlier read of a value certainly written after the read's value.
    fn newer_value_read_cause(&self, read: &Op) -> Option<Cause> {
        let write = self
            .write_of_value(read)
            .filter(|write| write.is_applied_write())?;
        let took_effect = |newer_write: &&Op| newer_write.write_outcome() != Some(WriteOutcome::Failed);
        self.ops
            .iter()
            .filter(|earlier| earlier.certainly_precedes(read))
            .filter_map(|earlier| Some((earlier, self.write_of_value(earlier).filter(took_effect)?)))
            .filter(|(_, newer_write)| write.certainly_precedes(newer_write))
            .max_by_key(|(earlier, _)| earlier.complete)
            .map(|(earlier, newer_write)| Cause::NewerValueRead {
                read: earlier.clone(),
                write: newer_write.clone(),
            })
    }
}

/// One sentence, e.g. `key k3: Get by client 4 [t=120..130] returned "v17", but ...`.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.read.hit_value().unwrap_or_default();
        write!(f, "key {}: {} returned {value:?}", self.read.key, self.read)?;
        let write = self.write_of_value.as_ref();
        let write_name = || write.map_or_else(|| "its Set".to_owned(), Op::to_string);
        match &self.cause {
            Cause::NeverWritten => f.write_str(", which no Set wrote"),
            Cause::WriteFailed => write!(f, ", but its only write, {}, failed", write_name()),
            Cause::ReadBeforeWrite => write!(f, " before {} was invoked", write_name()),
            Cause::Overwritten { by } => write!(
                f,
                ", but {by} completed before it began and after {} completed, and no later write of {value:?} \
                 exists",
                write_name()
            ),
            Cause::NewerValueRead {
                read,
                write: newer_write,
            } => write!(
                f,
                ", but {read} had already returned {:?} before it began, and {newer_write} began after {} \
                 completed",
                read.hit_value().unwrap_or_default(),
                write_name()
            ),
            Cause::NoOrder {
                value_held,
                linearized,
                considered,
            } => {
                if let Some(write) = write {
                    write!(f, " (written by {write})")?;
                }
                let held = value_held
                    .as_ref()
                    .map_or_else(|| "no value".to_owned(), |value| format!("{value:?}"));
                write!(
                    f,
                    ", but no order of the overlapping ops allows it: the longest partial linearization found \
                     placed {linearized} of {considered} ops and held {held} when this read had to be placed"
                )
            }
        }
    }
}
