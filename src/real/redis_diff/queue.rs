//! The queue's shard calls, run on the stand-in through the shard's own
//! dispatch (`shard::run_on`) and on a real redis-server through the Lua
//! library (`lua::fcall`, `lua::answer`), answer by answer, then keyspace
//! by keyspace.

use std::fmt;
use std::ops::Range;
use std::rc::Rc;

use super::keyspace;
use super::server::Conn;
use crate::queue::functions::{Dump, MessageId, Partition};
use crate::queue::protocol::{ShardAnswer, ShardCall};
use crate::queue::{lua, shard};
use crate::redis::{Resp, Store};
use crate::rng::{Purpose, Rng};

/// The partitions a run spreads its calls over: a few, so calls collide.
const PARTITIONS: [Partition; 3] = [0, 1, 9];
/// How often (in steps) the whole keyspaces are compared, besides the end.
const KEYSPACE_EVERY: usize = 100;

/// The first difference a run found.
#[derive(Debug)]
pub struct Mismatch {
    pub seed: u64,
    pub step: usize,
    pub what: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {} step {}: {}", self.seed, self.step, self.what)
    }
}

/// How often a run reached the cases it is there to compare, so a test can
/// check that it did (a generator that never reaches them proves nothing).
#[derive(Debug, Default)]
pub struct Coverage {
    pub calls: usize,
    pub refused: usize,
    pub duplicates: u32,
    pub redeliveries: usize,
    pub acked: u32,
    pub dumps_in_flight: usize,
    pub dumps_dead: usize,
    pub memory_held: usize,
}

/// Loads `library` onto the server behind `conn` (replacing any loaded
/// copy) and checks it answers the version Rust expects.
pub fn load(conn: &mut Conn, library: &str) {
    let loaded = conn.call(&lua::load_command(library));
    assert_eq!(
        loaded,
        Resp::Bulk(Some(b"distsync_queue".to_vec())),
        "FUNCTION LOAD REPLACE: expected the library's name"
    );
    let version = conn.call(&["FCALL", lua::VERSION_FUNCTION, "0"]);
    let want = i64::try_from(lua::LIBRARY_VERSION).expect("a small version");
    assert_eq!(version, Resp::Integer(want), "{}", lua::VERSION_FUNCTION);
}

/// Runs `steps` random calls for each seed on a fresh stand-in and a
/// flushed server (with the library loaded), stopping at the first
/// difference in an answer or in the keyspaces.
pub fn run(conn: &mut Conn, seeds: Range<u64>, steps: usize) -> Result<Coverage, Mismatch> {
    let mut cov = Coverage::default();
    for seed in seeds {
        let mut store = fresh(conn);
        let mut calls = Calls::new(seed);
        for step in 0..steps {
            let call = calls.next();
            let now = calls.now;
            let last = step + 1 == steps;
            let compare_keys = (step + 1) % KEYSPACE_EVERY == 0 || last;
            let answer = compare(conn, &mut store, &call, now, compare_keys)
                .map_err(|what| Mismatch { seed, step, what })?;
            calls.learn(&answer, &mut cov);
        }
    }
    Ok(cov)
}

/// Runs `calls` in order (each at its time), from an empty keyspace on
/// both sides, then compares the keyspaces.
pub fn replay(conn: &mut Conn, calls: &[(ShardCall, u64)]) -> Result<(), Mismatch> {
    let mut store = fresh(conn);
    for (step, (call, now)) in calls.iter().enumerate() {
        let last = step + 1 == calls.len();
        compare(conn, &mut store, call, *now, last).map_err(|what| Mismatch {
            seed: 0,
            step,
            what,
        })?;
    }
    Ok(())
}

/// An empty stand-in, and the server emptied (the library stays loaded).
fn fresh(conn: &mut Conn) -> Store {
    let flushed = conn.call(&["FLUSHALL", "SYNC"]);
    assert_eq!(flushed, Resp::Simple(b"OK".to_vec()), "FLUSHALL SYNC");
    Store::default()
}

