//! Conversions between the generated protobuf types and the core's types, with
//! validation of what a peer sends.
//!
//! Owns: every `From`/`TryFrom` between `pb`/`peer_pb` and `clock`, `store`,
//! `replica` types.
//! Does not own: limits on keys and values (`limits`), status codes (`status`).

use crate::clock::{Timestamp, Version};
use crate::limits::InputError;
use crate::pb;
use crate::peer_pb;
use crate::replica::{ClusterParams, Envelope, Introduction};
use crate::store::Held;

impl From<Version> for pb::Version {
    fn from(version: Version) -> Self {
        pb::Version {
            physical_ms: version.at.physical_ms,
            logical: version.at.logical,
            node: version.node,
        }
    }
}

impl From<Version> for peer_pb::Version {
    fn from(version: Version) -> Self {
        peer_pb::Version {
            physical_ms: version.at.physical_ms,
            logical: version.at.logical,
            node: version.node,
        }
    }
}

impl From<peer_pb::Version> for Version {
    fn from(version: peer_pb::Version) -> Self {
        Version {
            at: Timestamp {
                physical_ms: version.physical_ms,
                logical: version.logical,
            },
            node: version.node,
        }
    }
}

impl From<Timestamp> for peer_pb::Timestamp {
    fn from(at: Timestamp) -> Self {
        peer_pb::Timestamp {
            physical_ms: at.physical_ms,
            logical: at.logical,
        }
    }
}

impl From<peer_pb::Timestamp> for Timestamp {
    fn from(at: peer_pb::Timestamp) -> Self {
        Timestamp {
            physical_ms: at.physical_ms,
            logical: at.logical,
        }
    }
}

impl From<ClusterParams> for peer_pb::ClusterParams {
    fn from(params: ClusterParams) -> Self {
        peer_pb::ClusterParams {
            replication_factor: params.replication_factor,
            vnodes: params.vnodes,
            hash: params.hash.to_string(),
            members_hash: params.members_hash,
        }
    }
}

impl From<peer_pb::ClusterParams> for ClusterParams {
    fn from(params: peer_pb::ClusterParams) -> Self {
        ClusterParams {
            replication_factor: params.replication_factor,
            vnodes: params.vnodes,
            hash: params.hash.into(),
            members_hash: params.members_hash,
        }
    }
}

impl From<Envelope> for peer_pb::Envelope {
    fn from(envelope: Envelope) -> Self {
        peer_pb::Envelope {
            from: envelope.from.to_string(),
            to: envelope.to.to_string(),
            clock: Some(envelope.clock.into()),
            params: Some(envelope.params.into()),
        }
    }
}

/// A peer message's required field.
pub fn required<T>(field: Option<T>, name: &'static str) -> Result<T, InputError> {
    field.ok_or(InputError::Missing { field: name })
}

impl TryFrom<Option<peer_pb::Envelope>> for Envelope {
    type Error = InputError;

    fn try_from(envelope: Option<peer_pb::Envelope>) -> Result<Self, InputError> {
        let envelope = required(envelope, "envelope")?;
        if envelope.from.is_empty() {
            return Err(InputError::Missing {
                field: "envelope.from",
            });
        }
        Ok(Envelope {
            from: envelope.from.into(),
            to: envelope.to.into(),
            clock: required(envelope.clock, "envelope.clock")?.into(),
            params: required(envelope.params, "envelope.params")?.into(),
        })
    }
}

impl From<Held> for peer_pb::Held {
    fn from(held: Held) -> Self {
        use peer_pb::held::State;
        let state = match held {
            Held::Live {
                version,
                value,
                expires_at_ms,
            } => State::Live(peer_pb::Live {
                version: Some(version.into()),
                value,
                expires_at_ms,
            }),
            Held::Dead { version } => State::Dead(peer_pb::Dead {
                version: Some(version.into()),
            }),
            Held::Nothing { watermark } => State::Nothing(peer_pb::Nothing {
                watermark: Some(watermark.into()),
            }),
        };
        peer_pb::Held { state: Some(state) }
    }
}

impl TryFrom<Option<peer_pb::Held>> for Held {
    type Error = InputError;

    fn try_from(held: Option<peer_pb::Held>) -> Result<Self, InputError> {
        use peer_pb::held::State;
        Ok(match required(required(held, "held")?.state, "held.state")? {
            State::Live(live) => Held::Live {
                version: required(live.version, "live.version")?.into(),
                value: live.value,
                expires_at_ms: live.expires_at_ms,
            },
            State::Dead(dead) => Held::Dead {
                version: required(dead.version, "dead.version")?.into(),
            },
            State::Nothing(nothing) => Held::Nothing {
                watermark: required(nothing.watermark, "nothing.watermark")?.into(),
            },
        })
    }
}

impl TryFrom<peer_pb::HandshakeResponse> for Introduction {
    type Error = InputError;

    fn try_from(response: peer_pb::HandshakeResponse) -> Result<Self, InputError> {
        Ok(Introduction {
            addr: response.addr.into(),
            params: required(response.params, "params")?.into(),
            clock: required(response.clock, "clock")?.into(),
            software_version: response.software_version,
            entries: response.entries,
            watermark: required(response.watermark, "watermark")?.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_response() -> peer_pb::HandshakeResponse {
        let version = Version::from_millis(1_000);
        peer_pb::HandshakeResponse {
            addr: "node2:8080".into(),
            params: Some(peer_pb::ClusterParams {
                replication_factor: 3,
                vnodes: 128,
                hash: "xxh3".into(),
                members_hash: 7,
            }),
            clock: Some(version.at.into()),
            software_version: "0.1.0".into(),
            entries: 0,
            watermark: Some(version.into()),
        }
    }

    #[test]
    fn a_handshake_answer_carries_the_peers_watermark() {
        let introduction = Introduction::try_from(handshake_response()).unwrap();
        assert_eq!(introduction.watermark, Version::from_millis(1_000));
    }

    #[test]
    fn a_handshake_answer_without_a_watermark_is_refused_by_name() {
        let response = peer_pb::HandshakeResponse {
            watermark: None,
            ..handshake_response()
        };
        let error = Introduction::try_from(response).unwrap_err();
        assert_eq!(error.to_string(), "watermark is missing");
    }
}
