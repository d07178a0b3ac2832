//! A cluster node: Raft plus the key-value state machine it replicates, and
//! the client-facing request handling that ties them together.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::bugs::Bugs;
use crate::cache::bus::{BusCache, BusMsg, BusSetup};
use crate::env::{Env, Timer};
use crate::kv::{ClientReply, ClientRequest, KvState};
use crate::lock::leases::LeaseKeeper;
use crate::lock::protocol::{API_CLIENT, LockReply, LockRequest, reply_for, trace_of};
use crate::lock::{LockCommand, LockError, LockEvent, LockId, LockState, SessionId};
use crate::queue::placement::{Applied, Placement, RingCommand};
use crate::queue::protocol::{QueueReply, QueueRequest, ShardAnswer, ShardCall};
use crate::queue::rebalance::{self, Rebalancer};
use crate::queue::router::{QueueSetup, Router, request_ids};
use crate::raft::{Raft, RaftMsg, Refusal};
use crate::replicated::{Command, Replicated};
use crate::scenario::{LockConfig, RaftConfig};
use crate::storage::Persisted;
use crate::trace::{NodeId, Role, TraceEvent};

/// Everything that travels between endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Raft(RaftMsg),
    Request {
        seq: u64,
        req: ClientRequest,
    },
    Reply {
        seq: u64,
        reply: ClientReply,
    },
    /// A lock holder's write to the protected resource.
    ResourceWrite {
        client: u32,
        lock: LockId,
        token: u64,
        phase: crate::lock::resource::Phase,
    },
    ResourceAck {
        lock: LockId,
        token: u64,
        accepted: bool,
    },
    /// A producer's or consumer's request to any node.
    Queue {
        seq: u64,
        req: QueueRequest,
    },
    QueueReply {
        seq: u64,
        reply: QueueReply,
    },
    /// A node's call on a Redis shard.
    Shard {
        req: u64,
        call: ShardCall,
    },
    ShardAnswer {
        req: u64,
        answer: ShardAnswer,
    },
    /// The cache bus: requests, snoops, grants.
    Bus(BusMsg),
    /// The caches' directory protocol: the same messages between caches
    /// and each key's home, named as the directory names them.
    Dir(BusMsg),
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
            Msg::Request {
                req: ClientRequest::Delete { .. },
                ..
            } => "Delete",
            Msg::Request {
                req: ClientRequest::Lock(r),
                ..
            } => match r {
                LockRequest::Open { .. } => "LockOpen",
                LockRequest::KeepAlive { .. } => "LockKeepAlive",
                LockRequest::Close { .. } => "LockClose",
                LockRequest::Acquire { .. } => "LockAcquire",
                LockRequest::Release { .. } => "LockRelease",
            },
            Msg::Reply { .. } => "Reply",
            Msg::ResourceWrite { .. } => "ResourceWrite",
            Msg::ResourceAck { .. } => "ResourceAck",
            Msg::Queue { req, .. } => match req {
                QueueRequest::Produce { .. } => "Produce",
                QueueRequest::Consume { .. } => "Consume",
                QueueRequest::Settle { .. } => "Settle",
            },
            Msg::QueueReply { .. } => "QueueReply",
            Msg::Shard { call, .. } => call.name(),
            Msg::ShardAnswer { .. } => "ShardAnswer",
            Msg::Bus(m) => m.name(),
            Msg::Dir(m) => m.directory_name(),
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

/// A request answered once a ReadIndex round confirms this node still leads.
#[derive(Clone, Copy, Debug)]
enum PendingRead {
    /// A key-value read.
    Get(Waiter, u32),
    /// A lock-session renewal: only a confirmed leader may promise a lease,
    /// or a deposed one (say, just back from a pause) would renew sessions
    /// the real leader is about to expire.
    Renew(Waiter, u64),
}

impl PendingRead {
    fn waiter(&self) -> Waiter {
        match *self {
            PendingRead::Get(w, _) | PendingRead::Renew(w, _) => w,
        }
    }
}

/// A lock request of the node's API, proposed as `API_CLIENT`.
#[derive(Clone, Copy, Debug)]
struct ApiLock {
    waiter: Waiter,
    /// An acquire's session and lock: what cancelling its wait names.
    acquire: Option<(SessionId, LockId)>,
}

