//! Cache operation histories: per-key linearizability and latency.
//!
//! A node's cache runs one get, fetch or put at a time. `cache.start` marks
//! when it begins; it ends with the node's next `cache.read` (get, fetch) or
//! `cache.write` (put). An operation that gives up (`cache.failed`) changed
//! nothing, and one cut short by a crash never installed anything (a write
//! is installed exactly when its `cache.write` is traced), so operations
//! without a completion are left out. A `cache.failed` is not used to end
//! an operation at all: an operation refused because too many were queued
//! fails while another one is in progress, possibly with the same op and
//! key, and the operation in progress is known to have ended without a
//! completion only when the node's next `cache.start` arrives. A
//! completion with no open operation to end (not expected from the
//! controllers) still counts, as starting when the node's previous
//! operation completed: the earliest it can have started. It is not timed.
//!
//! Each key's completed operations form a history of one register that
//! starts unwritten (None), checked for linearizability with the WGL search
//! of `linearizability.rs`. Operations are ordered by when their start and
//! completion were traced: the simulator runs one event at a time, so the
//! trace order is the real-time order, exact even among events of one
//! simulated instant (a node that gets a line serves the operations
//! waiting behind it at once; taking them as concurrent would make the
//! search exponential for no reason). Keys with a
//! `cache.lost` or `cache.in_doubt` event are left out: a lost write makes
//! the key's history non-linearizable by construction (a completed write
//! vanishes), and the online data-value check already accounts for it
//! exactly. Their histories are dropped as soon as they are excluded.
//!
//! Memory: one 40-byte record per completed operation (on keys still
//! checked) and one 8-byte latency sample per completed operation.

use std::collections::{BTreeMap, BTreeSet};

pub use super::Latency;
use super::linearizability::{Model, Operation, Verdict, check_partitioned};
use crate::trace::NodeId;

/// Latencies of the run's completed cache operations, over all nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheLatencies {
    /// Gets and fetches; and those that hit or missed.
    pub read: Latency,
    pub read_hit: Latency,
    pub read_miss: Latency,
    /// Puts.
    pub write: Latency,
}

/// A cache operation as the register model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheCall {
    /// A get or fetch.
    Get,
    Put(u64),
}

/// What a cache operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheReturn {
    /// A get or fetch returned this (None: never written).
    Value(Option<u64>),
    /// A put completed.
    Ok,
}

/// One key as a register of u64 values, initially None (never written).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheRegister;

impl Model for CacheRegister {
    type State = Option<u64>;
    type Input = CacheCall;
    type Output = CacheReturn;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &CacheCall,
        output: &CacheReturn,
    ) -> Option<Option<u64>> {
        match (input, output) {
            (CacheCall::Get, CacheReturn::Value(v)) => (v == state).then_some(*state),
            (CacheCall::Put(v), CacheReturn::Ok) => Some(Some(*v)),
            _ => None,
        }
    }
}

/// A get, fetch or put in progress at a node.
#[derive(Clone, Copy, Debug)]
struct Open {
    read: bool,
    key: u32,
    start_ns: u64,
    /// Its start's position in the trace order.
    start_at: u64,
}

/// One node's operations.
#[derive(Clone, Copy, Debug, Default)]
struct NodeOps {
    open: Option<Open>,
    /// Where its latest operation completed in the trace order: the next
    /// one started no earlier.
    last_end_at: u64,
}

/// A completed operation on one key.
#[derive(Clone, Copy, Debug)]
struct Done {
    node: u32,
    read: bool,
    /// The value read, or written.
    value: Option<u64>,
    /// Positions of its start and completion in the trace order.
    call_at: u64,
    ret_at: u64,
}

/// The outcome of the end-of-run history check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCheck {
    pub verdict: Verdict,
    /// Keys whose histories were checked, and their operations.
    pub keys: usize,
    pub ops: usize,
    /// Keys left out for a lost or in-doubt write, and their completed operations.
    pub excluded_keys: usize,
    pub excluded_ops: u64,
    /// Operations started that never completed (failed, cut short by a
    /// crash, or still running at the end): they changed nothing.
    pub unfinished: u64,
    /// Completions with no matching `cache.start`; they are checked as
    /// starting when the node's previous operation completed (the earliest
    /// they can have started, so no order is invented), not timed.
    pub unpaired: u64,
}

/// The cache operations of a run, paired from start to completion.
#[derive(Clone, Debug, Default)]
pub struct Histories {
    /// Per node, its operation in progress.
    nodes: Vec<NodeOps>,
    /// Completed operations per key still checked, in completion order.
    by_key: BTreeMap<u32, Vec<Done>>,
    excluded: BTreeSet<u32>,
    excluded_ops: u64,
    /// Started operations that ended without a completion.
    unfinished: u64,
    unpaired: u64,
    /// Start and completion events seen so far: each one's position.
    events: u64,
    read_hit_ns: Vec<u64>,
    read_miss_ns: Vec<u64>,
    write_ns: Vec<u64>,
}

