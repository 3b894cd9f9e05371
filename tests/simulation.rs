//! Deterministic simulation: the real coordinators, replicas and stores of a ring
//! of 3, 4 or 5 nodes on the in-memory network (`transport::memory`), on a paused
//! tokio clock, every node's wall clock skewed. A scenario is a cluster shape
//! (nodes, N, R, W), a fault mix and a seed, which drives the rest: the clients'
//! calls, message delays and losses ("chaos"), and a nemesis that restarts nodes
//! (the calls a crashed node coordinates are cut off; it stays down at least 2 × MAX_CLOCK_SKEW + 1 ms
//! and boots with an empty memory and its clock stepped to a new offset within
//! ±200 ms, so any two clocks stay within MAX_CLOCK_SKEW), isolates one node,
//! splits the ring into two halves (clients reach both), loses one node's
//! messages to another (one way), and makes nodes forget what they hold; stores
//! of one entry per shard evict, and the clients start as the nodes boot. That is
//! the full mix; a proof of the checker's teeth keeps only the faults it is about.
//! Short TTLs always expire. Every history is checked for linearizability.
//!
//! Tests: the default shape (3 nodes, N = 3, R = W = 2) over 1,000 seeds
//! (SIM_SEEDS=<count> changes it); every (N, R, W) with W + R > N for N = 3, 4, 5
//! on a ring of N nodes, and N = 3, 4 with majority quorums on the larger rings,
//! over 100 seeds each (SIM_SHAPE_SEEDS=<count>), all with every fault; the same
//! history from the same seed, for every shape; and the checker's teeth: each
//! protocol step switched off, quorums that do not meet, and the one-round write
//! forced where two write quorums need not meet are caught, and each of the
//! bipartition, the one-way loss and the restart, alone on a network that
//! otherwise delivers at once, breaks a configuration that needs it.
//!
//! A failure names its shape and seed, and replays exactly with
//! `SIM_SEED=<seed> cargo test --test simulation <test> -- --nocapture`
//! (that seed on every shape of the test).
//! Does not own: the checker (`qc_check`, the workspace's `check/` crate), real processes and sockets
//! (tests/consistency.rs).

use bytes::Bytes;
use quorum_cache::clock::{Hlc, Millis, WallClock, restart_wait, restart_watermark};
use quorum_cache::coordinator::{Coordinator, CoordinatorError, CoordinatorSettings, UnsafeSwitches};
use quorum_cache::peers::{Peers, spawn_handshakes};
use quorum_cache::replica::{ClusterParams, Replica};
use quorum_cache::ring::{HASH_NAME, NodeId, Ring, node_number};
use quorum_cache::store::{Store, StoreLimits};
use quorum_cache::transport::Transport;
use quorum_cache::transport::memory::{Chaos, Fault as NodeFault, MemoryNetwork};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod support;

use support::history;
use support::workload::{Call, Outcome, Recorded};

const START_MS: Millis = 1_700_000_000_000;
const SKEW_MS: u64 = 500;
/// Every boot draws its clock's offset within ±this: two offsets differ by at
/// most twice this, below SKEW_MS.
const MAX_OFFSET_MS: u64 = 200;
const RPC_TIMEOUT: Duration = Duration::from_millis(400);
const VNODES: usize = 32;
const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 30;
const KEYS: u64 = 3;

/// Wall time derived from the paused tokio clock, shifted per boot (skew).
struct VirtualWall {
    epoch: Instant,
    offset_ms: i64,
}

impl WallClock for VirtualWall {
    fn now_ms(&self) -> Millis {
        (START_MS as i64 + self.epoch.elapsed().as_millis() as i64 + self.offset_ms) as Millis
    }
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
    /// A clock offset within ±MAX_OFFSET_MS.
    fn offset_ms(&mut self) -> i64 {
        self.below(2 * MAX_OFFSET_MS + 1) as i64 - MAX_OFFSET_MS as i64
    }
}

/// A cluster: `nodes` on the ring, `n` replicas per key, the quorums `r` and `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    nodes: usize,
    n: usize,
    r: usize,
    w: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, N = {}, R = {}, W = {}",
            self.nodes, self.n, self.r, self.w
        )
    }
}

