//! Smoke test of the load generator: it starts the bench's echo server and one
//! real quorum-cache node on free loopback ports, runs `quorum-cache-bench run`
//! against each for about two seconds, closed-loop and open-loop, and checks
//! that the runs happened and the reports are well formed.
//!
//! Owns: "the tool works end to end". Does not own: any performance claim; there
//! are deliberately no timing thresholds (the machine is shared and small).
//!
//! The node binary comes from the main crate's target directory
//! (target/debug or target/release next to bench/, or QUORUM_CACHE_BIN);
//! build it first with `cargo build` at the repository root.

use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_quorum-cache-bench");

/// Kills the child when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The newest quorum-cache binary built by the main crate, in the workspace's
/// target dir: CARGO_TARGET_DIR when it is set (a relative one is taken from
/// the workspace root, where `cargo test` runs), else `target/` at the root.
fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("QUORUM_CACHE_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    let candidates: Vec<PathBuf> = ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("quorum-cache"))
        .collect();
    candidates
        .iter()
        .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
        .max()
        .map(|(_, path)| path.clone())
        .unwrap_or_else(|| {
            panic!("the quorum-cache binary is missing: looked for {candidates:?}; build it with `cargo build` at the repository root, or set QUORUM_CACHE_BIN")
        })
}

fn start_echo_server(port: u16) -> Running {
    let child = Command::new(BENCH)
        .args(["echo-server", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the echo server starts");
    let running = Running(child);
    wait_for_port(port, "the echo server");
    running
}

fn start_node(port: u16, work_dir: &std::path::Path) -> Running {
    let binary = node_binary();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(&binary)
        .current_dir(work_dir) // away from any .env of the repository
        .env("ADDR", &addr)
        .env("LISTEN_ADDR", &addr)
        .env("PEERS", "")
        .env("METRICS_ADDR", "")
        .env("RATE_LIMIT", "0")
        .env("LOG_LEVEL", "warning")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    let running = Running(child);
    wait_for_port(port, "the quorum-cache node");
    running
}

/// Runs the bench with `args` plus a JSON path, asserts it succeeded, returns the JSON.
fn bench(args: &[&str], json_path: &std::path::Path) -> Value {
    let output = Command::new(BENCH)
        .args(args)
        .arg("--json")
        .arg(json_path)
        .output()
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    if args[0] == "run" {
        assert!(
            stdout.contains("throughput") && stdout.contains("p99.9"),
            "no text report:\n{stdout}"
        );
        assert!(stderr.contains("ops/s"), "no progress line on stderr:\n{stderr}");
    }
    serde_json::from_str(&std::fs::read_to_string(json_path).expect("the JSON file is written"))
        .expect("the JSON parses")
}

fn assert_ran(report: &Value, what: &str) {
    let ops = report["ops"].as_u64().unwrap_or(0);
    assert!(ops > 0, "{what}: no operation succeeded: {report}");
    assert!(
        report["throughput_ops_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{what}: zero throughput"
    );
    let latency = &report["latency_us"];
    let (p50, p99, p999, max) = (
        latency["p50"].as_f64(),
        latency["p99"].as_f64(),
        latency["p999"].as_f64(),
        latency["max"].as_f64(),
    );
    let (Some(p50), Some(p99), Some(p999), Some(max)) = (p50, p99, p999, max) else {
        panic!("{what}: percentiles missing: {latency}");
    };
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "{what}: percentiles out of order: {latency}"
    );
}

fn errors(report: &Value) -> u64 {
    report["errors"]["total"]
        .as_u64()
        .expect("errors.total is a number")
}

#[test]
fn the_generator_runs_against_the_echo_server_and_a_real_node() {
    let work_dir = std::env::temp_dir().join(format!("quorum-cache-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).expect("a scratch directory");
    let json = |name: &str| work_dir.join(format!("{name}.json"));

    let echo_port = free_port();
    let echo = start_echo_server(echo_port);
    let echo_addr = format!("127.0.0.1:{echo_port}");
    let echo_pid = echo.0.id().to_string();
    // Few keys: a debug-built node preloads them in well under a second.
    let short = [
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--clients",
        "16",
        "--connections",
        "2",
        "--keys",
        "200",
    ];

    let closed = bench(
        &[
            &[
                "run",
                "--target",
                "echo",
                "--addrs",
                &echo_addr,
                "--read-ratio",
                "50",
                "--server-pids",
                &echo_pid,
            ][..],
            &short,
        ]
        .concat(),
        &json("echo-closed"),
    );
    assert_ran(&closed, "echo, closed loop");
    assert_eq!(errors(&closed), 0, "the echo server never fails: {closed}");
    assert_eq!(closed["settings"]["mode"], "closed");
    let cpu = &closed["cpu"];
    assert_eq!(cpu["server_processes"], 1, "one server PID was given: {cpu}");
    for figure in [
        "server_us_per_op",
        "server_cores",
        "generator_us_per_op",
        "generator_cores",
    ] {
        assert!(
            cpu[figure].as_f64().unwrap_or(0.0) > 0.0,
            "{figure} is not a positive number: {cpu}"
        );
    }

    let open = bench(
        &[
            &["run", "--target", "echo", "--addrs", &echo_addr, "--rate", "400"][..],
            &short,
        ]
        .concat(),
        &json("echo-open"),
    );
    assert_ran(&open, "echo, open loop");
    assert_eq!(errors(&open), 0, "the echo server never fails: {open}");
    assert_eq!(open["settings"]["mode"], "open");
    assert_eq!(
        open["cpu"]["server_processes"], 0,
        "no server PID was given: {open}"
    );
    assert!(
        open["cpu"]["server_us_per_op"].is_null(),
        "no server, no server figure: {open}"
    );
    assert!(
        open["cpu"]["generator_us_per_op"].as_f64().unwrap_or(0.0) > 0.0,
        "{open}"
    );

    let node_port = free_port();
    let node = start_node(node_port, &work_dir);
    let node_addr = format!("127.0.0.1:{node_port}");
    let preloaded = [
        &[
            "run",
            "--target",
            "quorum-cache",
            "--addrs",
            &node_addr,
            "--preload",
            "--distribution",
            "zipfian",
        ][..],
        &short,
    ]
    .concat();
    let closed = bench(&preloaded, &json("node-closed"));
    assert_ran(&closed, "quorum-cache, closed loop");
    assert_eq!(closed["misses"], 0, "preloaded keys are all found: {closed}");

    let open = bench(
        &[
            &[
                "run",
                "--target",
                "quorum-cache",
                "--addrs",
                &node_addr,
                "--route",
                "replica",
                "--rate",
                "300",
            ][..],
            &short,
        ]
        .concat(),
        &json("node-open"),
    );
    assert_ran(&open, "quorum-cache, open loop, replica-routed");

    let pid = node.0.id().to_string();
    let memory = bench(
        &[
            "memory",
            "--addrs",
            &node_addr,
            "--pid",
            &pid,
            "--entries",
            "500",
            "--clients",
            "8",
        ],
        &json("memory"),
    );
    assert!(
        memory["quorum_cache"]["rss_after"].as_u64().unwrap_or(0) > 0,
        "no RSS read: {memory}"
    );
    assert_eq!(memory["quorum_cache"]["all_retained"], true, "{memory}");

    let _ = std::fs::remove_dir_all(&work_dir);
}

/// A `--server-pids` that names no running process, or is not a number, fails
/// before any call is sent, says which value is wrong, and writes no results.
#[test]
fn bad_server_pids_are_refused_before_the_run() {
    let echo_port = free_port();
    let _echo = start_echo_server(echo_port);
    let echo_addr = format!("127.0.0.1:{echo_port}");
    let json = std::env::temp_dir().join(format!("quorum-cache-bench-bad-pids-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    for (pids, expected) in [
        (
            "4294967295",
            "--server-pids: server process 4294967295: cannot read /proc/4294967295/stat",
        ),
        ("12ab", "invalid value '12ab' for '--server-pids"),
    ] {
        let output = Command::new(BENCH)
            .args([
                "run",
                "--target",
                "echo",
                "--addrs",
                &echo_addr,
                "--duration",
                "5",
                "--server-pids",
                pids,
            ])
            .arg("--json")
            .arg(&json)
            .output()
            .expect("the bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "--server-pids {pids} was accepted:\n{stderr}"
        );
        assert!(
            stderr.contains(expected),
            "--server-pids {pids}: expected {expected:?} in:\n{stderr}"
        );
        assert!(
            !stderr.contains("ops/s"),
            "--server-pids {pids}: the run started anyway:\n{stderr}"
        );
        assert!(!json.exists(), "--server-pids {pids}: results were written");
    }
}

/// An echo server whose port is taken says so and exits, without claiming to
/// listen, and leaves the port's owner serving.
#[test]
fn an_echo_server_on_a_taken_port_fails_and_says_where() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = taken.local_addr().expect("local addr");
    let output = Command::new(BENCH)
        .args(["echo-server", "--addr", &addr.to_string()])
        .output()
        .expect("the bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the echo server started on a taken port:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("echo-server cannot listen on {addr}")),
        "unexpected message:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "it claimed to listen:\n{stderr}"
    );
    assert_eq!(taken.local_addr().expect("the port's owner still holds it"), addr);
}
