//! The node-to-node protocol of a real node, fed bad messages: each gets a
//! precise status and changes nothing; a good message is the positive control.

mod support;

use quorum_cache::peer_pb::peer_service_client::PeerServiceClient;
use quorum_cache::peer_pb::{
    self, ClusterParams, Envelope, ReadRequest, Timestamp, Version, WriteRequest, held,
};
use quorum_cache::ring::{HASH_NAME, Ring};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use support::{Node, eventually, free_port};
use tonic::Code;
use tonic::transport::Channel;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

struct Target {
    node: Node,
    client: PeerServiceClient<Channel>,
}

impl Target {
    async fn start() -> Target {
        let addr = format!("127.0.0.1:{}", free_port());
        let node = Node::spawn(&[("ADDR", &addr), ("MAX_KEY_SIZE", "8"), ("MAX_VALUE_SIZE", "16")]);
        node.wait_serving().await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.endpoint()))
            .unwrap()
            .connect_lazy();
        Target {
            node,
            client: PeerServiceClient::new(channel),
        }
    }

    fn envelope(&self) -> Envelope {
        let ring = Ring::new(&[self.node.addr.as_str().into()], 128, 3);
        Envelope {
            from: "tester:1".into(),
            to: self.node.addr.clone(),
            clock: Some(Timestamp {
                physical_ms: now_ms(),
                logical: 0,
            }),
            params: Some(ClusterParams {
                replication_factor: 3,
                vnodes: 128,
                hash: HASH_NAME.into(),
                members_hash: ring.members_hash(),
            }),
        }
    }

    fn write(&self, key: &str, value: &str) -> WriteRequest {
        WriteRequest {
            envelope: Some(self.envelope()),
            key: key.as_bytes().to_vec().into(),
            version: Some(Version {
                physical_ms: now_ms(),
                logical: 0,
                node: 1,
            }),
            value: Some(value.as_bytes().to_vec().into()),
            expires_at_ms: now_ms() + 60_000,
        }
    }

    async fn held(&self, key: &str) -> held::State {
        let request = ReadRequest {
            envelope: Some(self.envelope()),
            key: key.as_bytes().to_vec().into(),
            digest: false,
        };
        self.client
            .clone()
            .read(request)
            .await
            .unwrap()
            .into_inner()
            .held
            .unwrap()
            .state
            .unwrap()
    }

    async fn holds(&self, key: &str) -> bool {
        matches!(self.held(key).await, held::State::Live(_))
    }
}

fn expect(
    outcome: Result<tonic::Response<peer_pb::WriteResponse>, tonic::Status>,
    code: Code,
    message: &str,
) -> tonic::Status {
    let status = outcome.expect_err("a bad message was accepted");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(message),
        "expected {message:?} in {:?}",
        status.message()
    );
    status
}

