//! A cluster of real binaries arranged for fault injection, and the faults: each
//! node listens on its own loopback IP (127.0.0.x) behind a proxy that carries
//! all of its peer traffic; clients talk to nodes directly. Kill and restart
//! (SIGKILL, then a fresh process: an empty memory), pause (SIGSTOP/SIGCONT),
//! partition (cut the links crossing it, refusing or blackholing), one-way cuts
//! (one node's packets to another vanish, the other way still works), heal.

use super::proxy::{CutMode, Proxy};
use super::Node;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

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
    (first.local_addr().unwrap().port(), second.local_addr().unwrap().port())
}

impl FaultyCluster {
    /// `size` nodes; `per_node(i)` adds environment for node i.
    pub async fn start(cluster_id: u8, size: usize, env: &[(&str, &str)], per_node: impl Fn(usize) -> Vec<(String, String)>) -> Self {
        let ips: Vec<IpAddr> = (0..size).map(|index| node_ip(cluster_id, index)).collect();
        let ports: Vec<(u16, u16)> = ips.iter().map(|ip| free_ports_on(*ip)).collect();
        let listens: Vec<String> = ips.iter().zip(&ports).map(|(ip, (grpc, _))| format!("{ip}:{grpc}")).collect();
        let metrics: Vec<String> = ips.iter().zip(&ports).map(|(ip, (_, http))| format!("{ip}:{http}")).collect();
        let mut proxies = Vec::new();
        for listen in &listens {
            proxies.push(Proxy::start(listen.clone()).await);
        }
        let addrs: Vec<String> = proxies.iter().map(|proxy| format!("127.0.0.1:{}", proxy.port)).collect();
        let nodes = (0..size)
            .map(|index| {
                let peers = addrs.iter().filter(|addr| **addr != addrs[index]).cloned().collect::<Vec<_>>().join(",");
                let mut vars: Vec<(String, String)> = vec![
                    ("ADDR".into(), addrs[index].clone()),
                    ("LISTEN_ADDR".into(), listens[index].clone()),
                    ("PEERS".into(), peers),
                    ("METRICS_ADDR".into(), metrics[index].clone()),
                ];
                vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                vars.extend(per_node(index));
                let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut node = Node::spawn(&borrowed);
                node.direct = Some(listens[index].clone());
                node
            })
            .collect();
        let cluster = Self { nodes, metrics, proxies, ips, paused: vec![false; size] };
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
                    let request = quorum_cache::pb::SetRequest { key: "formed".into(), value: "yes".into(), ttl_seconds: Some(1) };
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

    pub async fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
        self.nodes[index].wait_serving().await;
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
