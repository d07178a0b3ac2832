//! Fuzzing, failure files, shrinking and bug hunts.

use distsync::bugs::CATALOGUE;
use distsync::explore::fuzz::{Budget, FuzzOptions, fuzz};
use distsync::explore::hunt::{hunt, shipped};
use distsync::explore::shrink::shrink;
use distsync::explore::swarm::draw;
use distsync::run::RunLimits;
use distsync::scenario::load_scenario;
use distsync::scenario::parse::{parse_scenario, scenario_to_toml};

use crate::common::run;

fn options(jobs: usize, count: u64, dir: Option<std::path::PathBuf>) -> FuzzOptions {
    FuzzOptions {
        budget: Budget::Seeds { first: 1, count },
        jobs,
        shard: (0, 1),
        determinism_every: 4,
        failures_dir: dir,
        stop_at_first_failure: false,
        limits: RunLimits::default(),
        extreme: false,
    }
}

#[test]
fn verdicts_and_digests_do_not_depend_on_jobs_or_shards() {
    let mut templates = vec![
        shipped("leader-crash").unwrap(),
        shipped("flapping-partitions").unwrap(),
    ];
    // A planted bug makes some seeds fail, so failures are compared too.
    templates[1]
        .bugs
        .enable("raft.no_truncate_on_conflict")
        .unwrap();
    let one = fuzz(&templates, &options(1, 24, None), &|_, _| {});
    let two = fuzz(&templates, &options(2, 24, None), &|_, _| {});
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.results, b.results, "{}", a.scenario);
    }
    assert!(
        one[1].failures().count() > 0,
        "the planted bug should fail some seeds"
    );
    // Two shards together cover exactly the seeds of the whole sweep, with the same verdicts.
    let shard = |i| FuzzOptions {
        shard: (i, 2),
        ..options(2, 24, None)
    };
    let mut halves: Vec<_> = fuzz(&templates[..1], &shard(0), &|_, _| {})
        .remove(0)
        .results;
    halves.extend(
        fuzz(&templates[..1], &shard(1), &|_, _| {})
            .remove(0)
            .results,
    );
    halves.sort_by_key(|r| r.seed);
    assert_eq!(halves, one[0].results);
}

#[test]
fn a_failing_seed_becomes_a_file_that_replays_edits_and_shrinks() {
    let dir = std::env::temp_dir().join(format!("distsync-explore-{}", std::process::id()));
    let mut template = shipped("flapping-partitions").unwrap();
    template
        .bugs
        .enable("raft.no_truncate_on_conflict")
        .unwrap();
    let sweep = fuzz(
        std::slice::from_ref(&template),
        &options(2, 20, Some(dir.clone())),
        &|_, _| {},
    )
    .remove(0);
    let failed = sweep
        .failures()
        .next()
        .expect("the planted bug fails some seed in 1..=20");
    let file = failed.file.clone().expect("failures are saved");
    assert_eq!(
        file.file_name().unwrap().to_string_lossy(),
        format!("flapping-partitions-{}.toml", failed.seed)
    );

    // The file alone reproduces the failure and the trace digest.
    let saved = load_scenario(&file).unwrap();
    assert_eq!(saved.seed, failed.seed);
    let replay = run(&saved, saved.seed);
    assert_eq!(replay.digest, failed.digest);
    assert_eq!(replay.failure_signature(), failed.failure);

    // A person can edit it and run it: here, drop the bug switch and the last step.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("bugs = [\"raft.no_truncate_on_conflict\"]", "bugs = []");
    let mut edited = parse_scenario(&text, "edited.toml").unwrap();
    edited.timeline.pop();
    assert!(
        run(&edited, edited.seed).passed(),
        "without the bug the edited run passes"
    );

    // Shrinking keeps the failure, and is deterministic.
    let a = shrink(&saved, 300, RunLimits::default()).unwrap();
    let b = shrink(&saved, 300, RunLimits::default()).unwrap();
    assert_eq!(a.minimal, b.minimal);
    assert_eq!(a.signature, failed.failure.clone().unwrap());
    assert!(a.after.steps <= a.before.steps && a.after.duration_ns <= a.before.duration_ns);
    let min = parse_scenario(&scenario_to_toml(&a.minimal), "min.toml").unwrap();
    assert_eq!(
        run(&min, min.seed).failure_signature(),
        Some(a.signature.clone())
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shrinking_a_passing_scenario_is_an_error() {
    let sc = shipped("initial-election").unwrap();
    assert!(
        shrink(&sc, 10, RunLimits::default())
            .unwrap_err()
            .contains("passes")
    );
}

#[test]
fn every_planted_bug_is_hunted_down_within_its_budget_and_shrinks() {
    for bug in CATALOGUE {
        let h = hunt(bug, bug.budget, 2, 300, RunLimits::default());
        let (seed, tried) = h
            .found
            .unwrap_or_else(|| panic!("{} not found in {} seeds", bug.name, bug.budget));
        let s = h
            .shrunk
            .as_ref()
            .unwrap_or_else(|| panic!("{}: the failure did not shrink", bug.name));
        println!(
            "{}: seed {seed} after {tried} seeds, {}; steps {} -> {}, {:.1}s -> {:.1}s simulated",
            bug.name,
            s.signature,
            s.before.steps,
            s.after.steps,
            s.before.duration_ns as f64 / 1e9,
            s.after.duration_ns as f64 / 1e9
        );
        assert!(
            s.after.steps <= s.before.steps.min(20),
            "{}: {} steps left",
            bug.name,
            s.after.steps
        );
        // The minimal scenario is a file that fails on its own, the same way.
        let min = parse_scenario(&scenario_to_toml(&s.minimal), "min.toml").unwrap();
        assert_eq!(
            run(&min, min.seed).failure_signature(),
            Some(s.signature.clone()),
            "{}",
            bug.name
        );
        // And the hunt reproduces: the same seed fails again when drawn afresh.
        let mut template = shipped(bug.scenario).unwrap();
        template.bugs.enable(bug.name).unwrap();
        assert!(!run(&draw(&template, seed), seed).passed(), "{}", bug.name);
    }
}
