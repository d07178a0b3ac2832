//! A real node's configuration: flags over environment variables, the
//! variables of the system this project grew from plus `DATA_DIR`,
//! `RAFT_PORT`, `LOG_FORMAT` and `CLUSTER_ID`.
//!
//! `NodeConfig::from_sources` takes the flags and the environment as a map,
//! so it can be tested without touching the process environment. Every
//! value is checked here, before anything starts: a bad one is a
//! `ConfigError` naming the variable or flag, the value and what was
//! expected. The only effect is on `DATA_DIR`, which is created if missing
//! and probed for writing. See docs/deploy.md, "Configuration", and
//! env.example.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::real::transport::MAX_CLUSTER_ID_BYTES;
use crate::scenario::parse::parse_duration;
use crate::trace::NodeId;

/// The most nodes `PEERS` may name: Raft clusters are small, and every
/// node keeps a connection and a queue per peer.
pub const MAX_NODES: usize = 64;

/// The largest `CACHE_CAPACITY`, in entries.
pub const MAX_CACHE_CAPACITY: usize = 100_000_000;

/// The longest heartbeat interval or timeout accepted.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(60);

/// The most Redis URLs `REDIS_URL` may list.
pub const MAX_REDIS_URLS: usize = 64;

const DEFAULT_HTTP_PORT: u16 = 8080;
const DEFAULT_CACHE_CAPACITY: usize = 1000;
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(150);
const DEFAULT_CLUSTER_ID: &str = "distsync";
const DEFAULT_REDIS_PORT: u16 = 6379;

/// One flag per environment variable; a flag given overrides the variable.
/// Values are taken as text and checked by `NodeConfig::from_sources`, so a
/// bad flag and a bad variable get the same message.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NodeFlags {
    /// This node's name in PEERS, e.g. n1 [env: NODE_ID]
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,
    /// Every node's Raft address, this one's included: n1=host:port,n2=host:port,... [env: PEERS]
    #[arg(long, value_name = "LIST")]
    pub peers: Option<String>,
    /// The HTTP API's port [env: HTTP_PORT; default 8080]
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<String>,
    /// The Raft port; must match this node's entry in PEERS [env: RAFT_PORT]
    #[arg(long, value_name = "PORT")]
    pub raft_port: Option<String>,
    /// The directory of this node's write-ahead log [env: DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Redis shards, comma-separated redis:// URLs; checked, not used yet (the queue is not served) [env: REDIS_URL]
    #[arg(long, value_name = "URLS")]
    pub redis_url: Option<String>,
    /// Entries in this node's cache; checked, not used yet (the caches are not served) [env: CACHE_CAPACITY; default 1000]
    #[arg(long, value_name = "N")]
    pub cache_capacity: Option<String>,
    /// Serve Prometheus metrics at GET /metrics: true, false, 1 or 0 [env: ENABLE_METRICS; default false]
    #[arg(long, value_name = "BOOL")]
    pub enable_metrics: Option<String>,
    /// error, warn, info, debug or trace [env: LOG_LEVEL; default info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// text or json [env: LOG_FORMAT; default text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// How often a leader sends heartbeats, e.g. 50ms [env: HEARTBEAT_INTERVAL; default 50ms]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,
    /// Silence after which a follower stands for election, e.g. 150ms [env: HEARTBEAT_TIMEOUT; default 150ms]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_timeout: Option<String>,
    /// Nodes of different clusters refuse each other [env: CLUSTER_ID; default distsync]
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Every node's HTTP address, for redirects to the leader: n1=host:port,... [env: HTTP_PEERS; default: each PEERS host with HTTP_PORT]
    #[arg(long, value_name = "LIST")]
    pub http_peers: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on the HTTP API (all but /health and /metrics); prefer the variable, which `ps` does not show [env: API_TOKEN; default: no auth]
    #[arg(long, value_name = "TOKEN")]
    pub api_token: Option<String>,
}

