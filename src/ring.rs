//! The consistent-hash ring: which nodes are the replicas of a key.
//!
//! Owns: placing VNODES virtual points per node on a 64-bit ring (xxh3, stable
//! across machines and releases) and walking it clockwise for the first N
//! distinct nodes. Every node computes the same ring from the same member list.
//! Does not own: whether a node is up (`peers`), or membership changes.

use xxhash_rust::xxh3::xxh3_64;

/// The name of the hash, exchanged in handshakes so that nodes built with
/// another hash refuse to coordinate.
pub const HASH_NAME: &str = "xxh3-64";

/// A node's identity: its advertised address, as given in ADDR and PEERS.
pub type NodeId = String;

/// The numeric id a node puts in the versions it stamps.
pub fn node_number(node: &str) -> u64 {
    xxh3_64(node.as_bytes())
}

#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<NodeId>,
    /// (point, index into `nodes`), sorted by point.
    points: Vec<(u64, usize)>,
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
        Self { nodes, points, replication }
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
        let mut chosen: Vec<usize> = Vec::with_capacity(self.replication);
        if self.points.is_empty() {
            return Vec::new();
        }
        let start = self.points.partition_point(|&(point, _)| point < xxh3_64(key));
        for offset in 0..self.points.len() {
            let (_, node) = self.points[(start + offset) % self.points.len()];
            if !chosen.contains(&node) {
                chosen.push(node);
                if chosen.len() == self.replication {
                    break;
                }
            }
        }
        chosen.into_iter().map(|index| &self.nodes[index]).collect()
    }

    /// A fingerprint of the member list, compared in handshakes.
    pub fn members_hash(&self) -> u64 {
        xxh3_64(self.nodes.join(",").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn members(count: usize) -> Vec<NodeId> {
        (1..=count).map(|n| format!("node{n}:8080")).collect()
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
        let moved = keys().filter(|key| before.replicas(key)[0] != after.replicas(key)[0]).count();
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
            println!("{count}->{} nodes: {added:.3} moved (ideal {ideal:.3})", count + 1);
            assert!((added - ideal).abs() < ideal * 0.35, "added: {added:.3} vs {ideal:.3}");
            assert_eq!(added, removed);
        }
    }
}
