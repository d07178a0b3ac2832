//! One run of a scenario: simulate, check, and summarize.

use crate::check::cache_coherence::{CacheChecker, CacheSummary};
use crate::check::linearizability::Verdict;
use crate::check::lock_history::check_lock_history;
use crate::check::lock_safety::LockCounts;
use crate::check::queue_delivery::QueueSummary;
use crate::queue::placement::Placement;
use crate::queue::ring::{Ring, moved_fraction};
use crate::report::human_duration as format_duration;
use crate::scenario::Scenario;
pub use crate::sim::budget::{BudgetExceeded, RunLimits};
use crate::sim::world::{Found, Stats, World};
use crate::trace::Tracer;

/// How an inconclusive linearizability check begins its detail.
const INCONCLUSIVE: &str = "inconclusive, not a violation (no linearization was found or ruled out before the budget ran out; raise [expect] linearizability_steps to search further)";

/// Options for one run.
pub struct RunOptions {
    pub seed: u64,
    /// Where trace lines go (None: digest only).
    pub trace: Option<Box<dyn std::io::Write>>,
    /// False only in benchmarks that measure the simulator without tracing.
    pub tracing: bool,
    /// The event and memory budgets.
    pub limits: RunLimits,
}

impl RunOptions {
    /// A traced run on `seed` that writes no trace lines, within the
    /// default budgets.
    pub fn new(seed: u64) -> Self {
        RunOptions {
            seed,
            trace: None,
            tracing: true,
            limits: RunLimits::default(),
        }
    }

    /// The same, writing the trace lines to `sink`.
    pub fn with_trace(mut self, sink: Box<dyn std::io::Write>) -> Self {
        self.trace = Some(sink);
        self
    }

    /// The same, within `limits`.
    pub fn with_limits(mut self, limits: RunLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// One node's state at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSummary {
    pub name: String,
    /// "leader", "follower", ... or "crashed" / "paused".
    pub status: String,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub log_last: u64,
    pub snapshot: u64,
}

/// The verdict of one check or expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub verdict: CheckVerdict,
    pub detail: String,
}

impl CheckResult {
    /// True when the check found a violation (an inconclusive check did not).
    pub fn failed(&self) -> bool {
        self.verdict == CheckVerdict::Failed
    }
}

/// What a check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckVerdict {
    /// The property held.
    Passed,
    /// The property was violated: the run fails.
    Failed,
    /// The check could not decide within its budget (a linearizability
    /// search that ran out of steps). Not a violation: the run does not fail
    /// on it, the fuzzer counts it apart and never saves it as a failure.
    Inconclusive,
    /// The run needed more events or memory than its budget allowed and was
    /// stopped before its end. Not a violation, and not a pass either: the
    /// run exits with its own code and the fuzzer counts and saves it apart.
    BudgetExceeded,
}

impl CheckVerdict {
    /// Passed if `ok`, else Failed.
    pub fn of(ok: bool) -> Self {
        if ok {
            CheckVerdict::Passed
        } else {
            CheckVerdict::Failed
        }
    }

    /// The verdict as the tables and `--json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            CheckVerdict::Passed => "passed",
            CheckVerdict::Failed => "failed",
            CheckVerdict::Inconclusive => "inconclusive",
            CheckVerdict::BudgetExceeded => "budget exceeded",
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub sim_time_ns: u64,
    pub nodes: Vec<NodeSummary>,
    pub stats: Stats,
    pub leaders_elected: usize,
    pub ops_completed: u64,
    pub ops_total: usize,
    pub violation: Option<Found>,
    /// The budget that stopped the run before its end (None: within budget).
    pub budget_exceeded: Option<BudgetExceeded>,
    /// The budgets the run had (a replay needs the same ones).
    pub limits: RunLimits,
    pub checks: Vec<CheckResult>,
    pub digest: u64,
    pub trace_events: u64,
    /// The lock service's figures (None when the run had no lock clients).
    pub locks: Option<LockSummary>,
    /// The queue's figures (None when the run had no Redis shards).
    pub queue: Option<QueueReport>,
    /// The caches' figures (None when the run had no caches).
    pub cache: Option<CacheReport>,
}

