//! Planted bugs: deliberate, realistic mistakes behind named switches.
//!
//! Each switch is a plain bool read at the one place the mistake lives, so a
//! switched-off bug costs one predictable branch. They exist to prove that the
//! checkers catch what they claim, and to teach what each rule protects.

/// One planted bug: its switch name, the real-world mistake, the invariant that catches it.
pub struct BugInfo {
    pub name: &'static str,
    pub mistake: &'static str,
    pub caught_by: &'static str,
    /// The shipped scenario that hunts for it.
    pub scenario: &'static str,
    /// Fuzz seeds within which a hunt must find it (a test holds us to it).
    pub budget: u64,
}

/// Every planted bug, in catalogue order.
pub const CATALOGUE: &[BugInfo] = &[
    BugInfo {
        name: "raft.vote_without_log_check",
        mistake: "A node grants its vote without checking that the candidate's log is at least as up-to-date as its own (Raft 5.4.1), so a node missing committed entries can win an election and overwrite them.",
        caught_by: "Vote for up-to-date log (left alone: Leader Completeness / State Machine Safety)",
        scenario: "stale-node-rejoins",
        budget: 500,
    },
    BugInfo {
        name: "raft.commit_old_term_by_count",
        mistake: "A leader marks entries from earlier terms committed as soon as a majority stores them, and so sees no need for the no-op entry a new leader appends to commit them safely. This is Figure 8 of the Raft paper (5.4.2): a later leader whose log ends in a newer term can still overwrite such an entry.",
        caught_by: "Leader commit rule (left alone: State Machine Safety / Leader Completeness)",
        scenario: "figure-8",
        budget: 500,
    },
    BugInfo {
        name: "raft.vote_before_persist",
        mistake: "A node replies to RequestVote before its vote reaches stable storage; a crash loses the vote, and after restart it votes again in the same term for someone else.",
        caught_by: "Persist before reply (left alone: one vote per term per node, across restarts)",
        scenario: "crashes-during-elections",
        budget: 500,
    },
    BugInfo {
        name: "raft.no_truncate_on_conflict",
        mistake: "A follower that receives entries conflicting with its log overwrites only the entries sent and keeps its stale suffix, instead of deleting the conflicting entry and all that follow (Raft Figure 2, AppendEntries step 3).",
        caught_by: "Truncate before overwrite (left alone: Log Matching)",
        scenario: "flapping-partitions",
        budget: 500,
    },
    BugInfo {
        name: "raft.read_without_quorum",
        mistake: "A leader serves reads from its local state without confirming it is still leader (skipping ReadIndex's heartbeat round, Raft thesis 6.4); a deposed leader behind a partition returns stale values.",
        caught_by: "linearizability of client histories",
        scenario: "isolated-leader-reads",
        budget: 500,
    },
    BugInfo {
        name: "kv.ack_by_index",
        mistake: "A leader remembers which log index each client write went to and acknowledges the write when that index is applied, without checking the entry there is still its own. Deposed behind a partition, it applies the new leader's entries at those indexes and tells its clients that writes which were overwritten succeeded. (The fuzzer found this one in this project's own code.)",
        caught_by: "linearizability of client histories",
        scenario: "deposed-leader-acks",
        budget: 500,
    },
    BugInfo {
        name: "lock.no_fencing",
        mistake: "The protected resource accepts every write from whoever believes it holds the lock, ignoring fencing tokens. A holder paused past its lease (a long garbage-collection pause, a swapped-out process) wakes up and writes after the lock went to someone else: Kleppmann's case against Redlock.",
        caught_by: "Fencing at the resource",
        scenario: "lock-holder-pauses",
        budget: 500,
    },
    BugInfo {
        name: "lock.expire_by_local_clock",
        mistake: "A new leader does not restart leases when it takes office: it dates each lease from when it saw the session open, on its own clock, knowing nothing of the renewals the old leader received, and expires live sessions at once.",
        caught_by: "Lease honoured",
        scenario: "lock-leader-crash",
        budget: 500,
    },
    BugInfo {
        name: "lock.grant_ignores_holders",
        mistake: "A fast path grants a lock at once whenever nobody is queued for it, without checking the modes of the current holders, so an exclusive request joins a shared holder (or the other way round).",
        caught_by: "Lock exclusion",
        scenario: "lock-contention",
        budget: 500,
    },
    BugInfo {
        name: "lock.grant_before_commit",
        mistake: "The leader answers an acquire of a lock that looks free as soon as it proposes the entry, not when the entry commits. If the leader crashes first, the entry is lost: the client believes it holds a lock nobody granted, and the next leader grants it to someone else.",
        caught_by: "lock history linearizable",
        scenario: "lock-leader-crash",
        budget: 500,
    },
    BugInfo {
        name: "queue.ack_before_write",
        mistake: "The queue router acknowledges a produce to the producer as soon as it forwards the write to the Redis shard, not when the shard answers. A write lost on the way, or cut short by the shard crashing, was already reported stored, and the producer never retries it.",
        caught_by: "acknowledged produce delivered at least once",
        scenario: "queue-shard-crash-always",
        budget: 500,
    },
    BugInfo {
        name: "queue.no_visibility_timeout",
        mistake: "Messages handed to a consumer stay in flight until acknowledged; nothing brings them back when the visibility timeout passes, so whatever a crashed consumer held is never delivered again.",
        caught_by: "acknowledged produce delivered at least once",
        scenario: "queue-consumer-crash",
        budget: 500,
    },
    BugInfo {
        name: "queue.drop_inflight_on_rebalance",
        mistake: "When a partition moves to another shard, only its waiting messages are copied; messages in flight to consumers are left behind, so any that are not acknowledged (their consumer crashed or gave them back) are never delivered again.",
        caught_by: "acknowledged produce delivered at least once",
        scenario: "queue-add-shard",
        budget: 500,
    },
    BugInfo {
        name: "redis.everysec_loses_too_much",
        mistake: "The once-a-second fsync of `appendfsync everysec` is re-armed by every write instead of running one second after the previous fsync, so under steady load it never runs and a crash loses far more than the last second or two of writes.",
        caught_by: "loss within what the persistence mode permits",
        scenario: "queue-shard-crash-everysec",
        budget: 500,
    },
    BugInfo {
        name: "mesi.no_invalidate_on_upgrade",
        mistake: "A cache holding a line in S ignores another cache's BusUpgr (the directory's Inv for an upgrade), on the reasoning that an upgrade carries no data; it keeps its S copy while the upgrader writes in M, and goes on reading the old value.",
        caught_by: "Single writer",
        scenario: "cache-bus-write-storm",
        budget: 500,
    },
    BugInfo {
        name: "mesi.exclusive_despite_sharers",
        mistake: "A cache installs every read miss in E, ignoring the shared signal (the directory's answer that other copies exist), so a later silent E->M write leaves the other S copies stale.",
        caught_by: "Single writer",
        scenario: "cache-bus-zipf",
        budget: 500,
    },
    BugInfo {
        name: "mesi.drop_writeback_on_evict",
        mistake: "Evicting a line treats M like E and S and drops it silently, so the only copy of the latest write disappears and later reads get memory's older value.",
        caught_by: "Data value",
        scenario: "cache-bus-zipf",
        budget: 500,
    },
    BugInfo {
        name: "mesi.directory_forgets_sharer",
        mistake: "A home records a reader only when it grants the line in E; a reader granted S (other copies exist) is never added to the sharers, so a later writer's invalidations miss it and it keeps reading a stale copy.",
        caught_by: "Single writer",
        scenario: "cache-dir-zipf",
        budget: 500,
    },
];

