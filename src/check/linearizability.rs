//! Offline linearizability checker for recorded histories.
//!
//! The algorithm is the one used by porcupine (Anish Athalye): Wing & Gong's
//! search with Lowe's memoization (the "WGL" algorithm). The call and return
//! events are put in one doubly-linked list sorted by time, and a depth-first
//! search repeatedly picks an operation whose call precedes the first remaining
//! return ("could be linearized next"), applies it to the sequential model and
//! *lifts* its call and return out of the list. Reaching a return entry means the
//! operation owning it was not linearized in time, so the search backtracks.
//! A cache of (set of linearized operations, model state) prunes configurations
//! that were already explored: two search paths that linearized the same set of
//! operations and reached the same state have identical futures. The set is
//! kept as a 128-bit Zobrist hash (the XOR of a fixed random key per
//! operation), updated in O(1) per step, so a cache entry is 16 bytes plus the
//! state however long the history, and nothing is copied before the lookup.
//!
//! Histories of a register whose written values are all unique do not need
//! this search at all: `unique_register.rs` decides them in O(n log n), and
//! the client history check uses it where it applies.
//!
//! Timestamps: events are ordered by time; at equal time calls come before
//! returns, so an operation returning at `t` and another called at `t` count as
//! concurrent. That is the conservative choice (it never invents a real-time
//! order the recorder did not observe), and it is what porcupine does.
//!
//! The search is deterministic: the same input gives the same verdict and the
//! same counterexample, because the event order has total tie-breaking and the
//! cache (a fixed-hash set) is only queried for membership, never iterated.

use std::collections::BTreeMap;
use std::collections::HashSet; // determinism-ok: membership only, never iterated
use std::fmt::{self, Debug, Display};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A sequential specification that histories are checked against.
pub trait Model {
    /// The model's state; hashed and compared to prune the search.
    type State: Clone + Eq + Hash + Debug;
    /// An operation's argument, as recorded at its call.
    type Input: Clone + Debug;
    /// An operation's result, as recorded at its return.
    type Output: Clone + Debug;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after applying `input` that returned `output`, or None if that output is impossible in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;
}

/// One operation of a history: who issued it, what it did, and when.
///
/// `ret: None` means the operation never returned (outcome unknown, Jepsen
/// `:info`): it may take effect at any point after `call`, or never be observed.
/// It is treated as returning at +infinity, as porcupine does, so the search can
/// place it anywhere after its call, including after every other operation
/// (which is how "it never happened" is expressed). Its `output` should be the
/// model's "unknown" output so the model accepts it in any state. A `ret`
/// earlier than `call` is treated as equal to `call` rather than rejected, so a
/// clock glitch cannot make the checker panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The issuing client or process; reported in counterexamples only.
    pub client: u64,
    /// The operation and its arguments.
    pub input: I,
    /// The observed result.
    pub output: O,
    /// Time of the call (simulated ns, line number, ...).
    pub call: u64,
    /// Time of the return, or None if the operation never returned.
    pub ret: Option<u64>,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some linearization of the whole history satisfies the model.
    Linearizable,
    /// No linearization exists; the counterexample shows where the search got stuck.
    NotLinearizable(Box<Counterexample>),
    /// The step budget ran out before the search finished.
    Unknown,
}

/// A type-erased operation for counterexamples (inputs and outputs via Debug).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// Position of the operation in the slice or Vec given to the checker.
    pub index: usize,
    /// The issuing client.
    pub client: u64,
    /// The input, formatted with Debug.
    pub input: String,
    /// The output, formatted with Debug.
    pub output: String,
    /// Call time.
    pub call: u64,
    /// Return time, or None if the operation never returned.
    pub ret: Option<u64>,
}

/// Why a history is not linearizable, in terms a person can follow.
///
/// Among all partial linearizations the search built, `prefix` is the longest
/// (the first one found of that length). After it, `blocking` is the earliest
/// return not yet accounted for, so one of the operations called before that
/// return (`stuck`, which includes `blocking`) has to come next, and none can:
/// each either produces an output the model rejects in `state`, or leads only
/// to dead ends already explored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The partition key formatted with Debug, or None for an unpartitioned check.
    pub partition: Option<String>,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<OpRecord>,
    /// The model state after `prefix`, formatted with Debug.
    pub state: String,
    /// The operation whose return closes the window in which the next operation must fall.
    pub blocking: OpRecord,
    /// The operations that could be linearized next by real-time order, none of which can.
    pub stuck: Vec<OpRecord>,
    /// Set when the verdict came from a rule rather than from the search
    /// (which ran out of budget): the rule broken. `stuck` then lists the
    /// operations that break it, and `prefix` is empty.
    pub rule: Option<String>,
}

