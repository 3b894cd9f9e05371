//! Graceful drain of a real node: SIGTERM while calls are in flight lets them all
//! succeed, turns new calls away with UNAVAILABLE, and exits 0 within
//! SHUTDOWN_TIMEOUT, reporting not ready on /readyz and NOT_SERVING on gRPC health
//! meanwhile. The calls are made slow by a delaying proxy on the link to
//! the only peer (N = W = 2).

mod support;

use quorum_cache::pb::SetRequest;
use std::time::{Duration, Instant};
use support::proxy::Proxy;
use support::{Node, free_ports};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_in_flight_calls_finish_then_exits_0_on_a_work_stealing_runtime() {
    drain_with_calls_in_flight("2", "multi_thread").await;
}

/// WORKER_THREADS=1 runs the node on a current-thread runtime: the drain, the
/// signal handling and the probes must not depend on a second worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_in_flight_calls_finish_then_exits_0_on_a_single_thread() {
    drain_with_calls_in_flight("1", "current_thread").await;
}

async fn drain_with_calls_in_flight(worker_threads: &str, runtime: &str) {
    let ports = free_ports(3);
    let metrics = format!("127.0.0.1:{}", ports[2]);
    let a = format!("127.0.0.1:{}", ports[0]);
    let b_listen = format!("127.0.0.1:{}", ports[1]);
    let proxy = Proxy::start(b_listen.clone()).await;
    // B is known to the cluster by the proxy's address, and listens behind it.
    let b = format!("127.0.0.1:{}", proxy.port);
    let quorums = [
        ("REPLICATION_FACTOR", "2"),
        ("WRITE_QUORUM", "2"),
        ("READ_QUORUM", "1"),
    ];
    let mut node_a = Node::spawn(
        &[
            &[
                ("ADDR", a.as_str()),
                ("PEERS", b.as_str()),
                ("SHUTDOWN_TIMEOUT", "10"),
                ("RPC_TIMEOUT", "10"),
                ("METRICS_ADDR", metrics.as_str()),
                ("WORKER_THREADS", worker_threads),
            ][..],
            &quorums,
        ]
        .concat(),
    );
    let node_b = Node::spawn(
        &[
            &[
                ("ADDR", b.as_str()),
                ("LISTEN_ADDR", b_listen.as_str()),
                ("PEERS", a.as_str()),
            ][..],
            &quorums,
        ]
        .concat(),
    );
    node_a.wait_serving().await;
    node_b.wait_serving().await;
    let runtime_logged = format!(r#""runtime":"{runtime}""#);
    let on_runtime = format!("WORKER_THREADS={worker_threads} logs the {runtime} runtime");
    support::eventually(Duration::from_secs(5), &on_runtime, || async {
        node_a.log().contains(&runtime_logged)
    })
    .await;
    let client = node_a.client().await;
    support::eventually(Duration::from_secs(10), "the pair serves", || {
        let mut client = client.clone();
        async move {
            client
                .set(SetRequest {
                    key: "warm".into(),
                    value: "v".into(),
                    ttl_seconds: None,
                })
                .await
                .is_ok()
        }
    })
    .await;

    assert_eq!(
        support::http_get(&metrics, "/readyz").unwrap(),
        (200, "ready\n".to_string())
    );
    proxy.set_delay(Duration::from_millis(700));
    let calls: Vec<_> = (0..6)
        .map(|n| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let request = SetRequest {
                    key: format!("slow-{n}"),
                    value: "v".into(),
                    ttl_seconds: None,
                };
                (client.set(request).await, started.elapsed())
            })
        })
        .collect();
    // Each call's key crossing the proxy means the call is inside node A.
    support::eventually(Duration::from_secs(5), "all six calls are in flight", || async {
        (0..6).all(|n| proxy.has_seen(&format!("slow-{n}")))
    })
    .await;
    let stop_sent = Instant::now();
    node_a.signal("TERM");
    support::eventually(Duration::from_secs(5), "A reports draining", || async {
        node_a.log().contains(r#""msg":"draining""#)
    })
    .await;
    let (status, body) = support::http_get(&metrics, "/readyz").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: draining\n"),
        "/readyz flips during the drain"
    );
    assert_eq!(
        support::health_status(&a).await,
        Some(tonic_health::pb::health_check_response::ServingStatus::NotServing),
        "gRPC health says NOT_SERVING during the drain"
    );
    let mut late = client.clone();
    let turned_away = late
        .set(SetRequest {
            key: "late".into(),
            value: "v".into(),
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(turned_away.code(), tonic::Code::Unavailable, "{turned_away:?}");
    assert!(
        turned_away.message().contains("shutting down"),
        "{}",
        turned_away.message()
    );

    for call in calls {
        let (outcome, took) = call.await.unwrap();
        outcome.expect("an in-flight call succeeds during the drain");
        assert!(
            took >= Duration::from_millis(700),
            "the call was really slow: {took:?}"
        );
    }
    let code = node_a.wait_exit(Duration::from_secs(12));
    assert_eq!(code, Some(0), "{}", node_a.log());
    assert!(
        stop_sent.elapsed() < Duration::from_secs(12),
        "exited within SHUTDOWN_TIMEOUT"
    );
    let log = node_a.log();
    assert!(
        log.contains(r#""in_flight":6"#),
        "six calls were in flight at the signal: {log}"
    );
    assert!(log.contains(r#""abandoned_calls":0"#), "{log}");
}
