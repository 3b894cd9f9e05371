//! The gRPC implementation of `Transport`: one lazily connected, automatically
//! reconnecting channel per peer, reused by every call; reads and writes go out
//! in batches (`peer_batch`), handshakes alone.
//!
//! Owns: dialling peers, HTTP/2 keep-alive (to notice dead connections), and
//! classifying failures: only a failure to connect (refused, timed out or
//! unroutable while connecting) proves nothing was sent; every other failure
//! of the connection (keep-alive expiry, reset, GOAWAY, a stream error,
//! anything unrecognised) and every timeout may come after the request left,
//! so a write may have been applied; and a peer's refusals.
//! Does not own: timeouts per operation and retries (`coordinator`, `peers`).

use super::peer_batch::PeerBatcher;
use super::status::REFUSAL_KEY;
use crate::peer_pb::peer_service_client::PeerServiceClient;
use crate::peer_pb::{self, HandshakeRequest, batch_item};
use crate::replica::{Envelope, Introduction, Reply};
use crate::ring::NodeId;
use crate::store::Held;
use crate::transport::{PeerError, ReadRequest, RefusalKind, Transport, WriteRequest};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// How long a connection to a peer may stay silent before a ping asks whether
/// it is still alive; the ping's answer is awaited for RPC_TIMEOUT.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

pub struct GrpcTransport {
    links: HashMap<NodeId, Link>,
}

struct Link {
    client: PeerServiceClient<Channel>,
    batcher: PeerBatcher,
}

impl GrpcTransport {
    /// Channels to `peers`; nothing is dialled until the first call. With
    /// `source`, calls leave from that local address.
    pub fn new(
        peers: &[NodeId],
        source: Option<IpAddr>,
        rpc_timeout: Duration,
        max_message_size: usize,
    ) -> Result<Self, String> {
        let mut links = HashMap::new();
        for peer in peers {
            let endpoint = Endpoint::from_shared(format!("http://{peer}"))
                .map_err(|error| format!("PEERS entry {peer:?} is not a usable address: {error}"))?
                .connect_timeout(rpc_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(rpc_timeout)
                .keep_alive_while_idle(true)
                .local_address(source);
            let client = PeerServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(max_message_size)
                .max_encoding_message_size(max_message_size);
            let batcher = PeerBatcher::spawn(client.clone(), rpc_timeout, classify);
            links.insert(peer.clone(), Link { client, batcher });
        }
        Ok(Self { links })
    }

    fn link(&self, to: &NodeId) -> Result<&Link, PeerError> {
        self.links.get(to).ok_or_else(|| PeerError::Unreachable {
            reason: format!("{to} is not in PEERS"),
        })
    }

    fn batched(
        &self,
        to: &NodeId,
        envelope: Envelope,
        call: batch_item::Call,
    ) -> BoxFuture<'static, Result<Reply, PeerError>> {
        let answered = self.link(to).map(|link| link.batcher.call(envelope, call));
        async move {
            let answer = answered?.await?;
            reply(answer.clock, answer.held)
        }
        .boxed()
    }
}

impl Transport for GrpcTransport {
    fn read(&self, to: &NodeId, request: ReadRequest) -> BoxFuture<'static, Result<Reply, PeerError>> {
        // The envelope is the batch's to set (`peer_batch`).
        let message = peer_pb::ReadRequest {
            envelope: None,
            key: request.key,
            digest: request.digest,
        };
        self.batched(to, request.envelope, batch_item::Call::Read(message))
    }

    fn write(&self, to: &NodeId, request: WriteRequest) -> BoxFuture<'static, Result<Reply, PeerError>> {
        let message = peer_pb::WriteRequest {
            envelope: None,
            key: request.key,
            version: Some(request.record.version.into()),
            value: request.record.value,
            expires_at_ms: request.record.expires_at_ms,
        };
        self.batched(to, request.envelope, batch_item::Call::Write(message))
    }

    fn handshake(
        &self,
        to: &NodeId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Introduction, PeerError>> {
        let client = self.link(to).map(|link| link.client.clone());
        async move {
            let request = HandshakeRequest {
                envelope: Some(envelope.into()),
            };
            let response = client?.handshake(request).await.map_err(classify)?.into_inner();
            Introduction::try_from(response).map_err(|error| PeerError::BadAnswer {
                reason: error.to_string(),
            })
        }
        .boxed()
    }
}

fn reply(clock: Option<peer_pb::Timestamp>, held: Option<peer_pb::Held>) -> Result<Reply, PeerError> {
    let bad = |error: crate::limits::InputError| PeerError::BadAnswer {
        reason: error.to_string(),
    };
    let clock = super::convert::required(clock, "clock").map_err(bad)?.into();
    let held = Held::try_from(held).map_err(bad)?;
    Ok(Reply { clock, held })
}

/// Sorts a failed call into what the coordinator needs to know.
fn classify(status: Status) -> PeerError {
    match status.code() {
        Code::FailedPrecondition => {
            let kind = match status
                .metadata()
                .get(REFUSAL_KEY)
                .and_then(|kind| kind.to_str().ok())
            {
                Some("clock-ahead") => RefusalKind::ClockAhead,
                _ => RefusalKind::Mismatch,
            };
            PeerError::Refused {
                kind,
                reason: status.message().to_string(),
            }
        }
        Code::DeadlineExceeded => PeerError::Timeout,
        Code::Unavailable | Code::Unknown | Code::Cancelled => connection_failure(&status),
        _ => PeerError::Remote {
            reason: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

/// Whether the call failed before its request could leave this node (nothing
/// applied) or perhaps after (maybe applied), judged by the errors' types, never
/// their text. Only tonic's `ConnectError` proves the former: a channel hands a
/// request to a connection only once connecting succeeded, so a call that got
/// a connect error (refused, DNS, the connect timeout) wrote nothing. Anything
/// else may come after the request was written, even when it reads "timed out"
/// (an unanswered keep-alive ping on a connection whose replies are lost) or
/// "No route to host" (on an established connection); a failed HTTP/2
/// handshake also counts here, which is cautious: it only costs a certain
/// answer.
fn connection_failure(status: &Status) -> PeerError {
    let chain = || std::iter::successors(std::error::Error::source(status), |error| error.source());
    let reason = || {
        let causes = chain().map(|error| error.to_string());
        let texts: Vec<String> = std::iter::once(status.message().to_string())
            .chain(causes)
            .collect();
        short(&texts.join(": "))
    };
    // The connect error and its causes; none when connecting succeeded.
    let mut connecting = chain()
        .skip_while(|error| !error.is::<tonic::ConnectError>())
        .peekable();
    if connecting.peek().is_none() {
        return PeerError::ConnectionLost { reason: reason() };
    }
    let refused = connecting.any(|error| {
        error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    if refused {
        PeerError::ConnectionRefused
    } else {
        PeerError::Unreachable { reason: reason() }
    }
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}
