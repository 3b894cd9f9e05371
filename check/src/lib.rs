//! Linearizability checker for recorded cache histories: a library, used by
//! quorum-cache's consistency tests and simulation, and the `qc-check` command
//! (`src/main.rs`) for any recorded history.
//!
//! Owns judging a recorded [`History`] of Set / Get / Delete calls, key by key, against the
//! "cache register" and explaining failures. Does not record histories (the test harness
//! does) and does not know how the cache works.
//!
//! # Semantics
//! Each key is a register that is either absent or holds one value, initially absent.
//! `Set(v)` makes it hold `v`; `Delete` makes it absent; a Get that returned `v` is legal
//! only while it holds `v`; a miss is always legal (a cache may always miss) and changes
//! nothing. A history is linearizable if every op can be given a point between its
//! invocation and completion such that, in that order, every op is legal. Equal times count
//! as overlapping.
//!
//! Outcomes: a failed Set or Delete certainly did not take effect; an indeterminate one may
//! take effect at any time after its invocation, or never; a failed or indeterminate Get
//! tells nothing. Every written value must be unique, so a Get's value names its Set.
//!
//! # Use
//! [`check_history`] checks every key and returns a [`Report`]; [`check_key`] checks one.
//! A key that is not linearizable comes with a [`Violation`] that prints as one sentence;
//! [`write_key_history`] saves that key's ops as JSON for a failing test to leave behind.
//! A search that would exceed [`SearchLimits`] ends as [`Verdict::Unknown`], never a pass.
//!
//! # Layout
//! - `history`: the recorded ops; `malformed`: what cannot be judged.
//! - `reduce`: the ops the search needs (and why the rest can go); `register`: the
//!   sequential object.
//! - `search`: the Wing–Gong search with Lowe's memoisation, over `event_list` (the lifted
//!   and unlifted events), `op_set` and `seen` (the memo), hashed with `fingerprint`.
//! - `explain`: from a failed search to a [`Violation`].
//! - `key`, `report`, `verdict`: the entry points and their results; `json`: files.

mod event_list;
mod explain;
mod fingerprint;
mod history;
mod json;
mod key;
mod malformed;
mod op_set;
mod reduce;
mod register;
mod report;
mod search;
mod seen;
mod verdict;

#[cfg(test)]
mod tests;

pub use explain::{Cause, Violation};
pub use history::{Action, History, Op, ReadOutcome, WriteOutcome};
pub use json::{JsonError, read_key_history, write_key_history};
pub use key::check_key;
pub use malformed::{MalformedHistory, validate_key_history};
pub use report::{Counts, Report, check_history};
pub use search::SearchLimits;
pub use verdict::Verdict;
