//! [`check_history`] and its [`Report`]: every key of a history checked on its own
//! (linearizability is compositional), with the counts a test asserts on and a printout
//! that names each failing key.
//!
//! Does not write files (see `json`).

use super::history::History;
use super::key::check_key;
use super::search::SearchLimits;
use super::verdict::Verdict;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each key's verdict.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Ops checked, over all keys.
    pub ops: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub linearizable: usize,
    pub not_linearizable: usize,
    pub unknown: usize,
}

pub fn check_history(history: &History, limits: &SearchLimits) -> Report {
    let verdicts = history
        .by_key()
        .into_iter()
        .map(|(key, ops)| (key, check_key(&ops, limits)))
        .collect();
    Report {
        verdicts,
        ops: history.len(),
    }
}

impl Report {
    /// True only if every key is linearizable: an unknown verdict is not a pass.
    pub fn all_linearizable(&self) -> bool {
        self.verdicts.values().all(Verdict::is_linearizable)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for verdict in self.verdicts.values() {
            match verdict {
                Verdict::Linearizable => counts.linearizable += 1,
                Verdict::NotLinearizable(_) => counts.not_linearizable += 1,
                Verdict::Unknown { .. } => counts.unknown += 1,
            }
        }
        counts
    }

    /// The keys that did not pass, with their verdicts.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &Verdict)> {
        self.verdicts
            .iter()
            .filter(|(_, verdict)| !verdict.is_linearizable())
            .map(|(key, v)| (key.as_str(), v))
    }
}

/// A summary line, then one line per key that did not pass.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Counts {
            linearizable,
            not_linearizable,
            unknown,
        } = self.counts();
        write!(
            f,
            "{} keys, {} ops: {linearizable} linearizable, {not_linearizable} not linearizable, {unknown} unknown",
            self.verdicts.len(),
            self.ops
        )?;
        for (key, verdict) in self.failures() {
            match verdict {
                // A violation's text already starts with its key.
                Verdict::NotLinearizable(violation) => write!(f, "\n{violation}")?,
                _ => write!(f, "\nkey {key}: {verdict}")?,
            }
        }
        Ok(())
    }
}
