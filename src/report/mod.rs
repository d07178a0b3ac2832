//! What each command prints: tables for a terminal and, with `--json`, the
//! same figures as one JSON document. Every summary is built once, from
//! rows that derive both `Tabled` (the tables) and `Serialize` (the JSON),
//! so the two cannot drift apart. `html` draws the self-contained HTML
//! report.

pub mod html;
mod timelines;

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::style::{HorizontalLine, On};
use tabled::settings::themes::BorderCorrection;
use tabled::settings::width::Wrap;
use tabled::settings::{Panel, Style};
use tabled::{Table, Tabled};

use crate::bench::{CacheBench, Measurements, QueueBench, RaftBench};
use crate::bugs::BugInfo;
use crate::check::cache_coherence::CacheSummary;
use crate::check::cache_history::{CacheLatencies, Latency};
use crate::check::queue_delivery::QueueSummary;
use crate::explore::fuzz::SweepSummary;
use crate::explore::hunt::Hunt;
use crate::explore::shrink::{Shrunk, Size};
use crate::run::{CacheReport, QueueReport, RunReport};

/// How a command prints its summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables, for people at a terminal.
    Tables,
    /// One JSON document with the same figures, for programs: numbers as
    /// numbers, durations in nanoseconds under keys ending in `_ns`.
    Json,
}

impl Format {
    /// The format a command's `--json` flag asks for.
    pub fn json_if(json: bool) -> Self {
        if json { Format::Json } else { Format::Tables }
    }
}

/// A summary whose rows give both its tables and (serialized) its JSON.
trait Summary: Serialize {
    fn tables(&self) -> String;
}

fn render(summary: &impl Summary, format: Format) -> String {
    match format {
        Format::Tables => summary.tables(),
        Format::Json => {
            // Through `Value`, whose maps sort their keys: every command
            // lists its keys the way `run --json` always has.
            let value = serde_json::to_value(summary)
                .expect("a summary is plain data: string keys, strings and numbers");
            serde_json::to_string_pretty(&value).expect("a Value always prints") + "\n"
        }
    }
}

/// The `distsync run` summary.
pub fn run_summary(r: &RunReport, format: Format) -> String {
    render(&RunSummary::of(r), format)
}

/// The `distsync fuzz` summary: one row per scenario swept, then the
/// failing seeds with their replay commands.
pub fn fuzz_summary(sweeps: &[SweepSummary], jobs: usize, format: Format) -> String {
    render(&FuzzSummary::of(sweeps, jobs), format)
}

/// The `distsync shrink` summary; `written` is the minimal scenario's file.
pub fn shrink_summary(s: &Shrunk, written: &Path, format: Format) -> String {
    let summary = ShrinkSummary {
        signature: &s.signature,
        candidate_runs: s.runs,
        file: written.display().to_string(),
        before: SizeRow::of("before", &s.before),
        after: SizeRow::of("after", &s.after),
    };
    render(&summary, format)
}

/// The planted-bug catalogue `distsync bugs` lists.
pub fn bugs_summary(bugs: &[BugInfo], format: Format) -> String {
    let rows = bugs
        .iter()
        .map(|b| BugRow {
            bug: b.name,
            caught_by: b.caught_by,
            scenario: b.scenario,
            budget: b.budget,
            mistake: b.mistake,
        })
        .collect();
    render(&Catalogue(rows), format)
}

/// The `distsync bugs --hunt` summary.
pub fn hunt_summary(hunts: &[Hunt], format: Format) -> String {
    render(&Hunts(hunts.iter().map(HuntRow::of).collect()), format)
}

/// The `distsync bench` summary.
pub fn bench_summary(m: &Measurements, format: Format) -> String {
    render(&BenchSummary::of(m), format)
}

/// The `distsync report` summary: the page it wrote.
pub fn page_summary(page: &Page, format: Format) -> String {
    render(page, format)
}

/// Pages written beside another command's work (`run --report`, `fuzz
/// --report`), as one table.
pub fn pages_table(pages: &[Page]) -> String {
    plain(pages)
}

// ---------------------------------------------------------------------------
// Tables: one look for every command.

/// Width at which a check's detail wraps.
const DETAIL_WIDTH: usize = 80;

/// Widths at which the bug catalogue's two text columns wrap, narrower
/// than a check's detail because they share a row with three more columns.
const MISTAKE_WIDTH: usize = 56;
const CAUGHT_BY_WIDTH: usize = 24;

/// A title narrower than this is not wrapped, however narrow its table.
const MIN_TITLE_WIDTH: usize = 40;

const RULE: HorizontalLine<On, On, On> = HorizontalLine::full('─', '┼', '├', '┤');

/// Rows under their column names, without a title.
fn plain<R: Tabled>(rows: impl IntoIterator<Item = R>) -> String {
    Table::new(rows).with(Style::sharp()).to_string() + "\n"
}

/// `t` under a title spanning it, the title wrapped to the table's width
/// so that a long one does not stretch the last column; a rule under the
/// title, and under the column names when the first row holds them.
fn titled(mut t: Table, title: &str, first_row_names_columns: bool) -> String {
    let width = t.total_width().saturating_sub(4).max(MIN_TITLE_WIDTH);
    t.with(Panel::header(wrap_words(title, width)));
    if first_row_names_columns {
        t.with(Style::sharp().horizontals([(1, RULE), (2, RULE)]));
    } else {
        t.with(Style::sharp());
    }
    t.with(BorderCorrection::span());
    t.to_string() + "\n"
}

/// `text` in lines of at most `width` characters, broken between words.
fn wrap_words(text: &str, width: usize) -> String {
    let wrapped = Wrap::wrap(text, width, true);
    // A line broken at a space starts with that space.
    let lines: Vec<&str> = wrapped.lines().map(str::trim).collect();
    lines.join("\n")
}

/// A cell of free text (a check's detail, a bug's description), wrapped so
/// that one long sentence does not stretch its table off the screen.
fn prose(text: &&str, width: usize) -> String {
    wrap_words(text, width)
}

/// Records side by side under a title, a row per field: the records'
/// column names and cells turned on their side, so that many figures fit a
/// terminal (and several runs of a benchmark compare across). A field
/// displayed as "" in every record is left out (nothing to show, like
/// leader recovery in a run without a leader crash); the JSON keeps it.
fn figures<R: Tabled>(title: &str, records: &[R]) -> String {
    let cells: Vec<_> = records.iter().map(Tabled::fields).collect();
    let mut b = Builder::default();
    for (i, name) in R::headers().into_iter().enumerate() {
        if cells.iter().any(|c| !c[i].is_empty()) {
            let values = cells.iter().map(|c| c[i].to_string());
            b.push_record(std::iter::once(name.into_owned()).chain(values));
        }
    }
    titled(b.build(), title, false)
}

// ---------------------------------------------------------------------------
// Cell formats. Display functions take the field by reference, as
// `#[tabled(display = ...)]` passes it.

/// A rounded, readable duration for summaries ("206.85ms", "7s"); scenario
/// files use the exact forms of `format_duration` instead.
pub fn human_duration(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns}ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

fn duration(ns: &u64) -> String {
    human_duration(*ns)
}

/// A latency: milliseconds with two decimals, so that figures line up for
/// comparison.
fn ms(ns: &u64) -> String {
    format!("{:.2} ms", *ns as f64 / 1e6)
}

fn ms_or_dash(ns: &Option<u64>) -> String {
    ns.as_ref().map_or_else(|| "-".to_string(), ms)
}

fn duration_or(ns: &Option<u64>, none: &str) -> String {
    ns.map_or_else(|| none.to_string(), human_duration)
}

