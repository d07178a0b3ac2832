//! Raft's safety properties, checked online after every traced event.
//!
//! The checker sees only trace events, the node's durable image (on restart,
//! vote, commit and send) and the Raft messages a node hands to the network,
//! never protocol internals, so it judges what a run did, not what the code
//! meant to do. Every check is incremental: O(1), O(nodes) or O(entries
//! touched) per event.
//!
//! Besides the paper's five properties (Figure 3) it checks the protocol
//! rules that protect them, so a run fails at the step that breaks a rule,
//! not only once the damage shows in a lost committed entry:
//! - Leader commit rule (5.3, 5.4.2, Figure 8): a leader advances its commit
//!   index only to an entry of its own term that a quorum holds.
//! - Truncate before overwrite (Figure 2, AppendEntries step 3): an index of
//!   a log never changes term without a `raft.truncate` first.
//! - Vote for up-to-date log (5.4.1): a vote goes only to a candidate whose
//!   last (term, index) is at least the voter's durable one.
//! - Persist before reply (Figure 2, "updated on stable storage before
//!   responding to RPCs"; etcd's Ready contract): a message carries no term
//!   newer than the sender's durable term, a granted vote is durable, and an
//!   append acknowledgement covers only durable entries.

use std::collections::BTreeMap;

use crate::raft::RaftMsg;
use crate::replicated::mix64;
use crate::storage::Persisted;
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
#[derive(Clone)]
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