#[tokio::test]
async fn bad_peer_messages_are_refused_precisely_and_change_nothing() {
    let target = Target::start().await;
    let mut client = target.client.clone();

    let no_envelope = WriteRequest {
        envelope: None,
        ..target.write("k", "v")
    };
    expect(
        client.write(no_envelope).await,
        Code::InvalidArgument,
        "envelope is missing",
    );
    let no_clock = WriteRequest {
        envelope: Some(Envelope {
            clock: None,
            ..target.envelope()
        }),
        ..target.write("k", "v")
    };
    expect(
        client.write(no_clock).await,
        Code::InvalidArgument,
        "envelope.clock is missing",
    );
    expect(
        client.write(target.write("", "v")).await,
        Code::InvalidArgument,
        "key must not be empty",
    );
    expect(
        client.write(target.write("123456789", "v")).await,
        Code::InvalidArgument,
        "MAX_KEY_SIZE (8 bytes)",
    );
    expect(
        client.write(target.write("k", "12345678901234567")).await,
        Code::ResourceExhausted,
        "MAX_VALUE_SIZE",
    );
    let no_version = WriteRequest {
        version: None,
        ..target.write("k", "v")
    };
    expect(
        client.write(no_version).await,
        Code::InvalidArgument,
        "version is missing",
    );

    let misnamed = WriteRequest {
        envelope: Some(Envelope {
            to: "elsewhere:8080".into(),
            ..target.envelope()
        }),
        ..target.write("k", "v")
    };
    let status = expect(
        client.write(misnamed).await,
        Code::FailedPrecondition,
        "called this node \"elsewhere:8080\"",
    );
    assert!(status.message().contains(&target.node.addr));
    let mut params = target.envelope().params.unwrap();
    params.vnodes = 7;
    let mismatched = WriteRequest {
        envelope: Some(Envelope {
            params: Some(params),
            ..target.envelope()
        }),
        ..target.write("k", "v")
    };
    expect(
        client.write(mismatched).await,
        Code::FailedPrecondition,
        "VNODES=7",
    );
    let future = Envelope {
        clock: Some(Timestamp {
            physical_ms: now_ms() + 60_000,
            logical: 0,
        }),
        ..target.envelope()
    };
    let ahead = WriteRequest {
        envelope: Some(future),
        ..target.write("k", "v")
    };
    let status = expect(
        client.write(ahead).await,
        Code::FailedPrecondition,
        "MAX_CLOCK_SKEW",
    );
    assert_eq!(status.metadata().get("qc-refusal").unwrap(), "clock-ahead");

    let no_key_read = ReadRequest {
        envelope: Some(target.envelope()),
        key: Vec::new().into(),
        digest: true,
    };
    let status = client.read(no_key_read).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert!(!target.holds("k").await, "a refused message changed the store");
    // As a coordinator does: learn the replica's watermark, write above it.
    let held::State::Nothing(nothing) = target.held("k").await else {
        panic!("k must be absent")
    };
    let watermark = nothing.watermark.unwrap();
    let above = Version {
        logical: watermark.logical + 1,
        ..watermark
    };
    client
        .write(WriteRequest {
            version: Some(above),
            ..target.write("k", "v")
        })
        .await
        .expect("a good message is applied");
    assert!(target.holds("k").await, "the positive control");
    // Log lines leave through an asynchronous drain: wait for the line, do not
    // expect it to be written by the time the call is answered.
    let refusal_line = || {
        let log = target.node.log();
        log.lines()
            .find(|line| line.contains("refused a peer message") && line.contains("MAX_CLOCK_SKEW"))
            .map(String::from)
    };
    eventually(Duration::from_secs(10), "the clock refusal is logged", || {
        std::future::ready(refusal_line().is_some())
    })
    .await;
    let line = refusal_line().unwrap();
    assert!(
        line.contains("ahead of local clock"),
        "both clocks are named: {line}"
    );
}

