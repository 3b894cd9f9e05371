//! Deterministic simulation: the real coordinators, replicas and stores of three
//! nodes on the in-memory network, on a paused tokio clock, with seeded chaos
//! (message delays and losses), crashes with restart (the calls a crashed node
//! was coordinating are cut off), partitions, evictions (each shard holds one
//! entry, so keys push each other out), expiries and clock skew. Every history is checked for linearizability; a
//! failure names its seed and replays exactly with
//! `SIM_SEED=<seed> cargo test --test simulation -- --nocapture`.

use bytes::Bytes;
use quorum_cache::clock::{Hlc, Millis, WallClock, restart_watermark};
use quorum_cache::coordinator::{Coordinator, CoordinatorError, CoordinatorSettings, UnsafeSwitches};
use quorum_cache::peers::{Peers, spawn_handshakes};
use quorum_cache::replica::{ClusterParams, Replica};
use quorum_cache::ring::{HASH_NAME, NodeId, Ring, node_number};
use quorum_cache::store::{Store, StoreLimits};
use quorum_cache::transport::Transport;
use quorum_cache::transport::memory::{Chaos, MemoryNetwork};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod support;

use support::history;
use support::workload::{Call, Outcome, Recorded};

const START_MS: Millis = 1_700_000_000_000;
const SKEW_MS: u64 = 500;
const RPC_TIMEOUT: Duration = Duration::from_millis(400);
const NODES: usize = 3;

/// Wall time derived from the paused tokio clock, shifted per node (skew).
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
}

#[derive(Clone, Copy)]
struct Scenario {
    seed: u64,
    switches: UnsafeSwitches,
    quorums: (usize, usize),
}

struct SimNode {
    coordinator: Arc<Coordinator>,
    stop_handshakes: CancellationToken,
    /// Cancelled when the node crashes: the calls it coordinates end unanswered.
    crashed: CancellationToken,
}

struct Sim {
    net: MemoryNetwork,
    names: Vec<NodeId>,
    ring: Ring,
    epoch: Instant,
    offsets: Vec<i64>,
    nodes: Mutex<Vec<Arc<SimNode>>>,
    /// Every store ever booted, crashed ones included, for the eviction count.
    stores: Mutex<Vec<Arc<Store>>>,
    scenario: Scenario,
}

impl Sim {
    fn new(scenario: Scenario, rng: &mut Rng) -> Arc<Sim> {
        let names: Vec<NodeId> = (1..=NODES).map(|n| format!("node{n}:8080").into()).collect();
        let offsets = (0..NODES).map(|_| rng.below(401) as i64 - 200).collect();
        let sim = Arc::new(Sim {
            net: MemoryNetwork::new(),
            ring: Ring::new(&names, 32, 3),
            names,
            epoch: Instant::now(),
            offsets,
            nodes: Mutex::new(Vec::new()),
            stores: Mutex::new(Vec::new()),
            scenario,
        });
        let nodes = (0..NODES).map(|index| sim.boot(index)).collect();
        *sim.nodes.lock().unwrap() = nodes;
        sim
    }

    /// Starts node `index` with an empty memory, as a crash and restart does.
    fn boot(&self, index: usize) -> Arc<SimNode> {
        let name = &self.names[index];
        let wall: Arc<dyn WallClock> = Arc::new(VirtualWall { epoch: self.epoch, offset_ms: self.offsets[index] });
        let clock = Arc::new(Hlc::new(wall.clone(), node_number(name), SKEW_MS));
        // One entry per shard: the three keys evict each other.
        let limits = StoreLimits { num_shards: 2, max_entries: 2, max_bytes: 1 << 20 };
        let store = Arc::new(Store::new(limits, wall.clone(), restart_watermark(wall.now_ms(), SKEW_MS)));
        self.stores.lock().unwrap().push(store.clone());
        let params = ClusterParams {
            replication_factor: 3,
            vnodes: 32,
            hash: HASH_NAME.into(),
            members_hash: self.ring.members_hash(),
        };
        let replica = Arc::new(Replica::new(name.clone(), params, store, clock));
        self.net.attach(replica.clone());
        let others = self.names.iter().filter(|other| *other != name).cloned();
        let peers = Arc::new(Peers::new(others, slog::Logger::root(slog::Discard, slog::o!())));
        let transport: Arc<dyn Transport> = Arc::new(self.net.clone());
        let settings = CoordinatorSettings {
            read_quorum: self.scenario.quorums.0,
            write_quorum: self.scenario.quorums.1,
            rpc_timeout: RPC_TIMEOUT,
            unsafe_switches: self.scenario.switches,
        };
        let stop_handshakes = CancellationToken::new();
        spawn_handshakes(peers.clone(), replica.clone(), transport.clone(), RPC_TIMEOUT, stop_handshakes.clone());
        let coordinator = Arc::new(Coordinator::new(replica, self.ring.clone(), transport, peers, settings));
        Arc::new(SimNode { coordinator, stop_handshakes, crashed: CancellationToken::new() })
    }

