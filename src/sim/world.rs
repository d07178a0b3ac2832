//! The world: one thread, one event queue, every endpoint of a scenario.
//!
//! `World::run` steps events in (time, sequence) order until the scenario's
//! duration, feeding every traced event to the online checker as it happens
//! and stopping at the first violation.

use super::budget::{
    BudgetExceeded, MEMORY_CHECK_EVERY, RunLimits, entries, memory_check_interval,
};
use super::clock::Clock;
use super::network::{Fate, Network};
use super::queue::EventQueue;
use super::storage::Durable;
use super::timers::{Fired, Schedule, TimerSlots};
use crate::cache::bus::{BusSetup, CacheBugs};
use crate::cache::load::{CacheLoad, zipf_cdf};
use crate::check::cache_coherence::CacheChecker;
use crate::check::history::History;
use crate::check::lock_safety::LockChecker;
use crate::check::queue_delivery::QueueChecker;
use crate::check::raft_safety::{RaftChecker, Violation};
use crate::env::{Env, TIMER_KINDS, Timer};
use crate::kv::ClientRequest;
use crate::kv::client::{Client, ClientTiming, LoadProfile};
use crate::lock::client::{LockClient, LockLoad};
use crate::lock::resource::Resource;
use crate::node::{Msg, Node};
use crate::queue::client::{Consumer, ConsumerLoad, Producer, ProducerLoad};
use crate::queue::functions::{MessageId, Partition, Place};
use crate::queue::placement::{Placement, RingCommand};
use crate::queue::router::QueueSetup;
use crate::queue::shard::Shard;
use crate::rng::{Purpose, Rng};
use crate::scenario::{Action, CacheProtocol, ClientOp, Scenario, Target};
use crate::trace::{NodeId, QueueLayout, Role, Subject, TraceEvent, Tracer};
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
enum Event {
    Deliver { from: u32, to: u32, msg: Msg },
    Timer { ep: u32, slot: u8, generation: u32 },
    Step(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Up,
    Crashed,
    Paused,
}

#[derive(Clone)]
enum Actor {
    Node(Option<Box<Node>>),
    Client(Client),
    LockClient(LockClient),
    Resource(Resource),
    Shard(Shard),
    Producer(Producer),
    Consumer(Consumer),
}

#[derive(Clone)]
struct Endpoint {
    actor: Actor,
    clock: Clock,
    rng: Rng,
    timers: TimerSlots,
    status: Status,
    /// Messages that reached a paused node, delivered on resume.
    inbox: Vec<(NodeId, Msg)>,
    /// Timers that came due while paused, as a bit set of slots.
    missed_timers: u16,
    storage: Durable,
}

/// A violation with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub violation: Violation,
    /// Sequence number of the trace event that broke the invariant.
    pub seq: u64,
    pub t_ns: u64,
}

/// Counters for the run summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub elections: u64,
    pub first_leader_ns: Option<u64>,
    /// First time at or after `watch_from_ns` that a leader was elected.
    pub leader_after_watch_ns: Option<u64>,
    pub watch_from_ns: u64,
    pub events: u64,
    /// When a leader crashed and no successor has been elected yet.
    pub leader_lost_at_ns: Option<u64>,
    /// Time from each leader crash to the next election win.
    pub leader_recoveries_ns: Vec<u64>,
    /// Messages of the cache bus (requests, snoops, answers, grants).
    pub bus_messages: u64,
}

/// Everything that watches a run: trace, online checker, history, counters.
pub struct Observers {
    pub tracer: Tracer,
    pub checker: RaftChecker,
    pub lock_checker: LockChecker,
    /// The queue's delivery checker, when the scenario has shards.
    pub queue_checker: Option<QueueChecker>,
    /// The caches' coherence checker, when the scenario has caches.
    pub cache_checker: Option<CacheChecker>,
    pub history: History,
    pub stats: Stats,
    pub violation: Option<Found>,
    pub io_error: Option<std::io::Error>,
}

