//! The bus protocol: every node's cache snoops one bus, and an arbiter node
//! puts one transaction on it at a time, in a single total order.
//!
//! A transaction is a request from one cache. The arbiter sends it to every
//! other cache as a snoop, waits for all their answers (the shared signal,
//! and the dirty data of an M holder), makes any flushed data durable in
//! memory (Redis shard `s1`), fetches the data from memory when no cache
//! supplied it, grants the request, and waits for the requester's `Done`
//! before starting the next transaction. So the distributed bus behaves as
//! the atomic bus of the textbook: no snoop of a later transaction can
//! overtake an earlier one, and the MESI table in `mesi.rs` applies as is.
//!
//! A cache that does not answer in time (crashed, paused, cut off) fails
//! the transaction: the requester reports an error and nothing is granted.
//! Coherence stalls rather than breaks.
//!
//! Memory keeps each key's value with a version: the bus time of the
//! transaction that made the value's writer the owner. A write-back only
//! lands if it is newer than what memory has, so a delayed flush can never
//! roll memory back.
//!
//! The directory protocol is the same machinery with one arbiter per node:
//! each key's home (its node on a consistent-hash ring) orders that key's
//! transactions and sends them only to the caches its `Directory` lists,
//! not to everyone. The caches and their tables do not change; only who
//! orders a transaction and who hears it does. See docs/mesi.md, sections
//! 8 and 9, for the messages, the races and the restart rule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::lines::{Key, Line, Lines};
use super::load::CacheLoad;
use super::mesi::{self, BusOp, Next, ProcessorOp, State};
use crate::env::{Env, Timer};
use crate::node::Msg;
use crate::queue::protocol::{ShardAnswer, ShardCall};
use crate::queue::ring::Ring;
use crate::scenario::CacheOp;
use crate::trace::{NodeId, TraceEvent};

/// The bus's messages between caches and the arbiter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusMsg {
    /// A cache asks for a transaction; `txn` is the cache's own number.
    Request {
        txn: u64,
        key: Key,
        op: BusOp,
        /// Dirty data that must reach memory with this transaction, as
        /// (value, version): a `Flush`'s line, or for any other request a
        /// value this cache handed over that memory has not confirmed (no
        /// snoop asks the requester itself for it).
        dirty: Option<(u64, u64)>,
        /// The requester's incarnation: a home that hears a new one knows
        /// the node restarted with an empty cache (directory protocol).
        incarnation: u64,
    },
    /// The arbiter shows another cache's transaction.
    Snoop { bus_txn: u64, key: Key, op: BusOp },
    SnoopReply {
        bus_txn: u64,
        key: Key,
        shared: bool,
        /// Dirty data supplied by the M holder: (value, version).
        flush: Option<(u64, u64)>,
        /// The answering cache's incarnation: an answer from before its
        /// restart is ignored, dirty data and all (that data is in doubt,
        /// and a read may already have found it missing).
        incarnation: u64,
    },
    /// The transaction is done on the bus: go ahead (or `ok == false`: it
    /// failed and nothing changed for the requester).
    Grant {
        txn: u64,
        bus_txn: u64,
        ok: bool,
        shared: bool,
        /// The line's data (None: never written), and its version.
        data: Option<u64>,
        version: u64,
    },
    /// The requester has installed the result; the bus is free.
    Done { bus_txn: u64 },
    /// A cache resends dirty data it handed over that memory has not
    /// confirmed (the arbiter may have crashed holding it).
    WriteBack {
        key: Key,
        value: u64,
        version: u64,
        incarnation: u64,
    },
    /// Memory holds this version of the key (or a newer one): the cache
    /// that supplied it may forget it.
    FlushAck { key: Key, version: u64 },
    /// Directory protocol: a node (re)started with an empty cache and an
    /// empty directory; every other node drops it as a holder and reports
    /// what it holds of the keys homed there.
    Recover { incarnation: u64 },
    /// The answer to `Recover`: the sender's lines whose home is the
    /// recovering node, and any dirty data it handed over that memory has
    /// not confirmed (it supplies that data again when asked).
    Report {
        /// The recovering home's incarnation being answered.
        home_incarnation: u64,
        /// The reporter's own.
        incarnation: u64,
        lines: Vec<(Key, State)>,
        handed_over: Vec<Key>,
    },
}

impl BusMsg {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            BusMsg::Request { op, .. } => op.name(),
            BusMsg::Snoop { .. } => "Snoop",
            BusMsg::SnoopReply { .. } => "SnoopReply",
            BusMsg::Grant { .. } => "Grant",
            BusMsg::Done { .. } => "Done",
            BusMsg::WriteBack { .. } => "WriteBack",
            BusMsg::FlushAck { .. } => "FlushAck",
            BusMsg::Recover { .. } => "Recover",
            BusMsg::Report { .. } => "Report",
        }
    }

    /// The directory protocol's name for the message (the names of Sorin,
    /// Hill and Wood's blocking directory, where one exists).
    pub fn directory_name(&self) -> &'static str {
        match self {
            BusMsg::Request { op, .. } => match op {
                BusOp::BusRd => "GetS",
                BusOp::BusRdX => "GetM",
                BusOp::BusUpgr => "Upgrade",
                BusOp::Flush => "PutM",
            },
            BusMsg::Snoop {
                op: BusOp::BusRd, ..
            } => "Fwd-GetS",
            BusMsg::Snoop { .. } => "Inv",
            BusMsg::SnoopReply { flush: Some(_), .. } => "Data",
            BusMsg::SnoopReply { .. } => "Ack",
            BusMsg::Done { .. } => "Unblock",
            other => other.name(),
        }
    }
}

/// The cache's settings on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusSetup {
    pub nodes: usize,
    /// Directory protocol: each key's home node orders its transactions
    /// and sends them only to the caches its directory lists. Otherwise
    /// the bus: one arbiter, every transaction snooped by every cache.
    pub directory: bool,
    /// The bus arbiter (bus protocol only).
    pub arbiter: NodeId,
    /// The memory shard's endpoint id.
    pub memory: NodeId,
    pub capacity: usize,
    pub timeout_ns: u64,
    pub bugs: CacheBugs,
}

/// Planted cache bugs (see `crate::bugs`); all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheBugs {
    pub no_invalidate_on_upgrade: bool,
    pub exclusive_despite_sharers: bool,
    pub drop_writeback_on_evict: bool,
    pub directory_forgets_sharer: bool,
}

impl BusSetup {
    /// The message as it goes on the wire, named for the protocol in traces.
    fn wire(&self, msg: BusMsg) -> Msg {
        wire(self.directory, msg)
    }
}

fn wire(directory: bool, msg: BusMsg) -> Msg {
    if directory {
        Msg::Dir(msg)
    } else {
        Msg::Bus(msg)
    }
}

/// Points per node on the ring that places keys on home nodes.
const HOME_VNODES: u32 = 64;

/// Which node is each key's home: the arbiter on the bus, the key's node
/// on the consistent-hash ring for the directory.
#[derive(Clone, Debug)]
struct Homes {
    arbiter: NodeId,
    ring: Option<Ring>,
}