/// The caches' figures for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheReport {
    pub summary: CacheSummary,
    /// Bus messages (requests, snoops and their answers, grants, acks).
    pub bus_messages: u64,
}

impl CacheReport {
    /// Bus messages per completed operation.
    pub fn messages_per_op(&self) -> f64 {
        let ops = self.summary.reads + self.summary.writes;
        if ops == 0 {
            0.0
        } else {
            self.bus_messages as f64 / ops as f64
        }
    }
}

/// The queue's figures for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueReport {
    pub summary: QueueSummary,
    /// Partitions in all, and how many changed shard over the run.
    pub partitions: u32,
    pub partitions_moved: u64,
    /// Where the ring ended: epoch and shards (as applied by the most
    /// advanced live node).
    pub ring_epoch: u64,
    pub ring: Vec<u32>,
    /// Per ring change, the fraction of the key space that changed shard.
    pub key_space_moved: Vec<f64>,
}

/// The lock service's figures for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSummary {
    pub counts: LockCounts,
    /// Requests that lost a deadlock (the victims' own count).
    pub victims: u64,
    /// Writes the protected resource turned away for a stale token.
    pub fencing_rejections: u64,
    /// Simulated time from sending an acquire to its grant (waits included).
    pub acquire_p50_ns: u64,
    pub acquire_p99_ns: u64,
    pub acquire_max_ns: u64,
    /// Every acquire's latency, sorted (the report draws their histogram).
    pub acquire_latencies_ns: Vec<u64>,
    /// The wait-for graph at the end (waiting session -> session it waits
    /// for), as applied by the node that applied the most.
    pub wait_for: Vec<(u64, u64)>,
}

impl RunReport {
    /// True when the run reached its end and no invariant or expectation
    /// was violated (a check that was inconclusive does not fail the run; a
    /// run stopped by its budget did not pass, though it did not fail).
    pub fn passed(&self) -> bool {
        self.violation.is_none()
            && self.budget_exceeded.is_none()
            && !self.checks.iter().any(CheckResult::failed)
    }

    /// The checks that could not decide within their budget.
    pub fn inconclusive(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.verdict == CheckVerdict::Inconclusive)
            .count()
    }

    /// What failed, as a stable string: the violated invariant, or the names
    /// of the failed end-of-run checks. None when the run passed. Shrinking
    /// keeps a candidate only if it fails with the same signature.
    pub fn failure_signature(&self) -> Option<String> {
        if let Some(f) = &self.violation {
            return Some(f.violation.invariant.to_string());
        }
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.failed())
            .map(|c| c.name.as_str())
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }

    /// The digest as printed: 16 hex digits.
    pub fn digest_hex(&self) -> String {
        format!("{:016x}", self.digest)
    }
}

/// Runs `sc` once.
pub fn run_scenario(sc: &Scenario, opts: RunOptions) -> std::io::Result<RunReport> {
    run_world(sc, opts).map(|(report, _world)| report)
}

/// Runs `sc` once for a process that exits right after: the world (every
/// shard's keyspace and append-only file, the trace and the histories) is
/// leaked rather than freed piece by piece, since the operating system
/// takes the whole heap back at exit anyway. The trace is flushed first.
/// Use `run_scenario` anywhere else: this one never gives the memory back.
pub fn run_scenario_before_exit(sc: &Scenario, opts: RunOptions) -> std::io::Result<RunReport> {
    run_world(sc, opts).map(|(report, world)| {
        std::mem::forget(world);
        report
    })
}

fn run_world(sc: &Scenario, opts: RunOptions) -> std::io::Result<(RunReport, World)> {
    let tracer = if opts.tracing {
        Tracer::new(sc.nodes, opts.trace)
    } else {
        Tracer::disabled(sc.nodes)
    };
    let mut world = World::new(sc, opts.seed, tracer);
    world.set_limits(opts.limits);
    world.run();
    if let Some(e) = world.obs.io_error.take() {
        return Err(e);
    }
    world.obs.tracer.finish()?;
    let mut checks = evaluate(sc, &world);
    if world.obs.violation.is_none() && world.budget_exceeded().is_none() {
        checks.extend(queue_checks(&mut world));
    }
    let nodes = (0..sc.nodes).map(|i| summarize(&world, i)).collect();
    let report = RunReport {
        scenario: sc.name.clone(),
        seed: opts.seed,
        sim_time_ns: world.now_ns(),
        nodes,
        stats: world.obs.stats.clone(),
        leaders_elected: world.obs.checker.leaders_elected(),
        ops_completed: world.obs.history.completed(),
        ops_total: world.obs.history.ops().len(),
        violation: world.obs.violation.clone(),
        budget_exceeded: world.budget_exceeded(),
        limits: opts.limits,
        checks,
        digest: world.obs.tracer.digest(),
        trace_events: world.obs.tracer.events(),
        locks: lock_summary(&world, sc),
        queue: queue_report(&world, sc),
        cache: world.obs.cache_checker.as_ref().map(|c| CacheReport {
            summary: c.summary(),
            bus_messages: world.obs.stats.bus_messages,
        }),
    };
    Ok((report, world))
}

