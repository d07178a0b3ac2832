//! The real node's actor: one task owns the protocol `Node` and feeds it
//! inputs (peer messages, timers, local client requests) one at a time, the
//! pattern etcd's raft uses (inputs in, ready output out).
//!
//! The `Node` is the simulator's own: `RealEnv` stands behind the same
//! `Env` seam with the system clocks, tokio-timed timer slots, the on-disk
//! log and an outbox. Nothing here decides anything about the protocol.
//!
//! **Group commit and the outbox rule.** Raft asks its storage to sync at
//! the end of every input that wrote something. Here that sync only marks a
//! debt; the loop handles a batch of inputs that are already waiting (at
//! most `MAX_BATCH`), then pays the debt with one fdatasync, and only then
//! releases the messages the batch produced. So nothing leaves the node
//! before the write it may depend on is on disk (the rule the simulator
//! checks), and a busy leader pays one fsync for many inputs. The one
//! exception is a leader's replication, which depends on none of its own
//! new writes: it leaves just before the fsync, so followers write in
//! parallel with the leader (Raft thesis 10.2.1).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use crate::bugs::Bugs;
use crate::env::{Env, TIMER_KINDS, Timer};
use crate::kv::{ClientReply, ClientRequest};
use crate::lock::protocol::{LockReply, LockRequest};
use crate::node::{Msg, Node};
use crate::queue::placement::Placement;
use crate::queue::protocol::{QueueReply, QueueRequest, ShardAnswer, ShardCall};
use crate::queue::router::QueueSetup;
use crate::real::metrics::{Metrics, RaftFigures};
use crate::real::wal::{DiskLog, WalStats};
use crate::replicated::{Entry, Snapshot};
use crate::rng::Rng;
use crate::scenario::{LockConfig, RaftConfig};
use crate::storage::Storage;
use crate::trace::{NodeId, Role, Subject, TraceEvent, Tracer};

/// Inputs handled before one group-commit fsync: bounds the latency a
/// batch adds to its first input.
const MAX_BATCH: usize = 256;

/// How often waiting lock acquires are checked for a caller gone or a wait
/// run out: bounds how long past its wait an acquire may still be granted.
const WAIT_SWEEP: Duration = Duration::from_millis(20);

/// Local client requests waiting for the node's answer; more are refused
/// (`ClientError::Busy`) rather than queued without bound.
const MAX_PENDING_CLIENTS: usize = 4096;

/// Where the node's outgoing peer messages go: the TCP transport, or a test's
/// in-memory network. Sending never blocks; a message that cannot be queued
/// is dropped, which Raft tolerates.
pub trait Outbound {
    fn send(&self, to: NodeId, msg: Msg);
}

impl Outbound for crate::real::transport::Transport {
    fn send(&self, to: NodeId, msg: Msg) {
        crate::real::transport::Transport::send(self, to, msg);
    }
}

/// Where a node's calls on the queue's shards go (the real deployment's
/// Redis servers). Calling never blocks: the answer comes back later, as
/// `(shard, request id, answer)` on the channel `Runtime::with_shards`
/// takes, or never, which the router tolerates (its client retries).
pub trait ShardCalls {
    fn call(&self, shard: usize, req: u64, call: ShardCall);
}

/// A shard's answer on its way back to the node.
pub type ShardReply = (usize, u64, ShardAnswer);

/// Endpoint id of shard 0: past every client endpoint (the cluster size plus
/// a u32 session), so the node's messages to shards cannot be mistaken for
/// replies to a client.
pub fn shard_base(cluster_size: usize) -> NodeId {
    cluster_size + (1usize << 33)
}

/// How the actor is set up.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    pub id: NodeId,
    pub cluster_size: usize,
    pub raft: RaftConfig,
    pub locks: LockConfig,
    /// Seeds the node's random stream (election timeouts, request ids).
    /// The caller draws it from OS entropy and prints it.
    pub seed: u64,
    /// The client identity this process incarnation uses for its local
    /// requests (see `ClientHandle`); drawn at random so that a restarted
    /// process never reuses a session's sequence numbers.
    pub session: u32,
    /// Planted bugs: none in a deployment; the madsim tests plant some to
    /// show that their checks catch them.
    pub bugs: Bugs,
    /// Where the node reports its Raft figures (`ENABLE_METRICS`).
    pub metrics: Option<Arc<Metrics>>,
    /// The queue (with `REDIS_URL`): how it behaves and where its partitions
    /// start. `setup.shard_base` must be `shard_base(cluster_size)`.
    pub queue: Option<(QueueSetup, Placement)>,
}