/// A copy watches on exactly as the original would, but its tracer writes
/// to no sink (see `Tracer::detached`): a snapshot of a run must not write
/// into the run's trace. A write error is kept as its kind and message.
impl Clone for Observers {
    fn clone(&self) -> Self {
        Observers {
            tracer: self.tracer.detached(),
            checker: self.checker.clone(),
            lock_checker: self.lock_checker.clone(),
            queue_checker: self.queue_checker.clone(),
            cache_checker: self.cache_checker.clone(),
            history: self.history.clone(),
            stats: self.stats.clone(),
            violation: self.violation.clone(),
            io_error: self
                .io_error
                .as_ref()
                .map(|e| std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl Observers {
    /// Keeps the first violation of the run: it is what stops the run.
    fn keep_first(&mut self, verdict: Result<(), Violation>, seq: u64, t_ns: u64) {
        if let Err(violation) = verdict
            && self.violation.is_none()
        {
            self.violation = Some(Found {
                violation,
                seq,
                t_ns,
            });
        }
    }

    /// Writes one event to the trace; returns its sequence number.
    fn write(&mut self, t_ns: u64, subject: Subject, ev: &TraceEvent) -> u64 {
        match self.tracer.record(t_ns, subject, ev) {
            Ok(seq) => seq,
            Err(e) => {
                self.io_error.get_or_insert(e);
                self.tracer.events()
            }
        }
    }

    fn record(&mut self, t_ns: u64, subject: Subject, ev: TraceEvent, durable: Option<&Durable>) {
        let seq = self.write(t_ns, subject, &ev);
        if let Some(c) = self.cache_checker.as_mut()
            && ev.kind().starts_with("cache.")
        {
            let verdict = c.observe(t_ns, subject, &ev);
            return self.keep_first(verdict, seq, t_ns);
        }
        // The queue checker also sees a shard's pauses, resumes, crashes and
        // restarts: its everysec window counts only the time a shard ran.
        let shard_fault = matches!(subject, Subject::Shard(_))
            && matches!(
                ev,
                TraceEvent::FaultPause
                    | TraceEvent::FaultResume
                    | TraceEvent::FaultCrash
                    | TraceEvent::FaultRestart
            );
        if let Some(q) = self.queue_checker.as_mut()
            && (shard_fault || ev.kind().starts_with("queue."))
        {
            let verdict = q.observe(t_ns, subject, &ev);
            return self.keep_first(verdict, seq, t_ns);
        }
        match (&ev, subject) {
            (TraceEvent::ClientInvoke { .. } | TraceEvent::ClientReturn { .. }, _) => {
                self.history.observe(t_ns, &ev)
            }
            (_, Subject::Node(n)) => {
                if let TraceEvent::RaftRole { role, .. } = ev {
                    if role == Role::Candidate {
                        self.stats.elections += 1;
                    }
                    if role == Role::Leader {
                        self.stats.first_leader_ns.get_or_insert(t_ns);
                        if let Some(lost) = self.stats.leader_lost_at_ns.take() {
                            self.stats.leader_recoveries_ns.push(t_ns - lost);
                        }
                        if t_ns >= self.stats.watch_from_ns {
                            self.stats.leader_after_watch_ns.get_or_insert(t_ns);
                        }
                    }
                }
                let verdict = self
                    .checker
                    .observe(n, &ev, durable.map(Durable::stable))
                    .and_then(|_| self.lock_checker.observe(n, &ev, t_ns));
                self.keep_first(verdict, seq, t_ns);
            }
            (TraceEvent::ResourceWrite { .. } | TraceEvent::LockRenewed { .. }, _) => {
                let verdict = self.lock_checker.observe_world(&ev, t_ns);
                self.keep_first(verdict, seq, t_ns);
            }
            _ => {}
        }
    }
}

/// The `Env` one endpoint sees while it handles one input.
struct Ctx<'a> {
    id: NodeId,
    nodes: usize,
    /// The protected resource's endpoint id (usize::MAX if none).
    resource: usize,
    queue_layout: QueueLayout,
    now_ns: u64,
    clock: &'a Clock,
    rng: &'a mut Rng,
    timers: &'a mut TimerSlots,
    storage: &'a mut Durable,
    queue: &'a mut EventQueue<Event>,
    net: &'a Network,
    net_rng: &'a mut Rng,
    obs: &'a mut Observers,
}

fn subject(nodes: usize, resource: usize, queue: &QueueLayout, id: NodeId) -> Subject {
    if let Some(s) = queue.subject(id) {
        s
    } else if id == resource {
        Subject::Resource
    } else if id < nodes {
        Subject::Node(id)
    } else {
        Subject::Client(id - nodes)
    }
}

fn schedule(queue: &mut EventQueue<Event>, ep: NodeId, s: Schedule) {
    if let Schedule::At {
        slot,
        generation,
        at_ns,
    } = s
    {
        queue.push(
            at_ns,
            Event::Timer {
                ep: ep as u32,
                slot: slot as u8,
                generation,
            },
        );
    }
}

impl Env for Ctx<'_> {
    type Storage = Durable;

    fn now(&self) -> u64 {
        self.clock.local(self.now_ns)
    }

    fn monotonic(&self) -> u64 {
        self.clock.monotonic(self.now_ns)
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        let (name, term) = (msg.name(), msg.term());
        let from = self.id;
        self.obs.stats.sent += 1;
        if matches!(msg, Msg::Bus(_) | Msg::Dir(_)) {
            self.obs.stats.bus_messages += 1;
        }
        let sent = TraceEvent::NetSend {
            from,
            to,
            msg: name,
            term,
        };
        let who = subject(self.nodes, self.resource, &self.queue_layout, from);
        let seq = self.obs.write(self.now_ns, who, &sent);
        if let Msg::Raft(m) = &msg
            && from < self.nodes
        {
            // Judged against stable storage as the message leaves.
            let verdict = self.obs.checker.on_send(from, to, m, self.storage.stable());
            self.obs.keep_first(verdict, seq, self.now_ns);
        }
        match self.net.route(from, to, self.net_rng) {
            Fate::Drop(reason) => {
                self.obs.stats.dropped += 1;
                self.obs.record(
                    self.now_ns,
                    subject(self.nodes, self.resource, &self.queue_layout, from),
                    TraceEvent::NetDrop {
                        from,
                        to,
                        msg: name,
                        term,
                        reason,
                    },
                    None,
                );
            }
            Fate::Deliver { delays_ns, copies } => {
                if copies == 2 {
                    self.queue.push(
                        self.now_ns + delays_ns[1],
                        Event::Deliver {
                            from: from as u32,
                            to: to as u32,
                            msg: msg.clone(),
                        },
                    );
                }
                self.queue.push(
                    self.now_ns + delays_ns[0],
                    Event::Deliver {
                        from: from as u32,
                        to: to as u32,
                        msg,
                    },
                );
            }
        }
    }

    fn set_timer(&mut self, timer: Timer, after_ns: u64) {
        let s = self
            .timers
            .set(timer as usize, after_ns, self.clock, self.now_ns);
        schedule(self.queue, self.id, s);
    }

    fn cancel_timer(&mut self, timer: Timer) {
        self.timers.cancel(timer as usize);
    }

    fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    fn storage(&mut self) -> &mut Durable {
        self.storage
    }

    fn trace(&mut self, ev: TraceEvent) {
        let durable = (self.id < self.nodes).then_some(&*self.storage);
        self.obs.record(
            self.now_ns,
            subject(self.nodes, self.resource, &self.queue_layout, self.id),
            ev,
            durable,
        );
    }
}

/// A scenario being simulated.
///
/// A clone is a copy of the run at this event: stepped on, it applies the
/// same events, draws the same numbers and writes the same trace (same
/// digest) as the original would, but into no sink (see `Observers`'
/// `Clone`) until its tracer is given one. The stepper keeps such copies
/// to go back without replaying the run from its start.
#[derive(Clone)]
pub struct World {
    sc: Scenario,
    n: usize,
    now_ns: u64,
    /// The run is over (its duration reached, or nothing left to happen).
    finished: bool,
    queue: EventQueue<Event>,
    net: Network,
    net_rng: Rng,
    eps: Vec<Endpoint>,
    crash_order: Vec<NodeId>,
    /// The protected resource's endpoint id (usize::MAX if none).
    resource_id: usize,
    /// Where shards, producers and consumers sit among the endpoints.
    queue_layout: QueueLayout,
    /// How nodes run the queue, and the placement they start from.
    queue_setup: Option<(QueueSetup, Placement)>,
    /// Key popularity for generated cache operations, shared by the nodes.
    cache_cdf: Option<Rc<Vec<f64>>>,
    pause_order: Vec<NodeId>,
    /// Index of the last fault step; a leader must exist soon after it.
    last_fault_step: Option<usize>,
    /// Set once a leader is present right after the last fault step.
    leader_present_after_fault: bool,
    /// The event and memory budgets, and which one stopped the run.
    limits: RunLimits,
    exceeded: Option<BudgetExceeded>,
    /// The event count at which the memory estimate is next computed.
    next_memory_check: u64,
    pub obs: Observers,
}

impl World {
    /// Builds the world for `sc` with `seed`, tracing into `tracer`.
    pub fn new(sc: &Scenario, seed: u64, tracer: Tracer) -> World {
        let n = sc.nodes;
        let w = &sc.workload;
        let scripted = sc
            .timeline
            .iter()
            .filter_map(|s| match s.action {
                Action::Client { client, .. } => Some(client + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let timing = ClientTiming {
            request_timeout_ns: w.request_timeout_ns,
            op_timeout_ns: w.op_timeout_ns,
        };
        let mut eps = Vec::with_capacity(n + w.clients + scripted);
        for i in 0..n {
            let c = sc.clocks.get(i).copied().unwrap_or_default();
            eps.push(Endpoint::new(
                Actor::Node(None),
                Clock::new(c.offset_ns, c.drift_ppm),
                Rng::stream(seed, Purpose::NodeTimers, i as u64),
            ));
        }
        for c in 0..w.clients + scripted {
            let load = (c < w.clients).then(|| LoadProfile {
                rate_per_s: w.rate_per_s,
                keys: w.keys.max(1) as u32,
                read_ratio: w.read_ratio,
                start_local: Clock::default().local(w.start_ns),
                stop_local: Clock::default().local(w.stop_ns),
            });
            let client = Client::new(c, n, timing, load);
            eps.push(Endpoint::new(
                Actor::Client(client),
                Clock::default(),
                Rng::stream(seed, Purpose::Client, c as u64),
            ));
        }
        let l = &sc.lock_load;
        // The protected resource comes right after the lock clients.
        let resource = n + w.clients + scripted + l.clients;
        for i in 0..l.clients {
            let index = w.clients + scripted + i;
            let load = LockLoad {
                locks: l.locks.max(1),
                max_per_round: l.max_per_round,
                shared_ratio: l.shared_ratio,
                hold_min_ns: l.hold_min_ns,
                hold_max_ns: l.hold_max_ns,
                gap_ns: l.gap_ns,
                ttl_ns: l.ttl_ns,
                crash_ratio: l.crash_ratio,
                start_local: Clock::default().local(l.start_ns),
                stop_local: Clock::default().local(l.stop_ns.min(sc.duration_ns)),
                request_timeout_ns: w.request_timeout_ns,
                service_wait_ns: sc.locks.wait_ns,
                resource,
            };
            let client = LockClient::new(index, n, load);
            eps.push(Endpoint::new(
                Actor::LockClient(client),
                Clock::default(),
                Rng::stream(seed, Purpose::Client, index as u64),
            ));
        }
        if l.clients > 0 {
            let r = Resource::new(!sc.bugs.no_fencing);
            eps.push(Endpoint::new(
                Actor::Resource(r),
                Clock::default(),
                Rng::stream(seed, Purpose::Client, resource as u64),
            ));
        }
        let queue_layout = push_queue_endpoints(&mut eps, sc, seed);
        let queue_setup = (queue_layout.shards > 0).then(|| queue_setup(sc, &queue_layout));
        let mut tracer = tracer;
        if l.clients > 0 {
            tracer.set_resource(resource);
        }
        tracer.set_queue_layout(queue_layout);
        let last_fault_step = sc
            .timeline
            .iter()
            .rposition(|s| !matches!(s.action, Action::Client { .. } | Action::Cache { .. }));
        let watch_from_ns = last_fault_step.map_or(0, |i| sc.timeline[i].at_ns);
        let obs = Observers {
            tracer,
            checker: RaftChecker::new(n),
            lock_checker: LockChecker::new(n),
            cache_checker: sc.cache.enabled.then(|| CacheChecker::new(n)),
            queue_checker: (queue_layout.producers + queue_layout.consumers > 0).then(|| {
                QueueChecker::new(
                    sc.redis.persistence,
                    sc.queue.max_attempts,
                    sc.queue.visibility_ns,
                )
            }),
            history: History::default(),
            stats: Stats {
                watch_from_ns,
                ..Stats::default()
            },
            violation: None,
            io_error: None,
        };
        let mut world = World {
            sc: sc.clone(),
            n,
            now_ns: 0,
            finished: false,
            queue: EventQueue::default(),
            net: Network::new(n, queue_layout.shards, queue_layout.shard_base, &sc.network),
            net_rng: Rng::stream(seed, Purpose::Network, 0),
            eps,
            crash_order: Vec::new(),
            resource_id: if sc.lock_load.clients > 0 {
                n + sc.workload.clients + scripted + sc.lock_load.clients
            } else {
                usize::MAX
            },
            queue_layout,
            queue_setup,
            cache_cdf: None,
            pause_order: Vec::new(),
            last_fault_step,
            leader_present_after_fault: false,
            limits: RunLimits::default(),
            exceeded: None,
            next_memory_check: MEMORY_CHECK_EVERY,
            obs,
        };
        for (i, step) in sc.timeline.iter().enumerate() {
            world.queue.push(step.at_ns, Event::Step(i as u32));
        }
        for id in 0..world.eps.len() {
            world.start_endpoint(id);
        }
        world
    }

    fn start_endpoint(&mut self, id: NodeId) {
        let (n, cfg, locks, bugs) = (self.n, self.sc.raft.clone(), self.sc.locks, self.sc.bugs);
        let queue = self.queue_setup.take();
        let cache = self.sc.cache.enabled.then(|| {
            let setup = BusSetup {
                nodes: n,
                directory: self.sc.cache.protocol == CacheProtocol::Directory,
                arbiter: self.sc.cache.arbiter,
                memory: self.queue_layout.shard_base,
                capacity: self.sc.cache.capacity,
                timeout_ns: self.sc.cache.op_timeout_ns,
                bugs: CacheBugs {
                    no_invalidate_on_upgrade: bugs.no_invalidate_on_upgrade,
                    exclusive_despite_sharers: bugs.exclusive_despite_sharers,
                    drop_writeback_on_evict: bugs.drop_writeback_on_evict,
                    directory_forgets_sharer: bugs.directory_forgets_sharer,
                },
            };
            let w = self.sc.cache_load;
            let load = (w.rate_per_s > 0.0 && id < n).then(|| {
                let cdf = self
                    .cache_cdf
                    .get_or_insert_with(|| Rc::new(zipf_cdf(w.keys, w.zipf)))
                    .clone();
                let local = |t: u64| self.eps[id].clock.local(t.min(self.sc.duration_ns));
                (
                    CacheLoad::new(id, w, cdf),
                    local(w.start_ns),
                    local(w.stop_ns),
                )
            });
            (setup, load)
        });
        self.with_ctx(id, |actor, ctx| match actor {
            Actor::Node(slot) => {
                let stable = ctx.storage.stable().clone();
                let q = queue.as_ref().map(|(s, p)| (*s, p));
                *slot = Some(Box::new(Node::start(
                    id, n, &cfg, &locks, bugs, &stable, q, cache, ctx,
                )));
            }
            Actor::Client(c) => c.start(ctx),
            Actor::LockClient(c) => c.start(ctx),
            Actor::Resource(_) => {}
            Actor::Shard(s) => s.start(ctx),
            Actor::Producer(p) => p.start(ctx),
            Actor::Consumer(c) => c.start(ctx),
        });
        self.queue_setup = queue;
    }

    fn with_ctx<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Actor, &mut Ctx) -> R) -> R {
        let World {
            n,
            now_ns,
            queue,
            net,
            net_rng,
            eps,
            obs,
            resource_id,
            queue_layout,
            ..
        } = self;
        let Endpoint {
            actor,
            clock,
            rng,
            timers,
            storage,
            ..
        } = &mut eps[id];
        let mut ctx = Ctx {
            id,
            nodes: *n,
            resource: *resource_id,
            queue_layout: *queue_layout,
            now_ns: *now_ns,
            clock,
            rng,
            timers,
            storage,
            queue,
            net,
            net_rng,
            obs,
        };
        f(actor, &mut ctx)
    }

    /// Current simulated time.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Runs until the scenario's duration, the first violation or a
    /// budget exceeded.
    pub fn run(&mut self) {
        while self.step() {}
    }

    /// Sets the budgets the run must stay within (the defaults otherwise).
    pub fn set_limits(&mut self, limits: RunLimits) {
        self.limits = limits;
    }

    /// The budget the run exceeded, which stopped it (None: within budget).
    pub fn budget_exceeded(&self) -> Option<BudgetExceeded> {
        self.exceeded
    }

    /// An estimate of the bytes the run keeps: the pending events, the
    /// checkers' histories and records, the Raft logs in memory and on the
    /// simulated disk, the Redis stand-in's keyspaces and append-only files.
    /// Computed from lengths times element sizes, so it is the same on every
    /// machine and on replay; it leaves out the trace (written out as it
    /// goes) and what stays small (nodes' fixed state, timers, clocks).
    pub fn retained_bytes(&self) -> u64 {
        let o = &self.obs;
        let mut bytes = self.queue.retained_bytes()
            + o.history.retained_bytes()
            + o.lock_checker.retained_bytes()
            + o.queue_checker
                .as_ref()
                .map_or(0, QueueChecker::retained_bytes)
            + o.cache_checker
                .as_ref()
                .map_or(0, CacheChecker::retained_bytes);
        for ep in &self.eps {
            let stored = ep.storage.stable().log.len() + ep.storage.pending_writes();
            bytes += entries::<crate::replicated::Entry>(stored);
            bytes += match &ep.actor {
                Actor::Node(Some(n)) => {
                    let r = n.raft();
                    let kept = r.last_index().saturating_sub(r.snapshot_index());
                    entries::<crate::replicated::Entry>(kept as usize)
                }
                Actor::LockClient(c) => {
                    entries::<crate::check::lock_history::LockOp>(c.stats().history.len())
                        + entries::<u64>(c.stats().acquire_latencies_ns.len())
                }
                Actor::Shard(s) => s.retained_bytes(),
                _ => 0,
            };
        }
        bytes
    }

    /// When the next event is due (None once nothing is left).
    pub fn next_event_time(&self) -> Option<u64> {
        if self.finished {
            return None;
        }
        self.queue.peek_time()
    }

    /// Applies the next event; false once the run is over (its duration
    /// reached, nothing left to happen, a violation found, or a budget
    /// exceeded).
    pub fn step(&mut self) -> bool {
        if self.finished || self.obs.violation.is_some() || self.exceeded.is_some() {
            return false;
        }
        let end = self.sc.duration_ns;
        match self.queue.pop() {
            Some((t, ev)) if t <= end => {
                if self.obs.stats.events >= self.limits.max_events {
                    self.exceeded = Some(BudgetExceeded::Events {
                        limit: self.limits.max_events,
                        at_ns: self.now_ns,
                    });
                    return false;
                }
                self.apply(t, ev);
                if self.obs.stats.events >= self.next_memory_check {
                    self.check_memory();
                }
                true
            }
            _ => {
                self.finished = true;
                self.now_ns = self.now_ns.max(end);
                false
            }
        }
    }

    /// Stops the run once its estimated state is over the memory budget.
    fn check_memory(&mut self) {
        let estimate = self.retained_bytes();
        self.next_memory_check = self.obs.stats.events + memory_check_interval(estimate);
        if estimate > self.limits.max_memory_bytes {
            self.exceeded = Some(BudgetExceeded::Memory {
                limit: self.limits.max_memory_bytes,
                estimate,
                events: self.obs.stats.events,
                at_ns: self.now_ns,
            });
        }
    }

    fn apply(&mut self, t: u64, ev: Event) {
        self.now_ns = t;
        self.obs.stats.events += 1;
        match ev {
            Event::Deliver { from, to, msg } => self.deliver(from as NodeId, to as NodeId, msg),
            Event::Timer {
                ep,
                slot,
                generation,
            } => self.fire_timer(ep as NodeId, slot as usize, generation),
            Event::Step(i) => self.run_step(i as usize),
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let (name, term) = (msg.name(), msg.term());
        let who = subject(self.n, self.resource_id, &self.queue_layout, to);
        match self.eps[to].status {
            Status::Crashed => {
                self.obs.stats.dropped += 1;
                self.obs.record(
                    self.now_ns,
                    who,
                    TraceEvent::NetDrop {
                        from,
                        to,
                        msg: name,
                        term,
                        reason: "crashed",
                    },
                    None,
                );
            }
            Status::Paused => self.eps[to].inbox.push((from, msg)),
            Status::Up => {
                self.obs.stats.delivered += 1;
                self.obs.record(
                    self.now_ns,
                    who,
                    TraceEvent::NetDeliver {
                        from,
                        to,
                        msg: name,
                        term,
                    },
                    None,
                );
                self.dispatch_message(to, from, msg);
            }
        }
    }

    fn dispatch_message(&mut self, to: NodeId, from: NodeId, msg: Msg) {
        self.with_ctx(to, |actor, ctx| match actor {
            Actor::Node(Some(node)) => node.on_message(ctx, from, msg),
            Actor::Node(None) => {}
            Actor::Client(c) => c.on_message(ctx, from, msg),
            Actor::LockClient(c) => c.on_message(ctx, from, msg),
            Actor::Resource(r) => r.on_message(ctx, from, msg),
            Actor::Shard(s) => s.on_message(ctx, from, msg),
            Actor::Producer(p) => p.on_message(ctx, msg),
            Actor::Consumer(c) => c.on_message(ctx, msg),
        });
    }

    fn fire_timer(&mut self, ep: NodeId, slot: usize, generation: u32) {
        let now = self.now_ns;
        let e = &mut self.eps[ep];
        match e.timers.fire(slot, generation, &e.clock, now) {
            Fired::Ignore => {}
            Fired::Requeue(s) => schedule(&mut self.queue, ep, s),
            Fired::Run if e.status == Status::Paused => e.missed_timers |= 1 << slot,
            Fired::Run => self.dispatch_timer(ep, Timer::from_index(slot)),
        }
    }

    fn dispatch_timer(&mut self, ep: NodeId, timer: Timer) {
        self.with_ctx(ep, |actor, ctx| match actor {
            Actor::Node(Some(node)) => node.on_timer(ctx, timer),
            Actor::Node(None) => {}
            Actor::Client(c) => c.on_timer(ctx, timer),
            Actor::LockClient(c) => c.on_timer(ctx, timer),
            Actor::Resource(_) => {}
            Actor::Shard(s) => s.on_timer(ctx, timer),
            Actor::Producer(p) => p.on_timer(ctx, timer),
            Actor::Consumer(c) => c.on_timer(ctx, timer),
        });
    }

    // ---- the timeline -------------------------------------------------------

    fn fault(&mut self, subject: Subject, ev: TraceEvent) {
        self.obs.record(self.now_ns, subject, ev, None);
    }

    fn skip(&mut self, action: &'static str, reason: &'static str) {
        self.fault(Subject::Net, TraceEvent::FaultSkipped { action, reason });
    }

    fn role_of(&self, id: NodeId) -> Option<(Role, u64)> {
        match &self.eps[id].actor {
            Actor::Node(Some(node)) if self.eps[id].status != Status::Crashed => {
                Some((node.raft().role(), node.raft().term()))
            }
            _ => None,
        }
    }

    /// The live leader with the highest term (lowest id on ties).
    pub fn current_leader(&self, include_paused: bool) -> Option<NodeId> {
        (0..self.n)
            .filter(|&i| include_paused || self.eps[i].status == Status::Up)
            .filter_map(|i| {
                self.role_of(i)
                    .filter(|(r, _)| *r == Role::Leader)
                    .map(|(_, t)| (t, i))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, i)| i)
    }

    fn resolve(&mut self, target: Target, include_paused: bool) -> Option<NodeId> {
        match target {
            Target::Node(i) => Some(i),
            Target::Leader => self.current_leader(include_paused),
            Target::Follower => (0..self.n).find(|&i| {
                self.eps[i].status == Status::Up
                    && self.role_of(i).is_some_and(|(r, _)| r != Role::Leader)
            }),
            Target::LastCrashed => self
                .crash_order
                .iter()
                .rev()
                .copied()
                .find(|&i| self.eps[i].status == Status::Crashed),
            Target::LastPaused => self
                .pause_order
                .iter()
                .rev()
                .copied()
                .find(|&i| self.eps[i].status == Status::Paused),
            Target::Shard(j) => Some(self.queue_layout.shard_base + j),
        }
    }

    fn subject_of(&self, id: NodeId) -> Subject {
        subject(self.n, self.resource_id, &self.queue_layout, id)
    }

    fn run_step(&mut self, i: usize) {
        let action = self.sc.timeline[i].action.clone();
        match action {
            Action::Crash(t) => match self.resolve(t, true) {
                Some(id) if self.eps[id].status != Status::Crashed => self.crash(id),
                Some(_) => self.skip("crash", "already crashed"),
                None => self.skip("crash", "no node has that role"),
            },
            Action::Restart(t) => match self.resolve(t, true) {
                Some(id) if self.eps[id].status == Status::Crashed => self.restart(id),
                Some(_) => self.skip("restart", "not crashed"),
                None => self.skip("restart", "no crashed node"),
            },
            Action::Pause(t) => match self.resolve(t, false) {
                Some(id) if self.eps[id].status == Status::Up => {
                    self.eps[id].status = Status::Paused;
                    if id < self.n {
                        self.pause_order.push(id);
                    }
                    self.fault(self.subject_of(id), TraceEvent::FaultPause);
                }
                Some(_) => self.skip("pause", "not running"),
                None => self.skip("pause", "no node has that role"),
            },
            Action::Resume(t) => match self.resolve(t, true) {
                Some(id) if self.eps[id].status == Status::Paused => self.resume(id),
                Some(_) => self.skip("resume", "not paused"),
                None => self.skip("resume", "no paused node"),
            },
            Action::Partition(groups) => {
                self.net.partition(&groups);
                self.fault(Subject::Net, TraceEvent::FaultPartition { groups });
            }
            Action::PartitionOneWay { from, to } => {
                self.net.partition_one_way(&from, &to);
                self.fault(Subject::Net, TraceEvent::FaultPartitionOneWay { from, to });
            }
            Action::Cache { node, op } => self.cache_op(node, op),
            Action::AddShard(s) => self.change_ring(RingCommand::Add(s), "add_shard"),
            Action::RemoveShard(s) => self.change_ring(RingCommand::Remove(s), "remove_shard"),
            Action::Heal => {
                self.net.heal();
                self.fault(Subject::Net, TraceEvent::FaultHeal);
            }
            Action::Network {
                link,
                both_ways,
                config,
            } => {
                self.net.set_link(link, config);
                if let (Some((a, b)), true) = (link, both_ways) {
                    self.net.set_link(Some((b, a)), config);
                }
                let ev = TraceEvent::FaultNetwork {
                    link,
                    both_ways,
                    loss: config.loss,
                    duplicate: config.duplicate,
                    reorder: config.reorder,
                    reorder_delay_max: config.reorder_delay_max_ns,
                    latency_min: config.latency_min_ns,
                    latency_max: config.latency_max_ns,
                };
                self.fault(Subject::Net, ev);
            }
            Action::Clock {
                node,
                offset_ns,
                drift_ppm,
                step_ns,
            } => self.change_clock(node, offset_ns, drift_ppm, step_ns),
            Action::Client { client, node, op } => self.scripted_op(client, node, op),
        }
        if Some(i) == self.last_fault_step
            && self
                .current_leader(false)
                .is_some_and(|l| self.reaches_majority(l))
        {
            self.leader_present_after_fault = true;
        }
    }

    /// True if `id` and a majority of the cluster (itself included) are
    /// running and connected both ways: a leader that can still commit.
    fn reaches_majority(&self, id: NodeId) -> bool {
        let reachable = (0..self.n)
            .filter(|&j| {
                self.eps[j].status == Status::Up
                    && (j == id || (self.net.connected(id, j) && self.net.connected(j, id)))
            })
            .count();
        reachable > self.n / 2
    }

    /// A scripted cache operation at a node's cache.
    fn cache_op(&mut self, node: NodeId, op: crate::scenario::CacheOp) {
        if !self.sc.cache.enabled {
            return self.skip("cache", "no caches in this scenario");
        }
        if self.eps[node].status != Status::Up {
            return self.skip("cache", "node not running");
        }
        self.with_ctx(node, |actor, ctx| {
            if let Actor::Node(Some(n)) = actor {
                n.cache_op(ctx, op);
            }
        });
    }

    /// Asks the current leader to change the queue's ring.
    fn change_ring(&mut self, cmd: RingCommand, action: &'static str) {
        let Some(leader) = self.current_leader(false) else {
            return self.skip(action, "no leader");
        };
        let accepted = self.with_ctx(leader, |actor, ctx| match actor {
            Actor::Node(Some(node)) => node.propose_ring(ctx, cmd),
            _ => false,
        });
        if !accepted {
            self.skip(action, "leader refused");
        }
    }

    fn crash(&mut self, id: NodeId) {
        if id >= self.n {
            return self.crash_shard(id);
        }
        if self.role_of(id).is_some_and(|(r, _)| r == Role::Leader) {
            self.obs.stats.leader_lost_at_ns.get_or_insert(self.now_ns);
        }
        // Messages held for a paused node die with it.
        for (from, msg) in std::mem::take(&mut self.eps[id].inbox) {
            self.obs.stats.dropped += 1;
            let ev = TraceEvent::NetDrop {
                from,
                to: id,
                msg: msg.name(),
                term: msg.term(),
                reason: "crashed",
            };
            self.obs.record(self.now_ns, Subject::Node(id), ev, None);
        }
        self.with_ctx(id, |actor, ctx| {
            if let Actor::Node(Some(node)) = actor {
                node.on_crash(ctx);
            }
        });
        let e = &mut self.eps[id];
        e.status = Status::Crashed;
        e.actor = Actor::Node(None);
        e.storage.crash();
        e.timers.clear();
        e.inbox.clear();
        e.missed_timers = 0;
        self.crash_order.push(id);
        self.fault(Subject::Node(id), TraceEvent::FaultCrash);
    }

    /// A shard crash: it loses what its persistence mode allows (traced by
    /// the shard itself), and everything in transit to it.
    fn crash_shard(&mut self, id: NodeId) {
        let who = self.subject_of(id);
        for (from, msg) in std::mem::take(&mut self.eps[id].inbox) {
            self.obs.stats.dropped += 1;
            let ev = TraceEvent::NetDrop {
                from,
                to: id,
                msg: msg.name(),
                term: msg.term(),
                reason: "crashed",
            };
            self.obs.record(self.now_ns, who, ev, None);
        }
        self.fault(who, TraceEvent::FaultCrash);
        self.with_ctx(id, |actor, ctx| {
            if let Actor::Shard(s) = actor {
                s.crash(ctx);
            }
        });
        let e = &mut self.eps[id];
        e.status = Status::Crashed;
        e.timers.clear();
        e.missed_timers = 0;
    }

    fn restart(&mut self, id: NodeId) {
        if id >= self.n {
            self.eps[id].status = Status::Up;
            self.fault(self.subject_of(id), TraceEvent::FaultRestart);
            return self.start_endpoint(id);
        }
        self.eps[id].status = Status::Up;
        self.fault(Subject::Node(id), TraceEvent::FaultRestart);
        let snapshot_index = self.eps[id].storage.stable().snapshot_index();
        self.obs.lock_checker.on_restart(id, snapshot_index);
        if let Err(violation) = self
            .obs
            .checker
            .on_recover(id, self.eps[id].storage.stable())
            && self.obs.violation.is_none()
        {
            self.obs.violation = Some(Found {
                violation,
                seq: self.obs.tracer.events().saturating_sub(1),
                t_ns: self.now_ns,
            });
        }
        self.start_endpoint(id);
    }

    fn resume(&mut self, id: NodeId) {
        self.eps[id].status = Status::Up;
        self.fault(self.subject_of(id), TraceEvent::FaultResume);
        for (from, msg) in std::mem::take(&mut self.eps[id].inbox) {
            if self.eps[id].status != Status::Up {
                break;
            }
            self.obs.stats.delivered += 1;
            let who = self.subject_of(id);
            self.obs.record(
                self.now_ns,
                who,
                TraceEvent::NetDeliver {
                    from,
                    to: id,
                    msg: msg.name(),
                    term: msg.term(),
                },
                None,
            );
            self.dispatch_message(id, from, msg);
        }
        let missed = std::mem::take(&mut self.eps[id].missed_timers);
        for slot in 0..TIMER_KINDS {
            if missed & (1 << slot) != 0 {
                self.dispatch_timer(id, Timer::from_index(slot));
            }
        }
    }

    fn change_clock(
        &mut self,
        node: NodeId,
        offset_ns: Option<i64>,
        drift_ppm: Option<i64>,
        step_ns: Option<i64>,
    ) {
        let now = self.now_ns;
        let e = &mut self.eps[node];
        let rate_before = e.clock.drift_ppm();
        // Drift first: changing it keeps local time continuous by adjusting
        // the offset, which an explicit offset then overrides.
        if let Some(d) = drift_ppm {
            e.clock.set_drift(d, now);
        }
        if let Some(o) = offset_ns {
            e.clock.set_offset(o);
        }
        if let Some(s) = step_ns {
            e.clock.step(s);
        }
        // Timers run on the monotonic clock, which a step or an offset
        // leaves alone: their queued global times move only with the rate.
        if e.clock.drift_ppm() != rate_before {
            for s in e.timers.reschedule(&e.clock, now) {
                schedule(&mut self.queue, node, s);
            }
        }
        let ev = TraceEvent::FaultClock {
            offset: offset_ns.unwrap_or(0),
            drift_ppm: drift_ppm.unwrap_or(0),
            step: step_ns.unwrap_or(0),
        };
        self.fault(Subject::Node(node), ev);
    }

    fn scripted_op(&mut self, client: usize, node: Target, op: ClientOp) {
        let target = self.resolve(node, true);
        if target.is_none() && node != Target::Leader {
            return self.skip("client", "no node has that role");
        }
        let ep = self.n + self.sc.workload.clients + client;
        let req = match op {
            ClientOp::Get { key } => ClientRequest::Get { key },
            ClientOp::Put { key, value } => ClientRequest::Put { key, value },
        };
        self.with_ctx(ep, |actor, ctx| {
            if let Actor::Client(c) = actor {
                c.script(ctx, target, req);
            }
        });
    }

    // ---- results ------------------------------------------------------------

    /// True if the node is crashed.
    pub fn is_crashed(&self, id: NodeId) -> bool {
        self.eps[id].status == Status::Crashed
    }

    /// True if the node is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.eps[id].status == Status::Paused
    }

    /// The running node `id`, if not crashed.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        match &self.eps[id].actor {
            Actor::Node(n) => n.as_deref(),
            _ => None,
        }
    }

    /// Stable last index of node `id`.
    pub fn durable_last_index(&self, id: NodeId) -> u64 {
        self.eps[id].storage.stable().last_index()
    }

    /// Whether a leader was present right after the last fault step.
    pub fn leader_present_after_fault(&self) -> bool {
        self.leader_present_after_fault
    }

    /// Client `index` (generated clients first, then scripted ones).
    pub fn client(&self, index: usize) -> Option<&Client> {
        match &self.eps.get(self.n + index)?.actor {
            Actor::Client(c) => Some(c),
            _ => None,
        }
    }

    /// Number of key-value clients (generated and scripted).
    pub fn clients(&self) -> usize {
        self.eps
            .iter()
            .filter(|e| matches!(e.actor, Actor::Client(_)))
            .count()
    }

    /// The lock clients, in order.
    pub fn lock_clients(&self) -> impl Iterator<Item = &LockClient> {
        self.eps.iter().filter_map(|e| match &e.actor {
            Actor::LockClient(c) => Some(c),
            _ => None,
        })
    }
}

impl World {
    /// Where the queue's endpoints are.
    pub fn queue_layout(&self) -> QueueLayout {
        self.queue_layout
    }

