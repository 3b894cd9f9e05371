//! Coalesces the reads and writes this node sends to one peer into `Batch` calls.
//!
//! Owns: per peer, a queue and the task that empties it. The task takes every
//! call queued by the time it runs (after yielding once, so that the calls of
//! tasks already woken can join) and sends them as one batch, without waiting
//! for earlier batches. An idle node therefore sends each call at once (a batch
//! of one), and a busy one pays one RPC — headers, HTTP/2 frames, a task on each
//! side — for many requests, which is most of what a replicated call costs on a
//! small machine. Only when `MAX_BATCHES_IN_FLIGHT` batches are on the wire to
//! one peer (a stalled link) do new calls wait for one of them to finish. Calls
//! whose caller has already given up are not sent.
//! Does not own: classifying failures (`peer_client`), deadlines of operations
//! (`coordinator`), what the peer does with each item (`server::peer`).
//!
//! Hand-written rather than a crate: the batching policy is tied to the peer
//! protocol (one envelope per item, per-item failures) and fits in a page.

use crate::peer_pb::peer_service_client::PeerServiceClient;
use crate::peer_pb::{BatchItem, BatchRequest, WriteResponse, batch_item, batch_result};
use crate::transport::PeerError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

/// Batches on the wire to one peer at a time: a bound on what a stalled link can
/// hold, high enough that a slow but working link does not queue calls.
const MAX_BATCHES_IN_FLIGHT: usize = 64;
/// Most items this node puts in one batch (a peer accepts up to
/// `server::peer::MAX_BATCH_ITEMS`).
const ITEMS_PER_BATCH: usize = 128;

type Answer = Result<WriteResponse, PeerError>;

struct Queued {
    call: batch_item::Call,
    answer: oneshot::Sender<Answer>,
}

/// The sending side of one peer's queue; cheap to clone.
#[derive(Clone)]
pub struct PeerBatcher {
    queue: mpsc::UnboundedSender<Queued>,
}

impl PeerBatcher {
    /// Starts the peer's sender task; it ends when the last `PeerBatcher` is dropped.
    /// `classify` turns a failed call's status into what the coordinator needs.
    pub fn spawn(client: PeerServiceClient<Channel>, rpc_timeout: Duration, classify: fn(tonic::Status) -> PeerError) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(client, receiver, rpc_timeout, classify));
        Self { queue }
    }

    /// Queues one read or write for the next batch; the future waits for its
    /// answer. Queued at once, not when first polled, so that the future owns
    /// nothing of `self` (the transport hands it out as `'static`).
    pub fn call(&self, call: batch_item::Call) -> impl Future<Output = Answer> + Send + 'static {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue.send(Queued { call, answer });
        async move {
            let stopped = || PeerError::ConnectionLost { reason: "the node is stopping".into() };
            queued.map_err(|_| stopped())?;
            answered.await.unwrap_or_else(|_| Err(stopped()))
        }
    }
}

async fn send_batches(
    client: PeerServiceClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    rpc_timeout: Duration,
    classify: fn(tonic::Status) -> PeerError,
) {
    let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < ITEMS_PER_BATCH {
            match queue.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        batch.retain(|queued| !queued.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        let client = client.clone();
        tokio::spawn(async move {
            send_one_batch(client, batch, rpc_timeout, classify).await;
            drop(slot);
        });
    }
}

async fn send_one_batch(
    mut client: PeerServiceClient<Channel>,
    batch: Vec<Queued>,
    rpc_timeout: Duration,
    classify: fn(tonic::Status) -> PeerError,
) {
    let (calls, answers): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|queued| (BatchItem { call: Some(queued.call) }, queued.answer)).unzip();
    let sent = tokio::time::timeout(rpc_timeout, client.batch(BatchRequest { items: calls })).await;
    let results = match sent {
        Err(_elapsed) => return answer_all(answers, PeerError::Timeout),
        Ok(Err(status)) => return answer_all(answers, classify(status)),
        Ok(Ok(response)) => response.into_inner().results,
    };
    if results.len() != answers.len() {
        let reason = format!("a batch of {} items was answered with {} results", answers.len(), results.len());
        return answer_all(answers, PeerError::BadAnswer { reason });
    }
    for (result, answer) in results.into_iter().zip(answers) {
        let _ = answer.send(item_answer(result.outcome, classify));
    }
}

fn item_answer(outcome: Option<batch_result::Outcome>, classify: fn(tonic::Status) -> PeerError) -> Answer {
    match outcome {
        Some(batch_result::Outcome::Held(held)) => Ok(held),
        Some(batch_result::Outcome::Failure(failure)) => {
            let mut status = tonic::Status::new(tonic::Code::from(failure.code), failure.message);
            if !failure.refusal.is_empty()
                && let Ok(refusal) = failure.refusal.parse()
            {
                status.metadata_mut().insert(super::status::REFUSAL_KEY, refusal);
            }
            Err(classify(status))
        }
        None => Err(PeerError::BadAnswer { reason: "a batch result with no outcome".into() }),
    }
}

fn answer_all(answers: Vec<oneshot::Sender<Answer>>, error: PeerError) {
    for answer in answers {
        let _ = answer.send(Err(error.clone()));
    }
}
