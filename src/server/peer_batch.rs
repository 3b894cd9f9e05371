//! Coalesces the reads and writes this node sends to one peer into batches, and
//! sends them on one long-lived `BatchStream` per peer.
//!
//! Owns: per peer, a queue and the task that empties it. The task takes every
//! call queued by the time it runs (it is woken by the first and runs after the
//! tasks already ready, whose calls thus join) and sends them as one batch on
//! the peer's stream, without waiting for earlier batches; the peer answers the
//! batches in order. The items' common envelope travels once, on the batch.
//! An idle node therefore sends each call at once (a batch of one), and a busy
//! one pays one stream message for many requests. A stream costs one
//! HTTP/2 request for its whole life; a unary `Batch` call per batch would pay
//! request headers, trailers and a task on each side every time, which is most
//! of what a replicated call costs on a small machine.
//! When the stream fails, every batch it holds fails with it (a timeout of the
//! oldest batch, a lost connection, the peer ending the stream as it stops),
//! and the next batch opens a new stream. Only when `MAX_BATCHES_IN_FLIGHT`
//! batches are unanswered (a stalled link) do new calls wait in the queue.
//! Calls whose caller has already given up are not sent.
//! Does not own: classifying failures (`peer_client`), deadlines of operations
//! (`coordinator`), what the peer does with each item (`server::peer`).
//!
//! Hand-written rather than a crate: the batching policy is tied to the peer
//! protocol (one envelope per batch, per-item failures, answers in order) and
//! fits in a page.

use crate::peer_pb::peer_service_client::PeerServiceClient;
use crate::peer_pb::{self, BatchItem, BatchRequest, BatchResponse, WriteResponse, batch_item, batch_result};
use crate::replica::Envelope;
use crate::transport::PeerError;
use futures::FutureExt;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

/// Batches unanswered on one peer's stream at a time: a bound on what a stalled
/// link can hold, high enough that a slow but working link does not queue calls.
const MAX_BATCHES_IN_FLIGHT: usize = 64;
/// Most items this node puts in one batch (a peer accepts up to
/// `server::peer::MAX_BATCH_ITEMS`).
const ITEMS_PER_BATCH: usize = 128;

type Answer = Result<WriteResponse, PeerError>;
type Classify = fn(Status) -> PeerError;

struct Queued {
    /// Kept in its own form until the batch is built: most items share the
    /// batch's envelope and are never converted to a message at all.
    envelope: Envelope,
    /// Its envelope field is set when the batch is built, if it needs one.
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
    /// `classify` turns a failed stream's status into what the coordinator needs.
    pub fn spawn(client: PeerServiceClient<Channel>, rpc_timeout: Duration, classify: Classify) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(client, receiver, rpc_timeout, classify));
        Self { queue }
    }

    /// Queues one read or write, sent with `envelope`, for the next batch; the
    /// future waits for its answer. Queued at once, not when first polled, so
    /// that the future owns nothing of `self` (the transport hands it out as
    /// `'static`).
    pub fn call(
        &self,
        envelope: Envelope,
        call: batch_item::Call,
    ) -> impl Future<Output = Answer> + Send + 'static {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue.send(Queued {
            envelope,
            call,
            answer,
        });
        async move {
            let stopped = || PeerError::ConnectionLost {
                reason: "the node is stopping".into(),
            };
            queued.map_err(|_| stopped())?;
            answered.await.unwrap_or_else(|_| Err(stopped()))
        }
    }
}

/// The peer's sender task: batches what is queued, sends it on the open stream
/// (opening one if there is none), answers the batches as their answers arrive,
/// and replaces the stream when it fails.
async fn send_batches(
    client: PeerServiceClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    rpc_timeout: Duration,
    classify: Classify,
) {
    let mut stream: Option<Stream> = None;
    // One timer for the task's life, moved only when the oldest batch changes:
    // a timer made afresh on each turn of the loop would be registered and
    // removed again for every batch sent and every answer.
    let timeout = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timeout);
    let mut timeout_at: Option<Instant> = None;
    loop {
        let room = stream
            .as_ref()
            .is_none_or(|stream| stream.waiting.len() < MAX_BATCHES_IN_FLIGHT);
        let oldest_deadline = stream.as_ref().and_then(Stream::oldest_deadline);
        if oldest_deadline != timeout_at {
            if let Some(deadline) = oldest_deadline {
                timeout.as_mut().reset(deadline);
            }
            timeout_at = oldest_deadline;
        }
        tokio::select! {
            queued = queue.recv(), if room => {
                let Some(first) = queued else { return };
                let batch = take_batch(first, &mut queue);
                if !batch.is_empty() {
                    stream.get_or_insert_with(|| Stream::open(&client)).send(batch, rpc_timeout);
                }
            }
            answer = next_answer(&mut stream) => {
                let broken = match answer {
                    Some(Ok(response)) => stream.as_mut().and_then(|stream| stream.answered(response, classify).err()),
                    Some(Err(status)) => Some(classify(status)),
                    None => Some(PeerError::ConnectionLost { reason: "the peer ended the batch stream".into() }),
                };
                if let Some(error) = broken
                    && let Some(failed) = stream.take()
                {
                    failed.fail(error);
                }
            }
            () = &mut timeout, if timeout_at.is_some() => {
                timeout_at = None;
                if let Some(failed) = stream.take() {
                    failed.fail(PeerError::Timeout);
                }
            }
        }
    }
}

