//! Quorum reads and writes: the ABD register, adapted to a cache that forgets.
//!
//! Owns: the write: with W = 2, 2W > N and this node a replica, one optimistic
//! round (stamp a version above what this node holds or forgot, send it to the
//! others, apply and answer once one of them stored that very version);
//! otherwise, or when no peer can have stored it, the two phases (ask R replicas
//! for the version they hold or forgot, stamp one version above the highest,
//! send it to all N, answer once W hold it or something newer). The read (R
//! answers that vouch for the newest version, and a blocking write-back to W
//! before answering when they disagree; peers send digests when this node is
//! asked first, and a second round asks for values when only a peer holds the
//! newest one), the order in which replicas are asked and the hedge, the
//! deadline of each round of calls (one timer per round, not one per call), and
//! the errors that say how many replicas answered.
//! Does not own: the replica rules (`store`, `replica`), transport, which peers
//! are up (`peers`), input limits.
//!
//! Written by hand: this is the product's consistency argument. Every step of
//! it follows the project's shared design ("How a write and a read work"),
//! which is kept outside this repository; docs/design-notes.md records how the
//! code implements it and where it departs.

use crate::clock::{BeyondBound, Hlc, Millis, Version};
use crate::observe::{Observer, PeerOp, QuorumFailure, Unobserved};
use crate::peers::Peers;
use crate::replica::Replica;
use crate::ring::{NodeId, Ring};
use crate::store::{Held, Record};
use crate::transport::{PeerError, ReadRequest, Transport, WriteRequest};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use smallvec::SmallVec;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// The longest a gather waits on its first targets before asking the rest.
const MAX_HEDGE_DELAY: Duration = Duration::from_millis(100);

/// How long a delete's tombstone is kept before it folds into the watermark.
pub const TOMBSTONE_LIFETIME_MS: Millis = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// R; capped at N. 0 means a majority of N.
    pub read_quorum: usize,
    /// W; capped at N. 0 means a majority of N.
    pub write_quorum: usize,
    pub rpc_timeout: Duration,
    /// Deliberately unsafe switches, for proving the consistency checker finds
    /// what they break. Never set in production.
    pub unsafe_switches: UnsafeSwitches,
}

/// Each switch drops one step the project's shared design calls necessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnsafeSwitches {
    /// Stamp writes from the local clock and count replicas holding that version
    /// or a newer one: no version query, and no fallback to one when refused.
    pub skip_version_query: bool,
    /// Answer reads without writing the winner back to a quorum.
    pub skip_read_repair: bool,
    /// Treat replicas that hold nothing as vouching, whatever they forgot.
    pub ignore_watermarks: bool,
    /// Use the one-round write also when two write quorums need not meet
    /// (2W <= N), where its proof of order does not hold.
    pub force_one_round_write: bool,
}

/// A value found by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Bytes,
    pub version: Version,
    pub expires_at_ms: Millis,
}

/// Replicas that did not answer, and why: "node2:8080: connection refused; ...".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failures(pub Vec<(NodeId, PeerError)>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no failures");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(node, error)| format!("{node}: {error}"))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// Nothing was changed: too few replicas answered before any write was sent
    /// (or none could have applied it).
    #[error(
        "{needed} of {total} replicas needed, {answered} answered ({failures}); nothing was changed, retry when more replicas are up"
    )]
    QuorumUnavailable {
        needed: usize,
        total: usize,
        answered: usize,
        failures: Failures,
    },
    /// The write reached some replicas but not W: a later read may or may not see it.
    #[error(
        "write outcome unknown: {needed} of {total} replicas needed, {confirmed} confirmed ({failures}); a later read may or may not return it, so write again or read to find out"
    )]
    OutcomeUnknown {
        needed: usize,
        total: usize,
        confirmed: usize,
        failures: Failures,
    },
    /// Nothing was changed: a replica holds or forgot a version further ahead
    /// than this node may stamp (its wall clock + MAX_CLOCK_SKEW).
    #[error(
        "nothing was changed: a replica reported {beyond}, so this node cannot stamp a write above it yet; retry"
    )]
    ClockBehind { beyond: BeyondBound },
    #[error("the cluster has no members")]
    NoReplicas,
}

#[derive(Clone)]
enum Op {
    Read(Values),
    Write(Record),
}

