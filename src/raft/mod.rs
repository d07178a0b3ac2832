//! Sans-IO Raft: one deterministic state machine stepped by messages and timers.
//!
//! Implements leader election with randomized timeouts, pre-vote and
//! check-quorum; log replication with conflict-term fast backtracking; the
//! current-term commit rule (paper 5.4.2); persistence before any message that
//! depends on it; restart from stable storage; ReadIndex reads (thesis 6.4);
//! and snapshots with InstallSnapshot. Messages produced while handling one
//! input are held in an outbox and sent only after storage is synced, which is
//! the ordering rule that makes votes and acknowledgements safe across crashes.

pub mod log;
pub mod message;

use std::collections::VecDeque;
use std::rc::Rc;

use crate::bugs::Bugs;
use crate::env::{Env, Timer};
use crate::node::Msg;
use crate::replicated::{Command, Entry, Replicated, Snapshot};
use crate::scenario::RaftConfig;
use crate::storage::{Persisted, Storage};
use crate::trace::{NodeId, Role, TraceEvent};
pub use log::RaftLog;
pub use message::{AppendEntries, AppendReply, RaftMsg};

/// Why a proposal or read was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the leader; the hint is the leader we last heard from.
    NotLeader(Option<NodeId>),
    /// Leader, but it has not yet committed an entry of its term, so it does
    /// not know the commit index a read must wait for.
    NotReady,
}

#[derive(Clone)]
struct PendingRead {
    ctx: u64,
    index: u64,
    acks: u64,
}

/// One Raft node's protocol state.
#[derive(Clone)]
pub struct Raft {
    id: NodeId,
    cluster_size: usize,
    cfg: RaftConfig,
    bugs: Bugs,
    term: u64,
    voted_for: Option<NodeId>,
    log: RaftLog,
    commit: u64,
    applied: u64,
    role: Role,
    leader: Option<NodeId>,
    votes: u64,
    /// When the leader was last heard from, on the monotonic clock: the
    /// lease is a duration, which a step of the wall clock must not stretch
    /// or cut short.
    last_heard_from_leader: Option<u64>,
    next: Vec<u64>,
    matched: Vec<u64>,
    probing: Vec<bool>,
    recent_active: u64,
    reads: VecDeque<PendingRead>,
    next_read_ctx: u64,
    ready_reads: Vec<(u64, u64)>,
    snapshot: Option<Snapshot>,
    installed: Option<Snapshot>,
    dirty_hard: bool,
    dirty_log: bool,
    outbox: Vec<(NodeId, RaftMsg)>,
}

