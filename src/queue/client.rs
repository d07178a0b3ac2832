//! Simulated producers and consumers of the queue.
//!
//! A producer generates messages at a steady rate and sends them in batches,
//! one batch in flight at a time, retrying the same sequence numbers on any
//! node until some node reports them stored: retries are what make
//! idempotent produce matter. A consumer polls partitions in turn, processes
//! each message of a batch for a while, then settles the batch in one
//! request: acks, and nacks for poison messages. It may crash
//! mid-processing, losing what it holds.

use std::collections::VecDeque;
use std::rc::Rc;

use super::functions::{Delivery, MessageId, Partition};
use super::protocol::{QueueReply, QueueRequest};
use super::ring::hash_key;
use crate::env::{Env, Timer};
use crate::node::Msg;
use crate::trace::{NodeId, TraceEvent};

/// The body that marks a message every consumer rejects.
pub const POISON: &[u8] = b"poison";
/// Backoff after a `Retry` answer.
const RETRY_BACKOFF_NS: u64 = 20_000_000;
/// Most messages a producer keeps waiting before it stops generating more.
const MAX_BUFFERED: usize = 100_000;

/// What a producer sends and when.
#[derive(Clone, Debug, PartialEq)]
pub struct ProducerLoad {
    pub nodes: usize,
    pub queues: u32,
    pub partitions_per_queue: u32,
    pub rate_per_s: f64,
    pub batch: u32,
    pub keys: u32,
    pub hot_ratio: f64,
    pub poison_ratio: f64,
    pub start_local: u64,
    pub stop_local: u64,
    pub request_timeout_ns: u64,
}

/// A batch waiting for its acknowledgement.
#[derive(Clone, Debug)]
struct Batch {
    partition: Partition,
    first_seq: u64,
    bodies: Rc<Vec<Vec<u8>>>,
    req: u64,
}

/// One simulated producer.
#[derive(Clone)]
pub struct Producer {
    index: u32,
    load: ProducerLoad,
    /// Generated messages not yet in a batch: (partition, body).
    buffer: VecDeque<(Partition, &'static [u8])>,
    next_seq: u64,
    next_req: u64,
    in_flight: Option<Batch>,
    target: NodeId,
    /// The batch is waiting out a backoff rather than an answer.
    backing_off: bool,
}

impl Producer {
    /// A producer numbered `index`.
    pub fn new(index: u32, load: ProducerLoad) -> Self {
        let target = index as usize % load.nodes.max(1);
        Producer {
            index,
            load,
            buffer: VecDeque::new(),
            next_seq: 1,
            next_req: 1,
            in_flight: None,
            target,
            backing_off: false,
        }
    }

    /// Schedules the first message.
    pub fn start(&mut self, env: &mut impl Env) {
        if self.load.rate_per_s > 0.0 {
            let first = self.load.start_local.saturating_sub(env.now()) + self.gap_ns(env);
            env.set_timer(Timer::ClientNext, first);
        }
    }