fn or<T: fmt::Display>(v: &Option<T>, none: &str) -> String {
    v.as_ref().map_or_else(|| none.to_string(), T::to_string)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn check_verdict(v: &&'static str) -> String {
    match *v {
        "passed" => "ok",
        "failed" => "FAILED",
        "budget exceeded" => "BUDGET EXCEEDED",
        other => other,
    }
    .to_string()
}

fn passed_or_failed(passed: &bool) -> String {
    if *passed { "passed" } else { "FAILED" }.to_string()
}

fn yes_no(b: &bool) -> String {
    if *b { "yes" } else { "no" }.to_string()
}

fn count<T>(items: &[T]) -> String {
    items.len().to_string()
}

/// Per second, in millions ("2.30M").
fn millions(per_s: &f64) -> String {
    format!("{:.2}M", per_s / 1e6)
}

fn whole(x: &f64) -> String {
    format!("{x:.0}")
}

fn times(x: &f64) -> String {
    format!("{x:.0}x")
}

fn percent(ratio: &f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

// ---------------------------------------------------------------------------
// distsync run

#[derive(Serialize, Tabled)]
struct RunSummary<'a> {
    scenario: &'a str,
    seed: u64,
    #[tabled(rename = "simulated", display = "duration")]
    sim_time_ns: u64,
    events: u64,
    #[tabled(rename = "trace events")]
    trace_events: u64,
    messages: Messages,
    #[tabled(format("{} started, {} won", self.elections, self.leaders_elected))]
    elections: u64,
    #[tabled(skip)]
    leaders_elected: usize,
    #[tabled(rename = "first leader", display("duration_or", "never"))]
    first_leader_ns: Option<u64>,
    #[tabled(
        rename = "leader recovery after a leader crash",
        display = "recoveries"
    )]
    leader_recoveries_ns: &'a [u64],
    #[tabled(rename = "client operations")]
    ops: Ops,
    #[tabled(skip)]
    passed: bool,
    /// Checks that ran out of budget before deciding (not failures).
    #[tabled(skip)]
    inconclusive: usize,
    /// The budget that stopped the run before its end: "events" or
    /// "memory" (None: within budget). Neither passed nor failed.
    #[tabled(skip)]
    budget_exceeded: Option<&'static str>,
    /// Printed on its own line, which tests and scripts look for.
    #[tabled(skip)]
    digest: String,
    #[tabled(skip)]
    nodes: Vec<NodeRow<'a>>,
    #[tabled(skip)]
    locks: Option<LockFigures<'a>>,
    #[tabled(skip)]
    queue: Option<QueueFigures<'a>>,
    #[tabled(skip)]
    cache: Option<CacheFigures>,
    #[tabled(skip)]
    checks: Vec<CheckRow<'a>>,
    /// The tables show it in the failed check's detail (and `run` on stderr).
    #[tabled(skip)]
    violation: Option<ViolationFigures<'a>>,
}

#[derive(Serialize)]
struct Messages {
    sent: u64,
    delivered: u64,
    dropped: u64,
}

impl fmt::Display for Messages {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} sent, {} delivered, {} dropped",
            self.sent, self.delivered, self.dropped
        )
    }
}

#[derive(Serialize)]
struct Ops {
    invoked: usize,
    completed: u64,
}

impl fmt::Display for Ops {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} invoked, {} completed", self.invoked, self.completed)
    }
}

fn recoveries(ns: &&[u64]) -> String {
    let Some(max) = ns.iter().max() else {
        return String::new();
    };
    let mean = ns.iter().sum::<u64>() / ns.len() as u64;
    format!(
        "{} times, mean {}, max {}",
        ns.len(),
        human_duration(mean),
        human_duration(*max)
    )
}

#[derive(Serialize, Tabled)]
struct NodeRow<'a> {
    node: &'a str,
    role: &'a str,
    term: u64,
    commit: u64,
    applied: u64,
    #[tabled(rename = "log last")]
    log_last: u64,
    snapshot: u64,
}

#[derive(Serialize, Tabled)]
struct CheckRow<'a> {
    #[tabled(rename = "check")]
    name: &'a str,
    /// "passed", "failed" or "inconclusive" (the tables say ok, FAILED, inconclusive).
    #[tabled(rename = "verdict", display = "check_verdict")]
    verdict: &'static str,
    #[tabled(display("prose", DETAIL_WIDTH))]
    detail: &'a str,
}

#[derive(Serialize)]
struct ViolationFigures<'a> {
    invariant: &'static str,
    detail: &'a str,
    event: u64,
    t_ns: u64,
    nodes: Vec<String>,
}

impl<'a> RunSummary<'a> {
    fn of(r: &'a RunReport) -> Self {
        let s = &r.stats;
        RunSummary {
            scenario: &r.scenario,
            seed: r.seed,
            sim_time_ns: r.sim_time_ns,
            events: s.events,
            trace_events: r.trace_events,
            messages: Messages {
                sent: s.sent,
                delivered: s.delivered,
                dropped: s.dropped,
            },
            elections: s.elections,
            leaders_elected: r.leaders_elected,
            first_leader_ns: s.first_leader_ns,
            leader_recoveries_ns: &s.leader_recoveries_ns,
            ops: Ops {
                invoked: r.ops_total,
                completed: r.ops_completed,
            },
            passed: r.passed(),
            inconclusive: r.inconclusive(),
            budget_exceeded: r.budget_exceeded.map(|b| b.kind()),
            digest: r.digest_hex(),
            nodes: r
                .nodes
                .iter()
                .map(|n| NodeRow {
                    node: &n.name,
                    role: &n.status,
                    term: n.term,
                    commit: n.commit,
                    applied: n.applied,
                    log_last: n.log_last,
                    snapshot: n.snapshot,
                })
                .collect(),
            locks: r.locks.as_ref().map(|l| LockFigures {
                grants: l.counts.grants,
                releases: l.counts.releases,
                expiries: l.counts.expiries,
                deadlocks: l.counts.deadlocks,
                victims: l.victims,
                fencing_rejections: l.fencing_rejections,
                acquire_latency_ns: Spread {
                    p50: l.acquire_p50_ns,
                    p99: l.acquire_p99_ns,
                    max: l.acquire_max_ns,
                },
                wait_for: &l.wait_for,
            }),
            queue: r.queue.as_ref().map(QueueFigures::of),
            cache: r.cache.as_ref().map(CacheFigures::of),
            checks: r
                .checks
                .iter()
                .map(|c| CheckRow {
                    name: &c.name,
                    verdict: c.verdict.name(),
                    detail: &c.detail,
                })
                .collect(),
            violation: r.violation.as_ref().map(|f| ViolationFigures {
                invariant: f.violation.invariant,
                detail: &f.violation.detail,
                event: f.seq,
                t_ns: f.t_ns,
                nodes: f
                    .violation
                    .nodes
                    .iter()
                    .map(|n| format!("n{}", n + 1))
                    .collect(),
            }),
        }
    }
}

impl Summary for RunSummary<'_> {
    fn tables(&self) -> String {
        let mut out = figures("run", &[self]);
        out += &plain(&self.nodes);
        if let Some(l) = &self.locks {
            out += &figures("locks", &[l]);
        }
        if let Some(q) = &self.queue {
            out += &q.tables();
        }
        if let Some(c) = &self.cache {
            out += &c.tables();
        }
        out += &plain(&self.checks);
        if self.inconclusive > 0 {
            out += &format!(
                "note: {} inconclusive: the search ran out of budget before deciding; not a violation, the run does not fail on it\n",
                plural(self.inconclusive, "check was", "checks were")
            );
        }
        if let Some(kind) = self.budget_exceeded {
            out += &format!(
                "note: budget exceeded ({kind}): the run was stopped before its end; not a violation, but not a pass either (exit code 4)\n"
            );
        }
        out += &format!("trace digest: {}\n", self.digest);
        out
    }
}

