//! The lock service end to end: lock clients against a Raft cluster under
//! faults, with the online lock checker on.

use distsync::explore::hunt::shipped;
use distsync::run::{RunOptions, run_scenario};
use distsync::scenario::{LockWorkload, Scenario};
use distsync::sim::world::World;
use distsync::trace::Tracer;

/// `template` with lock clients contending for a few locks.
fn with_lock_clients(template: &str, clients: usize, locks: u32, crash_ratio: f64) -> Scenario {
    let mut sc = shipped(template).unwrap();
    sc.lock_load = LockWorkload {
        clients,
        locks,
        max_per_round: 3,
        shared_ratio: 0.3,
        crash_ratio,
        stop_ns: sc.duration_ns - 2_000_000_000,
        ..LockWorkload::default()
    };
    sc
}

struct Totals {
    grants: u64,
    deadlocks: u64,
    crashes: u64,
    lost_sessions: u64,
}

fn run_and_count(sc: &Scenario, seed: u64) -> Totals {
    let r = run_scenario(sc, RunOptions::new(seed)).unwrap();
    assert!(
        r.passed(),
        "{} seed {seed}: {:?} {:?}",
        sc.name,
        r.violation,
        r.checks.iter().filter(|c| c.failed()).collect::<Vec<_>>()
    );
    let mut world = World::new(sc, seed, Tracer::disabled(sc.nodes));
    world.run();
    let mut t = Totals {
        grants: 0,
        deadlocks: 0,
        crashes: 0,
        lost_sessions: 0,
    };
    for c in world.lock_clients() {
        t.grants += c.stats().grants;
        t.deadlocks += c.stats().deadlocks;
        t.crashes += c.stats().crashes;
        t.lost_sessions += c.stats().lost_sessions;
    }
    t
}

#[test]
fn contended_locks_stay_safe_under_leader_crashes_partitions_and_client_crashes() {
    let mut grants = 0;
    let mut deadlocks = 0;
    let mut crashes = 0;
    let mut lost = 0;
    for template in [
        "leader-crash",
        "minority-partition",
        "lossy-network",
        "clock-skew",
    ] {
        let sc = with_lock_clients(template, 4, 3, 0.05);
        for seed in 1..=25 {
            let t = run_and_count(&sc, seed);
            grants += t.grants;
            deadlocks += t.deadlocks;
            crashes += t.crashes;
            lost += t.lost_sessions;
        }
    }
    println!(
        "grants {grants}, deadlocks broken {deadlocks}, client crashes {crashes}, sessions lost {lost}"
    );
    assert!(grants > 1000, "the clients made progress: {grants} grants");
    assert!(
        deadlocks > 0,
        "random lock orders produce deadlocks, and they are broken"
    );
    assert!(crashes > 0 && lost > 0, "crashed clients' sessions expire");
}
