//! Configuration from the environment (`.env` is read first when present).
//!
//! Owns: the list of variables with their defaults and meanings (`VARIABLES`, also
//! what `--help` prints), parsing every value, and refusing a bad one with a
//! message naming the variable, the value and what is allowed. Never a silent
//! fallback to the default.
//! Does not own: acting on the values (`node`), reading `.env` (`main`).

use crate::coordinator::UnsafeSwitches;
use crate::store::ENTRY_OVERHEAD_BYTES;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 8080;

/// Every variable: name, default, meaning. `--help` and `.env.example` follow it.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "ADDR",
        "localhost:8080",
        "this node's advertised address and identity (host:port; a missing port means 8080)",
    ),
    (
        "LISTEN_ADDR",
        "0.0.0.0:<port of ADDR>",
        "the socket address to listen on; when it names one IP, node-to-node calls are sent from it",
    ),
    (
        "PEERS",
        "",
        "comma-separated addresses of the other nodes (a missing port means 8080; ADDR itself is ignored)",
    ),
    ("NUM_SHARDS", "4 x cores, a power of two", "cache shards per node"),
    (
        "WORKER_THREADS",
        "the cores available to the process",
        "threads serving calls; 1 runs a single-threaded runtime, the cheapest per call; set it to the container's CPU limit, or lower when other busy processes share the cores",
    ),
    (
        "CAPACITY",
        "1000000",
        "maximum entries per node, tombstones included",
    ),
    (
        "CAPACITY_BYTES",
        "268435456",
        "maximum bytes per node of keys, values and 224 bytes per entry of bookkeeping (about the resident memory of the store)",
    ),
    ("TTL", "3600", "default time to live of an entry, in seconds"),
    (
        "MAX_TTL",
        "2592000",
        "largest TTL a request may ask for, in seconds (30 days)",
    ),
    ("MAX_KEY_SIZE", "250", "largest key, in bytes"),
    ("MAX_VALUE_SIZE", "1048576", "largest value, in bytes"),
    (
        "MAX_RECV_MSG_SIZE",
        "4194304",
        "largest gRPC message received, in bytes",
    ),
    (
        "MAX_SEND_MSG_SIZE",
        "4194304",
        "largest gRPC message sent, in bytes",
    ),
    (
        "RPC_TIMEOUT",
        "5",
        "timeout of node-to-node calls, in seconds (or with a unit: 500ms, 2s)",
    ),
    (
        "RATE_LIMIT",
        "100000",
        "client calls per second this node accepts; 0 disables the limit",
    ),
    (
        "RATE_LIMIT_BURST",
        "RATE_LIMIT",
        "client calls accepted at once above the rate",
    ),
    (
        "REPLICATION_FACTOR",
        "3",
        "N, the replicas of every key, capped at the cluster size",
    ),
    (
        "WRITE_QUORUM",
        "majority of N",
        "W, replicas that must hold a write before it is acknowledged",
    ),
    (
        "READ_QUORUM",
        "majority of N",
        "R, replicas a read must hear from",
    ),
    ("VNODES", "128", "virtual points per node on the hash ring"),
    (
        "MAX_CLOCK_SKEW",
        "500",
        "largest clock difference between nodes tolerated, in milliseconds; a node waits twice this before it serves",
    ),
    (
        "SHUTDOWN_TIMEOUT",
        "8",
        "how long a stopping node waits for in-flight calls, in seconds",
    ),
    (
        "METRICS_ADDR",
        "0.0.0.0:<port of ADDR + 1000>",
        "where /metrics, /healthz and /readyz are served over plain HTTP; empty disables",
    ),
    (
        "LOG_LEVEL",
        "info",
        "trace, debug, info, warning, error or critical",
    ),
    ("LOG_FORMAT", "json", "json or text"),
    (
        "CLOCK_OFFSET",
        "0",
        "TEST ONLY: shifts this node's clock by this many milliseconds (may be negative)",
    ),
    (
        "UNSAFE_SKIP_VERSION_QUERY",
        "false",
        "TEST ONLY: stamp writes from the local clock, never asking the replicas (breaks consistency)",
    ),
    (
        "UNSAFE_SKIP_READ_REPAIR",
        "false",
        "TEST ONLY: skip the read's write-back (breaks consistency)",
    ),
    (
        "UNSAFE_IGNORE_WATERMARKS",
        "false",
        "TEST ONLY: trust replicas that forgot (breaks consistency)",
    ),
    (
        "UNSAFE_FORCE_ONE_ROUND_WRITE",
        "false",
        "TEST ONLY: use the one-round write also when two write quorums need not meet (2W <= N; breaks consistency)",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub addr: String,
    pub listen_addr: SocketAddr,
    pub peers: Vec<String>,
    pub num_shards: usize,
    pub capacity: usize,
    pub capacity_bytes: usize,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub max_key_size: usize,
    pub max_value_size: usize,
    pub max_recv_msg_size: usize,
    pub max_send_msg_size: usize,
    pub rpc_timeout: Duration,
    pub rate_limit: u32,
    pub rate_limit_burst: u32,
    pub worker_threads: usize,
    pub replication_factor: usize,
    /// 0 = a majority of N.
    pub write_quorum: usize,
    /// 0 = a majority of N.
    pub read_quorum: usize,
    pub vnodes: usize,
    pub max_clock_skew: Duration,
    pub shutdown_timeout: Duration,
    /// None: no metrics endpoint.
    pub metrics_addr: Option<SocketAddr>,
    pub log_level: slog::Level,
    pub log_format: LogFormat,
    pub clock_offset_ms: i64,
    pub unsafe_switches: UnsafeSwitches,
}

