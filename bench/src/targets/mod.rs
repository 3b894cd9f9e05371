//! The systems under test behind one interface: a `Target` is connected once,
//! then each client takes a `Session` and issues Gets and Sets through it.
//!
//! Owns: choosing the client implementation for `--target`, the shape of an
//! operation's outcome (hit, miss, or an error of a named kind). Does not own:
//! timing or counting (`driver`, `recorder`), nor the wire details of each
//! system (one file per system).
//!
//! An enum rather than a trait object because async methods on `dyn` traits need
//! boxing on every call, and there are only three clients.

pub mod etcd;
pub mod quorum_cache;
pub mod redis;

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    QuorumCache,
    Redis,
    Etcd,
    /// The bench's own `echo-server`: the quorum-cache API with no work behind it.
    Echo,
}

/// How quorum-cache calls pick a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Round-robin over the given nodes; the node coordinates the quorum.
    Any,
    /// The key's first ring replica, which then holds one of the quorum's copies locally.
    Replica,
}

/// Everything needed to connect to a system.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub kind: TargetKind,
    pub addrs: Vec<String>,
    pub route: Route,
    /// The quorum-cache ring's members, for `Route::Replica`.
    pub members: Vec<String>,
    pub connections: usize,
    pub connect_timeout: Duration,
}

/// The result of a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A Get that found no value: not an error, but worth counting (no preload?).
    Miss,
}

/// A failed call, classified for the error table (e.g. "grpc:Unavailable").
#[derive(Debug, Clone)]
pub struct OpError {
    pub kind: String,
}

impl OpError {
    pub fn new(kind: impl Into<String>) -> Self {
        Self { kind: kind.into() }
    }
}

#[derive(Clone)]
pub enum Target {
    QuorumCache(quorum_cache::QuorumCacheTarget),
    Redis(redis::RedisTarget),
    Etcd(etcd::EtcdTarget),
}

impl Target {
    /// Opens every connection up front, so that connection setup is not measured.
    /// `keys` is the whole key space, for routing tables computed once.
    pub async fn connect(spec: &TargetSpec, keys: &[String]) -> Result<Self, String> {
        if spec.addrs.is_empty() {
            return Err("no address given (--addrs)".into());
        }
        Ok(match spec.kind {
            TargetKind::QuorumCache | TargetKind::Echo => {
                Self::QuorumCache(quorum_cache::QuorumCacheTarget::connect(spec, keys).await?)
            }
            TargetKind::Redis => Self::Redis(redis::RedisTarget::connect(spec).await?),
            TargetKind::Etcd => Self::Etcd(etcd::EtcdTarget::connect(spec).await?),
        })
    }

    /// The handle of the `client_index`-th client, bound to one of the shared connections.
    pub fn session(&self, client_index: usize) -> Session {
        match self {
            Self::QuorumCache(target) => Session::QuorumCache(target.session(client_index)),
            Self::Redis(target) => Session::Redis(target.session(client_index)),
            Self::Etcd(target) => Session::Etcd(target.session(client_index)),
        }
    }
}

pub enum Session {
    QuorumCache(quorum_cache::QuorumCacheSession),
    Redis(redis::RedisSession),
    Etcd(etcd::EtcdSession),
}

impl Session {
    /// `key_index` is the key's position in the key space, for precomputed routing.
    pub async fn get(&mut self, key_index: usize, key: &str) -> Result<Outcome, OpError> {
        match self {
            Self::QuorumCache(session) => session.get(key_index, key).await,
            Self::Redis(session) => session.get(key).await,
            Self::Etcd(session) => session.get(key).await,
        }
    }

    pub async fn set(&mut self, key_index: usize, key: &str, value: &str) -> Result<Outcome, OpError> {
        match self {
            Self::QuorumCache(session) => session.set(key_index, key, value).await,
            Self::Redis(session) => session.set(key, value).await,
            Self::Etcd(session) => session.set(key, value).await,
        }
    }
}

/// A tonic channel to `addr` (plain HTTP/2 on loopback), connected now.
pub async fn grpc_channel(
    addr: &str,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    // Flow-control windows stay at hyper's client defaults (2 MiB per stream,
    // 5 MiB per connection): 64 clients' 4 KiB calls never wait for a window update.
    tonic::transport::Endpoint::from_shared(uri)
        .map_err(|error| format!("{addr}: not an address: {error}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|error| format!("{addr}: cannot connect: {error}"))
}

/// Names a gRPC failure by its status code, e.g. "grpc:DeadlineExceeded".
pub fn grpc_error(status: &tonic::Status) -> OpError {
    OpError::new(format!("grpc:{:?}", status.code()))
}