/// Which replicas answer a read with the value; the others send a digest (the
/// version alone), which is all that deciding a read needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    /// Nobody: phase 1 of a write wants versions only.
    None,
    /// This node only: a read whose newest version this node holds answers
    /// from it, and the peers' answers stay small (for large values the copies
    /// and bytes of the value are most of what a peer read costs).
    Local,
    /// Every replica.
    All,
}

/// The outcome of one round of a read.
enum ReadRound {
    Answered(Option<Found>),
    /// R answers vouch for a version whose value only came as a digest.
    ValueOnPeers,
}

/// What the optimistic round gathered, and whether it proved its version ordered
/// after every write completed before it began (`Coordinator::optimistic_write`).
struct Optimistic {
    gathered: Gathered,
    ordered: bool,
}

#[derive(Default)]
struct Gathered {
    answers: Vec<(NodeId, Held)>,
    failures: Vec<(NodeId, PeerError)>,
}

pub struct Coordinator {
    replica: Arc<Replica>,
    ring: Ring,
    /// The ring's replica sets, each in the order its replicas are asked
    /// (`replicas_of`); indexed like `Ring::replica_set`.
    ordered_sets: Vec<Box<[NodeId]>>,
    transport: Arc<dyn Transport>,
    peers: Arc<Peers>,
    settings: CoordinatorSettings,
    observer: Arc<dyn Observer>,
}

impl Coordinator {
    pub fn new(
        replica: Arc<Replica>,
        ring: Ring,
        transport: Arc<dyn Transport>,
        peers: Arc<Peers>,
        settings: CoordinatorSettings,
    ) -> Self {
        let ordered_sets = ask_order(&ring, replica.id());
        Self {
            replica,
            ring,
            ordered_sets,
            transport,
            peers,
            settings,
            observer: Arc::new(Unobserved),
        }
    }

    /// Reports events to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// (R, W) for a replica set of `n` nodes.
    pub fn quorums(&self, n: usize) -> (usize, usize) {
        let pick = |configured: usize| {
            if configured == 0 {
                n / 2 + 1
            } else {
                configured.min(n)
            }
        };
        (pick(self.settings.read_quorum), pick(self.settings.write_quorum))
    }

    /// Stores `value` under `key` until `expires_at_ms`; returns its version.
    pub async fn set(
        &self,
        key: Bytes,
        value: Bytes,
        expires_at_ms: Millis,
    ) -> Result<Version, CoordinatorError> {
        let outcome = self.write(key, Some(value), expires_at_ms).await;
        self.report(outcome)
    }

    /// Writes a tombstone for `key`; returns its version.
    pub async fn delete(&self, key: Bytes) -> Result<Version, CoordinatorError> {
        let expires_at_ms = self.replica.clock().wall_ms() + TOMBSTONE_LIFETIME_MS;
        let outcome = self.write(key, None, expires_at_ms).await;
        self.report(outcome)
    }

    /// The newest value of `key`, or `None` (a miss) when it is absent, deleted,
    /// expired, or the replicas that answered cannot vouch for any value.
    pub async fn get(&self, key: Bytes) -> Result<Option<Found>, CoordinatorError> {
        let outcome = self.read(key).await;
        self.report(outcome)
    }

    fn report<T>(&self, outcome: Result<T, CoordinatorError>) -> Result<T, CoordinatorError> {
        match &outcome {
            Err(CoordinatorError::OutcomeUnknown { .. }) => {
                self.observer.quorum_failed(QuorumFailure::OutcomeUnknown)
            }
            Err(_) => self.observer.quorum_failed(QuorumFailure::Unavailable),
            Ok(_) => {}
        }
        outcome
    }

    /// A round that asks this node for the value and the peers for digests
    /// when this node is asked first; when the newest version then turns out to
    /// be held only by peers (this node lags), a second, full round: a read of
    /// its own, so the first round's answers do not carry over.
    async fn read(&self, key: Bytes) -> Result<Option<Found>, CoordinatorError> {
        let replicas = self.replicas_of(&key)?;
        let mut values = if replicas.first() == Some(self.replica.id()) {
            Values::Local
        } else {
            Values::All
        };
        loop {
            match self.read_round(&key, replicas, values).await? {
                ReadRound::Answered(found) => return Ok(found),
                ReadRound::ValueOnPeers => values = Values::All,
            }
        }
    }

