//! An in-process network of replicas with injected faults, for unit tests of the
//! coordinator and for simulation. Calls go straight to `Replica`, through the
//! same checks a gRPC call meets.
//!
//! Owns: per-node faults (down, blackholed, slow, refusing, dropping replies),
//! cut links between two nodes (both ways, or one way: one node's messages to
//! the other vanish, its requests and its replies alike), seeded random delays
//! and losses ("chaos", for simulation: the same seed gives the same run on a
//! paused tokio clock), and counting the requests each node received.
//! Does not own: anything a real network does beyond these faults.

use super::{PeerError, ReadRequest, Transport, WriteRequest};
use crate::replica::{Envelope, Introduction, Replica, Reply};
use crate::ring::NodeId;
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What happens to calls to one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The process is gone: connection refused, nothing applied.
    Down,
    /// Unreachable: the call hangs until the caller's timeout, nothing applied.
    Blackhole,
    /// Applied and answered after a delay.
    Slow(Duration),
    /// Answers every request with an error, applying nothing.
    Refusing,
    /// Applied, but the answer never arrives.
    DropReplies,
}

#[derive(Default)]
struct Node {
    replica: Option<Arc<Replica>>,
    fault: Fault,
    reads: u64,
    writes: u64,
    /// Reads that asked for the value, not a digest.
    value_reads: u64,
}

/// Random trouble on every call, drawn from a seeded generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chaos {
    pub seed: u64,
    /// Every call is delayed by up to this much.
    pub max_delay: Duration,
    /// Percent of calls whose request is lost (never applied, never answered).
    pub lose_request_percent: u64,
    /// Percent of calls applied but whose answer is lost.
    pub lose_reply_percent: u64,
}

#[derive(Default)]
struct Links {
    /// (from, to): requests from `from` to `to` hang, unsent.
    cut: HashSet<(NodeId, NodeId)>,
    /// (from, to): every message from `from` to `to` vanishes, requests and
    /// replies; the other way, requests still arrive.
    one_way: HashSet<(NodeId, NodeId)>,
    chaos: Option<(Chaos, u64)>,
}

#[derive(Default, Clone)]
pub struct MemoryNetwork {
    nodes: Arc<Mutex<HashMap<NodeId, Node>>>,
    links: Arc<Mutex<Links>>,
}

/// What one call does once the fault is known.
enum Plan {
    Run(Arc<Replica>),
    RunThenDelay(Arc<Replica>, Duration),
    Fail(PeerError),
    Hang,
    RunThenHang(Arc<Replica>),
    DelayThenRunThenHang(Arc<Replica>, Duration),
}

impl Plan {
    /// The same call with its answer lost: what would run still runs, and a
    /// refusal is never heard either.
    fn without_reply(self) -> Plan {
        match self {
            Plan::Run(replica) => Plan::RunThenHang(replica),
            Plan::RunThenDelay(replica, delay) => Plan::DelayThenRunThenHang(replica, delay),
            Plan::Fail(_) | Plan::Hang => Plan::Hang,
            hangs @ (Plan::RunThenHang(_) | Plan::DelayThenRunThenHang(..)) => hangs,
        }
    }
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node, or replaces it (a restart: the new replica has a fresh store).
    pub fn attach(&self, replica: Arc<Replica>) {
        let mut nodes = self.nodes.lock();
        let node = nodes.entry(replica.id().clone()).or_default();
        node.replica = Some(replica);
    }

    pub fn set_fault(&self, node: &str, fault: Fault) {
        self.nodes.lock().entry(NodeId::from(node)).or_default().fault = fault;
    }

    /// Cuts the link between `a` and `b`, both ways: calls hang until the caller
    /// times out.
    pub fn cut(&self, a: &str, b: &str) {
        let mut links = self.links.lock();
        links.cut.insert((NodeId::from(a), NodeId::from(b)));
        links.cut.insert((NodeId::from(b), NodeId::from(a)));
    }

