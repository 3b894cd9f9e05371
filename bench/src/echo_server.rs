//! `echo-server`: the quorum-cache client API with no work behind it. Get
//! answers a constant value, Set and Delete answer at once. Measuring it gives
//! the ceiling of one gRPC hop (client, HTTP/2, tonic, loopback) on this
//! machine, against which the real cluster's numbers can be read.
//!
//! Like the generator, it runs on a single-threaded runtime by default (the
//! global `--threads`): sharing two cores with the generator, that is the
//! cheapest way to serve, so the ceiling is the transport's and not a
//! scheduler's. `--threads 0` gives it a node's shape instead (a work-stealing
//! runtime with one worker per core).
//!
//! Owns: that server. Does not own: anything a real node does (no store, no
//! peers, no validation).

use quorum_cache::pb::cache_service_server::{CacheService, CacheServiceServer};
use quorum_cache::pb::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, SetRequest, SetResponse, Version,
};
use std::net::SocketAddr;
use tonic::{Request, Response, Status};

pub struct EchoService {
    value: String,
}

#[tonic::async_trait]
impl CacheService for EchoService {
    async fn set(&self, _request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        Ok(Response::new(SetResponse {
            version: Some(Version::default()),
        }))
    }

    async fn get(&self, _request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse {
            value: self.value.clone(),
            version: Some(Version::default()),
            ttl_remaining_ms: 0,
        }))
    }

    async fn delete(&self, _request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse {
            version: Some(Version::default()),
        }))
    }
}

/// Serves until the process is stopped (SIGINT/SIGTERM end it with the default action,
/// or Ctrl-C here). `value_size` is the size of the value every Get returns.
pub async fn serve(addr: SocketAddr, value_size: usize) -> Result<(), String> {
    let service = EchoService {
        value: crate::workload::value_of_size(value_size),
    };
    let server = CacheServiceServer::new(service).max_decoding_message_size(64 << 20);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("echo-server cannot listen on {addr}: {error}"))?;
    eprintln!("echo-server listening on {addr} (Get answers {value_size} B)");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| format!("echo-server on {addr}: {error}"))
}