const DEFAULT_SHAPE: Shape = Shape {
    nodes: 3,
    n: 3,
    r: 2,
    w: 2,
};

/// Every (R, W) with W + R > N on a ring of N nodes, then N on each larger ring
/// (up to 5 nodes) with majority quorums; the default shape has a test of its own.
fn shapes_with_n(n: usize) -> Vec<Shape> {
    let mut shapes: Vec<Shape> = (1..=n)
        .flat_map(|w| {
            (1..=n)
                .filter(move |r| w + r > n)
                .map(move |r| Shape { nodes: n, n, r, w })
        })
        .collect();
    shapes.extend((n + 1..=5).map(|nodes| Shape {
        nodes,
        n,
        r: n / 2 + 1,
        w: n / 2 + 1,
    }));
    shapes.retain(|shape| *shape != DEFAULT_SHAPE);
    shapes
}

/// What the nemesis does at random moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Crash a node, keep it down (connections refused) for at least 2 × MAX_CLOCK_SKEW + 1 ms, boot
    /// it with an empty memory and its clock stepped to a new offset.
    Restart,
    /// Cut one node off from the others; clients still reach it.
    Isolation,
    /// Cut the ring into two halves (nodes / 2 of them and the rest) that
    /// cannot reach each other; clients reach both. On three nodes, that is an
    /// isolation.
    Bipartition,
    /// One node's messages to another vanish: its requests are never applied,
    /// the other's requests are applied but never answered.
    OneWayLoss,
    /// A node forgets all it holds, into its watermarks.
    Forgetting,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::Restart,
        Fault::Isolation,
        Fault::Bipartition,
        Fault::OneWayLoss,
        Fault::Forgetting,
    ];
}

/// The trouble a scenario meets, so that a proof can use only the fault it is
/// about. Short TTLs are always in the workload.
#[derive(Debug, Clone, Copy)]
struct FaultMix {
    /// Every message is delayed by up to 30 ms; without, a message is applied
    /// the moment it is sent and answered at once.
    delays: bool,
    /// Percent of requests, and of replies, lost at random.
    loss_percent: u64,
    /// One entry per shard, so that the keys evict each other.
    evictions: bool,
    /// The clients start at once, as the nodes boot; without, they start
    /// once every clock has run past the others' boot watermarks.
    cold_start: bool,
    nemesis: &'static [Fault],
}

const EVERY_FAULT: FaultMix = FaultMix {
    delays: true,
    loss_percent: 3,
    evictions: true,
    cold_start: true,
    nemesis: &Fault::ALL,
};

/// Only `fault`, on a network that delivers at once and loses nothing.
const fn only(fault: &'static [Fault]) -> FaultMix {
    FaultMix {
        delays: false,
        loss_percent: 0,
        evictions: false,
        cold_start: false,
        nemesis: fault,
    }
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    seed: u64,
    shape: Shape,
    faults: FaultMix,
    switches: UnsafeSwitches,
}

impl Scenario {
    fn safe(seed: u64, shape: Shape) -> Self {
        Scenario {
            seed,
            shape,
            faults: EVERY_FAULT,
            switches: UnsafeSwitches::default(),
        }
    }
}

/// How many faults of each kind (indexed like `Fault::ALL`) the nemesis injected.
#[derive(Debug, Default, Clone, Copy)]
struct Tally([usize; Fault::ALL.len()]);

