//! The set of ops linearized so far: a bitset, plus an order-independent fingerprint
//! (the XOR of a mixed key per member) kept up to date on every insert and remove, so the
//! memo table can find a configuration without hashing the whole bitset, and a compact form
//! for the memo table to keep.
//!
//! Does not decide what is memoised (see `seen`).

use super::fingerprint::mix64;

#[derive(Debug, Clone)]
pub(super) struct OpSet {
    words: Vec<u64>,
    fingerprint: u64,
    /// How many leading words are full, and how many words precede the last non-zero one
    /// (inclusive): kept up to date so that `compact` costs nothing.
    full_words: usize,
    used_words: usize,
}

impl OpSet {
    pub(super) fn with_capacity(op_count: usize) -> Self {
        OpSet {
            words: vec![0; op_count.div_ceil(64)],
            fingerprint: 0,
            full_words: 0,
            used_words: 0,
        }
    }

    /// Adds `op`, which must not be a member.
    pub(super) fn insert(&mut self, op: usize) {
        debug_assert!(!self.contains(op));
        let word = op / 64;
        self.words[word] |= 1 << (op % 64);
        self.fingerprint ^= member_key(op);
        self.used_words = self.used_words.max(word + 1);
        while self.full_words < self.used_words && self.words[self.full_words] == u64::MAX {
            self.full_words += 1;
        }
    }

    /// Removes `op`, which must be a member.
    pub(super) fn remove(&mut self, op: usize) {
        debug_assert!(self.contains(op));
        let word = op / 64;
        self.words[word] &= !(1 << (op % 64));
        self.fingerprint ^= member_key(op);
        self.full_words = self.full_words.min(word);
        while self.used_words > 0 && self.words[self.used_words - 1] == 0 {
            self.used_words -= 1;
        }
    }

    pub(super) fn contains(&self, op: usize) -> bool {
        self.words[op / 64] & (1 << (op % 64)) != 0
    }

    /// The set in a canonical compact form. Ops are numbered in invocation order (see
    /// `reduce`), so a linearized set is mostly a run of full words (every early op) and a
    /// short window after it: this form stays small however long the history.
    pub(super) fn compact(&self) -> CompactOpSet<'_> {
        CompactOpSet {
            full_words: self.full_words,
            rest: &self.words[self.full_words..self.used_words],
        }
    }

    pub(super) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// How many leading words of the bitset are full, and the words after them up to the last
/// non-zero one. Two sets are equal exactly when their compact forms are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CompactOpSet<'a> {
    pub(super) full_words: usize,
    pub(super) rest: &'a [u64],
}

fn member_key(op: usize) -> u64 {
    mix64(op as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_form_drops_full_leading_and_empty_trailing_words() {
        let mut set = OpSet::with_capacity(64 * 4);
        assert_eq!(
            set.compact(),
            CompactOpSet {
                full_words: 0,
                rest: &[]
            }
        );
        for op in 0..64 {
            set.insert(op);
        }
        set.insert(64 + 3);
        assert_eq!(
            set.compact(),
            CompactOpSet {
                full_words: 1,
                rest: &[1 << 3]
            }
        );
        for op in 64..128 {
            if !set.contains(op) {
                set.insert(op);
            }
        }
        assert_eq!(
            set.compact(),
            CompactOpSet {
                full_words: 2,
                rest: &[]
            }
        );
    }

    #[test]
    fn the_compact_form_stays_canonical_through_inserts_and_removes() {
        let op_count = 200;
        let mut set = OpSet::with_capacity(op_count);
        let mut members = vec![false; op_count];
        for step in 0..5_000 {
            // Scattered toggles, so that words fill, empty and refill in every order.
            let op = (step * 37 + step / 7) % op_count;
            if members[op] {
                set.remove(op)
            } else {
                set.insert(op)
            }
            members[op] = !members[op];
            let mut rebuilt = OpSet::with_capacity(op_count);
            members
                .iter()
                .enumerate()
                .filter(|(_, member)| **member)
                .for_each(|(op, _)| rebuilt.insert(op));
            assert_eq!(set.compact(), rebuilt.compact(), "after step {step}");
            assert_eq!(set.fingerprint(), rebuilt.fingerprint());
        }
    }

    #[test]
    fn fingerprint_depends_on_members_not_on_insertion_order() {
        let mut forwards = OpSet::with_capacity(130);
        let mut backwards = OpSet::with_capacity(130);
        for op in [1, 64, 129] {
            forwards.insert(op);
        }
        for op in [129, 64, 1] {
            backwards.insert(op);
        }
        assert_eq!(forwards.fingerprint(), backwards.fingerprint());
        assert_eq!(forwards.compact(), backwards.compact());
        forwards.remove(64);
        assert!(!forwards.contains(64) && forwards.contains(129));
        assert_ne!(forwards.fingerprint(), backwards.fingerprint());
        forwards.insert(64);
        assert_eq!(forwards.fingerprint(), backwards.fingerprint());
    }
}
