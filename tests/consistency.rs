//! Jepsen-style checks of real binaries: concurrent clients record histories
//! while a nemesis (tests/support/nemesis.rs) injects faults, and every history
//! must be linearizable (with the cache's relaxation: a miss is always
//! allowed). One test per cluster configuration and fault mix, each mix a
//! rotation of faults rather than a full matrix:
//! - 3 nodes of N = 3 (the default): no faults; kills and pauses; one node cut
//!   off (links refused or blackholed); evictions, expiry and stepped restarts
//!   on skewed clocks; one-way cuts (one link, a mute node, a deaf node) and
//!   stepped restarts beside a replica left stale by a cut;
//! - 5 nodes of N = 3, 4 nodes of N = 4 with W = 2 and R = 3, 5 nodes of N = 5:
//!   bipartitions (refused and blackholed), one side's traffic lost one way, a
//!   mute node, and stepped restarts beside a stale replica, on skewed clocks.
//!
//! Clocks: nodes start with CLOCK_OFFSETs and every stepped restart draws a new
//! one, all within ±200 ms, so any two nodes stay within the default
//! MAX_CLOCK_SKEW (500 ms); each test checks the nodes logged the offsets given.
//!
//! Besides safety: enough operations succeed to check something, and every
//! fault of the rotation really happened. Availability only where the promise
//! gives it: no present key is missed with no faults, nor with one node at a
//! time killed, paused or cut off (f = 1 of N = 3), and the other nodes' errors
//! stop within RPC_TIMEOUT of a fault starting and within a handshake retry of
//! it ending. Not under bipartitions (a key may have a quorum on neither side),
//! one-way cuts (both ends of a cut may fail calls) or restarts beside a stale
//! replica (its acknowledged writes are gone: reads must miss them).
//!
//! Teeth: for each of these faults, a broken configuration whose violation the
//! checker must prove in every run, and that the fault is what exposes (without
//! faults these histories come out linearizable): the one-round write where two
//! write quorums need not meet (N = 4, W = 2, R = 3 with
//! UNSAFE_FORCE_ONE_ROUND_WRITE, the headline bug) with slow clocks cut
//! from fast ones by a bipartition, and by a one-way cut; replicas that ignore
//! their watermarks (UNSAFE_IGNORE_WATERMARKS) under stepped restarts beside a
//! stale replica.
//!
//! CI runs each fault mix for QC_NEMESIS_SECONDS (default 30; longer when its
//! rotation needs it) and each teeth test for 25 s. A soak:
//! `QC_NEMESIS_SECONDS=600 cargo test --release --test consistency -- --nocapture --test-threads 1`

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::history;
use support::nemesis::{Clocks, Fault, FaultWindow, FaultyCluster, Nemesis, OneWay, Pacing, Sides};
use support::proxy::CutMode;
use support::workload::{self, Outcome, Recorded, Workload};

/// RPC_TIMEOUT of the clusters here (base_env).
const RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after a fault starts calls to healthy nodes may still fail: the
/// calls under way may wait for RPC_TIMEOUT, plus scheduling slack on two cores.
const START_MARGIN: Duration = RPC_TIMEOUT.saturating_add(Duration::from_millis(500));
/// How long after a fault ends they may fail: the next handshake retry with the
/// healed or restarted node (at most 2 s apart), then one RPC_TIMEOUT.
const END_MARGIN: Duration = Duration::from_secs(3);
/// How long a teeth test runs: enough faults that its violation comes up every
/// run, whatever QC_NEMESIS_SECONDS says (a soak need not lengthen them).
const TEETH_TIME: Duration = Duration::from_secs(25);

/// One test at a time: the machine has two cores, and timing counts matter.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run_time() -> Duration {
    let seconds = std::env::var("QC_NEMESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RPC_TIMEOUT", "1"),
        ("LOG_LEVEL", "info"),
        ("SHUTDOWN_TIMEOUT", "2"),
    ]
}

/// A cluster configuration, its workload and the faults it runs under.
struct Scenario {
    label: &'static str,
    /// Distinct per test: it picks the nodes' loopback IPs.
    cluster_id: u8,
    nodes: usize,
    /// Beside base_env.
    env: Vec<(&'static str, &'static str)>,
    clocks: Clocks,
    /// Injected in turn, round and round.
    faults: Vec<Fault>,
    pacing: Pacing,
    keys: usize,
    set_percent: u32,
    delete_percent: u32,
    short_ttl_percent: u32,
    /// Two more clients writing 400 other keys, so small capacities evict.
    filler: bool,
    duration: Duration,
}

