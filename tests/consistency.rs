//! Jepsen-style checks of real binaries: concurrent clients record histories
//! while a nemesis kills and restarts nodes, pauses them, partitions them, skews
//! their clocks and forces evictions and expiries; every history must be
//! linearizable (with the cache's relaxation: a miss is always allowed).
//! Besides safety, counts: no present key is missed with no faults, nor with one
//! node at a time killed, paused or cut off (f = 1 of N = 3); the other nodes'
//! errors stop within RPC_TIMEOUT of a fault starting and within a handshake
//! retry of it ending; the pressure mix really evicts and expires.
//!
//! CI runs each fault mix for QC_NEMESIS_SECONDS (default 60). A long run:
//! `QC_NEMESIS_SECONDS=600 cargo test --release --test consistency -- --nocapture --test-threads 1`

mod support;

use std::time::{Duration, Instant};
use support::history;
use support::nemesis::{CALM_TIME, FAULT_TIME, FaultyCluster};
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

/// One test at a time: the machine has two cores, and timing counts matter.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run_time() -> Duration {
    let seconds = std::env::var("QC_NEMESIS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(seconds)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mix {
    Calm,
    KillsAndPauses,
    Partitions,
    PressureAndSkew,
}

/// A fault on one node between two instants (nanoseconds since the epoch).
struct FaultWindow {
    node: usize,
    start_ns: u64,
    end_ns: u64,
}

fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![("RPC_TIMEOUT", "1"), ("LOG_LEVEL", "info"), ("SHUTDOWN_TIMEOUT", "2")]
}

async fn nemesis(cluster: &mut FaultyCluster, mix: Mix, epoch: Instant, until: Duration, seed: u64) -> Vec<FaultWindow> {
    let mut windows = Vec::new();
    let mut turn = seed as usize;
    let now_ns = |epoch: Instant| epoch.elapsed().as_nanos() as u64;
    while epoch.elapsed() + FAULT_TIME + CALM_TIME < until {
        tokio::time::sleep(CALM_TIME).await;
        turn += 1;
        let node = turn % cluster.size();
        let start_ns = now_ns(epoch);
        match (mix, turn % 2) {
            (Mix::Calm, _) => continue,
            (Mix::KillsAndPauses, 0) | (Mix::PressureAndSkew, 0) => {
                cluster.kill(node);
                tokio::time::sleep(FAULT_TIME).await;
                cluster.restart(node).await;
            }
            (Mix::KillsAndPauses, _) => {
                cluster.pause(node);
                tokio::time::sleep(FAULT_TIME).await;
                cluster.resume(node);
            }
            (Mix::Partitions, parity) | (Mix::PressureAndSkew, parity) => {
                let mode = if parity == 1 && turn % 4 == 1 { CutMode::Blackhole } else { CutMode::Refuse };
                cluster.partition(&[node], mode);
                tokio::time::sleep(FAULT_TIME).await;
                cluster.heal();
            }
        }
        windows.push(FaultWindow { node, start_ns, end_ns: now_ns(epoch) });
    }
    cluster.recover().await;
    windows
}

/// Failed calls to healthy nodes outside the detection time around a fault.
fn late_errors(history: &[Recorded], windows: &[FaultWindow]) -> Vec<Recorded> {
    let (start_margin, end_margin) = (START_MARGIN.as_nanos() as u64, END_MARGIN.as_nanos() as u64);
    history
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Failed | Outcome::Indeterminate))
        .filter(|op| {
            !windows.iter().any(|window| {
                let near_start = op.invoke_ns < window.start_ns + start_margin && op.complete_ns > window.start_ns;
                let near_end = op.invoke_ns < window.end_ns + end_margin && op.complete_ns > window.end_ns;
                let during = op.invoke_ns < window.end_ns && op.complete_ns > window.start_ns;
                near_start || near_end || (during && op.node == window.node)
            })
        })
        .cloned()
        .collect()
}

