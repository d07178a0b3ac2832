//! Scenario files: TOML in, validated [`Scenario`] out, and back again.
//!
//! Parsing happens in two passes. serde turns the text into `Raw*` structs
//! that keep every value's byte span (`toml::Spanned`) and reject unknown keys;
//! `resolve` then checks meaning (ranges, node names, timeline sanity) and
//! builds the model. Every error points at the offending value as
//! `path:line:col`. The format is documented in `docs/scenarios.md`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use toml::Spanned;

use super::model::{
    Action, CacheConfig, CacheOp, CacheProtocol, CacheWorkload, ClientOp, ClockConfig,
    DEFAULT_LINEARIZABILITY_STEPS, Expectations, Fsync, LinkConfig, LockConfig, LockWorkload,
    Nanos, NetworkConfig, QueueConfig, QueueWorkload, RaftConfig, RedisConfig, Scenario, Step,
    Target, Workload,
};
use crate::bugs::Bugs;

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
/// No duration, latency, offset or time in a file may exceed this; it keeps
/// the simulator's time arithmetic far from overflow.
const MAX_DURATION_NS: u64 = 3_600 * NS_PER_S;
const MAX_NODES: i64 = 15;
pub(crate) const MAX_DRIFT_PPM: i64 = 100_000;
const MAX_RATE: f64 = 100_000.0;
/// Least rate of generated operations: one every 1000 s on average, already
/// less than one a run of the longest duration. Below it the gaps grow
/// towards the end of u64 time, where sums with clock times would overflow.
pub(crate) const MIN_RATE: f64 = 0.001;
const MAX_CLIENTS: i64 = 1_000;
const MAX_KEYS: i64 = 100_000;
const MAX_CLIENT_ID: i64 = 1_000;
const MAX_REENTRY_LIMIT: i64 = 1_000;
const MAX_SHARDS: i64 = 16;
const MAX_VNODES: i64 = 1_024;
const MAX_QUEUES: usize = 8;
const MAX_PARTITIONS: i64 = 256;
const MAX_ATTEMPTS: i64 = 100;
/// Most locks the lock clients spread over: every round draws its locks by
/// shuffling all of them (a draw that shipped traces pin), so this bounds
/// each round's time and memory; at 1000 clients a run is under 2x slower
/// than with a few locks.
pub(crate) const MAX_LOCKS: i64 = 100_000;
/// Most messages in one produce or consume request.
const MAX_BATCH: i64 = 1_000;
const MAX_ORDERING_KEYS: i64 = 1_000_000;
/// Most lines in one node's cache.
const MAX_CACHE_CAPACITY: i64 = 100_000;
/// Most keys the generated cache ops spread over.
const MAX_CACHE_KEYS: i64 = 1_000_000;
/// Largest Zipf exponent for the cache ops' key popularity.
const MAX_ZIPF: f64 = 10.0;
/// Shortest `cache.timeout`: the bus spreads its retries over the timeout,
/// and below this they would come faster than any message can travel, so
/// every operation fails and the run only burns events.
pub(crate) const MIN_CACHE_TIMEOUT_NS: u64 = 1_000;
/// `lock_clients.stop`, `queue_clients.stop` and `cache_clients.stop` word
/// for "no stop": rounds (or messages, or cache ops) keep starting until the
/// run ends (`stop_ns == u64::MAX`).
const STOP_AT_END: &str = "end";
const ACTIONS: &str = "crash, restart, pause, resume, partition, partition_oneway, heal, network, clock, client, add_shard, remove_shard, cache";
/// Where a shard name is allowed, for the error when one is used elsewhere.
const SHARD_STEPS: &str =
    "crash, restart, pause, resume, partition, partition_oneway, add_shard and remove_shard";
/// `redis.persistence` values, in the order error messages list them.
const PERSISTENCE: [Fsync; 3] = [Fsync::Always, Fsync::EverySec, Fsync::Off];
/// `cache.protocol` values, in the order error messages list them.
const CACHE_PROTOCOLS: [CacheProtocol; 2] = [CacheProtocol::Bus, CacheProtocol::Directory];
/// The `op` words of a `cache` step, in the order error messages list them.
const CACHE_OPS: [&str; 5] = ["get", "put", "invalidate", "fetch", "dump"];

// ---------------------------------------------------------------------------
// Public API

/// A problem in a scenario file, located at the offending value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// File path as given by the caller.
    pub path: String,
    /// 1-based line, or 0 when the error has no location (e.g. unreadable file).
    pub line: usize,
    /// 1-based column in characters, or 0 when there is no location.
    pub col: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.col, self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Parses and validates scenario TOML; `path` is only used in error messages.
pub fn parse_scenario(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
    let src = Source::new(text, path);
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => src.err(span, message),
            None => src.err_nowhere(message),
        }
    })?;
    resolve(&src, raw)
}

/// Reads and parses a scenario file; read failures are reported as errors too.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    let shown = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match crate::input::utf8_text(bytes) {
            Ok(text) => parse_scenario(&text, &shown),
            Err((line, col)) => Err(ScenarioError {
                path: shown,
                line,
                col,
                message: crate::input::NOT_UTF8.to_owned(),
            }),
        },
        Err(e) => Err(ScenarioError {
            path: shown,
            line: 0,
            col: 0,
            message: format!("cannot read scenario file: {e}"),
        }),
    }
}

/// Parses an unsigned duration such as `"150ms"`, `"1.5s"` or `"2m"` into nanoseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    if let Some(rest) = text.strip_prefix('-') {
        // A well-formed negative gets its own message; junk gets the format hint.
        magnitude(rest, text)?;
        return Err(format!(
            "bad duration \"{text}\": must not be negative here"
        ));
    }
    let ns = magnitude(text.strip_prefix('+').unwrap_or(text), text)?;
    u64::try_from(ns).map_err(|_| too_large(text))
}

/// Parses a duration that may be negative, such as `"-20ms"`, into nanoseconds.
pub fn parse_signed_duration(text: &str) -> Result<i64, String> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let ns = i128::try_from(magnitude(body, text)?).map_err(|_| too_large(text))?;
    i64::try_from(if negative { -ns } else { ns }).map_err(|_| too_large(text))
}

/// Formats nanoseconds in the shortest exact form, e.g. `"150ms"`, `"1.5s"`, `"1m"`.
pub fn format_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    // Only units the value reaches, so "300ms" rather than "0.3s"; among those
    // the shortest text wins, and on equal length a whole number beats a fraction.
    let mut best: Option<((usize, bool), String)> = None;
    for &(unit, unit_ns) in UNITS.iter().rev().filter(|(_, u)| *u <= ns) {
        let Some(text) = exact_in_unit(ns, unit, unit_ns) else {
            continue;
        };
        let key = (text.len(), text.contains('.'));
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, text));
        }
    }
    // Nanoseconds always give an exact form, so `best` is set.
    best.map_or_else(|| format!("{ns}ns"), |(_, text)| text)
}

/// Writes a self-contained scenario file that parses back to an equal
/// `Scenario` (step lines aside); used to save failing runs as editable files.
pub fn scenario_to_toml(s: &Scenario) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_scenario(&mut out, s);
    out
}

fn write_scenario(out: &mut String, s: &Scenario) -> fmt::Result {
    writeln!(out, "name = {}", quote(&s.name))?;
    writeln!(out, "description = {}", quote(&s.description))?;
    writeln!(out, "nodes = {}", s.nodes)?;
    writeln!(out, "duration = {}", quote(&format_duration(s.duration_ns)))?;
    writeln!(out, "seed = {}", u64_value(s.seed))?;
    let bugs = s.bugs.enabled_names();
    if !bugs.is_empty() {
        writeln!(out, "bugs = [{}]", join(bugs.iter().map(|b| quote(b))))?;
    }

    writeln!(out, "\n[network]")?;
    write_link_fields(out, &s.network.link);
    for (from, to, link) in &s.network.overrides {
        writeln!(out, "\n[[network.link]]")?;
        writeln!(out, "from = {}", quote(&node_name(*from)))?;
        writeln!(out, "to = {}", quote(&node_name(*to)))?;
        write_link_fields(out, link);
    }

    let r = &s.raft;
    writeln!(out, "\n[raft]")?;
    writeln!(
        out,
        "election_timeout = {}",
        dur_pair(r.election_timeout_min_ns, r.election_timeout_max_ns)
    )?;
    writeln!(out, "heartbeat = {}", dur(r.heartbeat_ns))?;
    writeln!(out, "pre_vote = {}", r.pre_vote)?;
    writeln!(out, "check_quorum = {}", r.check_quorum)?;
    writeln!(out, "snapshot_threshold = {}", r.snapshot_threshold)?;
    writeln!(out, "max_entries_per_append = {}", r.max_entries_per_append)?;

    for (i, c) in s.clocks.iter().enumerate() {
        if *c != ClockConfig::default() {
            writeln!(out, "\n[clock.{}]", node_name(i))?;
            writeln!(
                out,
                "offset = {}",
                quote(&format_signed_duration(c.offset_ns))
            )?;
            writeln!(out, "drift_ppm = {}", c.drift_ppm)?;
        }
    }

    let w = &s.workload;
    writeln!(out, "\n[workload]")?;
    writeln!(out, "clients = {}", w.clients)?;
    writeln!(out, "rate = {}", float(w.rate_per_s))?;
    writeln!(out, "keys = {}", w.keys)?;
    writeln!(out, "read_ratio = {}", float(w.read_ratio))?;
    writeln!(out, "start = {}", dur(w.start_ns))?;
    writeln!(out, "stop = {}", dur(w.stop_ns))?;
    writeln!(out, "request_timeout = {}", dur(w.request_timeout_ns))?;
    writeln!(out, "op_timeout = {}", dur(w.op_timeout_ns))?;

    // Both lock tables are written only when they differ from the model's
    // defaults, so scenarios without locks save as before. An absent
    // `[locks]` or `[lock_clients]` parses back to exactly the default.
    let l = &s.locks;
    if *l != LockConfig::default() {
        writeln!(out, "\n[locks]")?;
        writeln!(out, "wait = {}", dur(l.wait_ns))?;
        writeln!(out, "lease_check = {}", dur(l.lease_check_ns))?;
        writeln!(out, "reentry_limit = {}", l.reentry_limit)?;
    }
    let l = &s.lock_load;
    if *l != LockWorkload::default() {
        writeln!(out, "\n[lock_clients]")?;
        writeln!(out, "clients = {}", l.clients)?;
        writeln!(out, "locks = {}", l.locks)?;
        writeln!(out, "max_per_round = {}", l.max_per_round)?;
        writeln!(out, "shared_ratio = {}", float(l.shared_ratio))?;
        writeln!(out, "hold = {}", dur_pair(l.hold_min_ns, l.hold_max_ns))?;
        writeln!(out, "gap = {}", dur(l.gap_ns))?;
        writeln!(out, "ttl = {}", dur(l.ttl_ns))?;
        writeln!(out, "crash_ratio = {}", float(l.crash_ratio))?;
        writeln!(out, "start = {}", dur(l.start_ns))?;
        writeln!(out, "stop = {}", stop_text(l.stop_ns))?;
    }

    // The queue tables follow the lock tables' rule: each is written only
    // when it differs from the model's default, so scenarios without a queue
    // save as before, and an absent `[redis]`, `[queue]` or `[queue_clients]`
    // parses back to exactly the default.
    let r = &s.redis;
    if *r != RedisConfig::default() {
        writeln!(out, "\n[redis]")?;
        writeln!(out, "shards = {}", r.shards)?;
        // The ring is always explicit, in the model's order, since the
        // default (every shard) depends on `shards`.
        let ring = r
            .initial_ring
            .iter()
            .map(|&i| quote(&shard_name(i as usize)));
        writeln!(out, "ring = [{}]", join(ring))?;
        writeln!(
            out,
            "persistence = {}",
            quote(persistence_word(r.persistence))
        )?;
        writeln!(out, "vnodes = {}", r.vnodes)?;
    }
    let q = &s.queue;
    if *q != QueueConfig::default() {
        writeln!(out, "\n[queue]")?;
        writeln!(
            out,
            "queues = [{}]",
            join(q.queues.iter().map(|n| quote(n)))
        )?;
        writeln!(out, "partitions = {}", q.partitions)?;
        writeln!(out, "visibility = {}", dur(q.visibility_ns))?;
        writeln!(out, "max_attempts = {}", q.max_attempts)?;
    }
    let w = &s.queue_load;
    if *w != QueueWorkload::default() {
        writeln!(out, "\n[queue_clients]")?;
        writeln!(out, "producers = {}", w.producers)?;
        writeln!(out, "consumers = {}", w.consumers)?;
        writeln!(out, "rate = {}", float(w.rate_per_s))?;
        writeln!(out, "batch = {}", w.batch)?;
        writeln!(out, "keys = {}", w.keys)?;
        writeln!(out, "hot_ratio = {}", float(w.hot_ratio))?;
        writeln!(out, "poison_ratio = {}", float(w.poison_ratio))?;
        writeln!(out, "consume_batch = {}", w.consume_batch)?;
        writeln!(
            out,
            "process = {}",
            dur_pair(w.process_min_ns, w.process_max_ns)
        )?;
        writeln!(out, "crash_ratio = {}", float(w.crash_ratio))?;
        writeln!(out, "down = {}", dur(w.consumer_down_ns))?;
        writeln!(out, "start = {}", dur(w.start_ns))?;
        writeln!(out, "stop = {}", stop_text(w.stop_ns))?;
    }

    // The cache tables follow the same rule. `[cache]` is written when the
    // caches are on (its other fields mean nothing otherwise, and the table's
    // presence is what turns them on), and `[cache_clients]` when it differs
    // from the model's default.
    let c = &s.cache;
    if c.enabled {
        writeln!(out, "\n[cache]")?;
        writeln!(out, "protocol = {}", quote(protocol_word(c.protocol)))?;
        writeln!(out, "capacity = {}", c.capacity)?;
        writeln!(out, "arbiter = {}", quote(&node_name(c.arbiter)))?;
        writeln!(out, "timeout = {}", dur(c.op_timeout_ns))?;
    }
    let w = &s.cache_load;
    if *w != CacheWorkload::default() {
        writeln!(out, "\n[cache_clients]")?;
        // A file's rate must be more than 0, and an absent one is 0 (no
        // ops), so a workload without ops is written without `rate`.
        if w.rate_per_s != 0.0 {
            writeln!(out, "rate = {}", float(w.rate_per_s))?;
        }
        writeln!(out, "keys = {}", w.keys)?;
        writeln!(out, "zipf = {}", float(w.zipf))?;
        writeln!(out, "write_ratio = {}", float(w.write_ratio))?;
        writeln!(out, "start = {}", dur(w.start_ns))?;
        writeln!(out, "stop = {}", stop_text(w.stop_ns))?;
    }

    let e = &s.expect;
    writeln!(out, "\n[expect]")?;
    if let Some(ns) = e.leader_within_ns {
        writeln!(out, "leader_within = {}", dur(ns))?;
    }
    if let Some(ns) = e.leader_after_last_fault_ns {
        writeln!(out, "leader_after_last_fault = {}", dur(ns))?;
    }
    writeln!(
        out,
        "acked_writes_applied_everywhere = {}",
        e.acked_writes_applied_everywhere
    )?;
    writeln!(out, "min_completed_ops = {}", e.min_completed_ops)?;
    writeln!(out, "linearizable = {}", e.linearizable)?;
    if e.linearizability_steps != DEFAULT_LINEARIZABILITY_STEPS {
        writeln!(out, "linearizability_steps = {}", e.linearizability_steps)?;
    }

    for i in writing_order(s) {
        let step = &s.timeline[i];
        writeln!(out, "\n[[step]]")?;
        writeln!(out, "at = {}", dur(step.at_ns))?;
        writeln!(out, "{}", action_toml(s, &step.action))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Durations

/// Units from smallest to largest; `format_duration` walks them backwards.
const UNITS: [(&str, u64); 6] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", NS_PER_MS),
    ("s", NS_PER_S),
    ("m", 60 * NS_PER_S),
    ("h", 3_600 * NS_PER_S),
];

fn bad_duration(text: &str) -> String {
    format!(
        "bad duration \"{text}\": expected a number followed by ns, us, ms, s, m or h, like \"150ms\""
    )
}

fn too_large(text: &str) -> String {
    format!("bad duration \"{text}\": too large")
}

/// Nanoseconds in an unsigned duration `body`; `text` is the whole input, for messages.
/// Integer arithmetic only, so "0.1s" is exactly 100ms and nothing is rounded.
fn magnitude(body: &str, text: &str) -> Result<u128, String> {
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let Some(&(_, unit_ns)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(bad_duration(text));
    };
    let unit_ns = u128::from(unit_ns);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(bad_duration(text));
    }
    // Length caps keep the u128 arithmetic below from overflowing.
    if int.trim_start_matches('0').len() > 24 {
        return Err(too_large(text));
    }
    if frac.len() > 18 {
        return Err(format!("bad duration \"{text}\": too many decimal places"));
    }
    let whole: u128 = int.parse().map_err(|_| bad_duration(text))?;
    let mut ns = whole.checked_mul(unit_ns).ok_or_else(|| too_large(text))?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let part = frac.parse::<u128>().map_err(|_| bad_duration(text))? * unit_ns;
        if part % scale != 0 {
            return Err(format!(
                "bad duration \"{text}\": not a whole number of nanoseconds"
            ));
        }
        ns = ns
            .checked_add(part / scale)
            .ok_or_else(|| too_large(text))?;
    }
    Ok(ns)
}

/// `ns` written in one unit, if that gives a finite decimal ("20s" in minutes does not).
fn exact_in_unit(ns: u64, unit: &str, unit_ns: u64) -> Option<String> {
    let (whole, rem) = (ns / unit_ns, u128::from(ns % unit_ns));
    if rem == 0 {
        return Some(format!("{whole}{unit}"));
    }
    // The smallest k with rem * 10^k divisible by unit_ns gives digits without trailing zeros.
    let unit_ns = u128::from(unit_ns);
    (1..=20u32)
        .find(|&k| (rem * 10u128.pow(k)) % unit_ns == 0)
        .map(|k| {
            let digits = rem * 10u128.pow(k) / unit_ns;
            format!("{whole}.{digits:0width$}{unit}", width = k as usize)
        })
}

fn format_signed_duration(ns: i64) -> String {
    let abs = format_duration(ns.unsigned_abs());
    if ns < 0 { format!("-{abs}") } else { abs }
}

