//! The etcd v3 client: Range (a linearizable get of one key) and Put, over the
//! hand-written subset of etcd's API in `proto/etcd_kv.proto`.
//!
//! Owns: `--connections` channels per endpoint and spreading calls over the
//! endpoints round-robin (followers forward writes to the leader and confirm
//! reads with it, as a real client's load would). Does not own: leases,
//! watches, transactions, auth: the benchmark needs none.

use super::{OpError, Outcome, TargetSpec, grpc_channel, grpc_error};
use std::sync::Arc;
use tonic::transport::Channel;

pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::{PutRequest, RangeRequest};

#[derive(Clone)]
pub struct EtcdTarget {
    /// `[endpoint][connection]`.
    clients: Arc<Vec<Vec<KvClient<Channel>>>>,
}

impl EtcdTarget {
    pub async fn connect(spec: &TargetSpec) -> Result<Self, String> {
        let mut clients = Vec::with_capacity(spec.addrs.len());
        for addr in &spec.addrs {
            let mut per_endpoint = Vec::with_capacity(spec.connections);
            for _ in 0..spec.connections.max(1) {
                per_endpoint.push(KvClient::new(grpc_channel(addr, spec.connect_timeout).await?));
            }
            clients.push(per_endpoint);
        }
        Ok(Self {
            clients: Arc::new(clients),
        })
    }

    pub fn session(&self, client_index: usize) -> EtcdSession {
        // One handle per endpoint, cloned once per session rather than on every call.
        let clients = self
            .clients
            .iter()
            .map(|per_endpoint| per_endpoint[client_index % per_endpoint.len()].clone())
            .collect();
        EtcdSession {
            clients,
            turn: client_index,
        }
    }
}

pub struct EtcdSession {
    /// This client's handle on each endpoint.
    clients: Vec<KvClient<Channel>>,
    turn: usize,
}

impl EtcdSession {
    fn next_client(&mut self) -> &mut KvClient<Channel> {
        self.turn = self.turn.wrapping_add(1);
        let endpoint = self.turn % self.clients.len();
        &mut self.clients[endpoint]
    }

    pub async fn get(&mut self, key: &str) -> Result<Outcome, OpError> {
        // serializable = false: linearizable, the guarantee quorum-cache gives.
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        match self.next_client().range(request).await {
            Ok(response) if response.get_ref().kvs.is_empty() => Ok(Outcome::Miss),
            Ok(_) => Ok(Outcome::Done),
            Err(status) => Err(grpc_error(&status)),
        }
    }

    pub async fn set(&mut self, key: &str, value: &str) -> Result<Outcome, OpError> {
        let request = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        self.next_client()
            .put(request)
            .await
            .map(|_| Outcome::Done)
            .map_err(|status| grpc_error(&status))
    }
}
