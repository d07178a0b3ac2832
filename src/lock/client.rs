//! A simulated lock client: opens a session, keeps it alive, and loops
//! acquiring a few random locks (in random order and modes, so deadlocks
//! happen), holding them a while, and releasing them. Sometimes it falls
//! silent while holding, as a crashed process would, and comes back later
//! with a new session.

use super::protocol::{LockReply, LockRequest};
use super::resource::Phase as Phase2;
use super::state::{LockError, LockId, Mode, SessionId};
use crate::check::lock_history::{LockInput, LockOp, LockOutput};
use crate::env::{Env, Timer};
use crate::kv::{ClientReply, ClientRequest};
use crate::node::Msg;
use crate::sim::clock::LOCAL_EPOCH_NS;
use crate::trace::{NodeId, TraceEvent};

/// How a lock client behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LockLoad {
    /// Locks 0..locks are used.
    pub locks: u32,
    /// Each round takes 1..=max_per_round distinct locks.
    pub max_per_round: u32,
    /// Probability that a lock is taken shared.
    pub shared_ratio: f64,
    /// Holds last uniformly within [hold_min_ns, hold_max_ns].
    pub hold_min_ns: u64,
    pub hold_max_ns: u64,
    /// Mean pause between rounds.
    pub gap_ns: u64,
    /// Session lease.
    pub ttl_ns: u64,
    /// Probability of pausing while holding, for 2 TTLs.
    pub crash_ratio: f64,
    /// Local-clock window in which rounds start.
    pub start_local: u64,
    pub stop_local: u64,
    /// Give up on one request (and retry it elsewhere) after this long.
    pub request_timeout_ns: u64,
    /// How long the service lets an acquire wait (the client waits a bit longer).
    pub service_wait_ns: u64,
    /// The protected resource's endpoint.
    pub resource: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// No session; opening one.
    Opening,
    /// Between rounds.
    Idle,
    /// Taking `plan[next]`; `tokens` of those taken so far.
    Acquiring {
        plan: Vec<(LockId, Mode)>,
        next: usize,
        tokens: Vec<u64>,
    },
    /// Holding every lock of the round, with their tokens.
    Holding {
        plan: Vec<(LockId, Mode)>,
        tokens: Vec<u64>,
    },
    /// Giving back `plan[..left]`, last first.
    Releasing {
        plan: Vec<(LockId, Mode)>,
        left: usize,
    },
    /// Paused while holding (a stop-the-world pause, a swapped-out
    /// process): silent, then it finishes its critical section as if
    /// nothing happened, which only fencing makes safe.
    Silent {
        plan: Vec<(LockId, Mode)>,
        tokens: Vec<u64>,
    },
}

/// Counters for the run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockClientStats {
    pub rounds: u64,
    pub grants: u64,
    pub deadlocks: u64,
    pub timeouts: u64,
    pub lost_sessions: u64,
    pub crashes: u64,
    /// Writes the resource turned away for a stale token.
    pub fencing_rejections: u64,
    /// Simulated-time latency of each granted acquire, from first send.
    pub acquire_latencies_ns: Vec<u64>,
    /// Every answered acquire and release, for the offline history check.
    pub history: Vec<LockOp>,
}

/// One lock client.
#[derive(Clone)]
pub struct LockClient {
    /// This client's number on the wire.
    index: u32,
    nodes: usize,
    load: LockLoad,
    target: NodeId,
    session: Option<SessionId>,
    phase: Phase,
    seq: u64,
    /// The request in flight and when it was first sent (local time).
    in_flight: Option<(LockRequest, u64)>,
    /// True while the retry timer is a back-off, not a request timeout.
    backing_off: bool,
    keepalive_seq: u64,
    /// Keep-alives awaiting an answer: seq -> local send time.
    keepalives: std::collections::BTreeMap<u64, u64>,
    stats: LockClientStats,
}

const BACKOFF_NS: u64 = 10_000_000;
/// Chance that a round takes one of its locks a second time.
const REENTRY_CHANCE: f64 = 0.15;
/// Chance that a round with a shared lock upgrades it at the end.
const UPGRADE_CHANCE: f64 = 0.15;
/// Keep-alives are numbered from here, apart from ordinary requests.
const KEEPALIVE_SEQ_BASE: u64 = 1 << 62;

impl LockClient {
    /// Lock client number `index` (its client id on the wire) of `nodes` nodes.
    pub fn new(index: usize, nodes: usize, load: LockLoad) -> Self {
        LockClient {
            index: index as u32,
            nodes,
            load,
            target: index % nodes,
            session: None,
            phase: Phase::Opening,
            seq: 0,
            in_flight: None,
            backing_off: false,
            keepalive_seq: 0,
            keepalives: std::collections::BTreeMap::new(),
            stats: LockClientStats::default(),
        }
    }