// ---------------------------------------------------------------------------
// Raw file structure (serde pass)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    description: Spanned<String>,
    nodes: Spanned<i64>,
    duration: Spanned<DurText>,
    seed: Option<Spanned<U64>>,
    #[serde(default)]
    bugs: Vec<Spanned<String>>,
    network: Option<RawNetwork>,
    raft: Option<RawRaft>,
    #[serde(default)]
    clock: BTreeMap<Spanned<String>, RawClock>,
    workload: Option<RawWorkload>,
    locks: Option<RawLocks>,
    lock_clients: Option<RawLockClients>,
    // Spanned so that "needs [redis]" and "needs shards" errors can point at
    // the table itself.
    redis: Option<Spanned<RawRedis>>,
    queue: Option<Spanned<RawQueue>>,
    queue_clients: Option<Spanned<RawQueueClients>>,
    // Spanned, like the queue tables, for the "needs" errors.
    cache: Option<Spanned<RawCache>>,
    cache_clients: Option<Spanned<RawCacheClients>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    expect: Option<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    latency: Option<Spanned<RawRange>>,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    reorder: Option<Spanned<f64>>,
    reorder_delay_max: Option<Spanned<DurText>>,
    #[serde(default)]
    link: Vec<Spanned<RawLink>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    both_ways: bool,
    latency: Option<Spanned<RawRange>>,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    reorder: Option<Spanned<f64>>,
    reorder_delay_max: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRaft {
    election_timeout: Option<Spanned<RawRange>>,
    heartbeat: Option<Spanned<DurText>>,
    pre_vote: Option<bool>,
    check_quorum: Option<bool>,
    snapshot_threshold: Option<Spanned<i64>>,
    max_entries_per_append: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClock {
    offset: Option<Spanned<DurText>>,
    drift_ppm: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    clients: Option<Spanned<i64>>,
    rate: Option<Spanned<f64>>,
    keys: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    start: Option<Spanned<DurText>>,
    stop: Option<Spanned<DurText>>,
    request_timeout: Option<Spanned<DurText>>,
    op_timeout: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocks {
    wait: Option<Spanned<DurText>>,
    lease_check: Option<Spanned<DurText>>,
    reentry_limit: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockClients {
    clients: Option<Spanned<i64>>,
    locks: Option<Spanned<i64>>,
    max_per_round: Option<Spanned<i64>>,
    shared_ratio: Option<Spanned<f64>>,
    hold: Option<Spanned<RawRange>>,
    gap: Option<Spanned<DurText>>,
    ttl: Option<Spanned<DurText>>,
    crash_ratio: Option<Spanned<f64>>,
    start: Option<Spanned<DurText>>,
    stop: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    shards: Option<Spanned<i64>>,
    ring: Option<NameList>,
    persistence: Option<Spanned<String>>,
    vnodes: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    queues: Option<NameList>,
    partitions: Option<Spanned<i64>>,
    visibility: Option<Spanned<DurText>>,
    max_attempts: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueClients {
    producers: Option<Spanned<i64>>,
    consumers: Option<Spanned<i64>>,
    rate: Option<Spanned<f64>>,
    batch: Option<Spanned<i64>>,
    keys: Option<Spanned<i64>>,
    hot_ratio: Option<Spanned<f64>>,
    poison_ratio: Option<Spanned<f64>>,
    consume_batch: Option<Spanned<i64>>,
    process: Option<Spanned<RawRange>>,
    crash_ratio: Option<Spanned<f64>>,
    down: Option<Spanned<DurText>>,
    start: Option<Spanned<DurText>>,
    stop: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    protocol: Option<Spanned<String>>,
    capacity: Option<Spanned<i64>>,
    arbiter: Option<Spanned<String>>,
    timeout: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCacheClients {
    rate: Option<Spanned<f64>>,
    keys: Option<Spanned<i64>>,
    zipf: Option<Spanned<f64>>,
    write_ratio: Option<Spanned<f64>>,
    start: Option<Spanned<DurText>>,
    stop: Option<Spanned<DurText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    leader_within: Option<Spanned<DurText>>,
    leader_after_last_fault: Option<Spanned<DurText>>,
    acked_writes_applied_everywhere: Option<bool>,
    min_completed_ops: Option<Spanned<U64>>,
    linearizable: Option<bool>,
    linearizability_steps: Option<Spanned<i64>>,
}

/// A list of names (nodes, shards, places or queues), each located.
type NameList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<DurText>,
    crash: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    pause: Option<Spanned<String>>,
    resume: Option<Spanned<String>>,
    partition: Option<Spanned<Vec<NameList>>>,
    partition_oneway: Option<Spanned<RawOneWay>>,
    heal: Option<Spanned<bool>>,
    network: Option<Spanned<RawNetworkChange>>,
    clock: Option<Spanned<RawClockChange>>,
    client: Option<Spanned<RawClient>>,
    add_shard: Option<Spanned<String>>,
    remove_shard: Option<Spanned<String>>,
    cache: Option<Spanned<RawCacheStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOneWay {
    from: NameList,
    to: NameList,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetworkChange {
    latency: Option<Spanned<RawRange>>,
    loss: Option<Spanned<f64>>,
    duplicate: Option<Spanned<f64>>,
    reorder: Option<Spanned<f64>>,
    reorder_delay_max: Option<Spanned<DurText>>,
    link: Option<NameList>,
    both_ways: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClockChange {
    node: Spanned<String>,
    offset: Option<Spanned<DurText>>,
    drift_ppm: Option<Spanned<i64>>,
    step: Option<Spanned<DurText>>,
}

/// A `cache` step; which of `key` and `value` are required depends on `op`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCacheStep {
    node: Spanned<String>,
    op: Spanned<String>,
    key: Option<Spanned<i64>>,
    value: Option<Spanned<U64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: Spanned<i64>,
    node: Spanned<String>,
    op: Spanned<String>,
    key: Spanned<String>,
    value: Option<Spanned<U64>>,
}

/// The link fields shared by `[network]`, `[[network.link]]` and the `network` step.
struct LinkFields<'a> {
    latency: Option<&'a Spanned<RawRange>>,
    loss: Option<&'a Spanned<f64>>,
    duplicate: Option<&'a Spanned<f64>>,
    reorder: Option<&'a Spanned<f64>>,
    reorder_delay_max: Option<&'a Spanned<DurText>>,
}

macro_rules! link_fields {
    ($raw:expr) => {
        LinkFields {
            latency: $raw.latency.as_ref(),
            loss: $raw.loss.as_ref(),
            duplicate: $raw.duplicate.as_ref(),
            reorder: $raw.reorder.as_ref(),
            reorder_delay_max: $raw.reorder_delay_max.as_ref(),
        }
    };
}

/// A duration string kept as text, so it is parsed (and its errors located)
/// after deserialization; the visitor only words the wrong-type error.
struct DurText(String);

impl<'de> Deserialize<'de> for DurText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"150ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurText, E> {
                Ok(DurText(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// `"2ms"` (min = max) or `["1ms", "5ms"]`.
enum RawRange {
    One(DurText),
    Pair(Spanned<DurText>, Spanned<DurText>),
}

impl<'de> Deserialize<'de> for RawRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"5ms\" or a pair [min, max] like [\"1ms\", \"5ms\"]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRange, E> {
                Ok(RawRange::One(DurText(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRange, A::Error> {
                let min = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let max = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let mut len = 2;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    len += 1;
                }
                if len != 2 {
                    return Err(de::Error::invalid_length(len, &self));
                }
                Ok(RawRange::Pair(min, max))
            }
        }
        d.deserialize_any(V)
    }
}

/// A u64: a TOML integer, or a decimal string for values above i64::MAX
/// (TOML integers are signed 64-bit, but seeds and put values use all 64 bits).
struct U64(u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer (or a decimal string above 2^63-1)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v)
                    .map(U64)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64, E> {
                // `parse` alone would accept a leading '+'.
                match v.parse() {
                    Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(U64(n)),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Validation (meaning pass)

type Res<T> = Result<T, ScenarioError>;

/// The text being parsed, to turn byte spans into `path:line:col` errors.
struct Source<'a> {
    text: &'a str,
    path: &'a str,
    /// Byte offset where each line starts; saved runs can have thousands of steps.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str, path: &'a str) -> Self {
        let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
        let line_starts = std::iter::once(0).chain(newlines).collect();
        Source {
            text,
            path,
            line_starts,
        }
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let (line, col) = self.line_col(span.start);
        ScenarioError {
            path: self.path.to_owned(),
            line,
            col,
            message: message.into(),
        }
    }

    fn err_nowhere(&self, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            path: self.path.to_owned(),
            line: 0,
            col: 0,
            message: message.into(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Index of the last line start <= offset; line_starts[0] is 0, so >= 1.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    fn duration(&self, d: &Spanned<DurText>, what: &str) -> Res<Nanos> {
        let ns = parse_duration(&d.get_ref().0).map_err(|m| self.err(d.span(), m))?;
        if ns > MAX_DURATION_NS {
            return Err(self.err(
                d.span(),
                format!("{what} must be at most 1h, got {}", d.get_ref().0),
            ));
        }
        Ok(ns)
    }

    fn signed_duration(&self, d: &Spanned<DurText>, what: &str) -> Res<i64> {
        let ns = parse_signed_duration(&d.get_ref().0).map_err(|m| self.err(d.span(), m))?;
        if ns.unsigned_abs() > MAX_DURATION_NS {
            return Err(self.err(
                d.span(),
                format!("{what} must be within ±1h, got {}", d.get_ref().0),
            ));
        }
        Ok(ns)
    }

    /// A duration in `min_ns..=1h`; the message gives the whole range.
    fn duration_at_least(&self, d: &Spanned<DurText>, what: &str, min_ns: Nanos) -> Res<Nanos> {
        let ns = parse_duration(&d.get_ref().0).map_err(|m| self.err(d.span(), m))?;
        if ns < min_ns || ns > MAX_DURATION_NS {
            return Err(self.err(
                d.span(),
                format!(
                    "{what} must be between {} and 1h, got {}",
                    format_duration(min_ns),
                    d.get_ref().0
                ),
            ));
        }
        Ok(ns)
    }

    fn positive_duration(&self, d: &Spanned<DurText>, what: &str) -> Res<Nanos> {
        let ns = self.duration(d, what)?;
        if ns == 0 {
            return Err(self.err(d.span(), format!("{what} must be more than 0s")));
        }
        Ok(ns)
    }

    fn range(&self, r: &Spanned<RawRange>, what: &str) -> Res<(Nanos, Nanos)> {
        match r.get_ref() {
            RawRange::One(text) => {
                let ns = self.duration(&Spanned::new(r.span(), DurText(text.0.clone())), what)?;
                Ok((ns, ns))
            }
            RawRange::Pair(min, max) => {
                let (lo, hi) = (self.duration(min, what)?, self.duration(max, what)?);
                if lo > hi {
                    return Err(self.err(
                        r.span(),
                        format!(
                            "{what} min ({}) must not be more than max ({})",
                            format_duration(lo),
                            format_duration(hi)
                        ),
                    ));
                }
                Ok((lo, hi))
            }
        }
    }

    /// A rate of operations per second in `MIN_RATE..=MAX_RATE`; `per`
    /// says per what, for the message.
    fn rate(&self, v: &Spanned<f64>, what: &str, per: &str) -> Res<f64> {
        let rate = *v.get_ref();
        // Written as a negated range check so NaN fails too.
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            // Tiny values in exponent form, not hundreds of zeros.
            let got = if rate != 0.0 && rate.abs() < MIN_RATE {
                format!("{rate:e}")
            } else {
                format!("{rate}")
            };
            return Err(self.err(
                v.span(),
                format!("{what} must be between {MIN_RATE} and {MAX_RATE} {per}, got {got}"),
            ));
        }
        Ok(rate)
    }

    fn probability(&self, p: &Spanned<f64>, what: &str) -> Res<f64> {
        let v = *p.get_ref();
        // `contains` is false for NaN, so NaN is rejected here too.
        if !(0.0..=1.0).contains(&v) {
            return Err(self.err(
                p.span(),
                format!("{what} must be a probability between 0 and 1, got {v}"),
            ));
        }
        Ok(v)
    }

    fn int(&self, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Res<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            let want = if hi == i64::MAX {
                format!("at least {lo}")
            } else {
                format!("between {lo} and {hi}")
            };
            return Err(self.err(v.span(), format!("{what} must be {want}, got {n}")));
        }
        Ok(n)
    }

    fn link_config(&self, base: LinkConfig, f: &LinkFields<'_>) -> Res<LinkConfig> {
        let mut c = base;
        if let Some(r) = f.latency {
            (c.latency_min_ns, c.latency_max_ns) = self.range(r, "latency")?;
        }
        if let Some(p) = f.loss {
            c.loss = self.probability(p, "loss")?;
        }
        if let Some(p) = f.duplicate {
            c.duplicate = self.probability(p, "duplicate")?;
        }
        if let Some(p) = f.reorder {
            c.reorder = self.probability(p, "reorder")?;
        }
        if let Some(d) = f.reorder_delay_max {
            c.reorder_delay_max_ns = self.duration(d, "reorder_delay_max")?;
        }
        Ok(c)
    }
}

/// The names of a scenario's places: nodes `n1`..`nN`, then Redis shards
/// `s1`..`sS`. Partitions number places the same way: node `i` is place `i`
/// and shard `i` is place `nodes + i`.
struct Nodes {
    nodes: usize,
    shards: usize,
}

impl Nodes {
    /// A node name where only nodes make sense; `what` names the place in the
    /// file, for the error when a shard is named there.
    fn node(&self, src: &Source<'_>, s: &Spanned<String>, what: &str) -> Res<usize> {
        let name = s.get_ref();
        if shard_index(name).is_some() {
            return Err(src.err(
                s.span(),
                format!(
                    "{what} must name a node ({}), not shard `{name}`: shards only take {SHARD_STEPS} steps",
                    self.node_list()
                ),
            ));
        }
        self.known_node(src, s)
    }

    fn known_node(&self, src: &Source<'_>, s: &Spanned<String>) -> Res<usize> {
        let name = s.get_ref();
        match node_index(name) {
            Some(i) if i < self.nodes => Ok(i),
            _ => Err(src.err(
                s.span(),
                format!(
                    "unknown node `{name}`: this scenario has {}",
                    self.node_range()
                ),
            )),
        }
    }

    /// A shard name, as the shard's index (`s1` -> 0).
    fn shard(&self, src: &Source<'_>, s: &Spanned<String>) -> Res<usize> {
        let name = s.get_ref();
        match shard_index(name) {
            Some(i) if i < self.shards => Ok(i),
            _ => Err(src.err(
                s.span(),
                format!(
                    "unknown shard `{name}`: this scenario has {}",
                    self.shard_range()
                ),
            )),
        }
    }

    /// A node or shard name, as a place number.
    fn place(&self, src: &Source<'_>, s: &Spanned<String>) -> Res<usize> {
        let name = s.get_ref();
        if shard_index(name).is_some() {
            return self.shard(src, s).map(|i| self.nodes + i);
        }
        if node_index(name).is_none() && self.shards > 0 {
            // Neither kind of name: say both kinds exist here.
            return Err(src.err(
                s.span(),
                format!(
                    "unknown name `{name}`: this scenario has {} and {}",
                    self.node_range(),
                    self.shard_range()
                ),
            ));
        }
        self.known_node(src, s)
    }

    fn place_name(&self, place: usize) -> String {
        place_name(self.nodes, place)
    }

    /// "node" in scenarios without shards, so their messages read as before.
    fn place_noun(&self) -> &'static str {
        if self.shards == 0 {
            "node"
        } else {
            "node or shard"
        }
    }

    fn node_range(&self) -> String {
        if self.nodes == 1 {
            "only node n1".to_owned()
        } else {
            format!("nodes n1..n{}", self.nodes)
        }
    }

    fn shard_range(&self) -> String {
        match self.shards {
            0 => format!("no Redis shards ([redis] shards = N adds s1..sN, up to {MAX_SHARDS})"),
            1 => "only shard s1".to_owned(),
            n => format!("shards s1..s{n}"),
        }
    }

    /// A node name, a shard name when `shards_ok` (as `Target::Shard`), or
    /// one of the role words allowed for this action.
    fn target(
        &self,
        src: &Source<'_>,
        s: &Spanned<String>,
        action: &str,
        roles: &[(&str, Target)],
        shards_ok: bool,
    ) -> Res<Target> {
        if let Some((_, t)) = roles.iter().find(|(word, _)| *word == s.get_ref()) {
            return Ok(*t);
        }
        if node_index(s.get_ref()).is_some() {
            return self.known_node(src, s).map(Target::Node);
        }
        if shard_index(s.get_ref()).is_some() {
            return if shards_ok {
                self.shard(src, s).map(Target::Shard)
            } else {
                self.node(src, s, action).map(Target::Node)
            };
        }
        let words: Vec<String> = roles.iter().map(|(w, _)| format!("\"{w}\"")).collect();
        // Shard names are offered only where a shard could be named.
        let shards = if shards_ok && self.shards > 0 {
            format!(", a shard name ({})", self.shard_list())
        } else {
            String::new()
        };
        Err(src.err(
            s.span(),
            format!(
                "bad target `{}` for {action}: expected a node name ({}){shards} or {}",
                s.get_ref(),
                self.node_list(),
                words.join(" or ")
            ),
        ))
    }

    fn node_list(&self) -> String {
        if self.nodes == 1 {
            "n1".to_owned()
        } else {
            format!("n1..n{}", self.nodes)
        }
    }

    fn shard_list(&self) -> String {
        if self.shards == 1 {
            "s1".to_owned()
        } else {
            format!("s1..s{}", self.shards)
        }
    }

    /// Distinct places (node or shard names); `what` words the errors.
    fn place_set(&self, src: &Source<'_>, names: &NameList, what: &str) -> Res<Vec<usize>> {
        let noun = self.place_noun();
        distinct(src, names, what, noun, |name| self.place(src, name))
    }
}

/// The non-empty list `names`, each looked up by `index`, none named twice;
/// `what` names the list and `noun` its items in errors.
fn distinct<T: PartialEq>(
    src: &Source<'_>,
    names: &NameList,
    what: &str,
    noun: &str,
    index: impl Fn(&Spanned<String>) -> Res<T>,
) -> Res<Vec<T>> {
    if names.get_ref().is_empty() {
        return Err(src.err(
            names.span(),
            format!("{what} must name at least one {noun}"),
        ));
    }
    let mut seen: Vec<(T, Range<usize>)> = Vec::new();
    for name in names.get_ref() {
        let n = index(name)?;
        if let Some((_, first)) = seen.iter().find(|(m, _)| *m == n) {
            let (line, col) = src.line_col(first.start);
            return Err(src.err(
                name.span(),
                format!(
                    "{} is named twice in {what} (first at line {line}, column {col})",
                    name.get_ref()
                ),
            ));
        }
        seen.push((n, name.span()));
    }
    Ok(seen.into_iter().map(|(n, _)| n).collect())
}

/// Key names by index: workload keys `k0`.. first, then scripted keys as
/// they first appear in the file.
struct Keys {
    workload: usize,
    names: Vec<String>,
    scripted: BTreeMap<String, usize>,
}

impl Keys {
    fn new(workload: usize) -> Self {
        Keys {
            workload,
            names: (0..workload).map(|k| format!("k{k}")).collect(),
            scripted: BTreeMap::new(),
        }
    }

    fn index(&mut self, src: &Source<'_>, s: &Spanned<String>) -> Res<u32> {
        let name = s.get_ref();
        if name.is_empty() {
            return Err(src.err(s.span(), "key must not be empty"));
        }
        let index = match key_index(name).filter(|&k| k < self.workload) {
            Some(k) => k,
            None => match self.scripted.get(name) {
                Some(&k) => k,
                None => {
                    self.names.push(name.clone());
                    self.scripted.insert(name.clone(), self.names.len() - 1);
                    self.names.len() - 1
                }
            },
        };
        u32::try_from(index).map_err(|_| src.err(s.span(), "too many distinct keys"))
    }
}

/// `n1` -> 0; strict so `n01` or `n+1` are not node names.
fn node_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('n')?;
    let n = strict_number(digits)?;
    n.checked_sub(1)
}

/// `s1` -> 0, for Redis shard names; strict like `node_index`.
fn shard_index(name: &str) -> Option<usize> {
    strict_number(name.strip_prefix('s')?)?.checked_sub(1)
}

/// `k3` -> 3, for workload key names.
fn key_index(name: &str) -> Option<usize> {
    strict_number(name.strip_prefix('k')?)
}

fn strict_number(digits: &str) -> Option<usize> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

fn shard_name(i: usize) -> String {
    format!("s{}", i + 1)
}

/// Place `p` of a scenario with `nodes` nodes: a node, or a shard after them.
fn place_name(nodes: usize, p: usize) -> String {
    match p.checked_sub(nodes) {
        Some(shard) => shard_name(shard),
        None => node_name(p),
    }
}

/// `redis.persistence` word for each setting, named as in redis.conf's
/// `appendfsync` (with "off" for `appendonly no`).
fn persistence_word(f: Fsync) -> &'static str {
    match f {
        Fsync::Always => "always",
        Fsync::EverySec => "everysec",
        Fsync::Off => "off",
    }
}

/// `cache.protocol` word for each protocol.
fn protocol_word(p: CacheProtocol) -> &'static str {
    match p {
        CacheProtocol::Bus => "bus",
        CacheProtocol::Directory => "directory",
    }
}

fn default_link() -> LinkConfig {
    LinkConfig {
        latency_min_ns: NS_PER_MS,
        latency_max_ns: 5 * NS_PER_MS,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay_max_ns: 20 * NS_PER_MS,
    }
}

fn resolve(src: &Source<'_>, raw: RawScenario) -> Res<Scenario> {
    let name = raw.name.get_ref();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name {
        return Err(src.err(
            raw.name.span(),
            format!("name must be lowercase letters, digits and '-' (like \"leader-crash\"), got {name:?}"),
        ));
    }
    if raw.description.get_ref().trim().is_empty() {
        return Err(src.err(raw.description.span(), "description must not be empty"));
    }
    let nodes = src.int(&raw.nodes, "nodes", 1, MAX_NODES)? as usize;
    let duration_ns = src.positive_duration(&raw.duration, "duration")?;
    let seed = raw.seed.map_or(1, |s| s.into_inner().0);

    let mut bugs = Bugs::default();
    for b in &raw.bugs {
        bugs.enable(b.get_ref()).map_err(|m| src.err(b.span(), m))?;
    }

    // First, so every later table and step knows the shard names.
    let redis = resolve_redis(src, raw.redis.as_ref(), nodes)?;
    let node_names = Nodes {
        nodes,
        shards: redis.shards,
    };
    let network = resolve_network(src, raw.network, &node_names)?;
    let raft = resolve_raft(src, raw.raft)?;

    let mut clocks = vec![ClockConfig::default(); nodes];
    for (node, c) in &raw.clock {
        let i = node_names.node(src, node, "a [clock] table")?;
        if let Some(d) = &c.offset {
            clocks[i].offset_ns = src.signed_duration(d, "offset")?;
        }
        if let Some(d) = &c.drift_ppm {
            clocks[i].drift_ppm = src.int(d, "drift_ppm", -MAX_DRIFT_PPM, MAX_DRIFT_PPM)?;
        }
    }

    let workload = resolve_workload(src, raw.workload, duration_ns)?;
    let locks = resolve_locks(src, raw.locks.as_ref())?;
    let lease_check_span = raw
        .locks
        .as_ref()
        .and_then(|l| l.lease_check.as_ref())
        .map(|d| d.span());
    let lock_load = resolve_lock_clients(
        src,
        raw.lock_clients.as_ref(),
        duration_ns,
        &locks,
        lease_check_span,
    )?;
    let queue = resolve_queue(src, raw.queue.as_ref(), &redis)?;
    let queue_load = resolve_queue_clients(src, raw.queue_clients.as_ref(), duration_ns, &redis)?;
    let cache = resolve_cache(src, raw.cache.as_ref(), &redis, &node_names)?;
    let cache_load = resolve_cache_clients(src, raw.cache_clients.as_ref(), duration_ns, &cache)?;
    let mut keys = Keys::new(workload.keys);

    let mut steps = Vec::with_capacity(raw.step.len());
    for s in &raw.step {
        steps.push(resolve_step(
            src,
            s,
            &node_names,
            &mut keys,
            &network.link,
            duration_ns,
            cache.enabled,
        )?);
    }
    // Stable, so steps at the same time keep file order.
    steps.sort_by_key(|(step, _)| step.at_ns);
    check_timeline(src, &steps, &node_names)?;

    let expect = resolve_expect(src, raw.expect)?;
    Ok(Scenario {
        name: name.clone(),
        description: raw.description.into_inner(),
        nodes,
        seed,
        duration_ns,
        network,
        raft,
        clocks,
        workload,
        timeline: steps.into_iter().map(|(step, _)| step).collect(),
        expect,
        bugs,
        key_names: keys.names,
        locks,
        lock_load,
        redis,
        queue,
        queue_load,
        cache,
        cache_load,
    })
}

fn resolve_network(src: &Source<'_>, raw: Option<RawNetwork>, names: &Nodes) -> Res<NetworkConfig> {
    let Some(raw) = raw else {
        return Ok(NetworkConfig {
            link: default_link(),
            overrides: Vec::new(),
        });
    };
    let link = src.link_config(default_link(), &link_fields!(raw))?;
    let mut overrides: Vec<(usize, usize, LinkConfig)> = Vec::new();
    // Where each directed link was first overridden, to reject ambiguous repeats.
    let mut first_line: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for l in &raw.link {
        let r = l.get_ref();
        let (from, to) = (
            names.node(src, &r.from, "[[network.link]]")?,
            names.node(src, &r.to, "[[network.link]]")?,
        );
        if from == to {
            return Err(src.err(r.to.span(), "a link must join two different nodes"));
        }
        let config = src.link_config(link, &link_fields!(r))?;
        let dirs: &[(usize, usize)] = if r.both_ways {
            &[(from, to), (to, from)]
        } else {
            &[(from, to)]
        };
        for &(a, b) in dirs {
            if let Some(line) = first_line.get(&(a, b)) {
                return Err(src.err(
                    l.span(),
                    format!(
                        "link {} -> {} is already overridden by the [[network.link]] at line {line}",
                        node_name(a),
                        node_name(b)
                    ),
                ));
            }
            first_line.insert((a, b), src.line(&l.span()));
            overrides.push((a, b, config));
        }
    }
    Ok(NetworkConfig { link, overrides })
}

fn resolve_raft(src: &Source<'_>, raw: Option<RawRaft>) -> Res<RaftConfig> {
    let mut r = RaftConfig::default();
    let Some(raw) = raw else { return Ok(r) };
    if let Some(e) = &raw.election_timeout {
        let (lo, hi) = match e.get_ref() {
            RawRange::One(_) => {
                return Err(src.err(
                    e.span(),
                    "election_timeout must be a pair [min, max] like [\"150ms\", \"300ms\"]",
                ));
            }
            RawRange::Pair(min, max) => (
                src.duration(min, "election_timeout")?,
                src.duration(max, "election_timeout")?,
            ),
        };
        if lo >= hi {
            return Err(src.err(
                e.span(),
                format!(
                    "election_timeout min ({}) must be less than max ({})",
                    format_duration(lo),
                    format_duration(hi)
                ),
            ));
        }
        (r.election_timeout_min_ns, r.election_timeout_max_ns) = (lo, hi);
    }
    if let Some(h) = &raw.heartbeat {
        r.heartbeat_ns = src.positive_duration(h, "heartbeat")?;
    }
    if r.heartbeat_ns >= r.election_timeout_min_ns {
        // Point at whichever of the two the file set.
        let span = raw
            .heartbeat
            .as_ref()
            .map(|h| h.span())
            .or_else(|| raw.election_timeout.as_ref().map(|e| e.span()))
            .unwrap_or(0..0);
        return Err(src.err(
            span,
            format!(
                "heartbeat ({}) must be less than the election_timeout min ({}), or followers time out between heartbeats",
                format_duration(r.heartbeat_ns),
                format_duration(r.election_timeout_min_ns)
            ),
        ));
    }
    r.pre_vote = raw.pre_vote.unwrap_or(r.pre_vote);
    r.check_quorum = raw.check_quorum.unwrap_or(r.check_quorum);
    if let Some(v) = &raw.snapshot_threshold {
        r.snapshot_threshold = src.int(v, "snapshot_threshold", 1, i64::MAX)? as u64;
    }
    if let Some(v) = &raw.max_entries_per_append {
        r.max_entries_per_append =
            src.int(v, "max_entries_per_append", 1, i64::from(u32::MAX))? as usize;
    }
    Ok(r)
}

fn resolve_workload(
    src: &Source<'_>,
    raw: Option<RawWorkload>,
    duration_ns: Nanos,
) -> Res<Workload> {
    // Leave the last 20% of the run without new load so the cluster can converge.
    let default_stop = duration_ns - duration_ns / 5;
    let mut w = Workload {
        clients: 0,
        rate_per_s: 20.0,
        keys: 4,
        read_ratio: 0.5,
        start_ns: 0,
        stop_ns: default_stop,
        request_timeout_ns: 300 * NS_PER_MS,
        op_timeout_ns: 2 * NS_PER_S,
    };
    let Some(raw) = raw else { return Ok(w) };
    if let Some(v) = &raw.clients {
        w.clients = src.int(v, "clients", 0, MAX_CLIENTS)? as usize;
    }
    if let Some(v) = &raw.rate {
        let rate = src.rate(v, "rate", "ops per second per client")?;
        w.rate_per_s = rate;
    }
    if let Some(v) = &raw.keys {
        let min = i64::from(w.clients > 0);
        w.keys = src.int(
            v,
            if min == 1 {
                "keys (with clients > 0)"
            } else {
                "keys"
            },
            min,
            MAX_KEYS,
        )? as usize;
    }
    if let Some(v) = &raw.read_ratio {
        w.read_ratio = src.probability(v, "read_ratio")?;
    }
    if let Some(d) = &raw.start {
        w.start_ns = src.duration(d, "start")?;
    }
    if let Some(d) = &raw.stop {
        w.stop_ns = src.duration(d, "stop")?;
        if w.stop_ns > duration_ns {
            return Err(src.err(
                d.span(),
                format!(
                    "stop ({}) must not be after the end of the run (duration {})",
                    format_duration(w.stop_ns),
                    format_duration(duration_ns)
                ),
            ));
        }
    }
    if w.start_ns > w.stop_ns {
        let (span, which) = match (&raw.stop, &raw.start) {
            (Some(d), _) => (d.span(), ""),
            (None, Some(d)) => (d.span(), ", the default: 80% of duration"),
            (None, None) => (0..0, ""),
        };
        return Err(src.err(
            span,
            format!(
                "workload start ({}) must not be after stop ({}{which})",
                format_duration(w.start_ns),
                format_duration(w.stop_ns)
            ),
        ));
    }
    if let Some(d) = &raw.request_timeout {
        w.request_timeout_ns = src.positive_duration(d, "request_timeout")?;
    }
    if let Some(d) = &raw.op_timeout {
        w.op_timeout_ns = src.positive_duration(d, "op_timeout")?;
    }
    if w.op_timeout_ns < w.request_timeout_ns {
        let span = raw
            .op_timeout
            .as_ref()
            .or(raw.request_timeout.as_ref())
            .map_or(0..0, |d| d.span());
        return Err(src.err(
            span,
            format!(
                "op_timeout ({}) must be at least request_timeout ({})",
                format_duration(w.op_timeout_ns),
                format_duration(w.request_timeout_ns)
            ),
        ));
    }
    Ok(w)
}

fn resolve_locks(src: &Source<'_>, raw: Option<&RawLocks>) -> Res<LockConfig> {
    let mut c = LockConfig::default();
    let Some(raw) = raw else { return Ok(c) };
    if let Some(d) = &raw.wait {
        c.wait_ns = src.positive_duration(d, "locks.wait")?;
    }
    if let Some(d) = &raw.lease_check {
        c.lease_check_ns = src.positive_duration(d, "locks.lease_check")?;
    }
    if c.lease_check_ns > c.wait_ns {
        // Point at whichever of the two the file set.
        let span = raw
            .lease_check
            .as_ref()
            .or(raw.wait.as_ref())
            .map_or(0..0, |d| d.span());
        return Err(src.err(
            span,
            format!(
                "locks.lease_check ({}) must not be more than locks.wait ({}), or timed-out waits are noticed late",
                format_duration(c.lease_check_ns),
                format_duration(c.wait_ns)
            ),
        ));
    }
    if let Some(v) = &raw.reentry_limit {
        c.reentry_limit = src.int(v, "locks.reentry_limit", 1, MAX_REENTRY_LIMIT)? as u32;
    }
    Ok(c)
}

/// `[lock_clients]`. Absent, it is exactly `LockWorkload::default()` (no
/// clients, no stop). Present, every field defaults as in
/// `LockWorkload::default()` except `stop`, which defaults like `[workload]`'s
/// (80% of the duration); `stop = "end"` asks for no stop (`u64::MAX`), which
/// is how `scenario_to_toml` writes such a workload, so both round-trip.
fn resolve_lock_clients(
    src: &Source<'_>,
    raw: Option<&RawLockClients>,
    duration_ns: Nanos,
    locks: &LockConfig,
    lease_check_span: Option<Range<usize>>,
) -> Res<LockWorkload> {
    let mut w = LockWorkload::default();
    let Some(raw) = raw else { return Ok(w) };
    if let Some(v) = &raw.clients {
        w.clients = src.int(v, "lock_clients.clients", 0, MAX_CLIENTS)? as usize;
    }
    if let Some(v) = &raw.locks {
        w.locks = src.int(v, "lock_clients.locks", 1, MAX_LOCKS)? as u32;
    }
    if let Some(v) = &raw.max_per_round {
        let n = *v.get_ref();
        if n < 1 || n > i64::from(w.locks) {
            return Err(src.err(
                v.span(),
                format!(
                    "lock_clients.max_per_round must be between 1 and locks ({}), got {n}",
                    w.locks
                ),
            ));
        }
        w.max_per_round = n as u32;
    } else if w.max_per_round > w.locks {
        // Only `locks` can be set here, or the default would fit.
        let span = raw.locks.as_ref().map_or(0..0, |v| v.span());
        return Err(src.err(
            span,
            format!(
                "lock_clients.max_per_round ({}, the default) must not be more than locks ({}); set max_per_round too",
                w.max_per_round, w.locks
            ),
        ));
    }
    if let Some(p) = &raw.shared_ratio {
        w.shared_ratio = src.probability(p, "lock_clients.shared_ratio")?;
    }
    if let Some(r) = &raw.hold {
        (w.hold_min_ns, w.hold_max_ns) = src.range(r, "lock_clients.hold")?;
    }
    if let Some(d) = &raw.gap {
        w.gap_ns = src.positive_duration(d, "lock_clients.gap")?;
    }
    if let Some(d) = &raw.ttl {
        w.ttl_ns = src.positive_duration(d, "lock_clients.ttl")?;
    }
    if w.ttl_ns <= locks.lease_check_ns.saturating_mul(3) {
        // Point at whichever of the two the file set.
        let span = raw
            .ttl
            .as_ref()
            .map(|d| d.span())
            .or(lease_check_span)
            .unwrap_or(0..0);
        return Err(src.err(
            span,
            format!(
                "lock_clients.ttl ({}) must be more than 3 × locks.lease_check ({}), or clients (renewing every ttl/3) could not renew their sessions in time",
                format_duration(w.ttl_ns),
                format_duration(locks.lease_check_ns)
            ),
        ));
    }
    if let Some(p) = &raw.crash_ratio {
        w.crash_ratio = src.probability(p, "lock_clients.crash_ratio")?;
    }
    (w.start_ns, w.stop_ns) = client_window(
        src,
        "lock_clients",
        raw.start.as_ref(),
        raw.stop.as_ref(),
        duration_ns,
        "keep starting rounds",
    )?;
    Ok(w)
}

/// `start` and `stop` of a generated-client table (`table` names it in
/// messages): `start` defaults to 0s and `stop`, like `[workload]`'s, to 80%
/// of the duration; `stop = "end"` asks for no stop (`u64::MAX`).
/// `until_end` says what "end" keeps doing, for the bad-stop message.
fn client_window(
    src: &Source<'_>,
    table: &str,
    start: Option<&Spanned<DurText>>,
    stop: Option<&Spanned<DurText>>,
    duration_ns: Nanos,
    until_end: &str,
) -> Res<(Nanos, Nanos)> {
    let mut start_ns = 0;
    let mut stop_ns = duration_ns - duration_ns / 5;
    if let Some(d) = start {
        start_ns = src.duration(d, &format!("{table}.start"))?;
    }
    if let Some(d) = stop {
        let text = &d.get_ref().0;
        if text == STOP_AT_END {
            stop_ns = u64::MAX;
        } else {
            stop_ns = src.duration(d, &format!("{table}.stop")).map_err(|mut e| {
                if e.message == bad_duration(text) {
                    e.message = format!(
                        "bad {table}.stop \"{text}\": expected a duration like \"8s\", or \"{STOP_AT_END}\" to {until_end} until the run ends"
                    );
                }
                e
            })?;
            if stop_ns > duration_ns {
                return Err(src.err(
                    d.span(),
                    format!(
                        "{table}.stop ({}) must not be after the end of the run (duration {})",
                        format_duration(stop_ns),
                        format_duration(duration_ns)
                    ),
                ));
            }
        }
    }
    // "end" stops at the end of the run.
    let effective_stop = stop_ns.min(duration_ns);
    if start_ns > effective_stop {
        let (span, which) = match (stop, start) {
            (Some(d), _) if stop_ns == u64::MAX => {
                (d.span(), format!(", \"{STOP_AT_END}\": the end of the run"))
            }
            (Some(d), _) => (d.span(), String::new()),
            (None, Some(d)) => (d.span(), ", the default: 80% of duration".to_owned()),
            (None, None) => (0..0, String::new()),
        };
        return Err(src.err(
            span,
            format!(
                "{table}.start ({}) must not be after stop ({}{which})",
                format_duration(start_ns),
                format_duration(effective_stop)
            ),
        ));
    }
    Ok((start_ns, stop_ns))
}

/// `[redis]`. Absent, there are no shards (`RedisConfig::default()`).
/// Present, `shards` is required, since a Redis table without shards would
/// mean nothing; `ring` defaults to every shard and the rest as in
/// `RedisConfig::default()`.
fn resolve_redis(
    src: &Source<'_>,
    raw: Option<&Spanned<RawRedis>>,
    nodes: usize,
) -> Res<RedisConfig> {
    let mut c = RedisConfig::default();
    let Some(table) = raw else { return Ok(c) };
    let raw = table.get_ref();
    let Some(v) = &raw.shards else {
        return Err(src.err(
            table.span(),
            format!("[redis] needs shards, the number of Redis shards (1..={MAX_SHARDS}), like shards = 3"),
        ));
    };
    c.shards = src.int(v, "redis.shards", 1, MAX_SHARDS)? as usize;
    let names = Nodes {
        nodes,
        shards: c.shards,
    };
    // Shard indexes are below MAX_SHARDS, so they fit in u32.
    c.initial_ring = match &raw.ring {
        None => (0..c.shards as u32).collect(),
        Some(list) => distinct(src, list, "redis.ring", "shard", |s| {
            names.shard(src, s).map(|i| i as u32)
        })?,
    };
    if let Some(p) = &raw.persistence {
        let word = p.get_ref();
        c.persistence = PERSISTENCE
            .into_iter()
            .find(|&f| persistence_word(f) == word)
            .ok_or_else(|| {
                let words: Vec<String> = PERSISTENCE
                    .iter()
                    .map(|&f| format!("\"{}\"", persistence_word(f)))
                    .collect();
                src.err(
                    p.span(),
                    format!(
                        "unknown redis.persistence `{word}`: expected {}",
                        or_list(&words)
                    ),
                )
            })?;
    }
    if let Some(v) = &raw.vnodes {
        c.vnodes = src.int(v, "redis.vnodes", 1, MAX_VNODES)? as u32;
    }
    Ok(c)
}

/// `"a", "b" or "c"`.
fn or_list(words: &[String]) -> String {
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.join(""),
    }
}

/// The error for a queue table (or key) given without `[redis]`.
fn needs_redis(what: &str) -> String {
    format!("{what} needs [redis] with at least one shard: the queues live on Redis shards")
}

/// `[queue]`. Absent, `QueueConfig::default()`; present, it needs `[redis]`
/// and each field defaults as in `QueueConfig::default()`.
fn resolve_queue(
    src: &Source<'_>,
    raw: Option<&Spanned<RawQueue>>,
    redis: &RedisConfig,
) -> Res<QueueConfig> {
    let mut c = QueueConfig::default();
    let Some(table) = raw else { return Ok(c) };
    if redis.shards == 0 {
        return Err(src.err(table.span(), needs_redis("[queue]")));
    }
    let raw = table.get_ref();
    if let Some(list) = &raw.queues {
        c.queues = queue_names(src, list)?;
    }
    if let Some(v) = &raw.partitions {
        c.partitions = src.int(v, "queue.partitions", 1, MAX_PARTITIONS)? as u32;
    }
    if let Some(d) = &raw.visibility {
        c.visibility_ns = src.positive_duration(d, "queue.visibility")?;
    }
    if let Some(v) = &raw.max_attempts {
        c.max_attempts = src.int(v, "queue.max_attempts", 1, MAX_ATTEMPTS)? as u32;
    }
    Ok(c)
}

/// `queue.queues`: 1..=MAX_QUEUES distinct names. The names become parts of
/// Redis keys and trace lines, so they are kept to a plain alphabet.
fn queue_names(src: &Source<'_>, list: &NameList) -> Res<Vec<String>> {
    if list.get_ref().len() > MAX_QUEUES {
        return Err(src.err(
            list.span(),
            format!(
                "queue.queues must name at most {MAX_QUEUES} queues, got {}",
                list.get_ref().len()
            ),
        ));
    }
    distinct(src, list, "queue.queues", "queue", |s| {
        let name = s.get_ref();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(name.clone())
        } else {
            Err(src.err(
                s.span(),
                format!(
                    "queue.queues names must be letters, digits, '_' and '-' (like \"jobs\"), got {name:?}"
                ),
            ))
        }
    })
}