impl Tally {
    fn add(&mut self, other: Tally) {
        self.0
            .iter_mut()
            .zip(other.0)
            .for_each(|(mine, theirs)| *mine += theirs);
    }
    fn count(&mut self, fault: Fault) {
        self.0[Fault::ALL.iter().position(|kind| *kind == fault).unwrap()] += 1;
    }
    fn of(&self, fault: Fault) -> usize {
        self.0[Fault::ALL.iter().position(|kind| *kind == fault).unwrap()]
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Fault::ALL
            .iter()
            .map(|fault| format!("{fault:?} {}", self.of(*fault)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

struct SimNode {
    coordinator: Arc<Coordinator>,
    /// Aborted when the node crashes: a dead node sends nothing. (Cancelling
    /// their stop token would leave a handshake due at that instant to tokio's
    /// random choice of `select!` branch, which, through the chaos generator's
    /// draws, would make a run depend on the process it runs in.)
    handshakes: Vec<tokio::task::JoinHandle<()>>,
    /// Cancelled when the node crashes: the calls it coordinates end unanswered.
    crashed: CancellationToken,
}

struct Sim {
    net: MemoryNetwork,
    names: Vec<NodeId>,
    ring: Ring,
    epoch: Instant,
    /// `None` while the node is down.
    nodes: Mutex<Vec<Option<Arc<SimNode>>>>,
    /// Every store ever booted, crashed ones included, for the eviction count.
    stores: Mutex<Vec<Arc<Store>>>,
    scenario: Scenario,
}

impl Sim {
    fn new(scenario: Scenario, rng: &mut Rng) -> Arc<Sim> {
        let names: Vec<NodeId> = (1..=scenario.shape.nodes)
            .map(|n| format!("node{n}:8080").into())
            .collect();
        let sim = Arc::new(Sim {
            net: MemoryNetwork::new(),
            ring: Ring::new(&names, VNODES, scenario.shape.n),
            names,
            epoch: Instant::now(),
            nodes: Mutex::new(Vec::new()),
            stores: Mutex::new(Vec::new()),
            scenario,
        });
        let nodes = (0..scenario.shape.nodes)
            .map(|index| Some(sim.boot(index, rng.offset_ms())))
            .collect();
        *sim.nodes.lock().unwrap() = nodes;
        sim
    }

    /// Starts node `index` with an empty memory and its wall clock `offset_ms`
    /// off, as a crash and restart does.
    fn boot(&self, index: usize, offset_ms: i64) -> Arc<SimNode> {
        let name = &self.names[index];
        let wall: Arc<dyn WallClock> = Arc::new(VirtualWall {
            epoch: self.epoch,
            offset_ms,
        });
        let clock = Arc::new(Hlc::new(wall.clone(), node_number(name), SKEW_MS));
        let limits = if self.scenario.faults.evictions {
            // One entry per shard: the keys evict each other.
            StoreLimits {
                num_shards: 2,
                max_entries: 2,
                max_bytes: 1 << 20,
            }
        } else {
            StoreLimits {
                num_shards: 2,
                max_entries: 1_000,
                max_bytes: 1 << 20,
            }
        };
        let store = Arc::new(Store::new(limits, wall.clone(), restart_watermark(wall.now_ms())));
        self.stores.lock().unwrap().push(store.clone());
        let params = ClusterParams {
            replication_factor: self.ring.replication() as u32,
            vnodes: VNODES as u32,
            hash: HASH_NAME.into(),
            members_hash: self.ring.members_hash(),
        };
        let replica = Arc::new(Replica::new(name.clone(), params, store, clock));
        self.net.attach(replica.clone());
        let others = self.names.iter().filter(|other| *other != name).cloned();
        let peers = Arc::new(Peers::new(others, slog::Logger::root(slog::Discard, slog::o!())));
        let transport: Arc<dyn Transport> = Arc::new(self.net.clone());
        let settings = CoordinatorSettings {
            read_quorum: self.scenario.shape.r,
            write_quorum: self.scenario.shape.w,
            rpc_timeout: RPC_TIMEOUT,
            unsafe_switches: self.scenario.switches,
        };
        let never = CancellationToken::new();
        let handshakes = spawn_handshakes(
            peers.clone(),
            replica.clone(),
            transport.clone(),
            RPC_TIMEOUT,
            never,
        );
        let coordinator = Arc::new(Coordinator::new(
            replica,
            self.ring.clone(),
            transport,
            peers,
            settings,
        ));
        Arc::new(SimNode {
            coordinator,
            handshakes,
            crashed: CancellationToken::new(),
        })
    }

    /// The node, unless it is down.
    fn node(&self, index: usize) -> Option<Arc<SimNode>> {
        self.nodes.lock().unwrap()[index].clone()
    }

    /// The process is gone: connections to it are refused until `restart`.
    fn crash(&self, index: usize) {
        self.net.set_fault(&self.names[index], NodeFault::Down);
        if let Some(old) = self.nodes.lock().unwrap()[index].take() {
            old.handshakes.iter().for_each(|handshakes| handshakes.abort());
            old.crashed.cancel();
        }
    }

    fn restart(&self, index: usize, offset_ms: i64) {
        let fresh = self.boot(index, offset_ms);
        self.nodes.lock().unwrap()[index] = Some(fresh);
        self.net.set_fault(&self.names[index], NodeFault::None);
    }

    /// Cuts every link between `side` and the other nodes, until `heal_links`.
    fn partition(&self, side: &[usize]) {
        for inside in side {
            for outside in (0..self.names.len()).filter(|node| !side.contains(node)) {
                self.net.cut(&self.names[*inside], &self.names[outside]);
            }
        }
    }

    fn evictions(&self) -> u64 {
        let stores = self.stores.lock().unwrap();
        stores
            .iter()
            .map(|store| store.dropped().evicted.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn stop(&self) {
        for node in self.nodes.lock().unwrap().iter().flatten() {
            node.handshakes.iter().for_each(|handshakes| handshakes.abort());
        }
    }
}

async fn client(sim: Arc<Sim>, client: usize, seed: u64) -> Vec<Recorded> {
    let mut rng = Rng::new(seed ^ (client as u64 + 7) << 32);
    let mut history = Vec::new();
    for sequence in 0..OPS_PER_CLIENT {
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        let key = format!("k{}", rng.below(KEYS));
        let target = rng.below(sim.names.len() as u64) as usize;
        let roll = rng.below(100);
        let (call, ttl_ms) = if roll < 45 {
            let ttl_ms = if rng.below(4) == 0 {
                100 + rng.below(1_500)
            } else {
                60_000
            };
            (
                Call::Set {
                    value: format!("c{client}-{sequence}"),
                    ttl_seconds: None,
                },
                ttl_ms,
            )
        } else if roll < 55 {
            (Call::Delete, 0)
        } else {
            (Call::Get, 0)
        };
        let invoke_ns = sim.now_ns();
        // A node that is down refuses the connection: nothing happened.
        let outcome = match sim.node(target) {
            Some(node) => call_node(&node, Bytes::from(key.clone()), &call, ttl_ms).await,
            None => Outcome::Failed,
        };
        history.push(Recorded {
            client,
            node: target,
            key,
            call,
            invoke_ns,
            complete_ns: sim.now_ns(),
            outcome,
        });
    }
    history
}

/// Runs `call` through `node`'s coordinator, or until the node crashes.
async fn call_node(node: &SimNode, key: Bytes, call: &Call, ttl_ms: u64) -> Outcome {
    let coordinator = node.coordinator.clone();
    let operation: std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> = match call {
        Call::Set { value, .. } => {
            let (value, expires_at_ms) = (
                Bytes::from(value.clone()),
                coordinator.replica().clock().wall_ms() + ttl_ms,
            );
            Box::pin(
                async move { write_outcome(coordinator.set(key, value, expires_at_ms).await.map(|_| ())) },
            )
        }
        Call::Delete => Box::pin(async move { write_outcome(coordinator.delete(key).await.map(|_| ())) }),
        Call::Get => Box::pin(async move {
            match coordinator.get(key).await {
                Ok(Some(found)) => Outcome::Hit(String::from_utf8(found.value.to_vec()).unwrap()),
                Ok(None) => Outcome::Miss,
                Err(_) => Outcome::Failed,
            }
        }),
    };
    tokio::select! {
        biased;
        outcome = operation => outcome,
        // The coordinator died mid-call: a write may or may not have happened.
        () = node.crashed.cancelled() => if *call == Call::Get { Outcome::Failed } else { Outcome::Indeterminate },
    }
}

fn write_outcome(result: Result<(), CoordinatorError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(CoordinatorError::OutcomeUnknown { .. }) => Outcome::Indeterminate,
        Err(_) => Outcome::Failed,
    }
}

/// The scenario's faults at random moments until `done`; one draw in
/// (kinds + 1) is a quiet spell. A cut lasts 200 ms to 1 s.
async fn nemesis(sim: Arc<Sim>, seed: u64, done: CancellationToken) -> Tally {
    let mut rng = Rng::new(seed ^ 0xfa17);
    let kinds = sim.scenario.faults.nemesis;
    let nodes = sim.names.len();
    let mut tally = Tally::default();
    while !kinds.is_empty() && !done.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
        let Some(&fault) = kinds.get(rng.below(kinds.len() as u64 + 1) as usize) else {
            continue;
        };
        let victim = rng.below(nodes as u64) as usize;
        let cut = match fault {
            Fault::Restart => {
                sim.crash(victim);
                // A node waits `restart_wait` before it builds its store (so that
                // its restart watermark covers a clock stepped back by up to
                // MAX_CLOCK_SKEW, as `restart` does here), and a restart takes
                // at least a millisecond more; half of the time exactly that.
                let least = restart_wait(SKEW_MS).as_millis() as u64 + 1;
                let down_ms = if rng.below(2) == 0 {
                    least
                } else {
                    least + rng.below(100)
                };
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                sim.restart(victim, rng.offset_ms());
                false
            }
            Fault::Isolation => {
                sim.partition(&[victim]);
                true
            }
            Fault::Bipartition => {
                // nodes / 2 nodes on one side, drawn without replacement.
                let mut side = vec![victim];
                while side.len() < nodes / 2 {
                    let next = rng.below(nodes as u64) as usize;
                    if !side.contains(&next) {
                        side.push(next);
                    }
                }
                sim.partition(&side);
                true
            }
            Fault::OneWayLoss => {
                let to = (victim + 1 + rng.below(nodes as u64 - 1) as usize) % nodes;
                sim.net.cut_one_way(&sim.names[victim], &sim.names[to]);
                true
            }
            Fault::Forgetting => {
                if let Some(node) = sim.node(victim) {
                    node.coordinator
                        .replica()
                        .store()
                        .forget_all(quorum_cache::clock::Version::ZERO);
                }
                false
            }
        };
        if cut {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
            sim.net.heal_links();
        }
        tally.count(fault);
    }
    tally
}

/// What one run produced.
struct Run {
    history: Vec<Recorded>,
    faults: Tally,
    evictions: u64,
}

fn simulate(scenario: Scenario) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut rng = Rng::new(scenario.seed);
        let sim = Sim::new(scenario, &mut rng);
        let faults = scenario.faults;
        if faults.delays || faults.loss_percent > 0 {
            let lose_percent = faults.loss_percent;
            sim.net.set_chaos(Some(Chaos {
                seed: scenario.seed,
                max_delay: if faults.delays {
                    Duration::from_millis(30)
                } else {
                    Duration::ZERO
                },
                lose_request_percent: lose_percent,
                lose_reply_percent: lose_percent,
            }));
        }
        if !faults.cold_start {
            tokio::time::sleep(Duration::from_millis(SKEW_MS + 2 * MAX_OFFSET_MS + 1)).await;
        }
        let done = CancellationToken::new();
        let nemesis = tokio::spawn(nemesis(sim.clone(), scenario.seed, done.clone()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| tokio::spawn(client(sim.clone(), index, scenario.seed)))
            .collect();
        let mut history = Vec::new();
        for client in clients {
            history.extend(client.await.unwrap());
        }
        done.cancel();
        let faults = nemesis.await.unwrap();
        sim.stop();
        Run {
            history,
            faults,
            evictions: sim.evictions(),
        }
    })
}

/// SIM_SEED alone (a replay), else 1..=`count`, `count` from the variable
/// `count_variable` when set.
fn seeds(count_variable: &str, count: u64) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var(count_variable)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(count);
            (1..=count).collect()
        }
    }
}

