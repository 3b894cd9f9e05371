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
        let answers = request
            .into_inner()
            .take_while(|batch| std::future::ready(!matches!(batch, Ok(batch) if leading_key(batch) == END)))
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
    let answer = || BatchResult { outcome: Some(batch_result::Outcome::Held(WriteResponse::default())) };
    BatchResponse { results: batch.items.iter().map(|_| answer()).collect() }
}

fn read(key: &[u8]) -> batch_item::Call {
    batch_item::Call::Read(ReadRequest { envelope: None, key: key.to_vec().into(), digest: true })
}

fn remote(status: Status) -> PeerError {
    PeerError::Remote { reason: status.message().to_string() }
}

/// A fake peer on a free port, and a batcher to it with `rpc_timeout`.
async fn batcher_to_fake_peer(rpc_timeout: Duration) -> (PeerBatcher, Arc<AtomicUsize>) {
    let peer = FakePeer::default();
    let streams_opened = peer.streams_opened.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(PeerServiceServer::new(peer)).serve_with_incoming(incoming));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    (PeerBatcher::spawn(PeerServiceClient::new(channel), rpc_timeout, remote), streams_opened)
}

#[tokio::test]
async fn a_silent_stream_times_out_every_batch_it_holds_and_the_next_call_opens_a_new_one() {
    let (batcher, streams_opened) = batcher_to_fake_peer(Duration::from_millis(300)).await;
    assert!(batcher.call(read(b"k")).await.is_ok(), "the positive control is answered");
    let silent = batcher.call(read(SILENT));
    // Sent on the same stream behind the silent batch: fails with it.
    let behind = async {
        tokio::task::yield_now().await;
        batcher.call(read(b"behind")).await
    };
    let (silent, behind) = tokio::join!(silent, behind);
    assert!(matches!(silent, Err(PeerError::Timeout)), "{silent:?}");
    assert!(matches!(behind, Err(PeerError::Timeout)), "{behind:?}");
    assert_eq!(streams_opened.load(Ordering::SeqCst), 1);
    assert!(batcher.call(read(b"after")).await.is_ok(), "a new stream answers");
    assert_eq!(streams_opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stream_the_peer_ends_fails_its_batches_as_maybe_applied_and_the_next_call_opens_a_new_one() {
    let (batcher, streams_opened) = batcher_to_fake_peer(Duration::from_secs(30)).await;
    assert!(batcher.call(read(b"k")).await.is_ok(), "the positive control is answered");
    let ended = batcher.call(read(END)).await;
    assert!(
        matches!(&ended, Err(PeerError::ConnectionLost { reason }) if reason.contains("ended the batch stream")),
        "{ended:?}"
    );
    assert!(batcher.call(read(b"after")).await.is_ok(), "a new stream answers");
    assert_eq!(streams_opened.load(Ordering::SeqCst), 2);
}

fn read_with(key: &[u8], to: &str, physical_ms: u64) -> BatchItem {
    let envelope = Envelope {
        from: "a:1".into(),
        to: to.into(),
        clock: Some(crate::peer_pb::Timestamp { physical_ms, logical: 0 }),
        params: Some(crate::peer_pb::ClusterParams { replication_factor: 3, vnodes: 8, hash: "xxh3".into(), members_hash: 1 }),
    };
    BatchItem { call: Some(batch_item::Call::Read(ReadRequest { envelope: Some(envelope), key: key.to_vec().into(), digest: true })) }
}

#[test]
fn a_batch_carries_its_newest_envelope_once_and_an_item_addressed_elsewhere_keeps_its_own() {
    let mut items = vec![read_with(b"x", "b:1", 10), read_with(b"y", "b:1", 30), read_with(b"z", "c:1", 50), read_with(b"w", "b:1", 20)];
    let shared = share_envelope(&mut items).expect("a batch of enveloped items shares one");
    // The newest clock overall (50) belongs to the odd item: whatever is kept is
    // the newest, and only items equal to it apart from the clock give theirs up.
    assert_eq!(shared.clock.map(|clock| clock.physical_ms), Some(50));
    assert_eq!(shared.to, "c:1");
    let kept: Vec<Option<String>> = items.iter().map(|item| item_envelope(item).map(|own| own.to.clone())).collect();
    assert_eq!(kept, vec![Some("b:1".into()), Some("b:1".into()), None, Some("b:1".into())]);

    let mut same_peer = vec![read_with(b"x", "b:1", 10), read_with(b"y", "b:1", 30)];
    let shared = share_envelope(&mut same_peer).unwrap();
    assert_eq!(shared.clock.map(|clock| clock.physical_ms), Some(30), "the newest clock is sent");
    assert!(same_peer.iter().all(|item| item_envelope(item).is_none()), "no item repeats it");
    assert!(share_envelope(&mut [BatchItem { call: Some(read(b"k")) }]).is_none(), "nothing to share");
}
