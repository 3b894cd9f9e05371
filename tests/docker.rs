//! The container packaging, tested for real: the image built from the repository's
//! Dockerfile, three nodes started exactly as docs/docker.md says, the Compose file,
//! and the Kubernetes manifests cross-checked against the binary.
//!
//! The image: no registry can be reached on the CI machines, so the Dockerfile's
//! `runtime-prebuilt` stage is built on a local Debian base image
//! (quorum-cache-test-base:<codename>, made by .ci/docker-base-image.sh, which this
//! test runs itself when the image is missing) around the binary cargo has just built
//! for these tests (`CARGO_BIN_EXE_quorum-cache`, a debug build: the same source,
//! without a second, minutes-long release build; the Dockerfile's stages and
//! settings are the same for both). Every container, network, Compose project and
//! image gets a unique name and is removed at the end, also on failure.
//!
//! A test skips (with a loud message) only when no Docker engine answers, or
//! grpcurl is missing, and CI is unset; under CI those are failures.
//! `cargo test --test docker -- --nocapture` shows the timings of each phase.

#[path = "docker/harness.rs"]
mod harness;

use harness::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ the recipes

/// The `docker run` recipe of docs/docker.md. The docs show it with the names
/// below; the test runs the same arguments with unique names and random host ports.
struct Recipe {
    network: String,
    names: [String; 3],
    image: String,
    publish: [String; 3],
}

impl Recipe {
    /// As docs/docker.md shows it.
    fn docs() -> Recipe {
        Recipe {
            network: "quorum-cache".into(),
            names: ["node1".into(), "node2".into(), "node3".into()],
            image: "quorum-cache:latest".into(),
            publish: [
                "127.0.0.1:8081:8080".into(),
                "127.0.0.1:8082:8080".into(),
                "127.0.0.1:8083:8080".into(),
            ],
        }
    }

    /// As the test runs it: unique names, a random loopback host port per node.
    fn unique(prefix: &str, image: &str) -> Recipe {
        let any_port = format!("127.0.0.1::{GRPC_PORT}");
        Recipe {
            network: format!("{prefix}-quorum-cache"),
            names: [
                format!("{prefix}-node1"),
                format!("{prefix}-node2"),
                format!("{prefix}-node3"),
            ],
            image: image.into(),
            publish: [any_port.clone(), any_port.clone(), any_port],
        }
    }

    fn network_create(&self) -> Vec<String> {
        vec!["network".into(), "create".into(), self.network.clone()]
    }

    /// `docker run` of node `i` (0-based): ADDR is its container name, which
    /// Docker's network resolves; PEERS are the other two.
    fn run(&self, i: usize) -> Vec<String> {
        let peers: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("{}:{GRPC_PORT}", self.names[j]))
            .collect();
        vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            self.names[i].clone(),
            "--network".into(),
            self.network.clone(),
            "-p".into(),
            self.publish[i].clone(),
            "-e".into(),
            format!("ADDR={}:{GRPC_PORT}", self.names[i]),
            "-e".into(),
            format!("PEERS={}", peers.join(",")),
            self.image.clone(),
        ]
    }
}

/// Tells the writer threads to stop when dropped (also when the test panics).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A command line as docs/docker.md writes it.
fn shell(program: &str, args: &[String]) -> String {
    format!("{program} {}", args.join(" "))
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The host address (127.0.0.1:PORT) Docker published a container's gRPC port on.
/// It changes when a container restarts or changes networks, so ask every time.
fn published(container: &str) -> Result<String, String> {
    let out = docker(&["port", container, &format!("{GRPC_PORT}/tcp")]);
    let addr = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("127.0.0.1:"))
        .map(str::to_string);
    addr.ok_or_else(|| {
        format!(
            "docker port {container}: {}{}",
            out.stdout.trim(),
            out.stderr.trim()
        )
    })
}

fn published_now(container: &str) -> String {
    poll(
        &format!("a published port of {container}"),
        Duration::from_secs(20),
        || published(container),
    )
}

fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, container])
}

