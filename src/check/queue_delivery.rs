//! The queue's delivery guarantees, checked online on every queue event and
//! once more at the end of a run against what the shards finally hold.
//!
//! Like the other checkers it sees only trace events, so it judges what the
//! run did. Online: nothing is handed out after it was acknowledged or
//! dead-lettered, first deliveries follow produce order, attempts stay within
//! the limit, and a shard crash loses only what its persistence mode allows.
//! At the end: every acknowledged produce was delivered (at least once),
//! dead-lettered, lost within the rules or still waiting for a consumer
//! (no consume found its partition empty since it arrived, or it is in
//! flight within its lease) when the run ended, acknowledged messages are gone,
//! and the dead-letter queues hold exactly what was dead-lettered last.
//!
//! State is keyed by (partition, message id) in B-trees: a producer numbers
//! its messages per partition, and iteration order must not depend on hashing.
//! Every event costs O(log n) per message it names.

use std::collections::BTreeMap;

use super::raft_safety::Violation;
use crate::queue::functions::{MessageId, Partition, Place};
use crate::redis::Fsync;
use crate::trace::{Subject, TraceEvent};

/// `appendfsync everysec` fsyncs once a second, and "you may lose 1 second
/// of data if there is a disaster" (Redis persistence documentation; the
/// same line in redis.conf). A shard here fsyncs one second after its
/// previous fsync, whatever caused that one (its timer, or a step forced
/// durable), so a crash loses at most the writes of the last second.
const EVERYSEC_WINDOW_NS: u64 = 1_000_000_000;

/// Slack on top of the window. The shard's fsync lands exactly a second
/// after the previous one, so a loss never needs it; it keeps the bound
/// from hinging on the order of events at one instant. At a thousandth of
/// the window it is far below any broken schedule (the old fixed grid lost
/// up to 1.93 s, the planted `redis.everysec_loses_too_much` seconds).
const EVERYSEC_SLACK_NS: u64 = 1_000_000;

/// A clock may run up to 10% slow (the scenario format's drift limit,
/// 100,000 ppm), so a lease of one visibility timeout on the shard's clock
/// can last up to 10/9 of it in global time.
const LEASE_STRETCH_NUM: u64 = 10;
const LEASE_STRETCH_DEN: u64 = 9;

/// How many offending messages a violation lists, to keep details readable.
const LIST_LIMIT: usize = 5;

use super::message_table::{Key, MessageTable};
type Check = Result<(), Violation>;

/// A message that a shard crash lost in a way its persistence mode permits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostMessage {
    pub partition: u32,
    pub id: MessageId,
    /// The crashed shard (0-based, `s1` = 0; `usize::MAX` if the event did
    /// not name a shard).
    pub shard: usize,
    pub crash_ns: u64,
    /// When the message was last written to that shard (stored or migrated in).
    pub stored_ns: Option<u64>,
    /// Whether the producer had been told the message was stored.
    pub acked_to_producer: bool,
    /// Why the loss is allowed, as a sentence.
    pub reason: String,
}

/// What the queue did in one run, for reports and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSummary {
    /// Messages in first sends (retries not counted).
    pub messages_sent: u64,
    /// Distinct messages acknowledged to their producers.
    pub produced: u64,
    /// Messages appended by shards, and retried ones they skipped.
    pub stored: u64,
    pub duplicate_stores: u64,
    /// Distinct messages received by a consumer.
    pub delivered: u64,
    /// Every receipt; those with attempt > 1; those beyond the first per message.
    pub receipts: u64,
    pub redeliveries: u64,
    pub duplicate_deliveries: u64,
    /// Accepted acks and dead-letterings (events, so a revived message counts again).
    pub acked: u64,
    pub dead: u64,
    pub migrations: u64,
    pub migrated_messages: u64,
    pub consumer_crashes: u64,
    /// Losses the persistence mode permits, in the order they happened.
    pub lost: Vec<LostMessage>,
    pub revived: u64,
    /// First send to first receipt, per delivered message, sorted.
    pub latency_ns: Vec<u64>,
    pub first_send_ns: Option<u64>,
    pub last_produced_ns: Option<u64>,
    pub first_receipt_ns: Option<u64>,
    pub last_receipt_ns: Option<u64>,
}

impl QueueSummary {
    /// Nearest-rank latency at fraction `p` (0.5 = median, 0.99 = p99), the
    /// same rule as the lock summary; None when nothing was delivered.
    pub fn latency_percentile(&self, p: f64) -> Option<u64> {
        let last = self.latency_ns.len().checked_sub(1)?;
        let rank = (last as f64 * p.clamp(0.0, 1.0)).round() as usize;
        self.latency_ns.get(rank.min(last)).copied()
    }

    /// Acknowledged produces per second of producing.
    pub fn produce_rate_per_s(&self) -> f64 {
        rate(self.produced, self.first_send_ns, self.last_produced_ns)
    }

    /// Distinct deliveries per second of consuming.
    pub fn consume_rate_per_s(&self) -> f64 {
        rate(self.delivered, self.first_receipt_ns, self.last_receipt_ns)
    }
}

/// `n` per second over [from, to]; 0 when the span is missing or empty.
fn rate(n: u64, from: Option<u64>, to: Option<u64>) -> f64 {
    match (from, to) {
        (Some(a), Some(b)) if b > a => n as f64 / ((b - a) as f64 / 1e9),
        _ => 0.0,
    }
}

/// What the checker knows about one message.
#[derive(Clone, Debug, Default)]
struct Msg {
    sent_ns: Option<u64>,
    produced: bool,
    /// Latest fresh store: the shard (if the event named one) and when.
    stored: Option<(Option<usize>, u64)>,
    pops: u32,
    /// When a shard last handed it out (global time).
    last_pop_ns: Option<u64>,
    /// When it last went back to `ready` without a fresh store: requeued,
    /// nacked, or put there by a crash's recovery.
    back_in_ready_ns: Option<u64>,
    max_attempt: u32,
    first_receipt_ns: Option<u64>,
    /// (consumer, that consumer's crash count at the receipt).
    receipts: Vec<(u32, u32)>,
    ever_acked: bool,
    ever_dead: bool,
    /// Acked and not revived since: must never be handed out again.
    acked: bool,
    /// Dead-lettered and not revived since: must never be handed out again.
    dead: bool,
    /// The latest of dead/revived/lost was a dead-lettering.
    dead_last: bool,
    permitted_losses: u32,
}