/// A variable with a value that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} must be {expected}, got {value:?}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: String,
}

/// The variables as strings, straight from the environment.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    addr: Option<String>,
    listen_addr: Option<String>,
    peers: Option<String>,
    num_shards: Option<String>,
    capacity: Option<String>,
    capacity_bytes: Option<String>,
    ttl: Option<String>,
    max_ttl: Option<String>,
    max_key_size: Option<String>,
    max_value_size: Option<String>,
    max_recv_msg_size: Option<String>,
    max_send_msg_size: Option<String>,
    rpc_timeout: Option<String>,
    rate_limit: Option<String>,
    rate_limit_burst: Option<String>,
    worker_threads: Option<String>,
    replication_factor: Option<String>,
    write_quorum: Option<String>,
    read_quorum: Option<String>,
    vnodes: Option<String>,
    max_clock_skew: Option<String>,
    shutdown_timeout: Option<String>,
    metrics_addr: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    clock_offset: Option<String>,
    unsafe_skip_version_query: Option<String>,
    unsafe_skip_read_repair: Option<String>,
    unsafe_ignore_watermarks: Option<String>,
    unsafe_force_one_round_write: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        // Only our names, so that an unrelated variable can never fail deserialisation.
        let ours = vars
            .into_iter()
            .filter(|(name, _)| VARIABLES.iter().any(|(known, _, _)| known == name));
        let raw: Raw = envy::from_iter(ours).map_err(|error| ConfigError {
            variable: "environment",
            value: error.to_string(),
            expected: "readable".into(),
        })?;
        Self::parse(raw)
    }

    fn parse(raw: Raw) -> Result<Config, ConfigError> {
        let addr = address("ADDR", raw.addr.as_deref().unwrap_or("localhost:8080"))?;
        let listen_addr = match raw.listen_addr.as_deref() {
            None | Some("") => SocketAddr::from(([0, 0, 0, 0], port_of(&addr))),
            Some(value) => value.parse().map_err(|_| {
                invalid(
                    "LISTEN_ADDR",
                    value,
                    "an IP socket address such as 0.0.0.0:8080 or [::]:8080",
                )
            })?,
        };
        let peers = peers(raw.peers.as_deref().unwrap_or(""), &addr)?;
        let metrics_addr = metrics_addr(raw.metrics_addr.as_deref(), port_of(&addr))?;
        let max_key_size = number("MAX_KEY_SIZE", &raw.max_key_size, 250, 1..=65_536)?;
        let max_recv_msg_size = number(
            "MAX_RECV_MSG_SIZE",
            &raw.max_recv_msg_size,
            4_194_304,
            1_024..=1 << 30,
        )?;
        let max_value_size = number("MAX_VALUE_SIZE", &raw.max_value_size, 1_048_576, 1..=1 << 30)?;
        if max_value_size + max_key_size + 64 > max_recv_msg_size {
            return Err(invalid(
                "MAX_VALUE_SIZE",
                &max_value_size.to_string(),
                &format!(
                    "below MAX_RECV_MSG_SIZE ({max_recv_msg_size}) minus MAX_KEY_SIZE and 64 bytes of framing"
                ),
            ));
        }
        let max_ttl = seconds("MAX_TTL", &raw.max_ttl, 2_592_000)?;
        let default_ttl = seconds("TTL", &raw.ttl, 3_600)?;
        if default_ttl > max_ttl {
            return Err(invalid(
                "TTL",
                &default_ttl.as_secs().to_string(),
                &format!("at most MAX_TTL ({})", max_ttl.as_secs()),
            ));
        }
        let replication_factor = number("REPLICATION_FACTOR", &raw.replication_factor, 3, 1..=32)?;
        let rate_limit = number("RATE_LIMIT", &raw.rate_limit, 100_000, 0..=u32::MAX as usize)? as u32;
        let capacity = number("CAPACITY", &raw.capacity, 1_000_000, 1..=usize::MAX)?;
        let capacity_bytes = number("CAPACITY_BYTES", &raw.capacity_bytes, 268_435_456, 1..=usize::MAX)?;
        if capacity_bytes < max_key_size + max_value_size + ENTRY_OVERHEAD_BYTES {
            return Err(invalid(
                "CAPACITY_BYTES",
                &capacity_bytes.to_string(),
                &format!(
                    "at least MAX_KEY_SIZE + MAX_VALUE_SIZE + {ENTRY_OVERHEAD_BYTES}, so that one largest entry fits"
                ),
            ));
        }
        Ok(Config {
            addr,
            listen_addr,
            peers,
            num_shards: number("NUM_SHARDS", &raw.num_shards, default_shards(), 1..=65_536)?,
            capacity,
            capacity_bytes,
            default_ttl,
            max_ttl,
            max_key_size,
            max_value_size,
            max_recv_msg_size,
            max_send_msg_size: number(
                "MAX_SEND_MSG_SIZE",
                &raw.max_send_msg_size,
                4_194_304,
                1_024..=1 << 30,
            )?,
            rpc_timeout: duration(
                "RPC_TIMEOUT",
                &raw.rpc_timeout,
                Duration::from_secs(5),
                Unit::Seconds,
            )?,
            rate_limit,
            rate_limit_burst: number(
                "RATE_LIMIT_BURST",
                &raw.rate_limit_burst,
                rate_limit.max(1) as usize,
                1..=u32::MAX as usize,
            )? as u32,
            worker_threads: number("WORKER_THREADS", &raw.worker_threads, cores(), 1..=1_024)?,
            replication_factor,
            write_quorum: quorum("WRITE_QUORUM", &raw.write_quorum, replication_factor)?,
            read_quorum: quorum("READ_QUORUM", &raw.read_quorum, replication_factor)?,
            vnodes: number("VNODES", &raw.vnodes, 128, 1..=4_096)?,
            max_clock_skew: duration(
                "MAX_CLOCK_SKEW",
                &raw.max_clock_skew,
                Duration::from_millis(500),
                Unit::Millis,
            )?,
            shutdown_timeout: duration(
                "SHUTDOWN_TIMEOUT",
                &raw.shutdown_timeout,
                Duration::from_secs(8),
                Unit::Seconds,
            )?,
            metrics_addr,
            log_level: log_level(raw.log_level.as_deref())?,
            log_format: log_format(raw.log_format.as_deref())?,
            clock_offset_ms: clock_offset(raw.clock_offset.as_deref())?,
            unsafe_switches: UnsafeSwitches {
                skip_version_query: flag("UNSAFE_SKIP_VERSION_QUERY", &raw.unsafe_skip_version_query)?,
                skip_read_repair: flag("UNSAFE_SKIP_READ_REPAIR", &raw.unsafe_skip_read_repair)?,
                ignore_watermarks: flag("UNSAFE_IGNORE_WATERMARKS", &raw.unsafe_ignore_watermarks)?,
                force_one_round_write: flag(
                    "UNSAFE_FORCE_ONE_ROUND_WRITE",
                    &raw.unsafe_force_one_round_write,
                )?,
            },
        })
    }

    /// Every member of the cluster: this node and its peers.
    pub fn members(&self) -> Vec<String> {
        std::iter::once(self.addr.clone())
            .chain(self.peers.iter().cloned())
            .collect()
    }

    /// The effective replication factor, capped at the cluster size.
    pub fn effective_replication(&self) -> usize {
        self.replication_factor.min(self.members().len())
    }

    /// Where a local client (`quorum-cache health`, `status`) reaches this node:
    /// LISTEN_ADDR, with loopback in place of an all-addresses IP, so the
    /// Docker HEALTHCHECK works whether the node listens everywhere or on one IP.
    pub fn local_dial_addr(&self) -> SocketAddr {
        let mut dial = self.listen_addr;
        if dial.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if dial.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            dial.set_ip(loopback);
        }
        dial
    }

    /// (R, W) as the coordinator will use them.
    pub fn effective_quorums(&self) -> (usize, usize) {
        let n = self.effective_replication();
        let pick = |configured: usize| {
            if configured == 0 {
                n / 2 + 1
            } else {
                configured.min(n)
            }
        };
        (pick(self.read_quorum), pick(self.write_quorum))
    }

    /// The text of `quorum-cache --help`.
    pub fn help() -> String {
        let mut text = String::from(
            "quorum-cache: a distributed, strongly consistent in-memory key-value cache\n\n\
             USAGE:\n  quorum-cache                      run a node, configured by the environment\n  \
             quorum-cache health [--addr A]    exit 0 when the node at A (default: LISTEN_ADDR, \
             127.0.0.1 when it names all addresses) is serving\n  quorum-cache status [--addr A]    print the cluster as the node at A sees it\n  \
             quorum-cache --help | --version\n\n\
             ENVIRONMENT (a .env file in the working directory is read too):\n",
        );
        for (name, default, meaning) in VARIABLES {
            let default = if default.is_empty() { "(empty)" } else { default };
            text.push_str(&format!(
                "  {name:<27} {meaning}\n  {:<27} default: {default}\n",
                ""
            ));
        }
        text
    }
}

