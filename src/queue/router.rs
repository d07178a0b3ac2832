//! The queue router every node runs: a client may send any queue request to
//! any node, which forwards it to the shard its replicated placement names
//! and relays the shard's answer.
//!
//! The router keeps no queue state of its own; a node that crashes loses
//! only the requests in transit, which their clients retry. A router that is
//! behind on the placement is harmless: a shard refuses every call for a
//! partition that has left it, and the client retries.

use std::collections::BTreeMap;

use super::placement::{Placement, Route};
use super::protocol::{QueueReply, QueueRequest, ShardAnswer, ShardCall};
use crate::env::Env;
use crate::node::Msg;
use crate::rng::Rng;
use crate::trace::NodeId;

/// How the queue behaves, the same on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSetup {
    /// Endpoint id of shard 0; shard k is `shard_base + k`.
    pub shard_base: NodeId,
    pub visibility_ns: u64,
    pub max_attempts: u32,
    /// Planted bug `queue.ack_before_write`.
    pub ack_before_write: bool,
    /// Planted bug `queue.no_visibility_timeout`.
    pub no_visibility_timeout: bool,
    /// Planted bug `queue.drop_inflight_on_rebalance`.
    pub drop_inflight_on_rebalance: bool,
}

/// A forwarded request waiting for its shard.
#[derive(Clone, Copy, Debug)]
struct Pending {
    client: NodeId,
    seq: u64,
    sent_ns: u64,
    /// Already answered (planted bug): the shard's answer is dropped.
    answered: bool,
}

/// Forwarded requests older than this are forgotten: their clients have
/// long since retried elsewhere.
const FORGET_NS: u64 = 5_000_000_000;
/// A bound on requests in transit through one node.
const MAX_PENDING: usize = 4096;

/// One node's queue router.
#[derive(Clone)]
pub struct Router {
    setup: QueueSetup,
    /// Request ids start at a random point per incarnation, so a shard's
    /// answer to a request sent before a crash never matches a new one.
    next_req: u64,
    pending: BTreeMap<u64, Pending>,
}

/// A fresh request-id space: high bits random per incarnation.
pub fn request_ids(rng: &mut Rng) -> u64 {
    (rng.next_u64() >> 24) << 24
}

impl Router {
    /// A router with nothing in transit.
    pub fn new(setup: QueueSetup, rng: &mut Rng) -> Self {
        Router {
            setup,
            next_req: request_ids(rng),
            pending: BTreeMap::new(),
        }
    }

    /// Forwards a client's request to the partition's shard, or answers
    /// `Retry` at once when the partition is moving or unknown.
    pub fn on_request(
        &mut self,
        env: &mut impl Env,
        placement: &Placement,
        client: NodeId,
        seq: u64,
        req: QueueRequest,
    ) {
        let shard = match placement.route(req.partition()) {
            Some(Route::Shard(s)) => s,
            Some(Route::Moving) | None => {
                return env.send(client, reply(seq, QueueReply::Retry));
            }
        };
        let now = env.monotonic();
        self.forget_old(now);
        if self.pending.len() >= MAX_PENDING {
            return env.send(client, reply(seq, QueueReply::Retry));
        }
        let answered = self.setup.ack_before_write && matches!(req, QueueRequest::Produce { .. });
        if answered {
            // Planted bug: the producer hears "stored" before the shard has it.
            let stored = match &req {
                QueueRequest::Produce { bodies, .. } => bodies.len() as u32,
                _ => 0,
            };
            let s = super::functions::Stored {
                stored,
                duplicate: 0,
            };
            env.send(client, reply(seq, QueueReply::Produced(s)));
        }
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(
            id,
            Pending {
                client,
                seq,
                sent_ns: now,
                answered,
            },
        );
        let call = self.call_for(req);
        env.send(
            self.setup.shard_base + shard as usize,
            Msg::Shard { req: id, call },
        );
    }

    /// Relays a shard's answer; false if the answer was not for the router.
    pub fn on_answer(&mut self, env: &mut impl Env, req: u64, answer: &ShardAnswer) -> bool {
        let Some(p) = self.pending.remove(&req) else {
            return false;
        };
        if p.answered {
            return true;
        }
        let r = match answer {
            ShardAnswer::Stored(s) => QueueReply::Produced(*s),
            ShardAnswer::Delivered(d) => QueueReply::Delivered(d.clone()),
            ShardAnswer::Settled(n) => QueueReply::Settled(*n),
            ShardAnswer::Refused(_)
            | ShardAnswer::Unavailable
            | ShardAnswer::Frozen(_)
            | ShardAnswer::Done
            | ShardAnswer::Memory(_) => QueueReply::Retry,
        };
        env.send(p.client, reply(p.seq, r));
        true
    }

    fn call_for(&self, req: QueueRequest) -> ShardCall {
        let s = &self.setup;
        match req {
            QueueRequest::Produce {
                partition,
                producer,
                first_seq,
                bodies,
            } => ShardCall::Produce {
                partition,
                producer,
                first_seq,
                bodies,
            },
            QueueRequest::Consume {
                partition,
                consumer,
                max,
            } => ShardCall::Consume {
                partition,
                consumer,
                max,
                visibility_ns: s.visibility_ns,
                max_attempts: s.max_attempts,
                honour_visibility: !s.no_visibility_timeout,
            },
            QueueRequest::Settle {
                partition,
                acks,
                nacks,
            } => ShardCall::Settle {
                partition,
                acks,
                nacks,
                max_attempts: s.max_attempts,
            },
        }
    }

    fn forget_old(&mut self, now: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if now.saturating_sub(entry.get().sent_ns) < FORGET_NS {
                break;
            }
            entry.remove();
        }
    }
}

fn reply(seq: u64, reply: QueueReply) -> Msg {
    Msg::QueueReply { seq, reply }
}
