//! The quorum-cache client (also used for the bench's echo server, which speaks
//! the same API).
//!
//! Owns: `--connections` gRPC channels per node, and picking the node of each
//! call: round-robin (`--route any`) or the key's first ring replica
//! (`--route replica`, from `quorum_cache::ring::Ring` with the node's defaults).
//! Does not own: the ring itself, or retries (a failed call is an error to report).

use super::{OpError, Outcome, Route, TargetSpec, grpc_channel, grpc_error};
use quorum_cache::pb::cache_service_client::CacheServiceClient;
use quorum_cache::pb::{GetRequest, SetRequest};
use quorum_cache::ring::Ring;
use std::sync::Arc;
use tonic::Code;
use tonic::transport::Channel;

/// The node defaults the ring must match (VNODES, REPLICATION_FACTOR); the
/// replica route is only right against nodes that run with them.
const VNODES: usize = 128;
const REPLICATION_FACTOR: usize = 3;

#[derive(Clone)]
pub struct QuorumCacheTarget {
    /// `[node][connection]`; nodes in `--addrs` order.
    clients: Arc<Vec<Vec<CacheServiceClient<Channel>>>>,
    /// For `Route::Replica`: the node index of each key's first replica.
    first_replica: Option<Arc<Vec<u16>>>,
}

impl QuorumCacheTarget {
    pub async fn connect(spec: &TargetSpec, keys: &[String]) -> Result<Self, String> {
        let first_replica = match spec.route {
            Route::Any => None,
            Route::Replica => Some(Arc::new(first_replicas(&spec.addrs, &spec.members, keys)?)),
        };
        let mut clients = Vec::with_capacity(spec.addrs.len());
        for addr in &spec.addrs {
            let mut per_node = Vec::with_capacity(spec.connections);
            for _ in 0..spec.connections.max(1) {
                let channel = grpc_channel(addr, spec.connect_timeout).await?;
                // Large values (4 KiB and up) must not hit tonic's 4 MiB default either way;
                // raising the limit keeps the bench from failing where the server would not.
                per_node.push(CacheServiceClient::new(channel).max_decoding_message_size(64 << 20));
            }
            clients.push(per_node);
        }
        Ok(Self {
            clients: Arc::new(clients),
            first_replica,
        })
    }

    pub fn session(&self, client_index: usize) -> QuorumCacheSession {
        // Cloning a tonic client clones a handle to the shared channel, not a
        // connection; each session does it once, not on every call.
        let clients = self
            .clients
            .iter()
            .map(|per_node| per_node[client_index % per_node.len()].clone())
            .collect();
        QuorumCacheSession {
            clients,
            first_replica: self.first_replica.clone(),
            turn: client_index,
        }
    }
}

/// For every key, the index in `addrs` of its first replica on the ring of `members`.
fn first_replicas(addrs: &[String], members: &[String], keys: &[String]) -> Result<Vec<u16>, String> {
    let members: Vec<_> = members.iter().map(|member| member.as_str().into()).collect();
    let ring = Ring::new(&members, VNODES, REPLICATION_FACTOR);
    keys.iter()
        .map(|key| {
            let first = ring
                .replicas(key.as_bytes())
                .first()
                .map(|node| -> &str { node })
                .unwrap_or_default()
                .to_string();
            addrs
                .iter()
                .position(|addr| *addr == first)
                .map(|index| index as u16)
                .ok_or_else(|| {
                    format!("--route replica: member {first:?} (a key's first replica) is not in --addrs")
                })
        })
        .collect()
}

pub struct QuorumCacheSession {
    /// This client's handle on each node, in `--addrs` order.
    clients: Vec<CacheServiceClient<Channel>>,
    first_replica: Option<Arc<Vec<u16>>>,
    /// Round-robin position; starts at the client index so clients start spread out.
    turn: usize,
}

impl QuorumCacheSession {
    fn client_for(&mut self, key_index: usize) -> &mut CacheServiceClient<Channel> {
        let node = match &self.first_replica {
            Some(first_replica) => first_replica[key_index] as usize,
            None => {
                self.turn = self.turn.wrapping_add(1);
                self.turn % self.clients.len()
            }
        };
        &mut self.clients[node]
    }

    pub async fn get(&mut self, key_index: usize, key: &str) -> Result<Outcome, OpError> {
        let request = GetRequest { key: key.to_string() };
        match self.client_for(key_index).get(request).await {
            Ok(_) => Ok(Outcome::Done),
            Err(status) if status.code() == Code::NotFound => Ok(Outcome::Miss),
            Err(status) => Err(grpc_error(&status)),
        }
    }

    pub async fn set(&mut self, key_index: usize, key: &str, value: &str) -> Result<Outcome, OpError> {
        let request = SetRequest {
            key: key.to_string(),
            value: value.to_string(),
            ttl_seconds: None,
        };
        self.client_for(key_index)
            .set(request)
            .await
            .map(|_| Outcome::Done)
            .map_err(|status| grpc_error(&status))
    }
}