/// Seeds per shape besides the default one.
fn shape_seeds() -> Vec<u64> {
    seeds("SIM_SHAPE_SEEDS", 100)
}

/// What runs added up to.
#[derive(Default)]
struct Totals {
    operations: usize,
    succeeded: usize,
    hits: usize,
    indeterminate: usize,
    evicted: u64,
    faults: Tally,
}

impl Totals {
    fn of(run: &Run) -> Totals {
        let counts = support::workload::count(&run.history);
        Totals {
            operations: run.history.len(),
            succeeded: counts.ok,
            hits: counts.hits,
            indeterminate: run
                .history
                .iter()
                .filter(|op| op.outcome == Outcome::Indeterminate)
                .count(),
            evicted: run.evictions,
            faults: run.faults,
        }
    }

    fn add(&mut self, other: &Totals) {
        self.operations += other.operations;
        self.succeeded += other.succeeded;
        self.hits += other.hits;
        self.indeterminate += other.indeterminate;
        self.evicted += other.evicted;
        self.faults.add(other.faults);
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations ({} succeeded, {} hits, {} indeterminate), {} evictions, faults: {}",
            self.operations, self.succeeded, self.hits, self.indeterminate, self.evicted, self.faults
        )
    }
}

/// Checks every seed on every shape with every fault and no unsafe switch;
/// panics at the first history that is not linearizable, with its replay.
fn check_safe_shapes(test: &str, shapes: &[Shape], seeds: &[u64]) -> Totals {
    let mut totals = Totals::default();
    for shape in shapes {
        let mut shape_totals = Totals::default();
        for &seed in seeds {
            let run = simulate(Scenario::safe(seed, *shape));
            shape_totals.add(&Totals::of(&run));
            let label = format!(
                "simulation-{}n-N{}-R{}-W{}-seed-{seed}",
                shape.nodes, shape.n, shape.r, shape.w
            );
            if let Err(explanation) = history::check(&run.history, &label) {
                panic!(
                    "{shape}, seed {seed}: {explanation}\n\
                     replay: SIM_SEED={seed} cargo test --test simulation {test} -- --nocapture"
                );
            }
        }
        println!("{shape}: {shape_totals}");
        totals.add(&shape_totals);
    }
    totals
}

