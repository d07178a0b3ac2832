//! The fuzz sweep: many seeds of one or more scenario templates, in parallel,
//! with every seed's verdict independent of how many workers ran it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant}; // determinism-ok: wall time only bounds and reports a sweep

use super::save_failure;
use super::swarm::draw;
use crate::run::{RunOptions, run_scenario};
use crate::scenario::Scenario;

/// Which seeds a sweep covers.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// `count` seeds per scenario, starting at `first`.
    Seeds { first: u64, count: u64 },
    /// As many seeds as fit in this much wall time per scenario, from `first`.
    Time { first: u64, per_scenario: Duration },
}

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct FuzzOptions {
    pub budget: Budget,
    /// Worker threads.
    pub jobs: usize,
    /// This sweep runs shard `index` (0-based) of `count`: seed positions p with p % count == index.
    pub shard: (u64, u64),
    /// Every k-th seed (by position) is also run a second time and its
    /// digests compared; 0 = never.
    pub determinism_every: u64,
    /// Where failing seeds are saved (None: not saved).
    pub failures_dir: Option<PathBuf>,
    /// Stop handing out seeds once one fails (bug hunts).
    pub stop_at_first_failure: bool,
}

/// One seed's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedResult {
    pub seed: u64,
    /// None when no check failed; else what failed.
    pub failure: Option<String>,
    /// No check failed but some could not decide within their budget
    /// (counted apart, never saved as a failure).
    pub inconclusive: bool,
    pub digest: u64,
    pub events: u64,
    pub sim_ns: u64,
    /// The saved scenario that replays a failure.
    pub file: Option<PathBuf>,
}

/// What one scenario's sweep found.
#[derive(Clone, Debug)]
pub struct SweepSummary {
    pub scenario: String,
    /// Results in seed order.
    pub results: Vec<SeedResult>,
    pub wall: Duration,
}

