//! What the report draws besides messages, gathered from the trace in the
//! same single pass: lock holder and waiter timelines, queue depth over
//! time, and latency histograms.
//!
//! Each collector sees every trace line once (`observe`) and turns what it
//! kept into the page's JSON at the end (`finish`), so a 200,000-line trace
//! is parsed once and never held as parsed values.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};

/// One parsed trace line, as the collectors see it.
pub struct Line<'a> {
    pub t: u64,
    pub node: &'a str,
    pub kind: &'a str,
    pub v: &'a Value,
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
}

/// Lock holders and waiters over time, as first applied by any replica.
///
/// Every replica applies the same lock events (they come from applying log
/// entries), each at its own time, and a restarted replica applies its log
/// again. The page draws each event once, when the first replica applied
/// it: an event is known by the log index being applied (the `raft.apply`
/// line before it on the same node) and its place among that entry's
/// events. The first replica to apply an entry had applied every earlier
/// one, so these first times never run backwards.
#[derive(Default)]
pub struct LockTimelines {
    /// Per node: the log index it is applying and how many lock events
    /// that entry has produced so far.
    applying: BTreeMap<String, (u64, u64)>,
    seen: BTreeSet<(u64, u64)>,
    events: Vec<(u64, Value)>,
}

/// A finished lock timeline: spans to draw, and what waiting cost.
pub struct LockData {
    pub json: Value,
    /// Time from `lock.wait` to `lock.grant` of each request that waited.
    pub waits_ns: Vec<u64>,
}

impl LockTimelines {
    pub fn observe(&mut self, l: &Line) {
        if l.kind == "raft.apply" {
            let index = u64_of(l.v, "index");
            self.applying.insert(l.node.to_string(), (index, 0));
        }
        // lock.renewed is a client's own record, not an applied event.
        if l.kind.starts_with("lock.") && l.kind != "lock.renewed" {
            let at = self.applying.entry(l.node.to_string()).or_default();
            let id = (at.0, at.1);
            at.1 += 1;
            if self.seen.insert(id) {
                self.events.push((l.t, l.v.clone()));
            }
        }
    }

    pub fn finish(self, end_ns: u64) -> LockData {
        let mut b = SpanBuilder::default();
        for (t, v) in &self.events {
            b.apply(*t, v);
        }
        b.close_all(end_ns, "still open at the end");
        LockData {
            json: if self.events.is_empty() {
                Value::Null
            } else {
                json!({ "spans": b.spans, "deadlocks": b.deadlocks })
            },
            waits_ns: b.waits_ns,
        }
    }
}

/// Replays the applied lock events into spans.
#[derive(Default)]
struct SpanBuilder {
    /// (lock, session) -> (since, mode, token) while held.
    holding: BTreeMap<(u64, u64), (u64, String, u64)>,
    /// (lock, session) -> (since, mode) while waiting.
    waiting: BTreeMap<(u64, u64), (u64, String)>,
    /// [lock, session, "hold"|"wait", from, to, mode, detail]
    spans: Vec<Value>,
    /// [t, victim, cycle, lock the victim waited for]
    deadlocks: Vec<Value>,
    waits_ns: Vec<u64>,
}