/// The shortest `API_TOKEN` accepted: a guessable token protects nothing.
pub const MIN_API_TOKEN_BYTES: usize = 16;
/// The longest `API_TOKEN` accepted (it travels in every request's headers).
pub const MAX_API_TOKEN_BYTES: usize = 1024;

/// A secret that never shows in logs or `{:?}` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A host and port as written in `PEERS`. Names are resolved when the node
/// dials, not here: configuration stays free of DNS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// As written in `PEERS`: an IPv6 host in brackets (`[::1]:7001`), so the
/// text is also what a resolver and a URL take.
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One Redis server from `REDIS_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// The URL as given, for the Redis client.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub db: u32,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A real node's checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node (`n1` is 0).
    pub node_id: NodeId,
    /// Every node's Raft address, this one's included, by id 0..n.
    pub peers: BTreeMap<NodeId, HostPort>,
    /// This node's Raft port (its entry in `peers`).
    pub raft_port: u16,
    pub http_port: u16,
    /// Every node's HTTP address (this one's port is `http_port`), by id.
    pub http_peers: BTreeMap<NodeId, HostPort>,
    /// Exists and is writable.
    pub data_dir: PathBuf,
    /// Empty when `REDIS_URL` is not set.
    pub redis: Vec<RedisUrl>,
    pub cache_capacity: usize,
    pub enable_metrics: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub cluster_id: String,
    /// `API_TOKEN`: when set, the HTTP API wants it as a bearer token.
    pub api_token: Option<Secret>,
}

/// A setting that is missing or wrong. `distsync node` exits 2 on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable (`HTTP_PORT`) or flag (`--http-port`) at fault.
    pub setting: String,
    /// The value given; None when the setting is missing.
    pub value: Option<String>,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} is {v:?}: expected {}", self.setting, self.expected),
            None => write!(f, "{} is not set: expected {}", self.setting, self.expected),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A variable and the flag that overrides it.
#[derive(Clone, Copy)]
struct Setting {
    var: &'static str,
    flag: &'static str,
    given: fn(&NodeFlags) -> &Option<String>,
}

const NODE_ID: Setting = Setting {
    var: "NODE_ID",
    flag: "--node-id",
    given: |f| &f.node_id,
};
const PEERS: Setting = Setting {
    var: "PEERS",
    flag: "--peers",
    given: |f| &f.peers,
};
const HTTP_PORT: Setting = Setting {
    var: "HTTP_PORT",
    flag: "--http-port",
    given: |f| &f.http_port,
};
const RAFT_PORT: Setting = Setting {
    var: "RAFT_PORT",
    flag: "--raft-port",
    given: |f| &f.raft_port,
};
const DATA_DIR: Setting = Setting {
    var: "DATA_DIR",
    flag: "--data-dir",
    given: |f| &f.data_dir,
};
const REDIS_URL: Setting = Setting {
    var: "REDIS_URL",
    flag: "--redis-url",
    given: |f| &f.redis_url,
};
const CACHE_CAPACITY: Setting = Setting {
    var: "CACHE_CAPACITY",
    flag: "--cache-capacity",
    given: |f| &f.cache_capacity,
};
const ENABLE_METRICS: Setting = Setting {
    var: "ENABLE_METRICS",
    flag: "--enable-metrics",
    given: |f| &f.enable_metrics,
};
const LOG_LEVEL: Setting = Setting {
    var: "LOG_LEVEL",
    flag: "--log-level",
    given: |f| &f.log_level,
};
const LOG_FORMAT: Setting = Setting {
    var: "LOG_FORMAT",
    flag: "--log-format",
    given: |f| &f.log_format,
};
const HEARTBEAT_INTERVAL: Setting = Setting {
    var: "HEARTBEAT_INTERVAL",
    flag: "--heartbeat-interval",
    given: |f| &f.heartbeat_interval,
};
const HEARTBEAT_TIMEOUT: Setting = Setting {
    var: "HEARTBEAT_TIMEOUT",
    flag: "--heartbeat-timeout",
    given: |f| &f.heartbeat_timeout,
};
const HTTP_PEERS: Setting = Setting {
    var: "HTTP_PEERS",
    flag: "--http-peers",
    given: |f| &f.http_peers,
};
const API_TOKEN: Setting = Setting {
    var: "API_TOKEN",
    flag: "--api-token",
    given: |f| &f.api_token,
};
const CLUSTER_ID: Setting = Setting {
    var: "CLUSTER_ID",
    flag: "--cluster-id",
    given: |f| &f.cluster_id,
};

/// A value and where it came from, for error messages.
#[derive(Clone, Copy)]
struct Given<'a> {
    name: &'static str,
    value: &'a str,
}

impl Given<'_> {
    fn err(self, expected: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: self.name.to_owned(),
            value: Some(self.value.to_owned()),
            expected: expected.into(),
        }
    }
}

/// The flags and the environment, flags first.
struct Sources<'a> {
    flags: &'a NodeFlags,
    env: &'a BTreeMap<String, String>,
}

impl<'a> Sources<'a> {
    /// The flag's value if given, else the variable's. An empty value counts
    /// as unset, as `VAR=` in an env file usually means.
    fn get(&self, s: Setting) -> Option<Given<'a>> {
        let from_flag = (s.given)(self.flags).as_deref().map(|value| Given {
            name: s.flag,
            value,
        });
        let from_env = || {
            self.env.get(s.var).map(|value| Given {
                name: s.var,
                value: value.as_str(),
            })
        };
        let set = |g: &Given<'_>| !g.value.is_empty();
        from_flag.filter(set).or_else(|| from_env().filter(set))
    }

    fn required(&self, s: Setting, expected: &str) -> Result<Given<'a>, ConfigError> {
        self.get(s).ok_or_else(|| ConfigError {
            setting: format!("{} (or {})", s.var, s.flag),
            value: None,
            expected: expected.to_owned(),
        })
    }
}

impl NodeConfig {
    /// Builds and checks the configuration from flags over environment
    /// variables; creates `DATA_DIR` if missing and checks it is writable.
    pub fn from_sources(
        flags: &NodeFlags,
        env: &BTreeMap<String, String>,
    ) -> Result<NodeConfig, ConfigError> {
        let src = Sources { flags, env };
        let peers_given = src.required(PEERS, "n1=host:port,n2=host:port,...")?;
        let peers = parse_peers(peers_given)?;
        let node_given = src.required(NODE_ID, "this node's name in PEERS, e.g. n1")?;
        let node_id = parse_node_name(node_given.value)
            .ok_or_else(|| node_given.err(format!("a node name n1..n{MAX_NODES}, as in PEERS")))?;
        let Some(me) = peers.get(&node_id) else {
            return Err(node_given.err(format!(
                "one of the nodes in PEERS ({})",
                names(peers.keys())
            )));
        };
        let raft_port = match src.get(RAFT_PORT) {
            None => me.port,
            Some(g) => {
                let port = parse_port(g)?;
                if port != me.port {
                    return Err(g.err(format!(
                        "{}, this node's port in PEERS ({})",
                        me.port, peers_given.name
                    )));
                }
                port
            }
        };
        let http_port = match (src.get(HTTP_PORT), src.get(HTTP_PEERS)) {
            (Some(g), _) => parse_port(g)?,
            // This node's entry in HTTP_PEERS, when that is given alone.
            (None, Some(g)) => parse_peers(g)?
                .get(&node_id)
                .map_or(DEFAULT_HTTP_PORT, |hp| hp.port),
            (None, None) => DEFAULT_HTTP_PORT,
        };
        if let Some((id, _)) = peers
            .iter()
            .find(|(_, hp)| hp.host == me.host && hp.port == http_port)
        {
            let g = src.get(HTTP_PORT).unwrap_or(Given {
                name: HTTP_PORT.var,
                value: "8080 (the default)",
            });
            return Err(g.err(format!(
                "a port other than {}'s Raft port on {} (PEERS)",
                name(*id),
                me.host
            )));
        }
        let http_peers = http_peers(&src, &peers, node_id, http_port)?;
        let data_dir = check_data_dir(src.required(DATA_DIR, "a writable directory")?)?;
        let redis = match src.get(REDIS_URL) {
            None => Vec::new(),
            Some(g) => parse_redis_urls(g)?,
        };
        let cache_capacity = match src.get(CACHE_CAPACITY) {
            None => DEFAULT_CACHE_CAPACITY,
            Some(g) => g
                .value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CACHE_CAPACITY).contains(n))
                .ok_or_else(|| g.err(format!("a whole number 1..{MAX_CACHE_CAPACITY}")))?,
        };
        let enable_metrics = match src.get(ENABLE_METRICS) {
            None => false,
            Some(g) => parse_bool(g)?,
        };
        let log_level = match src.get(LOG_LEVEL) {
            None => LogLevel::Info,
            Some(g) => parse_log_level(g)?,
        };
        let log_format = match src
            .get(LOG_FORMAT)
            .map(|g| (g, g.value.to_ascii_lowercase()))
        {
            None => LogFormat::Text,
            Some((_, v)) if v == "text" => LogFormat::Text,
            Some((_, v)) if v == "json" => LogFormat::Json,
            Some((g, _)) => return Err(g.err("text or json")),
        };
        let heartbeat_interval = duration(&src, HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL)?;
        let heartbeat_timeout = duration(&src, HEARTBEAT_TIMEOUT, DEFAULT_HEARTBEAT_TIMEOUT)?;
        if heartbeat_timeout <= heartbeat_interval {
            let g = src.get(HEARTBEAT_TIMEOUT).unwrap_or(Given {
                name: HEARTBEAT_TIMEOUT.var,
                value: "150ms (the default)",
            });
            return Err(g.err(format!(
                "more than HEARTBEAT_INTERVAL ({heartbeat_interval:?}): a follower must hear \
                 several heartbeats before it gives up on the leader"
            )));
        }
        let cluster_id = match src.get(CLUSTER_ID) {
            None => DEFAULT_CLUSTER_ID.to_owned(),
            Some(g) if g.value.len() <= MAX_CLUSTER_ID_BYTES => g.value.to_owned(),
            Some(g) => return Err(g.err(format!("at most {MAX_CLUSTER_ID_BYTES} bytes"))),
        };
        let api_token = match src.get(API_TOKEN) {
            None => None,
            Some(g) => Some(parse_api_token(g)?),
        };
        Ok(NodeConfig {
            api_token,
            node_id,
            raft_port,
            peers,
            http_port,
            http_peers,
            data_dir,
            redis,
            cache_capacity,
            enable_metrics,
            log_level,
            log_format,
            heartbeat_interval,
            heartbeat_timeout,
            cluster_id,
        })
    }
}

/// Every node's HTTP address: `HTTP_PEERS` when given (the same nodes as
/// `PEERS`, this node's port agreeing with `HTTP_PORT`), else each Raft
/// host with this node's `HTTP_PORT`. Nodes sharing a host cannot all use
/// one port, so without `HTTP_PEERS` only this node's address is known
/// there, and a follower cannot redirect (the API says so).
fn http_peers(
    src: &Sources<'_>,
    peers: &BTreeMap<NodeId, HostPort>,
    me: NodeId,
    http_port: u16,
) -> Result<BTreeMap<NodeId, HostPort>, ConfigError> {
    let Some(g) = src.get(HTTP_PEERS) else {
        let derived: BTreeMap<NodeId, HostPort> = peers
            .iter()
            .map(|(id, hp)| {
                let host = hp.host.clone();
                (
                    *id,
                    HostPort {
                        host,
                        port: http_port,
                    },
                )
            })
            .collect();
        let hosts: BTreeSet<&str> = peers.values().map(|hp| hp.host.as_str()).collect();
        if hosts.len() < peers.len() {
            return Ok(derived.into_iter().filter(|(id, _)| *id == me).collect());
        }
        return Ok(derived);
    };
    let given = parse_peers(g)?;
    if given.keys().ne(peers.keys()) {
        return Err(g.err(format!("the same nodes as PEERS ({})", names(peers.keys()))));
    }
    if given[&me].port != http_port {
        return Err(g.err(format!(
            "{}'s entry on port {http_port}, this node's HTTP_PORT",
            name(me)
        )));
    }
    if let Some((id, _)) = given
        .iter()
        .find(|(_, hp)| peers.values().any(|raft| raft == *hp))
    {
        return Err(g.err(format!(
            "HTTP addresses apart from every Raft address in PEERS ({}'s is one)",
            name(*id)
        )));
    }
    Ok(given)
}

/// `n1` is node 0, as in traces and scenario files.
fn parse_node_name(text: &str) -> Option<NodeId> {
    let digits = text.strip_prefix('n')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let k: usize = digits.parse().ok()?;
    (1..=MAX_NODES).contains(&k).then(|| k - 1)
}

fn name(id: NodeId) -> String {
    format!("n{}", id + 1)
}

fn names<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
    ids.map(|id| name(*id)).collect::<Vec<_>>().join(", ")
}

/// `n1=host:port,...`: every node n1..nN exactly once, no address twice.
fn parse_peers(g: Given<'_>) -> Result<BTreeMap<NodeId, HostPort>, ConfigError> {
    let mut peers = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for item in g.value.split(',').map(str::trim) {
        let Some((node, addr)) = item.split_once('=') else {
            return Err(g.err(format!(
                "n1=host:port,n2=host:port,... (the item {item:?} has no '=')"
            )));
        };
        let id = parse_node_name(node.trim()).ok_or_else(|| {
            g.err(format!(
                "node names n1..n{MAX_NODES} (the item {item:?} names {node:?})"
            ))
        })?;
        let hp = parse_host_port(addr.trim())
            .ok_or_else(|| g.err(format!("host:port addresses (the item {item:?})")))?;
        if !seen.insert(hp.clone()) {
            return Err(g.err(format!("each node at its own address ({hp} appears twice)")));
        }
        if peers.insert(id, hp).is_some() {
            return Err(g.err(format!("each node once ({} appears twice)", name(id))));
        }
    }
    if let Some(missing) = (0..peers.len()).find(|id| !peers.contains_key(id)) {
        return Err(g.err(format!(
            "nodes numbered n1..n{} without gaps ({} is missing)",
            peers.len(),
            name(missing)
        )));
    }
    Ok(peers)
}

/// `host:port` or `[v6]:port`; the port 1..65535.
fn parse_host_port(text: &str) -> Option<HostPort> {
    let (host, port) = text.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| HostPort {
        host: host.to_owned(),
        port,
    })
}

/// A bearer token: visible ASCII (RFC 6750's token characters and more,
/// but no space or control character, which cannot travel in a header),
/// of a length that makes guessing hopeless. The value is never echoed.
fn parse_api_token(g: Given<'_>) -> Result<Secret, ConfigError> {
    let len = g.value.len();
    let printable = g.value.bytes().all(|b| b.is_ascii_graphic());
    if (MIN_API_TOKEN_BYTES..=MAX_API_TOKEN_BYTES).contains(&len) && printable {
        return Ok(Secret::new(g.value));
    }
    Err(ConfigError {
        setting: g.name.to_owned(),
        value: Some(format!("<{len} bytes, not shown>")),
        expected: format!(
            "{MIN_API_TOKEN_BYTES} to {MAX_API_TOKEN_BYTES} visible ASCII characters \
             (no spaces), e.g. from `openssl rand -hex 32`"
        ),
    })
}

fn parse_port(g: Given<'_>) -> Result<u16, ConfigError> {
    g.value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| g.err("a port number 1..65535"))
}

fn parse_bool(g: Given<'_>) -> Result<bool, ConfigError> {
    match g.value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(g.err("true, false, 1 or 0")),
    }
}

fn parse_log_level(g: Given<'_>) -> Result<LogLevel, ConfigError> {
    match g.value.to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(g.err("error, warn, info, debug or trace")),
    }
}

/// A duration in the scenario files' syntax (`50ms`, `1.5s`), more than
/// zero and at most `MAX_HEARTBEAT`.
fn duration(src: &Sources<'_>, s: Setting, default: Duration) -> Result<Duration, ConfigError> {
    let Some(g) = src.get(s) else {
        return Ok(default);
    };
    let expected = "a duration such as 50ms or 1s, more than zero and at most 60s";
    match parse_duration(g.value) {
        Ok(ns) if ns > 0 && Duration::from_nanos(ns) <= MAX_HEARTBEAT => {
            Ok(Duration::from_nanos(ns))
        }
        Ok(_) => Err(g.err(expected)),
        Err(reason) => Err(g.err(format!("{expected} ({reason})"))),
    }
}

/// Comma-separated `redis://[user:password@]host[:port][/db]` URLs.
fn parse_redis_urls(g: Given<'_>) -> Result<Vec<RedisUrl>, ConfigError> {
    let urls: Vec<&str> = g.value.split(',').map(str::trim).collect();
    if urls.len() > MAX_REDIS_URLS {
        return Err(g.err(format!("at most {MAX_REDIS_URLS} URLs")));
    }
    urls.into_iter()
        .map(|u| {
            parse_redis_url(u).ok_or_else(|| {
                g.err(format!(
                    "redis://host[:port][/db] URLs, comma-separated (the item {:?})",
                    hide_password(u)
                ))
            })
        })
        .collect()
}

