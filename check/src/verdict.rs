//! [`Verdict`]: what checking one key concluded. "Unknown" is its own outcome, never a pass:
//! the search gave up, or the history could not be judged.
//!
//! Does not compute verdicts (see `key`) nor aggregate them (see `report`).

use super::explain::Violation;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Boxed: a violation carries several ops, and verdicts are mostly passes.
    NotLinearizable(Box<Violation>),
    Unknown {
        reason: String,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::NotLinearizable(violation) => Some(violation),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(violation) => write!(f, "not linearizable: {violation}"),
            Verdict::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}
