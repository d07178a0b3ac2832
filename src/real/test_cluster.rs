//! A cluster of real runtimes on an in-memory network, for tests.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use tokio::task::LocalSet;

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::kv::{ClientReply, ClientRequest};
use crate::node::Msg;
use crate::real::metrics::Metrics;
use crate::real::runtime::{ClientHandle, NodeSetup, Outbound, Runtime, RuntimeError};
use crate::real::temp_dir::TempDir;
use crate::real::wal::{DiskLog, WalLimits};
use crate::scenario::RaftConfig;
use crate::trace::{NodeId, Role};

/// Every node's inbox, shared by the test network's senders.
type Inboxes = Rc<RefCell<Vec<mpsc::Sender<(NodeId, Msg)>>>>;

/// An in-memory network between test nodes: every message is delivered
/// unless its link is cut.
#[derive(Clone)]
struct TestNet {
    me: NodeId,
    inboxes: Inboxes,
    cut: Rc<RefCell<Vec<bool>>>,
}

impl Outbound for TestNet {
    fn send(&self, to: NodeId, msg: Msg) {
        let cut = self.cut.borrow();
        if cut[self.me] || cut[to] {
            return;
        }
        if let Some(inbox) = self.inboxes.borrow().get(to) {
            let _ = inbox.try_send((self.me, msg));
        }
    }
}

pub struct Cluster {
    dirs: TempDir,
    inboxes: Inboxes,
    pub cut: Rc<RefCell<Vec<bool>>>,
    pub handles: Vec<ClientHandle>,
    /// Each node's metrics (the runtime reports to them always).
    pub metrics: Vec<Arc<Metrics>>,
    stops: Vec<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), RuntimeError>>>,
    /// With a queue: the Redis servers its shards are.
    redis: Vec<crate::real::config::RedisUrl>,
}

pub const N: usize = 3;

fn setup(id: NodeId, metrics: &Arc<Metrics>) -> NodeSetup {
    NodeSetup {
        id,
        cluster_size: N,
        raft: RaftConfig::default(),
        locks: crate::real::lock_config(),
        seed: 7,
        session: 1000 + id as u32,
        bugs: Default::default(),
        metrics: Some(Arc::clone(metrics)),
        queue: None,
    }
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        Cluster {
            dirs: TempDir::new(name),
            inboxes: Rc::new(RefCell::new(Vec::new())),
            cut: Rc::new(RefCell::new(vec![false; N])),
            handles: Vec::new(),
            metrics: (0..N).map(|_| Metrics::new()).collect(),
            stops: Vec::new(),
            tasks: Vec::new(),
            redis: Vec::new(),
        }
    }

    /// Whether the nodes serve the queue (`with_redis`).
    pub fn serves_queue(&self) -> bool {
        !self.redis.is_empty()
    }

    /// A cluster whose nodes serve the queue on the Redis servers listening
    /// on `ports` (loopback), shard k on the k-th.
    pub fn with_redis(name: &str, ports: &[u16]) -> Cluster {
        let mut c = Cluster::new(name);
        c.redis = ports
            .iter()
            .map(|p| crate::real::config::RedisUrl {
                url: format!("redis://127.0.0.1:{p}"),
                host: "127.0.0.1".into(),
                port: *p,
                db: 0,
            })
            .collect();
        c
    }

    /// Starts every node on its data directory (inside a LocalSet: the
    /// node holds `Rc`s and stays on one thread).
    pub fn start(&mut self) {
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..N {
            let (tx, rx) = mpsc::channel(1024);
            senders.push(tx);
            receivers.push(rx);
        }
        *self.inboxes.borrow_mut() = senders;
        self.handles.clear();
        self.stops.clear();
        for (id, peers) in receivers.into_iter().enumerate() {
            let log = DiskLog::open(
                self.dirs.0.join(format!("n{}", id + 1)),
                WalLimits::default(),
            )
            .expect("open the log");
            let net = TestNet {
                me: id,
                inboxes: self.inboxes.clone(),
                cut: self.cut.clone(),
            };
            let mut s = setup(id, &self.metrics[id]);
            if !self.redis.is_empty() {
                s.queue = Some(crate::real::queue_setup(N, self.redis.len()));
            }
            let (mut runtime, handle) = Runtime::new(s, log, net, peers, None);
            if !self.redis.is_empty() {
                let (calls, answers) = crate::real::redis_shards::RedisShards::connect(
                    &self.redis,
                    Some(Arc::clone(&self.metrics[id])),
                )
                .expect("Redis URLs");
                runtime = runtime.with_shards(Box::new(calls), answers);
            }
            let (stop, stopped) = watch::channel(false);
            self.tasks
                .push(tokio::task::spawn_local(runtime.run(stopped)));
            self.handles.push(handle);
            self.stops.push(stop);
        }
    }

    /// Stops every node and waits for each to finish its last fsync.
    pub async fn stop(&mut self) {
        for s in &self.stops {
            let _ = s.send(true);
        }
        for t in self.tasks.drain(..) {
            t.await.expect("the node task").expect("a clean stop");
        }
    }

    /// Waits until some node leads with a quorum behind it; its id.
    pub async fn leader(&self) -> NodeId {
        loop {
            for (id, h) in self.handles.iter().enumerate() {
                let s = h.status().await.expect("status");
                if s.role == Role::Leader && !self.cut.borrow()[id] {
                    return id;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes through whichever node leads, following refusals.
    pub async fn put(&self, key: u32, value: u64) {
        loop {
            let leader = self.leader().await;
            let reply = self.handles[leader]
                .request(ClientRequest::Put { key, value })
                .await
                .expect("a reply");
            if reply == ClientReply::Ok(None) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, key: u32) -> Option<u64> {
        loop {
            let leader = self.leader().await;
            if let ClientReply::Ok(v) = self.handles[leader]
                .request(ClientRequest::Get { key })
                .await
                .expect("a reply")
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `body` on a LocalSet with a bound on the whole test.
pub fn run_local<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = LocalSet::new();
    rt.block_on(local.run_until(async {
        tokio::time::timeout(Duration::from_secs(20), body())
            .await
            .expect("the test finished within 20 s");
    }));
}