/// A batch answers each item as its single call would: bad items fail on their
/// own, precisely, and the good items beside them are applied. A batch over the
/// item limit is refused whole and applies nothing.
#[tokio::test]
async fn bad_items_in_a_batch_fail_alone_and_an_oversized_batch_changes_nothing() {
    use peer_pb::{BatchItem, BatchRequest, batch_item, batch_result};
    let target = Target::start().await;
    let mut client = target.client.clone();
    let watermark = |held: held::State| match held {
        held::State::Nothing(nothing) => nothing.watermark.unwrap(),
        other => panic!("expected nothing held, got {other:?}"),
    };
    let floor = watermark(target.held("a").await);
    let above = Version {
        logical: floor.logical + 1,
        ..floor
    };
    let write = |key: &str, value: &str| {
        batch_item::Call::Write(WriteRequest {
            version: Some(above),
            ..target.write(key, value)
        })
    };
    let future = Envelope {
        clock: Some(Timestamp {
            physical_ms: now_ms() + 60_000,
            logical: 0,
        }),
        ..target.envelope()
    };
    let items = vec![
        write("a", "good"),
        write("123456789", "v"),
        batch_item::Call::Write(WriteRequest {
            envelope: Some(future),
            ..target.write("b", "v")
        }),
        batch_item::Call::Read(ReadRequest {
            envelope: None,
            key: b"a".to_vec().into(),
            digest: true,
        }),
        write("c", "12345678901234567"),
        write("d", "good"),
    ];
    let oversized = BatchRequest {
        items: (0..1025)
            .map(|_| BatchItem {
                call: Some(write("e", "v")),
            })
            .collect(),
        envelope: None,
    };
    let mut request = BatchRequest {
        items: items
            .into_iter()
            .map(|call| BatchItem { call: Some(call) })
            .collect(),
        envelope: None,
    };
    request.items.push(BatchItem { call: None });
    let results = client
        .batch(request)
        .await
        .expect("a batch with bad items is still answered")
        .into_inner()
        .results;
    let outcomes: Vec<_> = results
        .into_iter()
        .map(|result| result.outcome.expect("every item has an outcome"))
        .collect();
    let failure = |index: usize| match &outcomes[index] {
        batch_result::Outcome::Failure(failure) => (
            Code::from(failure.code),
            failure.message.clone(),
            failure.refusal.clone(),
        ),
        held => panic!("item {index} was accepted: {held:?}"),
    };
    assert_eq!(outcomes.len(), 7);
    assert!(
        matches!(&outcomes[0], batch_result::Outcome::Held(_)),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[5], batch_result::Outcome::Held(_)),
        "{:?}",
        outcomes[5]
    );
    let (code, message, _) = failure(1);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("MAX_KEY_SIZE (8 bytes)"), "{message}");
    let (code, message, refusal) = failure(2);
    assert_eq!(
        (code, refusal.as_str()),
        (Code::FailedPrecondition, "clock-ahead")
    );
    assert!(message.contains("MAX_CLOCK_SKEW"), "{message}");
    let (code, message, _) = failure(3);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("envelope is missing"), "{message}");
    let (code, message, _) = failure(4);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(message.contains("MAX_VALUE_SIZE"), "{message}");
    let (code, message, _) = failure(6);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("neither a read nor a write"), "{message}");
    assert!(
        target.holds("a").await && target.holds("d").await,
        "the good items were applied"
    );
    assert!(
        !target.holds("b").await && !target.holds("c").await,
        "the refused items changed nothing"
    );

    let status = client
        .batch(oversized)
        .await
        .expect_err("an oversized batch is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("at most 1024 items, got 1025"),
        "{}",
        status.message()
    );
    assert!(!target.holds("e").await, "the oversized batch changed nothing");
}

