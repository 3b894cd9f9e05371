//! What this node knows about each peer: up, down, or refused for a mismatched
//! configuration, and the background handshakes that find out.
//!
//! Owns: the handshake on start and after every failure (the peer's own ADDR
//! must match the name it was given, its cluster parameters must equal ours, its
//! clock must be within MAX_CLOCK_SKEW), retrying with backoff; failing calls to
//! a down or mismatched peer fast; one log line per change of a peer's state.
//! Does not own: the calls themselves (`coordinator`, `transport`).

use crate::replica::{Introduction, Replica};
use crate::ring::NodeId;
use crate::transport::{PeerError, RefusalKind, Transport};
use parking_lot::Mutex;
use slog::{Logger, error, info, warn};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How often a healthy or mismatched peer is handshaken again, to notice a
/// restart with other settings.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Not handshaken yet; calls are attempted.
    Unknown,
    Up,
    /// Calls fail fast until a handshake succeeds.
    Down {
        reason: String,
    },
    /// The peer's configuration differs; this node refuses to coordinate with it.
    Mismatch {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub state: PeerState,
    /// Wall-clock milliseconds of the last successful exchange, 0 if none.
    pub last_contact_ms: u64,
    /// What the peer said of itself in its last handshake.
    pub entries: Option<u64>,
    pub software_version: Option<String>,
}

struct Peer {
    status: PeerStatus,
    wake: Arc<Notify>,
}

pub struct Peers {
    peers: Mutex<HashMap<NodeId, Peer>>,
    log: Logger,
}

impl Peers {
    pub fn new(peers: impl IntoIterator<Item = NodeId>, log: Logger) -> Self {
        let peers = peers
            .into_iter()
            .map(|id| {
                let status = PeerStatus {
                    state: PeerState::Unknown,
                    last_contact_ms: 0,
                    entries: None,
                    software_version: None,
                };
                (
                    id,
                    Peer {
                        status,
                        wake: Arc::new(Notify::new()),
                    },
                )
            })
            .collect();
        Self {
            peers: Mutex::new(peers),
            log,
        }
    }

    /// Fails fast when a call to `node` cannot help: it is down or mismatched.
    pub fn gate(&self, node: &NodeId) -> Result<(), PeerError> {
        match self.peers.lock().get(node).map(|peer| &peer.status.state) {
            Some(PeerState::Down { reason }) => Err(PeerError::NotContacted {
                state: format!("{reason} (down; retrying in the background)"),
            }),
            Some(PeerState::Mismatch { reason }) => Err(PeerError::NotContacted {
                state: format!("refused: {reason}"),
            }),
            _ => Ok(()),
        }
    }

    /// Records the outcome of a call; a failure that means the peer is gone marks
    /// it down and wakes its handshake loop.
    pub fn record(&self, node: &NodeId, outcome: Result<(), &PeerError>, now_ms: u64) {
        match outcome {
            Ok(()) => {
                if let Some(peer) = self.peers.lock().get_mut(node) {
                    peer.status.last_contact_ms = now_ms;
                }
            }
            Err(error) if error.means_down() => self.mark_down(node, error.to_string()),
            Err(_) => {}
        }
    }