impl Scenario {
    fn new(label: &'static str, cluster_id: u8, nodes: usize, faults: &[Fault]) -> Self {
        Scenario {
            label,
            cluster_id,
            nodes,
            env: Vec::new(),
            clocks: Clocks::Together,
            faults: faults.to_vec(),
            pacing: Pacing::DEFAULT,
            keys: 4,
            set_percent: 40,
            delete_percent: 10,
            short_ttl_percent: 0,
            filler: false,
            duration: run_time(),
        }
    }

    /// How long the run lasts: as asked, but at least long enough for two
    /// more faults than the rotation has (a slow restart can stretch a turn),
    /// so every fault of the rotation comes up.
    fn run_length(&self) -> Duration {
        let turn = self.pacing.calm + self.pacing.fault;
        let rotation = if self.faults.is_empty() {
            Duration::ZERO
        } else {
            turn * (self.faults.len() as u32 + 2)
        };
        self.duration.max(rotation)
    }
}

/// Faults for clusters larger than three nodes or with N above 3: both kinds
/// of bipartition, one-way cuts of a side and of one node, and restarts with
/// stepped clocks beside a stale replica (one link cut one way, a deaf node
/// and single stepped restarts run on 3 nodes).
const SPLITS_CUTS_AND_STEPS: &[Fault] = &[
    Fault::Bipartition {
        mode: CutMode::Refuse,
        sides: Sides::Drawn,
    },
    Fault::OneWay(OneWay::FromSide(Sides::Drawn)),
    Fault::SteppedRestartsBesideStale,
    Fault::Bipartition {
        mode: CutMode::Blackhole,
        sides: Sides::Drawn,
    },
    Fault::OneWay(OneWay::Mute),
];

struct Run {
    label: &'static str,
    history: Vec<Recorded>,
    windows: Vec<FaultWindow>,
    /// Evictions and expirations counted by the nodes running at the end.
    evicted: f64,
    expired: f64,
    /// Per node, the CLOCK_OFFSET of each start: as given, and as logged by
    /// the node (which logs it only when it is not 0).
    clocks_given: Vec<Vec<i64>>,
    clocks_logged: Vec<Vec<i64>>,
    clock_steps: usize,
    /// Each node's log at the end, to explain failures.
    logs: Vec<String>,
    /// The run's epoch on the wall clock, to find an operation in the logs.
    epoch_unix_ns: u128,
}

