//! Lowe's memoisation for the Wing–Gong search: the configurations (set of linearized ops,
//! register state) already explored. The future of the search depends on nothing else, so
//! reaching a configuration a second time, by another order, can only fail again.
//!
//! Does not choose which op to try next (see `search`).

use super::fingerprint::{BuildPassThroughHasher, mix64};
use super::op_set::{CompactOpSet, OpSet};
use super::register::State;
use std::collections::HashMap;

/// A configuration as kept: the linearized set in compact form (see `OpSet::compact`).
#[derive(Debug)]
struct Configuration {
    full_words: usize,
    rest_words: Box<[u64]>,
    state: State,
}

impl Configuration {
    fn is(&self, linearized: CompactOpSet, state: State) -> bool {
        self.state == state
            && self.full_words == linearized.full_words
            && *self.rest_words == *linearized.rest
    }
}

/// Configurations by fingerprint. A bucket almost always holds one configuration; more
/// only on a fingerprint collision, which the full comparison resolves.
#[derive(Debug, Default)]
pub(super) struct SeenConfigurations {
    buckets: HashMap<u64, Vec<Configuration>, BuildPassThroughHasher>,
    count: usize,
}

impl SeenConfigurations {
    /// Records the configuration; `false` if it was already recorded.
    pub(super) fn insert(&mut self, linearized: &OpSet, state: State) -> bool {
        let fingerprint = linearized.fingerprint() ^ state_key(state);
        let linearized = linearized.compact();
        let bucket = self.buckets.entry(fingerprint).or_default();
        if bucket.iter().any(|seen| seen.is(linearized, state)) {
            return false;
        }
        let (full_words, rest_words) = (linearized.full_words, linearized.rest.into());
        bucket.push(Configuration {
            full_words,
            rest_words,
            state,
        });
        self.count += 1;
        true
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }
}

fn state_key(state: State) -> u64 {
    // Salted so that a state's key differs from the key of the op with the same number.
    const STATE_SALT: u64 = 0xa076_1d64_78bd_642f;
    mix64(u64::from(state.raw()) ^ STATE_SALT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_new_once() {
        let mut seen = SeenConfigurations::default();
        let mut linearized = OpSet::with_capacity(3);
        linearized.insert(2);
        assert!(seen.insert(&linearized, State::ABSENT));
        assert!(!seen.insert(&linearized, State::ABSENT));
        assert!(
            seen.insert(&linearized, State::holding(0)),
            "same ops, other state"
        );
        linearized.insert(0);
        assert!(seen.insert(&linearized, State::ABSENT), "other ops, same state");
        assert_eq!(seen.len(), 3);
    }
}