/// `[queue_clients]`. Absent, it is exactly `QueueWorkload::default()` (no
/// producers or consumers, no stop). Present, it needs `[redis]`, and every
/// field defaults as in `QueueWorkload::default()` except `stop`, which
/// defaults like `[lock_clients]`'s (80% of the duration); `stop = "end"` is
/// no stop, which is how `scenario_to_toml` writes one, so both round-trip.
fn resolve_queue_clients(
    src: &Source<'_>,
    raw: Option<&Spanned<RawQueueClients>>,
    duration_ns: Nanos,
    redis: &RedisConfig,
) -> Res<QueueWorkload> {
    let mut w = QueueWorkload::default();
    let Some(table) = raw else { return Ok(w) };
    let raw = table.get_ref();
    if redis.shards == 0 {
        // Point at the clients that would talk to the missing shards, if any.
        let busy = [
            (&raw.producers, "queue_clients.producers"),
            (&raw.consumers, "queue_clients.consumers"),
        ]
        .into_iter()
        .find_map(|(v, what)| {
            v.as_ref()
                .filter(|v| *v.get_ref() > 0)
                .map(|v| (v.span(), what))
        });
        let (span, what) = busy.unwrap_or((table.span(), "[queue_clients]"));
        return Err(src.err(span, needs_redis(what)));
    }
    if let Some(v) = &raw.producers {
        w.producers = src.int(v, "queue_clients.producers", 0, MAX_CLIENTS)? as usize;
    }
    if let Some(v) = &raw.consumers {
        w.consumers = src.int(v, "queue_clients.consumers", 0, MAX_CLIENTS)? as usize;
    }
    if let Some(v) = &raw.rate {
        // The cap, as for [workload], keeps a producer from flooding one instant.
        let rate = src.rate(v, "queue_clients.rate", "messages per second per producer")?;
        w.rate_per_s = rate;
    }
    if let Some(v) = &raw.batch {
        w.batch = src.int(v, "queue_clients.batch", 1, MAX_BATCH)? as u32;
    }
    if let Some(v) = &raw.keys {
        w.keys = src.int(v, "queue_clients.keys", 0, MAX_ORDERING_KEYS)? as u32;
    }
    if let Some(p) = &raw.hot_ratio {
        w.hot_ratio = src.probability(p, "queue_clients.hot_ratio")?;
    }
    if let Some(p) = &raw.poison_ratio {
        w.poison_ratio = src.probability(p, "queue_clients.poison_ratio")?;
    }
    if let Some(v) = &raw.consume_batch {
        w.consume_batch = src.int(v, "queue_clients.consume_batch", 1, MAX_BATCH)? as u32;
    }
    if let Some(r) = &raw.process {
        (w.process_min_ns, w.process_max_ns) = src.range(r, "queue_clients.process")?;
    }
    if let Some(p) = &raw.crash_ratio {
        w.crash_ratio = src.probability(p, "queue_clients.crash_ratio")?;
    }
    if let Some(d) = &raw.down {
        w.consumer_down_ns = src.positive_duration(d, "queue_clients.down")?;
    }
    (w.start_ns, w.stop_ns) = client_window(
        src,
        "queue_clients",
        raw.start.as_ref(),
        raw.stop.as_ref(),
        duration_ns,
        "keep producing",
    )?;
    Ok(w)
}

/// The error for a cache table or step given without `[cache]`.
fn needs_cache(what: &str) -> String {
    format!("{what} needs [cache]: without it the nodes have no caches")
}

/// `[cache]`. Absent, `CacheConfig::default()` (no caches); present, the
/// caches are on (`enabled`), it needs `[redis]` (shard `s1` is the caches'
/// memory), and each field defaults as in `CacheConfig::default()`.
fn resolve_cache(
    src: &Source<'_>,
    raw: Option<&Spanned<RawCache>>,
    redis: &RedisConfig,
    names: &Nodes,
) -> Res<CacheConfig> {
    let mut c = CacheConfig::default();
    let Some(table) = raw else { return Ok(c) };
    if redis.shards == 0 {
        return Err(src.err(
            table.span(),
            "[cache] needs [redis] with at least one shard: shard s1 is the caches' memory",
        ));
    }
    c.enabled = true;
    let raw = table.get_ref();
    if let Some(p) = &raw.protocol {
        let word = p.get_ref();
        c.protocol = CACHE_PROTOCOLS
            .into_iter()
            .find(|&p| protocol_word(p) == word)
            .ok_or_else(|| {
                let words: Vec<String> = CACHE_PROTOCOLS
                    .iter()
                    .map(|&p| format!("\"{}\"", protocol_word(p)))
                    .collect();
                src.err(
                    p.span(),
                    format!(
                        "unknown cache.protocol `{word}`: expected {}",
                        or_list(&words)
                    ),
                )
            })?;
    }
    if let Some(v) = &raw.capacity {
        c.capacity = src.int(v, "cache.capacity", 1, MAX_CACHE_CAPACITY)? as usize;
    }
    if let Some(a) = &raw.arbiter {
        c.arbiter = names.node(src, a, "cache.arbiter")?;
    }
    if let Some(d) = &raw.timeout {
        c.op_timeout_ns = src.duration_at_least(d, "cache.timeout", MIN_CACHE_TIMEOUT_NS)?;
    }
    Ok(c)
}

/// `[cache_clients]`. Absent, it is exactly `CacheWorkload::default()` (no
/// ops, no stop). Present, it needs `[cache]`, and every field defaults as in
/// `CacheWorkload::default()` (so without `rate` there are still no ops)
/// except `stop`, which defaults like `[lock_clients]`'s (80% of the
/// duration); `stop = "end"` is no stop, which is how `scenario_to_toml`
/// writes one, so both round-trip.
fn resolve_cache_clients(
    src: &Source<'_>,
    raw: Option<&Spanned<RawCacheClients>>,
    duration_ns: Nanos,
    cache: &CacheConfig,
) -> Res<CacheWorkload> {
    let mut w = CacheWorkload::default();
    let Some(table) = raw else { return Ok(w) };
    if !cache.enabled {
        return Err(src.err(table.span(), needs_cache("[cache_clients]")));
    }
    let raw = table.get_ref();
    if let Some(v) = &raw.rate {
        let rate = src.rate(v, "cache_clients.rate", "ops per second per node")?;
        w.rate_per_s = rate;
    }
    if let Some(v) = &raw.keys {
        w.keys = src.int(v, "cache_clients.keys", 1, MAX_CACHE_KEYS)? as u32;
    }
    if let Some(v) = &raw.zipf {
        let zipf = *v.get_ref();
        // `contains` is false for NaN, so NaN is rejected here too.
        if !(0.0..=MAX_ZIPF).contains(&zipf) {
            return Err(src.err(
                v.span(),
                format!(
                    "cache_clients.zipf must be between 0 (uniform) and {MAX_ZIPF}, got {zipf}"
                ),
            ));
        }
        w.zipf = zipf;
    }
    if let Some(p) = &raw.write_ratio {
        w.write_ratio = src.probability(p, "cache_clients.write_ratio")?;
    }
    (w.start_ns, w.stop_ns) = client_window(
        src,
        "cache_clients",
        raw.start.as_ref(),
        raw.stop.as_ref(),
        duration_ns,
        "keep issuing ops",
    )?;
    Ok(w)
}

fn resolve_expect(src: &Source<'_>, raw: Option<RawExpect>) -> Res<Expectations> {
    let mut e = Expectations {
        linearizable: true,
        linearizability_steps: DEFAULT_LINEARIZABILITY_STEPS,
        ..Expectations::default()
    };
    let Some(raw) = raw else { return Ok(e) };
    if let Some(d) = &raw.leader_within {
        e.leader_within_ns = Some(src.positive_duration(d, "leader_within")?);
    }
    if let Some(d) = &raw.leader_after_last_fault {
        e.leader_after_last_fault_ns = Some(src.positive_duration(d, "leader_after_last_fault")?);
    }
    e.acked_writes_applied_everywhere = raw.acked_writes_applied_everywhere.unwrap_or(false);
    e.min_completed_ops = raw.min_completed_ops.map_or(0, |v| v.into_inner().0);
    e.linearizable = raw.linearizable.unwrap_or(true);
    if let Some(v) = &raw.linearizability_steps {
        e.linearizability_steps = src.int(v, "linearizability_steps", 1, i64::MAX)? as u64;
    }
    Ok(e)
}

const CRASH_ROLES: &[(&str, Target)] =
    &[("leader", Target::Leader), ("follower", Target::Follower)];

