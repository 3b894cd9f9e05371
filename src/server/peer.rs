//! `peer.PeerService`: the node-to-node API, served to other nodes' coordinators.
//! Decodes and validates a peer message, hands it to the `Replica`, encodes the
//! answer. Never rate limited; still served while draining, so that other
//! nodes' in-flight operations can finish.
//!
//! Owns: validation of peer messages (missing fields, bad keys and values are
//! INVALID_ARGUMENT and change nothing).
//! Does not own: the checks on who is calling (`replica`).

use super::convert::required;
use super::status;
use crate::limits::InputLimits;
use crate::peer_pb::peer_service_server::PeerService;
use crate::peer_pb::{
    HandshakeRequest, HandshakeResponse, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
};
use crate::replica::{Envelope, Refusal, Replica};
use slog::{Logger, warn};
use crate::store::Record;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct PeerApi {
    replica: Arc<Replica>,
    limits: InputLimits,
    log: Logger,
}

impl PeerApi {
    pub fn new(replica: Arc<Replica>, limits: InputLimits, log: Logger) -> Self {
        Self { replica, limits, log }
    }

    /// A refusal is worth a log line: it means a misconfigured or skewed peer.
    fn refused(&self, refusal: Refusal) -> Status {
        warn!(self.log, "refused a peer message"; "reason" => %refusal);
        status::from_refusal(refusal)
    }
}

#[tonic::async_trait]
impl PeerService for PeerApi {
    async fn handshake(&self, request: Request<HandshakeRequest>) -> Result<Response<HandshakeResponse>, Status> {
        let envelope = Envelope::try_from(request.into_inner().envelope).map_err(status::from_input)?;
        let introduction = self.replica.handshake(&envelope).map_err(|refusal| self.refused(refusal))?;
        Ok(Response::new(HandshakeResponse {
            addr: introduction.addr,
            params: Some(introduction.params.into()),
            clock: Some(introduction.clock.into()),
            software_version: introduction.software_version,
            entries: introduction.entries,
            watermark: Some(introduction.watermark.into()),
        }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let request = request.into_inner();
        let envelope = Envelope::try_from(request.envelope).map_err(status::from_input)?;
        self.limits.check_key(&request.key).map_err(status::from_input)?;
        let reply = self.replica.read(&envelope, &request.key, request.digest).map_err(|refusal| self.refused(refusal))?;
        Ok(Response::new(ReadResponse { clock: Some(reply.clock.into()), held: Some(reply.held.into()) }))
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let request = request.into_inner();
        let envelope = Envelope::try_from(request.envelope).map_err(status::from_input)?;
        self.limits.check_key(&request.key).map_err(status::from_input)?;
        if let Some(value) = &request.value {
            self.limits.check_value(value).map_err(status::from_input)?;
        }
        let version = required(request.version, "version").map_err(status::from_input)?.into();
        let record = Record { version, value: request.value, expires_at_ms: request.expires_at_ms };
        let reply = self.replica.write(&envelope, request.key, record).map_err(|refusal| self.refused(refusal))?;
        Ok(Response::new(WriteResponse { clock: Some(reply.clock.into()), held: Some(reply.held.into()) }))
    }
}
