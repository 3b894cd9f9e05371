//! One shard of the store: a map from key to record, bounded in entries and bytes,
//! with approximate-LRU eviction and the shard's "forgotten" watermark.
//!
//! Owns: the replica rule (apply a write only if newer than what is held, or,
//! when nothing is held, newer than the watermark), eviction, expiry sweeping,
//! and raising the watermark for every entry it drops.
//! Does not own: locking (the store wraps each shard in a mutex) or time (the
//! caller passes `now_ms`).
//!
//! Written by hand rather than on a cache crate: which entry may be dropped, and
//! that every drop raises the watermark under the same lock as the write, is what
//! makes reads safe, so it stays in code we can reason about line by line.

use super::record::{Held, Record};
use crate::clock::{Millis, Version};
use bytes::Bytes;
use indexmap::IndexMap;
use smallvec::SmallVec;

/// Memory charged per entry beyond its key and value, so that CAPACITY_BYTES
/// bounds the resident memory the store takes, not only its payload: the map's
/// slot (key up to 24 bytes, record, LRU counter), its index, the spare room of
/// both as they grow by doubling, and the value's allocation rounded up to the
/// allocator's size class. The value is the larger of the overheads measured
/// with `quorum-cache-bench memory` on each node of three and on a single node
/// (whose values carry `bytes`' shared header, as every value does once it has
/// been read), rounded up; the figures are in docs/performance.md.
pub const ENTRY_OVERHEAD_BYTES: usize = 224;

/// How many entries eviction samples; it drops the least recently used of them
/// (Redis's approximated LRU; 5 samples is Redis's default).
const EVICTION_SAMPLES: usize = 5;

/// A key as the shard keeps it: up to 24 bytes inside the map's own slot, longer
/// ones on the heap. A lookup compares the key it probes in the slot it already
/// loaded instead of following a pointer to a separate allocation (a cache miss
/// per read on a store larger than the CPU's caches), and a short key costs no
/// allocation of its own. With 24 bytes inline the key takes four words, as a
/// `Bytes` does, so keeping it inline makes the slot no larger.
type StoredKey = SmallVec<[u8; 24]>;

struct Entry {
    record: Record,
    last_used: u64,
}

/// Why an entry left the shard, for counters and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub evicted: u64,
    pub expired: u64,
}

pub struct Shard {
    entries: IndexMap<StoredKey, Entry>,
    watermark: Version,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    use_counter: u64,
    rng: u64,
}

impl Shard {
    pub fn new(max_entries: usize, max_bytes: usize, watermark: Version, seed: u64) -> Self {
        Self {
            entries: IndexMap::new(),
            watermark,
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            bytes: 0,
            use_counter: 0,
            rng: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn watermark(&self) -> Version {
        self.watermark
    }

    /// What this replica holds for `key` at `now_ms`; a digest (no value) when
    /// `digest` is set, which leaves the value's memory untouched.
    pub fn read(&mut self, key: &[u8], now_ms: Millis, digest: bool) -> Held {
        let last_used = self.next_use();
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.last_used = last_used;
                held(&entry.record, now_ms, digest)
            }
            None => Held::Nothing {
                watermark: self.watermark,
            },
        }
    }

    /// Applies `record` if it is newer than what the shard holds (or may have
    /// forgotten), and answers with a digest of what the shard holds afterwards
    /// (a writer needs the version, never the value). The second value counts
    /// entries evicted to make room.
    pub fn apply(&mut self, key: Bytes, record: Record, now_ms: Millis) -> (Held, Dropped) {
        let last_used = self.next_use();
        if let Some(entry) = self.entries.get_mut(key.as_ref()) {
            if record.version > entry.record.version {
                self.bytes = self.bytes - weight(&key, &entry.record) + weight(&key, &record);
                entry.record = record;
            }
            entry.last_used = last_used;
            let answer = held(&entry.record, now_ms, true);
            let dropped = self.evict_over_budget(&key);
            return (answer, dropped);
        }
        if record.version <= self.watermark {
            return (
                Held::Nothing {
                    watermark: self.watermark,
                },
                Dropped::default(),
            );
        }
        self.bytes += weight(&key, &record);
        let answer = held(&record, now_ms, true);
        self.entries
            .insert(StoredKey::from_slice(&key), Entry { record, last_used });
        let dropped = self.evict_over_budget(&key);
        (answer, dropped)
    }

    /// Drops every entry whose expiry has passed (values and tombstones alike),
    /// folding their versions into the watermark.
    pub fn sweep_expired(&mut self, now_ms: Millis) -> u64 {
        let mut expired = Vec::new();
        for (index, (_, entry)) in self.entries.iter().enumerate() {
            if entry.record.expires_at_ms <= now_ms {
                expired.push(index);
            }
        }
        // Highest index first so that swap_remove does not move a pending one.
        for &index in expired.iter().rev() {
            self.forget(index);
        }
        expired.len() as u64
    }

    /// Forgets everything, as a restart does, raising the watermark to `floor`.
    pub fn clear(&mut self, floor: Version) {
        while !self.entries.is_empty() {
            self.forget(self.entries.len() - 1);
        }
        self.watermark = self.watermark.max(floor);
    }

    fn evict_over_budget(&mut self, keep: &[u8]) -> Dropped {
        let mut dropped = Dropped::default();
        while (self.entries.len() > self.max_entries || self.bytes > self.max_bytes) && self.entries.len() > 1
        {
            let Some(victim) = self.least_recently_used_sample(keep) else {
                break;
            };
            self.forget(victim);
            dropped.evicted += 1;
        }
        dropped
    }

    fn least_recently_used_sample(&mut self, keep: &[u8]) -> Option<usize> {
        let len = self.entries.len();
        let mut victim: Option<(usize, u64)> = None;
        for _ in 0..EVICTION_SAMPLES.min(len) {
            let index = (self.next_random() % len as u64) as usize;
            let (key, entry) = self.entries.get_index(index)?;
            if key.as_slice() == keep {
                continue;
            }
            if victim.is_none_or(|(_, used)| entry.last_used < used) {
                victim = Some((index, entry.last_used));
            }
        }
        victim.map(|(index, _)| index).or_else(|| {
            // Every sample hit the protected key: take any other entry.
            (0..len).find(|&index| {
                self.entries
                    .get_index(index)
                    .is_some_and(|(k, _)| k.as_slice() != keep)
            })
        })
    }

    fn forget(&mut self, index: usize) {
        if let Some((key, entry)) = self.entries.swap_remove_index(index) {
            self.bytes -= weight(&key, &entry.record);
            self.watermark = self.watermark.max(entry.record.version);
        }
    }

    fn next_use(&mut self) -> u64 {
        self.use_counter += 1;
        self.use_counter
    }

    /// xorshift64: cheap, and seeded per shard so runs are reproducible.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

fn held(record: &Record, now_ms: Millis, digest: bool) -> Held {
    match &record.value {
        Some(value) if record.is_live_at(now_ms) => Held::Live {
            version: record.version,
            value: if digest { Bytes::new() } else { value.clone() },
            expires_at_ms: record.expires_at_ms,
        },
        _ => Held::Dead {
            version: record.version,
        },
    }
}

fn weight(key: &[u8], record: &Record) -> usize {
    key.len() + record.value.as_ref().map_or(0, |value| value.len()) + ENTRY_OVERHEAD_BYTES
}
