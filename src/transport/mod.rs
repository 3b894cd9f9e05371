//! The seam between the coordinator and remote replicas.
//!
//! Owns: the `Transport` trait (read, write, handshake to a named node) and
//! `PeerError`, what can go wrong on the way. The gRPC client
//! (`server::peer_client`) is one implementation; `memory::MemoryNetwork`, with
//! injected faults, is another, for tests and simulation.
//! Does not own: retries or quorums (`coordinator`), peer liveness (`peers`).

pub mod memory;

use crate::clock::ClockAhead;
use crate::replica::{Envelope, Introduction, Refusal, Reply};
use crate::ring::NodeId;
use crate::store::Record;
use bytes::Bytes;
use futures::future::BoxFuture;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub envelope: Envelope,
    pub key: Bytes,
    pub digest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub envelope: Envelope,
    pub key: Bytes,
    pub record: Record,
}

pub trait Transport: Send + Sync + 'static {
    fn read(&self, to: &NodeId, request: ReadRequest) -> BoxFuture<'static, Result<Reply, PeerError>>;
    fn write(&self, to: &NodeId, request: WriteRequest) -> BoxFuture<'static, Result<Reply, PeerError>>;
    fn handshake(
        &self,
        to: &NodeId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Introduction, PeerError>>;
}

/// Why a call to a peer did not produce an answer. Only a failure that proves
/// the request never left this node says "not applied" (`may_have_applied`);
/// a failure that cannot tell says "maybe applied".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Nothing was sent: the peer refused the connection.
    #[error("connection refused")]
    ConnectionRefused,
    /// Nothing was sent: no connection could be made (the connect timed out,
    /// the name did not resolve, no route while connecting), or the node is
    /// not a peer.
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    /// The request may or may not have been applied.
    #[error("timeout")]
    Timeout,
    /// The connection failed once the request may have left (a keep-alive
    /// ping went unanswered, a reset, GOAWAY, a stream error, or a failure
    /// not known to come before sending): it may or may not have been applied.
    #[error("connection lost: {reason}")]
    ConnectionLost { reason: String },
    /// The peer refused the request; nothing was applied.
    #[error("refused: {reason}")]
    Refused { kind: RefusalKind, reason: String },
    /// The peer is marked down or mismatched; nothing was sent.
    #[error("{state}")]
    NotContacted { state: String },
    /// The peer answered with a clock too far ahead; its answer was discarded,
    /// but a write may have been applied.
    #[error("answer discarded: {clock}")]
    ReplyClockAhead { clock: ClockAhead },
    /// The peer answered with something this node cannot use.
    #[error("bad answer: {reason}")]
    BadAnswer { reason: String },
    /// The peer answered with an error status; a write may have been applied.
    #[error("{reason}")]
    Remote { reason: String },
}

/// Why a peer refused a request, as far as the caller needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Its clock check failed; it may pass later.
    ClockAhead,
    /// The two nodes disagree on names or cluster parameters.
    Mismatch,
}

impl From<Refusal> for PeerError {
    fn from(refusal: Refusal) -> Self {
        let kind = match refusal {
            Refusal::ClockAhead { .. } | Refusal::VersionAhead { .. } => RefusalKind::ClockAhead,
            Refusal::WrongAddress { .. } | Refusal::ParamsMismatch { .. } => RefusalKind::Mismatch,
        };
        PeerError::Refused {
            kind,
            reason: refusal.to_string(),
        }
    }
}

impl PeerError {
    /// Whether a write sent with this outcome may have been applied by the peer.
    pub fn may_have_applied(&self) -> bool {
        !matches!(
            self,
            PeerError::ConnectionRefused
                | PeerError::Unreachable { .. }
                | PeerError::Refused { .. }
                | PeerError::NotContacted { .. }
        )
    }

    /// Whether the peer should be treated as down until a handshake succeeds.
    pub fn means_down(&self) -> bool {
        matches!(
            self,
            PeerError::ConnectionRefused
                | PeerError::Unreachable { .. }
                | PeerError::Timeout
                | PeerError::ConnectionLost { .. }
                | PeerError::Refused { .. }
        )
    }
}
