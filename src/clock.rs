//! Time: the wall clock the node reads, the hybrid logical clock (HLC) built on it,
//! and `Version`, the total order of writes.
//!
//! Owns: reading physical time (behind the `WallClock` trait so tests and the
//! simulation drive it), stamping versions, merging remote clocks and refusing a
//! remote clock that runs further ahead than MAX_CLOCK_SKEW.
//! Does not own: what a version means to a key (the store and the coordinator).

use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A source of physical time. The node uses `SystemClock`; tests use `ManualClock`.
pub trait WallClock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The operating system's clock, optionally shifted by a fixed offset
/// (CLOCK_OFFSET, a test-only setting that simulates a node whose clock is off).
#[derive(Debug, Default)]
pub struct SystemClock {
    offset_ms: i64,
}

impl SystemClock {
    pub fn with_offset(offset_ms: i64) -> Self {
        Self { offset_ms }
    }
}

impl WallClock for SystemClock {
    fn now_ms(&self) -> Millis {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        now.saturating_add(self.offset_ms).max(0) as Millis
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: Millis) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(start_ms)))
    }
    pub fn advance(&self, by_ms: Millis) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
    pub fn set(&self, to_ms: Millis) {
        self.0.store(to_ms, Ordering::SeqCst);
    }
}

impl WallClock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A point of hybrid logical time: physical milliseconds and a logical counter
/// that orders events within one millisecond (Kulkarni et al., "Logical Physical
/// Clocks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub physical_ms: Millis,
    pub logical: u32,
}

/// The version of a write: a timestamp tie-broken by the coordinating node's id,
/// so versions are unique across the cluster and totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub at: Timestamp,
    pub node: u64,
}

impl Version {
    /// Below every version any node can stamp.
    pub const ZERO: Version = Version {
        at: Timestamp {
            physical_ms: 0,
            logical: 0,
        },
        node: 0,
    };

    /// Above every version stamped at or before physical time `ms`.
    pub fn after_millis(ms: Millis) -> Version {
        Self::from_millis(ms + 1)
    }

    /// The first version of physical millisecond `ms`.
    pub fn from_millis(ms: Millis) -> Version {
        Version {
            at: Timestamp {
                physical_ms: ms,
                logical: 0,
            },
            node: 0,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms, self.logical)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:016x}", self.at, self.node)
    }
}

/// A remote clock was further ahead of ours than the cluster tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "clock {remote} is {ahead_ms} ms ahead of local clock {local}, more than MAX_CLOCK_SKEW \
     ({max_skew_ms} ms); check NTP on both nodes"
)]
pub struct ClockAhead {
    pub remote: Timestamp,
    pub local: Timestamp,
    pub ahead_ms: u64,
    pub max_skew_ms: u64,
}

/// A version this node may not stamp or store: it lies beyond its wall clock +
/// MAX_CLOCK_SKEW, which the restart watermark must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "version {version} is {ahead_ms} ms beyond this node's clock + MAX_CLOCK_SKEW ({max_skew_ms} ms); \
     check NTP on the nodes"
)]
pub struct BeyondBound {
    pub version: Version,
    /// How far past the bound, in milliseconds (at least 1).
    pub ahead_ms: u64,
    pub max_skew_ms: u64,
}

/// How long a node waits after its process starts before it builds its store
/// and takes its restart watermark (`restart_watermark`): twice
/// MAX_CLOCK_SKEW. Before it went down the node stored no version beyond its
/// wall clock then + MAX_CLOCK_SKEW (`Hlc::check_bound`), and its wall clock may
/// have stepped back across the restart by up to MAX_CLOCK_SKEW; after the
/// wait its wall clock is past everything it may have held.
pub fn restart_wait(max_skew_ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(2 * max_skew_ms)
}

