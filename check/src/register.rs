//! The sequential object a key must behave like, the "cache register": its [`State`]
//! (absent, or holding one value) and the [`Effect`] of each op that the search places.
//!
//! Values are numbered by `reduce`, so a state is a small integer that hashes cheaply.
//! Misses are not represented here: a miss is legal in every state and changes nothing,
//! so `reduce` drops them before the search (see there for why that is sound).

/// Absent, or holding the value numbered `n` (stored as `n + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct State(u32);

impl State {
    pub(super) const ABSENT: State = State(0);

    pub(super) fn holding(value_number: usize) -> State {
        let raw = u32::try_from(value_number + 1).expect("fewer than 2^32 distinct values per key");
        State(raw)
    }

    /// The number of the value held, if any.
    pub(super) fn value_number(self) -> Option<usize> {
        (self.0 as usize).checked_sub(1)
    }

    pub(super) fn raw(self) -> u32 {
        self.0
    }
}

/// What placing an op in the linearization does to the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// A Set (to a holding state) or a Delete (to `ABSENT`): always legal.
    Write(State),
    /// A Get that returned a value: legal only while the register holds it.
    Hit(State),
}

impl Effect {
    /// The state after this op, or `None` if it cannot happen in `state`.
    pub(super) fn apply(self, state: State) -> Option<State> {
        match self {
            Effect::Write(next) => Some(next),
            Effect::Hit(expected) => (state == expected).then_some(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_always_apply_and_hits_only_match_the_held_value() {
        let holding_first = State::holding(0);
        let holding_second = State::holding(1);
        assert_eq!(
            Effect::Write(holding_first).apply(State::ABSENT),
            Some(holding_first)
        );
        assert_eq!(
            Effect::Write(State::ABSENT).apply(holding_first),
            Some(State::ABSENT)
        );
        assert_eq!(
            Effect::Hit(holding_first).apply(holding_first),
            Some(holding_first)
        );
        assert_eq!(Effect::Hit(holding_first).apply(holding_second), None);
        assert_eq!(Effect::Hit(holding_first).apply(State::ABSENT), None);
        assert_eq!(holding_second.value_number(), Some(1));
        assert_eq!(State::ABSENT.value_number(), None);
    }
}