    /// Messages acknowledged so far are not tracked here: the trace has them.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::ClientNext => self.generate(env),
            Timer::ClientRetry => {
                if !self.backing_off {
                    self.target = (self.target + 1) % self.load.nodes;
                }
                self.backing_off = false;
                self.send(env);
            }
            _ => {}
        }
    }

    /// Handles a node's answer.
    pub fn on_message(&mut self, env: &mut impl Env, msg: Msg) {
        let Msg::QueueReply { seq, reply } = msg else {
            return;
        };
        let Some(b) = self.in_flight.as_ref().filter(|b| b.req == seq) else {
            return;
        };
        match reply {
            QueueReply::Produced(_) => {
                env.trace(TraceEvent::QueueProduced {
                    producer: self.index,
                    partition: b.partition,
                    first_seq: b.first_seq,
                    count: b.bodies.len() as u32,
                });
                self.in_flight = None;
                env.cancel_timer(Timer::ClientRetry);
                self.next_batch(env);
            }
            _ => {
                // The outcome is unknown: the same seqs go again elsewhere.
                self.target = (self.target + 1) % self.load.nodes;
                self.backing_off = true;
                env.set_timer(Timer::ClientRetry, RETRY_BACKOFF_NS);
            }
        }
    }

    fn gap_ns(&self, env: &mut impl Env) -> u64 {
        let mean = 1e9 / self.load.rate_per_s;
        env.rng().exponential(mean).max(1.0) as u64
    }

    fn generate(&mut self, env: &mut impl Env) {
        if env.now() >= self.load.stop_local {
            return;
        }
        if self.buffer.len() < MAX_BUFFERED {
            let partition = self.pick_partition(env);
            let body = if env.rng().chance(self.load.poison_ratio) {
                POISON
            } else {
                b"message".as_slice()
            };
            self.buffer.push_back((partition, body));
        }
        let gap = self.gap_ns(env);
        env.set_timer(Timer::ClientNext, gap);
        if self.in_flight.is_none() {
            self.next_batch(env);
        }
    }

    /// A message's partition: its key's, a hot key's, or any.
    fn pick_partition(&self, env: &mut impl Env) -> Partition {
        let l = &self.load;
        let queue = env.rng().below(l.queues.max(1) as u64) as u32;
        let key = if env.rng().chance(l.hot_ratio) {
            Some(0)
        } else if l.keys > 0 {
            Some(env.rng().below(l.keys as u64) as u32)
        } else {
            None
        };
        let within = match key {
            Some(k) => {
                (hash_key(format!("key-{k}").as_bytes()) % l.partitions_per_queue as u64) as u32
            }
            None => env.rng().below(l.partitions_per_queue as u64) as u32,
        };
        queue * l.partitions_per_queue + within
    }

    /// Takes up to `batch` buffered messages for the oldest one's partition,
    /// numbering them now so each partition sees its seqs in order.
    fn next_batch(&mut self, env: &mut impl Env) {
        let Some(&(partition, _)) = self.buffer.front() else {
            return;
        };
        let bodies: Vec<Vec<u8>> =
            take_batch(&mut self.buffer, partition, self.load.batch as usize)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
        let first_seq = self.next_seq;
        self.next_seq += bodies.len() as u64;
        env.trace(TraceEvent::QueueSend {
            producer: self.index,
            partition,
            first_seq,
            count: bodies.len() as u32,
        });
        self.in_flight = Some(Batch {
            partition,
            first_seq,
            bodies: Rc::new(bodies),
            req: 0,
        });
        self.send(env);
    }

    fn send(&mut self, env: &mut impl Env) {
        let Some(b) = self.in_flight.as_mut() else {
            return;
        };
        b.req = self.next_req;
        self.next_req += 1;
        let req = QueueRequest::Produce {
            partition: b.partition,
            producer: self.index,
            first_seq: b.first_seq,
            bodies: b.bodies.clone(),
        };
        env.send(self.target, Msg::Queue { seq: b.req, req });
        env.set_timer(Timer::ClientRetry, self.load.request_timeout_ns);
    }
}

/// How a consumer works.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerLoad {
    pub nodes: usize,
    pub partitions: u32,
    pub consume_batch: u32,
    pub process_min_ns: u64,
    pub process_max_ns: u64,
    pub crash_ratio: f64,
    pub down_ns: u64,
    pub request_timeout_ns: u64,
}

/// Pause after a full round of partitions came back empty.
const IDLE_POLL_NS: u64 = 20_000_000;