/// A Set through `container` succeeds (cluster formed, quorum reachable).
fn await_serving(container: &str, key: &str, timeout: Duration) {
    poll(&format!("a Set through {container}"), timeout, || {
        let addr = published(container)?;
        match set(&addr, key, "ping") {
            Reply::Ok(_) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// Waits until every node reports both peers `up` in `quorum-cache status`: each
/// has handshaken the others, and so stamps its writes above their restart
/// watermarks (before that, a write may be stored by only W of the three, and a
/// test that then stops one holder would see a miss that the design allows).
fn await_full_mesh(containers: &[&String], timeout: Duration) {
    for container in containers {
        poll(&format!("{container} sees every peer up"), timeout, || {
            let out = docker(&["exec", container.as_str(), "quorum-cache", "status"]);
            let peer_states: Vec<&str> = out
                .stdout
                .lines()
                .skip(2)
                .filter_map(|line| line.split_whitespace().nth(1))
                .filter(|state| *state != "self")
                .collect();
            if out.ok() && peer_states.len() == 2 && peer_states.iter().all(|state| *state == "up") {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        });
    }
}

fn phase(start: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", start.elapsed().as_secs_f64());
}

/// The outcome of a Get that must be UNAVAILABLE, whose message must say how many
/// replicas answered of how many needed (fewer than needed).
fn assert_unavailable_with_counts(reply: &Reply, what: &str) {
    let Reply::Status { code, message } = reply else {
        panic!("{what}: expected UNAVAILABLE, got {reply:?}")
    };
    assert_eq!(code, "Unavailable", "{what}: {message}");
    let (needed, of, answered) = replicas_answered(message).unwrap_or_else(|| {
        panic!("{what}: the message does not say how many replicas answered: {message:?}")
    });
    assert!(
        answered < needed && needed <= of,
        "{what}: {needed} of {of} needed, {answered} answered? {message}"
    );
}

// ------------------------------------------------------------------- the tests

/// Three `docker run` nodes as docs/docker.md says; then, in turn: a Set on node 1
/// read on node 3; `docker stop` of node 1 while clients write (exit 0 within
/// SHUTDOWN_TIMEOUT, no acknowledged write lost, the other two keep serving);
/// `docker kill` of node 2 (UNAVAILABLE naming the replica count); both started
/// again (serving again); node 3 cut off the cluster's network (the majority serves
/// a new value, node 3 answers UNAVAILABLE, never the old one) and reconnected
/// (node 3 serves the new value); the image's health check, user and PID 1.
#[test]
fn docker_run_cluster_survives_stop_kill_and_partition() {
    const TEST: &str = "docker_run_cluster_survives_stop_kill_and_partition";
    if !docker_or_skip(TEST) || !grpcurl_or_skip(TEST) {
        return;
    }
    let start = Instant::now();
    let help = help_text();
    let shutdown_timeout: u64 = help_default(&help, "SHUTDOWN_TIMEOUT")
        .and_then(|v| v.parse().ok())
        .expect("--help states the SHUTDOWN_TIMEOUT default in seconds");
    let image = image();
    phase(start, "image built");

    let prefix = unique("run");
    let recipe = Recipe::unique(&prefix, &image.tag);
    let mut cleanup = Cleanup::default();
    cleanup.networks.push(recipe.network.clone());
    docker_ok(&strs(&recipe.network_create()));
    for i in 0..3 {
        cleanup.containers.push(recipe.names[i].clone());
        docker_ok(&strs(&recipe.run(i)));
    }
    let [n1, n2, n3] = recipe.names.clone();

    // --- Set on node 1, Get on node 3.
    await_serving(&n1, "warm-up", Duration::from_secs(60));
    await_full_mesh(&[&n1, &n2, &n3], Duration::from_secs(60));
    phase(start, "cluster serving");
    let reply = set(&published_now(&n1), "foo", "bar");
    assert!(reply.is_ok(), "Set on node 1: {reply:?}");
    let reply = get(&published_now(&n3), "foo");
    assert_eq!(reply.value().as_deref(), Some("bar"), "Get on node 3: {reply:?}");

    // --- docker stop node 1 while two clients write, one through node 1 itself.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_writers_on_panic = StopOnDrop(stop.clone());
    let writer = |label: &'static str, addr: String| {
        let (stop, acks) = (stop.clone(), Arc::new(AtomicUsize::new(0)));
        let counter = acks.clone();
        let handle = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut attempts = 0;
            while !stop.load(Ordering::Relaxed) && attempts < 2000 {
                attempts += 1;
                let (key, value) = (
                    format!("stop-{label}-{attempts}"),
                    format!("v-{label}-{attempts}"),
                );
                if set(&addr, &key, &value).is_ok() {
                    acked.push((key, value, Instant::now()));
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
            (acked, attempts)
        });
        (handle, acks)
    };
    let (through_stopped, acks_n1) = writer("n1", published_now(&n1));
    let (through_survivor, acks_n2) = writer("n2", published_now(&n2));
    poll(
        "both clients acknowledged before the stop",
        Duration::from_secs(30),
        || {
            let (a, b) = (acks_n1.load(Ordering::SeqCst), acks_n2.load(Ordering::SeqCst));
            if a >= 3 && b >= 3 {
                Ok(())
            } else {
                Err(format!("{a} and {b} writes acknowledged"))
            }
        },
    );
    phase(start, "clients writing; docker stop node 1");
    let stop_out = docker(&["stop", &n1]);
    assert!(stop_out.ok(), "docker stop {n1}: {}", stop_out.stderr);
    let stopped_at = Instant::now();
    let exit_code = inspect(&n1, "{{.State.ExitCode}}");
    assert_eq!(
        exit_code, "0",
        "node 1 must exit 0 on SIGTERM (137 = killed at docker's deadline)"
    );
    let limit = Duration::from_secs(shutdown_timeout + 3);
    assert!(
        stop_out.elapsed <= limit,
        "docker stop took {:?}, more than SHUTDOWN_TIMEOUT {shutdown_timeout} s + 3 s",
        stop_out.elapsed
    );
    phase(
        start,
        &format!(
            "node 1 stopped in {:.2} s, exit 0",
            stop_out.elapsed.as_secs_f64()
        ),
    );
    // The survivors keep serving the client that writes through node 2.
    let before = acks_n2.load(Ordering::SeqCst);
    poll(
        "writes through node 2 acknowledged after the stop",
        Duration::from_secs(30),
        || {
            let now = acks_n2.load(Ordering::SeqCst);
            if now >= before + 3 {
                Ok(())
            } else {
                Err(format!("{} since the stop", now - before))
            }
        },
    );
    stop.store(true, Ordering::Relaxed);
    let (acked_n1, attempts_n1) = through_stopped.join().unwrap();
    let (acked_n2, attempts_n2) = through_survivor.join().unwrap();
    let after_stop = acked_n2.iter().filter(|(_, _, at)| *at > stopped_at).count();
    eprintln!(
        "writes: through node 1 {}/{attempts_n1} acknowledged, through node 2 {}/{attempts_n2} ({after_stop} after the stop)",
        acked_n1.len(),
        acked_n2.len()
    );
    assert!(
        after_stop >= 3,
        "fewer than 3 writes through node 2 were acknowledged after node 1 stopped"
    );
    let (a2, a3) = (published_now(&n2), published_now(&n3));
    for (key, value, _) in acked_n1.iter().chain(acked_n2.iter()) {
        for (node, addr) in [(&n2, &a2), (&n3, &a3)] {
            let reply = get(addr, key);
            assert_eq!(
                reply.value().as_deref(),
                Some(value.as_str()),
                "acknowledged {key} read on {node}: {reply:?}"
            );
        }
    }
    phase(
        start,
        &format!(
            "all {} acknowledged writes read back on nodes 2 and 3",
            acked_n1.len() + acked_n2.len()
        ),
    );

    // --- docker kill node 2: one of three left, calls fail UNAVAILABLE, saying why.
    docker_ok(&["kill", &n2]);
    let set_reply = poll(
        "UNAVAILABLE from node 3 with two nodes down",
        Duration::from_secs(30),
        || match set(&a3, "two-down", "x") {
            Reply::Ok(json) => panic!("a Set succeeded with two of three nodes down: {json}"),
            reply @ Reply::Status { .. } if reply.code() == Some("Unavailable") => Ok(reply),
            other => Err(format!("{other:?}")),
        },
    );
    assert_unavailable_with_counts(&set_reply, "Set with two of three down");
    let get_reply = get(&a3, "foo");
    assert_unavailable_with_counts(&get_reply, "Get with two of three down");
    phase(start, &format!("node 2 killed; node 3 answers: {set_reply:?}"));

    // --- docker start both: serving again.
    docker_ok(&["start", &n1, &n2]);
    await_serving(&n1, "after-restart-1", Duration::from_secs(60));
    await_serving(&n2, "after-restart-2", Duration::from_secs(60));
    await_full_mesh(&[&n1, &n2, &n3], Duration::from_secs(60));
    let reply = set(&published_now(&n1), "restarted", "yes");
    assert!(reply.is_ok(), "Set on restarted node 1: {reply:?}");
    for node in [&n2, &n3] {
        let reply = get(&published_now(node), "restarted");
        assert_eq!(
            reply.value().as_deref(),
            Some("yes"),
            "Get on {node} after the restart: {reply:?}"
        );
    }
    phase(start, "nodes 1 and 2 started again; serving");

    // --- Partition node 3. Its published port lives on the network it was started
    // on, so first attach it to a private network of its own (nobody else is on it),
    // then take it off the cluster's network: the host still reaches it, its peers
    // do not.
    let reply = set(&published_now(&n1), "part", "old");
    assert!(reply.is_ok(), "Set part=old: {reply:?}");
    assert_eq!(get(&published_now(&n3), "part").value().as_deref(), Some("old"));
    let side = format!("{prefix}-side");
    cleanup.networks.push(side.clone());
    docker_ok(&["network", "create", &side]);
    docker_ok(&["network", "connect", &side, &n3]);
    docker_ok(&["network", "disconnect", &recipe.network, &n3]);
    phase(start, "node 3 cut off");
    poll(
        "Set part=new on the majority side",
        Duration::from_secs(30),
        || match set(&published(&n1)?, "part", "new") {
            Reply::Ok(_) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    for node in [&n1, &n2] {
        let reply = get(&published_now(node), "part");
        assert_eq!(
            reply.value().as_deref(),
            Some("new"),
            "Get part on {node} (majority side): {reply:?}"
        );
    }
    let cut_reply = poll("UNAVAILABLE from the cut node", Duration::from_secs(60), || {
        let reply = get(&published(&n3)?, "part");
        if let Reply::Ok(json) = &reply {
            panic!("the cut-off node answered a Get: {json} (stale or not, it cannot know it is current)");
        }
        if reply.code() == Some("Unavailable") {
            Ok(reply)
        } else {
            Err(format!("{reply:?}"))
        }
    });
    assert_unavailable_with_counts(&cut_reply, "Get on the cut-off node");
    // (Another key: a write whose outcome is unknown may legitimately show up later.)
    let reply = set(&published_now(&n3), "part-minority", "x");
    assert_eq!(
        reply.code(),
        Some("Unavailable"),
        "Set on the cut-off node: {reply:?}"
    );
    phase(
        start,
        &format!("majority serves part=new; node 3 answers {cut_reply:?}"),
    );

    // --- Heal.
    docker_ok(&["network", "connect", &recipe.network, &n3]);
    poll(
        "node 3 serving part=new after the heal",
        Duration::from_secs(60),
        || {
            let reply = get(&published(&n3)?, "part");
            match reply.value().as_deref() {
                Some("new") => Ok(()),
                Some(stale) => panic!("node 3 answered the stale value {stale:?} after the heal"),
                None => Err(format!("{reply:?}")),
            }
        },
    );
    let reply = get(&published_now(&n1), "part");
    assert_eq!(
        reply.value().as_deref(),
        Some("new"),
        "Get part on node 1 after the heal: {reply:?}"
    );
    phase(start, "partition healed; node 3 serves part=new");

    // --- The image: HEALTHCHECK reports healthy, PID 1 is the binary, not root.
    poll("docker health status healthy", Duration::from_secs(60), || {
        let status = inspect(&n2, "{{if .State.Health}}{{.State.Health.Status}}{{end}}");
        if status == "healthy" {
            Ok(())
        } else {
            Err(format!("health of {n2}: {status:?}"))
        }
    });
    let pid1 = docker_ok(&["exec", &n2, "cat", "/proc/1/status"]);
    let field = |name: &str| {
        pid1.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(
        field("Name:").as_deref(),
        Some("quorum-cache"),
        "PID 1 of the container:\n{pid1}"
    );
    let uid = field("Uid:").unwrap_or_default();
    assert!(
        uid.split_whitespace().all(|u| u != "0"),
        "PID 1 runs as root: Uid {uid}"
    );

    // --- docker stop all three: each exits 0.
    let mut args = vec!["stop"];
    args.extend([n1.as_str(), n2.as_str(), n3.as_str()]);
    docker_ok(&args);
    for node in [&n1, &n2, &n3] {
        assert_eq!(
            inspect(node, "{{.State.ExitCode}}"),
            "0",
            "exit code of {node} after docker stop"
        );
    }
    phase(start, "all stopped with exit code 0");
    drop(cleanup);
    drop(image);
}

/// docker-compose.yml brings up a working cluster (Set and Get through its one
/// published port, the entry on every node), and `down` stops it cleanly: every node exits 0 within its grace period,
/// nothing of the project is left.
#[test]
fn compose_cluster_serves_and_stops_cleanly() {
    const TEST: &str = "compose_cluster_serves_and_stops_cleanly";
    if !docker_or_skip(TEST) || !grpcurl_or_skip(TEST) {
        return;
    }
    let Some(compose) = compose_or_skip(TEST) else {
        return;
    };
    let start = Instant::now();
    let image = image();
    let project = unique("compose");
    let file = repo_path("docker-compose.yml");
    let mut cleanup = Cleanup::default();
    cleanup
        .compose
        .push((compose.clone(), project.clone(), file.clone()));
    let file_arg = file.to_string_lossy().to_string();
    // QC_IMAGE: the test image; empty QC_PORT: a random loopback port.
    let env = [("QC_IMAGE", image.tag.as_str()), ("QC_PORT", "")];
    let compose_run = |args: &[&str]| {
        let mut all: Vec<&str> = compose[1..].iter().map(String::as_str).collect();
        all.extend(["-p", project.as_str(), "-f", file_arg.as_str()]);
        all.extend(args);
        run_env(
            &compose[0],
            &all,
            &env,
            Some(std::path::Path::new(REPO)),
            Duration::from_secs(180),
        )
    };
    let out = compose_run(&["up", "-d"]);
    assert!(
        out.ok(),
        "{} up -d: {}\n{}",
        compose.join(" "),
        out.stdout,
        out.stderr
    );
    phase(start, "compose up");
    let port = |service: &str| -> Result<String, String> {
        let out = compose_run(&["port", service, &GRPC_PORT.to_string()]);
        let addr = out.stdout.trim().to_string();
        if out.ok() && addr.starts_with("127.0.0.1:") {
            Ok(addr)
        } else {
            Err(format!("{addr} {}", out.stderr))
        }
    };
    poll(
        "a Set through the published port",
        Duration::from_secs(60),
        || match set(&port("node1")?, "compose", "works") {
            Reply::Ok(_) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let reply = get(&port("node1").unwrap(), "compose");
    assert_eq!(
        reply.value().as_deref(),
        Some("works"),
        "Get through the published port: {reply:?}"
    );
    for service in ["node2", "node3"] {
        assert!(
            !port(service).is_ok_and(|addr| !addr.is_empty()),
            "{service} publishes no port"
        );
    }
    // The write reached the other two nodes (N = 3): each one's own line in
    // `status` counts the entry, and sees its peers up.
    for service in ["node2", "node3"] {
        poll(
            &format!("{service} holds the entry"),
            Duration::from_secs(20),
            || {
                let out = compose_run(&["exec", "-T", service, "quorum-cache", "status"]);
                let own = out
                    .stdout
                    .lines()
                    .find(|line| line.starts_with(&format!("{service}:8080")))
                    .map(str::to_string);
                let up = out
                    .stdout
                    .lines()
                    .filter(|line| line.split_whitespace().nth(1) == Some("up"))
                    .count();
                match own {
                    Some(line) if line.split_whitespace().nth(3) == Some("1") && up == 2 => Ok(()),
                    _ => Err(format!("status through {service}: {}{}", out.stdout, out.stderr)),
                }
            },
        );
    }
    phase(
        start,
        "Set and Get through the one published port; node2 and node3 hold the entry",
    );

    // down: wait for the three containers' exit codes while Compose stops them.
    let ids_out = compose_run(&["ps", "-q"]);
    let ids: Vec<String> = ids_out.stdout.split_whitespace().map(str::to_string).collect();
    assert_eq!(ids.len(), 3, "compose ps -q: {}", ids_out.stdout);
    let waiter = {
        let ids = ids.clone();
        std::thread::spawn(move || {
            let mut args = vec!["wait"];
            args.extend(ids.iter().map(String::as_str));
            run("docker", &args, Duration::from_secs(120))
        })
    };
    // `docker wait` has registered once it blocks; a container that stops before
    // that is still reported (wait on an exited container returns its code).
    let down = compose_run(&["down"]);
    assert!(down.ok(), "compose down: {}\n{}", down.stdout, down.stderr);
    let waited = waiter.join().unwrap();
    let codes: Vec<&str> = waited.stdout.split_whitespace().collect();
    assert!(
        codes.len() == 3 && codes.iter().all(|c| *c == "0"),
        "exit codes of the nodes on compose down: {:?} (stderr: {})",
        codes,
        waited.stderr.trim()
    );
    assert!(
        down.elapsed < Duration::from_secs(15),
        "compose down took {:?}",
        down.elapsed
    );
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(
        docker_ok(&["ps", "-aq", "--filter", &label]),
        "",
        "containers left after down"
    );
    assert_eq!(
        docker_ok(&["network", "ls", "-q", "--filter", &label]),
        "",
        "networks left after down"
    );
    phase(
        start,
        &format!(
            "compose down in {:.2} s; all exited 0",
            down.elapsed.as_secs_f64()
        ),
    );
    drop(cleanup);
    drop(image);
}

/// deploy/kubernetes/*.yaml, docker-compose.yml and the Dockerfile agree with the
/// binary (tests/docker/check_manifests.py: schemas, env names from --help, PEERS =
/// the pods' names, ports, grace periods); and the checker does catch each kind of
/// mistake, on broken copies.
#[test]
fn kubernetes_and_compose_files_agree_with_the_binary() {
    let help = help_text();
    let dir = tempfile::tempdir().unwrap();
    let help_file = dir.path().join("help.txt");
    std::fs::write(&help_file, &help).unwrap();
    let script = repo_path("tests/docker/check_manifests.py");
    let check = |repo: &std::path::Path, schema: bool| {
        let mut args = vec![
            script.to_string_lossy().to_string(),
            "--help-text".into(),
            help_file.to_string_lossy().to_string(),
            "--repo".into(),
            repo.to_string_lossy().to_string(),
        ];
        if !schema {
            args.push("--skip-schema".into());
        } else if ci() {
            args.push("--require-schema".into());
        }
        run(python_program(), &strs(&args), Duration::from_secs(120))
    };
    let python = run(python_program(), &["-c", "import yaml"], Duration::from_secs(30));
    if !python.ok() {
        let why = format!("python3 with PyYAML is needed: {}", python.stderr.trim());
        if ci() {
            panic!("{why}");
        }
        skip_banner("kubernetes_and_compose_files_agree_with_the_binary", &why);
        return;
    }
    let out = check(std::path::Path::new(REPO), true);
    assert!(
        out.ok(),
        "the packaging files disagree with the binary:\n{}{}",
        out.stdout,
        out.stderr
    );
    eprintln!("{}{}", out.stdout, out.stderr);

    // Broken copies: each mistake must be reported.
    let files = [
        "Dockerfile",
        "docker-compose.yml",
        "deploy/kubernetes/statefulset.yaml",
        "deploy/kubernetes/services.yaml",
        "deploy/kubernetes/poddisruptionbudget.yaml",
    ];
    let originals: Vec<(&str, String)> = files
        .iter()
        .map(|f| (*f, std::fs::read_to_string(repo_path(f)).unwrap()))
        .collect();
    let mutations: &[(&str, &str, &str, &str)] = &[
        (
            "deploy/kubernetes/statefulset.yaml",
            "- name: LOG_FORMAT",
            "- name: LOG_FORMATT",
            "LOG_FORMATT is not one the binary reads",
        ),
        (
            "deploy/kubernetes/statefulset.yaml",
            "terminationGracePeriodSeconds: 15",
            "terminationGracePeriodSeconds: 8",
            "not above SHUTDOWN_TIMEOUT",
        ),
        (
            "deploy/kubernetes/statefulset.yaml",
            ",quorum-cache-2.quorum-cache-headless:8080",
            ",quorum-cache-2.quorum-cache:8080",
            "is not the set of the pods' ADDRs",
        ),
        (
            "deploy/kubernetes/statefulset.yaml",
            "value: $(POD_NAME).quorum-cache-headless:8080",
            "value: $(POD_NAME):8080",
            "the name its peers dial",
        ),
        (
            "deploy/kubernetes/statefulset.yaml",
            "grpc:\n              port: 8080",
            "grpc:\n              port: 9080",
            "the readinessProbe asks port 9080",
        ),
        (
            "deploy/kubernetes/statefulset.yaml",
            "podManagementPolicy: Parallel",
            "podManagementPolicy: OrderedReady",
            "podManagementPolicy must be Parallel",
        ),
        (
            "deploy/kubernetes/services.yaml",
            "publishNotReadyAddresses: true",
            "publishNotReadyAddresses: false",
            "publishNotReadyAddresses must be true",
        ),
        (
            "deploy/kubernetes/poddisruptionbudget.yaml",
            "minAvailable: 2",
            "minAvailable: 1",
            "minAvailable 1 < majority 2",
        ),
        (
            "docker-compose.yml",
            "stop_grace_period: 15s",
            "stop_grace_period: 5s",
            "stop_grace_period 5s is not above SHUTDOWN_TIMEOUT",
        ),
        (
            "docker-compose.yml",
            "  LOG_FORMAT: json",
            "  LOG_FORMATS: json",
            "LOG_FORMATS is not one the binary reads",
        ),
        (
            "docker-compose.yml",
            "ADDR: node3:8080",
            "ADDR: node4:8080",
            "is not the service name",
        ),
        (
            "Dockerfile",
            "USER 10001:10001",
            "USER root",
            "USER must be numeric",
        ),
        (
            "Dockerfile",
            "ENTRYPOINT [\"/usr/local/bin/quorum-cache\"]",
            "ENTRYPOINT /usr/local/bin/quorum-cache",
            "ENTRYPOINT must be the exec form",
        ),
    ];
    // Only when the schemas were checked (kubernetes-validate installed; required under CI).
    let schema_checked = out.stdout.contains("schemas checked for [");
    if !schema_checked {
        skip_banner(
            "kubernetes_and_compose_files_agree_with_the_binary (the schema part only)",
            "kubernetes-validate is not installed (pip install kubernetes-validate==1.37.0)",
        );
    }
    let schema_mutations: &[(&str, &str, &str, &str)] = if schema_checked {
        &[(
            "deploy/kubernetes/statefulset.yaml",
            "enableServiceLinks: false",
            "enableServiceLink: false",
            "not valid for Kubernetes",
        )]
    } else {
        &[]
    };
    let cases = mutations
        .iter()
        .map(|m| (m, false))
        .chain(schema_mutations.iter().map(|m| (m, true)));
    for ((file, from, to, expected), schema) in cases {
        let copy = tempfile::tempdir().unwrap();
        for (name, text) in &originals {
            let path = copy.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = if name == file {
                assert!(
                    text.contains(from),
                    "{name} no longer contains {from:?}: update this test's mutation"
                );
                text.replacen(from, to, 1)
            } else {
                text.clone()
            };
            std::fs::write(path, text).unwrap();
        }
        let out = check(copy.path(), schema);
        assert!(
            !out.ok() && out.stdout.contains(expected),
            "changing {from:?} to {to:?} in {file} was not reported as {expected:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// docs/docker.md shows exactly the commands the tests run (with the documented
/// names in place of the tests' unique names and random ports).
#[test]
fn docs_show_the_tested_commands() {
    let docs = std::fs::read_to_string(repo_path("docs/docker.md")).expect("docs/docker.md exists");
    let recipe = Recipe::docs();
    let mut expected = vec![shell("docker", &recipe.network_create())];
    expected.extend((0..3).map(|i| shell("docker", &recipe.run(i))));
    expected.extend(
        [
            "docker build -t quorum-cache:latest .",
            "docker build --target runtime-prebuilt -t quorum-cache:latest .",
            "grpcurl -plaintext -d '{\"key\":\"foo\",\"value\":\"bar\"}' 127.0.0.1:8081 pb.CacheService/Set",
            "grpcurl -plaintext -d '{\"key\":\"foo\"}' 127.0.0.1:8083 pb.CacheService/Get",
            "docker stop node1",
            "docker compose up -d",
            "grpcurl -plaintext -d '{\"key\":\"foo\"}' 127.0.0.1:8080 pb.CacheService/Get",
            "docker compose exec node3 quorum-cache status",
            "docker compose down",
            "kubectl apply -f deploy/kubernetes/",
        ]
        .map(str::to_string),
    );
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md exists");
    for command in expected {
        assert!(
            docs.contains(&command),
            "docs/docker.md does not show the tested command:\n  {command}"
        );
        assert!(
            ["kubectl", "docker stop"].iter().any(|p| command.starts_with(p))
                || command.contains("--target")
                || readme.contains(&command),
            "the README does not show the tested command:\n  {command}"
        );
    }
    // The test image is built from the same Dockerfile target as the documented
    // prebuilt recipe.
    let args = build_args("TAG", "CONTEXT", "quorum-cache");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--target" && w[1] == "runtime-prebuilt")
    );
}