impl Counterexample {
    /// A counterexample that names a broken rule and the operations
    /// (position in the checked history, operation) that break it.
    pub fn of_rule<I: Debug, O: Debug>(
        partition: String,
        rule: String,
        ops: impl IntoIterator<Item = (usize, Operation<I, O>)>,
    ) -> Self {
        let stuck: Vec<OpRecord> = ops
            .into_iter()
            .map(|(i, op)| OpRecord::of(i, &op))
            .collect();
        Counterexample {
            partition: Some(partition),
            prefix: Vec::new(),
            state: String::new(),
            blocking: stuck.first().cloned().unwrap_or(OpRecord {
                index: 0,
                client: 0,
                input: String::new(),
                output: String::new(),
                call: 0,
                ret: None,
            }),
            stuck,
            rule: Some(rule),
        }
    }
}

impl Display for OpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} client {}: {} -> {} [call {}, ",
            self.index, self.client, self.input, self.output, self.call
        )?;
        match self.ret {
            Some(ret) => write!(f, "ret {ret}]"),
            None => write!(f, "never returned]"),
        }
    }
}

/// How many prefix operations `{}` shows; `{:#}` shows them all.
const SHOWN_PREFIX: usize = 20;

impl Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.partition {
            Some(key) => writeln!(f, "not linearizable: partition {key}")?,
            None => writeln!(f, "not linearizable")?,
        }
        if let Some(rule) = &self.rule {
            writeln!(f, "{rule}:")?;
            for op in &self.stuck {
                writeln!(f, "        {op}")?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "longest linearizable prefix: {} operations, ending in state {}",
            self.prefix.len(),
            self.state
        )?;
        // Long prefixes drown the interesting end; the alternate flag asks for everything.
        let skip = if f.alternate() {
            0
        } else {
            self.prefix.len().saturating_sub(SHOWN_PREFIX)
        };
        if skip > 0 {
            writeln!(f, "  ... {skip} earlier operations ({{:#}} shows all)")?;
        }
        for (i, op) in self.prefix.iter().enumerate().skip(skip) {
            writeln!(f, "  {:>4}. {op}", i + 1)?;
        }
        writeln!(
            f,
            "then {} must be linearized before it returns, but none of these can come next:",
            self.blocking.index_label()
        )?;
        for op in &self.stuck {
            writeln!(f, "        {op}")?;
        }
        Ok(())
    }
}

impl OpRecord {
    fn index_label(&self) -> String {
        format!("#{}", self.index)
    }

    fn of<I: Debug, O: Debug>(index: usize, op: &Operation<I, O>) -> Self {
        OpRecord {
            index,
            client: op.client,
            input: format!("{:?}", op.input),
            output: format!("{:?}", op.output),
            call: op.call,
            ret: op.ret,
        }
    }
}

/// Checks a whole history as one object.
///
/// `max_steps` bounds the search (each step is one attempt to linearize an
/// operation or one backtrack); when it runs out the verdict is `Unknown`.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    let indexed = ops.iter().enumerate().collect();
    Search::new(model, indexed, None)
        .run(model, max_steps)
        .unwrap_or(Verdict::Unknown)
}