/// Runs one call on both sides: the stand-in's answer if the server's is
/// the same (and, if asked, so are the keyspaces after it), else what differs.
fn compare(
    conn: &mut Conn,
    store: &mut Store,
    call: &ShardCall,
    now: u64,
    keyspaces: bool,
) -> Result<ShardAnswer, String> {
    let want = shard::run_on(store, now, call);
    let got = lua::answer(call, conn.call(&lua::fcall(call, now)));
    if got.as_ref() != Ok(&want) {
        let call = short(call);
        return Err(format!(
            "{call} at {now} ns\n  stand-in:     {want:?}\n  redis-server: {got:?}"
        ));
    }
    if keyspaces {
        let diff = keyspace::diff(&keyspace::of_store(store, now), &keyspace::of_server(conn));
        if !diff.is_empty() {
            let call = short(call);
            return Err(format!(
                "the keyspaces differ after {call}:\n  {}",
                diff.join("\n  ")
            ));
        }
    }
    Ok(want)
}

/// A call for a report, cut short if it is huge.
fn short(call: &ShardCall) -> String {
    let text = format!("{call:?}");
    match text.char_indices().nth(2000) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text,
    }
}

/// A seed's random calls, drawn with what earlier answers revealed (ids
/// produced, dumps frozen) so settles and imports hit real data.
struct Calls {
    rng: Rng,
    /// The shard's clock: from 0, from a unix time in ns (past 2^53, where
    /// a double is no longer exact), or from near u64::MAX (saturation).
    now: u64,
    /// The latest ring epoch handed out.
    epoch: u64,
    /// Per partition and producer, the next sequence number it would use.
    next_seq: std::collections::BTreeMap<(Partition, u32), u64>,
    produced: Vec<(Partition, MessageId)>,
    dumps: Vec<Rc<Dump>>,
}

