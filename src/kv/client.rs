//! A closed-loop key-value client: one operation at a time, retried across
//! nodes until a definite answer or its deadline.

use std::collections::VecDeque;

use super::{ClientReply, ClientRequest};
use crate::env::{Env, Timer};
use crate::node::Msg;
use crate::trace::{NodeId, Outcome, TraceEvent};

/// How a client generates load (None for scripted-only clients).
#[derive(Clone, Debug)]
pub struct LoadProfile {
    pub rate_per_s: f64,
    pub keys: u32,
    pub read_ratio: f64,
    /// Local-clock times between which operations are generated.
    pub start_local: u64,
    pub stop_local: u64,
}

/// Client timing.
#[derive(Clone, Copy, Debug)]
pub struct ClientTiming {
    pub request_timeout_ns: u64,
    pub op_timeout_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct Current {
    seq: u64,
    req: ClientRequest,
    deadline_local: u64,
    /// True while waiting out a short back-off rather than a request timeout.
    backing_off: bool,
}

/// Back-off before asking the same node again after Retry.
const RETRY_BACKOFF_NS: u64 = 10_000_000;

/// One client.
#[derive(Clone)]
pub struct Client {
    index: usize,
    nodes: usize,
    timing: ClientTiming,
    load: Option<LoadProfile>,
    target: NodeId,
    next_seq: u64,
    current: Option<Current>,
    scripted: VecDeque<(Option<NodeId>, ClientRequest)>,
    completed: u64,
    acked_write_seq: u64,
}

impl Client {
    /// Client number `index` (0-based) of a cluster of `nodes`.
    pub fn new(
        index: usize,
        nodes: usize,
        timing: ClientTiming,
        load: Option<LoadProfile>,
    ) -> Client {
        Client {
            index,
            nodes,
            timing,
            load,
            target: index % nodes,
            next_seq: 0,
            current: None,
            scripted: VecDeque::new(),
            completed: 0,
            acked_write_seq: 0,
        }
    }

    /// Operations that got a definite answer.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Sequence number of the last write acknowledged to this client.
    pub fn acked_write_seq(&self) -> u64 {
        self.acked_write_seq
    }

    /// Arms the first generated operation.
    pub fn start(&mut self, env: &mut impl Env) {
        if let Some(load) = &self.load {
            let now = env.now();
            let wait = load.start_local.saturating_sub(now);
            let gap = self.gap(env);
            env.set_timer(Timer::ClientNext, wait + gap);
        }
    }

    /// Queues a scripted operation, sent to `node` (or the current guess).
    pub fn script(&mut self, env: &mut impl Env, node: Option<NodeId>, req: ClientRequest) {
        self.scripted.push_back((node, req));
        if self.current.is_none() {
            self.next_scripted(env);
        }
    }

    fn gap(&self, env: &mut impl Env) -> u64 {
        match &self.load {
            Some(l) if l.rate_per_s > 0.0 => (env.rng().exponential(1e9 / l.rate_per_s)) as u64,
            _ => u64::MAX / 4,
        }
    }

    fn next_scripted(&mut self, env: &mut impl Env) -> bool {
        let Some((node, req)) = self.scripted.pop_front() else {
            return false;
        };
        if let Some(n) = node {
            self.target = n;
        }
        self.begin(env, req);
        true
    }

