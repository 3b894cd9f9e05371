//! A cluster of real binaries arranged for fault injection, and the faults: each
//! node listens on its own loopback IP (127.0.0.x) behind a proxy that carries
//! all of its peer traffic; clients talk to nodes directly. Kill and restart
//! (SIGKILL, then a fresh process: an empty memory), restart with a changed
//! environment (a clock stepped by a new CLOCK_OFFSET), pause (SIGSTOP/SIGCONT),
//! partition (cut the links crossing it, refusing or blackholing), one-way cuts
//! (one node's packets to another vanish, the other way still works), heal.
//! `Nemesis` injects a rotation of these faults from a seed and records when
//! each happened, to which nodes, and every clock offset it gave a node.
//! Not here: the workload, the checks of a run (tests/consistency.rs).

use super::Node;
use super::proxy::{CutMode, Proxy};
use super::workload::Rng;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub struct FaultyCluster {
    pub nodes: Vec<Node>,
    /// Each node's METRICS_ADDR.
    pub metrics: Vec<String>,
    proxies: Vec<Proxy>,
    ips: Vec<IpAddr>,
    paused: Vec<bool>,
}

/// A loopback IP of the node `index` of cluster `cluster_id` (one per test).
fn node_ip(cluster_id: u8, index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 100 + cluster_id, 10 + index as u8))
}

/// Two distinct free ports on `ip` (gRPC, metrics), found while both are held.
fn free_ports_on(ip: IpAddr) -> (u16, u16) {
    let first = std::net::TcpListener::bind((ip, 0)).unwrap();
    let second = std::net::TcpListener::bind((ip, 0)).unwrap();
    (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    )
}

impl FaultyCluster {
    /// `size` nodes; `per_node(i)` adds environment for node i.
    pub async fn start(
        cluster_id: u8,
        size: usize,
        env: &[(&str, &str)],
        per_node: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Self {
        let ips: Vec<IpAddr> = (0..size).map(|index| node_ip(cluster_id, index)).collect();
        let ports: Vec<(u16, u16)> = ips.iter().map(|ip| free_ports_on(*ip)).collect();
        let listens: Vec<String> = ips
            .iter()
            .zip(&ports)
            .map(|(ip, (grpc, _))| format!("{ip}:{grpc}"))
            .collect();
        let metrics: Vec<String> = ips
            .iter()
            .zip(&ports)
            .map(|(ip, (_, http))| format!("{ip}:{http}"))
            .collect();
        let mut proxies = Vec::new();
        for listen in &listens {
            proxies.push(Proxy::start(listen.clone()).await);
        }
        let addrs: Vec<String> = proxies
            .iter()
            .map(|proxy| format!("127.0.0.1:{}", proxy.port))
            .collect();
        let nodes = (0..size)
            .map(|index| {
                let peers = addrs
                    .iter()
                    .filter(|addr| **addr != addrs[index])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",");
                let mut vars: Vec<(String, String)> = vec![
                    ("ADDR".into(), addrs[index].clone()),
                    ("LISTEN_ADDR".into(), listens[index].clone()),
                    ("PEERS".into(), peers),
                    ("METRICS_ADDR".into(), metrics[index].clone()),
                ];
                vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                vars.extend(per_node(index));
                let borrowed: Vec<(&str, &str)> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut node = Node::spawn(&borrowed);
                node.direct = Some(listens[index].clone());
                node
            })
            .collect();
        let cluster = Self {
            nodes,
            metrics,
            proxies,
            ips,
            paused: vec![false; size],
        };
        for node in &cluster.nodes {
            node.wait_serving().await;
        }
        cluster.wait_formed().await;
        cluster
    }

