//! MESI cache coherence, checked online on every traced cache event.
//!
//! Coherence is the pair of invariants of Sorin, Hill & Wood, *A Primer on
//! Memory Consistency and Cache Coherence*, ch. 2:
//!
//! - **Single writer, multiple readers (SWMR).** At any moment a key has
//!   either one cache that may write it (M or E) and no other valid copy,
//!   or any number of read-only copies (S). The checker replays every
//!   node's `cache.transition`s and, after each one, checks the key it
//!   touched; a `cache.write` must also find every other copy invalidated,
//!   since a write completes only after that.
//! - **Data value.** A read sees the value of the last write before it: in
//!   trace order, every `cache.read` returns the value of the latest
//!   completed `cache.write` to that key by any node, or memory's value if
//!   no write ever completed.
//!
//! Two more properties keep the replay honest. *Transition from the current
//! state*: a transition's `from` must be the state the checker holds for
//! that (node, key) — a line starts in I — so a controller that skips a
//! trace or misreports a state is caught at its next transition (and a
//! `cache.dump` must list exactly the valid lines the replay has). *Hit
//! needs a valid line*: a read hit needs the line valid (M, E or S) when
//! it completes; a write hit needs it valid right before the write's own
//! transition into M (M with no transition, or E→M, or S→M by BusUpgr, which
//! is a hit by design), and a write miss needs it I there (I→M by BusRdX). A
//! write whose S copy was invalidated by another writer before it won the
//! bus therefore went I→M and must be traced as a miss.
//!
//! **Lost writes.** A node that crashes holding an M line traces
//! `cache.lost`: that value never reached memory (Redis), and its line was
//! the only copy (SWMR: while a cache holds M nobody else holds the key, and
//! handing the data to another cache flushes it, which writes memory and
//! leaves the line S or I). So when the lost value is the latest write's,
//! the key's latest value falls back to memory's: the value of the last
//! `cache.writeback` for the key (or none), including write-backs that land
//! after the crash, since those carry earlier writes that were on their way
//! to memory. A read by any node after the loss must return memory's value;
//! one that returns the lost value got it from nowhere (the crashed node's
//! lines are all I after the crash, and no other copy existed) and breaks
//! Data value. Losses are never hidden: every `cache.lost` is listed in the
//! summary, also one whose value is an older dirty value than the latest
//! write (that one leaves the latest value as it is).
//!
//! State is per key and per (node, key) in B-trees holding only valid lines,
//! with per-key counts of owners (M or E) and sharers (S), so each event
//! costs O(log n); only a violation's report looks at every node.

use std::collections::BTreeMap;

use super::cache_history::{CacheLatencies, Histories, HistoryCheck};
use super::raft_safety::Violation;
use crate::cache::mesi::State;
use crate::trace::{NodeId, Subject, TraceEvent};

type Check = Result<(), Violation>;

const SINGLE_WRITER: &str = "Single writer";
const FROM_CURRENT: &str = "Transition from the current state";
const DATA_VALUE: &str = "Data value";
const HIT_VALID: &str = "Hit needs a valid line";

/// What the caches did in one run, for reports and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheSummary {
    /// Completed reads, and those that hit.
    pub reads: u64,
    pub read_hits: u64,
    /// Completed writes, and those that hit (a write in S is a hit).
    pub writes: u64,
    pub write_hits: u64,
    /// Operations that gave up.
    pub failed: u64,
    /// Every write lost by a crash, as (key, value, node, t_ns), in trace order.
    pub lost_writes: Vec<(u32, u64, usize, u64)>,
    /// Dirty values written to memory.
    pub writebacks: u64,
    /// transitions counted by (from, to, cause)
    pub transitions: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// Simulated time from `cache.start` to completion, over all nodes.
    pub latency: CacheLatencies,
    /// Completed reads and writes, and their hits, in each second of
    /// simulated time (index = second).
    pub by_second: Vec<(u64, u64)>,
}

impl CacheSummary {
    /// Hits over completed reads and writes (0 if there were none).
    pub fn hit_ratio(&self) -> f64 {
        let ops = self.reads + self.writes;
        if ops == 0 {
            0.0
        } else {
            (self.read_hits + self.write_hits) as f64 / ops as f64
        }
    }

    /// The hit ratio once warm: over the later half of the seconds in
    /// which operations completed (the first half fills the caches), and
    /// the second it starts from. None without operations.
    pub fn warm_hit_ratio(&self) -> Option<(f64, u64)> {
        let first = self.by_second.iter().position(|&(ops, _)| ops > 0)?;
        let last = self.by_second.iter().rposition(|&(ops, _)| ops > 0)?;
        let from = (first + last).div_ceil(2);
        let (ops, hits) = self.by_second[from..=last]
            .iter()
            .fold((0, 0), |(o, h), &(ops, hits)| (o + ops, h + hits));
        (ops > 0).then(|| (hits as f64 / ops as f64, from as u64))
    }
}

