//! How the gRPC peer client sorts real transport failures: only a failure that
//! proves a request never left this node (no connection could be made) may
//! count as "not applied"; every failure after its bytes reached the peer
//! (a keep-alive expiry, a reset, a close, garbage, GOAWAY, a stream reset)
//! must count as "maybe applied", or the coordinator reports a write as not
//! applied, or stamps it anew, while a replica holds it.
//!
//! The errors are the real ones tonic, hyper and h2 produce: the calls go
//! through `GrpcTransport` to loopback sockets this file controls (a fake
//! HTTP/2 peer that reads the request and then misbehaves, a port nobody
//! listens on, a listener whose accept queue is full), and, end to end, from a
//! real node to its peer behind a proxy that loses the peer's replies.

mod support;

use bytes::Bytes;
use quorum_cache::clock::{Timestamp, Version};
use quorum_cache::pb::{GetRequest, SetRequest};
use quorum_cache::replica::{ClusterParams, Envelope};
use quorum_cache::ring::NodeId;
use quorum_cache::server::peer_client::{GrpcTransport, KEEP_ALIVE_INTERVAL};
use quorum_cache::store::Record;
use quorum_cache::transport::{PeerError, Transport, WriteRequest};
use std::net::SocketAddr;
use std::time::Duration;
use support::eventually;
use support::nemesis::FaultyCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Long enough that no call here ends by its own deadline before the failure
/// under test reaches it.
const PATIENT: Duration = Duration::from_secs(10);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

/// What the fake peer does once a request's body (a DATA frame) reached it.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Nothing more, not even answering pings: a peer whose replies are lost.
    Silence,
    /// Closes the connection.
    Close,
    /// Resets the connection (RST, through SO_LINGER 0).
    Reset,
    /// Answers with bytes that are not HTTP/2.
    Garbage,
    /// GOAWAY (the request's stream processed), then closes.
    GoAway,
    /// Resets the request's stream.
    ResetStream,
}

/// A frame the fake peer received.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: u8,
    stream: u32,
}

