use super::*;
use crate::real::temp_dir::TempDir;

/// The smallest complete environment: node 2 of three on one host.
fn env(dir: &TempDir) -> BTreeMap<String, String> {
    [
        ("NODE_ID", "n2"),
        (
            "PEERS",
            "n1=127.0.0.1:7001, n2=127.0.0.1:7002,n3=127.0.0.1:7003",
        ),
        ("DATA_DIR", dir.0.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn with(mut env: BTreeMap<String, String>, var: &str, value: &str) -> BTreeMap<String, String> {
    env.insert(var.to_owned(), value.to_owned());
    env
}

fn without(mut env: BTreeMap<String, String>, var: &str) -> BTreeMap<String, String> {
    env.remove(var);
    env
}

fn load(env: &BTreeMap<String, String>) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_sources(&NodeFlags::default(), env)
}

/// Asserts the error names `setting` and says `expected` somewhere.
fn refused(result: Result<NodeConfig, ConfigError>, setting: &str, says: &str) -> ConfigError {
    let err = result.expect_err("the configuration is refused");
    assert!(
        err.setting.contains(setting),
        "{err} does not name {setting}"
    );
    let text = err.to_string();
    assert!(text.contains(says), "{text:?} does not say {says:?}");
    err
}

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_owned(),
        port,
    }
}

