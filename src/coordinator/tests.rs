//! Coordinator tests over the in-memory transport: failures of one and two
//! replicas, slow replicas, writes meeting newer versions, read repair,
//! forgetting replicas, clock skew and concurrent writers.

use super::*;
use crate::clock::{Hlc, ManualClock, WallClock};
use crate::peers::{PeerState, Peers};
use crate::replica::ClusterParams;
use crate::store::{Store, StoreLimits};
use crate::transport::memory::{Fault, MemoryNetwork};
use std::collections::HashMap;

const START_MS: u64 = 1_700_000_000_000;
const SKEW_MS: u64 = 500;
const TIMEOUT: Duration = Duration::from_secs(1);
const FOREVER: u64 = u64::MAX;

struct Cluster {
    net: MemoryNetwork,
    names: Vec<NodeId>,
    walls: HashMap<NodeId, Arc<ManualClock>>,
    replicas: HashMap<NodeId, Arc<Replica>>,
    ring: Ring,
    settings: CoordinatorSettings,
}

fn settings() -> CoordinatorSettings {
    CoordinatorSettings {
        read_quorum: 0,
        write_quorum: 0,
        rpc_timeout: TIMEOUT,
        unsafe_switches: UnsafeSwitches::default(),
    }
}

impl Cluster {
    fn new(size: usize) -> Self {
        Self::with_replication(size, 3)
    }

    /// `size` nodes, each key on `replication` of them.
    fn with_replication(size: usize, replication: usize) -> Self {
        let names: Vec<NodeId> = (1..=size).map(|n| format!("node{n}").into()).collect();
        let ring = Ring::new(&names, 16, replication);
        let mut cluster = Self {
            net: MemoryNetwork::new(),
            names: names.clone(),
            walls: HashMap::new(),
            replicas: HashMap::new(),
            ring,
            settings: settings(),
        };
        for name in &names {
            cluster.walls.insert(name.clone(), ManualClock::new(START_MS));
            cluster.start(name);
        }
        // Past the watermark of the first start, as a cluster is once it runs.
        cluster.advance_all(SKEW_MS + 1);
        cluster
    }

    fn params(&self) -> ClusterParams {
        ClusterParams {
            replication_factor: self.ring.replication() as u32,
            vnodes: 16,
            hash: crate::ring::HASH_NAME.into(),
            members_hash: self.ring.members_hash(),
        }
    }

    /// Starts (or restarts, with an empty store) a node.
    fn start(&mut self, name: &str) {
        let wall: Arc<dyn WallClock> = self.walls[name].clone();
        let clock = Arc::new(Hlc::new(wall.clone(), crate::ring::node_number(name), SKEW_MS));
        let limits = StoreLimits {
            num_shards: 4,
            max_entries: 1_000,
            max_bytes: 1 << 24,
        };
        let store = Arc::new(Store::new(
            limits,
            wall.clone(),
            crate::clock::restart_watermark(wall.now_ms()),
        ));
        let replica = Arc::new(Replica::new(name.into(), self.params(), store, clock));
        self.net.attach(replica.clone());
        self.replicas.insert(name.into(), replica);
    }

    /// Restarts a node with an empty store, as a real restart does: after the
    /// wait before a node builds its store (`restart_wait`), during which
    /// every wall clock moves on.
    fn restart(&mut self, name: &str) {
        self.advance_all(crate::clock::restart_wait(SKEW_MS).as_millis() as u64 + 1);
        self.start(name);
    }

    fn coordinator(&self, name: &str) -> Coordinator {
        self.coordinator_with(name, self.settings)
    }

    fn coordinator_with(&self, name: &str, settings: CoordinatorSettings) -> Coordinator {
        let others = self.names.iter().filter(|other| &***other != name).cloned();
        let peers = Arc::new(Peers::new(others, slog::Logger::root(slog::Discard, slog::o!())));
        Coordinator::new(
            self.replicas[name].clone(),
            self.ring.clone(),
            Arc::new(self.net.clone()),
            peers,
            settings,
        )
    }

    fn held(&self, name: &str, key: &str) -> Held {
        self.replicas[name].store().read(key.as_bytes(), false)
    }

    fn advance_all(&self, by_ms: u64) {
        self.walls.values().for_each(|wall| wall.advance(by_ms));
    }
}