/// One node of the replicated key-value store.
#[derive(Clone)]
pub struct Node {
    raft: Raft,
    state: Replicated,
    /// The lock service's clock-based duties while this node leads.
    leases: LeaseKeeper,
    lease_check_ns: u64,
    cluster_size: usize,
    snapshot_threshold: u64,
    /// Writes proposed by this node as leader, by log index.
    writes: BTreeMap<u64, Waiter>,
    /// Reads started by this node as leader, by ReadIndex ctx.
    reads: BTreeMap<u64, PendingRead>,
    /// Confirmed reads waiting for the state machine to reach their index.
    ready: Vec<(u64, u64)>,
    /// API lock requests this node proposed as leader, by their
    /// `API_CLIENT` sequence number; an acquire that waits stays until
    /// its outcome.
    api_locks: BTreeMap<u64, ApiLock>,
    /// The last `API_CLIENT` sequence number this node handed out.
    api_seq: u64,
    /// Planted bug `kv.ack_by_index`.
    ack_by_index: bool,
    /// Planted bug `lock.grant_before_commit`.
    grant_before_commit: bool,
    /// The queue's router and rebalancer, when the scenario has shards.
    queue: Option<QueueService>,
    /// This node's MESI cache, when the scenario has caches.
    cache: Option<BusCache>,
}

/// Generated cache operations: the generator, and its start and stop in
/// local time.
pub type GeneratedOps = (crate::cache::load::CacheLoad, u64, u64);

/// The queue's parts on a node.
#[derive(Clone)]
struct QueueService {
    router: Router,
    rebalancer: Rebalancer,
}