#[test]
fn a_minimal_environment_gets_the_documented_defaults() {
    let dir = TempDir::new("minimal");
    let cfg = load(&env(&dir)).expect("valid");
    assert_eq!(cfg.node_id, 1);
    assert_eq!(cfg.raft_port, 7002);
    assert_eq!(cfg.peers.len(), 3);
    assert_eq!(cfg.peers[&2], hp("127.0.0.1", 7003));
    assert_eq!(cfg.http_port, 8080);
    assert_eq!(cfg.data_dir, dir.0);
    assert!(cfg.redis.is_empty());
    assert_eq!(cfg.cache_capacity, 1000);
    assert!(!cfg.enable_metrics);
    assert_eq!(
        (cfg.log_level, cfg.log_format),
        (LogLevel::Info, LogFormat::Text)
    );
    assert_eq!(cfg.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(cfg.heartbeat_timeout, Duration::from_millis(150));
    assert_eq!(cfg.cluster_id, "distsync");
}

#[test]
fn every_variable_is_read_and_flags_override_it() {
    let dir = TempDir::new("full");
    let mut e = env(&dir);
    for (k, v) in [
        ("HTTP_PORT", "9002"),
        ("RAFT_PORT", "7002"),
        ("REDIS_URL", "redis://r1:6380/2, redis://:s3cret@r2"),
        ("CACHE_CAPACITY", "500"),
        ("ENABLE_METRICS", "1"),
        ("LOG_LEVEL", "DEBUG"),
        ("LOG_FORMAT", "json"),
        ("HEARTBEAT_INTERVAL", "20ms"),
        ("HEARTBEAT_TIMEOUT", "0.5s"),
        ("CLUSTER_ID", "prod-eu"),
    ] {
        e = with(e, k, v);
    }
    let cfg = load(&e).expect("valid");
    assert_eq!(cfg.http_port, 9002);
    assert_eq!(cfg.redis.len(), 2);
    assert_eq!(
        (
            cfg.redis[0].host.as_str(),
            cfg.redis[0].port,
            cfg.redis[0].db
        ),
        ("r1", 6380, 2)
    );
    assert_eq!(
        (cfg.redis[1].host.as_str(), cfg.redis[1].port),
        ("r2", 6379)
    );
    assert_eq!(cfg.redis[1].url, "redis://:s3cret@r2");
    assert_eq!(cfg.cache_capacity, 500);
    assert!(cfg.enable_metrics);
    assert_eq!(
        (cfg.log_level, cfg.log_format),
        (LogLevel::Debug, LogFormat::Json)
    );
    assert_eq!(cfg.heartbeat_interval, Duration::from_millis(20));
    assert_eq!(cfg.heartbeat_timeout, Duration::from_millis(500));
    assert_eq!(cfg.cluster_id, "prod-eu");

    let flags = NodeFlags {
        node_id: Some("n3".into()),
        http_port: Some("9003".into()),
        raft_port: Some("7003".into()),
        enable_metrics: Some("false".into()),
        // An empty flag counts as not given: the variable stands.
        log_format: Some(String::new()),
        ..NodeFlags::default()
    };
    let cfg = NodeConfig::from_sources(&flags, &e).expect("valid");
    assert_eq!((cfg.node_id, cfg.http_port, cfg.raft_port), (2, 9003, 7003));
    assert!(!cfg.enable_metrics);
    assert_eq!(cfg.log_format, LogFormat::Json);
    // A bad flag is named as a flag.
    let flags = NodeFlags {
        http_port: Some("http".into()),
        ..NodeFlags::default()
    };
    refused(
        NodeConfig::from_sources(&flags, &e),
        "--http-port",
        "a port number 1..65535",
    );
}

#[test]
fn missing_required_settings_name_the_variable_and_the_flag() {
    let dir = TempDir::new("missing");
    for var in ["NODE_ID", "PEERS", "DATA_DIR"] {
        let err = refused(load(&without(env(&dir), var)), var, "is not set");
        assert_eq!(err.value, None);
        assert!(err.setting.contains("--"), "{err}");
    }
    // Set but empty is the same as unset.
    refused(
        load(&with(env(&dir), "NODE_ID", "")),
        "NODE_ID",
        "is not set",
    );
}

#[test]
fn node_ids_must_be_in_peers() {
    let dir = TempDir::new("ids");
    refused(
        load(&with(env(&dir), "NODE_ID", "n4")),
        "NODE_ID",
        "one of the nodes in PEERS (n1, n2, n3)",
    );
    for bad in ["node1", "n0", "n01", "2", "n99999999999999999999"] {
        refused(load(&with(env(&dir), "NODE_ID", bad)), "NODE_ID", bad);
    }
}

#[test]
fn peers_are_each_named_once_at_their_own_address() {
    let dir = TempDir::new("peers");
    let cases = [
        ("n1=a:1,n1=b:1", "n1 appears twice"),
        ("n1=a:1,n2=a:1", "a:1 appears twice"),
        ("n1=a:1,n3=b:1", "n2 is missing"),
        ("n1=a:1,n2", "has no '='"),
        ("n1=a:1,x2=b:2", "names \"x2\""),
        ("n1=a:1,n2=b", "host:port"),
        ("n1=a:1,n2=b:0", "host:port"),
        ("n1=a:1,n2=b:70000", "host:port"),
        ("n1=a:1,n2=::1:7", "host:port"),
        ("n1=a:1,n2=b:2,", "has no '='"),
    ];
    for (peers, says) in cases {
        let e = with(with(env(&dir), "PEERS", peers), "NODE_ID", "n1");
        refused(load(&e), "PEERS", says);
    }
    let e = with(env(&dir), "PEERS", "n1=[::1]:7001,n2=[::1]:7002");
    assert_eq!(load(&e).expect("valid").peers[&1], hp("::1", 7002));
}

#[test]
fn ports_may_not_collide_on_one_host() {
    let dir = TempDir::new("ports");
    // HTTP on this node's own Raft port, or on another node's on the same host.
    refused(
        load(&with(env(&dir), "HTTP_PORT", "7002")),
        "HTTP_PORT",
        "n2's Raft port on 127.0.0.1",
    );
    refused(
        load(&with(env(&dir), "HTTP_PORT", "7003")),
        "HTTP_PORT",
        "n3's Raft port",
    );
    // The same port on another host is no collision.
    let e = with(
        with(env(&dir), "PEERS", "n1=h1:7000,n2=h2:7000,n3=h3:7000"),
        "HTTP_PORT",
        "7001",
    );
    assert_eq!(load(&e).expect("valid").http_port, 7001);
    let e = with(env(&dir), "PEERS", "n1=h1:8080,n2=h1:7000");
    refused(load(&e), "HTTP_PORT", "8080 (the default)");
    // RAFT_PORT must agree with PEERS.
    refused(
        load(&with(env(&dir), "RAFT_PORT", "7009")),
        "RAFT_PORT",
        "7002, this node's port in PEERS",
    );
    for bad in ["0", "65536", "-1", "http"] {
        refused(
            load(&with(env(&dir), "HTTP_PORT", bad)),
            "HTTP_PORT",
            "1..65535",
        );
    }
}

#[test]
fn durations_are_parsed_and_the_timeout_exceeds_the_interval() {
    let dir = TempDir::new("durations");
    for bad in ["fast", "10", "-5ms", "0s", "2m"] {
        refused(
            load(&with(env(&dir), "HEARTBEAT_INTERVAL", bad)),
            "HEARTBEAT_INTERVAL",
            "a duration such as 50ms",
        );
    }
    let e = with(env(&dir), "HEARTBEAT_INTERVAL", "100ms");
    for timeout in ["100ms", "50ms"] {
        refused(
            load(&with(e.clone(), "HEARTBEAT_TIMEOUT", timeout)),
            "HEARTBEAT_TIMEOUT",
            "more than HEARTBEAT_INTERVAL (100ms)",
        );
    }
    // The default timeout (150ms) is checked against a long interval too.
    refused(
        load(&with(env(&dir), "HEARTBEAT_INTERVAL", "200ms")),
        "HEARTBEAT_TIMEOUT",
        "150ms (the default)",
    );
}

#[test]
fn the_other_values_are_checked() {
    let dir = TempDir::new("values");
    let cases = [
        ("ENABLE_METRICS", "yes", "true, false, 1 or 0"),
        ("LOG_LEVEL", "verbose", "error, warn, info, debug or trace"),
        ("LOG_FORMAT", "xml", "text or json"),
        ("CACHE_CAPACITY", "0", "a whole number"),
        ("CACHE_CAPACITY", "lots", "a whole number"),
        ("CLUSTER_ID", &"x".repeat(300), "at most 256 bytes"),
        ("REDIS_URL", "http://r1:6379", "redis://host"),
        ("REDIS_URL", "redis://", "redis://host"),
        ("REDIS_URL", "redis://r1:port", "redis://host"),
        ("REDIS_URL", "redis://r1/zero", "redis://host"),
    ];
    for (var, value, says) in cases {
        refused(load(&with(env(&dir), var, value)), var, says);
    }
    // A password is not repeated in the message.
    let err = load(&with(env(&dir), "REDIS_URL", "redis://u:hunter2@r1:x")).unwrap_err();
    let text = err.expected;
    assert!(
        text.contains("u:***@r1:x") && !text.contains("hunter2"),
        "{text}"
    );
}

#[test]
fn the_data_dir_is_created_and_must_be_writable() {
    let dir = TempDir::new("data");
    let nested = dir.0.join("a").join("b");
    let e = with(env(&dir), "DATA_DIR", nested.to_str().unwrap());
    assert_eq!(load(&e).expect("valid").data_dir, nested);
    assert!(nested.is_dir());
    assert_eq!(
        fs::read_dir(&nested).unwrap().count(),
        0,
        "the probe is removed"
    );
    // A path under a regular file cannot be a directory.
    let file = dir.0.join("file");
    fs::write(&file, b"x").unwrap();
    let e = with(env(&dir), "DATA_DIR", file.join("sub").to_str().unwrap());
    refused(load(&e), "DATA_DIR", "can be created");
    // A directory that exists but refuses writes, even to root.
    if Path::new("/proc/self").is_dir() {
        let e = with(env(&dir), "DATA_DIR", "/proc/self");
        refused(load(&e), "DATA_DIR", "a writable directory");
    }
}

#[test]
fn errors_read_as_sentences() {
    let err = ConfigError {
        setting: "HTTP_PORT".into(),
        value: Some("x".into()),
        expected: "a port number 1..65535".into(),
    };
    assert_eq!(
        err.to_string(),
        "HTTP_PORT is \"x\": expected a port number 1..65535"
    );
}

#[test]
fn the_flags_flatten_into_a_command() {
    use clap::{CommandFactory, Parser};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: NodeFlags,
    }
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "node",
        "--node-id",
        "n1",
        "--peers",
        "n1=h:1",
        "--heartbeat-timeout",
        "1s",
        "--redis-url",
        "redis://r",
    ])
    .expect("parses");
    assert_eq!(cli.flags.node_id.as_deref(), Some("n1"));
    assert_eq!(cli.flags.peers.as_deref(), Some("n1=h:1"));
    assert_eq!(cli.flags.heartbeat_timeout.as_deref(), Some("1s"));
    assert_eq!(cli.flags.redis_url.as_deref(), Some("redis://r"));
}

