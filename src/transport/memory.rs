//! An in-process network of replicas with injected faults, for unit tests of the
//! coordinator and for simulation. Calls go straight to `Replica`, through the
//! same checks a gRPC call meets.
//!
//! Owns: per-node faults (down, blackholed, slow, refusing, dropping replies),
//! cut links between two nodes, seeded random delays and losses ("chaos", for
//! simulation: the same seed gives the same run on a paused tokio clock), and
//! counting the requests each node received.
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
    cut: HashSet<(NodeId, NodeId)>,
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

    pub fn heal_links(&self) {
        self.links.lock().cut.clear();
    }

    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        self.links.lock().chaos = chaos.map(|chaos| (chaos, chaos.seed | 1));
    }

    /// (reads, writes) the node has received, faults included.
    pub fn received(&self, node: &str) -> (u64, u64) {
        self.nodes.lock().get(node).map_or((0, 0), |n| (n.reads, n.writes))
    }

    /// Reads the node has received that asked for the value, not a digest.
    pub fn value_reads(&self, node: &str) -> u64 {
        self.nodes.lock().get(node).map_or(0, |n| n.value_reads)
    }

    fn plan(&self, from: &NodeId, to: &NodeId, is_write: bool) -> Plan {
        if let Some(plan) = self.link_plan(from, to) {
            return plan;
        }
        let mut nodes = self.nodes.lock();
        let Some(node) = nodes.get_mut(to) else { return Plan::Fail(PeerError::ConnectionRefused) };
        if is_write { node.writes += 1 } else { node.reads += 1 }
        let Some(replica) = node.replica.clone() else { return Plan::Fail(PeerError::ConnectionRefused) };
        match &node.fault {
            Fault::None => Plan::Run(replica),
            Fault::Down => Plan::Fail(PeerError::ConnectionRefused),
            Fault::Blackhole => Plan::Hang,
            Fault::Slow(delay) => Plan::RunThenDelay(replica, *delay),
            Fault::Refusing => Plan::Fail(PeerError::Remote { reason: "injected refusal".into() }),
            Fault::DropReplies => Plan::RunThenHang(replica),
        }
    }

    /// A cut link hangs; chaos may lose the request, or delay the call and
    /// perhaps lose its reply.
    fn link_plan(&self, from: &NodeId, to: &NodeId) -> Option<Plan> {
        let mut links = self.links.lock();
        if links.cut.contains(&(from.clone(), to.clone())) {
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
        Some(if lose_reply { Plan::DelayThenRunThenHang(replica, delay) } else { Plan::RunThenDelay(replica, delay) })
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

    fn handshake(&self, to: &NodeId, envelope: Envelope) -> BoxFuture<'static, Result<Introduction, PeerError>> {
        self.call(&envelope.from.clone(), to, false, move |replica| {
            replica.handshake(&envelope).map_err(PeerError::from)
        })
    }
}