fn invalid(variable: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// The cores this process may use (cgroup CPU quotas included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

fn default_shards() -> usize {
    (cores() * 4).next_power_of_two()
}

fn number(
    variable: &'static str,
    raw: &Option<String>,
    default: usize,
    allowed: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(value) = raw else { return Ok(default) };
    let expected = || match (*allowed.start(), *allowed.end()) {
        (0, usize::MAX) => "a non-negative integer".to_string(),
        (1, usize::MAX) => "a positive integer".to_string(),
        (low, high) => format!("an integer from {low} to {high}"),
    };
    let parsed: usize = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, &expected()))?;
    if !allowed.contains(&parsed) {
        return Err(invalid(variable, value, &expected()));
    }
    Ok(parsed)
}

fn seconds(variable: &'static str, raw: &Option<String>, default: u64) -> Result<Duration, ConfigError> {
    let parsed = number(variable, raw, default as usize, 1..=usize::MAX)?;
    Ok(Duration::from_secs(parsed as u64))
}

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

/// A positive duration: a number in the variable's unit, or with `ms` or `s`.
fn duration(
    variable: &'static str,
    raw: &Option<String>,
    default: Duration,
    unit: Unit,
) -> Result<Duration, ConfigError> {
    let Some(value) = raw else { return Ok(default) };
    let unit_name = match unit {
        Unit::Seconds => "seconds",
        Unit::Millis => "milliseconds",
    };
    let expected = format!("a positive number of {unit_name}, or a duration such as 500ms or 2s");
    let text = value.trim();
    let (digits, millis_per_unit) = if let Some(digits) = text.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('s') {
        (digits, 1_000)
    } else {
        (text, if matches!(unit, Unit::Seconds) { 1_000 } else { 1 })
    };
    let count: u64 = digits
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, &expected))?;
    let millis = count
        .checked_mul(millis_per_unit)
        .filter(|&ms| ms > 0 && ms <= 86_400_000);
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| invalid(variable, value, &expected))
}

