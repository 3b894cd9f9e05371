//! [`check_key`]: the verdict on one key's history, from validation through the quick
//! checks of single reads to the full search, and on to the explanation of a failure.
//!
//! Does not split a multi-key history (see `report`).

use super::explain::{Evidence, PartialLinearization};
use super::history::Op;
use super::malformed::validate_key_history;
use super::reduce::reduce;
use super::search::{SearchLimits, SearchOutcome, StuckRead, search};
use super::verdict::Verdict;

/// Whether one key's ops are linearizable for a cache register (see the module docs of
/// `check` for the semantics). `ops` may be in any order.
pub fn check_key(ops: &[Op], limits: &SearchLimits) -> Verdict {
    if let Err(malformed) = validate_key_history(ops) {
        return Verdict::Unknown {
            reason: format!("malformed history: {malformed}"),
        };
    }
    let evidence = Evidence::new(ops);
    // A read that the times alone rule out needs no search, and is the clearest culprit.
    if let Some(violation) = evidence.first_impossible_read() {
        return Verdict::NotLinearizable(Box::new(violation));
    }
    let reduced = reduce(ops);
    match search(&reduced.ops, limits) {
        SearchOutcome::Linearizable => Verdict::Linearizable,
        SearchOutcome::NotLinearizable(StuckRead {
            read,
            linearized,
            state,
        }) => {
            let partial = PartialLinearization {
                value_held: reduced.value_held(state),
                linearized,
                considered: reduced.ops.len(),
            };
            let violation = evidence.explain_stuck_read(reduced.ops[read].source, partial);
            Verdict::NotLinearizable(Box::new(violation))
        }
        SearchOutcome::GaveUp { configurations } => Verdict::Unknown {
            reason: format!(
                "gave up after exploring {configurations} configurations of {} ops (limit {}): the history \
                 may or may not be linearizable",
                reduced.ops.len(),
                limits.max_configurations
            ),
        },
    }
}
