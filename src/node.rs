//! One node: builds the core and the gRPC layer from a `Config`, serves until
//! told to stop, then drains.
//!
//! Owns: the order of startup (wait MAX_CLOCK_SKEW, then clock, store with its
//! restart watermark, ring, replica, peers, transport, metrics, coordinator,
//! listeners, handshakes, expiry sweeper, timer anchor) and of shutdown (turn new
//! client calls away, NOT_SERVING, wait for in-flight calls up to
//! SHUTDOWN_TIMEOUT, stop the listener, then the HTTP endpoints); readiness (not
//! draining, and enough members up for read and write quorums) and keeping gRPC
//! health in step with it; the start and stop log lines.
//! Does not own: signals and exit codes (`main`), the HTTP endpoints that answer
//! with readiness (`metrics`), how a call is turned away while draining
//! (`server::drain`).

use crate::clock::{Hlc, SystemClock, WallClock, restart_wait, restart_watermark};
use crate::config::Config;
use crate::coordinator::{Coordinator, CoordinatorSettings, UnsafeSwitches};
use crate::limits::InputLimits;
use crate::metrics::{Metrics, NodeGauges, serve_http};
use crate::peers::PeerState;
use crate::peers::{Peers, spawn_handshakes};
use crate::replica::{ClusterParams, Replica};
use crate::ring::{HASH_NAME, NodeId, Ring, node_number};
use crate::server::admin::{AdminApi, ReadinessCheck};
use crate::server::client::ClientApi;
use crate::server::drain::Drain;
use crate::server::peer::PeerApi;
use crate::server::peer_client::GrpcTransport;
use crate::server::rate_limit::RateLimit;
use crate::server::{PEER_MESSAGE_MARGIN, Services, routes};
use crate::store::{Store, StoreLimits};
use crate::transport::Transport;
use slog::{Logger, debug, error, info, warn};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often expired entries and old tombstones are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often readiness is re-evaluated for gRPC health.
const READINESS_INTERVAL: Duration = Duration::from_millis(200);
/// How long the listener may take to close connections after the drain.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}; is another process using the port? Set ADDR or LISTEN_ADDR")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{reason}")]
    Peers { reason: String },
    #[error("the gRPC server failed: {reason}")]
    Server { reason: String },
}

/// The parts of a node the services and background tasks share.
struct Core {
    store: Arc<Store>,
    replica: Arc<Replica>,
    peers: Arc<Peers>,
    transport: Arc<dyn Transport>,
    coordinator: Arc<Coordinator>,
    drain: Arc<Drain>,
    metrics: Arc<Metrics>,
}

fn build_core(config: &Config, log: &Logger) -> Result<Core, NodeError> {
    let wall: Arc<dyn WallClock> = Arc::new(SystemClock::with_offset(config.clock_offset_ms));
    let skew_ms = config.max_clock_skew.as_millis() as u64;
    let clock = Arc::new(Hlc::new(wall.clone(), node_number(&config.addr), skew_ms));
    let limits = StoreLimits {
        num_shards: config.num_shards,
        max_entries: config.capacity,
        max_bytes: config.capacity_bytes,
    };
    let store = Arc::new(Store::new(limits, wall.clone(), restart_watermark(wall.now_ms())));
    let node_ids = |names: &[String]| {
        names
            .iter()
            .map(|name| NodeId::from(name.as_str()))
            .collect::<Vec<_>>()
    };
    let peer_ids = node_ids(&config.peers);
    let ring = Ring::new(
        &node_ids(&config.members()),
        config.vnodes,
        config.replication_factor,
    );
    let params = ClusterParams {
        replication_factor: config.replication_factor as u32,
        vnodes: config.vnodes as u32,
        hash: HASH_NAME.into(),
        members_hash: ring.members_hash(),
    };
    let replica = Arc::new(Replica::new(
        config.addr.as_str().into(),
        params,
        store.clone(),
        clock,
    ));
    let peers = Arc::new(Peers::new(peer_ids.clone(), log.clone()));
    let transport: Arc<dyn Transport> = Arc::new(
        GrpcTransport::new(
            &peer_ids,
            peer_source(config),
            config.rpc_timeout,
            config.max_recv_msg_size + PEER_MESSAGE_MARGIN,
        )
        .map_err(|reason| NodeError::Peers { reason })?,
    );
    let settings = CoordinatorSettings {
        read_quorum: config.read_quorum,
        write_quorum: config.write_quorum,
        rpc_timeout: config.rpc_timeout,
        unsafe_switches: config.unsafe_switches,
    };
    let drain = Drain::new();
    let metrics = Metrics::new(&peer_ids, {
        let (store, peers, drain) = (store.clone(), peers.clone(), drain.clone());
        move || NodeGauges {
            entries: store.len() as u64,
            bytes: store.bytes() as u64,
            evicted: store.dropped().evicted.load(Ordering::Relaxed),
            expired: store.dropped().expired.load(Ordering::Relaxed),
            in_flight: drain.in_flight() as u64,
            peers: peers
                .snapshot()
                .into_iter()
                .map(|(peer, status)| (peer, status.state == PeerState::Up))
                .collect(),
        }
    });
    let coordinator = Coordinator::new(replica.clone(), ring, transport.clone(), peers.clone(), settings)
        .with_observer(metrics.clone());
    Ok(Core {
        store,
        replica,
        peers,
        transport,
        coordinator: Arc::new(coordinator),
        drain,
        metrics,
    })
}

