//! What the clients ask for: the key space, the value, the mix of Gets and Sets
//! and the key distribution.
//!
//! Owns: key names (fixed width, so every key costs the same), the value bytes,
//! choosing the next operation. Does not own: sending it (`targets`), timing it
//! (`driver`).

use crate::rng::SplitMix64;
use crate::zipf::{DEFAULT_THETA, Zipf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipfian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Get,
    Set,
}

/// One operation: which key (by index into the key space) and whether to read it.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub kind: OpKind,
    pub key: usize,
}

pub struct Workload {
    pub keys: Vec<String>,
    pub value: String,
    read_percent: u64,
    chooser: KeyChooser,
}

enum KeyChooser {
    Uniform,
    /// Zipf ranks mapped through a fixed shuffle of the key space, so the hottest
    /// keys land on different ring replicas instead of neighbouring names.
    Zipfian {
        zipf: Zipf,
        rank_to_key: Vec<u32>,
    },
}

impl Workload {
    pub fn new(
        prefix: &str,
        key_count: usize,
        value_size: usize,
        read_percent: u8,
        distribution: Distribution,
    ) -> Self {
        assert!(
            (1..=u32::MAX as usize).contains(&key_count),
            "the key count must be in 1..=2^32-1"
        );
        let keys = (0..key_count).map(|index| key_name(prefix, index)).collect();
        let chooser = match distribution {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian => {
                let mut rank_to_key: Vec<u32> = (0..key_count as u32).collect();
                let mut rng = SplitMix64::new(0x5EED);
                // Fisher-Yates with a fixed seed: every run and every target sees the same hot keys.
                for i in (1..rank_to_key.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    rank_to_key.swap(i, j);
                }
                KeyChooser::Zipfian {
                    zipf: Zipf::new(key_count as u64, DEFAULT_THETA),
                    rank_to_key,
                }
            }
        };
        Self {
            keys,
            value: value_of_size(value_size),
            read_percent: u64::from(read_percent.min(100)),
            chooser,
        }
    }

    pub fn next_op(&self, rng: &mut SplitMix64) -> Op {
        let kind = if rng.below(100) < self.read_percent {
            OpKind::Get
        } else {
            OpKind::Set
        };
        let key = match &self.chooser {
            KeyChooser::Uniform => rng.below(self.keys.len() as u64) as usize,
            KeyChooser::Zipfian { zipf, rank_to_key } => rank_to_key[zipf.sample(rng) as usize] as usize,
        };
        Op { kind, key }
    }
}

/// `prefix` followed by the zero-padded index: "k00000042".
pub fn key_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:08}")
}

/// Printable bytes (the quorum-cache API carries values as strings), not all
/// alike so that no layer can get away with compressing them to nothing.
pub fn value_of_size(size: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = SplitMix64::new(size as u64);
    (0..size)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ratio_is_respected_roughly() {
        let workload = Workload::new("k", 100, 10, 90, Distribution::Uniform);
        let mut rng = SplitMix64::new(3);
        let gets = (0..10_000)
            .filter(|_| workload.next_op(&mut rng).kind == OpKind::Get)
            .count();
        assert!((8_700..9_300).contains(&gets), "{gets} gets of 10000");
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value_of_size(4096).len(), 4096);
        assert_eq!(key_name("k", 42), "k00000042");
    }
}
