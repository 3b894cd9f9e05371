//! `pb.AdminService`: the cluster as this node sees it, for operators and the
//! `quorum-cache status` command. Not rate limited.
//!
//! Owns: turning the peer table and readiness into a `StatusResponse`.
//! Does not own: finding out peer states (`peers`) or readiness (`node`).

use crate::coordinator::Coordinator;
use crate::pb::admin_service_server::AdminService;
use crate::pb::{NodeStatus, StatusRequest, StatusResponse};
use crate::peers::PeerState;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub struct AdminApi {
    coordinator: Arc<Coordinator>,
    ready: ReadinessCheck,
}

impl AdminApi {
    pub fn new(coordinator: Arc<Coordinator>, ready: ReadinessCheck) -> Self {
        Self { coordinator, ready }
    }

    fn this_node(&self) -> NodeStatus {
        let replica = self.coordinator.replica();
        NodeStatus {
            addr: replica.id().to_string(),
            state: "self".into(),
            reason: String::new(),
            last_contact_ms: replica.clock().wall_ms(),
            entries: Some(replica.store().len() as u64),
            software_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut nodes = vec![self.this_node()];
        for (addr, peer) in self.coordinator.peers().snapshot() {
            let (state, reason) = match peer.state {
                PeerState::Unknown => ("unknown", String::new()),
                PeerState::Up => ("up", String::new()),
                PeerState::Down { reason } => ("down", reason),
                PeerState::Mismatch { reason } => ("mismatch", reason),
            };
            nodes.push(NodeStatus {
                addr: addr.to_string(),
                state: state.into(),
                reason,
                last_contact_ms: peer.last_contact_ms,
                entries: peer.entries,
                software_version: peer.software_version.unwrap_or_default(),
            });
        }
        let replication = self.coordinator.ring().replication();
        let (read_quorum, write_quorum) = self.coordinator.quorums(replication);
        let readiness = (self.ready)();
        Ok(Response::new(StatusResponse {
            addr: self.coordinator.replica().id().to_string(),
            ready: readiness.is_ok(),
            not_ready_reason: readiness.err().unwrap_or_default(),
            replication_factor: replication as u32,
            read_quorum: read_quorum as u32,
            write_quorum: write_quorum as u32,
            nodes,
        }))
    }
}

/// The status as a table, for `quorum-cache status`.
pub fn render(status: &StatusResponse, now: std::time::SystemTime) -> String {
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let readiness = if status.ready {
        "ready".to_string()
    } else {
        format!("NOT READY: {}", status.not_ready_reason)
    };
    let mut out = format!(
        "node {}: {readiness}; N={} R={} W={}\n{:<32} {:<9} {:>13} {:>9}  {:<9} {}\n",
        status.addr,
        status.replication_factor,
        status.read_quorum,
        status.write_quorum,
        "NODE",
        "STATE",
        "LAST CONTACT",
        "ENTRIES",
        "VERSION",
        "REASON"
    );
    for node in &status.nodes {
        let contact = match node.last_contact_ms {
            0 => "never".to_string(),
            _ if node.state == "self" => "-".to_string(),
            at => format!("{:.1}s ago", now_ms.saturating_sub(at) as f64 / 1_000.0),
        };
        let entries = node
            .entries
            .map_or("?".to_string(), |entries| entries.to_string());
        let version = if node.software_version.is_empty() {
            "?"
        } else {
            &node.software_version
        };
        out.push_str(&format!(
            "{:<32} {:<9} {:>13} {:>9}  {:<9} {}\n",
            node.addr, node.state, contact, entries, version, node.reason
        ));
    }
    out
}
