//! The consistent-hash ring: which nodes are the replicas of a key.
//!
//! Owns: placing VNODES virtual points per node on a 64-bit ring (xxh3, stable
//! across machines and releases) and walking it clockwise for the first N
//! distinct nodes, once per point when the ring is built. Every node computes
//! the same ring from the same member list.
//! Does not own: whether a node is up (`peers`), or membership changes.

use std::collections::HashMap;
use xxhash_rust::xxh3::xxh3_64;

/// The name of the hash, exchanged in handshakes so that nodes built with
/// another hash refuse to coordinate.
pub const HASH_NAME: &str = "xxh3-64";

/// A node's identity: its advertised address, as given in ADDR and PEERS.
/// A node's ADDR; shared, so that naming a node in a call, an answer or an
/// envelope costs a reference count, not an allocation.
pub type NodeId = std::sync::Arc<str>;

/// The numeric id a node puts in the versions it stamps.
pub fn node_number(node: &str) -> u64 {
    xxh3_64(node.as_bytes())
}

/// A virtual point: (hash, node index while building, then replica set index).
type Point = (u64, usize);

#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<NodeId>,
    /// Sorted by hash; each names its replica set, an index into `sets`.
    points: Vec<Point>,
    /// The distinct replica sets (indices into `nodes`, in ring order): each
    /// point's clockwise walk, done once here so that finding a key's replicas
    /// costs one binary search and allocates nothing.
    sets: Vec<Box<[usize]>>,
    replication: usize,
}

impl Ring {
    /// A ring of `members` (duplicates ignored) with `vnodes` points each; the
    /// replica sets have `replication_factor` nodes, capped at the member count.
    pub fn new(members: &[NodeId], vnodes: usize, replication_factor: usize) -> Self {
        let mut nodes: Vec<NodeId> = members.to_vec();
        nodes.sort();
        nodes.dedup();
        let mut points: Vec<(u64, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(index, node)| {
                (0..vnodes.max(1)).map(move |vnode| (xxh3_64(format!("{node}#{vnode}").as_bytes()), index))
            })
            .collect();
        points.sort_unstable();
        let replication = replication_factor.clamp(1, nodes.len().max(1));
        let (points, sets) = replica_sets(&points, replication);
        Self {
            nodes,
            points,
            sets,
            replication,
        }
    }

    /// The members, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// N, the number of replicas of every key.
    pub fn replication(&self) -> usize {
        self.replication
    }

    /// The key's replicas: the first N distinct nodes clockwise from its hash.
    pub fn replicas(&self, key: &[u8]) -> Vec<&NodeId> {
        self.replica_set_of(key)
            .map(|set| self.replica_set(set).collect())
            .unwrap_or_default()
    }

    /// Which of `replica_sets` holds the key; `None` for a ring without members.
    pub fn replica_set_of(&self, key: &[u8]) -> Option<usize> {
        let start = self.points.partition_point(|&(point, _)| point < xxh3_64(key));
        self.points
            .get(start % self.points.len().max(1))
            .map(|&(_, set)| set)
    }

    /// How many distinct replica sets the ring has (`replica_set` takes 0..that).
    pub fn replica_set_count(&self) -> usize {
        self.sets.len()
    }

    /// The nodes of one replica set, in ring order.
    pub fn replica_set(&self, set: usize) -> impl Iterator<Item = &NodeId> {
        self.sets[set].iter().map(|&node| &self.nodes[node])
    }

    /// A fingerprint of the member list, compared in handshakes.
    pub fn members_hash(&self) -> u64 {
        xxh3_64(self.nodes.join(",").as_bytes())
    }
}

