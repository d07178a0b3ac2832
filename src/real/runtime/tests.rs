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