/// Three points of a latency distribution, in nanoseconds: one cell as
/// `Display` (a run's figures), or a row or column each inlined (the
/// benchmarks', which compare them).
#[derive(Serialize, Tabled)]
#[tabled(display(u64, "ms"))]
struct Spread {
    p50: u64,
    p99: u64,
    max: u64,
}

impl Spread {
    fn of(l: &Latency) -> Self {
        Spread {
            p50: l.p50_ns,
            p99: l.p99_ns,
            max: l.max_ns,
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [p50, p99, max] = [self.p50, self.p99, self.max].map(|ns| ms(&ns));
        write!(f, "p50 {p50}, p99 {p99}, max {max}")
    }
}

#[derive(Serialize, Tabled)]
struct LockFigures<'a> {
    grants: u64,
    releases: u64,
    expiries: u64,
    #[tabled(
        rename = "deadlocks broken",
        format("{} ({} victims)", self.deadlocks, self.victims)
    )]
    deadlocks: u64,
    #[tabled(skip)]
    victims: u64,
    #[tabled(rename = "fencing rejections")]
    fencing_rejections: u64,
    #[tabled(rename = "acquire latency")]
    acquire_latency_ns: Spread,
    #[tabled(rename = "wait-for graph at the end", display = "edges")]
    wait_for: &'a [(u64, u64)],
}

fn edges(wait_for: &&[(u64, u64)]) -> String {
    if wait_for.is_empty() {
        return "empty".to_string();
    }
    let edges: Vec<String> = wait_for
        .iter()
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    edges.join(", ")
}

#[derive(Serialize, Tabled)]
struct QueueFigures<'a> {
    #[tabled(format("{} at {:.0} msg/s (simulated)", self.produced, self.produce_rate_per_s))]
    produced: u64,
    #[tabled(skip)]
    produce_rate_per_s: f64,
    #[tabled(format("{} at {:.0} msg/s (simulated)", self.delivered, self.consume_rate_per_s))]
    delivered: u64,
    #[tabled(skip)]
    consume_rate_per_s: f64,
    #[tabled(rename = "end-to-end latency")]
    latency_ns: QueueLatency,
    #[tabled(rename = "messages sent (first sends)")]
    messages_sent: u64,
    #[tabled(rename = "stored by shards")]
    stored: u64,
    #[tabled(rename = "duplicate produces skipped")]
    duplicate_stores: u64,
    #[tabled(rename = "receipts (every delivery)")]
    receipts: u64,
    redeliveries: u64,
    #[tabled(rename = "duplicate deliveries")]
    duplicate_deliveries: u64,
    #[tabled(rename = "acks accepted")]
    acked: u64,
    #[tabled(rename = "dead-lettered")]
    dead_lettered: u64,
    #[tabled(rename = "consumer crashes")]
    consumer_crashes: u64,
    #[tabled(rename = "revived by a shard crash")]
    revived: u64,
    ring: Ring,
    #[tabled(rename = "key space moved per ring change", display = "shares")]
    key_space_moved: &'a [f64],
    #[tabled(
        rename = "partitions moved",
        format("{} of {}, carrying {} messages", self.partitions_moved, self.partitions, self.migrated_messages)
    )]
    partitions_moved: u64,
    #[tabled(skip)]
    partitions: u32,
    #[tabled(skip)]
    migrated_messages: u64,
    #[tabled(rename = "lost as the persistence mode permits", display = "count")]
    lost: Vec<LostRow<'a>>,
}

/// Nearest-rank end-to-end latency (None: nothing delivered).
#[derive(Serialize, Tabled)]
#[tabled(display(Option, "ms_or_dash"))]
struct QueueLatency {
    p50: Option<u64>,
    p99: Option<u64>,
}

impl QueueLatency {
    fn of(s: &QueueSummary) -> Self {
        QueueLatency {
            p50: s.latency_percentile(0.5),
            p99: s.latency_percentile(0.99),
        }
    }
}

impl fmt::Display for QueueLatency {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "p50 {}, p99 {}",
            ms_or_dash(&self.p50),
            ms_or_dash(&self.p99)
        )
    }
}

#[derive(Serialize)]
struct Ring {
    epoch: u64,
    shards: Vec<String>,
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "epoch {} [{}]", self.epoch, self.shards.join(", "))
    }
}

fn shares(fractions: &&[f64]) -> String {
    if fractions.is_empty() {
        return "none".to_string();
    }
    let shares: Vec<String> = fractions.iter().map(percent).collect();
    shares.join(", ")
}

#[derive(Serialize, Tabled)]
struct LostRow<'a> {
    producer: String,
    seq: u64,
    partition: u32,
    #[tabled(display = "yes_no")]
    acknowledged: bool,
    // The reason names the shard and both times; the table leaves their
    // numbers to the JSON rather than say them twice.
    #[tabled(skip)]
    shard: String,
    #[tabled(skip)]
    crash_ns: u64,
    #[tabled(skip)]
    stored_ns: Option<u64>,
    reason: &'a str,
}

impl<'a> QueueFigures<'a> {
    fn of(q: &'a QueueReport) -> Self {
        let s = &q.summary;
        QueueFigures {
            produced: s.produced,
            produce_rate_per_s: s.produce_rate_per_s(),
            delivered: s.delivered,
            consume_rate_per_s: s.consume_rate_per_s(),
            latency_ns: QueueLatency::of(s),
            messages_sent: s.messages_sent,
            stored: s.stored,
            duplicate_stores: s.duplicate_stores,
            receipts: s.receipts,
            redeliveries: s.redeliveries,
            duplicate_deliveries: s.duplicate_deliveries,
            acked: s.acked,
            dead_lettered: s.dead,
            consumer_crashes: s.consumer_crashes,
            revived: s.revived,
            ring: Ring {
                epoch: q.ring_epoch,
                shards: q.ring.iter().map(|x| format!("s{}", x + 1)).collect(),
            },
            key_space_moved: &q.key_space_moved,
            partitions_moved: q.partitions_moved,
            partitions: q.partitions,
            migrated_messages: s.migrated_messages,
            lost: s
                .lost
                .iter()
                .map(|l| LostRow {
                    producer: format!("p{}", l.id.producer + 1),
                    seq: l.id.seq,
                    partition: l.partition,
                    acknowledged: l.acked_to_producer,
                    // usize::MAX (no shard named) wraps to "s0".
                    shard: format!("s{}", l.shard.wrapping_add(1)),
                    crash_ns: l.crash_ns,
                    stored_ns: l.stored_ns,
                    reason: &l.reason,
                })
                .collect(),
        }
    }

    fn tables(&self) -> String {
        let mut out = figures("queue", &[self]);
        if !self.lost.is_empty() {
            out += &titled(
                Table::new(&self.lost),
                "queue: messages lost (as the persistence mode permits)",
                true,
            );
        }
        out
    }
}

#[derive(Serialize, Tabled)]
struct CacheFigures {
    #[tabled(format("{} ({} hits)", self.reads, self.read_hits))]
    reads: u64,
    #[tabled(skip)]
    read_hits: u64,
    #[tabled(format("{} ({} hits)", self.writes, self.write_hits))]
    writes: u64,
    #[tabled(skip)]
    write_hits: u64,
    #[serde(flatten)]
    #[tabled(inline)]
    hits: HitRatio,
    failed: u64,
    #[tabled(
        rename = "bus messages",
        format("{}, {:.2} per operation", self.bus_messages, self.messages_per_op)
    )]
    bus_messages: u64,
    #[tabled(skip)]
    messages_per_op: f64,
    #[tabled(rename = "write-backs")]
    writebacks: u64,
    #[tabled(rename = "read latency")]
    read_latency_ns: ReadLatency,
    #[tabled(rename = "write latency")]
    write_latency_ns: Spread,
    #[tabled(skip)]
    transitions: Vec<TransitionRow>,
    #[tabled(rename = "writes lost by a crash", display = "count")]
    lost_writes: Vec<LostWriteRow>,
}