/// The queue's end-of-run delivery checks, against where every message is.
fn queue_checks(world: &mut World) -> Option<CheckResult> {
    world.obs.queue_checker.as_ref()?;
    let final_state = world.queue_final_state();
    let end_ns = world.now_ns();
    let checker = world.obs.queue_checker.as_ref()?;
    let s = checker.summary();
    let (ok, detail) = match checker.at_end(&final_state, end_ns) {
        Ok(waiting) => (
            true,
            format!(
                "{} acknowledged produces, {} delivered, {} dead-lettered, {} lost as the persistence mode permits, {waiting} still waiting for a consumer at the end",
                s.produced,
                s.delivered,
                s.dead,
                s.lost.len()
            ),
        ),
        Err(v) => (false, format!("{}: {}", v.invariant, v.detail)),
    };
    Some(CheckResult {
        name: "queue delivery (at least once, DLQ exact)".into(),
        verdict: CheckVerdict::of(ok),
        detail,
    })
}

fn queue_report(world: &World, sc: &Scenario) -> Option<QueueReport> {
    let checker = world.obs.queue_checker.as_ref()?;
    let summary = checker.summary();
    let placement = (0..sc.nodes)
        .filter_map(|i| world.node(i).filter(|_| !world.is_crashed(i)))
        .max_by_key(|n| n.raft().applied_index())
        .map(|n| n.placement().clone());
    let key_space_moved = placement.as_ref().map_or(Vec::new(), key_space_moved);
    let (ring_epoch, ring) = placement.map_or((0, Vec::new()), |p| (p.epoch(), p.shards()));
    Some(QueueReport {
        partitions: sc.queue.partitions * sc.queue.queues.len() as u32,
        partitions_moved: summary.migrations,
        ring_epoch,
        ring,
        key_space_moved,
        summary,
    })
}

/// For each ring change, the fraction of a fixed sample of 10,000 keys whose
/// shard changed: how much of the key space the change moved (about 1/N
/// when an N-th shard joins).
fn key_space_moved(p: &Placement) -> Vec<f64> {
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("key-{i}").into_bytes())
        .collect();
    let ring = |members: &[u32]| {
        let mut r = Ring::new(p.vnodes());
        members.iter().for_each(|&s| r.add(s));
        r
    };
    p.history()
        .windows(2)
        .map(|w| moved_fraction(&ring(&w[0]), &ring(&w[1]), &keys))
        .collect()
}

fn lock_summary(world: &World, sc: &Scenario) -> Option<LockSummary> {
    if sc.lock_load.clients == 0 {
        return None;
    }
    let mut latencies: Vec<u64> = world
        .lock_clients()
        .flat_map(|c| c.stats().acquire_latencies_ns.iter().copied())
        .collect();
    latencies.sort_unstable();
    let acquire = crate::check::Latency::of(&latencies);
    Some(LockSummary {
        counts: world.obs.lock_checker.counts(),
        victims: world.lock_clients().map(|c| c.stats().deadlocks).sum(),
        fencing_rejections: world
            .lock_clients()
            .map(|c| c.stats().fencing_rejections)
            .sum(),
        acquire_p50_ns: acquire.p50_ns,
        acquire_p99_ns: acquire.p99_ns,
        acquire_max_ns: acquire.max_ns,
        acquire_latencies_ns: latencies,
        wait_for: (0..sc.nodes)
            .filter_map(|i| world.node(i).filter(|_| !world.is_crashed(i)))
            .max_by_key(|n| n.raft().applied_index())
            .map(|n| n.locks().wait_for_edges())
            .unwrap_or_default(),
    })
}