fn key() -> Bytes {
    Bytes::from_static(b"k")
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn get_value(coordinator: &Coordinator) -> Option<Bytes> {
    coordinator.get(key()).await.unwrap().map(|found| found.value)
}

#[tokio::test(start_paused = true)]
async fn a_set_through_one_node_is_read_through_every_node() {
    let cluster = Cluster::new(3);
    let version = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    for name in ["node1", "node2", "node3"] {
        let found = cluster.coordinator(name).get(key()).await.unwrap().unwrap();
        assert_eq!((found.value, found.version), (value("v"), version), "via {name}");
    }
}

#[tokio::test(start_paused = true)]
async fn one_replica_down_sets_and_gets_still_succeed() {
    let cluster = Cluster::new(3);
    cluster.net.set_fault("node3", Fault::Down);
    cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    assert_eq!(get_value(&cluster.coordinator("node2")).await, Some(value("v")));
    assert!(matches!(cluster.held("node3", "k"), Held::Nothing { .. }));
}

#[tokio::test(start_paused = true)]
async fn two_replicas_down_fails_fast_with_counts_and_changes_nothing() {
    let cluster = Cluster::new(3);
    cluster.net.set_fault("node2", Fault::Down);
    cluster.net.set_fault("node3", Fault::Down);
    let started = tokio::time::Instant::now();
    let error = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < TIMEOUT,
        "connection refused must not wait for the timeout"
    );
    let message = error.to_string();
    // The optimistic round finds both refused and marks them down; phase 1 then
    // fails on their being down.
    assert!(
        message.starts_with("2 of 3 replicas needed, 1 answered (node"),
        "{message}"
    );
    for node in ["node2: connection refused", "node3: connection refused"] {
        assert!(message.contains(node), "{message}");
    }
    assert!(matches!(error, CoordinatorError::QuorumUnavailable { .. }));
    assert!(
        matches!(cluster.held("node1", "k"), Held::Nothing { .. }),
        "no other replica stored it: nothing written"
    );
    let read_error = cluster.coordinator("node1").get(key()).await.unwrap_err();
    assert!(
        read_error
            .to_string()
            .starts_with("2 of 3 replicas needed, 1 answered")
    );
}