impl SpanBuilder {
    fn apply(&mut self, t: u64, v: &Value) {
        let lock = u64_of(v, "lock");
        let session = u64_of(v, "session");
        let mode = v["mode"].as_str().unwrap_or("").to_string();
        match v["kind"].as_str().unwrap_or("") {
            "lock.wait" => {
                self.waiting.entry((lock, session)).or_insert((t, mode));
            }
            "lock.grant" => {
                let token = u64_of(v, "token");
                if let Some((since, m)) = self.waiting.remove(&(lock, session)) {
                    // A hand-written trace may run backwards: no sample then.
                    self.waits_ns.extend(t.checked_sub(since));
                    self.span(lock, session, "wait", since, t, &m, "granted");
                }
                match self.holding.get(&(lock, session)) {
                    // A re-entry: the same grant, held longer.
                    Some((_, _, held)) if *held == token => {}
                    _ => {
                        // An upgrade ends the shared hold and starts another.
                        self.end_hold(lock, session, t, "upgraded");
                        self.holding.insert((lock, session), (t, mode, token));
                    }
                }
            }
            "lock.release" if u64_of(v, "holds") == 0 => {
                self.end_hold(lock, session, t, "released");
            }
            // A failure that names no lock (a refused session close) ends no wait.
            "lock.fail" if v["lock"].is_u64() => {
                if let Some((since, m)) = self.waiting.remove(&(lock, session)) {
                    let why = v["error"].as_str().unwrap_or("failed");
                    self.span(lock, session, "wait", since, t, &m, why);
                }
            }
            "lock.session" => {
                let what = v["what"].as_str().unwrap_or("");
                if what == "closed" || what == "expired" {
                    let why = format!("session {what}");
                    let held: Vec<(u64, u64)> = self
                        .holding
                        .keys()
                        .chain(self.waiting.keys())
                        .filter(|(_, s)| *s == session)
                        .copied()
                        .collect();
                    for (lock, s) in held {
                        self.end_hold(lock, s, t, &why);
                        if let Some((since, m)) = self.waiting.remove(&(lock, s)) {
                            self.span(lock, s, "wait", since, t, &m, &why);
                        }
                    }
                }
            }
            "lock.deadlock" => {
                let cycle: Vec<String> = v["cycle"]
                    .as_array()
                    .map(|c| c.iter().map(|s| format!("s{s}")).collect())
                    .unwrap_or_default();
                // The victim's cancelled request: the lock it waits for.
                let victim = u64_of(v, "victim");
                let lock = self
                    .waiting
                    .keys()
                    .find(|(_, s)| *s == victim)
                    .map(|(l, _)| *l);
                self.deadlocks
                    .push(json!([t, victim, cycle.join(" -> "), lock]));
            }
            _ => {}
        }
    }

    fn end_hold(&mut self, lock: u64, session: u64, t: u64, why: &str) {
        if let Some((since, mode, token)) = self.holding.remove(&(lock, session)) {
            let detail = format!("token {token}, {why}");
            self.span(lock, session, "hold", since, t, &mode, &detail);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        lock: u64,
        session: u64,
        what: &str,
        from: u64,
        to: u64,
        mode: &str,
        detail: &str,
    ) {
        self.spans
            .push(json!([lock, session, what, from, to, mode, detail]));
    }

    fn close_all(&mut self, end_ns: u64, why: &str) {
        let held: Vec<(u64, u64)> = self.holding.keys().copied().collect();
        for (lock, session) in held {
            self.end_hold(lock, session, end_ns, why);
        }
        for ((lock, session), (since, mode)) in std::mem::take(&mut self.waiting) {
            self.span(lock, session, "wait", since, end_ns, &mode, why);
        }
    }
}

/// The sequence numbers of a batch of `count` from `first`. A batch is a
/// handful of messages; a hand-written trace claiming more than
/// `MAX_BATCH` is not followed message by message.
fn batch(first: u64, count: u64) -> std::ops::Range<u64> {
    const MAX_BATCH: u64 = 100_000;
    first..first.saturating_add(count.min(MAX_BATCH))
}

/// Most queued messages the report follows one by one over a whole trace,
/// in the depth chart and, apart, in the send-to-receipt latencies. The
/// cap on one batch does not bound the total: 300 hand-written lines
/// claiming huge batches made the report keep 30 million messages (1.5 GB).
/// Two million is more than an hour of three producers at 100 messages a
/// second; past it the depth chart stops and the latencies cover the
/// messages sent until then, and the page says so. About 150 MB at most.
pub const MAX_FOLLOWED_MESSAGES: u64 = 2_000_000;

/// Counts the messages a collector follows against `MAX_FOLLOWED_MESSAGES`.
#[derive(Default)]
struct Followed {
    count: u64,
    /// When a batch would have passed the limit (none followed after).
    cut_at_ns: Option<u64>,
}

impl Followed {
    /// The part of a batch to follow: all of it, or nothing once the
    /// limit would be passed (a half-followed batch would skew the counts).
    fn take(&mut self, t: u64, messages: std::ops::Range<u64>) -> std::ops::Range<u64> {
        let n = messages.end - messages.start;
        if self.cut_at_ns.is_some() || self.count + n > MAX_FOLLOWED_MESSAGES {
            self.cut_at_ns.get_or_insert(t);
            return 0..0;
        }
        self.count += n;
        messages
    }
}

/// Where a queued message is, for counting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Ready,
    InFlight,
    Dead,
}