/// Which planted bugs are on. Default: none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    pub vote_without_log_check: bool,
    pub commit_old_term_by_count: bool,
    pub vote_before_persist: bool,
    pub no_truncate_on_conflict: bool,
    pub read_without_quorum: bool,
    pub ack_by_index: bool,
    pub no_fencing: bool,
    pub expire_by_local_clock: bool,
    pub grant_ignores_holders: bool,
    pub grant_before_commit: bool,
    pub ack_before_write: bool,
    pub no_visibility_timeout: bool,
    pub drop_inflight_on_rebalance: bool,
    pub everysec_loses_too_much: bool,
    pub no_invalidate_on_upgrade: bool,
    pub exclusive_despite_sharers: bool,
    pub drop_writeback_on_evict: bool,
    pub directory_forgets_sharer: bool,
}

impl Bugs {
    /// Switches one bug on by its catalogue name.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        let flag = match name {
            "raft.vote_without_log_check" => &mut self.vote_without_log_check,
            "raft.commit_old_term_by_count" => &mut self.commit_old_term_by_count,
            "raft.vote_before_persist" => &mut self.vote_before_persist,
            "raft.no_truncate_on_conflict" => &mut self.no_truncate_on_conflict,
            "raft.read_without_quorum" => &mut self.read_without_quorum,
            "kv.ack_by_index" => &mut self.ack_by_index,
            "lock.no_fencing" => &mut self.no_fencing,
            "lock.expire_by_local_clock" => &mut self.expire_by_local_clock,
            "lock.grant_ignores_holders" => &mut self.grant_ignores_holders,
            "lock.grant_before_commit" => &mut self.grant_before_commit,
            "queue.ack_before_write" => &mut self.ack_before_write,
            "queue.no_visibility_timeout" => &mut self.no_visibility_timeout,
            "queue.drop_inflight_on_rebalance" => &mut self.drop_inflight_on_rebalance,
            "redis.everysec_loses_too_much" => &mut self.everysec_loses_too_much,
            "mesi.no_invalidate_on_upgrade" => &mut self.no_invalidate_on_upgrade,
            "mesi.exclusive_despite_sharers" => &mut self.exclusive_despite_sharers,
            "mesi.drop_writeback_on_evict" => &mut self.drop_writeback_on_evict,
            "mesi.directory_forgets_sharer" => &mut self.directory_forgets_sharer,
            _ => {
                let known: Vec<&str> = CATALOGUE.iter().map(|b| b.name).collect();
                return Err(format!(
                    "unknown planted bug `{name}`; expected one of: {}",
                    known.join(", ")
                ));
            }
        };
        *flag = true;
        Ok(())
    }

    /// Names of the bugs that are on, in catalogue order.
    pub fn enabled_names(&self) -> Vec<&'static str> {
        let on = [
            self.vote_without_log_check,
            self.commit_old_term_by_count,
            self.vote_before_persist,
            self.no_truncate_on_conflict,
            self.read_without_quorum,
            self.ack_by_index,
            self.no_fencing,
            self.expire_by_local_clock,
            self.grant_ignores_holders,
            self.grant_before_commit,
            self.ack_before_write,
            self.no_visibility_timeout,
            self.drop_inflight_on_rebalance,
            self.everysec_loses_too_much,
            self.no_invalidate_on_upgrade,
            self.exclusive_despite_sharers,
            self.drop_writeback_on_evict,
            self.directory_forgets_sharer,
        ];
        CATALOGUE
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(b, _)| b.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_name_enables_exactly_one_switch() {
        for bug in CATALOGUE {
            let mut bugs = Bugs::default();
            bugs.enable(bug.name).unwrap();
            assert_eq!(bugs.enabled_names(), vec![bug.name]);
        }
        assert!(Bugs::default().enable("raft.nope").is_err());
    }
}
