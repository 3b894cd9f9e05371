//! `peer.PeerService`: the node-to-node API, served to other nodes' coordinators.
//! Decodes and validates a peer message, hands it to the `Replica`, encodes the
//! answer. Never rate limited; still served while draining, so that other
//! nodes' in-flight operations can finish.
//!
//! Owns: validation of peer messages (missing fields, bad keys and values are
//! INVALID_ARGUMENT and change nothing), and unpacking batches: each item of a
//! `Batch` is served exactly as the single call would be, and fails on its own;
//! an item without an envelope is checked against the batch's.
//! A `BatchStream` serves each batch that arrives on it the same way, in order,
//! and ends when the node closes its listener (after the drain), so that
//! graceful shutdown is not held open by peers' long-lived streams.
//! Does not own: the checks on who is calling (`replica`), when the node stops
//! (`node`).

use super::convert::required;
use super::status;
use crate::limits::{InputError, InputLimits};
use crate::peer_pb;
use crate::peer_pb::peer_service_server::PeerService;
use crate::peer_pb::{
    BatchRequest, BatchResponse, BatchResult, HandshakeRequest, HandshakeResponse, ItemFailure, ReadRequest,
    ReadResponse, WriteRequest, WriteResponse, batch_item, batch_result,
};
use crate::replica::{Envelope, Refusal, Replica};
use crate::store::Record;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use slog::{Logger, warn};
use std::borrow::Cow;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub struct PeerApi {
    serving: Arc<Serving>,
    /// Cancelled when the node closes its listener; ends every open `BatchStream`.
    closing: CancellationToken,
}

/// What serving a peer message needs; shared with the tasks of open streams.
struct Serving {
    replica: Arc<Replica>,
    limits: InputLimits,
    log: Logger,
}

impl PeerApi {
    pub fn new(replica: Arc<Replica>, limits: InputLimits, log: Logger, closing: CancellationToken) -> Self {
        Self {
            serving: Arc::new(Serving { replica, limits, log }),
            closing,
        }
    }
}

#[tonic::async_trait]
impl PeerService for PeerApi {
    type BatchStreamStream = BoxStream<'static, Result<BatchResponse, Status>>;

    async fn handshake(
        &self,
        request: Request<HandshakeRequest>,
    ) -> Result<Response<HandshakeResponse>, Status> {
        let serving = &self.serving;
        let envelope = Envelope::try_from(request.into_inner().envelope).map_err(status::from_input)?;
        let introduction = serving
            .replica
            .handshake(&envelope)
            .map_err(|refusal| serving.refused(refusal))?;
        Ok(Response::new(HandshakeResponse {
            addr: introduction.addr.to_string(),
            params: Some(introduction.params.into()),
            clock: Some(introduction.clock.into()),
            software_version: introduction.software_version,
            entries: introduction.entries,
            watermark: Some(introduction.watermark.into()),
        }))
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let reply = self.serving.serve_read(request.into_inner(), None)?;
        Ok(Response::new(ReadResponse {
            clock: reply.clock,
            held: reply.held,
        }))
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        Ok(Response::new(
            self.serving.serve_write(request.into_inner(), None)?,
        ))
    }

    async fn batch(&self, request: Request<BatchRequest>) -> Result<Response<BatchResponse>, Status> {
        Ok(Response::new(self.serving.serve_batch(
            request.into_inner(),
            &mut LastEnvelope::default(),
        )?))
    }

    /// Batches are served one after another as they arrive, so the answers keep
    /// their order. A bad batch (too large, undecodable) ends the stream with its
    /// status, after the answers to the batches before it.
    async fn batch_stream(
        &self,
        request: Request<Streaming<BatchRequest>>,
    ) -> Result<Response<Self::BatchStreamStream>, Status> {
        let serving = self.serving.clone();
        let mut last_envelope = LastEnvelope::default();
        let answers = request
            .into_inner()
            .map(move |batch| serving.serve_batch(batch?, &mut last_envelope))
            .take_until(self.closing.clone().cancelled_owned());
        Ok(Response::new(answers.boxed()))
    }
}

/// The most items one `Batch` call may carry; the sender stays well below.
pub const MAX_BATCH_ITEMS: usize = 1024;

impl Serving {
    /// A refusal is worth a log line: it means a misconfigured or skewed peer.
    fn refused(&self, refusal: Refusal) -> Status {
        warn!(self.log, "refused a peer message"; "reason" => %refusal);
        status::from_refusal(refusal)
    }