impl Homes {
    fn new(setup: &BusSetup) -> Self {
        let ring = setup.directory.then(|| {
            let mut ring = Ring::new(HOME_VNODES);
            for n in 0..setup.nodes {
                ring.add(n as u32);
            }
            ring
        });
        Homes {
            arbiter: setup.arbiter,
            ring,
        }
    }

    fn of(&self, key: Key) -> NodeId {
        match &self.ring {
            Some(ring) => ring
                .shard_for(&key.to_be_bytes())
                .map_or(self.arbiter, |n| n as NodeId),
            None => self.arbiter,
        }
    }
}

/// Most operations a cache keeps waiting behind the one in progress.
const MAX_QUEUED: usize = 256;

/// An operation in progress at a cache.
#[derive(Clone, Copy, Debug)]
struct InProgress {
    op: CacheOp,
    txn: u64,
    /// The bus transaction asked for, and for which key.
    bus: BusOp,
    key: Key,
    /// True while writing back the victim before the operation proper.
    evicting: bool,
    /// Local monotonic time after which a grant is refused: the home
    /// stops waiting for this cache's `Done` only later than that, so a
    /// grant held up (or met by a node waking from a pause) can never be
    /// installed after the home has moved on and let others in.
    deadline: u64,
}

/// One node's cache controller (and, on the arbiter node, the arbiter).
#[derive(Clone)]
pub struct BusCache {
    setup: BusSetup,
    homes: Homes,
    /// This incarnation's number (grows with every restart).
    incarnation: u64,
    /// The newest incarnation of each arbiter or home that announced
    /// itself with `Recover`.
    homes_seen: BTreeMap<NodeId, u64>,
    /// M lines whose value and version went out in a write-back that did
    /// not complete: a late copy of it may still reach memory, so the next
    /// write takes a fresh version from the bus instead of reusing this one.
    exposed: BTreeSet<Key>,
    lines: Lines,
    /// Version of each line held in M or E (when its owner got it).
    versions: BTreeMap<Key, u64>,
    /// Valid lines whose key was never written: reads return None.
    unwritten: BTreeSet<Key>,
    /// The answer to the last snoop, by its sender and transaction, sent
    /// again if asked again (its copy of dirty data must survive a lost
    /// message).
    last_reply: Option<(NodeId, u64, BusMsg)>,
    /// Dirty data this cache handed over in a flush, kept until memory
    /// confirms it: (value, version) by key. Snoops of the key supply it
    /// again, and it is resent to the arbiter until acknowledged.
    pending_flush: BTreeMap<Key, (u64, u64)>,
    current: Option<InProgress>,
    queued: VecDeque<CacheOp>,
    next_txn: u64,
    arbiter: Option<Arbiter>,
    /// Generated operations: the generator and its [start, stop) in local time.
    load: Option<(CacheLoad, u64, u64)>,
}

impl BusCache {
    /// An empty cache (a restarted node rejoins with nothing).
    /// `incarnation` grows with every restart (the node's monotonic clock
    /// at start); `first_req` is random, and numbers its requests.
    pub fn new(id: NodeId, setup: BusSetup, incarnation: u64, first_req: u64) -> Self {
        let arbiter = if setup.directory {
            let d = Directory::new(setup.bugs.directory_forgets_sharer);
            Some(Arbiter::new(first_req, id, setup, Some(d)))
        } else {
            (id == setup.arbiter).then(|| Arbiter::new(first_req, id, setup, None))
        };
        BusCache {
            setup,
            homes: Homes::new(&setup),
            incarnation,
            homes_seen: BTreeMap::new(),
            exposed: BTreeSet::new(),
            lines: Lines::new(setup.capacity),
            versions: BTreeMap::new(),
            unwritten: BTreeSet::new(),
            last_reply: None,
            pending_flush: BTreeMap::new(),
            current: None,
            queued: VecDeque::new(),
            // Random per incarnation, so a grant meant for a request sent
            // before a crash never matches one sent after it.
            next_txn: first_req,
            arbiter,
            load: None,
        }
    }

    /// Directory protocol: announces this incarnation to every other node,
    /// which drops this node as a holder of anything (its cache is empty)
    /// and reports what it holds of the keys homed here. This node's
    /// directory serves requests once every node has reported.
    pub fn boot(&mut self, env: &mut impl Env) {
        if let Some(a) = self.arbiter.as_mut() {
            a.recover(env, &self.setup, self.incarnation);
        }
    }

    /// Adds generated operations in [start, stop) of local time, and
    /// schedules the first.
    pub fn start_load(&mut self, env: &mut impl Env, load: CacheLoad, start: u64, stop: u64) {
        let gap = load.first_gap_ns(env.now(), start, env.rng());
        env.set_timer(Timer::ClientNext, gap);
        self.load = Some((load, start, stop));
    }

    fn on_load_timer(&mut self, env: &mut impl Env) {
        let Some((load, _, stop)) = self.load.as_mut() else {
            return;
        };
        if env.now() >= *stop {
            return;
        }
        let op = load.next_op(env.rng());
        let gap = load.gap_ns(env.rng());
        env.set_timer(Timer::ClientNext, gap);
        self.on_op(env, op);
    }