/// Queue depth over time: messages ready, in flight and dead-lettered on
/// each shard, from the shards' own events.
///
/// A partition's counts belong to the shard that last reported on it, so
/// a partition that moves takes its messages along when the new shard
/// first speaks for it.
#[derive(Default)]
pub struct QueueDepth {
    places: BTreeMap<(u64, u64, u64), Place>,
    /// Per partition: [ready, in flight, dead].
    by_partition: BTreeMap<u64, [i64; 3]>,
    owner: BTreeMap<u64, String>,
    /// Per shard: [ready, in flight, dead].
    by_shard: BTreeMap<String, [i64; 3]>,
    /// (t, shard, counts) after every change.
    changes: Vec<(u64, String, [i64; 3])>,
    followed: Followed,
}

/// Buckets across the run for the depth chart.
const DEPTH_BUCKETS: u64 = 600;

impl QueueDepth {
    pub fn observe(&mut self, l: &Line) {
        if !l.kind.starts_with("queue.") || !l.node.starts_with('s') {
            return;
        }
        // Past the limit the counts stop: later pops and acks would be of
        // messages never counted in.
        if self.followed.cut_at_ns.is_some() {
            return;
        }
        let v = l.v;
        let part = u64_of(v, "partition");
        self.take_over(part, l.node, l.t);
        let id = |seq: u64| (part, u64_of(v, "producer"), seq);
        let seq = u64_of(v, "message_seq");
        match l.kind {
            "queue.stored" => {
                // A batch's retried head is the duplicate part; the new
                // messages are its tail.
                let first = u64_of(v, "first_seq").saturating_add(u64_of(v, "duplicate"));
                let stored = self.followed.take(l.t, batch(first, u64_of(v, "stored")));
                if self.followed.cut_at_ns.is_some() {
                    return;
                }
                for s in stored {
                    self.set(id(s), Some(Place::Ready));
                }
            }
            "queue.pop" => self.set(id(seq), Some(Place::InFlight)),
            "queue.nacked" | "queue.requeued" => self.set(id(seq), Some(Place::Ready)),
            // A crash brought the message back, or moved it back, to `place`.
            "queue.revived" | "queue.reverted" => {
                let place = match v["place"].as_str() {
                    Some("inflight") => Place::InFlight,
                    Some("dead") => Place::Dead,
                    _ => Place::Ready,
                };
                self.set(id(seq), Some(place))
            }
            "queue.dead" => self.set(id(seq), Some(Place::Dead)),
            "queue.acked" | "queue.lost" => self.set(id(seq), None),
            _ => return,
        }
        let shard = self.owner[&part].clone();
        let counts = self.by_shard[&shard];
        self.changes.push((l.t, shard, counts));
    }

    /// Moves a partition's counts to `shard` when it starts answering for it.
    fn take_over(&mut self, part: u64, shard: &str, t: u64) {
        let counts = *self.by_partition.entry(part).or_default();
        let old = self.owner.insert(part, shard.to_string());
        if old.as_deref() == Some(shard) {
            return;
        }
        if let Some(old) = old {
            let from = self.by_shard.entry(old.clone()).or_default();
            for (c, n) in from.iter_mut().zip(counts) {
                *c -= n;
            }
            let after = *from;
            self.changes.push((t, old, after));
        }
        let to = self.by_shard.entry(shard.to_string()).or_default();
        for (c, n) in to.iter_mut().zip(counts) {
            *c += n;
        }
    }

    fn set(&mut self, id: (u64, u64, u64), place: Option<Place>) {
        let before = match place {
            Some(p) => self.places.insert(id, p),
            None => self.places.remove(&id),
        };
        let shard = self.owner[&id.0].clone();
        let slot = |p: Place| match p {
            Place::Ready => 0,
            Place::InFlight => 1,
            Place::Dead => 2,
        };
        for (p, delta) in [(before, -1), (place, 1)] {
            if let Some(p) = p {
                self.by_partition.entry(id.0).or_default()[slot(p)] += delta;
                self.by_shard.entry(shard.clone()).or_default()[slot(p)] += delta;
            }
        }
    }