/// The runs did check something: most calls succeeded, reads hit, stores
/// evicted, calls were cut off, and every fault happened. Not asked of a replay
/// (SIM_SEED), whose one seed need not have met every fault.
fn assert_exercised(totals: &Totals, min_success_percent: usize) {
    if std::env::var("SIM_SEED").is_ok() {
        return;
    }
    let operations = totals.operations;
    assert!(
        totals.succeeded * 100 > operations * min_success_percent,
        "only {} of {operations} operations succeeded",
        totals.succeeded
    );
    assert!(
        totals.hits > operations / 25,
        "too few hits to check much: {}",
        totals.hits
    );
    assert!(
        totals.evicted > operations as u64 / 100,
        "the stores hardly evicted: {}",
        totals.evicted
    );
    assert!(
        totals.indeterminate > 0,
        "no call was cut off by a crash or left indeterminate"
    );
    for fault in Fault::ALL {
        assert!(totals.faults.of(fault) > 0, "no {fault:?} was injected");
    }
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let shapes = [
        vec![DEFAULT_SHAPE],
        shapes_with_n(3),
        shapes_with_n(4),
        shapes_with_n(5),
    ]
    .concat();
    for shape in shapes {
        let summary = |run: Run| format!("{:?} {:?}", run.history, run.faults);
        let (first, second) = (
            simulate(Scenario::safe(42, shape)),
            simulate(Scenario::safe(42, shape)),
        );
        assert_eq!(summary(first), summary(second), "{shape}");
    }
}