    /// Every valid line, for dumps and summaries.
    pub fn lines(&self) -> impl Iterator<Item = (Key, Line)> + '_ {
        self.lines.iter()
    }

    /// A processor operation at this node.
    pub fn on_op(&mut self, env: &mut impl Env, op: CacheOp) {
        if self.current.is_some() {
            if self.queued.len() >= MAX_QUEUED {
                return fail(env, op, "too many operations waiting");
            }
            return self.queued.push_back(op);
        }
        self.begin(env, op);
    }

    /// Starts an operation that waited its turn: reads and writes are
    /// traced as started, so a history knows when each one was in progress.
    fn begin(&mut self, env: &mut impl Env, op: CacheOp) {
        if matches!(
            op,
            CacheOp::Get { .. } | CacheOp::Fetch { .. } | CacheOp::Put { .. }
        ) {
            let (op, key) = name_and_key(op);
            env.trace(TraceEvent::CacheStart { op, key });
        }
        self.start(env, op);
    }

    /// A bus message.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: BusMsg) {
        match msg {
            BusMsg::Snoop { bus_txn, key, op } => self.on_snoop(env, from, bus_txn, key, op),
            grant @ BusMsg::Grant { .. } => self.on_grant(env, from, grant),
            BusMsg::FlushAck { key, version } => {
                if self
                    .pending_flush
                    .get(&key)
                    .is_some_and(|&(_, v)| v <= version)
                {
                    self.pending_flush.remove(&key);
                }
            }
            BusMsg::Recover { incarnation } => self.on_recover(env, from, incarnation),
            BusMsg::Report {
                home_incarnation,
                incarnation,
                lines,
                handed_over,
            } => {
                let setup = self.setup;
                if let Some(a) = self.arbiter.as_mut() {
                    a.on_report(
                        env,
                        &setup,
                        from,
                        home_incarnation,
                        incarnation,
                        &lines,
                        &handed_over,
                    );
                }
            }
            BusMsg::Request { .. }
            | BusMsg::SnoopReply { .. }
            | BusMsg::Done { .. }
            | BusMsg::WriteBack { .. } => {
                let setup = self.setup;
                if let Some(a) = self.arbiter.as_mut() {
                    a.on_message(env, &setup, from, msg);
                }
            }
        }
    }

    /// Node `home` (a directory home, or the bus arbiter) (re)started,
    /// empty. The first time this incarnation announces itself, an
    /// operation waiting on it fails (a grant the old incarnation sent must
    /// not install a line the new one never hears of), and this node's
    /// directory forgets it as a holder. Every time, this node reports what
    /// it holds of the keys homed there (nothing, to the bus arbiter).
    fn on_recover(&mut self, env: &mut impl Env, home: NodeId, incarnation: u64) {
        let known = self.homes_seen.get(&home).copied().unwrap_or(0);
        if incarnation < known {
            return;
        }
        if let Some(a) = self.arbiter.as_mut()
            && !a.fresh(home, incarnation)
        {
            return;
        }
        self.homes_seen.insert(home, incarnation);
        if incarnation > known
            && let Some(c) = self.current.filter(|c| self.homes.of(c.key) == home)
        {
            self.current = None;
            env.cancel_timer(Timer::CacheOp);
            fail(env, c.op, "home restarted while the operation waited on it");
            self.next(env);
        }
        let homed_there = |k: Key| self.setup.directory && self.homes.of(k) == home;
        let lines = self
            .lines
            .iter()
            .filter(|&(k, _)| homed_there(k))
            .map(|(k, l)| (k, l.state))
            .collect();
        let handed_over = self
            .pending_flush
            .keys()
            .copied()
            .filter(|&k| homed_there(k))
            .collect();
        let msg = BusMsg::Report {
            home_incarnation: incarnation,
            incarnation: self.incarnation,
            lines,
            handed_over,
        };
        env.send(home, self.setup.wire(msg));
    }

    /// Memory's answer to the arbiter; false if not the arbiter's.
    pub fn on_shard_answer(&mut self, env: &mut impl Env, req: u64, answer: &ShardAnswer) -> bool {
        self.arbiter
            .as_mut()
            .is_some_and(|a| a.on_memory(env, req, answer))
    }

    /// The operation timer and the arbiter's transaction timer.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::CacheOp => {
                if let Some(c) = self.current.take() {
                    if c.bus == BusOp::Flush {
                        self.exposed.insert(c.key);
                    }
                    fail(env, c.op, "bus unreachable: no grant in time");
                    self.next(env);
                }
            }
            Timer::ClientNext => self.on_load_timer(env),
            Timer::FlushRetry => {
                for (&key, &(value, version)) in &self.pending_flush {
                    let msg = BusMsg::WriteBack {
                        key,
                        value,
                        version,
                        incarnation: self.incarnation,
                    };
                    env.send(self.homes.of(key), self.setup.wire(msg));
                }
                if !self.pending_flush.is_empty() {
                    env.set_timer(Timer::FlushRetry, self.setup.timeout_ns);
                }
            }
            Timer::BusTxn => {
                let setup = self.setup;
                if let Some(a) = self.arbiter.as_mut() {
                    a.on_timeout(env, &setup);
                }
            }
            _ => {}
        }
    }

    /// A crash: every line is gone; dirty ones were never written back, and
    /// neither was dirty data the arbiter held on its way to memory.
    pub fn crash(&mut self, env: &mut impl Env) {
        // Handed over but not confirmed: memory may or may not have it.
        for (&key, &(value, _)) in &self.pending_flush {
            env.trace(TraceEvent::CacheInDoubt { key, value });
        }
        self.pending_flush.clear();
        let lines: Vec<(Key, Line)> = self.lines.iter().collect();
        for (key, line) in lines {
            if line.state == State::Modified {
                env.trace(TraceEvent::CacheLost {
                    key,
                    value: line.value,
                });
            }
            transition(env, key, line.state, State::Invalid, "crash");
        }
        self.lines.clear();
        self.versions.clear();
        self.exposed.clear();
        self.unwritten.clear();
    }

    fn start(&mut self, env: &mut impl Env, op: CacheOp) {
        let (key, pop) = match op {
            CacheOp::Dump => {
                let lines = self
                    .lines
                    .iter()
                    .map(|(k, l)| (k, l.state.name()))
                    .collect();
                env.trace(TraceEvent::CacheDump { lines });
                return self.next(env);
            }
            CacheOp::Get { key } | CacheOp::Fetch { key } => (key, ProcessorOp::Read),
            CacheOp::Put { key, .. } => (key, ProcessorOp::Write),
            CacheOp::Invalidate { key } => (key, ProcessorOp::Evict),
        };
        let state = self.lines.peek(key).map_or(State::Invalid, |l| l.state);
        let step = mesi::on_processor(state, pop);
        if pop == ProcessorOp::Write && state == State::Modified && self.exposed.contains(&key) {
            // Outside the table: the line's version went out in an
            // unfinished write-back, so this write asks the bus for a new one.
            return self.request(env, op, key, BusOp::BusRdX, false);
        }
        let Some(bus) = step.bus else {
            self.complete_locally(env, op, key, state, step.next);
            return self.next(env);
        };
        // Room first: a full cache writes back (or silently drops) its LRU line.
        if state == State::Invalid
            && let Some((victim, line)) = self.lines.victim_for(key)
        {
            if line.state == State::Modified && !self.setup.bugs.drop_writeback_on_evict {
                return self.request(env, op, victim, BusOp::Flush, true);
            }
            self.drop_line(victim);
            transition(env, victim, line.state, State::Invalid, "evict");
        }
        self.request(env, op, key, bus, false);
    }

    /// A processor operation that needs no bus: a hit, a silent E->M
    /// upgrade, or dropping a clean line.
    fn complete_locally(
        &mut self,
        env: &mut impl Env,
        op: CacheOp,
        key: Key,
        state: State,
        next: Next,
    ) {
        let next = next.resolve(false);
        match op {
            CacheOp::Get { .. } | CacheOp::Fetch { .. } => {
                let line = self.lines.touch(key);
                let value = line
                    .filter(|_| !self.unwritten.contains(&key))
                    .map(|l| l.value);
                env.trace(TraceEvent::CacheRead {
                    key,
                    value,
                    hit: true,
                });
            }
            CacheOp::Put { value, .. } => {
                self.lines.touch(key);
                self.lines.set(key, next, value);
                self.unwritten.remove(&key);
                if state != next {
                    transition(env, key, state, next, "PrWr");
                }
                env.trace(TraceEvent::CacheWrite {
                    key,
                    value,
                    hit: true,
                });
            }
            CacheOp::Invalidate { .. } => {
                if state != State::Invalid {
                    self.drop_line(key);
                    transition(env, key, state, State::Invalid, "invalidate");
                }
            }
            CacheOp::Dump => {}
        }
    }

    fn request(&mut self, env: &mut impl Env, op: CacheOp, key: Key, bus: BusOp, evicting: bool) {
        let txn = self.next_txn;
        self.next_txn += 1;
        let line = self.lines.peek(key);
        let dirty = match (bus, line) {
            (BusOp::Flush, Some(l)) => {
                Some((l.value, self.versions.get(&key).copied().unwrap_or(0)))
            }
            _ => self.pending_flush.get(&key).copied(),
        };
        self.current = Some(InProgress {
            op,
            txn,
            bus,
            key,
            evicting,
            deadline: env.monotonic() + self.setup.timeout_ns,
        });
        let msg = BusMsg::Request {
            txn,
            key,
            op: bus,
            dirty,
            incarnation: self.incarnation,
        };
        env.send(self.homes.of(key), self.setup.wire(msg));
        env.set_timer(Timer::CacheOp, self.setup.timeout_ns);
    }

    /// Another cache's transaction, shown by the arbiter.
    fn on_snoop(&mut self, env: &mut impl Env, from: NodeId, bus_txn: u64, key: Key, op: BusOp) {
        if let Some((_, _, reply)) = self
            .last_reply
            .as_ref()
            .filter(|(f, t, _)| (*f, *t) == (from, bus_txn))
        {
            return env.send(from, self.setup.wire(reply.clone()));
        }
        let line = self.lines.peek(key);
        let state = line.map_or(State::Invalid, |l| l.state);
        if op == BusOp::Flush {
            // Another cache's write-back. On the atomic bus only the owner
            // writes back; here a cache that lost the line while its
            // write-back waited for the bus may still send it, and the new
            // owner must not take it for an invalidation.
            return self.answer_snoop(env, from, bus_txn, key, false, None);
        }
        // An upgrade that lost a race (its S copy was invalidated and someone
        // else became the owner) reaches the owner as a BusUpgr: serve it
        // as the BusRdX it now is, so the owner's data is not dropped.
        let op = if op == BusOp::BusUpgr && !mesi::is_possible(state, op) {
            BusOp::BusRdX
        } else {
            op
        };
        if op == BusOp::BusUpgr && self.setup.bugs.no_invalidate_on_upgrade {
            // Planted bug: "an upgrade carries no data, so nothing to do".
            return self.answer_snoop(env, from, bus_txn, key, false, None);
        }
        let step = mesi::on_snoop(state, op);
        let flush = (step.flush && state == State::Modified)
            .then(|| {
                let v = line.map_or(0, |l| l.value);
                (v, self.versions.get(&key).copied().unwrap_or(0))
            })
            .or_else(|| self.pending_flush.get(&key).copied());
        if let Some(f) = flush
            && state == State::Modified
        {
            if self.pending_flush.is_empty() {
                env.set_timer(Timer::FlushRetry, self.setup.timeout_ns);
            }
            self.pending_flush.insert(key, f);
        }
        if step.next != state {
            match step.next {
                State::Invalid => {
                    self.drop_line(key);
                }
                next => {
                    self.lines.set(key, next, line.map_or(0, |l| l.value));
                }
            }
            transition(env, key, state, step.next, op.name());
        }
        self.answer_snoop(env, from, bus_txn, key, step.shared, flush);
    }

    /// Answers a snoop, keeping the answer to send again if asked again.
    fn answer_snoop(
        &mut self,
        env: &mut impl Env,
        from: NodeId,
        bus_txn: u64,
        key: Key,
        shared: bool,
        flush: Option<(u64, u64)>,
    ) {
        let reply = BusMsg::SnoopReply {
            bus_txn,
            key,
            shared,
            flush,
            incarnation: self.incarnation,
        };
        self.last_reply = Some((from, bus_txn, reply.clone()));
        env.send(from, self.setup.wire(reply));
    }

    fn on_grant(&mut self, env: &mut impl Env, from: NodeId, grant: BusMsg) {
        let BusMsg::Grant {
            txn,
            bus_txn,
            ok,
            shared,
            data,
            version,
        } = grant
        else {
            return;
        };
        // The bus waits for every grant to be acknowledged, even a stale one.
        env.send(from, self.setup.wire(BusMsg::Done { bus_txn }));
        let Some(c) = self.current.filter(|c| c.txn == txn) else {
            return;
        };
        self.current = None;
        env.cancel_timer(Timer::CacheOp);
        if env.monotonic() > c.deadline {
            // Its timer has not fired only because this node was paused.
            if c.bus == BusOp::Flush {
                self.exposed.insert(c.key);
            }
            fail(env, c.op, "bus unreachable: no grant in time");
            return self.next(env);
        }
        if !ok {
            if c.bus == BusOp::Flush {
                self.exposed.insert(c.key);
            }
            fail(env, c.op, "bus transaction failed: a cache did not answer");
            return self.next(env);
        }
        if c.evicting {
            // The victim's write-back is on the bus (or a snoop already took
            // the line): it leaves, and the operation proper starts over.
            if let Some(line) = self.drop_line(c.key) {
                transition(env, c.key, line.state, State::Invalid, "evict");
            }
            return self.start(env, c.op);
        }
        self.install(env, c, shared, data, version);
        self.next(env);
    }

    /// Installs a granted line and completes the operation.
    fn install(
        &mut self,
        env: &mut impl Env,
        c: InProgress,
        shared: bool,
        data: Option<u64>,
        version: u64,
    ) {
        let key = c.key;
        let before = self.lines.peek(key).map_or(State::Invalid, |l| l.state);
        match (c.op, c.bus) {
            (CacheOp::Get { .. } | CacheOp::Fetch { .. }, _) => {
                let shared = shared && !self.setup.bugs.exclusive_despite_sharers;
                let next = Next::ExclusiveUnlessShared.resolve(shared);
                self.put_line(env, key, next, data.unwrap_or(0), version);
                if data.is_none() {
                    self.unwritten.insert(key);
                }
                let cause = if matches!(c.op, CacheOp::Fetch { .. }) {
                    "Fetch"
                } else {
                    "PrRd"
                };
                transition(env, key, before, next, cause);
                env.trace(TraceEvent::CacheRead {
                    key,
                    value: data,
                    hit: false,
                });
            }
            (CacheOp::Put { value, .. }, _) => {
                self.put_line(env, key, State::Modified, value, version);
                self.exposed.remove(&key);
                self.unwritten.remove(&key);
                if before != State::Modified {
                    transition(env, key, before, State::Modified, "PrWr");
                }
                env.trace(TraceEvent::CacheWrite {
                    key,
                    value,
                    // A write on a valid line is a hit even when it needed
                    // the bus (an upgrade from S, a fresh version for M).
                    hit: before != State::Invalid,
                });
            }
            (CacheOp::Invalidate { .. } | CacheOp::Dump, _) => {
                // Invalidating an M line writes it back (the Flush just granted).
                if let Some(line) = self.drop_line(key) {
                    transition(env, key, line.state, State::Invalid, "invalidate");
                }
            }
        }
    }

    fn put_line(&mut self, env: &mut impl Env, key: Key, state: State, value: u64, version: u64) {
        if self.lines.peek(key).is_none()
            && let Some((victim, line)) = self.lines.victim_for(key)
        {
            // Room was made when the request started, and only this cache
            // adds lines, so this is a bound kept, not a path taken.
            self.drop_line(victim);
            transition(env, victim, line.state, State::Invalid, "evict");
        }
        self.lines.put(key, Line { state, value });
        if matches!(state, State::Modified | State::Exclusive) {
            self.versions.insert(key, version);
        } else {
            self.versions.remove(&key);
        }
    }

    fn drop_line(&mut self, key: Key) -> Option<Line> {
        self.versions.remove(&key);
        self.exposed.remove(&key);
        self.unwritten.remove(&key);
        self.lines.remove(key)
    }

    fn next(&mut self, env: &mut impl Env) {
        while self.current.is_none() {
            let Some(op) = self.queued.pop_front() else {
                return;
            };
            self.begin(env, op);
        }
    }
}