    /// Loses every message `from` sends to `to`: `from`'s requests to `to` are
    /// never applied, and `to`'s requests to `from` are applied by `from` but
    /// never answered. Messages from `to` to `from` still arrive.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.links
            .lock()
            .one_way
            .insert((NodeId::from(from), NodeId::from(to)));
    }

    /// Restores every link cut with `cut` or `cut_one_way`.
    pub fn heal_links(&self) {
        let mut links = self.links.lock();
        links.cut.clear();
        links.one_way.clear();
    }

    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        self.links.lock().chaos = chaos.map(|chaos| (chaos, chaos.seed | 1));
    }

    /// (reads, writes) the node has received, faults included.
    pub fn received(&self, node: &str) -> (u64, u64) {
        self.nodes
            .lock()
            .get(node)
            .map_or((0, 0), |n| (n.reads, n.writes))
    }

    /// Reads the node has received that asked for the value, not a digest.
    pub fn value_reads(&self, node: &str) -> u64 {
        self.nodes.lock().get(node).map_or(0, |n| n.value_reads)
    }

    /// What the call does; when `to`'s messages to `from` are lost, the same
    /// minus the answer.
    fn plan(&self, from: &NodeId, to: &NodeId, is_write: bool) -> Plan {
        let reply_lost = self.links.lock().one_way.contains(&(to.clone(), from.clone()));
        let plan = self.delivery_plan(from, to, is_write);
        if reply_lost { plan.without_reply() } else { plan }
    }

    fn delivery_plan(&self, from: &NodeId, to: &NodeId, is_write: bool) -> Plan {
        if let Some(plan) = self.link_plan(from, to) {
            return plan;
        }
        let mut nodes = self.nodes.lock();
        let Some(node) = nodes.get_mut(to) else {
            return Plan::Fail(PeerError::ConnectionRefused);
        };
        if is_write {
            node.writes += 1
        } else {
            node.reads += 1
        }
        let Some(replica) = node.replica.clone() else {
            return Plan::Fail(PeerError::ConnectionRefused);
        };
        match &node.fault {
            Fault::None => Plan::Run(replica),
            Fault::Down => Plan::Fail(PeerError::ConnectionRefused),
            Fault::Blackhole => Plan::Hang,
            Fault::Slow(delay) => Plan::RunThenDelay(replica, *delay),
            Fault::Refusing => Plan::Fail(PeerError::Remote {
                reason: "injected refusal".into(),
            }),
            Fault::DropReplies => Plan::RunThenHang(replica),
        }
    }

    /// A cut link, or one that loses `from`'s messages, hangs; chaos may lose
    /// the request, or delay the call and perhaps lose its reply.
    fn link_plan(&self, from: &NodeId, to: &NodeId) -> Option<Plan> {
        let mut links = self.links.lock();
        let link = (from.clone(), to.clone());
        if links.cut.contains(&link) || links.one_way.contains(&link) {
            return Some(Plan::Hang);
        }
        let (chaos, state) = links.chaos.as_mut()?;
        let chaos = *chaos;
        let mut draw = |bound: u64| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state % bound.max(1)
        };
        if draw(100) < chaos.lose_request_percent {
            return Some(Plan::Hang);
        }
        let delay = Duration::from_micros(draw(chaos.max_delay.as_micros() as u64 + 1));
        let lose_reply = draw(100) < chaos.lose_reply_percent;
        drop(links);
        let nodes = self.nodes.lock();
        let replica = nodes.get(to).and_then(|node| node.replica.clone())?;
        if nodes.get(to).is_some_and(|node| node.fault != Fault::None) {
            return None;
        }
        Some(if lose_reply {
            Plan::DelayThenRunThenHang(replica, delay)
        } else {
            Plan::RunThenDelay(replica, delay)
        })
    }

    fn call<T: Send + 'static>(
        &self,
        from: &NodeId,
        to: &NodeId,
        is_write: bool,
        run: impl FnOnce(&Replica) -> Result<T, PeerError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, PeerError>> {
        match self.plan(from, to, is_write) {
            Plan::Run(replica) => futures::future::ready(run(&replica)).boxed(),
            Plan::Fail(error) => futures::future::ready(Err(error)).boxed(),
            Plan::Hang => futures::future::pending().boxed(),
            Plan::RunThenDelay(replica, delay) => async move {
                tokio::time::sleep(delay).await;
                run(&replica)
            }
            .boxed(),
            Plan::RunThenHang(replica) => {
                let _ = run(&replica);
                futures::future::pending().boxed()
            }
            Plan::DelayThenRunThenHang(replica, delay) => async move {
                tokio::time::sleep(delay).await;
                let _ = run(&replica);
                futures::future::pending::<Result<T, PeerError>>().await
            }
            .boxed(),
        }
    }
}