    /// Handles a timer.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::ClientNext => self.generate(env),
            Timer::ClientRetry => self.on_retry_timer(env),
            Timer::Election
            | Timer::Heartbeat
            | Timer::LeaseCheck
            | Timer::Fsync
            | Timer::Rebalance
            | Timer::CacheOp
            | Timer::BusTxn
            | Timer::FlushRetry => {}
        }
    }

    fn generate(&mut self, env: &mut impl Env) {
        if self.current.is_some() {
            return;
        }
        let Some(load) = self.load.clone() else {
            return;
        };
        if env.now() >= load.stop_local {
            return;
        }
        let rng = env.rng();
        let key = rng.below(load.keys as u64) as u32;
        let req = if rng.chance(load.read_ratio) {
            ClientRequest::Get { key }
        } else {
            // Unique values make histories cheap to check and easy to read.
            ClientRequest::Put {
                key,
                value: ((self.index as u64 + 1) << 32) | (self.next_seq + 1),
            }
        };
        self.begin(env, req);
    }

    fn begin(&mut self, env: &mut impl Env, req: ClientRequest) {
        self.next_seq += 1;
        let (op, key, value) = describe(req);
        env.trace(TraceEvent::ClientInvoke {
            client: self.index,
            op,
            key,
            value,
        });
        let deadline_local = env.now() + self.timing.op_timeout_ns;
        self.current = Some(Current {
            seq: self.next_seq,
            req,
            deadline_local,
            backing_off: false,
        });
        self.send(env);
    }

    fn send(&mut self, env: &mut impl Env) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.backing_off = false;
        env.send(
            self.target,
            Msg::Request {
                seq: cur.seq,
                req: cur.req,
            },
        );
        // Never wait past the operation's deadline.
        let left = cur.deadline_local.saturating_sub(env.now());
        env.set_timer(Timer::ClientRetry, self.timing.request_timeout_ns.min(left));
    }

    fn on_retry_timer(&mut self, env: &mut impl Env) {
        let Some(cur) = self.current else { return };
        if env.now() >= cur.deadline_local {
            return self.finish(env, Outcome::Unknown, None);
        }
        if !cur.backing_off {
            // No answer at all: this node may be down or cut off.
            self.target = (self.target + 1) % self.nodes;
        }
        self.send(env);
    }

    /// Handles a reply from a node.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        let Msg::Reply { seq, reply } = msg else {
            return;
        };
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if seq != cur.seq {
            return; // an answer to an attempt we already gave up on
        }
        match reply {
            ClientReply::Ok(value) => {
                let value = match cur.req {
                    ClientRequest::Put { value, .. } => Some(value),
                    ClientRequest::Get { .. }
                    | ClientRequest::Delete { .. }
                    | ClientRequest::Lock(_) => value,
                };
                self.finish(env, Outcome::Ok, value);
            }
            ClientReply::NotLeader(hint) => match hint {
                Some(h) if h != from && h < self.nodes => {
                    self.target = h;
                    self.send(env);
                }
                _ => {
                    self.target = (from + 1) % self.nodes;
                    cur.backing_off = true;
                    env.set_timer(Timer::ClientRetry, RETRY_BACKOFF_NS);
                }
            },
            ClientReply::Retry => {
                cur.backing_off = true;
                env.set_timer(Timer::ClientRetry, RETRY_BACKOFF_NS);
            }
            // Lock replies go to lock clients; this client sends no lock requests.
            ClientReply::Lock(_) => {}
        }
    }

    fn finish(&mut self, env: &mut impl Env, outcome: Outcome, value: Option<u64>) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let (op, key, put_value) = describe(cur.req);
        let value = if outcome == Outcome::Ok {
            value
        } else {
            put_value
        };
        env.trace(TraceEvent::ClientReturn {
            client: self.index,
            op,
            key,
            value,
            outcome,
        });
        env.cancel_timer(Timer::ClientRetry);
        if outcome == Outcome::Ok {
            self.completed += 1;
            if let ClientRequest::Put { .. } = cur.req {
                self.acked_write_seq = cur.seq;
            }
        }
        if !self.next_scripted(env) && self.load.is_some() {
            let gap = self.gap(env);
            env.set_timer(Timer::ClientNext, gap);
        }
    }
}

fn describe(req: ClientRequest) -> (&'static str, u32, Option<u64>) {
    match req {
        ClientRequest::Get { key } => ("get", key, None),
        ClientRequest::Put { key, value } => ("put", key, Some(value)),
        ClientRequest::Delete { key } => ("delete", key, None),
        ClientRequest::Lock(_) => ("lock", 0, None),
    }
}