impl Calls {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::stream(seed, Purpose::Client, 0);
        let now = match seed % 3 {
            0 => rng.below(1000),
            1 => 1_700_000_000_000_000_000 + rng.below(1_000_000_000),
            _ => u64::MAX - rng.below(5_000),
        };
        Calls {
            rng,
            now,
            epoch: 1,
            next_seq: Default::default(),
            produced: Vec::new(),
            dumps: Vec::new(),
        }
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.rng.below(from.len() as u64) as usize]
    }

    /// Bytes a body may hold: the protocol's own delimiters, NUL, non-UTF-8.
    fn body(&mut self) -> Vec<u8> {
        let n = self.rng.below(6);
        (0..n).map(|_| self.pick(b"ab:\r\n\0\xff ")).collect()
    }

    /// An id to settle: mostly one produced on the partition, else unknown.
    fn id(&mut self, partition: Partition) -> MessageId {
        let mine: Vec<MessageId> = (self.produced.iter())
            .filter(|(p, _)| *p == partition)
            .map(|(_, id)| *id)
            .collect();
        if !mine.is_empty() && self.rng.chance(0.85) {
            return self.pick(&mine);
        }
        let seq = if self.rng.chance(0.1) {
            u64::MAX
        } else {
            self.rng.below(30)
        };
        MessageId {
            producer: self.rng.below(5) as u32,
            seq,
        }
    }

    /// An epoch for a move step: often the next one, sometimes a stale one.
    fn epoch(&mut self) -> u64 {
        if self.rng.chance(0.5) {
            self.epoch += 1;
        }
        self.rng.between(self.epoch.saturating_sub(3), self.epoch)
    }

    fn next(&mut self) -> ShardCall {
        let advance = if self.rng.chance(0.05) {
            1000
        } else {
            self.rng.below(150)
        };
        self.now = self.now.saturating_add(advance);
        let partition = self.pick(&PARTITIONS);
        match self.rng.below(100) {
            0..25 => self.produce(partition),
            25..50 => ShardCall::Consume {
                partition,
                consumer: 0,
                max: self.rng.below(5) as u32,
                visibility_ns: self.pick(&[0, 1, 40, 100, 300]),
                max_attempts: self.rng.between(1, 4) as u32,
                honour_visibility: self.rng.chance(0.9),
            },
            50..70 => {
                let (a, n) = (self.rng.below(4), self.rng.below(4));
                ShardCall::Settle {
                    partition,
                    acks: Rc::new((0..a).map(|_| self.id(partition)).collect()),
                    nacks: Rc::new((0..n).map(|_| self.id(partition)).collect()),
                    max_attempts: self.rng.between(1, 4) as u32,
                }
            }
            70..76 => ShardCall::Freeze {
                partition,
                epoch: self.epoch(),
                include_inflight: self.rng.chance(0.8),
            },
            76..82 => {
                let dump = if !self.dumps.is_empty() && self.rng.chance(0.6) {
                    let i = self.rng.below(self.dumps.len() as u64) as usize;
                    self.dumps[i].clone()
                } else {
                    Rc::new(self.random_dump(partition))
                };
                ShardCall::Import {
                    partition,
                    epoch: self.epoch(),
                    dump,
                }
            }
            82..87 => ShardCall::Drop {
                partition,
                epoch: self.epoch(),
            },
            87..93 => ShardCall::MemGet {
                key: self.rng.below(3) as u32,
                fence: self.rng.below(5),
            },
            _ => ShardCall::MemSet {
                key: self.rng.below(3) as u32,
                value: if self.rng.chance(0.1) {
                    u64::MAX
                } else {
                    self.rng.below(1000)
                },
                version: self.rng.below(8),
                fence: self.rng.below(5),
            },
        }
    }

    /// A batch that may repeat, overlap or skip ahead of what was stored.
    fn produce(&mut self, partition: Partition) -> ShardCall {
        let producer = self.rng.between(1, 3) as u32;
        let next = *self.next_seq.entry((partition, producer)).or_insert(1);
        let first_seq = match self.rng.below(10) {
            0..6 => next,
            6..9 => next.saturating_sub(self.rng.below(4)).max(1),
            _ => next + self.rng.below(5),
        };
        let n = self.rng.below(5);
        let bodies: Vec<Vec<u8>> = (0..n).map(|_| self.body()).collect();
        self.next_seq
            .insert((partition, producer), next.max(first_seq + n));
        for seq in first_seq..first_seq + n {
            self.produced.push((partition, MessageId { producer, seq }));
        }
        ShardCall::Produce {
            partition,
            producer,
            first_seq,
            bodies: Rc::new(bodies),
        }
    }

    /// A dump no freeze made: ids may repeat across its lists, and its
    /// visibility left may be anything up to u64::MAX.
    fn random_dump(&mut self, partition: Partition) -> Dump {
        let entry = |me: &mut Self| (me.id(partition), me.body(), me.rng.below(4) as u32);
        let ready = (0..self.rng.below(4)).map(|_| entry(self)).collect();
        let dead = (0..self.rng.below(3)).map(|_| entry(self)).collect();
        let inflight = (0..self.rng.below(3))
            .map(|_| {
                let (id, body, n) = entry(self);
                let left = if self.rng.chance(0.1) {
                    u64::MAX
                } else {
                    self.rng.below(400)
                };
                (id, body, n, left)
            })
            .collect();
        let mut last: Vec<(u32, u64)> = (0..self.rng.below(3))
            .map(|_| (self.rng.below(5) as u32, self.rng.below(40)))
            .collect();
        last.sort();
        last.dedup_by_key(|(p, _)| *p);
        Dump {
            ready,
            inflight,
            dead,
            last_seq: last,
        }
    }

    /// Notes what an answer revealed.
    fn learn(&mut self, answer: &ShardAnswer, cov: &mut Coverage) {
        cov.calls += 1;
        match answer {
            ShardAnswer::Refused(_) => cov.refused += 1,
            ShardAnswer::Stored(s) => cov.duplicates += s.duplicate,
            ShardAnswer::Delivered(d) => {
                cov.redeliveries += d.iter().filter(|d| d.attempt > 1).count();
            }
            ShardAnswer::Settled(n) => cov.acked += n,
            ShardAnswer::Frozen(dump) => {
                cov.dumps_in_flight += usize::from(!dump.inflight.is_empty());
                cov.dumps_dead += usize::from(!dump.dead.is_empty());
                self.dumps.push(dump.clone());
            }
            ShardAnswer::Memory(held) => cov.memory_held += usize::from(held.is_some()),
            ShardAnswer::Done | ShardAnswer::Unavailable => {}
        }
    }
}
