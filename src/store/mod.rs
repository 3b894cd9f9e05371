//! The node's sharded, bounded, TTL-aware in-memory store of versioned records.
//!
//! Owns: spreading keys over NUM_SHARDS mutex-protected shards, the clock used
//! for expiry, and counters of what was dropped.
//! Does not own: the per-key rules (`shard.rs`), replication or quorums.

mod record;
mod shard;

pub use record::{Held, Record};
pub use shard::ENTRY_OVERHEAD_BYTES;

use crate::clock::{Version, WallClock};
use bytes::Bytes;
use parking_lot::Mutex;
use shard::Shard;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sizing of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    pub num_shards: usize,
    /// Maximum entries in the whole store (tombstones included).
    pub max_entries: usize,
    /// Maximum bytes of keys, values and per-entry overhead in the whole store.
    pub max_bytes: usize,
}

/// Counters of entries the store dropped on its own.
#[derive(Debug, Default)]
pub struct DropCounters {
    pub evicted: AtomicU64,
    pub expired: AtomicU64,
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    wall: Arc<dyn WallClock>,
    dropped: DropCounters,
}

impl Store {
    /// A store whose watermark starts at `initial_watermark`: a fresh node uses its
    /// clock plus MAX_CLOCK_SKEW, since before a restart it may have accepted
    /// any version up to the fastest clock in the cluster.
    pub fn new(limits: StoreLimits, wall: Arc<dyn WallClock>, initial_watermark: Version) -> Self {
        let num_shards = limits.num_shards.max(1);
        let shards = (0..num_shards)
            .map(|index| {
                Mutex::new(Shard::new(
                    limits.max_entries.div_ceil(num_shards),
                    limits.max_bytes.div_ceil(num_shards),
                    initial_watermark,
                    0x9e37_79b9_7f4a_7c15 ^ index as u64,
                ))
            })
            .collect();
        Self {
            shards,
            wall,
            dropped: DropCounters::default(),
        }
    }

    /// What the store holds for `key`; without the value when `digest` is set.
    pub fn read(&self, key: &[u8], digest: bool) -> Held {
        let now = self.wall.now_ms();
        self.shard(key).lock().read(key, now, digest)
    }

    /// Applies a write if newer than what is held or forgotten; answers with a
    /// digest (the version, no value) of what the replica holds afterwards.
    pub fn apply(&self, key: Bytes, record: Record) -> Held {
        let now = self.wall.now_ms();
        let (held, dropped) = self.shard(&key).lock().apply(key, record, now);
        if dropped.evicted > 0 {
            self.dropped.evicted.fetch_add(dropped.evicted, Ordering::Relaxed);
        }
        held
    }

    /// Drops expired values and old tombstones from every shard; returns how many.
    pub fn sweep_expired(&self) -> u64 {
        let now = self.wall.now_ms();
        let swept: u64 = self
            .shards
            .iter()
            .map(|shard| shard.lock().sweep_expired(now))
            .sum();
        self.dropped.expired.fetch_add(swept, Ordering::Relaxed);
        swept
    }

    /// Forgets every entry, as a crash and restart would, raising every watermark
    /// to at least `floor`.
    pub fn forget_all(&self, floor: Version) {
        for shard in self.shards.iter() {
            shard.lock().clear(floor);
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().bytes()).sum()
    }

    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// The highest watermark of any shard.
    pub fn max_watermark(&self) -> Version {
        self.shards
            .iter()
            .map(|shard| shard.lock().watermark())
            .max()
            .unwrap_or(Version::ZERO)
    }

    pub fn dropped(&self) -> &DropCounters {
        &self.dropped
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        // A different seed from the ring's, so a node's keys still spread over all shards.
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(key, 0x5eed);
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests;
