//! Turns one key's recorded ops into the search's input: keeps only the ops that constrain
//! a linearization, numbers their values, and marks which ops have no return deadline.
//!
//! Does not validate the ops (see `malformed`) nor search (see `search`).
//!
//! Every op dropped here can be dropped without changing the verdict. Dropping an op only
//! removes constraints, so a linearizable history stays linearizable; the converse is
//! argued per kind:
//! - Failed Sets and Deletes certainly did not take effect: they are not part of the object's
//!   history at all.
//! - Misses, failed Gets and indeterminate Gets are legal in every state and change nothing.
//!   Given a linearization of the other ops, such an op M can be inserted after every op
//!   that returned before M was invoked and before every op invoked after M returned: each
//!   of the former returned before each of the latter, so the linearization already orders
//!   them that way and a gap exists. Inserting one at a time places them all.
//! - An indeterminate Delete, or an indeterminate Set whose value no Get returned, may be
//!   left out of the linearization (it may never have taken effect), and leaving it out is
//!   never worse: until the next write the register then holds the previous state instead
//!   of absent / the unread value, and the only ops that were legal in the latter and not in
//!   the former are misses and hits of the unread value — none of which the search sees.

use super::history::{Action, Op, ReadOutcome, WriteOutcome};
use super::register::{Effect, State};
use std::collections::{HashMap, HashSet};

/// An op the search must place (or, if `complete` is `None`, may place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SearchOp {
    pub(super) effect: Effect,
    pub(super) invoke: u64,
    /// `None` for an indeterminate write: it may take effect at any time after its
    /// invocation, or never.
    pub(super) complete: Option<u64>,
    /// Its index in the recorded ops.
    pub(super) source: usize,
}

/// The search's input for one key.
#[derive(Debug)]
pub(super) struct Reduced {
    pub(super) ops: Vec<SearchOp>,
    values: Vec<String>,
}

impl Reduced {
    /// The value a state holds, by name.
    pub(super) fn value_held(&self, state: State) -> Option<&str> {
        state.value_number().map(|number| self.values[number].as_str())
    }
}

/// The role a recorded op plays in the search, before its value is numbered.
enum Kept<'a> {
    Write { value: Option<&'a str>, returned: bool },
    Hit { value: &'a str },
}

pub(super) fn reduce(ops: &[Op]) -> Reduced {
    let values_read: HashSet<&str> = ops.iter().filter_map(Op::hit_value).collect();
    let mut numbering = ValueNumbering::default();
    let mut search_ops = Vec::new();
    for (source, op) in ops.iter().enumerate() {
        let Some(kept) = kept(op, &values_read) else {
            continue;
        };
        let (effect, returned) = match kept {
            Kept::Write { value, returned } => (Effect::Write(numbering.state_holding(value)), returned),
            Kept::Hit { value } => (Effect::Hit(numbering.state_holding(Some(value))), true),
        };
        let complete = returned.then_some(op.complete);
        search_ops.push(SearchOp {
            effect,
            invoke: op.invoke,
            complete,
            source,
        });
    }
    // Numbering ops in invocation order keeps linearized sets compact (see `OpSet::compact`).
    search_ops.sort_by_key(|op| op.invoke);
    Reduced {
        ops: search_ops,
        values: numbering.values,
    }
}

/// Whether and how an op constrains the linearization (see the module docs for why the
/// others can go).
fn kept<'a>(op: &'a Op, values_read: &HashSet<&str>) -> Option<Kept<'a>> {
    match &op.action {
        Action::Set {
            value,
            outcome: WriteOutcome::Ok,
        } => Some(Kept::Write {
            value: Some(value),
            returned: true,
        }),
        Action::Set {
            value,
            outcome: WriteOutcome::Indeterminate,
        } if values_read.contains(value.as_str()) => Some(Kept::Write {
            value: Some(value),
            returned: false,
        }),
        Action::Delete {
            outcome: WriteOutcome::Ok,
        } => Some(Kept::Write {
            value: None,
            returned: true,
        }),
        Action::Get {
            outcome: ReadOutcome::Hit(value),
        } => Some(Kept::Hit { value }),
        _ => None,
    }
}

/// Numbers values in order of first appearance.
#[derive(Default)]
struct ValueNumbering<'a> {
    numbers: HashMap<&'a str, usize>,
    values: Vec<String>,
}

impl<'a> ValueNumbering<'a> {
    fn state_holding(&mut self, value: Option<&'a str>) -> State {
        let Some(value) = value else { return State::ABSENT };
        let values = &mut self.values;
        let number = *self.numbers.entry(value).or_insert_with(|| {
            values.push(value.to_owned());
            values.len() - 1
        });
        State::holding(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: Action) -> Op {
        Op::new("k", 0, 10, 20, action)
    }

    #[test]
    fn keeps_only_ops_that_constrain_the_order() {
        let ops = [
            op(Action::set("read", WriteOutcome::Indeterminate)),
            op(Action::set("unread", WriteOutcome::Indeterminate)),
            op(Action::set("failed", WriteOutcome::Failed)),
            op(Action::set("applied", WriteOutcome::Ok)),
            op(Action::delete(WriteOutcome::Ok)),
            op(Action::delete(WriteOutcome::Indeterminate)),
            op(Action::delete(WriteOutcome::Failed)),
            op(Action::get(ReadOutcome::Hit("read".into()))),
            op(Action::get(ReadOutcome::Miss)),
            op(Action::get(ReadOutcome::Failed)),
            op(Action::get(ReadOutcome::Indeterminate)),
        ];
        let reduced = reduce(&ops);
        let sources: Vec<usize> = reduced.ops.iter().map(|op| op.source).collect();
        assert_eq!(sources, [0, 3, 4, 7]);
        assert_eq!(
            reduced.ops[0].complete, None,
            "an indeterminate write has no deadline"
        );
        assert_eq!(reduced.ops[1].complete, Some(20));
        assert_eq!(reduced.ops[0].effect, Effect::Write(State::holding(0)));
        assert_eq!(reduced.ops[2].effect, Effect::Write(State::ABSENT));
        assert_eq!(reduced.ops[3].effect, Effect::Hit(State::holding(0)));
        assert_eq!(reduced.value_held(State::holding(1)), Some("applied"));
    }
}