/// Each point's replica set: the first `replication` distinct nodes met walking
/// clockwise from it. Returns the points relabelled with set indices, and the
/// distinct sets (few: neighbouring points mostly share theirs).
fn replica_sets(points: &[Point], replication: usize) -> (Vec<Point>, Vec<Box<[usize]>>) {
    let mut sets: Vec<Box<[usize]>> = Vec::new();
    let mut index_of: HashMap<Box<[usize]>, usize> = HashMap::new();
    let relabelled = (0..points.len())
        .map(|start| {
            let mut chosen: Vec<usize> = Vec::with_capacity(replication);
            for offset in 0..points.len() {
                let (_, node) = points[(start + offset) % points.len()];
                if !chosen.contains(&node) {
                    chosen.push(node);
                    if chosen.len() == replication {
                        break;
                    }
                }
            }
            let set = *index_of
                .entry(chosen.into_boxed_slice())
                .or_insert_with_key(|chosen| {
                    sets.push(chosen.clone());
                    sets.len() - 1
                });
            (points[start].0, set)
        })
        .collect();
    (relabelled, sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn members(count: usize) -> Vec<NodeId> {
        (1..=count).map(|n| format!("node{n}:8080").into()).collect()
    }

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..30_000).map(|n| format!("key-{n}").into_bytes())
    }

    /// Max/mean of primary ownership, printed for the record and bounded.
    fn balance(count: usize) -> f64 {
        let ring = Ring::new(&members(count), 128, 3);
        let mut owned: HashMap<&NodeId, usize> = HashMap::new();
        for key in keys() {
            *owned.entry(ring.replicas(&key)[0]).or_default() += 1;
        }
        assert_eq!(owned.len(), count, "every node owns keys");
        let max = *owned.values().max().unwrap() as f64;
        let mean = 30_000.0 / count as f64;
        max / mean
    }

    #[test]
    fn keys_spread_evenly_over_3_5_and_10_nodes() {
        for count in [3, 5, 10] {
            let ratio = balance(count);
            println!("{count} nodes, 128 vnodes: max/mean primary load = {ratio:.3}");
            assert!(ratio < 1.3, "{count} nodes: max/mean {ratio:.3}");
        }
    }

    #[test]
    fn replica_sets_are_distinct_nodes_capped_at_the_cluster_size() {
        let ring = Ring::new(&members(5), 64, 3);
        for key in keys().take(1_000) {
            let replicas = ring.replicas(&key);
            assert_eq!(replicas.len(), 3);
            let mut unique = replicas.clone();
            unique.dedup();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3);
        }
        let small = Ring::new(&members(2), 64, 3);
        assert_eq!(small.replication(), 2);
        assert_eq!(small.replicas(b"k").len(), 2);
    }

    /// The replica sets computed once per point are what walking the ring from
    /// the key's hash finds (the walk is spelled out here as the oracle).
    #[test]
    fn each_key_gets_the_first_n_distinct_nodes_clockwise_from_its_hash() {
        let nodes = members(5);
        let ring = Ring::new(&nodes, 16, 3);
        let mut points: Vec<(u64, &NodeId)> = nodes
            .iter()
            .flat_map(|node| (0..16).map(move |vnode| (xxh3_64(format!("{node}#{vnode}").as_bytes()), node)))
            .collect();
        points.sort_unstable();
        for key in keys().take(2_000).chain([Vec::new(), vec![0xff; 64]]) {
            let start = points.partition_point(|&(point, _)| point < xxh3_64(&key));
            let mut walked: Vec<&NodeId> = Vec::new();
            for &(_, node) in points.iter().cycle().skip(start) {
                if !walked.contains(&node) {
                    walked.push(node);
                }
                if walked.len() == 3 {
                    break;
                }
            }
            assert_eq!(ring.replicas(&key), walked, "key {key:?}");
        }
        assert!(ring.replica_set_count() <= 5 * 16, "one set per point at most");
        assert_eq!(
            Ring::new(&[], 16, 3).replica_set_of(b"k"),
            None,
            "no members, no replicas"
        );
    }

    #[test]
    fn every_node_computes_the_same_ring_whatever_the_member_order() {
        let mut reversed = members(5);
        reversed.reverse();
        let a = Ring::new(&members(5), 64, 3);
        let b = Ring::new(&reversed, 64, 3);
        assert_eq!(a.members_hash(), b.members_hash());
        for key in keys().take(1_000) {
            assert_eq!(a.replicas(&key), b.replicas(&key));
        }
    }

    fn moved_share(before: &Ring, after: &Ring) -> f64 {
        let moved = keys()
            .filter(|key| before.replicas(key)[0] != after.replicas(key)[0])
            .count();
        moved as f64 / 30_000.0
    }

    #[test]
    fn adding_or_removing_a_node_moves_about_one_nth_of_the_keys() {
        for count in [3, 5, 10] {
            let smaller = Ring::new(&members(count), 128, 3);
            let larger = Ring::new(&members(count + 1), 128, 3);
            let added = moved_share(&smaller, &larger);
            let removed = moved_share(&larger, &smaller);
            let ideal = 1.0 / (count + 1) as f64;
            println!(
                "{count}->{} nodes: {added:.3} moved (ideal {ideal:.3})",
                count + 1
            );
            assert!(
                (added - ideal).abs() < ideal * 0.35,
                "added: {added:.3} vs {ideal:.3}"
            );
            assert_eq!(added, removed);
        }
    }
}
