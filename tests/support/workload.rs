//! Concurrent clients that run random Set / Get / Delete on a few keys (so they
//! collide) through random nodes, with every written value unique, recording each
//! operation's invocation, completion and outcome for the checker.
//!
//! Outcomes: a write is `Ok`, `Failed` (certainly not applied: a limit, or
//! UNAVAILABLE marked `qc-outcome: not-applied`) or `Indeterminate` (a timeout,
//! a lost connection, an unknown outcome). A read is a hit, a miss, or failed.

use quorum_cache::pb::cache_service_client::CacheServiceClient;
use quorum_cache::pb::{DeleteRequest, GetRequest, SetRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Set { value: String, ttl_seconds: Option<u32> },
    Get,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Hit(String),
    Miss,
    Failed,
    Indeterminate,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub client: usize,
    /// The node the call was sent to.
    pub node: usize,
    pub key: String,
    pub call: Call,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub clients: usize,
    pub keys: usize,
    /// Percent of operations that are Sets and Deletes; the rest are Gets.
    pub set_percent: u32,
    pub delete_percent: u32,
    /// Percent of Sets with a 1–2 s TTL.
    pub short_ttl_percent: u32,
    pub duration: Duration,
    pub call_timeout: Duration,
    pub seed: u64,
    /// Client numbers start here (so two workloads never write the same value).
    pub first_client: usize,
}

/// A small deterministic generator (xorshift64*), one per client (and one for
/// the nemesis's draws). The seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Runs the workload against `endpoints` until its duration has passed.
pub async fn run(endpoints: Vec<String>, workload: Workload, epoch: Instant) -> Vec<Recorded> {
    let clients: Vec<CacheServiceClient<Channel>> = endpoints
        .iter()
        .map(|endpoint| {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
                .unwrap()
                .connect_timeout(Duration::from_millis(500))
                .connect_lazy();
            CacheServiceClient::new(channel)
        })
        .collect();
    let clients = Arc::new(clients);
    let tasks: Vec<_> = (0..workload.clients)
        .map(|client| {
            let clients = clients.clone();
            tokio::spawn(client_loop(
                workload.first_client + client,
                clients,
                workload,
                epoch,
            ))
        })
        .collect();
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    history
}

async fn client_loop(
    client: usize,
    nodes: Arc<Vec<CacheServiceClient<Channel>>>,
    workload: Workload,
    epoch: Instant,
) -> Vec<Recorded> {
    let mut rng = Rng(workload.seed ^ (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut history = Vec::new();
    let mut sequence = 0u64;
    while epoch.elapsed() < workload.duration {
        let key = format!("key-{}", rng.below(workload.keys as u64));
        let roll = rng.below(100) as u32;
        let call = if roll < workload.set_percent {
            sequence += 1;
            let ttl_seconds =
                (rng.below(100) < workload.short_ttl_percent as u64).then(|| 1 + rng.below(2) as u32);
            Call::Set {
                value: format!("c{client}-{sequence}"),
                ttl_seconds,
            }
        } else if roll < workload.set_percent + workload.delete_percent {
            Call::Delete
        } else {
            Call::Get
        };
        let target = rng.below(nodes.len() as u64) as usize;
        let mut node = nodes[target].clone();
        let invoke_ns = epoch.elapsed().as_nanos() as u64;
        let outcome = match tokio::time::timeout(workload.call_timeout, perform(&mut node, &key, &call)).await
        {
            Ok(outcome) => outcome,
            Err(_) if call == Call::Get => Outcome::Failed,
            Err(_) => Outcome::Indeterminate,
        };
        let complete_ns = epoch.elapsed().as_nanos() as u64;
        let failed = matches!(outcome, Outcome::Failed | Outcome::Indeterminate);
        history.push(Recorded {
            client,
            node: target,
            key,
            call,
            invoke_ns,
            complete_ns,
            outcome,
        });
        if failed {
            // Do not spin on a dead node; a short pause keeps the history small.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    history
}

async fn perform(node: &mut CacheServiceClient<Channel>, key: &str, call: &Call) -> Outcome {
    match call {
        Call::Set { value, ttl_seconds } => {
            let request = SetRequest {
                key: key.into(),
                value: value.clone(),
                ttl_seconds: *ttl_seconds,
            };
            write_outcome(node.set(request).await.map(|_| ()))
        }
        Call::Delete => write_outcome(node.delete(DeleteRequest { key: key.into() }).await.map(|_| ())),
        Call::Get => match node.get(GetRequest { key: key.into() }).await {
            Ok(response) => Outcome::Hit(response.into_inner().value),
            Err(status) if status.code() == Code::NotFound => Outcome::Miss,
            Err(_) => Outcome::Failed,
        },
    }
}

fn write_outcome(result: Result<(), tonic::Status>) -> Outcome {
    let Err(status) = result else { return Outcome::Ok };
    let not_applied = status
        .metadata()
        .get("qc-outcome")
        .is_some_and(|outcome| outcome == "not-applied");
    match status.code() {
        Code::InvalidArgument | Code::ResourceExhausted => Outcome::Failed,
        Code::Unavailable if not_applied => Outcome::Failed,
        _ => Outcome::Indeterminate,
    }
}

/// Operation counts for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub hits: usize,
    pub misses: usize,
}

pub fn count(history: &[Recorded]) -> Counts {
    let mut counts = Counts {
        ops: history.len(),
        ..Counts::default()
    };
    for op in history {
        match op.outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Hit(_) => {
                counts.ok += 1;
                counts.hits += 1
            }
            Outcome::Miss => {
                counts.ok += 1;
                counts.misses += 1
            }
            Outcome::Failed => counts.failed += 1,
            Outcome::Indeterminate => counts.indeterminate += 1,
        }
    }
    counts
}

/// Gets that missed a key that was certainly present: the last write on the key
/// to complete before the Get began was a successful Set without TTL, and no
/// write that might be ordered after it (it overlaps or follows that Set and
/// began before the Get ended) is a Delete or a Set with a TTL. Failed and
/// indeterminate Sets without TTL cannot make the key absent, so they do not
/// excuse a miss.
pub fn misses_on_present_keys(history: &[Recorded]) -> Vec<&Recorded> {
    let plain_set = |op: &Recorded| {
        matches!(
            &op.call,
            Call::Set {
                ttl_seconds: None,
                ..
            }
        )
    };
    history
        .iter()
        .filter(|get| get.call == Call::Get && get.outcome == Outcome::Miss)
        .filter(|get| {
            let writes = || {
                history
                    .iter()
                    .filter(|op| op.key == get.key && op.call != Call::Get)
            };
            let Some(last) = writes()
                .filter(|write| write.outcome == Outcome::Ok && write.complete_ns < get.invoke_ns)
                .max_by_key(|write| write.complete_ns)
            else {
                return false;
            };
            plain_set(last)
                && writes()
                    .filter(|write| write.complete_ns > last.invoke_ns && write.invoke_ns < get.complete_ns)
                    .all(plain_set)
        })
        .collect()
}
