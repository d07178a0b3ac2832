//! A Redis shard as a network endpoint: the stand-in server with the queue's
//! functions loaded, its append-only file, and what a crash does to it.
//!
//! Each call runs one queue function atomically on the keyspace; its writes
//! go to the append-only file together, then the answer goes back. The
//! shard traces what each call did to messages (stored, handed out, acked,
//! requeued, dead-lettered) so the delivery checker sees the shard's own
//! view, and at a crash it traces exactly which messages the crash takes
//! away and which acks it undoes.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::functions::{self, Consumed, MessageId, Nacked, Partition, Place, Tx};
use super::protocol::{ShardAnswer, ShardCall};
use crate::env::{Env, Timer};
use crate::node::Msg;
use crate::redis::{Aof, Fsync, Resp, Store};
use crate::trace::{NodeId, TraceEvent};

const SECOND_NS: u64 = 1_000_000_000;

/// One Redis shard.
#[derive(Clone)]
pub struct Shard {
    store: Store,
    aof: Aof,
    mode: Fsync,
    partitions: u32,
    /// Planted bug `redis.everysec_loses_too_much`: every write pushes the
    /// fsync a second further out.
    fsync_debounced: bool,
}

impl Shard {
    /// Estimated bytes kept: the keyspace and the append-only file.
    pub fn retained_bytes(&self) -> u64 {
        self.store.retained_bytes() + self.aof.retained_bytes()
    }

    /// A shard with an empty keyspace, persisting under `mode`.
    pub fn new(mode: Fsync, partitions: u32, fsync_debounced: bool) -> Self {
        Shard {
            store: Store::default(),
            aof: Aof::new(mode),
            mode,
            partitions,
            fsync_debounced,
        }
    }

    /// Starts serving (at the beginning, or after a restart).
    pub fn start(&mut self, env: &mut impl Env) {
        if self.mode == Fsync::EverySec {
            env.set_timer(Timer::Fsync, SECOND_NS);
        }
    }

    /// The once-a-second fsync of `everysec`: the timer is always armed for
    /// one second after the previous fsync, so when it fires a second has
    /// passed and the file is synced.
    pub fn on_timer(&mut self, env: &mut impl Env, timer: Timer) {
        if timer == Timer::Fsync && self.mode == Fsync::EverySec {
            let now = env.now();
            self.aof.sync_now(now);
            self.aof.maybe_rewrite(now, &self.store);
            env.set_timer(Timer::Fsync, SECOND_NS);
        }
    }

