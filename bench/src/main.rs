//! `quorum-cache-bench`: load generator for quorum-cache, and the same load
//! against Redis, etcd and a bare gRPC echo server for comparison.
//!
//! Owns: the command line (`run`, `echo-server`, `memory`) and wiring the
//! modules together. Does not own: any measuring logic (`driver`, `recorder`,
//! `report`, `memory`) or protocol (`targets`, `echo_server`).
//!
//! Modules: `rng`, `zipf`, `workload` (what to ask), `targets` (whom, and how),
//! `driver` (when), `recorder`, `progress` and `cpu` (what was seen), `report`
//! (telling it), `echo_server`, `memory`.

mod cpu;
mod driver;
mod echo_server;
mod memory;
mod pacer;
mod progress;
mod recorder;
mod report;
mod rng;
mod targets;
mod workload;
mod zipf;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use targets::{Route, Target, TargetKind, TargetSpec};
use workload::{Distribution, Workload};

/// The same allocator as the node (see the node's `main.rs`), so that the echo
/// ceiling and the node pay the same for their buffers, and the generator less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "quorum-cache-bench",
    version,
    about = "Load generator for quorum-cache, Redis, etcd and a gRPC echo server"
)]
struct Cli {
    /// Threads of this process's async runtime. 1 (the default): a single-threaded
    /// runtime, which on a small machine shared with the servers costs about half
    /// the CPU per call of a work-stealing one (no cross-thread wake-ups, and the
    /// calls of many clients leave in one write); N > 1: a multi-threaded runtime
    /// with N workers; 0: a multi-threaded runtime with one worker per core.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one workload against one system and reports throughput and latency.
    Run(RunArgs),
    /// Serves the quorum-cache client API with constant answers (the one-hop ceiling).
    EchoServer {
        #[arg(long)]
        addr: SocketAddr,
        /// Size of the value every Get answers.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
    },
    /// Stores N entries and reports resident bytes per entry (quorum-cache and/or Redis).
    Memory(MemoryArgs),
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    target: TargetKind,
    /// Endpoints to send to, comma-separated host:port.
    #[arg(long, value_delimiter = ',', required = true)]
    addrs: Vec<String>,
    /// quorum-cache only: any node round-robin, or each key's first ring replica.
    #[arg(long, value_enum, default_value_t = Route::Any)]
    route: Route,
    /// Ring members for --route replica (default: --addrs), as the nodes' ADDR values.
    #[arg(long, value_delimiter = ',')]
    members: Vec<String>,
    /// Concurrent clients (each has at most one call in flight).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// gRPC channels / Redis connections per endpoint, shared by the clients. Few
    /// connections carry many clients' calls per write; one would leave the
    /// generator and the server taking turns instead of working at once.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Open loop at this total rate (ops/s), latency from the intended send time; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Percentage of Gets (the rest are Sets).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    read_ratio: u8,
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    distribution: Distribution,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Set every key once before the run, so that Gets hit.
    #[arg(long)]
    preload: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds after which a call counts as a "timeout" error.
    #[arg(long, default_value_t = 10.0)]
    op_timeout: f64,
    /// Prefix of the progress lines (default: the target's name).
    #[arg(long)]
    label: Option<String>,
    /// PIDs of the server processes, comma-separated (Linux): their CPU time during
    /// the measured window is reported per operation, next to the generator's own.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
}

#[derive(Args)]
struct MemoryArgs {
    /// A single quorum-cache node to fill.
    #[arg(long)]
    addrs: Option<String>,
    /// That node's PID, for its RSS.
    #[arg(long, requires = "addrs")]
    pid: Option<u32>,
    #[arg(long)]
    redis_addr: Option<String>,
    #[arg(long, requires = "redis_addr")]
    redis_pid: Option<u32>,
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 2)]
    connections: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = builder.enable_all().build().expect("the tokio runtime starts");
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args, cli.threads).await,
            Command::EchoServer { addr, value_size } => echo_server::serve(addr, value_size).await,
            Command::Memory(args) => memory(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quorum-cache-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs, threads: usize) -> Result<(), String> {
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.rate >= 0.0 && args.op_timeout > 0.0) {
        return Err("--duration and --op-timeout must be > 0, --warmup and --rate >= 0".into());
    }
    if args.route == Route::Replica && args.target != TargetKind::QuorumCache {
        return Err("--route replica applies to --target quorum-cache only".into());
    }
    let workload = Arc::new(Workload::new(
        "k",
        args.keys,
        args.value_size,
        args.read_ratio,
        args.distribution,
    ));
    let cpu = cpu::Watch {
        server_pids: args.server_pids.clone(),
    };
    cpu.check().map_err(|error| format!("--server-pids: {error}"))?;
    let spec = TargetSpec {
        kind: args.target,
        members: if args.members.is_empty() {
            args.addrs.clone()
        } else {
            args.members.clone()
        },
        addrs: args.addrs.clone(),
        route: args.route,
        connections: args.connections.max(1),
        connect_timeout: Duration::from_secs(5),
    };
    let target = Target::connect(&spec, &workload.keys).await?;
    let op_timeout = Duration::from_secs_f64(args.op_timeout);
    let preload = if args.preload {
        let summary = driver::preload(&target, &workload, args.clients, op_timeout).await;
        eprintln!(
            "preload: {} keys in {:.1}s, {} errors",
            summary.ops,
            summary.elapsed.as_secs_f64(),
            summary.errors
        );
        Some(summary)
    } else {
        None
    };
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.target).to_lowercase());
    let plan = driver::Plan {
        clients: args.clients.max(1),
        rate: args.rate,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        op_timeout,
        label,
        seed: 42,
        cpu,
    };
    let measurement = driver::run(&target, &workload, &plan).await?;
    let settings = report::RunSettings {
        target: args.target,
        addrs: args.addrs,
        route: args.route,
        clients: plan.clients,
        connections: spec.connections,
        generator_threads: threads,
        mode: if args.rate > 0.0 { "open" } else { "closed" },
        rate: args.rate,
        keys: args.keys,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
        distribution: args.distribution,
        warmup_s: args.warmup,
        duration_s: args.duration,
    };
    let report = report::Report::new(settings, &measurement, preload.as_ref());
    print!("{}", report.to_text());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

async fn memory(args: MemoryArgs) -> Result<(), String> {
    let quorum_cache = match (&args.addrs, args.pid) {
        (Some(addrs), Some(pid)) => Some((addrs.split(',').map(str::to_string).collect(), pid)),
        (Some(_), None) => {
            return Err("--pid is needed with --addrs (the node's RSS is what is measured)".into());
        }
        _ => None,
    };
    if quorum_cache.is_none() && args.redis_addr.is_none() {
        return Err("give --addrs and --pid (quorum-cache), --redis-addr (Redis), or both".into());
    }
    let plan = memory::MemoryPlan {
        quorum_cache,
        redis: args.redis_addr.map(|addr| (addr, args.redis_pid)),
        entries: args.entries.max(1),
        value_size: args.value_size,
        clients: args.clients.max(1),
        connections: args.connections.max(1),
    };
    let report = memory::measure(&plan).await?;
    print!("{}", report.to_text());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), String> {
    let json = serde_json::to_string_pretty(value).map_err(|error| format!("JSON: {error}"))?;
    std::fs::write(path, json + "\n").map_err(|error| format!("{}: {error}", path.display()))
}