#[test]
fn env_example_documents_every_variable_and_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("env.example");
    let text = fs::read_to_string(&path).expect("env.example at the repository root");
    let mut e: BTreeMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let vars = [
        "NODE_ID",
        "PEERS",
        "RAFT_PORT",
        "HTTP_PORT",
        "HTTP_PEERS",
        "DATA_DIR",
        "REDIS_URL",
        "CACHE_CAPACITY",
        "ENABLE_METRICS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "HEARTBEAT_INTERVAL",
        "HEARTBEAT_TIMEOUT",
        "CLUSTER_ID",
        "API_TOKEN",
    ];
    for var in vars {
        assert!(e.contains_key(var), "env.example lacks {var}");
    }
    assert_eq!(e.len(), vars.len(), "env.example sets only these: {e:?}");
    let dir = TempDir::new("example");
    e.insert("DATA_DIR".into(), dir.0.to_str().unwrap().into());
    let cfg = load(&e).expect("env.example is a valid configuration");
    assert_eq!((cfg.node_id, cfg.raft_port, cfg.http_port), (0, 7001, 8081));
}

#[test]
fn http_peers_are_given_or_derived_from_distinct_hosts() {
    let dir = TempDir::new("http-peers");
    // One host and no HTTP_PEERS: only this node's own address is known.
    let c = load(&env(&dir)).expect("valid");
    assert_eq!(c.http_peers, BTreeMap::from([(1, hp("127.0.0.1", 8080))]));
    // Distinct hosts: each host with HTTP_PORT.
    let spread = with(
        with(env(&dir), "PEERS", "n1=a:7001,n2=b:7001,n3=c:7001"),
        "HTTP_PORT",
        "8001",
    );
    let c = load(&spread).expect("valid");
    assert_eq!(c.http_peers[&0], hp("a", 8001));
    assert_eq!(c.http_peers[&2], hp("c", 8001));
    // Given: this node's port comes from it unless HTTP_PORT says otherwise.
    let given = with(
        env(&dir),
        "HTTP_PEERS",
        "n1=127.0.0.1:8001,n2=127.0.0.1:8002,n3=127.0.0.1:8003",
    );
    let c = load(&given).expect("valid");
    assert_eq!(c.http_port, 8002);
    assert_eq!(c.http_peers.len(), 3);
    refused(
        load(&with(given.clone(), "HTTP_PORT", "9000")),
        "HTTP_PEERS",
        "HTTP_PORT",
    );
    refused(
        load(&with(
            env(&dir),
            "HTTP_PEERS",
            "n1=127.0.0.1:8001,n2=127.0.0.1:8002",
        )),
        "HTTP_PEERS",
        "the same nodes as PEERS",
    );
    refused(
        load(&with(
            env(&dir),
            "HTTP_PEERS",
            "n1=127.0.0.1:7001,n2=127.0.0.1:8002,n3=127.0.0.1:8003",
        )),
        "HTTP_PEERS",
        "apart from every Raft address",
    );
}

#[test]
fn an_ipv6_address_prints_as_written_in_peers() {
    assert_eq!(hp("::1", 7001).to_string(), "[::1]:7001");
    assert_eq!(hp("node1", 7001).to_string(), "node1:7001");
}

#[test]
fn an_api_token_is_checked_and_never_shown() {
    let dir = TempDir::new("config-token");
    assert_eq!(load(&env(&dir)).expect("valid").api_token, None);
    let cfg = load(&with(env(&dir), "API_TOKEN", "a-long-enough-token")).expect("valid");
    assert_eq!(
        cfg.api_token.as_ref().map(Secret::expose),
        Some("a-long-enough-token")
    );
    assert!(!format!("{cfg:?}").contains("a-long-enough-token"));
    for bad in ["short", "has a space in it!", "tab\there-is-not-ok-at-all"] {
        let err = refused(
            load(&with(env(&dir), "API_TOKEN", bad)),
            "API_TOKEN",
            "16 to 1024",
        );
        assert!(!err.to_string().contains(bad), "{err}");
    }
}