impl SweepSummary {
    /// The failing seeds, in seed order.
    pub fn failures(&self) -> impl Iterator<Item = &SeedResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }
    /// Seeds that did not fail but had a check that could not decide.
    pub fn inconclusive(&self) -> usize {
        self.results.iter().filter(|r| r.inconclusive).count()
    }
    /// Simulated events per wall-clock second.
    pub fn events_per_second(&self) -> f64 {
        self.results.iter().map(|r| r.events).sum::<u64>() as f64
            / self.wall.as_secs_f64().max(1e-9)
    }
    /// Simulated time divided by wall time.
    pub fn speedup(&self) -> f64 {
        self.results.iter().map(|r| r.sim_ns).sum::<u64>() as f64
            / 1e9
            / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs one seed of `template`: draws its faults, runs it, and on a sampled
/// position runs it again to check the digest.
pub fn run_seed(template: &Scenario, seed: u64, check_determinism: bool) -> (Scenario, SeedResult) {
    let sc = draw(template, seed);
    let run = || {
        run_scenario(
            &sc,
            RunOptions {
                seed,
                trace: None,
                tracing: true,
            },
        )
        .expect("no trace file, no I/O")
    };
    let report = run();
    let mut failure = report.failure_signature();
    if check_determinism {
        let again = run();
        if again.digest != report.digest {
            failure = Some(format!(
                "nondeterminism: digest {:016x} then {:016x}",
                report.digest, again.digest
            ));
        }
    }
    let result = SeedResult {
        seed,
        inconclusive: failure.is_none() && report.inconclusive() > 0,
        failure,
        digest: report.digest,
        events: report.stats.events,
        sim_ns: report.sim_time_ns,
        file: None,
    };
    (sc, result)
}

/// Seeds for position `p` of a sweep starting at `first` under `shard`.
fn seed_at(first: u64, shard: (u64, u64), p: u64) -> u64 {
    first + p * shard.1 + shard.0
}

/// Sweeps every template; `on_seed` is called after each seed (for progress).
///
/// One work queue holds every (template, seed) pair, template by template:
/// a worker done with its seed takes the next pair, so workers move on to the
/// next template while the last seeds of the one before are still running,
/// and none waits for the others at a template's end. A template's `--time`
/// budget starts when its first seed is handed out.
pub fn fuzz(
    templates: &[Scenario],
    opts: &FuzzOptions,
    on_seed: &(dyn Fn(&str, &SeedResult) + Sync),
) -> Vec<SweepSummary> {
    let (first, limit, per_scenario) = match opts.budget {
        Budget::Seeds { first, count } => (first, count.div_ceil(opts.shard.1.max(1)), None),
        Budget::Time {
            first,
            per_scenario,
        } => (first, u64::MAX, Some(per_scenario)),
    };
    let work = Mutex::new(WorkQueue {
        template: 0,
        position: 0,
        deadline: None,
    });
    let sweeps: Vec<Mutex<Sweep>> = templates
        .iter()
        .map(|_| Mutex::new(Sweep::default()))
        .collect();
    let stopped: Vec<AtomicBool> = templates.iter().map(|_| AtomicBool::new(false)).collect();
    // The next (template, position) to run, or None when every template is done.
    let take = || {
        let mut w = work
            .lock()
            .expect("no worker panics while holding the lock");
        while w.template < templates.len() {
            let t = w.template;
            let out_of_time = w.deadline.is_some_and(|d| Instant::now() >= d); // determinism-ok: the --time budget decides how many seeds run, never what a run does.
            if w.position >= limit || out_of_time || stopped[t].load(Ordering::Relaxed) {
                w.template += 1;
                w.position = 0;
                w.deadline = None;
                continue;
            }
            if w.position == 0 {
                let now = Instant::now(); // determinism-ok: reporting and the --time budget only
                w.deadline = per_scenario.map(|d| now + d);
                sweeps[t].lock().expect("no panics").started = Some(now);
            }
            let p = w.position;
            w.position += 1;
            return Some((t, p));
        }
        None
    };
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                // determinism-ok: each seed is an independent run; only the order of completion varies, and results are sorted by seed below.
                while let Some((t, p)) = take() {
                    let template = &templates[t];
                    let seed = seed_at(first, opts.shard, p);
                    let sample = opts.determinism_every > 0
                        && p % opts.determinism_every == opts.determinism_every - 1;
                    let (sc, mut result) = run_seed(template, seed, sample);
                    if result.failure.is_some() {
                        if let Some(dir) = &opts.failures_dir {
                            result.file = save_failure(&sc, dir).ok();
                        }
                        if opts.stop_at_first_failure {
                            stopped[t].store(true, Ordering::Relaxed);
                        }
                    }
                    on_seed(&template.name, &result);
                    let mut sweep = sweeps[t].lock().expect("no panics");
                    sweep.results.push(result);
                    sweep.finished = Some(Instant::now()); // determinism-ok: reporting only
                }
            });
        }
    });
    templates
        .iter()
        .zip(sweeps)
        .map(|(template, sweep)| {
            let sweep = sweep.into_inner().expect("workers finished");
            let mut results = sweep.results;
            results.sort_by_key(|r| r.seed);
            if opts.stop_at_first_failure
                && let Some(first_fail) = results.iter().position(|r| r.failure.is_some())
            {
                // Seeds after the first failure ran only because other workers were
                // busy; dropping them keeps the result the same for any --jobs.
                results.truncate(first_fail + 1);
            }
            let wall = match (sweep.started, sweep.finished) {
                (Some(start), Some(end)) => end.saturating_duration_since(start),
                _ => Duration::ZERO,
            };
            SweepSummary {
                scenario: template.name.clone(),
                results,
                wall,
            }
        })
        .collect()
}

/// Where the shared work queue stands.
struct WorkQueue {
    /// The template whose seeds are being handed out.
    template: usize,
    /// The next seed position of that template.
    position: u64,
    /// When that template's `--time` budget runs out.
    deadline: Option<Instant>,
}

/// One template's seeds as they finish.
#[derive(Default)]
struct Sweep {
    results: Vec<SeedResult>,
    /// When its first seed was handed out and its last one finished.
    started: Option<Instant>,
    finished: Option<Instant>,
}
