//! `distsync node`: one real node. Reads its configuration, recovers its
//! data directory, then runs the actor, the TCP transport and the HTTP API
//! on one thread until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::LocalSet;
use tracing::{error, info, warn};

use crate::real::config::{HostPort, LogFormat, LogLevel, NodeConfig, NodeFlags};
use crate::real::http::{Api, serve};
use crate::real::metrics::Metrics;
use crate::real::runtime::{NodeSetup, Runtime, os_entropy};
use crate::real::transport::{Transport, TransportConfig};
use crate::real::wal::{DiskLog, WalError, WalLimits};
use crate::rng::{Purpose, Rng};
use crate::scenario::RaftConfig;
use crate::trace::NodeId;

/// Stopped by SIGTERM or Ctrl-C after a clean shutdown.
pub const EXIT_STOPPED: u8 = 0;
/// Failed while running: a port could not be bound, the disk failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad configuration, or a data directory that refuses to start (a corrupt
/// log record: the message names the file and byte offset; or a directory
/// another running node holds).
pub const EXIT_BAD_CONFIG: u8 = 2;

/// How long start-up waits for peers' host names to resolve (containers
/// started together may not be in DNS yet).
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// Runs a node, writing its trace to `trace_path` if given; returns its
/// exit code.
pub fn run_node(flags: &NodeFlags, trace_path: Option<&std::path::Path>) -> u8 {
    // Variables whose names or values are not UTF-8 are not ours.
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cfg = match NodeConfig::from_sources(flags, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_CONFIG;
        }
    };
    init_logging(cfg.log_level, cfg.log_format);
    let name = format!("n{}", cfg.node_id + 1);
    let log = match DiskLog::open(&cfg.data_dir, WalLimits::default()) {
        Ok(log) => log,
        Err(e @ (WalError::Corrupt { .. } | WalError::InUse { .. })) => {
            error!("{name}: {e}");
            eprintln!("error: {e}");
            return EXIT_BAD_CONFIG;
        }
        Err(e) => {
            error!("{name}: cannot open the data directory: {e}");
            eprintln!("error: cannot open the data directory: {e}");
            return EXIT_FAILED;
        }
    };
    // The trace file is opened (appended to: a restarted node continues
    // its trace) before anything runs, so a bad path is a clear error.
    let trace: Option<Box<dyn std::io::Write>> = match trace_path {
        None => None,
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => {
                eprintln!("error: --trace {}: {e}", path.display());
                return EXIT_BAD_CONFIG;
            }
        },
    };
    let (seed, session) = match (os_entropy(), os_entropy()) {
        (Ok(seed), Ok(session)) => (seed, session as u32),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: cannot read /dev/urandom for the node's seed: {e}");
            return EXIT_FAILED;
        }
    };
    // Settings the node reads but whose services are not built yet: say so
    // rather than let a user believe they are on.
    if !cfg.redis.is_empty() {
        warn!("{name}: REDIS_URL is set, but this node does not serve the queue yet; ignored");
    }
    let stable = log.stable();
    info!(
        "{name}: starting with seed {seed:#018x}; recovered term {}, {} log entries after snapshot index {}",
        stable.term,
        stable.log.len(),
        stable.snapshot_index()
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let local = LocalSet::new();
    runtime.block_on(local.run_until(run(cfg, log, seed, session, trace)))
}

