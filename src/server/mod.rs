//! The gRPC layer: tonic services around the core, and their routes on one
//! listener.
//!
//! Owns: assembling `pb.CacheService` (rate limited), `pb.AdminService`, `peer.PeerService`,
//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha, which
//! grpcurl 1.8 speaks) into one set of routes, with message-size limits.
//! Does not own: the logic behind the services (the core), building and running
//! the server on the listener, startup and shutdown order (`node`).

pub mod admin;
pub mod client;
pub mod convert;
pub mod drain;
pub mod peer;
pub mod peer_batch;
pub mod peer_client;
pub mod rate_limit;
pub mod status;

use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::cache_service_server::CacheServiceServer;
use crate::peer_pb::peer_service_server::PeerServiceServer;
use std::sync::Arc;
use tonic::service::Routes;

/// Room in a peer message beyond the key and value (envelope, versions).
pub const PEER_MESSAGE_MARGIN: usize = 4_096;

pub struct Services {
    pub client: client::ClientApi,
    pub admin: admin::AdminApi,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub peer: peer::PeerApi,
    pub rate_limit: Arc<rate_limit::RateLimit>,
    pub health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    pub max_recv_msg_size: usize,
    pub max_send_msg_size: usize,
}

/// Every service of a node, routed.
pub fn routes(services: Services) -> Routes {
    let client = CacheServiceServer::new(services.client)
        .max_decoding_message_size(services.max_recv_msg_size)
        .max_encoding_message_size(services.max_send_msg_size);
    let client = tonic::service::interceptor::InterceptedService::new(
        client,
        rate_limit::interceptor(services.rate_limit, services.metrics),
    );
    let peer = PeerServiceServer::new(services.peer)
        .max_decoding_message_size(services.max_recv_msg_size + PEER_MESSAGE_MARGIN)
        .max_encoding_message_size(services.max_send_msg_size + PEER_MESSAGE_MARGIN);
    let reflection_v1 = reflection()
        .build_v1()
        .expect("descriptors are generated at build time");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("descriptors are generated at build time");
    Routes::new(client)
        .add_service(AdminServiceServer::new(services.admin))
        .add_service(peer)
        .add_service(services.health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
