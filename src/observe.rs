//! What the core reports as it works, for metrics: a trait with no-op defaults,
//! so the core never depends on a metrics library and tests can ignore it.
//!
//! Owns: the list of events (read repairs, quorum failures, writes that met a
//! newer version, peer calls with their latency and error kind).
//! Does not own: counting or exposing them (`metrics`).

use crate::ring::NodeId;
use crate::transport::PeerError;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuorumFailure {
    /// Too few replicas answered; nothing changed.
    Unavailable,
    /// A write reached some replicas but not W.
    OutcomeUnknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerOp {
    Read,
    Write,
}

pub trait Observer: Send + Sync + 'static {
    fn read_repaired(&self) {}
    fn quorum_failed(&self, _reason: QuorumFailure) {}
    /// A replica already held a newer version than the write it was sent.
    fn write_met_newer(&self) {}
    /// A replica refused a write's optimistic version (it held or forgot a newer
    /// one), so the write was stamped again after asking for the versions held.
    fn write_restamped(&self) {}
    fn peer_call(&self, _peer: &NodeId, _op: PeerOp, _elapsed: Duration, _error: Option<&PeerError>) {}
}

/// Reports nothing.
pub struct Unobserved;

impl Observer for Unobserved {}