    /// Runs one call and answers it.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        let Msg::Shard { req, call } = msg else {
            return;
        };
        let now = env.now();
        let mut tx = Tx::new(&mut self.store, &mut self.aof, now);
        let answer = run(&mut tx, &call, &mut |ev| env.trace(ev));
        let wrote = tx.succeeded();
        // A move's steps are made durable before they are answered (as with
        // WAITAOF): the leader commits a move only on the strength of them,
        // so a crash must not bring back a dropped copy or lose a fence or
        // an import. So are the caches' memory writes and fences: a cache
        // forgets dirty data once memory confirms it.
        let durable = matches!(
            call,
            ShardCall::Freeze { .. }
                | ShardCall::Import { .. }
                | ShardCall::Drop { .. }
                | ShardCall::MemGet { .. }
                | ShardCall::MemSet { .. }
        );
        if durable {
            self.aof.sync_now(now);
            // A forced fsync restarts the once-a-second window: the next one
            // is due a second after this one, not on a fixed grid that may
            // then find less than a second gone and skip a whole period.
            if self.mode == Fsync::EverySec {
                env.set_timer(Timer::Fsync, SECOND_NS);
            }
        }
        if wrote && self.fsync_debounced && self.mode == Fsync::EverySec {
            env.set_timer(Timer::Fsync, SECOND_NS);
        }
        // Between calls: where Redis's automatic AOF rewrite starts and ends.
        self.aof.maybe_rewrite(now, &self.store);
        env.send(from, Msg::ShardAnswer { req, answer });
    }

    /// A crash: the keyspace is gone and the file keeps its synced prefix.
    /// Traces, at the moment of the crash, every message that will not come
    /// back, every ack or dead-lettering that will be undone, and every
    /// message that comes back in another place (a pop or nack undone).
    pub fn crash(&mut self, env: &mut impl Env) {
        let now = env.now();
        let before = functions::messages(&mut self.store, now, self.partitions);
        self.aof.crash();
        self.store = self.aof.recover();
        let after = functions::messages(&mut self.store, now, self.partitions);
        for (&(partition, id), _) in before.iter().filter(|(k, _)| !after.contains_key(*k)) {
            env.trace(TraceEvent::QueueLost {
                partition,
                producer: id.producer,
                seq: id.seq,
            });
        }
        for (&(partition, id), &place) in &after {
            let (producer, seq, name) = (id.producer, id.seq, place.name());
            match before.get(&(partition, id)) {
                // Acked before the crash, or dead-lettered and now back in line.
                None => {}
                Some(&Place::Dead) if place != Place::Dead => {}
                // An unsynced pop or nack undone: the message only moved.
                Some(&was) if was != place => {
                    env.trace(TraceEvent::QueueReverted {
                        partition,
                        producer,
                        seq,
                        place: name,
                    });
                    continue;
                }
                Some(_) => continue,
            }
            env.trace(TraceEvent::QueueRevived {
                partition,
                producer,
                seq,
                place: name,
            });
        }
    }

    /// Where every message is now, for the end-of-run check.
    pub fn messages(&mut self, now_ns: u64) -> BTreeMap<(Partition, MessageId), Place> {
        functions::messages(&mut self.store, now_ns, self.partitions)
    }

    /// Where every message is now, read from a copy of the keyspace: a read
    /// through `Store::execute` may expire keys as it goes, and an observer
    /// (the stepper) must leave the run exactly as it found it.
    pub fn peek_messages(&self, now_ns: u64) -> BTreeMap<(Partition, MessageId), Place> {
        functions::messages(&mut self.store.clone(), now_ns, self.partitions)
    }
}

/// Runs one call on a bare keyspace at `now_ns`, exactly as a shard answers
/// it but with no trace, file or fsync: what the differential test holds
/// the Lua library (src/queue/functions.lua) on a real Redis to.
#[cfg(all(test, feature = "real-network", not(madsim)))]
pub(crate) fn run_on(store: &mut Store, now_ns: u64, call: &ShardCall) -> ShardAnswer {
    let mut aof = Aof::new(Fsync::Off);
    run(&mut Tx::new(store, &mut aof, now_ns), call, &mut |_| {})
}