/// The operation's name in traces, and its key (0 for a dump).
fn name_and_key(op: CacheOp) -> (&'static str, Key) {
    match op {
        CacheOp::Get { key } => ("get", key),
        CacheOp::Put { key, .. } => ("put", key),
        CacheOp::Invalidate { key } => ("invalidate", key),
        CacheOp::Fetch { key } => ("fetch", key),
        CacheOp::Dump => ("dump", 0),
    }
}

fn fail(env: &mut impl Env, op: CacheOp, reason: &'static str) {
    let (name, key) = name_and_key(op);
    env.trace(TraceEvent::CacheFailed {
        op: name,
        key,
        reason,
    });
}

fn transition(env: &mut impl Env, key: Key, from: State, to: State, cause: &'static str) {
    env.trace(TraceEvent::CacheTransition {
        key,
        from: from.name(),
        to: to.name(),
        cause,
    });
}

/// A transaction on the bus.
#[derive(Clone, Debug)]
struct OnBus {
    bus_txn: u64,
    requester: NodeId,
    txn: u64,
    key: Key,
    op: BusOp,
    /// Caches yet to answer the snoop.
    waiting: BTreeSet<NodeId>,
    shared: bool,
    /// The newest dirty data seen: from a snooping M holder or a write-back.
    data: Option<(u64, u64)>,
    /// Memory request in flight (write of flushed data, or read).
    memory_req: Option<u64>,
    /// Granted; waiting for the requester's Done.
    granted: bool,
    /// `data` came from a cache (a flush or a write-back): it must reach
    /// memory whatever becomes of the transaction.
    dirty: bool,
    /// Timed out: once any dirty data is in memory, it is answered as failed.
    failed: bool,
    /// Times the transaction's messages were sent again.
    retries: u32,
    /// The cache that supplied `data` by a flush, told once memory has it.
    flusher: Option<NodeId>,
    /// Caches that answered the snoop still holding a copy.
    kept: BTreeSet<NodeId>,
    /// The arbiter's monotonic time when it first granted.
    granted_at: u64,
    /// Late dirty data on its way to memory: no snoops, no grant.
    late: bool,
}

