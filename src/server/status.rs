//! Where the node's errors (input, quorum, a peer's refusal, draining, the rate
//! limit, an oversized message) become gRPC statuses.
//!
//! Owns: the code of each of those errors, the `qc-outcome` metadata that tells a
//! client whether a failed write certainly did not happen (`not-applied`) or may
//! have (`unknown`), so retries and consistency checkers can tell them apart, and
//! the `qc-refusal` metadata that carries the kind of a peer's refusal.
//! Does not own: the messages (each error's `Display` says what happened and
//! what to do), or the few statuses a service raises about its own message (a
//! malformed batch in `peer`, a stored value that is not UTF-8 in `client`).

use crate::coordinator::CoordinatorError;
use crate::limits::InputError;
use crate::replica::Refusal;
use tonic::{Code, Status};

/// Metadata key telling whether a failed write may have taken effect.
pub const OUTCOME_KEY: &str = "qc-outcome";
/// Metadata key with the kind of a peer's refusal.
pub const REFUSAL_KEY: &str = "qc-refusal";

pub fn from_input(error: InputError) -> Status {
    let code = match error {
        InputError::ValueTooLarge { .. } => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    };
    with_outcome(Status::new(code, error.to_string()), "not-applied")
}

pub fn from_coordinator(error: CoordinatorError) -> Status {
    let outcome = match error {
        CoordinatorError::OutcomeUnknown { .. } => "unknown",
        CoordinatorError::QuorumUnavailable { .. }
        | CoordinatorError::ClockBehind { .. }
        | CoordinatorError::NoReplicas => "not-applied",
    };
    let code = match error {
        CoordinatorError::NoReplicas => Code::Internal,
        _ => Code::Unavailable,
    };
    with_outcome(Status::new(code, error.to_string()), outcome)
}

pub fn from_refusal(refusal: Refusal) -> Status {
    let kind = match refusal {
        Refusal::ClockAhead { .. } | Refusal::VersionAhead { .. } => "clock-ahead",
        Refusal::WrongAddress { .. } | Refusal::ParamsMismatch { .. } => "mismatch",
    };
    let mut status = Status::failed_precondition(refusal.to_string());
    status
        .metadata_mut()
        .insert(REFUSAL_KEY, kind.parse().expect("ascii"));
    status
}

pub fn not_found(key: &str) -> Status {
    Status::not_found(format!("key {key:?} not found (absent, deleted or expired)"))
}

pub fn draining() -> Status {
    with_outcome(
        Status::unavailable("this node is shutting down and takes no new calls; send them to another node"),
        "not-applied",
    )
}

pub fn rate_limited(rate: u32, burst: u32) -> Status {
    Status::resource_exhausted(format!(
        "rate limit exceeded: this node accepts RATE_LIMIT={rate} client calls per second (burst {burst}); \
         slow down, spread calls over more nodes, or raise RATE_LIMIT"
    ))
}

fn with_outcome(mut status: Status, outcome: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(OUTCOME_KEY, outcome.parse().expect("ascii"));
    status
}

/// tonic answers a message over MAX_RECV_MSG_SIZE with OUT_OF_RANGE before any
/// handler runs; gRPC's convention (and ours) for a size limit is
/// RESOURCE_EXHAUSTED. Rewrites that one status on the way out.
pub fn size_limit_as_resource_exhausted<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|code| code == "11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| {
            message.contains("message%20length%20too%20large") || message.contains("message length too large")
        });
    if out_of_range && too_large {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("8"));
    }
    response
}