fn summarize(world: &World, i: usize) -> NodeSummary {
    let name = format!("n{}", i + 1);
    match world.node(i) {
        Some(node) if !world.is_crashed(i) => {
            let r = node.raft();
            let status = if world.is_paused(i) {
                format!("{} (paused)", r.role().name())
            } else {
                r.role().name().to_string()
            };
            NodeSummary {
                name,
                status,
                term: r.term(),
                commit: r.commit_index(),
                applied: r.applied_index(),
                log_last: r.last_index(),
                snapshot: r.snapshot_index(),
            }
        }
        _ => NodeSummary {
            name,
            status: "crashed".into(),
            term: 0,
            commit: 0,
            applied: 0,
            log_last: world.durable_last_index(i),
            snapshot: 0,
        },
    }
}

fn evaluate(sc: &Scenario, world: &World) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let stopped_early = world.obs.violation.is_some();
    out.push(CheckResult {
        name: "safety (online)".into(),
        verdict: CheckVerdict::of(!stopped_early),
        detail: match &world.obs.violation {
            None => "Raft (election safety, append-only, log matching, leader completeness, state machine safety, terms, votes, durable commit), locks (exclusion, fencing, leases, deadlocks), queue (no delivery after ack, produce order, attempts, loss within the persistence mode) and caches (single writer, data value): all held".into(),
            Some(f) => format!("{}: {}", f.violation.invariant, f.violation.detail),
        },
    });
    if stopped_early {
        return out; // the run did not reach its end; end-of-run checks would mislead
    }
    if let Some(b) = world.budget_exceeded() {
        out.push(CheckResult {
            name: match b {
                BudgetExceeded::Events { .. } => "within the event budget".into(),
                BudgetExceeded::Memory { .. } => "within the memory budget".into(),
            },
            verdict: CheckVerdict::BudgetExceeded,
            detail: format!("{b}; the end-of-run checks were not made"),
        });
        return out; // likewise: the run was stopped before its end
    }
    let e = &sc.expect;
    let stats = &world.obs.stats;
    if let Some(d) = e.leader_within_ns {
        let ok = stats.first_leader_ns.is_some_and(|t| t <= d);
        let detail = match stats.first_leader_ns {
            Some(t) => format!("first leader at {}", format_duration(t)),
            None => "no leader was ever elected".into(),
        };
        out.push(CheckResult {
            name: format!("leader within {}", format_duration(d)),
            verdict: CheckVerdict::of(ok),
            detail,
        });
    }
    if let Some(d) = e.leader_after_last_fault_ns {
        let from = stats.watch_from_ns;
        let elected = stats.leader_after_watch_ns.filter(|t| *t <= from + d);
        let ok = world.leader_present_after_fault() || elected.is_some();
        let detail = if world.leader_present_after_fault() {
            format!(
                "a leader was in office at the last fault ({})",
                format_duration(from)
            )
        } else if let Some(t) = stats.leader_after_watch_ns {
            format!(
                "leader elected {} after the last fault",
                format_duration(t - from)
            )
        } else {
            format!(
                "no leader after the last fault at {}",
                format_duration(from)
            )
        };
        out.push(CheckResult {
            name: format!("leader within {} of the last fault", format_duration(d)),
            verdict: CheckVerdict::of(ok),
            detail,
        });
    }
    if sc.lock_load.clients > 0 {
        let live: Vec<usize> = (0..sc.nodes)
            .filter(|&i| !world.is_crashed(i) && !world.is_paused(i))
            .collect();
        // A wait ends by its timeout at the latest, counted afresh by each
        // new leader: allow the timeout plus two seconds to elect one.
        let bound = sc.locks.wait_ns + 2_000_000_000;
        let verdict = world.obs.lock_checker.at_end(&live, world.now_ns(), bound);
        let ops: Vec<_> = world
            .lock_clients()
            .flat_map(|c| c.stats().history.iter().copied())
            .collect();
        let budget = sc.expect.linearizability_steps;
        let (verdict_, detail) = match check_lock_history(
            &ops,
            &world.obs.lock_checker.session_ends(),
            budget,
        ) {
            Verdict::Linearizable => (
                CheckVerdict::Passed,
                format!("{} acquires and releases", ops.len()),
            ),
            Verdict::NotLinearizable(cx) => (CheckVerdict::Failed, cx.to_string()),
            Verdict::Unknown => (
                CheckVerdict::Inconclusive,
                format!(
                    "{INCONCLUSIVE}: search budget of {budget} steps per lock exhausted on {} operations",
                    ops.len()
                ),
            ),
        };
        out.push(CheckResult {
            name: "lock history linearizable".into(),
            verdict: verdict_,
            detail,
        });
        out.push(CheckResult {
            name: "lock waits end, no deadlock left".into(),
            verdict: CheckVerdict::of(verdict.is_ok()),
            detail: verdict
                .err()
                .unwrap_or_else(|| format!("every wait ended within {}", format_duration(bound))),
        });
    }
    if let Some(c) = world.obs.cache_checker.as_ref() {
        out.push(cache_histories(c, e.linearizability_steps));
    }
    if e.acked_writes_applied_everywhere {
        out.push(acked_writes_applied(world, sc.nodes));
    }
    if e.min_completed_ops > 0 {
        let done = world.obs.history.completed();
        out.push(CheckResult {
            name: format!("at least {} operations completed", e.min_completed_ops),
            verdict: CheckVerdict::of(done >= e.min_completed_ops),
            detail: format!("{done} completed"),
        });
    }
    if e.linearizable {
        let budget = e.linearizability_steps;
        let verdict = world.obs.history.check_linearizable(budget);
        let ops = world.obs.history.ops().len();
        let (verdict, detail) = match verdict {
            Verdict::Linearizable => (CheckVerdict::Passed, format!("{ops} operations")),
            Verdict::NotLinearizable(cx) => (CheckVerdict::Failed, cx.to_string()),
            Verdict::Unknown => (
                CheckVerdict::Inconclusive,
                format!(
                    "{INCONCLUSIVE}: search budget of {budget} steps per key exhausted on {ops} operations"
                ),
            ),
        };
        out.push(CheckResult {
            name: "linearizable (kv history)".into(),
            verdict,
            detail,
        });
    }
    out
}