/// The hit ratio over the run, and once warm (from the second given); a
/// row each, inlined.
#[derive(Serialize, Tabled)]
struct HitRatio {
    #[tabled(rename = "hit ratio", display = "percent")]
    hit_ratio: f64,
    #[tabled(rename = "hit ratio once warm", display("warm", self))]
    warm_hit_ratio: Option<f64>,
    #[tabled(skip)]
    warm_from_s: Option<u64>,
}

fn warm(ratio: &Option<f64>, h: &HitRatio) -> String {
    match (ratio, h.warm_from_s) {
        (Some(r), Some(from)) => format!("{} from {from}s", percent(r)),
        _ => String::new(),
    }
}

impl HitRatio {
    fn of(s: &CacheSummary) -> Self {
        let warm = s.warm_hit_ratio();
        HitRatio {
            hit_ratio: s.hit_ratio(),
            warm_hit_ratio: warm.map(|(r, _)| r),
            warm_from_s: warm.map(|(_, from)| from),
        }
    }
}

/// Read latency, with the hits and misses apart.
#[derive(Serialize, Tabled)]
#[tabled(display(u64, "ms"))]
struct ReadLatency {
    p50: u64,
    p99: u64,
    max: u64,
    #[tabled(rename = "hits p50")]
    hit_p50: u64,
    #[tabled(rename = "misses p50")]
    miss_p50: u64,
}

impl ReadLatency {
    fn of(l: &CacheLatencies) -> Self {
        ReadLatency {
            p50: l.read.p50_ns,
            p99: l.read.p99_ns,
            max: l.read.max_ns,
            hit_p50: l.read_hit.p50_ns,
            miss_p50: l.read_miss.p50_ns,
        }
    }
}

impl fmt::Display for ReadLatency {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [p50, p99, max, hit, miss] =
            [self.p50, self.p99, self.max, self.hit_p50, self.miss_p50].map(|ns| ms(&ns));
        write!(
            f,
            "p50 {p50}, p99 {p99}, max {max} (hits p50 {hit}, misses p50 {miss})"
        )
    }
}

#[derive(Serialize, Tabled)]
struct TransitionRow {
    from: &'static str,
    to: &'static str,
    cause: &'static str,
    count: u64,
}

#[derive(Serialize, Tabled)]
struct LostWriteRow {
    node: String,
    key: u32,
    value: u64,
    #[tabled(rename = "crashed at", display = "duration")]
    t_ns: u64,
}

impl CacheFigures {
    fn of(c: &CacheReport) -> Self {
        let s = &c.summary;
        CacheFigures {
            reads: s.reads,
            read_hits: s.read_hits,
            writes: s.writes,
            write_hits: s.write_hits,
            hits: HitRatio::of(s),
            failed: s.failed,
            bus_messages: c.bus_messages,
            messages_per_op: c.messages_per_op(),
            writebacks: s.writebacks,
            read_latency_ns: ReadLatency::of(&s.latency),
            write_latency_ns: Spread::of(&s.latency.write),
            transitions: s
                .transitions
                .iter()
                .map(|(&(from, to, cause), &count)| TransitionRow {
                    from,
                    to,
                    cause,
                    count,
                })
                .collect(),
            lost_writes: s
                .lost_writes
                .iter()
                .map(|&(key, value, node, t_ns)| LostWriteRow {
                    node: format!("n{}", node + 1),
                    key,
                    value,
                    t_ns,
                })
                .collect(),
        }
    }

    fn tables(&self) -> String {
        let mut out = figures("cache", &[self]);
        out += &titled(
            Table::new(&self.transitions),
            "cache: line transitions",
            true,
        );
        if !self.lost_writes.is_empty() {
            out += &titled(
                Table::new(&self.lost_writes),
                "cache: writes lost by a crash",
                true,
            );
        }
        out
    }
}

// ---------------------------------------------------------------------------
// distsync fuzz

#[derive(Serialize)]
struct FuzzSummary<'a> {
    jobs: usize,
    seeds: usize,
    passed: usize,
    failed: usize,
    /// Seeds that did not fail but had a check that could not decide.
    inconclusive: usize,
    /// Seeds stopped by their event or memory budget (neither passed nor failed).
    budget_exceeded: usize,
    sweeps: Vec<SweepRow<'a>>,
    failures: Vec<FailureRow<'a>>,
    /// The seeds stopped by a budget, saved for replay like failures.
    budget_exceeded_seeds: Vec<BudgetRow<'a>>,
}

#[derive(Serialize, Tabled)]
struct BudgetRow<'a> {
    scenario: &'a str,
    seed: u64,
    /// "events" or "memory".
    budget: &'static str,
    /// The saved scenario that replays the seed (None: not saved).
    #[tabled(rename = "replay", display("budget_replay", self))]
    file: Option<String>,
    /// The flag that sets the budget, for the replay command.
    #[tabled(skip)]
    #[serde(skip)]
    flag: String,
}

fn budget_replay(file: &Option<String>, row: &BudgetRow) -> String {
    file.as_ref().map_or_else(
        || "-".to_string(),
        |f| format!("distsync run {f} {}", row.flag),
    )
}

#[derive(Serialize, Tabled)]
struct SweepRow<'a> {
    scenario: &'a str,
    seeds: usize,
    failures: usize,
    inconclusive: usize,
    #[tabled(rename = "budget exceeded")]
    budget_exceeded: usize,
    #[tabled(rename = "events/s", display = "millions")]
    events_per_s: f64,
    #[tabled(rename = "sim time / wall time", display = "times")]
    speedup: f64,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
}

#[derive(Serialize, Tabled)]
struct FailureRow<'a> {
    scenario: &'a str,
    seed: u64,
    failure: &'a str,
    /// The saved scenario that replays the failure (None: not saved).
    #[tabled(rename = "replay", display = "replay_command")]
    file: Option<String>,
}

fn replay_command(file: &Option<String>) -> String {
    file.as_ref()
        .map_or_else(|| "-".to_string(), |f| format!("distsync run {f}"))
}

impl<'a> FuzzSummary<'a> {
    fn of(sweeps: &'a [SweepSummary], jobs: usize) -> Self {
        let rows: Vec<SweepRow> = sweeps
            .iter()
            .map(|s| SweepRow {
                scenario: &s.scenario,
                seeds: s.results.len(),
                failures: s.failures().count(),
                inconclusive: s.inconclusive(),
                budget_exceeded: s.budget_exceeded().count(),
                events_per_s: s.events_per_second(),
                speedup: s.speedup(),
                wall_ns: nanos(s.wall),
            })
            .collect();
        let failures = sweeps
            .iter()
            .flat_map(|s| {
                s.failures().map(|f| FailureRow {
                    scenario: &s.scenario,
                    seed: f.seed,
                    failure: f.failure.as_deref().unwrap_or(""),
                    file: f.file.as_ref().map(|p| p.display().to_string()),
                })
            })
            .collect();
        let budget_exceeded_seeds = sweeps
            .iter()
            .flat_map(|s| {
                s.budget_exceeded().map(|r| BudgetRow {
                    scenario: &s.scenario,
                    seed: r.seed,
                    budget: r.budget_exceeded.map_or("", |b| b.kind()),
                    file: r.file.as_ref().map(|p| p.display().to_string()),
                    flag: r.budget_exceeded.map_or(String::new(), |b| b.flag()),
                })
            })
            .collect();
        let seeds = rows.iter().map(|r| r.seeds).sum();
        let failed = rows.iter().map(|r| r.failures).sum();
        let inconclusive = rows.iter().map(|r| r.inconclusive).sum();
        let budget_exceeded = rows.iter().map(|r| r.budget_exceeded).sum();
        FuzzSummary {
            jobs,
            seeds,
            passed: seeds - failed - inconclusive - budget_exceeded,
            failed,
            inconclusive,
            budget_exceeded,
            sweeps: rows,
            failures,
            budget_exceeded_seeds,
        }
    }
}