/// The sum over the nodes of a counter they export on /metrics.
fn cluster_total(cluster: &FaultyCluster, counter: &str) -> f64 {
    cluster
        .metrics
        .iter()
        .map(|addr| {
            let (_, body) = support::http_get(addr, "/metrics").expect("the node serves /metrics");
            body.lines()
                .filter_map(|line| line.strip_prefix(counter)?.strip_prefix(' ')?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

async fn run_scenario(scenario: &Scenario) -> Run {
    let mut env = base_env();
    env.extend_from_slice(&scenario.env);
    let seed = 0x5eed ^ scenario.cluster_id as u64;
    let mut nemesis = Nemesis::new(seed, scenario.nodes, scenario.clocks.clone());
    let first_env = |index| nemesis.first_env(index);
    let mut cluster = FaultyCluster::start(scenario.cluster_id, scenario.nodes, &env, first_env).await;
    let endpoints: Vec<String> = (0..cluster.size())
        .map(|index| cluster.client_endpoint(index))
        .collect();
    let checked = Workload {
        clients: 6,
        keys: scenario.keys,
        set_percent: scenario.set_percent,
        delete_percent: scenario.delete_percent,
        short_ttl_percent: scenario.short_ttl_percent,
        duration: scenario.run_length(),
        call_timeout: Duration::from_secs(4),
        seed,
        first_client: 0,
    };
    let epoch = Instant::now();
    let epoch_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let clients = tokio::spawn(workload::run(endpoints.clone(), checked, epoch));
    let filler = scenario.filler.then(|| {
        let filler = Workload {
            clients: 2,
            keys: 400,
            set_percent: 100,
            delete_percent: 0,
            first_client: 100,
            ..checked
        };
        tokio::spawn(workload::run(endpoints, filler, epoch))
    });
    let windows = nemesis
        .run(
            &mut cluster,
            &scenario.faults,
            scenario.pacing,
            epoch,
            scenario.run_length(),
        )
        .await;
    let mut history = clients.await.unwrap();
    if let Some(filler) = filler {
        history.extend(filler.await.unwrap());
    }
    Run {
        label: scenario.label,
        history,
        windows,
        evicted: cluster_total(&cluster, "qc_evictions_total"),
        expired: cluster_total(&cluster, "qc_expirations_total"),
        clocks_given: nemesis.clock_offsets.clone(),
        clocks_logged: (0..cluster.size())
            .map(|index| cluster.logged_clock_offsets(index))
            .collect(),
        clock_steps: nemesis.clock_steps(),
        logs: cluster.nodes.iter().map(|node| node.log()).collect(),
        epoch_unix_ns,
    }
}

/// How many of each fault the run injected.
fn faults_injected(run: &Run) -> BTreeMap<String, usize> {
    let mut injected = BTreeMap::new();
    for window in &run.windows {
        *injected.entry(format!("{:?}", window.fault)).or_insert(0) += 1;
    }
    injected
}

fn report(run: &Run) {
    let counts = workload::count(&run.history);
    println!(
        "{}: {} ops ({} ok, {} failed, {} indeterminate; {} hits, {} misses, {} on present keys), faults {:?}, \
         {} clock steps (offsets per start {:?}), {} evictions, {} expirations",
        run.label,
        counts.ops,
        counts.ok,
        counts.failed,
        counts.indeterminate,
        counts.hits,
        counts.misses,
        workload::misses_on_present_keys(&run.history).len(),
        faults_injected(run),
        run.clock_steps,
        run.clocks_given,
        run.evicted,
        run.expired
    );
}

/// The faults asked for really happened: every fault of the rotation at least
/// once, every node ran with the clock offsets it was given, and stepped
/// restarts really stepped clocks.
fn assert_faults_happened(scenario: &Scenario, run: &Run) {
    let injected = faults_injected(run);
    for fault in &scenario.faults {
        assert!(
            injected.contains_key(&format!("{fault:?}")),
            "{}: {fault:?} was never injected ({injected:?}): the turns took longer than the run allows for",
            run.label
        );
    }
    let nonzero = |offsets: &Vec<i64>| {
        offsets
            .iter()
            .copied()
            .filter(|offset| *offset != 0)
            .collect::<Vec<_>>()
    };
    let given: Vec<Vec<i64>> = run.clocks_given.iter().map(nonzero).collect();
    assert_eq!(
        run.clocks_logged, given,
        "{}: the nodes did not log the clock offsets they were given",
        run.label
    );
    let stepping = |fault: &Fault| matches!(fault, Fault::SteppedRestart | Fault::SteppedRestartsBesideStale);
    if scenario.faults.iter().any(stepping) {
        assert!(
            run.clock_steps > 0,
            "{}: no restart stepped a clock: {:?}",
            run.label,
            run.clocks_given
        );
    }
}

/// Runs `scenario`: its history must be linearizable.
async fn safe_under(scenario: Scenario) -> Run {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let run = run_scenario(&scenario).await;
    report(&run);
    assert_faults_happened(&scenario, &run);
    let counts = workload::count(&run.history);
    assert!(
        counts.ok > counts.ops / 3,
        "{}: too few operations succeeded to check anything: {counts:?}",
        run.label
    );
    if let Err(explanation) = history::check(&run.history, &format!("consistency-{}", run.label)) {
        panic!("{}: {explanation}", run.label);
    }
    println!(
        "{}: linearizable; run and checked in {:.1} s",
        run.label,
        started.elapsed().as_secs_f64()
    );
    run
}

/// Runs a broken `scenario`: the checker must prove a violation.
async fn caught_under(scenario: Scenario, why: &str) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let run = run_scenario(&scenario).await;
    report(&run);
    assert_faults_happened(&scenario, &run);
    let failure = history::verdict(&run.history, &format!("consistency-{}", run.label))
        .expect_err(&format!("{}: {why}; the checker found no violation", run.label));
    assert!(
        failure.proven,
        "{}: a proven violation, not an undecided search: {}",
        run.label, failure.explanation
    );
    println!(
        "{}: caught, as it must be, in {:.1} s: {}",
        run.label,
        started.elapsed().as_secs_f64(),
        failure.explanation
    );
}

/// Failed calls to healthy nodes outside the detection time around a fault.
fn late_errors<'a>(history: &'a [Recorded], windows: &[FaultWindow]) -> Vec<&'a Recorded> {
    let (start_margin, end_margin) = (START_MARGIN.as_nanos() as u64, END_MARGIN.as_nanos() as u64);
    history
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Failed | Outcome::Indeterminate))
        .filter(|op| {
            !windows.iter().any(|window| {
                let near_start =
                    op.invoke_ns < window.start_ns + start_margin && op.complete_ns > window.start_ns;
                let near_end = op.invoke_ns < window.end_ns + end_margin && op.complete_ns > window.end_ns;
                let during = op.invoke_ns < window.end_ns && op.complete_ns > window.start_ns;
                near_start || near_end || (during && window.nodes.contains(&op.node))
            })
        })
        .collect()
}