/// One simulated consumer.
#[derive(Clone)]
pub struct Consumer {
    index: u32,
    load: ConsumerLoad,
    target: NodeId,
    next_req: u64,
    /// The request awaiting an answer, with its id.
    awaiting: Option<(u64, QueueRequest)>,
    backing_off: bool,
    /// Received and not yet processed, with their partitions.
    held: VecDeque<(Partition, Delivery)>,
    /// Being processed.
    current: Option<(Partition, Delivery)>,
    /// Processed and waiting to be settled: (partition, acks, nacks).
    settled: Option<(Partition, Vec<MessageId>, Vec<MessageId>)>,
    next_partition: Partition,
    empty_polls: u32,
    down: bool,
}

impl Consumer {
    /// A consumer numbered `index`.
    pub fn new(index: u32, load: ConsumerLoad) -> Self {
        let target = index as usize % load.nodes.max(1);
        let next_partition = index % load.partitions.max(1);
        Consumer {
            index,
            load,
            target,
            next_req: 1,
            awaiting: None,
            backing_off: false,
            held: VecDeque::new(),
            current: None,
            settled: None,
            next_partition,
            empty_polls: 0,
            down: false,
        }
    }

    /// Starts polling.
    pub fn start(&mut self, env: &mut impl Env) {
        if self.load.partitions > 0 {
            self.poll(env);
        }
    }

    /// Handles a timer: processing done, idle or down time over, or a retry.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        match timer {
            Timer::ClientNext if self.down => {
                self.down = false;
                self.poll(env);
            }
            Timer::ClientNext if self.current.is_some() => self.finish_current(env),
            Timer::ClientNext => self.poll(env),
            Timer::ClientRetry => {
                if !self.backing_off {
                    self.target = (self.target + 1) % self.load.nodes;
                }
                self.backing_off = false;
                // A poll that failed moves on to the next partition, so one
                // unavailable partition does not stall the others; a
                // settle is retried as it is.
                if matches!(self.awaiting, Some((_, QueueRequest::Consume { .. }))) {
                    self.awaiting = None;
                    return self.poll(env);
                }
                self.resend(env);
            }
            _ => {}
        }
    }

    /// Handles a node's answer.
    pub fn on_message(&mut self, env: &mut impl Env, msg: Msg) {
        let Msg::QueueReply { seq, reply } = msg else {
            return;
        };
        if self.down || self.awaiting.as_ref().is_none_or(|(id, _)| *id != seq) {
            return;
        }
        let (_, req) = self.awaiting.take().expect("checked");
        env.cancel_timer(Timer::ClientRetry);
        match reply {
            QueueReply::Delivered(list) => self.received(env, req.partition(), list),
            QueueReply::Settled(_) => {
                self.settled = None;
                self.poll(env);
            }
            QueueReply::Produced(_) | QueueReply::Retry => {
                self.target = (self.target + 1) % self.load.nodes;
                self.awaiting = Some((0, req));
                self.backing_off = true;
                env.set_timer(Timer::ClientRetry, RETRY_BACKOFF_NS);
            }
        }
    }

    fn poll(&mut self, env: &mut impl Env) {
        let partition = self.next_partition;
        self.next_partition = (partition + 1) % self.load.partitions;
        let req = QueueRequest::Consume {
            partition,
            consumer: self.index,
            max: self.load.consume_batch,
        };
        self.request(env, req);
    }

    fn request(&mut self, env: &mut impl Env, req: QueueRequest) {
        self.awaiting = Some((0, req));
        self.resend(env);
    }

    fn resend(&mut self, env: &mut impl Env) {
        let Some((id, req)) = self.awaiting.as_mut() else {
            return;
        };
        *id = self.next_req;
        self.next_req += 1;
        env.send(
            self.target,
            Msg::Queue {
                seq: *id,
                req: req.clone(),
            },
        );
        env.set_timer(Timer::ClientRetry, self.load.request_timeout_ns);
    }

    fn received(&mut self, env: &mut impl Env, partition: Partition, list: Vec<Delivery>) {
        if list.is_empty() {
            self.empty_polls += 1;
            if self.empty_polls >= self.load.partitions {
                self.empty_polls = 0;
                env.set_timer(Timer::ClientNext, IDLE_POLL_NS);
            } else {
                self.poll(env);
            }
            return;
        }
        self.empty_polls = 0;
        for d in list {
            env.trace(TraceEvent::QueueReceived {
                consumer: self.index,
                partition,
                producer: d.id.producer,
                seq: d.id.seq,
                attempt: d.attempt,
            });
            self.held.push_back((partition, d));
        }
        self.process_next(env);
    }

    /// Starts on the next held message, or settles the batch once all are
    /// processed; may crash instead.
    fn process_next(&mut self, env: &mut impl Env) {
        let Some(next) = self.held.pop_front() else {
            return match self.settled.as_ref() {
                Some((partition, acks, nacks)) => {
                    let req = QueueRequest::Settle {
                        partition: *partition,
                        acks: Rc::new(acks.clone()),
                        nacks: Rc::new(nacks.clone()),
                    };
                    self.request(env, req);
                }
                None => self.poll(env),
            };
        };
        if env.rng().chance(self.load.crash_ratio) {
            let holding = 1 + self.held.len() as u32;
            env.trace(TraceEvent::QueueConsumerCrash {
                consumer: self.index,
                holding,
            });
            self.held.clear();
            self.settled = None;
            self.down = true;
            env.set_timer(Timer::ClientNext, self.load.down_ns);
            return;
        }
        self.current = Some(next);
        let t = env
            .rng()
            .between(self.load.process_min_ns, self.load.process_max_ns);
        env.set_timer(Timer::ClientNext, t);
    }

    fn finish_current(&mut self, env: &mut impl Env) {
        let Some((partition, d)) = self.current.take() else {
            return;
        };
        let (_, acks, nacks) = self
            .settled
            .get_or_insert_with(|| (partition, Vec::new(), Vec::new()));
        if d.body == POISON {
            nacks.push(d.id);
        } else {
            acks.push(d.id);
        }
        self.process_next(env);
    }
}