impl Summary for FuzzSummary<'_> {
    fn tables(&self) -> String {
        let title = format!("sweep: {} seeds on {} jobs", self.seeds, self.jobs);
        let mut out = titled(Table::new(&self.sweeps), &title, true);
        if !self.failures.is_empty() {
            out += &titled(Table::new(&self.failures), "failing seeds", true);
        }
        if !self.budget_exceeded_seeds.is_empty() {
            out += &titled(
                Table::new(&self.budget_exceeded_seeds),
                "seeds stopped by a budget (not violations; each file's first lines give the replay command with every budget flag)",
                true,
            );
        }
        out
    }
}

/// Wall time in nanoseconds (saturating: no summary runs for 584 years).
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// distsync shrink

#[derive(Serialize, Tabled)]
struct ShrinkSummary<'a> {
    #[tabled(rename = "still fails with")]
    signature: &'a str,
    #[tabled(rename = "candidate runs")]
    candidate_runs: u64,
    /// The minimal scenario written.
    #[tabled(rename = "replay", format("distsync run {}", self.file))]
    file: String,
    #[tabled(skip)]
    before: SizeRow,
    #[tabled(skip)]
    after: SizeRow,
}

/// How big a failing scenario is, before or after shrinking.
#[derive(Serialize, Tabled)]
struct SizeRow {
    /// The JSON says it by the key instead.
    #[serde(skip)]
    #[tabled(rename = "size")]
    which: &'static str,
    steps: usize,
    nodes: usize,
    clients: usize,
    #[tabled(rename = "simulated", display = "duration")]
    duration_ns: u64,
    events: u64,
}

impl SizeRow {
    fn of(which: &'static str, s: &Size) -> Self {
        SizeRow {
            which,
            steps: s.steps,
            nodes: s.nodes,
            clients: s.clients,
            duration_ns: s.duration_ns,
            events: s.events,
        }
    }
}

impl Summary for ShrinkSummary<'_> {
    fn tables(&self) -> String {
        figures("shrink", &[self]) + &plain([&self.before, &self.after])
    }
}

// ---------------------------------------------------------------------------
// distsync bugs, and --hunt

#[derive(Serialize)]
#[serde(transparent)]
struct Catalogue(Vec<BugRow>);

#[derive(Serialize, Tabled)]
struct BugRow {
    bug: &'static str,
    #[tabled(rename = "caught by", display("prose", CAUGHT_BY_WIDTH))]
    caught_by: &'static str,
    /// The shipped scenario a hunt fuzzes.
    #[tabled(rename = "hunted on")]
    scenario: &'static str,
    /// Seeds within which a hunt must find the bug.
    #[tabled(rename = "budget")]
    budget: u64,
    #[tabled(display("prose", MISTAKE_WIDTH))]
    mistake: &'static str,
}

impl Summary for Catalogue {
    fn tables(&self) -> String {
        plain(&self.0)
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Hunts(Vec<HuntRow>);

#[derive(Serialize, Tabled)]
struct HuntRow {
    bug: &'static str,
    scenario: &'static str,
    /// Seeds run up to the first failing one (None: not found).
    #[tabled(rename = "seeds to find", display("or", "not found"))]
    seeds_to_find: Option<u64>,
    #[tabled(rename = "caught by", display("or", "-"))]
    caught_by: Option<String>,
    /// Seeds stopped by the event or memory budget before the first failing
    /// one: neither passed nor failed.
    #[tabled(rename = "over budget", display = "seed_list")]
    over_budget: Vec<u64>,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    // Sizes before and after shrinking (None: nothing found to shrink).
    #[tabled(rename = "steps before -> after", display("or", "-"))]
    steps: Option<BeforeAfter<usize>>,
    #[tabled(rename = "nodes", display("or", "-"))]
    nodes: Option<BeforeAfter<usize>>,
    #[tabled(rename = "simulated", display = "durations_before_after")]
    duration_ns: Option<BeforeAfter<u64>>,
}

#[derive(Serialize)]
struct BeforeAfter<T> {
    before: T,
    after: T,
}

impl<T: fmt::Display> fmt::Display for BeforeAfter<T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} -> {}", self.before, self.after)
    }
}

fn durations_before_after(d: &Option<BeforeAfter<u64>>) -> String {
    d.as_ref().map_or_else(
        || "-".to_string(),
        |d| {
            format!(
                "{} -> {}",
                human_duration(d.before),
                human_duration(d.after)
            )
        },
    )
}

impl HuntRow {
    fn of(h: &Hunt) -> Self {
        HuntRow {
            bug: h.bug,
            scenario: h.scenario,
            seeds_to_find: h.found.map(|(_, n)| n),
            caught_by: h.signature.clone(),
            over_budget: h.over_budget.clone(),
            wall_ns: nanos(h.wall),
            steps: before_after(h, |s| s.steps),
            nodes: before_after(h, |s| s.nodes),
            duration_ns: before_after(h, |s| s.duration_ns),
        }
    }
}

/// `0`, or how many seeds and the first few of them.
fn seed_list(seeds: &[u64]) -> String {
    const SHOWN: usize = 5;
    match seeds.len() {
        0 => "0".into(),
        n => {
            let first: Vec<String> = seeds.iter().take(SHOWN).map(u64::to_string).collect();
            let more = if n > SHOWN { ", ..." } else { "" };
            format!("{n} (seed {}{more})", first.join(", "))
        }
    }
}

/// One size of a hunt's failure before and after shrinking.
fn before_after<T>(h: &Hunt, size: impl Fn(&Size) -> T) -> Option<BeforeAfter<T>> {
    h.shrunk.as_ref().map(|s| BeforeAfter {
        before: size(&s.before),
        after: size(&s.after),
    })
}

impl Summary for Hunts {
    fn tables(&self) -> String {
        plain(&self.0)
    }
}

// ---------------------------------------------------------------------------
// distsync bench

#[derive(Serialize)]
struct BenchSummary {
    message_passing: Section<MessageRow>,
    raft: Section<RaftRow>,
    fuzz: Section<FuzzRow>,
    queue: Section<QueueRow>,
    caches: Section<CacheRow>,
}

/// One measurement: what was set up (the table's title), and a row per run.
#[derive(Serialize)]
struct Section<R> {
    setup: &'static str,
    runs: Vec<R>,
}

impl<R: Tabled> Section<R> {
    fn new(setup: &'static str, runs: impl IntoIterator<Item = R>) -> Self {
        Section {
            setup,
            runs: runs.into_iter().collect(),
        }
    }

    fn tables(&self) -> String {
        titled(Table::new(&self.runs), self.setup, true)
    }
}

#[derive(Serialize, Tabled)]
struct MessageRow {
    deliveries: u64,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    #[tabled(rename = "cpu time", display = "duration")]
    cpu_ns: u64,
    #[tabled(rename = "deliveries/s", display = "millions")]
    deliveries_per_s: f64,
    #[tabled(rename = "deliveries/cpu-s", display = "millions")]
    deliveries_per_cpu_s: f64,
}