impl Node {
    /// Starts (or restarts) a node from stable storage.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: NodeId,
        cluster_size: usize,
        cfg: &RaftConfig,
        locks: &LockConfig,
        bugs: Bugs,
        stable: &Persisted,
        queue: Option<(QueueSetup, &Placement)>,
        cache: Option<(BusSetup, Option<GeneratedOps>)>,
        env: &mut impl Env,
    ) -> Node {
        let state = match &stable.snapshot {
            Some(s) => (*s.data).clone(),
            None => {
                let mut lock_state = LockState::new(locks.reentry_limit);
                if bugs.grant_ignores_holders {
                    lock_state = lock_state.with_grant_ignoring_holders();
                }
                Replicated {
                    kv: KvState::default(),
                    locks: lock_state,
                    queue: queue.map_or_else(Placement::none, |(_, p)| p.clone()),
                }
            }
        };
        let raft = Raft::recover(id, cluster_size, cfg.clone(), bugs, stable, env);
        let queue = queue.map(|(setup, _)| {
            let router = Router::new(setup, env.rng());
            let first = request_ids(env.rng());
            QueueService {
                router,
                rebalancer: Rebalancer::new(setup, first),
            }
        });
        Node {
            raft,
            state,
            leases: LeaseKeeper::new(locks.wait_ns, bugs.expire_by_local_clock),
            lease_check_ns: locks.lease_check_ns,
            cluster_size,
            snapshot_threshold: cfg.snapshot_threshold,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready: Vec::new(),
            api_locks: BTreeMap::new(),
            api_seq: 0,
            ack_by_index: bugs.ack_by_index,
            grant_before_commit: bugs.grant_before_commit,
            queue,
            cache: cache.map(|(setup, load)| {
                let first = crate::queue::router::request_ids(env.rng());
                let mut c = BusCache::new(id, setup, env.monotonic(), first);
                c.boot(env);
                if let Some((load, start, stop)) = load {
                    c.start_load(env, load, start, stop);
                }
                c
            }),
        }
    }

    /// A processor operation on this node's cache.
    pub fn cache_op(&mut self, env: &mut impl Env, op: crate::scenario::CacheOp) {
        if let Some(c) = self.cache.as_mut() {
            c.on_op(env, op);
        }
    }

    /// The node is crashing: its cache reports what it loses.
    pub fn on_crash(&mut self, env: &mut impl Env) {
        if let Some(c) = self.cache.as_mut() {
            c.crash(env);
        }
    }

    /// This node's cache, if the scenario has caches.
    pub fn cache(&self) -> Option<&BusCache> {
        self.cache.as_ref()
    }

    /// Where the queue's partitions live, as applied on this node.
    pub fn placement(&self) -> &Placement {
        &self.state.queue
    }

    /// Proposes a change of the queue's ring (leader only). Returns whether
    /// the proposal was accepted for replication.
    pub fn propose_ring(&mut self, env: &mut impl Env, cmd: RingCommand) -> bool {
        let was_leader = self.raft.role() == Role::Leader;
        let ok = self.raft.propose(env, Command::Ring(cmd)).is_ok();
        self.after_input(env, was_leader);
        ok
    }

    /// The Raft state, for summaries and role resolution.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The key-value store as applied on this node.
    pub fn kv(&self) -> &KvState {
        &self.state.kv
    }

    /// The lock service as applied on this node.
    pub fn locks(&self) -> &LockState {
        &self.state.locks
    }

    /// Handles one message.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        let was_leader = self.raft.role() == Role::Leader;
        match msg {
            Msg::Raft(m) => self.raft.on_message(env, from, m),
            Msg::Request { seq, req } => self.on_request(env, from, seq, req),
            Msg::Queue { seq, req } => self.on_queue_request(env, from, seq, req),
            Msg::ShardAnswer { req, answer } => self.on_shard_answer(env, req, &answer),
            Msg::Bus(m) | Msg::Dir(m) => {
                if let Some(c) = self.cache.as_mut() {
                    c.on_message(env, from, m);
                }
            }
            Msg::Reply { .. }
            | Msg::ResourceWrite { .. }
            | Msg::ResourceAck { .. }
            | Msg::QueueReply { .. }
            | Msg::Shard { .. } => {}
        }
        self.after_input(env, was_leader);
    }

    /// Handles one timer.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        let was_leader = self.raft.role() == Role::Leader;
        if timer == Timer::LeaseCheck {
            self.on_lease_check(env);
        } else if timer == Timer::Rebalance {
            self.on_rebalance(env);
        } else if matches!(
            timer,
            Timer::CacheOp | Timer::BusTxn | Timer::ClientNext | Timer::FlushRetry
        ) {
            if let Some(c) = self.cache.as_mut() {
                c.on_timer(env, timer);
            }
        } else {
            self.raft.on_timer(env, timer);
        }
        self.after_input(env, was_leader);
    }

    fn on_request(&mut self, env: &mut impl Env, from: NodeId, seq: u64, req: ClientRequest) {
        let waiter = Waiter { client: from, seq };
        let client_index = (from - self.cluster_size) as u32;
        let client = client_index;
        match req {
            ClientRequest::Put { key, value } => {
                let cmd = Command::Put {
                    client,
                    seq,
                    key,
                    value,
                };
                self.propose_write(env, waiter, cmd);
            }
            ClientRequest::Delete { key } => {
                self.propose_write(env, waiter, Command::Delete { client, seq, key });
            }
            ClientRequest::Lock(r) => self.on_lock_request(env, waiter, client_index, r),
            ClientRequest::Get { key } => match self.raft.read_index(env) {
                Ok(ctx) => {
                    self.reads.insert(ctx, PendingRead::Get(waiter, key));
                }
                Err(r) => reply(env, waiter, refusal_reply(r)),
            },
        }
    }

    /// Proposes a client's key-value write; its reply waits for the commit.
    fn propose_write(&mut self, env: &mut impl Env, waiter: Waiter, cmd: Command) {
        let client_index = (waiter.client - self.cluster_size) as u32;
        if self.raft.role() == Role::Leader && self.state.kv.applied_seq(client_index) >= waiter.seq
        {
            // A retry of a write that is already applied.
            return reply(env, waiter, ClientReply::Ok(None));
        }
        match self.raft.propose(env, cmd) {
            Ok(index) => {
                self.writes.insert(index, waiter);
            }
            Err(r) => reply(env, waiter, refusal_reply(r)),
        }
    }

    /// Proposes a lock command from a client, or handles a keep-alive here:
    /// renewals are the leader's business alone and never logged.
    fn on_lock_request(&mut self, env: &mut impl Env, waiter: Waiter, client: u32, r: LockRequest) {
        if self.raft.role() != Role::Leader {
            return reply(env, waiter, ClientReply::NotLeader(self.raft.leader_hint()));
        }
        let Some(cmd) = lock_command(client, waiter.seq, r) else {
            return self.renew(env, waiter, r);
        };
        // The answer goes out when the entry is applied (see `apply_committed`).
        match self.raft.propose(env, Command::Lock(cmd)) {
            Err(r) => reply(env, waiter, refusal_reply(r)),
            Ok(index) => {
                if let LockCommand::Acquire { lock, .. } = cmd
                    && self.grant_before_commit
                    && self.state.locks.holders(lock).is_empty()
                    && self.state.locks.waiters(lock).is_empty()
                {
                    // Planted bug: the lock looks free, so answer now rather
                    // than when the entry commits; a leader crash can lose it.
                    reply(
                        env,
                        waiter,
                        ClientReply::Lock(LockReply::Granted {
                            token: index,
                            holds: 1,
                        }),
                    );
                }
            }
        }
    }

    /// A keep-alive: renewed once a quorum confirms this node still leads
    /// (and has applied every decision of earlier leaders): see
    /// `PendingRead::Renew`.
    fn renew(&mut self, env: &mut impl Env, waiter: Waiter, r: LockRequest) {
        let LockRequest::KeepAlive { session } = r else {
            unreachable!("only a keep-alive is not a command")
        };
        match self.raft.read_index(env) {
            Ok(ctx) => {
                self.reads.insert(ctx, PendingRead::Renew(waiter, session));
            }
            Err(r) => reply(env, waiter, refusal_reply(r)),
        }
    }

    /// A lock request of this node's API (the real deployment's HTTP),
    /// from `from`, answered with `seq` like any client's. It is proposed
    /// as `API_CLIENT` under a sequence number this leader hands out, so
    /// every request is a new command (an API caller has no sequence
    /// numbers of its own). An acquire that has to wait is answered
    /// `Waiting`, then with its outcome.
    pub fn on_api_lock(&mut self, env: &mut impl Env, from: NodeId, seq: u64, r: LockRequest) {
        let was_leader = self.raft.role() == Role::Leader;
        self.api_lock(env, Waiter { client: from, seq }, r);
        self.after_input(env, was_leader);
    }

    fn api_lock(&mut self, env: &mut impl Env, waiter: Waiter, r: LockRequest) {
        if self.raft.role() != Role::Leader {
            return reply(env, waiter, ClientReply::NotLeader(self.raft.leader_hint()));
        }
        // Until this leader commits an entry of its term, an earlier
        // leader's API command may still commit with a number above the
        // state machine's last: handing that number out again would make
        // a new command a duplicate.
        if !self.raft.committed_in_term() || self.raft.applied_index() < self.raft.commit_index() {
            return reply(env, waiter, ClientReply::Retry);
        }
        let seq = self.api_seq.max(self.state.locks.last_seq(API_CLIENT)) + 1;
        let Some(cmd) = lock_command(API_CLIENT, seq, r) else {
            return self.renew(env, waiter, r);
        };
        match self.raft.propose(env, Command::Lock(cmd)) {
            Ok(_) => {
                self.api_seq = seq;
                let acquire = match cmd {
                    LockCommand::Acquire { session, lock, .. } => Some((session, lock)),
                    _ => None,
                };
                self.api_locks.insert(seq, ApiLock { waiter, acquire });
            }
            Err(r) => reply(env, waiter, refusal_reply(r)),
        }
    }

    /// Gives up the API acquire answered to `from`/`seq` (its caller went
    /// away or its own wait ran out): the leader proposes the same
    /// `WaitTimeout` its clock would, so the request leaves its queue at one
    /// log index on every node, and its caller, if still there, is answered
    /// `TimedOut`, or its grant if that came first. Does nothing on a
    /// follower or for a request already decided.
    pub fn cancel_api_wait(&mut self, env: &mut impl Env, from: NodeId, seq: u64) {
        let was_leader = self.raft.role() == Role::Leader;
        let found = self.api_locks.iter().find_map(|(&api_seq, a)| {
            (a.waiter.client == from && a.waiter.seq == seq)
                .then_some(a.acquire.map(|(session, lock)| (api_seq, session, lock)))
                .flatten()
        });
        if let Some((api_seq, session, lock)) = found
            && was_leader
        {
            let cmd = LockCommand::WaitTimeout {
                session,
                lock,
                seq: api_seq,
            };
            // Refused only when no longer leading: `fail_pending` answers then.
            let _ = self.raft.propose(env, Command::Lock(cmd));
        }
        self.after_input(env, was_leader);
    }

    fn on_queue_request(&mut self, env: &mut impl Env, from: NodeId, seq: u64, req: QueueRequest) {
        match self.queue.as_mut() {
            Some(q) => q.router.on_request(env, &self.state.queue, from, seq, req),
            None => env.send(
                from,
                Msg::QueueReply {
                    seq,
                    reply: QueueReply::Retry,
                },
            ),
        }
    }

    fn on_shard_answer(&mut self, env: &mut impl Env, req: u64, answer: &ShardAnswer) {
        if self
            .cache
            .as_mut()
            .is_some_and(|c| c.on_shard_answer(env, req, answer))
        {
            return;
        }
        let Some(q) = self.queue.as_mut() else {
            return;
        };
        if q.router.on_answer(env, req, answer) || self.raft.role() != Role::Leader {
            return;
        }
        if let (_, Some(cmd)) = q.rebalancer.on_answer(env, req, answer) {
            // A failed proposal is retried by the next rebalance tick.
            let _ = self.raft.propose(env, Command::Ring(cmd));
        }
    }

    /// The leader drives partition moves: resends overdue steps, proposes
    /// finished ones, and looks again shortly while any remain.
    fn on_rebalance(&mut self, env: &mut impl Env) {
        let Some(q) = self.queue.as_mut() else {
            return;
        };
        if self.raft.role() != Role::Leader || !Rebalancer::busy(&self.state.queue) {
            return;
        }
        // A new leader's placement may lack moves its predecessor committed:
        // it drives nothing until it has committed (and applied) its own entry.
        if !self.raft.committed_in_term() || self.raft.applied_index() < self.raft.commit_index() {
            env.set_timer(Timer::Rebalance, rebalance::TICK_NS);
            return;
        }
        for cmd in q.rebalancer.tick(env, &self.state.queue) {
            if self.raft.propose(env, Command::Ring(cmd)).is_err() {
                break;
            }
        }
        env.set_timer(Timer::Rebalance, rebalance::TICK_NS);
    }

    /// The leader proposes the expiries and wait timeouts its clock says are due.
    fn on_lease_check(&mut self, env: &mut impl Env) {
        if self.raft.role() != Role::Leader {
            return;
        }
        for cmd in self.leases.due(env.monotonic(), &self.state.locks) {
            if self.raft.propose(env, Command::Lock(cmd)).is_err() {
                break;
            }
        }
        env.set_timer(Timer::LeaseCheck, self.lease_check_ns);
    }

    /// Applies newly committed entries, answers clients, compacts the log.
    fn after_input(&mut self, env: &mut impl Env, was_leader: bool) {
        let is_leader = self.raft.role() == Role::Leader;
        let deposed = was_leader && !is_leader;
        if deposed {
            self.leases.leave_office();
            if let Some(q) = self.queue.as_mut() {
                q.rebalancer.leave_office();
            }
        }
        // The planted bug applies first and answers by index alone.
        if deposed && !self.ack_by_index {
            self.fail_pending(env);
        }
        self.apply_committed(env);
        if deposed && self.ack_by_index {
            self.fail_pending(env);
        }
        if is_leader && !was_leader {
            // A new leader restarts every lease and wait with its full length.
            self.leases.take_office(env.monotonic(), &self.state.locks);
            env.set_timer(Timer::LeaseCheck, self.lease_check_ns);
            if let Some(q) = self.queue.as_mut() {
                q.rebalancer.leave_office();
                env.set_timer(Timer::Rebalance, rebalance::TICK_NS);
            }
        }
        self.serve_ready_reads(env);
        if self.raft.applied_index() >= self.raft.snapshot_index() + self.snapshot_threshold {
            self.raft.compact(env, Rc::new(self.state.clone()));
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
        for (_, r) in std::mem::take(&mut self.reads) {
            reply(env, r.waiter(), ClientReply::Retry);
        }
        // Their entries may still commit, and a waiting acquire stays
        // queued: the next leader decides them, but answers nobody here.
        for (_, a) in std::mem::take(&mut self.api_locks) {
            reply(env, a.waiter, ClientReply::Retry);
        }
        self.ready.clear();
    }

    /// Applies newly committed entries and answers the writes they complete.
    fn apply_committed(&mut self, env: &mut impl Env) {
        if let Some(s) = self.raft.take_installed_snapshot() {
            self.state = (*s.data).clone();
        }
        while let Some((index, entry)) = self.raft.next_committed(env) {
            if let Command::Ring(r) = entry.cmd {
                self.ring_applied(env, r);
                continue;
            }
            let events = self.state.apply(index, &entry.cmd);
            if let Command::Lock(cmd) = &entry.cmd {
                self.lock_applied(env, cmd, &events);
            }
            let Some(w) = self.writes.remove(&index) else {
                continue;
            };
            // Only the entry this node proposed answers its client.
            let ours = self.ack_by_index
                || matches!(entry.cmd, Command::Put { client, seq, .. } | Command::Delete { client, seq, .. }
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

    /// Applies a ring command: traces ring changes, and on the leader
    /// records finished moves and starts driving new ones.
    fn ring_applied(&mut self, env: &mut impl Env, cmd: RingCommand) {
        let leader = self.raft.role() == Role::Leader;
        let epoch = self.state.queue.epoch();
        for a in self.state.queue.apply(cmd) {
            match a {
                Applied::Ring { epoch, shards } => {
                    env.trace(TraceEvent::QueueRing { epoch, shards })
                }
                Applied::Moved {
                    partition,
                    from,
                    to,
                } if leader => {
                    if let Some(q) = self.queue.as_mut() {
                        let mv = crate::queue::placement::Move { from, to };
                        q.rebalancer.on_moved(env, partition, mv, epoch);
                    }
                }
                Applied::Moved { .. } | Applied::Nothing => {}
            }
        }
        if leader && Rebalancer::busy(&self.state.queue) {
            env.set_timer(Timer::Rebalance, 1);
        }
    }

    /// Traces what an applied lock command did; the leader also tracks
    /// leases and waits, and answers the clients concerned (including
    /// waiters granted or failed because of someone else's command).
    fn lock_applied(&mut self, env: &mut impl Env, cmd: &LockCommand, events: &[LockEvent]) {
        let leader = self.raft.role() == Role::Leader;
        // After a `Duplicate` marker come the cached events of the original
        // command: they answer the retrying client and change nothing, so
        // they are neither traced nor tracked.
        let (fresh, replayed) = match events
            .iter()
            .position(|e| matches!(e, LockEvent::Duplicate { .. }))
        {
            Some(i) => (&events[..i], &events[i..]),
            None => (events, &events[events.len()..]),
        };
        for ev in fresh {
            if let Some(t) = trace_of(ev) {
                env.trace(t);
            }
            if let LockEvent::SessionOpened { session, .. } = ev {
                self.leases.note_opened(*session, env.monotonic());
            }
            if leader {
                self.leases.observe(ev, env.monotonic());
            }
        }
        if !leader {
            return;
        }
        for ev in fresh {
            self.answer_lock(env, cmd, ev);
        }
        // A replay answers only the client that retried.
        let retrier = cmd.client_seq();
        for ev in replayed
            .iter()
            .filter(|ev| reply_for(cmd, ev).map(|(c, s, _)| (c, s)) == retrier)
        {
            self.answer_lock(env, cmd, ev);
        }
    }

    /// Sends the reply `ev` owes its client, if any. `API_CLIENT`'s replies
    /// go to the API caller that asked, when this node proposed the request.
    fn answer_lock(&mut self, env: &mut impl Env, cmd: &LockCommand, ev: &LockEvent) {
        let Some((client, seq, answer)) = reply_for(cmd, ev) else {
            return;
        };
        let to = if client == API_CLIENT {
            let found = if answer == LockReply::Waiting {
                self.api_locks.get(&seq).copied()
            } else {
                self.api_locks.remove(&seq)
            };
            match found {
                Some(a) => a.waiter,
                None => return,
            }
        } else {
            Waiter {
                client: self.cluster_size + client as usize,
                seq,
            }
        };
        reply(env, to, ClientReply::Lock(answer));
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
                match self.reads.remove(&ctx) {
                    Some(PendingRead::Get(w, key)) => {
                        reply(env, w, ClientReply::Ok(self.state.kv.get(key)))
                    }
                    Some(PendingRead::Renew(w, session)) => {
                        let answer = if self.leases.renew(session, env.monotonic()) {
                            LockReply::Alive
                        } else {
                            LockReply::Failed(LockError::NoSession { session })
                        };
                        reply(env, w, ClientReply::Lock(answer));
                    }
                    None => {}
                }
            } else {
                i += 1;
            }
        }
    }
}

/// The command a lock request proposes as `client`'s `seq`; None for a
/// keep-alive, which is never logged.
fn lock_command(client: u32, seq: u64, r: LockRequest) -> Option<LockCommand> {
    Some(match r {
        LockRequest::Open { ttl_ns } => LockCommand::OpenSession {
            client,
            seq,
            ttl_ns,
        },
        LockRequest::KeepAlive { .. } => return None,
        LockRequest::Close { session } => LockCommand::CloseSession {
            client,
            seq,
            session,
        },
        LockRequest::Acquire {
            session,
            lock,
            mode,
            wait,
        } => LockCommand::Acquire {
            client,
            seq,
            session,
            lock,
            mode,
            wait,
        },
        LockRequest::Release { session, lock } => LockCommand::Release {
            client,
            seq,
            session,
            lock,
        },
    })
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
