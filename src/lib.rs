//! quorum-cache: a distributed, in-memory, linearizable key-value cache.
//!
//! # Map of the crate
//!
//! The core knows nothing of gRPC:
//! - [`clock`]: wall clock, hybrid logical clock, `Version`.
//! - [`store`]: sharded, bounded, TTL-aware records with per-shard "forgotten" watermarks.
//! - [`ring`]: consistent hashing; a key's N replicas.
//! - [`replica`]: the replica side of the peer protocol (checks, then the store).
//! - [`transport`]: the seam to remote replicas; [`transport::memory`] fakes it for tests.
//! - [`peers`]: which peers are up, handshakes, fail-fast for down peers.
//! - [`coordinator`]: ABD quorum writes and reads with blocking read repair.
//! - [`limits`]: validation of client input, shared by every entry point.
//! - [`observe`]: the events the core reports, for [`metrics`].
//!
//! Proving it lives outside the library: the workspace crate `check/`
//! (`quorum-cache-check`, library `qc_check`, command `qc-check`) is a per-key
//! linearizability checker (Wing–Gong with Lowe's memoisation) for recorded
//! histories of the cache, used by the consistency tests and the simulation.
//!
//! Around it:
//! - [`config`]: environment → validated `Config`.
//! - [`logging`]: slog setup, with tonic/h2 records bridged in.
//! - [`server`]: tonic services (client, peer, health, reflection), the gRPC peer
//!   client (which sends reads and writes to a peer in batches on one stream per
//!   peer, `server::peer_batch`),
//!   the rate limiter, error → status mapping and draining.
//! - [`metrics`]: Prometheus metrics, `/metrics`, `/healthz`, `/readyz`.
//! - [`node`]: assembles one node from a `Config` and runs it until told to stop.
//!
//! # The path of a Set
//! `server::client` decodes and validates (`limits`), then calls
//! [`coordinator::Coordinator::set`]: with W = 2, 2W > N and this node one of the
//! key's replicas (`ring`), the clock stamps a version above what the local
//! `replica` holds or forgot; the record goes to the other replicas through
//! `transport`, and once one stored that very version it is applied locally and
//! answered. Otherwise (and when every peer refused it, holding or having
//! forgotten something newer) the two phases: ask R replicas for the version
//! they hold or forgot, stamp above the highest, send to all N, answer once W
//! hold it or something newer. No stamp goes beyond this node's wall clock +
//! MAX_CLOCK_SKEW (`clock`). Each replica checks the message (`replica`: the
//! sender's clock and the version within its own bound) and applies it only if
//! newer (`store`).
//!
//! # The path of a Get
//! `server::client` validates and calls [`coordinator::Coordinator::get`], which
//! reads the replicas (the local one first, with the value; the peers send the
//! version only), waits until R answers vouch for the newest version (a replica
//! that forgot newer versions cannot), reads again with values when only a peer
//! holds that version, writes it back until W hold it when the answers disagree,
//! and only then answers.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod peers;
pub mod replica;
pub mod ring;
pub mod server;
pub mod store;
pub mod transport;

/// The generated protobuf and gRPC code.
pub mod pb {
    tonic::include_proto!("pb");
}

/// The generated node-to-node protocol.
pub mod peer_pb {
    tonic::include_proto!("peer");
}

/// Encoded descriptors of every service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptors");
