//! A cluster node: Raft plus the key-value state machine it replicates, and
//! the client-facing request handling that ties them together.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::bugs::Bugs;
use crate::env::{Env, Timer};
use crate::kv::{ClientReply, ClientRequest, Command, KvState};
use crate::raft::{Raft, RaftMsg, Refusal};
use crate::scenario::RaftConfig;
use crate::sim::storage::Persisted;
use crate::trace::{NodeId, Role};

/// Everything that travels between endpoints.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    Raft(RaftMsg),
    Request { seq: u64, req: ClientRequest },
    Reply { seq: u64, reply: ClientReply },
}

impl Msg {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Raft(m) => m.name(),
            Msg::Request {
                req: ClientRequest::Get { .. },
                ..
            } => "Get",
            Msg::Request {
                req: ClientRequest::Put { .. },
                ..
            } => "Put",
            Msg::Reply { .. } => "Reply",
        }
    }

    /// The Raft term carried, 0 for client traffic.
    pub fn term(&self) -> u64 {
        match self {
            Msg::Raft(m) => m.term(),
            _ => 0,
        }
    }
}

/// A client waiting for an answer from this node.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    client: NodeId,
    seq: u64,
}

/// One node of the replicated key-value store.
pub struct Node {
    raft: Raft,
    kv: KvState,
    cluster_size: usize,
    snapshot_threshold: u64,
    /// Writes proposed by this node as leader, by log index.
    writes: BTreeMap<u64, Waiter>,
    /// Reads started by this node as leader, by ReadIndex ctx.
    reads: BTreeMap<u64, (Waiter, u32)>,
    /// Confirmed reads waiting for the state machine to reach their index.
    ready: Vec<(u64, u64)>,
    /// Planted bug `kv.ack_by_index`.
    ack_by_index: bool,
}

impl Node {
    /// Starts (or restarts) a node from stable storage.
    pub fn start(
        id: NodeId,
        cluster_size: usize,
        cfg: &RaftConfig,
        bugs: Bugs,
        stable: &Persisted,
        env: &mut impl Env,
    ) -> Node {
        let kv = stable
            .snapshot
            .as_ref()
            .map(|s| (*s.data).clone())
            .unwrap_or_default();
        let snapshot_threshold = cfg.snapshot_threshold;
        let raft = Raft::recover(id, cluster_size, cfg.clone(), bugs, stable, env);
        Node {
            raft,
            kv,
            cluster_size,
            snapshot_threshold,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready: Vec::new(),
            ack_by_index: bugs.ack_by_index,
        }
    }

    /// The Raft state, for summaries and role resolution.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The replicated state as applied on this node.
    pub fn kv(&self) -> &KvState {
        &self.kv
    }

    /// Handles one message.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        let was_leader = self.raft.role() == Role::Leader;
        match msg {
            Msg::Raft(m) => self.raft.on_message(env, from, m),
            Msg::Request { seq, req } => self.on_request(env, from, seq, req),
            Msg::Reply { .. } => {}
        }
        self.after_input(env, was_leader);
    }

    /// Handles one timer.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        let was_leader = self.raft.role() == Role::Leader;
        self.raft.on_timer(env, timer);
        self.after_input(env, was_leader);
    }

    fn on_request(&mut self, env: &mut impl Env, from: NodeId, seq: u64, req: ClientRequest) {
        let waiter = Waiter { client: from, seq };
        let client_index = (from - self.cluster_size) as u32;
        match req {
            ClientRequest::Put { key, value } => {
                if self.raft.role() == Role::Leader && self.kv.applied_seq(client_index) >= seq {
                    // A retry of a write that is already applied.
                    return reply(env, waiter, ClientReply::Ok(None));
                }
                match self.raft.propose(
                    env,
                    Command::Put {
                        client: client_index,
                        seq,
                        key,
                        value,
                    },
                ) {
                    Ok(index) => {
                        self.writes.insert(index, waiter);
                    }
                    Err(r) => reply(env, waiter, refusal_reply(r)),
                }
            }
            ClientRequest::Get { key } => match self.raft.read_index(env) {
                Ok(ctx) => {
                    self.reads.insert(ctx, (waiter, key));
                }
                Err(r) => reply(env, waiter, refusal_reply(r)),
            },
        }
    }

    /// Applies newly committed entries, answers clients, compacts the log.
    fn after_input(&mut self, env: &mut impl Env, was_leader: bool) {
        let deposed = was_leader && self.raft.role() != Role::Leader;
        // The planted bug applies first and answers by index alone.
        if deposed && !self.ack_by_index {
            self.fail_pending(env);
        }
        self.apply_committed(env);
        if deposed && self.ack_by_index {
            self.fail_pending(env);
        }
        self.serve_ready_reads(env);
        if self.raft.applied_index() >= self.raft.snapshot_index() + self.snapshot_threshold {
            self.raft.compact(env, Rc::new(self.kv.clone()));
        }
    }

    /// Fails every pending request after losing leadership. Outcomes are
    /// unknown now; the client retries elsewhere, and sessions make a retried
    /// write apply at most once. This must run before applying anything: the
    /// next leader's entries may sit at the indexes our proposals had.
    fn fail_pending(&mut self, env: &mut impl Env) {
        for (_, w) in std::mem::take(&mut self.writes) {
            reply(env, w, ClientReply::Retry);
        }
        for (_, (w, _)) in std::mem::take(&mut self.reads) {
            reply(env, w, ClientReply::Retry);
        }
        self.ready.clear();
    }

    /// Applies newly committed entries and answers the writes they complete.
    fn apply_committed(&mut self, env: &mut impl Env) {
        if let Some(s) = self.raft.take_installed_snapshot() {
            self.kv = (*s.data).clone();
        }
        while let Some((index, entry)) = self.raft.next_committed(env) {
            self.kv.apply(&entry.cmd);
            let Some(w) = self.writes.remove(&index) else {
                continue;
            };
            // Only the entry this node proposed answers its client.
            let ours = self.ack_by_index
                || matches!(entry.cmd, Command::Put { client, seq, .. }
                    if client as usize + self.cluster_size == w.client && seq == w.seq);
            reply(
                env,
                w,
                if ours {
                    ClientReply::Ok(None)
                } else {
                    ClientReply::Retry
                },
            );
        }
    }

    /// Answers confirmed reads whose index the state machine has reached.
    fn serve_ready_reads(&mut self, env: &mut impl Env) {
        self.ready.extend(self.raft.take_ready_reads());
        let applied = self.raft.applied_index();
        let mut i = 0;
        while i < self.ready.len() {
            let (ctx, index) = self.ready[i];
            if index <= applied {
                self.ready.swap_remove(i);
                if let Some((w, key)) = self.reads.remove(&ctx) {
                    reply(env, w, ClientReply::Ok(self.kv.get(key)));
                }
            } else {
                i += 1;
            }
        }
    }
}

fn refusal_reply(r: Refusal) -> ClientReply {
    match r {
        Refusal::NotLeader(hint) => ClientReply::NotLeader(hint),
        Refusal::NotReady => ClientReply::Retry,
    }
}

fn reply(env: &mut impl Env, w: Waiter, reply: ClientReply) {
    env.send(w.client, Msg::Reply { seq: w.seq, reply });
}