    /// Each shard's highest ready and in-flight counts, and its dead count,
    /// in each of `DEPTH_BUCKETS` slices of the run.
    pub fn finish(self, end_ns: u64) -> Value {
        if self.changes.is_empty() && self.followed.cut_at_ns.is_none() {
            return Value::Null;
        }
        let width = end_ns.max(1).div_ceil(DEPTH_BUCKETS).max(1);
        let n = DEPTH_BUCKETS as usize;
        let shards: Vec<String> = self.by_shard.keys().cloned().collect();
        // Per shard: each slice's highest counts, and the counts it ended with.
        let mut most: BTreeMap<&str, Vec<Option<[i64; 3]>>> =
            shards.iter().map(|s| (s.as_str(), vec![None; n])).collect();
        let mut ended: BTreeMap<&str, Vec<Option<[i64; 3]>>> = most.clone();
        for (t, shard, counts) in &self.changes {
            let k = ((t / width) as usize).min(n - 1);
            let m = &mut most.get_mut(shard.as_str()).expect("every shard counted")[k];
            let high = m.get_or_insert(*counts);
            for (h, c) in high.iter_mut().zip(counts) {
                *h = (*h).max(*c);
            }
            ended.get_mut(shard.as_str()).expect("every shard counted")[k] = Some(*counts);
        }
        // A slice with no change shows the counts the slice before ended with.
        let series: Vec<[Vec<i64>; 3]> = shards
            .iter()
            .map(|s| {
                let mut last = [0i64; 3];
                let mut out: [Vec<i64>; 3] = std::array::from_fn(|_| Vec::with_capacity(n));
                for k in 0..n {
                    let shown = most[s.as_str()][k].unwrap_or(last);
                    // Dead letters only grow between changes: show where the slice ended.
                    let dead = ended[s.as_str()][k].map_or(last[2], |e| e[2]);
                    out[0].push(shown[0]);
                    out[1].push(shown[1]);
                    out[2].push(dead);
                    if let Some(e) = ended[s.as_str()][k] {
                        last = e;
                    }
                }
                out
            })
            .collect();
        json!({
            "bucket_ns": width,
            "shards": shards,
            "series": series,
            "cut_at_ns": self.followed.cut_at_ns,
            "max_followed": MAX_FOLLOWED_MESSAGES,
        })
    }
}

/// Latencies of what clients waited for, paired from the trace:
/// key-value operations (invoke to return), cache operations (start to
/// completion), and queue messages (first send to first receipt).
#[derive(Default)]
pub struct Latencies {
    kv_open: BTreeMap<String, u64>,
    kv: Vec<u64>,
    cache_open: BTreeMap<(String, u64), VecDeque<u64>>,
    cache_reads: Vec<u64>,
    cache_writes: Vec<u64>,
    sent: BTreeMap<(u64, u64), u64>,
    sends_followed: Followed,
    received: BTreeSet<(u64, u64)>,
    queue: Vec<u64>,
}

impl Latencies {
    pub fn observe(&mut self, l: &Line) {
        let v = l.v;
        match l.kind {
            "client.invoke" => {
                self.kv_open.insert(l.node.to_string(), l.t);
            }
            "client.return" => {
                if let Some(t0) = self.kv_open.remove(l.node) {
                    self.kv.extend(l.t.checked_sub(t0));
                }
            }
            "cache.start" => {
                let key = (l.node.to_string(), u64_of(v, "key"));
                self.cache_open.entry(key).or_default().push_back(l.t);
            }
            "cache.read" | "cache.write" | "cache.failed" => {
                let key = (l.node.to_string(), u64_of(v, "key"));
                if let Some(t0) = self.cache_open.get_mut(&key).and_then(|q| q.pop_front()) {
                    match l.kind {
                        "cache.read" => self.cache_reads.extend(l.t.checked_sub(t0)),
                        "cache.write" => self.cache_writes.extend(l.t.checked_sub(t0)),
                        _ => {}
                    }
                }
            }
            "queue.send" => {
                let producer = u64_of(v, "producer");
                let first = u64_of(v, "first_seq");
                let sent = self
                    .sends_followed
                    .take(l.t, batch(first, u64_of(v, "count")));
                for seq in sent {
                    self.sent.entry((producer, seq)).or_insert(l.t);
                }
            }
            "queue.received" => {
                let id = (u64_of(v, "producer"), u64_of(v, "message_seq"));
                if self.received.insert(id)
                    && let Some(t0) = self.sent.get(&id)
                {
                    self.queue.extend(l.t.checked_sub(*t0));
                }
            }
            _ => {}
        }
    }

