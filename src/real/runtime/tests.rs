use std::cell::RefCell;
use std::rc::Rc;

use tokio::task::LocalSet;

use super::*;
use crate::real::temp_dir::TempDir;
use crate::real::wal::WalLimits;

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

struct Cluster {
    dirs: TempDir,
    inboxes: Inboxes,
    cut: Rc<RefCell<Vec<bool>>>,
    handles: Vec<ClientHandle>,
    stops: Vec<watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), RuntimeError>>>,
}

const N: usize = 3;

fn setup(id: NodeId) -> NodeSetup {
    NodeSetup {
        id,
        cluster_size: N,
        raft: RaftConfig::default(),
        locks: LockConfig::default(),
        seed: 7,
        session: 1000 + id as u32,
    }
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        Cluster {
            dirs: TempDir::new(name),
            inboxes: Rc::new(RefCell::new(Vec::new())),
            cut: Rc::new(RefCell::new(vec![false; N])),
            handles: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Starts every node on its data directory (inside a LocalSet: the
    /// node holds `Rc`s and stays on one thread).
    fn start(&mut self) {
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
            let (runtime, handle) = Runtime::new(setup(id), log, net, peers);
            let (stop, stopped) = watch::channel(false);
            self.tasks
                .push(tokio::task::spawn_local(runtime.run(stopped)));
            self.handles.push(handle);
            self.stops.push(stop);
        }
    }

    /// Stops every node and waits for each to finish its last fsync.
    async fn stop(&mut self) {
        for s in &self.stops {
            let _ = s.send(true);
        }
        for t in self.tasks.drain(..) {
            t.await.expect("the node task").expect("a clean stop");
        }
    }

    /// Waits until some node leads with a quorum behind it; its id.
    async fn leader(&self) -> NodeId {
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
    async fn put(&self, key: u32, value: u64) {
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

    async fn get(&self, key: u32) -> Option<u64> {
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
fn run_local<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
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

#[test]
fn a_cluster_elects_commits_and_answers_reads() {
    run_local(|| async {
        let mut c = Cluster::new("runtime-basic");
        c.start();
        c.put(1, 10).await;
        c.put(2, 20).await;
        assert_eq!(c.get(1).await, Some(10));
        assert_eq!(c.get(3).await, None);
        let leader = c.leader().await;
        let deleted = c.handles[leader]
            .request(ClientRequest::Delete { key: 2 })
            .await
            .unwrap();
        assert_eq!(deleted, ClientReply::Ok(None));
        assert_eq!(c.get(2).await, None);
        // A follower refuses and names the leader.
        let leader = c.leader().await;
        let follower = (leader + 1) % N;
        let reply = c.handles[follower]
            .request(ClientRequest::Put { key: 9, value: 9 })
            .await
            .unwrap();
        assert_eq!(reply, ClientReply::NotLeader(Some(leader)));
        c.stop().await;
    });
}

#[test]
fn committed_writes_survive_a_restart_of_every_node() {
    run_local(|| async {
        let mut c = Cluster::new("runtime-restart");
        c.start();
        for k in 0..20 {
            c.put(k, u64::from(k) * 3).await;
        }
        c.stop().await;
        c.start();
        for k in 0..20 {
            assert_eq!(c.get(k).await, Some(u64::from(k) * 3), "key {k}");
        }
        c.stop().await;
    });
}

#[test]
fn a_new_leader_takes_over_when_the_old_one_is_cut_off() {
    run_local(|| async {
        let mut c = Cluster::new("runtime-failover");
        c.start();
        c.put(1, 1).await;
        let old = c.leader().await;
        c.cut.borrow_mut()[old] = true;
        c.put(1, 2).await;
        let new = c.leader().await;
        assert_ne!(new, old);
        assert_eq!(c.get(1).await, Some(2));
        c.cut.borrow_mut()[old] = false;
        c.stop().await;
    });
}

#[test]
fn concurrent_writes_share_fsyncs() {
    run_local(|| async {
        let mut c = Cluster::new("runtime-group-commit");
        c.start();
        c.put(0, 0).await;
        let leader = c.leader().await;
        let before = c.handles[leader].status().await.unwrap().wal;
        let writes = (1..=64u32).map(|k| {
            let h = c.handles[leader].clone();
            async move { h.request(ClientRequest::Put { key: k, value: 1 }).await }
        });
        let replies = join_all(writes).await;
        assert!(replies.iter().all(|r| r == &Ok(ClientReply::Ok(None))));
        let after = c.handles[leader].status().await.unwrap().wal;
        let entries = after.entries - before.entries;
        let syncs = after.syncs - before.syncs;
        assert!(entries >= 64, "{entries} entries logged");
        assert!(
            syncs * 4 <= entries,
            "{syncs} syncs for {entries} entries: writes waiting together should share fsyncs"
        );
        c.stop().await;
    });
}

/// Awaits every future, concurrently, on the current task.
async fn join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let tasks: Vec<_> = futs.map(tokio::task::spawn_local).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}