#[derive(Serialize, Tabled)]
struct RaftRow {
    clients: usize,
    #[tabled(rename = "ops/s each")]
    rate_per_s: f64,
    #[tabled(rename = "trace digest", display = "on_off")]
    trace_digest: bool,
    events: u64,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    #[tabled(rename = "cpu time", display = "duration")]
    cpu_ns: u64,
    #[tabled(rename = "events/s", display = "millions")]
    events_per_s: f64,
    #[tabled(rename = "events/cpu-s", display = "millions")]
    events_per_cpu_s: f64,
    #[tabled(rename = "simulated", display = "duration")]
    sim_ns: u64,
    #[tabled(rename = "x real time", display = "times")]
    speedup: f64,
    #[tabled(rename = "x real time/cpu-s", display = "times")]
    speedup_per_cpu_s: f64,
    #[tabled(rename = "checks", display = "passed_or_failed")]
    passed: bool,
}

fn on_off(on: &bool) -> String {
    if *on { "on" } else { "off" }.to_string()
}

#[derive(Serialize, Tabled)]
struct FuzzRow {
    seeds: u64,
    jobs: usize,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    #[tabled(rename = "cpu time", display = "duration")]
    cpu_ns: u64,
    #[tabled(rename = "seeds/minute", display = "whole")]
    seeds_per_minute: f64,
    #[tabled(rename = "seeds/cpu-minute", display = "whole")]
    seeds_per_cpu_minute: f64,
    failed: usize,
}

#[derive(Serialize, Tabled)]
struct QueueRow {
    #[tabled(rename = "msg/s per producer", display = "whole")]
    rate_per_s: f64,
    #[tabled(rename = "produced msg/s", display = "whole")]
    produce_rate_per_s: f64,
    #[tabled(rename = "delivered msg/s", display = "whole")]
    consume_rate_per_s: f64,
    #[tabled(inline("latency "))]
    latency_ns: QueueLatency,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    #[tabled(rename = "cpu time", display = "duration")]
    cpu_ns: u64,
    #[tabled(rename = "x real time/cpu-s", display = "times")]
    speedup_per_cpu_s: f64,
    #[tabled(rename = "checks", display = "passed_or_failed")]
    passed: bool,
}

#[derive(Serialize, Tabled)]
struct CacheRow {
    protocol: &'static str,
    #[tabled(rename = "lines per node")]
    capacity: usize,
    #[tabled(rename = "simulated", display = "duration")]
    sim_ns: u64,
    #[serde(flatten)]
    #[tabled(inline)]
    hits: HitRatio,
    #[tabled(rename = "messages/op", format("{:.2}", self.messages_per_op))]
    messages_per_op: f64,
    #[tabled(inline("read "))]
    read_latency_ns: ReadLatency,
    #[tabled(inline("write "))]
    write_latency_ns: Spread,
    #[tabled(rename = "wall time", display = "duration")]
    wall_ns: u64,
    #[tabled(rename = "cpu time", display = "duration")]
    cpu_ns: u64,
    #[tabled(rename = "checks", display = "passed_or_failed")]
    passed: bool,
}

impl BenchSummary {
    fn of(m: &Measurements) -> Self {
        let mp = &m.message_passing;
        BenchSummary {
            message_passing: Section::new(
                "(a) message passing: 2 nodes, 64 in flight, 1-5ms latency, 1% loss",
                [MessageRow {
                    deliveries: mp.deliveries,
                    wall_ns: nanos(mp.time.wall),
                    cpu_ns: nanos(mp.time.cpu),
                    deliveries_per_s: mp.per_second().0,
                    deliveries_per_cpu_s: mp.per_second().1,
                }],
            ),
            raft: Section::new(
                "(b) 5-node Raft under client load: 2% loss, a leader crash, all checkers on",
                m.raft.iter().map(RaftRow::of),
            ),
            fuzz: Section::new(
                "(c) fuzz: swarm seeds of a 10s 5-node scenario (5 clients x 50 ops/s), checkers and digest on",
                [FuzzRow {
                    seeds: m.fuzz.seeds,
                    jobs: m.fuzz.jobs,
                    wall_ns: nanos(m.fuzz.time.wall),
                    cpu_ns: nanos(m.fuzz.time.cpu),
                    seeds_per_minute: m.fuzz.seeds_per_minute().0,
                    seeds_per_cpu_minute: m.fuzz.seeds_per_minute().1,
                    failed: m.fuzz.failed,
                }],
            ),
            queue: Section::new(
                "(d) queue-steady: 3 nodes, 3 shards (appendfsync always), 8 partitions, 3 producers sending batches of 4, 3 consumers taking up to 64, 0.2-1ms links",
                m.queue.iter().map(QueueRow::of),
            ),
            caches: Section::new(
                "(e) caches, cache-bus-zipf and cache-dir-zipf: 3 nodes x 50 ops/s, Zipf(0.99) over 1,000 keys, 10% writes",
                m.caches.iter().map(CacheRow::of),
            ),
        }
    }
}

impl RaftRow {
    fn of(b: &RaftBench) -> Self {
        RaftRow {
            clients: b.clients,
            rate_per_s: b.rate_per_s,
            trace_digest: b.tracing,
            events: b.events,
            wall_ns: nanos(b.time.wall),
            cpu_ns: nanos(b.time.cpu),
            events_per_s: b.events_per_second().0,
            events_per_cpu_s: b.events_per_second().1,
            sim_ns: b.sim_ns,
            speedup: b.speedup().0,
            speedup_per_cpu_s: b.speedup().1,
            passed: b.passed,
        }
    }
}

impl QueueRow {
    fn of(q: &QueueBench) -> Self {
        QueueRow {
            rate_per_s: q.rate_per_s,
            produce_rate_per_s: q.summary.produce_rate_per_s(),
            consume_rate_per_s: q.summary.consume_rate_per_s(),
            latency_ns: QueueLatency::of(&q.summary),
            wall_ns: nanos(q.time.wall),
            cpu_ns: nanos(q.time.cpu),
            speedup_per_cpu_s: q.speedup().1,
            passed: q.passed,
        }
    }
}

impl CacheRow {
    fn of(c: &CacheBench) -> Self {
        let s = &c.report.summary;
        CacheRow {
            protocol: c.protocol,
            capacity: c.capacity,
            sim_ns: c.seconds * 1_000_000_000,
            hits: HitRatio::of(s),
            messages_per_op: c.report.messages_per_op(),
            read_latency_ns: ReadLatency::of(&s.latency),
            write_latency_ns: Spread::of(&s.latency.write),
            wall_ns: nanos(c.time.wall),
            cpu_ns: nanos(c.time.cpu),
            passed: c.passed,
        }
    }
}

impl Summary for BenchSummary {
    fn tables(&self) -> String {
        [
            self.message_passing.tables(),
            self.raft.tables(),
            self.fuzz.tables(),
            self.queue.tables(),
            // Runs across, figures down: the protocols compare side by side.
            figures(self.caches.setup, &self.caches.runs),
        ]
        .concat()
    }
}

// ---------------------------------------------------------------------------
// distsync report, and --report

/// An HTML report written to a file.
#[derive(Serialize, Tabled)]
pub struct Page {
    #[tabled(rename = "report")]
    file: String,
    bytes: usize,
    #[tabled(rename = "trace events")]
    trace_events: usize,
    /// The run's verdict (None: drawn from a trace file, no run).
    #[tabled(rename = "run", display("run_verdict", self))]
    passed: Option<bool>,
    #[tabled(skip)]
    failure: Option<String>,
}