    /// Where every message finally is, over all shards (a crashed shard
    /// counts with what it will have when it restarts).
    pub fn queue_final_state(&mut self) -> BTreeMap<(Partition, MessageId), Place> {
        let now = self.now_ns;
        let l = self.queue_layout;
        let mut all = BTreeMap::new();
        for e in &mut self.eps[l.shard_base..l.shard_base + l.shards] {
            if let Actor::Shard(s) = &mut e.actor {
                all.append(&mut s.messages(e.clock.local(now)));
            }
        }
        all
    }

    /// True if shard `j` is crashed.
    pub fn shard_crashed(&self, j: usize) -> bool {
        self.eps[self.queue_layout.shard_base + j].status == Status::Crashed
    }

    /// Where every message on shard `j` is now, as its own clock reads the
    /// time; reading never changes the run (see `Shard::peek_messages`).
    pub fn shard_messages(&self, j: usize) -> Option<BTreeMap<(Partition, MessageId), Place>> {
        if j >= self.queue_layout.shards {
            return None;
        }
        let e = &self.eps[self.queue_layout.shard_base + j];
        match &e.actor {
            Actor::Shard(s) => Some(s.peek_messages(e.clock.local(self.now_ns))),
            _ => None,
        }
    }

    /// Who each endpoint is, as the trace names them, and the network.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut all: Vec<Subject> = (0..self.eps.len()).map(|id| self.subject_of(id)).collect();
        all.push(Subject::Net);
        all
    }
}

