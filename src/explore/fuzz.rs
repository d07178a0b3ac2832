//! The fuzz sweep: many seeds of one or more scenario templates, in parallel,
//! with every seed's verdict independent of how many workers ran it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant}; // determinism-ok: wall time only bounds and reports a sweep

use super::save_failure_with_note;
use super::swarm::{draw, draw_extreme};
use crate::run::{BudgetExceeded, RunLimits, RunOptions, run_scenario};
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
    /// Every seed's event and memory budgets: the per-seed watchdog. A seed
    /// that exceeds one is stopped, counted apart and saved, and the sweep
    /// goes on (a thread cannot be interrupted from outside; a
    /// deterministic budget also stops the seed the same way on replay).
    pub limits: RunLimits,
    /// Draw each seed with parameters at their allowed limits too
    /// (`swarm::draw_extreme`), not only faults.
    pub extreme: bool,
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
    /// The seed needed more events or memory than the sweep's budgets: it
    /// was stopped there, is counted apart and saved with a note saying so.
    pub budget_exceeded: Option<BudgetExceeded>,
    pub digest: u64,
    pub events: u64,
    pub sim_ns: u64,
    /// The saved scenario that replays a failure.
    pub file: Option<PathBuf>,
    /// Why a failure could not be saved under `failures_dir`.
    pub save_error: Option<String>,
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
    /// The seeds stopped by a budget, in seed order.
    pub fn budget_exceeded(&self) -> impl Iterator<Item = &SeedResult> {
        self.results
            .iter()
            .filter(|r| r.failure.is_none() && r.budget_exceeded.is_some())
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

/// Runs one seed of `template` within `limits`: draws its faults, runs it,
/// and on a sampled position runs it again to check the digest.
pub fn run_seed(
    template: &Scenario,
    seed: u64,
    check_determinism: bool,
    limits: RunLimits,
    extreme: bool,
) -> (Scenario, SeedResult) {
    let sc = if extreme {
        draw_extreme(template, seed)
    } else {
        draw(template, seed)
    };
    let run = || {
        run_scenario(&sc, RunOptions::new(seed).with_limits(limits)).expect("no trace file, no I/O")
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
        budget_exceeded: report.budget_exceeded,
        failure,
        digest: report.digest,
        events: report.stats.events,
        sim_ns: report.sim_time_ns,
        file: None,
        save_error: None,
    };
    (sc, result)
}

/// The note a seed stopped by a budget is saved with: what stopped it, and
/// the flags that replay it the same way.
fn budget_note(b: &BudgetExceeded, limits: &RunLimits) -> String {
    format!(
        "budget exceeded, not a violation: {b}\nreplay with the same budgets: distsync run THIS_FILE{}",
        limits.flags()
    )
}

/// The seed at position `p` of a sweep starting at `first` under `shard`;
/// None past `u64::MAX`.
fn seed_at(first: u64, shard: (u64, u64), p: u64) -> Option<u64> {
    p.checked_mul(shard.1)?
        .checked_add(shard.0)?
        .checked_add(first)
}

impl FuzzOptions {
    /// Refuses a sweep that would check nothing or whose seeds would run
    /// past `u64::MAX` (wrapping round would report wrong seed numbers).
    /// A `--time` sweep is not refused: it stops at the last seed.
    pub fn check(&self) -> Result<(), String> {
        let Budget::Seeds { first, count } = self.budget else {
            return Ok(());
        };
        if count == 0 {
            return Err("--seeds 0 would check nothing: expected at least 1".into());
        }
        let n = self.shard.1.max(1);
        // This shard's last seed is `first + span`.
        let span = (count.div_ceil(n) - 1)
            .checked_mul(n)
            .and_then(|x| x.checked_add(self.shard.0));
        if span.and_then(|s| first.checked_add(s)).is_some() {
            return Ok(());
        }
        Err(match span {
            Some(span) => format!(
                "--first-seed {first} with --seeds {count}: the last seed would pass {}; \
                 expected --first-seed between 0 and {}",
                u64::MAX,
                u64::MAX - span
            ),
            None => format!("--seeds {count}: more seeds than there are ({})", u64::MAX),
        })
    }
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
            let Some(seed) = seed_at(first, opts.shard, p) else {
                // Past the last seed there is: this template is done.
                w.position = limit;
                continue;
            };
            w.position += 1;
            return Some((t, seed, p));
        }
        None
    };
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                // determinism-ok: each seed is an independent run; only the order of completion varies, and results are sorted by seed below.
                while let Some((t, seed, p)) = take() {
                    let template = &templates[t];
                    let sample = opts.determinism_every > 0
                        && p % opts.determinism_every == opts.determinism_every - 1;
                    let (sc, mut result) =
                        run_seed(template, seed, sample, opts.limits, opts.extreme);
                    let note = match result.budget_exceeded {
                        Some(b) if result.failure.is_none() => Some(budget_note(&b, &opts.limits)),
                        _ => None,
                    };
                    if result.failure.is_some() || note.is_some() {
                        if let Some(dir) = &opts.failures_dir {
                            match save_failure_with_note(&sc, dir, note.as_deref()) {
                                Ok(p) => result.file = Some(p),
                                Err(e) => {
                                    result.save_error =
                                        Some(format!("cannot save in {}: {e}", dir.display()))
                                }
                            }
                        }
                        if opts.stop_at_first_failure && result.failure.is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(budget: Budget, shard: (u64, u64)) -> FuzzOptions {
        FuzzOptions {
            budget,
            jobs: 1,
            shard,
            determinism_every: 0,
            failures_dir: None,
            stop_at_first_failure: false,
            limits: RunLimits::default(),
            extreme: false,
        }
    }

    #[test]
    fn a_sweep_that_checks_nothing_or_runs_past_the_last_seed_is_refused() {
        let seeds = |first, count| Budget::Seeds { first, count };
        assert!(opts(seeds(u64::MAX, 1), (0, 1)).check().is_ok());
        assert!(opts(seeds(u64::MAX - 99, 100), (0, 1)).check().is_ok());
        let e = opts(seeds(u64::MAX - 98, 100), (0, 1)).check().unwrap_err();
        assert!(
            e.contains("expected --first-seed between 0 and 18446744073709551516"),
            "{e}"
        );
        let e = opts(seeds(1, 0), (0, 1)).check().unwrap_err();
        assert!(e.contains("--seeds 0"), "{e}");
        // Shard 2 of 4 of 8 seeds runs positions 0 and 1: seeds first+1, first+5.
        assert!(opts(seeds(u64::MAX - 5, 8), (1, 4)).check().is_ok());
        assert!(opts(seeds(u64::MAX - 4, 8), (1, 4)).check().is_err());
        assert!(opts(seeds(0, u64::MAX), (0, 1)).check().is_ok());
    }

    #[test]
    fn a_timed_sweep_stops_at_the_last_seed_instead_of_wrapping() {
        let template = crate::scenario::parse::parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"200ms\"\n",
            "t.toml",
        )
        .unwrap();
        let o = opts(
            Budget::Time {
                first: u64::MAX - 1,
                per_scenario: Duration::from_secs(600),
            },
            (0, 1),
        );
        assert!(o.check().is_ok());
        let sweep = fuzz(std::slice::from_ref(&template), &o, &|_, _| {}).remove(0);
        let seeds: Vec<u64> = sweep.results.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, vec![u64::MAX - 1, u64::MAX]);
    }

    #[test]
    fn seeds_over_budget_are_counted_apart_saved_with_a_note_and_the_sweep_goes_on() {
        let template = crate::scenario::parse::parse_scenario(
            "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"2s\"\n",
            "t.toml",
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("distsync-fuzz-budget-{}", std::process::id()));
        let o = FuzzOptions {
            failures_dir: Some(dir.clone()),
            // Hunts stop at the first failure; a seed over budget is none.
            stop_at_first_failure: true,
            limits: RunLimits {
                max_events: 50,
                ..RunLimits::default()
            },
            ..opts(Budget::Seeds { first: 1, count: 4 }, (0, 1))
        };
        let sweep = fuzz(std::slice::from_ref(&template), &o, &|_, _| {}).remove(0);
        assert_eq!(sweep.results.len(), 4, "the sweep went on past every seed");
        assert_eq!(sweep.budget_exceeded().count(), 4);
        assert_eq!(sweep.failures().count(), 0);
        assert_eq!(sweep.inconclusive(), 0);
        for r in &sweep.results {
            let file = r.file.as_ref().expect("saved");
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.starts_with("# budget exceeded, not a violation"),
                "{text}"
            );
            assert!(
                text.contains(&format!("distsync run {} --max-events 50", file.display())),
                "{text}"
            );
        }
        // Within the default budgets the same seeds pass and nothing is saved.
        let o = FuzzOptions {
            failures_dir: None,
            ..opts(Budget::Seeds { first: 1, count: 4 }, (0, 1))
        };
        let sweep = fuzz(std::slice::from_ref(&template), &o, &|_, _| {}).remove(0);
        assert_eq!(sweep.budget_exceeded().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