    fn node(&self, index: usize) -> Arc<SimNode> {
        self.nodes.lock().unwrap()[index].clone()
    }

    fn crash_and_restart(&self, index: usize) {
        let fresh = self.boot(index);
        let old = std::mem::replace(&mut self.nodes.lock().unwrap()[index], fresh);
        old.stop_handshakes.cancel();
        old.crashed.cancel();
    }

    fn evictions(&self) -> u64 {
        let stores = self.stores.lock().unwrap();
        stores.iter().map(|store| store.dropped().evicted.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn stop(&self) {
        for node in self.nodes.lock().unwrap().iter() {
            node.stop_handshakes.cancel();
        }
    }
}

async fn client(sim: Arc<Sim>, client: usize, ops: usize, seed: u64) -> Vec<Recorded> {
    let mut rng = Rng::new(seed ^ (client as u64 + 7) << 32);
    let mut history = Vec::new();
    for sequence in 0..ops {
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        let key = format!("k{}", rng.below(3));
        let target = rng.below(NODES as u64) as usize;
        let node = sim.node(target);
        let coordinator = node.coordinator.clone();
        let now_ms = coordinator.replica().clock().wall_ms();
        let roll = rng.below(100);
        let invoke_ns = sim.now_ns();
        let bytes_key = Bytes::from(key.clone());
        let (call, operation): (Call, std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>) = if roll < 45 {
            let value = format!("c{client}-{sequence}");
            let ttl_ms = if rng.below(4) == 0 { 100 + rng.below(1_500) } else { 60_000 };
            let bytes_value = Bytes::from(value.clone());
            let set = async move { write_outcome(coordinator.set(bytes_key, bytes_value, now_ms + ttl_ms).await.map(|_| ())) };
            (Call::Set { value, ttl_seconds: None }, Box::pin(set))
        } else if roll < 55 {
            (Call::Delete, Box::pin(async move { write_outcome(coordinator.delete(bytes_key).await.map(|_| ())) }))
        } else {
            let get = async move {
                match coordinator.get(bytes_key).await {
                    Ok(Some(found)) => Outcome::Hit(String::from_utf8(found.value.to_vec()).unwrap()),
                    Ok(None) => Outcome::Miss,
                    Err(_) => Outcome::Failed,
                }
            };
            (Call::Get, Box::pin(get))
        };
        let outcome = tokio::select! {
            biased;
            outcome = operation => outcome,
            // The coordinator died mid-call: a write may or may not have happened.
            () = node.crashed.cancelled() => if call == Call::Get { Outcome::Failed } else { Outcome::Indeterminate },
        };
        history.push(Recorded { client, node: target, key, call, invoke_ns, complete_ns: sim.now_ns(), outcome });
    }
    history
}

fn write_outcome(result: Result<(), CoordinatorError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(CoordinatorError::OutcomeUnknown { .. }) => Outcome::Indeterminate,
        Err(_) => Outcome::Failed,
    }
}

/// Crashes, partitions and evictions at random moments until `done`.
async fn nemesis(sim: Arc<Sim>, seed: u64, done: CancellationToken) -> usize {
    let mut rng = Rng::new(seed ^ 0xfa17);
    let mut faults = 0;
    while !done.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(400))).await;
        let victim = rng.below(NODES as u64) as usize;
        match rng.below(4) {
            0 => sim.crash_and_restart(victim),
            1 => {
                for other in (0..NODES).filter(|other| *other != victim) {
                    sim.net.cut(&sim.names[victim], &sim.names[other]);
                }
                tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
                sim.net.heal_links();
            }
            2 => sim.node(victim).coordinator.replica().store().forget_all(quorum_cache::clock::Version::ZERO),
            _ => {}
        }
        faults += 1;
    }
    faults
}