/// A request waiting for the bus.
#[derive(Clone, Copy, Debug)]
struct Queued {
    requester: NodeId,
    /// The requester's own number for it.
    txn: u64,
    key: Key,
    op: BusOp,
    /// Dirty data it carries, as (value, version).
    dirty: Option<(u64, u64)>,
    /// The requester's incarnation when it asked: a request whose sender
    /// has restarted since is dropped when its turn comes.
    incarnation: u64,
    /// Dirty data that arrived late (an answer to a transaction already
    /// over, or a cache's resend): it takes its turn like a write-back, so
    /// no later read of memory can overtake it, and nobody is granted.
    late: bool,
}

impl Queued {
    /// Dirty data that arrived outside a transaction (a write-back, or an
    /// answer to one already over), queued to reach memory in its turn.
    fn late_flush(from: NodeId, key: Key, dirty: (u64, u64), incarnation: u64) -> Self {
        Queued {
            requester: from,
            txn: 0,
            key,
            op: BusOp::Flush,
            dirty: Some(dirty),
            incarnation,
            late: true,
        }
    }
}

/// The arbiter: one transaction on the bus at a time, in arrival order.
#[derive(Clone)]
pub struct Arbiter {
    queue: VecDeque<Queued>,
    current: Option<OnBus>,
    next_req: u64,
    last_bus_txn: u64,
    setup: BusSetup,
    /// Directory protocol: the entries of the keys homed here. None on
    /// the bus, whose snoops reach every cache.
    directory: Option<Directory>,
    /// This arbiter's incarnation, which every `Report` must answer.
    incarnation: u64,
    /// The newest incarnation heard from each node; messages from older
    /// ones are ignored.
    seen: BTreeMap<NodeId, u64>,
    /// Nodes yet to report after this arbiter (re)started: until they all
    /// have, it runs no transaction (a home's directory knows nothing yet,
    /// and a grant sent before the restart may still be on its way to a
    /// cache that has not yet given up on it).
    unreported: BTreeSet<NodeId>,
}

/// Most requests the arbiter queues (a bound, as everywhere).
const MAX_BUS_QUEUE: usize = 4096;

impl Arbiter {
    fn new(first_req: u64, me: NodeId, setup: BusSetup, directory: Option<Directory>) -> Self {
        let nodes = setup.nodes;
        Arbiter {
            queue: VecDeque::new(),
            current: None,
            next_req: first_req,
            last_bus_txn: 0,
            setup,
            directory,
            incarnation: 0,
            seen: BTreeMap::new(),
            unreported: (0..nodes).filter(|&n| n != me).collect(),
        }
    }

    /// Notes a message from `node`'s `incarnation`: false if an older one
    /// sent it (the node has restarted since), which the arbiter ignores.
    /// A directory also forgets a restarted node as a holder.
    fn fresh(&mut self, node: NodeId, incarnation: u64) -> bool {
        if self
            .seen
            .get(&node)
            .is_some_and(|&known| incarnation < known)
        {
            return false;
        }
        self.seen.insert(node, incarnation);
        self.directory
            .as_mut()
            .is_none_or(|d| d.heard(node, incarnation))
    }

    fn wire(&self, msg: BusMsg) -> Msg {
        wire(self.directory.is_some(), msg)
    }

    /// Queues a request (a bound, as everywhere: a dropped write-back is
    /// resent by its cache until memory confirms it).
    fn enqueue(&mut self, q: Queued) {
        if self.queue.len() < MAX_BUS_QUEUE {
            self.queue.push_back(q);
        }
    }

    /// A (re)started arbiter or home announces itself to every other node
    /// and waits for each to answer: a home rebuilds its directory from the
    /// answers, and every cache gives up on operations sent to the old
    /// incarnation before answering.
    fn recover(&mut self, env: &mut impl Env, setup: &BusSetup, incarnation: u64) {
        self.incarnation = incarnation;
        self.ask_unreported(env, setup);
    }

    fn ask_unreported(&mut self, env: &mut impl Env, setup: &BusSetup) {
        if self.unreported.is_empty() {
            return;
        }
        let incarnation = self.incarnation;
        for &n in &self.unreported {
            env.send(n, setup.wire(BusMsg::Recover { incarnation }));
        }
        env.set_timer(Timer::BusTxn, retry_ns(setup.timeout_ns));
    }

