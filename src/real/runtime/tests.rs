use super::*;
use crate::real::test_cluster::{Cluster, N, run_local};

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
        // The log shows the writes in order, a page at a time.
        let page = c.handles[leader].log(1, 1000).await.unwrap();
        let puts: Vec<(u32, u64)> = page
            .entries
            .iter()
            .filter_map(|(_, e)| match e.cmd {
                crate::replicated::Command::Put { key, value, .. } => Some((key, value)),
                _ => None,
            })
            .collect();
        assert_eq!(puts, vec![(1, 10), (2, 20)]);
        assert_eq!(page.first_index, 1);
        assert!(page.entries.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        let short = c.handles[leader].log(2, 1).await.unwrap();
        assert_eq!(short.entries.len(), 1);
        assert_eq!(short.entries[0].0, 2);
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

/// A network that records what is sent.
#[derive(Clone, Default)]
struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<(NodeId, &'static str)>>>);

impl Outbound for Recorder {
    fn send(&self, to: NodeId, msg: Msg) {
        self.0.borrow_mut().push((to, msg.name()));
    }
}

#[test]
fn only_a_leaders_replication_leaves_before_the_fsync() {
    use crate::raft::message::{AppendEntries, AppendReply, RaftMsg};
    run_local(|| async {
        let dir = crate::real::temp_dir::TempDir::new("runtime-early-release");
        let log = DiskLog::open(dir.0.join("n1"), Default::default()).unwrap();
        let sent = Recorder::default();
        let (_peers_tx, peers) = mpsc::channel(8);
        let setup = NodeSetup {
            id: 0,
            cluster_size: 3,
            raft: RaftConfig::default(),
            locks: LockConfig::default(),
            seed: 1,
            session: 1,
            bugs: Bugs::default(),
            metrics: None,
            queue: None,
        };
        let (mut rt, _handle) = Runtime::new(setup, log, sent.clone(), peers, None);
        let append = AppendEntries {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
            read_ctx: 0,
        };
        let (answer, mut answered) = oneshot::channel();
        rt.waiting.insert(
            7,
            Waiter {
                answer,
                since: None,
                wait_until: None,
            },
        );
        let me = rt.client_endpoint();
        rt.env.outbox = vec![
            (
                2,
                Msg::Raft(RaftMsg::AppendResp(AppendReply::accept(1, 0, 0))),
            ),
            (1, Msg::Raft(RaftMsg::Append(append))),
            (
                me,
                Msg::Reply {
                    seq: 7,
                    reply: ClientReply::Ok(None),
                },
            ),
        ];
        // The batch wrote something, and the disk fails to sync it.
        rt.env.storage.owed = true;
        rt.env.storage.log.fail_for_test();
        assert!(rt.commit_and_release().await.is_err());
        // The replication left; the answer and the client's reply, which
        // vouch for writes that never became durable, did not.
        assert_eq!(*sent.0.borrow(), vec![(1, "Append")]);
        assert!(
            matches!(
                answered.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            ),
            "the client was answered"
        );
    });
}