    /// Waits until a Set through every node succeeds: every node has found its
    /// peers (a node serves before its first handshakes complete).
    pub async fn wait_formed(&self) {
        for node in &self.nodes {
            let client = node.client().await;
            super::eventually(Duration::from_secs(20), "the cluster forms", || {
                let mut client = client.clone();
                async move {
                    let request = quorum_cache::pb::SetRequest {
                        key: "formed".into(),
                        value: "yes".into(),
                        ttl_seconds: Some(1),
                    };
                    client.set(request).await.is_ok()
                }
            })
            .await;
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Where clients reach node `index` (directly, not through its proxy).
    pub fn client_endpoint(&self, index: usize) -> String {
        self.nodes[index].endpoint()
    }

    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Restarts a killed node as it was; waits until it serves.
    pub async fn restart(&mut self, index: usize) {
        self.respawn(index, &[]);
        self.nodes[index].wait_serving().await;
    }

    /// Starts a killed node's process again with `changes` to its environment,
    /// without waiting: a node serves only once it sees enough members for its
    /// quorums, so several killed nodes must all be started before any serves.
    pub fn respawn(&mut self, index: usize, changes: &[(&str, &str)]) {
        self.nodes[index].restart_with(changes);
    }

    /// The CLOCK_OFFSET each start of node `index` reported in its log, in
    /// order: what the processes really ran with (a node logs its offset at
    /// start when it is not 0).
    pub fn logged_clock_offsets(&self, index: usize) -> Vec<i64> {
        self.nodes[index]
            .log()
            .lines()
            .filter_map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()?
                    .get("clock_offset_ms")?
                    .as_i64()
            })
            .collect()
    }

    pub fn pause(&mut self, index: usize) {
        self.nodes[index].signal("STOP");
        self.paused[index] = true;
    }

    pub fn resume(&mut self, index: usize) {
        self.nodes[index].signal("CONT");
        self.paused[index] = false;
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn partition(&self, side: &[usize], mode: CutMode) {
        for inside in side {
            for outside in (0..self.size()).filter(|index| !side.contains(index)) {
                self.proxies[*inside].cut_from(self.ips[outside], mode);
                self.proxies[outside].cut_from(self.ips[*inside], mode);
            }
        }
    }

    /// Cuts one direction between two nodes: what `from` sends to `to`
    /// vanishes (its requests to `to`, its replies to `to`'s requests), while
    /// what `to` sends to `from` still arrives. Connections stay up.
    pub fn cut_one_way(&self, from: usize, to: usize) {
        self.proxies[to].drop_requests_from(self.ips[from]);
        self.proxies[from].drop_replies_to(self.ips[to]);
    }

    pub fn heal(&self) {
        self.proxies.iter().for_each(Proxy::heal);
    }

    /// Ends every fault: resumes paused nodes, restarts dead ones, heals links.
    pub async fn recover(&mut self) {
        self.heal();
        for index in 0..self.size() {
            if self.paused[index] {
                self.resume(index);
            }
            if !self.nodes[index].is_running() {
                self.restart(index).await;
            }
        }
        self.wait_formed().await;
    }
}

/// How long a fault lasts and how long the cluster runs healthy between faults.
pub const FAULT_TIME: Duration = Duration::from_millis(2_500);
pub const CALM_TIME: Duration = Duration::from_millis(1_500);

/// The largest CLOCK_OFFSET the nemesis gives a node, either way: any two nodes
/// then differ by at most 400 ms, within the default MAX_CLOCK_SKEW (500 ms),
/// so every offset it draws is one the cluster promises to tolerate.
pub const MAX_OFFSET_MS: i64 = 200;
/// The least a stepped restart moves a node's clock, so a step is a real one.
const MIN_STEP_MS: i64 = 50;

/// One fault; each lasts the pacing's fault time, then ends (the killed node
/// restarted, the paused resumed, the cut healed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL one node, then a fresh process with the same environment.
    Kill,
    /// SIGKILL one node, then a fresh process with its clock stepped: a new
    /// CLOCK_OFFSET within ±MAX_OFFSET_MS, at least MIN_STEP_MS from its last.
    SteppedRestart,
    /// One node cut off (it misses what the others acknowledge), then every
    /// other node killed, the cut healed, and the killed nodes restarted with
    /// their clocks stepped: replicas that restarted empty beside one that
    /// holds older values, which their restart watermarks must keep from
    /// being read (acknowledged writes are lost, but reads must miss them).
    SteppedRestartsBesideStale,
    /// SIGSTOP one node, then SIGCONT.
    Pause,
    /// Every link of one node cut.
    Isolate(CutMode),
    /// Two groups (n/2 and the rest) that cannot reach each other, while
    /// clients still reach every node.
    Bipartition { mode: CutMode, sides: Sides },
    /// Traffic lost in one direction only.
    OneWay(OneWay),
}

