//! The replica side of the peer protocol, free of gRPC: checks who is calling
//! and with what clock, then reads from or writes to the local store.
//!
//! Owns: the per-message checks (the caller dialled this node by its own ADDR,
//! computes the same ring, and its clock is within MAX_CLOCK_SKEW) and answering
//! with this node's clock so that clocks move forward together.
//! Does not own: quorums (`coordinator`), decoding (`server::peer`).

use crate::clock::{BeyondBound, ClockAhead, Hlc, Timestamp, Version};
use crate::ring::NodeId;
use crate::store::{Held, Record, Store};
use bytes::Bytes;
use std::sync::Arc;

/// What every node of one cluster must agree on to compute the same replica sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterParams {
    pub replication_factor: u32,
    pub vnodes: u32,
    /// Shared: every envelope carries it.
    pub hash: Arc<str>,
    pub members_hash: u64,
}

impl std::fmt::Display for ClusterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "REPLICATION_FACTOR={} VNODES={} hash={} members={:016x}",
            self.replication_factor, self.vnodes, self.hash, self.members_hash
        )
    }
}

/// The header of every peer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    /// The name the caller dialled; must be this node's own ADDR.
    pub to: NodeId,
    pub clock: Timestamp,
    pub params: ClusterParams,
}

/// A replica's answer, stamped with its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub clock: Timestamp,
    pub held: Held,
}

/// A replica's answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introduction {
    pub addr: NodeId,
    pub params: ClusterParams,
    pub clock: Timestamp,
    pub software_version: String,
    pub entries: u64,
    /// The highest version this node may have forgotten (`Store::max_watermark`).
    pub watermark: Version,
}

/// Why a replica refused a peer request. Nothing was read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{from} called this node {called:?}, but its ADDR is {actual:?}; make PEERS on {from} use {actual:?}"
    )]
    WrongAddress {
        from: NodeId,
        called: NodeId,
        actual: NodeId,
    },
    #[error(
        "{from} runs with {theirs}, but {actual} runs with {ours}; give every node the same REPLICATION_FACTOR, VNODES and member list (ADDR plus PEERS)"
    )]
    ParamsMismatch {
        from: NodeId,
        actual: NodeId,
        theirs: Box<ClusterParams>,
        ours: Box<ClusterParams>,
    },
    #[error("refused a message from {from}: {clock}")]
    ClockAhead { from: NodeId, clock: ClockAhead },
    #[error("refused a write from {from}: {beyond}")]
    VersionAhead { from: NodeId, beyond: BeyondBound },
}

pub struct Replica {
    id: NodeId,
    params: ClusterParams,
    store: Arc<Store>,
    clock: Arc<Hlc>,
}

impl Replica {
    pub fn new(id: NodeId, params: ClusterParams, store: Arc<Store>, clock: Arc<Hlc>) -> Self {
        Self {
            id,
            params,
            store,
            clock,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn params(&self) -> &ClusterParams {
        &self.params
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<Hlc> {
        &self.clock
    }

    /// The envelope of a request from this node to `to`.
    pub fn envelope_to(&self, to: &NodeId) -> Envelope {
        Envelope {
            from: self.id.clone(),
            to: to.clone(),
            clock: self.clock.now(),
            params: self.params.clone(),
        }
    }

    pub fn handshake(&self, envelope: &Envelope) -> Result<Introduction, Refusal> {
        self.admit(envelope)?;
        Ok(Introduction {
            addr: self.id.clone(),
            params: self.params.clone(),
            clock: self.clock.now(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            entries: self.store.len() as u64,
            watermark: self.store.max_watermark(),
        })
    }

    pub fn read(&self, envelope: &Envelope, key: &[u8], digest: bool) -> Result<Reply, Refusal> {
        self.admit(envelope)?;
        Ok(self.reply(self.read_local(key, digest)))
    }

    pub fn write(&self, envelope: &Envelope, key: Bytes, record: Record) -> Result<Reply, Refusal> {
        self.admit(envelope)?;
        self.clock
            .check_bound(record.version)
            .map_err(|beyond| Refusal::VersionAhead {
                from: envelope.from.clone(),
                beyond,
            })?;
        Ok(self.reply(self.write_local(key, record)))
    }

    /// A read by this node's own coordinator: no envelope, no clock check.
    pub fn read_local(&self, key: &[u8], digest: bool) -> Held {
        self.store.read(key, digest)
    }

    /// A write by this node's own coordinator. The answer is a digest: the
    /// coordinator needs only the version now held. A version beyond this
    /// node's bound (wall clock + MAX_CLOCK_SKEW: a read repair of a value a
    /// faster clock stamped) is not stored, so that the restart watermark
    /// still covers everything this node holds; the answer then shows it
    /// does not hold it.
    pub fn write_local(&self, key: Bytes, record: Record) -> Held {
        if self.clock.check_bound(record.version).is_err() {
            return self.store.read(&key, true);
        }
        self.store.apply(key, record)
    }

    fn reply(&self, held: Held) -> Reply {
        Reply {
            clock: self.clock.now(),
            held,
        }
    }

    fn admit(&self, envelope: &Envelope) -> Result<(), Refusal> {
        if envelope.to != self.id {
            return Err(Refusal::WrongAddress {
                from: envelope.from.clone(),
                called: envelope.to.clone(),
                actual: self.id.clone(),
            });
        }
        if envelope.params != self.params {
            return Err(Refusal::ParamsMismatch {
                from: envelope.from.clone(),
                actual: self.id.clone(),
                theirs: Box::new(envelope.params.clone()),
                ours: Box::new(self.params.clone()),
            });
        }
        self.clock
            .receive(envelope.clock)
            .map_err(|clock| Refusal::ClockAhead {
                from: envelope.from.clone(),
                clock,
            })
    }
}