/// Each key's history of completed cache operations is linearizable (keys
/// with a lost or in-doubt write left out).
fn cache_histories(c: &CacheChecker, budget: u64) -> CheckResult {
    let h = c.check_histories(budget);
    let mut scope = format!(
        "{} keys, {} operations; excluded for a lost or in-doubt write: {} keys ({} operations); {} started operations never completed",
        h.keys, h.ops, h.excluded_keys, h.excluded_ops, h.unfinished
    );
    if h.unpaired > 0 {
        scope += &format!(
            "; {} completions without a traced start, taken to start at the node's previous completion",
            h.unpaired
        );
    }
    let (verdict, detail) = match h.verdict {
        Verdict::Linearizable => (CheckVerdict::Passed, scope),
        Verdict::NotLinearizable(cx) => (CheckVerdict::Failed, format!("{cx}{scope}")),
        Verdict::Unknown => (
            CheckVerdict::Inconclusive,
            format!("{INCONCLUSIVE}: search budget of {budget} steps per key exhausted; {scope}"),
        ),
    };
    CheckResult {
        name: "cache histories linearizable".into(),
        verdict,
        detail,
    }
}

fn acked_writes_applied(world: &World, n: usize) -> CheckResult {
    let mut missing = Vec::new();
    let mut live = 0;
    for i in 0..n {
        let Some(node) = world.node(i).filter(|_| !world.is_crashed(i)) else {
            continue;
        };
        live += 1;
        for c in 0..world.clients() {
            let want = world.client(c).map_or(0, |c| c.acked_write_seq());
            if want > node.kv().applied_seq(c as u32) {
                missing.push(format!("n{} lacks c{}'s write #{want}", i + 1, c + 1));
            }
        }
    }
    let acked = world.obs.history.acked_writes().count();
    CheckResult {
        name: "acknowledged writes applied on every live node".into(),
        verdict: CheckVerdict::of(missing.is_empty()),
        detail: if missing.is_empty() {
            format!("{acked} acknowledged writes on {live} live nodes")
        } else {
            missing.join("; ")
        },
    }
}
