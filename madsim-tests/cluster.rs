//! One run: a cluster of real runtimes (`Runtime`, `Transport`, `DiskLog`)
//! as madsim nodes, clients writing and reading, a nemesis partitioning,
//! killing and restarting nodes, and the checks over what came out.
//!
//! Each node is a madsim node with its own address; its init task opens
//! the node's log, starts the TCP transport and runs the actor, as `distsync
//! node` does, and madsim reruns it on a restart. The clients use each
//! node's `ClientHandle`, the interface the HTTP API serves from (axum binds
//! tokio's own sockets, so the HTTP layer itself is not under madsim).
//!
//! The logs live on the real disk, one temporary directory per run:
//! madsim's file system has no rename, directories or locks, which the
//! write-ahead log needs. A madsim kill is a process crash: written data
//! survives it, as it survives a kill -9. (Losing unsynced writes is what
//! the simulator's own storage checks, on every run.)

use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use tokio::sync::watch;

use distsync::bugs::Bugs;
use distsync::check::history::History;
use distsync::check::linearizability::Verdict;
use distsync::kv::{ClientReply, ClientRequest};
use distsync::real::runtime::{ClientError, ClientHandle, NodeSetup, Runtime as Actor};
use distsync::real::transport::{Transport, TransportConfig};
use distsync::real::wal::{DiskLog, WalLimits};
use distsync::rng::{Purpose, Rng};
use distsync::scenario::{LockConfig, RaftConfig};
use distsync::trace::{Outcome, Role, TraceEvent};

/// The Raft port every node listens on, at its own address.
const RAFT_PORT: u16 = 7000;

/// Keys the clients share: few, so that operations overlap on them.
const KEYS: u64 = 4;

/// Concurrent clients.
const CLIENTS: usize = 3;

/// How long a client waits for one answer before counting its outcome
/// unknown and moving on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// After the faults stop: how long the cluster has to serve a read of every
/// key again (several election rounds).
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

/// The linearizability search's step budget; the clients write unique
/// values, so the check is decided without search and this is a backstop.
const LINEARIZABILITY_STEPS: u64 = 5_000_000;

/// What one run is.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    pub nodes: usize,
    pub seed: u64,
    /// Faults and client load last this long; then the network heals.
    pub faulty_for: Duration,
    pub bugs: Bugs,
}

/// What one run did, for the test's summary and its checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunResult {
    /// The nodes' traces merged (`distsync::trace_merge`), one line each.
    pub trace: Vec<String>,
    /// Client operations, and those acknowledged.
    pub ops: usize,
    pub acked_writes: usize,
    pub ok_reads: usize,
    pub kills: u32,
    pub partitions: u32,
    /// The highest term any node reached.
    pub max_term: u64,
    /// The first failed check, if any.
    pub failure: Option<String>,
}

/// Every node's current `ClientHandle` (None while it is down), shared by
/// the nodes' init tasks, which fill it, and the clients.
type Registry = Arc<Mutex<Vec<Option<ClientHandle>>>>;

/// A run's scratch directory, removed when the run ends, failed or not.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Where runs keep their logs: memory-backed when the machine has it, since
/// a madsim kill loses nothing a real disk's fsync would have kept and the
/// logs' fsyncs would otherwise be most of a run's time.
fn scratch_base() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir() // determinism-ok: where the files go, never read by the run
    }
}

/// The time on madsim's simulated clock, which stands behind `Instant`
/// inside its runtime.
fn now() -> Instant {
    Instant::now() // determinism-ok: madsim's simulated clock
}

fn node_ip(id: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8 + 1))
}

/// With `RUST_LOG` set to a level (`info`, `debug`...), the nodes' log
/// lines (connections, roles), stamped with simulated time; none otherwise.
fn init_logging() {
    let level = std::env::var("RUST_LOG"); // determinism-ok: log lines only
    let Ok(level) = level else {
        return;
    };
    let level: tracing::Level = level.parse().unwrap_or_else(|_| {
        panic!("RUST_LOG={level:?}: expected error, warn, info, debug or trace")
    });
    // Already set by an earlier run in this process: keep it.
    let _ = tracing_subscriber::fmt().with_max_level(level).try_init();
}