/// Which nodes form the smaller side of a bipartition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    /// Drawn anew each time from the seed.
    Drawn,
    /// Always these, so a test can line the split up with the nodes' clocks.
    Fixed(&'static [usize]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneWay {
    /// What one node sends to one other vanishes.
    Link,
    /// What one node sends to every other vanishes: it hears everyone, no one
    /// hears it.
    Mute,
    /// What every other node sends to one vanishes: everyone hears it, it
    /// hears no one.
    Deaf,
    /// What the smaller side of a bipartition sends to the other side
    /// vanishes; the other side is still heard.
    FromSide(Sides),
}

/// The nodes' clocks at their first start.
#[derive(Debug, Clone)]
pub enum Clocks {
    /// Every CLOCK_OFFSET 0.
    Together,
    /// One CLOCK_OFFSET per node, in milliseconds.
    Fixed(Vec<i64>),
    /// Each node's offset drawn within ±MAX_OFFSET_MS.
    Drawn,
}

/// How long the cluster stays calm between faults and how long a fault lasts.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub calm: Duration,
    pub fault: Duration,
}

impl Pacing {
    pub const DEFAULT: Pacing = Pacing {
        calm: CALM_TIME,
        fault: FAULT_TIME,
    };
}

/// One injected fault: which, the nodes it touched, and when (nanoseconds
/// since the run's epoch, from the start of the fault to its end).
#[derive(Debug, Clone)]
pub struct FaultWindow {
    pub fault: Fault,
    pub nodes: Vec<usize>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Injects faults from a rotation, drawing nodes, sides and clock offsets from
/// a seed, and remembers what it did.
pub struct Nemesis {
    rng: Rng,
    turn: usize,
    /// Per node, the CLOCK_OFFSET of each of its starts, in order.
    pub clock_offsets: Vec<Vec<i64>>,
}

impl Nemesis {
    pub fn new(seed: u64, size: usize, clocks: Clocks) -> Self {
        let mut nemesis = Self {
            rng: Rng(seed | 1),
            turn: 0,
            clock_offsets: vec![Vec::new(); size],
        };
        for index in 0..size {
            let offset = match &clocks {
                Clocks::Together => 0,
                Clocks::Fixed(offsets) => offsets[index],
                Clocks::Drawn => nemesis.draw_offset(None),
            };
            nemesis.clock_offsets[index].push(offset);
        }
        nemesis
    }

    /// The environment of node `index`'s first start (for `FaultyCluster::start`).
    pub fn first_env(&self, index: usize) -> Vec<(String, String)> {
        vec![(
            "CLOCK_OFFSET".to_string(),
            self.clock_offsets[index][0].to_string(),
        )]
    }

    /// Until `until` after `epoch` (leaving room for a whole calm and fault):
    /// a calm spell, then the next fault of `faults`, over and over; at the
    /// end every fault is undone and the cluster formed again.
    pub async fn run(
        &mut self,
        cluster: &mut FaultyCluster,
        faults: &[Fault],
        pacing: Pacing,
        epoch: Instant,
        until: Duration,
    ) -> Vec<FaultWindow> {
        let mut windows = Vec::new();
        let now_ns = || epoch.elapsed().as_nanos() as u64;
        while epoch.elapsed() + pacing.fault + pacing.calm < until {
            tokio::time::sleep(pacing.calm).await;
            if faults.is_empty() {
                continue;
            }
            let fault = faults[self.turn % faults.len()];
            self.turn += 1;
            let start_ns = now_ns();
            let nodes = self.inject(cluster, fault, pacing.fault).await;
            windows.push(FaultWindow {
                fault,
                nodes,
                start_ns,
                end_ns: now_ns(),
            });
        }
        cluster.recover().await;
        windows
    }