/// What a local client request can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Too many requests are already waiting.
    Busy,
    /// The node stopped before answering.
    Stopped,
}

/// The node's state as `/health` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub wal: WalStats,
}

enum Input {
    Client {
        req: ClientRequest,
        answer: oneshot::Sender<ClientReply>,
        /// For a lock acquire that may wait: when its wait is given up.
        wait_until: Option<Instant>,
    },
    Status(oneshot::Sender<Status>),
    Queue {
        /// Builds the request on the node's thread: requests share their
        /// bodies by reference count, which cannot cross threads.
        make: Box<dyn FnOnce() -> QueueRequest + Send>,
        answer: oneshot::Sender<QueueReply>,
    },
    /// Runs a read-only look at the node (`ClientHandle::inspect`).
    Inspect(Box<dyn FnOnce(&Node) + Send>),
    Log {
        from: u64,
        limit: usize,
        answer: oneshot::Sender<LogPage>,
    },
}

/// A page of the node's Raft log, as `/raft/log` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPage {
    /// The first index still held (entries before it are in the snapshot).
    pub first_index: u64,
    pub last_index: u64,
    pub commit_index: u64,
    /// (index, entry) from the requested index on.
    pub entries: Vec<(u64, Entry)>,
}

/// The most entries one `log` call returns.
pub const MAX_LOG_PAGE: usize = 1000;

/// Asks the running node for things; cheap to clone.
#[derive(Clone)]
pub struct ClientHandle {
    inputs: mpsc::Sender<Input>,
}

impl ClientHandle {
    /// Submits a key-value or lock request and waits for the node's reply.
    /// A follower answers `NotLeader` with its hint; `Retry` means the
    /// outcome of a write is unknown.
    ///
    /// A lock request is proposed for the node's API (`API_CLIENT`): an
    /// acquire that has to wait is answered with its outcome, not
    /// `Waiting`. Dropping the future gives the wait up (see
    /// `request_waiting`).
    pub async fn request(&self, req: ClientRequest) -> Result<ClientReply, ClientError> {
        self.submit(req, None).await
    }

    /// A lock acquire that waits at most `wait` in its lock's queue: then
    /// the node cancels it through the log, and the answer is the
    /// `TimedOut` failure, or the grant if that came first. Likewise if
    /// the future is dropped (an HTTP client went away).
    /// (`None`: as `request`.)
    pub async fn request_waiting(
        &self,
        req: ClientRequest,
        wait: Option<Duration>,
    ) -> Result<ClientReply, ClientError> {
        self.submit(req, wait.and_then(|w| Instant::now().checked_add(w)))
            .await
    }

    async fn submit(
        &self,
        req: ClientRequest,
        wait_until: Option<Instant>,
    ) -> Result<ClientReply, ClientError> {
        let (answer, reply) = oneshot::channel();
        self.offer(Input::Client {
            req,
            answer,
            wait_until,
        })?;
        reply.await.map_err(|_| ClientError::Stopped)
    }

