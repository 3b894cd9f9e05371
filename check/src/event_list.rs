//! The Wing–Gong event list: every op's call and return events sorted by time, in a
//! doubly linked list from which an op (its call and its return together) is lifted when
//! the search linearizes it and put back, in last-out-first-in order, when it backtracks.
//!
//! Owns the ordering convention: events are sorted by time, a call before a return at the
//! same time (equal times count as overlapping), and the return of an op without a deadline
//! after every other event. Does not know the register's semantics (see `search`).

use super::reduce::SearchOp;

/// An event, carrying the index of its op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    Call(usize),
    Return(usize),
    /// The "return" of an op that may take effect at any time after its call, or never.
    /// Sorted after every real return, so reaching it means every op with a deadline has
    /// been linearized.
    NeverReturns(usize),
}

/// Nodes `0..2n` are the events in sorted order; two more nodes are the head and tail
/// sentinels, which `event` never yields.
#[derive(Debug)]
pub(super) struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For a call's node, the node of its op's return.
    return_node: Vec<usize>,
}

impl EventList {
    pub(super) fn new(ops: &[SearchOp]) -> Self {
        let events = sorted_events(ops);
        let count = events.len();
        let (head, tail) = (count, count + 1);
        let mut next = vec![tail; count + 2];
        let mut prev = vec![head; count + 2];
        let along_the_list: Vec<usize> = [head].into_iter().chain(0..count).chain([tail]).collect();
        for pair in along_the_list.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        let return_node = return_nodes(&events, ops.len());
        EventList {
            events,
            next,
            prev,
            return_node,
        }
    }

    /// The first node still in the list (the tail if it is empty).
    pub(super) fn first(&self) -> usize {
        self.next[self.head()]
    }

    pub(super) fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    /// The event at `node`, or `None` at the tail.
    pub(super) fn event(&self, node: usize) -> Option<Event> {
        self.events.get(node).copied()
    }

    /// Removes the call at `call_node` and its op's return.
    pub(super) fn lift(&mut self, call_node: usize) {
        self.unlink(call_node);
        self.unlink(self.return_node[call_node]);
    }

    /// Undoes the most recent `lift` still in effect, which must be of `call_node`.
    pub(super) fn unlift(&mut self, call_node: usize) {
        self.relink(self.return_node[call_node]);
        self.relink(call_node);
    }

    fn head(&self) -> usize {
        self.events.len()
    }

    fn unlink(&mut self, node: usize) {
        let (before, after) = (self.prev[node], self.next[node]);
        self.next[before] = after;
        self.prev[after] = before;
    }

    /// Puts back a node whose neighbours still point past it: valid because nodes are put
    /// back in the reverse order of their removal (the "dancing links" trick).
    fn relink(&mut self, node: usize) {
        let (before, after) = (self.prev[node], self.next[node]);
        self.next[before] = node;
        self.prev[after] = node;
    }
}

fn sorted_events(ops: &[SearchOp]) -> Vec<Event> {
    // Rank breaks ties at equal times: calls first, so equal times overlap.
    let mut keyed: Vec<((u64, u8), Event)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        keyed.push(((op.invoke, 0), Event::Call(index)));
        keyed.push(match op.complete {
            Some(complete) => ((complete, 1), Event::Return(index)),
            None => ((u64::MAX, 2), Event::NeverReturns(index)),
        });
    }
    keyed.sort_by_key(|(order, _)| *order); // stable: ties keep op order
    keyed.into_iter().map(|(_, event)| event).collect()
}

fn return_nodes(events: &[Event], op_count: usize) -> Vec<usize> {
    let mut return_node_of_op = vec![0; op_count];
    for (node, event) in events.iter().enumerate() {
        if let Event::Return(op) | Event::NeverReturns(op) = *event {
            return_node_of_op[op] = node;
        }
    }
    events
        .iter()
        .map(|event| match *event {
            Event::Call(op) => return_node_of_op[op],
            Event::Return(_) | Event::NeverReturns(_) => usize::MAX,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{Effect, State};

    fn op(invoke: u64, complete: Option<u64>) -> SearchOp {
        SearchOp {
            effect: Effect::Write(State::ABSENT),
            invoke,
            complete,
            source: 0,
        }
    }

    fn remaining(list: &EventList) -> Vec<Event> {
        let mut events = Vec::new();
        let mut node = list.first();
        while let Some(event) = list.event(node) {
            events.push(event);
            node = list.next(node);
        }
        events
    }

    #[test]
    fn sorts_calls_before_returns_at_equal_times_and_open_ops_last() {
        let list = EventList::new(&[op(0, None), op(5, Some(10)), op(10, Some(20))]);
        use Event::*;
        assert_eq!(
            remaining(&list),
            [Call(0), Call(1), Call(2), Return(1), Return(2), NeverReturns(0)]
        );
    }

    #[test]
    fn lift_and_unlift_restore_the_list() {
        let mut list = EventList::new(&[op(0, Some(3)), op(1, Some(4)), op(2, Some(5))]);
        let original = remaining(&list);
        let (first_call, second_call) = (0, 1);
        list.lift(second_call);
        use Event::*;
        assert_eq!(remaining(&list), [Call(0), Call(2), Return(0), Return(2)]);
        list.lift(first_call);
        assert_eq!(remaining(&list), [Call(2), Return(2)]);
        list.unlift(first_call);
        list.unlift(second_call);
        assert_eq!(remaining(&list), original);
    }

    #[test]
    fn an_empty_list_starts_at_the_tail() {
        let list = EventList::new(&[]);
        assert_eq!(list.event(list.first()), None);
    }
}