#[test]
fn every_seeded_history_is_linearizable() {
    let test = "every_seeded_history_is_linearizable";
    let totals = check_safe_shapes(test, &[DEFAULT_SHAPE], &seeds("SIM_SEEDS", 1_000));
    assert_exercised(&totals, 50);
}

#[test]
fn every_shape_with_three_replicas_is_linearizable() {
    let totals = check_safe_shapes(
        "every_shape_with_three_replicas",
        &shapes_with_n(3),
        &shape_seeds(),
    );
    assert_exercised(&totals, 40);
}

#[test]
fn every_shape_with_four_replicas_is_linearizable() {
    let totals = check_safe_shapes(
        "every_shape_with_four_replicas",
        &shapes_with_n(4),
        &shape_seeds(),
    );
    assert_exercised(&totals, 40);
}

#[test]
fn every_shape_with_five_replicas_is_linearizable() {
    let totals = check_safe_shapes(
        "every_shape_with_five_replicas",
        &shapes_with_n(5),
        &shape_seeds(),
    );
    assert_exercised(&totals, 40);
}

/// The checker has teeth: each protocol step switched off, quorums that do not
/// meet, and the one-round write where two write quorums need not meet, each
/// produce violations the simulation finds; and each fault the nemesis adds to
/// the old ones, alone on a network that otherwise delivers at once, breaks a
/// configuration that needs it.
#[test]
fn broken_protocols_are_caught() {
    let unsafe_switches = |switch: fn(&mut UnsafeSwitches)| {
        let mut switches = UnsafeSwitches::default();
        switch(&mut switches);
        switches
    };
    let (safe, no_watermarks) = (
        UnsafeSwitches::default(),
        unsafe_switches(|s| s.ignore_watermarks = true),
    );
    let r_w = |r, w| Shape {
        r,
        w,
        ..DEFAULT_SHAPE
    };
    let broken = [
        ("R = W = 1", r_w(1, 1), EVERY_FAULT, safe),
        // A write stored by one replica whose reply was lost, read from it
        // and not written back, then missed by a read of the other two.
        // A write stored by one replica only, its other messages lost, read
        // from it and not written back, then missed by a read of the others.
        (
            "no read repair, lost messages only",
            DEFAULT_SHAPE,
            FaultMix {
                loss_percent: 20,
                delays: false,
                evictions: false,
                cold_start: false,
                nemesis: &[],
            },
            unsafe_switches(|s| s.skip_read_repair = true),
        ),
        ("no watermarks", DEFAULT_SHAPE, EVERY_FAULT, no_watermarks),
        (
            "no version query",
            DEFAULT_SHAPE,
            EVERY_FAULT,
            unsafe_switches(|s| s.skip_version_query = true),
        ),
        // Each half of a split acknowledges writes; after it heals, the half
        // with the slower clocks loses its writes to the other's older ones.
        (
            "one-round write forced where 2W <= N, bipartitions only",
            Shape {
                nodes: 4,
                n: 4,
                r: 3,
                w: 2,
            },
            only(&[Fault::Bipartition]),
            unsafe_switches(|s| s.force_one_round_write = true),
        ),
        // Quorums of two of four need not meet: each half of a split completes
        // writes and reads of its own.
        (
            "W + R = N, bipartitions only",
            Shape {
                nodes: 4,
                n: 4,
                r: 2,
                w: 2,
            },
            only(&[Fault::Bipartition]),
            safe,
        ),
        // A write acknowledged by two of three replicas, then read from the
        // third alone, which the one-way loss kept it from.
        (
            "W + R = N, one-way loss only",
            r_w(1, 2),
            only(&[Fault::OneWayLoss]),
            safe,
        ),
        // A restarted node holds nothing and, ignoring its watermark, vouches
        // for older versions that another replica kept because it missed a
        // newer write (a restart alone empties the replica that misses a
        // write, hence the losses).
        (
            "no watermarks, restarts and lost messages",
            DEFAULT_SHAPE,
            FaultMix {
                loss_percent: 10,
                ..only(&[Fault::Restart])
            },
            no_watermarks,
        ),
    ];
    for (name, shape, faults, switches) in broken {
        let label = format!(
            "broken-{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let caught = (1..=1_000u64).find(|seed| {
            let run = simulate(Scenario {
                seed: *seed,
                shape,
                faults,
                switches,
            });
            history::verdict(&run.history, &label).is_err_and(|failure| failure.proven)
        });
        println!("{name} ({shape}): first violation at seed {caught:?}");
        assert!(caught.is_some(), "{name}: no violation found in 1,000 seeds");
    }
}