/// What every node logged from a second before `op` to a second after it.
fn logs_around(run: &Run, op: &Recorded) -> String {
    let second = 1_000_000_000u128;
    let from = run.epoch_unix_ns + op.invoke_ns as u128 - second;
    let to = run.epoch_unix_ns + op.complete_ns as u128 + second;
    let mut excerpt = String::new();
    for (index, log) in run.logs.iter().enumerate() {
        for line in support::log_lines_between(log, from, to) {
            excerpt.push_str(&format!("\n    node {index}: {line}"));
        }
    }
    excerpt
}

/// With one faulty node at a time (f = 1 of N = 3): no acknowledged write is
/// missed, and healthy nodes stop failing soon after a fault starts or ends.
/// A failure shows what the nodes logged around the first offending calls.
fn assert_one_fault_is_tolerated(run: &Run) {
    let explain = |ops: &[&Recorded]| -> String {
        let first = ops
            .iter()
            .take(3)
            .map(|op| format!("{op:?}; the nodes logged:{}", logs_around(run, op)));
        first.collect::<Vec<_>>().join("\n")
    };
    let missed = workload::misses_on_present_keys(&run.history);
    let (count, first) = (missed.len(), explain(&missed));
    assert!(
        missed.is_empty(),
        "{count} acknowledged writes missed with one node faulty, the first:\n{first}"
    );
    let late = late_errors(&run.history, &run.windows);
    assert!(
        late.is_empty(),
        "{} errors on healthy nodes long after a fault, the first:\n{}",
        late.len(),
        explain(&late)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_faults_no_present_key_is_missed() {
    let calm = Scenario {
        delete_percent: 0,
        duration: Duration::from_secs(10),
        ..Scenario::new("calm", 1, 3, &[])
    };
    let run = safe_under(calm).await;
    assert_eq!(
        workload::misses_on_present_keys(&run.history).len(),
        0,
        "a present key was missed with no fault"
    );
    let counts = workload::count(&run.history);
    assert_eq!(
        (counts.failed, counts.indeterminate),
        (0, 0),
        "errors with no fault: {counts:?}"
    );
}

/// On skewed clocks, each restart stepping the node's clock: a restart must not
/// make healthy nodes refuse each other. (With a restart watermark of the
/// wall clock + MAX_CLOCK_SKEW, each peer lifted its clock past it, up to its
/// own wall + MAX_CLOCK_SKEW, which a peer whose wall was behind refused as
/// too far ahead, and present keys were missed; the watermark is now the
/// wall clock after `restart_wait`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_kills_restarts_and_pauses() {
    let faults = [Fault::SteppedRestart, Fault::Pause];
    let run = safe_under(Scenario {
        clocks: Clocks::Drawn,
        ..Scenario::new("kills-and-pauses", 2, 3, &faults)
    })
    .await;
    assert_one_fault_is_tolerated(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_partitions() {
    let refuse = Fault::Isolate(CutMode::Refuse);
    let faults = [refuse, Fault::Isolate(CutMode::Blackhole), refuse, refuse];
    let run = safe_under(Scenario::new("partitions", 3, 3, &faults)).await;
    assert_one_fault_is_tolerated(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_evictions_expiry_and_stepped_clocks() {
    let (blackhole, refuse) = (
        Fault::Isolate(CutMode::Blackhole),
        Fault::Isolate(CutMode::Refuse),
    );
    let faults = [Fault::SteppedRestart, blackhole, Fault::SteppedRestart, refuse];
    let pressure = Scenario {
        env: vec![("CAPACITY", "60"), ("NUM_SHARDS", "2")],
        clocks: Clocks::Fixed(vec![-200, 0, 200]),
        short_ttl_percent: 30,
        filler: true,
        ..Scenario::new("pressure-and-skew", 4, 3, &faults)
    };
    let run = safe_under(pressure).await;
    assert!(run.evicted > 0.0, "the pressure forced no eviction");
    assert!(run.expired > 0.0, "no short-TTL entry expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_one_way_cuts_and_restarts_beside_a_stale_replica() {
    let faults = [
        Fault::OneWay(OneWay::Link),
        Fault::OneWay(OneWay::Mute),
        Fault::SteppedRestartsBesideStale,
        Fault::OneWay(OneWay::Deaf),
    ];
    safe_under(Scenario {
        clocks: Clocks::Drawn,
        ..Scenario::new("one-way-cuts", 5, 3, &faults)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_of_n3_linearizable_under_splits_cuts_and_stepped_clocks() {
    let scenario = Scenario {
        clocks: Clocks::Drawn,
        ..Scenario::new("5-nodes-n3", 6, 5, SPLITS_CUTS_AND_STEPS)
    };
    safe_under(scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_w2_r3_linearizable_under_splits_cuts_and_stepped_clocks() {
    let scenario = Scenario {
        env: vec![
            ("REPLICATION_FACTOR", "4"),
            ("WRITE_QUORUM", "2"),
            ("READ_QUORUM", "3"),
        ],
        clocks: Clocks::Drawn,
        ..Scenario::new("n4-w2-r3", 7, 4, SPLITS_CUTS_AND_STEPS)
    };
    safe_under(scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n5_linearizable_under_splits_cuts_and_stepped_clocks() {
    let scenario = Scenario {
        env: vec![("REPLICATION_FACTOR", "5")],
        clocks: Clocks::Drawn,
        ..Scenario::new("n5", 8, 5, SPLITS_CUTS_AND_STEPS)
    };
    safe_under(scenario).await;
}

/// N = 4, W = 2, R = 3 with the one-round write forced on although two write
/// quorums need not meet (2W <= N), the slow clocks (nodes 0 and 1, 200 ms
/// behind) apart from the fast (2 and 3, 200 ms ahead) by `fault`. Without a
/// fault these histories are linearizable (every write reaches all four
/// replicas and carries its clock to them): the violation is the fault's.
fn forced_one_round_write(label: &'static str, cluster_id: u8, fault: Fault) -> Scenario {
    Scenario {
        env: vec![
            ("REPLICATION_FACTOR", "4"),
            ("WRITE_QUORUM", "2"),
            ("READ_QUORUM", "3"),
            ("UNSAFE_FORCE_ONE_ROUND_WRITE", "true"),
        ],
        clocks: Clocks::Fixed(vec![-200, -200, 200, 200]),
        keys: 32,
        pacing: Pacing {
            calm: Duration::from_millis(2_000),
            fault: Duration::from_millis(1_200),
        },
        duration: TEETH_TIME,
        ..Scenario::new(label, cluster_id, 4, &[fault])
    }
}

/// Teeth, the headline bug: with 2W <= N two disjoint pairs can each
/// acknowledge writes, and the one-round write takes one peer's store as proof
/// of order. A bipartition of the slow pair from the fast lets both pairs
/// acknowledge writes (R = 3 lets no read through); after the heal the fast
/// pair's versions win, the slow pair's acknowledged writes are lost to older
/// ones, and the next read returns a value older than an acknowledged write
/// that completed before the read began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_write_without_meeting_write_quorums_is_caught_under_a_bipartition() {
    let split = Fault::Bipartition {
        mode: CutMode::Refuse,
        sides: Sides::Fixed(&[0, 1]),
    };
    let broken = forced_one_round_write("teeth-one-round-bipartition", 9, split);
    caught_under(
        broken,
        "the one-round write with 2W <= N must lose the slow side's writes under a split",
    )
    .await;
}

/// Teeth: the same bug under a one-way cut: what the fast pair sends to the
/// slow pair vanishes. The slow pair stamps by its own clock (it hears no one
/// ahead of it) and acknowledges writes among itself, the fast pair refuses
/// them (it holds higher versions) and acknowledges its own; after the heal
/// the fast pair's older writes win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_write_without_meeting_write_quorums_is_caught_under_one_way_cuts() {
    let fast_unheard = Fault::OneWay(OneWay::FromSide(Sides::Fixed(&[2, 3])));
    let broken = forced_one_round_write("teeth-one-round-one-way", 10, fast_unheard);
    caught_under(
        broken,
        "the one-round write with 2W <= N must lose the slow side's writes under a one-way cut",
    )
    .await;
}

/// Teeth: a replica that restarted empty must not vouch for the older value
/// a replica left stale by a cut still holds; with UNSAFE_IGNORE_WATERMARKS it
/// does, and a read of the two returns that older value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_watermarks_are_caught_under_stepped_restarts() {
    let broken = Scenario {
        env: vec![("UNSAFE_IGNORE_WATERMARKS", "true")],
        clocks: Clocks::Drawn,
        keys: 16,
        duration: TEETH_TIME,
        ..Scenario::new(
            "teeth-ignore-watermarks",
            11,
            3,
            &[Fault::SteppedRestartsBesideStale],
        )
    };
    caught_under(
        broken,
        "ignoring watermarks beside a stale replica must produce a stale read",
    )
    .await;
}