    /// Applies `fault` for `hold`, undoes it; returns the nodes it touched.
    async fn inject(&mut self, cluster: &mut FaultyCluster, fault: Fault, hold: Duration) -> Vec<usize> {
        let size = cluster.size();
        let node = self.rng.below(size as u64) as usize;
        let other = (node + 1 + self.rng.below(size as u64 - 1) as usize) % size;
        let everyone: Vec<usize> = (0..size).collect();
        match fault {
            Fault::Kill | Fault::SteppedRestart => {
                cluster.kill(node);
                tokio::time::sleep(hold).await;
                self.restart(cluster, node, fault == Fault::SteppedRestart).await;
                vec![node]
            }
            Fault::SteppedRestartsBesideStale => {
                let killed: Vec<usize> = everyone.iter().copied().filter(|index| *index != node).collect();
                cluster.partition(&[node], CutMode::Refuse);
                tokio::time::sleep(hold / 2).await;
                killed.iter().for_each(|index| cluster.kill(*index));
                cluster.heal();
                tokio::time::sleep(hold / 2).await;
                for index in &killed {
                    self.respawn(cluster, *index, true);
                }
                for index in &killed {
                    cluster.nodes[*index].wait_serving().await;
                }
                everyone
            }
            Fault::Pause => {
                cluster.pause(node);
                tokio::time::sleep(hold).await;
                cluster.resume(node);
                vec![node]
            }
            Fault::Isolate(mode) => {
                cluster.partition(&[node], mode);
                tokio::time::sleep(hold).await;
                cluster.heal();
                vec![node]
            }
            Fault::Bipartition { mode, sides } => {
                let side = self.side(sides, size);
                cluster.partition(&side, mode);
                tokio::time::sleep(hold).await;
                cluster.heal();
                everyone
            }
            Fault::OneWay(shape) => {
                let others = everyone.iter().copied().filter(|index| *index != node);
                match shape {
                    OneWay::Link => cluster.cut_one_way(node, other),
                    OneWay::Mute => others.for_each(|to| cluster.cut_one_way(node, to)),
                    OneWay::Deaf => others.for_each(|from| cluster.cut_one_way(from, node)),
                    OneWay::FromSide(sides) => {
                        let side = self.side(sides, size);
                        for from in &side {
                            for to in everyone.iter().filter(|index| !side.contains(index)) {
                                cluster.cut_one_way(*from, *to);
                            }
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                cluster.heal();
                if shape == OneWay::Link {
                    vec![node, other]
                } else {
                    everyone
                }
            }
        }
    }

    /// Restarts a killed node, its clock stepped or as it was; waits until it
    /// serves.
    async fn restart(&mut self, cluster: &mut FaultyCluster, node: usize, stepped: bool) {
        self.respawn(cluster, node, stepped);
        cluster.nodes[node].wait_serving().await;
    }

    /// Starts a killed node again, its clock stepped or as it was.
    fn respawn(&mut self, cluster: &mut FaultyCluster, node: usize, stepped: bool) {
        let previous = *self.clock_offsets[node]
            .last()
            .expect("every node has a first start");
        let offset = if stepped {
            self.draw_offset(Some(previous))
        } else {
            previous
        };
        self.clock_offsets[node].push(offset);
        cluster.respawn(node, &[("CLOCK_OFFSET", &offset.to_string())]);
    }

    /// A non-zero offset within ±MAX_OFFSET_MS (a node logs its offset when it
    /// is not 0, so each start is visible in its log), at least MIN_STEP_MS
    /// from `previous`.
    fn draw_offset(&mut self, previous: Option<i64>) -> i64 {
        loop {
            let offset = self.rng.below(2 * MAX_OFFSET_MS as u64 + 1) as i64 - MAX_OFFSET_MS;
            if offset != 0 && previous.is_none_or(|previous| (offset - previous).abs() >= MIN_STEP_MS) {
                return offset;
            }
        }
    }

    /// The smaller side of a bipartition of `size` nodes: size / 2 of them,
    /// drawn or fixed.
    fn side(&mut self, sides: Sides, size: usize) -> Vec<usize> {
        match sides {
            Sides::Fixed(side) => side.to_vec(),
            Sides::Drawn => {
                let mut pool: Vec<usize> = (0..size).collect();
                (0..size / 2)
                    .map(|_| pool.swap_remove(self.rng.below(pool.len() as u64) as usize))
                    .collect()
            }
        }
    }

    /// How many restarts came back with a clock other than before.
    pub fn clock_steps(&self) -> usize {
        self.clock_offsets
            .iter()
            .map(|starts| starts.windows(2).filter(|pair| pair[0] != pair[1]).count())
            .sum()
    }
}