/// The online queue checker for one run.
#[derive(Clone, Debug)]
pub struct QueueChecker {
    persistence: Fsync,
    max_attempts: u32,
    /// The visibility timeout: how long a handed-out message may stay in
    /// flight before its shard puts it back in line.
    visibility_ns: u64,
    msgs: MessageTable<Msg>,
    /// (producer, partition) -> seq of the latest first pop.
    first_pops: BTreeMap<(u32, Partition), u64>,
    /// (partition, shard) -> when the partition last finished moving there.
    migrated_in: BTreeMap<(Partition, usize), u64>,
    /// partition -> when a shard last answered a consume of it with nothing.
    last_empty: BTreeMap<Partition, u64>,
    /// Finished moves by (partition, epoch), with the messages carried.
    moves: BTreeMap<(Partition, u64), u64>,
    /// consumer -> how many times it crashed.
    crashes: BTreeMap<u32, u32>,
    /// shard -> its pauses as (from, until), the last one open while it
    /// lasts: a paused shard neither writes nor fsyncs, so its everysec
    /// window counts running time only.
    pauses: BTreeMap<usize, Vec<(u64, Option<u64>)>>,
    sum: QueueSummary,
}

fn key(partition: Partition, producer: u32, seq: u64) -> Key {
    (partition, MessageId { producer, seq })
}

/// The ids of a batch: `count` seqs from `first_seq`.
fn batch(
    partition: Partition,
    producer: u32,
    first_seq: u64,
    count: u32,
) -> impl Iterator<Item = Key> {
    (first_seq..first_seq + u64::from(count)).map(move |s| key(partition, producer, s))
}

fn shard_of(subject: Subject) -> Option<usize> {
    match subject {
        Subject::Shard(i) => Some(i),
        _ => None,
    }
}

fn shard_name(shard: Option<usize>) -> String {
    shard.map_or_else(|| "a shard".to_owned(), |i| format!("s{}", i + 1))
}

/// A message as the trace names its parts: `p1 seq 5 of partition 3`.
fn msg_name(k: Key) -> String {
    format!("p{} seq {} of partition {}", k.1.producer + 1, k.1.seq, k.0)
}

/// Simulated time as seconds with milliseconds, e.g. `12.300s`.
fn secs(ns: u64) -> String {
    format!(
        "{}.{:03}s",
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1_000_000
    )
}

fn fail(invariant: &'static str, detail: String) -> Check {
    Err(Violation {
        invariant,
        detail,
        nodes: vec![],
    })
}

impl QueueChecker {
    /// Estimated bytes kept: a record per message ever produced, with its
    /// receipts, and the latencies of the summary.
    pub fn retained_bytes(&self) -> u64 {
        use crate::sim::budget::entries;
        entries::<(Key, Msg)>(self.msgs.len())
            + entries::<(u32, u32)>(self.sum.receipts as usize)
            + entries::<u64>(self.sum.latency_ns.len())
            + entries::<LostMessage>(self.sum.lost.len())
    }

    /// A checker for shards running with `persistence` and queues that
    /// dead-letter a message after `max_attempts` deliveries and take back a
    /// handed-out message after `visibility_ns`.
    pub fn new(persistence: Fsync, max_attempts: u32, visibility_ns: u64) -> Self {
        QueueChecker {
            persistence,
            max_attempts,
            visibility_ns,
            msgs: MessageTable::default(),
            first_pops: BTreeMap::new(),
            migrated_in: BTreeMap::new(),
            last_empty: BTreeMap::new(),
            moves: BTreeMap::new(),
            crashes: BTreeMap::new(),
            pauses: BTreeMap::new(),
            sum: QueueSummary::default(),
        }
    }

    /// The run's queue activity so far.
    pub fn summary(&self) -> QueueSummary {
        let mut s = self.sum.clone();
        s.latency_ns.sort_unstable();
        s
    }

    fn msg(&mut self, k: Key) -> &mut Msg {
        self.msgs.entry(k)
    }

