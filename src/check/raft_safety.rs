//! Raft's safety properties, checked online after every traced event.
//!
//! The checker sees only trace events (plus the durable image on restart and
//! commit), never protocol internals, so it judges what a run did, not what
//! the code meant to do. Every check is incremental: O(1) or O(entries
//! touched) per event.

use std::collections::BTreeMap;

use crate::replicated::mix64;
use crate::sim::storage::Persisted;
use crate::trace::{NodeId, Role, TraceEvent};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Invariant name, e.g. "Election Safety".
    pub invariant: &'static str,
    /// What exactly went wrong.
    pub detail: String,
    /// Nodes involved.
    pub nodes: Vec<NodeId>,
}

/// Chained digest of a log prefix: equal chains at an index mean equal
/// prefixes (up to hash collisions), which turns Log Matching into an O(1) test.
fn chain(prev: u64, term: u64, digest: u64) -> u64 {
    mix64(prev ^ mix64(term ^ mix64(digest)))
}

#[derive(Clone, Debug, Default)]
struct Shadow {
    /// Index of the snapshot base and the chain there.
    base_index: u64,
    base_chain: u64,
    /// (term, chain) per index after the base.
    entries: Vec<(u64, u64)>,
    digests: Vec<u64>,
    role: Option<Role>,
    role_term: u64,
    max_term: u64,
    commit: u64,
    applied: u64,
}

impl Shadow {
    fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    fn chain_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            Some(self.base_chain)
        } else if index > self.base_index && index <= self.last_index() {
            Some(self.entries[(index - self.base_index - 1) as usize].1)
        } else {
            None
        }
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index > self.base_index && index <= self.last_index() {
            Some(self.entries[(index - self.base_index - 1) as usize].0)
        } else {
            None
        }
    }
}

/// The online Raft checker for one cluster.
pub struct RaftChecker {
    nodes: Vec<Shadow>,
    /// term -> leader elected in it (Election Safety).
    leaders: BTreeMap<u64, NodeId>,
    /// (node, term) -> candidate voted for; survives restarts by design.
    votes: BTreeMap<(NodeId, u64), NodeId>,
    /// (index, term) -> chain of the prefix ending there (Log Matching).
    chains: BTreeMap<(u64, u64), u64>,
    /// Committed prefix, by position i-1: (the term in which index i was
    /// first known committed, the chain there).
    committed: Vec<(u64, u64)>,
    /// Applied (term, digest) by index (State Machine Safety).
    applied: Vec<(u64, u64)>,
}

type Check = Result<(), Violation>;

fn fail(invariant: &'static str, nodes: Vec<NodeId>, detail: String) -> Check {
    Err(Violation {
        invariant,
        detail,
        nodes,
    })
}

impl RaftChecker {
    /// A checker for `n` nodes with empty logs.
    pub fn new(n: usize) -> Self {
        RaftChecker {
            nodes: vec![Shadow::default(); n],
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            chains: BTreeMap::new(),
            committed: Vec::new(),
            applied: Vec::new(),
        }
    }

    /// Number of distinct terms that elected a leader.
    pub fn leaders_elected(&self) -> usize {
        self.leaders.len()
    }

    /// Rebuilds a restarted node's view from its stable storage.
    pub fn on_recover(&mut self, node: NodeId, stable: &Persisted) -> Check {
        let s = &mut self.nodes[node];
        let base_index = stable.snapshot_index();
        let base_chain = if base_index == 0 {
            0
        } else {
            let term = stable.snapshot.as_ref().map_or(0, |x| x.term);
            match self.chains.get(&(base_index, term)) {
                Some(c) => *c,
                None => {
                    return fail(
                        "Snapshot provenance",
                        vec![node],
                        format!(
                            "n{} recovered a snapshot at {base_index} (term {term}) that no node ever logged",
                            node + 1
                        ),
                    );
                }
            }
        };
        s.base_index = base_index;
        s.base_chain = base_chain;
        s.entries.clear();
        s.digests.clear();
        s.commit = base_index;
        s.applied = base_index;
        s.role = None;
        let mut prev = base_chain;
        for (i, e) in stable.log.iter().enumerate() {
            let index = base_index + 1 + i as u64;
            let c = chain(prev, e.term, e.digest());
            s.entries.push((e.term, c));
            s.digests.push(e.digest());
            prev = c;
            if let Some(known) = self.chains.get(&(index, e.term))
                && *known != c
            {
                return fail(
                    "Log Matching",
                    vec![node],
                    format!(
                        "n{} recovered entry {index} (term {}) whose log prefix differs from another node's",
                        node + 1,
                        e.term
                    ),
                );
            }
        }
        if stable.term < s.max_term {
            return fail(
                "Term monotonic",
                vec![node],
                format!(
                    "n{} restarted at term {} after having reached term {}",
                    node + 1,
                    stable.term,
                    s.max_term
                ),
            );
        }
        Ok(())
    }