/// `first` and whatever else is queued, up to a batch, without the calls whose
/// callers have given up.
fn take_batch(first: Queued, queue: &mut mpsc::UnboundedReceiver<Queued>) -> Vec<Queued> {
    let mut batch = vec![first];
    while batch.len() < ITEMS_PER_BATCH {
        match queue.try_recv() {
            Ok(queued) => batch.push(queued),
            Err(_) => break,
        }
    }
    batch.retain(|queued| !queued.answer.is_closed());
    batch
}

async fn next_answer(stream: &mut Option<Stream>) -> Option<Result<BatchResponse, Status>> {
    match stream {
        Some(stream) => stream.answers.next().await,
        None => std::future::pending().await,
    }
}

/// One `BatchStream` to the peer: batches leave on `batches`, their answers come
/// back on `answers` in the same order, and `waiting` holds the callers of the
/// batches not yet answered, oldest first.
struct Stream {
    batches: mpsc::UnboundedSender<BatchRequest>,
    answers: BoxStream<'static, Result<BatchResponse, Status>>,
    waiting: VecDeque<Waiting>,
}

struct Waiting {
    answers: Vec<oneshot::Sender<Answer>>,
    deadline: Instant,
}

impl Stream {
    /// Starts the call; batches sent before the peer has answered its headers
    /// wait in the request body.
    fn open(client: &PeerServiceClient<Channel>) -> Self {
        let (batches, outgoing) = mpsc::unbounded_channel();
        let mut client = client.clone();
        let answers = async move {
            let response = client
                .batch_stream(UnboundedReceiverStream::new(outgoing))
                .await?;
            Ok::<_, Status>(response.into_inner())
        }
        .into_stream()
        .try_flatten()
        .boxed();
        Self {
            batches,
            answers,
            waiting: VecDeque::new(),
        }
    }

    fn send(&mut self, batch: Vec<Queued>, rpc_timeout: Duration) {
        let shared = batch
            .iter()
            .map(|queued| &queued.envelope)
            .max_by_key(|envelope| envelope.clock)
            .cloned();
        let (items, answers): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|queued| {
                let own = shared
                    .as_ref()
                    .and_then(|shared| own_envelope(queued.envelope, shared));
                (
                    BatchItem {
                        call: Some(with_envelope(queued.call, own)),
                    },
                    queued.answer,
                )
            })
            .unzip();
        let envelope = shared.map(Into::into);
        // The request body holds the receiver for as long as this stream is
        // open; once it has gone, the answers stream ends and fails this batch.
        let _ = self.batches.send(BatchRequest { items, envelope });
        self.waiting.push_back(Waiting {
            answers,
            deadline: Instant::now() + rpc_timeout,
        });
    }

    fn oldest_deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|waiting| waiting.deadline)
    }

    /// Hands the oldest batch its answers. An error means the stream can no
    /// longer be trusted to pair answers with batches.
    fn answered(&mut self, response: BatchResponse, classify: Classify) -> Result<(), PeerError> {
        let Some(oldest) = self.waiting.pop_front() else {
            return Err(PeerError::BadAnswer {
                reason: "an answer arrived for no batch".into(),
            });
        };
        if response.results.len() != oldest.answers.len() {
            let reason = format!(
                "a batch of {} items was answered with {} results",
                oldest.answers.len(),
                response.results.len()
            );
            let error = PeerError::BadAnswer { reason };
            answer_all(oldest.answers, error.clone());
            return Err(error);
        }
        for (result, answer) in response.results.into_iter().zip(oldest.answers) {
            let _ = answer.send(item_answer(result.outcome, classify));
        }
        Ok(())
    }

    /// Fails every batch still waiting: each may or may not have been applied,
    /// as `error` says.
    fn fail(self, error: PeerError) {
        for waiting in self.waiting {
            answer_all(waiting.answers, error.clone());
        }
    }
}

/// The envelope an item must carry beside the batch's `shared` one, the
/// newest of the batch's (by clock): none when the two differ only in the
/// item's older clock. Such an item is then checked against a clock its
/// sender had already reached when it was sent, as a later single message
/// would be. In practice every item shares (they all go from this node to one
/// peer); one that did not would carry its own envelope and be checked against
/// it. Only what is sent is converted to a message: the shared envelope once
/// per batch, not its three strings once per item.
fn own_envelope(envelope: Envelope, shared: &Envelope) -> Option<peer_pb::Envelope> {
    let shares = envelope.from == shared.from && envelope.to == shared.to && envelope.params == shared.params;
    (!shares).then(|| envelope.into())
}

/// `call` with `envelope` as its own.
fn with_envelope(mut call: batch_item::Call, envelope: Option<peer_pb::Envelope>) -> batch_item::Call {
    match &mut call {
        batch_item::Call::Read(read) => read.envelope = envelope,
        batch_item::Call::Write(write) => write.envelope = envelope,
    }
    call
}

fn item_answer(outcome: Option<batch_result::Outcome>, classify: Classify) -> Answer {
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
        None => Err(PeerError::BadAnswer {
            reason: "a batch result with no outcome".into(),
        }),
    }
}

fn answer_all(answers: Vec<oneshot::Sender<Answer>>, error: PeerError) {
    for answer in answers {
        let _ = answer.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests;