    pub fn snapshot(&self) -> Vec<(NodeId, PeerStatus)> {
        let mut all: Vec<_> = self
            .peers
            .lock()
            .iter()
            .map(|(id, peer)| (id.clone(), peer.status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn state(&self, node: &NodeId) -> Option<PeerState> {
        self.peers.lock().get(node).map(|peer| peer.status.state.clone())
    }

    fn mark_down(&self, node: &NodeId, reason: String) {
        let mut peers = self.peers.lock();
        let Some(peer) = peers.get_mut(node) else { return };
        if matches!(
            peer.status.state,
            PeerState::Down { .. } | PeerState::Mismatch { .. }
        ) {
            return;
        }
        warn!(self.log, "peer down"; "peer" => &**node, "reason" => reason.as_str());
        peer.status.state = PeerState::Down { reason };
        peer.wake.notify_one();
    }

    /// How many peers are up.
    pub fn up_count(&self) -> usize {
        self.peers
            .lock()
            .values()
            .filter(|peer| peer.status.state == PeerState::Up)
            .count()
    }

    fn set(&self, node: &NodeId, state: PeerState, introduction: Option<Introduction>, now_ms: u64) {
        let mut peers = self.peers.lock();
        let Some(peer) = peers.get_mut(node) else { return };
        if let Some(introduction) = introduction {
            peer.status.entries = Some(introduction.entries);
            peer.status.software_version = Some(introduction.software_version);
        }
        if peer.status.state != state {
            match &state {
                PeerState::Up => info!(self.log, "peer up"; "peer" => &**node),
                PeerState::Down { reason } => {
                    warn!(self.log, "peer unreachable, retrying"; "peer" => &**node, "reason" => reason.as_str())
                }
                PeerState::Mismatch { reason } => {
                    error!(self.log, "refusing to coordinate with peer"; "peer" => &**node, "reason" => reason.as_str())
                }
                PeerState::Unknown => {}
            }
        }
        if state == PeerState::Up {
            peer.status.last_contact_ms = now_ms;
        }
        peer.status.state = state;
    }

    fn wake_handle(&self, node: &NodeId) -> Option<Arc<Notify>> {
        self.peers.lock().get(node).map(|peer| peer.wake.clone())
    }
}

/// Handshakes every peer now and whenever it goes down, until `stop`.
pub fn spawn_handshakes(
    peers: Arc<Peers>,
    replica: Arc<Replica>,
    transport: Arc<dyn Transport>,
    rpc_timeout: Duration,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ids: Vec<NodeId> = peers.snapshot().into_iter().map(|(id, _)| id).collect();
    ids.into_iter()
        .map(|peer| {
            let (peers, replica, transport, stop) =
                (peers.clone(), replica.clone(), transport.clone(), stop.clone());
            tokio::spawn(async move {
                // Biased: once stopped, no handshake due at the same instant
                // leaves (the simulation's replays depend on it).
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => {}
                    _ = handshake_loop(&peers, &replica, transport.as_ref(), &peer, rpc_timeout) => {}
                }
            })
        })
        .collect()
}

async fn handshake_loop(
    peers: &Peers,
    replica: &Replica,
    transport: &dyn Transport,
    peer: &NodeId,
    timeout: Duration,
) {
    let Some(wake) = peers.wake_handle(peer) else {
        return;
    };
    let mut retry = FIRST_RETRY;
    loop {
        let (state, introduction) = handshake_once(replica, transport, peer, timeout).await;
        let now_ms = replica.clock().wall_ms();
        let wait = match &state {
            PeerState::Up => {
                retry = FIRST_RETRY;
                RECHECK
            }
            PeerState::Mismatch { .. } => RECHECK,
            _ => {
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        let healthy = state == PeerState::Up;
        peers.set(peer, state, introduction, now_ms);
        if healthy {
            // Sleep until a call reports the peer down, or the periodic recheck.
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}

/// One handshake, judged; with the peer's introduction when it answered.
pub async fn handshake_once(
    replica: &Replica,
    transport: &dyn Transport,
    peer: &NodeId,
    timeout: Duration,
) -> (PeerState, Option<Introduction>) {
    let call = transport.handshake(peer, replica.envelope_to(peer));
    match tokio::time::timeout(timeout, call).await {
        Err(_) => (
            PeerState::Down {
                reason: PeerError::Timeout.to_string(),
            },
            None,
        ),
        Ok(Err(PeerError::Refused {
            kind: RefusalKind::Mismatch,
            reason,
        })) => (PeerState::Mismatch { reason }, None),
        Ok(Err(error)) => (
            PeerState::Down {
                reason: error.to_string(),
            },
            None,
        ),
        Ok(Ok(introduction)) => (judge(replica, peer, &introduction), Some(introduction)),
    }
}

/// Whether a peer that answered may be coordinated with.
fn judge(replica: &Replica, peer: &NodeId, introduction: &Introduction) -> PeerState {
    if &introduction.addr != peer {
        let reason = format!(
            "PEERS names it {peer:?} but its ADDR is {:?}; use the same name in both",
            introduction.addr
        );
        return PeerState::Mismatch { reason };
    }
    if &introduction.params != replica.params() {
        let reason = format!(
            "{peer} runs with {} but {} runs with {}; give every node the same settings and member list",
            introduction.params,
            replica.id(),
            replica.params()
        );
        return PeerState::Mismatch { reason };
    }
    match replica.clock().receive(introduction.clock) {
        Ok(()) => {
            // A peer that started (or evicted) recently cannot store writes at or
            // below its watermark; stamping above it from now on means our writes
            // reach all N replicas, not only the W that phase 1 happened to ask.
            replica.clock().lift_past(introduction.watermark);
            PeerState::Up
        }
        Err(ahead) => PeerState::Down {
            reason: format!("{peer}: {ahead}"),
        },
    }
}