impl Page {
    /// The page written to `file`: `bytes` long, drawn from `trace_events`
    /// trace lines, of `run` when it came from a run.
    pub fn new(file: &Path, bytes: usize, trace_events: usize, run: Option<&RunReport>) -> Self {
        Page {
            file: file.display().to_string(),
            bytes,
            trace_events,
            passed: run.map(RunReport::passed),
            failure: run.and_then(|r| {
                r.failure_signature().or_else(|| {
                    r.budget_exceeded
                        .map(|b| format!("budget exceeded ({})", b.kind()))
                })
            }),
        }
    }
}

impl Page {
    /// The verdict of the Raft checker over the traces the page was drawn
    /// from, shown where a run's verdict would be.
    pub fn with_trace_check(mut self, verdict: &crate::check::raft_trace::TraceVerdict) -> Self {
        self.passed = Some(verdict.violation.is_none());
        self.failure = verdict.violation.as_ref().map(|(line, v)| {
            format!(
                "{} at line {line} of the merged trace: {}",
                v.invariant, v.detail
            )
        });
        self
    }
}

fn run_verdict(passed: &Option<bool>, page: &Page) -> String {
    match (passed, &page.failure) {
        (None, _) => "-".to_string(),
        (Some(true), _) => "passed".to_string(),
        (Some(false), Some(f)) if f.starts_with("budget exceeded") => f.clone(),
        (Some(false), failure) => format!("FAILED: {}", failure.as_deref().unwrap_or("")),
    }
}

