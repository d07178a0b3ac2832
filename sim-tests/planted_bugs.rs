//! Each planted bug is caught by a checker on some seed of a shipped scenario,
//! and the same seed passes with the bug off: the checker catches the bug,
//! not the scenario.

use crate::common::{run, scenario, why};

/// Seeds searched for each bug.
const BUDGET: u64 = 500;

fn hunt(bug: &str, scenario_name: &str, expected: &[&str]) {
    let clean = scenario(scenario_name);
    let mut buggy = clean.clone();
    buggy.bugs.enable(bug).unwrap();
    for seed in 1..=BUDGET {
        let r = run(&buggy, seed);
        if r.passed() {
            continue;
        }
        let reason = why(&r);
        assert!(
            expected.iter().any(|e| reason.contains(e)),
            "{bug} on {scenario_name} seed {seed} failed for an unexpected reason: {reason}"
        );
        let control = run(&clean, seed);
        assert!(
            control.passed(),
            "{scenario_name} seed {seed} fails even without {bug}: {}",
            why(&control)
        );
        println!("{bug}: caught on {scenario_name} seed {seed}: {reason}");
        return;
    }
    panic!("{bug} was not caught on {scenario_name} in seeds 1..={BUDGET}");
}

#[test]
fn vote_without_log_check_is_caught() {
    hunt(
        "raft.vote_without_log_check",
        "stale-node-rejoins",
        &[
            "Leader Completeness",
            "State Machine Safety",
            "linearizable",
        ],
    );
}

#[test]
fn commit_old_term_by_count_is_caught() {
    hunt(
        "raft.commit_old_term_by_count",
        "figure-8",
        &["Leader Completeness", "State Machine Safety"],
    );
}

#[test]
fn vote_before_persist_is_caught() {
    hunt(
        "raft.vote_before_persist",
        "crashes-during-elections",
        &["One vote per term", "Term monotonic"],
    );
}

#[test]
fn no_truncate_on_conflict_is_caught() {
    hunt(
        "raft.no_truncate_on_conflict",
        "flapping-partitions",
        &["Log Matching"],
    );
}

#[test]
fn read_without_quorum_is_caught() {
    hunt(
        "raft.read_without_quorum",
        "isolated-leader-reads",
        &["linearizable"],
    );
}

#[test]
fn ack_by_index_is_caught() {
    hunt("kv.ack_by_index", "deposed-leader-acks", &["linearizable"]);
}

#[test]
fn no_fencing_is_caught() {
    hunt(
        "lock.no_fencing",
        "lock-holder-pauses",
        &["Fencing at the resource"],
    );
}

#[test]
fn expire_by_local_clock_is_caught() {
    hunt(
        "lock.expire_by_local_clock",
        "lock-leader-crash",
        &["Lease honoured"],
    );
}

#[test]
fn grant_ignores_holders_is_caught() {
    hunt(
        "lock.grant_ignores_holders",
        "lock-contention",
        &["Lock exclusion"],
    );
}

#[test]
fn grant_before_commit_is_caught() {
    hunt(
        "lock.grant_before_commit",
        "lock-leader-crash",
        &["lock history linearizable"],
    );
}

#[test]
fn queue_ack_before_write_is_caught() {
    hunt(
        "queue.ack_before_write",
        "queue-shard-crash-always",
        &["Acknowledged produce delivered"],
    );
}

#[test]
fn queue_no_visibility_timeout_is_caught() {
    hunt(
        "queue.no_visibility_timeout",
        "queue-consumer-crash",
        &["Acknowledged produce delivered"],
    );
}

#[test]
fn queue_drop_inflight_on_rebalance_is_caught() {
    hunt(
        "queue.drop_inflight_on_rebalance",
        "queue-add-shard",
        &["Acknowledged produce delivered"],
    );
}

#[test]
fn redis_everysec_loses_too_much_is_caught() {
    hunt(
        "redis.everysec_loses_too_much",
        "queue-shard-crash-everysec",
        &["Loss within persistence mode"],
    );
}

#[test]
fn mesi_no_invalidate_on_upgrade_is_caught_on_both_protocols() {
    for scenario in ["cache-bus-write-storm", "cache-dir-write-storm"] {
        hunt(
            "mesi.no_invalidate_on_upgrade",
            scenario,
            &["Single writer"],
        );
    }
}

#[test]
fn mesi_exclusive_despite_sharers_is_caught_on_both_protocols() {
    for scenario in ["cache-bus-zipf", "cache-dir-zipf"] {
        hunt(
            "mesi.exclusive_despite_sharers",
            scenario,
            &["Single writer"],
        );
    }
}

#[test]
fn mesi_drop_writeback_on_evict_is_caught_on_both_protocols() {
    for scenario in ["cache-bus-zipf", "cache-dir-zipf"] {
        hunt("mesi.drop_writeback_on_evict", scenario, &["Data value"]);
    }
}

#[test]
fn mesi_directory_forgets_sharer_is_caught() {
    hunt(
        "mesi.directory_forgets_sharer",
        "cache-dir-zipf",
        &["Single writer"],
    );
}