impl Histories {
    /// Estimated bytes kept: a record and a latency per completed operation.
    pub fn retained_bytes(&self) -> u64 {
        let done = self.read_hit_ns.len() + self.read_miss_ns.len() + self.write_ns.len();
        crate::sim::budget::entries::<Done>(done) + crate::sim::budget::entries::<u64>(done)
    }

    fn node(&mut self, node: NodeId) -> &mut NodeOps {
        if node >= self.nodes.len() {
            self.nodes.resize(node + 1, NodeOps::default());
        }
        &mut self.nodes[node]
    }

    /// `cache.start`: the node's previous operation, if still open, ended
    /// without a completion.
    pub fn on_start(&mut self, t_ns: u64, node: NodeId, op: &str, key: u32) {
        let read = match op {
            "get" | "fetch" => true,
            "put" => false,
            _ => return,
        };
        let start_at = self.tick();
        let prev = self.node(node).open.replace(Open {
            read,
            key,
            start_ns: t_ns,
            start_at,
        });
        self.unfinished += u64::from(prev.is_some());
    }

    /// `cache.read`: completes the node's get or fetch of `key`.
    pub fn on_read(&mut self, t_ns: u64, node: NodeId, key: u32, value: Option<u64>, hit: bool) {
        let (call_at, ret_at, started_ns) = self.complete(node, key, true);
        if let Some(start_ns) = started_ns {
            let lat = t_ns.saturating_sub(start_ns);
            if hit {
                self.read_hit_ns.push(lat);
            } else {
                self.read_miss_ns.push(lat);
            }
        }
        self.record(call_at, ret_at, node, key, true, value);
    }

    /// `cache.write`: completes the node's put to `key`.
    pub fn on_write(&mut self, t_ns: u64, node: NodeId, key: u32, value: u64) {
        let (call_at, ret_at, started_ns) = self.complete(node, key, false);
        if let Some(start_ns) = started_ns {
            self.write_ns.push(t_ns.saturating_sub(start_ns));
        }
        self.record(call_at, ret_at, node, key, false, Some(value));
    }

    /// `cache.lost` or `cache.in_doubt`: the key leaves the check.
    pub fn exclude(&mut self, key: u32) {
        if self.excluded.insert(key) {
            self.excluded_ops += self.by_key.remove(&key).map_or(0, |h| h.len() as u64);
        }
    }

    /// The next position in the trace order.
    fn tick(&mut self) -> u64 {
        self.events += 1;
        self.events
    }

    /// A completion: the positions of its operation's start and its own,
    /// and the start's simulated time if it is the traced start (the
    /// node's open operation, taken). Otherwise the start is the earliest
    /// it can have been (the node's previous completion), and not timed.
    fn complete(&mut self, node: NodeId, key: u32, read: bool) -> (u64, u64, Option<u64>) {
        let ret_at = self.tick();
        let n = self.node(node);
        let earliest = std::mem::replace(&mut n.last_end_at, ret_at);
        match n.open.filter(|o| o.read == read && o.key == key) {
            Some(o) => {
                n.open = None;
                (o.start_at, ret_at, Some(o.start_ns))
            }
            None => {
                self.unpaired += 1;
                (earliest, ret_at, None)
            }
        }
    }

    fn record(
        &mut self,
        call_at: u64,
        ret_at: u64,
        node: NodeId,
        key: u32,
        read: bool,
        value: Option<u64>,
    ) {
        if self.excluded.contains(&key) {
            self.excluded_ops += 1;
            return;
        }
        self.by_key.entry(key).or_default().push(Done {
            node: node as u32,
            read,
            value,
            call_at,
            ret_at,
        });
    }

    /// Latency figures of the completed operations.
    pub fn latencies(&self) -> CacheLatencies {
        let reads = [&self.read_hit_ns[..], &self.read_miss_ns[..]].concat();
        CacheLatencies {
            read: Latency::of(&reads),
            read_hit: Latency::of(&self.read_hit_ns),
            read_miss: Latency::of(&self.read_miss_ns),
            write: Latency::of(&self.write_ns),
        }
    }