impl Summary for Page {
    fn tables(&self) -> String {
        plain([self])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn human_durations_round_readably() {
        assert_eq!(human_duration(206_848_597), "206.85ms");
        assert_eq!(human_duration(7_000_000_000), "7s");
        assert_eq!(human_duration(1_500), "1.5us");
        assert_eq!(human_duration(12), "12ns");
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("--json prints one JSON document")
    }

    /// The value of `name` in a figures table.
    fn figure<'a>(tables: &'a str, name: &str) -> &'a str {
        row(tables, name)[1]
    }

    /// The cells of the table row whose first cell is `first`.
    fn row<'a>(tables: &'a str, first: &str) -> Vec<&'a str> {
        tables
            .lines()
            .find_map(|l| {
                let cells: Vec<&str> = l.split('│').map(str::trim).collect();
                (cells.len() > 2 && cells[1] == first).then(|| cells[1..cells.len() - 1].to_vec())
            })
            .unwrap_or_else(|| panic!("no row `{first}` in\n{tables}"))
    }

    fn shipped_run(name: &str, seed: u64) -> RunReport {
        let sc = crate::explore::hunt::shipped(name).expect("a shipped scenario");
        crate::run::run_scenario(&sc, crate::run::RunOptions::new(seed))
            .expect("no trace file, no I/O")
    }

    #[test]
    fn run_tables_and_json_give_the_same_figures() {
        let r = shipped_run("queue-shard-crash-everysec", 1);
        let text = run_summary(&r, Format::Tables);
        let j = json(&run_summary(&r, Format::Json));
        assert_eq!(figure(&text, "scenario"), j["scenario"]);
        assert_eq!(figure(&text, "events"), j["events"].to_string());
        let m = &j["messages"];
        assert_eq!(
            figure(&text, "messages"),
            format!(
                "{} sent, {} delivered, {} dropped",
                m["sent"], m["delivered"], m["dropped"]
            )
        );
        let q = &j["queue"];
        assert!(figure(&text, "produced").starts_with(&format!("{} at ", q["produced"])));
        assert_eq!(figure(&text, "redeliveries"), q["redeliveries"].to_string());
        let lost = q["lost"].as_array().unwrap();
        assert!(!lost.is_empty(), "this scenario loses messages");
        assert_eq!(
            figure(&text, "lost as the persistence mode permits"),
            lost.len().to_string()
        );
        let first = row(&text, lost[0]["producer"].as_str().unwrap());
        assert_eq!(first[1], lost[0]["seq"].to_string());
        assert_eq!(row(&text, "n1")[2], j["nodes"][0]["term"].to_string());
        assert!(text.contains(&format!(
            "\ntrace digest: {}\n",
            j["digest"].as_str().unwrap()
        )));
        assert_eq!(j["passed"], true);
    }

    #[test]
    fn lock_and_cache_figures_match_their_json() {
        let r = shipped_run("lock-contention", 1);
        let text = run_summary(&r, Format::Tables);
        let l = &json(&run_summary(&r, Format::Json))["locks"];
        assert_eq!(figure(&text, "grants"), l["grants"].to_string());
        assert_eq!(
            figure(&text, "deadlocks broken"),
            format!("{} ({} victims)", l["deadlocks"], l["victims"])
        );
        let p50 = l["acquire_latency_ns"]["p50"].as_u64().unwrap();
        assert!(figure(&text, "acquire latency").starts_with(&format!("p50 {}", ms(&p50))));

        let r = shipped_run("cache-bus-crash", 1);
        let text = run_summary(&r, Format::Tables);
        let c = &json(&run_summary(&r, Format::Json))["cache"];
        assert_eq!(
            figure(&text, "reads"),
            format!("{} ({} hits)", c["reads"], c["read_hits"])
        );
        let lost = &c["lost_writes"][0];
        // After the nodes table, whose rows also start with a node.
        let lost_table = &text[text.find("cache: writes lost by a crash").unwrap()..];
        let cells = row(lost_table, lost["node"].as_str().unwrap());
        assert_eq!(cells[1], lost["key"].to_string());
        assert_eq!(cells[3], human_duration(lost["t_ns"].as_u64().unwrap()));
        let t = &c["transitions"][0];
        let cells = row(&text, t["from"].as_str().unwrap());
        assert_eq!(cells[3], t["count"].to_string());
    }

    fn sweep() -> SweepSummary {
        use crate::explore::fuzz::SeedResult;
        let seed = |seed, failure: Option<&str>| SeedResult {
            seed,
            failure: failure.map(str::to_string),
            inconclusive: false,
            budget_exceeded: None,
            digest: 0,
            events: 1_000_000,
            sim_ns: 5_000_000_000,
            file: failure.map(|_| format!("reports/failures/x-{seed}.toml").into()),
            save_error: None,
        };
        SweepSummary {
            scenario: "x".into(),
            results: vec![
                seed(1, None),
                seed(2, Some("Log Matching")),
                SeedResult {
                    inconclusive: true,
                    ..seed(3, None)
                },
            ],
            wall: std::time::Duration::from_millis(750),
        }
    }

    #[test]
    fn fuzz_tables_and_json_give_the_same_figures() {
        let sweeps = [sweep()];
        let text = fuzz_summary(&sweeps, 3, Format::Tables);
        let j = json(&fuzz_summary(&sweeps, 3, Format::Json));
        assert!(text.contains("sweep: 3 seeds on 3 jobs"), "{text}");
        assert_eq!(
            (j["seeds"].clone(), j["jobs"].clone()),
            (3.into(), 3.into())
        );
        assert_eq!(
            (
                j["passed"].clone(),
                j["failed"].clone(),
                j["inconclusive"].clone()
            ),
            (1.into(), 1.into(), 1.into())
        );
        let s = &j["sweeps"][0];
        let cells = row(&text, "x");
        assert_eq!(cells[1..5], ["3", "1", "1", "0"]);
        assert_eq!(s["inconclusive"], 1);
        assert_eq!(s["budget_exceeded"], 0);
        assert_eq!(j["budget_exceeded"], 0);
        assert_eq!(s["events_per_s"], 4_000_000.0);
        assert_eq!(cells[5], "4.00M");
        assert_eq!(s["wall_ns"], 750_000_000);
        assert_eq!(cells[7], "750ms");
        let f = &j["failures"][0];
        assert_eq!(
            (f["seed"].clone(), f["file"].clone()),
            (2.into(), "reports/failures/x-2.toml".into())
        );
        let failing = &text[text.find("failing seeds").unwrap()..];
        assert_eq!(
            row(failing, "x")[1..],
            [
                "2",
                "Log Matching",
                "distsync run reports/failures/x-2.toml"
            ]
        );
    }

    #[test]
    fn shrink_hunt_and_bug_tables_match_their_json() {
        let size = |steps, duration_ns| Size {
            steps,
            nodes: 5,
            clients: 2,
            duration_ns,
            events: 100 * steps as u64,
        };
        let shrunk = Shrunk {
            minimal: crate::explore::hunt::shipped("leader-crash").unwrap(),
            signature: "Log Matching".into(),
            before: size(24, 12_000_000_000),
            after: size(3, 580_000_000),
            runs: 57,
        };
        let file = Path::new("f.min.toml");
        let text = shrink_summary(&shrunk, file, Format::Tables);
        let j = json(&shrink_summary(&shrunk, file, Format::Json));
        assert_eq!(figure(&text, "still fails with"), j["signature"]);
        assert_eq!(
            figure(&text, "candidate runs"),
            j["candidate_runs"].to_string()
        );
        assert_eq!(figure(&text, "replay"), "distsync run f.min.toml");
        assert_eq!(j["file"], "f.min.toml");
        assert_eq!(row(&text, "after")[1], j["after"]["steps"].to_string());
        assert_eq!(row(&text, "after")[4], "580ms");
        assert_eq!(j["after"]["duration_ns"], 580_000_000);

        let hunt = Hunt {
            bug: "raft.x",
            scenario: "figure-8",
            found: Some((15, 7)),
            signature: Some("Log Matching".into()),
            shrunk: Some(shrunk),
            over_budget: vec![3, 9],
            wall: std::time::Duration::from_secs(2),
        };
        let text = hunt_summary(std::slice::from_ref(&hunt), Format::Tables);
        let h = &json(&hunt_summary(&[hunt], Format::Json))[0];
        let cells = row(&text, "raft.x");
        assert_eq!(cells[2], h["seeds_to_find"].to_string());
        assert_eq!(cells[4], "2 (seed 3, 9)");
        assert_eq!(h["over_budget"], serde_json::json!([3, 9]));
        assert_eq!(cells[6], "24 -> 3");
        assert_eq!(h["steps"]["before"], 24);
        assert_eq!(cells[8], "12s -> 580ms");
        assert_eq!(h["duration_ns"]["after"], 580_000_000);

        let catalogue = &crate::bugs::CATALOGUE;
        let text = bugs_summary(catalogue, Format::Tables);
        let j = json(&bugs_summary(catalogue, Format::Json));
        assert_eq!(j.as_array().unwrap().len(), catalogue.len());
        let first = &j[0];
        let cells = row(&text, first["bug"].as_str().unwrap());
        assert_eq!(cells[2], first["scenario"]);
        assert_eq!(cells[3], first["budget"].to_string());
    }

    #[test]
    fn bench_tables_and_json_give_the_same_figures() {
        use crate::bench::*;
        let time = Timing {
            wall: std::time::Duration::from_millis(100),
            cpu: std::time::Duration::from_millis(50),
        };
        let cache = |protocol| CacheBench {
            protocol,
            capacity: 100,
            seconds: 20,
            report: shipped_run("cache-bus-crash", 1).cache.unwrap(),
            time,
            passed: true,
        };
        let m = Measurements {
            message_passing: MessageBench {
                deliveries: 2_000_000,
                time,
            },
            raft: vec![RaftBench {
                clients: 10,
                rate_per_s: 100.0,
                tracing: true,
                events: 56_174,
                sim_ns: 10_000_000_000,
                time,
                passed: true,
            }],
            fuzz: FuzzBench {
                seeds: 200,
                jobs: 2,
                time: Timing {
                    wall: std::time::Duration::from_millis(1820),
                    cpu: std::time::Duration::from_millis(3640),
                },
                failed: 0,
            },
            queue: vec![QueueBench {
                rate_per_s: 400.0,
                summary: shipped_run("queue-steady", 1).queue.unwrap().summary,
                sim_ns: 10_000_000_000,
                time,
                passed: true,
            }],
            caches: vec![cache("bus"), cache("dir")],
        };
        let text = bench_summary(&m, Format::Tables);
        let j = json(&bench_summary(&m, Format::Json));
        let mp = &j["message_passing"]["runs"][0];
        assert_eq!(
            row(&text, "2000000")[1..],
            ["100ms", "50ms", "20.00M", "40.00M"]
        );
        assert_eq!(mp["deliveries_per_s"], 20_000_000.0);
        let rounded = |v: &Value| v.as_f64().unwrap().round();
        assert_eq!(rounded(&mp["deliveries_per_cpu_s"]), 40_000_000.0);
        assert_eq!(mp["cpu_ns"], 50_000_000);
        let raft = &j["raft"]["runs"][0];
        let cells = row(&text, "10");
        assert_eq!(cells[3], raft["events"].to_string());
        assert_eq!(cells[4..7], ["100ms", "50ms", "0.56M"]);
        assert_eq!(cells[7], "1.12M");
        assert_eq!(cells[9..11], ["100x", "200x"]);
        assert_eq!(raft["speedup"], 100.0);
        assert_eq!(rounded(&raft["speedup_per_cpu_s"]), 200.0);
        assert_eq!(rounded(&raft["events_per_cpu_s"]), 1_123_480.0);
        assert_eq!(row(&text, "200")[2..6], ["1.82s", "3.64s", "6593", "3297"]);
        let q = &j["queue"]["runs"][0];
        let p50 = q["latency_ns"]["p50"].as_u64().unwrap();
        assert_eq!(row(&text, "400")[3], ms(&p50));
        assert_eq!(rounded(&q["speedup_per_cpu_s"]), 200.0);
        // The caches' table has a column per run.
        let c = &j["caches"]["runs"][1];
        assert_eq!(row(&text, "protocol")[2], c["protocol"]);
        let per_op = format!("{:.2}", c["messages_per_op"].as_f64().unwrap());
        assert_eq!(row(&text, "messages/op")[2], per_op);
        let miss = c["read_latency_ns"]["miss_p50"].as_u64().unwrap();
        assert_eq!(row(&text, "read misses p50")[2], ms(&miss));
        assert!(
            j["queue"]["setup"]
                .as_str()
                .unwrap()
                .starts_with("(d) queue-steady")
        );
        assert!(text.contains("│ (d) queue-steady"));
    }

    #[test]
    fn a_page_prints_as_a_table_or_an_object() {
        let r = shipped_run("leader-crash", 1);
        let page = Page::new(Path::new("out/index.html"), 1234, 56, Some(&r));
        let text = page_summary(&page, Format::Tables);
        let j = json(&page_summary(&page, Format::Json));
        assert_eq!(
            row(&text, "out/index.html"),
            ["out/index.html", "1234", "56", "passed"]
        );
        assert_eq!(j["bytes"], 1234);
        assert_eq!(j["trace_events"], 56);
        assert_eq!(j["passed"], true);
        let trace = Page::new(Path::new("t/index.html"), 1, 2, None);
        assert_eq!(
            row(&page_summary(&trace, Format::Tables), "t/index.html")[3],
            "-"
        );
        assert_eq!(
            json(&page_summary(&trace, Format::Json))["passed"],
            Value::Null
        );
    }
}
