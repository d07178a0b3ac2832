//! Clock steps against timers: every timer and every lease runs on the
//! node's monotonic clock, so stepping the wall clock neither triggers an
//! election (forwards) nor stalls one (backwards).

use crate::common::{run, scenario, why};

/// Seeds beyond the files' own: on them the steps hit other roles.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=12;

#[test]
fn a_forward_step_triggers_no_election() {
    let sc = scenario("clock-step-forward");
    for seed in SEEDS {
        let r = run(&sc, seed);
        assert!(r.passed(), "seed {seed}: {}", why(&r));
        // Pre-vote is off: an election timeout fired by a step would raise
        // a term and depose the leader.
        assert_eq!(
            r.leaders_elected, 1,
            "seed {seed}: one leader for the whole run"
        );
        let term = r.nodes[0].term;
        assert!(
            r.nodes.iter().all(|n| n.term == term),
            "seed {seed}: one term at the end: {:?}",
            r.nodes
        );
        if seed == 1 {
            // The file's seed has no split vote at the start: one election
            // in all, the clock steps adding none.
            assert_eq!(r.stats.elections, 1, "seed 1: elections");
        }
    }
}

#[test]
fn a_backward_step_stalls_no_election() {
    let sc = scenario("clock-step-back");
    for seed in SEEDS {
        let r = run(&sc, seed);
        assert!(r.passed(), "seed {seed}: {}", why(&r));
        assert_eq!(
            r.leaders_elected, 2,
            "seed {seed}: the first and its successor"
        );
        // The leader crash is the only one: a successor within an election
        // timeout or two (150-300 ms each), not after the 1.5-2 s of the steps.
        let recovery = r.stats.leader_recoveries_ns.as_slice();
        assert!(
            matches!(recovery, [ns] if *ns < 700_000_000),
            "seed {seed}: recovery after the crash took {recovery:?} ns"
        );
    }
}