async fn run(
    cfg: NodeConfig,
    log: DiskLog,
    seed: u64,
    session: u32,
    trace: Option<Box<dyn std::io::Write>>,
) -> u8 {
    let me = cfg.node_id;
    let name = format!("n{}", me + 1);
    let Some(addrs) = resolve_all(&cfg.peers).await else {
        return EXIT_BAD_CONFIG;
    };
    let listen = addrs[&me];
    let mut transport_cfg = TransportConfig::new(cfg.cluster_id.clone(), me, listen, addrs.clone());
    // A link lost while a peer was down must be back within about a
    // heartbeat of the peer's return: only the smaller id dials, so a long
    // backoff would leave the restarted peer cut off from a node it could
    // elect a leader with. A refused dial on a LAN costs next to nothing.
    transport_cfg.backoff_min = transport_cfg.backoff_min.min(cfg.heartbeat_interval);
    transport_cfg.backoff_max = cfg.heartbeat_interval.max(transport_cfg.backoff_min);
    let (transport, inbox) = match Transport::start(
        transport_cfg,
        Rng::stream(seed, Purpose::Network, me as u64),
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            error!("{name}: {e}");
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let http_addr = SocketAddr::new(listen.ip(), cfg.http_port);
    let listener = match tokio::net::TcpListener::bind(http_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!("{name}: cannot listen for HTTP on {http_addr}: {e}");
            eprintln!("error: cannot listen for HTTP on {http_addr}: {e}");
            transport.shutdown().await;
            return EXIT_FAILED;
        }
    };
    let metrics = cfg.enable_metrics.then(Metrics::new);
    let setup = NodeSetup {
        id: me,
        cluster_size: cfg.peers.len(),
        raft: raft_config(&cfg),
        locks: crate::real::lock_config(),
        seed,
        session,
        bugs: Default::default(),
        metrics: metrics.clone(),
        queue: (!cfg.redis.is_empty())
            .then(|| crate::real::queue_setup(cfg.peers.len(), cfg.redis.len())),
    };
    let (mut actor, handle) = Runtime::new(setup, log, transport.clone(), inbox, trace);
    if !cfg.redis.is_empty() {
        let (calls, answers) =
            match crate::real::redis_shards::RedisShards::connect(&cfg.redis, metrics.clone()) {
                Ok(c) => c,
                Err(e) => {
                    error!("{name}: {e}");
                    eprintln!("error: {e}");
                    transport.shutdown().await;
                    return EXIT_BAD_CONFIG;
                }
            };
        info!(
            "queue: {} partitions over {} Redis shard(s)",
            crate::real::QUEUES * crate::real::PARTITIONS_PER_QUEUE,
            cfg.redis.len()
        );
        actor = actor.with_shards(Box::new(calls), answers);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = Api {
        node: handle,
        me,
        http_urls: cfg
            .http_peers
            .iter()
            .map(|(id, hp)| (*id, format!("http://{hp}")))
            .collect(),
        metrics,
        api_token: cfg.api_token.clone().map(Arc::new),
        queue: !cfg.redis.is_empty(),
    };
    let mut http_stop = stop_rx.clone();
    let http = tokio::task::spawn_local(serve(listener, api, async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    }));
    tokio::task::spawn_local(stop_on_signal(name.clone(), stop_tx));
    info!("{name}: Raft on {listen}, HTTP on http://{http_addr}");
    let outcome = actor.run(stop_rx).await;
    transport.shutdown().await;
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("{name}: the HTTP server stopped with an error: {e}"),
        Err(e) => warn!("{name}: the HTTP server task failed: {e}"),
    }
    match outcome {
        Ok(()) => {
            info!("{name}: stopped");
            EXIT_STOPPED
        }
        Err(e) => {
            error!("{name}: {e}");
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

/// Raft's timing from the heartbeat settings: elections time out between
/// one and two `HEARTBEAT_TIMEOUT`s, as the simulator draws them.
fn raft_config(cfg: &NodeConfig) -> RaftConfig {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    RaftConfig {
        heartbeat_ns: ns(cfg.heartbeat_interval),
        election_timeout_min_ns: ns(cfg.heartbeat_timeout),
        election_timeout_max_ns: ns(cfg.heartbeat_timeout) * 2,
        ..RaftConfig::default()
    }
}

/// Resolves every node's Raft address, retrying names that do not resolve
/// yet for up to `RESOLVE_FOR`.
async fn resolve_all(peers: &BTreeMap<NodeId, HostPort>) -> Option<BTreeMap<NodeId, SocketAddr>> {
    let started = Instant::now();
    let mut out = BTreeMap::new();
    for (id, hp) in peers {
        let target = hp.to_string();
        loop {
            let why = match tokio::net::lookup_host(target.as_str()).await {
                Ok(mut addrs) => match addrs.next() {
                    Some(a) => {
                        out.insert(*id, a);
                        break;
                    }
                    None => "it resolves to no address".to_owned(),
                },
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= RESOLVE_FOR {
                eprintln!(
                    "error: PEERS: n{}'s address {target} does not resolve after {} s: {why}",
                    id + 1,
                    RESOLVE_FOR.as_secs()
                );
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Some(out)
}

/// Turns SIGTERM or Ctrl-C into a stop: the actor finishes its batch and
/// fsync, the transport and the HTTP server close.
async fn stop_on_signal(name: String, stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("{name}: cannot watch SIGTERM ({e}); stop the node with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("{name}: SIGTERM, stopping"),
        _ = tokio::signal::ctrl_c() => info!("{name}: interrupted, stopping"),
    }
    let _ = stop.send(true);
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Another subscriber already set (a test harness) keeps its own.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
