//! Every variable with a good value and with bad ones.

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(
        vars.iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    )
}

#[test]
fn defaults_make_a_single_node_on_localhost_8080() {
    let config = config(&[]).unwrap();
    assert_eq!(config.addr, "localhost:8080");
    assert_eq!(config.listen_addr, "0.0.0.0:8080".parse().unwrap());
    assert!(config.peers.is_empty());
    assert_eq!(config.default_ttl, Duration::from_secs(3_600));
    assert_eq!(config.rpc_timeout, Duration::from_secs(5));
    assert_eq!(config.max_clock_skew, Duration::from_millis(500));
    assert_eq!((config.rate_limit, config.rate_limit_burst), (100_000, 100_000));
    assert_eq!(
        config.worker_threads,
        std::thread::available_parallelism().unwrap().get()
    );
    assert_eq!(config.effective_quorums(), (1, 1));
    assert!(config.num_shards.is_power_of_two());
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.metrics_addr, Some("0.0.0.0:9080".parse().unwrap()));
    assert_eq!(config.unsafe_switches, UnsafeSwitches::default());
}

#[test]
fn good_values_of_every_variable_are_taken() {
    let config = config(&[
        ("ADDR", "node1"),
        ("LISTEN_ADDR", "127.0.0.1:9000"),
        ("PEERS", " node2:8081 , node3,node1:8080,node2:8081,"),
        ("NUM_SHARDS", "16"),
        ("CAPACITY", "10"),
        ("CAPACITY_BYTES", "2000000"),
        ("TTL", "60"),
        ("MAX_TTL", "120"),
        ("MAX_KEY_SIZE", "100"),
        ("MAX_VALUE_SIZE", "1000"),
        ("MAX_RECV_MSG_SIZE", "2048"),
        ("MAX_SEND_MSG_SIZE", "4096"),
        ("RPC_TIMEOUT", "750ms"),
        ("RATE_LIMIT", "10"),
        ("RATE_LIMIT_BURST", "20"),
        ("WORKER_THREADS", "3"),
        ("REPLICATION_FACTOR", "5"),
        ("WRITE_QUORUM", "4"),
        ("READ_QUORUM", "majority"),
        ("VNODES", "64"),
        ("MAX_CLOCK_SKEW", "1s"),
        ("SHUTDOWN_TIMEOUT", "3"),
        ("METRICS_ADDR", "127.0.0.1:9999"),
        ("LOG_LEVEL", "debug"),
        ("LOG_FORMAT", "text"),
        ("CLOCK_OFFSET", "-250"),
        ("UNSAFE_SKIP_VERSION_QUERY", "true"),
        ("UNSAFE_SKIP_READ_REPAIR", "1"),
        ("UNSAFE_IGNORE_WATERMARKS", "false"),
        ("UNRELATED", "whatever"),
    ])
    .unwrap();
    assert_eq!(config.addr, "node1:8080");
    assert_eq!(config.listen_addr, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(
        config.peers,
        vec!["node2:8081".to_string(), "node3:8080".to_string()]
    );
    assert_eq!(config.members().len(), 3);
    assert_eq!(
        (config.num_shards, config.capacity, config.capacity_bytes),
        (16, 10, 2_000_000)
    );
    assert_eq!(
        (config.default_ttl, config.max_ttl),
        (Duration::from_secs(60), Duration::from_secs(120))
    );
    assert_eq!((config.max_key_size, config.max_value_size), (100, 1_000));
    assert_eq!(
        (config.max_recv_msg_size, config.max_send_msg_size),
        (2_048, 4_096)
    );
    assert_eq!(config.rpc_timeout, Duration::from_millis(750));
    assert_eq!((config.rate_limit, config.rate_limit_burst), (10, 20));
    assert_eq!(config.worker_threads, 3);
    assert_eq!(
        (config.replication_factor, config.write_quorum, config.read_quorum),
        (5, 4, 0)
    );
    assert_eq!(config.effective_replication(), 3, "capped at the three members");
    assert_eq!(config.effective_quorums(), (2, 3));
    assert_eq!(config.vnodes, 64);
    assert_eq!(config.max_clock_skew, Duration::from_secs(1));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(config.metrics_addr, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(
        self::config(&[("METRICS_ADDR", "")]).unwrap().metrics_addr,
        None,
        "empty disables"
    );
    assert_eq!(
        (config.log_level, config.log_format.clone()),
        (slog::Level::Debug, LogFormat::Text)
    );
    assert_eq!(config.clock_offset_ms, -250);
    assert!(config.unsafe_switches.skip_version_query && config.unsafe_switches.skip_read_repair);
    assert!(!config.unsafe_switches.ignore_watermarks);
}

#[test]
fn bad_values_name_the_variable_the_value_and_what_is_allowed() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "CAPACITY",
            "abc",
            r#"CAPACITY must be a positive integer, got "abc""#,
        ),
        ("CAPACITY", "0", r#"CAPACITY must be a positive integer, got "0""#),
        (
            "CAPACITY",
            "-5",
            r#"CAPACITY must be a positive integer, got "-5""#,
        ),
        (
            "ADDR",
            "",
            r#"ADDR must be host:port with a port from 1 to 65535 (the port may be left out: 8080), got """#,
        ),
        ("ADDR", "node1:99999", r#"ADDR must be host:port"#),
        ("ADDR", "node1:0", r#"ADDR must be host:port"#),
        ("ADDR", "http://node1:8080", r#"ADDR must be host:port"#),
        (
            "LISTEN_ADDR",
            "everywhere",
            r#"LISTEN_ADDR must be an IP socket address"#,
        ),
        (
            "PEERS",
            "node2:8080,node3:abc",
            r#"PEERS must be host:port with a port from 1 to 65535 (the port may be left out: 8080), got "node2:8080,node3:abc""#,
        ),
        (
            "NUM_SHARDS",
            "0",
            r#"NUM_SHARDS must be an integer from 1 to 65536, got "0""#,
        ),
        (
            "CAPACITY_BYTES",
            "1000",
            r#"CAPACITY_BYTES must be at least MAX_KEY_SIZE + MAX_VALUE_SIZE + 224"#,
        ),
        ("TTL", "0", r#"TTL must be a positive integer"#),
        (
            "TTL",
            "9999999",
            r#"TTL must be at most MAX_TTL (2592000), got "9999999""#,
        ),
        ("MAX_TTL", "x", r#"MAX_TTL must be a positive integer, got "x""#),
        (
            "MAX_KEY_SIZE",
            "0",
            r#"MAX_KEY_SIZE must be an integer from 1 to 65536, got "0""#,
        ),
        (
            "MAX_VALUE_SIZE",
            "5000000",
            r#"MAX_VALUE_SIZE must be below MAX_RECV_MSG_SIZE (4194304)"#,
        ),
        (
            "MAX_RECV_MSG_SIZE",
            "12",
            r#"MAX_RECV_MSG_SIZE must be an integer from 1024 to 1073741824, got "12""#,
        ),
        (
            "MAX_SEND_MSG_SIZE",
            "big",
            r#"MAX_SEND_MSG_SIZE must be an integer from 1024"#,
        ),
        (
            "RPC_TIMEOUT",
            "0",
            r#"RPC_TIMEOUT must be a positive number of seconds, or a duration such as 500ms or 2s, got "0""#,
        ),
        (
            "RPC_TIMEOUT",
            "5m",
            r#"RPC_TIMEOUT must be a positive number of seconds"#,
        ),
        (
            "RATE_LIMIT",
            "-1",
            r#"RATE_LIMIT must be an integer from 0 to 4294967295, got "-1""#,
        ),
        (
            "RATE_LIMIT_BURST",
            "0",
            r#"RATE_LIMIT_BURST must be an integer from 1 to 4294967295, got "0""#,
        ),
        (
            "WORKER_THREADS",
            "0",
            r#"WORKER_THREADS must be an integer from 1 to 1024, got "0""#,
        ),
        (
            "WORKER_THREADS",
            "two",
            r#"WORKER_THREADS must be an integer from 1 to 1024, got "two""#,
        ),
        (
            "REPLICATION_FACTOR",
            "0",
            r#"REPLICATION_FACTOR must be an integer from 1 to 32, got "0""#,
        ),
        (
            "WRITE_QUORUM",
            "4",
            r#"WRITE_QUORUM must be "majority" or an integer from 1 to REPLICATION_FACTOR (3), got "4""#,
        ),
        (
            "READ_QUORUM",
            "most",
            r#"READ_QUORUM must be "majority" or an integer from 1 to REPLICATION_FACTOR (3), got "most""#,
        ),
        (
            "VNODES",
            "0",
            r#"VNODES must be an integer from 1 to 4096, got "0""#,
        ),
        (
            "MAX_CLOCK_SKEW",
            "soon",
            r#"MAX_CLOCK_SKEW must be a positive number of milliseconds"#,
        ),
        (
            "SHUTDOWN_TIMEOUT",
            "-3",
            r#"SHUTDOWN_TIMEOUT must be a positive number of seconds"#,
        ),
        (
            "METRICS_ADDR",
            "anywhere",
            r#"METRICS_ADDR must be an IP socket address such as 0.0.0.0:9080, or empty to disable, got "anywhere""#,
        ),
        (
            "LOG_LEVEL",
            "loud",
            r#"LOG_LEVEL must be one of trace, debug, info, warning, error, critical, got "loud""#,
        ),
        (
            "LOG_FORMAT",
            "xml",
            r#"LOG_FORMAT must be json or text, got "xml""#,
        ),
        (
            "CLOCK_OFFSET",
            "1h",
            r#"CLOCK_OFFSET must be an integer number of milliseconds within one day, got "1h""#,
        ),
        (
            "UNSAFE_SKIP_VERSION_QUERY",
            "yes",
            r#"UNSAFE_SKIP_VERSION_QUERY must be true or false, got "yes""#,
        ),
        (
            "UNSAFE_SKIP_READ_REPAIR",
            "on",
            r#"UNSAFE_SKIP_READ_REPAIR must be true or false, got "on""#,
        ),
        (
            "UNSAFE_IGNORE_WATERMARKS",
            "2",
            r#"UNSAFE_IGNORE_WATERMARKS must be true or false, got "2""#,
        ),
    ];
    for (variable, value, message) in cases {
        let error = config(&[(variable, value)]).expect_err(&format!("{variable}={value} accepted"));
        assert_eq!(error.variable, *variable, "{error}");
        assert!(
            error.to_string().starts_with(message),
            "{variable}={value}: {error}"
        );
    }
}

#[test]
fn every_variable_is_listed_in_help_and_env_example() {
    let help = Config::help();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for (name, _, _) in VARIABLES {
        assert!(help.contains(name), "--help misses {name}");
        assert!(
            example.contains(&format!("{name}=")),
            ".env.example misses {name}"
        );
    }
}

#[test]
fn local_clients_dial_the_listen_address_or_loopback() {
    let dial = |vars: &[(&str, &str)]| config(vars).unwrap().local_dial_addr().to_string();
    assert_eq!(dial(&[("ADDR", "node1:7000")]), "127.0.0.1:7000");
    assert_eq!(
        dial(&[("ADDR", "node1:7000"), ("LISTEN_ADDR", "10.1.2.3:7001")]),
        "10.1.2.3:7001"
    );
    assert_eq!(
        dial(&[("ADDR", "node1:7000"), ("LISTEN_ADDR", "[::]:7002")]),
        "[::1]:7002"
    );
}