    /// A node's answer to this home's `Recover`: its lines become the
    /// directory's entries, and once every node has answered the home
    /// starts serving.
    #[allow(clippy::too_many_arguments)]
    fn on_report(
        &mut self,
        env: &mut impl Env,
        setup: &BusSetup,
        from: NodeId,
        home_incarnation: u64,
        incarnation: u64,
        lines: &[(Key, State)],
        handed_over: &[Key],
    ) {
        if home_incarnation != self.incarnation {
            return;
        }
        if !self.fresh(from, incarnation) {
            return;
        }
        if !self.unreported.remove(&from) {
            return;
        }
        let ready = self.unreported.is_empty();
        let Some(d) = self.directory.as_mut() else {
            if ready {
                env.cancel_timer(Timer::BusTxn);
                self.advance(env, setup);
            }
            return;
        };
        for &(key, state) in lines {
            d.record(
                key,
                from,
                matches!(state, State::Modified | State::Exclusive),
            );
        }
        // A cache with dirty data in transit to memory must be asked for it
        // before memory is read: list it as the owner, whose snoop
        // supplies the data again.
        for &key in handed_over {
            d.record(key, from, true);
        }
        if ready {
            env.cancel_timer(Timer::BusTxn);
            self.advance(env, setup);
        }
    }

    fn on_message(&mut self, env: &mut impl Env, setup: &BusSetup, from: NodeId, msg: BusMsg) {
        match msg {
            BusMsg::Request {
                txn,
                key,
                op,
                dirty,
                incarnation,
            } => {
                if !self.fresh(from, incarnation) {
                    // Sent by an incarnation that has since restarted.
                    return;
                }
                self.enqueue(Queued {
                    requester: from,
                    txn,
                    key,
                    op,
                    dirty,
                    incarnation,
                    late: false,
                });
                self.advance(env, setup);
            }
            BusMsg::SnoopReply {
                bus_txn,
                key,
                shared,
                flush,
                incarnation,
            } => {
                if !self.fresh(from, incarnation) {
                    return;
                }
                if let Some((value, version)) = flush {
                    let current = self.current.as_mut().filter(|c| c.bus_txn == bus_txn);
                    match current {
                        Some(c) => {
                            if c.data.is_none_or(|(_, v)| version >= v) {
                                c.flusher = Some(from);
                            }
                            c.data = newer(c.data, Some((value, version)));
                            c.dirty = true;
                        }
                        // A late answer to a transaction already over still
                        // carries dirty data: it takes its turn to memory.
                        None => self.enqueue(Queued::late_flush(
                            from,
                            key,
                            (value, version),
                            incarnation,
                        )),
                    }
                }
                if let Some(c) = self.current.as_mut().filter(|c| c.bus_txn == bus_txn) {
                    c.waiting.remove(&from);
                    c.shared |= shared;
                    if shared {
                        c.kept.insert(from);
                    }
                }
                self.advance(env, setup);
            }
            BusMsg::Done { bus_txn } => {
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.bus_txn == bus_txn && c.granted)
                {
                    self.current = None;
                    env.cancel_timer(Timer::BusTxn);
                }
                self.advance(env, setup);
            }
            BusMsg::WriteBack {
                key,
                value,
                version,
                incarnation,
            } => {
                if self.fresh(from, incarnation) {
                    self.enqueue(Queued::late_flush(from, key, (value, version), incarnation));
                    self.advance(env, setup);
                }
            }
            BusMsg::Snoop { .. }
            | BusMsg::Grant { .. }
            | BusMsg::FlushAck { .. }
            | BusMsg::Recover { .. }
            | BusMsg::Report { .. } => {}
        }
    }

    fn on_memory(&mut self, env: &mut impl Env, req: u64, answer: &ShardAnswer) -> bool {
        let directory = self.directory.is_some();
        let Some(c) = self.current.as_mut().filter(|c| c.memory_req == Some(req)) else {
            return false;
        };
        c.memory_req = None;
        let ok = !c.failed;
        if let (ShardAnswer::Memory(_), true, Some(to), Some((_, version))) =
            (answer, c.dirty, c.flusher, c.data)
        {
            let key = c.key;
            env.send(to, wire(directory, BusMsg::FlushAck { key, version }));
        }
        match answer {
            ShardAnswer::Memory(v) => {
                c.data = newer(c.data, *v);
                self.grant(env, ok);
            }
            ShardAnswer::Done => self.grant(env, ok),
            _ => self.grant(env, false),
        }
        true
    }

    fn on_timeout(&mut self, env: &mut impl Env, setup: &BusSetup) {
        let incarnation = self.incarnation;
        if !self.unreported.is_empty() {
            return self.ask_unreported(env, setup);
        }
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if c.granted && !c.failed {
            // Granted, and no `Done`: the grant may still be on its way.
            // Wait until the requester must have stopped accepting it (its
            // deadline, plus a margin for clocks running at different
            // rates), asking again meanwhile; only then move on, its line
            // listed as held.
            if env.monotonic() < c.granted_at + setup.timeout_ns / 4 * 5 {
                self.send_grant(env);
                env.set_timer(Timer::BusTxn, retry_ns(setup.timeout_ns));
                return;
            }
            self.current = None;
            return self.advance(env, setup);
        }
        if c.retries < RETRIES && !c.failed {
            // Messages get lost: ask again whoever has not answered.
            c.retries += 1;
            let (bus_txn, key, op) = (c.bus_txn, c.key, c.op);
            for &n in &c.waiting {
                env.send(n, setup.wire(BusMsg::Snoop { bus_txn, key, op }));
            }
            if c.memory_req.is_some()
                && let Some(call) = memory_call(c, incarnation)
            {
                let req = self.next_req;
                self.next_req += 1;
                c.memory_req = Some(req);
                env.send(setup.memory, Msg::Shard { req, call });
            }
            if c.granted {
                self.send_grant(env);
            }
            env.set_timer(Timer::BusTxn, retry_ns(setup.timeout_ns));
            return;
        }
        if !c.granted
            && c.dirty
            && let Some((value, version)) = c.data
        {
            // A cache gave up its dirty copy for this transaction: the value
            // lives nowhere else, so the bus holds until memory has it (a
            // memory that stays unreachable stalls the bus, never loses data).
            c.failed = true;
            let req = self.next_req;
            self.next_req += 1;
            c.memory_req = Some(req);
            let call = ShardCall::MemSet {
                key: c.key,
                value,
                version,
                fence: incarnation,
            };
            env.send(setup.memory, Msg::Shard { req, call });
            env.set_timer(Timer::BusTxn, setup.timeout_ns);
            return;
        }
        if !c.granted {
            // Nothing granted and nothing to keep: the requester hears the
            // transaction failed, and the bus moves on.
            self.grant(env, false);
        }
        self.current = None;
        env.cancel_timer(Timer::BusTxn);
        self.advance(env, setup);
    }

    /// Starts the next transaction, or moves the current one on once every
    /// snoop is answered.
    fn advance(&mut self, env: &mut impl Env, setup: &BusSetup) {
        let incarnation = self.incarnation;
        if !self.unreported.is_empty() {
            // Recovering: not every cache has heard of this incarnation.
            return;
        }
        while self.current.is_none() {
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            if self
                .seen
                .get(&q.requester)
                .is_some_and(|&i| i > q.incarnation)
            {
                // Its sender restarted while it waited: its cache is empty
                // and any dirty data it carries is in doubt.
                continue;
            }
            let Queued {
                requester,
                txn,
                key,
                op,
                dirty: data,
                late,
                ..
            } = q;
            let bus_txn = self.last_bus_txn.max(env.monotonic()) + 1;
            self.last_bus_txn = bus_txn;
            let others: BTreeSet<NodeId> = match &self.directory {
                _ if late => BTreeSet::new(),
                Some(d) => d.targets(key, op, requester),
                None => (0..setup.nodes).filter(|&n| n != requester).collect(),
            };
            for &n in &others {
                env.send(n, setup.wire(BusMsg::Snoop { bus_txn, key, op }));
            }
            self.current = Some(OnBus {
                bus_txn,
                requester,
                txn,
                key,
                op,
                waiting: others,
                shared: false,
                data,
                memory_req: None,
                granted: false,
                dirty: data.is_some(),
                failed: false,
                retries: 0,
                // Told once memory has the data (a requester's own value
                // in transit stops being resent).
                flusher: data.map(|_| requester),
                kept: BTreeSet::new(),
                granted_at: 0,
                late,
            });
            env.set_timer(Timer::BusTxn, retry_ns(setup.timeout_ns));
        }
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if !c.waiting.is_empty() || c.memory_req.is_some() || c.granted {
            return;
        }
        let Some(call) = memory_call(c, incarnation) else {
            return self.grant(env, true);
        };
        let req = self.next_req;
        self.next_req += 1;
        c.memory_req = Some(req);
        env.send(setup.memory, Msg::Shard { req, call });
    }

    fn grant(&mut self, env: &mut impl Env, ok: bool) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if c.late {
            // Memory has it (or refused it as older): nobody to grant.
            self.current = None;
            env.cancel_timer(Timer::BusTxn);
            let setup = self.setup;
            return self.advance(env, &setup);
        }
        c.granted = true;
        c.granted_at = env.monotonic();
        c.failed |= !ok;
        if !c.failed
            && let Some(d) = self.directory.as_mut()
        {
            c.shared = d.granted(c.key, c.op, c.requester, &c.kept);
        }
        self.send_grant(env);
    }

    fn send_grant(&self, env: &mut impl Env) {
        let Some(c) = self.current.as_ref() else {
            return;
        };
        env.send(
            c.requester,
            self.wire(BusMsg::Grant {
                txn: c.txn,
                bus_txn: c.bus_txn,
                ok: !c.failed,
                shared: c.shared,
                data: c.data.map(|(v, _)| v),
                // A line granted now is owned from this transaction on.
                version: c.bus_txn,
            }),
        );
    }
}