impl Transport for MemoryNetwork {
    fn read(&self, to: &NodeId, request: ReadRequest) -> BoxFuture<'static, Result<Reply, PeerError>> {
        if !request.digest
            && let Some(node) = self.nodes.lock().get_mut(to)
        {
            node.value_reads += 1;
        }
        self.call(&request.envelope.from.clone(), to, false, move |replica| {
            replica
                .read(&request.envelope, &request.key, request.digest)
                .map_err(PeerError::from)
        })
    }

    fn write(&self, to: &NodeId, request: WriteRequest) -> BoxFuture<'static, Result<Reply, PeerError>> {
        self.call(&request.envelope.from.clone(), to, true, move |replica| {
            replica
                .write(&request.envelope, request.key, request.record)
                .map_err(PeerError::from)
        })
    }

    fn handshake(
        &self,
        to: &NodeId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Introduction, PeerError>> {
        self.call(&envelope.from.clone(), to, false, move |replica| {
            replica.handshake(&envelope).map_err(PeerError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, ManualClock, Version, WallClock};
    use crate::replica::ClusterParams;
    use crate::store::{Held, Record, Store, StoreLimits};
    use bytes::Bytes;

    const SKEW_MS: u64 = 500;

    fn replica(name: &str) -> Arc<Replica> {
        let wall: Arc<dyn WallClock> = ManualClock::new(1_700_000_000_000);
        let clock = Arc::new(Hlc::new(wall.clone(), crate::ring::node_number(name), SKEW_MS));
        let limits = StoreLimits {
            num_shards: 1,
            max_entries: 100,
            max_bytes: 1 << 20,
        };
        let store = Arc::new(Store::new(limits, wall, Version::ZERO));
        let hash = crate::ring::HASH_NAME.into();
        let params = ClusterParams {
            replication_factor: 3,
            vnodes: 1,
            hash,
            members_hash: 0,
        };
        Arc::new(Replica::new(name.into(), params, store, clock))
    }

    fn network() -> (MemoryNetwork, Vec<Arc<Replica>>) {
        let net = MemoryNetwork::new();
        let replicas: Vec<Arc<Replica>> = ["a", "b", "c"].into_iter().map(replica).collect();
        replicas.iter().for_each(|replica| net.attach(replica.clone()));
        (net, replicas)
    }

    /// `from` writes `key` to `to`; `None` when no answer comes within a second.
    async fn write(
        net: &MemoryNetwork,
        from: &Replica,
        to: &Replica,
        key: &'static str,
    ) -> Option<Result<Reply, PeerError>> {
        let version = from.clock().stamp_above(Version::ZERO).unwrap();
        let record = Record {
            version,
            value: Some(Bytes::from_static(b"v")),
            expires_at_ms: u64::MAX,
        };
        let (envelope, key) = (from.envelope_to(to.id()), Bytes::from_static(key.as_bytes()));
        let request = WriteRequest {
            envelope,
            key,
            record,
        };
        tokio::time::timeout(Duration::from_secs(1), net.write(to.id(), request))
            .await
            .ok()
    }

    fn holds(replica: &Replica, key: &str) -> bool {
        !matches!(replica.read_local(key.as_bytes(), true), Held::Nothing { .. })
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_way_cut_loses_one_nodes_requests_and_replies_until_healed() {
        let (net, replicas) = network();
        let [a, b, c] = [&*replicas[0], &*replicas[1], &*replicas[2]];
        net.cut_one_way("a", "b");

        assert!(
            write(&net, a, b, "a-to-b").await.is_none(),
            "a's request to b is answered"
        );
        assert!(!holds(b, "a-to-b"), "a's request reached b");
        assert!(write(&net, b, a, "b-to-a").await.is_none(), "a's reply reached b");
        assert!(holds(a, "b-to-a"), "b's request did not reach a");
        let handshake = net.handshake(a.id(), b.envelope_to(a.id()));
        let handshake = tokio::time::timeout(Duration::from_secs(1), handshake).await;
        assert!(handshake.is_err(), "a's answer to b's handshake arrived");
        for (from, to) in [(a, c), (c, a), (b, c), (c, b)] {
            let answered = write(&net, from, to, "other-links")
                .await
                .is_some_and(|reply| reply.is_ok());
            assert!(answered, "{} to {} is cut", from.id(), to.id());
        }

        net.heal_links();
        assert!(
            write(&net, a, b, "healed")
                .await
                .is_some_and(|reply| reply.is_ok()),
            "a to b is still cut"
        );
        assert!(
            write(&net, b, a, "healed")
                .await
                .is_some_and(|reply| reply.is_ok()),
            "b to a is still cut"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_reply_hides_a_refusal_too() {
        let (net, replicas) = network();
        net.set_fault("a", Fault::Down);
        net.cut_one_way("a", "b");
        assert!(
            write(&net, &replicas[1], &replicas[0], "k").await.is_none(),
            "a down node's refusal reached b"
        );
    }
}
