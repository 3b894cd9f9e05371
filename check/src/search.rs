//! The Wing–Gong linearizability search with Lowe's memoisation (the algorithm of Knossos'
//! "wgl" and of Porcupine), over one key's reduced ops, bounded by [`SearchLimits`].
//!
//! Walk the event list from its head. At a call, try to linearize that op now: if the
//! register allows it and the resulting configuration is new, push it on the stack, lift it
//! from the list and restart from the head. Otherwise move on. At a return, the op that
//! returns was not linearized before its deadline, so backtrack: pop the last linearized op,
//! put it back, restore the state and try the event after its call. An empty stack at a
//! return means no linearization exists.
//!
//! Ops without a deadline (indeterminate writes) return after everything else: reaching
//! such a return, or the end of the list, means every op with a deadline is placed, and the
//! ops still in the list are the indeterminate ones that never took effect. That is how
//! they may be "skipped"; they may also be linearized at any point after their call.
//!
//! Does not explain a failure (see `explain`) or prepare the ops (see `reduce`).

use super::event_list::{Event, EventList};
use super::op_set::OpSet;
use super::reduce::SearchOp;
use super::register::{Effect, State};
use super::seen::SeenConfigurations;

/// Bounds on one key's search, so that a pathological history ends as "unknown" instead
/// of running forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Most distinct configurations (set of linearized ops, register state) to explore.
    /// Each is kept in memory, in a compact form whose size depends on how many ops overlap,
    /// not on the length of the history: the default's million took about 300 MB on a
    /// 3,400-op key of 16 clients (and a 5,000-op key of 10 clients needs far fewer).
    pub max_configurations: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_configurations: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SearchOutcome {
    Linearizable,
    NotLinearizable(StuckRead),
    GaveUp { configurations: usize },
}

/// The read at which the longest partial linearization ended: the best guess at the culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StuckRead {
    /// Index into the search's ops.
    pub(super) read: usize,
    /// How many ops that partial linearization placed.
    pub(super) linearized: usize,
    /// The register's state after them.
    pub(super) state: State,
}

pub(super) fn search(ops: &[SearchOp], limits: &SearchLimits) -> SearchOutcome {
    Search::new(ops, limits).run()
}

/// A linearized op and the state before it, to undo it.
struct Frame {
    call_node: usize,
    op: usize,
    state_before: State,
}

struct Search<'a> {
    ops: &'a [SearchOp],
    events: EventList,
    linearized: OpSet,
    state: State,
    stack: Vec<Frame>,
    seen: SeenConfigurations,
    deepest_stuck_read: Option<StuckRead>,
    max_configurations: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp], limits: &SearchLimits) -> Self {
        Search {
            ops,
            events: EventList::new(ops),
            linearized: OpSet::with_capacity(ops.len()),
            state: State::ABSENT,
            stack: Vec::new(),
            seen: SeenConfigurations::default(),
            deepest_stuck_read: None,
            max_configurations: limits.max_configurations,
        }
    }

    fn run(mut self) -> SearchOutcome {
        let mut node = self.events.first();
        loop {
            match self.events.event(node) {
                None | Some(Event::NeverReturns(_)) => return SearchOutcome::Linearizable,
                Some(Event::Call(op)) => {
                    node = if self.try_linearize(op, node) {
                        self.events.first()
                    } else {
                        self.events.next(node)
                    };
                    if self.seen.len() > self.max_configurations {
                        return SearchOutcome::GaveUp {
                            configurations: self.seen.len(),
                        };
                    }
                }
                Some(Event::Return(op)) => {
                    self.note_missed_deadline(op);
                    match self.backtrack() {
                        Some(call_node) => node = self.events.next(call_node),
                        None => return SearchOutcome::NotLinearizable(self.culprit()),
                    }
                }
            }
        }
    }

    /// Linearizes `op` next if the register allows it and that configuration is new.
    fn try_linearize(&mut self, op: usize, call_node: usize) -> bool {
        let Some(next_state) = self.ops[op].effect.apply(self.state) else {
            return false;
        };
        self.linearized.insert(op);
        if !self.seen.insert(&self.linearized, next_state) {
            self.linearized.remove(op);
            return false;
        }
        self.stack.push(Frame {
            call_node,
            op,
            state_before: self.state,
        });
        self.state = next_state;
        self.events.lift(call_node);
        true
    }

    /// Undoes the last linearization; returns the node of its call, or `None` if there was
    /// nothing left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.linearized.remove(frame.op);
        self.state = frame.state_before;
        self.events.unlift(frame.call_node);
        Some(frame.call_node)
    }

    /// Remembers the read whose deadline ended the longest partial linearization so far.
    fn note_missed_deadline(&mut self, op: usize) {
        let is_read = matches!(self.ops[op].effect, Effect::Hit(_));
        let deeper = self
            .deepest_stuck_read
            .is_none_or(|stuck| self.stack.len() > stuck.linearized);
        if is_read && deeper {
            let linearized = self.stack.len();
            self.deepest_stuck_read = Some(StuckRead {
                read: op,
                linearized,
                state: self.state,
            });
        }
    }

    fn culprit(&self) -> StuckRead {
        // Until the first backtrack every configuration is new (each is one op larger than
        // the last), and a write is always legal, so the first missed deadline, which the
        // search must meet before it can fail, is a read's.
        self.deepest_stuck_read
            .expect("the first missed deadline is a read's")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(value: Option<usize>, invoke: u64, complete: Option<u64>) -> SearchOp {
        let state = value.map_or(State::ABSENT, State::holding);
        SearchOp {
            effect: Effect::Write(state),
            invoke,
            complete,
            source: 0,
        }
    }

    fn hit(value: usize, invoke: u64, complete: u64) -> SearchOp {
        SearchOp {
            effect: Effect::Hit(State::holding(value)),
            invoke,
            complete: Some(complete),
            source: 0,
        }
    }

    fn outcome(ops: &[SearchOp]) -> SearchOutcome {
        search(ops, &SearchLimits::default())
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert_eq!(outcome(&[]), SearchOutcome::Linearizable);
    }

    #[test]
    fn a_concurrent_write_may_come_before_a_read() {
        let ops = [write(Some(0), 0, Some(10)), hit(0, 5, 6)];
        assert_eq!(outcome(&ops), SearchOutcome::Linearizable);
    }

    #[test]
    fn reports_the_read_of_the_longest_partial_linearization() {
        let ops = [
            write(Some(0), 0, Some(1)),
            write(Some(1), 2, Some(3)),
            hit(1, 4, 5),
            hit(0, 6, 7),
        ];
        let expected = StuckRead {
            read: 3,
            linearized: 3,
            state: State::holding(1),
        };
        assert_eq!(outcome(&ops), SearchOutcome::NotLinearizable(expected));
    }

    #[test]
    fn an_open_write_may_take_effect_late_or_never() {
        let late = [write(Some(0), 0, None), write(Some(1), 2, Some(3)), hit(0, 4, 5)];
        assert_eq!(outcome(&late), SearchOutcome::Linearizable);
        let never = [write(Some(0), 0, None), write(Some(1), 2, Some(3)), hit(1, 4, 5)];
        assert_eq!(outcome(&never), SearchOutcome::Linearizable);
    }

    #[test]
    fn gives_up_past_the_configuration_limit() {
        let ops = [write(Some(0), 0, Some(1)), hit(0, 2, 3)];
        let limits = SearchLimits {
            max_configurations: 1,
        };
        assert_eq!(search(&ops, &limits), SearchOutcome::GaveUp { configurations: 2 });
    }
}
