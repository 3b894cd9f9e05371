//! Three real binaries on free ports, driven by grpcurl and by a Rust client:
//! a Set through one node is read through the others, the cluster serves with
//! one node killed, refuses clearly with two killed, and resumes when they
//! come back; a mismatched PEERS name is reported.

mod support;

use quorum_cache::pb::{GetRequest, SetRequest};
use std::time::{Duration, Instant};
use support::{Node, cluster, eventually, grpcurl, grpcurl_available};
use tonic::Code;

const RPC_TIMEOUT: Duration = Duration::from_secs(1);

async fn set(node: &Node, key: &str, value: &str) -> Result<(), tonic::Status> {
    let request = SetRequest {
        key: key.into(),
        value: value.into(),
        ttl_seconds: None,
    };
    node.client().await.set(request).await.map(|_| ())
}

async fn get(node: &Node, key: &str) -> Result<String, tonic::Status> {
    node.client()
        .await
        .get(GetRequest { key: key.into() })
        .await
        .map(|response| response.into_inner().value)
}

#[tokio::test]
async fn a_three_node_cluster_survives_one_kill_refuses_two_and_resumes() {
    let grpcurl_ok = grpcurl_available();
    let mut nodes = cluster(3, &[("RPC_TIMEOUT", "1")]);
    for node in &nodes {
        node.wait_serving().await;
    }
    // Set via node 1, Get via nodes 2 and 3 (grpcurl, as the README shows, and Rust).
    eventually(Duration::from_secs(10), "the first Set succeeds", || async {
        set(&nodes[0], "greeting", "hello").await.is_ok()
    })
    .await;
    if grpcurl_ok {
        let set = grpcurl(
            &nodes[0].endpoint(),
            "pb.CacheService/Set",
            Some(r#"{"key":"foo","value":"bar"}"#),
        );
        assert!(set.ok, "{}", set.stderr);
        for node in &nodes[1..] {
            let got = grpcurl(&node.endpoint(), "pb.CacheService/Get", Some(r#"{"key":"foo"}"#));
            assert_eq!(got.json()["value"], "bar", "via {}", node.addr);
        }
    }
    for node in &nodes[1..] {
        assert_eq!(get(node, "greeting").await.unwrap(), "hello", "via {}", node.addr);
    }

    // One node killed: everything still works, on both survivors.
    nodes[2].kill();
    set(&nodes[0], "after-one-kill", "still here").await.unwrap();
    assert_eq!(get(&nodes[1], "after-one-kill").await.unwrap(), "still here");
    assert_eq!(get(&nodes[1], "greeting").await.unwrap(), "hello");

    // Two killed: UNAVAILABLE within RPC_TIMEOUT plus a margin, saying how many answered.
    nodes[1].kill();
    let started = Instant::now();
    let first = set(&nodes[0], "k", "v").await.unwrap_err();
    assert!(
        started.elapsed() < RPC_TIMEOUT + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(first.code(), Code::Unavailable, "{first:?}");
    // The first write may have left on the connection that broke under it, and
    // then cannot know whether it landed; the next one finds the peer down.
    assert!(
        first
            .message()
            .starts_with("2 of 3 replicas needed, 1 answered (")
            || first
                .message()
                .starts_with("write outcome unknown: 2 of 3 replicas needed, 0 confirmed ("),
        "{}",
        first.message()
    );
    let started = Instant::now();
    let refused = set(&nodes[0], "k", "v").await.unwrap_err();
    assert!(
        started.elapsed() < RPC_TIMEOUT + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("2 of 3 replicas needed, 1 answered ("),
        "{}",
        refused.message()
    );
    assert!(refused.message().contains(&nodes[1].addr) && refused.message().contains(&nodes[2].addr));
    assert_eq!(refused.metadata().get("qc-outcome").unwrap(), "not-applied");
    let started = Instant::now();
    let refused = get(&nodes[0], "greeting").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(started.elapsed() < RPC_TIMEOUT + Duration::from_secs(2));
    if grpcurl_ok {
        let out = grpcurl(
            &nodes[0].endpoint(),
            "pb.CacheService/Get",
            Some(r#"{"key":"greeting"}"#),
        );
        assert_eq!(out.code(), Some("Unavailable"));
        assert!(
            out.stderr.contains("2 of 3 replicas needed, 1 answered"),
            "{}",
            out.stderr
        );
    }

    // Restart both: the survivor serves again without being restarted.
    nodes[1].restart();
    nodes[2].restart();
    eventually(
        Duration::from_secs(20),
        "the survivor coordinates again",
        || async { set(&nodes[0], "resumed", "yes").await.is_ok() },
    )
    .await;
    assert_eq!(get(&nodes[2], "resumed").await.unwrap(), "yes");
    // Only the survivor still holds "greeting": the two restarted replicas forgot
    // everything before their restart, so no majority can vouch for it. The
    // answer must be a miss, never a value a majority cannot confirm.
    let forgotten = get(&nodes[1], "greeting").await.unwrap_err();
    assert_eq!(forgotten.code(), Code::NotFound, "{forgotten:?}");
}

#[tokio::test]
async fn a_peer_listed_under_another_name_is_reported_and_refused() {
    let ports = support::free_ports(2);
    let (a, b) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    // node A calls B "localhost:<port>", but B's ADDR is 127.0.0.1:<port>.
    let b_as_localhost = format!("localhost:{}", ports[1]);
    let node_a = Node::spawn(&[("ADDR", &a), ("PEERS", &b_as_localhost), ("RPC_TIMEOUT", "1")]);
    let node_b = Node::spawn(&[("ADDR", &b), ("PEERS", &a), ("RPC_TIMEOUT", "1")]);
    // Neither becomes ready: its only peer is refused.
    node_a.wait_answering().await;
    node_b.wait_answering().await;
    eventually(
        Duration::from_secs(10),
        "A logs the mismatch naming both sides",
        || async {
            node_a.log().lines().any(|line| {
                line.contains("refusing to coordinate with peer")
                    && line.contains(&b_as_localhost)
                    && line.contains(&b)
            })
        },
    )
    .await;
    let refused = set(&node_a, "k", "v").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("refused"), "{}", refused.message());
    assert_eq!(
        support::health_status(&node_a.endpoint()).await,
        Some(tonic_health::pb::health_check_response::ServingStatus::NotServing),
        "a node that cannot form quorums is not ready"
    );
}