/// A valid line at one node (I lines are not stored).
#[derive(Clone, Copy, Debug)]
struct Line {
    state: State,
    /// The state the line left when it last entered M, until the write that
    /// transition served completes: the state "right before" that write.
    entered_m_from: Option<State>,
}

/// What a read of a key must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Latest {
    /// Memory's value: no write completed yet, or the latest one was lost.
    Memory,
    /// The value of the latest completed write.
    Written(u64),
}

#[derive(Clone, Debug)]
struct Key {
    /// Nodes holding the key in M or E.
    owners: u32,
    /// Nodes holding the key in S.
    sharers: u32,
    latest: Latest,
    /// The last value written back to memory.
    memory: Option<u64>,
    /// The latest completed write as (node, t_ns, value), for reports.
    last_write: Option<(NodeId, u64, u64)>,
    /// When that write was lost, as (node, t_ns).
    lost: Option<(NodeId, u64)>,
    /// The latest write's value is in doubt: a crash took its owner while
    /// memory had not confirmed it. Until a read or a write-back settles
    /// it, a read may return it or memory's value.
    doubt: Option<(NodeId, u64)>,
}

impl Default for Key {
    fn default() -> Self {
        Key {
            owners: 0,
            sharers: 0,
            latest: Latest::Memory,
            memory: None,
            last_write: None,
            lost: None,
            doubt: None,
        }
    }
}

impl Key {
    fn expected(&self) -> Option<u64> {
        match self.latest {
            Latest::Memory => self.memory,
            Latest::Written(v) => Some(v),
        }
    }

    fn count(&mut self, s: State, add: bool) {
        let c = match s {
            State::Modified | State::Exclusive => &mut self.owners,
            State::Shared => &mut self.sharers,
            State::Invalid => return,
        };
        if add {
            *c += 1;
        } else {
            *c -= 1;
        }
    }

    /// SWMR: at most one owner, and none beside sharers.
    fn single_writer(&self) -> bool {
        self.owners == 0 || (self.owners == 1 && self.sharers == 0)
    }

    /// Why a read must return what `expected` says, for reports.
    fn why(&self) -> String {
        let mem = show(self.memory);
        match (self.latest, self.last_write, self.lost) {
            (Latest::Written(v), Some((n, t, _)), _) => {
                format!(
                    "the latest completed write is {v} (n{} at {})",
                    n + 1,
                    ms(t)
                )
            }
            (Latest::Memory, Some((n, t, v)), Some((ln, lt))) => format!(
                "the latest write {v} (n{} at {}) was lost when n{} crashed at {}, and memory holds {mem}",
                n + 1,
                ms(t),
                ln + 1,
                ms(lt)
            ),
            _ => format!("no write completed, and memory holds {mem}"),
        }
    }
}

