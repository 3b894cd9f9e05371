//! One real node, started as users start it (environment variables, free port),
//! driven by grpcurl and a Rust client: the API, bad input, configuration
//! errors, the rate limit and graceful drain.

mod support;

use quorum_cache::pb::{GetRequest, SetRequest};
use std::time::{Duration, Instant};
use support::{Node, eventually, free_port, grpcurl, grpcurl_available, run_binary};

fn single(extra: &[(&str, &str)]) -> Node {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut env = vec![("ADDR", addr.as_str()), ("LOG_LEVEL", "debug")];
    env.extend_from_slice(extra);
    Node::spawn(&env)
}

/// The number of entries the node reported when it stopped.
fn entries_at_stop(node: &mut Node) -> u64 {
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0), "{}", node.log());
    let log = node.log();
    let stopped = log
        .lines()
        .find(|line| line.contains(r#""msg":"stopped""#))
        .expect("a stop line");
    let line: serde_json::Value = serde_json::from_str(stopped).unwrap();
    line["entries"].as_u64().unwrap()
}

#[tokio::test]
async fn grpcurl_set_get_delete_list_and_health_work_as_the_readme_shows() {
    if !grpcurl_available() {
        return;
    }
    let node = single(&[]);
    node.wait_serving().await;
    let at = node.endpoint();
    let set = grpcurl(&at, "pb.CacheService/Set", Some(r#"{"key":"foo","value":"bar"}"#));
    assert!(set.ok, "{}", set.stderr);
    assert!(set.json()["version"]["physicalMs"].as_str().is_some());
    let got = grpcurl(&at, "pb.CacheService/Get", Some(r#"{"key":"foo"}"#));
    assert_eq!(got.json()["value"], "bar");
    let remaining: u64 = got.json()["ttlRemainingMs"].as_str().unwrap().parse().unwrap();
    assert!(
        remaining > 3_590_000 && remaining <= 3_600_000,
        "default TTL is an hour: {remaining}"
    );
    assert_eq!(got.json()["version"], set.json()["version"]);

    let missing = grpcurl(&at, "pb.CacheService/Get", Some(r#"{"key":"nope"}"#));
    assert_eq!(missing.code(), Some("NotFound"), "{}", missing.stderr);

    let deleted = grpcurl(&at, "pb.CacheService/Delete", Some(r#"{"key":"foo"}"#));
    assert!(deleted.ok, "{}", deleted.stderr);
    assert_eq!(
        grpcurl(&at, "pb.CacheService/Get", Some(r#"{"key":"foo"}"#)).code(),
        Some("NotFound")
    );

    let listed = grpcurl(&at, "list", None);
    for service in [
        "pb.CacheService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.stdout.lines().any(|line| line == service),
            "{}",
            listed.stdout
        );
    }
    let methods = grpcurl(&at, "describe pb.CacheService", None);
    assert!(
        methods.stdout.contains("rpc Set") && methods.stdout.contains("rpc Delete"),
        "{}",
        methods.stdout
    );
    let health = grpcurl(&at, "grpc.health.v1.Health/Check", None);
    assert_eq!(health.json()["status"], "SERVING");
}

#[tokio::test]
async fn a_short_ttl_expires_and_a_set_after_a_delete_is_visible() {
    let node = single(&[]);
    node.wait_serving().await;
    let mut client = node.client().await;
    let set = SetRequest {
        key: "brief".into(),
        value: "v".into(),
        ttl_seconds: Some(1),
    };
    client.set(set).await.unwrap();
    let found = client
        .get(GetRequest { key: "brief".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(found.ttl_remaining_ms <= 1_000 && found.value == "v");
    let started = Instant::now();
    eventually(Duration::from_secs(5), "the entry expires", || {
        let mut client = client.clone();
        async move {
            client
                .get(GetRequest { key: "brief".into() })
                .await
                .is_err_and(|s| s.code() == tonic::Code::NotFound)
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    if !grpcurl_available() {
        return;
    }
    let mut node = single(&[
        ("MAX_KEY_SIZE", "8"),
        ("MAX_VALUE_SIZE", "16"),
        ("MAX_RECV_MSG_SIZE", "1024"),
        ("MAX_TTL", "60"),
        ("TTL", "30"),
    ]);
    node.wait_serving().await;
    let at = node.endpoint();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "pb.CacheService/Set",
            r#"{"key":"","value":"v"}"#,
            "InvalidArgument",
            "key must not be empty",
        ),
        (
            "pb.CacheService/Get",
            r#"{"key":""}"#,
            "InvalidArgument",
            "key must not be empty",
        ),
        (
            "pb.CacheService/Delete",
            r#"{"key":""}"#,
            "InvalidArgument",
            "key must not be empty",
        ),
        (
            "pb.CacheService/Set",
            r#"{"key":"123456789","value":"v"}"#,
            "InvalidArgument",
            "MAX_KEY_SIZE (8 bytes)",
        ),
        (
            "pb.CacheService/Get",
            r#"{"key":"123456789"}"#,
            "InvalidArgument",
            "MAX_KEY_SIZE (8 bytes)",
        ),
        (
            "pb.CacheService/Set",
            r#"{"key":"k","value":"12345678901234567"}"#,
            "ResourceExhausted",
            "MAX_VALUE_SIZE (16 bytes)",
        ),
        (
            "pb.CacheService/Set",
            r#"{"key":"k","value":"v","ttl_seconds":61}"#,
            "InvalidArgument",
            "MAX_TTL (60 seconds)",
        ),
    ];
    for (method, data, code, message) in cases {
        let out = grpcurl(&at, method, Some(data));
        assert_eq!(out.code(), Some(*code), "{method} {data}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{method} {data}: {}", out.stderr);
    }
    let huge = format!(r#"{{"key":"k","value":"{}"}}"#, "x".repeat(2_000));
    let out = grpcurl(&at, "pb.CacheService/Set", Some(&huge));
    assert_eq!(out.code(), Some("ResourceExhausted"), "{}", out.stderr);
    assert!(out.stderr.contains("message length too large"), "{}", out.stderr);
    assert_eq!(
        grpcurl(&at, "pb.CacheService/Get", Some(r#"{"key":"k"}"#)).code(),
        Some("NotFound")
    );
    assert_eq!(
        entries_at_stop(&mut node),
        0,
        "a rejected request stored something"
    );
}

#[tokio::test]
async fn the_rate_limit_answers_resource_exhausted_after_the_burst_but_never_limits_health() {
    let node = single(&[("RATE_LIMIT", "1"), ("RATE_LIMIT_BURST", "3")]);
    node.wait_serving().await;
    let mut client = node.client().await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let outcome = client.get(GetRequest { key: "k".into() }).await;
        codes.push(outcome.unwrap_err().code());
    }
    assert_eq!(
        &codes[..3],
        &[tonic::Code::NotFound; 3],
        "the burst passes: {codes:?}"
    );
    assert_eq!(codes[3], tonic::Code::ResourceExhausted, "{codes:?}");
    let refused = client.get(GetRequest { key: "k".into() }).await.unwrap_err();
    assert!(
        refused.message().contains("RATE_LIMIT=1"),
        "{}",
        refused.message()
    );
    for _ in 0..20 {
        assert!(
            support::serving(&node.endpoint()).await,
            "health checks are never limited"
        );
    }
}

#[test]
fn bad_configuration_exits_2_naming_the_variable_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "CAPACITY",
            "abc",
            r#"CAPACITY must be a positive integer, got "abc""#,
        ),
        ("PEERS", "a:1,b:x", r#"PEERS must be host:port"#),
        (
            "RPC_TIMEOUT",
            "0",
            r#"RPC_TIMEOUT must be a positive number of seconds"#,
        ),
        (
            "LOG_FORMAT",
            "xml",
            r#"LOG_FORMAT must be json or text, got "xml""#,
        ),
        (
            "WRITE_QUORUM",
            "9",
            r#"WRITE_QUORUM must be "majority" or an integer from 1 to REPLICATION_FACTOR (3), got "9""#,
        ),
    ];
    for (variable, value, message) in cases {
        let out = run_binary(&[], &[(variable, value)], dir.path());
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{variable}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_bad_value_in_dot_env_is_refused_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "CAPACITY=lots\n").unwrap();
    let out = run_binary(&[], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"CAPACITY must be a positive integer, got "lots""#)
    );
    let overridden = run_binary(&[], &[("CAPACITY", "10"), ("LOG_FORMAT", "bad")], dir.path());
    let stderr = String::from_utf8_lossy(&overridden.stderr);
    assert!(
        stderr.contains("LOG_FORMAT must be json or text"),
        "CAPACITY from the environment won: {stderr}"
    );
}

#[tokio::test]
async fn dot_env_configures_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!("ADDR=127.0.0.1:{port}\nLOG_FORMAT=text\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new(support::BINARY)
        .env_clear()
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    eventually(Duration::from_secs(20), "the node from .env serves", || {
        support::serving(&endpoint)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_binary(&["--help"], &[], dir.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (name, _, _) in quorum_cache::config::VARIABLES {
        assert!(help.contains(name), "--help misses {name}");
    }
    assert!(help.contains("default: 3600"));
    let unknown = run_binary(&["--frobnicate"], &[], dir.path());
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_port_in_use_is_a_clear_failure() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let out = run_binary(&[], &[("ADDR", &addr)], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on 0.0.0.0:"),
        "{:?}",
        out
    );
}

#[tokio::test]
async fn health_subcommand_reports_serving_and_failure() {
    let node = single(&[]);
    node.wait_serving().await;
    let dir = tempfile::tempdir().unwrap();
    let good = run_binary(&["health", "--addr", &node.endpoint()], &[], dir.path());
    assert!(good.status.success(), "{good:?}");
    let nobody = format!("127.0.0.1:{}", free_port());
    let bad = run_binary(&["health", "--addr", &nobody], &[], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot connect"));
}

/// Without --addr, `health` (the Docker HEALTHCHECK) dials the node of its own
/// environment: LISTEN_ADDR, even when that is one IP other than 127.0.0.1.
#[tokio::test]
async fn health_without_addr_dials_the_environments_listen_address() {
    let port = std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.3:{port}");
    let addr = format!("node-a:{port}");
    let env = [
        ("ADDR", addr.as_str()),
        ("LISTEN_ADDR", listen.as_str()),
        ("METRICS_ADDR", ""),
    ];
    let mut node = support::Node::spawn(&env);
    node.direct = Some(listen.clone());
    node.wait_serving().await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_binary(&["health"], &env, dir.path());
    assert!(out.status.success(), "{out:?}");
    let elsewhere = [("ADDR", addr.as_str()), ("LISTEN_ADDR", "127.0.0.4:1")];
    let out = run_binary(&["health"], &elsewhere, dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.4:1"),
        "{out:?}"
    );
}

/// tonic/h2 records reach the log only at LOG_LEVEL=trace; at debug they are
/// not even built (and certainly not written), our own debug lines still are.
#[tokio::test]
async fn library_records_are_bridged_in_only_at_trace() {
    let mut logs = Vec::new();
    for level in ["trace", "debug"] {
        let mut node = single(&[("LOG_LEVEL", level)]);
        node.wait_serving().await;
        let mut client = node.client().await;
        client
            .set(SetRequest {
                key: "k".into(),
                value: "v".into(),
                ttl_seconds: None,
            })
            .await
            .unwrap();
        // Stopping flushes every record the node produced.
        node.signal("TERM");
        assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
        logs.push(node.log());
    }
    assert!(
        logs[0].contains("send frame="),
        "h2's frames are logged at trace:\n{}",
        logs[0]
    );
    assert!(
        !logs[1].contains("send frame="),
        "h2's frames are not logged at debug:\n{}",
        logs[1]
    );
    assert!(logs[1].contains(r#""msg":"stopped""#), "{}", logs[1]);
}