/// Times a transaction's snoops, memory call or grant are sent again
/// before it fails; they are spread over the timeout.
const RETRIES: u32 = 4;

/// The wait between a transaction's tries: the timeout spread over them,
/// and never 0, since a timer of 0 fires again at the same instant and
/// simulated time would never move on (the parser keeps timeouts far above
/// this; the floor holds for any caller).
fn retry_ns(timeout_ns: u64) -> u64 {
    (timeout_ns / u64::from(RETRIES + 1)).max(1)
}

/// What the transaction needs from memory: dirty data written before
/// anyone can read memory again, or the data for a read; None if nothing.
/// `incarnation` (the arbiter's) fences out writes from before its restart.
fn memory_call(c: &OnBus, incarnation: u64) -> Option<ShardCall> {
    match c.data {
        Some((value, version)) if c.dirty => Some(ShardCall::MemSet {
            key: c.key,
            value,
            version,
            fence: incarnation,
        }),
        None if c.op == BusOp::BusRd => Some(ShardCall::MemGet {
            key: c.key,
            fence: incarnation,
        }),
        _ => None,
    }
}

/// The newer of two versioned values.
fn newer(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.1 >= x.1 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A home's directory: who holds each key homed here, as far as the home
/// knows.
///
/// The rule that keeps it safe: an entry may list a node that no longer
/// holds the line (an E or S line evicted silently, a node that crashed, a
/// snoop answered after the home gave up on it), since a needless
/// invalidation or forward costs only a message; it never omits a node that
/// does hold the line, since then a writer would not invalidate it.
#[derive(Clone, Debug)]
struct Directory {
    entries: BTreeMap<Key, Entry>,
    /// The newest incarnation heard from each node.
    incarnations: BTreeMap<NodeId, u64>,
    /// Planted bug `mesi.directory_forgets_sharer`.
    forget_sharer: bool,
}

/// One key's directory entry. The home cannot tell E from M (E turns into
/// M silently), so it keeps one owner for both; `sharers` hold S copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    owner: Option<NodeId>,
    sharers: BTreeSet<NodeId>,
    /// Rebuilt from reports after the home restarted: the owner slot may
    /// hold a cache with an old value in transit while the real M holder
    /// sits among the sharers, so the next read asks everyone listed.
    recovered: bool,
}

impl Directory {
    fn new(forget_sharer: bool) -> Self {
        Directory {
            forget_sharer,
            entries: BTreeMap::new(),
            incarnations: BTreeMap::new(),
        }
    }

    /// Notes a message from `node`'s `incarnation`. A newer incarnation
    /// restarted with an empty cache: it is dropped as a holder of every
    /// key (the stated rule for a restarted node). False if the message
    /// comes from an older incarnation, which the home ignores.
    fn heard(&mut self, node: NodeId, incarnation: u64) -> bool {
        match self.incarnations.get(&node) {
            Some(&known) if incarnation < known => false,
            Some(&known) if incarnation == known => true,
            _ => {
                self.incarnations.insert(node, incarnation);
                for e in self.entries.values_mut() {
                    e.sharers.remove(&node);
                    if e.owner == Some(node) {
                        e.owner = None;
                    }
                }
                self.entries.retain(|_, e| *e != Entry::default());
                true
            }
        }
    }

    /// Records a reported holder: the owner (M, E, or dirty data in
    /// transit), or a sharer.
    fn record(&mut self, key: Key, node: NodeId, owns: bool) {
        let e = self.entries.entry(key).or_default();
        e.recovered = true;
        if owns && e.owner.is_none_or(|o| o == node) {
            e.owner = Some(node);
        } else {
            e.sharers.insert(node);
        }
    }

    /// Which caches a transaction must reach: for a read, the owner (it
    /// may hold dirty data, and an E owner must drop to S); for a write,
    /// the owner and every sharer; for a write-back, nobody.
    fn targets(&self, key: Key, op: BusOp, requester: NodeId) -> BTreeSet<NodeId> {
        let Some(e) = self.entries.get(&key) else {
            return BTreeSet::new();
        };
        let mut t: BTreeSet<NodeId> = match op {
            BusOp::BusRd if !e.recovered => e.owner.into_iter().collect(),
            BusOp::BusRd => e.sharers.iter().copied().chain(e.owner).collect(),
            BusOp::BusRdX | BusOp::BusUpgr => e.sharers.iter().copied().chain(e.owner).collect(),
            BusOp::Flush => BTreeSet::new(),
        };
        t.remove(&requester);
        t
    }