/// Checks each partition (e.g. each key) independently; the counterexample names the key.
///
/// Linearizability is compositional (P-compositionality, Herlihy & Wing), so a
/// history of independent objects is linearizable iff each object's history
/// is, and checking them apart is exponentially cheaper. `max_steps` applies to
/// each partition separately.
///
/// Proving a partition non-linearizable needs an exhaustive search, which for a
/// heavily concurrent partition can be astronomically long while another
/// partition fails within a few steps. So, like porcupine (which checks
/// partitions in parallel and stops at the first failure), the partitions are
/// searched in interleaved slices: round-robin in key order, each round
/// doubling the number of steps every unfinished partition may have taken.
/// The schedule is fixed, so the verdict and counterexample are deterministic;
/// the reported partition is the first to fail under that schedule, not
/// necessarily the smallest failing key. If none fails and some exhaust
/// `max_steps`, the verdict is `Unknown`.
pub fn check_partitioned<M: Model, K: Ord + Clone + Debug>(
    model: &M,
    ops: Vec<(K, Op<M>)>,
    max_steps: u64,
) -> Verdict {
    // An ordered map: partitions are visited in key order, so the schedule is deterministic.
    let mut partitions: BTreeMap<K, Vec<(usize, &Op<M>)>> = BTreeMap::new();
    for (index, (key, op)) in ops.iter().enumerate() {
        partitions.entry(key.clone()).or_default().push((index, op));
    }
    let mut searches: Vec<Search<'_, M>> = partitions
        .into_iter()
        .map(|(key, part)| Search::new(model, part, Some(format!("{key:?}"))))
        .collect();
    let mut slice: u64 = FIRST_SLICE;
    let mut exhausted = false;
    while !searches.is_empty() {
        let limit = slice.min(max_steps);
        let mut unfinished = Vec::with_capacity(searches.len());
        for mut search in searches {
            match search.run(model, limit) {
                Some(Verdict::Linearizable) => {} // done: drop its cache now
                Some(verdict) => return verdict,
                None if limit >= max_steps => exhausted = true,
                None => unfinished.push(search),
            }
        }
        searches = unfinished;
        slice = slice.saturating_mul(2);
    }
    if exhausted {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    }
}

/// An operation of model `M` (an alias keeps signatures readable; it expands in docs).
type Op<M> = Operation<<M as Model>::Input, <M as Model>::Output>;

/// Steps each partition gets in the first round of `check_partitioned`.
const FIRST_SLICE: u64 = 1 << 12;

// ---------------------------------------------------------------------------
// Search internals.

/// Marks "no entry" in the linked list.
const NIL: usize = usize::MAX;
/// Index of the list's head sentinel.
const HEAD: usize = 0;

/// Random 128-bit keys, one per operation, for Zobrist hashing of the set of
/// linearized operations: the set's hash is the XOR of its members' keys,
/// updated in O(1) as an operation is linearized or undone.
///
/// The keys come from a fixed seed (splitmix64), so the search is the same
/// on every run. Two different sets share a hash with probability 2^-128
/// per pair; a search exploring a billion configurations has odds of about
/// 10^-20 of ever confusing two, which would prune one branch wrongly.
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut x: u64 = 0x5eed_0fd1_575e_4c00;
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}

/// A small multiplicative hasher (FxHash-style) with a final mix.
///
/// The default SipHash is randomly seeded and slow for this workload; the cache
/// key is trusted data, so a cheap fixed hash is enough. The final mix spreads
/// entropy into the low bits that pick the hash table bucket.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(buf));
        }
        // Distinguishes "ab" + "c" from "a" + "bc".
        self.add(bytes.len() as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        // splitmix64 finaliser.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A configuration already explored: the Zobrist hash of the set of
/// linearized operations, and the state they led to. 16 bytes plus the state,
/// whatever the length of the history.
#[derive(PartialEq, Eq, Hash)]
struct CacheKey<S> {
    linearized: u128,
    state: S,
}

type Cache<S> = HashSet<CacheKey<S>, BuildHasherDefault<FastHasher>>; // determinism-ok: membership only, never iterated

/// The call/return events of one partition as an index-based doubly-linked list.
///
/// Entry 0 is the head sentinel; entries `1..=2n` are the events in time order.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation (position in the partition) each entry belongs to.
    op: Vec<usize>,
    /// For a call entry, its return entry; NIL for return entries and the head.
    matching: Vec<usize>,
}