    /// One batch, from `Batch` or from a `BatchStream`: each item is served as
    /// its single call would be, and fails on its own.
    fn serve_batch(
        &self,
        batch: BatchRequest,
        last_envelope: &mut LastEnvelope,
    ) -> Result<BatchResponse, Status> {
        let items = batch.items;
        if items.len() > MAX_BATCH_ITEMS {
            return Err(Status::invalid_argument(format!(
                "a batch holds at most {MAX_BATCH_ITEMS} items, got {}; split it",
                items.len()
            )));
        }
        // Decoded once; a bad one fails only the items that lean on it.
        let shared = batch.envelope.map(|envelope| last_envelope.decode(envelope));
        let results = items
            .into_iter()
            .map(|item| {
                let served = match item.call {
                    Some(batch_item::Call::Read(read)) => self.serve_read(read, shared.as_ref()),
                    Some(batch_item::Call::Write(write)) => self.serve_write(write, shared.as_ref()),
                    None => Err(Status::invalid_argument(
                        "a batch item is neither a read nor a write",
                    )),
                };
                let outcome = match served {
                    Ok(held) => batch_result::Outcome::Held(held),
                    Err(status) => batch_result::Outcome::Failure(failure_of(&status)),
                };
                BatchResult {
                    outcome: Some(outcome),
                }
            })
            .collect();
        Ok(BatchResponse { results })
    }

    /// A Read, alone or in a batch. The answer has the same shape as a write's.
    fn serve_read(
        &self,
        request: ReadRequest,
        shared: Option<&SharedEnvelope>,
    ) -> Result<WriteResponse, Status> {
        let envelope = envelope_of(request.envelope, shared)?;
        self.limits.check_key(&request.key).map_err(status::from_input)?;
        let reply = self
            .replica
            .read(&envelope, &request.key, request.digest)
            .map_err(|refusal| self.refused(refusal))?;
        Ok(WriteResponse {
            clock: Some(reply.clock.into()),
            held: Some(reply.held.into()),
        })
    }

    /// A Write, alone or in a batch.
    fn serve_write(
        &self,
        request: WriteRequest,
        shared: Option<&SharedEnvelope>,
    ) -> Result<WriteResponse, Status> {
        let envelope = envelope_of(request.envelope, shared)?;
        self.limits.check_key(&request.key).map_err(status::from_input)?;
        if let Some(value) = &request.value {
            self.limits.check_value(value).map_err(status::from_input)?;
        }
        let version = required(request.version, "version")
            .map_err(status::from_input)?
            .into();
        // A decoded value is a slice of the whole message's buffer; kept as it is,
        // each stored value would hold its batch's buffer alive. Copied out, the
        // store holds the value's bytes and no more.
        let value = request.value.map(|value| Bytes::copy_from_slice(&value));
        let record = Record {
            version,
            value,
            expires_at_ms: request.expires_at_ms,
        };
        let reply = self
            .replica
            .write(&envelope, request.key, record)
            .map_err(|refusal| self.refused(refusal))?;
        Ok(WriteResponse {
            clock: Some(reply.clock.into()),
            held: Some(reply.held.into()),
        })
    }
}

/// A batch's envelope, decoded once for the items that carry none.
type SharedEnvelope = Result<Envelope, InputError>;

/// The last batch envelope a stream carried. A stream's batches come from one
/// sender under one name, so a batch's envelope that matches it takes only its
/// clock from the message instead of being decoded anew into three strings.
#[derive(Default)]
struct LastEnvelope(Option<Envelope>);

impl LastEnvelope {
    /// What `Envelope::try_from` makes of `message`, reusing the last one's
    /// names when they are the same.
    fn decode(&mut self, message: peer_pb::Envelope) -> Result<Envelope, InputError> {
        if let Some(last) = &self.0
            && same_sender(last, &message)
        {
            let clock = required(message.clock, "envelope.clock")?.into();
            return Ok(Envelope {
                clock,
                ..last.clone()
            });
        }
        let decoded = Envelope::try_from(Some(message))?;
        self.0 = Some(decoded.clone());
        Ok(decoded)
    }
}

fn same_sender(last: &Envelope, message: &peer_pb::Envelope) -> bool {
    let same_params = |params: &peer_pb::ClusterParams| {
        let ours = &last.params;
        (params.replication_factor, params.vnodes, params.members_hash)
            == (ours.replication_factor, ours.vnodes, ours.members_hash)
            && params.hash == *ours.hash
    };
    *last.from == message.from && *last.to == message.to && message.params.as_ref().is_some_and(same_params)
}

