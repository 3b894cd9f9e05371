//! The `quorum-cache` binary: reads `.env` and the environment, sets up logs,
//! runs a node until SIGTERM or SIGINT, drains, flushes the logs and exits 0.
//! Also `quorum-cache health` (a gRPC health check, for container probes),
//! `quorum-cache status` (the cluster as a node sees it) and `--help`.
//!
//! Owns: the command line, reading `.env`, the stop signals, the node's runtime
//! and allocator, and exit codes: 0 stopped cleanly, 1 runtime failure (cannot
//! listen, not serving), 2 bad configuration or usage.
//! Does not own: parsing the configuration (`config`), what a node does between
//! start and stop, draining included (`node`).

use quorum_cache::config::Config;
use quorum_cache::{logging, node};
use std::process::ExitCode;
use std::time::Duration;

const USAGE_ERROR: u8 = 2;

/// mimalloc rather than glibc's malloc: every call allocates and frees buffers of
/// a few KiB (HTTP/2 frames, gRPC encode buffers), which glibc serves from its
/// slow path (the profile: docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => run_node(),
        Some("-h" | "--help" | "help") => {
            print!("{}", Config::help());
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("quorum-cache {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("health") => health(&args[1..]),
        Some("status") => status(&args[1..]),
        Some(other) => {
            eprintln!("quorum-cache: unknown argument {other:?}; see quorum-cache --help");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

fn load_config() -> Result<Config, String> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(error) if error.not_found() => {}
        Err(error) => return Err(format!(".env could not be read: {error}")),
    }
    Config::from_env().map_err(|error| error.to_string())
}

/// The subcommands' runtime: one thread is plenty for one call.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// One worker: a current-thread runtime, which wakes no other thread and lets the
/// answers of many calls leave in one write; more: a work-stealing runtime.
fn node_runtime(worker_threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    builder.enable_all().build().expect("the tokio runtime starts")
}

fn run_node() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("quorum-cache: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let (log, log_guard) = logging::init(&config.log_format, config.log_level);
    let outcome = node_runtime(config.worker_threads).block_on(node::run(config, log.clone(), stop_signal()));
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            slog::crit!(log, "node failed"; "error" => %error);
            eprintln!("quorum-cache: {error}");
            ExitCode::FAILURE
        }
    };
    drop(log);
    drop(log_guard);
    code
}

/// SIGTERM (what Docker and Kubernetes send) or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// The node a subcommand talks to: `--addr HOST:PORT`, or this node's own
/// listener (`Config::local_dial_addr`).
fn target(command: &str, args: &[String]) -> Result<String, ExitCode> {
    match args {
        [] => match load_config() {
            Ok(config) => Ok(config.local_dial_addr().to_string()),
            Err(message) => {
                eprintln!("quorum-cache {command}: {message}");
                Err(ExitCode::from(USAGE_ERROR))
            }
        },
        [flag, addr] if flag == "--addr" => Ok(addr.clone()),
        _ => {
            eprintln!("quorum-cache {command}: usage: quorum-cache {command} [--addr HOST:PORT]");
            Err(ExitCode::from(USAGE_ERROR))
        }
    }
}

/// Runs a subcommand's call against a node: its output on success, exit 1 on failure.
fn run_against(
    command: &str,
    args: &[String],
    call: impl AsyncFnOnce(&str) -> Result<String, String>,
) -> ExitCode {
    let addr = match target(command, args) {
        Ok(addr) => addr,
        Err(code) => return code,
    };
    match runtime().block_on(call(&addr)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("quorum-cache {command}: {addr}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `quorum-cache health [--addr HOST:PORT]`: exit 0 when the node is SERVING.
fn health(args: &[String]) -> ExitCode {
    run_against("health", args, async |addr| {
        check_health(addr).await.map(|()| "SERVING\n".to_string())
    })
}

/// `quorum-cache status [--addr HOST:PORT]`: the cluster as that node sees it.
fn status(args: &[String]) -> ExitCode {
    run_against("status", args, async |addr| cluster_status(addr).await)
}

async fn channel(addr: &str) -> Result<tonic::transport::Channel, String> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|error| format!("not an address: {error}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|error| format!("cannot connect: {error}"))
}

async fn cluster_status(addr: &str) -> Result<String, String> {
    use quorum_cache::pb::{StatusRequest, admin_service_client::AdminServiceClient};
    let status = AdminServiceClient::new(channel(addr).await?)
        .status(StatusRequest {})
        .await
        .map_err(|status| format!("status failed: {}", status.message()))?
        .into_inner();
    Ok(quorum_cache::server::admin::render(
        &status,
        std::time::SystemTime::now(),
    ))
}

async fn check_health(addr: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let response = HealthClient::new(channel(addr).await?)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| format!("health check failed: {}", status.message()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {}", other.as_str_name())),
    }
}