/// Runs one queue function and traces what it did to messages. It takes a
/// tracer rather than the whole `Env`, since tracing is all it asks of its
/// surroundings: so it can also run where there is no endpoint.
fn run(tx: &mut Tx, call: &ShardCall, trace: &mut impl FnMut(TraceEvent)) -> ShardAnswer {
    let refused = ShardAnswer::Refused;
    match call {
        ShardCall::Produce {
            partition,
            producer,
            first_seq,
            bodies,
        } => match functions::produce(tx, *partition, *producer, *first_seq, bodies) {
            Ok(s) => {
                trace(TraceEvent::QueueStored {
                    partition: *partition,
                    producer: *producer,
                    first_seq: *first_seq,
                    stored: s.stored,
                    duplicate: s.duplicate,
                });
                ShardAnswer::Stored(s)
            }
            Err(r) => refused(r),
        },
        ShardCall::Consume {
            partition,
            consumer,
            max,
            visibility_ns,
            max_attempts,
            honour_visibility,
        } => match functions::consume(
            tx,
            *partition,
            *max,
            *visibility_ns,
            *max_attempts,
            *honour_visibility,
        ) {
            Ok(c) => {
                trace_consumed(trace, *partition, *consumer, &c);
                ShardAnswer::Delivered(c.deliveries)
            }
            Err(r) => refused(r),
        },
        ShardCall::Settle {
            partition,
            acks,
            nacks,
            max_attempts,
        } => match settle(tx, *partition, acks, nacks, *max_attempts, trace) {
            Ok(n) => ShardAnswer::Settled(n),
            Err(r) => refused(r),
        },
        // A step of an older move than the one that brought the partition
        // here (a deposed leader's, or a delayed copy) must not touch it.
        ShardCall::Freeze {
            partition, epoch, ..
        }
        | ShardCall::Drop { partition, epoch }
            if imported_epoch(tx, *partition) >= *epoch =>
        {
            match call {
                ShardCall::Drop { .. } => ShardAnswer::Done,
                _ => refused(functions::Refused::Moved { epoch: *epoch }),
            }
        }
        ShardCall::Freeze {
            partition,
            epoch,
            include_inflight,
        } => ShardAnswer::Frozen(Rc::new(functions::freeze(
            tx,
            *partition,
            *epoch,
            *include_inflight,
        ))),
        ShardCall::Import {
            partition,
            epoch,
            dump,
        } => {
            import_once(tx, *partition, *epoch, dump);
            ShardAnswer::Done
        }
        ShardCall::Drop { partition, epoch } => {
            functions::drop_partition(tx, *partition, *epoch);
            ShardAnswer::Done
        }
        ShardCall::MemGet { key, fence } => {
            if memory_fence(tx, *key) < *fence {
                let k = format!("cache-fence:{key}");
                tx.call(&[b"SET", k.as_bytes(), fence.to_string().as_bytes()]);
            }
            ShardAnswer::Memory(memory_get(tx, *key))
        }
        ShardCall::MemSet {
            key,
            value,
            version,
            fence,
        } => {
            // Versions only go forward: a delayed write-back never rolls
            // back; and none from a home that has since restarted lands.
            let known = memory_fence(tx, *key);
            if known < *fence {
                let k = format!("cache-fence:{key}");
                tx.call(&[b"SET", k.as_bytes(), fence.to_string().as_bytes()]);
            }
            if *fence >= known && memory_get(tx, *key).is_none_or(|(_, v)| *version >= v) {
                let k = format!("cache:{key}");
                tx.call(&[
                    b"SET",
                    k.as_bytes(),
                    format!("{version}:{value}").as_bytes(),
                ]);
                trace(TraceEvent::CacheWriteBack {
                    key: *key,
                    value: *value,
                });
            }
            // What memory holds now: this value, or a newer one.
            ShardAnswer::Memory(memory_get(tx, *key))
        }
    }
}

/// A cache key's (value, version) in memory, stored as "version:value".
fn memory_get(tx: &mut Tx, key: u32) -> Option<(u64, u64)> {
    let k = format!("cache:{key}");
    let Resp::Bulk(Some(v)) = tx.call(&[b"GET", k.as_bytes()]) else {
        return None;
    };
    parse_memory(&v)
}

/// A cache key's stored "version:value" as (value, version); None if it is
/// not two numbers, which memory then treats as never written.
pub(super) fn parse_memory(v: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(v).ok()?;
    let (version, value) = text.split_once(':')?;
    Some((value.parse().ok()?, version.parse().ok()?))
}

/// The oldest home incarnation whose writes of a cache key memory still
/// accepts (0: any).
fn memory_fence(tx: &mut Tx, key: u32) -> u64 {
    stored_number(tx, &format!("cache-fence:{key}"))
}

/// The ring epoch of the move that last brought `partition` to this shard
/// (0: it started here, or never came).
fn imported_epoch(tx: &mut Tx, partition: Partition) -> u64 {
    stored_number(tx, &format!("{{q{partition}}}:imported"))
}

