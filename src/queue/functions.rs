//! The queue's operations on one Redis shard, written as Redis functions.
//!
//! Each operation touches one partition and runs as one atomic unit on the
//! shard, the way a Redis function (FCALL) or Lua script does: nothing
//! interleaves with it, and the writes it makes reach the append-only file
//! together. Every step is an ordinary Redis command run through `Tx`, so the
//! stand-in's command layer defines the semantics and the writes can be
//! logged and replayed like any others.
//!
//! A partition's keys share one hash tag, `{q<partition>}`:
//! - `{qP}:ready`    list of message ids waiting, oldest at the head
//! - `{qP}:body`     hash id -> message body
//! - `{qP}:attempts` hash id -> deliveries so far
//! - `{qP}:inflight` sorted set id -> visibility deadline (shard clock, ns)
//! - `{qP}:dead`     list of dead-lettered ids, in the order they died
//! - `{qP}:last`     hash producer -> highest sequence number stored
//! - `{qP}:moved`    the ring epoch at which the partition left this shard
//!
//! A message id is `<producer>:<seq>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::redis::{Aof, Resp, Store};
use crate::trace::DIGIT_PAIRS;

/// A partition's global index: queue index * partitions + partition.
pub type Partition = u32;

/// A message's identity: its producer and that producer's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    pub producer: u32,
    pub seq: u64,
}

/// One operation's view of a shard: runs commands on the keyspace and
/// hands each, with whether it succeeded, to the append-only file.
pub struct Tx<'a> {
    store: &'a mut Store,
    aof: &'a mut Aof,
    now_ns: u64,
    /// Some command succeeded (its reply was no error).
    succeeded: bool,
}

/// Why a shard refused an operation on a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refused {
    /// The partition left this shard at ring epoch `epoch` (or is leaving).
    Moved { epoch: u64 },
}

/// What a produce did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stored {
    /// New messages appended.
    pub stored: u32,
    /// Messages skipped because their sequence number was already stored.
    pub duplicate: u32,
}

/// One message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: MessageId,
    pub body: Vec<u8>,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// What a consume did: the deliveries, and what it found expired on the way.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Consumed {
    pub deliveries: Vec<Delivery>,
    /// Expired in flight and put back, with the attempts they had.
    pub requeued: Vec<(MessageId, u32)>,
    /// Expired in flight with no attempts left: dead-lettered, with attempts.
    pub dead: Vec<(MessageId, u32)>,
}

/// What a nack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nacked {
    /// Back at the head of the ready list.
    Requeued,
    /// Out of attempts: moved to the dead-letter list, with its attempts.
    Dead(u32),
    /// Not in flight (already acked, requeued or never delivered): nothing done.
    NotInFlight,
}

/// Where a message is on a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Ready,
    InFlight,
    Dead,
}

impl Place {
    /// The name the trace gives it.
    pub fn name(self) -> &'static str {
        match self {
            Place::Ready => "ready",
            Place::InFlight => "inflight",
            Place::Dead => "dead",
        }
    }
}

/// A partition's whole content, carried from one shard to another.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dump {
    /// Waiting messages in list order: id, body, attempts so far.
    pub ready: Vec<(MessageId, Vec<u8>, u32)>,
    /// In flight: id, body, attempts, visibility left (ns) when dumped.
    pub inflight: Vec<(MessageId, Vec<u8>, u32, u64)>,
    /// Dead-lettered, in order: id, body, attempts.
    pub dead: Vec<(MessageId, Vec<u8>, u32)>,
    /// Highest stored sequence number per producer.
    pub last_seq: Vec<(u32, u64)>,
}

/// The partition's data keys: everything but `moved`.
const DATA: [&str; 6] = ["ready", "body", "attempts", "inflight", "dead", "last"];

impl<'a> Tx<'a> {
    /// One operation on `store`, every command of it running at `now_ns`
    /// and written to `aof` as it runs (a crash cannot come in between).
    pub fn new(store: &'a mut Store, aof: &'a mut Aof, now_ns: u64) -> Self {
        Tx {
            store,
            aof,
            now_ns,
            succeeded: false,
        }
    }

    /// Runs one command and appends it to the file if it wrote. The
    /// arguments are borrowed all the way into the file's buffer: building
    /// owned ones and a log of them was a large part of a queue run's cost.
    pub fn call(&mut self, args: &[&[u8]]) -> Resp {
        let (reply, ran) = self.store.call_named(self.now_ns, args);
        let ok = !matches!(reply, Resp::Error(_));
        self.succeeded |= ok;
        if let Some(ran) = ran {
            self.aof.record_ran(self.now_ns, ran, args, ok);
        }
        reply
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Whether some command succeeded (reads included).
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// Runs `name key rest...` unless `rest` is empty: Redis rejects a push,
    /// HSET, ZADD or ZREM without elements, and there is nothing to do anyway.
    fn call_with<'r>(
        &mut self,
        name: &'r [u8],
        key: &'r [u8],
        rest: impl IntoIterator<Item = &'r [u8]>,
    ) {
        let mut args = vec![name, key];
        args.extend(rest);
        if args.len() > 2 {
            self.call(&args);
        }
    }
}