    async fn read_round(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        values: Values,
    ) -> Result<ReadRound, CoordinatorError> {
        let (read_quorum, write_quorum) = self.quorums(replicas.len());
        let ignore_watermarks = self.settings.unsafe_switches.ignore_watermarks;
        let decide = |answers: &[(NodeId, Held)]| decide_read(answers, read_quorum, ignore_watermarks);
        let mut gathered = self
            .gather(key, replicas, Op::Read(values), read_quorum, |answers| {
                decide(answers).is_some()
            })
            .await;
        let candidate = match decide(&gathered.answers) {
            Some(ReadVerdict::Candidate(version)) => version,
            Some(ReadVerdict::NoValue) => return Ok(ReadRound::Answered(None)),
            None if gathered.answers.len() >= read_quorum => return Ok(ReadRound::Answered(None)),
            None => return Err(unavailable(read_quorum, replicas.len(), gathered)),
        };
        let found = match self.live_answer(&mut gathered.answers, candidate, values) {
            LiveAnswer::Found(found) => found,
            LiveAnswer::None => return Ok(ReadRound::Answered(None)),
            LiveAnswer::OnPeers => return Ok(ReadRound::ValueOnPeers),
        };
        if !self.settings.unsafe_switches.skip_read_repair {
            self.write_back(key, replicas, &gathered.answers, &found, write_quorum)
                .await?;
        }
        Ok(ReadRound::Answered(Some(found)))
    }

    /// The key's replicas in the order they are asked (`ask_order`).
    fn replicas_of(&self, key: &[u8]) -> Result<&[NodeId], CoordinatorError> {
        self.ring
            .replica_set_of(key)
            .map(|set| &*self.ordered_sets[set])
            .ok_or(CoordinatorError::NoReplicas)
    }

    async fn write(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        expires_at_ms: Millis,
    ) -> Result<Version, CoordinatorError> {
        let replicas = self.replicas_of(&key)?;
        let (_, write_quorum) = self.quorums(replicas.len());
        let record = |version| Record {
            version,
            value: value.clone(),
            expires_at_ms,
        };
        if self.settings.unsafe_switches.skip_version_query {
            let version = self.stamp_above(Version::ZERO).await?;
            let gathered = self
                .replicate(&key, replicas, record(version), write_quorum, count_holding)
                .await;
            return conclude_write(
                gathered,
                version,
                write_quorum,
                replicas.len(),
                count_holding,
                false,
            );
        }
        if !self.one_round_allowed(replicas, write_quorum) {
            return self.two_phase_write(&key, replicas, record, Version::ZERO).await;
        }
        let floor = self.replica.read_local(&key, true).floor();
        let version = self.stamp_above(floor).await?;
        let first = self
            .optimistic_write(&key, replicas, record(version), write_quorum)
            .await;
        if first.ordered {
            if count_holding(&first.gathered.answers, version) >= write_quorum {
                return Ok(version);
            }
            // Ordered but held by fewer than W (this node forgot past it): the
            // same version again, to all N, never another one.
            let gathered = self
                .replicate(&key, replicas, record(version), write_quorum, count_holding)
                .await;
            return conclude_write(
                gathered,
                version,
                write_quorum,
                replicas.len(),
                count_holding,
                true,
            );
        }
        if may_have_applied(&first.gathered, version, count_stored) {
            return conclude_write(
                first.gathered,
                version,
                write_quorum,
                replicas.len(),
                count_stored,
                false,
            );
        }
        if first
            .gathered
            .answers
            .iter()
            .any(|(_, held)| held.held_version() != Some(version))
        {
            self.observer.write_restamped();
        }
        // The version was stored nowhere, so a new one cannot make it count twice.
        let seen = highest_floor(&first.gathered.answers);
        self.two_phase_write(&key, replicas, record, seen).await
    }