/// A number kept under `key` (0 when there is none).
fn stored_number(tx: &mut Tx, key: &str) -> u64 {
    match tx.call(&[b"GET", key.as_bytes()]) {
        Resp::Bulk(Some(v)) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Imports a partition unless this epoch's import (or a later one) already
/// happened: a new leader redoing a move may freeze the old shard after its
/// data was dropped, and its empty dump must not wipe what the first import
/// wrote; nor may a delayed import of an older move.
fn import_once(tx: &mut Tx, partition: Partition, epoch: u64, dump: &functions::Dump) {
    if imported_epoch(tx, partition) >= epoch {
        return;
    }
    functions::import(tx, partition, dump);
    let key = format!("{{q{partition}}}:imported");
    tx.call(&[b"SET", key.as_bytes(), epoch.to_string().as_bytes()]);
}

fn trace_consumed(
    trace: &mut impl FnMut(TraceEvent),
    partition: Partition,
    consumer: u32,
    c: &Consumed,
) {
    for &(id, attempt) in &c.requeued {
        trace(TraceEvent::QueueRequeued {
            partition,
            producer: id.producer,
            seq: id.seq,
            attempt,
        });
    }
    for &(id, attempts) in &c.dead {
        trace(TraceEvent::QueueDead {
            partition,
            producer: id.producer,
            seq: id.seq,
            attempts,
        });
    }
    if c.deliveries.is_empty() {
        trace(TraceEvent::QueueEmpty {
            partition,
            consumer,
        });
    }
    for d in &c.deliveries {
        trace(TraceEvent::QueuePop {
            partition,
            consumer,
            producer: d.id.producer,
            seq: d.id.seq,
            attempt: d.attempt,
        });
    }
}

/// Acks then nacks, one function call: a refusal can only come first,
/// before anything changed, since the partition cannot move mid-call.
fn settle(
    tx: &mut Tx,
    partition: Partition,
    acks: &[MessageId],
    nacks: &[MessageId],
    max_attempts: u32,
    trace: &mut impl FnMut(TraceEvent),
) -> Result<u32, functions::Refused> {
    let mut done = 0;
    for &id in acks {
        if functions::ack(tx, partition, id)? {
            done += 1;
            trace(TraceEvent::QueueAcked {
                partition,
                producer: id.producer,
                seq: id.seq,
            });
        }
    }
    for &id in nacks {
        let n = functions::nack(tx, partition, id, max_attempts)?;
        trace_nacked(trace, partition, id, n);
    }
    Ok(done)
}

fn trace_nacked(
    trace: &mut impl FnMut(TraceEvent),
    partition: Partition,
    id: MessageId,
    n: Nacked,
) {
    if n == Nacked::NotInFlight {
        return;
    }
    trace(TraceEvent::QueueNacked {
        partition,
        producer: id.producer,
        seq: id.seq,
    });
    if let Nacked::Dead(attempts) = n {
        trace(TraceEvent::QueueDead {
            partition,
            producer: id.producer,
            seq: id.seq,
            attempts,
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::run::{RunOptions, run_scenario};

    /// `queue-everysec-forced-sync`: moving partitions off s3 fsyncs it at
    /// about 4.3s, between two of its timer's fsyncs, and s3 crashes at
    /// 5.95s. The next fsync must come a second after the forced one: a
    /// timer left on its old once-a-second grid skips 5s (less than a
    /// second since 4.3s) and the crash loses about 1.6s of writes, which
    /// the delivery checker rejects.
    #[test]
    fn a_forced_fsync_restarts_the_everysec_window() {
        let sc = crate::explore::hunt::shipped("queue-everysec-forced-sync")
            .expect("a shipped scenario");
        let r = run_scenario(&sc, RunOptions::new(sc.seed)).expect("no trace file, no I/O");
        assert!(r.passed(), "{:?}", r.violation);
        let lost = &r.queue.as_ref().expect("a queue run").summary.lost;
        assert!(!lost.is_empty(), "the crash loses the last writes");
        for l in lost {
            let age = l.crash_ns - l.stored_ns.expect("seen stored");
            assert!(age < 1_000_000_000, "lost a write {age} ns old: {l:?}");
        }
    }
}
