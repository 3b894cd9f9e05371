//! Operations on a real three-node cluster: Prometheus metrics move by the right
//! amounts after a known sequence of calls (checked with a Prometheus text
//! parser), `/readyz` and gRPC health follow quorum reachability, and
//! `quorum-cache status` shows a killed node as down.

mod support;

use quorum_cache::pb::{GetRequest, SetRequest};
use std::collections::HashMap;
use std::time::Duration;
use support::nemesis::FaultyCluster;
use support::proxy::CutMode;
use support::{eventually, http_get};

/// Every sample of a scrape, by name and sorted labels. The body is first
/// checked by a strict OpenMetrics parser (names, types, label syntax, the
/// closing `# EOF`), then read sample by sample.
fn scrape(metrics_addr: &str) -> HashMap<String, f64> {
    let response = support::http_exchange(metrics_addr, "/metrics").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = response.body;
    let families = assert_valid_openmetrics(&body);
    let declared = body.lines().filter(|line| line.starts_with("# TYPE ")).count();
    assert_eq!(families, declared, "every declared family was parsed");
    let lines = body.lines().map(|line| Ok(line.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text exposition");
    assert!(!parsed.samples.is_empty());
    parsed
        .samples
        .into_iter()
        .map(|sample| {
            let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (format!("{}{{{}}}", sample.metric, labels.join(",")), value)
        })
        .collect()
}

/// Parses `body` as OpenMetrics text and returns the number of metric families.
///
/// openmetrics-parser 0.4 refuses `# UNIT` on histograms, which OpenMetrics 1.0
/// allows on every type (its own examples put one on a histogram), so those
/// lines are checked here (the unit must end the family's name, as the
/// standard requires) and left out of what the parser sees.
fn assert_valid_openmetrics(body: &str) -> usize {
    let histograms: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .collect();
    let mut kept = String::with_capacity(body.len());
    for line in body.lines() {
        if let Some((family, unit)) = line.strip_prefix("# UNIT ").and_then(|rest| rest.split_once(' ')) {
            assert!(
                family.ends_with(&format!("_{unit}")),
                "the unit of {family} must end its name: {line}"
            );
            if histograms.contains(&family) {
                continue;
            }
        }
        kept.push_str(line);
        kept.push('\n');
    }
    match openmetrics_parser::openmetrics::parse_openmetrics(&kept) {
        Ok(exposition) => exposition.families.len(),
        Err(error) => panic!("/metrics is not valid OpenMetrics text: {error:?}\n{body}"),
    }
}

#[test]
fn the_strict_parser_rejects_broken_expositions() {
    let good = "# TYPE qc_hits counter\nqc_hits_total 1\n# EOF\n";
    assert_eq!(assert_valid_openmetrics(good), 1);
    for broken in [
        "# TYPE qc_hits counter\nqc_hits_total 1\n",          // no # EOF
        "# TYPE qc_hits counter\nqc_hits_total one\n# EOF\n", // not a number
        "# TYPE qc_hits counter\nqc_hits_total{peer=a} 1\n# EOF\n", // unquoted label value
        "# TYPE qc_hits counter\nqc_hits_total 1\nqc_hits_total 2\n# EOF\n", // duplicate series
    ] {
        assert!(
            openmetrics_parser::openmetrics::parse_openmetrics(broken).is_err(),
            "accepted: {broken:?}"
        );
    }
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, sample: &str) -> f64 {
    let value = |scrape: &HashMap<String, f64>| scrape.get(sample).copied().unwrap_or(0.0);
    let change = value(after) - value(before);
    assert!(
        after.contains_key(sample),
        "{sample} is missing from the scrape: {:?}",
        after.keys().collect::<Vec<_>>()
    );
    change
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_status_follow_what_the_cluster_does() {
    let mut cluster = FaultyCluster::start(9, 3, &[("RPC_TIMEOUT", "1")], |_| Vec::new()).await;
    let metrics = cluster.metrics.clone();
    let mut node1 = cluster.nodes[0].client().await;
    let mut node3 = cluster.nodes[2].client().await;
    let set = |key: &str, value: &str| SetRequest {
        key: key.into(),
        value: value.into(),
        ttl_seconds: None,
    };
    let get = |key: &str| GetRequest { key: key.into() };

    // A known sequence through node 1.
    let before = scrape(&metrics[0]);
    node1.set(set("k1", "v1")).await.unwrap();
    node1.get(get("k1")).await.unwrap();
    node1.get(get("absent")).await.unwrap_err();
    node1.get(get("")).await.unwrap_err();
    let after = scrape(&metrics[0]);
    assert_eq!(
        delta(&before, &after, "qc_requests_total{code=OK,method=Set}"),
        1.0
    );
    assert_eq!(
        delta(&before, &after, "qc_requests_total{code=OK,method=Get}"),
        1.0
    );
    assert_eq!(
        delta(&before, &after, "qc_requests_total{code=NOT_FOUND,method=Get}"),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "qc_requests_total{code=INVALID_ARGUMENT,method=Get}"
        ),
        1.0
    );
    assert_eq!(delta(&before, &after, "qc_cache_hits_total{}"), 1.0);
    assert_eq!(delta(&before, &after, "qc_cache_misses_total{}"), 1.0);
    assert_eq!(
        delta(&before, &after, "qc_writes_restamped_total{}"),
        0.0,
        "a write on a healthy cluster takes one round"
    );
    assert_eq!(
        delta(&before, &after, "qc_request_duration_seconds_count{method=Get}"),
        3.0
    );
    assert!(after["qc_entries{}"] >= 1.0);
    for peer in &cluster.nodes[1..] {
        assert_eq!(after[&format!("qc_peer_up{{peer={}}}", peer.addr)], 1.0);
    }

    // A write while node 3 is cut off, then a read through node 3: it repairs.
    node1.set(set("repair-me", "old")).await.unwrap();
    cluster.partition(&[2], CutMode::Refuse);
    node1.set(set("repair-me", "new")).await.unwrap();
    cluster.heal();
    cluster.wait_formed().await;
    let before = scrape(&metrics[2]);
    assert_eq!(
        node3.get(get("repair-me")).await.unwrap().into_inner().value,
        "new"
    );
    let after = scrape(&metrics[2]);
    assert_eq!(
        delta(&before, &after, "qc_read_repairs_total{}"),
        1.0,
        "node 3 wrote the newer value back"
    );

    // Two nodes killed: a quorum failure, readiness lost, and status says so.
    let (status, body) = http_get(&metrics[0], "/readyz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(http_get(&metrics[0], "/healthz").unwrap().0, 200);
    cluster.kill(1);
    cluster.kill(2);
    let before = scrape(&metrics[0]);
    // The first write after the kills may leave on connections that break under
    // it, and then honestly says its outcome is unknown; by the second the dead
    // peers are known, and the write is refused with nothing changed.
    let first = node1.set(set("k2", "v2")).await.unwrap_err();
    assert_eq!(first.code(), tonic::Code::Unavailable);
    let refused = node1.set(set("k2", "v2")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        refused.metadata().get("qc-outcome").map(|v| v.to_str().unwrap()),
        Some("not-applied"),
        "{refused:?}"
    );
    let after = scrape(&metrics[0]);
    let failures = |reason: &str| {
        let sample = format!("qc_quorum_failures_total{{reason={reason}}}");
        after.get(&sample).copied().unwrap_or(0.0) - before.get(&sample).copied().unwrap_or(0.0)
    };
    assert!(
        failures("unavailable") >= 1.0,
        "the second write is counted as unavailable"
    );
    assert_eq!(
        failures("unavailable") + failures("outcome_unknown"),
        2.0,
        "both failed writes are counted"
    );
    let peer_errors = |scrape: &HashMap<String, f64>| -> f64 {
        let peer = format!("peer={}}}", cluster.nodes[1].addr);
        scrape
            .iter()
            .filter(|(name, _)| name.starts_with("qc_peer_rpc_errors_total{") && name.ends_with(&peer))
            .map(|(_, v)| v)
            .sum()
    };
    assert!(
        peer_errors(&after) > peer_errors(&before),
        "the failed calls to node 2 are counted"
    );
    eventually(Duration::from_secs(10), "node 1 reports not ready", || async {
        http_get(&metrics[0], "/readyz")
            .is_ok_and(|(status, body)| status == 503 && body.contains("needed for quorums"))
    })
    .await;
    let endpoint = cluster.client_endpoint(0);
    eventually(
        Duration::from_secs(5),
        "gRPC health follows readiness",
        || async { !support::serving(&endpoint).await },
    )
    .await;
    assert_eq!(http_get(&metrics[0], "/healthz").unwrap().0, 200, "still alive");

    let last = scrape(&metrics[0]);
    // Every metric the Grafana dashboard queries exists.
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../deploy/grafana/quorum-cache.json"))
            .expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| {
            panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|target| target["expr"].as_str().unwrap())
        })
        .collect();
    assert!(exprs.len() >= 10);
    for expr in exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("qc_"))
        {
            // The parser folds a histogram's _bucket series into one sample.
            let family = name.strip_suffix("_bucket").unwrap_or(name);
            assert!(
                last.keys()
                    .any(|sample| sample.starts_with(&format!("{family}{{"))),
                "the dashboard queries {name}, which no node exports"
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let out = support::run_binary(
        &["status", "--addr", &cluster.client_endpoint(0)],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NOT READY"), "{table}");
    for killed in &cluster.nodes[1..] {
        let line = table
            .lines()
            .find(|line| line.starts_with(&killed.addr))
            .expect("a line per node");
        assert!(line.split_whitespace().nth(1) == Some("down"), "{line}");
    }
    let own = table
        .lines()
        .find(|line| line.starts_with(&cluster.nodes[0].addr))
        .unwrap();
    assert!(
        own.contains("self") && own.contains(env!("CARGO_PKG_VERSION")),
        "{own}"
    );
}