/// A fake HTTP/2 peer on a free loopback port: it speaks just enough HTTP/2
/// (its SETTINGS, acknowledging the caller's) to be sent requests, reports
/// every frame it receives, and misbehaves as told once a request arrived.
struct FakePeer {
    addr: SocketAddr,
    frames: mpsc::UnboundedReceiver<Frame>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePeer {
    async fn start(misbehaviour: Misbehaviour) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            serve(socket, misbehaviour, report).await;
        });
        FakePeer { addr, frames, task }
    }

    /// Waits until a request's body (a DATA frame on a stream) has arrived;
    /// false when the connection ended first.
    async fn request_arrived(&mut self) -> bool {
        while let Some(frame) = self.frames.recv().await {
            if frame.kind == DATA && frame.stream != 0 {
                return true;
            }
        }
        false
    }

    /// Whether a frame of `kind` arrived (among those not yet looked at).
    fn received(&mut self, kind: u8) -> bool {
        std::iter::from_fn(|| self.frames.try_recv().ok()).any(|frame| frame.kind == kind)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, misbehaviour: Misbehaviour, report: mpsc::UnboundedSender<Frame>) {
    let mut preface = [0u8; PREFACE.len()];
    if socket.read_exact(&mut preface).await.is_err() || preface != PREFACE {
        return;
    }
    if socket.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    let mut acted = false;
    loop {
        let mut header = [0u8; 9];
        if socket.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        if socket.read_exact(&mut payload).await.is_err() {
            return;
        }
        let _ = report.send(Frame { kind, stream });
        if kind == SETTINGS
            && flags & ACK == 0
            && socket.write_all(&frame(SETTINGS, ACK, 0, &[])).await.is_err()
        {
            return;
        }
        if kind != DATA || stream == 0 || acted {
            continue;
        }
        acted = true;
        let _ = match misbehaviour {
            Misbehaviour::Silence => Ok(()),
            Misbehaviour::Close => return,
            Misbehaviour::Reset => {
                let _ = socket.set_zero_linger();
                return;
            }
            Misbehaviour::Garbage => socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await,
            Misbehaviour::GoAway => {
                let payload = [stream.to_be_bytes(), 0u32.to_be_bytes()].concat();
                let _ = socket.write_all(&frame(GOAWAY, 0, 0, &payload)).await;
                return;
            }
            Misbehaviour::ResetStream => {
                socket
                    .write_all(&frame(RST_STREAM, 0, stream, &REFUSED_STREAM.to_be_bytes()))
                    .await
            }
        };
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn node(addr: SocketAddr) -> NodeId {
    addr.to_string().into()
}

fn transport(peer: &NodeId, rpc_timeout: Duration) -> GrpcTransport {
    GrpcTransport::new(std::slice::from_ref(peer), None, rpc_timeout, 1 << 20).unwrap()
}

fn envelope(to: &NodeId) -> Envelope {
    Envelope {
        from: "127.0.0.1:1".into(),
        to: to.clone(),
        clock: Timestamp {
            physical_ms: 1,
            logical: 0,
        },
        params: ClusterParams {
            replication_factor: 3,
            vnodes: 16,
            hash: "xxh3".into(),
            members_hash: 1,
        },
    }
}

fn write(to: &NodeId) -> WriteRequest {
    let version = Version {
        at: Timestamp {
            physical_ms: 1,
            logical: 0,
        },
        node: 1,
    };
    let record = Record {
        version,
        value: Some(Bytes::from_static(b"value")),
        expires_at_ms: u64::MAX,
    };
    WriteRequest {
        envelope: envelope(to),
        key: Bytes::from_static(b"key"),
        record,
    }
}

/// A write sent on the peer's batch stream, failed by `misbehaviour` after its
/// body reached the peer: the error must say it may have been applied.
async fn write_failed_after_it_left(misbehaviour: Misbehaviour) {
    let mut peer = FakePeer::start(misbehaviour).await;
    let to = node(peer.addr);
    let transport = transport(&to, PATIENT);
    let outcome = tokio::spawn(transport.write(&to, write(&to)));
    assert!(
        peer.request_arrived().await,
        "{misbehaviour:?}: the write's body never reached the peer"
    );
    let error = outcome
        .await
        .unwrap()
        .expect_err("the peer never answered, yet the write succeeded");
    assert!(
        error.may_have_applied(),
        "{misbehaviour:?}: the write reached the peer, yet {error:?} says not applied"
    );
    assert_ne!(
        error,
        PeerError::Timeout,
        "{misbehaviour:?}: the failure itself must end the call, not its deadline"
    );
}

#[tokio::test]
async fn a_write_that_reached_the_peer_may_have_been_applied_however_the_connection_fails() {
    let misbehaviours = [
        Misbehaviour::Close,
        Misbehaviour::Reset,
        Misbehaviour::Garbage,
        Misbehaviour::GoAway,
        Misbehaviour::ResetStream,
    ];
    for misbehaviour in misbehaviours {
        write_failed_after_it_left(misbehaviour).await;
    }
}

/// The keep-alive expiry on a connection whose replies are lost: the call
/// has no deadline of its own here (a handshake's is its caller's), so only
/// the keep-alive can end it, a ping interval plus RPC_TIMEOUT after the
/// peer last spoke.
#[tokio::test]
async fn a_keep_alive_expiry_after_the_request_left_may_have_applied_it_and_marks_the_peer_down() {
    let mut peer = FakePeer::start(Misbehaviour::Silence).await;
    let to = node(peer.addr);
    let transport = transport(&to, Duration::from_millis(300));
    let outcome = tokio::spawn(transport.handshake(&to, envelope(&to)));
    assert!(
        peer.request_arrived().await,
        "the handshake never reached the peer"
    );
    let error = outcome
        .await
        .unwrap()
        .expect_err("the peer never answered, yet the handshake succeeded");
    assert!(
        peer.received(PING),
        "the call ended before any keep-alive ping: {error:?}"
    );
    assert!(
        matches!(&error, PeerError::ConnectionLost { reason } if reason.contains("keep-alive")),
        "a keep-alive expiry after the request left must be a lost connection (maybe applied): {error:?}"
    );
    assert!(error.may_have_applied() && error.means_down(), "{error:?}");
}

#[tokio::test]
async fn a_refused_connection_proves_nothing_was_sent() {
    // Bound but not listening: the port stays this test's, and connecting to
    // it is refused.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = node(socket.local_addr().unwrap());
    let transport = transport(&to, PATIENT);
    let written = transport
        .write(&to, write(&to))
        .await
        .expect_err("nobody listens, yet the write succeeded");
    let handshaken = transport
        .handshake(&to, envelope(&to))
        .await
        .expect_err("nobody listens, yet it answered");
    for error in [written, handshaken] {
        assert_eq!(error, PeerError::ConnectionRefused);
        assert!(!error.may_have_applied() && error.means_down(), "{error:?}");
    }
}

#[tokio::test]
async fn a_connect_timeout_proves_nothing_was_sent() {
    // A listener that never accepts, its queue filled by one connection: the
    // kernel drops the next SYN, so connecting times out, all on loopback.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _queued = TcpStream::connect(addr).await.unwrap();
    let to = node(addr);
    let transport = transport(&to, Duration::from_millis(200));
    let error = transport
        .handshake(&to, envelope(&to))
        .await
        .expect_err("nothing accepts, yet it answered");
    assert!(
        matches!(error, PeerError::Unreachable { .. }),
        "a connect timeout must be unreachable: {error:?}"
    );
    assert!(!error.may_have_applied() && error.means_down(), "{error:?}");
}

/// End to end: node 0's writes reach node 1 and are applied there, but node
/// 1's replies are lost. Node 0 has talked to node 1 only by handshakes (it
/// was restarted), so the write opens node 0's batch stream to node 1, whose
/// answer never comes. Once the connection has been silent for a ping
/// interval, the keep-alive ping goes unanswered and expires before the
/// write's own RPC_TIMEOUT: that expiry must not make the write "not applied"
/// (nor stamp a fresh version of it), since node 1 holds it.
#[tokio::test]
async fn a_write_applied_by_a_peer_whose_replies_are_lost_is_never_reported_as_not_applied() {
    let rpc_timeout = Duration::from_secs(3);
    let mut cluster = FaultyCluster::start(23, 2, &[("RPC_TIMEOUT", "3")], |_| Vec::new()).await;
    cluster.kill(0);
    cluster.restart(0).await;
    // Ready once its handshake with node 1 succeeded (2 of 2 members up).
    let metrics = cluster.metrics[0].clone();
    eventually(Duration::from_secs(20), "node 0 has handshaken node 1", || {
        let metrics = metrics.clone();
        async move { support::http_get(&metrics, "/readyz").is_ok_and(|(status, _)| status == 200) }
    })
    .await;
    let mut client = cluster.nodes[0].client().await;
    cluster.cut_one_way(1, 0);
    // Nothing outside node 0 shows when its ping leaves: at most a ping
    // interval after node 1 last spoke, which was before the cut. The margin
    // keeps the write after the ping, and before anything sent since the cut
    // could time out and mark node 1 down.
    let margin = rpc_timeout.saturating_sub(KEEP_ALIVE_INTERVAL) / 2;
    tokio::time::sleep(KEEP_ALIVE_INTERVAL + margin).await;
    let request = SetRequest {
        key: "lost-reply".into(),
        value: "stored-on-node-1".into(),
        ttl_seconds: Some(60),
    };
    let status = client
        .set(request)
        .await
        .expect_err("node 1's replies are lost, yet the write was acknowledged");
    let outcome = status
        .metadata()
        .get("qc-outcome")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        status.message().contains("keep-alive"),
        "the write did not fail by the keep-alive expiry: {status:?}"
    );
    cluster.heal();
    let reader = cluster.nodes[1].client().await;
    let found = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    eventually(
        Duration::from_secs(20),
        "a Get through node 1 answers after the heal",
        || {
            let (mut reader, found) = (reader.clone(), found.clone());
            async move {
                let answer = reader
                    .get(GetRequest {
                        key: "lost-reply".into(),
                    })
                    .await;
                answer
                    .map(|response| *found.lock().unwrap() = response.into_inner().value)
                    .is_ok()
            }
        },
    )
    .await;
    let found = found.lock().unwrap().clone();
    assert_eq!(
        found, "stored-on-node-1",
        "node 1 applied the write: its value must be readable"
    );
    assert_eq!(
        outcome, "unknown",
        "the write's value is stored and readable, yet its failure said qc-outcome {outcome:?}: {status:?}"
    );
}