/// Ready: not draining, and enough members up (this node and handshaken peers)
/// for read and write quorums.
fn readiness(config: &Config, core: &Core) -> ReadinessCheck {
    let (read_quorum, write_quorum) = config.effective_quorums();
    let needed = read_quorum.max(write_quorum);
    let members = config.members().len();
    let (drain, peers) = (core.drain.clone(), core.peers.clone());
    Arc::new(move || {
        if drain.is_draining() {
            return Err("draining".into());
        }
        let up = 1 + peers.up_count();
        if up < needed {
            return Err(format!(
                "{up} of {members} members up, {needed} needed for quorums"
            ));
        }
        Ok(())
    })
}

/// Keeps gRPC health in step with readiness, until `stop`.
fn spawn_health_updates(
    reporter: HealthReporter,
    ready: ReadinessCheck,
    log: Logger,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(READINESS_INTERVAL);
        let mut was_ready = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {
                    let readiness = ready();
                    if was_ready != Some(readiness.is_ok()) {
                        match &readiness {
                            Ok(()) => info!(log, "ready"),
                            Err(reason) => warn!(log, "not ready"; "reason" => reason.as_str()),
                        }
                        set_health(&reporter, readiness.is_ok()).await;
                        was_ready = Some(readiness.is_ok());
                    }
                }
            }
        }
    });
}

async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status("pb.CacheService", status).await;
}

/// When LISTEN_ADDR names one IP, node-to-node calls leave from it too, so that
/// peers (and firewalls) see this node at one address.
fn peer_source(config: &Config) -> Option<std::net::IpAddr> {
    let ip = config.listen_addr.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Runs a node until `stop` completes, then drains and returns.
pub async fn run(config: Config, log: Logger, stop: impl Future<Output = ()>) -> Result<(), NodeError> {
    tokio::pin!(stop);
    // The restart watermark (the wall clock when the store is built) must be
    // above all this node held before it went down: versions up to its wall
    // clock then + MAX_CLOCK_SKEW, with a clock that may have stepped back by
    // up to MAX_CLOCK_SKEW since (docs/design-notes.md, "Replica rule and
    // watermarks").
    let wait = restart_wait(config.max_clock_skew.as_millis() as u64);
    info!(log, "waiting twice MAX_CLOCK_SKEW before serving, so that what this node may have held before a restart stays below its watermark";
        "wait_ms" => wait.as_millis() as u64);
    tokio::select! {
        () = &mut stop => return Ok(()),
        () = tokio::time::sleep(wait) => {}
    }
    let core = build_core(&config, &log)?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Listen { addr, source })?,
        ),
        None => None,
    };
    // The HTTP endpoints stay up through the drain, so /readyz can say "draining".
    let close_listener_late = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| NodeError::Listen {
        addr: config.listen_addr,
        source,
    })?;
    log_start(&config, &log, local_addr, &core);
    if let Some(addr) = config.metrics_addr {
        info!(log, "metrics endpoint"; "addr" => %addr, "paths" => "/metrics /healthz /readyz");
    }

    let drain = core.drain.clone();
    let ready = readiness(&config, &core);
    let health_reporter = HealthReporter::new();
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()),
    );
    set_health(&health_reporter, false).await;
    let input_limits = InputLimits {
        max_key_size: config.max_key_size,
        max_value_size: config.max_value_size,
        default_ttl: config.default_ttl,
        max_ttl: config.max_ttl,
    };
    let close_listener = CancellationToken::new();
    let services = Services {
        client: ClientApi::new(
            core.coordinator.clone(),
            input_limits,
            drain.clone(),
            core.metrics.clone(),
        ),
        admin: AdminApi::new(core.coordinator.clone(), ready.clone()),
        metrics: core.metrics.clone(),
        peer: PeerApi::new(
            core.replica.clone(),
            input_limits,
            log.clone(),
            close_listener.clone(),
        ),
        rate_limit: Arc::new(RateLimit::new(config.rate_limit, config.rate_limit_burst)),
        health,
        max_recv_msg_size: config.max_recv_msg_size,
        max_send_msg_size: config.max_send_msg_size,
    };

    let background = CancellationToken::new();
    spawn_handshakes(
        core.peers.clone(),
        core.replica.clone(),
        core.transport.clone(),
        config.rpc_timeout,
        background.clone(),
    );
    spawn_sweeper(core.store.clone(), log.clone(), background.clone());
    spawn_timer_anchor(core.coordinator.timer_anchor_period(), background.clone());
    spawn_health_updates(
        health_reporter.clone(),
        ready.clone(),
        log.clone(),
        background.clone(),
    );
    if let Some(listener) = metrics_listener {
        let (metrics, ready, stop, log) = (
            core.metrics.clone(),
            ready.clone(),
            close_listener_late.clone(),
            log.clone(),
        );
        tokio::spawn(async move {
            if let Err(error) = serve_http(listener, metrics, ready, stop).await {
                error!(log, "metrics endpoint failed"; "error" => %error);
            }
        });
    }

    let mut server = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(tower::util::MapResponseLayer::new(
                crate::server::status::size_limit_as_resource_exhausted,
            ))
            .add_routes(routes(services))
            .serve_with_incoming_shutdown(
                accepted_without_delay(listener),
                close_listener.clone().cancelled_owned(),
            ),
    );

    tokio::select! {
        () = &mut stop => {}
        finished = &mut server => {
            background.cancel();
            let reason = match finished {
                Ok(Ok(())) => "stopped by itself".to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            return Err(NodeError::Server { reason });
        }
    }

    info!(log, "draining"; "in_flight" => drain.in_flight(), "timeout_s" => config.shutdown_timeout.as_secs_f64());
    drain.start();
    set_health(&health_reporter, false).await;
    let abandoned = drain.wait_idle(config.shutdown_timeout).await;
    if abandoned > 0 {
        warn!(log, "drain timed out; abandoning calls"; "abandoned" => abandoned);
    }
    close_listener.cancel();
    background.cancel();
    // The listener waits for every connection to close; a silent client could
    // hold it forever, so it gets a short grace and is then dropped.
    if tokio::time::timeout(CLOSE_GRACE, &mut server).await.is_err() {
        server.abort();
    }
    close_listener_late.cancel();
    info!(log, "stopped"; "abandoned_calls" => abandoned, "entries" => core.store.len());
    Ok(())
}