/// Runs `spec` on a fresh madsim runtime seeded with its seed.
pub fn run(spec: RunSpec) -> RunResult {
    // Tests run side by side and may run the same seed: each run gets its
    // own directory, or they would share logs and traces.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let scratch = Scratch(scratch_base().join(format!(
        "distsync-madsim-{}-{}",
        std::process::id(), // determinism-ok: a directory name, never read by the run
        RUNS.fetch_add(1, Ordering::Relaxed)
    )));
    let _ = fs::remove_dir_all(&scratch.0);
    fs::create_dir_all(&scratch.0).expect("create the run's scratch directory");
    init_logging();
    let mut rt = Runtime::with_seed_and_config(spec.seed, madsim::Config::default());
    // A hang is a failure, not a stuck CI job: the run's own phases take
    // well under a minute of simulated time.
    rt.set_time_limit(spec.faulty_for + RECOVERY_LIMIT + Duration::from_secs(60));
    let dir = scratch.0.clone();
    rt.block_on(async move { drive(spec, dir).await })
}

async fn drive(spec: RunSpec, dir: PathBuf) -> RunResult {
    let registry: Registry = Arc::new(Mutex::new(vec![None; spec.nodes]));
    let handle = Handle::current();
    let nodes: Vec<NodeHandle> = (0..spec.nodes)
        .map(|id| {
            handle
                .create_node()
                .name(format!("n{}", id + 1))
                .ip(node_ip(id))
                .init(node_main(spec, id, dir.clone(), registry.clone()))
                .build()
        })
        .collect();
    let history = Rc::new(RefCell::new(History::default()));
    let origin = now();
    let faults_end = origin + spec.faulty_for;
    let mut result = RunResult::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = Client {
                index: c,
                origin,
                registry: registry.clone(),
                history: history.clone(),
            };
            tokio::task::spawn_local(client.run(spec.seed, faults_end))
        })
        .collect();
    let (kills, partitions) = nemesis(&spec, &nodes, faults_end, &registry).await;
    for c in clients {
        c.await.expect("a client task");
    }
    result.kills = kills;
    result.partitions = partitions;
    let final_reader = Client {
        index: CLIENTS,
        origin,
        registry: registry.clone(),
        history: history.clone(),
    };
    let recovered = final_reader.read_every_key().await;

    let mut traces = Vec::new();
    for id in 0..spec.nodes {
        let path = trace_path(&dir, id);
        let text = fs::read_to_string(&path).unwrap_or_default();
        traces.push((path.display().to_string(), text));
    }
    let history = history.borrow();
    result.ops = history.ops().len();
    result.acked_writes = history.acked_writes().count();
    result.ok_reads = history
        .ops()
        .iter()
        .filter(|o| o.is_read && o.outcome == Some(Outcome::Ok))
        .count();
    result.failure = check(&traces, &history, &mut result, recovered.err());
    result
}

/// What `init` runs on a node, at its start and at every restart: open the
/// log, start the transport, run the actor, as `distsync node` does.
fn node_main(
    spec: RunSpec,
    id: usize,
    dir: PathBuf,
    registry: Registry,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync + 'static {
    let incarnation = Arc::new(Mutex::new(0u64));
    move || {
        let (dir, registry, incarnation) = (dir.clone(), registry.clone(), incarnation.clone());
        Box::pin(async move {
            let life = {
                let mut n = incarnation.lock().unwrap();
                *n += 1;
                *n
            };
            let log = DiskLog::open(dir.join(format!("n{}", id + 1)), WalLimits::default())
                .unwrap_or_else(|e| panic!("n{}: the log does not open: {e}", id + 1));
            let peers = (0..spec.nodes)
                .map(|p| (p, SocketAddr::new(node_ip(p), RAFT_PORT)))
                .collect();
            let cfg =
                TransportConfig::new("madsim", id, SocketAddr::new(node_ip(id), RAFT_PORT), peers);
            let index = life * 64 + id as u64;
            let (transport, inbox) =
                Transport::start(cfg, Rng::stream(spec.seed, Purpose::Network, index))
                    .await
                    .unwrap_or_else(|e| panic!("n{}: {e}", id + 1));
            let setup = NodeSetup {
                id,
                cluster_size: spec.nodes,
                raft: RaftConfig::default(),
                locks: LockConfig::default(),
                seed: spec.seed ^ index.rotate_left(32),
                // Unique per incarnation, as a real node's random one is.
                session: u32::try_from(index).expect("few incarnations"),
                bugs: spec.bugs,
                metrics: None,
                queue: None,
            };
            let trace = OpenOptions::new()
                .create(true)
                .append(true)
                .open(trace_path(&dir, id))
                .expect("open the node's trace");
            let (actor, handle) =
                Actor::new(setup, log, transport.clone(), inbox, Some(Box::new(trace)));
            registry.lock().unwrap()[id] = Some(handle);
            let (stop, stopped) = watch::channel(false);
            let ended = actor.run(stopped).await;
            drop(stop);
            if let Err(e) = ended {
                panic!("n{}: {e}", id + 1);
            }
        })
    }
}