    /// Queues a client's input without waiting: a full queue is `Busy`.
    fn offer(&self, input: Input) -> Result<(), ClientError> {
        self.inputs.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ClientError::Busy,
            mpsc::error::TrySendError::Closed(_) => ClientError::Stopped,
        })
    }

    /// Submits a queue request; the node routes it to its partition's shard.
    /// `Retry` means not served now (partition moving, shard down): the
    /// outcome of a produce is then unknown, so send the same sequence
    /// numbers again.
    /// `make` builds the request on the node's thread (see `Input::Queue`).
    pub async fn queue(
        &self,
        make: impl FnOnce() -> QueueRequest + Send + 'static,
    ) -> Result<QueueReply, ClientError> {
        let (answer, reply) = oneshot::channel();
        let make = Box::new(make);
        self.offer(Input::Queue { make, answer })?;
        reply.await.map_err(|_| ClientError::Stopped)
    }

    /// Up to `limit` (at most `MAX_LOG_PAGE`) log entries from index `from`.
    pub async fn log(&self, from: u64, limit: usize) -> Result<LogPage, ClientError> {
        let (answer, reply) = oneshot::channel();
        let limit = limit.min(MAX_LOG_PAGE);
        self.inputs
            .send(Input::Log {
                from,
                limit,
                answer,
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        reply.await.map_err(|_| ClientError::Stopped)
    }

    /// What `look` finds in the node (its applied state machine, its
    /// role), taken between two inputs, so never half way through one.
    pub async fn inspect<T: Send + 'static>(
        &self,
        look: impl FnOnce(&Node) -> T + Send + 'static,
    ) -> Result<T, ClientError> {
        let (answer, reply) = oneshot::channel();
        let input = Input::Inspect(Box::new(move |node: &Node| {
            let _ = answer.send(look(node));
        }));
        self.inputs
            .send(input)
            .await
            .map_err(|_| ClientError::Stopped)?;
        reply.await.map_err(|_| ClientError::Stopped)
    }

    /// The node's current role, term, indexes and log counters.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let (answer, reply) = oneshot::channel();
        self.inputs
            .send(Input::Status(answer))
            .await
            .map_err(|_| ClientError::Stopped)?;
        reply.await.map_err(|_| ClientError::Stopped)
    }
}