    /// A fresh version above `floor`, never beyond this node's wall clock +
    /// MAX_CLOCK_SKEW (the shared design's "Bounded stamps": the restart watermark must
    /// cover all a node holds). A floor up to MAX_CLOCK_SKEW past that bound
    /// comes from a peer whose clock is ahead of this one within the bound (its
    /// restart watermark, or a version it stamped); the write then waits until
    /// this node's wall clock makes room. A floor further ahead cannot come
    /// from a clock within the bound, and the write fails without sending
    /// anything.
    async fn stamp_above(&self, floor: Version) -> Result<Version, CoordinatorError> {
        let clock = self.replica.clock();
        let beyond = match clock.stamp_above(floor) {
            Ok(version) => return Ok(version),
            Err(beyond) => beyond,
        };
        if beyond.ahead_ms > beyond.max_skew_ms {
            return Err(CoordinatorError::ClockBehind { beyond });
        }
        // One millisecond more: the wall clock may tick just after the timer.
        tokio::time::sleep(Duration::from_millis(beyond.ahead_ms + 1)).await;
        clock
            .stamp_above(floor)
            .map_err(|beyond| CoordinatorError::ClockBehind { beyond })
    }

    /// Whether a write to `replicas` may try the one-round write: this node is
    /// one of them, W = 2 (one peer's store completes the proof), and any two
    /// write quorums meet (2W > N), which the proof needs: with 2W <= N two
    /// disjoint pairs of replicas can each acknowledge writes, and a pair whose
    /// clocks run behind would have its acknowledged writes lost to the other
    /// pair's older ones.
    fn one_round_allowed(&self, replicas: &[NodeId], write_quorum: usize) -> bool {
        let quorums_meet =
            2 * write_quorum > replicas.len() || self.settings.unsafe_switches.force_one_round_write;
        write_quorum == 2 && quorums_meet && replicas.contains(self.replica.id())
    }

    /// Phase 1 (the versions held by R replicas), then phase 2 (a version above
    /// them and `seen`, to all N, until W hold it or something newer).
    async fn two_phase_write(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        record: impl Fn(Version) -> Record,
        seen: Version,
    ) -> Result<Version, CoordinatorError> {
        let (read_quorum, write_quorum) = self.quorums(replicas.len());
        let floor = self.version_floor(key, replicas, read_quorum).await?;
        let version = self.stamp_above(floor.max(seen)).await?;
        let gathered = self
            .replicate(key, replicas, record(version), write_quorum, count_holding)
            .await;
        if gathered
            .answers
            .iter()
            .any(|(_, held)| held.held_version().is_some_and(|held| held > version))
        {
            self.observer.write_met_newer();
        }
        conclude_write(
            gathered,
            version,
            write_quorum,
            replicas.len(),
            count_holding,
            false,
        )
    }

    /// The optimistic round, for a coordinator that is one of the key's replicas
    /// and W = 2 (the default with N = 3; other quorums take the two phases). The
    /// version was stamped above what this node held or forgot of the key, so this
    /// node is below it; `record` goes to the other replicas, and once W - 1 of
    /// them stored that very version, W replicas were below it after the write
    /// began, and it is ordered after every write that completed before (any two
    /// sets of W replicas meet, and what a replica holds or forgot only grows). Only then is it applied here: a write that reaches no peer
    /// changes nothing, and may still be stamped anew by the two phases. With
    /// W = 2 a single peer's store is enough, so a version stored anywhere is
    /// always ordered: it is never abandoned for another one, which would let a
    /// reader see the write before and again after a concurrent one.
    async fn optimistic_write(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        record: Record,
        write_quorum: usize,
    ) -> Optimistic {
        let me = self.replica.id();
        let others: Vec<NodeId> = replicas.iter().filter(|node| *node != me).cloned().collect();
        let version = record.version;
        let mut gathered = self
            .replicate(key, &others, record.clone(), write_quorum - 1, count_stored)
            .await;
        let ordered = count_stored(&gathered.answers, version) >= write_quorum - 1;
        if ordered {
            gathered
                .answers
                .push((me.clone(), self.replica.write_local(key.clone(), record)));
        }
        Optimistic { gathered, ordered }
    }

    /// Sends `record` to every replica and gathers until W of them count it.
    async fn replicate(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        record: Record,
        write_quorum: usize,
        counted: fn(&[(NodeId, Held)], Version) -> usize,
    ) -> Gathered {
        let version = record.version;
        self.gather(key, replicas, Op::Write(record), replicas.len(), |answers| {
            counted(answers, version) >= write_quorum
        })
        .await
    }