fn parse(s: &str) -> Option<State> {
    match s {
        "M" => Some(State::Modified),
        "E" => Some(State::Exclusive),
        "S" => Some(State::Shared),
        "I" => Some(State::Invalid),
        _ => None,
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn ms(t_ns: u64) -> String {
    format!("{}.{:03} ms", t_ns / 1_000_000, t_ns / 1_000 % 1_000)
}

fn fail(invariant: &'static str, nodes: Vec<NodeId>, detail: String) -> Check {
    Err(Violation {
        invariant,
        detail,
        nodes,
    })
}

/// The online MESI checker for one run's caches.
#[derive(Clone)]
pub struct CacheChecker {
    /// Per node: key -> its valid line.
    lines: Vec<BTreeMap<u32, Line>>,
    keys: BTreeMap<u32, Key>,
    sum: CacheSummary,
    /// Every node's operations, start to completion.
    hist: Histories,
}

impl CacheChecker {
    /// Estimated bytes kept: the lines, and every completed operation's
    /// record and latency for the end-of-run history check.
    pub fn retained_bytes(&self) -> u64 {
        let lines: usize = self.lines.iter().map(BTreeMap::len).sum();
        crate::sim::budget::entries::<(u32, Line)>(lines)
            + crate::sim::budget::entries::<(u32, Key)>(self.keys.len())
            + self.hist.retained_bytes()
    }

    /// A checker for `nodes` caches, every line starting in I.
    pub fn new(nodes: usize) -> Self {
        CacheChecker {
            lines: vec![BTreeMap::new(); nodes],
            keys: BTreeMap::new(),
            sum: CacheSummary::default(),
            hist: Histories::default(),
        }
    }

    /// The run's cache activity so far.
    pub fn summary(&self) -> CacheSummary {
        CacheSummary {
            latency: self.hist.latencies(),
            ..self.sum.clone()
        }
    }

    /// End of run: is each key's history of completed gets, fetches and
    /// puts linearizable? Keys with a lost or in-doubt write are left out.
    /// `max_steps` bounds the search per key.
    pub fn check_histories(&self, max_steps: u64) -> HistoryCheck {
        self.hist.check(max_steps)
    }

    fn state(&self, node: NodeId, key: u32) -> State {
        self.lines[node]
            .get(&key)
            .map_or(State::Invalid, |l| l.state)
    }

    /// Every node holding `key` in a valid state, for reports.
    fn holders(&self, key: u32) -> Vec<(NodeId, State)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(n, m)| m.get(&key).map(|l| (n, l.state)))
            .collect()
    }

    fn list(holders: &[(NodeId, State)]) -> String {
        let parts: Vec<String> = holders
            .iter()
            .map(|(n, s)| format!("n{}:{}", n + 1, s.name()))
            .collect();
        parts.join(" ")
    }

    /// Online check after one traced event at simulated time `t_ns`; Err on
    /// the first broken invariant. Events other than cache events cost one
    /// match; cache events other than write-backs count only from nodes.
    pub fn observe(&mut self, t_ns: u64, subject: Subject, ev: &TraceEvent) -> Check {
        use TraceEvent::*;
        let node = match (ev, subject) {
            (CacheWriteBack { key, value }, _) => {
                // Memory is written by whoever holds the dirty value.
                self.sum.writebacks += 1;
                self.keys.entry(*key).or_default().memory = Some(*value);
                return Ok(());
            }
            (
                CacheTransition { .. }
                | CacheStart { .. }
                | CacheRead { .. }
                | CacheWrite { .. }
                | CacheFailed { .. }
                | CacheLost { .. }
                | CacheInDoubt { .. }
                | CacheDump { .. },
                Subject::Node(n),
            ) => n,
            _ => return Ok(()),
        };
        if node >= self.lines.len() {
            self.lines.resize_with(node + 1, BTreeMap::new);
        }
        if let CacheRead { hit, .. } | CacheWrite { hit, .. } = ev {
            let second = (t_ns / 1_000_000_000) as usize;
            if self.sum.by_second.len() <= second {
                self.sum.by_second.resize(second + 1, (0, 0));
            }
            let bucket = &mut self.sum.by_second[second];
            bucket.0 += 1;
            bucket.1 += u64::from(*hit);
        }
        match ev {
            CacheTransition {
                key,
                from,
                to,
                cause,
            } => self.on_transition(node, *key, from, to, cause),
            CacheStart { op, key } => {
                self.hist.on_start(t_ns, node, op, *key);
                Ok(())
            }
            CacheRead { key, value, hit } => {
                self.hist.on_read(t_ns, node, *key, *value, *hit);
                self.on_read(node, *key, *value, *hit)
            }
            CacheWrite { key, value, hit } => {
                self.hist.on_write(t_ns, node, *key, *value);
                self.on_write(t_ns, node, *key, *value, *hit)
            }
            CacheFailed { key, .. } => {
                // The history pairing ignores it: see `cache_history`.
                self.sum.failed += 1;
                if let Some(l) = self.lines[node].get_mut(key) {
                    l.entered_m_from = None;
                }
                Ok(())
            }
            CacheLost { key, value } => {
                self.hist.exclude(*key);
                self.on_lost(t_ns, node, *key, *value);
                Ok(())
            }
            CacheInDoubt { key, value } => {
                self.hist.exclude(*key);
                let k = self.keys.entry(*key).or_default();
                if k.latest == Latest::Written(*value) && k.memory != Some(*value) {
                    k.doubt = Some((node, t_ns));
                }
                Ok(())
            }
            CacheDump { lines } => self.on_dump(node, lines),
            _ => Ok(()),
        }
    }

    fn on_transition(
        &mut self,
        node: NodeId,
        key: u32,
        from: &'static str,
        to: &'static str,
        cause: &'static str,
    ) -> Check {
        *self.sum.transitions.entry((from, to, cause)).or_default() += 1;
        let (Some(f), Some(t)) = (parse(from), parse(to)) else {
            return fail(
                FROM_CURRENT,
                vec![node],
                format!(
                    "n{} traced key {key} going from {from:?} to {to:?} ({cause}): not MESI states",
                    node + 1
                ),
            );
        };
        // Replay from the checker's state, so the counts stay exact even
        // when the trace lies about `from`.
        let line = self.lines[node].get(&key).copied();
        let cur = line.map_or(State::Invalid, |l| l.state);
        let k = self.keys.entry(key).or_default();
        k.count(cur, false);
        k.count(t, true);
        let ok = k.single_writer();
        match t {
            State::Invalid => {
                self.lines[node].remove(&key);
            }
            _ => {
                let entered_m_from = match (t, cur) {
                    (State::Modified, State::Modified) => line.and_then(|l| l.entered_m_from),
                    (State::Modified, c) => Some(c),
                    _ => None,
                };
                self.lines[node].insert(
                    key,
                    Line {
                        state: t,
                        entered_m_from,
                    },
                );
            }
        }
        if f != cur {
            return fail(
                FROM_CURRENT,
                vec![node],
                format!(
                    "n{} traced key {key} going from {from} to {to} ({cause}), but its traced transitions left it in {}",
                    node + 1,
                    cur.name()
                ),
            );
        }
        if !ok {
            let holders = self.holders(key);
            return fail(
                SINGLE_WRITER,
                holders.iter().map(|h| h.0).collect(),
                format!(
                    "after n{} took key {key} from {from} to {to} ({cause}) it is held as {}",
                    node + 1,
                    Self::list(&holders)
                ),
            );
        }
        Ok(())
    }

    fn on_read(&mut self, node: NodeId, key: u32, value: Option<u64>, hit: bool) -> Check {
        self.sum.reads += 1;
        self.sum.read_hits += u64::from(hit);
        if hit && self.state(node, key) == State::Invalid {
            return fail(
                HIT_VALID,
                vec![node],
                format!(
                    "n{} traced a read hit on key {key} while its line is I",
                    node + 1
                ),
            );
        }
        let k = self.keys.entry(key).or_default();
        if let Some((n, t)) = k.doubt {
            // The first read settles a value in doubt: memory's means it
            // was lost, the written one means it survived.
            if value == k.memory && value != k.expected() {
                k.latest = Latest::Memory;
                k.lost = Some((n, t));
                k.doubt = None;
                self.sum
                    .lost_writes
                    .push((key, k.last_write.map_or(0, |w| w.2), n, t));
                return Ok(());
            }
            k.doubt = None;
        }
        if value != k.expected() {
            return fail(
                DATA_VALUE,
                vec![node],
                format!(
                    "n{} read key {key} = {}, but {}",
                    node + 1,
                    show(value),
                    k.why()
                ),
            );
        }
        Ok(())
    }

    fn on_write(&mut self, t_ns: u64, node: NodeId, key: u32, value: u64, hit: bool) -> Check {
        self.sum.writes += 1;
        self.sum.write_hits += u64::from(hit);
        let (now, before) = match self.lines[node].get_mut(&key) {
            Some(l) => {
                let before = l.entered_m_from.take().unwrap_or(l.state);
                (l.state, before)
            }
            None => (State::Invalid, State::Invalid),
        };
        let mut err = None;
        if hit == (before == State::Invalid) {
            err = Some(fail(
                HIT_VALID,
                vec![node],
                format!(
                    "n{} traced a write {} on key {key} whose line was {} right before",
                    node + 1,
                    if hit { "hit" } else { "miss" },
                    before.name()
                ),
            ));
        }
        let k = self.keys.entry(key).or_default();
        let others = k.owners + k.sharers - u32::from(now != State::Invalid);
        k.doubt = None;
        k.latest = Latest::Written(value);
        k.last_write = Some((node, t_ns, value));
        k.lost = None;
        if err.is_none() && others > 0 {
            let holders: Vec<_> = self
                .holders(key)
                .into_iter()
                .filter(|h| h.0 != node)
                .collect();
            err = Some(fail(
                SINGLE_WRITER,
                std::iter::once(node)
                    .chain(holders.iter().map(|h| h.0))
                    .collect(),
                format!(
                    "n{}'s write of {value} to key {key} completed while other copies are valid: {}",
                    node + 1,
                    Self::list(&holders)
                ),
            ));
        }
        err.unwrap_or(Ok(()))
    }

    fn on_lost(&mut self, t_ns: u64, node: NodeId, key: u32, value: u64) {
        self.sum.lost_writes.push((key, value, node, t_ns));
        let k = self.keys.entry(key).or_default();
        if k.latest == Latest::Written(value) {
            k.latest = Latest::Memory;
            k.lost = Some((node, t_ns));
        }
    }

    /// A dump lists every valid line at the node: exactly the replay's.
    fn on_dump(&self, node: NodeId, lines: &[(u32, &'static str)]) -> Check {
        let mut valid = 0;
        for &(key, st) in lines {
            let cur = self.state(node, key);
            if parse(st) != Some(cur) {
                return fail(
                    FROM_CURRENT,
                    vec![node],
                    format!(
                        "n{}'s dump lists key {key} in {st}, but its traced transitions left it in {}",
                        node + 1,
                        cur.name()
                    ),
                );
            }
            valid += usize::from(cur != State::Invalid);
        }
        if valid != self.lines[node].len() {
            let listed: BTreeMap<u32, &str> = lines.iter().copied().collect();
            let missing = self.lines[node]
                .iter()
                .find(|(k, _)| !listed.contains_key(k))
                .map_or_else(String::new, |(k, l)| {
                    format!(": key {k} in {} is missing", l.state.name())
                });
            return fail(
                FROM_CURRENT,
                vec![node],
                format!(
                    "n{}'s dump lists {valid} valid lines, but its traced transitions leave {}{missing}",
                    node + 1,
                    self.lines[node].len()
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Each property, fed a hand-made event sequence that breaks it, and the
    //! legal counterpart that must pass.
    use super::*;

    #[test]
    fn the_warm_hit_ratio_covers_the_later_half_of_the_busy_seconds() {
        let mut s = CacheSummary::default();
        assert_eq!(s.warm_hit_ratio(), None);
        // Operations in seconds 1..=4: 1 and 2 are warm-up, 3 and 4 count.
        s.by_second = vec![(0, 0), (10, 0), (10, 5), (10, 8), (10, 9)];
        assert_eq!(s.warm_hit_ratio(), Some((17.0 / 20.0, 3)));
        s.by_second = vec![(4, 1)];
        assert_eq!(s.warm_hit_ratio(), Some((0.25, 0)));
    }

    fn tr(node: usize, key: u32, from: &'static str, to: &'static str) -> (usize, TraceEvent) {
        (
            node,
            TraceEvent::CacheTransition {
                key,
                from,
                to,
                cause: "test",
            },
        )
    }

    fn read(node: usize, key: u32, value: Option<u64>, hit: bool) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheRead { key, value, hit })
    }

    fn write(node: usize, key: u32, value: u64, hit: bool) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheWrite { key, value, hit })
    }

    fn lost(node: usize, key: u32, value: u64) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheLost { key, value })
    }

    fn writeback(node: usize, key: u32, value: u64) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheWriteBack { key, value })
    }

    fn run(c: &mut CacheChecker, events: &[(usize, TraceEvent)]) -> Option<&'static str> {
        events
            .iter()
            .enumerate()
            .find_map(|(i, (n, e))| c.observe(i as u64 * 1_000_000, Subject::Node(*n), e).err())
            .map(|v| v.invariant)
    }

    fn feed(events: &[(usize, TraceEvent)]) -> Option<&'static str> {
        run(&mut CacheChecker::new(3), events)
    }

    #[test]
    fn two_m_holders_are_caught() {
        let evs = [tr(0, 1, "I", "M"), tr(1, 1, "I", "M")];
        assert_eq!(feed(&evs), Some(SINGLE_WRITER));
        let mut c = CacheChecker::new(3);
        let at = |(n, e): &(usize, TraceEvent)| (Subject::Node(*n), e.clone());
        let (s0, e0) = at(&evs[0]);
        let (s1, e1) = at(&evs[1]);
        c.observe(0, s0, &e0).unwrap();
        let v = c.observe(1, s1, &e1).unwrap_err();
        assert_eq!(v.nodes, vec![0, 1]);
        assert!(v.detail.contains("n1:M n2:M"), "{}", v.detail);
        // The legal way: the first owner is invalidated first.
        let evs = [tr(0, 1, "I", "M"), tr(0, 1, "M", "I"), tr(1, 1, "I", "M")];
        assert_eq!(feed(&evs), None);
        // Other keys do not interfere.
        assert_eq!(feed(&[tr(0, 1, "I", "M"), tr(1, 2, "I", "M")]), None);
    }

    #[test]
    fn m_and_s_together_are_caught() {
        assert_eq!(
            feed(&[tr(0, 1, "I", "M"), tr(1, 1, "I", "S")]),
            Some(SINGLE_WRITER)
        );
        assert_eq!(
            feed(&[tr(1, 1, "I", "S"), tr(0, 1, "I", "M")]),
            Some(SINGLE_WRITER)
        );
        // A remote read of M: the owner flushes and drops to S first.
        let evs = [tr(0, 1, "I", "M"), tr(0, 1, "M", "S"), tr(1, 1, "I", "S")];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn e_and_s_together_are_caught() {
        assert_eq!(
            feed(&[tr(0, 1, "I", "E"), tr(1, 1, "I", "S")]),
            Some(SINGLE_WRITER)
        );
        assert_eq!(
            feed(&[tr(0, 1, "I", "E"), tr(1, 1, "I", "E")]),
            Some(SINGLE_WRITER)
        );
        let evs = [tr(0, 1, "I", "E"), tr(0, 1, "E", "S"), tr(1, 1, "I", "S")];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn any_number_of_sharers_is_fine() {
        let evs = [
            tr(0, 1, "I", "S"),
            tr(1, 1, "I", "S"),
            tr(2, 1, "I", "S"),
            // A BusUpgr: the others are invalidated, then the writer owns it.
            tr(0, 1, "S", "I"),
            tr(2, 1, "S", "I"),
            tr(1, 1, "S", "M"),
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn a_transition_from_the_wrong_state_is_caught() {
        // Lines start in I.
        assert_eq!(feed(&[tr(0, 1, "S", "M")]), Some(FROM_CURRENT));
        // A skipped E->M trace shows up at the next transition.
        assert_eq!(
            feed(&[tr(0, 1, "I", "E"), tr(0, 1, "M", "I")]),
            Some(FROM_CURRENT)
        );
        assert_eq!(feed(&[tr(0, 1, "I", "X")]), Some(FROM_CURRENT));
        let evs = [
            tr(0, 1, "I", "E"),
            tr(0, 1, "E", "M"),
            tr(0, 1, "M", "I"),
            tr(0, 1, "I", "S"),
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn a_crash_takes_every_line_to_i() {
        let evs = [
            tr(0, 1, "I", "M"),
            tr(0, 2, "I", "S"),
            tr(0, 1, "M", "I"),
            tr(0, 2, "S", "I"),
            // After the crash the replay holds nothing at n1.
            (0, TraceEvent::CacheDump { lines: vec![] }),
            tr(1, 1, "I", "E"),
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn a_dump_must_match_the_replay() {
        let setup = [tr(0, 1, "I", "E"), tr(0, 2, "I", "S")];
        let dump = |lines: Vec<(u32, &'static str)>| (0, TraceEvent::CacheDump { lines });
        let ok = dump(vec![(1, "E"), (2, "S")]);
        assert_eq!(feed(&[&setup[..], &[ok]].concat()), None);
        let wrong = dump(vec![(1, "M"), (2, "S")]);
        assert_eq!(feed(&[&setup[..], &[wrong]].concat()), Some(FROM_CURRENT));
        let short = dump(vec![(2, "S")]);
        assert_eq!(feed(&[&setup[..], &[short]].concat()), Some(FROM_CURRENT));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let evs = [
            tr(0, 1, "I", "E"),
            read(0, 1, None, false),
            tr(0, 1, "E", "M"),
            write(0, 1, 7, true),
            // n2 reads, n1 flushes 7 to memory and drops to S...
            tr(0, 1, "M", "S"),
            writeback(0, 1, 7),
            tr(1, 1, "I", "S"),
            // ...but n2 returns the value from before the write.
            read(1, 1, None, false),
        ];
        assert_eq!(feed(&evs), Some(DATA_VALUE));
        // A hit that returns an older value than the latest write, too.
        let evs = [
            tr(0, 1, "I", "M"),
            write(0, 1, 7, false),
            write(0, 1, 8, true),
            read(0, 1, Some(7), true),
        ];
        assert_eq!(feed(&evs), Some(DATA_VALUE));
    }

    #[test]
    fn a_read_of_the_latest_write_is_fine() {
        let evs = [
            read(0, 1, None, false),
            tr(0, 1, "I", "M"),
            write(0, 1, 7, false),
            read(0, 1, Some(7), true),
            tr(0, 1, "M", "S"),
            writeback(0, 1, 7),
            tr(1, 1, "I", "S"),
            read(1, 1, Some(7), false),
            // n3 writes: both copies are invalidated first.
            tr(0, 1, "S", "I"),
            tr(1, 1, "S", "I"),
            tr(2, 1, "I", "M"),
            write(2, 1, 9, false),
            tr(2, 1, "M", "I"),
            writeback(2, 1, 9),
            read(0, 1, Some(9), false),
        ];
        assert_eq!(feed(&evs), None);
    }

    /// n1 writes 7 over memory's 3 and crashes holding it in M.
    fn lose_seven() -> Vec<(usize, TraceEvent)> {
        vec![
            tr(0, 1, "I", "M"),
            write(0, 1, 3, false),
            tr(0, 1, "M", "I"),
            writeback(0, 1, 3),
            tr(0, 1, "I", "M"),
            write(0, 1, 7, false),
            lost(0, 1, 7),
            tr(0, 1, "M", "I"),
        ]
    }

    /// Key 1: memory holds 3; n1 writes 9 and hands it to the bus (M -> I),
    /// then crashes before memory confirms it.
    fn doubt_nine() -> Vec<(usize, TraceEvent)> {
        vec![
            tr(0, 1, "I", "M"),
            write(0, 1, 3, false),
            tr(0, 1, "M", "I"),
            writeback(0, 1, 3),
            tr(0, 1, "I", "M"),
            write(0, 1, 9, false),
            tr(0, 1, "M", "I"),
            (0, TraceEvent::CacheInDoubt { key: 1, value: 9 }),
        ]
    }

    #[test]
    fn a_value_in_doubt_is_settled_by_the_first_read() {
        // Either answer is fine at first ...
        let survived = [doubt_nine(), vec![read(1, 1, Some(9), false)]].concat();
        assert_eq!(feed(&survived), None);
        let lost = [doubt_nine(), vec![read(1, 1, Some(3), false)]].concat();
        let mut c = CacheChecker::new(3);
        assert_eq!(run(&mut c, &lost), None);
        assert_eq!(
            c.summary().lost_writes.len(),
            1,
            "a settled loss is recorded"
        );
        // ... but once settled, the other one is stale.
        let flip = [survived, vec![read(2, 1, Some(3), false)]].concat();
        assert_eq!(feed(&flip), Some(DATA_VALUE));
        let flip = [lost, vec![read(2, 1, Some(9), false)]].concat();
        assert_eq!(feed(&flip), Some(DATA_VALUE));
        // A value neither written last nor in memory is never acceptable.
        let other = [doubt_nine(), vec![read(1, 1, Some(5), false)]].concat();
        assert_eq!(feed(&other), Some(DATA_VALUE));
        // A write-back of the doubted value settles it as kept.
        let kept = [
            doubt_nine(),
            vec![writeback(2, 1, 9), read(1, 1, Some(3), false)],
        ]
        .concat();
        assert_eq!(feed(&kept), Some(DATA_VALUE));
    }

    #[test]
    fn a_read_after_a_lost_write_returns_memory() {
        // The lost value is gone: memory's 3 is the key's value again, for
        // every node (the crashed one comes back with every line I).
        let evs = [lose_seven(), vec![read(1, 1, Some(3), false)]].concat();
        let mut c = CacheChecker::new(3);
        assert_eq!(run(&mut c, &evs), None);
        assert_eq!(c.summary().lost_writes, vec![(1, 7, 0, 6_000_000)]);
        let evs = [lose_seven(), vec![read(0, 1, Some(3), false)]].concat();
        assert_eq!(feed(&evs), None);
        // A write-back landing after the crash carries an earlier write that
        // was on its way to memory: memory's value follows it.
        let late = vec![writeback(1, 1, 5), read(1, 1, Some(5), false)];
        assert_eq!(feed(&[lose_seven(), late].concat()), None);
        // A key lost before any write-back reads as never written.
        let evs = [
            tr(0, 2, "I", "M"),
            write(0, 2, 5, false),
            lost(0, 2, 5),
            tr(0, 2, "M", "I"),
            read(1, 2, None, false),
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn reading_a_lost_value_is_caught() {
        // The only copy of 7 was n1's M line, and the crash took it: no node
        // can read 7 afterwards.
        let evs = [lose_seven(), vec![read(1, 1, Some(7), false)]].concat();
        assert_eq!(feed(&evs), Some(DATA_VALUE));
        // A write after the loss is the latest value again.
        let evs = [
            lose_seven(),
            vec![
                tr(1, 1, "I", "M"),
                write(1, 1, 9, false),
                read(1, 1, Some(9), true),
            ],
        ]
        .concat();
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn losing_an_older_dirty_value_is_recorded_and_keeps_the_latest() {
        let evs = [
            tr(0, 1, "I", "M"),
            write(0, 1, 7, false),
            tr(0, 1, "M", "I"),
            tr(1, 1, "I", "M"),
            write(1, 1, 9, false),
            lost(0, 1, 7),
            read(1, 1, Some(9), true),
        ];
        let mut c = CacheChecker::new(3);
        assert_eq!(run(&mut c, &evs), None);
        assert_eq!(c.summary().lost_writes, vec![(1, 7, 0, 5_000_000)]);
    }

    #[test]
    fn a_hit_read_in_i_is_caught() {
        assert_eq!(feed(&[read(0, 1, None, true)]), Some(HIT_VALID));
        let evs = [
            tr(0, 1, "I", "S"),
            tr(0, 1, "S", "I"),
            read(0, 1, None, true),
        ];
        assert_eq!(feed(&evs), Some(HIT_VALID));
        for st in ["M", "E", "S"] {
            assert_eq!(feed(&[tr(0, 1, "I", st), read(0, 1, None, true)]), None);
        }
    }

    #[test]
    fn write_hits_need_a_valid_line_and_misses_an_invalid_one() {
        // A hit in M, E (silent upgrade) or S (BusUpgr, a hit by design).
        let hits = [
            vec![
                tr(0, 1, "I", "M"),
                write(0, 1, 1, false),
                write(0, 1, 2, true),
            ],
            vec![tr(0, 1, "I", "E"), tr(0, 1, "E", "M"), write(0, 1, 1, true)],
            vec![tr(0, 1, "I", "S"), tr(0, 1, "S", "M"), write(0, 1, 1, true)],
        ];
        for evs in &hits {
            assert_eq!(feed(evs), None);
        }
        // A miss claimed a hit, and a hit claimed a miss.
        assert_eq!(
            feed(&[tr(0, 1, "I", "M"), write(0, 1, 1, true)]),
            Some(HIT_VALID)
        );
        assert_eq!(
            feed(&[
                tr(0, 1, "I", "S"),
                tr(0, 1, "S", "M"),
                write(0, 1, 1, false)
            ]),
            Some(HIT_VALID)
        );
        // An S copy invalidated before the write won the bus is a miss.
        let raced = [
            tr(0, 1, "I", "S"),
            tr(0, 1, "S", "I"),
            tr(0, 1, "I", "M"),
            write(0, 1, 1, false),
        ];
        assert_eq!(feed(&raced), None);
    }

    #[test]
    fn a_write_completing_beside_another_copy_is_caught() {
        // n2's S copy was never invalidated (its trace is the one missing).
        let evs = [tr(1, 1, "I", "S"), write(0, 1, 1, false)];
        assert_eq!(feed(&evs), Some(SINGLE_WRITER));
    }

    #[test]
    fn other_events_and_subjects_are_ignored() {
        let mut c = CacheChecker::new(1);
        assert!(
            c.observe(0, Subject::Node(0), &TraceEvent::FaultCrash)
                .is_ok()
        );
        let r = TraceEvent::CacheRead {
            key: 1,
            value: Some(5),
            hit: true,
        };
        assert!(c.observe(0, Subject::Net, &r).is_ok());
        assert_eq!(c.summary(), CacheSummary::default());
        // A node beyond the count given to `new` still gets a cache.
        let t = TraceEvent::CacheTransition {
            key: 1,
            from: "I",
            to: "E",
            cause: "PrRd",
        };
        assert!(c.observe(0, Subject::Node(4), &t).is_ok());
    }

    fn start(node: usize, op: &'static str, key: u32) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheStart { op, key })
    }

    fn failed(
        node: usize,
        op: &'static str,
        key: u32,
        reason: &'static str,
    ) -> (usize, TraceEvent) {
        (node, TraceEvent::CacheFailed { op, key, reason })
    }

    #[test]
    fn histories_pair_starts_with_completions_and_skip_failures() {
        use crate::check::linearizability::Verdict;
        let evs = [
            // n1's put gives up: nothing changed, so it is left out.
            start(0, "put", 1),
            failed(0, "put", 1, "bus unreachable: no grant in time"),
            start(0, "get", 1),
            tr(0, 1, "I", "E"),
            read(0, 1, None, false),
            // n2's get is in progress when an identical get is refused:
            // that failure has no start, and n2's get still completes.
            start(1, "get", 1),
            failed(1, "get", 1, "too many operations waiting"),
            tr(0, 1, "E", "S"),
            tr(1, 1, "I", "S"),
            read(1, 1, None, false),
            // n3 writes 5, and n1 reads it after the write completed.
            start(2, "put", 1),
            tr(0, 1, "S", "I"),
            tr(1, 1, "S", "I"),
            tr(2, 1, "I", "M"),
            write(2, 1, 5, false),
            start(0, "get", 1),
            tr(2, 1, "M", "S"),
            writeback(2, 1, 5),
            tr(0, 1, "I", "S"),
            read(0, 1, Some(5), false),
            // A read hit (a fetch) in S.
            start(2, "fetch", 1),
            read(2, 1, Some(5), true),
        ];
        let mut c = CacheChecker::new(3);
        assert_eq!(run(&mut c, &evs), None);
        let h = c.check_histories(1_000_000);
        assert_eq!(h.verdict, Verdict::Linearizable);
        assert_eq!((h.keys, h.ops, h.unfinished, h.excluded_keys), (1, 5, 1, 0));
        let l = c.summary().latency;
        assert_eq!((l.read.count, l.read_hit.count, l.write.count), (4, 1, 1));
        // Events are 1 ms apart: n2's get took 4 ms, n3's put 4 ms, the hit 1.
        assert_eq!(
            (l.read.max_ns, l.write.max_ns, l.read_hit.max_ns),
            (4_000_000, 4_000_000, 1_000_000)
        );
    }

    #[test]
    fn a_lost_key_leaves_the_history_check() {
        use crate::check::linearizability::Verdict;
        let evs = [
            start(0, "put", 1),
            tr(0, 1, "I", "M"),
            write(0, 1, 7, false),
            lost(0, 1, 7),
            tr(0, 1, "M", "I"),
            start(1, "get", 1),
            tr(1, 1, "I", "E"),
            read(1, 1, None, false),
        ];
        let mut c = CacheChecker::new(3);
        assert_eq!(run(&mut c, &evs), None);
        let h = c.check_histories(1_000_000);
        assert_eq!(h.verdict, Verdict::Linearizable);
        assert_eq!(
            (h.keys, h.ops, h.excluded_keys, h.excluded_ops),
            (0, 0, 1, 2)
        );
    }

    #[test]
    fn summary_counts_and_hit_ratio() {
        assert_eq!(CacheSummary::default().hit_ratio(), 0.0);
        let evs = [
            tr(0, 1, "I", "E"),
            read(0, 1, None, false),
            read(0, 1, None, true),
            tr(0, 1, "E", "M"),
            write(0, 1, 4, true),
            (
                1,
                TraceEvent::CacheFailed {
                    op: "read",
                    key: 1,
                    reason: "timeout",
                },
            ),
            tr(0, 1, "M", "I"),
            writeback(0, 1, 4),
            tr(1, 1, "I", "M"),
            write(1, 1, 6, false),
        ];
        let mut c = CacheChecker::new(2);
        assert_eq!(run(&mut c, &evs), None);
        let s = c.summary();
        assert_eq!((s.reads, s.read_hits, s.writes, s.write_hits), (2, 1, 2, 1));
        assert_eq!((s.failed, s.writebacks), (1, 1));
        assert!(s.lost_writes.is_empty());
        assert_eq!(s.transitions.get(&("I", "E", "test")), Some(&1));
        assert_eq!(s.transitions.get(&("I", "M", "test")), Some(&1));
        assert_eq!(s.transitions.values().sum::<u64>(), 4);
        assert_eq!(s.hit_ratio(), 0.5);
    }
}