    /// One histogram per kind of wait that occurred, plus the lock
    /// figures, which come from elsewhere.
    pub fn finish(self, lock_waits: Vec<u64>, lock_acquires: Vec<u64>) -> Value {
        let queue = match self.sends_followed.cut_at_ns {
            None => "queue messages, first send to first receipt".to_string(),
            Some(t) => format!(
                "queue messages, first send to first receipt (only those sent before {t} ns: \
                 the trace's batches add up to more than {MAX_FOLLOWED_MESSAGES} messages, \
                 the most the report follows)"
            ),
        };
        let all = [
            ("key-value operations, invoke to return", self.kv),
            (
                "lock acquires, request to grant (measured by the clients)",
                lock_acquires,
            ),
            ("lock waits at the service, queued to granted", lock_waits),
            (queue.as_str(), self.queue),
            ("cache reads, start to value", self.cache_reads),
            ("cache writes, start to done", self.cache_writes),
        ];
        Value::Array(
            all.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, v)| histogram(name, v))
                .collect(),
        )
    }
}

/// Bucket edges 1-2-5 per decade from 1 µs to 1000 s.
fn edges() -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade = 1_000u64;
    while decade <= 1_000_000_000_000 {
        out.extend([decade, decade * 2, decade * 5]);
        decade *= 10;
    }
    out
}