    /// Phase 1 of a write: the highest version (or watermark) among R replicas.
    /// This is what orders a write after every write that completed before it.
    async fn version_floor(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        read_quorum: usize,
    ) -> Result<Version, CoordinatorError> {
        let gathered = self
            .gather(key, replicas, Op::Read(Values::None), read_quorum, |answers| {
                answers.len() >= read_quorum
            })
            .await;
        if gathered.answers.len() < read_quorum {
            return Err(unavailable(read_quorum, replicas.len(), gathered));
        }
        Ok(highest_floor(&gathered.answers))
    }

    /// The value of `candidate` if an answer holds it unexpired: from any
    /// answer when every replica sent values, else only from this node's. The
    /// value is moved out of its answer, not cloned: from here on the answers
    /// are only counted by version.
    fn live_answer(&self, answers: &mut [(NodeId, Held)], candidate: Version, values: Values) -> LiveAnswer {
        let now = self.replica.clock().wall_ms();
        let mut on_peers = false;
        for (node, held) in answers {
            let Held::Live {
                version,
                value,
                expires_at_ms,
            } = held
            else {
                continue;
            };
            if *version != candidate || now >= *expires_at_ms {
                continue;
            }
            if values == Values::All || node == self.replica.id() {
                let value = std::mem::take(value);
                return LiveAnswer::Found(Found {
                    value,
                    version: *version,
                    expires_at_ms: *expires_at_ms,
                });
            }
            on_peers = true;
        }
        if on_peers {
            LiveAnswer::OnPeers
        } else {
            LiveAnswer::None
        }
    }

    /// Read repair, before answering: until W replicas hold the value read (or
    /// something newer), a later read could still return an older one.
    async fn write_back(
        &self,
        key: &Bytes,
        replicas: &[NodeId],
        answers: &[(NodeId, Held)],
        found: &Found,
        write_quorum: usize,
    ) -> Result<(), CoordinatorError> {
        let holds = |held: &Held| {
            held.held_version()
                .is_some_and(|version| version >= found.version)
        };
        let holders = answers.iter().filter(|(_, held)| holds(held)).count();
        if holders >= write_quorum {
            return Ok(());
        }
        let lagging: Vec<NodeId> = replicas
            .iter()
            .filter(|node| {
                !answers
                    .iter()
                    .any(|(answered, held)| answered == *node && holds(held))
            })
            .cloned()
            .collect();
        let record = Record {
            version: found.version,
            value: Some(found.value.clone()),
            expires_at_ms: found.expires_at_ms,
        };
        let needed = write_quorum - holders;
        // Here a watermark at or above the version counts: a later read that meets
        // that replica cannot vouch for anything older, which is all a read needs.
        // (An acknowledged write needs holders: see `count_holding`.)
        let confirmed = |answers: &[(NodeId, Held)]| count_at_or_above(answers, found.version);
        let gathered = self
            .gather(key, &lagging, Op::Write(record), lagging.len(), |answers| {
                confirmed(answers) >= needed
            })
            .await;
        let repaired = confirmed(&gathered.answers);
        if repaired > 0 {
            self.observer.read_repaired();
        }
        if repaired >= needed {
            return Ok(());
        }
        Err(CoordinatorError::QuorumUnavailable {
            needed: write_quorum,
            total: replicas.len(),
            answered: holders + repaired,
            failures: Failures(gathered.failures),
        })
    }

