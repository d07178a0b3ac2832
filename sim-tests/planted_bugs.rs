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
        &["Vote for up-to-date log"],
    );
}

#[test]
fn commit_old_term_by_count_is_caught() {
    hunt(
        "raft.commit_old_term_by_count",
        "figure-8",
        &["Leader commit rule"],
    );
}

#[test]
fn vote_before_persist_is_caught() {
    hunt(
        "raft.vote_before_persist",
        "crashes-during-elections",
        &["Persist before reply"],
    );
}

#[test]
fn no_truncate_on_conflict_is_caught() {
    hunt(
        "raft.no_truncate_on_conflict",
        "flapping-partitions",
        &["Truncate before overwrite"],
    );
}

/// `bug` makes `scenario_name` fail on `seed` with `invariant`, and the
/// same seed passes with the bug off. Each seed below passed with the bug
/// on before the protocol-rule checks existed: the bug had not yet lost a
/// committed entry, so only the rule it breaks can catch it there.
fn caught_on_seed(bug: &str, scenario_name: &str, seed: u64, invariant: &str) {
    let clean = scenario(scenario_name);
    let mut buggy = clean.clone();
    buggy.bugs.enable(bug).unwrap();
    let r = run(&buggy, seed);
    let found = r.violation.as_ref().map(|f| f.violation.invariant);
    assert_eq!(
        found,
        Some(invariant),
        "{bug} on {scenario_name} seed {seed}: {}",
        why(&r)
    );
    let control = run(&clean, seed);
    assert!(
        control.passed(),
        "{scenario_name} seed {seed} fails even without {bug}: {}",
        why(&control)
    );
}

#[test]
fn figure_8_seed_1_breaks_the_leader_commit_rule() {
    caught_on_seed(
        "raft.commit_old_term_by_count",
        "figure-8",
        1,
        "Leader commit rule",
    );
}

#[test]
fn flapping_partitions_seed_23_overwrites_without_truncating() {
    caught_on_seed(
        "raft.no_truncate_on_conflict",
        "flapping-partitions",
        23,
        "Truncate before overwrite",
    );
}

#[test]
fn stale_node_rejoins_seed_52_votes_for_a_stale_log() {
    caught_on_seed(
        "raft.vote_without_log_check",
        "stale-node-rejoins",
        52,
        "Vote for up-to-date log",
    );
}

#[test]
fn crashes_during_elections_seed_1_sends_before_persisting() {
    caught_on_seed(
        "raft.vote_before_persist",
        "crashes-during-elections",
        1,
        "Persist before reply",
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