impl Events {
    fn new<I, O>(ops: &[(usize, &Operation<I, O>)]) -> Self {
        // Sort key: (time, kind, op). Pending returns get time 2^64, after every
        // finite event. Calls (kind 0) precede returns (kind 1) at equal time so
        // touching operations count as concurrent. The op position breaks the
        // remaining ties, which makes the list order, hence the search, deterministic.
        let mut keyed: Vec<(u128, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (id, (_, op)) in ops.iter().enumerate() {
            keyed.push((u128::from(op.call), 0, id));
            let ret = match op.ret {
                Some(ret) => u128::from(ret.max(op.call)),
                None => u128::from(u64::MAX) + 1,
            };
            keyed.push((ret, 1, id));
        }
        keyed.sort_unstable();
        let len = keyed.len() + 1;
        let mut events = Events {
            next: (1..=len).map(|i| if i == len { NIL } else { i }).collect(),
            prev: (0..len).map(|i| if i == 0 { NIL } else { i - 1 }).collect(),
            op: vec![NIL; len],
            matching: vec![NIL; len],
        };
        let mut call_entry = vec![NIL; ops.len()];
        for (pos, &(_, kind, id)) in keyed.iter().enumerate() {
            let entry = pos + 1;
            events.op[entry] = id;
            if kind == 0 {
                call_entry[id] = entry;
            } else {
                // The call sorts strictly before its own return, so it is already known.
                events.matching[call_entry[id]] = entry;
            }
        }
        events
    }

    /// Removes a call entry and its return from the list.
    fn lift(&mut self, call: usize) {
        let ret = self.matching[call];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Exactly undoes `lift`, in reverse order.
    fn unlift(&mut self, call: usize) {
        let ret = self.matching[call];
        self.relink(ret);
        self.relink(call);
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }
}

/// Where the deepest dead end was: the ops linearized so far, the state, and the list position.
struct DeadEnd<S> {
    prefix: Vec<usize>,
    state: S,
    blocking: usize,
    stuck: Vec<usize>,
}

/// A depth-first search over one partition that can be paused and resumed.
struct Search<'a, M: Model> {
    ops: Vec<(usize, &'a Op<M>)>,
    partition: Option<String>,
    events: Events,
    /// Zobrist key of each operation, and the hash of the linearized set.
    keys: Vec<u128>,
    linearized: u128,
    cache: Cache<M::State>,
    /// The DFS stack: each linearized call entry with the state before it.
    calls: Vec<(usize, M::State)>,
    deepest: Option<DeadEnd<M::State>>,
    state: M::State,
    entry: usize,
    steps: u64,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &M, ops: Vec<(usize, &'a Op<M>)>, partition: Option<String>) -> Self {
        let events = Events::new(&ops);
        let entry = events.next[HEAD];
        Search {
            keys: zobrist_keys(ops.len()),
            linearized: 0,
            ops,
            partition,
            events,
            cache: Cache::default(),
            calls: Vec::new(),
            deepest: None,
            state: model.init(),
            entry,
            steps: 0,
        }
    }

    /// Searches until done or until `steps` reaches `limit`; None means paused, not finished.
    fn run(&mut self, model: &M, limit: u64) -> Option<Verdict> {
        let ev = &mut self.events;
        while ev.next[HEAD] != NIL {
            if self.steps >= limit {
                return None;
            }
            self.steps += 1;
            let entry = self.entry;
            // `entry == NIL` cannot happen (the list always ends with a return), but
            // treating it as a dead end keeps the search total instead of panicking.
            let is_call = entry != NIL && ev.matching[entry] != NIL;
            if is_call {
                let id = ev.op[entry];
                let op = self.ops[id].1;
                let linearized = self.linearized ^ self.keys[id];
                let cache = &mut self.cache;
                let accepted = model
                    .step(&self.state, &op.input, &op.output)
                    .and_then(|next| {
                        let key = CacheKey {
                            linearized,
                            state: next.clone(),
                        };
                        // insert() is false when this configuration was explored before.
                        cache.insert(key).then_some(next)
                    });
                match accepted {
                    Some(next) => {
                        let before = std::mem::replace(&mut self.state, next);
                        self.calls.push((entry, before));
                        self.linearized = linearized;
                        ev.lift(entry);
                        self.entry = ev.next[HEAD];
                    }
                    None => self.entry = ev.next[entry],
                }
            } else {
                // A return of an unlinearized op: this branch is dead. Remember the
                // deepest dead end (strictly deeper only, so the first one wins).
                let depth = self.calls.len();
                if self.deepest.as_ref().is_none_or(|d| depth > d.prefix.len()) {
                    self.deepest = Some(dead_end(ev, &self.calls, &self.state, entry));
                }
                let Some((top, before)) = self.calls.pop() else {
                    return Some(self.counterexample());
                };
                self.state = before;
                self.linearized ^= self.keys[ev.op[top]];
                ev.unlift(top);
                self.entry = ev.next[top];
            }
        }
        Some(Verdict::Linearizable)
    }

    fn counterexample(&self) -> Verdict {
        // The loop records a dead end before it can run out of stack, so this is always Some.
        let Some(dead) = &self.deepest else {
            return Verdict::Unknown;
        };
        let record = |id: usize| OpRecord::of(self.ops[id].0, self.ops[id].1);
        Verdict::NotLinearizable(Box::new(Counterexample {
            partition: self.partition.clone(),
            prefix: dead.prefix.iter().map(|&id| record(id)).collect(),
            state: format!("{:?}", dead.state),
            blocking: record(dead.blocking),
            stuck: dead.stuck.iter().map(|&id| record(id)).collect(),
            rule: None,
        }))
    }
}

fn dead_end<S: Clone>(
    events: &Events,
    calls: &[(usize, S)],
    state: &S,
    blocking_entry: usize,
) -> DeadEnd<S> {
    // The candidates are the call entries before the first remaining return.
    let mut stuck = Vec::new();
    let mut e = events.next[HEAD];
    while e != NIL && e != blocking_entry && events.matching[e] != NIL {
        stuck.push(events.op[e]);
        e = events.next[e];
    }
    DeadEnd {
        prefix: calls.iter().map(|(e, _)| events.op[*e]).collect(),
        state: state.clone(),
        blocking: if blocking_entry == NIL {
            stuck.last().copied().unwrap_or(0)
        } else {
            events.op[blocking_entry]
        },
        stuck,
    }
}

// ---------------------------------------------------------------------------
// Models.

/// Operations on a single compare-and-set register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// Read the current value.
    Read,
    /// Overwrite the value.
    Write(i64),
    /// Compare-and-set: `Cas(old, new)` sets `new` iff the value is `old`.
    Cas(i64, i64),
}

/// Observed results of register operations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// A read returned this value (None = never written).
    ReadOk(Option<i64>),
    /// A write completed.
    WriteOk,
    /// A cas completed, succeeding or definitely not.
    CasOk(bool),
    /// Outcome unknown (Jepsen `:info`); the op may or may not have taken effect.
    Unknown,
}

