//! Cheap 64-bit fingerprints for memoising search configurations: a bit mixer that spreads
//! small integers (op indices, register states) over 64 bits, and a hasher that passes an
//! already mixed fingerprint through unchanged.
//!
//! Fingerprints only pick a bucket: equal fingerprints are always confirmed by comparing the
//! configurations in full (see `seen`), so a collision costs time, never correctness.

use std::hash::{BuildHasherDefault, Hasher};

/// SplitMix64's finaliser: a bijection on u64 whose outputs look independent.
pub(super) fn mix64(input: u64) -> u64 {
    let mut z = input.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// For maps keyed by a fingerprint: re-hashing it would only cost time.
#[derive(Debug, Default)]
pub(super) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u64; fold them in rather than lose them.
        for &byte in bytes {
            self.0 = mix64(self.0 ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, fingerprint: u64) {
        self.0 = fingerprint;
    }
}

pub(super) type BuildPassThroughHasher = BuildHasherDefault<PassThroughHasher>;