fn quorum(
    variable: &'static str,
    raw: &Option<String>,
    replication_factor: usize,
) -> Result<usize, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("majority") => Ok(0),
        Some(_) => number(variable, raw, 0, 1..=replication_factor).map_err(|error| ConfigError {
            expected: format!(
                "\"majority\" or an integer from 1 to REPLICATION_FACTOR ({replication_factor})"
            ),
            ..error
        }),
    }
}

fn flag(variable: &'static str, raw: &Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(invalid(variable, other, "true or false")),
    }
}

fn clock_offset(raw: Option<&str>) -> Result<i64, ConfigError> {
    let Some(value) = raw else { return Ok(0) };
    let text = value.trim();
    let digits = text.strip_suffix("ms").unwrap_or(text);
    digits
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|ms| ms.abs() <= 86_400_000)
        .ok_or_else(|| {
            invalid(
                "CLOCK_OFFSET",
                value,
                "an integer number of milliseconds within one day",
            )
        })
}

fn metrics_addr(raw: Option<&str>, grpc_port: u16) -> Result<Option<SocketAddr>, ConfigError> {
    match raw.map(str::trim) {
        Some("") => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| {
            invalid(
                "METRICS_ADDR",
                value,
                "an IP socket address such as 0.0.0.0:9080, or empty to disable",
            )
        }),
        None => match grpc_port.checked_add(1_000) {
            Some(port) => Ok(Some(SocketAddr::from(([0, 0, 0, 0], port)))),
            None => Err(invalid(
                "METRICS_ADDR",
                "",
                &format!(
                    "set explicitly: the default (port of ADDR + 1000) does not exist for port {grpc_port}"
                ),
            )),
        },
    }
}