    /// The entry after a granted transaction. `kept`: the snooped caches
    /// that still hold a copy. Returns the shared signal for a read: true
    /// when another cache may hold the line, so the reader gets S, not E.
    fn granted(&mut self, key: Key, op: BusOp, requester: NodeId, kept: &BTreeSet<NodeId>) -> bool {
        let e = self.entries.entry(key).or_default();
        let shared = match op {
            BusOp::BusRd => {
                if std::mem::take(&mut e.recovered) {
                    // Everyone listed was asked: those left hold S now.
                    e.sharers.retain(|n| kept.contains(n));
                }
                if let Some(o) = e.owner.take()
                    && o != requester
                    && kept.contains(&o)
                {
                    e.sharers.insert(o);
                }
                e.sharers.remove(&requester);
                let shared = !e.sharers.is_empty();
                if !shared {
                    e.owner = Some(requester);
                } else if !self.forget_sharer {
                    e.sharers.insert(requester);
                }
                shared
            }
            BusOp::BusRdX | BusOp::BusUpgr => {
                e.sharers.clear();
                e.owner = Some(requester);
                e.recovered = false;
                false
            }
            // A write-back changes nothing here: the requester drops its
            // line only if the grant reaches it in time, and a requester
            // that gave up still holds the line in M. Left listed, it is
            // asked (and found empty, or supplying its data) by the next
            // transaction on the key.
            BusOp::Flush => false,
        };
        if *e == Entry::default() {
            self.entries.remove(&key);
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    /// A home (n0 of 4) that has heard every node's first incarnation.
    fn home() -> Directory {
        let mut d = Directory::new(false);
        for n in 1..4 {
            assert!(d.heard(n, 10));
        }
        d
    }

    #[test]
    fn a_read_with_no_holder_is_exclusive_and_a_second_read_shares() {
        let mut d = home();
        assert!(d.targets(7, BusOp::BusRd, 1).is_empty());
        assert!(!d.granted(7, BusOp::BusRd, 1, &set(&[])), "E");
        // The owner is forwarded the next read and keeps a copy.
        assert_eq!(d.targets(7, BusOp::BusRd, 2), set(&[1]));
        assert!(d.granted(7, BusOp::BusRd, 2, &set(&[1])), "S");
        assert_eq!(
            d.entries[&7],
            Entry {
                owner: None,
                sharers: set(&[1, 2]),
                recovered: false,
            }
        );
    }

    #[test]
    fn an_owner_that_kept_nothing_leaves_the_entry() {
        let mut d = home();
        d.granted(7, BusOp::BusRd, 1, &set(&[]));
        // n1 evicted its E line silently; it answers the forward empty.
        assert!(!d.granted(7, BusOp::BusRd, 2, &set(&[])), "E, not S");
        assert_eq!(d.entries[&7].owner, Some(2));
        assert!(d.entries[&7].sharers.is_empty());
    }

    #[test]
    fn a_write_reaches_the_owner_and_every_sharer_but_not_the_writer() {
        let mut d = home();
        d.granted(7, BusOp::BusRd, 1, &set(&[]));
        d.granted(7, BusOp::BusRd, 2, &set(&[1]));
        d.granted(7, BusOp::BusRd, 3, &set(&[]));
        assert_eq!(d.targets(7, BusOp::BusUpgr, 2), set(&[1, 3]));
        assert_eq!(d.targets(7, BusOp::BusRdX, 0), set(&[1, 2, 3]));
        d.granted(7, BusOp::BusUpgr, 2, &set(&[]));
        assert_eq!(
            d.entries[&7],
            Entry {
                owner: Some(2),
                sharers: set(&[]),
                recovered: false,
            }
        );
        // A write-back reaches nobody and leaves the owner listed: its
        // grant may come too late, and the line then stays in M.
        assert!(d.targets(7, BusOp::Flush, 2).is_empty());
        d.granted(7, BusOp::Flush, 2, &set(&[]));
        assert_eq!(d.entries[&7].owner, Some(2));
    }

    #[test]
    fn a_restarted_node_is_forgotten_and_its_old_incarnation_ignored() {
        let mut d = home();
        d.granted(7, BusOp::BusRd, 1, &set(&[]));
        d.granted(7, BusOp::BusRd, 2, &set(&[1]));
        d.granted(8, BusOp::BusRdX, 1, &set(&[]));
        assert!(d.heard(1, 10), "the same incarnation changes nothing");
        assert_eq!(d.entries[&7].sharers, set(&[1, 2]));
        assert!(d.heard(1, 20), "a restart");
        assert_eq!(d.entries[&7].sharers, set(&[2]));
        assert!(
            !d.entries.contains_key(&8),
            "n1 owned key 8; nobody does now"
        );
        assert!(!d.heard(1, 10), "a request from before the restart");
    }

    #[test]
    fn reports_rebuild_owners_and_sharers() {
        let mut d = home();
        d.record(7, 1, true);
        d.record(7, 2, false);
        // Dirty data in transit makes its holder the one asked first; a
        // second claim of ownership (never both real) is kept as a sharer.
        d.record(7, 3, true);
        assert_eq!(d.entries[&7].owner, Some(1));
        assert_eq!(d.entries[&7].sharers, set(&[2, 3]));
        assert_eq!(d.targets(7, BusOp::BusRdX, 0), set(&[1, 2, 3]));
        // A rebuilt entry's first read asks everyone listed (the real M
        // holder may sit among the sharers), and keeps those that kept a copy.
        assert_eq!(d.targets(7, BusOp::BusRd, 0), set(&[1, 2, 3]));
        assert!(d.granted(7, BusOp::BusRd, 0, &set(&[3])));
        assert_eq!(d.entries[&7].sharers, set(&[0, 3]));
        assert_eq!(d.entries[&7].owner, None);
        assert_eq!(d.targets(7, BusOp::BusRd, 1), set(&[]), "exact again");
    }

    #[test]
    fn the_planted_bug_forgets_a_reader_granted_s() {
        let mut d = Directory::new(true);
        d.granted(7, BusOp::BusRd, 1, &set(&[]));
        assert!(d.granted(7, BusOp::BusRd, 2, &set(&[1])));
        assert_eq!(d.targets(7, BusOp::BusRdX, 3), set(&[1]), "n2 is missed");
    }

    #[test]
    fn homes_spread_keys_over_every_node_and_the_bus_has_one() {
        let setup = |directory| BusSetup {
            nodes: 3,
            directory,
            arbiter: 1,
            memory: 3,
            capacity: 10,
            timeout_ns: 1,
            bugs: CacheBugs::default(),
        };
        let bus = Homes::new(&setup(false));
        assert!((0..100).all(|k| bus.of(k) == 1));
        let dir = Homes::new(&setup(true));
        let mut per_node = [0u32; 3];
        for k in 0..3000 {
            per_node[dir.of(k)] += 1;
        }
        assert!(per_node.iter().all(|&c| c > 700), "{per_node:?}");
    }
}