    /// Checks every key's history for linearizability, with `max_steps` of
    /// search per key. In counterexamples, client k is node nk.
    pub fn check(&self, max_steps: u64) -> HistoryCheck {
        let ops: Vec<(u32, Operation<CacheCall, CacheReturn>)> = self
            .by_key
            .iter()
            .flat_map(|(&key, h)| {
                h.iter().map(move |d| {
                    let (input, output) = if d.read {
                        (CacheCall::Get, CacheReturn::Value(d.value))
                    } else {
                        (CacheCall::Put(d.value.unwrap_or(0)), CacheReturn::Ok)
                    };
                    let op = Operation {
                        client: u64::from(d.node) + 1,
                        input,
                        output,
                        call: d.call_at,
                        ret: Some(d.ret_at),
                    };
                    (key, op)
                })
            })
            .collect();
        let n = ops.len();
        HistoryCheck {
            verdict: check_partitioned(&CacheRegister, ops, max_steps),
            keys: self.by_key.len(),
            ops: n,
            excluded_keys: self.excluded.len(),
            excluded_ops: self.excluded_ops,
            unfinished: self.unfinished
                + self.nodes.iter().filter(|n| n.open.is_some()).count() as u64,
            unpaired: self.unpaired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn start(h: &mut Histories, ms: u64, node: NodeId, op: &str, key: u32) {
        h.on_start(ms * MS, node, op, key);
    }

    fn verdict(h: &Histories) -> Verdict {
        h.check(1_000_000).verdict
    }

    #[test]
    fn a_linearizable_multi_node_history_passes() {
        let mut h = Histories::default();
        // n1 reads the unwritten key, writes 7; n2 and n3 read 7 after it.
        start(&mut h, 0, 0, "get", 1);
        h.on_read(MS, 0, 1, None, false);
        start(&mut h, 2, 0, "put", 1);
        h.on_write(4 * MS, 0, 1, 7);
        start(&mut h, 5, 1, "get", 1);
        start(&mut h, 5, 2, "fetch", 1);
        h.on_read(6 * MS, 2, 1, Some(7), false);
        h.on_read(7 * MS, 1, 1, Some(7), false);
        // n2 overwrites, then reads its own value as a hit; another key beside.
        start(&mut h, 8, 1, "put", 1);
        h.on_write(9 * MS, 1, 1, 9);
        start(&mut h, 10, 1, "get", 1);
        h.on_read(10 * MS, 1, 1, Some(9), true);
        start(&mut h, 10, 2, "put", 2);
        h.on_write(11 * MS, 2, 2, 3);
        let c = h.check(1_000_000);
        assert_eq!(c.verdict, Verdict::Linearizable);
        assert_eq!((c.keys, c.ops, c.excluded_keys, c.unfinished), (2, 7, 0, 0));
    }

    #[test]
    fn a_stale_read_after_a_completed_put_fails() {
        let mut h = Histories::default();
        start(&mut h, 0, 0, "put", 1);
        h.on_write(MS, 0, 1, 7);
        start(&mut h, 2, 0, "put", 1);
        h.on_write(3 * MS, 0, 1, 8);
        // n2 starts reading after 8 was written, yet returns 7.
        start(&mut h, 4, 1, "get", 1);
        h.on_read(5 * MS, 1, 1, Some(7), false);
        let Verdict::NotLinearizable(cx) = verdict(&h) else {
            panic!("a stale read passed");
        };
        assert_eq!(cx.partition.as_deref(), Some("1"));
        assert_eq!(cx.state, "Some(8)");
        assert_eq!(cx.blocking.input, "Get");
        assert_eq!(cx.blocking.output, "Value(Some(7))");
        assert_eq!(cx.blocking.client, 2, "client k is node nk");
        // Reading the unwritten value after a completed put is stale too.
        let mut h = Histories::default();
        start(&mut h, 0, 2, "put", 4);
        h.on_write(MS, 2, 4, 5);
        start(&mut h, 2, 0, "fetch", 4);
        h.on_read(2 * MS, 0, 4, None, false);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn a_read_overlapping_a_put_may_return_either_value() {
        for seen in [Some(7), Some(8)] {
            let mut h = Histories::default();
            start(&mut h, 0, 0, "put", 1);
            h.on_write(MS, 0, 1, 7);
            start(&mut h, 2, 0, "put", 1);
            start(&mut h, 3, 1, "get", 1);
            h.on_read(4 * MS, 1, 1, seen, false);
            h.on_write(5 * MS, 0, 1, 8);
            assert_eq!(verdict(&h), Verdict::Linearizable, "{seen:?}");
        }
        // Order is the trace's, exact within one instant: a read started
        // the same instant a put completed, but traced after it, must see it.
        let mut h = Histories::default();
        start(&mut h, 0, 0, "put", 1);
        h.on_write(2 * MS, 0, 1, 7);
        start(&mut h, 2, 1, "get", 1);
        h.on_read(3 * MS, 1, 1, None, false);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn keys_with_a_lost_or_doubted_write_are_excluded() {
        let mut h = Histories::default();
        // Key 1: 7 is written, lost, and memory's None read afterwards.
        start(&mut h, 0, 0, "put", 1);
        h.on_write(MS, 0, 1, 7);
        h.exclude(1);
        start(&mut h, 2, 1, "get", 1);
        h.on_read(3 * MS, 1, 1, None, false);
        // Key 2: the same after an in-doubt write, excluded before any
        // of its operations completed.
        h.exclude(2);
        start(&mut h, 4, 2, "put", 2);
        h.on_write(5 * MS, 2, 2, 9);
        start(&mut h, 6, 2, "get", 2);
        h.on_read(7 * MS, 2, 2, None, false);
        h.exclude(2);
        // Key 3 is checked as usual.
        start(&mut h, 8, 0, "put", 3);
        h.on_write(9 * MS, 0, 3, 1);
        let c = h.check(1_000_000);
        assert_eq!(c.verdict, Verdict::Linearizable);
        assert_eq!((c.keys, c.ops), (1, 1));
        assert_eq!((c.excluded_keys, c.excluded_ops), (2, 4));
        // The stale read on key 1 fails when the key is not excluded.
        let mut h = Histories::default();
        start(&mut h, 0, 0, "put", 1);
        h.on_write(MS, 0, 1, 7);
        start(&mut h, 2, 1, "get", 1);
        h.on_read(3 * MS, 1, 1, None, false);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn failed_and_unfinished_operations_are_left_out() {
        let mut h = Histories::default();
        // n1's put of key 1 fails (no completion); n1's next op starts.
        start(&mut h, 0, 0, "put", 1);
        start(&mut h, 5, 0, "get", 1);
        h.on_read(6 * MS, 0, 1, None, false);
        // n2 starts a put and crashes; after its restart it reads None.
        start(&mut h, 7, 1, "put", 1);
        start(&mut h, 20, 1, "get", 1);
        h.on_read(21 * MS, 1, 1, None, false);
        // n3's put of key 2 is still running at the end.
        start(&mut h, 22, 2, "put", 2);
        let c = h.check(1_000_000);
        assert_eq!(c.verdict, Verdict::Linearizable);
        assert_eq!((c.keys, c.ops, c.unfinished, c.unpaired), (1, 2, 3, 0));
        assert_eq!(h.latencies().write.count, 0);
    }

    #[test]
    fn completions_without_a_start_count_from_the_previous_completion() {
        let mut h = Histories::default();
        start(&mut h, 0, 0, "get", 1);
        h.on_read(MS, 0, 1, None, false);
        start(&mut h, 2, 1, "put", 1);
        h.on_write(3 * MS, 1, 1, 5);
        // n1's next read has no start: it may have started right after its
        // previous read completed, before n2's put, so None is fine.
        h.on_read(8 * MS, 0, 1, None, false);
        // n1 then writes 9 without a start, and n3 reads it afterwards.
        h.on_write(12 * MS, 0, 1, 9);
        start(&mut h, 14, 2, "get", 1);
        h.on_read(15 * MS, 2, 1, Some(9), false);
        let c = h.check(1_000_000);
        assert_eq!(c.verdict, Verdict::Linearizable);
        assert_eq!((c.ops, c.unpaired, c.unfinished), (5, 2, 0));
        // They are not timed.
        let l = h.latencies();
        assert_eq!((l.read.count, l.write.count), (2, 1));
        // A completion that is not the open operation's leaves it open.
        start(&mut h, 20, 2, "put", 2);
        h.on_read(21 * MS, 2, 2, None, true);
        let c = h.check(1_000_000);
        assert_eq!((c.ops, c.unpaired, c.unfinished), (6, 3, 1));
        // A read started after a put without a start completed is stale.
        h.on_write(30 * MS, 0, 2, 4);
        start(&mut h, 35, 1, "get", 2);
        h.on_read(40 * MS, 1, 2, None, false);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn latencies_pair_starts_with_completions() {
        let mut h = Histories::default();
        for i in 0..100 {
            start(&mut h, 10 * i, 0, "get", 1);
            // Hits take 1 ms, one in ten reads misses and takes 5 ms.
            let (d, hit) = if i % 10 == 0 { (5, false) } else { (1, true) };
            h.on_read((10 * i + d) * MS, 0, 1, None, hit);
        }
        start(&mut h, 2_000, 1, "put", 2);
        h.on_write(2_003 * MS, 1, 2, 1);
        let l = h.latencies();
        assert_eq!(l.read.count, 100);
        assert_eq!(
            (l.read.p50_ns, l.read.p99_ns, l.read.max_ns),
            (MS, 5 * MS, 5 * MS)
        );
        assert_eq!((l.read_hit.p50_ns, l.read_hit.count), (MS, 90));
        assert_eq!((l.read_miss.p50_ns, l.read_miss.count), (5 * MS, 10));
        assert_eq!(
            (l.write.count, l.write.p50_ns, l.write.max_ns),
            (1, 3 * MS, 3 * MS)
        );
        assert_eq!(Histories::default().latencies(), CacheLatencies::default());
    }
}