/// One `[[step]]`, with the span of its action value for later timeline errors.
fn resolve_step(
    src: &Source<'_>,
    step: &Spanned<RawStep>,
    names: &Nodes,
    keys: &mut Keys,
    base_link: &LinkConfig,
    duration_ns: Nanos,
    caches: bool,
) -> Res<(Step, Range<usize>)> {
    let s = step.get_ref();
    let at_ns = src.duration(&s.at, "at")?;
    if at_ns > duration_ns {
        return Err(src.err(
            s.at.span(),
            format!(
                "step at {} is after the end of the run (duration {})",
                format_duration(at_ns),
                format_duration(duration_ns)
            ),
        ));
    }
    let present: Vec<(&str, Range<usize>)> = [
        ("crash", s.crash.as_ref().map(Spanned::span)),
        ("restart", s.restart.as_ref().map(Spanned::span)),
        ("pause", s.pause.as_ref().map(Spanned::span)),
        ("resume", s.resume.as_ref().map(Spanned::span)),
        ("partition", s.partition.as_ref().map(Spanned::span)),
        (
            "partition_oneway",
            s.partition_oneway.as_ref().map(Spanned::span),
        ),
        ("heal", s.heal.as_ref().map(Spanned::span)),
        ("network", s.network.as_ref().map(Spanned::span)),
        ("clock", s.clock.as_ref().map(Spanned::span)),
        ("client", s.client.as_ref().map(Spanned::span)),
        ("add_shard", s.add_shard.as_ref().map(Spanned::span)),
        ("remove_shard", s.remove_shard.as_ref().map(Spanned::span)),
        ("cache", s.cache.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(name, span)| span.map(|sp| (name, sp)))
    .collect();
    let span = match present.as_slice() {
        [(_, span)] => span.clone(),
        [] => {
            return Err(src.err(
                step.span(),
                format!("a step needs exactly one action ({ACTIONS}); this one has none"),
            ));
        }
        [.., (_, last)] => {
            let list: Vec<&str> = present.iter().map(|(n, _)| *n).collect();
            return Err(src.err(
                last.clone(),
                format!(
                    "a step needs exactly one action ({ACTIONS}); this one has {}: {}",
                    present.len(),
                    list.join(", ")
                ),
            ));
        }
    };

    let action = if let Some(t) = &s.crash {
        Action::Crash(names.target(src, t, "crash", CRASH_ROLES, true)?)
    } else if let Some(t) = &s.restart {
        Action::Restart(names.target(
            src,
            t,
            "restart",
            &[("last_crashed", Target::LastCrashed)],
            true,
        )?)
    } else if let Some(t) = &s.pause {
        Action::Pause(names.target(src, t, "pause", CRASH_ROLES, true)?)
    } else if let Some(t) = &s.resume {
        Action::Resume(names.target(
            src,
            t,
            "resume",
            &[("last_paused", Target::LastPaused)],
            true,
        )?)
    } else if let Some(p) = &s.partition {
        Action::Partition(resolve_partition(src, p, names)?)
    } else if let Some(o) = &s.partition_oneway {
        let o = o.get_ref();
        let from = names.place_set(src, &o.from, "from")?;
        let to = names.place_set(src, &o.to, "to")?;
        if let Some((name, _)) =
            o.to.get_ref()
                .iter()
                .zip(&to)
                .find(|(_, p)| from.contains(p))
        {
            return Err(src.err(
                name.span(),
                format!(
                    "{} is in both from and to; a one-way partition needs disjoint sides",
                    name.get_ref()
                ),
            ));
        }
        Action::PartitionOneWay { from, to }
    } else if let Some(h) = &s.heal {
        if !*h.get_ref() {
            return Err(src.err(
                h.span(),
                "heal must be true (remove the step to do nothing)",
            ));
        }
        Action::Heal
    } else if let Some(n) = &s.network {
        resolve_network_change(src, n, names, base_link)?
    } else if let Some(c) = &s.clock {
        let c_ref = c.get_ref();
        if c_ref.offset.is_none() && c_ref.drift_ppm.is_none() && c_ref.step.is_none() {
            return Err(src.err(
                c.span(),
                "clock needs at least one of offset, drift_ppm, step",
            ));
        }
        Action::Clock {
            node: names.node(src, &c_ref.node, "clock")?,
            offset_ns: c_ref
                .offset
                .as_ref()
                .map(|d| src.signed_duration(d, "offset"))
                .transpose()?,
            drift_ppm: c_ref
                .drift_ppm
                .as_ref()
                .map(|d| src.int(d, "drift_ppm", -MAX_DRIFT_PPM, MAX_DRIFT_PPM))
                .transpose()?,
            step_ns: c_ref
                .step
                .as_ref()
                .map(|d| src.signed_duration(d, "step"))
                .transpose()?,
        }
    } else if let Some(c) = &s.client {
        resolve_client(src, c.get_ref(), names, keys)?
    } else if let Some(t) = &s.add_shard {
        // Shard indexes are below MAX_SHARDS, so they fit in u32.
        Action::AddShard(names.shard(src, t)? as u32)
    } else if let Some(t) = &s.remove_shard {
        Action::RemoveShard(names.shard(src, t)? as u32)
    } else if let Some(c) = &s.cache {
        if !caches {
            return Err(src.err(c.span(), needs_cache("a cache step")));
        }
        resolve_cache_step(src, c.get_ref(), names)?
    } else {
        unreachable!("exactly one action is present")
    };
    Ok((
        Step {
            at_ns,
            action,
            line: src.line(&step.span()),
        },
        span,
    ))
}

fn resolve_partition(
    src: &Source<'_>,
    p: &Spanned<Vec<NameList>>,
    names: &Nodes,
) -> Res<Vec<Vec<usize>>> {
    if p.get_ref().is_empty() {
        return Err(src.err(
            p.span(),
            "partition needs at least one group, like [[\"n1\"], [\"n2\", \"n3\"]]",
        ));
    }
    let mut seen: Vec<(usize, Range<usize>)> = Vec::new();
    let mut groups = Vec::new();
    for group in p.get_ref() {
        if group.get_ref().is_empty() {
            return Err(src.err(
                group.span(),
                format!(
                    "a partition group must name at least one {}",
                    names.place_noun()
                ),
            ));
        }
        let mut g = Vec::new();
        for name in group.get_ref() {
            let n = names.place(src, name)?;
            if let Some((_, first)) = seen.iter().find(|(m, _)| *m == n) {
                let (line, col) = src.line_col(first.start);
                return Err(src.err(
                    name.span(),
                    format!(
                        "{} is named twice in this partition (first at line {line}, column {col}); groups must be disjoint",
                        name.get_ref()
                    ),
                ));
            }
            seen.push((n, name.span()));
            g.push(n);
        }
        groups.push(g);
    }
    Ok(groups)
}

fn resolve_network_change(
    src: &Source<'_>,
    n: &Spanned<RawNetworkChange>,
    names: &Nodes,
    base_link: &LinkConfig,
) -> Res<Action> {
    let r = n.get_ref();
    if r.latency.is_none()
        && r.loss.is_none()
        && r.duplicate.is_none()
        && r.reorder.is_none()
        && r.reorder_delay_max.is_none()
    {
        return Err(src.err(
            n.span(),
            "network needs at least one of latency, loss, duplicate, reorder, reorder_delay_max",
        ));
    }
    let config = src.link_config(*base_link, &link_fields!(r))?;
    let link = match &r.link {
        None => None,
        Some(l) => {
            let [from, to] = l.get_ref().as_slice() else {
                return Err(src.err(
                    l.span(),
                    "link must be a pair of node names like [\"n1\", \"n2\"]",
                ));
            };
            let (a, b) = (
                names.node(src, from, "network link")?,
                names.node(src, to, "network link")?,
            );
            if a == b {
                return Err(src.err(to.span(), "a link must join two different nodes"));
            }
            Some((a, b))
        }
    };
    let both_ways = match &r.both_ways {
        Some(b) if link.is_none() => {
            return Err(src.err(
                b.span(),
                "both_ways needs link; without link the change applies to every link",
            ));
        }
        Some(b) => *b.get_ref(),
        None => false,
    };
    Ok(Action::Network {
        link,
        both_ways,
        config,
    })
}

fn resolve_client(src: &Source<'_>, c: &RawClient, names: &Nodes, keys: &mut Keys) -> Res<Action> {
    let client = src.int(&c.id, "client id", 0, MAX_CLIENT_ID)? as usize;
    let node = names.target(src, &c.node, "client", CRASH_ROLES, false)?;
    let key = keys.index(src, &c.key)?;
    let op = match (c.op.get_ref().as_str(), &c.value) {
        ("get", None) => ClientOp::Get { key },
        ("get", Some(v)) => return Err(src.err(v.span(), "a get takes no value")),
        ("put", Some(v)) => ClientOp::Put {
            key,
            value: v.get_ref().0,
        },
        ("put", None) => return Err(src.err(c.op.span(), "a put needs a value, like value = 7")),
        (other, _) => {
            return Err(src.err(
                c.op.span(),
                format!("unknown op `{other}`: expected \"get\" or \"put\""),
            ));
        }
    };
    Ok(Action::Client { client, node, op })
}

/// A `cache` step's node and op; `[cache]` is checked by the caller.
fn resolve_cache_step(src: &Source<'_>, c: &RawCacheStep, names: &Nodes) -> Res<Action> {
    let node = names.node(src, &c.node, "cache")?;
    let word = c.op.get_ref().as_str();
    let Some(&name) = CACHE_OPS.iter().find(|&&op| op == word) else {
        let words: Vec<String> = CACHE_OPS.iter().map(|op| format!("\"{op}\"")).collect();
        return Err(src.err(
            c.op.span(),
            format!("unknown cache op `{word}`: expected {}", or_list(&words)),
        ));
    };
    let key = match (name, &c.key) {
        ("dump", None) => 0,
        ("dump", Some(k)) => return Err(src.err(k.span(), "a dump takes no key")),
        (_, Some(k)) => src.int(k, "cache key", 0, i64::from(u32::MAX))? as u32,
        (_, None) => {
            return Err(src.err(
                c.op.span(),
                format!("{} {name} needs a key, like key = 3", article(name)),
            ));
        }
    };
    let value = match (name, &c.value) {
        ("put", Some(v)) => v.get_ref().0,
        ("put", None) => return Err(src.err(c.op.span(), "a put needs a value, like value = 7")),
        (_, Some(v)) => {
            return Err(src.err(v.span(), format!("{} {name} takes no value", article(name))));
        }
        (_, None) => 0,
    };
    let op = match name {
        "get" => CacheOp::Get { key },
        "put" => CacheOp::Put { key, value },
        "invalidate" => CacheOp::Invalidate { key },
        "fetch" => CacheOp::Fetch { key },
        _ => CacheOp::Dump,
    };
    Ok(Action::Cache { node, op })
}

/// "a" or "an" before `word`, for messages that name a cache op.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// What the static timeline check knows about one node being up.
#[derive(Clone, Copy)]
enum Life {
    Up {
        restarted_by: Option<usize>,
    },
    Down {
        line: usize,
        seq: usize,
    },
    /// A role-based crash may or may not have hit it.
    Unknown,
}

/// What the static timeline check knows about one node being paused.
#[derive(Clone, Copy)]
enum Paused {
    No {
        resumed_by: Option<usize>,
    },
    Yes {
        line: usize,
        seq: usize,
    },
    /// Not paused: the crash by the step at `line` ended whatever pause
    /// there was (a restarted node comes back running).
    Crashed {
        line: usize,
    },
    Unknown,
}

/// Rejects timelines that cannot do what they say, walking steps in time order.
/// Role targets ("leader", "follower") make the affected state unknown, and
/// checks on unknown state are skipped rather than guessed.
///
/// Shards named in steps are checked like nodes, at their place numbers.
/// Every role word ("leader", "follower", "last_crashed", "last_paused")
/// picks only nodes, as in the simulator, so role steps read and change only
/// the nodes' state.
fn check_timeline(src: &Source<'_>, steps: &[(Step, Range<usize>)], names: &Nodes) -> Res<()> {
    let nodes = names.nodes;
    let places = nodes + names.shards;
    let mut life = vec![Life::Up { restarted_by: None }; places];
    let mut paused = vec![Paused::No { resumed_by: None }; places];
    let (mut crashed_before, mut paused_before) = (false, false);
    // A shard target becomes the node target of its place, so the named-node
    // arms below check both.
    let as_place = |t: Target| match t {
        Target::Shard(i) => Target::Node(nodes + i),
        t => t,
    };
    for (seq, (step, span)) in steps.iter().enumerate() {
        let at = format_duration(step.at_ns);
        let fail = |msg: String| Err(src.err(span.clone(), msg));
        let action = match step.action {
            Action::Crash(t) => Action::Crash(as_place(t)),
            Action::Restart(t) => Action::Restart(as_place(t)),
            Action::Pause(t) => Action::Pause(as_place(t)),
            Action::Resume(t) => Action::Resume(as_place(t)),
            _ => continue,
        };
        match action {
            Action::Crash(Target::Node(n)) => {
                if let Life::Down { line, .. } = life[n] {
                    return fail(format!(
                        "{} is already crashed at {at} (crashed by the step at line {line})",
                        names.place_name(n)
                    ));
                }
                life[n] = Life::Down {
                    line: step.line,
                    seq,
                };
                if let Paused::Yes { .. } | Paused::Unknown = paused[n] {
                    paused[n] = Paused::Crashed { line: step.line };
                }
                crashed_before |= n < nodes;
            }
            Action::Crash(_) => {
                for n in 0..nodes {
                    if !matches!(life[n], Life::Down { .. }) {
                        life[n] = Life::Unknown;
                        if let Paused::Yes { .. } = paused[n] {
                            paused[n] = Paused::Unknown;
                        }
                    }
                }
                crashed_before = true;
            }
            Action::Restart(Target::Node(n)) => {
                match life[n] {
                    Life::Up { restarted_by: None } => {
                        return fail(format!(
                            "{} is not crashed at {at}: no earlier step crashes it",
                            names.place_name(n)
                        ));
                    }
                    Life::Up {
                        restarted_by: Some(line),
                    } => {
                        return fail(format!(
                            "{} is already up at {at} (restarted by the step at line {line})",
                            names.place_name(n)
                        ));
                    }
                    Life::Down { .. } | Life::Unknown => {}
                }
                life[n] = Life::Up {
                    restarted_by: Some(step.line),
                };
            }
            Action::Restart(_) => {
                if !crashed_before {
                    return fail(format!(
                        "restart = \"last_crashed\" at {at}, but no earlier step crashes a node"
                    ));
                }
                let life = &mut life[..nodes];
                if life.iter().all(|l| matches!(l, Life::Up { .. })) {
                    return fail(format!(
                        "restart = \"last_crashed\" at {at}, but every crashed node is up again by then"
                    ));
                }
                let latest = life
                    .iter()
                    .enumerate()
                    .filter_map(|(n, l)| match l {
                        Life::Down { seq, .. } => Some((*seq, n)),
                        _ => None,
                    })
                    .max();
                match latest {
                    Some((_, n)) if !life.iter().any(|l| matches!(l, Life::Unknown)) => {
                        life[n] = Life::Up {
                            restarted_by: Some(step.line),
                        };
                    }
                    _ => {
                        for l in life {
                            if let Life::Down { .. } = l {
                                *l = Life::Unknown;
                            }
                        }
                    }
                }
            }
            Action::Pause(Target::Node(n)) => {
                if let Life::Down { line, .. } = life[n] {
                    return fail(format!(
                        "{} is crashed at {at} (crashed by the step at line {line}), so it cannot be paused",
                        names.place_name(n)
                    ));
                }
                if let Paused::Yes { line, .. } = paused[n] {
                    return fail(format!(
                        "{} is already paused at {at} (paused by the step at line {line})",
                        names.place_name(n)
                    ));
                }
                paused[n] = Paused::Yes {
                    line: step.line,
                    seq,
                };
                paused_before |= n < nodes;
            }
            Action::Pause(_) => {
                for p in &mut paused[..nodes] {
                    if let Paused::No { .. } | Paused::Crashed { .. } = p {
                        *p = Paused::Unknown;
                    }
                }
                paused_before = true;
            }
            Action::Resume(Target::Node(n)) => {
                match paused[n] {
                    Paused::No { resumed_by: None } => {
                        return fail(format!(
                            "{} is not paused at {at}: no earlier step pauses it",
                            names.place_name(n)
                        ));
                    }
                    Paused::No {
                        resumed_by: Some(line),
                    } => {
                        return fail(format!(
                            "{} is not paused at {at} (already resumed by the step at line {line})",
                            names.place_name(n)
                        ));
                    }
                    Paused::Crashed { line } => {
                        return fail(format!(
                            "{} is not paused at {at}: the step at line {line} crashed it, and a crash ends a pause",
                            names.place_name(n)
                        ));
                    }
                    Paused::Yes { .. } | Paused::Unknown => {}
                }
                paused[n] = Paused::No {
                    resumed_by: Some(step.line),
                };
            }
            Action::Resume(_) => {
                if !paused_before {
                    return fail(format!(
                        "resume = \"last_paused\" at {at}, but no earlier step pauses a node"
                    ));
                }
                let paused = &mut paused[..nodes];
                if paused
                    .iter()
                    .all(|p| matches!(p, Paused::No { .. } | Paused::Crashed { .. }))
                {
                    let ended = if paused.iter().any(|p| matches!(p, Paused::Crashed { .. })) {
                        "resumed or crashed"
                    } else {
                        "resumed"
                    };
                    return fail(format!(
                        "resume = \"last_paused\" at {at}, but every paused node is {ended} by then"
                    ));
                }
                let latest = paused
                    .iter()
                    .enumerate()
                    .filter_map(|(n, p)| match p {
                        Paused::Yes { seq, .. } => Some((*seq, n)),
                        _ => None,
                    })
                    .max();
                match latest {
                    Some((_, n)) if !paused.iter().any(|p| matches!(p, Paused::Unknown)) => {
                        paused[n] = Paused::No {
                            resumed_by: Some(step.line),
                        };
                    }
                    _ => {
                        for p in paused {
                            if let Paused::Yes { .. } = p {
                                *p = Paused::Unknown;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn dur(ns: Nanos) -> String {
    quote(&format_duration(ns))
}

/// A generated-client stop. Always explicit: an absent stop would read back
/// as 80% of the duration, so "no stop" (u64::MAX) is written as "end".
fn stop_text(ns: Nanos) -> String {
    if ns == u64::MAX {
        quote(STOP_AT_END)
    } else {
        dur(ns)
    }
}

fn dur_pair(min: Nanos, max: Nanos) -> String {
    format!("[{}, {}]", dur(min), dur(max))
}

/// Shortest float text that reads back to the same f64.
fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// TOML integers are i64, so larger values go out as decimal strings (see `U64`).
fn u64_value(v: u64) -> String {
    match i64::try_from(v) {
        Ok(i) => i.to_string(),
        Err(_) => quote(&v.to_string()),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn node_list(nodes: &[usize]) -> String {
    format!("[{}]", join(nodes.iter().map(|&n| quote(&node_name(n)))))
}

/// Places (nodes, then shards) of scenario `s` by name, as partitions take them.
fn place_list(s: &Scenario, places: &[usize]) -> String {
    let names = places.iter().map(|&p| quote(&place_name(s.nodes, p)));
    format!("[{}]", join(names))
}

/// Every link field as `key = value`, for table lines or an inline table.
fn link_fields_text(c: &LinkConfig) -> Vec<String> {
    vec![
        format!("latency = {}", dur_pair(c.latency_min_ns, c.latency_max_ns)),
        format!("loss = {}", float(c.loss)),
        format!("duplicate = {}", float(c.duplicate)),
        format!("reorder = {}", float(c.reorder)),
        format!("reorder_delay_max = {}", dur(c.reorder_delay_max_ns)),
    ]
}

fn write_link_fields(out: &mut String, c: &LinkConfig) {
    for field in link_fields_text(c) {
        out.push_str(&field);
        out.push('\n');
    }
}

fn cache_step_toml(node: usize, op: &CacheOp) -> String {
    let node = quote(&node_name(node));
    match *op {
        CacheOp::Get { key } => format!("cache = {{ node = {node}, op = \"get\", key = {key} }}"),
        CacheOp::Put { key, value } => {
            // Values above i64::MAX go out as decimal strings (see `U64`).
            let value = u64_value(value);
            format!("cache = {{ node = {node}, op = \"put\", key = {key}, value = {value} }}")
        }
        CacheOp::Invalidate { key } => {
            format!("cache = {{ node = {node}, op = \"invalidate\", key = {key} }}")
        }
        CacheOp::Fetch { key } => {
            format!("cache = {{ node = {node}, op = \"fetch\", key = {key} }}")
        }
        CacheOp::Dump => format!("cache = {{ node = {node}, op = \"dump\" }}"),
    }
}

fn target_text(t: Target) -> String {
    let word = match t {
        Target::Node(n) => return quote(&node_name(n)),
        Target::Leader => "leader",
        Target::Follower => "follower",
        Target::LastCrashed => "last_crashed",
        Target::LastPaused => "last_paused",
        Target::Shard(i) => return quote(&shard_name(i)),
    };
    quote(word)
}

fn action_toml(s: &Scenario, action: &Action) -> String {
    match action {
        Action::Crash(t) => format!("crash = {}", target_text(*t)),
        Action::Restart(t) => format!("restart = {}", target_text(*t)),
        Action::Pause(t) => format!("pause = {}", target_text(*t)),
        Action::Resume(t) => format!("resume = {}", target_text(*t)),
        Action::Partition(groups) => {
            format!(
                "partition = [{}]",
                join(groups.iter().map(|g| place_list(s, g)))
            )
        }
        Action::PartitionOneWay { from, to } => format!(
            "partition_oneway = {{ from = {}, to = {} }}",
            place_list(s, from),
            place_list(s, to)
        ),
        Action::Heal => "heal = true".to_owned(),
        Action::Cache { node, op } => cache_step_toml(*node, op),
        Action::AddShard(i) => format!("add_shard = {}", quote(&shard_name(*i as usize))),
        Action::RemoveShard(i) => format!("remove_shard = {}", quote(&shard_name(*i as usize))),
        Action::Network {
            link,
            both_ways,
            config,
        } => {
            let mut fields = link_fields_text(config);
            if let Some((a, b)) = link {
                fields.push(format!("link = {}", node_list(&[*a, *b])));
                // both_ways without link is rejected by the parser, and means nothing.
                if *both_ways {
                    fields.push("both_ways = true".to_owned());
                }
            }
            format!("network = {{ {} }}", fields.join(", "))
        }
        Action::Clock {
            node,
            offset_ns,
            drift_ppm,
            step_ns,
        } => {
            let mut fields = vec![format!("node = {}", quote(&node_name(*node)))];
            if let Some(o) = offset_ns {
                fields.push(format!("offset = {}", quote(&format_signed_duration(*o))));
            }
            if let Some(d) = drift_ppm {
                fields.push(format!("drift_ppm = {d}"));
            }
            if let Some(st) = step_ns {
                fields.push(format!("step = {}", quote(&format_signed_duration(*st))));
            }
            format!("clock = {{ {} }}", fields.join(", "))
        }
        Action::Client { client, node, op } => {
            let (name, key, value) = match op {
                ClientOp::Get { key } => ("get", *key, None),
                ClientOp::Put { key, value } => ("put", *key, Some(*value)),
            };
            let key_name = s
                .key_names
                .get(key as usize)
                .cloned()
                .unwrap_or_else(|| format!("k{key}"));
            let value = value.map_or(String::new(), |v| format!(", value = {}", u64_value(v)));
            format!(
                "client = {{ id = {client}, node = {}, op = {}, key = {}{value} }}",
                target_text(*node),
                quote(name),
                quote(&key_name)
            )
        }
    }
}

fn step_key(step: &Step) -> Option<usize> {
    match &step.action {
        Action::Client {
            op: ClientOp::Get { key } | ClientOp::Put { key, .. },
            ..
        } => Some(*key as usize),
        _ => None,
    }
}

/// Order in which to write the timeline. The parser sorts steps by time (ties
/// in file order) and numbers scripted keys by first appearance in the file,
/// so steps at different times may be written in any order, and this picks
/// one where each scripted key first appears in index order: at each point it
/// writes the earliest pending step that introduces no key or the next one.
fn writing_order(s: &Scenario) -> Vec<usize> {
    // Chains of steps at the same time, each written in its own order.
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (i, step) in s.timeline.iter().enumerate() {
        match chains.last_mut() {
            Some(chain) if s.timeline[chain[0]].at_ns == step.at_ns => chain.push(i),
            _ => chains.push(vec![i]),
        }
    }
    let mut heads = vec![0usize; chains.len()];
    let mut next_key = s.workload.keys;
    let mut order = Vec::with_capacity(s.timeline.len());
    // Chains before `first` are fully written; skipping them keeps the usual
    // time-ordered case linear.
    let mut first = 0;
    while order.len() < s.timeline.len() {
        while heads[first] == chains[first].len() {
            first += 1;
        }
        let pending = || (first..chains.len()).filter(|&c| heads[c] < chains[c].len());
        let fits = |c: &usize| match step_key(&s.timeline[chains[*c][heads[*c]]]) {
            Some(k) => k <= next_key || k >= s.key_names.len(),
            None => true,
        };
        // A valid parsed scenario always has a fitting step; fall back for hand-built ones.
        let Some(c) = pending().find(fits).or_else(|| pending().next()) else {
            break;
        };
        let i = chains[c][heads[c]];
        heads[c] += 1;
        if step_key(&s.timeline[i]) == Some(next_key) {
            next_key += 1;
        }
        order.push(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"t\"\ndescription = \"d\"\nnodes = 5\nduration = \"10s\"\n";

    /// Parses `HEAD + body` (so `body` starts at line 5) and returns the error.
    fn error(body: &str) -> ScenarioError {
        match parse_scenario(&format!("{HEAD}{body}"), "t.toml") {
            Ok(_) => panic!("expected an error for:\n{body}"),
            Err(e) => e,
        }
    }

    fn assert_error(body: &str, line: usize, col: usize, message: &str) {
        let e = error(body);
        assert_eq!(
            (e.line, e.col, e.message.as_str()),
            (line, col, message),
            "for:\n{body}"
        );
    }

    fn assert_error_contains(body: &str, fragment: &str) {
        let e = error(body);
        assert!(e.message.contains(fragment), "{e} lacks {fragment:?}");
    }

    fn step_header_lines(text: &str) -> Vec<usize> {
        let lines = text.lines().enumerate();
        lines
            .filter(|(_, l)| l.trim_start().starts_with("[[step]]"))
            .map(|(i, _)| i + 1)
            .collect()
    }

    fn without_lines(mut s: Scenario) -> Scenario {
        for step in &mut s.timeline {
            step.line = 0;
        }
        s
    }

    const FULL: &str = r#"name = "full-1"
description = "Every section set."
nodes = 5
duration = "10s"
seed = 42
bugs = ["raft.read_without_quorum"]

[network]
latency = ["2ms", "8ms"]
loss = 0.01
duplicate = 0.02
reorder = 0.1
reorder_delay_max = "30ms"

[[network.link]]
from = "n1"
to = "n2"
both_ways = true
loss = 0.5

[raft]
election_timeout = ["200ms", "400ms"]
heartbeat = "40ms"
pre_vote = false
check_quorum = false
snapshot_threshold = 100
max_entries_per_append = 16

[clock.n3]
offset = "-20ms"
drift_ppm = 500

[workload]
clients = 3
rate = 25
keys = 3
read_ratio = 0.25
start = "100ms"
stop = "8s"
request_timeout = "250ms"
op_timeout = "1.5s"

[locks]
wait = "500ms"
lease_check = "10ms"
reentry_limit = 3

[lock_clients]
clients = 4
locks = 3
max_per_round = 3
shared_ratio = 0.5
hold = ["5ms", "40ms"]
gap = "30ms"
ttl = "600ms"
crash_ratio = 0.1
start = "200ms"

[expect]
leader_within = "1s"
leader_after_last_fault = "1500ms"
acked_writes_applied_everywhere = true
min_completed_ops = 10
linearizable = false

[[step]]
at = "3s"
restart = "last_crashed"

[[step]]
at = "2s"
crash = "leader"

[[step]]
at = "2s"
partition = [["n1", "n2"], ["n3"]]

[[step]]
at = "2.5s"
partition_oneway = { from = ["n4"], to = ["n5", "n1"] }

[[step]]
at = "4s"
heal = true

[[step]]
at = "4s"
network = { loss = 0.3, link = ["n2", "n3"], both_ways = true }

[[step]]
at = "5s"
clock = { node = "n2", step = "-500ms" }

[[step]]
at = "6s"
pause = "follower"

[[step]]
at = "7s"
resume = "last_paused"

[[step]]
at = "1s"
client = { id = 0, node = "leader", op = "put", key = "x", value = 7 }

[[step]]
at = "1.5s"
client = { id = 1, node = "n2", op = "get", key = "k2" }
"#;

    fn full_expected() -> Scenario {
        let ms = NS_PER_MS;
        let base = LinkConfig {
            latency_min_ns: 2 * ms,
            latency_max_ns: 8 * ms,
            loss: 0.01,
            duplicate: 0.02,
            reorder: 0.1,
            reorder_delay_max_ns: 30 * ms,
        };
        let over = LinkConfig { loss: 0.5, ..base };
        let lines = step_header_lines(FULL);
        let step = |at_ns: u64, action: Action, nth: usize| Step {
            at_ns,
            action,
            line: lines[nth],
        };
        let mut clocks = vec![ClockConfig::default(); 5];
        clocks[2] = ClockConfig {
            offset_ns: -20 * ms as i64,
            drift_ppm: 500,
        };
        let bugs = Bugs {
            read_without_quorum: true,
            ..Bugs::default()
        };
        Scenario {
            name: "full-1".into(),
            description: "Every section set.".into(),
            nodes: 5,
            seed: 42,
            duration_ns: 10 * NS_PER_S,
            network: NetworkConfig {
                link: base,
                overrides: vec![(0, 1, over), (1, 0, over)],
            },
            raft: RaftConfig {
                election_timeout_min_ns: 200 * ms,
                election_timeout_max_ns: 400 * ms,
                heartbeat_ns: 40 * ms,
                pre_vote: false,
                check_quorum: false,
                snapshot_threshold: 100,
                max_entries_per_append: 16,
            },
            clocks,
            workload: Workload {
                clients: 3,
                rate_per_s: 25.0,
                keys: 3,
                read_ratio: 0.25,
                start_ns: 100 * ms,
                stop_ns: 8 * NS_PER_S,
                request_timeout_ns: 250 * ms,
                op_timeout_ns: 1500 * ms,
            },
            timeline: vec![
                step(
                    NS_PER_S,
                    Action::Client {
                        client: 0,
                        node: Target::Leader,
                        op: ClientOp::Put { key: 3, value: 7 },
                    },
                    9,
                ),
                step(
                    1500 * ms,
                    Action::Client {
                        client: 1,
                        node: Target::Node(1),
                        op: ClientOp::Get { key: 2 },
                    },
                    10,
                ),
                step(2 * NS_PER_S, Action::Crash(Target::Leader), 1),
                step(
                    2 * NS_PER_S,
                    Action::Partition(vec![vec![0, 1], vec![2]]),
                    2,
                ),
                step(
                    2500 * ms,
                    Action::PartitionOneWay {
                        from: vec![3],
                        to: vec![4, 0],
                    },
                    3,
                ),
                step(3 * NS_PER_S, Action::Restart(Target::LastCrashed), 0),
                step(4 * NS_PER_S, Action::Heal, 4),
                step(
                    4 * NS_PER_S,
                    Action::Network {
                        link: Some((1, 2)),
                        both_ways: true,
                        config: LinkConfig { loss: 0.3, ..base },
                    },
                    5,
                ),
                step(
                    5 * NS_PER_S,
                    Action::Clock {
                        node: 1,
                        offset_ns: None,
                        drift_ppm: None,
                        step_ns: Some(-500 * ms as i64),
                    },
                    6,
                ),
                step(6 * NS_PER_S, Action::Pause(Target::Follower), 7),
                step(7 * NS_PER_S, Action::Resume(Target::LastPaused), 8),
            ],
            expect: Expectations {
                leader_within_ns: Some(NS_PER_S),
                leader_after_last_fault_ns: Some(1500 * ms),
                acked_writes_applied_everywhere: true,
                min_completed_ops: 10,
                linearizable: false,
                linearizability_steps: DEFAULT_LINEARIZABILITY_STEPS,
            },
            bugs,
            key_names: vec!["k0".into(), "k1".into(), "k2".into(), "x".into()],
            locks: LockConfig {
                wait_ns: 500 * ms,
                lease_check_ns: 10 * ms,
                reentry_limit: 3,
            },
            lock_load: LockWorkload {
                clients: 4,
                locks: 3,
                max_per_round: 3,
                shared_ratio: 0.5,
                hold_min_ns: 5 * ms,
                hold_max_ns: 40 * ms,
                gap_ns: 30 * ms,
                ttl_ns: 600 * ms,
                crash_ratio: 0.1,
                start_ns: 200 * ms,
                // Absent: 80% of the duration, like [workload].
                stop_ns: 8 * NS_PER_S,
            },
            redis: RedisConfig::default(),
            queue: QueueConfig::default(),
            queue_load: QueueWorkload::default(),
            cache: CacheConfig::default(),
            cache_load: CacheWorkload::default(),
        }
    }

    #[test]
    fn full_file_parses_to_the_expected_model() {
        let s = parse_scenario(FULL, "full.toml").unwrap();
        assert_eq!(s, full_expected());
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let s = parse_scenario(HEAD, "t.toml").unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(
            s.network,
            NetworkConfig {
                link: default_link(),
                overrides: vec![]
            }
        );
        assert_eq!(s.raft.election_timeout_min_ns, 150 * NS_PER_MS);
        assert_eq!(s.raft.election_timeout_max_ns, 300 * NS_PER_MS);
        assert_eq!(s.raft.heartbeat_ns, 50 * NS_PER_MS);
        assert!(s.raft.pre_vote && s.raft.check_quorum);
        assert_eq!(
            (s.raft.snapshot_threshold, s.raft.max_entries_per_append),
            (1000, 64)
        );
        assert_eq!(s.clocks, vec![ClockConfig::default(); 5]);
        assert_eq!(s.workload.clients, 0);
        assert_eq!(s.workload.stop_ns, 8 * NS_PER_S);
        assert_eq!(s.workload.op_timeout_ns, 2 * NS_PER_S);
        assert_eq!(s.key_names, vec!["k0", "k1", "k2", "k3"]);
        assert_eq!(
            s.expect,
            Expectations {
                linearizable: true,
                ..Expectations::default()
            }
        );
        assert_eq!(s.bugs, Bugs::default());
        assert!(s.timeline.is_empty());
        assert_eq!(s.locks, LockConfig::default());
        assert_eq!(s.lock_load, LockWorkload::default());
        assert_eq!(s.redis, RedisConfig::default());
        assert_eq!(s.queue, QueueConfig::default());
        assert_eq!(s.queue_load, QueueWorkload::default());
        assert_eq!(s.cache, CacheConfig::default());
        assert_eq!(s.cache_load, CacheWorkload::default());
    }

    #[test]
    fn lock_tables_default_and_stop_rules() {
        let parse = |body: &str| parse_scenario(&format!("{HEAD}{body}"), "t.toml").unwrap();
        // Empty tables: the model's defaults, except that a present
        // [lock_clients] without `stop` stops at 80% of the duration.
        let s = parse("[locks]\n[lock_clients]\n");
        assert_eq!(s.locks, LockConfig::default());
        assert_eq!(
            s.lock_load,
            LockWorkload {
                stop_ns: 8 * NS_PER_S,
                ..LockWorkload::default()
            }
        );
        // "end" is no stop at all; a single hold duration is min = max.
        let s =
            parse("[lock_clients]\nclients = 2\nhold = \"7ms\"\nstop = \"end\"\nstart = \"10s\"\n");
        assert_eq!(
            s.lock_load,
            LockWorkload {
                clients: 2,
                hold_min_ns: 7 * NS_PER_MS,
                hold_max_ns: 7 * NS_PER_MS,
                start_ns: 10 * NS_PER_S,
                ..LockWorkload::default()
            }
        );
        let s =
            parse("[lock_clients]\nstop = \"10s\"\nlocks = 1\nmax_per_round = 1\nttl = \"61ms\"\n");
        assert_eq!(
            (
                s.lock_load.stop_ns,
                s.lock_load.locks,
                s.lock_load.max_per_round,
                s.lock_load.ttl_ns
            ),
            (10 * NS_PER_S, 1, 1, 61 * NS_PER_MS)
        );
        // Without lock clients there are no sessions, so no ttl cross-check.
        let s = parse("[locks]\nwait = \"1h\"\nlease_check = \"1h\"\nreentry_limit = 1000\n");
        assert_eq!(
            s.locks,
            LockConfig {
                wait_ns: 3_600 * NS_PER_S,
                lease_check_ns: 3_600 * NS_PER_S,
                reentry_limit: 1000,
            }
        );
        assert_eq!(s.lock_load, LockWorkload::default());
        // Nothing lock-related is written for a scenario without locks.
        let text = scenario_to_toml(&parse(""));
        assert!(!text.contains("lock"), "{text}");
    }

    #[test]
    fn lock_table_errors() {
        assert_error(
            "[locks]\nwait = \"1 s\"\n",
            6,
            8,
            "bad duration \"1 s\": expected a number followed by ns, us, ms, s, m or h, like \"150ms\"",
        );
        assert_error(
            "[locks]\nwait = \"2h\"\n",
            6,
            8,
            "locks.wait must be at most 1h, got 2h",
        );
        assert_error(
            "[locks]\nwait = \"0s\"\n",
            6,
            8,
            "locks.wait must be more than 0s",
        );
        assert_error(
            "[locks]\nlease_check = \"0s\"\n",
            6,
            15,
            "locks.lease_check must be more than 0s",
        );
        assert_error(
            "[locks]\nwait = \"1s\"\nlease_check = \"2s\"\n",
            7,
            15,
            "locks.lease_check (2s) must not be more than locks.wait (1s), or timed-out waits are noticed late",
        );
        assert_error(
            "[locks]\nwait = \"10ms\"\n",
            6,
            8,
            "locks.lease_check (20ms) must not be more than locks.wait (10ms), or timed-out waits are noticed late",
        );
        assert_error(
            "[locks]\nreentry_limit = 0\n",
            6,
            17,
            "locks.reentry_limit must be between 1 and 1000, got 0",
        );
        assert_error(
            "[locks]\nreentry_limit = 1001\n",
            6,
            17,
            "locks.reentry_limit must be between 1 and 1000, got 1001",
        );
        assert_error(
            "[locks]\nwiat = \"1s\"\n",
            6,
            1,
            "unknown field `wiat`, expected one of `wait`, `lease_check`, `reentry_limit`",
        );
        assert_error(
            "[lock_clients]\nclients = 1001\n",
            6,
            11,
            "lock_clients.clients must be between 0 and 1000, got 1001",
        );
        assert_error(
            "[lock_clients]\nlocks = 0\n",
            6,
            9,
            "lock_clients.locks must be between 1 and 100000, got 0",
        );
        // Every round shuffles all lock ids, so their number bounds a
        // round's time and memory.
        for big in ["100001", "4294967295"] {
            assert_error(
                &format!("[lock_clients]\nlocks = {big}\n"),
                6,
                9,
                &format!("lock_clients.locks must be between 1 and 100000, got {big}"),
            );
        }
        assert_error(
            "[lock_clients]\nlocks = 3\nmax_per_round = 4\n",
            7,
            17,
            "lock_clients.max_per_round must be between 1 and locks (3), got 4",
        );
        assert_error(
            "[lock_clients]\nmax_per_round = 0\n",
            6,
            17,
            "lock_clients.max_per_round must be between 1 and locks (4), got 0",
        );
        assert_error(
            "[lock_clients]\nlocks = 1\n",
            6,
            9,
            "lock_clients.max_per_round (2, the default) must not be more than locks (1); set max_per_round too",
        );
        assert_error(
            "[lock_clients]\nshared_ratio = 1.5\n",
            6,
            16,
            "lock_clients.shared_ratio must be a probability between 0 and 1, got 1.5",
        );
        assert_error(
            "[lock_clients]\ncrash_ratio = -0.1\n",
            6,
            15,
            "lock_clients.crash_ratio must be a probability between 0 and 1, got -0.1",
        );
        assert_error(
            "[lock_clients]\nhold = [\"50ms\", \"10ms\"]\n",
            6,
            8,
            "lock_clients.hold min (50ms) must not be more than max (10ms)",
        );
        assert_error(
            "[lock_clients]\nhold = [\"1ms\", \"5 ms\"]\n",
            6,
            16,
            "bad duration \"5 ms\": expected a number followed by ns, us, ms, s, m or h, like \"150ms\"",
        );
        assert_error(
            "[lock_clients]\ngap = \"0s\"\n",
            6,
            7,
            "lock_clients.gap must be more than 0s",
        );
        assert_error(
            "[lock_clients]\nttl = \"-1s\"\n",
            6,
            7,
            "bad duration \"-1s\": must not be negative here",
        );
        assert_error(
            "[lock_clients]\nttl = \"60ms\"\n",
            6,
            7,
            "lock_clients.ttl (60ms) must be more than 3 × locks.lease_check (20ms), or clients (renewing every ttl/3) could not renew their sessions in time",
        );
        assert_error(
            "[locks]\nlease_check = \"400ms\"\n[lock_clients]\nclients = 1\n",
            6,
            15,
            "lock_clients.ttl (1s) must be more than 3 × locks.lease_check (400ms), or clients (renewing every ttl/3) could not renew their sessions in time",
        );
        assert_error(
            "[lock_clients]\nstop = \"11s\"\n",
            6,
            8,
            "lock_clients.stop (11s) must not be after the end of the run (duration 10s)",
        );
        assert_error(
            "[lock_clients]\nstop = \"never\"\n",
            6,
            8,
            "bad lock_clients.stop \"never\": expected a duration like \"8s\", or \"end\" to keep starting rounds until the run ends",
        );
        assert_error(
            "[lock_clients]\nstart = \"9s\"\n",
            6,
            9,
            "lock_clients.start (9s) must not be after stop (8s, the default: 80% of duration)",
        );
        assert_error(
            "[lock_clients]\nstart = \"3s\"\nstop = \"2s\"\n",
            7,
            8,
            "lock_clients.start (3s) must not be after stop (2s)",
        );
        assert_error(
            "[lock_clients]\nstart = \"11s\"\nstop = \"end\"\n",
            7,
            8,
            "lock_clients.start (11s) must not be after stop (10s, \"end\": the end of the run)",
        );
        assert_error(
            "[lock_clients]\nclient = 4\n",
            6,
            1,
            "unknown field `client`, expected one of `clients`, `locks`, `max_per_round`, `shared_ratio`, `hold`, `gap`, `ttl`, `crash_ratio`, `start`, `stop`",
        );
        assert_error(
            "[lock_clients]\nttl = 5\n",
            6,
            7,
            "invalid type: integer `5`, expected a duration string like \"150ms\"",
        );
        assert_error_contains("[lock_clients]\nhold = [\"1ms\"]\n", "invalid length 1");
        assert_error_contains(
            "[locks]\nreentry_limit = \"8\"\n",
            "invalid type: string \"8\"",
        );
    }

    const QUEUE_FULL: &str = r#"name = "queue-full"
description = "Every queue table set, and shard faults."
nodes = 3
duration = "20s"

[redis]
shards = 4
ring = ["s1", "s3", "s2"]
persistence = "everysec"
vnodes = 32

[queue]
queues = ["jobs", "mail_out", "Audit-2"]
partitions = 16
visibility = "750ms"
max_attempts = 5

[queue_clients]
producers = 3
consumers = 2
rate = 250.5
batch = 10
keys = 100
hot_ratio = 0.25
poison_ratio = 0.01
consume_batch = 8
process = ["2ms", "9ms"]
crash_ratio = 0.05
down = "1.5s"
start = "500ms"
stop = "15s"

[[step]]
at = "2s"
crash = "s2"

[[step]]
at = "3s"
restart = "s2"

[[step]]
at = "4s"
pause = "s1"

[[step]]
at = "5s"
resume = "s1"

[[step]]
at = "6s"
partition = [["n1", "s1"], ["n2", "n3", "s3"]]

[[step]]
at = "7s"
partition_oneway = { from = ["s4"], to = ["n1", "s2"] }

[[step]]
at = "8s"
heal = true

[[step]]
at = "9s"
add_shard = "s4"

[[step]]
at = "12s"
remove_shard = "s2"

[[step]]
at = "13s"
crash = "leader"
"#;

    #[test]
    fn queue_tables_and_shard_steps_parse_every_field() {
        let s = parse_scenario(QUEUE_FULL, "q.toml").unwrap();
        assert_eq!(
            s.redis,
            RedisConfig {
                shards: 4,
                initial_ring: vec![0, 2, 1],
                persistence: Fsync::EverySec,
                vnodes: 32,
            }
        );
        assert_eq!(
            s.queue,
            QueueConfig {
                queues: vec!["jobs".into(), "mail_out".into(), "Audit-2".into()],
                partitions: 16,
                visibility_ns: 750 * NS_PER_MS,
                max_attempts: 5,
            }
        );
        assert_eq!(
            s.queue_load,
            QueueWorkload {
                producers: 3,
                consumers: 2,
                rate_per_s: 250.5,
                batch: 10,
                keys: 100,
                hot_ratio: 0.25,
                poison_ratio: 0.01,
                consume_batch: 8,
                process_min_ns: 2 * NS_PER_MS,
                process_max_ns: 9 * NS_PER_MS,
                crash_ratio: 0.05,
                consumer_down_ns: 1500 * NS_PER_MS,
                start_ns: 500 * NS_PER_MS,
                stop_ns: 15 * NS_PER_S,
            }
        );
        // Places: n1..n3 are 0..=2, then s1..s4 are 3..=6.
        let lines = step_header_lines(QUEUE_FULL);
        let expected: Vec<Step> = [
            (2, Action::Crash(Target::Shard(1))),
            (3, Action::Restart(Target::Shard(1))),
            (4, Action::Pause(Target::Shard(0))),
            (5, Action::Resume(Target::Shard(0))),
            (6, Action::Partition(vec![vec![0, 3], vec![1, 2, 5]])),
            (
                7,
                Action::PartitionOneWay {
                    from: vec![6],
                    to: vec![0, 4],
                },
            ),
            (8, Action::Heal),
            (9, Action::AddShard(3)),
            (12, Action::RemoveShard(1)),
            (13, Action::Crash(Target::Leader)),
        ]
        .into_iter()
        .zip(lines)
        .map(|((at, action), line)| Step {
            at_ns: at * NS_PER_S,
            action,
            line,
        })
        .collect();
        assert_eq!(s.timeline, expected);
    }

    #[test]
    fn queue_tables_default_when_absent_or_empty() {
        let parse = |body: &str| parse_scenario(&format!("{HEAD}{body}"), "t.toml").unwrap();
        let s = parse("");
        assert_eq!(s.redis, RedisConfig::default());
        assert_eq!(s.queue, QueueConfig::default());
        assert_eq!(s.queue_load, QueueWorkload::default());
        // Nothing queue-related is written for a scenario without a queue.
        let text = scenario_to_toml(&s);
        assert!(
            !text.contains("[redis]") && !text.contains("[queue"),
            "{text}"
        );

        // Only shards is required; the ring defaults to every shard.
        let s = parse("[redis]\nshards = 3\n");
        assert_eq!(
            s.redis,
            RedisConfig {
                shards: 3,
                initial_ring: vec![0, 1, 2],
                ..RedisConfig::default()
            }
        );
        assert_eq!(s.queue, QueueConfig::default());
        assert_eq!(s.queue_load, QueueWorkload::default());

        // Empty tables: the model's defaults, except that a present
        // [queue_clients] without `stop` stops at 80% of the duration.
        let s = parse("[redis]\nshards = 1\n[queue]\n[queue_clients]\n");
        assert_eq!(s.queue, QueueConfig::default());
        assert_eq!(
            s.queue_load,
            QueueWorkload {
                stop_ns: 8 * NS_PER_S,
                ..QueueWorkload::default()
            }
        );
        // "end" is no stop; a single process duration is min = max; the
        // other persistence words; boundary values.
        let s = parse(
            "[redis]\nshards = 16\nring = [\"s16\"]\npersistence = \"off\"\nvnodes = 1024\n\
             [queue]\nqueues = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"]\npartitions = 256\nmax_attempts = 100\n\
             [queue_clients]\nproducers = 1000\nconsumers = 0\nrate = 100000\nbatch = 1000\nkeys = 1000000\n\
             hot_ratio = 1\nconsume_batch = 1\nprocess = \"3ms\"\nstart = \"10s\"\nstop = \"end\"\n",
        );
        assert_eq!(
            s.redis,
            RedisConfig {
                shards: 16,
                initial_ring: vec![15],
                persistence: Fsync::Off,
                vnodes: 1024,
            }
        );
        assert_eq!((s.queue.queues.len(), s.queue.partitions), (8, 256));
        assert_eq!(s.queue.max_attempts, 100);
        assert_eq!(
            s.queue_load,
            QueueWorkload {
                producers: 1000,
                rate_per_s: 100_000.0,
                batch: 1000,
                keys: 1_000_000,
                hot_ratio: 1.0,
                consume_batch: 1,
                process_min_ns: 3 * NS_PER_MS,
                process_max_ns: 3 * NS_PER_MS,
                start_ns: 10 * NS_PER_S,
                ..QueueWorkload::default()
            }
        );
        assert_eq!(
            parse("[redis]\nshards = 1\npersistence = \"always\"\n")
                .redis
                .persistence,
            Fsync::Always
        );
        // An idle [queue_clients] still needs [redis], but without clients
        // there is nothing to point at but the table.
        assert_error(
            "[queue_clients]\nproducers = 0\n",
            5,
            1,
            "[queue_clients] needs [redis] with at least one shard: the queues live on Redis shards",
        );
    }

    /// `[redis]` with shards s1..s3, on lines 5 and 6.
    const REDIS: &str = "[redis]\nshards = 3\n";

    #[test]
    fn queue_table_errors() {
        let cases: &[(String, usize, usize, &str)] = &[
            // [redis]
            (
                "[redis]\nvnodes = 8\n".into(),
                5,
                1,
                "[redis] needs shards, the number of Redis shards (1..=16), like shards = 3",
            ),
            (
                "[redis]\nshards = 17\n".into(),
                6,
                10,
                "redis.shards must be between 1 and 16, got 17",
            ),
            (
                "[redis]\nshards = 0\n".into(),
                6,
                10,
                "redis.shards must be between 1 and 16, got 0",
            ),
            (
                format!("{REDIS}ring = [\"s1\", \"s4\"]\n"),
                7,
                15,
                "unknown shard `s4`: this scenario has shards s1..s3",
            ),
            (
                format!("{REDIS}ring = [\"n1\"]\n"),
                7,
                9,
                "unknown shard `n1`: this scenario has shards s1..s3",
            ),
            (
                format!("{REDIS}ring = [\"s1\", \"s2\", \"s1\"]\n"),
                7,
                21,
                "s1 is named twice in redis.ring (first at line 7, column 9)",
            ),
            (
                format!("{REDIS}ring = []\n"),
                7,
                8,
                "redis.ring must name at least one shard",
            ),
            (
                format!("{REDIS}persistence = \"sometimes\"\n"),
                7,
                15,
                "unknown redis.persistence `sometimes`: expected \"always\", \"everysec\" or \"off\"",
            ),
            (
                format!("{REDIS}vnodes = 0\n"),
                7,
                10,
                "redis.vnodes must be between 1 and 1024, got 0",
            ),
            (
                format!("{REDIS}vnodes = 1025\n"),
                7,
                10,
                "redis.vnodes must be between 1 and 1024, got 1025",
            ),
            (
                "[redis]\nshards = 1\nrings = [\"s1\"]\n".into(),
                7,
                1,
                "unknown field `rings`, expected one of `shards`, `ring`, `persistence`, `vnodes`",
            ),
            // [queue]
            (
                "[queue]\npartitions = 2\n".into(),
                5,
                1,
                "[queue] needs [redis] with at least one shard: the queues live on Redis shards",
            ),
            (
                format!("{REDIS}[queue]\npartitions = 0\n"),
                8,
                14,
                "queue.partitions must be between 1 and 256, got 0",
            ),
            (
                format!("{REDIS}[queue]\npartitions = 257\n"),
                8,
                14,
                "queue.partitions must be between 1 and 256, got 257",
            ),
            (
                format!("{REDIS}[queue]\nqueues = [\"a\", \"b c\"]\n"),
                8,
                16,
                "queue.queues names must be letters, digits, '_' and '-' (like \"jobs\"), got \"b c\"",
            ),
            (
                format!("{REDIS}[queue]\nqueues = [\"\"]\n"),
                8,
                11,
                "queue.queues names must be letters, digits, '_' and '-' (like \"jobs\"), got \"\"",
            ),
            (
                format!("{REDIS}[queue]\nqueues = [\"a\", \"b\", \"a\"]\n"),
                8,
                21,
                "a is named twice in queue.queues (first at line 8, column 11)",
            ),
            (
                format!("{REDIS}[queue]\nqueues = []\n"),
                8,
                10,
                "queue.queues must name at least one queue",
            ),
            (
                format!(
                    "{REDIS}[queue]\nqueues = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\"]\n"
                ),
                8,
                10,
                "queue.queues must name at most 8 queues, got 9",
            ),
            (
                format!("{REDIS}[queue]\nvisibility = \"0s\"\n"),
                8,
                14,
                "queue.visibility must be more than 0s",
            ),
            (
                format!("{REDIS}[queue]\nmax_attempts = 101\n"),
                8,
                16,
                "queue.max_attempts must be between 1 and 100, got 101",
            ),
            (
                format!("{REDIS}[queue]\nmax_attempts = 0\n"),
                8,
                16,
                "queue.max_attempts must be between 1 and 100, got 0",
            ),
            // [queue_clients]
            (
                "[queue_clients]\nproducers = 2\n".into(),
                6,
                13,
                "queue_clients.producers needs [redis] with at least one shard: the queues live on Redis shards",
            ),
            (
                "[queue_clients]\nproducers = 0\nconsumers = 1\n".into(),
                7,
                13,
                "queue_clients.consumers needs [redis] with at least one shard: the queues live on Redis shards",
            ),
            (
                format!("{REDIS}[queue_clients]\nproducers = 1001\n"),
                8,
                13,
                "queue_clients.producers must be between 0 and 1000, got 1001",
            ),
            (
                format!("{REDIS}[queue_clients]\nconsumers = -1\n"),
                8,
                13,
                "queue_clients.consumers must be between 0 and 1000, got -1",
            ),
            (
                format!("{REDIS}[queue_clients]\nrate = 0\n"),
                8,
                8,
                "queue_clients.rate must be between 0.001 and 100000 messages per second per producer, got 0",
            ),
            (
                format!("{REDIS}[queue_clients]\nrate = 0.0009\n"),
                8,
                8,
                "queue_clients.rate must be between 0.001 and 100000 messages per second per producer, got 9e-4",
            ),
            (
                format!("{REDIS}[queue_clients]\nrate = nan\n"),
                8,
                8,
                "queue_clients.rate must be between 0.001 and 100000 messages per second per producer, got NaN",
            ),
            (
                format!("{REDIS}[queue_clients]\nrate = inf\n"),
                8,
                8,
                "queue_clients.rate must be between 0.001 and 100000 messages per second per producer, got inf",
            ),
            (
                format!("{REDIS}[queue_clients]\nbatch = 0\n"),
                8,
                9,
                "queue_clients.batch must be between 1 and 1000, got 0",
            ),
            (
                format!("{REDIS}[queue_clients]\nkeys = 1000001\n"),
                8,
                8,
                "queue_clients.keys must be between 0 and 1000000, got 1000001",
            ),
            (
                format!("{REDIS}[queue_clients]\nhot_ratio = 1.5\n"),
                8,
                13,
                "queue_clients.hot_ratio must be a probability between 0 and 1, got 1.5",
            ),
            (
                format!("{REDIS}[queue_clients]\npoison_ratio = -0.5\n"),
                8,
                16,
                "queue_clients.poison_ratio must be a probability between 0 and 1, got -0.5",
            ),
            (
                format!("{REDIS}[queue_clients]\nconsume_batch = 1001\n"),
                8,
                17,
                "queue_clients.consume_batch must be between 1 and 1000, got 1001",
            ),
            (
                format!("{REDIS}[queue_clients]\nprocess = [\"5ms\", \"1ms\"]\n"),
                8,
                11,
                "queue_clients.process min (5ms) must not be more than max (1ms)",
            ),
            (
                format!("{REDIS}[queue_clients]\nprocess = \"2h\"\n"),
                8,
                11,
                "queue_clients.process must be at most 1h, got 2h",
            ),
            (
                format!("{REDIS}[queue_clients]\ncrash_ratio = 2\n"),
                8,
                15,
                "queue_clients.crash_ratio must be a probability between 0 and 1, got 2",
            ),
            (
                format!("{REDIS}[queue_clients]\ndown = \"0s\"\n"),
                8,
                8,
                "queue_clients.down must be more than 0s",
            ),
            (
                format!("{REDIS}[queue_clients]\nstart = \"9s\"\n"),
                8,
                9,
                "queue_clients.start (9s) must not be after stop (8s, the default: 80% of duration)",
            ),
            (
                format!("{REDIS}[queue_clients]\nstart = \"3s\"\nstop = \"2s\"\n"),
                9,
                8,
                "queue_clients.start (3s) must not be after stop (2s)",
            ),
            (
                format!("{REDIS}[queue_clients]\nstop = \"11s\"\n"),
                8,
                8,
                "queue_clients.stop (11s) must not be after the end of the run (duration 10s)",
            ),
            (
                format!("{REDIS}[queue_clients]\nstop = \"never\"\n"),
                8,
                8,
                "bad queue_clients.stop \"never\": expected a duration like \"8s\", or \"end\" to keep producing until the run ends",
            ),
            (
                format!("{REDIS}[queue_clients]\nstart = \"11s\"\nstop = \"end\"\n"),
                9,
                8,
                "queue_clients.start (11s) must not be after stop (10s, \"end\": the end of the run)",
            ),
            (
                format!("{REDIS}[queue_clients]\nproducer = 1\n"),
                8,
                1,
                "unknown field `producer`, expected one of `producers`, `consumers`, `rate`, `batch`, `keys`, `hot_ratio`, `poison_ratio`, `consume_batch`, `process`, `crash_ratio`, `down`, `start`, `stop`",
            ),
        ];
        for (body, line, col, message) in cases {
            assert_error(body, *line, *col, message);
        }
        assert_error_contains(
            &format!("{REDIS}persistence = 1\n"),
            "invalid type: integer `1`, expected a string",
        );
        assert_error_contains(
            &format!("{REDIS}[queue_clients]\nprocess = [\"1ms\"]\n"),
            "invalid length 1",
        );
    }

    #[test]
    fn shard_step_errors() {
        let step = |action: &str| format!("{REDIS}[[step]]\nat = \"1s\"\n{action}\n");
        let only_nodes = "shards only take crash, restart, pause, resume, partition, partition_oneway, add_shard and remove_shard steps";
        let cases: Vec<(String, usize, usize, String)> = vec![
            (
                step("add_shard = \"s4\""),
                9,
                13,
                "unknown shard `s4`: this scenario has shards s1..s3".into(),
            ),
            (
                step("remove_shard = \"n1\""),
                9,
                16,
                "unknown shard `n1`: this scenario has shards s1..s3".into(),
            ),
            (
                step("crash = \"s4\""),
                9,
                9,
                "unknown shard `s4`: this scenario has shards s1..s3".into(),
            ),
            (
                step("crash = \"x\""),
                9,
                9,
                "bad target `x` for crash: expected a node name (n1..n5), a shard name (s1..s3) or \"leader\" or \"follower\"".into(),
            ),
            (
                step("clock = { node = \"s1\", step = \"1s\" }"),
                9,
                18,
                format!("clock must name a node (n1..n5), not shard `s1`: {only_nodes}"),
            ),
            (
                step("network = { loss = 0.1, link = [\"n1\", \"s2\"] }"),
                9,
                39,
                format!("network link must name a node (n1..n5), not shard `s2`: {only_nodes}"),
            ),
            (
                step("client = { id = 0, node = \"s1\", op = \"get\", key = \"x\" }"),
                9,
                27,
                format!("client must name a node (n1..n5), not shard `s1`: {only_nodes}"),
            ),
            (
                format!("{REDIS}[[network.link]]\nfrom = \"s1\"\nto = \"n2\"\n"),
                8,
                8,
                format!("[[network.link]] must name a node (n1..n5), not shard `s1`: {only_nodes}"),
            ),
            (
                format!("{REDIS}[clock.s1]\noffset = \"1ms\"\n"),
                7,
                8,
                format!("a [clock] table must name a node (n1..n5), not shard `s1`: {only_nodes}"),
            ),
            (
                step("partition = [[\"n1\", \"s2\"], [\"x\"]]"),
                9,
                29,
                "unknown name `x`: this scenario has nodes n1..n5 and shards s1..s3".into(),
            ),
            (
                step("partition = [[\"n1\", \"s2\"], [\"s2\"]]"),
                9,
                29,
                "s2 is named twice in this partition (first at line 9, column 21); groups must be disjoint".into(),
            ),
            (
                step("partition = [[\"s1\"], []]"),
                9,
                22,
                "a partition group must name at least one node or shard".into(),
            ),
            (
                step("partition_oneway = { from = [\"s1\", \"n2\"], to = [\"n3\", \"s1\"] }"),
                9,
                55,
                "s1 is in both from and to; a one-way partition needs disjoint sides".into(),
            ),
            (
                step("partition_oneway = { from = [\"s1\", \"s1\"], to = [\"n3\"] }"),
                9,
                36,
                "s1 is named twice in from (first at line 9, column 30)".into(),
            ),
            (
                step("partition_oneway = { from = [], to = [\"n3\"] }"),
                9,
                29,
                "from must name at least one node or shard".into(),
            ),
            (
                step("add_shard = \"s1\"\nheal = true"),
                9,
                13,
                "a step needs exactly one action (crash, restart, pause, resume, partition, partition_oneway, heal, network, clock, client, add_shard, remove_shard, cache); this one has 2: heal, add_shard".into(),
            ),
            // Any shard step needs [redis]: without it there are no shard names.
            (
                "[[step]]\nat = \"1s\"\ncrash = \"s1\"\n".into(),
                7,
                9,
                "unknown shard `s1`: this scenario has no Redis shards ([redis] shards = N adds s1..sN, up to 16)".into(),
            ),
            (
                "[[step]]\nat = \"1s\"\nadd_shard = \"s1\"\n".into(),
                7,
                13,
                "unknown shard `s1`: this scenario has no Redis shards ([redis] shards = N adds s1..sN, up to 16)".into(),
            ),
            (
                "[[step]]\nat = \"1s\"\npartition = [[\"n1\"], [\"s1\"]]\n".into(),
                7,
                23,
                "unknown shard `s1`: this scenario has no Redis shards ([redis] shards = N adds s1..sN, up to 16)".into(),
            ),
        ];
        for (body, line, col, message) in &cases {
            assert_error(body, *line, *col, message);
        }
        // Strict names: these are neither shards nor nodes.
        for name in ["s0", "s01", "s+1", "S1", "s"] {
            assert_error_contains(
                &step(&format!("crash = \"{name}\"")),
                &format!("bad target `{name}` for crash"),
            );
        }
        // Without shards the old wording is kept.
        assert_error(
            "[[step]]\nat = \"1s\"\ncrash = \"x\"\n",
            7,
            9,
            "bad target `x` for crash: expected a node name (n1..n5) or \"leader\" or \"follower\"",
        );
    }

    #[test]
    fn shard_timelines_are_checked_like_nodes() {
        // With REDIS first, step k (0-based) has its header at line 7 + 4k
        // and its action at line 9 + 4k.
        let with_redis = |steps: &[(&str, &str)]| format!("{REDIS}{}", timeline(steps));
        assert_error(
            &with_redis(&[("1s", "crash = \"s1\""), ("2s", "crash = \"s1\"")]),
            13,
            9,
            "s1 is already crashed at 2s (crashed by the step at line 7)",
        );
        assert_error(
            &with_redis(&[("1s", "restart = \"s3\"")]),
            9,
            11,
            "s3 is not crashed at 1s: no earlier step crashes it",
        );
        assert_error(
            &with_redis(&[("1s", "crash = \"s2\""), ("2s", "pause = \"s2\"")]),
            13,
            9,
            "s2 is crashed at 2s (crashed by the step at line 7), so it cannot be paused",
        );
        assert_error(
            &with_redis(&[
                ("1s", "pause = \"s2\""),
                ("2s", "resume = \"s2\""),
                ("3s", "resume = \"s2\""),
            ]),
            17,
            10,
            "s2 is not paused at 3s (already resumed by the step at line 11)",
        );
        // A node crashed after a shard is certainly the most recent crash.
        assert_error(
            &with_redis(&[
                ("1s", "crash = \"s1\""),
                ("2s", "crash = \"n1\""),
                ("3s", "restart = \"last_crashed\""),
                ("4s", "restart = \"n1\""),
            ]),
            21,
            11,
            "n1 is already up at 4s (restarted by the step at line 15)",
        );
        // Roles never pick shards: s1 is still known to be paused.
        assert_error(
            &with_redis(&[
                ("1s", "pause = \"s1\""),
                ("2s", "pause = \"leader\""),
                ("3s", "pause = \"s1\""),
            ]),
            17,
            9,
            "s1 is already paused at 3s (paused by the step at line 7)",
        );
        // last_crashed and last_paused pick only nodes, as in the simulator.
        assert_error(
            &with_redis(&[
                ("1s", "crash = \"n1\""),
                ("2s", "crash = \"s1\""),
                ("3s", "restart = \"last_crashed\""),
                ("4s", "restart = \"n1\""),
            ]),
            21,
            11,
            "n1 is already up at 4s (restarted by the step at line 15)",
        );
        assert_error(
            &with_redis(&[
                ("1s", "crash = \"s1\""),
                ("2s", "restart = \"last_crashed\""),
            ]),
            13,
            11,
            "restart = \"last_crashed\" at 2s, but no earlier step crashes a node",
        );
        assert_error(
            &with_redis(&[
                ("1s", "crash = \"n2\""),
                ("2s", "crash = \"s1\""),
                ("3s", "restart = \"n2\""),
                ("4s", "restart = \"last_crashed\""),
            ]),
            21,
            11,
            "restart = \"last_crashed\" at 4s, but every crashed node is up again by then",
        );
        assert_error(
            &with_redis(&[("1s", "pause = \"s3\""), ("2s", "resume = \"last_paused\"")]),
            13,
            10,
            "resume = \"last_paused\" at 2s, but no earlier step pauses a node",
        );
        let ok = [
            with_redis(&[
                ("1s", "crash = \"n1\""),
                ("2s", "crash = \"s1\""),
                ("3s", "restart = \"last_crashed\""),
                ("4s", "restart = \"s1\""),
            ]),
            with_redis(&[
                ("1s", "pause = \"n2\""),
                ("2s", "pause = \"s2\""),
                ("3s", "resume = \"last_paused\""),
                ("4s", "resume = \"s2\""),
            ]),
            with_redis(&[("1s", "crash = \"leader\""), ("2s", "crash = \"s1\"")]),
            with_redis(&[("1s", "crash = \"s1\""), ("2s", "restart = \"s1\"")]),
            with_redis(&[("1s", "crash = \"s1\""), ("1s", "crash = \"n1\"")]),
        ];
        for body in ok {
            parse_scenario(&format!("{HEAD}{body}"), "t.toml")
                .unwrap_or_else(|e| panic!("{e}\n{body}"));
        }
    }

    #[test]
    fn queue_scenario_round_trips_through_toml() {
        let rich = parse_scenario(QUEUE_FULL, "q.toml").unwrap();
        let text = scenario_to_toml(&rich);
        // Places past the nodes are written as shard names.
        for line in [
            "ring = [\"s1\", \"s3\", \"s2\"]",
            "crash = \"s2\"",
            "resume = \"s1\"",
            "partition = [[\"n1\", \"s1\"], [\"n2\", \"n3\", \"s3\"]]",
            "partition_oneway = { from = [\"s4\"], to = [\"n1\", \"s2\"] }",
            "add_shard = \"s4\"",
            "remove_shard = \"s2\"",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let back = parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(without_lines(back), without_lines(rich.clone()));

        // Odd values, a whole-run stop, and each table alone.
        let mut odd = rich.clone();
        odd.redis = RedisConfig {
            shards: 16,
            initial_ring: vec![15, 0],
            persistence: Fsync::Off,
            vnodes: 1024,
        };
        odd.queue = QueueConfig {
            queues: (0..8).map(|i| format!("Q_{i}-x")).collect(),
            partitions: 1,
            visibility_ns: 1,
            max_attempts: 100,
        };
        odd.queue_load = QueueWorkload {
            producers: 1000,
            consumers: 1000,
            rate_per_s: 1.0 / 3.0,
            batch: 1000,
            keys: 1_000_000,
            hot_ratio: 0.1 + 0.2,
            poison_ratio: 1.0,
            consume_batch: 1000,
            process_min_ns: 0,
            process_max_ns: 1,
            crash_ratio: 1.0,
            consumer_down_ns: 3_600 * NS_PER_S,
            start_ns: 20 * NS_PER_S,
            stop_ns: u64::MAX,
        };
        odd.timeline.push(Step {
            at_ns: 20 * NS_PER_S,
            action: Action::Partition(vec![vec![18], vec![2, 3]]),
            line: 0,
        });
        let mut variants = vec![odd];
        let mut only_redis = rich.clone();
        only_redis.queue = QueueConfig::default();
        only_redis.queue_load = QueueWorkload::default();
        variants.push(only_redis.clone());
        let mut redis_and_queue = only_redis.clone();
        redis_and_queue.queue = rich.queue.clone();
        variants.push(redis_and_queue);
        let mut redis_and_clients = only_redis;
        redis_and_clients.queue_load = QueueWorkload {
            consumers: 1,
            ..QueueWorkload::default()
        };
        variants.push(redis_and_clients.clone());
        // Present but idle, with an explicit stop: still written.
        redis_and_clients.queue_load = QueueWorkload {
            stop_ns: 0,
            ..QueueWorkload::default()
        };
        variants.push(redis_and_clients);
        variants.push(rich);
        for s in variants {
            let text = scenario_to_toml(&s);
            assert_eq!(
                text.contains("[redis]"),
                s.redis != RedisConfig::default(),
                "{text}"
            );
            assert_eq!(
                text.contains("[queue]"),
                s.queue != QueueConfig::default(),
                "{text}"
            );
            assert_eq!(
                text.contains("[queue_clients]"),
                s.queue_load != QueueWorkload::default(),
                "{text}"
            );
            let back =
                parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(without_lines(back), without_lines(s));
        }
    }

    const CACHE_FULL: &str = r#"name = "cache-full"
description = "Every cache table set, and every cache op."
nodes = 3
duration = "10s"

[redis]
shards = 2

[cache]
protocol = "directory"
capacity = 64
arbiter = "n2"
timeout = "250ms"

[cache_clients]
rate = 200
keys = 5000
zipf = 1.2
write_ratio = 0.25
start = "500ms"
stop = "9s"

[[step]]
at = "6s"
cache = { node = "n3", op = "put", key = 7, value = "18446744073709551615" }

[[step]]
at = "1s"
cache = { node = "n1", op = "put", key = 3, value = 42 }

[[step]]
at = "2s"
cache = { node = "n2", op = "get", key = 3 }

[[step]]
at = "3s"
cache = { node = "n3", op = "fetch", key = 4294967295 }

[[step]]
at = "4s"
cache = { node = "n2", op = "invalidate", key = 0 }

[[step]]
at = "5s"
cache = { node = "n1", op = "dump" }

[[step]]
at = "5s"
crash = "n2"
"#;

    #[test]
    fn cache_tables_and_steps_parse_every_field() {
        let s = parse_scenario(CACHE_FULL, "c.toml").unwrap();
        assert_eq!(
            s.cache,
            CacheConfig {
                enabled: true,
                protocol: CacheProtocol::Directory,
                capacity: 64,
                arbiter: 1,
                op_timeout_ns: 250 * NS_PER_MS,
            }
        );
        assert_eq!(
            s.cache_load,
            CacheWorkload {
                rate_per_s: 200.0,
                keys: 5000,
                zipf: 1.2,
                write_ratio: 0.25,
                start_ns: 500 * NS_PER_MS,
                stop_ns: 9 * NS_PER_S,
            }
        );
        // Cache steps name nodes by index, like every other step.
        let lines = step_header_lines(CACHE_FULL);
        let cache = |node: usize, op: CacheOp| Action::Cache { node, op };
        let expected: Vec<Step> = [
            (1, cache(0, CacheOp::Put { key: 3, value: 42 }), 1),
            (2, cache(1, CacheOp::Get { key: 3 }), 2),
            (3, cache(2, CacheOp::Fetch { key: u32::MAX }), 3),
            (4, cache(1, CacheOp::Invalidate { key: 0 }), 4),
            (5, cache(0, CacheOp::Dump), 5),
            (5, Action::Crash(Target::Node(1)), 6),
            (
                6,
                cache(
                    2,
                    CacheOp::Put {
                        key: 7,
                        value: u64::MAX,
                    },
                ),
                0,
            ),
        ]
        .into_iter()
        .map(|(at, action, nth)| Step {
            at_ns: at * NS_PER_S,
            action,
            line: lines[nth],
        })
        .collect();
        assert_eq!(s.timeline, expected);
        // The other protocol word, and the bus arbiter on another node.
        let s = parse_scenario(
            &format!("{HEAD}{REDIS}[cache]\nprotocol = \"bus\"\narbiter = \"n5\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!((s.cache.protocol, s.cache.arbiter), (CacheProtocol::Bus, 4));
    }

    #[test]
    fn cache_tables_default_when_absent_or_empty() {
        let parse = |body: &str| parse_scenario(&format!("{HEAD}{body}"), "t.toml").unwrap();
        let s = parse(REDIS);
        assert_eq!(s.cache, CacheConfig::default());
        assert!(!s.cache.enabled);
        assert_eq!(s.cache_load, CacheWorkload::default());
        // Nothing cache-related is written for a scenario without caches.
        let text = scenario_to_toml(&s);
        assert!(!text.contains("[cache"), "{text}");

        // An empty [cache] turns the caches on with the model's defaults: the
        // bus, 100 lines, arbiter n1, 500ms.
        let s = parse(&format!("{REDIS}[cache]\n"));
        assert_eq!(
            s.cache,
            CacheConfig {
                enabled: true,
                ..CacheConfig::default()
            }
        );
        assert_eq!(
            (
                s.cache.protocol,
                s.cache.capacity,
                s.cache.arbiter,
                s.cache.op_timeout_ns
            ),
            (CacheProtocol::Bus, 100, 0, 500 * NS_PER_MS)
        );
        assert_eq!(s.cache_load, CacheWorkload::default());

        // Empty [cache_clients]: the model's defaults (so no ops without a
        // rate), except that `stop` defaults to 80% of the duration.
        let s = parse(&format!("{REDIS}[cache]\n[cache_clients]\n"));
        assert_eq!(
            s.cache_load,
            CacheWorkload {
                stop_ns: 8 * NS_PER_S,
                ..CacheWorkload::default()
            }
        );
        assert_eq!(
            (
                s.cache_load.rate_per_s,
                s.cache_load.keys,
                s.cache_load.zipf,
                s.cache_load.write_ratio,
                s.cache_load.start_ns
            ),
            (0.0, 1000, 0.99, 0.1, 0)
        );
        // Boundary values; "end" is no stop; integers where floats go.
        let s = parse(&format!(
            "{REDIS}[cache]\ncapacity = 100000\ntimeout = \"1h\"\n\
             [cache_clients]\nrate = 100000\nkeys = 1000000\nzipf = 10\nwrite_ratio = 1\n\
             start = \"10s\"\nstop = \"end\"\n"
        ));
        assert_eq!(
            s.cache,
            CacheConfig {
                enabled: true,
                capacity: 100_000,
                op_timeout_ns: 3_600 * NS_PER_S,
                ..CacheConfig::default()
            }
        );
        assert_eq!(
            s.cache_load,
            CacheWorkload {
                rate_per_s: 100_000.0,
                keys: 1_000_000,
                zipf: 10.0,
                write_ratio: 1.0,
                start_ns: 10 * NS_PER_S,
                stop_ns: u64::MAX,
            }
        );
        let s = parse(&format!(
            "{REDIS}[cache]\ncapacity = 1\ntimeout = \"1us\"\n\
             [cache_clients]\nrate = 0.001\nkeys = 1\nzipf = 0\nwrite_ratio = 0\nstop = \"0s\"\n"
        ));
        assert_eq!((s.cache.capacity, s.cache.op_timeout_ns), (1, 1_000));
        assert_eq!(
            s.cache_load,
            CacheWorkload {
                rate_per_s: 0.001,
                keys: 1,
                zipf: 0.0,
                write_ratio: 0.0,
                start_ns: 0,
                stop_ns: 0,
            }
        );
    }

    /// `[redis]` with shards s1..s3 and an empty `[cache]`, on lines 5 to 7.
    const CACHE: &str = "[redis]\nshards = 3\n[cache]\n";

    #[test]
    fn cache_table_errors() {
        let cases: &[(String, usize, usize, &str)] = &[
            (
                "[cache]\ncapacity = 10\n".into(),
                5,
                1,
                "[cache] needs [redis] with at least one shard: shard s1 is the caches' memory",
            ),
            (
                "[cache]\n".into(),
                5,
                1,
                "[cache] needs [redis] with at least one shard: shard s1 is the caches' memory",
            ),
            (
                format!("{CACHE}protocol = \"snoopy\"\n"),
                8,
                12,
                "unknown cache.protocol `snoopy`: expected \"bus\" or \"directory\"",
            ),
            (
                format!("{CACHE}protocol = \"Bus\"\n"),
                8,
                12,
                "unknown cache.protocol `Bus`: expected \"bus\" or \"directory\"",
            ),
            (
                format!("{CACHE}capacity = 0\n"),
                8,
                12,
                "cache.capacity must be between 1 and 100000, got 0",
            ),
            (
                format!("{CACHE}capacity = 100001\n"),
                8,
                12,
                "cache.capacity must be between 1 and 100000, got 100001",
            ),
            (
                format!("{CACHE}arbiter = \"n6\"\n"),
                8,
                11,
                "unknown node `n6`: this scenario has nodes n1..n5",
            ),
            (
                format!("{CACHE}arbiter = \"leader\"\n"),
                8,
                11,
                "unknown node `leader`: this scenario has nodes n1..n5",
            ),
            (
                format!("{CACHE}arbiter = \"s1\"\n"),
                8,
                11,
                "cache.arbiter must name a node (n1..n5), not shard `s1`: shards only take crash, restart, pause, resume, partition, partition_oneway, add_shard and remove_shard steps",
            ),
            (
                format!("{CACHE}timeout = \"0s\"\n"),
                8,
                11,
                "cache.timeout must be between 1us and 1h, got 0s",
            ),
            (
                format!("{CACHE}timeout = \"4ns\"\n"),
                8,
                11,
                "cache.timeout must be between 1us and 1h, got 4ns",
            ),
            (
                format!("{CACHE}timeout = \"999ns\"\n"),
                8,
                11,
                "cache.timeout must be between 1us and 1h, got 999ns",
            ),
            (
                format!("{CACHE}timeout = \"2h\"\n"),
                8,
                11,
                "cache.timeout must be between 1us and 1h, got 2h",
            ),
            (
                format!("{CACHE}timeout = \"-1s\"\n"),
                8,
                11,
                "bad duration \"-1s\": must not be negative here",
            ),
            (
                format!("{CACHE}timeout = 5\n"),
                8,
                11,
                "invalid type: integer `5`, expected a duration string like \"150ms\"",
            ),
            (
                format!("{CACHE}timout = \"1s\"\n"),
                8,
                1,
                "unknown field `timout`, expected one of `protocol`, `capacity`, `arbiter`, `timeout`",
            ),
            (
                format!("{REDIS}[cache_clients]\nrate = 10\n"),
                7,
                1,
                "[cache_clients] needs [cache]: without it the nodes have no caches",
            ),
            (
                "[cache_clients]\n".into(),
                5,
                1,
                "[cache_clients] needs [cache]: without it the nodes have no caches",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = 0\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got 0",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = -5\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got -5",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = 100000.5\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got 100000.5",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = nan\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got NaN",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = 1e-11\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got 1e-11",
            ),
            (
                format!("{CACHE}[cache_clients]\nrate = inf\n"),
                9,
                8,
                "cache_clients.rate must be between 0.001 and 100000 ops per second per node, got inf",
            ),
            (
                format!("{CACHE}[cache_clients]\nkeys = 0\n"),
                9,
                8,
                "cache_clients.keys must be between 1 and 1000000, got 0",
            ),
            (
                format!("{CACHE}[cache_clients]\nkeys = 1000001\n"),
                9,
                8,
                "cache_clients.keys must be between 1 and 1000000, got 1000001",
            ),
            (
                format!("{CACHE}[cache_clients]\nzipf = -0.5\n"),
                9,
                8,
                "cache_clients.zipf must be between 0 (uniform) and 10, got -0.5",
            ),
            (
                format!("{CACHE}[cache_clients]\nzipf = 10.01\n"),
                9,
                8,
                "cache_clients.zipf must be between 0 (uniform) and 10, got 10.01",
            ),
            (
                format!("{CACHE}[cache_clients]\nzipf = nan\n"),
                9,
                8,
                "cache_clients.zipf must be between 0 (uniform) and 10, got NaN",
            ),
            (
                format!("{CACHE}[cache_clients]\nzipf = inf\n"),
                9,
                8,
                "cache_clients.zipf must be between 0 (uniform) and 10, got inf",
            ),
            (
                format!("{CACHE}[cache_clients]\nwrite_ratio = 1.5\n"),
                9,
                15,
                "cache_clients.write_ratio must be a probability between 0 and 1, got 1.5",
            ),
            (
                format!("{CACHE}[cache_clients]\nwrite_ratio = -0.1\n"),
                9,
                15,
                "cache_clients.write_ratio must be a probability between 0 and 1, got -0.1",
            ),
            (
                format!("{CACHE}[cache_clients]\nstart = \"9s\"\n"),
                9,
                9,
                "cache_clients.start (9s) must not be after stop (8s, the default: 80% of duration)",
            ),
            (
                format!("{CACHE}[cache_clients]\nstart = \"3s\"\nstop = \"2s\"\n"),
                10,
                8,
                "cache_clients.start (3s) must not be after stop (2s)",
            ),
            (
                format!("{CACHE}[cache_clients]\nstop = \"11s\"\n"),
                9,
                8,
                "cache_clients.stop (11s) must not be after the end of the run (duration 10s)",
            ),
            (
                format!("{CACHE}[cache_clients]\nstop = \"never\"\n"),
                9,
                8,
                "bad cache_clients.stop \"never\": expected a duration like \"8s\", or \"end\" to keep issuing ops until the run ends",
            ),
            (
                format!("{CACHE}[cache_clients]\nstart = \"11s\"\nstop = \"end\"\n"),
                10,
                8,
                "cache_clients.start (11s) must not be after stop (10s, \"end\": the end of the run)",
            ),
            (
                format!("{CACHE}[cache_clients]\nwrites = 0.5\n"),
                9,
                1,
                "unknown field `writes`, expected one of `rate`, `keys`, `zipf`, `write_ratio`, `start`, `stop`",
            ),
        ];
        for (body, line, col, message) in cases {
            assert_error(body, *line, *col, message);
        }
        assert_error_contains(
            &format!("{CACHE}protocol = 1\n"),
            "invalid type: integer `1`, expected a string",
        );
        assert_error_contains(
            &format!("{CACHE}capacity = \"8\"\n"),
            "invalid type: string \"8\"",
        );
        assert_error_contains(
            &format!("{CACHE}[cache_clients]\nkeys = 1.5\n"),
            "invalid type: floating point `1.5`",
        );
    }

    #[test]
    fn cache_step_errors() {
        let cases: &[(String, usize, usize, &str)] = &[
            (
                "[[step]]\nat = \"1s\"\ncache = { node = \"n1\", op = \"get\", key = 1 }\n".into(),
                7,
                9,
                "a cache step needs [cache]: without it the nodes have no caches",
            ),
            (
                format!(
                    "{REDIS}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"dump\" }}\n"
                ),
                9,
                9,
                "a cache step needs [cache]: without it the nodes have no caches",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"read\", key = 1 }}\n"
                ),
                10,
                29,
                "unknown cache op `read`: expected \"get\", \"put\", \"invalidate\", \"fetch\" or \"dump\"",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"GET\", key = 1 }}\n"
                ),
                10,
                29,
                "unknown cache op `GET`: expected \"get\", \"put\", \"invalidate\", \"fetch\" or \"dump\"",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"get\" }}\n"
                ),
                10,
                29,
                "a get needs a key, like key = 3",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"invalidate\" }}\n"
                ),
                10,
                29,
                "an invalidate needs a key, like key = 3",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"fetch\", value = 1 }}\n"
                ),
                10,
                29,
                "a fetch needs a key, like key = 3",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"put\", value = 1 }}\n"
                ),
                10,
                29,
                "a put needs a key, like key = 3",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"put\", key = 1 }}\n"
                ),
                10,
                29,
                "a put needs a value, like value = 7",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"get\", key = 1, value = 2 }}\n"
                ),
                10,
                53,
                "a get takes no value",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"invalidate\", key = 1, value = 2 }}\n"
                ),
                10,
                60,
                "an invalidate takes no value",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"fetch\", key = 1, value = 2 }}\n"
                ),
                10,
                55,
                "a fetch takes no value",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"dump\", key = 1 }}\n"
                ),
                10,
                43,
                "a dump takes no key",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"dump\", value = 1 }}\n"
                ),
                10,
                45,
                "a dump takes no value",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"get\", key = -1 }}\n"
                ),
                10,
                42,
                "cache key must be between 0 and 4294967295, got -1",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"fetch\", key = 4294967296 }}\n"
                ),
                10,
                44,
                "cache key must be between 0 and 4294967295, got 4294967296",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"s1\", op = \"get\", key = 1 }}\n"
                ),
                10,
                18,
                "cache must name a node (n1..n5), not shard `s1`: shards only take crash, restart, pause, resume, partition, partition_oneway, add_shard and remove_shard steps",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n6\", op = \"get\", key = 1 }}\n"
                ),
                10,
                18,
                "unknown node `n6`: this scenario has nodes n1..n5",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"leader\", op = \"get\", key = 1 }}\n"
                ),
                10,
                18,
                "unknown node `leader`: this scenario has nodes n1..n5",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"put\", key = 1, value = -1 }}\n"
                ),
                10,
                53,
                "invalid value: integer `-1`, expected a non-negative integer (or a decimal string above 2^63-1)",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"get\", key = 1, keys = 2 }}\n"
                ),
                10,
                45,
                "unknown field `keys`, expected one of `node`, `op`, `key`, `value`",
            ),
            (
                format!(
                    "{CACHE}[[step]]\nat = \"1s\"\nheal = true\ncache = {{ node = \"n1\", op = \"dump\" }}\n"
                ),
                11,
                9,
                "a step needs exactly one action (crash, restart, pause, resume, partition, partition_oneway, heal, network, clock, client, add_shard, remove_shard, cache); this one has 2: heal, cache",
            ),
        ];
        for (body, line, col, message) in cases {
            assert_error(body, *line, *col, message);
        }
        assert_error_contains(
            &format!("{CACHE}[[step]]\nat = \"1s\"\ncache = {{ op = \"dump\" }}\n"),
            "missing field `node`",
        );
        assert_error_contains(
            &format!("{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\" }}\n"),
            "missing field `op`",
        );
        assert_error_contains(
            &format!(
                "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"get\", key = \"3\" }}\n"
            ),
            "invalid type: string \"3\"",
        );
        assert_error_contains(
            &format!(
                "{CACHE}[[step]]\nat = \"1s\"\ncache = {{ node = \"n1\", op = \"put\", key = 1, value = \"+5\" }}\n"
            ),
            "expected a non-negative integer (or a decimal string above 2^63-1)",
        );
        // Every op at every boundary key parses.
        for op in [
            "op = \"get\", key = 0",
            "op = \"put\", key = 4294967295, value = 0",
            "op = \"put\", key = 1, value = 9223372036854775807",
            "op = \"invalidate\", key = 4294967295",
            "op = \"fetch\", key = 0",
            "op = \"dump\"",
        ] {
            let body =
                format!("{CACHE}[[step]]\nat = \"10s\"\ncache = {{ node = \"n5\", {op} }}\n");
            parse_scenario(&format!("{HEAD}{body}"), "t.toml")
                .unwrap_or_else(|e| panic!("{e}\n{body}"));
        }
    }

    #[test]
    fn cache_scenario_round_trips_through_toml() {
        let rich = parse_scenario(CACHE_FULL, "c.toml").unwrap();
        let text = scenario_to_toml(&rich);
        // The step syntax is the file's; values above i64::MAX as strings.
        for line in [
            "[cache]",
            "protocol = \"directory\"",
            "arbiter = \"n2\"",
            "timeout = \"250ms\"",
            "[cache_clients]",
            "zipf = 1.2",
            "cache = { node = \"n1\", op = \"put\", key = 3, value = 42 }",
            "cache = { node = \"n2\", op = \"get\", key = 3 }",
            "cache = { node = \"n3\", op = \"fetch\", key = 4294967295 }",
            "cache = { node = \"n2\", op = \"invalidate\", key = 0 }",
            "cache = { node = \"n1\", op = \"dump\" }",
            "cache = { node = \"n3\", op = \"put\", key = 7, value = \"18446744073709551615\" }",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let back = parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(without_lines(back), without_lines(rich.clone()));

        // Odd values, a whole-run stop, and each table alone.
        let mut odd = rich.clone();
        odd.cache = CacheConfig {
            enabled: true,
            protocol: CacheProtocol::Bus,
            capacity: 100_000,
            arbiter: 2,
            op_timeout_ns: 1_001,
        };
        odd.cache_load = CacheWorkload {
            rate_per_s: 1.0 / 3.0,
            keys: 1_000_000,
            zipf: 0.1 + 0.2,
            write_ratio: 1.0,
            start_ns: 10 * NS_PER_S,
            stop_ns: u64::MAX,
        };
        odd.timeline.push(Step {
            at_ns: 10 * NS_PER_S,
            action: Action::Cache {
                node: 0,
                op: CacheOp::Put {
                    key: 0,
                    value: i64::MAX as u64 + 1,
                },
            },
            line: 0,
        });
        let mut variants = vec![odd];
        let mut only_cache = rich.clone();
        only_cache.cache_load = CacheWorkload::default();
        variants.push(only_cache.clone());
        // The default [cache] is still written: its presence turns caches on.
        only_cache.cache = CacheConfig {
            enabled: true,
            ..CacheConfig::default()
        };
        variants.push(only_cache.clone());
        let mut with_clients = only_cache.clone();
        with_clients.cache_load = CacheWorkload {
            rate_per_s: 50.0,
            ..CacheWorkload::default()
        };
        variants.push(with_clients.clone());
        // Present but idle (no rate), with an explicit stop: still written,
        // without `rate`, which a file cannot set to 0.
        with_clients.cache_load = CacheWorkload {
            stop_ns: 0,
            ..CacheWorkload::default()
        };
        variants.push(with_clients);
        // Caches and queues side by side.
        let mut with_queue = rich.clone();
        with_queue.queue = QueueConfig::default();
        with_queue.queue_load = QueueWorkload {
            producers: 2,
            ..QueueWorkload::default()
        };
        variants.push(with_queue);
        variants.push(rich);
        for s in variants {
            let text = scenario_to_toml(&s);
            assert_eq!(text.contains("[cache]"), s.cache.enabled, "{text}");
            assert_eq!(
                text.contains("[cache_clients]"),
                s.cache_load != CacheWorkload::default(),
                "{text}"
            );
            assert!(!text.contains("\nrate = 0.0\n"), "{text}");
            let back =
                parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(without_lines(back), without_lines(s));
        }
    }

    #[test]
    fn single_latency_and_step_network_inherit_the_default_link() {
        let s = parse_scenario(
            &format!(
                "{HEAD}[network]\nlatency = \"2ms\"\nloss = 0.1\n[[step]]\nat = \"1s\"\nnetwork = {{ reorder = 0.5 }}\n"
            ),
            "t.toml",
        )
        .unwrap();
        let link = s.network.link;
        assert_eq!(
            (link.latency_min_ns, link.latency_max_ns),
            (2 * NS_PER_MS, 2 * NS_PER_MS)
        );
        let Action::Network {
            link: None,
            both_ways: false,
            config,
        } = s.timeline[0].action
        else {
            panic!("{:?}", s.timeline[0].action);
        };
        assert_eq!(
            config,
            LinkConfig {
                reorder: 0.5,
                ..link
            }
        );
    }

    #[test]
    fn error_display_has_path_line_col() {
        let e = error("[network]\nlatancy = \"1ms\"\n");
        assert!(
            e.to_string()
                .starts_with("t.toml:6:1: unknown field `latancy`, expected one of"),
            "{e}"
        );
        let nowhere = ScenarioError {
            path: "x.toml".into(),
            line: 0,
            col: 0,
            message: "gone".into(),
        };
        assert_eq!(nowhere.to_string(), "x.toml: gone");
        let e = load_scenario(Path::new("/nonexistent/dir/x.toml")).unwrap_err();
        assert_eq!((e.line, e.col), (0, 0));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/dir/x.toml: cannot read scenario file")
        );
    }

    #[test]
    fn errors_point_at_the_offending_value() {
        assert_error(
            "[raft]\nheartbeat = \"15 ms\"\n",
            6,
            13,
            "bad duration \"15 ms\": expected a number followed by ns, us, ms, s, m or h, like \"150ms\"",
        );
        assert_error(
            "[[step]]\nat = \"1s\"\ncrash = \"n7\"\n",
            7,
            9,
            "unknown node `n7`: this scenario has nodes n1..n5",
        );
        assert_error(
            "[network]\nloss = 1.5\n",
            6,
            8,
            "loss must be a probability between 0 and 1, got 1.5",
        );
        assert_error(
            "[raft]\nelection_timeout = [\"300ms\", \"150ms\"]\n",
            6,
            20,
            "election_timeout min (300ms) must be less than max (150ms)",
        );
        assert_error(
            "[[step]]\nat = \"12s\"\nheal = true\n",
            6,
            6,
            "step at 12s is after the end of the run (duration 10s)",
        );
        assert_error(
            "[[step]]\nat = \"1s\"\n",
            5,
            1,
            "a step needs exactly one action (crash, restart, pause, resume, partition, partition_oneway, heal, network, clock, client, add_shard, remove_shard, cache); this one has none",
        );
        assert_error(
            "[[step]]\nat = \"1s\"\ncrash = \"n1\"\nheal = true\n",
            8,
            8,
            "a step needs exactly one action (crash, restart, pause, resume, partition, partition_oneway, heal, network, clock, client, add_shard, remove_shard, cache); this one has 2: crash, heal",
        );
        assert_error(
            "[[step]]\nat = \"1s\"\ncrash = \"n2\"\n\n[[step]]\nat = \"3s\"\ncrash = \"n2\"\n",
            11,
            9,
            "n2 is already crashed at 3s (crashed by the step at line 5)",
        );
        assert_error(
            "[[step]]\nat = \"1s\"\npartition = [[\"n1\", \"n2\"], [\"n3\", \"n2\"]]\n",
            7,
            35,
            "n2 is named twice in this partition (first at line 7, column 21); groups must be disjoint",
        );
        assert_error(
            "[clock.n9]\noffset = \"1ms\"\n",
            5,
            8,
            "unknown node `n9`: this scenario has nodes n1..n5",
        );
    }

    #[test]
    fn serde_errors_keep_their_wording_and_location() {
        let e = parse_scenario("", "t.toml").unwrap_err();
        assert_eq!(e.to_string(), "t.toml:1:1: missing field `name`");
        assert_error("nodes2 = 1\n", 5, 1, &error("nodes2 = 1\n").message);
        assert_error_contains("nodes2 = 1\n", "unknown field `nodes2`, expected one of");
        assert_error_contains(
            "[[step]]\nat = \"1s\"\ncrsh = \"n1\"\n",
            "unknown field `crsh`",
        );
        let e = parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = \"5\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.col), (3, 9));
        assert!(
            e.message
                .starts_with("invalid type: string \"5\", expected i64"),
            "{e}"
        );
        assert_error(
            "[raft]\nheartbeat = 50\n",
            6,
            13,
            "invalid type: integer `50`, expected a duration string like \"150ms\"",
        );
        assert_error_contains("[network]\nlatency = [\"1ms\"]\n", "invalid length 1");
        assert_error_contains(
            "[network]\nlatency = [\"1ms\", \"2ms\", \"3ms\"]\n",
            "invalid length 3",
        );
        assert_error_contains("seed = -1\n", "invalid value: integer `-1`");
        assert_error_contains(
            "[[step]]\nat = \"1s\"\nclient = { id = 0, node = \"n1\", op = \"put\", key = \"x\", value = -3 }\n",
            "invalid value: integer `-3`",
        );
    }

    #[test]
    fn value_errors() {
        assert_error(
            "nodes = 16\n".replace("nodes", "x").as_str(),
            5,
            1,
            &error("x = 16\n").message,
        );
        let e = parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 16\nduration = \"1s\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.col, e.message.as_str()),
            (3, 9, "nodes must be between 1 and 15, got 16")
        );
        let e = parse_scenario(
            "name = \"Bad_Name\"\ndescription = \"d\"\nnodes = 1\nduration = \"1s\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!((e.line, e.col), (1, 8));
        let e = parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"-1s\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.message, "bad duration \"-1s\": must not be negative here");
        let e = parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"99999999999999h\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.message, "bad duration \"99999999999999h\": too large");
        let e = parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"2h\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.message, "duration must be at most 1h, got 2h");
        assert_error(
            "bugs = [\"raft.nope\"]\n",
            5,
            9,
            &Bugs::default().enable("raft.nope").unwrap_err(),
        );
        assert_error(
            "[network]\nloss = nan\n",
            6,
            8,
            "loss must be a probability between 0 and 1, got NaN",
        );
        assert_error_contains(
            "[network]\nlatency = [\"5ms\", \"1ms\"]\n",
            "latency min (5ms) must not be more than max (1ms)",
        );
        assert_error_contains("[raft]\nelection_timeout = \"150ms\"\n", "must be a pair");
        assert_error(
            "[raft]\nheartbeat = \"150ms\"\n",
            6,
            13,
            "heartbeat (150ms) must be less than the election_timeout min (150ms), or followers time out between heartbeats",
        );
        assert_error(
            "[raft]\nsnapshot_threshold = 0\n",
            6,
            22,
            "snapshot_threshold must be at least 1, got 0",
        );
        assert_error(
            "[clock.n2]\ndrift_ppm = 100001\n",
            6,
            13,
            "drift_ppm must be between -100000 and 100000, got 100001",
        );
        assert_error(
            "[workload]\nrate = 5e-324\n",
            6,
            8,
            "rate must be between 0.001 and 100000 ops per second per client, got 5e-324",
        );
        assert_error(
            "[workload]\nrate = inf\n",
            6,
            8,
            "rate must be between 0.001 and 100000 ops per second per client, got inf",
        );
        assert_error(
            "[workload]\nclients = 2\nkeys = 0\n",
            7,
            8,
            "keys (with clients > 0) must be between 1 and 100000, got 0",
        );
        assert_error(
            "[workload]\nstop = \"11s\"\n",
            6,
            8,
            "stop (11s) must not be after the end of the run (duration 10s)",
        );
        assert_error(
            "[workload]\nstart = \"9s\"\n",
            6,
            9,
            "workload start (9s) must not be after stop (8s, the default: 80% of duration)",
        );
        assert_error(
            "[workload]\nop_timeout = \"100ms\"\n",
            6,
            14,
            "op_timeout (100ms) must be at least request_timeout (300ms)",
        );
        assert_error(
            "[expect]\nleader_within = \"0s\"\n",
            6,
            17,
            "leader_within must be more than 0s",
        );
        assert_error_contains(
            "[[network.link]]\nfrom = \"n1\"\nto = \"n1\"\n",
            "two different nodes",
        );
        assert_error(
            "[[network.link]]\nfrom = \"n1\"\nto = \"n2\"\n[[network.link]]\nfrom = \"n2\"\nto = \"n1\"\nboth_ways = true\n",
            8,
            1,
            "link n1 -> n2 is already overridden by the [[network.link]] at line 5",
        );
    }

    #[test]
    fn step_errors() {
        let step = |action: &str| format!("[[step]]\nat = \"1s\"\n{action}\n");
        assert_error(
            &step("crash = \"last_crashed\""),
            7,
            9,
            "bad target `last_crashed` for crash: expected a node name (n1..n5) or \"leader\" or \"follower\"",
        );
        assert_error(
            &step("heal = false"),
            7,
            8,
            "heal must be true (remove the step to do nothing)",
        );
        assert_error(
            &step("partition = []"),
            7,
            13,
            "partition needs at least one group, like [[\"n1\"], [\"n2\", \"n3\"]]",
        );
        assert_error(
            &step("partition = [[]]"),
            7,
            14,
            "a partition group must name at least one node",
        );
        assert_error_contains(
            &step("partition_oneway = { from = [\"n1\"], to = [] }"),
            "to must name at least one node",
        );
        assert_error(
            &step("partition_oneway = { from = [\"n1\"], to = [\"n2\", \"n1\"] }"),
            7,
            49,
            "n1 is in both from and to; a one-way partition needs disjoint sides",
        );
        assert_error_contains(
            &step("network = { link = [\"n1\", \"n2\"] }"),
            "network needs at least one of",
        );
        assert_error_contains(
            &step("network = { loss = 0.1, link = [\"n1\"] }"),
            "link must be a pair",
        );
        assert_error_contains(
            &step("network = { loss = 0.1, both_ways = true }"),
            "both_ways needs link",
        );
        assert_error(
            &step("clock = { node = \"n1\" }"),
            7,
            9,
            "clock needs at least one of offset, drift_ppm, step",
        );
        assert_error_contains(
            &step("clock = { node = \"leader\", step = \"1s\" }"),
            "unknown node `leader`",
        );
        assert_error_contains(
            &step("clock = { node = \"n1\", step = \"-2h\" }"),
            "step must be within ±1h",
        );
        assert_error(
            &step("client = { id = 0, node = \"n1\", op = \"get\", key = \"x\", value = 1 }"),
            7,
            64,
            "a get takes no value",
        );
        assert_error(
            &step("client = { id = 0, node = \"n1\", op = \"put\", key = \"x\" }"),
            7,
            38,
            "a put needs a value, like value = 7",
        );
        assert_error_contains(
            &step("client = { id = 0, node = \"n1\", op = \"cas\", key = \"x\" }"),
            "unknown op `cas`",
        );
        assert_error_contains(
            &step("client = { id = 0, node = \"n1\", op = \"get\", key = \"\" }"),
            "key must not be empty",
        );
        assert_error_contains(
            &step("client = { id = -1, node = \"n1\", op = \"get\", key = \"x\" }"),
            "client id must be between 0 and 1000, got -1",
        );
    }

    /// Steps at the given (time, action) pairs, one `[[step]]` of 4 lines each from line 5.
    fn timeline(steps: &[(&str, &str)]) -> String {
        steps
            .iter()
            .map(|(at, action)| format!("[[step]]\nat = \"{at}\"\n{action}\n\n"))
            .collect()
    }

    #[test]
    fn impossible_timelines_are_rejected() {
        // Step k (0-based) has its header at line 5 + 4k and its action at line 7 + 4k.
        assert_error(
            &timeline(&[("1s", "restart = \"n1\"")]),
            7,
            11,
            "n1 is not crashed at 1s: no earlier step crashes it",
        );
        assert_error(
            &timeline(&[
                ("1s", "crash = \"n1\""),
                ("2s", "restart = \"n1\""),
                ("3s", "restart = \"n1\""),
            ]),
            15,
            11,
            "n1 is already up at 3s (restarted by the step at line 9)",
        );
        // Time order, not file order, decides.
        assert_error(
            &timeline(&[("4s", "crash = \"n3\""), ("2s", "crash = \"n3\"")]),
            7,
            9,
            "n3 is already crashed at 4s (crashed by the step at line 9)",
        );
        assert_error(
            &timeline(&[("1s", "resume = \"n2\"")]),
            7,
            10,
            "n2 is not paused at 1s: no earlier step pauses it",
        );
        assert_error(
            &timeline(&[
                ("1s", "pause = \"n2\""),
                ("2s", "resume = \"n2\""),
                ("3s", "resume = \"n2\""),
            ]),
            15,
            10,
            "n2 is not paused at 3s (already resumed by the step at line 9)",
        );
        // A crash ends a pause: the simulator would skip the resume.
        assert_error(
            &timeline(&[
                ("1s", "pause = \"n2\""),
                ("2s", "crash = \"n2\""),
                ("3s", "resume = \"n2\""),
            ]),
            15,
            10,
            "n2 is not paused at 3s: the step at line 9 crashed it, and a crash ends a pause",
        );
        assert_error(
            &timeline(&[
                ("1s", "pause = \"n2\""),
                ("2s", "crash = \"n2\""),
                ("3s", "restart = \"n2\""),
                ("4s", "resume = \"n2\""),
            ]),
            19,
            10,
            "n2 is not paused at 4s: the step at line 9 crashed it, and a crash ends a pause",
        );
        assert_error(
            &timeline(&[
                ("1s", "pause = \"n2\""),
                ("2s", "crash = \"n2\""),
                ("3s", "resume = \"last_paused\""),
            ]),
            15,
            10,
            "resume = \"last_paused\" at 3s, but every paused node is resumed or crashed by then",
        );
        // After a crash the node can be paused again, and then resumed.
        let again = timeline(&[
            ("1s", "pause = \"n2\""),
            ("2s", "crash = \"n2\""),
            ("3s", "restart = \"n2\""),
            ("4s", "pause = \"n2\""),
            ("5s", "resume = \"n2\""),
        ]);
        parse_scenario(&format!("{HEAD}{again}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_error(
            &timeline(&[("1s", "pause = \"n2\""), ("2s", "pause = \"n2\"")]),
            11,
            9,
            "n2 is already paused at 2s (paused by the step at line 5)",
        );
        assert_error(
            &timeline(&[("1s", "crash = \"n4\""), ("2s", "pause = \"n4\"")]),
            11,
            9,
            "n4 is crashed at 2s (crashed by the step at line 5), so it cannot be paused",
        );
        assert_error(
            &timeline(&[("1s", "restart = \"last_crashed\"")]),
            7,
            11,
            "restart = \"last_crashed\" at 1s, but no earlier step crashes a node",
        );
        assert_error_contains(
            &timeline(&[
                ("1s", "crash = \"n1\""),
                ("2s", "restart = \"last_crashed\""),
                ("3s", "restart = \"last_crashed\""),
            ]),
            "every crashed node is up again by then",
        );
        assert_error(
            &timeline(&[("1s", "resume = \"last_paused\"")]),
            7,
            10,
            "resume = \"last_paused\" at 1s, but no earlier step pauses a node",
        );
        // last_crashed resolves to the most recent crash when everything is known.
        assert_error(
            &timeline(&[
                ("1s", "crash = \"n1\""),
                ("2s", "crash = \"n2\""),
                ("3s", "restart = \"last_crashed\""),
                ("4s", "crash = \"n1\""),
            ]),
            19,
            9,
            "n1 is already crashed at 4s (crashed by the step at line 5)",
        );
    }

    #[test]
    fn role_targets_make_state_uncertain_instead_of_wrong() {
        let ok = [
            timeline(&[("1s", "crash = \"leader\""), ("2s", "restart = \"n1\"")]),
            timeline(&[
                ("1s", "crash = \"follower\""),
                ("2s", "restart = \"last_crashed\""),
                ("3s", "restart = \"last_crashed\""),
            ]),
            timeline(&[("1s", "pause = \"leader\""), ("2s", "resume = \"n3\"")]),
            timeline(&[("1s", "crash = \"leader\""), ("2s", "pause = \"n1\"")]),
            timeline(&[
                ("1s", "crash = \"n1\""),
                ("2s", "crash = \"leader\""),
                ("3s", "restart = \"last_crashed\""),
                ("4s", "restart = \"n1\""),
            ]),
            timeline(&[("1s", "crash = \"n1\""), ("1s", "restart = \"n1\"")]),
        ];
        for body in ok {
            parse_scenario(&format!("{HEAD}{body}"), "t.toml")
                .unwrap_or_else(|e| panic!("{e}\n{body}"));
        }
        // Knowledge that a role cannot change is still used.
        assert_error_contains(
            &timeline(&[
                ("1s", "crash = \"n1\""),
                ("2s", "crash = \"leader\""),
                ("3s", "crash = \"n1\""),
            ]),
            "n1 is already crashed at 3s",
        );
    }

    #[test]
    fn scripted_keys_reuse_workload_keys_and_intern_in_file_order() {
        let body = format!(
            "[workload]\nkeys = 3\n{}",
            timeline(&[
                (
                    "5s",
                    "client = { id = 0, node = \"n1\", op = \"get\", key = \"zeta\" }"
                ),
                (
                    "1s",
                    "client = { id = 0, node = \"n1\", op = \"put\", key = \"alpha\", value = 1 }"
                ),
                (
                    "2s",
                    "client = { id = 0, node = \"n1\", op = \"get\", key = \"k2\" }"
                ),
                (
                    "3s",
                    "client = { id = 0, node = \"n1\", op = \"get\", key = \"k3\" }"
                ),
                (
                    "4s",
                    "client = { id = 0, node = \"n1\", op = \"get\", key = \"zeta\" }"
                ),
            ])
        );
        let s = parse_scenario(&format!("{HEAD}{body}"), "t.toml").unwrap();
        assert_eq!(s.key_names, vec!["k0", "k1", "k2", "zeta", "alpha", "k3"]);
        let keys: Vec<u32> = s
            .timeline
            .iter()
            .map(|st| match st.action {
                Action::Client {
                    op: ClientOp::Get { key } | ClientOp::Put { key, .. },
                    ..
                } => key,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(keys, vec![4, 2, 5, 3, 3]);
        let back = parse_scenario(&scenario_to_toml(&s), "back.toml").unwrap();
        assert_eq!(without_lines(back), without_lines(s));
    }

    #[test]
    fn scenario_round_trips_through_toml() {
        let mut rich = parse_scenario(FULL, "full.toml").unwrap();
        let text = scenario_to_toml(&rich);
        let back = parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(without_lines(back), without_lines(rich.clone()));

        // Values TOML integers cannot hold, odd floats, and every clock field.
        rich.seed = u64::MAX;
        rich.network.link.loss = 0.1 + 0.2;
        rich.workload.rate_per_s = 1.0 / 3.0;
        rich.clocks[4] = ClockConfig {
            offset_ns: 1,
            drift_ppm: -100_000,
        };
        rich.timeline.push(Step {
            at_ns: 9 * NS_PER_S + 1,
            action: Action::Client {
                client: 7,
                node: Target::Follower,
                op: ClientOp::Put {
                    key: 3,
                    value: u64::MAX,
                },
            },
            line: 0,
        });
        rich.timeline.push(Step {
            at_ns: 10 * NS_PER_S,
            action: Action::Clock {
                node: 4,
                offset_ns: Some(-1),
                drift_ppm: Some(3),
                step_ns: Some(3_600 * NS_PER_S as i64),
            },
            line: 0,
        });
        let mut bugs = Bugs::default();
        for b in crate::bugs::CATALOGUE {
            bugs.enable(b.name).unwrap();
        }
        rich.bugs = bugs;
        rich.description = "Quotes \" and \\ backslashes\nand newlines.".into();
        let text = scenario_to_toml(&rich);
        let back = parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(without_lines(back), without_lines(rich.clone()));

        // Lock tables: odd values, a whole-run stop, and each table alone.
        rich.locks = LockConfig {
            wait_ns: 3_600 * NS_PER_S,
            lease_check_ns: 1,
            reentry_limit: 1000,
        };
        rich.lock_load = LockWorkload {
            clients: 1000,
            locks: 100_000,
            max_per_round: 100_000,
            shared_ratio: 1.0 / 3.0,
            hold_min_ns: 0,
            hold_max_ns: 1,
            gap_ns: 1,
            ttl_ns: 4,
            crash_ratio: 1.0,
            start_ns: 10 * NS_PER_S,
            stop_ns: u64::MAX,
        };
        let mut variants = vec![rich.clone()];
        let mut only_clients = rich.clone();
        only_clients.locks = LockConfig::default();
        only_clients.lock_load = LockWorkload {
            clients: 3,
            ..LockWorkload::default()
        };
        variants.push(only_clients.clone());
        only_clients.lock_load.stop_ns = 0;
        variants.push(only_clients);
        let mut only_locks = rich.clone();
        only_locks.lock_load = LockWorkload::default();
        variants.push(only_locks);
        // Present but with no clients and an explicit stop: still written.
        let mut idle = rich;
        idle.lock_load = LockWorkload {
            stop_ns: 10 * NS_PER_S,
            ..LockWorkload::default()
        };
        variants.push(idle);
        for s in variants {
            let text = scenario_to_toml(&s);
            assert_eq!(
                text.contains("[locks]"),
                s.locks != LockConfig::default(),
                "{text}"
            );
            assert_eq!(
                text.contains("[lock_clients]"),
                s.lock_load != LockWorkload::default(),
                "{text}"
            );
            let back =
                parse_scenario(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(without_lines(back), without_lines(s));
        }
    }

    #[test]
    fn large_saved_runs_round_trip() {
        // Thousands of steps with many scripted keys, introduced out of time order.
        let mut body = String::from("[workload]\nkeys = 2\n");
        for i in 0..3_000u64 {
            let at = 9_000 - i * 3;
            let key = format!("key{}", i % 1_000);
            let _ = write!(
                body,
                "[[step]]\nat = \"{at}ms\"\nclient = {{ id = {}, node = \"n{}\", op = \"put\", key = \"{key}\", value = {i} }}\n",
                i % 7,
                i % 5 + 1
            );
        }
        let text = format!("{HEAD}{body}");
        let started = std::time::Instant::now(); // determinism-ok: times this test only
        let s = parse_scenario(&text, "big.toml").unwrap();
        assert_eq!(s.key_names.len(), 1_002);
        let back = parse_scenario(&scenario_to_toml(&s), "saved.toml").unwrap();
        assert_eq!(without_lines(back), without_lines(s));
        assert!(
            started.elapsed().as_secs() < 10,
            "too slow: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn durations_parse_and_format() {
        let cases: &[(&str, u64)] = &[
            ("10ns", 10),
            ("300us", 300_000),
            ("150ms", 150 * NS_PER_MS),
            ("2s", 2 * NS_PER_S),
            ("1.5s", 1_500 * NS_PER_MS),
            ("1m", 60 * NS_PER_S),
            ("90s", 90 * NS_PER_S),
            ("1h", 3_600 * NS_PER_S),
            ("0s", 0),
            ("1000000001ns", NS_PER_S + 1),
            ("1.25s", 1_250 * NS_PER_MS),
            ("150s", 150 * NS_PER_S),
        ];
        for &(text, ns) in cases {
            assert_eq!(parse_duration(text), Ok(ns), "{text}");
            assert_eq!(format_duration(ns), text, "{ns}");
        }
        assert_eq!(parse_duration("0.1m"), Ok(6 * NS_PER_S));
        assert_eq!(parse_duration("0.3s"), Ok(300 * NS_PER_MS));
        assert_eq!(parse_duration("1.000000001s"), Ok(NS_PER_S + 1));
        assert_eq!(parse_duration("1500ms"), Ok(1_500 * NS_PER_MS));
        assert_eq!(parse_duration("+5ms"), Ok(5 * NS_PER_MS));
        assert_eq!(parse_duration("007ms"), Ok(7 * NS_PER_MS));
        assert_eq!(format_duration(u64::MAX), "18446744073709551615ns");
        assert_eq!(parse_duration("18446744073709551615ns"), Ok(u64::MAX));
        assert_eq!(parse_signed_duration("-20ms"), Ok(-20 * NS_PER_MS as i64));
        assert_eq!(
            parse_signed_duration("-9223372036854775808ns"),
            Ok(i64::MIN)
        );
        assert!(
            parse_signed_duration("9223372036854775808ns")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_duration("1.5ns")
                .unwrap_err()
                .contains("not a whole number of nanoseconds")
        );
        assert!(
            parse_duration("18446744073709551616ns")
                .unwrap_err()
                .contains("too large")
        );
        for bad in [
            "", "ms", "1", "1 s", " 1s", "1s ", "1.s", ".5s", "1..5s", "1.2.3s", "1sec", "1S", "-",
            "--1s", "1e3ms", "NaNs", "1µs",
        ] {
            assert_eq!(parse_duration(bad), Err(bad_duration(bad)), "{bad:?}");
        }
        // Round trip over many magnitudes, with a fixed pseudo-random walk.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let ns = (x >> (x % 64)) / [1, 1_000, 1_000_000, 1_000_000_000][(x % 4) as usize];
            let text = format_duration(ns);
            assert_eq!(parse_duration(&text), Ok(ns), "{ns} -> {text}");
            let signed = -(ns as i64 / 2);
            assert_eq!(
                parse_signed_duration(&format_signed_duration(signed)),
                Ok(signed)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<String> = [
            "",
            "\u{0}",
            "=",
            "[[step]]",
            "name = ",
            "nodes = 99999999999999999999999999",
            "name = \"a\"\ndescription = \"b\"\nnodes = 0\nduration = \"1s\"",
            "name = \"a\"\ndescription = \"b\"\nnodes = -1\nduration = \"1s\"",
            "name = \"a\"\ndescription = \"b\"\nnodes = 9223372036854775807\nduration = \"1s\"",
            "name = \"a\"\ndescription = \" \"\nnodes = 1\nduration = \"1s\"",
            "name = \"a\"\ndescription = \"b\"\nnodes = 1\nduration = \"0s\"",
            "name = \"a\"\ndescription = \"b\"\nnodes = 1\nduration = \"1s\"\n[[step]]\nat = \"1s\"\npartition = [[\"n1\"]]",
            "name = \"a\"\ndescription = \"b\"\nnodes = 1\nduration = \"1s\"\n[workload]\nrate = -inf\nkeys = -5",
            "name = \"a\"\ndescription = \"b\"\nnodes = 1\nduration = \"1s\"\n[clock]\nn1 = 5",
            "name = \"a\"\ndescription = \"b\"\nnodes = 1\nduration = \"1s\"\n[[step]]\nat = \"1s\"\nclient = { id = 9223372036854775807, node = \"n1\", op = \"get\", key = \"x\" }",
            "step = [1, 2]\nclock = []\nnetwork = 3",
            "[network]\nlatency = [[\"1ms\"]]",
            "[network]\nlatency = {}",
            "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "[[step]]\nat = \"\u{1F600}\"",
            "name = \"\u{1F600}\u{1F600}\"\ndescription = \"\u{e9}\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push("[".repeat(100_000));
        inputs.push(format!("a = {}", "{ b = ".repeat(10_000)));
        // Every prefix and every single-byte corruption of rich valid files.
        for file in [FULL, QUEUE_FULL, CACHE_FULL] {
            let bytes = file.as_bytes();
            for cut in 0..=bytes.len() {
                inputs.push(String::from_utf8_lossy(&bytes[..cut]).into_owned());
            }
            for (i, junk) in (0..bytes.len()).step_by(3).zip(
                [b'"', b'[', b'=', b'-', b'9', b'\n', b'x', b'.', b's']
                    .into_iter()
                    .cycle(),
            ) {
                let mut b = bytes.to_vec();
                b[i] = junk;
                inputs.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
        for input in &inputs {
            if let Err(e) = parse_scenario(input, "g.toml") {
                assert!(!e.message.is_empty());
                let _ = e.to_string();
            }
        }
        for d in [
            "99999999999999h",
            "-99999999999999999999999999999999999999999h",
            "1.9999999999999999999999s",
            "\u{1F600}s",
            "9\u{1F600}",
        ] {
            let _ = parse_duration(d);
            let _ = parse_signed_duration(d);
        }
    }

    #[test]
    fn shipped_scenarios_parse_and_round_trip() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let s = load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(s.name.as_str()),
                path.file_stem().and_then(|n| n.to_str()),
                "{}: name should match the file name",
                path.display()
            );
            let back = parse_scenario(&scenario_to_toml(&s), "saved.toml").unwrap();
            assert_eq!(without_lines(back), without_lines(s));
            count += 1;
        }
        assert!(
            count >= 14,
            "expected the shipped scenarios in {}",
            dir.display()
        );
    }
}
