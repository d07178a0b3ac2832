//! Moving partitions between shards after a ring change: the leader's job.
//!
//! For each moving partition the leader freezes it on the old shard (which
//! from then on refuses every call for it and hands over its content),
//! imports the content on the new shard, drops it from the old one, and
//! finally proposes `Moved`, after which routers send traffic to the new
//! shard. Every step is idempotent, and a new leader simply starts each
//! unfinished move over from the freeze: the old shard keeps the content
//! until the drop, and the new shard imports once per epoch.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::functions::{Dump, Partition};
use super::placement::{Move, Placement, RingCommand};
use super::protocol::{ShardAnswer, ShardCall};
use super::router::QueueSetup;
use crate::env::Env;
use crate::node::Msg;
use crate::trace::TraceEvent;

/// A step's answer is awaited this long before the step is sent again.
pub const RESEND_NS: u64 = 300_000_000;
/// How often the leader looks at moves in progress.
pub const TICK_NS: u64 = 100_000_000;

#[derive(Clone, Debug)]
enum Stage {
    Freeze,
    Import(Rc<Dump>),
    Drop,
    /// Copied and dropped: waiting for `Moved` to commit.
    Propose,
}

#[derive(Clone, Debug)]
struct Job {
    mv: Move,
    epoch: u64,
    stage: Stage,
    /// Request id of the step in flight, and when it was sent (monotonic).
    req: u64,
    sent_ns: Option<u64>,
    messages: u64,
}

/// The leader's moves in progress.
#[derive(Clone)]
pub struct Rebalancer {
    setup: QueueSetup,
    next_req: u64,
    jobs: BTreeMap<Partition, Job>,
}

impl Rebalancer {
    /// A rebalancer with no moves in hand; `first_req` starts its request ids.
    pub fn new(setup: QueueSetup, first_req: u64) -> Self {
        Rebalancer {
            setup,
            next_req: first_req,
            jobs: BTreeMap::new(),
        }
    }

    /// True while the placement has moves this leader must drive.
    pub fn busy(placement: &Placement) -> bool {
        placement.moves().next().is_some()
    }

    /// Forgets every move: a new leader starts them over.
    pub fn leave_office(&mut self) {
        self.jobs.clear();
    }

    /// Matches jobs to the placement's moves and (re)sends every step whose
    /// answer is overdue. Returns the `Moved` commands to propose.
    pub fn tick(&mut self, env: &mut impl Env, placement: &Placement) -> Vec<RingCommand> {
        let epoch = placement.epoch();
        self.jobs
            .retain(|p, j| j.epoch == epoch && placement.moves().any(|(q, _)| q == *p));
        for (p, mv) in placement.moves() {
            self.jobs.entry(p).or_insert(Job {
                mv,
                epoch,
                stage: Stage::Freeze,
                req: 0,
                sent_ns: None,
                messages: 0,
            });
        }
        let now = env.monotonic();
        let mut proposals = Vec::new();
        let parts: Vec<Partition> = self.jobs.keys().copied().collect();
        for p in parts {
            let overdue = self.jobs[&p]
                .sent_ns
                .is_none_or(|t| now.saturating_sub(t) >= RESEND_NS);
            if !overdue {
                continue;
            }
            if matches!(self.jobs[&p].stage, Stage::Propose) {
                self.jobs.get_mut(&p).expect("listed").sent_ns = Some(now);
                proposals.push(RingCommand::Moved {
                    partition: p,
                    epoch,
                });
            } else {
                self.send_step(env, p, now);
            }
        }
        proposals
    }

    /// Advances a move on its shard's answer; false if not ours. Returns the
    /// `Moved` command to propose when a move's copy is complete.
    pub fn on_answer(
        &mut self,
        env: &mut impl Env,
        req: u64,
        answer: &ShardAnswer,
    ) -> (bool, Option<RingCommand>) {
        let Some((&p, _)) = self
            .jobs
            .iter()
            .find(|(_, j)| j.req == req && j.sent_ns.is_some())
        else {
            return (false, None);
        };
        let job = self.jobs.get_mut(&p).expect("found");
        let next = match (&job.stage, answer) {
            (Stage::Freeze, ShardAnswer::Frozen(d)) => {
                job.messages = (d.ready.len() + d.inflight.len() + d.dead.len()) as u64;
                Stage::Import(d.clone())
            }
            (Stage::Import(_), ShardAnswer::Done) => Stage::Drop,
            (Stage::Drop, ShardAnswer::Done) => Stage::Propose,
            // Anything else (a refusal, a stale answer): resend on the next tick.
            _ => return (true, None),
        };
        job.stage = next;
        let now = env.monotonic();
        if matches!(job.stage, Stage::Propose) {
            job.sent_ns = Some(now);
            let epoch = job.epoch;
            return (
                true,
                Some(RingCommand::Moved {
                    partition: p,
                    epoch,
                }),
            );
        }
        self.send_step(env, p, now);
        (true, None)
    }

    /// Traces a finished move (with how many messages this leader's own
    /// freeze carried, 0 if its predecessor did the copying).
    pub fn on_moved(&mut self, env: &mut impl Env, partition: Partition, mv: Move, epoch: u64) {
        let messages = self.jobs.remove(&partition).map_or(0, |j| j.messages);
        env.trace(TraceEvent::QueueMigrated {
            partition,
            from: mv.from,
            to: mv.to,
            epoch,
            messages,
        });
    }

    fn send_step(&mut self, env: &mut impl Env, p: Partition, now: u64) {
        let req = self.next_req;
        self.next_req += 1;
        let include_inflight = !self.setup.drop_inflight_on_rebalance;
        let job = self.jobs.get_mut(&p).expect("listed");
        let (shard, call) = match &job.stage {
            Stage::Freeze => (
                job.mv.from,
                ShardCall::Freeze {
                    partition: p,
                    epoch: job.epoch,
                    include_inflight,
                },
            ),
            Stage::Import(d) => (
                job.mv.to,
                ShardCall::Import {
                    partition: p,
                    epoch: job.epoch,
                    dump: d.clone(),
                },
            ),
            Stage::Drop => (
                job.mv.from,
                ShardCall::Drop {
                    partition: p,
                    epoch: job.epoch,
                },
            ),
            Stage::Propose => return,
        };
        job.req = req;
        job.sent_ns = Some(now);
        env.send(
            self.setup.shard_base + shard as usize,
            Msg::Shard { req, call },
        );
    }
}