fn trace_path(dir: &std::path::Path, id: usize) -> PathBuf {
    dir.join(format!("n{}.jsonl", id + 1))
}

/// One client: operations one at a time, each recorded in the shared
/// history as the simulator's clients record theirs.
struct Client {
    index: usize,
    /// History times count from here.
    origin: Instant,
    registry: Registry,
    history: Rc<RefCell<History>>,
}

/// How one request ended, for the history.
struct Answer {
    outcome: Outcome,
    /// The value read (reads), when `outcome` is Ok.
    value: Option<u64>,
    /// Where to ask next: the hinted leader, or the next node.
    retarget: Option<usize>,
}

impl Client {
    /// Random reads and writes of unique values until `until`.
    async fn run(self, seed: u64, until: Instant) {
        let mut rng = Rng::stream(seed, Purpose::Client, self.index as u64);
        let nodes = self.registry.lock().unwrap().len();
        let mut target = self.index % nodes;
        let mut written: u64 = 0;
        while now() < until {
            let key = rng.below(KEYS) as u32;
            let req = if rng.chance(0.5) {
                ClientRequest::Get { key }
            } else {
                written += 1;
                // Unique across clients: the checker's fast path needs it.
                let value = ((self.index as u64) << 40) | written;
                ClientRequest::Put { key, value }
            };
            let answer = self.perform(target, req).await;
            if answer.outcome != Outcome::Ok {
                target = answer.retarget.unwrap_or((target + 1) % nodes);
                sleep_ms(&mut rng, 10, 50).await;
            }
        }
    }