/// A single compare-and-set register whose initial value is None (nil).
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State> {
        use RegisterInput as I;
        use RegisterOutput as O;
        match (input, output) {
            (I::Read, O::ReadOk(v)) => (v == state).then_some(*state),
            // An unknown read constrains nothing.
            (I::Read, O::Unknown) => Some(*state),
            // An unknown write is a write that took effect where it is linearized;
            // "never took effect" is the linearization at the very end.
            (I::Write(v), O::WriteOk | O::Unknown) => Some(Some(*v)),
            (I::Cas(old, new), O::CasOk(true)) => (*state == Some(*old)).then_some(Some(*new)),
            // A failed cas left the value unchanged and was only legal if the compare failed.
            (I::Cas(old, _), O::CasOk(false)) => (*state != Some(*old)).then_some(*state),
            // An unknown cas behaves as a cas: its effect is determined by the state.
            (I::Cas(old, new), O::Unknown) => Some(if *state == Some(*old) {
                Some(*new)
            } else {
                *state
            }),
            // An output of the wrong kind for the input can never happen.
            _ => None,
        }
    }
}

/// Operations on one key of a key-value store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the key's value.
    Get,
    /// Replace the key's value.
    Put(String),
    /// Append to the key's value.
    Append(String),
}

/// Observed results of key-value operations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get returned this value ("" if the key was never written).
    Get(String),
    /// A put or append completed.
    Ok,
    /// Outcome unknown (Jepsen `:info`); the op may or may not have taken effect.
    Unknown,
}

/// One key's value as a string, initially ""; use with `check_partitioned` keyed by key.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        String::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State> {
        match (input, output) {
            (KvInput::Get, KvOutput::Get(v)) => (v == state).then(|| state.clone()),
            (KvInput::Get, KvOutput::Unknown) => Some(state.clone()),
            (KvInput::Put(v), KvOutput::Ok | KvOutput::Unknown) => Some(v.clone()),
            (KvInput::Append(v), KvOutput::Ok | KvOutput::Unknown) => Some(format!("{state}{v}")),
            _ => None,
        }
    }
}