/// A short argument built on the stack: every key, number and message id
/// the queue writes fits (at most 31 bytes), so building one allocates
/// nothing, and a queue run builds several for every command it sends.
#[derive(Clone, Copy)]
struct Short {
    len: u8,
    bytes: [u8; 32],
}

impl Short {
    fn new() -> Self {
        Short {
            len: 0,
            bytes: [0; 32],
        }
    }

    fn push(&mut self, b: &[u8]) {
        let at = usize::from(self.len);
        self.bytes[at..at + b.len()].copy_from_slice(b);
        self.len += b.len() as u8;
    }

    /// `n` in decimal, written in place from the last digit back, two
    /// digits a step: keys, ids and counts are built for every command.
    fn push_u64(&mut self, mut n: u64) {
        let len = n.checked_ilog10().unwrap_or(0) as usize + 1;
        let at = usize::from(self.len);
        let out = &mut self.bytes[at..at + len];
        let mut i = len;
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            i -= 2;
            out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            out[..2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            out[0] = b'0' + n as u8;
        }
        self.len += len as u8;
    }
}

impl std::ops::Deref for Short {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `{q<part>}:<name>`.
fn key(part: Partition, name: &str) -> Short {
    let mut k = Short::new();
    k.push(b"{q");
    k.push_u64(part.into());
    k.push(b"}:");
    k.push(name.as_bytes());
    k
}

fn num(n: impl Into<u64>) -> Short {
    let mut b = Short::new();
    b.push_u64(n.into());
    b
}

/// `<producer>:<seq>`.
fn encode_id(id: MessageId) -> Short {
    let mut b = Short::new();
    b.push_u64(id.producer.into());
    b.push(b":");
    b.push_u64(id.seq);
    b
}

fn parse<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// An id as the queue writes it, `<producer>:<seq>`; None if `b` is not one.
pub(super) fn parse_id(b: &[u8]) -> Option<MessageId> {
    let colon = b.iter().position(|&c| c == b':')?;
    Some(MessageId {
        producer: u32::try_from(parse_u64(&b[..colon])?).ok()?,
        seq: parse_u64(&b[colon + 1..])?,
    })
}

/// An unsigned decimal as `str::parse::<u64>` reads one (an optional `+`,
/// then at least one digit, nothing else, no overflow), straight from the
/// bytes: every id a consume or an expiry reads back goes through it.
fn parse_u64(b: &[u8]) -> Option<u64> {
    let digits = b.strip_prefix(b"+").unwrap_or(b);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &c| {
        let d = c.checked_sub(b'0').filter(|&d| d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// A deadline read back from a score: Redis may format it as `1e+17`, so it
/// goes through f64 (exact below 2^53 ns, about 104 days).
fn parse_score(b: &[u8]) -> u64 {
    parse::<f64>(b).map_or(0, |x| x as u64)
}

fn bulk(reply: Resp) -> Option<Vec<u8>> {
    match reply {
        Resp::Bulk(b) => b,
        _ => None,
    }
}

fn integer(reply: &Resp) -> i64 {
    match reply {
        Resp::Integer(n) => *n,
        _ => 0,
    }
}

/// The bulk strings of an array reply; a null or error reply is empty.
fn strings(reply: Resp) -> Vec<Vec<u8>> {
    match reply {
        Resp::Array(Some(items)) => items.into_iter().filter_map(bulk).collect(),
        _ => Vec::new(),
    }
}

/// Ids of an array reply; members the queue did not write are ignored.
fn ids(reply: Resp) -> Vec<MessageId> {
    match reply {
        Resp::Array(Some(items)) => items
            .iter()
            .filter_map(|item| match item {
                Resp::Bulk(Some(b)) => parse_id(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn hash_all(tx: &mut Tx, part: Partition, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let flat = strings(tx.call(&[b"HGETALL", &key(part, name)]));
    let pairs = flat.chunks_exact(2);
    pairs.map(|p| (p[0].clone(), p[1].clone())).collect()
}

fn attempts(tx: &mut Tx, part: Partition, id: MessageId) -> u32 {
    let reply = tx.call(&[b"HGET", &key(part, "attempts"), &encode_id(id)]);
    bulk(reply).and_then(|b| parse(&b)).unwrap_or(0)
}

fn moved_epoch(tx: &mut Tx, part: Partition) -> Option<u64> {
    let reply = tx.call(&[b"GET", &key(part, "moved")]);
    bulk(reply).map(|b| parse(&b).unwrap_or(0))
}

/// The fence: a partition that left this shard takes no more operations,
/// so a client with a stale ring cannot write behind the new owner's back.
fn check_owned(tx: &mut Tx, part: Partition) -> Result<(), Refused> {
    match moved_epoch(tx, part) {
        Some(epoch) => Err(Refused::Moved { epoch }),
        None => Ok(()),
    }
}

/// Raises `moved` to `epoch`; a later epoch already there is kept.
fn mark_moved(tx: &mut Tx, part: Partition, epoch: u64) {
    if moved_epoch(tx, part).is_none_or(|e| e < epoch) {
        tx.call(&[b"SET", &key(part, "moved"), &num(epoch)]);
    }
}

fn del_data(tx: &mut Tx, part: Partition, with_moved: bool) {
    let mut keys: Vec<Short> = DATA.iter().map(|name| key(part, name)).collect();
    if with_moved {
        keys.push(key(part, "moved"));
    }
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(keys.iter().map(|k| &k[..]));
    tx.call(&args);
}

/// Stores a producer's batch, skipping sequence numbers already stored so a
/// retried batch is not enqueued twice.
pub fn produce(
    tx: &mut Tx,
    part: Partition,
    producer: u32,
    first_seq: u64,
    bodies: &[Vec<u8>],
) -> Result<Stored, Refused> {
    check_owned(tx, part)?;
    let reply = tx.call(&[b"HGET", &key(part, "last"), &num(producer)]);
    let last: Option<u64> = bulk(reply).and_then(|b| parse(&b));
    let mut out = Stored::default();
    let mut new = Vec::new();
    for (seq, body) in (first_seq..).zip(bodies) {
        if last.is_some_and(|l| seq <= l) {
            out.duplicate += 1;
        } else {
            new.push((MessageId { producer, seq }, body.as_slice(), 0));
        }
    }
    let Some(&(top, ..)) = new.last() else {
        return Ok(out);
    };
    out.stored = new.len() as u32;
    write_entries(tx, part, &new);
    let ready: Vec<Short> = new.iter().map(|(id, ..)| encode_id(*id)).collect();
    tx.call_with(b"RPUSH", &key(part, "ready"), ready.iter().map(|i| &i[..]));
    let last = [num(producer), num(top.seq)];
    tx.call_with(b"HSET", &key(part, "last"), last.iter().map(|n| &n[..]));
    Ok(out)
}

/// Writes the bodies and attempt counts of `entries`.
fn write_entries(tx: &mut Tx, part: Partition, entries: &[(MessageId, &[u8], u32)]) {
    let ids: Vec<Short> = entries.iter().map(|(id, ..)| encode_id(*id)).collect();
    let bodies = ids.iter().zip(entries).flat_map(|(i, e)| [&i[..], e.1]);
    tx.call_with(b"HSET", &key(part, "body"), bodies);
    let counts: Vec<Short> = entries.iter().map(|e| num(e.2)).collect();
    let counts = ids.iter().zip(&counts).flat_map(|(i, n)| [&i[..], &n[..]]);
    tx.call_with(b"HSET", &key(part, "attempts"), counts);
}

/// Hands out up to `max` messages from the head of ready, after requeueing
/// (or dead-lettering) the ones whose visibility ran out, unless told not to.
pub fn consume(
    tx: &mut Tx,
    part: Partition,
    max: u32,
    visibility_ns: u64,
    max_attempts: u32,
    honour_visibility: bool,
) -> Result<Consumed, Refused> {
    check_owned(tx, part)?;
    let mut out = Consumed::default();
    if honour_visibility {
        expire_inflight(tx, part, max_attempts, &mut out);
    }
    if max == 0 {
        return Ok(out);
    }
    let popped = ids(tx.call(&[b"LPOP", &key(part, "ready"), &num(max)]));
    let deadline = tx.now_ns.saturating_add(visibility_ns);
    for id in popped {
        out.deliveries.push(deliver(tx, part, id, deadline));
    }
    Ok(out)
}

/// Takes every in-flight message whose deadline has passed out of flight.
fn expire_inflight(tx: &mut Tx, part: Partition, max_attempts: u32, out: &mut Consumed) {
    let inflight = key(part, "inflight");
    let due = ids(tx.call(&[b"ZRANGEBYSCORE", &inflight, b"-inf", &num(tx.now_ns)]));
    let raw: Vec<Short> = due.iter().map(|id| encode_id(*id)).collect();
    tx.call_with(b"ZREM", &inflight, raw.iter().map(|r| &r[..]));
    let (mut back, mut dead) = (Vec::new(), Vec::new());
    for id in due {
        let n = attempts(tx, part, id);
        if n >= max_attempts {
            dead.push(encode_id(id));
            out.dead.push((id, n));
        } else {
            back.push(encode_id(id));
            out.requeued.push((id, n));
        }
    }
    // LPUSH puts each element at the head in turn: pushing the latest-expired
    // first leaves the earliest-expired first in line.
    back.reverse();
    tx.call_with(b"LPUSH", &key(part, "ready"), back.iter().map(|r| &r[..]));
    tx.call_with(b"RPUSH", &key(part, "dead"), dead.iter().map(|r| &r[..]));
}

fn deliver(tx: &mut Tx, part: Partition, id: MessageId, deadline: u64) -> Delivery {
    let raw = encode_id(id);
    let count = tx.call(&[b"HINCRBY", &key(part, "attempts"), &raw, b"1"]);
    let body = bulk(tx.call(&[b"HGET", &key(part, "body"), &raw]));
    tx.call(&[b"ZADD", &key(part, "inflight"), &num(deadline), &raw]);
    Delivery {
        id,
        body: body.unwrap_or_default(),
        attempt: u32::try_from(integer(&count)).unwrap_or(0),
    }
}

/// Completes an in-flight message; false (and nothing done) if it was not in
/// flight, e.g. its visibility ran out and it was requeued.
pub fn ack(tx: &mut Tx, part: Partition, id: MessageId) -> Result<bool, Refused> {
    check_owned(tx, part)?;
    let raw = encode_id(id);
    if integer(&tx.call(&[b"ZREM", &key(part, "inflight"), &raw])) == 0 {
        return Ok(false);
    }
    tx.call(&[b"HDEL", &key(part, "body"), &raw]);
    tx.call(&[b"HDEL", &key(part, "attempts"), &raw]);
    Ok(true)
}

/// Gives an in-flight message back: to the head of ready for another try, or
/// to the dead letters once it has had `max_attempts` deliveries.
pub fn nack(
    tx: &mut Tx,
    part: Partition,
    id: MessageId,
    max_attempts: u32,
) -> Result<Nacked, Refused> {
    check_owned(tx, part)?;
    let raw = encode_id(id);
    if integer(&tx.call(&[b"ZREM", &key(part, "inflight"), &raw])) == 0 {
        return Ok(Nacked::NotInFlight);
    }
    let n = attempts(tx, part, id);
    if n >= max_attempts {
        tx.call(&[b"RPUSH", &key(part, "dead"), &raw]);
        Ok(Nacked::Dead(n))
    } else {
        tx.call(&[b"LPUSH", &key(part, "ready"), &raw]);
        Ok(Nacked::Requeued)
    }
}

/// Fences the partition at `epoch` and returns its content, keeping it here
/// until `drop_partition` so a failed hand-over loses nothing.
pub fn freeze(tx: &mut Tx, part: Partition, epoch: u64, include_inflight: bool) -> Dump {
    mark_moved(tx, part, epoch);
    let bodies = hash_all(tx, part, "body");
    let counts = hash_all(tx, part, "attempts");
    let entry = |id: MessageId| {
        let raw = encode_id(id);
        let body = bodies.get(&raw[..]).cloned().unwrap_or_default();
        let n = counts.get(&raw[..]).and_then(|b| parse(b)).unwrap_or(0);
        (id, body, n)
    };
    let ready = ids(tx.call(&[b"LRANGE", &key(part, "ready"), b"0", b"-1"]));
    let dead = ids(tx.call(&[b"LRANGE", &key(part, "dead"), b"0", b"-1"]));
    let inflight = if include_inflight {
        inflight_deadlines(tx, part)
    } else {
        Vec::new()
    };
    let now = tx.now_ns;
    let inflight = inflight.into_iter().map(|(id, deadline)| {
        let (id, body, n) = entry(id);
        (id, body, n, deadline.saturating_sub(now))
    });
    Dump {
        inflight: inflight.collect(),
        ready: ready.into_iter().map(entry).collect(),
        dead: dead.into_iter().map(entry).collect(),
        last_seq: last_seqs(tx, part),
    }
}

/// In-flight ids with their deadlines, earliest first.
fn inflight_deadlines(tx: &mut Tx, part: Partition) -> Vec<(MessageId, u64)> {
    let inflight = key(part, "inflight");
    let all: [&[u8]; 5] = [b"ZRANGEBYSCORE", &inflight, b"-inf", b"+inf", b"WITHSCORES"];
    let flat = strings(tx.call(&all));
    let pairs = flat.chunks_exact(2);
    let parsed = pairs.map(|p| parse_id(&p[0]).map(|id| (id, parse_score(&p[1]))));
    parsed.flatten().collect()
}

/// The producers' last sequence numbers, by producer (HGETALL's order is
/// not something Redis promises).
fn last_seqs(tx: &mut Tx, part: Partition) -> Vec<(u32, u64)> {
    let last = hash_all(tx, part, "last");
    let parsed = last
        .iter()
        .map(|(p, s)| parse::<u32>(p).zip(parse::<u64>(s)));
    let sorted: BTreeMap<u32, u64> = parsed.flatten().collect();
    sorted.into_iter().collect()
}

/// Makes this shard the partition's owner with exactly `dump`'s content;
/// whatever was here before (including a fence) is replaced.
pub fn import(tx: &mut Tx, part: Partition, dump: &Dump) {
    del_data(tx, part, true);
    fn entry((id, b, n): &(MessageId, Vec<u8>, u32)) -> (MessageId, &[u8], u32) {
        (*id, b, *n)
    }
    let inflight = dump.inflight.iter().map(|(id, b, n, _)| (*id, &b[..], *n));
    let entries: Vec<_> = (dump.ready.iter().map(entry))
        .chain(inflight)
        .chain(dump.dead.iter().map(entry))
        .collect();
    write_entries(tx, part, &entries);
    let ready = id_list(&dump.ready);
    tx.call_with(b"RPUSH", &key(part, "ready"), ready.iter().map(|r| &r[..]));
    let dead = id_list(&dump.dead);
    tx.call_with(b"RPUSH", &key(part, "dead"), dead.iter().map(|r| &r[..]));
    let now = tx.now_ns;
    let scores = dump
        .inflight
        .iter()
        .flat_map(|(id, _, _, left)| [num(now.saturating_add(*left)), encode_id(*id)]);
    let scores: Vec<Short> = scores.collect();
    tx.call_with(
        b"ZADD",
        &key(part, "inflight"),
        scores.iter().map(|s| &s[..]),
    );
    let last = dump.last_seq.iter().flat_map(|(p, s)| [num(*p), num(*s)]);
    let last: Vec<Short> = last.collect();
    tx.call_with(b"HSET", &key(part, "last"), last.iter().map(|l| &l[..]));
}

fn id_list(entries: &[(MessageId, Vec<u8>, u32)]) -> Vec<Short> {
    entries.iter().map(|(id, ..)| encode_id(*id)).collect()
}

/// Deletes the partition's data once its new owner has it, keeping the
/// fence (at least `epoch`) so stale clients are still told where it went.
pub fn drop_partition(tx: &mut Tx, part: Partition, epoch: u64) {
    del_data(tx, part, false);
    mark_moved(tx, part, epoch);
}

/// Where every message on the shard is, for partitions `0..partitions`.
/// Read-only, so it runs on the store directly and logs nothing.
pub fn messages(
    store: &mut Store,
    now_ns: u64,
    partitions: u32,
) -> BTreeMap<(Partition, MessageId), Place> {
    let mut out = BTreeMap::new();
    for part in 0..partitions {
        let reads: [(Place, [&[u8]; 4]); 3] = [
            (Place::Ready, [b"LRANGE", &key(part, "ready"), b"0", b"-1"]),
            (
                Place::InFlight,
                [b"ZRANGEBYSCORE", &key(part, "inflight"), b"-inf", b"+inf"],
            ),
            (Place::Dead, [b"LRANGE", &key(part, "dead"), b"0", b"-1"]),
        ];
        for (place, args) in reads {
            for id in ids(store.call(now_ns, &args)) {
                out.insert((part, id), place);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{Aof, Fsync};

    const P: Partition = 3;
    const PARTS: u32 = 4;

    /// A shard whose file keeps every write its operations made, with the time.
    struct Shard {
        store: Store,
        aof: Aof,
    }

    impl Default for Shard {
        fn default() -> Self {
            Shard {
                store: Store::default(),
                aof: Aof::new(Fsync::Always),
            }
        }
    }

    impl Shard {
        fn run<T>(&mut self, now: u64, op: impl FnOnce(&mut Tx) -> T) -> T {
            op(&mut Tx::new(&mut self.store, &mut self.aof, now))
        }

        fn produce(&mut self, now: u64, producer: u32, first: u64, n: usize) -> Stored {
            let bodies: Vec<_> = (first..).take(n).map(|s| body(producer, s)).collect();
            self.run(now, |tx| produce(tx, P, producer, first, &bodies))
                .unwrap()
        }

        /// Consumes up to `max` with visibility 100 ns, honouring it.
        fn consume(&mut self, now: u64, max: u32, max_attempts: u32) -> Consumed {
            self.run(now, |tx| consume(tx, P, max, 100, max_attempts, true))
                .unwrap()
        }

        fn messages(&mut self) -> BTreeMap<(Partition, MessageId), Place> {
            messages(&mut self.store, 0, PARTS)
        }
    }

    fn id(producer: u32, seq: u64) -> MessageId {
        MessageId { producer, seq }
    }

    fn body(producer: u32, seq: u64) -> Vec<u8> {
        format!("body {producer}/{seq}\r\n\0").into_bytes()
    }

    fn delivered(c: &Consumed) -> Vec<(MessageId, u32)> {
        c.deliveries.iter().map(|d| (d.id, d.attempt)).collect()
    }

    fn places(list: &[(MessageId, Place)]) -> BTreeMap<(Partition, MessageId), Place> {
        list.iter().map(|&(id, place)| ((P, id), place)).collect()
    }

    #[test]
    fn a_retried_batch_is_deduplicated() {
        let mut s = Shard::default();
        let stored = |stored, duplicate| Stored { stored, duplicate };
        assert_eq!(s.produce(0, 1, 1, 3), stored(3, 0));
        assert_eq!(s.produce(0, 1, 1, 3), stored(0, 3), "whole batch again");
        assert_eq!(s.produce(0, 1, 2, 4), stored(2, 2), "overlaps seqs 2-3");
        assert_eq!(s.produce(0, 2, 1, 1), stored(1, 0), "producers are apart");
        let want: Vec<_> = (1..=5)
            .map(|q| (id(1, q), 1))
            .chain([(id(2, 1), 1)])
            .collect();
        assert_eq!(delivered(&s.consume(0, 10, 3)), want);
        assert_eq!(
            s.produce(0, 1, 5, 1),
            stored(0, 1),
            "still known once taken"
        );
    }

    #[test]
    fn first_deliveries_are_fifo_with_bodies() {
        let mut s = Shard::default();
        s.produce(0, 7, 10, 5);
        let first = s.consume(0, 3, 3);
        let want = (10..13).map(|q| Delivery {
            id: id(7, q),
            body: body(7, q),
            attempt: 1,
        });
        assert_eq!(first.deliveries, want.collect::<Vec<_>>());
        assert_eq!(
            delivered(&s.consume(0, 10, 3)),
            [(id(7, 13), 1), (id(7, 14), 1)]
        );
        assert_eq!(s.consume(0, 10, 3), Consumed::default());
        assert_eq!(s.consume(0, 0, 3), Consumed::default());
    }

    #[test]
    fn expired_messages_are_redelivered_then_dead_lettered() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 1);
        assert_eq!(delivered(&s.consume(0, 1, 2)), [(id(1, 1), 1)]);
        assert_eq!(s.consume(99, 1, 2), Consumed::default(), "not yet due");
        let again = s.consume(100, 1, 2);
        assert_eq!(again.requeued, [(id(1, 1), 1)], "due at its deadline");
        assert_eq!(delivered(&again), [(id(1, 1), 2)]);
        let last = s.consume(200, 1, 2);
        assert_eq!(last.dead, [(id(1, 1), 2)]);
        assert_eq!((last.deliveries, last.requeued), (vec![], vec![]));
        assert_eq!(s.messages(), places(&[(id(1, 1), Place::Dead)]));
    }

    #[test]
    fn expired_messages_go_back_to_the_head_earliest_first() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 3);
        for (i, now) in [20, 0, 10].into_iter().enumerate() {
            // Deliver 1:1 at 20, 1:2 at 0, 1:3 at 10: deadlines 120, 100, 110.
            let seq = i as u64 + 1;
            let c = s.run(now, |tx| consume(tx, P, 1, 100, 5, false)).unwrap();
            assert_eq!(delivered(&c), [(id(1, seq), 1)]);
        }
        s.produce(0, 1, 4, 1);
        let c = s.consume(500, 10, 5);
        let expired = [(id(1, 2), 1), (id(1, 3), 1), (id(1, 1), 1)];
        assert_eq!(c.requeued, expired);
        let want = [(id(1, 2), 2), (id(1, 3), 2), (id(1, 1), 2), (id(1, 4), 1)];
        assert_eq!(delivered(&c), want);
    }

    #[test]
    fn ignoring_visibility_never_requeues() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 1);
        s.consume(0, 1, 1);
        let c = s.run(1_000_000, |tx| consume(tx, P, 5, 100, 1, false));
        assert_eq!(c, Ok(Consumed::default()));
        assert_eq!(s.messages(), places(&[(id(1, 1), Place::InFlight)]));
    }

    #[test]
    fn ack_removes_once() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 2);
        s.consume(0, 1, 3);
        assert_eq!(s.run(0, |tx| ack(tx, P, id(1, 2))), Ok(false), "only ready");
        assert_eq!(s.run(0, |tx| ack(tx, P, id(1, 1))), Ok(true));
        assert_eq!(
            s.run(0, |tx| ack(tx, P, id(1, 1))),
            Ok(false),
            "acked already"
        );
        assert_eq!(s.messages(), places(&[(id(1, 2), Place::Ready)]));
        s.consume(0, 1, 3);
        assert_eq!(s.run(0, |tx| ack(tx, P, id(1, 2))), Ok(true));
        let mut only_last = Store::default();
        only_last.call(0, &[b"HSET", &key(P, "last"), &num(1u32), &num(2u64)]);
        assert_eq!(s.store, only_last, "no body or attempts left behind");
        assert_eq!(s.produce(0, 1, 2, 1).duplicate, 1, "but `last` is kept");
    }

    #[test]
    fn nack_requeues_at_the_head_then_dead_letters() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 2);
        s.consume(0, 1, 2);
        let nack = |s: &mut Shard| s.run(0, |tx| nack(tx, P, id(1, 1), 2));
        assert_eq!(nack(&mut s), Ok(Nacked::Requeued));
        assert_eq!(delivered(&s.consume(0, 1, 2)), [(id(1, 1), 2)]);
        assert_eq!(nack(&mut s), Ok(Nacked::Dead(2)));
        assert_eq!(nack(&mut s), Ok(Nacked::NotInFlight));
        let want = [(id(1, 1), Place::Dead), (id(1, 2), Place::Ready)];
        assert_eq!(s.messages(), places(&want));
    }

    #[test]
    fn a_frozen_partition_refuses_everything_and_writes_nothing() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 2);
        s.consume(0, 1, 3);
        s.run(0, |tx| freeze(tx, P, 7, true));
        s.run(0, |tx| freeze(tx, P, 5, true));
        let before = s.store.clone();
        let moved = Refused::Moved { epoch: 7 };
        let bodies = [b"x".to_vec()];
        assert_eq!(s.run(0, |tx| produce(tx, P, 1, 3, &bodies)), Err(moved));
        assert_eq!(s.run(0, |tx| consume(tx, P, 1, 100, 3, true)), Err(moved));
        assert_eq!(s.run(0, |tx| ack(tx, P, id(1, 1))), Err(moved));
        assert_eq!(s.run(0, |tx| nack(tx, P, id(1, 1), 3)), Err(moved));
        assert_eq!(s.store, before);
        assert_eq!(
            s.run(0, |tx| produce(tx, P + 1, 1, 3, &bodies))
                .unwrap()
                .stored,
            1
        );
    }