    /// After the faults: reads every key until one read of each has
    /// succeeded, within `RECOVERY_LIMIT`.
    async fn read_every_key(&self) -> Result<(), String> {
        let nodes = self.registry.lock().unwrap().len();
        let deadline = now() + RECOVERY_LIMIT;
        let mut target = 0;
        for key in 0..KEYS as u32 {
            loop {
                if now() >= deadline {
                    return Err(format!(
                        "no read of key {key} succeeded within {RECOVERY_LIMIT:?} after the faults stopped"
                    ));
                }
                let answer = self.perform(target, ClientRequest::Get { key }).await;
                if answer.outcome == Outcome::Ok {
                    break;
                }
                target = answer.retarget.unwrap_or((target + 1) % nodes);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Sends `req` to node `target` and records the invocation and its end.
    async fn perform(&self, target: usize, req: ClientRequest) -> Answer {
        let (op, key, written) = match req {
            ClientRequest::Get { key } => ("get", key, None),
            ClientRequest::Put { key, value } => ("put", key, Some(value)),
            _ => unreachable!("the clients only read and write"),
        };
        self.record(&TraceEvent::ClientInvoke {
            client: self.index,
            op,
            key,
            value: written,
        });
        let node = self.registry.lock().unwrap()[target].clone();
        let reply = match node {
            None => Err(ClientError::Stopped),
            Some(h) => tokio::time::timeout(REQUEST_TIMEOUT, h.request(req))
                .await
                .unwrap_or(Err(ClientError::Stopped)),
        };
        let answer = match reply {
            Ok(ClientReply::Ok(read)) => Answer {
                outcome: Outcome::Ok,
                value: written.or(read),
                retarget: None,
            },
            // Refused before it was proposed: no effect.
            Ok(ClientReply::NotLeader(hint)) => Answer {
                outcome: Outcome::Fail,
                value: written,
                retarget: hint,
            },
            Err(ClientError::Busy) => Answer {
                outcome: Outcome::Fail,
                value: written,
                retarget: None,
            },
            // Proposed, maybe committed: a timeout, a node that died or
            // lost its leadership before answering.
            Ok(ClientReply::Retry) | Err(ClientError::Stopped) => Answer {
                outcome: Outcome::Unknown,
                value: written,
                retarget: None,
            },
            Ok(ClientReply::Lock(_)) => unreachable!("no lock requests are sent"),
        };
        self.record(&TraceEvent::ClientReturn {
            client: self.index,
            op,
            key,
            value: answer.value,
            outcome: answer.outcome,
        });
        answer
    }

    fn record(&self, ev: &TraceEvent) {
        let t = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.history.borrow_mut().observe(t, ev);
    }
}

async fn sleep_ms(rng: &mut Rng, min: u64, max: u64) {
    tokio::time::sleep(Duration::from_millis(rng.between(min, max))).await;
}

/// Faults until `until`: partitions of a minority (a random one, or the
/// leader alone), kills of a random node or of the leader, each followed by
/// a restart. Then every link is healed and every node is up. Returns
/// (kills, partitions).
async fn nemesis(
    spec: &RunSpec,
    nodes: &[NodeHandle],
    until: Instant,
    registry: &Registry,
) -> (u32, u32) {
    let net = NetSim::current();
    let handle = Handle::current();
    let mut rng = Rng::stream(spec.seed, Purpose::Explore, spec.nodes as u64);
    let (mut kills, mut partitions) = (0, 0);
    // Let the first election happen undisturbed now and then.
    sleep_ms(&mut rng, 0, 1500).await;
    while now() + Duration::from_millis(500) < until {
        let n = spec.nodes;
        let victim = match rng.below(4) {
            0 | 1 => rng.below(n as u64) as usize,
            _ => leader(registry)
                .await
                .unwrap_or(rng.below(n as u64) as usize),
        };
        if rng.chance(0.5) {
            // A minority: the victim, and for larger clusters maybe more.
            let mut minority = vec![victim];
            while minority.len() < (n - 1) / 2 && rng.chance(0.5) {
                let other = rng.below(n as u64) as usize;
                if !minority.contains(&other) {
                    minority.push(other);
                }
            }
            let cut = |clog: bool| {
                for &a in &minority {
                    for b in (0..n).filter(|b| !minority.contains(b)) {
                        let (x, y) = (nodes[a].id(), nodes[b].id());
                        if clog {
                            net.clog_link(x, y);
                            net.clog_link(y, x);
                        } else {
                            net.unclog_link(x, y);
                            net.unclog_link(y, x);
                        }
                    }
                }
            };
            cut(true);
            partitions += 1;
            sleep_ms(&mut rng, 300, 3000).await;
            cut(false);
        } else {
            handle.kill(nodes[victim].id());
            registry.lock().unwrap()[victim] = None;
            kills += 1;
            // Down long enough for the killed tasks to be dropped, so the
            // restarted node finds its data directory unlocked, as a
            // restarted process does.
            sleep_ms(&mut rng, 100, 2000).await;
            handle.restart(nodes[victim].id());
        }
        sleep_ms(&mut rng, 200, 1500).await;
    }
    (kills, partitions)
}

/// The node that says it leads, if any answers so.
async fn leader(registry: &Registry) -> Option<usize> {
    let handles: Vec<_> = registry.lock().unwrap().clone();
    for (id, h) in handles.into_iter().enumerate() {
        let Some(h) = h else { continue };
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(100), h.status()).await
            && s.role == Role::Leader
        {
            return Some(id);
        }
    }
    None
}

/// The run's checks: the Raft checker over the merged traces, the
/// linearizability of the clients' history, recovery after the faults,
/// and that the run did something. The first failure, if any.
fn check(
    traces: &[(String, String)],
    history: &History,
    result: &mut RunResult,
    unrecovered: Option<String>,
) -> Option<String> {
    let (lines, values) = match distsync::trace_merge::merge(traces) {
        Ok(m) => m,
        Err(e) => return Some(format!("the traces do not merge: {e}")),
    };
    result.max_term = values
        .iter()
        .filter(|v| v["kind"] == "raft.role")
        .filter_map(|v| v["term"].as_u64())
        .max()
        .unwrap_or(0);
    result.trace = lines;
    match distsync::check::raft_trace::check_raft_lines(&values) {
        Err(e) => return Some(format!("the Raft checker cannot read the trace: {e}")),
        Ok(v) => {
            if let Some((line, violation)) = v.violation {
                return Some(format!(
                    "Raft checker, merged trace line {line}: {}: {} (nodes {:?})",
                    violation.invariant, violation.detail, violation.nodes
                ));
            }
            if v.events == 0 {
                return Some("the traces hold no Raft event".to_owned());
            }
        }
    }
    match history.check_linearizable(LINEARIZABILITY_STEPS) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(c) => return Some(c.to_string()),
        Verdict::Unknown => {
            return Some(format!(
                "linearizability undecided within {LINEARIZABILITY_STEPS} steps"
            ));
        }
    }
    if let Some(e) = unrecovered {
        return Some(e);
    }
    if result.acked_writes == 0 {
        return Some("no write was acknowledged in the whole run".to_owned());
    }
    None
}
