//! CAPACITY_BYTES bounds the resident memory of a full store, not only the bytes
//! of its keys and values: the per-entry charge (`ENTRY_OVERHEAD_BYTES`) must cover
//! what an entry really takes in the node's allocator.
//!
//! Owns: that one promise, measured as the growth of this process's RSS while a
//! store is filled far past its byte budget. Its own test binary, so that no other
//! test allocates meanwhile, with the node's allocator (mimalloc), so that what is
//! measured is what a node would take. Does not own: which entries are evicted
//! (the store's unit tests).

use bytes::Bytes;
use quorum_cache::clock::{ManualClock, Timestamp, Version};
use quorum_cache::store::{ENTRY_OVERHEAD_BYTES, Held, Record, Store, StoreLimits};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NEVER_MS: u64 = u64::MAX;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux) is readable");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's resident field");
    // SAFETY: getpagesize has no preconditions.
    pages * unsafe { getpagesize() } as usize
}

unsafe extern "C" {
    fn getpagesize() -> i32;
}

#[test]
fn a_store_filled_past_its_byte_budget_grows_the_process_by_about_the_budget() {
    const BUDGET: usize = 32 << 20;
    const VALUE_SIZE: usize = 100;
    let store = Store::new(
        StoreLimits {
            num_shards: 8,
            max_entries: usize::MAX,
            max_bytes: BUDGET,
        },
        ManualClock::new(1_000),
        Version::ZERO,
    );
    let entry_charge = 9 + VALUE_SIZE + ENTRY_OVERHEAD_BYTES;
    let writes = 3 * BUDGET / entry_charge;
    let before = resident_bytes();
    for i in 0..writes {
        let key = Bytes::from(format!("key{i:06}"));
        let version = Version {
            at: Timestamp {
                physical_ms: 1_000,
                logical: i as u32,
            },
            node: 1,
        };
        let record = Record {
            version,
            value: Some(Bytes::from(vec![b'v'; VALUE_SIZE])),
            expires_at_ms: NEVER_MS,
        };
        store.apply(key.clone(), record);
        // Read once, as a served entry is: the value's first clone gives it its
        // shared header, part of what an entry costs.
        assert!(
            matches!(store.read(&key, false), Held::Live { .. }),
            "entry {i} was just written"
        );
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        store.bytes() <= BUDGET,
        "the store's own count: {} > {BUDGET}",
        store.bytes()
    );
    assert!(
        store.len() < writes / 2,
        "the budget evicted most of the {writes} entries: {} held",
        store.len()
    );
    // A quarter of slack: the map's tables grow by doubling, so an entry costs
    // from about 150 to 270 bytes beyond its key and value depending on where
    // the count falls. With the old charge of 96 bytes the growth was 1.59x.
    assert!(
        grown <= BUDGET + BUDGET / 4,
        "{} entries in a budget of {BUDGET} bytes grew the process by {grown} bytes ({:.2}x the budget, \
         {} bytes per entry held); ENTRY_OVERHEAD_BYTES ({ENTRY_OVERHEAD_BYTES}) no longer covers an entry",
        store.len(),
        grown as f64 / BUDGET as f64,
        grown / store.len().max(1),
    );
}