struct Run {
    history: Vec<Recorded>,
    windows: Vec<FaultWindow>,
    /// Evictions and expirations counted by the nodes running at the end.
    evicted: f64,
    expired: f64,
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

async fn run_mix(cluster_id: u8, mix: Mix, extra: &[(&'static str, &'static str)], duration: Duration) -> Run {
    let mut env = base_env();
    env.extend_from_slice(extra);
    let skew = mix == Mix::PressureAndSkew;
    let mut cluster = FaultyCluster::start(cluster_id, 3, &env, |index| {
        let offset = if skew { ["-200", "0", "200"][index] } else { "0" };
        vec![("CLOCK_OFFSET".to_string(), offset.to_string())]
    })
    .await;
    let endpoints: Vec<String> = (0..cluster.size()).map(|index| cluster.client_endpoint(index)).collect();
    let seed = 0x5eed ^ cluster_id as u64;
    let checked = Workload {
        clients: 6,
        keys: 4,
        set_percent: 40,
        delete_percent: if mix == Mix::Calm { 0 } else { 10 },
        short_ttl_percent: if mix == Mix::PressureAndSkew { 30 } else { 0 },
        duration,
        call_timeout: Duration::from_secs(4),
        seed,
        first_client: 0,
    };
    let epoch = Instant::now();
    let clients = tokio::spawn(workload::run(endpoints.clone(), checked, epoch));
    let filler = (mix == Mix::PressureAndSkew).then(|| {
        let filler = Workload { clients: 2, keys: 400, set_percent: 100, delete_percent: 0, first_client: 100, ..checked };
        tokio::spawn(workload::run(endpoints, filler, epoch))
    });
    let windows = nemesis(&mut cluster, mix, epoch, duration, seed).await;
    let mut history = clients.await.unwrap();
    if let Some(filler) = filler {
        history.extend(filler.await.unwrap());
    }
    let evicted = cluster_total(&cluster, "qc_evictions_total");
    let expired = cluster_total(&cluster, "qc_expirations_total");
    Run { history, windows, evicted, expired }
}

fn report(mix: Mix, run: &Run) {
    let counts = workload::count(&run.history);
    println!(
        "{mix:?}: {} ops ({} ok, {} failed, {} indeterminate; {} hits, {} misses, {} on present keys), {} faults, \
         {} evictions, {} expirations",
        counts.ops,
        counts.ok,
        counts.failed,
        counts.indeterminate,
        counts.hits,
        counts.misses,
        workload::misses_on_present_keys(&run.history),
        run.windows.len(),
        run.evicted,
        run.expired
    );
}

async fn safe_under(cluster_id: u8, mix: Mix, extra: &[(&'static str, &'static str)]) -> Run {
    let _serial = SERIAL.lock().await;
    let run = run_mix(cluster_id, mix, extra, run_time()).await;
    report(mix, &run);
    let counts = workload::count(&run.history);
    assert!(counts.ok > counts.ops / 3, "too few operations succeeded to check anything: {counts:?}");
    if let Err(explanation) = history::check(&run.history, &format!("consistency-{mix:?}")) {
        panic!("{mix:?}: {explanation}");
    }
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_faults_no_present_key_is_missed() {
    let _serial = SERIAL.lock().await;
    let run = run_mix(1, Mix::Calm, &[], Duration::from_secs(10)).await;
    report(Mix::Calm, &run);
    history::check(&run.history, "consistency-calm").unwrap();
    assert_eq!(workload::misses_on_present_keys(&run.history), 0, "a present key was missed with no fault");
    let counts = workload::count(&run.history);
    assert_eq!((counts.failed, counts.indeterminate), (0, 0), "errors with no fault: {counts:?}");
}

/// With one faulty node at a time (f = 1 of N = 3): no acknowledged write is
/// missed, and healthy nodes stop failing soon after a fault starts or ends.
fn assert_one_fault_is_tolerated(run: &Run) {
    assert_eq!(workload::misses_on_present_keys(&run.history), 0, "an acknowledged write was missed with one node faulty");
    let late = late_errors(&run.history, &run.windows);
    assert!(late.is_empty(), "errors on healthy nodes long after a fault: {:?}", &late[..late.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_kills_restarts_and_pauses() {
    let run = safe_under(2, Mix::KillsAndPauses, &[]).await;
    assert_one_fault_is_tolerated(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_partitions() {
    let run = safe_under(3, Mix::Partitions, &[]).await;
    assert_one_fault_is_tolerated(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_under_evictions_expiry_and_clock_skew() {
    let run = safe_under(4, Mix::PressureAndSkew, &[("CAPACITY", "60"), ("NUM_SHARDS", "2")]).await;
    assert!(run.evicted > 0.0, "the pressure forced no eviction");
    assert!(run.expired > 0.0, "no short-TTL entry expired");
}

/// The checker has teeth: with quorums that do not intersect, the same nemesis
/// produces a violation, and the checker finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_broken_configuration_is_caught() {
    let _serial = SERIAL.lock().await;
    let broken = [("READ_QUORUM", "1"), ("WRITE_QUORUM", "1")];
    let run = run_mix(5, Mix::Partitions, &broken, run_time().min(Duration::from_secs(30))).await;
    report(Mix::Partitions, &run);
    let failure = history::verdict(&run.history, "consistency-broken-quorums")
        .expect_err("R = W = 1 under partitions must produce a stale read the checker catches");
    assert!(failure.proven, "a proven violation, not an undecided search: {}", failure.explanation);
    println!("caught, as it must be: {}", failure.explanation);
}
