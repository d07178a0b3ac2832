//! Shrinking: the smallest scenario that still fails the same way.
//!
//! Delta debugging (Zeller's ddmin) over the timeline, then each step moved
//! earlier, then one parameter at a time towards the plainest setting:
//! shorter run, fewer clients, fewer nodes, a calm network, true clocks,
//! default Raft settings. A candidate is
//! kept only if it is a valid scenario (it loads back from its saved form)
//! and fails with the same signature on the same seed. Every choice is made in
//! a fixed order, so the same input always shrinks to the same output.

use super::swarm::loads_back;
use crate::run::{RunLimits, RunOptions, run_scenario};
use crate::scenario::{Action, ClockConfig, Scenario, Step, Target};

/// How big a failing scenario is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub steps: usize,
    pub nodes: usize,
    pub clients: usize,
    pub duration_ns: u64,
    pub events: u64,
}

/// The outcome of a shrink.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub minimal: Scenario,
    pub signature: String,
    pub before: Size,
    pub after: Size,
    /// Candidate runs tried.
    pub runs: u64,
}

struct Shrinker {
    signature: String,
    runs: u64,
    max_runs: u64,
    /// Every candidate runs within these budgets, as the original did: a
    /// candidate that exceeds one does not fail the same way.
    limits: RunLimits,
}

impl Shrinker {
    /// Runs `c` if budget remains; Some(events) if it fails the same way.
    fn still_fails(&mut self, c: &Scenario) -> Option<u64> {
        if self.runs >= self.max_runs || !loads_back(c) {
            return None;
        }
        self.runs += 1;
        let r = run_scenario(c, RunOptions::new(c.seed).with_limits(self.limits)).ok()?;
        (r.failure_signature().as_deref() == Some(self.signature.as_str()))
            .then_some(r.stats.events)
    }

    /// Replaces `best` by `c` if it still fails.
    fn try_keep(&mut self, best: &mut Scenario, c: Scenario) -> bool {
        if c != *best && self.still_fails(&c).is_some() {
            *best = c;
            true
        } else {
            false
        }
    }
}

fn size(sc: &Scenario, events: u64) -> Size {
    Size {
        steps: sc.timeline.len(),
        nodes: sc.nodes,
        clients: sc.workload.clients,
        duration_ns: sc.duration_ns,
        events,
    }
}

/// Shrinks a failing scenario (run on its own `seed` within `limits`),
/// trying at most `max_runs` candidates.
pub fn shrink(sc: &Scenario, max_runs: u64, limits: RunLimits) -> Result<Shrunk, String> {
    let first = run_scenario(sc, RunOptions::new(sc.seed).with_limits(limits))
        .map_err(|e| e.to_string())?;
    if let Some(b) = first.budget_exceeded {
        return Err(format!(
            "scenario `{}` on seed {} stops at a budget, which is not a failure to shrink: {b}",
            sc.name, sc.seed
        ));
    }
    let Some(signature) = first.failure_signature() else {
        return Err(format!(
            "scenario `{}` passes on seed {}: there is no failure to shrink",
            sc.name, sc.seed
        ));
    };
    let before = size(sc, first.stats.events);
    let mut s = Shrinker {
        signature: signature.clone(),
        runs: 0,
        max_runs,
        limits,
    };
    let mut best = sc.clone();
    // The violation's time bounds the run: nothing after it can matter to an online check.
    if let Some(f) = &first.violation {
        let mut c = best.clone();
        cut_duration(&mut c, f.t_ns.div_ceil(1_000_000) * 1_000_000 + 1_000_000);
        s.try_keep(&mut best, c);
    }
    loop {
        let start = best.clone();
        ddmin_steps(&mut s, &mut best);
        shift_steps(&mut s, &mut best);
        simplify(&mut s, &mut best);
        if best == start || s.runs >= s.max_runs {
            break;
        }
    }
    let events = s.still_fails(&best).unwrap_or(0);
    let after = size(&best, events);
    Ok(Shrunk {
        minimal: best,
        signature,
        before,
        after,
        runs: s.runs,
    })
}

/// Removes ever smaller chunks of steps while the failure persists.
fn ddmin_steps(s: &mut Shrinker, best: &mut Scenario) {
    let mut chunks = 2usize;
    while !best.timeline.is_empty() {
        let n = best.timeline.len();
        let chunk = n.div_ceil(chunks);
        let mut removed = false;
        let mut i = 0;
        while i < best.timeline.len() {
            let mut c = best.clone();
            let end = (i + chunk).min(c.timeline.len());
            c.timeline.drain(i..end);
            if s.try_keep(best, c) {
                removed = true;
            } else {
                i += chunk;
            }
        }
        if removed {
            chunks = chunks.max(2) - 1;
            chunks = chunks.max(2);
        } else if chunk == 1 {
            break;
        } else {
            chunks = (chunks * 2).min(best.timeline.len());
        }
    }
}

