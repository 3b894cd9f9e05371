//! Prometheus metrics of one node, and the `/metrics`, `/healthz` and `/readyz`
//! HTTP endpoints on METRICS_ADDR.
//!
//! Owns: the registry (one per node, so several nodes can live in one test
//! process), every metric's name, help and labels (bounded: method, status code,
//! reason, peer address; never a key), and serving them over HTTP beside
//! `/healthz` and `/readyz`.
//! Does not own: where events happen (the core reports through `observe`), the
//! values of the node's gauges (read at each scrape through the closure `node`
//! passes in), or what readiness means (`/readyz` answers from the check `node`
//! builds).

use crate::observe::{Observer, PeerOp, QuorumFailure};
use crate::ring::NodeId;
use crate::transport::PeerError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Method {
    Set,
    Get,
    Delete,
}

impl Method {
    const ALL: [Method; 3] = [Method::Set, Method::Get, Method::Delete];

    fn index(self) -> usize {
        self as usize
    }
}

/// One method's series that every successful call touches, looked up once:
/// a call then takes no family lock and hashes no labels.
struct MethodSeries {
    ok: Counter,
    latency: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Method,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: Method,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerCallLabels {
    peer: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerErrorLabels {
    peer: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Values read at scrape time from the node's parts.
#[derive(Debug, Default, Clone)]
pub struct NodeGauges {
    pub entries: u64,
    pub bytes: u64,
    pub evicted: u64,
    pub expired: u64,
    pub in_flight: u64,
    /// (peer, up)
    pub peers: Vec<(NodeId, bool)>,
}

type GaugeSource = Box<dyn Fn() -> NodeGauges + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Indexed by `Method::index`.
    method_series: [MethodSeries; 3],
    hits: Counter,
    misses: Counter,
    quorum_failures: Family<ReasonLabels, Counter>,
    read_repairs: Counter,
    writes_met_newer: Counter,
    writes_restamped: Counter,
    rate_limited: Counter,
    peer_latency: Family<PeerCallLabels, Histogram>,
    /// Each peer's read and write latency series, looked up once: a peer call
    /// then costs no label allocation or family lookup.
    peer_latency_of: HashMap<NodeId, [Histogram; 2]>,
    peer_errors: Family<PeerErrorLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl Metrics {
    /// The metrics of a node whose peers are `peers`.
    pub fn new(peers: &[NodeId], gauges: impl Fn() -> NodeGauges + Send + Sync + 'static) -> Arc<Self> {
        let mut registry = Registry::with_prefix("qc");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Client calls, by method and gRPC status code",
            requests.clone(),
        );
        let latency =
            Family::<MethodLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "request_duration",
            "Client call latency",
            Unit::Seconds,
            latency.clone(),
        );
        let method_series = Method::ALL.map(|method| MethodSeries {
            ok: requests
                .get_or_create(&RequestLabels {
                    method,
                    code: code_name(tonic::Code::Ok),
                })
                .clone(),
            latency: latency.get_or_create(&MethodLabels { method }).clone(),
        });
        let hits = Counter::default();
        registry.register("cache_hits", "Gets that returned a value", hits.clone());
        let misses = Counter::default();
        registry.register("cache_misses", "Gets that returned NOT_FOUND", misses.clone());
        let quorum_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "quorum_failures",
            "Operations that could not reach their quorum, by reason (unavailable, outcome_unknown)",
            quorum_failures.clone(),
        );
        let read_repairs = Counter::default();
        registry.register(
            "read_repairs",
            "Reads that wrote the newest value back to lagging replicas",
            read_repairs.clone(),
        );
        let writes_met_newer = Counter::default();
        registry.register(
            "writes_met_newer",
            "Writes whose final version found a newer one on some replica (a concurrent write won)",
            writes_met_newer.clone(),
        );
        let writes_restamped = Counter::default();
        registry.register(
            "writes_restamped",
            "Writes whose optimistic version a replica refused (a clock behind, or a concurrent write), stamped again after asking the replicas",
            writes_restamped.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Client calls refused by the rate limit",
            rate_limited.clone(),
        );
        let peer_latency =
            Family::<PeerCallLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "peer_rpc_duration",
            "Node-to-node call latency, by peer and operation",
            Unit::Seconds,
            peer_latency.clone(),
        );
        let peer_latency_of = peers
            .iter()
            .map(|peer| {
                let series = |op| {
                    peer_latency
                        .get_or_create(&PeerCallLabels {
                            peer: peer.to_string(),
                            op,
                        })
                        .clone()
                };
                (
                    peer.clone(),
                    [series(op_name(PeerOp::Read)), series(op_name(PeerOp::Write))],
                )
            })
            .collect();
        let peer_errors = Family::<PeerErrorLabels, Counter>::default();
        registry.register(
            "peer_rpc_errors",
            "Failed node-to-node calls, by peer and kind",
            peer_errors.clone(),
        );
        registry.register_collector(Box::new(NodeCollector {
            gauges: Box::new(gauges),
        }));
        Arc::new(Self {
            registry,
            requests,
            method_series,
            hits,
            misses,
            quorum_failures,
            read_repairs,
            writes_met_newer,
            writes_restamped,
            rate_limited,
            peer_latency,
            peer_latency_of,
            peer_errors,
        })
    }

    /// One finished client call.
    pub fn request(&self, method: Method, code: tonic::Code, elapsed: Duration) {
        if method == Method::Get {
            match code {
                tonic::Code::Ok => self.hits.inc(),
                tonic::Code::NotFound => self.misses.inc(),
                _ => 0,
            };
        }
        let series = &self.method_series[method.index()];
        match code {
            tonic::Code::Ok => series.ok.inc(),
            _ => self
                .requests
                .get_or_create(&RequestLabels {
                    method,
                    code: code_name(code),
                })
                .inc(),
        };
        series.latency.observe(elapsed.as_secs_f64());
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

impl Observer for Metrics {
    fn read_repaired(&self) {
        self.read_repairs.inc();
    }

    fn quorum_failed(&self, reason: QuorumFailure) {
        let reason = match reason {
            QuorumFailure::Unavailable => "unavailable",
            QuorumFailure::OutcomeUnknown => "outcome_unknown",
        };
        self.quorum_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    fn write_met_newer(&self) {
        self.writes_met_newer.inc();
    }

    fn write_restamped(&self) {
        self.writes_restamped.inc();
    }

    fn peer_call(&self, peer: &NodeId, op: PeerOp, elapsed: Duration, error: Option<&PeerError>) {
        let seconds = elapsed.as_secs_f64();
        match self.peer_latency_of.get(peer) {
            Some([read, write]) => match op {
                PeerOp::Read => read.observe(seconds),
                PeerOp::Write => write.observe(seconds),
            },
            None => self
                .peer_latency
                .get_or_create(&PeerCallLabels {
                    peer: peer.to_string(),
                    op: op_name(op),
                })
                .observe(seconds),
        }
        if let Some(error) = error {
            self.peer_errors
                .get_or_create(&PeerErrorLabels {
                    peer: peer.to_string(),
                    kind: error_kind(error),
                })
                .inc();
        }
    }
}

fn op_name(op: PeerOp) -> &'static str {
    match op {
        PeerOp::Read => "read",
        PeerOp::Write => "write",
    }
}

fn error_kind(error: &PeerError) -> &'static str {
    match error {
        PeerError::ConnectionRefused => "connection_refused",
        PeerError::Unreachable { .. } => "unreachable",
        PeerError::Timeout => "timeout",
        PeerError::ConnectionLost { .. } => "connection_lost",
        PeerError::Refused { .. } => "refused",
        PeerError::NotContacted { .. } => "not_contacted",
        PeerError::ReplyClockAhead { .. } => "clock_ahead",
        PeerError::BadAnswer { .. } => "bad_answer",
        PeerError::Remote { .. } => "remote",
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Gauges and counters owned by other parts, read at each scrape.
struct NodeCollector {
    gauges: GaugeSource,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = (self.gauges)();
        let constant_gauges = [
            (
                "entries",
                "Entries stored on this node, tombstones included",
                gauges.entries,
            ),
            (
                "stored_bytes",
                "Bytes of keys, values and per-entry overhead stored on this node",
                gauges.bytes,
            ),
            (
                "in_flight_requests",
                "Client calls being served",
                gauges.in_flight,
            ),
        ];
        for (name, help, value) in constant_gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "evictions",
                "Entries evicted to stay within CAPACITY or CAPACITY_BYTES",
                gauges.evicted,
            ),
            (
                "expirations",
                "Expired entries and old tombstones swept",
                gauges.expired,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let up = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "peer_up",
            "1 when the peer answers handshakes, 0 otherwise",
            None,
            up.metric_type(),
        )?;
        for (peer, is_up) in gauges.peers {
            let labels = PeerLabels {
                peer: peer.to_string(),
            };
            ConstGauge::new(i64::from(is_up)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What `encode` produces: the OpenMetrics text format (it ends with `# EOF`),
/// which Prometheus negotiates and parses as such.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics`, `/healthz` (alive) and `/readyz` (ready) until `stop`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "alive\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