/// A latency histogram over 1-2-5 buckets, empty ends trimmed, with its
/// percentiles.
pub fn histogram(name: &str, ns: Vec<u64>) -> Value {
    let figures = crate::check::Latency::of(&ns);
    let e = edges();
    let mut counts = vec![0u64; e.len() + 1];
    for &x in &ns {
        counts[e.partition_point(|&edge| edge <= x)] += 1;
    }
    let first = counts.iter().position(|&c| c > 0).unwrap_or(0);
    let last = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
    let buckets: Vec<Value> = (first..=last)
        .map(|i| {
            let lo = if i == 0 { 0 } else { e[i - 1] };
            let hi = e.get(i).copied();
            json!([lo, hi, counts[i]])
        })
        .collect();
    json!({
        "name": name,
        "count": figures.count,
        "p50": figures.p50_ns,
        "p99": figures.p99_ns,
        "max": figures.max_ns,
        "buckets": buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed<F: FnMut(&Line)>(raw: &[&str], mut f: F) {
        for r in raw {
            let v: Value = serde_json::from_str(r).unwrap();
            let line = Line {
                t: v["t"].as_u64().unwrap(),
                node: v["node"].as_str().unwrap(),
                kind: v["kind"].as_str().unwrap(),
                v: &v,
            };
            f(&line);
        }
    }

    #[test]
    fn each_lock_event_is_drawn_once_when_first_applied() {
        let mut l = LockTimelines::default();
        feed(
            &[
                r#"{"t":10,"node":"n1","kind":"raft.apply","index":1}"#,
                r#"{"t":10,"node":"n1","kind":"lock.grant","lock":0,"session":1,"mode":"exclusive","token":1,"holds":1}"#,
                r#"{"t":11,"node":"n2","kind":"raft.apply","index":1}"#,
                r#"{"t":11,"node":"n2","kind":"lock.grant","lock":0,"session":1,"mode":"exclusive","token":1,"holds":1}"#,
                r#"{"t":12,"node":"n2","kind":"raft.apply","index":2}"#,
                r#"{"t":12,"node":"n2","kind":"lock.wait","lock":0,"session":2,"mode":"exclusive"}"#,
                r#"{"t":13,"node":"n1","kind":"raft.apply","index":2}"#,
                r#"{"t":13,"node":"n1","kind":"lock.wait","lock":0,"session":2,"mode":"exclusive"}"#,
                r#"{"t":20,"node":"n1","kind":"raft.apply","index":3}"#,
                r#"{"t":20,"node":"n1","kind":"lock.release","lock":0,"session":1,"holds":0}"#,
                r#"{"t":20,"node":"n1","kind":"lock.grant","lock":0,"session":2,"mode":"exclusive","token":2,"holds":1}"#,
                // n2 restarted and applies its log again: nothing new.
                r#"{"t":21,"node":"n2","kind":"raft.apply","index":1}"#,
                r#"{"t":21,"node":"n2","kind":"lock.grant","lock":0,"session":1,"mode":"exclusive","token":1,"holds":1}"#,
                r#"{"t":22,"node":"n2","kind":"raft.apply","index":3}"#,
                r#"{"t":22,"node":"n2","kind":"lock.release","lock":0,"session":1,"holds":0}"#,
                r#"{"t":22,"node":"n2","kind":"lock.grant","lock":0,"session":2,"mode":"exclusive","token":2,"holds":1}"#,
                r#"{"t":25,"node":"n2","kind":"raft.apply","index":4}"#,
                r#"{"t":25,"node":"n2","kind":"lock.session","session":2,"client":2,"what":"expired"}"#,
                r#"{"t":26,"node":"n2","kind":"lock.fail","session":3,"lock":null,"error":"not yours"}"#,
            ],
            |x| l.observe(x),
        );
        let d = l.finish(30);
        assert_eq!(
            d.json["spans"],
            json!([
                [0, 1, "hold", 10, 20, "exclusive", "token 1, released"],
                [0, 2, "wait", 12, 20, "exclusive", "granted"],
                [
                    0,
                    2,
                    "hold",
                    20,
                    25,
                    "exclusive",
                    "token 2, session expired"
                ],
            ])
        );
        assert_eq!(d.waits_ns, vec![8]);
    }

    #[test]
    fn a_backwards_or_outsized_trace_gives_no_nonsense() {
        let mut l = Latencies::default();
        let mut q = QueueDepth::default();
        feed(
            &[
                r#"{"t":100,"node":"c1","kind":"client.invoke"}"#,
                r#"{"t":50,"node":"c1","kind":"client.return"}"#,
                r#"{"t":1,"node":"s1","kind":"queue.stored","partition":0,"producer":1,"first_seq":18446744073709551615,"stored":4000000000,"duplicate":5}"#,
            ],
            |x| {
                l.observe(x);
                q.observe(x);
            },
        );
        assert_eq!(l.finish(Vec::new(), Vec::new()), json!([]));
        assert_eq!(q.by_shard["s1"], [0, 0, 0]);
    }

    #[test]
    fn huge_batches_are_followed_only_up_to_the_total_limit() {
        // 300 lines claiming 4e9 messages each, capped at 100,000 a line:
        // 30 million messages without a limit on the total.
        let lines: Vec<String> = (0..300u64)
            .flat_map(|i| {
                [
                    format!(
                        r#"{{"t":{i},"node":"s1","kind":"queue.stored","partition":{},"producer":{i},"first_seq":1,"stored":4000000000,"duplicate":0}}"#,
                        i % 8
                    ),
                    format!(
                        r#"{{"t":{i},"node":"p1","kind":"queue.send","producer":{i},"partition":0,"first_seq":1,"count":4000000000}}"#
                    ),
                ]
            })
            .collect();
        let raw: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut l = Latencies::default();
        let mut q = QueueDepth::default();
        feed(&raw, |x| {
            l.observe(x);
            q.observe(x);
        });
        let whole = MAX_FOLLOWED_MESSAGES / 100_000;
        assert_eq!(q.places.len() as u64, whole * 100_000);
        assert_eq!(l.sent.len() as u64, whole * 100_000);
        // The first batch past the limit is where the chart stops.
        assert_eq!(q.followed.cut_at_ns, Some(whole));
        assert_eq!(l.sends_followed.cut_at_ns, Some(whole));
        let d = q.finish(300);
        assert_eq!(d["cut_at_ns"], json!(whole));
        assert_eq!(d["series"][0][0][599], json!(whole * 100_000));
        // A cut limited to latencies names it in the histogram's title.
        let mut l = Latencies::default();
        feed(&raw[..2 * whole as usize + 2], |x| l.observe(x));
        feed(
            &[r#"{"t":5000,"node":"w1","kind":"queue.received","producer":0,"message_seq":1}"#],
            |x| l.observe(x),
        );
        let h = l.finish(Vec::new(), Vec::new());
        assert!(
            h[0]["name"]
                .as_str()
                .unwrap()
                .contains("only those sent before"),
            "{h}"
        );
    }

    #[test]
    fn an_upgrade_ends_the_shared_hold_and_a_reentry_does_not() {
        let mut b = SpanBuilder::default();
        for (t, r) in [
            (
                1,
                r#"{"kind":"lock.grant","lock":3,"session":1,"mode":"shared","token":4,"holds":1}"#,
            ),
            (
                2,
                r#"{"kind":"lock.grant","lock":3,"session":1,"mode":"shared","token":4,"holds":2}"#,
            ),
            (
                5,
                r#"{"kind":"lock.grant","lock":3,"session":1,"mode":"exclusive","token":5,"holds":3}"#,
            ),
        ] {
            b.apply(t, &serde_json::from_str(r).unwrap());
        }
        b.close_all(9, "end");
        assert_eq!(
            json!(b.spans),
            json!([
                [3, 1, "hold", 1, 5, "shared", "token 4, upgraded"],
                [3, 1, "hold", 5, 9, "exclusive", "token 5, end"],
            ])
        );
    }

    #[test]
    fn queue_depth_counts_ready_inflight_and_dead_per_shard() {
        let mut q = QueueDepth::default();
        feed(
            &[
                r#"{"t":0,"node":"s1","kind":"queue.stored","partition":0,"producer":1,"first_seq":1,"stored":3,"duplicate":0}"#,
                r#"{"t":0,"node":"s1","kind":"queue.stored","partition":0,"producer":1,"first_seq":3,"stored":1,"duplicate":1}"#,
                r#"{"t":1,"node":"s1","kind":"queue.pop","partition":0,"consumer":1,"producer":1,"message_seq":1,"attempt":1}"#,
                r#"{"t":2,"node":"s1","kind":"queue.acked","partition":0,"producer":1,"message_seq":1}"#,
                r#"{"t":2,"node":"s1","kind":"queue.pop","partition":0,"consumer":1,"producer":1,"message_seq":2,"attempt":1}"#,
                r#"{"t":3,"node":"s1","kind":"queue.dead","partition":0,"producer":1,"message_seq":2,"attempts":3}"#,
                r#"{"t":4,"node":"s2","kind":"queue.pop","partition":0,"consumer":1,"producer":1,"message_seq":3,"attempt":1}"#,
                r#"{"t":5,"node":"s2","kind":"queue.pop","partition":0,"consumer":1,"producer":1,"message_seq":4,"attempt":1}"#,
                // s2 crashed: the second pop was not synced.
                r#"{"t":6,"node":"s2","kind":"queue.reverted","partition":0,"producer":1,"message_seq":4,"place":"ready"}"#,
            ],
            |x| q.observe(x),
        );
        let last: Vec<(String, [i64; 3])> =
            q.changes.iter().map(|(_, s, c)| (s.clone(), *c)).collect();
        assert_eq!(last[1], ("s1".to_string(), [4, 0, 0]));
        // The partition moved to s2 with its two ready and one dead message.
        assert_eq!(q.by_shard["s1"], [0, 0, 0]);
        assert_eq!(q.by_shard["s2"], [1, 1, 1]);
        assert_eq!(q.changes[q.changes.len() - 2].2, [0, 2, 1]);
        let d = q.finish(600);
        assert_eq!(d["shards"], json!(["s1", "s2"]));
        assert_eq!(d["series"][0][0][0], json!(4));
        // Slices after the last change show where each shard ended, not
        // the highest count of the last busy slice.
        assert_eq!(d["series"][0][0][599], json!(0));
        assert_eq!(d["series"][1][0][599], json!(1));
        assert_eq!(d["series"][1][1][599], json!(1));
        assert_eq!(d["series"][1][2][599], json!(1));
    }

    #[test]
    fn latencies_pair_each_wait_with_its_end() {
        let mut l = Latencies::default();
        feed(
            &[
                r#"{"t":100,"node":"c1","kind":"client.invoke","op":"put"}"#,
                r#"{"t":2100,"node":"c1","kind":"client.return","op":"put"}"#,
                r#"{"t":0,"node":"p1","kind":"queue.send","producer":1,"partition":0,"first_seq":1,"count":2}"#,
                r#"{"t":5000,"node":"w1","kind":"queue.received","producer":1,"message_seq":2}"#,
                r#"{"t":9000,"node":"w1","kind":"queue.received","producer":1,"message_seq":2}"#,
            ],
            |x| l.observe(x),
        );
        let h = l.finish(Vec::new(), Vec::new());
        assert_eq!(h[0]["count"], 1);
        assert_eq!(h[0]["p50"], 2000);
        assert_eq!(h[0]["buckets"], json!([[2000, 5000, 1]]));
        assert_eq!(h[1]["count"], 1, "a redelivery is not a second latency");
        assert_eq!(h[1]["max"], 5000);
    }
}