    /// Sends `op` to the first `first` targets (this node is first when it is a
    /// replica) and collects answers until `enough` says so. A failure brings in
    /// the next target; when everyone asked has answered and it is still not
    /// enough (say a replica cannot vouch), or after `hedge_delay` without enough,
    /// the rest are asked at once. A read thus costs R calls, not N, unless
    /// something is slow or wrong. Every call ends by one deadline, RPC_TIMEOUT
    /// after the start, so a quorum that cannot be had fails after RPC_TIMEOUT.
    /// Writes pass every target as `first`; those still under way when `enough`
    /// is reached finish in the background: "send to all N" must not depend on
    /// who answered first, or a write would sit on exactly W replicas and need
    /// repair after any loss.
    async fn gather(
        &self,
        key: &Bytes,
        targets: &[NodeId],
        op: Op,
        first: usize,
        enough: impl Fn(&[(NodeId, Held)]) -> bool,
    ) -> Gathered {
        let is_write = matches!(op, Op::Write(_));
        let started = tokio::time::Instant::now();
        let deadline = started + self.settings.rpc_timeout;
        let mut asked = Asked::default();
        let ask = |asked: &mut Asked, node: &NodeId| asked.add(self.call(node, key, op.clone()));
        let mut waiting = targets.iter();
        for node in waiting.by_ref().take(first.max(1)) {
            ask(&mut asked, node);
        }
        // One timer per gather, not one per call: due at the hedge, then moved
        // to the deadline, where every call still under way has timed out.
        let timer = tokio::time::sleep_until(started + self.hedge_delay());
        tokio::pin!(timer);
        let mut hedged = false;
        let mut gathered = Gathered {
            answers: Vec::with_capacity(targets.len()),
            failures: Vec::new(),
        };
        loop {
            if asked.is_empty() {
                waiting.by_ref().for_each(|node| ask(&mut asked, node));
            }
            let next = match asked.answered.pop() {
                Some(answer) => Some(answer),
                None => tokio::select! {
                    biased;
                    next = asked.next_pending() => next,
                    () = &mut timer => {
                        if !hedged {
                            hedged = true;
                            waiting.by_ref().for_each(|node| ask(&mut asked, node));
                            timer.as_mut().reset(deadline);
                            continue;
                        }
                        gathered.failures.extend(asked.time_out(&self.recorder(&op)));
                        break;
                    }
                },
            };
            let Some((node, outcome)) = next else { break };
            let failed = outcome.is_err();
            match outcome {
                Ok(held) => gathered.answers.push((node, held)),
                Err(error) => gathered.failures.push((node, error)),
            }
            if enough(&gathered.answers) {
                break;
            }
            if failed && let Some(node) = waiting.next() {
                ask(&mut asked, node);
            }
        }
        if is_write && !asked.pending.is_empty() {
            tokio::spawn(asked.finish_by(deadline, self.recorder(&op)));
        }
        gathered
    }

    fn recorder(&self, op: &Op) -> Recorder {
        Recorder {
            peers: self.peers.clone(),
            observer: self.observer.clone(),
            clock: self.replica.clock().clone(),
            kind: match op {
                Op::Read(_) => PeerOp::Read,
                Op::Write(_) => PeerOp::Write,
            },
        }
    }

    /// How long the first targets of a gather have before the rest are asked
    /// too: well above a healthy call's latency, so that it rarely costs an
    /// extra call, and well below RPC_TIMEOUT, so that a replica that went
    /// silent (and is not yet marked down) delays calls only briefly.
    fn hedge_delay(&self) -> Duration {
        (self.settings.rpc_timeout / 5).min(MAX_HEDGE_DELAY)
    }

    /// The period of a timer that, kept pending, is always due before the hedge
    /// timer of any gather started after it (`node::spawn_timer_anchor` says
    /// why that saves a wake-up per idle spell). At least a millisecond, the
    /// timer's resolution, which only an RPC_TIMEOUT of 10 ms or less undercuts.
    pub fn timer_anchor_period(&self) -> Duration {
        (self.hedge_delay() / 2).max(Duration::from_millis(1))
    }

    /// One call to one replica: local calls go straight to the store, and
    /// are answered at once, as are calls to a peer known to be down.
    /// A call to a peer has no deadline of its own: its gather's ends it.
    fn call(&self, node: &NodeId, key: &Bytes, op: Op) -> Call {
        let node = node.clone();
        if &node == self.replica.id() {
            let held = match op {
                Op::Read(values) => self.replica.read_local(key, values == Values::None),
                Op::Write(record) => self.replica.write_local(key.clone(), record),
            };
            return Call::Answered((node, Ok(held)));
        }
        if let Err(error) = self.peers.gate(&node) {
            return Call::Answered((node, Err(error)));
        }
        let envelope = self.replica.envelope_to(&node);
        let recorder = self.recorder(&op);
        let request = match op {
            Op::Read(values) => self.transport.read(
                &node,
                ReadRequest {
                    envelope,
                    key: key.clone(),
                    digest: values != Values::All,
                },
            ),
            Op::Write(record) => self.transport.write(
                &node,
                WriteRequest {
                    envelope,
                    key: key.clone(),
                    record,
                },
            ),
        };
        let started = tokio::time::Instant::now();
        let reply = {
            let node = node.clone();
            async move {
                let outcome = request.await.and_then(|reply| {
                    let clock = &recorder.clock;
                    clock
                        .receive(reply.clock)
                        .map(|()| reply.held)
                        .map_err(|clock| PeerError::ReplyClockAhead { clock })
                });
                recorder.record(&node, started, outcome.as_ref().err());
                (node, outcome)
            }
            .boxed()
        };
        Call::Sent(UnderWay { node, started, reply })
    }
}