    /// Online check of one traced event at simulated time `t_ns`; Err on the
    /// first broken invariant. Events of other subsystems cost one match.
    pub fn observe(&mut self, t_ns: u64, subject: Subject, ev: &TraceEvent) -> Check {
        use TraceEvent::*;
        match *ev {
            QueueSend {
                producer,
                partition,
                first_seq,
                count,
            } => self.on_send(t_ns, batch(partition, producer, first_seq, count), count),
            QueueProduced {
                producer,
                partition,
                first_seq,
                count,
            } => self.on_produced(t_ns, batch(partition, producer, first_seq, count)),
            QueueStored {
                partition,
                producer,
                first_seq,
                stored,
                duplicate,
            } => {
                let fresh = batch(
                    partition,
                    producer,
                    first_seq + u64::from(duplicate),
                    stored,
                );
                self.on_stored(t_ns, shard_of(subject), fresh, stored, duplicate)
            }
            QueuePop {
                partition,
                producer,
                seq,
                attempt,
                ..
            } => {
                let k = key(partition, producer, seq);
                self.msg(k).last_pop_ns = Some(t_ns);
                return self.on_pop(k, attempt);
            }
            QueueEmpty { partition, .. } => {
                self.last_empty.insert(partition, t_ns);
            }
            QueueRequeued {
                partition,
                producer,
                seq,
                ..
            }
            | QueueNacked {
                partition,
                producer,
                seq,
            } => self.msg(key(partition, producer, seq)).back_in_ready_ns = Some(t_ns),
            QueueReverted {
                partition,
                producer,
                seq,
                place: "ready",
            } => self.msg(key(partition, producer, seq)).back_in_ready_ns = Some(t_ns),
            QueueReceived {
                consumer,
                partition,
                producer,
                seq,
                attempt,
            } => self.on_received(t_ns, consumer, key(partition, producer, seq), attempt),
            QueueAcked {
                partition,
                producer,
                seq,
            } => self.on_acked(key(partition, producer, seq)),
            QueueDead {
                partition,
                producer,
                seq,
                attempts,
            } => {
                return self.on_dead(key(partition, producer, seq), attempts);
            }
            QueueLost {
                partition,
                producer,
                seq,
            } => {
                return self.on_lost(t_ns, shard_of(subject), key(partition, producer, seq));
            }
            QueueRevived {
                partition,
                producer,
                seq,
                place,
            } => {
                let k = key(partition, producer, seq);
                self.on_revived(k);
                if place == "ready" {
                    self.msg(k).back_in_ready_ns = Some(t_ns);
                }
            }
            QueueMigrated {
                partition,
                to,
                epoch,
                messages,
                ..
            } => {
                // Every leader that applies the end of a move traces it (a
                // deposed one too); count each (partition, epoch) once, with
                // the largest message count any of them carried.
                let before = self.moves.insert((partition, epoch), messages);
                let carried = before.map_or(messages, |b| b.max(messages));
                self.moves.insert((partition, epoch), carried);
                if before.is_none() {
                    self.sum.migrations += 1;
                }
                self.sum.migrated_messages += carried - before.unwrap_or(0).min(carried);
                self.migrated_in.insert((partition, to as usize), t_ns);
            }
            QueueConsumerCrash { consumer, .. } => {
                self.sum.consumer_crashes += 1;
                *self.crashes.entry(consumer).or_default() += 1;
            }
            FaultPause => {
                if let Some(s) = shard_of(subject) {
                    self.pauses.entry(s).or_default().push((t_ns, None));
                }
            }
            // A crash ends a pause as a resume does: the crashed shard's
            // losses are judged at the crash, by the time it ran before it.
            FaultResume | FaultCrash | FaultRestart => {
                if let Some(open) = shard_of(subject)
                    .and_then(|s| self.pauses.get_mut(&s))
                    .and_then(|p| p.last_mut())
                    .filter(|p| p.1.is_none())
                {
                    open.1 = Some(t_ns);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_send(&mut self, t_ns: u64, ids: impl Iterator<Item = Key>, count: u32) {
        self.sum.messages_sent += u64::from(count);
        self.sum.first_send_ns.get_or_insert(t_ns);
        for k in ids {
            self.msg(k).sent_ns.get_or_insert(t_ns);
        }
    }

    fn on_produced(&mut self, t_ns: u64, ids: impl Iterator<Item = Key>) {
        self.sum.last_produced_ns = Some(t_ns);
        for k in ids {
            let m = self.msg(k);
            // A batch acknowledged twice (a retried reply) is still one produce.
            if !std::mem::replace(&mut m.produced, true) {
                self.sum.produced += 1;
            }
        }
    }

    fn on_stored(
        &mut self,
        t_ns: u64,
        shard: Option<usize>,
        fresh: impl Iterator<Item = Key>,
        stored: u32,
        duplicate: u32,
    ) {
        self.sum.stored += u64::from(stored);
        self.sum.duplicate_stores += u64::from(duplicate);
        // Without `always`, a crash can lose both a message's ack and the
        // shard's record of the producer's last seq; a retried batch then
        // stores the message anew and it may legitimately be delivered
        // again. Under `always` nothing is lost, so a fresh store of an
        // acknowledged message is a dedup failure: keep the flags so the
        // redelivery it causes is caught.
        let reborn = self.persistence != Fsync::Always;
        for k in fresh {
            let m = self.msg(k);
            m.stored = Some((shard, t_ns));
            if reborn {
                m.acked = false;
                m.dead = false;
            }
        }
    }

    fn on_pop(&mut self, k: Key, attempt: u32) -> Check {
        // Attempts bounded: a message gets at most max_attempts deliveries,
        // after which it must be dead-lettered instead of handed out.
        if attempt > self.max_attempts {
            return fail(
                "Attempts bounded",
                format!(
                    "{} handed out for attempt {attempt}, above the limit of {}",
                    msg_name(k),
                    self.max_attempts
                ),
            );
        }
        let m = self.msg(k);
        // No delivery after ack: an accepted ack removes the message for
        // good, and a dead-lettered one leaves the ready queue; only a crash
        // that revives it may bring it back.
        if m.acked || m.dead {
            let what = if m.acked {
                "acknowledged"
            } else {
                "dead-lettered"
            };
            return fail(
                "No delivery after ack",
                format!(
                    "{} handed out again after it was {what} (and not revived since)",
                    msg_name(k)
                ),
            );
        }
        m.pops += 1;
        m.max_attempt = m.max_attempt.max(attempt);
        if m.pops == 1 {
            self.first_pop_in_order(k)
        } else {
            Ok(())
        }
    }

    /// First deliveries in produce order: a partition's ready list is FIFO
    /// and a producer's seqs are stored in order, so the first time each
    /// message is handed out, its producer's seqs in that partition rise.
    /// Redeliveries (requeued, revived, re-stored) are not first pops.
    fn first_pop_in_order(&mut self, (partition, id): Key) -> Check {
        let last = self.first_pops.insert((id.producer, partition), id.seq);
        match last {
            Some(prev) if prev >= id.seq => fail(
                "First deliveries in produce order",
                format!(
                    "p{} in partition {partition}: seq {} delivered for the first time after seq {prev} was",
                    id.producer + 1,
                    id.seq
                ),
            ),
            _ => Ok(()),
        }
    }

    fn on_received(&mut self, t_ns: u64, consumer: u32, k: Key, attempt: u32) {
        let epoch = self.crashes.get(&consumer).copied().unwrap_or(0);
        let s = &mut self.sum;
        s.receipts += 1;
        s.redeliveries += u64::from(attempt > 1);
        s.first_receipt_ns.get_or_insert(t_ns);
        s.last_receipt_ns = Some(t_ns);
        let m = self.msgs.entry(k);
        m.receipts.push((consumer, epoch));
        if m.first_receipt_ns.is_some() {
            s.duplicate_deliveries += 1;
            return;
        }
        m.first_receipt_ns = Some(t_ns);
        s.delivered += 1;
        if let Some(sent) = m.sent_ns {
            s.latency_ns.push(t_ns.saturating_sub(sent));
        }
    }

    fn on_acked(&mut self, k: Key) {
        self.sum.acked += 1;
        let m = self.msg(k);
        m.ever_acked = true;
        m.acked = true;
    }

    fn on_dead(&mut self, k: Key, attempts: u32) -> Check {
        // Dead-letter exactness: a message is dead-lettered exactly when its
        // attempts are used up, not before (it would be denied a delivery)
        // and not after (Attempts bounded would already have failed).
        if attempts != self.max_attempts {
            return fail(
                "Dead-letter exactness",
                format!(
                    "{} dead-lettered after {attempts} attempts; the limit is {}",
                    msg_name(k),
                    self.max_attempts
                ),
            );
        }
        self.sum.dead += 1;
        let m = self.msg(k);
        m.ever_dead = true;
        m.dead = true;
        m.dead_last = true;
        Ok(())
    }

    fn on_revived(&mut self, k: Key) {
        self.sum.revived += 1;
        let m = self.msg(k);
        m.acked = false;
        m.dead = false;
        m.dead_last = false;
    }

    /// Loss within persistence mode: judge a message that shard `shard`
    /// lost in its crash at `t_ns`; record it if the mode permits the loss.
    fn on_lost(&mut self, t_ns: u64, shard: Option<usize>, k: Key) -> Check {
        let moved = shard.and_then(|s| self.migrated_in.get(&(k.0, s)).copied());
        let m = self.msg(k);
        m.dead_last = false;
        let stored_ns = write_time(m, shard, moved);
        let acked_to_producer = m.produced;
        let paused = match (shard, stored_ns) {
            (Some(s), Some(from)) => self.paused_between(s, from, t_ns),
            _ => 0,
        };
        let reason = judge_loss(self.persistence, t_ns, shard, stored_ns, paused)
            .map_err(|why| loss_violation(k, why))?;
        self.msg(k).permitted_losses += 1;
        self.sum.lost.push(LostMessage {
            partition: k.0,
            id: k.1,
            shard: shard.unwrap_or(usize::MAX),
            crash_ns: t_ns,
            stored_ns,
            acked_to_producer,
            reason,
        });
        Ok(())
    }

    /// How long `shard` was paused within [from, to].
    fn paused_between(&self, shard: usize, from: u64, to: u64) -> u64 {
        let Some(pauses) = self.pauses.get(&shard) else {
            return 0;
        };
        pauses
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (a.max(from), b.unwrap_or(to).min(to));
                b.saturating_sub(a)
            })
            .sum()
    }

    /// End-of-run checks against where every message finally is on the
    /// shards when the run ends at `end_ns`. Passed, it gives how many
    /// acknowledged messages were still waiting for a consumer.
    pub fn at_end(
        &self,
        final_state: &BTreeMap<(Partition, MessageId), Place>,
        end_ns: u64,
    ) -> Result<u64, Violation> {
        let waiting = self.all_delivered(final_state, end_ns)?;
        self.acked_gone(final_state)?;
        self.dead_letters_exact(final_state)?;
        Ok(waiting)
    }

    /// Acknowledged produce delivered (at least once): every message the
    /// producer was told is stored reached a consumer that lived on to
    /// process it, or was dead-lettered, or was lost as its mode permits.
    ///
    /// At-least-once is a liveness property ("eventually delivered"), and a
    /// run stops at a fixed time, so a message can end the run not yet
    /// delivered without being lost: in `ready` with no consumer having
    /// reached it yet (behind a backlog, sent just before the end, or with
    /// no consumers at all), or in flight, handed out less than a visibility
    /// timeout before the end (its consumer may still answer, and otherwise
    /// the shard puts it back in line). Such messages are counted as
    /// waiting. A message in `ready` after a shard answered a consume of
    /// its partition with nothing (so the shard skipped it), in flight past
    /// its lease, or gone from every shard is a loss. (A message skipped
    /// while later ones were served breaks first-delivery order, checked
    /// online.)
    fn all_delivered(
        &self,
        final_state: &BTreeMap<Key, Place>,
        end_ns: u64,
    ) -> Result<u64, Violation> {
        let mut waiting = 0;
        let mut missing: Vec<(&Key, &Msg)> = Vec::new();
        let open = self
            .msgs
            .sorted_where(|_, m| m.produced && !self.settled(m));
        for (k, m) in &open {
            if self.waiting(*k, m, final_state, end_ns) {
                waiting += 1;
            } else {
                missing.push((k, m));
            }
        }
        if missing.is_empty() {
            return Ok(waiting);
        }
        let stories: Vec<String> = missing
            .iter()
            .take(LIST_LIMIT)
            .map(|(k, m)| self.story(**k, m))
            .collect();
        Err(Violation {
            invariant: "Acknowledged produce delivered",
            detail: format!(
                "{} acknowledged produce(s) never delivered, dead-lettered or lost within the persistence mode; {}",
                missing.len(),
                stories.join("; ")
            ),
            nodes: vec![],
        })
    }

    /// Delivered for at-least-once purposes. A receipt counts only if its
    /// consumer has not crashed since: a crashed consumer loses what it
    /// held unprocessed, so the queue owes that message another delivery.
    fn settled(&self, m: &Msg) -> bool {
        m.ever_acked
            || m.ever_dead
            || m.permitted_losses > 0
            || m.receipts.iter().any(|&(c, e)| self.epoch(c) == e)
    }

    /// Still waiting its turn at the end: in flight within its lease, or in
    /// `ready` with no shard having answered a consume of its partition
    /// with nothing since the message last went there.
    fn waiting(&self, k: Key, m: &Msg, final_state: &BTreeMap<Key, Place>, end_ns: u64) -> bool {
        match final_state.get(&k) {
            Some(Place::Ready) => {}
            Some(Place::InFlight) => return self.in_lease_at(m, end_ns),
            _ => return false,
        }
        let Some((_, stored_ns)) = m.stored else {
            return false;
        };
        // When it last went into `ready`: its store, a later move of its
        // partition (which rewrites every message it carries), or a
        // requeue, nack or recovery that put it back.
        let moved_ns = self
            .migrated_in
            .range((k.0, 0)..=(k.0, usize::MAX))
            .map(|(_, &t)| t)
            .filter(|&t| t >= stored_ns)
            .max();
        let entered_ns = stored_ns
            .max(moved_ns.unwrap_or(0))
            .max(m.back_in_ready_ns.unwrap_or(0));
        self.last_empty.get(&k.0).is_none_or(|&t| t <= entered_ns)
    }

    /// Handed out less than a visibility timeout before `end_ns`, with room
    /// for the fastest shard clock a scenario may set (the lease runs on the
    /// shard's clock; a slow clock stretches it in global time).
    fn in_lease_at(&self, m: &Msg, end_ns: u64) -> bool {
        let stretched = self.visibility_ns.saturating_mul(LEASE_STRETCH_NUM) / LEASE_STRETCH_DEN;
        m.last_pop_ns
            .is_some_and(|t| end_ns.saturating_sub(t) < stretched)
    }

    fn epoch(&self, consumer: u32) -> u32 {
        self.crashes.get(&consumer).copied().unwrap_or(0)
    }

    /// One undelivered message's history, for a violation's detail.
    fn story(&self, k: Key, m: &Msg) -> String {
        let sent = m
            .sent_ns
            .map_or("never sent".to_owned(), |t| format!("sent at {}", secs(t)));
        let stored = match m.stored {
            Some((shard, t)) => format!("stored on {} at {}", shard_name(shard), secs(t)),
            None => "never seen stored".to_owned(),
        };
        let popped = match m.pops {
            0 => "never popped".to_owned(),
            n => format!("popped {n} time(s), last attempt {}", m.max_attempt),
        };
        let received = match m.receipts.len() {
            0 => "never received".to_owned(),
            n => format!("received {n} time(s), only by consumers that crashed before acking"),
        };
        format!(
            "{}: {sent}, {stored}, {popped}, {received}, never lost in a crash",
            msg_name(k)
        )
    }

    /// No delivery after ack, at the end: an acknowledged message (not
    /// revived since) is on no shard at all.
    fn acked_gone(&self, final_state: &BTreeMap<Key, Place>) -> Check {
        let held: Vec<String> = self
            .msgs
            .sorted_where(|k, m| m.acked && final_state.contains_key(k))
            .into_iter()
            .map(|(k, _)| format!("{} ({:?})", msg_name(k), final_state[&k]))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        fail(
            "No delivery after ack",
            format!(
                "{} acknowledged message(s) still on a shard at the end: {}",
                held.len(),
                held[..held.len().min(LIST_LIMIT)].join(", ")
            ),
        )
    }

    /// Dead-letter exactness, at the end: the dead-letter queues hold
    /// exactly the messages whose latest dead/revived/lost event was a
    /// dead-lettering.
    fn dead_letters_exact(&self, final_state: &BTreeMap<Key, Place>) -> Check {
        let is_dead = |k: &Key| final_state.get(k) == Some(&Place::Dead);
        let dead_last = |k: &Key| self.msgs.get(k).is_some_and(|m| m.dead_last);
        let missing: Vec<Key> = self
            .msgs
            .sorted_where(|k, m| m.dead_last && !is_dead(k))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let extra: Vec<Key> = final_state
            .keys()
            .copied()
            .filter(|k| is_dead(k) && !dead_last(k))
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return Ok(());
        }
        fail(
            "Dead-letter exactness",
            format!(
                "{} dead-lettered message(s) missing from the final dead-letter queues{}; {} there that were not dead-lettered last{}",
                missing.len(),
                listed(&missing),
                extra.len(),
                listed(&extra)
            ),
        )
    }
}

/// `: a, b, c` for the first few keys, or nothing.
fn listed(keys: &[Key]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let names: Vec<String> = keys.iter().take(LIST_LIMIT).map(|&k| msg_name(k)).collect();
    format!(" ({})", names.join(", "))
}

/// When the message was last written to `shard`: its latest store there,
/// or the partition's latest migration there if that came after the store
/// (a migration rewrites every message it carries on the new shard).
fn write_time(m: &Msg, shard: Option<usize>, migrated: Option<u64>) -> Option<u64> {
    let (at, t) = m.stored?;
    let here = (at.is_none() || shard.is_none() || at == shard).then_some(t);
    here.max(migrated.filter(|&mt| mt >= t))
}

/// Why a loss is permitted (Ok) or what makes it a violation (Err).
fn judge_loss(
    mode: Fsync,
    crash_ns: u64,
    shard: Option<usize>,
    stored_ns: Option<u64>,
    paused_ns: u64,
) -> Result<String, String> {
    let crashed = format!("{} crashed at {}", shard_name(shard), secs(crash_ns));
    match (mode, stored_ns) {
        (Fsync::Off, _) => Ok(format!(
            "{crashed} with persistence off; a crash keeps nothing"
        )),
        (Fsync::Always, _) => Err(format!(
            "{crashed} with appendfsync always, which fsyncs every write before answering it"
        )),
        (Fsync::EverySec, None) => Err(format!(
            "{crashed} with appendfsync everysec, and the message was never seen stored there"
        )),
        (Fsync::EverySec, Some(t)) => {
            let age = crash_ns.saturating_sub(t);
            let running = age.saturating_sub(paused_ns);
            let window = if paused_ns > 0 {
                format!(
                    "stored {} before, {} of it running (paused {})",
                    secs(age),
                    secs(running),
                    secs(paused_ns)
                )
            } else {
                format!("stored {} before", secs(age))
            };
            if running <= EVERYSEC_WINDOW_NS + EVERYSEC_SLACK_NS {
                Ok(format!(
                    "{crashed} with appendfsync everysec; {window}, not yet fsynced"
                ))
            } else {
                Err(format!(
                    "{crashed} with appendfsync everysec; {window}, beyond the {} everysec may lose (plus {} slack)",
                    secs(EVERYSEC_WINDOW_NS),
                    secs(EVERYSEC_SLACK_NS)
                ))
            }
        }
    }
}

fn loss_violation(k: Key, why: String) -> Violation {
    Violation {
        invariant: "Loss within persistence mode",
        detail: format!("{} lost: {why}", msg_name(k)),
        nodes: vec![],
    }
}

#[cfg(test)]
mod tests {
    //! Each invariant, fed a hand-made event sequence that breaks it and
    //! the legal sequence closest to it.
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    const VISIBILITY: u64 = 400 * MS;
    /// Most tests end the run long after their last event, so nothing is
    /// still within its lease.
    const END: u64 = 3_600_000 * MS;
    const SHARD: Subject = Subject::Shard(1);