/// Runs one seeded scenario; returns the history, the faults injected and the
/// entries evicted.
fn simulate(scenario: Scenario) -> (Vec<Recorded>, usize, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async move {
        let mut rng = Rng::new(scenario.seed);
        let sim = Sim::new(scenario, &mut rng);
        sim.net.set_chaos(Some(Chaos {
            seed: scenario.seed,
            max_delay: Duration::from_millis(30),
            lose_request_percent: 3,
            lose_reply_percent: 3,
        }));
        let done = CancellationToken::new();
        let nemesis = tokio::spawn(nemesis(sim.clone(), scenario.seed, done.clone()));
        let clients: Vec<_> = (0..4).map(|index| tokio::spawn(client(sim.clone(), index, 30, scenario.seed))).collect();
        let mut history = Vec::new();
        for client in clients {
            history.extend(client.await.unwrap());
        }
        done.cancel();
        let faults = nemesis.await.unwrap();
        sim.stop();
        (history, faults, sim.evictions())
    })
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var("SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000);
            (1..=count).collect()
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let scenario = Scenario { seed: 42, switches: UnsafeSwitches::default(), quorums: (0, 0) };
    let (first, ..) = simulate(scenario);
    let (second, ..) = simulate(scenario);
    let summary = |history: &[Recorded]| format!("{history:?}");
    assert_eq!(summary(&first), summary(&second));
}

#[test]
fn every_seeded_history_is_linearizable() {
    let (mut operations, mut faults, mut succeeded, mut hits, mut evicted, mut cut_off) = (0, 0, 0, 0, 0, 0);
    for seed in seeds() {
        let scenario = Scenario { seed, switches: UnsafeSwitches::default(), quorums: (0, 0) };
        let (history, injected, evictions) = simulate(scenario);
        operations += history.len();
        faults += injected;
        evicted += evictions;
        cut_off += history.iter().filter(|op| op.outcome == Outcome::Indeterminate).count();
        let counts = support::workload::count(&history);
        (succeeded, hits) = (succeeded + counts.ok, hits + counts.hits);
        if let Err(explanation) = history::check(&history, &format!("simulation-seed-{seed}")) {
            panic!("seed {seed}: {explanation}\nreplay: SIM_SEED={seed} cargo test --test simulation -- --nocapture");
        }
    }
    println!(
        "simulation: {operations} operations ({succeeded} succeeded, {hits} hits, {cut_off} indeterminate), \
         {faults} faults, {evicted} evictions, 0 violations"
    );
    assert!(succeeded > operations / 2, "too few operations succeeded to check much");
    assert!(hits > operations / 10, "too few hits to check much");
    assert!(evicted > operations as u64 / 100, "the stores hardly evicted: {evicted}");
    assert!(cut_off > 0, "no call was cut off by a crash or left indeterminate");
}

/// The checker has teeth: each protocol step switched off, or quorums that do
/// not intersect, produce violations the simulation finds.
#[test]
fn broken_protocols_are_caught() {
    let broken = [
        ("R = W = 1", UnsafeSwitches::default(), (1, 1)),
        ("no read repair", UnsafeSwitches { skip_read_repair: true, ..Default::default() }, (0, 0)),
        ("no watermarks", UnsafeSwitches { ignore_watermarks: true, ..Default::default() }, (0, 0)),
        ("no version query", UnsafeSwitches { skip_version_query: true, ..Default::default() }, (0, 0)),
    ];
    for (name, switches, quorums) in broken {
        let caught = (1..=1_000u64).find(|seed| {
            let (history, ..) = simulate(Scenario { seed: *seed, switches, quorums });
            history::verdict(&history, &format!("broken-{}", name.replace(' ', "-"))).is_err_and(|failure| failure.proven)
        });
        println!("{name}: first violation at seed {caught:?}");
        assert!(caught.is_some(), "{name}: no violation found in 1,000 seeds");
    }
}