#[tokio::test(start_paused = true)]
async fn unreachable_replicas_fail_after_the_rpc_timeout_and_say_timeout() {
    let cluster = Cluster::new(3);
    cluster.net.set_fault("node2", Fault::Blackhole);
    cluster.net.set_fault("node3", Fault::Blackhole);
    let started = tokio::time::Instant::now();
    let error = cluster.coordinator("node1").get(key()).await.unwrap_err();
    assert_eq!(started.elapsed(), TIMEOUT);
    assert!(error.to_string().contains("node2: timeout"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_replica_is_not_waited_for_beyond_the_quorum() {
    let mut cluster = Cluster::new(3);
    cluster.settings.rpc_timeout = Duration::from_secs(60);
    cluster
        .net
        .set_fault("node3", Fault::Slow(Duration::from_secs(10)));
    let coordinator = cluster.coordinator("node1");
    let started = tokio::time::Instant::now();
    coordinator.set(key(), value("v"), FOREVER).await.unwrap();
    assert_eq!(get_value(&coordinator).await, Some(value("v")));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the slow replica: {:?}",
        started.elapsed()
    );
}

/// A version from further ahead in time than every node's clock, on node2 and node3.
fn node2_and_node3_hold_a_newer_version(cluster: &Cluster) -> Version {
    let newer = Version {
        at: crate::clock::Timestamp {
            physical_ms: START_MS + 900,
            logical: 0,
        },
        node: 9,
    };
    for name in ["node2", "node3"] {
        let record = Record {
            version: newer,
            value: Some(value("newer")),
            expires_at_ms: FOREVER,
        };
        cluster.replicas[name].store().apply(key(), record);
    }
    newer
}

#[tokio::test(start_paused = true)]
async fn a_write_that_meets_newer_versions_is_acknowledged_once_and_never_resent() {
    let cluster = Cluster::new(3);
    // node2 and node3 already hold a version from further ahead in time; with the
    // version query skipped, the coordinator's own version is below it.
    let newer = node2_and_node3_hold_a_newer_version(&cluster);
    let unsafe_switches = UnsafeSwitches {
        skip_version_query: true,
        ..Default::default()
    };
    let coordinator = cluster.coordinator_with(
        "node1",
        CoordinatorSettings {
            unsafe_switches,
            ..settings()
        },
    );
    let version = coordinator.set(key(), value("older"), FOREVER).await.unwrap();
    assert!(version < newer);
    assert_eq!(
        cluster.net.received("node2").1,
        1,
        "exactly one write per replica"
    );
    assert_eq!(
        cluster.net.received("node3").1,
        1,
        "exactly one write per replica"
    );
    assert_eq!(
        get_value(&cluster.coordinator("node2")).await,
        Some(value("newer"))
    );
}

#[tokio::test(start_paused = true)]
async fn phase_one_orders_a_write_above_versions_from_a_faster_clock() {
    let cluster = Cluster::new(3);
    cluster.walls["node3"].advance(SKEW_MS - 200);
    cluster
        .coordinator("node3")
        .set(key(), value("from the fast clock"), FOREVER)
        .await
        .unwrap();
    cluster
        .coordinator("node1")
        .set(key(), value("later"), FOREVER)
        .await
        .unwrap();
    assert_eq!(
        get_value(&cluster.coordinator("node2")).await,
        Some(value("later"))
    );
}

/// node1 and node3 hold v2, node2 holds v1; node1 is down.
async fn disagreeing_replicas(cluster: &Cluster) {
    cluster.net.set_fault("node3", Fault::Down);
    cluster
        .coordinator("node1")
        .set(key(), value("v1"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node3", Fault::None);
    cluster.net.set_fault("node2", Fault::Down);
    let writer = cluster.coordinator("node1");
    writer.set(key(), value("v2"), FOREVER).await.unwrap();
    cluster.net.set_fault("node2", Fault::None);
    cluster.net.set_fault("node1", Fault::Down);
    assert!(matches!(cluster.held("node2", "k"), Held::Live { value, .. } if value == "v1"));
}

#[tokio::test(start_paused = true)]
async fn read_repair_writes_the_winner_back_before_answering() {
    let cluster = Cluster::new(3);
    disagreeing_replicas(&cluster).await;
    assert_eq!(get_value(&cluster.coordinator("node2")).await, Some(value("v2")));
    assert!(
        matches!(cluster.held("node2", "k"), Held::Live { value, .. } if value == "v2"),
        "the lagging replica was repaired"
    );
}

#[tokio::test(start_paused = true)]
async fn without_read_repair_the_lagging_replica_stays_behind() {
    let cluster = Cluster::new(3);
    disagreeing_replicas(&cluster).await;
    let unsafe_switches = UnsafeSwitches {
        skip_read_repair: true,
        ..Default::default()
    };
    let coordinator = cluster.coordinator_with(
        "node2",
        CoordinatorSettings {
            unsafe_switches,
            ..settings()
        },
    );
    assert_eq!(get_value(&coordinator).await, Some(value("v2")));
    assert!(matches!(cluster.held("node2", "k"), Held::Live { value, .. } if value == "v1"));
}

/// node3 holds v1; node1 holds v2; node2 held v2 but restarted empty.
async fn a_replica_forgot_the_newest(cluster: &mut Cluster) {
    cluster
        .coordinator("node1")
        .set(key(), value("v1"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node3", Fault::Down);
    cluster
        .coordinator("node1")
        .set(key(), value("v2"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node3", Fault::None);
    cluster.restart("node2");
}

#[tokio::test(start_paused = true)]
async fn a_restarted_replica_does_not_vouch_for_an_older_version() {
    let mut cluster = Cluster::new(3);
    a_replica_forgot_the_newest(&mut cluster).await;
    cluster.net.set_fault("node1", Fault::Down);
    assert_eq!(
        get_value(&cluster.coordinator("node3")).await,
        None,
        "a miss, never the older v1"
    );
    cluster.net.set_fault("node1", Fault::None);
    let coordinator = cluster.coordinator("node3");
    assert_eq!(
        get_value(&coordinator).await,
        Some(value("v2")),
        "with node1 back, the newest value"
    );
}

#[tokio::test(start_paused = true)]
async fn ignoring_watermarks_returns_the_stale_value() {
    let mut cluster = Cluster::new(3);
    a_replica_forgot_the_newest(&mut cluster).await;
    cluster.net.set_fault("node1", Fault::Down);
    let unsafe_switches = UnsafeSwitches {
        ignore_watermarks: true,
        ..Default::default()
    };
    let coordinator = cluster.coordinator_with(
        "node3",
        CoordinatorSettings {
            unsafe_switches,
            ..settings()
        },
    );
    assert_eq!(
        get_value(&coordinator).await,
        Some(value("v1")),
        "the unsafe switch must break the promise"
    );
}

#[tokio::test(start_paused = true)]
async fn an_evicting_replica_does_not_vouch_for_an_older_version() {
    let cluster = Cluster::new(3);
    cluster
        .coordinator("node1")
        .set(key(), value("v1"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node3", Fault::Down);
    cluster
        .coordinator("node1")
        .set(key(), value("v2"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node3", Fault::None);
    // node2 evicts everything (as memory pressure would): its watermark passes v2.
    let v2 = cluster.held("node1", "k").floor();
    cluster.replicas["node2"].store().forget_all(v2);
    cluster.net.set_fault("node1", Fault::Down);
    assert_eq!(get_value(&cluster.coordinator("node3")).await, None);
}

#[tokio::test(start_paused = true)]
async fn a_clock_beyond_the_skew_bound_is_refused_and_nothing_changes() {
    let cluster = Cluster::new(3);
    cluster.walls["node3"].advance(SKEW_MS + 500);
    let error = cluster
        .coordinator("node3")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("MAX_CLOCK_SKEW"), "{error}");
    for name in ["node1", "node2"] {
        assert!(
            matches!(cluster.held(name, "k"), Held::Nothing { .. }),
            "{name} changed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn deletes_and_expiry_replicate_as_misses() {
    let cluster = Cluster::new(3);
    let coordinator = cluster.coordinator("node1");
    coordinator
        .set(key(), value("v"), START_MS + 1_000)
        .await
        .unwrap();
    coordinator.delete(key()).await.unwrap();
    assert_eq!(get_value(&cluster.coordinator("node2")).await, None);
    assert!(
        matches!(cluster.held("node3", "k"), Held::Dead { .. }),
        "the tombstone replicated"
    );
    coordinator
        .set(key(), value("again"), START_MS + 1_000)
        .await
        .unwrap();
    assert_eq!(
        get_value(&cluster.coordinator("node3")).await,
        Some(value("again"))
    );
    cluster.advance_all(1_000);
    assert_eq!(
        get_value(&cluster.coordinator("node2")).await,
        None,
        "expired everywhere at once"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_is_reported_when_replies_are_lost() {
    let cluster = Cluster::new(3);
    cluster.coordinator("node1").get(key()).await.unwrap();
    cluster.net.set_fault("node2", Fault::DropReplies);
    cluster.net.set_fault("node3", Fault::DropReplies);
    let unsafe_switches = UnsafeSwitches {
        skip_version_query: true,
        ..Default::default()
    };
    let coordinator = cluster.coordinator_with(
        "node1",
        CoordinatorSettings {
            unsafe_switches,
            ..settings()
        },
    );
    let error = coordinator.set(key(), value("v"), FOREVER).await.unwrap_err();
    assert!(
        matches!(error, CoordinatorError::OutcomeUnknown { confirmed: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().starts_with("write outcome unknown"));
    assert!(
        matches!(cluster.held("node2", "k"), Held::Live { .. }),
        "it did reach node2"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_writers_on_one_key_converge_on_the_newest_acknowledged_version() {
    let cluster = Cluster::new(3);
    let coordinators: Vec<Coordinator> = cluster
        .names
        .iter()
        .map(|name| cluster.coordinator(name))
        .collect();
    let writes = coordinators.iter().enumerate().flat_map(|(writer, coordinator)| {
        (0..20).map(move |n| coordinator.set(key(), value(&format!("{writer}-{n}")), FOREVER))
    });
    let versions: Vec<Version> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut unique = versions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), versions.len(), "every write has its own version");
    let newest = *unique.last().unwrap();
    for coordinator in &coordinators {
        assert_eq!(coordinator.get(key()).await.unwrap().unwrap().version, newest);
    }
    for name in &cluster.names {
        assert_eq!(cluster.held(name, "k").floor(), newest, "{name} converged");
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_with_other_parameters_is_refused() {
    let mut cluster = Cluster::new(3);
    let odd = Arc::new(Replica::new(
        "node3".into(),
        ClusterParams {
            vnodes: 99,
            ..cluster.params()
        },
        cluster.replicas["node3"].store().clone(),
        cluster.replicas["node3"].clock().clone(),
    ));
    cluster.net.attach(odd.clone());
    cluster.replicas.insert("node3".into(), odd);
    cluster.net.set_fault("node2", Fault::Down);
    let error = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("VNODES=99"), "{error}");
}

/// node3 has just restarted: its watermark (its clock + MAX_CLOCK_SKEW) is above
/// the version node1 stamps, so it cannot store the write and answers with the
/// watermark alone. That answer must not count toward W, or the write would be
/// acknowledged while held by node1 only, and lost when node1 goes.
#[tokio::test(start_paused = true)]
async fn a_watermark_answer_does_not_count_as_holding_the_write() {
    let mut cluster = Cluster::new(3);
    // R = 1: phase 1 is answered by node1 alone, so the version is not lifted
    // above node3's restart watermark (with majorities the same happens when the
    // restarted node is not among the first R to answer).
    cluster.settings = CoordinatorSettings {
        read_quorum: 1,
        write_quorum: 2,
        ..settings()
    };
    // node3's clock runs ahead (within the bound), so its restart watermark, its
    // wall clock, is above what node1 stamps.
    cluster.walls["node3"].advance(300);
    cluster.restart("node3");
    cluster
        .net
        .set_fault("node2", Fault::Slow(Duration::from_millis(300)));
    let started = tokio::time::Instant::now();
    let version = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    assert!(
        matches!(cluster.held("node3", "k"), Held::Nothing { watermark } if watermark > version),
        "the scenario needs node3 unable to store the write"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "acknowledged before a second replica held it"
    );
    assert!(matches!(cluster.held("node2", "k"), Held::Live { version: held, .. } if held == version));
    cluster.net.set_fault("node2", Fault::None);
    cluster.net.set_fault("node1", Fault::Down);
    assert_eq!(
        get_value(&cluster.coordinator("node2")).await,
        Some(value("v")),
        "lost with node1"
    );
}

#[tokio::test(start_paused = true)]
async fn writes_still_under_way_at_the_quorum_reach_the_slow_replica() {
    let cluster = Cluster::new(3);
    cluster
        .net
        .set_fault("node3", Fault::Slow(Duration::from_millis(200)));
    let version = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    assert!(
        matches!(cluster.held("node3", "k"), Held::Nothing { .. }),
        "answered before the slow replica"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        matches!(cluster.held("node3", "k"), Held::Live { version: held, .. } if held == version),
        "the write to the slow replica was cancelled instead of finishing"
    );
}

/// The calls a write leaves under way once it has its quorum still end by the
/// write's deadline, and a replica that stayed silent is then known as down.
#[tokio::test(start_paused = true)]
async fn a_silent_replica_left_behind_by_a_write_is_marked_down_at_the_deadline() {
    let cluster = Cluster::new(3);
    cluster.net.set_fault("node3", Fault::Blackhole);
    let coordinator = cluster.coordinator("node1");
    let started = tokio::time::Instant::now();
    coordinator.set(key(), value("v"), FOREVER).await.unwrap();
    let node3: NodeId = "node3".into();
    assert!(
        started.elapsed() < TIMEOUT,
        "the write waited for the silent replica"
    );
    assert!(
        !matches!(coordinator.peers().state(&node3), Some(PeerState::Down { .. })),
        "down before its deadline"
    );
    tokio::time::sleep_until(started + TIMEOUT + Duration::from_millis(1)).await;
    assert!(
        matches!(coordinator.peers().state(&node3), Some(PeerState::Down { reason }) if reason.contains("timeout")),
        "{:?}",
        coordinator.peers().state(&node3)
    );
}

/// What the handshake's watermark is for: with majorities, node1 asks node1 and
/// node2 in phase 1, never hearing of node3's fresh restart watermark; once node1
/// has handshaken node3, its writes are stamped above it and node3 stores them.
#[tokio::test(start_paused = true)]
async fn after_a_handshake_writes_are_stamped_above_a_restarted_peers_watermark() {
    let mut cluster = Cluster::new(3);
    // node3's clock runs ahead (within the bound): its restart watermark, its
    // wall clock, is above what node1 stamps until node1 lifts its clock.
    cluster.walls["node3"].advance(300);
    cluster.restart("node3");
    cluster
        .net
        .set_fault("node3", Fault::Slow(Duration::from_millis(100)));
    let before = cluster
        .coordinator("node1")
        .set(key(), value("before"), FOREVER)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        matches!(cluster.held("node3", "k"), Held::Nothing { watermark } if watermark > before),
        "the scenario needs a write below node3's restart watermark"
    );
    let node1 = cluster.replicas["node1"].clone();
    let (state, _) = crate::peers::handshake_once(&node1, &cluster.net, &"node3".into(), TIMEOUT).await;
    assert_eq!(state, crate::peers::PeerState::Up);
    let after = cluster
        .coordinator("node1")
        .set(key(), value("after"), FOREVER)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(cluster.held("node3", "k"), Held::Live { version, .. } if version == after));
}

fn remote_reads(cluster: &Cluster) -> u64 {
    ["node2", "node3"]
        .iter()
        .map(|name| cluster.net.received(name).0)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_healthy_read_asks_only_a_read_quorum() {
    let cluster = Cluster::new(3);
    let coordinator = cluster.coordinator("node1");
    coordinator.set(key(), value("v"), FOREVER).await.unwrap();
    let before = remote_reads(&cluster);
    assert_eq!(get_value(&coordinator).await, Some(value("v")));
    assert_eq!(
        remote_reads(&cluster) - before,
        1,
        "node1 itself and one peer make R = 2"
    );
    let value_reads: u64 = ["node2", "node3"]
        .iter()
        .map(|name| cluster.net.value_reads(name))
        .sum();
    assert_eq!(
        value_reads, 0,
        "the peer sends a digest: node1 holds the newest value itself"
    );
}

/// node2 lags (v1) behind node3 (v2): the peer's digest vouches for v2, whose
/// value node2 does not have, so a second round asks for values, returns v2
/// (never v1, never the digest's empty value) and repairs node2.
#[tokio::test(start_paused = true)]
async fn a_lagging_coordinator_fetches_the_newest_value_in_a_second_round() {
    let cluster = Cluster::new(3);
    disagreeing_replicas(&cluster).await;
    let before = (cluster.net.received("node3").0, cluster.net.value_reads("node3"));
    assert_eq!(get_value(&cluster.coordinator("node2")).await, Some(value("v2")));
    let after = (cluster.net.received("node3").0, cluster.net.value_reads("node3"));
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 1),
        "a digest round, then a round with values"
    );
    assert!(
        matches!(cluster.held("node2", "k"), Held::Live { value, .. } if value == "v2"),
        "node2 was repaired"
    );
    let before = cluster.net.value_reads("node3");
    assert_eq!(get_value(&cluster.coordinator("node2")).await, Some(value("v2")));
    assert_eq!(
        cluster.net.value_reads("node3"),
        before,
        "once repaired, node2 answers from its own value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_replica_is_passed_over_long_before_the_rpc_timeout() {
    let cluster = Cluster::new(3);
    let coordinator = cluster.coordinator("node1");
    coordinator.set(key(), value("v"), FOREVER).await.unwrap();
    for silent in ["node2", "node3"] {
        cluster.net.set_fault(silent, Fault::Blackhole);
        let started = tokio::time::Instant::now();
        assert_eq!(get_value(&coordinator).await, Some(value("v")), "{silent} silent");
        assert!(
            started.elapsed() < TIMEOUT,
            "{silent} silent: waited {:?}",
            started.elapsed()
        );
        cluster.net.set_fault(silent, Fault::None);
    }
}

/// Each node asks the same peer first whatever the key (the next member after
/// it, wrapping around), so that its calls share batches; and every node is
/// the first choice of exactly one other, so the load stays even.
#[tokio::test(start_paused = true)]
async fn every_key_is_read_from_the_same_next_member() {
    let cluster = Cluster::new(3);
    let keys: Vec<Bytes> = (0..40).map(|n| Bytes::from(format!("key-{n}"))).collect();
    for (coordinator, preferred) in [("node1", "node2"), ("node2", "node3"), ("node3", "node1")] {
        let coordinator = cluster.coordinator(coordinator);
        let before: Vec<u64> = cluster
            .names
            .iter()
            .map(|name| cluster.net.received(name).0)
            .collect();
        for key in &keys {
            assert_eq!(coordinator.get(key.clone()).await.unwrap(), None);
        }
        for (name, before) in cluster.names.iter().zip(before) {
            let reads = cluster.net.received(name).0 - before;
            let expected = if **name == *preferred {
                keys.len() as u64
            } else {
                0
            };
            assert_eq!(
                reads,
                expected,
                "reads of {} keys that reached {name}",
                keys.len()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_write_takes_one_round_and_no_version_query() {
    let cluster = Cluster::new(3);
    let version = cluster
        .coordinator("node1")
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    assert_eq!(
        remote_reads(&cluster),
        0,
        "the optimistic write asks no replica for its version"
    );
    for name in ["node1", "node2", "node3"] {
        assert!(
            matches!(cluster.held(name, "k"), Held::Live { version: held, .. } if held == version),
            "{name}"
        );
    }
}

/// node3's clock runs ahead and node1 missed its write, so node1's optimistic
/// version is below what node2 and node3 hold: they refuse it, and the two
/// phases stamp the write above the newer version.
#[tokio::test(start_paused = true)]
async fn an_optimistic_write_below_a_completed_one_falls_back_to_the_version_query() {
    let cluster = Cluster::new(3);
    cluster.walls["node3"].advance(SKEW_MS - 200);
    cluster.net.set_fault("node1", Fault::Down);
    let ahead = cluster
        .coordinator("node3")
        .set(key(), value("from the fast clock"), FOREVER)
        .await
        .unwrap();
    cluster.net.set_fault("node1", Fault::None);
    assert!(
        matches!(cluster.held("node1", "k"), Held::Nothing { .. }),
        "the scenario needs node1 to have missed it"
    );
    let later = cluster
        .coordinator("node1")
        .set(key(), value("later"), FOREVER)
        .await
        .unwrap();
    assert!(
        later > ahead,
        "a write that began after another completed must be ordered after it"
    );
    assert!(
        remote_reads(&cluster) >= 1,
        "the fallback asks for the versions held"
    );
    assert_eq!(
        get_value(&cluster.coordinator("node2")).await,
        Some(value("later"))
    );
}

/// Once the optimistic round meets a refusal, the write is stamped anew, above
/// the newer version, and acknowledged only when W replicas hold it.
#[tokio::test(start_paused = true)]
async fn a_refused_optimistic_write_is_stamped_again_above_the_newer_version() {
    let cluster = Cluster::new(3);
    let newer = node2_and_node3_hold_a_newer_version(&cluster);
    let restamped = Arc::new(CountRestamps::default());
    let coordinator = cluster.coordinator("node1").with_observer(restamped.clone());
    let version = coordinator.set(key(), value("mine"), FOREVER).await.unwrap();
    assert!(version > newer);
    assert_eq!(
        restamped.0.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the refusal is reported once"
    );
    let holders = ["node1", "node2", "node3"]
        .iter()
        .filter(|name| matches!(cluster.held(name, "k"), Held::Live { version: held, .. } if held == version))
        .count();
    assert!(holders >= 2, "acknowledged while {holders} replica(s) held it");
    assert_eq!(
        get_value(&cluster.coordinator("node3")).await,
        Some(value("mine"))
    );
}

#[derive(Default)]
struct CountRestamps(std::sync::atomic::AtomicU64);

impl Observer for CountRestamps {
    fn write_restamped(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The node's timer anchor only spares wake-ups if it is due before every hedge
/// timer armed after it.
#[test]
fn the_timer_anchor_period_is_below_the_hedge_delay() {
    let cluster = Cluster::new(3);
    for rpc_timeout_ms in [20, 500, 750, 5_000, 60_000] {
        let rpc_timeout = Duration::from_millis(rpc_timeout_ms);
        let coordinator = cluster.coordinator_with(
            "node1",
            CoordinatorSettings {
                rpc_timeout,
                ..settings()
            },
        );
        let (anchor, hedge) = (coordinator.timer_anchor_period(), coordinator.hedge_delay());
        assert!(
            anchor < hedge,
            "RPC_TIMEOUT {rpc_timeout:?}: anchor {anchor:?}, hedge {hedge:?}"
        );
    }
}

/// Four nodes, every key on all four (N = 4), W = 2, R = 3, split into
/// {node1, node2} | {node3, node4}, with node3 and node4's clocks ahead (within
/// the bound). A write through node3 on its side, then one through node1 on
/// the other; returns both outcomes and what a read after healing returns.
async fn writes_on_both_sides_of_a_split(
    switches: UnsafeSwitches,
) -> [Result<Option<Bytes>, CoordinatorError>; 3] {
    let cluster = Cluster::with_replication(4, 4);
    let settings = CoordinatorSettings {
        read_quorum: 3,
        write_quorum: 2,
        unsafe_switches: switches,
        ..settings()
    };
    for fast in ["node3", "node4"] {
        cluster.walls[fast].advance(SKEW_MS - 100);
    }
    for slow in ["node1", "node2"] {
        for fast in ["node3", "node4"] {
            cluster.net.cut(slow, fast);
        }
    }
    let first = cluster
        .coordinator_with("node3", settings)
        .set(key(), value("first"), FOREVER)
        .await
        .map(|_| None);
    let second = cluster
        .coordinator_with("node1", settings)
        .set(key(), value("second"), FOREVER)
        .await
        .map(|_| None);
    cluster.net.heal_links();
    let read = cluster
        .coordinator_with("node2", settings)
        .get(key())
        .await
        .map(|found| found.map(|found| found.value));
    [first, second, read]
}

/// With 2W <= N two write quorums need not meet, so the one-round write's proof
/// of order does not hold: every write takes both phases, whose first cannot
/// gather R = 3 answers on either side of the split, and changes nothing.
#[tokio::test(start_paused = true)]
async fn with_write_quorums_that_need_not_meet_a_write_takes_both_phases() {
    let [first, second, read] = writes_on_both_sides_of_a_split(UnsafeSwitches::default()).await;
    for write in [first, second] {
        assert!(
            matches!(
                write,
                Err(CoordinatorError::QuorumUnavailable {
                    needed: 3,
                    answered: 2,
                    ..
                })
            ),
            "phase 1 needs R = 3 answers and changes nothing without them: {write:?}"
        );
    }
    assert_eq!(read, Ok(None));
}

/// The same with the one-round write forced on: both sides acknowledge their
/// write, node1's after node3's completed, yet a later read returns node3's
/// (it has the newer version, from the faster clock): a stale read, which is
/// why the one-round write needs 2W > N.
#[tokio::test(start_paused = true)]
async fn the_one_round_write_forced_on_with_disjoint_write_quorums_reads_stale() {
    let forced = UnsafeSwitches {
        force_one_round_write: true,
        ..Default::default()
    };
    let [first, second, read] = writes_on_both_sides_of_a_split(forced).await;
    assert_eq!(
        (first, second),
        (Ok(None), Ok(None)),
        "each side's pair acknowledges its write"
    );
    assert_eq!(
        read,
        Ok(Some(value("first"))),
        "the acknowledged later write is lost to the older one"
    );
}

/// node3's clock runs MAX_CLOCK_SKEW - 100 ms ahead and it holds a version
/// at its own bound (its wall clock + MAX_CLOCK_SKEW), 2 * MAX_CLOCK_SKEW -
/// 100 ms ahead of node1's wall clock. A write through node1 whose first phase
/// meets it (R = 3) must not stamp above it before node1's own wall clock
/// allows: a version beyond node1's wall + MAX_CLOCK_SKEW could escape node1's
/// restart watermark. Returns the version node3 holds.
fn node3_holds_a_version_at_its_bound(cluster: &Cluster) -> Version {
    cluster.walls["node3"].advance(SKEW_MS - 100);
    let at_bound = Version::from_millis(cluster.walls["node3"].now_ms() + SKEW_MS);
    let record = Record {
        version: at_bound,
        value: Some(value("from the fast clock")),
        expires_at_ms: FOREVER,
    };
    cluster.replicas["node3"].store().apply(key(), record);
    at_bound
}

/// With the wall clocks running, the write waits for room, then is stamped
/// above node3's version and within node1's bound.
#[tokio::test(start_paused = true)]
async fn a_write_is_never_stamped_beyond_the_wall_clock_plus_the_skew() {
    let cluster = Cluster::new(3);
    let ahead = node3_holds_a_version_at_its_bound(&cluster);
    let walls: Vec<Arc<ManualClock>> = cluster.walls.values().cloned().collect();
    let ticking = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            walls.iter().for_each(|wall| wall.advance(1));
        }
    });
    let settings = CoordinatorSettings {
        read_quorum: 3,
        write_quorum: 1,
        ..settings()
    };
    let started = cluster.walls["node1"].now_ms();
    let version = cluster
        .coordinator_with("node1", settings)
        .set(key(), value("v"), FOREVER)
        .await
        .unwrap();
    let stamped_at = cluster.walls["node1"].now_ms();
    ticking.abort();
    assert!(version > ahead, "phase 1 orders the write above node3's version");
    assert!(
        version.at.physical_ms <= stamped_at + SKEW_MS,
        "stamped at {version}, beyond node1's wall {stamped_at} + {SKEW_MS} ms"
    );
    assert!(
        stamped_at - started >= SKEW_MS - 100,
        "the write waited for its wall clock: {} ms",
        stamped_at - started
    );
    let restarted_at = stamped_at + crate::clock::restart_wait(SKEW_MS).as_millis() as u64 + 1;
    let held = cluster.held("node1", "k");
    assert!(
        crate::clock::restart_watermark(restarted_at) > held.floor(),
        "a restart covers {held:?}"
    );
}

/// The same with the wall clocks standing still: the write cannot get room,
/// fails saying so and that nothing was changed, and node1's clock has not
/// moved beyond its bound (node2 still accepts its messages).
#[tokio::test(start_paused = true)]
async fn a_write_that_cannot_stamp_within_the_bound_changes_nothing() {
    let cluster = Cluster::new(3);
    let ahead = node3_holds_a_version_at_its_bound(&cluster);
    let settings = CoordinatorSettings {
        read_quorum: 3,
        write_quorum: 1,
        ..settings()
    };
    let coordinator = cluster.coordinator_with("node1", settings);
    let error = coordinator.set(key(), value("v"), FOREVER).await.unwrap_err();
    assert!(
        matches!(error, CoordinatorError::ClockBehind { beyond } if beyond.ahead_ms == SKEW_MS - 100),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("nothing was changed") && message.contains("MAX_CLOCK_SKEW"),
        "{message}"
    );
    for name in ["node1", "node2"] {
        assert!(
            matches!(cluster.held(name, "k"), Held::Nothing { .. }),
            "{name} holds {:?}",
            cluster.held(name, "k")
        );
    }
    assert_eq!(
        cluster.held("node3", "k").held_version(),
        Some(ahead),
        "node3 still holds only its own"
    );
    let envelope = cluster.replicas["node1"].envelope_to(&"node2".into());
    assert!(
        cluster.replicas["node2"].read(&envelope, b"k", true).is_ok(),
        "node1's clock stayed within the bound"
    );
}

/// A peer's write whose version lies beyond this node's wall clock +
/// MAX_CLOCK_SKEW is refused and stores nothing, even with an envelope clock
/// within the bound: what a node stores must stay below its restart watermark.
#[tokio::test(start_paused = true)]
async fn a_replica_refuses_a_version_beyond_its_bound() {
    let cluster = Cluster::new(3);
    let node2 = &cluster.replicas["node2"];
    let envelope = cluster.replicas["node1"].envelope_to(&"node2".into());
    let bound = cluster.walls["node2"].now_ms() + SKEW_MS;
    let record = |ms| Record {
        version: Version::from_millis(ms),
        value: Some(value("v")),
        expires_at_ms: FOREVER,
    };
    let refused = node2.write(&envelope, key(), record(bound + 1)).unwrap_err();
    assert!(
        matches!(&refused, crate::replica::Refusal::VersionAhead { beyond, .. } if beyond.ahead_ms == 1),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("MAX_CLOCK_SKEW"), "{refused}");
    assert!(matches!(cluster.held("node2", "k"), Held::Nothing { .. }));
    assert!(matches!(
        PeerError::from(refused),
        PeerError::Refused {
            kind: crate::transport::RefusalKind::ClockAhead,
            ..
        }
    ));
    node2
        .write(&envelope, key(), record(bound))
        .expect("a version at the bound is stored");
    assert!(matches!(cluster.held("node2", "k"), Held::Live { .. }));
}