fn log_level(raw: Option<&str>) -> Result<slog::Level, ConfigError> {
    let value = raw.unwrap_or("info");
    match value.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(slog::Level::Trace),
        "debug" => Ok(slog::Level::Debug),
        "info" => Ok(slog::Level::Info),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "error" => Ok(slog::Level::Error),
        "critical" => Ok(slog::Level::Critical),
        _ => Err(invalid(
            "LOG_LEVEL",
            value,
            "one of trace, debug, info, warning, error, critical",
        )),
    }
}

fn log_format(raw: Option<&str>) -> Result<LogFormat, ConfigError> {
    let value = raw.unwrap_or("json");
    match value.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        _ => Err(invalid("LOG_FORMAT", value, "json or text")),
    }
}

/// host:port, with 8080 when the port is missing.
fn address(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let text = value.trim();
    let expected = "host:port with a port from 1 to 65535 (the port may be left out: 8080)";
    if text.is_empty() || text.contains(char::is_whitespace) || text.contains('/') {
        return Err(invalid(variable, value, expected));
    }
    let bracketed_ipv6 = text.starts_with('[');
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !bracketed_ipv6 || host.ends_with(']') => (host, Some(port)),
        _ => (text, None),
    };
    if host.is_empty() || (!bracketed_ipv6 && host.contains(':')) {
        return Err(invalid(variable, value, expected));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| invalid(variable, value, expected))?,
    };
    Ok(format!("{host}:{port}"))
}

pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

fn peers(value: &str, own: &str) -> Result<Vec<String>, ConfigError> {
    let mut peers = Vec::new();
    for part in value.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let peer = address("PEERS", part).map_err(|error| ConfigError {
            value: value.to_string(),
            ..error
        })?;
        if peer != own && !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests;