    /// Checks one event of `node`. `durable` is that node's stable image,
    /// consulted for the commit-vs-durable rule.
    pub fn observe(
        &mut self,
        node: NodeId,
        ev: &TraceEvent,
        durable_last_index: impl FnOnce() -> u64,
    ) -> Check {
        match *ev {
            TraceEvent::RaftRole { term, role } => self.on_role(node, term, role),
            TraceEvent::RaftVote { term, candidate } => self.on_vote(node, term, candidate),
            TraceEvent::RaftAppend {
                index,
                term,
                digest,
            } => self.on_append(node, index, term, digest),
            TraceEvent::RaftTruncate { from } => self.on_truncate(node, from),
            TraceEvent::RaftCommit { index } => self.on_commit(node, index, durable_last_index()),
            TraceEvent::RaftApply {
                index,
                term,
                digest,
            } => self.on_apply(node, index, term, digest),
            TraceEvent::RaftSnapshot { index, term } => self.on_snapshot(node, index, term),
            TraceEvent::RaftRecover { term, .. } => {
                let s = &mut self.nodes[node];
                s.max_term = s.max_term.max(term);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_role(&mut self, node: NodeId, term: u64, role: Role) -> Check {
        let s = &mut self.nodes[node];
        // A node's term never decreases (Figure 2: currentTerm is persistent
        // and only ever increased).
        if term < s.max_term {
            return fail(
                "Term monotonic",
                vec![node],
                format!(
                    "n{} went from term {} back to term {term}",
                    node + 1,
                    s.max_term
                ),
            );
        }
        s.max_term = term;
        s.role = Some(role);
        s.role_term = term;
        if role != Role::Leader {
            return Ok(());
        }
        // Election Safety (5.2): at most one leader per term.
        if let Some(&other) = self.leaders.get(&term)
            && other != node
        {
            return fail(
                "Election Safety",
                vec![other, node],
                format!(
                    "n{} and n{} were both leader in term {term}",
                    other + 1,
                    node + 1
                ),
            );
        }
        self.leaders.insert(term, node);
        // Leader Completeness (5.4): a leader of term T holds every entry
        // committed in a term before T. (A leader elected in an old term,
        // say after a pause, owes nothing to entries committed since.)
        let c = self
            .committed
            .iter()
            .rposition(|&(commit_term, _)| commit_term < term)
            .map_or(0, |p| p as u64 + 1);
        if c > 0 {
            let have = self.nodes[node].chain_at(c);
            let want = self.committed[(c - 1) as usize].1;
            if have != Some(want) {
                return fail(
                    "Leader Completeness",
                    vec![node],
                    format!(
                        "n{} became leader of term {term} without committed entry {c}",
                        node + 1
                    ),
                );
            }
        }
        Ok(())
    }

    fn on_vote(&mut self, node: NodeId, term: u64, candidate: NodeId) -> Check {
        // At most one vote per term per node (5.2), across restarts: votedFor is persistent.
        match self.votes.get(&(node, term)) {
            Some(&c) if c != candidate => fail(
                "One vote per term",
                vec![node, c, candidate],
                format!(
                    "n{} voted for n{} and then for n{} in term {term}",
                    node + 1,
                    c + 1,
                    candidate + 1
                ),
            ),
            _ => {
                self.votes.insert((node, term), candidate);
                Ok(())
            }
        }
    }

    fn is_leader(&self, node: NodeId) -> bool {
        self.nodes[node].role == Some(Role::Leader)
    }

    fn on_append(&mut self, node: NodeId, index: u64, term: u64, digest: u64) -> Check {
        let last = self.nodes[node].last_index();
        if index <= self.nodes[node].base_index {
            return fail(
                "Log Matching",
                vec![node],
                format!("n{} wrote entry {index} inside its snapshot", node + 1),
            );
        }
        if index <= last {
            // Leader Append-Only (5.3): a leader never overwrites its log.
            if self.is_leader(node) {
                return fail(
                    "Leader Append-Only",
                    vec![node],
                    format!("leader n{} overwrote its entry {index}", node + 1),
                );
            }
            // An overwrite without truncation: recompute the suffix's chains,
            // which is where a kept stale suffix shows up.
            let s = &mut self.nodes[node];
            let pos = (index - s.base_index - 1) as usize;
            s.digests[pos] = digest;
            s.entries[pos].0 = term;
            let mut prev = if pos == 0 {
                s.base_chain
            } else {
                s.entries[pos - 1].1
            };
            for p in pos..s.entries.len() {
                let c = chain(prev, s.entries[p].0, s.digests[p]);
                s.entries[p].1 = c;
                prev = c;
            }
            for p in pos..self.nodes[node].entries.len() {
                let i = self.nodes[node].base_index + 1 + p as u64;
                let (t, c) = self.nodes[node].entries[p];
                self.check_chain(node, i, t, c)?;
            }
            return Ok(());
        }
        if index != last + 1 {
            return fail(
                "Log Matching",
                vec![node],
                format!(
                    "n{} appended entry {index} after {last}, leaving a gap",
                    node + 1
                ),
            );
        }
        let s = &mut self.nodes[node];
        let prev = s.chain_at(last).unwrap_or(0);
        let c = chain(prev, term, digest);
        s.entries.push((term, c));
        s.digests.push(digest);
        self.check_chain(node, index, term, c)
    }

    /// Log Matching (5.3): same index and term => same prefix.
    fn check_chain(&mut self, node: NodeId, index: u64, term: u64, c: u64) -> Check {
        match self.chains.get(&(index, term)) {
            Some(&known) if known != c => fail(
                "Log Matching",
                vec![node],
                format!(
                    "n{} holds entry {index} of term {term}, but its log up to there differs from another node's",
                    node + 1
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.chains.insert((index, term), c);
                Ok(())
            }
        }
    }

    fn on_truncate(&mut self, node: NodeId, from: u64) -> Check {
        if self.is_leader(node) {
            return fail(
                "Leader Append-Only",
                vec![node],
                format!("leader n{} deleted entries from {from}", node + 1),
            );
        }
        let s = &mut self.nodes[node];
        if from <= s.commit {
            return fail(
                "State Machine Safety",
                vec![node],
                format!(
                    "n{} deleted committed entry {from} (commit index {})",
                    node + 1,
                    s.commit
                ),
            );
        }
        let keep = (from - s.base_index - 1) as usize;
        s.entries.truncate(keep);
        s.digests.truncate(keep);
        Ok(())
    }

    fn on_commit(&mut self, node: NodeId, index: u64, durable_last: u64) -> Check {
        let s = &self.nodes[node];
        if index < s.commit {
            return fail(
                "Commit monotonic",
                vec![node],
                format!(
                    "n{} moved its commit index back from {} to {index}",
                    node + 1,
                    s.commit
                ),
            );
        }
        // A node may only count as committed what would survive its crash.
        if index > durable_last {
            return fail(
                "Commit durable",
                vec![node],
                format!(
                    "n{} committed up to {index} but its stable log ends at {durable_last}",
                    node + 1
                ),
            );
        }
        let Some(c) = s.chain_at(index) else {
            return fail(
                "Commit within log",
                vec![node],
                format!(
                    "n{} committed {index} beyond its log (last {})",
                    node + 1,
                    s.last_index()
                ),
            );
        };
        let term = s.term_at(index).unwrap_or(0);
        let commit_term = s.max_term;
        self.nodes[node].commit = index;
        let known = self.committed.len() as u64;
        if index <= known {
            // State Machine Safety at the log level: all nodes commit the same prefix.
            if self.committed[(index - 1) as usize].1 != c {
                return fail(
                    "State Machine Safety",
                    vec![node],
                    format!(
                        "n{} committed a different entry {index} than was committed before",
                        node + 1
                    ),
                );
            }
            return Ok(());
        }
        if known > 0
            && self.nodes[node].chain_at(known) != Some(self.committed[(known - 1) as usize].1)
        {
            return fail(
                "State Machine Safety",
                vec![node],
                format!(
                    "n{} committed up to {index} on a log that disagrees with committed entry {known}",
                    node + 1
                ),
            );
        }
        for i in known + 1..=index {
            let ci = self.nodes[node].chain_at(i).unwrap_or(0);
            self.committed.push((commit_term, ci));
        }
        // Leader Completeness for leaders already in office with a later term.
        for (other, s) in self.nodes.iter().enumerate() {
            if s.role == Some(Role::Leader)
                && s.role_term > commit_term
                && s.chain_at(index) != Some(c)
            {
                return fail(
                    "Leader Completeness",
                    vec![other, node],
                    format!(
                        "entry {index} (term {term}) was committed in term {commit_term} by n{} but leader n{} of term {} lacks it",
                        node + 1,
                        other + 1,
                        s.role_term
                    ),
                );
            }
        }
        Ok(())
    }

    fn on_apply(&mut self, node: NodeId, index: u64, term: u64, digest: u64) -> Check {
        let s = &mut self.nodes[node];
        // Entries are applied in log order, each once, and only once committed.
        if index != s.applied + 1 {
            return fail(
                "Apply order",
                vec![node],
                format!("n{} applied {index} right after {}", node + 1, s.applied),
            );
        }
        if index > s.commit {
            return fail(
                "Apply committed only",
                vec![node],
                format!(
                    "n{} applied {index} beyond its commit index {}",
                    node + 1,
                    s.commit
                ),
            );
        }
        s.applied = index;
        let pos = (index - 1) as usize;
        if pos < self.applied.len() {
            // State Machine Safety (5.4.3): one entry per index, everywhere.
            if self.applied[pos] != (term, digest) {
                return fail(
                    "State Machine Safety",
                    vec![node],
                    format!(
                        "n{} applied a different entry at index {index} than another node",
                        node + 1
                    ),
                );
            }
        } else {
            self.applied.push((term, digest));
        }
        Ok(())
    }

    fn on_snapshot(&mut self, node: NodeId, index: u64, term: u64) -> Check {
        let s = &mut self.nodes[node];
        if s.term_at(index) == Some(term) {
            // Local compaction (or an install matching our log): drop the prefix.
            let c = s.chain_at(index).unwrap_or(0);
            let n = (index - s.base_index) as usize;
            s.entries.drain(..n);
            s.digests.drain(..n);
            s.base_index = index;
            s.base_chain = c;
        } else {
            let Some(&c) = self.chains.get(&(index, term)) else {
                return fail(
                    "Snapshot provenance",
                    vec![node],
                    format!(
                        "n{} installed a snapshot at {index} (term {term}) that no node ever logged",
                        node + 1
                    ),
                );
            };
            let s = &mut self.nodes[node];
            s.entries.clear();
            s.digests.clear();
            s.base_index = index;
            s.base_chain = c;
        }
        let s = &mut self.nodes[node];
        s.applied = s.applied.max(index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Each invariant, fed a hand-made event sequence that breaks it.
    use super::*;
    use crate::replicated::{Command, Entry};
    use TraceEvent::*;

    fn entry(term: u64, value: u64) -> Entry {
        Entry {
            term,
            cmd: Command::Put {
                client: 0,
                seq: value,
                key: 0,
                value,
            },
        }
    }

    fn append(index: u64, e: Entry) -> TraceEvent {
        RaftAppend {
            index,
            term: e.term,
            digest: e.digest(),
        }
    }

    /// Feeds events (node, event) with a generous durable log; returns the first violation.
    fn feed(n: usize, events: &[(NodeId, TraceEvent)]) -> Option<&'static str> {
        let mut c = RaftChecker::new(n);
        for (node, ev) in events {
            if let Err(v) = c.observe(*node, ev, || u64::MAX) {
                return Some(v.invariant);
            }
        }
        None
    }

    #[test]
    fn a_correct_sequence_passes() {
        let e = entry(1, 1);
        let evs = [
            (
                0,
                RaftRole {
                    term: 1,
                    role: Role::Leader,
                },
            ),
            (0, append(1, e)),
            (1, append(1, e)),
            (0, RaftCommit { index: 1 }),
            (
                0,
                RaftApply {
                    index: 1,
                    term: 1,
                    digest: e.digest(),
                },
            ),
            (1, RaftCommit { index: 1 }),
            (
                1,
                RaftApply {
                    index: 1,
                    term: 1,
                    digest: e.digest(),
                },
            ),
        ];
        assert_eq!(feed(3, &evs), None);
    }

    #[test]
    fn two_leaders_in_one_term() {
        let evs = [
            (
                0,
                RaftRole {
                    term: 2,
                    role: Role::Leader,
                },
            ),
            (
                1,
                RaftRole {
                    term: 2,
                    role: Role::Leader,
                },
            ),
        ];
        assert_eq!(feed(3, &evs), Some("Election Safety"));
    }

    #[test]
    fn two_votes_in_one_term() {
        let evs = [
            (
                0,
                RaftVote {
                    term: 3,
                    candidate: 1,
                },
            ),
            (
                0,
                RaftVote {
                    term: 3,
                    candidate: 2,
                },
            ),
        ];
        assert_eq!(feed(3, &evs), Some("One vote per term"));
    }

    #[test]
    fn term_going_back() {
        let evs = [
            (
                0,
                RaftRole {
                    term: 3,
                    role: Role::Follower,
                },
            ),
            (
                0,
                RaftRole {
                    term: 2,
                    role: Role::Follower,
                },
            ),
        ];
        assert_eq!(feed(3, &evs), Some("Term monotonic"));
    }

    #[test]
    fn leader_truncating_its_log() {
        let evs = [
            (
                0,
                RaftRole {
                    term: 1,
                    role: Role::Leader,
                },
            ),
            (0, append(1, entry(1, 1))),
            (0, RaftTruncate { from: 1 }),
        ];
        assert_eq!(feed(3, &evs), Some("Leader Append-Only"));
    }

    #[test]
    fn same_index_and_term_with_different_prefixes() {
        let evs = [
            (0, append(1, entry(1, 1))),
            (0, append(2, entry(2, 5))),
            (1, append(1, entry(1, 9))),
            (1, append(2, entry(2, 5))),
        ];
        assert_eq!(feed(3, &evs), Some("Log Matching"));
    }

    #[test]
    fn new_leader_missing_a_committed_entry() {
        let e = entry(1, 1);
        let evs = [
            (0, append(1, e)),
            (0, RaftCommit { index: 1 }),
            (
                2,
                RaftRole {
                    term: 2,
                    role: Role::Leader,
                },
            ),
        ];
        assert_eq!(feed(3, &evs), Some("Leader Completeness"));
    }

    #[test]
    fn a_leader_of_an_older_term_owes_nothing_to_later_commits() {
        // n3, paused as a candidate of term 2, wins term 2 on resume after
        // n1 committed entry 1 in term 3: legal (paper 5.4 speaks of later terms).
        let e = entry(3, 1);
        let evs = [
            (
                0,
                RaftRole {
                    term: 3,
                    role: Role::Leader,
                },
            ),
            (0, append(1, e)),
            (0, RaftCommit { index: 1 }),
            (
                2,
                RaftRole {
                    term: 2,
                    role: Role::Leader,
                },
            ),
        ];
        assert_eq!(feed(3, &evs), None);
    }

    #[test]
    fn two_nodes_applying_different_entries_at_one_index() {
        let (a, b) = (entry(1, 1), entry(2, 2));
        let evs = [
            (0, append(1, a)),
            (0, RaftCommit { index: 1 }),
            (
                0,
                RaftApply {
                    index: 1,
                    term: 1,
                    digest: a.digest(),
                },
            ),
            (1, append(1, b)),
            (1, RaftCommit { index: 1 }),
        ];
        assert_eq!(feed(3, &evs), Some("State Machine Safety"));
    }

    #[test]
    fn applying_out_of_order_or_uncommitted() {
        let e = entry(1, 1);
        assert_eq!(
            feed(
                1,
                &[
                    (0, append(1, e)),
                    (
                        0,
                        RaftApply {
                            index: 1,
                            term: 1,
                            digest: e.digest()
                        }
                    )
                ]
            ),
            Some("Apply committed only")
        );
        assert_eq!(
            feed(
                1,
                &[
                    (0, append(1, e)),
                    (0, append(2, e)),
                    (0, RaftCommit { index: 2 }),
                    (
                        0,
                        RaftApply {
                            index: 2,
                            term: 1,
                            digest: e.digest()
                        }
                    )
                ]
            ),
            Some("Apply order")
        );
    }

    #[test]
    fn committing_beyond_the_durable_log() {
        let mut c = RaftChecker::new(1);
        c.observe(0, &append(1, entry(1, 1)), || 0).unwrap();
        let v = c.observe(0, &RaftCommit { index: 1 }, || 0).unwrap_err();
        assert_eq!(v.invariant, "Commit durable");
    }

    #[test]
    fn a_restart_that_lost_the_term() {
        let mut c = RaftChecker::new(1);
        c.observe(
            0,
            &RaftRole {
                term: 5,
                role: Role::Follower,
            },
            || 0,
        )
        .unwrap();
        let stable = Persisted {
            term: 4,
            ..Persisted::default()
        };
        assert_eq!(
            c.on_recover(0, &stable).unwrap_err().invariant,
            "Term monotonic"
        );
    }
}