/// Each replica set of the ring in the order its replicas are asked: this node
/// first when it is one of them, then each by how far it follows this node in
/// the sorted member list, wrapping around. Any R replicas make a quorum, so the
/// order only decides who is asked first; a node-wide order instead of the key's
/// ring order sends a node's calls to the same peer, where they share batches
/// (with 3 nodes, A asks B, B asks C and C asks A, for every key), and each node
/// is still the first choice of as many nodes as any other. Computed once, not
/// per call: it depends only on the ring and this node.
fn ask_order(ring: &Ring, me: &NodeId) -> Vec<Box<[NodeId]>> {
    let members = ring.nodes();
    let me = members.binary_search(me).ok();
    let after_me = |node: &NodeId| match me {
        Some(me) => members
            .binary_search(node)
            .map_or(usize::MAX, |at| (at + members.len() - me) % members.len()),
        None => 0,
    };
    (0..ring.replica_set_count())
        .map(|set| {
            let mut replicas: Vec<NodeId> = ring.replica_set(set).cloned().collect();
            replicas.sort_by_key(after_me);
            replicas.into_boxed_slice()
        })
        .collect()
}

type Answer = (NodeId, Result<Held, PeerError>);

/// A call as `Coordinator::call` leaves it: answered already, or under way.
enum Call {
    Answered(Answer),
    Sent(UnderWay),
}

/// A call to a peer under way. It records its outcome when it finishes; one
/// that runs out of time is recorded by whoever gives up on it.
struct UnderWay {
    node: NodeId,
    started: tokio::time::Instant,
    reply: BoxFuture<'static, Answer>,
}

/// What recording a peer call's outcome needs (the peer's liveness, metrics),
/// shared with the task that finishes a write's calls in the background.
struct Recorder {
    peers: Arc<Peers>,
    observer: Arc<dyn Observer>,
    clock: Arc<Hlc>,
    kind: PeerOp,
}

impl Recorder {
    fn record(&self, node: &NodeId, started: tokio::time::Instant, error: Option<&PeerError>) {
        self.peers
            .record(node, error.map_or(Ok(()), Err), self.clock.wall_ms());
        self.observer.peer_call(node, self.kind, started.elapsed(), error);
    }
}

/// The calls of one gather, at most one per replica. Answers given at once
/// (this node's own, a peer known to be down) wait in a small inline list, and
/// calls under way in another, polled together: with a handful of calls that
/// costs less than a `FuturesUnordered`'s shared queue and a task per call.
#[derive(Default)]
struct Asked {
    answered: SmallVec<[Answer; 2]>,
    pending: SmallVec<[UnderWay; 3]>,
}

impl Asked {
    /// The first call under way to finish, or `None` when none is under way.
    fn next_pending(&mut self) -> impl Future<Output = Option<Answer>> + '_ {
        std::future::poll_fn(move |cx| {
            if self.pending.is_empty() {
                return Poll::Ready(None);
            }
            for at in 0..self.pending.len() {
                if let Poll::Ready(answer) = self.pending[at].reply.as_mut().poll(cx) {
                    drop(self.pending.swap_remove(at)); // finished
                    return Poll::Ready(Some(answer));
                }
            }
            Poll::Pending
        })
    }

    fn add(&mut self, call: Call) {
        match call {
            Call::Answered(answer) => self.answered.push(answer),
            Call::Sent(sent) => self.pending.push(sent),
        }
    }

    fn is_empty(&self) -> bool {
        self.answered.is_empty() && self.pending.is_empty()
    }

    /// Gives up on every call still under way: each is recorded and answered
    /// as timed out.
    fn time_out(&mut self, recorder: &Recorder) -> SmallVec<[(NodeId, PeerError); 3]> {
        let time_out = |call: UnderWay| {
            recorder.record(&call.node, call.started, Some(&PeerError::Timeout));
            (call.node, PeerError::Timeout)
        };
        self.pending.drain(..).map(time_out).collect()
    }

    /// Lets the calls under way finish, or time out at `deadline`.
    async fn finish_by(mut self, deadline: tokio::time::Instant, recorder: Recorder) {
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                next = self.next_pending() => if next.is_none() { return },
                () = &mut timer => {
                    self.time_out(&recorder);
                    return;
                }
            }
        }
    }
}