/// Accepted connections with Nagle's algorithm off. The server builder's
/// `tcp_nodelay` does not reach connections served from a listener of our own:
/// without this, small answers wait for delayed ACKs (~40 ms a hop).
fn accepted_without_delay(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The runtime the node actually runs on: WORKER_THREADS=1 is a current-thread one.
fn runtime_flavor() -> &'static str {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
        _ => "multi_thread",
    }
}

fn log_start(config: &Config, log: &Logger, local_addr: SocketAddr, core: &Core) {
    let (read_quorum, write_quorum) = config.effective_quorums();
    let replication = core.coordinator.ring().replication();
    info!(log, "started";
        "addr" => &config.addr,
        "listen" => %local_addr,
        "peers" => config.peers.join(","),
        "shards" => core.store.num_shards(),
        "capacity" => config.capacity,
        "capacity_bytes" => config.capacity_bytes,
        "replication" => replication,
        "read_quorum" => read_quorum,
        "write_quorum" => write_quorum,
        "rate_limit" => config.rate_limit,
        "worker_threads" => config.worker_threads,
        "runtime" => runtime_flavor(),
        "version" => env!("CARGO_PKG_VERSION"));
    if read_quorum + write_quorum <= replication {
        error!(log, "READ_QUORUM + WRITE_QUORUM <= N: reads may miss acknowledged writes or return stale \
                     values; the consistency promise does NOT hold with these settings";
            "read_quorum" => read_quorum, "write_quorum" => write_quorum, "replication" => replication);
    }
    let switches = config.unsafe_switches;
    if switches != UnsafeSwitches::default() || config.clock_offset_ms != 0 {
        error!(log, "TEST-ONLY settings are on; this node is deliberately unsafe";
            "skip_version_query" => switches.skip_version_query,
            "skip_read_repair" => switches.skip_read_repair,
            "ignore_watermarks" => switches.ignore_watermarks,
            "force_one_round_write" => switches.force_one_round_write,
            "clock_offset_ms" => config.clock_offset_ms);
    }
}

/// Keeps a timer due within `period` pending at all times, so that arming a
/// read's hedge timer (due `hedge_delay` after the read starts) never makes it
/// the runtime's earliest deadline. tokio's timer wakes the runtime through a
/// system call whenever a new deadline comes before the one it last parked
/// for, even from the runtime's own thread, and the wake-up then costs one
/// more `epoll_wait`; without the anchor, the first read after every idle spell
/// pays both (the measurements: docs/design-notes.md, "Read"). `period`
/// comes from the coordinator, below its hedge delay; the cost is one timer
/// wake-up per `period` (50 ms by default).
fn spawn_timer_anchor(period: Duration, stop: CancellationToken) {
    spawn_ticking(period, stop, || {});
}

/// Runs `on_tick` every `period` until `stop`; a tick missed while the runtime
/// was busy is taken late, not made up for.
fn spawn_ticking(period: Duration, stop: CancellationToken, mut on_tick: impl FnMut() + Send + 'static) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => on_tick(),
            }
        }
    });
}

fn spawn_sweeper(store: Arc<Store>, log: Logger, stop: CancellationToken) {
    spawn_ticking(SWEEP_INTERVAL, stop, move || {
        let swept = store.sweep_expired();
        if swept > 0 {
            debug!(log, "swept expired entries"; "count" => swept);
        }
    });
}