/// Removes and returns the first `batch` buffered messages of `partition`,
/// leaving the others in order. Only the front of the buffer, up to the
/// batch's last message, is touched: the others found on the way move up
/// over the taken ones and the gap left is closed, so a batch costs what it
/// scans, not the whole buffer (up to MAX_BUFFERED messages).
fn take_batch(
    buffer: &mut VecDeque<(Partition, &'static [u8])>,
    partition: Partition,
    batch: usize,
) -> Vec<&'static [u8]> {
    let mut taken = Vec::with_capacity(batch);
    let (mut kept, mut scanned) = (0, 0);
    while scanned < buffer.len() && taken.len() < batch {
        let (p, body) = buffer[scanned];
        if p == partition {
            taken.push(body);
        } else {
            buffer[kept] = (p, body);
            kept += 1;
        }
        scanned += 1;
    }
    buffer.drain(kept..scanned);
    taken
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_takes_the_first_messages_of_its_partition_and_keeps_the_rest_in_order() {
        const BODIES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
        let mut x = 7u64;
        for round in 0..200 {
            let len = round % 40;
            let mut buffer: VecDeque<(Partition, &'static [u8])> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 3) as Partition, BODIES[(x >> 8) as usize % 4])
                })
                .collect();
            let partition = buffer.front().map_or(0, |&(p, _)| p);
            let batch = 1 + round % 5;
            // The reference: split the whole buffer in one pass.
            let (mut want, mut rest) = (Vec::new(), Vec::new());
            for &(p, body) in &buffer {
                if p == partition && want.len() < batch {
                    want.push(body);
                } else {
                    rest.push((p, body));
                }
            }
            assert_eq!(
                take_batch(&mut buffer, partition, batch),
                want,
                "round {round}"
            );
            assert_eq!(
                buffer.into_iter().collect::<Vec<_>>(),
                rest,
                "round {round}"
            );
        }
    }
}