impl Raft {
    /// A node (re)started from what stable storage holds.
    pub fn recover(
        id: NodeId,
        cluster_size: usize,
        cfg: RaftConfig,
        bugs: Bugs,
        stable: &Persisted,
        env: &mut impl Env,
    ) -> Raft {
        assert!(cluster_size <= 64, "vote and ack sets are 64-bit masks");
        let log = RaftLog::restore(stable.snapshot.as_ref(), stable.log.clone());
        let snap_index = log.snapshot_index();
        let mut raft = Raft {
            id,
            cluster_size,
            cfg,
            bugs,
            term: stable.term,
            voted_for: stable.voted_for,
            log,
            commit: snap_index,
            applied: snap_index,
            role: Role::Follower,
            leader: None,
            votes: 0,
            last_heard_from_leader: None,
            next: vec![1; cluster_size],
            matched: vec![0; cluster_size],
            probing: vec![true; cluster_size],
            recent_active: 0,
            reads: VecDeque::new(),
            next_read_ctx: 0,
            ready_reads: Vec::new(),
            snapshot: stable.snapshot.clone(),
            installed: None,
            dirty_hard: false,
            dirty_log: false,
            outbox: Vec::new(),
        };
        env.trace(TraceEvent::RaftRecover {
            term: raft.term,
            voted_for: raft.voted_for,
            last_index: raft.log.last_index(),
            last_term: raft.log.last_term(),
            snapshot_index: snap_index,
        });
        env.trace(TraceEvent::RaftRole {
            term: raft.term,
            role: Role::Follower,
        });
        raft.reset_election_timer(env);
        raft
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }
    /// The candidate this node voted for in its current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// The term of the entry at `index` (None past the end, or compacted
    /// into the snapshot).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term_at(index)
    }
    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.commit
    }
    /// Highest index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    /// Index of the last log entry.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    /// Index covered by the latest snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.log.snapshot_index()
    }
    /// The entries held in [from, to], clamped to the log (entries a
    /// snapshot covers are gone).
    pub fn entries(&self, from: u64, to: u64) -> &[Entry] {
        self.log.slice(from, to)
    }
    /// True once a leader has committed an entry of its own term, and so
    /// knows every entry committed before it took office (Raft 5.4.2).
    pub fn committed_in_term(&self) -> bool {
        self.role == Role::Leader && self.log.term_at(self.commit) == Some(self.term)
    }

    /// The leader this node last heard from (itself when leading).
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader
    }

    fn quorum(&self) -> usize {
        self.cluster_size / 2 + 1
    }

    fn has_quorum(&self, set: u64) -> bool {
        set.count_ones() as usize >= self.quorum()
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + use<> {
        let me = self.id;
        (0..self.cluster_size).filter(move |&p| p != me)
    }

    // ---- inputs ------------------------------------------------------------

    /// Handles one message from a peer.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: RaftMsg) {
        self.step(env, from, msg);
        self.flush(env);
    }

    /// Handles a timer firing.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::Election => self.on_election_timeout(env),
            Timer::Heartbeat => self.on_heartbeat(env),
            Timer::ClientRetry
            | Timer::ClientNext
            | Timer::LeaseCheck
            | Timer::Fsync
            | Timer::Rebalance
            | Timer::CacheOp
            | Timer::BusTxn
            | Timer::FlushRetry => {}
        }
        self.flush(env);
    }

    /// Appends a command if leader; returns its index.
    pub fn propose(&mut self, env: &mut impl Env, cmd: Command) -> Result<u64, Refusal> {
        if self.role != Role::Leader {
            return Err(Refusal::NotLeader(self.leader));
        }
        let index = self.append_local(env, cmd);
        for p in self.peers() {
            if !self.probing[p] {
                self.send_append(p);
            }
        }
        self.maybe_commit(env);
        self.flush(env);
        Ok(index)
    }

    /// Starts a ReadIndex read; the read is ready (see `take_ready_reads`)
    /// once a quorum has confirmed this node is still leader.
    pub fn read_index(&mut self, env: &mut impl Env) -> Result<u64, Refusal> {
        if self.role != Role::Leader {
            return Err(Refusal::NotLeader(self.leader));
        }
        self.next_read_ctx += 1;
        let ctx = self.next_read_ctx;
        if self.bugs.read_without_quorum {
            // Planted bug: trust our own belief that we lead.
            self.ready_reads.push((ctx, self.commit));
            return Ok(ctx);
        }
        if self.log.term_at(self.commit) != Some(self.term) {
            self.next_read_ctx -= 1;
            return Err(Refusal::NotReady);
        }
        let me = 1u64 << self.id;
        if self.has_quorum(me) {
            self.ready_reads.push((ctx, self.commit));
        } else {
            self.reads.push_back(PendingRead {
                ctx,
                index: self.commit,
                acks: me,
            });
            for p in self.peers() {
                self.send_append(p);
            }
            self.flush(env);
        }
        Ok(ctx)
    }

    /// Reads confirmed since the last call: (ctx, index to wait for).
    pub fn take_ready_reads(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.ready_reads)
    }

    /// The next committed entry not yet applied; marks it applied.
    pub fn next_committed(&mut self, env: &mut impl Env) -> Option<(u64, Entry)> {
        if self.applied >= self.commit {
            return None;
        }
        let index = self.applied + 1;
        let entry = *self
            .log
            .entry(index)
            .expect("committed entries past the snapshot are held in the log");
        self.applied = index;
        env.trace(TraceEvent::RaftApply {
            index,
            term: entry.term,
            digest: entry.digest(),
        });
        Some((index, entry))
    }

    /// A snapshot received from the leader that the state machine must load.
    pub fn take_installed_snapshot(&mut self) -> Option<Snapshot> {
        self.installed.take()
    }

    /// Compacts the log up to the applied index, given the state machine at that point.
    pub fn compact(&mut self, env: &mut impl Env, data: Rc<Replicated>) {
        let index = self.applied;
        let Some(term) = self.log.term_at(index) else {
            return;
        };
        if index <= self.log.snapshot_index() {
            return;
        }
        let snapshot = Snapshot { index, term, data };
        self.log.compact_to(index, term);
        env.storage().snapshot(snapshot.clone(), true);
        self.dirty_log = true;
        env.trace(TraceEvent::RaftSnapshot { index, term });
        self.snapshot = Some(snapshot);
        self.flush(env);
    }

    // ---- message handling --------------------------------------------------

    fn step(&mut self, env: &mut impl Env, from: NodeId, msg: RaftMsg) {
        let term = msg.term();
        match &msg {
            RaftMsg::PreVote { .. } => return self.on_pre_vote(env, from, msg),
            RaftMsg::PreVoteResp { term, granted } => {
                if !granted && *term > self.term {
                    self.become_follower(env, *term, None);
                } else if self.role == Role::PreCandidate && *granted && *term == self.term + 1 {
                    self.votes |= 1 << from;
                    if self.has_quorum(self.votes) {
                        self.campaign(env);
                    }
                }
                return;
            }
            _ => {}
        }
        if term > self.term {
            if matches!(msg, RaftMsg::Vote { .. }) && self.in_lease(env) {
                // Thesis 4.2.3: a node that hears from a live leader ignores
                // vote requests, so a partitioned node rejoining cannot depose it.
                return;
            }
            let leader =
                matches!(msg, RaftMsg::Append(_) | RaftMsg::InstallSnapshot { .. }).then_some(from);
            self.become_follower(env, term, leader);
        } else if term < self.term {
            match msg {
                RaftMsg::Append(_) | RaftMsg::InstallSnapshot { .. } => {
                    self.outbox.push((from, self.reject_stale()));
                }
                RaftMsg::Vote { .. } => self.outbox.push((
                    from,
                    RaftMsg::VoteResp {
                        term: self.term,
                        granted: false,
                    },
                )),
                _ => {}
            }
            return;
        }
        match msg {
            RaftMsg::Vote {
                last_index,
                last_term,
                ..
            } => self.on_vote(env, from, last_index, last_term),
            RaftMsg::VoteResp { granted, .. } => {
                if self.role == Role::Candidate && granted {
                    self.votes |= 1 << from;
                    if self.has_quorum(self.votes) {
                        self.become_leader(env);
                    }
                }
            }
            RaftMsg::Append(req) => {
                self.follow(env, from);
                self.on_append(env, from, req);
            }
            RaftMsg::AppendResp(reply) => {
                if self.role == Role::Leader {
                    self.on_append_resp(env, from, reply);
                }
            }
            RaftMsg::InstallSnapshot { snapshot, .. } => {
                self.follow(env, from);
                self.on_install_snapshot(env, from, snapshot);
            }
            RaftMsg::PreVote { .. } | RaftMsg::PreVoteResp { .. } => unreachable!("handled above"),
        }
    }

    fn reject_stale(&self) -> RaftMsg {
        RaftMsg::AppendResp(AppendReply::reject(self.term, 0, 0, 0, 0))
    }

    fn in_lease(&self, env: &impl Env) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        match (self.leader, self.last_heard_from_leader) {
            (Some(_), Some(t)) => {
                env.monotonic().saturating_sub(t) < self.cfg.election_timeout_min_ns
            }
            _ => false,
        }
    }

    /// Election restriction (5.4.1), used by both votes and pre-votes.
    fn log_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        if self.bugs.vote_without_log_check {
            return true;
        }
        (last_term, last_index) >= (self.log.last_term(), self.log.last_index())
    }

    fn on_pre_vote(&mut self, env: &mut impl Env, from: NodeId, msg: RaftMsg) {
        let RaftMsg::PreVote {
            term,
            last_index,
            last_term,
        } = msg
        else {
            return;
        };
        let granted =
            term > self.term && !self.in_lease(env) && self.log_up_to_date(last_index, last_term);
        // A rejection carries our own term so that a far-behind pre-candidate
        // learns it, without pushing anyone's term up.
        let resp_term = if granted { term } else { self.term };
        self.outbox.push((
            from,
            RaftMsg::PreVoteResp {
                term: resp_term,
                granted,
            },
        ));
    }

    fn on_vote(&mut self, env: &mut impl Env, from: NodeId, last_index: u64, last_term: u64) {
        let free =
            self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
        let up_to_date = self.log_up_to_date(last_index, last_term);
        let granted = free && up_to_date;
        if granted {
            if self.voted_for != Some(from) {
                self.voted_for = Some(from);
                self.save_hard_state(env);
                env.trace(TraceEvent::RaftVote {
                    term: self.term,
                    candidate: from,
                    last_index,
                    last_term,
                });
            }
            self.reset_election_timer(env);
        }
        self.outbox.push((
            from,
            RaftMsg::VoteResp {
                term: self.term,
                granted,
            },
        ));
    }

    /// Accept `from` as leader of the current term.
    fn follow(&mut self, env: &mut impl Env, from: NodeId) {
        if self.role != Role::Follower {
            self.set_role(env, Role::Follower);
        }
        self.leader = Some(from);
        self.last_heard_from_leader = Some(env.monotonic());
        self.reset_election_timer(env);
    }

    fn on_append(&mut self, env: &mut impl Env, from: NodeId, req: AppendEntries) {
        let AppendEntries {
            mut prev_index,
            mut prev_term,
            commit,
            read_ctx,
            ..
        } = req;
        let mut entries: &[Entry] = &req.entries;
        // Entries up to our commit index are known to match the leader's log;
        // skipping them also avoids asking for terms that were compacted away.
        if prev_index < self.commit {
            let skip = ((self.commit - prev_index) as usize).min(entries.len());
            entries = &entries[skip..];
            prev_index += skip as u64;
            prev_term = if skip > 0 {
                self.log.term_at(prev_index).unwrap_or(0)
            } else {
                prev_term
            };
            if prev_index < self.commit {
                self.outbox
                    .push((from, self.append_ok(self.commit, read_ctx)));
                return;
            }
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            let (conflict_index, conflict_term) = if prev_index > self.log.last_index() {
                (self.log.last_index() + 1, 0)
            } else {
                let t = self.log.term_at(prev_index).unwrap_or(0);
                (self.log.first_index_of_term_at(prev_index), t)
            };
            let resp = RaftMsg::AppendResp(AppendReply::reject(
                self.term,
                prev_index,
                conflict_index,
                conflict_term,
                read_ctx,
            ));
            self.outbox.push((from, resp));
            return;
        }
        let mut first_changed = None;
        for (i, e) in entries.iter().enumerate() {
            let index = prev_index + 1 + i as u64;
            match self.log.term_at(index) {
                Some(t) if t == e.term => continue,
                Some(_) if self.bugs.no_truncate_on_conflict => {
                    // Planted bug: overwrite in place, keep the stale suffix.
                    self.log.overwrite(index, *e);
                    env.trace(TraceEvent::RaftAppend {
                        index,
                        term: e.term,
                        digest: e.digest(),
                    });
                    first_changed.get_or_insert(index);
                    continue;
                }
                Some(_) => {
                    self.log.truncate_from(index);
                    env.trace(TraceEvent::RaftTruncate { from: index });
                }
                None => {}
            }
            first_changed.get_or_insert(index);
            for e in &entries[i..] {
                let idx = self.log.push(*e);
                env.trace(TraceEvent::RaftAppend {
                    index: idx,
                    term: e.term,
                    digest: e.digest(),
                });
            }
            break;
        }
        if let Some(from_index) = first_changed {
            let suffix = self.log.slice(from_index, self.log.last_index());
            env.storage().splice(from_index, suffix);
            self.dirty_log = true;
        }
        let match_index = prev_index + entries.len() as u64;
        let new_commit = commit.min(match_index);
        if new_commit > self.commit {
            // Entries must be stable before they count as committed here.
            self.persist(env);
            self.set_commit(env, new_commit);
        }
        self.outbox
            .push((from, self.append_ok(match_index, read_ctx)));
    }

    fn append_ok(&self, match_index: u64, read_ctx: u64) -> RaftMsg {
        RaftMsg::AppendResp(AppendReply::accept(self.term, match_index, read_ctx))
    }

    fn on_append_resp(&mut self, env: &mut impl Env, from: NodeId, reply: AppendReply) {
        self.recent_active |= 1 << from;
        if reply.read_ctx > 0 {
            self.ack_reads(from, reply.read_ctx);
        }
        if reply.success {
            if reply.match_index > self.matched[from] {
                self.matched[from] = reply.match_index;
            }
            self.next[from] = self.next[from].max(reply.match_index + 1);
            self.probing[from] = false;
            self.maybe_commit(env);
            if self.next[from] <= self.log.last_index() {
                self.send_append(from);
            }
            return;
        }
        if reply.reject_index <= self.matched[from] || reply.reject_index == 0 {
            return; // stale rejection of something already acknowledged
        }
        let mut next = reply.conflict_index;
        if reply.conflict_term > 0
            && let Some(i) = self.log.last_index_of_term(reply.conflict_term)
        {
            next = i + 1;
        }
        self.next[from] = next.clamp(self.matched[from] + 1, self.log.last_index() + 1);
        self.probing[from] = true;
        self.send_append(from);
    }

    fn on_install_snapshot(&mut self, env: &mut impl Env, from: NodeId, snapshot: Snapshot) {
        if snapshot.index <= self.commit {
            self.outbox.push((from, self.append_ok(self.commit, 0)));
            return;
        }
        let (index, term) = (snapshot.index, snapshot.term);
        let keep_suffix = self.log.term_at(index) == Some(term);
        if keep_suffix {
            self.log.compact_to(index, term);
        } else {
            self.log.reset_to(index, term);
        }
        env.storage().snapshot(snapshot.clone(), keep_suffix);
        self.dirty_log = true;
        env.trace(TraceEvent::RaftSnapshot { index, term });
        self.persist(env);
        self.applied = index;
        self.set_commit(env, index);
        self.snapshot = Some(snapshot.clone());
        self.installed = Some(snapshot);
        self.outbox.push((from, self.append_ok(index, 0)));
    }

    fn ack_reads(&mut self, from: NodeId, read_ctx: u64) {
        for r in self.reads.iter_mut() {
            if r.ctx <= read_ctx {
                r.acks |= 1 << from;
            }
        }
        while let Some(r) = self.reads.front() {
            if !self.has_quorum(r.acks) {
                break;
            }
            self.ready_reads.push((r.ctx, r.index));
            self.reads.pop_front();
        }
    }

    // ---- timers ------------------------------------------------------------

    fn on_election_timeout(&mut self, env: &mut impl Env) {
        if self.role == Role::Leader {
            // Check-quorum: a leader cut off from a majority steps down
            // rather than serve as a stale leader forever.
            let active = self.recent_active | (1 << self.id);
            if self.cfg.check_quorum && !self.has_quorum(active) {
                self.become_follower(env, self.term, None);
            } else {
                self.recent_active = 0;
                env.set_timer(Timer::Election, self.cfg.election_timeout_min_ns);
            }
            return;
        }
        self.leader = None;
        self.reset_election_timer(env);
        if self.cfg.pre_vote {
            self.set_role(env, Role::PreCandidate);
            self.votes = 1 << self.id;
            if self.has_quorum(self.votes) {
                return self.campaign(env);
            }
            self.request_votes(true);
        } else {
            self.campaign(env);
        }
    }

    fn campaign(&mut self, env: &mut impl Env) {
        self.term += 1;
        self.voted_for = Some(self.id);
        self.leader = None;
        self.save_hard_state(env);
        self.set_role(env, Role::Candidate);
        env.trace(TraceEvent::RaftVote {
            term: self.term,
            candidate: self.id,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        });
        self.votes = 1 << self.id;
        self.reset_election_timer(env);
        if self.has_quorum(self.votes) {
            return self.become_leader(env);
        }
        self.request_votes(false);
    }

    /// Asks every peer for a (pre-)vote for the term this node is running in.
    fn request_votes(&mut self, pre: bool) {
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for p in self.peers() {
            let msg = if pre {
                RaftMsg::PreVote {
                    term: self.term + 1,
                    last_index,
                    last_term,
                }
            } else {
                RaftMsg::Vote {
                    term: self.term,
                    last_index,
                    last_term,
                }
            };
            self.outbox.push((p, msg));
        }
    }

    fn on_heartbeat(&mut self, env: &mut impl Env) {
        if self.role != Role::Leader {
            return;
        }
        for p in self.peers() {
            if !self.probing[p] {
                // Resend anything not yet acknowledged: lost appends are
                // otherwise never noticed while the leader is idle.
                self.next[p] = self.matched[p] + 1;
            }
            self.send_append(p);
        }
        env.set_timer(Timer::Heartbeat, self.cfg.heartbeat_ns);
    }

    fn reset_election_timer(&mut self, env: &mut impl Env) {
        let (lo, hi) = (
            self.cfg.election_timeout_min_ns,
            self.cfg.election_timeout_max_ns,
        );
        let after = env.rng().between(lo, hi.saturating_sub(1).max(lo));
        env.set_timer(Timer::Election, after);
    }

    // ---- role changes ------------------------------------------------------

    fn set_role(&mut self, env: &mut impl Env, role: Role) {
        self.role = role;
        env.trace(TraceEvent::RaftRole {
            term: self.term,
            role,
        });
    }

    fn become_follower(&mut self, env: &mut impl Env, term: u64, leader: Option<NodeId>) {
        let was = self.role;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.save_hard_state(env);
        }
        self.leader = leader;
        self.role = Role::Follower;
        env.trace(TraceEvent::RaftRole {
            term: self.term,
            role: Role::Follower,
        });
        if was == Role::Leader {
            self.reads.clear();
            self.ready_reads.clear();
            env.cancel_timer(Timer::Heartbeat);
        }
        self.reset_election_timer(env);
    }

    fn become_leader(&mut self, env: &mut impl Env) {
        self.set_role(env, Role::Leader);
        self.leader = Some(self.id);
        let next = self.log.last_index() + 1;
        self.next.iter_mut().for_each(|n| *n = next);
        self.matched.iter_mut().for_each(|m| *m = 0);
        self.probing.iter_mut().for_each(|p| *p = true);
        self.recent_active = 0;
        self.reads.clear();
        // A no-op of our own term lets us commit (5.4.2) and serve reads. A
        // leader that (wrongly) commits old entries by counting sees no need.
        if !self.bugs.commit_old_term_by_count {
            self.append_local(env, Command::Noop);
        }
        for p in self.peers() {
            self.send_append(p);
        }
        self.maybe_commit(env);
        env.set_timer(Timer::Heartbeat, self.cfg.heartbeat_ns);
        env.set_timer(Timer::Election, self.cfg.election_timeout_min_ns);
    }

    // ---- leader helpers ----------------------------------------------------

    fn append_local(&mut self, env: &mut impl Env, cmd: Command) -> u64 {
        let entry = Entry {
            term: self.term,
            cmd,
        };
        let index = self.log.push(entry);
        env.trace(TraceEvent::RaftAppend {
            index,
            term: entry.term,
            digest: entry.digest(),
        });
        env.storage().splice(index, &[entry]);
        self.dirty_log = true;
        self.matched[self.id] = index;
        index
    }

    fn send_append(&mut self, to: NodeId) {
        let next = self.next[to];
        if next <= self.log.snapshot_index() {
            if let Some(snapshot) = self.snapshot.clone() {
                self.next[to] = snapshot.index + 1;
                self.probing[to] = true;
                self.outbox.push((
                    to,
                    RaftMsg::InstallSnapshot {
                        term: self.term,
                        snapshot,
                    },
                ));
            }
            return;
        }
        let prev_index = next - 1;
        let prev_term = self.log.term_at(prev_index).unwrap_or(0);
        let max = self.cfg.max_entries_per_append.max(1) as u64;
        let entries = self.log.slice(next, next + max - 1).to_vec();
        if !self.probing[to] {
            self.next[to] = next + entries.len() as u64;
        }
        let read_ctx = self.reads.back().map_or(0, |r| r.ctx);
        let commit = self.commit;
        self.outbox.push((
            to,
            RaftMsg::Append(AppendEntries {
                term: self.term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_ctx,
            }),
        ));
    }

    fn maybe_commit(&mut self, env: &mut impl Env) {
        // On the stack: this runs on every acknowledgement.
        let n = self.cluster_size;
        let mut acked = [0u64; 64];
        acked[..n].copy_from_slice(&self.matched);
        acked[self.id] = self.log.last_index();
        acked[..n].sort_unstable_by(|a, b| b.cmp(a));
        let candidate = acked[self.quorum() - 1];
        if candidate <= self.commit {
            return;
        }
        // Paper 5.4.2: only entries of the leader's own term are committed by
        // counting replicas; earlier ones are committed with them.
        let own_term = self.log.term_at(candidate) == Some(self.term);
        if own_term || self.bugs.commit_old_term_by_count {
            self.persist(env);
            self.set_commit(env, candidate);
        }
    }

    fn set_commit(&mut self, env: &mut impl Env, index: u64) {
        self.commit = index;
        env.trace(TraceEvent::RaftCommit { index });
    }

    // ---- persistence -------------------------------------------------------

    fn save_hard_state(&mut self, env: &mut impl Env) {
        env.storage().set_hard_state(self.term, self.voted_for);
        self.dirty_hard = true;
    }

    /// Syncs pending writes. With the planted vote_before_persist bug, a
    /// term/vote change alone is left unsynced until some log write syncs it.
    fn persist(&mut self, env: &mut impl Env) {
        let hard = self.dirty_hard && !self.bugs.vote_before_persist;
        if self.dirty_log || hard {
            env.storage().sync();
            self.dirty_log = false;
            self.dirty_hard = false;
        }
    }

    /// Persist, then send everything produced by this input.
    fn flush(&mut self, env: &mut impl Env) {
        self.persist(env);
        for (to, msg) in self.outbox.drain(..) {
            env.send(to, Msg::Raft(msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, Rng};
    use crate::sim::storage::Durable;

    /// A node's surroundings with clocks the test sets by hand.
    struct Bench {
        wall: u64,
        mono: u64,
        sent: Vec<(NodeId, Msg)>,
        rng: Rng,
        storage: Durable,
    }

    impl Env for Bench {
        type Storage = Durable;
        fn now(&self) -> u64 {
            self.wall
        }
        fn monotonic(&self) -> u64 {
            self.mono
        }
        fn send(&mut self, to: NodeId, msg: Msg) {
            self.sent.push((to, msg));
        }
        fn set_timer(&mut self, _: Timer, _: u64) {}
        fn cancel_timer(&mut self, _: Timer) {}
        fn rng(&mut self) -> &mut Rng {
            &mut self.rng
        }
        fn storage(&mut self) -> &mut Durable {
            &mut self.storage
        }
        fn trace(&mut self, _: TraceEvent) {}
    }

    /// Whether a follower that heard from its leader at monotonic time 0
    /// grants a pre-vote once its clocks read `wall` and `mono`.
    fn grants_pre_vote_at(wall_step: i64, mono: u64) -> bool {
        let start = 1_000_000_000_000_000;
        let mut env = Bench {
            wall: start,
            mono: start,
            sent: Vec::new(),
            rng: Rng::stream(1, Purpose::NodeTimers, 0),
            storage: Durable::default(),
        };
        let cfg = RaftConfig::default();
        let mut raft = Raft::recover(0, 3, cfg, Bugs::default(), &Persisted::default(), &mut env);
        let heartbeat = AppendEntries {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: Vec::new(),
            commit: 0,
            read_ctx: 0,
        };
        raft.on_message(&mut env, 1, RaftMsg::Append(heartbeat));
        env.wall = start.checked_add_signed(wall_step).unwrap() + mono;
        env.mono = start + mono;
        env.sent.clear();
        let pre_vote = RaftMsg::PreVote {
            term: 2,
            last_index: 0,
            last_term: 0,
        };
        raft.on_message(&mut env, 2, pre_vote);
        match env.sent.as_slice() {
            [(2, Msg::Raft(RaftMsg::PreVoteResp { granted, .. }))] => *granted,
            other => panic!("one pre-vote answer, got {other:?}"),
        }
    }

    #[test]
    fn the_leader_lease_is_measured_on_the_monotonic_clock() {
        // Thesis 4.2.3: within election_timeout_min of hearing from the
        // leader a follower refuses pre-votes; after it, it may grant them.
        assert!(!grants_pre_vote_at(0, 100_000_000));
        assert!(grants_pre_vote_at(0, 200_000_000));
        // A forward step of the wall clock does not end the lease early...
        assert!(!grants_pre_vote_at(5_000_000_000, 10_000_000));
        // ...and a backward step does not stretch it.
        assert!(grants_pre_vote_at(-5_000_000_000, 200_000_000));
    }
}