    /// What this client saw.
    pub fn stats(&self) -> &LockClientStats {
        &self.stats
    }

    /// Starts: open a session when the load window opens.
    pub fn start(&mut self, env: &mut impl Env) {
        let wait = self.load.start_local.saturating_sub(env.now());
        env.set_timer(Timer::ClientNext, wait + 1);
    }

    fn request(&mut self, env: &mut impl Env, req: LockRequest) {
        self.seq += 1;
        self.in_flight = Some((req, env.now()));
        self.send(env);
    }

    fn send(&mut self, env: &mut impl Env) {
        let Some((req, _)) = self.in_flight else {
            return;
        };
        self.backing_off = false;
        env.send(
            self.target,
            Msg::Request {
                seq: self.seq,
                req: ClientRequest::Lock(req),
            },
        );
        env.set_timer(Timer::ClientRetry, self.load.request_timeout_ns);
    }

    /// Handles a timer.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::ClientRetry if self.in_flight.is_some() && !self.silent() => {
                if !self.backing_off {
                    // No answer: that node may be down or cut off; ask the next one.
                    self.target = (self.target + 1) % self.nodes;
                }
                self.send(env);
            }
            Timer::ClientNext => self.next_step(env),
            Timer::LeaseCheck if !self.silent() => {
                if self.keepalives.len() >= 2 {
                    // Two renewals unanswered: that node may be down or cut off.
                    self.target = (self.target + 1) % self.nodes;
                    self.keepalives.clear();
                }
                self.keep_alive(env, self.target);
                env.set_timer(Timer::LeaseCheck, self.load.ttl_ns / 3);
            }
            _ => {}
        }
    }

    /// Starts whatever comes next when nothing is in flight.
    fn next_step(&mut self, env: &mut impl Env) {
        if self.in_flight.is_some() {
            return;
        }
        match self.phase.clone() {
            Phase::Silent { plan, tokens } => {
                // Back from the pause: finish the critical section, then release.
                env.set_timer(Timer::LeaseCheck, 1);
                self.phase = Phase::Holding { plan, tokens };
                self.next_step(env);
            }
            Phase::Opening => {
                if env.now() < self.load.stop_local {
                    self.request(
                        env,
                        LockRequest::Open {
                            ttl_ns: self.load.ttl_ns,
                        },
                    );
                }
            }
            Phase::Idle => {
                if env.now() >= self.load.stop_local {
                    if let Some(session) = self.session {
                        self.request(env, LockRequest::Close { session });
                    }
                    return;
                }
                let plan = self.draw_round(env);
                self.stats.rounds += 1;
                self.phase = Phase::Acquiring {
                    plan,
                    next: 0,
                    tokens: Vec::new(),
                };
                self.next_step(env);
            }
            Phase::Acquiring { plan, next, .. } => {
                let (lock, mode) = plan[next];
                let session = self.session.unwrap_or(0);
                self.request(
                    env,
                    LockRequest::Acquire {
                        session,
                        lock,
                        mode,
                        wait: true,
                    },
                );
            }
            Phase::Holding { plan, tokens } => {
                self.write(env, &plan, &tokens, Phase2::End);
                let len = plan.len();
                self.phase = Phase::Releasing { plan, left: len };
                self.next_step(env);
            }
            Phase::Releasing { plan, left } => {
                if left == 0 {
                    self.phase = Phase::Idle;
                    let gap = env.rng().exponential(self.load.gap_ns as f64) as u64;
                    env.set_timer(Timer::ClientNext, gap + 1);
                    return;
                }
                let session = self.session.unwrap_or(0);
                self.request(
                    env,
                    LockRequest::Release {
                        session,
                        lock: plan[left - 1].0,
                    },
                );
            }
        }
    }

    fn draw_round(&mut self, env: &mut impl Env) -> Vec<(LockId, Mode)> {
        let rng = env.rng();
        let count = rng.between(
            1,
            self.load.max_per_round.max(1).min(self.load.locks) as u64,
        ) as usize;
        // A full shuffle, O(locks) a round: a sampler drawing only `count`
        // ids would consume the RNG differently and change every pinned
        // trace, so the parser's limit on `locks` bounds this instead.
        let mut locks: Vec<LockId> = (0..self.load.locks).collect();
        for i in (1..locks.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            locks.swap(i, j);
        }
        locks.truncate(count);
        let mut plan: Vec<(LockId, Mode)> = locks
            .into_iter()
            .map(|l| {
                (
                    l,
                    if rng.chance(self.load.shared_ratio) {
                        Mode::Shared
                    } else {
                        Mode::Exclusive
                    },
                )
            })
            .collect();
        // Sometimes take a held lock again (re-entry: same token, one more
        // hold), or upgrade a shared one to exclusive at the end of the round.
        if rng.chance(REENTRY_CHANCE) {
            let again = plan[rng.below(plan.len() as u64) as usize];
            plan.push(again);
        }
        if rng.chance(UPGRADE_CHANCE)
            && let Some(&(lock, _)) = plan.iter().find(|(_, m)| *m == Mode::Shared)
        {
            plan.push((lock, Mode::Exclusive));
        }
        plan
    }

    /// Handles a reply from a node.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        if let Msg::ResourceAck {
            accepted: false, ..
        } = msg
        {
            self.stats.fencing_rejections += 1;
            return;
        }
        let Msg::Reply { seq, reply } = msg else {
            return;
        };
        if self.silent() {
            return;
        }
        if seq >= KEEPALIVE_SEQ_BASE {
            // A keep-alive answer: only a lost session matters.
            let sent = self.keepalives.remove(&seq);
            match reply {
                ClientReply::Lock(LockReply::Failed(_)) => self.lose_session(env),
                ClientReply::Lock(LockReply::Alive) => {
                    if let (Some(session), Some(sent)) = (self.session, sent) {
                        // The lease runs from when the renewal was sent: the
                        // client cannot know how late the leader saw it.
                        let age_ns = env.monotonic().saturating_sub(sent);
                        env.trace(TraceEvent::LockRenewed {
                            session,
                            ttl: self.load.ttl_ns,
                            age_ns,
                        });
                    }
                }
                // Renewals go to the leader: follow the hint at once.
                ClientReply::NotLeader(Some(h)) if h != from && h < self.nodes => {
                    self.target = h;
                    self.keep_alive(env, h);
                }
                _ => {}
            }
            return;
        }
        if seq != self.seq || self.in_flight.is_none() {
            return;
        }
        match reply {
            ClientReply::NotLeader(hint) => {
                self.target = match hint {
                    Some(h) if h != from && h < self.nodes => h,
                    _ => (from + 1) % self.nodes,
                };
                self.backing_off = true;
                env.set_timer(Timer::ClientRetry, BACKOFF_NS);
            }
            ClientReply::Retry => {
                self.backing_off = true;
                env.set_timer(Timer::ClientRetry, BACKOFF_NS);
            }
            ClientReply::Ok(_) => {}
            ClientReply::Lock(LockReply::Waiting) => {
                // The grant or failure comes later; a retry after this asks again.
                env.set_timer(
                    Timer::ClientRetry,
                    self.load.service_wait_ns + self.load.request_timeout_ns,
                );
            }
            ClientReply::Lock(answer) => self.on_answer(env, answer),
        }
    }

    fn on_answer(&mut self, env: &mut impl Env, answer: LockReply) {
        let Some((req, sent_at)) = self.in_flight.take() else {
            return;
        };
        env.cancel_timer(Timer::ClientRetry);
        self.record(req, sent_at, env.now(), &answer);
        match (self.phase.clone(), answer) {
            (Phase::Opening, LockReply::Session(s)) => {
                self.session = Some(s);
                self.phase = Phase::Idle;
                env.set_timer(Timer::LeaseCheck, self.load.ttl_ns / 3);
                self.next_step(env);
            }
            (
                Phase::Acquiring {
                    plan,
                    next,
                    mut tokens,
                },
                LockReply::Granted { token, .. },
            ) => {
                self.stats.grants += 1;
                self.stats
                    .acquire_latencies_ns
                    .push(env.now().saturating_sub(sent_at));
                tokens.push(token);
                if next + 1 < plan.len() {
                    self.phase = Phase::Acquiring {
                        plan,
                        next: next + 1,
                        tokens,
                    };
                    return self.next_step(env);
                }
                self.write(env, &plan, &tokens, Phase2::Begin);
                if env.rng().chance(self.load.crash_ratio) {
                    // Pause while holding; the lease must free the locks.
                    self.stats.crashes += 1;
                    self.phase = Phase::Silent { plan, tokens };
                    env.cancel_timer(Timer::LeaseCheck);
                    return env.set_timer(Timer::ClientNext, 2 * self.load.ttl_ns);
                }
                self.phase = Phase::Holding { plan, tokens };
                let hold = env
                    .rng()
                    .between(self.load.hold_min_ns, self.load.hold_max_ns);
                env.set_timer(Timer::ClientNext, hold + 1);
            }
            (Phase::Acquiring { plan, next, .. }, LockReply::Failed(e)) => {
                match e {
                    LockError::Deadlock { .. } => self.stats.deadlocks += 1,
                    LockError::TimedOut { .. } => self.stats.timeouts += 1,
                    LockError::NoSession { .. }
                    | LockError::SessionExpired { .. }
                    | LockError::SessionClosed { .. } => {
                        return self.lose_session(env);
                    }
                    _ => {}
                }
                // Give back what this round took, then try another round.
                self.phase = Phase::Releasing { plan, left: next };
                self.next_step(env);
            }
            (Phase::Releasing { plan, left }, LockReply::Released { .. }) => {
                self.phase = Phase::Releasing {
                    plan,
                    left: left - 1,
                };
                self.next_step(env);
            }
            (Phase::Releasing { plan, left }, LockReply::Failed(e)) => match e {
                LockError::NoSession { .. }
                | LockError::SessionExpired { .. }
                | LockError::SessionClosed { .. } => self.lose_session(env),
                // Not held (e.g. released by an expiry already): go on.
                _ => {
                    self.phase = Phase::Releasing {
                        plan,
                        left: left - 1,
                    };
                    self.next_step(env);
                }
            },
            (Phase::Idle, LockReply::Closed) => {
                self.session = None;
                self.phase = Phase::Opening;
                env.cancel_timer(Timer::LeaseCheck);
            }
            (Phase::Opening, _) | (Phase::Idle, _) => {
                // An unexpected answer: start over cleanly.
                self.lose_session(env);
            }
            _ => {}
        }
    }

    /// Sends a keep-alive, numbered in its own sequence space so its answer
    /// can be matched to when it was sent.
    fn keep_alive(&mut self, env: &mut impl Env, to: NodeId) {
        let Some(session) = self.session else { return };
        self.keepalive_seq += 1;
        let seq = KEEPALIVE_SEQ_BASE + self.keepalive_seq;
        // A renewal's age is a duration: measured on the monotonic clock.
        // (Operation times in the history stay on `now`, the clock that
        // orders operations across clients.)
        self.keepalives.insert(seq, env.monotonic());
        // Answers that never come must not pile up.
        while self.keepalives.len() > 16 {
            self.keepalives.pop_first();
        }
        env.send(
            to,
            Msg::Request {
                seq,
                req: ClientRequest::Lock(LockRequest::KeepAlive { session }),
            },
        );
    }

    /// Adds an answered acquire or release to the history, in global time
    /// (this client's clock is the ideal one, so only the epoch differs).
    fn record(&mut self, req: LockRequest, sent_local: u64, now_local: u64, answer: &LockReply) {
        let global = |local: u64| (local as i128 - LOCAL_EPOCH_NS).max(0) as u64;
        let (lock, input) = match req {
            LockRequest::Acquire {
                session,
                lock,
                mode,
                ..
            } => (lock, LockInput::Acquire { session, mode }),
            LockRequest::Release { session, lock } => (lock, LockInput::Release { session }),
            _ => return,
        };
        let output = match answer {
            LockReply::Granted { token, .. } => LockOutput::Granted { token: *token },
            LockReply::Released { .. } => LockOutput::Released,
            LockReply::Failed(_) => LockOutput::Failed,
            _ => return,
        };
        self.stats.history.push(LockOp {
            client: self.index,
            lock,
            input,
            output,
            call_ns: global(sent_local),
            ret_ns: Some(global(now_local)),
        });
    }

    fn silent(&self) -> bool {
        matches!(self.phase, Phase::Silent { .. })
    }

    /// Writes to the resource under every exclusive lock of the round.
    fn write(
        &mut self,
        env: &mut impl Env,
        plan: &[(LockId, Mode)],
        tokens: &[u64],
        phase: Phase2,
    ) {
        // One write per lock held exclusively, under its latest token (an
        // upgrade or re-entry later in the round supersedes earlier ones).
        let mut latest: std::collections::BTreeMap<LockId, (Mode, u64)> =
            std::collections::BTreeMap::new();
        for (&(lock, mode), &token) in plan.iter().zip(tokens) {
            let e = latest.entry(lock).or_insert((mode, token));
            *e = (
                if mode == Mode::Exclusive {
                    Mode::Exclusive
                } else {
                    e.0
                },
                token,
            );
        }
        for (lock, (mode, token)) in latest {
            if mode == Mode::Exclusive {
                env.send(
                    self.load.resource,
                    Msg::ResourceWrite {
                        client: self.index,
                        lock,
                        token,
                        phase,
                    },
                );
            }
        }
    }

    fn lose_session(&mut self, env: &mut impl Env) {
        if let Some((LockRequest::Release { session, lock }, sent)) = self.in_flight {
            // Abandoned without an answer: it may have happened.
            let call_ns = (sent as i128 - LOCAL_EPOCH_NS).max(0) as u64;
            self.stats.history.push(LockOp {
                client: self.index,
                lock,
                input: LockInput::Release { session },
                output: LockOutput::Unknown,
                call_ns,
                ret_ns: None,
            });
        }
        self.stats.lost_sessions += 1;
        self.session = None;
        self.in_flight = None;
        self.phase = Phase::Opening;
        env.cancel_timer(Timer::ClientRetry);
        env.set_timer(Timer::ClientNext, BACKOFF_NS);
    }
}