/// A batch's own envelope stands in for the items that carry none: a good one
/// serves them, a bad one (misaddressed, or missing its clock) fails exactly
/// those items with the refusal their single call would get and changes
/// nothing, while an item with a good envelope of its own is still served.
#[tokio::test]
async fn a_batch_envelope_checks_the_items_without_one_and_a_bad_one_fails_only_them() {
    use peer_pb::{BatchItem, BatchRequest, batch_item, batch_result};
    let target = Target::start().await;
    let client = target.client.clone();
    let held::State::Nothing(nothing) = target.held("a").await else {
        panic!("a must be absent")
    };
    let floor = nothing.watermark.unwrap();
    let above = Version {
        logical: floor.logical + 1,
        ..floor
    };
    let write = |key: &str, own: Option<Envelope>| BatchItem {
        call: Some(batch_item::Call::Write(WriteRequest {
            version: Some(above),
            envelope: own,
            ..target.write(key, "v")
        })),
    };
    let outcomes = |request: BatchRequest| {
        let mut client = client.clone();
        async move {
            let results = client
                .batch(request)
                .await
                .expect("the batch is answered")
                .into_inner()
                .results;
            results
                .into_iter()
                .map(|result| result.outcome.expect("every item has an outcome"))
                .collect::<Vec<_>>()
        }
    };
    let failure = |outcome: &batch_result::Outcome| match outcome {
        batch_result::Outcome::Failure(failure) => (Code::from(failure.code), failure.message.clone()),
        held => panic!("a bad item was accepted: {held:?}"),
    };

    let good = BatchRequest {
        items: vec![write("a", None), write("b", Some(target.envelope()))],
        envelope: Some(target.envelope()),
    };
    let served = outcomes(good).await;
    assert!(
        served
            .iter()
            .all(|outcome| matches!(outcome, batch_result::Outcome::Held(_))),
        "{served:?}"
    );
    assert!(
        target.holds("a").await && target.holds("b").await,
        "the batch envelope served both items"
    );

    let misaddressed = Envelope {
        to: "elsewhere:8080".into(),
        ..target.envelope()
    };
    let request = BatchRequest {
        items: vec![write("c", None), write("d", Some(target.envelope()))],
        envelope: Some(misaddressed),
    };
    let answered = outcomes(request).await;
    let (code, message) = failure(&answered[0]);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.contains("called this node \"elsewhere:8080\""),
        "{message}"
    );
    assert!(
        matches!(&answered[1], batch_result::Outcome::Held(_)),
        "the item's own envelope is used: {:?}",
        answered[1]
    );

    let clockless = Envelope {
        clock: None,
        ..target.envelope()
    };
    let answered = outcomes(BatchRequest {
        items: vec![write("e", None)],
        envelope: Some(clockless),
    })
    .await;
    let (code, message) = failure(&answered[0]);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("envelope.clock is missing"), "{message}");

    assert!(target.holds("d").await, "the positive control");
    assert!(
        !target.holds("c").await && !target.holds("e").await,
        "items failed by their batch's envelope changed nothing"
    );
}

/// A `BatchStream` answers each batch as `Batch` would, in the order sent; a
/// batch over the item limit ends the stream with the same refusal and applies
/// nothing; a stopping node ends its open streams cleanly (trailers, not a reset
/// connection), so that its listener can close.
#[tokio::test]
async fn a_batch_stream_answers_in_order_refuses_an_oversized_batch_and_ends_when_the_node_stops() {
    use peer_pb::{BatchItem, BatchRequest, batch_item, batch_result};
    use tokio_stream::wrappers::UnboundedReceiverStream;
    let mut target = Target::start().await;
    let held::State::Nothing(nothing) = target.held("a").await else {
        panic!("a must be absent")
    };
    let floor = nothing.watermark.unwrap();
    let above = Version {
        logical: floor.logical + 1,
        ..floor
    };
    let write = |key: &str, value: &str| BatchItem {
        call: Some(batch_item::Call::Write(WriteRequest {
            version: Some(above),
            ..target.write(key, value)
        })),
    };
    let read = |key: &str| BatchItem {
        call: Some(batch_item::Call::Read(ReadRequest {
            envelope: Some(target.envelope()),
            key: key.as_bytes().to_vec().into(),
            digest: false,
        })),
    };
    let open = |client: &PeerServiceClient<Channel>| {
        let (batches, outgoing) = tokio::sync::mpsc::unbounded_channel::<BatchRequest>();
        let mut client = client.clone();
        let answers = async move { client.batch_stream(UnboundedReceiverStream::new(outgoing)).await };
        (batches, answers)
    };
    let live_value = |result: &peer_pb::BatchResult| match &result.outcome {
        Some(batch_result::Outcome::Held(held)) => {
            match held.held.as_ref().and_then(|held| held.state.as_ref()) {
                Some(held::State::Live(live)) => Some(live.value.to_vec()),
                _ => None,
            }
        }
        other => panic!("expected a held answer, got {other:?}"),
    };

    let (batches, answers) = open(&target.client);
    batches
        .send(BatchRequest {
            items: vec![write("a", "first")],
            envelope: None,
        })
        .unwrap();
    batches
        .send(BatchRequest {
            items: vec![read("a"), write("123456789", "v")],
            envelope: None,
        })
        .unwrap();
    let mut answers = answers.await.expect("the stream opens").into_inner();
    let first = answers
        .message()
        .await
        .unwrap()
        .expect("the first batch is answered");
    assert_eq!(first.results.len(), 1);
    assert!(
        live_value(&first.results[0]).is_some(),
        "the write is applied: {first:?}"
    );
    let second = answers
        .message()
        .await
        .unwrap()
        .expect("the second batch is answered");
    assert_eq!(
        live_value(&second.results[0]).as_deref(),
        Some(&b"first"[..]),
        "answered after the first batch"
    );
    let Some(batch_result::Outcome::Failure(failure)) = &second.results[1].outcome else {
        panic!("the bad item fails alone: {:?}", second.results[1]);
    };
    assert_eq!(Code::from(failure.code), Code::InvalidArgument);
    assert!(
        failure.message.contains("MAX_KEY_SIZE (8 bytes)"),
        "{}",
        failure.message
    );

    batches
        .send(BatchRequest {
            items: (0..1025).map(|_| write("e", "v")).collect(),
            envelope: None,
        })
        .unwrap();
    let status = answers
        .message()
        .await
        .expect_err("an oversized batch ends the stream");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("at most 1024 items, got 1025"),
        "{}",
        status.message()
    );
    assert!(!target.holds("e").await, "the oversized batch changed nothing");

    let (batches, answers) = open(&target.client);
    batches
        .send(BatchRequest {
            items: vec![read("a")],
            envelope: None,
        })
        .unwrap();
    let mut answers = answers.await.expect("a new stream opens").into_inner();
    assert!(
        answers.message().await.unwrap().is_some(),
        "the new stream answers"
    );
    target.node.signal("TERM");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), answers.message()).await;
    let ended = ended.expect("the stopping node ends the stream");
    assert!(
        matches!(ended, Ok(None)),
        "ended cleanly, not by a dropped connection: {ended:?}"
    );
    assert_eq!(
        target.node.wait_exit(std::time::Duration::from_secs(20)),
        Some(0),
        "{}",
        target.node.log()
    );
    drop(batches);
}

