//! Unit tests of the store: last-write-wins, tombstones, TTL under a controlled
//! clock, eviction raising the watermark, and concurrent writers.

use super::*;
use crate::clock::{ManualClock, Timestamp};

const START: u64 = 1_000_000;

fn version(ms: u64, node: u64) -> Version {
    Version {
        at: Timestamp {
            physical_ms: ms,
            logical: 0,
        },
        node,
    }
}

fn value(version: Version, text: &'static str, expires_at_ms: u64) -> Record {
    Record {
        version,
        value: Some(Bytes::from(text)),
        expires_at_ms,
    }
}

fn store(max_entries: usize, num_shards: usize) -> (Arc<ManualClock>, Store) {
    let wall = ManualClock::new(START);
    let limits = StoreLimits {
        num_shards,
        max_entries,
        max_bytes: usize::MAX / 2,
    };
    (wall.clone(), Store::new(limits, wall, Version::ZERO))
}

const FOREVER: u64 = u64::MAX;

#[test]
fn newer_write_wins_and_older_is_refused_with_the_held_version() {
    let (_, store) = store(100, 4);
    store.apply(Bytes::from("k"), value(version(10, 1), "new", FOREVER));
    let answer = store.apply(Bytes::from("k"), value(version(9, 2), "old", FOREVER));
    assert_eq!(
        answer,
        Held::Live {
            version: version(10, 1),
            value: Bytes::new(),
            expires_at_ms: FOREVER
        },
        "a digest"
    );
    assert_eq!(store.read(b"k", false).floor(), version(10, 1));
}

#[test]
fn equal_time_is_broken_by_node_id() {
    let (_, store) = store(100, 1);
    store.apply(Bytes::from("k"), value(version(10, 2), "two", FOREVER));
    store.apply(Bytes::from("k"), value(version(10, 1), "one", FOREVER));
    assert!(matches!(store.read(b"k", false), Held::Live { value, .. } if value == "two"));
}

#[test]
fn tombstone_hides_the_value_and_refuses_older_writes() {
    let (_, store) = store(100, 1);
    store.apply(Bytes::from("k"), value(version(10, 1), "v", FOREVER));
    store.apply(
        Bytes::from("k"),
        Record {
            version: version(11, 1),
            value: None,
            expires_at_ms: FOREVER,
        },
    );
    assert_eq!(
        store.read(b"k", false),
        Held::Dead {
            version: version(11, 1)
        }
    );
    store.apply(Bytes::from("k"), value(version(10, 5), "late", FOREVER));
    assert_eq!(
        store.read(b"k", false),
        Held::Dead {
            version: version(11, 1)
        }
    );
    store.apply(Bytes::from("k"), value(version(12, 1), "after", FOREVER));
    assert!(matches!(store.read(b"k", false), Held::Live { value, .. } if value == "after"));
}

#[test]
fn expired_entries_are_never_returned_and_sweeping_raises_the_watermark() {
    let (wall, store) = store(100, 1);
    store.apply(Bytes::from("k"), value(version(10, 1), "v", START + 1_000));
    assert!(matches!(store.read(b"k", false), Held::Live { .. }));
    wall.advance(1_000);
    assert_eq!(
        store.read(b"k", false),
        Held::Dead {
            version: version(10, 1)
        }
    );
    assert_eq!(store.sweep_expired(), 1);
    assert_eq!(
        store.read(b"k", false),
        Held::Nothing {
            watermark: version(10, 1)
        }
    );
    assert_eq!(store.dropped().expired.load(Ordering::Relaxed), 1);
    assert!(store.is_empty());
}

#[test]
fn nothing_at_or_below_the_watermark_is_accepted_after_forgetting() {
    let (wall, store) = store(100, 1);
    store.apply(Bytes::from("k"), value(version(10, 1), "v", START + 1));
    wall.advance(1);
    store.sweep_expired();
    let answer = store.apply(Bytes::from("k"), value(version(9, 1), "older", FOREVER));
    assert_eq!(
        answer,
        Held::Nothing {
            watermark: version(10, 1)
        }
    );
    assert!(store.is_empty(), "a write below the watermark must not be stored");
    let answer = store.apply(Bytes::from("k"), value(version(11, 1), "newer", FOREVER));
    assert_eq!(answer.floor(), version(11, 1));
}

#[test]
fn eviction_keeps_the_bound_drops_least_recently_used_and_raises_the_watermark() {
    let (_, store) = store(3, 1);
    for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
        store.apply(Bytes::from(key), value(version(10 + n as u64, 1), "v", FOREVER));
    }
    store.read(b"a", false);
    store.read(b"c", false);
    store.apply(Bytes::from("d"), value(version(20, 1), "v", FOREVER));
    assert_eq!(store.len(), 3);
    assert_eq!(store.dropped().evicted.load(Ordering::Relaxed), 1);
    assert_eq!(
        store.read(b"b", false),
        Held::Nothing {
            watermark: version(11, 1)
        },
        "b was least recently used"
    );
    assert!(
        matches!(store.read(b"d", false), Held::Live { .. }),
        "the new entry is never the victim"
    );
}

