//! Planted-bug hunts: fuzz with one bug on until a checker fires, then shrink.

use std::time::{Duration, Instant}; // determinism-ok: reports how long a hunt took

use super::fuzz::{Budget, FuzzOptions, fuzz};
use super::shrink::{Shrunk, shrink};
use super::swarm::draw;
use crate::bugs::BugInfo;
use crate::run::RunLimits;
use crate::scenario::Scenario;
use crate::scenario::parse::parse_scenario;
use crate::scenario::shipped::SHIPPED;

/// What a hunt found.
#[derive(Debug)]
pub struct Hunt {
    pub bug: &'static str,
    pub scenario: &'static str,
    /// The first failing seed, and how many seeds that took (None: not found within budget).
    pub found: Option<(u64, u64)>,
    pub signature: Option<String>,
    pub shrunk: Option<Shrunk>,
    /// Seeds stopped by the event or memory budget before a verdict, up to
    /// the first failing one (or all, when none failed): they proved
    /// nothing either way, and a hunt that did not find its bug may have
    /// missed it there.
    pub over_budget: Vec<u64>,
    pub wall: Duration,
}

/// The shipped scenario named `name`.
pub fn shipped(name: &str) -> Option<Scenario> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(n, text)| parse_scenario(text, n).ok())
}

/// Hunts `bug` on its scenario with up to `budget` seeds and `jobs` workers,
/// then shrinks the first failure with at most `shrink_runs` candidate runs.
pub fn hunt(bug: &BugInfo, budget: u64, jobs: usize, shrink_runs: u64, limits: RunLimits) -> Hunt {
    let started = Instant::now(); // determinism-ok: reporting only
    let mut template = shipped(bug.scenario)
        .unwrap_or_else(|| panic!("bug {} names unknown scenario {}", bug.name, bug.scenario));
    template
        .bugs
        .enable(bug.name)
        .expect("catalogue names are valid");
    let opts = FuzzOptions {
        budget: Budget::Seeds {
            first: 1,
            count: budget,
        },
        jobs,
        shard: (0, 1),
        determinism_every: 0,
        failures_dir: None,
        stop_at_first_failure: true,
        limits,
        extreme: false,
    };
    let sweep = fuzz(std::slice::from_ref(&template), &opts, &|_, _| {}).remove(0);
    let first = sweep.results.iter().position(|r| r.failure.is_some());
    let over_budget = sweep.results[..first.unwrap_or(sweep.results.len())]
        .iter()
        .filter(|r| r.budget_exceeded.is_some())
        .map(|r| r.seed)
        .collect();
    let (found, signature, shrunk) = match first {
        Some(i) => {
            let r = &sweep.results[i];
            let failing = draw(&template, r.seed);
            (
                Some((r.seed, i as u64 + 1)),
                r.failure.clone(),
                shrink(&failing, shrink_runs, limits).ok(),
            )
        }
        None => (None, None, None),
    };
    Hunt {
        bug: bug.name,
        scenario: bug.scenario,
        found,
        signature,
        shrunk,
        over_budget,
        wall: started.elapsed(),
    }
}
