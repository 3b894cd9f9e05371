//! What the store keeps for a key (`Record`) and what a replica answers about a
//! key (`Held`). Shared by the store, the replica and the coordinator.
//!
//! Owns: the meaning of "live", "dead" (tombstone or expired, still remembered)
//! and "nothing" (forgotten, with the shard's watermark).
//! Does not own: the rules for applying writes (`shard.rs`) or deciding reads
//! (`coordinator`).

use crate::clock::{Millis, Version};
use bytes::Bytes;

/// A versioned write as it travels to replicas and sits in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: Version,
    /// `None` is a delete: a tombstone that orders later writes like a value does.
    pub value: Option<Bytes>,
    /// Absolute expiry. Every replica drops the entry at the same moment.
    pub expires_at_ms: Millis,
}

impl Record {
    pub fn is_live_at(&self, now_ms: Millis) -> bool {
        self.value.is_some() && now_ms < self.expires_at_ms
    }
}

/// A replica's answer about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A value that has not expired. `value` is empty in a digest answer.
    Live {
        version: Version,
        value: Bytes,
        expires_at_ms: Millis,
    },
    /// A tombstone or an expired value the replica still remembers.
    Dead { version: Version },
    /// Nothing for this key; the replica may have forgotten versions up to
    /// `watermark` (eviction, expiry, restart), so it cannot vouch below it.
    Nothing { watermark: Version },
}

impl Held {
    /// The version this answer guarantees the replica is at or above for the key:
    /// what it holds, or what it may have forgotten.
    pub fn floor(&self) -> Version {
        match self {
            Held::Live { version, .. } | Held::Dead { version } => *version,
            Held::Nothing { watermark } => *watermark,
        }
    }

    /// The version actually held, if any.
    pub fn held_version(&self) -> Option<Version> {
        match self {
            Held::Live { version, .. } | Held::Dead { version } => Some(*version),
            Held::Nothing { .. } => None,
        }
    }

    /// Whether this answer is consistent with `candidate` being the newest
    /// version. A replica that holds an entry never forgot anything newer (it
    /// would only accept writes above what it forgot); one that holds nothing can
    /// vouch only when its watermark is not above the candidate.
    pub fn vouches_for(&self, candidate: Version) -> bool {
        match self {
            Held::Live { .. } | Held::Dead { .. } => true,
            Held::Nothing { watermark } => *watermark <= candidate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn version(ms: u64) -> Version {
        Version {
            at: Timestamp {
                physical_ms: ms,
                logical: 0,
            },
            node: 1,
        }
    }

    #[test]
    fn nothing_vouches_only_below_its_watermark() {
        let forgot = Held::Nothing {
            watermark: version(10),
        };
        assert!(forgot.vouches_for(version(10)));
        assert!(forgot.vouches_for(version(11)));
        assert!(!forgot.vouches_for(version(9)));
    }

    #[test]
    fn holders_always_vouch_and_report_their_floor() {
        let dead = Held::Dead { version: version(3) };
        assert!(dead.vouches_for(version(9)));
        assert_eq!(dead.floor(), version(3));
        let live = Held::Live {
            version: version(4),
            value: Bytes::from("v"),
            expires_at_ms: 9,
        };
        assert_eq!(live.floor(), version(4));
        assert_eq!(live.held_version(), Some(version(4)));
    }

    #[test]
    fn tombstones_and_expired_values_are_not_live() {
        let tombstone = Record {
            version: version(1),
            value: None,
            expires_at_ms: 100,
        };
        assert!(!tombstone.is_live_at(0));
        let value = Record {
            version: version(1),
            value: Some(Bytes::from("v")),
            expires_at_ms: 100,
        };
        assert!(value.is_live_at(99));
        assert!(!value.is_live_at(100));
    }
}