    fn send(seq: u64, count: u32) -> TraceEvent {
        TraceEvent::QueueSend {
            producer: 0,
            partition: 3,
            first_seq: seq,
            count,
        }
    }

    fn produced(seq: u64, count: u32) -> TraceEvent {
        TraceEvent::QueueProduced {
            producer: 0,
            partition: 3,
            first_seq: seq,
            count,
        }
    }

    fn stored(seq: u64, stored: u32, duplicate: u32) -> TraceEvent {
        TraceEvent::QueueStored {
            partition: 3,
            producer: 0,
            first_seq: seq,
            stored,
            duplicate,
        }
    }

    fn pop(seq: u64, attempt: u32) -> TraceEvent {
        TraceEvent::QueuePop {
            partition: 3,
            consumer: 0,
            producer: 0,
            seq,
            attempt,
        }
    }

    fn received(consumer: u32, seq: u64, attempt: u32) -> TraceEvent {
        TraceEvent::QueueReceived {
            consumer,
            partition: 3,
            producer: 0,
            seq,
            attempt,
        }
    }

    fn acked(seq: u64) -> TraceEvent {
        TraceEvent::QueueAcked {
            partition: 3,
            producer: 0,
            seq,
        }
    }

    fn dead(seq: u64, attempts: u32) -> TraceEvent {
        TraceEvent::QueueDead {
            partition: 3,
            producer: 0,
            seq,
            attempts,
        }
    }