/// The envelope a message is checked against: its own, else its batch's.
fn envelope_of(
    own: Option<peer_pb::Envelope>,
    shared: Option<&SharedEnvelope>,
) -> Result<Cow<'_, Envelope>, Status> {
    match (own, shared) {
        (None, Some(Ok(shared))) => Ok(Cow::Borrowed(shared)),
        (None, Some(Err(error))) => Err(status::from_input(error.clone())),
        (own, _) => Envelope::try_from(own)
            .map(Cow::Owned)
            .map_err(status::from_input),
    }
}

/// A failed item as the status its single call would have returned.
fn failure_of(status: &Status) -> ItemFailure {
    let refusal = status
        .metadata()
        .get(status::REFUSAL_KEY)
        .and_then(|kind| kind.to_str().ok())
        .unwrap_or_default();
    ItemFailure {
        code: status.code() as i32,
        message: status.message().to_string(),
        refusal: refusal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, ManualClock, Version, WallClock};
    use crate::replica::ClusterParams;
    use crate::ring::NodeId;
    use crate::store::{Held, Store, StoreLimits};
    use std::time::Duration;

    fn serving() -> Serving {
        let wall: Arc<dyn WallClock> = ManualClock::new(1_000_000);
        let clock = Arc::new(Hlc::new(wall.clone(), 1, 500));
        let limits = StoreLimits {
            num_shards: 1,
            max_entries: 10,
            max_bytes: 1 << 20,
        };
        let store = Arc::new(Store::new(limits, wall, Version::ZERO));
        let params = ClusterParams {
            replication_factor: 1,
            vnodes: 1,
            hash: "xxh3-64".into(),
            members_hash: 7,
        };
        let replica = Arc::new(Replica::new("node1".into(), params, store, clock));
        let limits = InputLimits {
            max_key_size: 250,
            max_value_size: 1024,
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(60),
        };
        Serving {
            replica,
            limits,
            log: Logger::root(slog::Discard, slog::o!()),
        }
    }

    #[test]
    fn a_stored_value_does_not_keep_its_messages_buffer_alive() {
        let serving = serving();
        let message = Bytes::from(vec![b'v'; 4096]);
        let envelope = serving.replica.envelope_to(serving.replica.id());
        let version = serving.replica.clock().stamp_above(Version::ZERO).unwrap();
        let write = WriteRequest {
            envelope: Some(envelope.into()),
            key: Bytes::from_static(b"k"),
            version: Some(version.into()),
            value: Some(message.slice(100..200)),
            expires_at_ms: u64::MAX,
        };
        serving.serve_write(write, None).expect("a valid write is served");
        let Held::Live { value, .. } = serving.replica.read_local(b"k", false) else {
            panic!("the write was not stored")
        };
        assert_eq!(value, message.slice(100..200));
        let buffer = message.as_ptr_range();
        assert!(
            !buffer.contains(&value.as_ptr()),
            "the stored value points into the message's buffer"
        );
    }

    fn message(to: &str, physical_ms: Option<u64>) -> peer_pb::Envelope {
        let serving = serving();
        let mut envelope = peer_pb::Envelope::from(serving.replica.envelope_to(&NodeId::from(to)));
        envelope.clock = physical_ms.map(|physical_ms| peer_pb::Timestamp {
            physical_ms,
            logical: 0,
        });
        envelope
    }

    #[test]
    fn a_streams_next_envelope_from_the_same_sender_takes_only_its_clock_and_decodes_like_a_first_one() {
        let mut last = LastEnvelope::default();
        for (to, physical_ms) in [("node1", 5), ("node1", 9), ("node2", 3), ("node1", 4)] {
            let fresh = Envelope::try_from(Some(message(to, Some(physical_ms)))).unwrap();
            assert_eq!(
                last.decode(message(to, Some(physical_ms))),
                Ok(fresh),
                "to {to} at {physical_ms}"
            );
        }
        let clockless = last.decode(message("node1", None));
        assert_eq!(
            clockless,
            Err(InputError::Missing {
                field: "envelope.clock"
            }),
            "a repeated sender is still checked"
        );
        let mut other_params = message("node1", Some(6));
        other_params.params.as_mut().unwrap().members_hash = 8;
        assert_eq!(
            last.decode(other_params)
                .map(|envelope| envelope.params.members_hash),
            Ok(8)
        );
        let mut other_hash = message("node1", Some(7));
        let params = other_hash.params.as_mut().unwrap();
        (params.members_hash, params.hash) = (8, "fnv".into());
        assert_eq!(
            last.decode(other_hash).map(|envelope| envelope.params.hash),
            Ok("fnv".into())
        );
    }
}