/// Adds the shards, producers and consumers after every other endpoint.
fn push_queue_endpoints(eps: &mut Vec<Endpoint>, sc: &Scenario, seed: u64) -> QueueLayout {
    let (r, q, w) = (&sc.redis, &sc.queue, &sc.queue_load);
    let partitions = q.partitions * q.queues.len() as u32;
    let mut layout = QueueLayout {
        shard_base: eps.len(),
        shards: r.shards,
        ..QueueLayout::default()
    };
    let push = |eps: &mut Vec<Endpoint>, actor: Actor| {
        let id = eps.len() as u64;
        let rng = Rng::stream(seed, Purpose::Client, id);
        eps.push(Endpoint::new(actor, Clock::default(), rng));
    };
    for _ in 0..r.shards {
        let shard = Shard::new(r.persistence, partitions, sc.bugs.everysec_loses_too_much);
        push(eps, Actor::Shard(shard));
    }
    if r.shards == 0 {
        return layout;
    }
    let timeout = sc.workload.request_timeout_ns;
    layout.producer_base = eps.len();
    layout.producers = w.producers;
    for i in 0..w.producers {
        let load = ProducerLoad {
            nodes: sc.nodes,
            queues: q.queues.len() as u32,
            partitions_per_queue: q.partitions,
            rate_per_s: w.rate_per_s,
            batch: w.batch.max(1),
            keys: w.keys,
            hot_ratio: w.hot_ratio,
            poison_ratio: w.poison_ratio,
            start_local: Clock::default().local(w.start_ns),
            stop_local: Clock::default().local(w.stop_ns.min(sc.duration_ns)),
            request_timeout_ns: timeout,
        };
        push(eps, Actor::Producer(Producer::new(i as u32, load)));
    }
    layout.consumer_base = eps.len();
    layout.consumers = w.consumers;
    for i in 0..w.consumers {
        let load = ConsumerLoad {
            nodes: sc.nodes,
            partitions,
            consume_batch: w.consume_batch.max(1),
            process_min_ns: w.process_min_ns,
            process_max_ns: w.process_max_ns,
            crash_ratio: w.crash_ratio,
            down_ns: w.consumer_down_ns,
            request_timeout_ns: timeout,
        };
        push(eps, Actor::Consumer(Consumer::new(i as u32, load)));
    }
    layout
}