#[test]
fn byte_budget_evicts_too() {
    let wall = ManualClock::new(START);
    let per_entry = 1 + 10 + ENTRY_OVERHEAD_BYTES;
    let limits = StoreLimits {
        num_shards: 1,
        max_entries: 1_000,
        max_bytes: per_entry * 2,
    };
    let store = Store::new(limits, wall, Version::ZERO);
    for n in 0..5u64 {
        let key = Bytes::from(format!("{n}"));
        store.apply(key, value(version(10 + n, 1), "0123456789", FOREVER));
    }
    assert_eq!(store.len(), 2);
    assert!(store.bytes() <= per_entry * 2);
}

#[test]
fn initial_watermark_refuses_versions_a_previous_life_may_have_held() {
    let wall = ManualClock::new(START);
    let limits = StoreLimits {
        num_shards: 2,
        max_entries: 10,
        max_bytes: 1 << 20,
    };
    let watermark = crate::clock::restart_watermark(START);
    let store = Store::new(limits, wall, watermark);
    let answer = store.apply(
        Bytes::from("k"),
        value(version(START - 1, u64::MAX), "v", FOREVER),
    );
    assert_eq!(answer, Held::Nothing { watermark });
    assert!(store.is_empty());
}

#[test]
fn forget_all_empties_and_raises_every_watermark() {
    let (_, store) = store(100, 4);
    for n in 0..20u64 {
        store.apply(
            Bytes::from(format!("k{n}")),
            value(version(10 + n, 1), "v", FOREVER),
        );
    }
    store.forget_all(version(100, 0));
    assert!(store.is_empty());
    assert_eq!(
        store.read(b"k3", false),
        Held::Nothing {
            watermark: version(100, 0)
        }
    );
}

#[test]
fn concurrent_writers_converge_on_the_highest_version() {
    let (_, store) = store(1_000, 8);
    let store = Arc::new(store);
    let writers: Vec<_> = (0..4u64)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..2_000u64 {
                    let key = Bytes::from(format!("k{}", n % 16));
                    let record = Record {
                        version: version(n, writer),
                        value: Some(Bytes::from(format!("{writer}-{n}"))),
                        expires_at_ms: FOREVER,
                    };
                    store.apply(key, record);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for k in 0..16u64 {
        let highest_n = 2_000 - 16 + k;
        let expected = Held::Live {
            version: version(highest_n, 3),
            value: Bytes::from(format!("3-{highest_n}")),
            expires_at_ms: FOREVER,
        };
        assert_eq!(store.read(format!("k{k}").as_bytes(), false), expected);
    }
}

#[test]
fn a_digest_read_has_the_version_and_expiry_but_no_value() {
    let (_, store) = store(100, 4);
    store.apply(Bytes::from("k"), value(version(10, 1), "v", START + 5_000));
    assert_eq!(
        store.read(b"k", true),
        Held::Live {
            version: version(10, 1),
            value: Bytes::new(),
            expires_at_ms: START + 5_000
        }
    );
    assert_eq!(
        store.read(b"k", false),
        Held::Live {
            version: version(10, 1),
            value: Bytes::from("v"),
            expires_at_ms: START + 5_000
        }
    );
    assert_eq!(
        store.read(b"absent", true),
        Held::Nothing {
            watermark: Version::ZERO
        }
    );
}

#[test]
fn keys_on_both_sides_of_the_inline_size_are_kept_apart_and_forgotten_alike() {
    // 24 bytes are kept inside the map's slot, 25 on the heap; a key must never
    // be confused with its own prefix across that boundary.
    let (_, store) = store(3, 1);
    let (inline, heap, long) = ("k".repeat(24), "k".repeat(25), "k".repeat(250));
    for (n, key) in [&inline, &heap, &long].into_iter().enumerate() {
        store.apply(
            Bytes::from(key.clone()),
            value(version(10 + n as u64, 1), "v", FOREVER),
        );
    }
    for (n, key) in [&inline, &heap, &long].into_iter().enumerate() {
        assert_eq!(
            store.read(key.as_bytes(), true).floor(),
            version(10 + n as u64, 1),
            "{} bytes",
            key.len()
        );
    }
    assert_eq!(
        store.read(&heap.as_bytes()[..23], false),
        Held::Nothing {
            watermark: Version::ZERO
        }
    );
    assert_eq!(store.bytes(), 24 + 25 + 250 + 3 * (1 + ENTRY_OVERHEAD_BYTES));

    // One entry at a time: each write evicts the one before, whatever its size.
    let (_, store) = self::store(1, 1);
    store.apply(Bytes::from(inline.clone()), value(version(10, 1), "v", FOREVER));
    store.apply(Bytes::from(heap.clone()), value(version(11, 1), "v", FOREVER));
    assert_eq!(
        store.read(inline.as_bytes(), false),
        Held::Nothing {
            watermark: version(10, 1)
        }
    );
    store.apply(Bytes::from(long.clone()), value(version(12, 1), "v", FOREVER));
    assert_eq!(
        store.read(heap.as_bytes(), false),
        Held::Nothing {
            watermark: version(11, 1)
        }
    );
    assert!(matches!(store.read(long.as_bytes(), false), Held::Live { value, .. } if value == "v"));
    assert_eq!((store.len(), store.bytes()), (1, 250 + 1 + ENTRY_OVERHEAD_BYTES));
}