enum LiveAnswer {
    Found(Found),
    /// No answer holds the version live: deleted or expired, a miss.
    None,
    /// Only peers' digests hold it live.
    OnPeers,
}

enum ReadVerdict {
    /// R answers vouch for this version being the newest.
    Candidate(Version),
    /// R answers hold nothing at all.
    NoValue,
}

/// Decides a read from the answers so far, or `None` when more are needed.
fn decide_read(
    answers: &[(NodeId, Held)],
    read_quorum: usize,
    ignore_watermarks: bool,
) -> Option<ReadVerdict> {
    let Some(candidate) = answers.iter().filter_map(|(_, held)| held.held_version()).max() else {
        return (answers.len() >= read_quorum).then_some(ReadVerdict::NoValue);
    };
    let vouchers = answers
        .iter()
        .filter(|(_, held)| ignore_watermarks || held.vouches_for(candidate))
        .count();
    (vouchers >= read_quorum).then_some(ReadVerdict::Candidate(candidate))
}

/// Replicas that hold `version` or newer, or forgot past it.
fn count_at_or_above(answers: &[(NodeId, Held)], version: Version) -> usize {
    answers.iter().filter(|(_, held)| held.floor() >= version).count()
}

/// Replicas that hold `version` or a newer one. A replica that answers with only
/// a watermark above `version` (it forgot past it, or started less than
/// MAX_CLOCK_SKEW ago) did not store the write: counting it would keep reads
/// safe, but the write would then live on fewer than W replicas and vanish with
/// the next one lost (docs/design-notes.md, "Write").
fn count_holding(answers: &[(NodeId, Held)], version: Version) -> usize {
    answers
        .iter()
        .filter(|(_, held)| held.held_version().is_some_and(|held| held >= version))
        .count()
}

/// Replicas that hold `version` itself, so stored it while everything they held
/// or forgot of the key was below it (the optimistic round's proof of order).
/// Replicas holding a newer version do not count here: it may come from a write
/// that completed before this one began.
fn count_stored(answers: &[(NodeId, Held)], version: Version) -> usize {
    answers
        .iter()
        .filter(|(_, held)| held.held_version() == Some(version))
        .count()
}

/// The answer to the client once a write's last round is in. `partial`: an
/// earlier round may have left another version of it somewhere.
fn conclude_write(
    gathered: Gathered,
    version: Version,
    write_quorum: usize,
    total: usize,
    counted: fn(&[(NodeId, Held)], Version) -> usize,
    partial: bool,
) -> Result<Version, CoordinatorError> {
    let confirmed = counted(&gathered.answers, version);
    if confirmed >= write_quorum {
        return Ok(version);
    }
    if partial || may_have_applied(&gathered, version, counted) {
        Err(CoordinatorError::OutcomeUnknown {
            needed: write_quorum,
            total,
            confirmed,
            failures: Failures(gathered.failures),
        })
    } else {
        Err(unavailable(write_quorum, total, gathered))
    }
}

/// The highest version any answer held or forgot.
fn highest_floor(answers: &[(NodeId, Held)]) -> Version {
    answers
        .iter()
        .map(|(_, held)| held.floor())
        .max()
        .unwrap_or(Version::ZERO)
}

/// Whether a round of writes may have left `version` somewhere.
fn may_have_applied(
    gathered: &Gathered,
    version: Version,
    counted: fn(&[(NodeId, Held)], Version) -> usize,
) -> bool {
    counted(&gathered.answers, version) > 0
        || gathered
            .failures
            .iter()
            .any(|(_, error)| error.may_have_applied())
}

fn unavailable(needed: usize, total: usize, gathered: Gathered) -> CoordinatorError {
    CoordinatorError::QuorumUnavailable {
        needed,
        total,
        answered: gathered.answers.len(),
        failures: Failures(gathered.failures),
    }
}

#[cfg(test)]
mod tests;