fn parse_redis_url(text: &str) -> Option<RedisUrl> {
    let rest = text.strip_prefix("redis://")?;
    let (authority, db) = match rest.split_once('/') {
        Some((a, "")) => (a, 0),
        Some((a, db)) => (a, db.parse().ok()?),
        None => (rest, 0),
    };
    // Credentials, if any, end at the last '@' (a password may contain one).
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hp = match parse_host_port(hostport) {
        Some(hp) => hp,
        None if !hostport.contains(':') || hostport.ends_with(']') => {
            parse_host_port(&format!("{hostport}:{DEFAULT_REDIS_PORT}"))?
        }
        None => return None,
    };
    Some(RedisUrl {
        url: text.to_owned(),
        host: hp.host,
        port: hp.port,
        db,
    })
}

/// A URL for an error message, without its password.
fn hide_password(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        let (creds, host) = rest.rsplit_once('@')?;
        let user = creds.split_once(':').map_or(creds, |(u, _)| u);
        Some(format!("{scheme}://{user}:***@{host}"))
    }) {
        Some(shown) => shown,
        None => url.to_owned(),
    }
}

/// Creates the directory if missing, then proves it writable by creating,
/// syncing and removing a probe file: the write-ahead log would otherwise
/// find out at its first append, after the node had joined the cluster.
fn check_data_dir(g: Given<'_>) -> Result<PathBuf, ConfigError> {
    let dir = PathBuf::from(g.value);
    if let Err(e) = fs::create_dir_all(&dir) {
        return Err(g.err(format!("a directory that exists or can be created ({e})")));
    }
    probe(&dir).map_err(|e| g.err(format!("a writable directory ({e})")))?;
    Ok(dir)
}

fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".distsync-probe-{}", std::process::id()));
    let written = fs::File::create(&path).and_then(|mut f| {
        f.write_all(b"probe")?;
        f.sync_all()
    });
    let removed = fs::remove_file(&path);
    written.and(removed)
}

#[cfg(test)]
mod tests;