    #[test]
    fn freeze_is_idempotent_and_keeps_the_data() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 3);
        s.consume(0, 1, 3);
        s.consume(30, 1, 3);
        let before = s.messages();
        let first = s.run(110, |tx| freeze(tx, P, 2, true));
        assert_eq!(first, s.run(110, |tx| freeze(tx, P, 2, true)));
        assert_eq!(s.messages(), before);
        let left: Vec<_> = first.inflight.iter().map(|e| (e.0, e.2, e.3)).collect();
        assert_eq!(
            left,
            [(id(1, 1), 1, 0), (id(1, 2), 1, 20)],
            "0 once overdue"
        );
        let without = s.run(110, |tx| freeze(tx, P, 2, false));
        assert_eq!(
            without,
            Dump {
                inflight: vec![],
                ..first
            }
        );
        assert_eq!(s.messages(), before, "the in-flight data stays here");
    }

    #[test]
    fn a_partition_moves_between_shards_intact() {
        let (mut a, mut b) = (Shard::default(), Shard::default());
        a.produce(0, 1, 1, 4);
        a.produce(0, 2, 1, 1);
        a.consume(0, 2, 5);
        assert_eq!(
            a.run(10, |tx| nack(tx, P, id(1, 1), 1)),
            Ok(Nacked::Dead(1))
        );
        assert_eq!(
            a.run(20, |tx| nack(tx, P, id(1, 2), 5)),
            Ok(Nacked::Requeued)
        );
        assert_eq!(delivered(&a.consume(30, 1, 5)), [(id(1, 2), 2)]);
        let before = a.messages();
        let dump = a.run(50, |tx| freeze(tx, P, 3, true));
        let entry = |p, q, n| (id(p, q), body(p, q), n);
        let want = Dump {
            ready: vec![entry(1, 3, 0), entry(1, 4, 0), entry(2, 1, 0)],
            inflight: vec![(id(1, 2), body(1, 2), 2, 80)],
            dead: vec![entry(1, 1, 1)],
            last_seq: vec![(1, 4), (2, 1)],
        };
        assert_eq!(dump, want);

        b.run(1000, |tx| import(tx, P, &dump));
        let imported = b.store.clone();
        b.run(1000, |tx| import(tx, P, &dump));
        assert_eq!(b.store, imported, "importing twice is importing once");
        a.run(1000, |tx| drop_partition(tx, P, 3));
        assert_eq!(b.messages(), before);
        assert_eq!(a.messages(), BTreeMap::new());
        let bodies = [body(1, 5)];
        let on_a = a.run(1000, |tx| produce(tx, P, 1, 5, &bodies));
        assert_eq!(on_a, Err(Refused::Moved { epoch: 3 }));

        assert_eq!(
            b.produce(1000, 1, 4, 2),
            Stored {
                stored: 1,
                duplicate: 1
            }
        );
        assert_eq!(b.consume(1079, 0, 5), Consumed::default(), "80 ns left");
        let c = b.consume(1080, 1, 5);
        assert_eq!(
            (delivered(&c), c.requeued),
            (vec![(id(1, 2), 3)], vec![(id(1, 2), 2)])
        );
        let rest = [(id(1, 3), 1), (id(1, 4), 1), (id(2, 1), 1), (id(1, 5), 1)];
        assert_eq!(delivered(&b.consume(1080, 10, 5)), rest);
    }

    #[test]
    fn import_replaces_what_was_there_and_lifts_the_fence() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 2);
        s.run(0, |tx| freeze(tx, P, 4, true));
        s.run(0, |tx| import(tx, P, &Dump::default()));
        assert_eq!(s.store, Store::default());
        assert_eq!(
            s.produce(0, 1, 1, 1).stored,
            1,
            "owned, with no memory of seqs"
        );
    }

    #[test]
    fn drop_keeps_the_later_fence() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 1);
        s.run(0, |tx| drop_partition(tx, P, 6));
        s.run(0, |tx| drop_partition(tx, P, 2));
        assert_eq!(s.messages(), BTreeMap::new());
        let refused = s.run(0, |tx| consume(tx, P, 1, 1, 1, true));
        assert_eq!(refused, Err(Refused::Moved { epoch: 6 }));
    }

    #[test]
    fn replaying_the_log_rebuilds_the_shard() {
        let mut s = Shard::default();
        s.produce(0, 1, 1, 4);
        s.produce(5, 2, 1, 2);
        s.produce(6, 1, 3, 3);
        s.consume(10, 3, 2);
        s.run(20, |tx| ack(tx, P, id(1, 2))).unwrap();
        s.run(30, |tx| nack(tx, P, id(1, 3), 2)).unwrap();
        s.consume(200, 2, 2);
        s.consume(400, 1, 2);
        s.run(500, |tx| produce(tx, 1, 9, 1, &[vec![]])).unwrap();
        let dump = s.run(600, |tx| freeze(tx, P, 1, true));
        s.run(600, |tx| import(tx, 2, &dump));
        s.run(600, |tx| drop_partition(tx, P, 1));
        let writes = [
            "RPUSH", "HSET", "HINCRBY", "ZADD", "ZREM", "HDEL", "LPUSH", "DEL", "SET",
        ];
        let log: Vec<_> = s.aof.commands().collect();
        for w in writes {
            assert!(log.iter().any(|(_, a)| a[0] == w.as_bytes()), "{w}");
        }

        let mut replayed = Store::default();
        for (now, args) in &log {
            let reply = replayed.execute(*now, args);
            assert!(
                !matches!(reply, Resp::Error(_)),
                "a write succeeds on replay"
            );
        }
        let live = s.messages();
        assert_eq!(messages(&mut replayed, 0, PARTS), live);
        assert_eq!(messages(&mut s.aof.recover(), 0, PARTS), live);
        assert_eq!(s.aof.recover(), s.store);
        assert_eq!(live.len(), 7, "6 moved to partition 2, 1 on partition 1");
    }

    #[test]
    fn scores_in_exponent_form_parse() {
        assert_eq!(parse_score(b"1e+17"), 100_000_000_000_000_000);
        assert_eq!(parse_score(b"123"), 123);
        assert_eq!(parse_id(b"4:18446744073709551615"), Some(id(4, u64::MAX)));
        assert_eq!(parse_id(b"4-1"), None);
    }

    #[test]
    fn ids_parse_as_the_standard_library_parses_their_numbers() {
        let cases = [
            "1:2",
            "+1:+2",
            "0:0",
            ":1",
            "1:",
            "1::2",
            "1:2:3",
            "a:1",
            "1:b",
            " 1:2",
            "1:2 ",
            "-1:2",
            "1:-2",
            "++1:2",
            "4294967295:1",
            "4294967296:1",
            "1:18446744073709551615",
            "1:18446744073709551616",
            "1:00012",
        ];
        for case in cases {
            let expected = case.split_once(':').and_then(|(p, s)| {
                Some(MessageId {
                    producer: p.parse().ok()?,
                    seq: s.parse().ok()?,
                })
            });
            assert_eq!(parse_id(case.as_bytes()), expected, "{case}");
        }
        assert_eq!(parse_id(b"1:\xff"), None);
    }
}