/// How every node runs the queue, and the placement at epoch 0.
fn queue_setup(sc: &Scenario, layout: &QueueLayout) -> (QueueSetup, Placement) {
    let setup = QueueSetup {
        shard_base: layout.shard_base,
        visibility_ns: sc.queue.visibility_ns,
        max_attempts: sc.queue.max_attempts,
        ack_before_write: sc.bugs.ack_before_write,
        no_visibility_timeout: sc.bugs.no_visibility_timeout,
        drop_inflight_on_rebalance: sc.bugs.drop_inflight_on_rebalance,
    };
    let initial: Vec<u32> = if sc.redis.initial_ring.is_empty() {
        (0..sc.redis.shards as u32).collect()
    } else {
        sc.redis.initial_ring.clone()
    };
    let partitions = sc.queue.partitions * sc.queue.queues.len() as u32;
    let placement = Placement::new(&initial, sc.redis.vnodes, partitions);
    (setup, placement)
}

impl Endpoint {
    fn new(actor: Actor, clock: Clock, rng: Rng) -> Endpoint {
        Endpoint {
            actor,
            clock,
            rng,
            timers: TimerSlots::default(),
            status: Status::Up,
            inbox: Vec::new(),
            missed_timers: 0,
            storage: Durable::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::shipped::SHIPPED;

    fn shipped(name: &str) -> Scenario {
        let (_, text) = SHIPPED.iter().find(|(n, _)| *n == name).unwrap();
        crate::scenario::parse::parse_scenario(text, name).unwrap()
    }

    /// Steps `world` until `events` events have been simulated.
    fn run_to(world: &mut World, events: u64) {
        while world.obs.stats.events < events {
            assert!(world.step(), "the run ended before {events} events");
        }
    }

    #[test]
    fn the_memory_estimate_grows_with_a_long_run() {
        for name in [
            "queue-steady",
            "lock-contention",
            "leader-crash",
            "cache-bus-zipf",
        ] {
            let sc = shipped(name);
            let mut world = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
            run_to(&mut world, 1_000);
            let early = world.retained_bytes();
            run_to(&mut world, 10_000);
            let later = world.retained_bytes();
            assert!(
                later > early + 10_000,
                "{name}: {early} bytes after 1,000 events, {later} after 10,000"
            );
            // Lengths, not the allocator: the same run gives the same figure.
            let mut again = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
            run_to(&mut again, 10_000);
            assert_eq!(again.retained_bytes(), later, "{name}");
        }
    }

    #[test]
    fn a_copy_runs_on_as_the_original_would() {
        for name in [
            "queue-shard-crash-everysec",
            "queue-add-shard",
            "lock-contention",
            "cache-dir-crash",
            "cache-bus-zipf",
            "crash-restart-all",
            "flapping-partitions",
        ] {
            let sc = shipped(name);
            let mut alone = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
            alone.run();
            let mut world = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
            run_to(&mut world, alone.obs.stats.events / 2);
            let mut copy = world.clone();
            // The copy runs first: were any state shared, the original
            // would then diverge.
            copy.run();
            world.run();
            for w in [&copy, &world] {
                assert_eq!(w.obs.tracer.digest(), alone.obs.tracer.digest(), "{name}");
                assert_eq!(w.obs.tracer.events(), alone.obs.tracer.events(), "{name}");
                assert_eq!(w.obs.stats.events, alone.obs.stats.events, "{name}");
                assert_eq!(w.now_ns(), alone.now_ns(), "{name}");
            }
        }
    }

    #[test]
    fn a_budget_stops_the_run_and_says_which() {
        let sc = shipped("queue-steady");
        let mut world = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
        world.set_limits(RunLimits {
            max_events: 700,
            ..RunLimits::default()
        });
        world.run();
        assert_eq!(world.obs.stats.events, 700);
        assert!(matches!(
            world.budget_exceeded(),
            Some(BudgetExceeded::Events { limit: 700, .. })
        ));
        assert!(!world.step(), "a stopped run stays stopped");
        let mut world = World::new(&sc, sc.seed, Tracer::new(sc.nodes, None));
        world.set_limits(RunLimits {
            max_memory_bytes: 64 << 10,
            ..RunLimits::default()
        });
        world.run();
        let Some(BudgetExceeded::Memory {
            estimate, events, ..
        }) = world.budget_exceeded()
        else {
            panic!("{:?}", world.budget_exceeded());
        };
        assert!(estimate > 64 << 10);
        assert_eq!(
            events % MEMORY_CHECK_EVERY,
            0,
            "checked every so many events"
        );
        assert_eq!(world.obs.stats.events, events);
    }
}