/// Moves each step halfway towards the one before it (or towards 0), which
/// shortens fault windows and pulls the failure earlier; the run's tail is
/// then cut by `simplify`.
fn shift_steps(s: &mut Shrinker, best: &mut Scenario) {
    for i in 0..best.timeline.len() {
        let prev = if i == 0 {
            0
        } else {
            best.timeline[i - 1].at_ns
        };
        let at = best.timeline[i].at_ns;
        let earlier = (prev + (at - prev) / 2) / 1_000_000 * 1_000_000;
        if earlier <= prev || earlier >= at {
            continue;
        }
        let mut c = best.clone();
        c.timeline[i].at_ns = earlier;
        s.try_keep(best, c);
    }
}

/// One parameter at a time, towards the plainest value.
fn simplify(s: &mut Shrinker, best: &mut Scenario) {
    // Shorter runs: halve the time after the last step, repeatedly.
    loop {
        let last = best.timeline.iter().map(|st| st.at_ns).max().unwrap_or(0);
        let d = best.duration_ns;
        let shorter = last + (d - last.min(d)) / 2;
        let shorter = shorter.div_ceil(1_000_000) * 1_000_000;
        if shorter >= d || shorter == 0 {
            break;
        }
        let mut c = best.clone();
        cut_duration(&mut c, shorter);
        if !s.try_keep(best, c) {
            break;
        }
    }
    while best.workload.clients > 1 {
        let mut c = best.clone();
        c.workload.clients /= 2;
        if !s.try_keep(best, c) {
            break;
        }
    }
    while best.nodes > 1 {
        let c = without_last_node(best);
        if !s.try_keep(best, c) {
            break;
        }
    }
    let edits: [fn(&mut Scenario); 11] = [
        |c| c.network.link.loss = 0.0,
        |c| c.network.link.duplicate = 0.0,
        |c| c.network.link.reorder = 0.0,
        |c| c.network.link.latency_max_ns = c.network.link.latency_min_ns,
        |c| c.network.overrides.clear(),
        |c| {
            c.clocks
                .iter_mut()
                .for_each(|k| *k = ClockConfig::default())
        },
        |c| c.raft.snapshot_threshold = 1000,
        |c| c.raft.max_entries_per_append = 64,
        |c| c.workload.keys = 1,
        |c| c.workload.read_ratio = 0.0,
        |c| c.workload.read_ratio = 1.0,
    ];
    for edit in edits {
        let mut c = best.clone();
        edit(&mut c);
        s.try_keep(best, c);
    }
}

/// Ends the run at `duration_ns`, dropping later steps and clamping the load.
fn cut_duration(c: &mut Scenario, duration_ns: u64) {
    c.duration_ns = duration_ns.max(1_000_000);
    c.timeline.retain(|st| st.at_ns <= c.duration_ns);
    c.workload.stop_ns = c.workload.stop_ns.min(c.duration_ns);
    c.workload.start_ns = c.workload.start_ns.min(c.workload.stop_ns);
    if c.lock_load.stop_ns != u64::MAX {
        c.lock_load.stop_ns = c.lock_load.stop_ns.min(c.duration_ns);
    }
    c.lock_load.start_ns = c
        .lock_load
        .start_ns
        .min(c.lock_load.stop_ns.min(c.duration_ns));
}

/// The same scenario with its highest-numbered node gone, and every step
/// that named it dropped or trimmed.
fn without_last_node(sc: &Scenario) -> Scenario {
    let mut c = sc.clone();
    let gone = c.nodes - 1;
    c.nodes = gone;
    c.clocks.truncate(gone);
    if c.cache.arbiter >= gone {
        c.cache.arbiter = 0;
    }
    c.network
        .overrides
        .retain(|&(a, b, _)| a < gone && b < gone);
    c.timeline = c
        .timeline
        .into_iter()
        .filter_map(|st| drop_node(st, gone))
        .collect();
    c
}

fn drop_node(mut st: Step, gone: usize) -> Option<Step> {
    let keep = |t: &Target| !matches!(t, Target::Node(n) if *n >= gone);
    // Places: nodes, then shards, which move down one as the node goes.
    let trim = |g: &mut Vec<usize>| {
        g.retain(|&p| p != gone);
        g.iter_mut().filter(|p| **p > gone).for_each(|p| *p -= 1);
    };
    match &mut st.action {
        Action::Crash(t) | Action::Restart(t) | Action::Pause(t) | Action::Resume(t)
            if !keep(t) =>
        {
            return None;
        }
        Action::Client { node, .. } if !keep(node) => return None,
        Action::Cache { node, .. } if *node >= gone => return None,
        Action::Clock { node, .. } if *node >= gone => return None,
        Action::Network {
            link: Some((a, b)), ..
        } if *a >= gone || *b >= gone => return None,
        Action::Partition(groups) => {
            groups.iter_mut().for_each(trim);
            groups.retain(|g| !g.is_empty());
            if groups.is_empty() {
                return None;
            }
        }
        Action::PartitionOneWay { from, to } => {
            trim(from);
            trim(to);
            if from.is_empty() || to.is_empty() {
                return None;
            }
        }
        _ => {}
    }
    Some(st)
}