/// The watermark of a node that starts with an empty memory at wall time
/// `now_ms`, after `restart_wait`: the wall clock itself, above every version
/// it may have held before (a restart takes at least a millisecond more than
/// the wait). Being no higher than the wall clock, it never lifts another
/// node's clock beyond the fastest wall clock of the cluster, so stamping
/// above it never carries a clock that a node whose wall clock is behind
/// (within MAX_CLOCK_SKEW) would refuse.
pub fn restart_watermark(now_ms: Millis) -> Version {
    Version::from_millis(now_ms)
}

/// The node's hybrid logical clock. Every stamp is above every timestamp the
/// node has issued or observed, so causally later writes get larger versions.
pub struct Hlc {
    wall: Arc<dyn WallClock>,
    node: u64,
    max_skew_ms: u64,
    last: Mutex<Timestamp>,
}

impl Hlc {
    pub fn new(wall: Arc<dyn WallClock>, node: u64, max_skew_ms: u64) -> Self {
        let start = Timestamp {
            physical_ms: wall.now_ms(),
            logical: 0,
        };
        Self {
            wall,
            node,
            max_skew_ms,
            last: Mutex::new(start),
        }
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// Physical time as the wall clock says, for expiry decisions.
    pub fn wall_ms(&self) -> Millis {
        self.wall.now_ms()
    }

    /// The current clock reading, to send with a message; never goes backwards.
    pub fn now(&self) -> Timestamp {
        let mut last = self.last.lock();
        let physical = self.wall.now_ms();
        if physical > last.physical_ms {
            *last = Timestamp {
                physical_ms: physical,
                logical: 0,
            };
        }
        *last
    }

    /// A fresh, unique timestamp above everything seen so far.
    pub fn tick(&self) -> Timestamp {
        let mut last = self.last.lock();
        let physical = self.wall.now_ms();
        *last = if physical > last.physical_ms {
            Timestamp {
                physical_ms: physical,
                logical: 0,
            }
        } else {
            successor(*last)
        };
        *last
    }

    /// A fresh version above both the clock and `floor`: the write's version in
    /// the ABD write's second phase. Never beyond the bound (`check_bound`):
    /// when `floor` leaves no room below it, the clock stays where it is and
    /// the caller learns how long its wall clock needs to make room.
    pub fn stamp_above(&self, floor: Version) -> Result<Version, BeyondBound> {
        let mut last = self.last.lock();
        let physical = self.wall.now_ms();
        let base = (*last).max(floor.at);
        let at = if physical > base.physical_ms {
            Timestamp {
                physical_ms: physical,
                logical: 0,
            }
        } else {
            successor(base)
        };
        let version = Version { at, node: self.node };
        self.beyond_bound(version, physical).map_or(Ok(()), Err)?;
        *last = at;
        Ok(version)
    }

    /// Whether this node may hold `version` now: its physical time is at most
    /// the wall clock + MAX_CLOCK_SKEW. Every version a node holds obeys this
    /// when it is stored, so a node that restarts a millisecond later with the
    /// watermark `restart_watermark` (wall + MAX_CLOCK_SKEW) is above all it
    /// held; a version stamped or stored beyond it would escape the watermark.
    pub fn check_bound(&self, version: Version) -> Result<(), BeyondBound> {
        self.beyond_bound(version, self.wall.now_ms()).map_or(Ok(()), Err)
    }

    fn beyond_bound(&self, version: Version, wall_ms: Millis) -> Option<BeyondBound> {
        let bound = wall_ms.saturating_add(self.max_skew_ms);
        (version.at.physical_ms > bound).then(|| BeyondBound {
            version,
            ahead_ms: version.at.physical_ms - bound,
            max_skew_ms: self.max_skew_ms,
        })
    }

    /// Moves the clock past `floor` (a peer's watermark, learnt at the handshake)
    /// so that later stamps are above it, but never past this node's wall clock
    /// plus MAX_CLOCK_SKEW: the lift only saves a refused write, while a clock
    /// further ahead would get this node's messages refused.
    pub fn lift_past(&self, floor: Version) {
        let cap = Timestamp {
            physical_ms: self.wall.now_ms() + self.max_skew_ms,
            logical: 0,
        };
        self.witness(floor.at.min(cap));
    }

    /// Merges a remote clock after checking it is within MAX_CLOCK_SKEW of ours.
    pub fn receive(&self, remote: Timestamp) -> Result<(), ClockAhead> {
        let local_physical = self.wall.now_ms();
        let ahead_ms = remote.physical_ms.saturating_sub(local_physical);
        if ahead_ms > self.max_skew_ms {
            return Err(ClockAhead {
                remote,
                local: self.now(),
                ahead_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        self.witness(remote);
        Ok(())
    }

    /// Moves the clock to at least `seen` without the skew check: for
    /// timestamps that are capped or checked already.
    fn witness(&self, seen: Timestamp) {
        let mut last = self.last.lock();
        if seen > *last {
            *last = seen;
        }
    }
}

fn successor(at: Timestamp) -> Timestamp {
    match at.logical.checked_add(1) {
        Some(logical) => Timestamp {
            physical_ms: at.physical_ms,
            logical,
        },
        // Four billion events in one millisecond: borrow the next millisecond.
        None => Timestamp {
            physical_ms: at.physical_ms + 1,
            logical: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hlc(start: Millis) -> (Arc<ManualClock>, Hlc) {
        let wall = ManualClock::new(start);
        (wall.clone(), Hlc::new(wall, 7, 500))
    }

    #[test]
    fn ticks_are_strictly_increasing_when_time_stands_still() {
        let (_wall, clock) = hlc(1_000);
        let stamps: Vec<_> = (0..1_000).map(|_| clock.tick()).collect();
        assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(stamps[0].physical_ms, 1_000);
    }

    #[test]
    fn ticks_follow_physical_time_and_reset_the_counter() {
        let (wall, clock) = hlc(1_000);
        clock.tick();
        clock.tick();
        wall.advance(5);
        assert_eq!(
            clock.tick(),
            Timestamp {
                physical_ms: 1_005,
                logical: 0
            }
        );
    }

    #[test]
    fn never_goes_backwards_when_the_wall_clock_does() {
        let (wall, clock) = hlc(1_000);
        let before = clock.tick();
        wall.set(900);
        assert!(clock.tick() > before);
        assert!(clock.now() >= before);
    }

    #[test]
    fn merges_a_remote_clock_within_the_bound() {
        let (_wall, clock) = hlc(1_000);
        let remote = Timestamp {
            physical_ms: 1_400,
            logical: 9,
        };
        clock.receive(remote).unwrap();
        assert!(clock.tick() > remote);
    }

    #[test]
    fn refuses_a_remote_clock_beyond_the_bound_and_stays_put() {
        let (_wall, clock) = hlc(1_000);
        let remote = Timestamp {
            physical_ms: 1_501,
            logical: 0,
        };
        let refused = clock.receive(remote).unwrap_err();
        assert_eq!(refused.ahead_ms, 501);
        assert_eq!(refused.max_skew_ms, 500);
        assert!(refused.to_string().contains("MAX_CLOCK_SKEW"));
        assert!(clock.tick() < remote, "a refused clock must not be merged");
    }

    #[test]
    fn stamps_above_a_floor_from_the_future_within_the_bound() {
        let (_wall, clock) = hlc(1_000);
        let floor = Version {
            at: Timestamp {
                physical_ms: 1_500,
                logical: 3,
            },
            node: 99,
        };
        let stamped = clock.stamp_above(floor).unwrap();
        assert!(stamped > floor);
        assert_eq!(stamped.node, 7);
        assert_eq!(
            stamped.at,
            Timestamp {
                physical_ms: 1_500,
                logical: 4
            }
        );
    }

    /// A floor further ahead than wall + MAX_CLOCK_SKEW (a peer's restart
    /// watermark from a clock ahead of ours) is not stamped above: that
    /// version would escape this node's own restart watermark.
    #[test]
    fn refuses_to_stamp_beyond_the_bound_and_stays_put() {
        let (wall, clock) = hlc(1_000);
        let floor = Version {
            at: Timestamp {
                physical_ms: 1_800,
                logical: 0,
            },
            node: 99,
        };
        let refused = clock.stamp_above(floor).unwrap_err();
        assert_eq!((refused.ahead_ms, refused.max_skew_ms), (300, 500));
        assert!(refused.to_string().contains("MAX_CLOCK_SKEW"), "{refused}");
        assert!(clock.now() < floor.at, "a refused stamp must not move the clock");
        wall.advance(300);
        let stamped = clock.stamp_above(floor).expect("the wall clock made room");
        assert!(stamped > floor);
        assert!(clock.check_bound(stamped).is_ok());
        assert!(
            restart_watermark(1_301 + 2 * 500 + 1) > stamped,
            "a restart after the wait covers it"
        );
    }

    #[test]
    fn the_bound_is_the_wall_clock_plus_the_skew() {
        let (_wall, clock) = hlc(1_000);
        assert!(
            clock
                .check_bound(Version {
                    at: Timestamp {
                        physical_ms: 1_500,
                        logical: u32::MAX
                    },
                    node: 1
                })
                .is_ok()
        );
        let beyond = clock.check_bound(Version::from_millis(1_501)).unwrap_err();
        assert_eq!(beyond.ahead_ms, 1);
    }

    #[test]
    fn versions_order_by_time_then_node() {
        let at = Timestamp {
            physical_ms: 5,
            logical: 1,
        };
        let low = Version { at, node: 1 };
        let high = Version { at, node: 2 };
        assert!(low < high);
        assert!(Version::after_millis(5) > Version { at, node: u64::MAX });
    }

    #[test]
    fn stamping_above_a_restart_watermark_stays_within_the_skew_bound() {
        let (_wall, coordinator) = hlc(1_000);
        let (_peer_wall, peer) = hlc(1_000);
        let stamped = coordinator.stamp_above(restart_watermark(1_000 + 500)).unwrap();
        assert!(stamped > restart_watermark(1_000 + 500));
        peer.receive(coordinator.now())
            .expect("a peer with the same wall clock accepts it");
    }

    #[test]
    fn lifting_past_a_peers_watermark_moves_later_stamps_above_it() {
        let (_wall, clock) = hlc(1_000);
        clock.lift_past(restart_watermark(1_300));
        assert!(clock.tick() > restart_watermark(1_300).at);
    }

    /// A version stored at the very bound (wall + MAX_CLOCK_SKEW), then a
    /// restart at once with the wall clock stepped back by MAX_CLOCK_SKEW: the
    /// watermark taken after `restart_wait` is above it.
    #[test]
    fn the_watermark_after_the_restart_wait_covers_a_clock_stepped_back() {
        let held = Version {
            at: Timestamp {
                physical_ms: 1_000 + 500,
                logical: u32::MAX,
            },
            node: u64::MAX,
        };
        let stepped_back_start = 1_000 - 500 + 1;
        let wait = restart_wait(500).as_millis() as Millis;
        assert!(restart_watermark(stepped_back_start + wait) > held);
        assert!(
            restart_watermark(stepped_back_start + wait / 2) < held,
            "half the wait would not do"
        );
    }

    #[test]
    fn lifting_stops_at_the_skew_bound() {
        let (_wall, clock) = hlc(1_000);
        clock.lift_past(Version::from_millis(9_000));
        assert_eq!(
            clock.now(),
            Timestamp {
                physical_ms: 1_500,
                logical: 0
            }
        );
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let at = Timestamp {
            physical_ms: 5,
            logical: u32::MAX,
        };
        assert_eq!(
            successor(at),
            Timestamp {
                physical_ms: 6,
                logical: 0
            }
        );
    }
}