/// Election restriction (5.4.1): a voter grants its vote only to a
/// candidate whose log is at least as up to date as its own, last terms
/// compared first, then last indexes. The voter's log is taken as stable
/// storage holds it: that is the log it would restart with.
fn vote_up_to_date(
    node: NodeId,
    term: u64,
    candidate: NodeId,
    cand_last: (u64, u64),
    durable: &Persisted,
) -> Check {
    let own = (durable.last_term(), durable.last_index());
    if cand_last >= own {
        return Ok(());
    }
    fail(
        "Vote for up-to-date log",
        vec![node, candidate],
        format!(
            "n{} voted in term {term} for n{} whose log ends at {} (term {}), behind its own stable log ending at {} (term {})",
            node + 1,
            candidate + 1,
            cand_last.1,
            cand_last.0,
            own.1,
            own.0
        ),
    )
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

    /// A restart read from a node's own trace (`raft.recover`), where no
    /// stable image is at hand: the node keeps the entries it logged up to
    /// `last_index` (what its disk held; later ones were never synced) and
    /// starts over with nothing committed or applied past its snapshot.
    /// The rules that compare with the stable image itself are the
    /// simulator's (`on_recover`).
    pub fn on_restart_in_trace(&mut self, node: NodeId, last_index: u64, snapshot_index: u64) {
        let s = &mut self.nodes[node];
        if last_index < s.last_index() && last_index >= s.base_index {
            let keep = (last_index - s.base_index) as usize;
            s.entries.truncate(keep);
            s.digests.truncate(keep);
        }
        s.commit = snapshot_index.max(s.base_index);
        s.applied = s.commit;
        s.role = None;
    }

    /// Checks one event of `node`. `durable` is that node's stable image,
    /// consulted by the rules that compare against what survives a crash;
    /// None (a bare event stream, as in unit tests) skips those rules.
    pub fn observe(&mut self, node: NodeId, ev: &TraceEvent, durable: Option<&Persisted>) -> Check {
        match *ev {
            TraceEvent::RaftRole { term, role } => self.on_role(node, term, role),
            TraceEvent::RaftVote {
                term,
                candidate,
                last_index,
                last_term,
            } => {
                self.on_vote(node, term, candidate)?;
                match durable {
                    Some(d) if candidate != node => {
                        vote_up_to_date(node, term, candidate, (last_term, last_index), d)
                    }
                    _ => Ok(()),
                }
            }
            TraceEvent::RaftAppend {
                index,
                term,
                digest,
            } => self.on_append(node, index, term, digest),
            TraceEvent::RaftTruncate { from } => self.on_truncate(node, from),
            TraceEvent::RaftCommit { index } => {
                let durable_last = durable.map_or(u64::MAX, Persisted::last_index);
                self.on_commit(node, index, durable_last)
            }
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
            // Figure 2, AppendEntries step 3: a conflicting entry is deleted
            // with all that follow it before the new one is written, so an
            // index never changes term in place (a stale suffix would survive).
            let old_term = self.nodes[node].term_at(index).unwrap_or(0);
            if old_term != term {
                return fail(
                    "Truncate before overwrite",
                    vec![node],
                    format!(
                        "n{} wrote entry {index} of term {term} over its entry of term {old_term} without truncating",
                        node + 1
                    ),
                );
            }
            // Same term, different entry: recompute the suffix's chains,
            // which is where Log Matching shows the difference.
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
        if s.role == Some(Role::Leader) && index > s.commit {
            self.leader_commit_rule(node, index, term, c)?;
        }
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

    /// Leader commit rule (paper 5.3 and 5.4.2, Figure 8; etcd's
    /// `maybeCommit` checks the term the same way): a leader counts replicas
    /// only for an entry of its own term, and only once a quorum holds it.
    /// A node whose snapshot covers `index` holds it as committed state.
    fn leader_commit_rule(&self, node: NodeId, index: u64, term: u64, c: u64) -> Check {
        let leader_term = self.nodes[node].role_term;
        if term != leader_term {
            return fail(
                "Leader commit rule",
                vec![node],
                format!(
                    "leader n{} of term {leader_term} advanced its commit index to {index}, an entry of term {term}",
                    node + 1
                ),
            );
        }
        let holders: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&k| {
                let s = &self.nodes[k];
                index <= s.base_index || s.chain_at(index) == Some(c)
            })
            .collect();
        if holders.len() < self.nodes.len() / 2 + 1 {
            let names: Vec<String> = holders.iter().map(|k| format!("n{}", k + 1)).collect();
            return fail(
                "Leader commit rule",
                vec![node],
                format!(
                    "leader n{} committed entry {index} held only by {} of {} nodes ({})",
                    node + 1,
                    holders.len(),
                    self.nodes.len(),
                    names.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// Persist before reply (Figure 2: currentTerm, votedFor and log[] are
    /// "updated on stable storage before responding to RPCs"; etcd's Ready
    /// contract persists HardState and entries before sending Messages).
    /// `durable` is the sender's stable image as the message leaves.
    pub fn on_send(&self, node: NodeId, to: NodeId, msg: &RaftMsg, durable: &Persisted) -> Check {
        let fail_send = |detail: String| fail("Persist before reply", vec![node, to], detail);
        let who = || format!("n{} sent {} to n{}", node + 1, msg.name(), to + 1);
        match msg {
            // A pre-vote changes no state and asks at a term nobody adopted.
            RaftMsg::PreVote { .. } | RaftMsg::PreVoteResp { .. } => return Ok(()),
            _ => {}
        }
        let term = msg.term();
        if term > durable.term {
            return fail_send(format!(
                "{} at term {term}, but its stable term is {}",
                who(),
                durable.term
            ));
        }
        match msg {
            RaftMsg::VoteResp { granted: true, .. }
                if durable.term != term || durable.voted_for != Some(to) =>
            {
                let vote = durable
                    .voted_for
                    .map_or("none".to_string(), |v| format!("n{}", v + 1));
                fail_send(format!(
                    "{} granting its vote in term {term}, but its stable vote is {vote} in term {}",
                    who(),
                    durable.term
                ))
            }
            RaftMsg::AppendResp(r) if r.success => {
                let m = r.match_index;
                let stable_term = durable.term_at(m);
                let inside_snapshot = m < durable.snapshot_index();
                if m > durable.last_index() {
                    return fail_send(format!(
                        "{} acknowledging entries up to {m}, but its stable log ends at {}",
                        who(),
                        durable.last_index()
                    ));
                }
                match self.nodes[node].term_at(m) {
                    Some(t) if !inside_snapshot && stable_term != Some(t) => fail_send(format!(
                        "{} acknowledging entry {m} of term {t}, but its stable entry {m} is of term {}",
                        who(),
                        stable_term.unwrap_or(0)
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
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
            if let Err(v) = c.observe(*node, ev, None) {
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
        let evs = [(0, vote(3, 1, 0, 0)), (0, vote(3, 2, 0, 0))];
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
            (1, append(1, e)),
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
        let empty = Persisted::default();
        c.observe(0, &append(1, entry(1, 1)), Some(&empty)).unwrap();
        let v = c
            .observe(0, &RaftCommit { index: 1 }, Some(&empty))
            .unwrap_err();
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
            None,
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

    fn leader(term: u64) -> TraceEvent {
        RaftRole {
            term,
            role: Role::Leader,
        }
    }

    #[test]
    fn a_leader_committing_an_old_term_entry_by_counting() {
        // Figure 8: entry 1 of term 1 is on a majority, but the leader of
        // term 3 may not count it committed until an entry of term 3 is.
        let e = entry(1, 1);
        let evs = [
            (0, append(1, e)),
            (1, append(1, e)),
            (0, leader(3)),
            (0, RaftCommit { index: 1 }),
        ];
        assert_eq!(feed(3, &evs), Some("Leader commit rule"));
        // With its own no-op on the same majority, both commit together.
        let noop = entry(3, 0);
        let evs = [
            (0, append(1, e)),
            (1, append(1, e)),
            (0, leader(3)),
            (0, append(2, noop)),
            (1, append(2, noop)),
            (0, RaftCommit { index: 2 }),
        ];
        assert_eq!(feed(3, &evs), None);
    }

    #[test]
    fn a_leader_committing_what_no_quorum_holds() {
        let e = entry(2, 1);
        let evs = [
            (0, leader(2)),
            (0, append(1, e)),
            (1, append(1, entry(1, 9))),
            (0, RaftCommit { index: 1 }),
        ];
        assert_eq!(feed(3, &evs), Some("Leader commit rule"));
    }

    #[test]
    fn an_entry_overwritten_without_truncation() {
        let evs = [
            (1, append(1, entry(1, 1))),
            (1, append(2, entry(1, 2))),
            (1, append(1, entry(2, 3))),
        ];
        assert_eq!(feed(3, &evs), Some("Truncate before overwrite"));
        let evs = [
            (1, append(1, entry(1, 1))),
            (1, append(2, entry(1, 2))),
            (1, RaftTruncate { from: 1 }),
            (1, append(1, entry(2, 3))),
        ];
        assert_eq!(feed(3, &evs), None);
    }

    fn stable(term: u64, voted_for: Option<NodeId>, log: &[Entry]) -> Persisted {
        Persisted {
            term,
            voted_for,
            snapshot: None,
            log: log.to_vec(),
        }
    }

    fn vote(term: u64, candidate: NodeId, last_index: u64, last_term: u64) -> TraceEvent {
        RaftVote {
            term,
            candidate,
            last_index,
            last_term,
        }
    }

    #[test]
    fn a_vote_for_a_candidate_behind_the_voters_durable_log() {
        let d = stable(3, Some(1), &[entry(1, 1), entry(2, 2)]);
        let check = |ev: TraceEvent| {
            RaftChecker::new(3)
                .observe(0, &ev, Some(&d))
                .err()
                .map(|v| v.invariant)
        };
        // A longer log of an older last term is behind (5.4.1: terms first).
        assert_eq!(check(vote(3, 1, 5, 1)), Some("Vote for up-to-date log"));
        assert_eq!(check(vote(3, 1, 1, 2)), Some("Vote for up-to-date log"));
        assert_eq!(check(vote(3, 1, 2, 2)), None);
        assert_eq!(check(vote(3, 1, 1, 3)), None);
        // A candidate's vote for itself is not a grant.
        assert_eq!(check(vote(3, 0, 0, 0)), None);
    }

    fn vote_resp(term: u64, granted: bool) -> RaftMsg {
        RaftMsg::VoteResp { term, granted }
    }

    fn ack(term: u64, match_index: u64) -> RaftMsg {
        RaftMsg::AppendResp(crate::raft::AppendReply::accept(term, match_index, 0))
    }

    #[test]
    fn replies_sent_before_their_writes_are_stable() {
        let mut c = RaftChecker::new(3);
        let (a, b) = (entry(1, 1), entry(2, 2));
        for ev in [append(1, a), append(2, b)] {
            c.observe(0, &ev, None).unwrap();
        }
        let send =
            |msg: RaftMsg, d: &Persisted| c.on_send(0, 1, &msg, d).err().map(|v| v.invariant);
        let p = Some("Persist before reply");
        // The vote and the term it was cast in are stable: fine.
        assert_eq!(send(vote_resp(2, true), &stable(2, Some(1), &[a, b])), None);
        // The vote is not (yet) stable.
        assert_eq!(send(vote_resp(2, true), &stable(2, None, &[a, b])), p);
        assert_eq!(send(vote_resp(2, true), &stable(1, Some(1), &[a, b])), p);
        // A refusal at a term not yet stable.
        assert_eq!(send(vote_resp(2, false), &stable(1, None, &[a, b])), p);
        // Acknowledging entries stable storage does not hold, or holds
        // with another term.
        assert_eq!(send(ack(2, 2), &stable(2, None, &[a, b])), None);
        assert_eq!(send(ack(2, 2), &stable(2, None, &[a])), p);
        assert_eq!(send(ack(2, 2), &stable(2, None, &[a, entry(1, 3)])), p);
        // A pre-vote answer asks at a term nobody adopted.
        let pre = RaftMsg::PreVoteResp {
            term: 5,
            granted: true,
        };
        assert_eq!(send(pre, &stable(2, None, &[a, b])), None);
    }
}
