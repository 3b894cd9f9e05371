//! The batcher against an in-process peer on a real socket that misbehaves on
//! purpose: silent, or ending its stream. Each failure reaches the caller as the
//! right `PeerError`, and the next call gets a new stream.

use super::*;
use crate::peer_pb::peer_service_server::{PeerService, PeerServiceServer};
use crate::peer_pb::{
    BatchResult, HandshakeRequest, HandshakeResponse, ReadRequest, ReadResponse, WriteRequest, batch_result,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::{Request, Response, Streaming};

/// How the fake peer treats a batch whose first item reads this key.
const SILENT: &[u8] = b"silent";
const END: &[u8] = b"end";

#[derive(Default)]
struct FakePeer {
    streams_opened: Arc<AtomicUsize>,
    /// Every batch received, in order.
    received: Arc<parking_lot::Mutex<Vec<BatchRequest>>>,
}

#[tonic::async_trait]
impl PeerService for FakePeer {
    type BatchStreamStream = BoxStream<'static, Result<BatchResponse, Status>>;

    async fn handshake(&self, _: Request<HandshakeRequest>) -> Result<Response<HandshakeResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn read(&self, _: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn write(&self, _: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn batch(&self, _: Request<BatchRequest>) -> Result<Response<BatchResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    /// Answers each batch with one empty answer per item, in order, except that
    /// a batch led by a read of `SILENT` stalls the stream for good and one led
    /// by `END` ends it.
    async fn batch_stream(
        &self,
        request: Request<Streaming<BatchRequest>>,
    ) -> Result<Response<Self::BatchStreamStream>, Status> {
        self.streams_opened.fetch_add(1, Ordering::SeqCst);
        let received = self.received.clone();
        let answers = request
            .into_inner()
            .take_while(|batch| std::future::ready(!matches!(batch, Ok(batch) if leading_key(batch) == END)))
            .inspect(move |batch| {
                if let Ok(batch) = batch {
                    received.lock().push(batch.clone());
                }
            })
            .then(|batch| async move {
                match batch {
                    Ok(batch) if leading_key(&batch) == SILENT => std::future::pending().await,
                    Ok(batch) => Ok(answer_each(&batch)),
                    Err(status) => Err(status),
                }
            });
        Ok(Response::new(answers.boxed()))
    }
}

fn leading_key(batch: &BatchRequest) -> &[u8] {
    match batch.items.first().and_then(|item| item.call.as_ref()) {
        Some(batch_item::Call::Read(read)) => &read.key,
        _ => b"",
    }
}

fn answer_each(batch: &BatchRequest) -> BatchResponse {
    let answer = || BatchResult {
        outcome: Some(batch_result::Outcome::Held(WriteResponse::default())),
    };
    BatchResponse {
        results: batch.items.iter().map(|_| answer()).collect(),
    }
}

fn read(key: &[u8]) -> batch_item::Call {
    batch_item::Call::Read(ReadRequest {
        envelope: None,
        key: key.to_vec().into(),
        digest: true,
    })
}

fn remote(status: Status) -> PeerError {
    PeerError::Remote {
        reason: status.message().to_string(),
    }
}

/// A fake peer on a free port, and a batcher to it with `rpc_timeout`.
async fn batcher_to_fake_peer(rpc_timeout: Duration) -> (PeerBatcher, Arc<AtomicUsize>) {
    let (batcher, peer) = batcher_and_fake_peer(rpc_timeout).await;
    (batcher, peer.streams_opened)
}

async fn batcher_and_fake_peer(rpc_timeout: Duration) -> (PeerBatcher, FakePeer) {
    let peer = FakePeer::default();
    let seen = FakePeer {
        streams_opened: peer.streams_opened.clone(),
        received: peer.received.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServiceServer::new(peer))
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    (
        PeerBatcher::spawn(PeerServiceClient::new(channel), rpc_timeout, remote),
        seen,
    )
}

#[tokio::test]
async fn calls_queued_together_travel_as_one_batch_under_their_newest_envelope() {
    let (batcher, peer) = batcher_and_fake_peer(Duration::from_secs(30)).await;
    // Queued before the sender task runs, so that they share a batch.
    let calls = [10, 30, 20].map(|physical_ms| batcher.call(envelope_to("b:1", physical_ms), read(b"k")));
    let elsewhere = batcher.call(envelope_to("c:1", 5), read(b"k"));
    let (answers, elsewhere) = tokio::join!(futures::future::join_all(calls), elsewhere);
    assert!(
        answers.iter().all(Result::is_ok) && elsewhere.is_ok(),
        "{answers:?} {elsewhere:?}"
    );
    let received = peer.received.lock().clone();
    assert_eq!(received.len(), 1, "one batch: {received:?}");
    let shared = received[0]
        .envelope
        .as_ref()
        .expect("the batch carries an envelope");
    assert_eq!(
        (shared.to.as_str(), shared.clock.map(|clock| clock.physical_ms)),
        ("b:1", Some(30)),
        "the newest"
    );
    let own: Vec<Option<String>> = received[0]
        .items
        .iter()
        .map(|item| match &item.call {
            Some(batch_item::Call::Read(read)) => read.envelope.as_ref().map(|own| own.to.clone()),
            other => panic!("not a read: {other:?}"),
        })
        .collect();
    assert_eq!(
        own,
        vec![None, None, None, Some("c:1".to_string())],
        "only the item addressed elsewhere keeps its own"
    );
}

#[tokio::test]
async fn a_silent_stream_times_out_every_batch_it_holds_and_the_next_call_opens_a_new_one() {
    let (batcher, streams_opened) = batcher_to_fake_peer(Duration::from_millis(300)).await;
    assert!(
        batcher.call(envelope_to("b:1", 10), read(b"k")).await.is_ok(),
        "the positive control is answered"
    );
    let silent = batcher.call(envelope_to("b:1", 10), read(SILENT));
    // Sent on the same stream behind the silent batch: fails with it.
    let behind = async {
        tokio::task::yield_now().await;
        batcher.call(envelope_to("b:1", 10), read(b"behind")).await
    };
    let (silent, behind) = tokio::join!(silent, behind);
    assert!(matches!(silent, Err(PeerError::Timeout)), "{silent:?}");
    assert!(matches!(behind, Err(PeerError::Timeout)), "{behind:?}");
    assert_eq!(streams_opened.load(Ordering::SeqCst), 1);
    assert!(
        batcher.call(envelope_to("b:1", 10), read(b"after")).await.is_ok(),
        "a new stream answers"
    );
    assert_eq!(streams_opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stream_the_peer_ends_fails_its_batches_as_maybe_applied_and_the_next_call_opens_a_new_one() {
    let (batcher, streams_opened) = batcher_to_fake_peer(Duration::from_secs(30)).await;
    assert!(
        batcher.call(envelope_to("b:1", 10), read(b"k")).await.is_ok(),
        "the positive control is answered"
    );
    let ended = batcher.call(envelope_to("b:1", 10), read(END)).await;
    assert!(
        matches!(&ended, Err(PeerError::ConnectionLost { reason }) if reason.contains("ended the batch stream")),
        "{ended:?}"
    );
    assert!(
        batcher.call(envelope_to("b:1", 10), read(b"after")).await.is_ok(),
        "a new stream answers"
    );
    assert_eq!(streams_opened.load(Ordering::SeqCst), 2);
}

fn envelope_to(to: &str, physical_ms: u64) -> Envelope {
    Envelope {
        from: "a:1".into(),
        to: to.into(),
        clock: crate::clock::Timestamp {
            physical_ms,
            logical: 0,
        },
        params: crate::replica::ClusterParams {
            replication_factor: 3,
            vnodes: 8,
            hash: "xxh3".into(),
            members_hash: 1,
        },
    }
}

#[test]
fn an_item_sharing_the_batch_envelope_but_for_an_older_clock_goes_without_and_one_addressed_elsewhere_keeps_its_own()
 {
    let shared = envelope_to("b:1", 30);
    assert_eq!(own_envelope(envelope_to("b:1", 10), &shared), None);
    assert_eq!(own_envelope(envelope_to("b:1", 30), &shared), None);
    let elsewhere =
        own_envelope(envelope_to("c:1", 10), &shared).expect("an item addressed elsewhere keeps its own");
    assert_eq!(
        (
            elsewhere.to.as_str(),
            elsewhere.clock.map(|clock| clock.physical_ms)
        ),
        ("c:1", Some(10))
    );
    let mut other_params = envelope_to("b:1", 10);
    other_params.params.members_hash = 2;
    assert!(
        own_envelope(other_params, &shared).is_some(),
        "other cluster parameters are not the batch's"
    );
}

#[test]
fn an_item_is_sent_with_the_envelope_it_was_given_or_none() {
    let envelope_of = |call: batch_item::Call| match call {
        batch_item::Call::Read(read) => read.envelope,
        batch_item::Call::Write(write) => write.envelope,
    };
    let own = Some(crate::peer_pb::Envelope::from(envelope_to("c:1", 5)));
    assert_eq!(envelope_of(with_envelope(read(b"k"), own.clone())), own);
    let enveloped = batch_item::Call::Read(ReadRequest {
        envelope: own.clone(),
        key: b"k".to_vec().into(),
        digest: true,
    });
    assert_eq!(
        envelope_of(with_envelope(enveloped, None)),
        None,
        "an item sharing the batch's sends none"
    );
}