/// A node restarted at once with its clock stepped back by MAX_CLOCK_SKEW
/// still has a watermark above every version it held before: it waits out
/// MAX_CLOCK_SKEW before it builds its store. The write is made right after
/// the first start, when a write is stamped above the node's own restart
/// watermark, so its version is as far ahead as the node may stamp (its wall
/// clock + MAX_CLOCK_SKEW); without the wait the second start's watermark
/// (its stepped-back wall clock + MAX_CLOCK_SKEW) would be below it.
#[tokio::test]
async fn a_restart_with_the_clock_stepped_back_keeps_the_watermark_above_what_the_node_held() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut first = Node::spawn(&[
        ("ADDR", &addr),
        ("CLOCK_OFFSET", "250"),
        ("MAX_CLOCK_SKEW", "500"),
    ]);
    first.wait_serving().await;
    let request = quorum_cache::pb::SetRequest {
        key: "k".into(),
        value: "v".into(),
        ttl_seconds: None,
    };
    let held = first
        .client()
        .await
        .set(request)
        .await
        .expect("a single node takes the write")
        .into_inner()
        .version
        .unwrap();
    first.kill();
    let second = Node::spawn(&[
        ("ADDR", &addr),
        ("CLOCK_OFFSET", "-250"),
        ("MAX_CLOCK_SKEW", "500"),
    ]);
    second.wait_serving().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", second.endpoint()))
        .unwrap()
        .connect_lazy();
    let target = Target {
        node: second,
        client: PeerServiceClient::new(channel),
    };
    let held::State::Nothing(nothing) = target.held("k").await else {
        panic!("a restarted node holds nothing")
    };
    let watermark = nothing.watermark.expect("a watermark");
    assert!(
        (watermark.physical_ms, watermark.logical, watermark.node)
            > (held.physical_ms, held.logical, held.node),
        "the restart watermark {watermark:?} must be above the version held before the restart {held:?}"
    );
}