/// Why the actor stopped other than by being asked to.
#[derive(Debug)]
pub enum RuntimeError {
    /// The log could not make a write durable (the log's error, which it
    /// keeps): the node must not send what depended on it, so it stops
    /// (restart it once the disk is healthy).
    Storage(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Storage(e) => write!(f, "stopping: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// The storage Raft sees: the disk log with its syncs deferred to the end
/// of the batch (see the module comment).
pub struct GroupCommit {
    log: DiskLog,
    owed: bool,
}

impl Storage for GroupCommit {
    fn set_hard_state(&mut self, term: u64, voted_for: Option<NodeId>) {
        self.log.set_hard_state(term, voted_for);
    }

    fn splice(&mut self, from: u64, entries: &[Entry]) {
        self.log.splice(from, entries);
    }

    fn snapshot(&mut self, snapshot: Snapshot, keep_suffix: bool) {
        self.log.snapshot(snapshot, keep_suffix);
    }

    fn sync(&mut self) {
        self.owed = true;
    }
}

/// The `Env` of a real node.
pub struct RealEnv {
    id: NodeId,
    started: Instant,
    rng: Rng,
    storage: GroupCommit,
    /// Deadline per timer slot, on `Instant` (the monotonic clock).
    timers: [Option<Instant>; TIMER_KINDS],
    outbox: Vec<(NodeId, Msg)>,
    /// The node's own trace (`distsync node --trace`): the simulator's
    /// event kinds and fields, stamped with the system clock.
    tracer: Option<Tracer>,
}

impl RealEnv {
    /// Writes one event to the trace, if there is one. A trace that cannot
    /// be written is given up with one warning: the node matters more.
    fn record(&mut self, ev: &TraceEvent) {
        let t = self.now();
        if let Some(tracer) = self.tracer.as_mut()
            && let Err(e) = tracer.record(t, Subject::Node(self.id), ev)
        {
            tracing::warn!(
                "n{}: cannot write the trace ({e}); tracing stops",
                self.id + 1
            );
            self.tracer = None;
        }
    }

    /// Pushes the trace's buffered lines to its file.
    fn flush_trace(&mut self) {
        if let Some(tracer) = self.tracer.as_mut()
            && let Err(e) = tracer.finish()
        {
            tracing::warn!(
                "n{}: cannot write the trace ({e}); tracing stops",
                self.id + 1
            );
            self.tracer = None;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Takes the timers due at `now`, clearing their slots.
    fn due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        for (i, slot) in self.timers.iter_mut().enumerate() {
            if slot.is_some_and(|d| d <= now) {
                *slot = None;
                due.push(Timer::from_index(i));
            }
        }
        due
    }
}

impl Env for RealEnv {
    type Storage = GroupCommit;

    fn now(&self) -> u64 {
        // Before 1970 only on a badly set clock; 0 then, as nothing here
        // orders events by wall time.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn monotonic(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        self.outbox.push((to, msg));
    }

    fn set_timer(&mut self, timer: Timer, after_ns: u64) {
        self.timers[timer as usize] = Some(Instant::now() + Duration::from_nanos(after_ns));
    }

    fn cancel_timer(&mut self, timer: Timer) {
        self.timers[timer as usize] = None;
    }

    fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn storage(&mut self) -> &mut GroupCommit {
        &mut self.storage
    }

    fn trace(&mut self, ev: TraceEvent) {
        // Role changes are what an operator watches; the full trace is
        // for the checkers.
        if let TraceEvent::RaftRole { term, role } = ev {
            tracing::info!("n{}: {} in term {term}", self.id + 1, role.name());
        }
        self.record(&ev);
    }
}

/// The actor: the node, its environment and its inputs.
pub struct Runtime<O: Outbound> {
    setup: NodeSetup,
    node: Node,
    env: RealEnv,
    outbound: O,
    peers: mpsc::Receiver<(NodeId, Msg)>,
    inputs: mpsc::Receiver<Input>,
    /// Local requests by the sequence number their reply will carry.
    waiting: BTreeMap<u64, Waiter>,
    /// Lock acquires answered `Waiting` and not yet given up: when each
    /// gives up (or None for never), checked every `WAIT_SWEEP`.
    lock_waits: BTreeMap<u64, Option<Instant>>,
    next_sweep: Option<Instant>,
    /// Local queue requests by the sequence number their reply will carry.
    queue_waiting: BTreeMap<u64, oneshot::Sender<QueueReply>>,
    /// The queue's shards, when the node serves the queue.
    shards: Option<(Box<dyn ShardCalls>, mpsc::Receiver<ShardReply>)>,
    /// The leader this node last knew of, for the leader-change count.
    known_leader: Option<NodeId>,
    next_seq: u64,
}

impl<O: Outbound> Runtime<O> {
    /// Recovers the node from `log` (already opened: a corrupt directory is
    /// the caller's error to report) and returns the actor with a handle
    /// for local requests. With `trace`, the node writes its trace there
    /// (docs/trace.md; the network's send and deliver lines are this
    /// node's own).
    pub fn new(
        setup: NodeSetup,
        log: DiskLog,
        outbound: O,
        peers: mpsc::Receiver<(NodeId, Msg)>,
        trace: Option<Box<dyn std::io::Write>>,
    ) -> (Runtime<O>, ClientHandle) {
        let stable = log.stable().clone();
        let mut env = RealEnv {
            id: setup.id,
            started: Instant::now(),
            rng: Rng::stream(setup.seed, crate::rng::Purpose::NodeTimers, setup.id as u64),
            storage: GroupCommit { log, owed: false },
            timers: [None; TIMER_KINDS],
            outbox: Vec::new(),
            tracer: trace.map(|sink| Tracer::new(setup.cluster_size, Some(sink))),
        };
        let node = Node::start(
            setup.id,
            setup.cluster_size,
            &setup.raft,
            &setup.locks,
            setup.bugs,
            &stable,
            setup.queue.as_ref().map(|(q, p)| (*q, p)),
            None,
            &mut env,
        );
        let (tx, inputs) = mpsc::channel(MAX_PENDING_CLIENTS);
        let runtime = Runtime {
            setup,
            node,
            env,
            outbound,
            peers,
            inputs,
            waiting: BTreeMap::new(),
            lock_waits: BTreeMap::new(),
            next_sweep: None,
            queue_waiting: BTreeMap::new(),
            shards: None,
            known_leader: None,
            next_seq: 1,
        };
        (runtime, ClientHandle { inputs: tx })
    }

    /// Sends the node's shard calls to `calls`; their answers come back on
    /// `answers`. Without this, a node set up with a queue answers every
    /// queue request `Retry` after the router's timeout.
    pub fn with_shards(
        mut self,
        calls: Box<dyn ShardCalls>,
        answers: mpsc::Receiver<ShardReply>,
    ) -> Runtime<O> {
        self.shards = Some((calls, answers));
        self
    }

    /// Runs until `stop` turns true or the storage fails. A stop finishes
    /// the batch in hand and its fsync first, so every message sent was
    /// durable. (A kill -9 is safe too: nothing unsynced was ever sent.)
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), RuntimeError> {
        // Whatever recovery wrote (none today) and the first timers' sends.
        self.commit_and_release().await?;
        loop {
            let sleep = match (self.env.next_deadline(), self.next_sweep) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                Some((from, msg)) = self.peers.recv() => {
                    self.on_peer(from, msg);
                    self.drain_ready();
                }
                Some(input) = self.inputs.recv() => {
                    self.on_input(input);
                    self.drain_ready();
                }
                Some((shard, req, answer)) = next_shard_reply(&mut self.shards) => {
                    self.on_shard_reply(shard, req, answer);
                    self.drain_ready();
                }
                () = sleep_until(sleep) => {
                    self.fire_timers();
                    self.sweep_lock_waits();
                }
            }
            self.commit_and_release().await?;
        }
        self.commit_and_release().await
    }

    /// Handles inputs that are already waiting, up to the batch limit, so
    /// one fsync covers them all. Shard answers are taken in turn with the
    /// rest, so a busy node cannot starve them.
    fn drain_ready(&mut self) {
        for _ in 1..MAX_BATCH {
            if let Ok((from, msg)) = self.peers.try_recv() {
                self.on_peer(from, msg);
            } else if let Some(Ok((shard, req, answer))) =
                self.shards.as_mut().map(|(_, rx)| rx.try_recv())
            {
                self.on_shard_reply(shard, req, answer);
            } else if let Ok(input) = self.inputs.try_recv() {
                self.on_input(input);
            } else {
                break;
            }
        }
        self.fire_timers();
        self.sweep_lock_waits();
    }

    fn on_peer(&mut self, from: NodeId, msg: Msg) {
        // Only Raft travels between nodes in this deployment; a client
        // request from a peer's address would be answered to a peer.
        if from < self.setup.cluster_size && matches!(msg, Msg::Raft(_)) {
            self.env.record(&TraceEvent::NetDeliver {
                from,
                to: self.setup.id,
                msg: msg.name(),
                term: msg.term(),
            });
            self.node.on_message(&mut self.env, from, msg);
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Client {
                req,
                answer,
                wait_until,
            } => {
                if !self.make_room() {
                    let _ = answer.send(ClientReply::Retry);
                    return;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                // Timed only for the metrics, and only writes and acquires.
                let timed = self.setup.metrics.is_some()
                    && matches!(
                        req,
                        ClientRequest::Put { .. }
                            | ClientRequest::Delete { .. }
                            | ClientRequest::Lock(LockRequest::Acquire { .. })
                    );
                self.waiting.insert(
                    seq,
                    Waiter {
                        answer,
                        since: timed.then(Instant::now),
                        wait_until,
                    },
                );
                let me = self.client_endpoint();
                match req {
                    ClientRequest::Lock(r) => self.node.on_api_lock(&mut self.env, me, seq, r),
                    req => self
                        .node
                        .on_message(&mut self.env, me, Msg::Request { seq, req }),
                }
            }
            Input::Status(answer) => {
                let _ = answer.send(self.status());
            }
            Input::Inspect(look) => look(&self.node),
            Input::Queue { make, answer } => {
                if !self.make_room() {
                    let _ = answer.send(QueueReply::Retry);
                    return;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.queue_waiting.insert(seq, answer);
                let me = self.client_endpoint();
                let req = make();
                self.node
                    .on_message(&mut self.env, me, Msg::Queue { seq, req });
            }
            Input::Log {
                from,
                limit,
                answer,
            } => {
                let raft = self.node.raft();
                let first = raft.snapshot_index() + 1;
                let from = from.max(first);
                let to = from.saturating_add(limit as u64).saturating_sub(1);
                let entries = raft
                    .entries(from, to)
                    .iter()
                    .zip(from..)
                    .map(|(e, i)| (i, *e))
                    .collect();
                let _ = answer.send(LogPage {
                    first_index: first,
                    last_index: raft.last_index(),
                    commit_index: raft.commit_index(),
                    entries,
                });
            }
        }
    }

    /// Whether one more local request may wait for its answer: at most
    /// `MAX_PENDING_CLIENTS` of every kind together. When full, answers
    /// whose asker gave up make room first; a lock wait stays, since its
    /// cancel must still be proposed.
    fn make_room(&mut self) -> bool {
        let pending = |rt: &Self| rt.waiting.len() + rt.queue_waiting.len();
        if pending(self) >= MAX_PENDING_CLIENTS {
            let waits = &self.lock_waits;
            self.waiting
                .retain(|seq, w| !w.answer.is_closed() || waits.contains_key(seq));
            self.queue_waiting.retain(|_, a| !a.is_closed());
        }
        pending(self) < MAX_PENDING_CLIENTS
    }

    fn on_shard_reply(&mut self, shard: usize, req: u64, answer: ShardAnswer) {
        let from = shard_base(self.setup.cluster_size) + shard;
        self.node
            .on_message(&mut self.env, from, Msg::ShardAnswer { req, answer });
    }

    fn fire_timers(&mut self) {
        for timer in self.env.due(Instant::now()) {
            self.node.on_timer(&mut self.env, timer);
        }
    }

    /// Gives up the lock waits whose caller went away or whose wait ran
    /// out, each once: the node proposes the cancel, and the waiter stays
    /// until the outcome (or a `Retry`, if leadership is lost) answers it.
    fn sweep_lock_waits(&mut self) {
        let now = Instant::now();
        if self.next_sweep.is_none_or(|t| t > now) {
            return;
        }
        let me = self.client_endpoint();
        let over: Vec<u64> = self
            .lock_waits
            .iter()
            .filter(|&(seq, until)| {
                until.is_some_and(|t| t <= now)
                    || self.waiting.get(seq).is_none_or(|w| w.answer.is_closed())
            })
            .map(|(&seq, _)| seq)
            .collect();
        for seq in over {
            self.lock_waits.remove(&seq);
            if self.waiting.contains_key(&seq) {
                self.node.cancel_api_wait(&mut self.env, me, seq);
            }
        }
        self.next_sweep = (!self.lock_waits.is_empty()).then(|| now + WAIT_SWEEP);
    }

    /// Local requests come from a client endpoint numbered after the nodes,
    /// as the simulator numbers its clients; the node's session table then
    /// keys this process's writes by `setup.session`.
    fn client_endpoint(&self) -> NodeId {
        self.setup.cluster_size + self.setup.session as usize
    }

    /// Pays the batch's fsync debt, then releases what the batch produced.
    /// A leader's replication goes out first, so the followers' writes
    /// overlap ours (`RaftMsg::may_precede_own_sync`); that is safe here
    /// because the batch's inputs are all handled already and no answer to
    /// that replication is read before the fsync below returns. The fsync
    /// blocks this thread, where the transport's tasks also run: one yield
    /// first lets them put that replication on the wire.
    async fn commit_and_release(&mut self) -> Result<(), RuntimeError> {
        if std::mem::take(&mut self.env.storage.owed) {
            if self.release(|msg| matches!(msg, Msg::Raft(m) if m.may_precede_own_sync())) {
                tokio::task::yield_now().await;
            }
            let started = Instant::now();
            if let Err(e) = self.env.storage.log.try_sync() {
                self.env.outbox.clear();
                return Err(RuntimeError::Storage(e.to_string()));
            }
            if let Some(m) = &self.setup.metrics {
                m.fsync(started.elapsed());
            }
        }
        let _ = self.release(|_| true);
        self.env.flush_trace();
        self.report_figures();
        Ok(())
    }

    /// Hands the batch's outcome to the metrics, if they are on.
    fn report_figures(&mut self) {
        let Some(m) = &self.setup.metrics else {
            return;
        };
        let raft = self.node.raft();
        let leader = raft.leader_hint();
        // From one known leader to another: the first one learned is not a change.
        let changed = matches!((self.known_leader, leader), (Some(old), Some(new)) if old != new);
        if leader.is_some() {
            self.known_leader = leader;
        }
        m.lock_sessions(self.node.locks().session_count());
        m.raft(
            RaftFigures {
                term: raft.term(),
                role: raft.role(),
                commit_index: raft.commit_index(),
                applied_index: raft.applied_index(),
                last_index: raft.last_index(),
            },
            changed,
        );
    }

    /// Sends the outbox's messages that `now` picks (peer messages to the
    /// transport, replies to the waiting local clients); keeps the rest.
    /// Whether it sent anything.
    fn release(&mut self, now: impl Fn(&Msg) -> bool) -> bool {
        let me = self.client_endpoint();
        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.env.outbox)
            .into_iter()
            .partition(|(_, msg)| now(msg));
        self.env.outbox = keep;
        let sent = !go.is_empty();
        let shards_from = shard_base(self.setup.cluster_size);
        for (to, msg) in go {
            if to >= shards_from {
                if let (Some((calls, _)), Msg::Shard { req, call }) = (&self.shards, msg) {
                    calls.call(to - shards_from, req, call);
                }
            } else if to == me {
                if let Msg::QueueReply { seq, reply } = msg {
                    if let Some(answer) = self.queue_waiting.remove(&seq) {
                        if let Some(m) = &self.setup.metrics {
                            m.queue_reply(&reply);
                        }
                        let _ = answer.send(reply);
                    }
                    continue;
                }
                if let Msg::Reply {
                    seq,
                    reply: ClientReply::Lock(LockReply::Waiting),
                } = msg
                {
                    // The outcome follows; until then the wait may be given up.
                    if let Some(m) = &self.setup.metrics {
                        m.lock_reply(&LockReply::Waiting, None);
                    }
                    match self.waiting.get(&seq) {
                        Some(w) => {
                            self.lock_waits.insert(seq, w.wait_until);
                            self.next_sweep
                                .get_or_insert_with(|| Instant::now() + WAIT_SWEEP);
                        }
                        // Its caller is gone already: nobody will take the grant.
                        None => self.node.cancel_api_wait(&mut self.env, me, seq),
                    }
                } else if let Msg::Reply { seq, reply } = msg
                    && let Some(w) = self.waiting.remove(&seq)
                {
                    self.lock_waits.remove(&seq);
                    match (&self.setup.metrics, &reply) {
                        (Some(m), ClientReply::Ok(_)) => {
                            if let Some(since) = w.since {
                                m.write(since.elapsed());
                            }
                        }
                        (Some(m), ClientReply::Lock(l)) => {
                            m.lock_reply(l, w.since.map(|s| s.elapsed()));
                        }
                        _ => {}
                    }
                    let _ = w.answer.send(reply);
                }
            } else if to < self.setup.cluster_size {
                self.env.record(&TraceEvent::NetSend {
                    from: self.setup.id,
                    to,
                    msg: msg.name(),
                    term: msg.term(),
                });
                self.outbound.send(to, msg);
            }
        }
        sent
    }

    fn status(&self) -> Status {
        let raft = self.node.raft();
        Status {
            id: self.setup.id,
            role: raft.role(),
            term: raft.term(),
            leader: raft.leader_hint(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            last_index: raft.last_index(),
            snapshot_index: raft.snapshot_index(),
            wal: self.env.storage.log.stats(),
        }
    }
}

/// A local request waiting for its answer.
struct Waiter {
    answer: oneshot::Sender<ClientReply>,
    /// When a write or lock acquire came in (for the latency metrics).
    since: Option<Instant>,
    /// When a lock acquire's wait is given up.
    wait_until: Option<Instant>,
}

/// The next shard answer, or never when the node has no shards.
async fn next_shard_reply(
    shards: &mut Option<(Box<dyn ShardCalls>, mpsc::Receiver<ShardReply>)>,
) -> Option<ShardReply> {
    match shards {
        Some((_, answers)) => answers.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one. (A duration rather
/// than tokio's own `Instant`: madsim's time keeps std's, and the two
/// agree on the clock.)
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep(d.saturating_duration_since(Instant::now())).await,
        None => std::future::pending().await,
    }
}

/// 64 bits from the operating system's entropy source, for a real node's
/// seed and session: a real run is not a replay, but printing the seed lets
/// the simulator start from the same random stream.
pub fn os_entropy() -> std::io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests;