    fn lost(seq: u64) -> TraceEvent {
        TraceEvent::QueueLost {
            partition: 3,
            producer: 0,
            seq,
        }
    }

    fn revived(seq: u64) -> TraceEvent {
        TraceEvent::QueueRevived {
            partition: 3,
            producer: 0,
            seq,
            place: "ready",
        }
    }

    fn id(seq: u64) -> Key {
        key(3, 0, seq)
    }

    /// Feeds (time, event) pairs at shard s2; the first violation's name.
    fn feed_with(c: &mut QueueChecker, events: &[(u64, TraceEvent)]) -> Option<&'static str> {
        events
            .iter()
            .find_map(|(t, e)| c.observe(*t, SHARD, e).err())
            .map(|v| v.invariant)
    }

    fn feed(mode: Fsync, events: &[(u64, TraceEvent)]) -> (QueueChecker, Option<&'static str>) {
        let mut c = QueueChecker::new(mode, 3, VISIBILITY);
        let got = feed_with(&mut c, events);
        (c, got)
    }

    fn at(events: &[TraceEvent]) -> Vec<(u64, TraceEvent)> {
        events
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (i as u64 * MS, e))
            .collect()
    }

    fn end(c: &QueueChecker, places: &[(u64, Place)]) -> Option<&'static str> {
        end_at(c, places, END)
    }

    fn end_at(c: &QueueChecker, places: &[(u64, Place)], end_ns: u64) -> Option<&'static str> {
        c.at_end(&end_places(places), end_ns)
            .err()
            .map(|v| v.invariant)
    }

    fn end_places(places: &[(u64, Place)]) -> BTreeMap<Key, Place> {
        places.iter().map(|&(s, p)| (id(s), p)).collect()
    }

    #[test]
    fn pop_after_ack_is_caught() {
        let evs = at(&[stored(1, 1, 0), pop(1, 1), acked(1), pop(1, 2)]);
        assert_eq!(feed(Fsync::Always, &evs).1, Some("No delivery after ack"));
    }

    #[test]
    fn pop_after_ack_and_revive_is_allowed() {
        let evs = at(&[stored(1, 1, 0), pop(1, 1), acked(1), revived(1), pop(1, 2)]);
        assert_eq!(feed(Fsync::EverySec, &evs).1, None);
    }

    #[test]
    fn pop_of_a_dead_letter_is_caught_unless_revived() {
        let evs = at(&[stored(1, 1, 0), pop(1, 3), dead(1, 3), pop(1, 1)]);
        assert_eq!(feed(Fsync::Always, &evs).1, Some("No delivery after ack"));
        let evs = at(&[
            stored(1, 1, 0),
            pop(1, 3),
            dead(1, 3),
            revived(1),
            pop(1, 1),
        ]);
        assert_eq!(feed(Fsync::EverySec, &evs).1, None);
    }

    #[test]
    fn restore_after_ack_is_a_new_message_only_when_writes_can_be_lost() {
        let evs = at(&[
            stored(1, 1, 0),
            pop(1, 1),
            acked(1),
            stored(1, 1, 0),
            pop(1, 1),
        ]);
        assert_eq!(feed(Fsync::EverySec, &evs).1, None);
        assert_eq!(feed(Fsync::Always, &evs).1, Some("No delivery after ack"));
    }

    #[test]
    fn out_of_order_first_pops_are_caught() {
        let evs = at(&[stored(1, 3, 0), pop(2, 1), pop(1, 1)]);
        assert_eq!(
            feed(Fsync::Always, &evs).1,
            Some("First deliveries in produce order")
        );
    }

    #[test]
    fn redelivery_of_an_earlier_seq_is_allowed() {
        let evs = at(&[stored(1, 3, 0), pop(1, 1), pop(2, 1), pop(1, 2), pop(3, 1)]);
        assert_eq!(feed(Fsync::Always, &evs).1, None);
    }

    #[test]
    fn a_message_popped_lost_and_popped_again_is_not_a_first_pop() {
        let evs = at(&[
            stored(1, 2, 0),
            pop(1, 1),
            pop(2, 1),
            lost(1),
            stored(1, 1, 0),
            pop(1, 1),
        ]);
        assert_eq!(feed(Fsync::Off, &evs).1, None);
    }

    #[test]
    fn pops_beyond_max_attempts_are_caught() {
        let evs = at(&[stored(1, 1, 0), pop(1, 3)]);
        assert_eq!(feed(Fsync::Always, &evs).1, None);
        let evs = at(&[stored(1, 1, 0), pop(1, 4)]);
        assert_eq!(feed(Fsync::Always, &evs).1, Some("Attempts bounded"));
    }

    #[test]
    fn dead_letter_before_attempts_are_used_up_is_caught() {
        let evs = at(&[stored(1, 1, 0), pop(1, 2), dead(1, 2)]);
        assert_eq!(feed(Fsync::Always, &evs).1, Some("Dead-letter exactness"));
    }

    #[test]
    fn everysec_loss_half_a_second_after_store_is_allowed_and_listed() {
        let evs = [(11_800 * MS, stored(1, 1, 0)), (12_300 * MS, lost(1))];
        let (c, got) = feed(Fsync::EverySec, &evs);
        assert_eq!(got, None);
        let lost = &c.summary().lost;
        assert_eq!(lost.len(), 1);
        assert_eq!(
            (lost[0].shard, lost[0].crash_ns, lost[0].stored_ns),
            (1, 12_300 * MS, Some(11_800 * MS))
        );
        assert_eq!(
            lost[0].reason,
            "s2 crashed at 12.300s with appendfsync everysec; stored 0.500s before, not yet fsynced"
        );
    }

    #[test]
    fn everysec_loss_three_seconds_after_store_is_caught() {
        let evs = [(S, stored(1, 1, 0)), (4 * S, lost(1))];
        assert_eq!(
            feed(Fsync::EverySec, &evs).1,
            Some("Loss within persistence mode")
        );
    }

    #[test]
    fn everysec_loss_is_bounded_by_one_second_plus_the_slack() {
        for (age, verdict) in [
            (S, None),
            (S + MS, None),
            (S + 2 * MS, Some("Loss within persistence mode")),
            // What the old fixed fsync grid could lose after a forced fsync.
            (1_930 * MS, Some("Loss within persistence mode")),
        ] {
            let evs = [(S, stored(1, 1, 0)), (S + age, lost(1))];
            assert_eq!(feed(Fsync::EverySec, &evs).1, verdict, "age {age}");
        }
    }

    #[test]
    fn everysec_window_leaves_out_the_time_the_shard_was_paused() {
        // Stored at 1s, paused from 1.5s to 4.5s, crashed at 5s: it ran 1s
        // since the store.
        let evs = [
            (S, stored(1, 1, 0)),
            (1_500 * MS, TraceEvent::FaultPause),
            (4_500 * MS, TraceEvent::FaultResume),
            (5 * S, lost(1)),
        ];
        let (c, got) = feed(Fsync::EverySec, &evs);
        assert_eq!(got, None);
        assert_eq!(
            c.summary().lost[0].reason,
            "s2 crashed at 5.000s with appendfsync everysec; stored 4.000s before, 1.000s of it running (paused 3.000s), not yet fsynced"
        );
        // Crashed while paused: the pause lasts until the crash.
        let evs = [
            (S, stored(1, 1, 0)),
            (1_900 * MS, TraceEvent::FaultPause),
            (9 * S, TraceEvent::FaultCrash),
            (9 * S, lost(1)),
        ];
        assert_eq!(feed(Fsync::EverySec, &evs).1, None);
        // A pause of another shard does not count.
        let mut c = QueueChecker::new(Fsync::EverySec, 3, VISIBILITY);
        c.observe(1_500 * MS, Subject::Shard(0), &TraceEvent::FaultPause)
            .unwrap();
        let evs = [(S, stored(1, 1, 0)), (5 * S, lost(1))];
        assert_eq!(
            feed_with(&mut c, &evs),
            Some("Loss within persistence mode")
        );
        // Nor does a pause before the store.
        let evs = [
            (0, TraceEvent::FaultPause),
            (S, TraceEvent::FaultResume),
            (S, stored(1, 1, 0)),
            (2_500 * MS, lost(1)),
        ];
        assert_eq!(
            feed(Fsync::EverySec, &evs).1,
            Some("Loss within persistence mode")
        );
    }

    #[test]
    fn everysec_loss_of_a_message_never_seen_stored_is_caught() {
        assert_eq!(
            feed(Fsync::EverySec, &[(S, lost(1))]).1,
            Some("Loss within persistence mode")
        );
    }

    #[test]
    fn everysec_loss_soon_after_a_migration_in_is_allowed() {
        let moved = TraceEvent::QueueMigrated {
            partition: 3,
            from: 0,
            to: 1,
            epoch: 2,
            messages: 1,
        };
        let stored_on_s1 = TraceEvent::QueueStored {
            partition: 3,
            producer: 0,
            first_seq: 1,
            stored: 1,
            duplicate: 0,
        };
        let mut c = QueueChecker::new(Fsync::EverySec, 3, VISIBILITY);
        c.observe(S, Subject::Shard(0), &stored_on_s1).unwrap();
        assert_eq!(
            feed_with(&mut c, &[(10 * S, moved), (10 * S + 500 * MS, lost(1))]),
            None
        );
        assert_eq!(c.summary().lost[0].stored_ns, Some(10 * S));
    }

    #[test]
    fn always_loss_is_caught() {
        let evs = [(S, stored(1, 1, 0)), (S + MS, lost(1))];
        assert_eq!(
            feed(Fsync::Always, &evs).1,
            Some("Loss within persistence mode")
        );
    }

    #[test]
    fn off_loss_is_allowed() {
        let evs = [(S, stored(1, 1, 0)), (100 * S, lost(1))];
        let (c, got) = feed(Fsync::Off, &evs);
        assert_eq!(got, None);
        assert_eq!(c.summary().lost.len(), 1);
    }

    /// Acknowledged, then skipped by a consume that found its partition
    /// empty, or gone from every shard: never received is a loss.
    #[test]
    fn produced_but_never_received_is_caught() {
        let (c, got) = feed(
            Fsync::Always,
            &at(&[send(1, 1), stored(1, 1, 0), produced(1, 1), empty()]),
        );
        assert_eq!(got, None);
        assert_eq!(
            end(&c, &[(1, Place::Ready)]),
            Some("Acknowledged produce delivered")
        );
        assert_eq!(end(&c, &[]), Some("Acknowledged produce delivered"));
    }

    /// A backlog the run ended in: 2 waits in `ready` behind 1, which the
    /// same shard handed out after 2 arrived. Not yet delivered is not lost;
    /// the same message gone, or stuck in flight, still is.
    #[test]
    fn ready_behind_a_backlog_at_the_end_is_waiting_not_lost() {
        let evs = at(&[
            send(1, 2),
            stored(1, 2, 0),
            produced(1, 2),
            pop(1, 1),
            received(0, 1, 1),
        ]);
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &[(1, Place::InFlight), (2, Place::Ready)]), None);
        assert_eq!(
            end(&c, &[(1, Place::InFlight)]),
            Some("Acknowledged produce delivered")
        );
        assert_eq!(
            end(&c, &[(1, Place::InFlight), (2, Place::InFlight)]),
            Some("Acknowledged produce delivered")
        );
    }

    /// Handed out just before the run ended: in flight within its lease is
    /// not lost (the consumer may still answer); in flight past its lease
    /// is, and so is a message nobody ever handed out.
    #[test]
    fn in_flight_within_its_lease_at_the_end_is_waiting_not_lost() {
        let evs = at(&[send(1, 1), stored(1, 1, 0), produced(1, 1), pop(1, 1)]);
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        let fin = [(1, Place::InFlight)];
        let popped = 3 * MS;
        assert_eq!(end_at(&c, &fin, popped + VISIBILITY), None);
        assert_eq!(
            end_at(&c, &fin, popped + 2 * VISIBILITY),
            Some("Acknowledged produce delivered")
        );
        let (c, _) = feed(Fsync::Always, &evs[..3]);
        assert_eq!(
            end_at(&c, &fin, popped),
            Some("Acknowledged produce delivered")
        );
    }

    fn empty() -> TraceEvent {
        TraceEvent::QueueEmpty {
            partition: 3,
            consumer: 0,
        }
    }

    /// A message nobody asked for yet is waiting, however late it arrived;
    /// once a shard answers a consume of its partition with nothing while
    /// it sits in `ready`, it was skipped, and that is a loss. An empty
    /// answer before it arrived proves nothing.
    #[test]
    fn ready_after_an_empty_answer_for_its_partition_is_caught() {
        let evs = at(&[
            send(1, 1),
            stored(1, 1, 0),
            produced(1, 1),
            pop(1, 1),
            received(0, 1, 1),
            empty(),
            send(2, 1),
            stored(2, 1, 0),
            produced(2, 1),
        ]);
        let fin = [(1, Place::InFlight), (2, Place::Ready)];
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &fin), None);
        assert_eq!(c.at_end(&end_places(&fin), END), Ok(1));
        let mut skipped = evs.clone();
        skipped.push((skipped.len() as u64 * MS, empty()));
        let (c, got) = feed(Fsync::Always, &skipped);
        assert_eq!(got, None);
        assert_eq!(end(&c, &fin), Some("Acknowledged produce delivered"));
    }

    /// No consumers at all: every acknowledged message is still waiting,
    /// which is not a loss.
    #[test]
    fn without_consumers_every_message_is_waiting() {
        let evs = at(&[send(1, 3), stored(1, 3, 0), produced(1, 3)]);
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        let fin = [(1, Place::Ready), (2, Place::Ready), (3, Place::Ready)];
        assert_eq!(c.at_end(&end_places(&fin), END), Ok(3));
    }

    /// Back in `ready` after an empty answer (its lease ran out and the
    /// next consume requeued it): waiting again, not skipped.
    #[test]
    fn requeued_after_an_empty_answer_is_waiting() {
        let requeued = TraceEvent::QueueRequeued {
            partition: 3,
            producer: 0,
            seq: 1,
            attempt: 1,
        };
        let evs = at(&[
            send(1, 1),
            stored(1, 1, 0),
            produced(1, 1),
            pop(1, 1),
            empty(),
            requeued,
        ]);
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &[(1, Place::Ready)]), None);
        let (c, _) = feed(Fsync::Always, &evs[..5]);
        assert_eq!(
            end(&c, &[(1, Place::Ready)]),
            Some("Acknowledged produce delivered")
        );
    }

    /// A move rewrites the messages it carries into `ready` on the new
    /// shard: an empty answer before the move does not convict them, one
    /// after it does.
    #[test]
    fn ready_after_a_move_is_judged_from_the_move() {
        let moved = TraceEvent::QueueMigrated {
            partition: 3,
            from: 1,
            to: 2,
            epoch: 1,
            messages: 1,
        };
        let mut c = QueueChecker::new(Fsync::Always, 3, VISIBILITY);
        let early = [
            (MS, send(1, 2)),
            (2 * MS, stored(1, 2, 0)),
            (3 * MS, produced(1, 2)),
            (4 * MS, pop(1, 1)),
            (5 * MS, received(0, 1, 1)),
        ];
        assert_eq!(feed_with(&mut c, &early), None);
        let fin = [(1, Place::InFlight), (2, Place::Ready)];
        c.observe(6 * MS, SHARD, &empty()).unwrap();
        assert_eq!(end(&c, &fin), Some("Acknowledged produce delivered"));
        c.observe(7 * MS, Subject::Node(0), &moved).unwrap();
        assert_eq!(end(&c, &fin), None);
        c.observe(8 * MS, Subject::Shard(2), &empty()).unwrap();
        assert_eq!(end(&c, &fin), Some("Acknowledged produce delivered"));
    }

    #[test]
    fn produced_and_received_is_delivered() {
        let evs = at(&[
            send(1, 1),
            stored(1, 1, 0),
            produced(1, 1),
            pop(1, 1),
            received(0, 1, 1),
        ]);
        let (c, _) = feed(Fsync::Always, &evs);
        assert_eq!(end(&c, &[(1, Place::InFlight)]), None);
    }

    #[test]
    fn received_only_by_a_consumer_that_crashed_is_not_delivered() {
        let crash = TraceEvent::QueueConsumerCrash {
            consumer: 0,
            holding: 1,
        };
        let evs = at(&[
            send(1, 1),
            stored(1, 1, 0),
            produced(1, 1),
            pop(1, 1),
            received(0, 1, 1),
            crash,
        ]);
        let (c, _) = feed(Fsync::Always, &evs);
        assert_eq!(
            end(&c, &[(1, Place::InFlight)]),
            Some("Acknowledged produce delivered")
        );
    }

    #[test]
    fn produced_and_lost_within_the_mode_is_allowed() {
        let evs = at(&[send(1, 1), stored(1, 1, 0), produced(1, 1), lost(1)]);
        let (c, got) = feed(Fsync::EverySec, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &[]), None);
        assert!(c.summary().lost[0].acked_to_producer);
    }

    #[test]
    fn produced_and_dead_lettered_is_allowed() {
        let evs = at(&[
            send(1, 1),
            stored(1, 1, 0),
            produced(1, 1),
            pop(1, 3),
            dead(1, 3),
        ]);
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &[(1, Place::Dead)]), None);
    }

    #[test]
    fn acked_message_still_on_a_shard_at_the_end_is_caught() {
        let evs = at(&[stored(1, 1, 0), pop(1, 1), received(0, 1, 1), acked(1)]);
        let (c, _) = feed(Fsync::Always, &evs);
        assert_eq!(end(&c, &[]), None);
        assert_eq!(end(&c, &[(1, Place::Ready)]), Some("No delivery after ack"));
    }

    #[test]
    fn final_dead_letters_must_match_in_both_directions() {
        let evs = at(&[stored(1, 2, 0), pop(1, 3), dead(1, 3), pop(2, 1)]);
        let (c, _) = feed(Fsync::Always, &evs);
        assert_eq!(end(&c, &[(1, Place::Dead), (2, Place::InFlight)]), None);
        // Dead-lettered, but not in the dead-letter queue at the end.
        assert_eq!(
            end(&c, &[(1, Place::Ready), (2, Place::InFlight)]),
            Some("Dead-letter exactness")
        );
        // In the dead-letter queue without having been dead-lettered.
        assert_eq!(
            end(&c, &[(1, Place::Dead), (2, Place::Dead)]),
            Some("Dead-letter exactness")
        );
    }

    #[test]
    fn a_dead_letter_revived_or_lost_is_not_expected_dead() {
        let evs = at(&[
            stored(1, 2, 0),
            pop(1, 3),
            dead(1, 3),
            revived(1),
            pop(2, 3),
            dead(2, 3),
            lost(2),
        ]);
        let (c, got) = feed(Fsync::Off, &evs);
        assert_eq!(got, None);
        assert_eq!(end(&c, &[(1, Place::Ready)]), None);
    }

    #[test]
    fn duplicates_are_the_first_seqs_of_a_stored_batch() {
        // Seqs 1..=2 were stored already; a retry of 1..=4 stores only 3 and 4.
        let evs = at(&[stored(1, 2, 0), stored(1, 2, 2)]);
        let (c, _) = feed(Fsync::Always, &evs);
        assert_eq!(c.msgs.get(&id(3)).unwrap().stored, Some((Some(1), MS)));
        assert_eq!(c.msgs.get(&id(1)).unwrap().stored, Some((Some(1), 0)));
    }

    #[test]
    fn summary_counts_a_small_run() {
        let evs = [
            (0, send(1, 3)),
            (MS, stored(1, 3, 0)),
            (2 * MS, stored(1, 0, 3)),
            (3 * MS, produced(1, 3)),
            (4 * MS, pop(1, 1)),
            (10 * MS, received(0, 1, 1)),
            (20 * MS, received(1, 2, 1)),
            (30 * MS, received(1, 3, 1)),
            (40 * MS, received(0, 1, 2)),
            (50 * MS, received(0, 1, 3)),
        ];
        let (c, got) = feed(Fsync::Always, &evs);
        assert_eq!(got, None);
        let s = c.summary();
        assert_eq!(
            (s.messages_sent, s.produced, s.stored, s.duplicate_stores),
            (3, 3, 3, 3)
        );
        assert_eq!(
            (
                s.delivered,
                s.receipts,
                s.redeliveries,
                s.duplicate_deliveries
            ),
            (3, 5, 2, 2)
        );
        assert_eq!(s.latency_ns, vec![10 * MS, 20 * MS, 30 * MS]);
        assert_eq!(s.latency_percentile(0.0), Some(10 * MS));
        assert_eq!(s.latency_percentile(0.5), Some(20 * MS));
        assert_eq!(s.latency_percentile(0.99), Some(30 * MS));
        assert_eq!(QueueSummary::default().latency_percentile(0.5), None);
        assert!((s.produce_rate_per_s() - 1000.0).abs() < 1e-6);
        assert!((s.consume_rate_per_s() - 75.0).abs() < 1e-6);
    }
}
