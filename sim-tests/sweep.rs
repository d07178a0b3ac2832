//! Every shipped scenario on many seeds: all invariants and expectations hold,
//! and every check decides (none is inconclusive).

use crate::common::{run, shipped_scenarios, sweep_seeds, why};

#[test]
fn every_shipped_scenario_passes_on_every_seed_of_the_sweep() {
    let scenarios = shipped_scenarios();
    assert!(scenarios.len() >= 12, "at least 12 scenarios are shipped");
    let seeds = sweep_seeds();
    let jobs: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|i| (1..=seeds).map(move |s| (i, s)))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (jobs, scenarios) = (&jobs, &scenarios);
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for &(i, seed) in jobs.iter().skip(w).step_by(workers) {
                        let (path, sc) = &scenarios[i];
                        let r = run(sc, seed);
                        if !r.passed() || r.inconclusive() > 0 {
                            failed.push(format!("{} --seed {seed}: {}", path.display(), why(&r)));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    println!("swept {} scenarios x {seeds} seeds", scenarios.len());
    assert!(
        failures.is_empty(),
        "{} failing runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_built_in_scenario_list_matches_the_scenarios_folder() {
    use distsync::scenario::shipped::SHIPPED;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let on_disk: Vec<String> = shipped_scenarios()
        .iter()
        .map(|(p, _)| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let built_in: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    assert_eq!(built_in, on_disk, "run scripts/gen-shipped.sh");
    for (name, text) in SHIPPED {
        let file = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        assert_eq!(*text, file, "{name}: run scripts/gen-shipped.sh");
    }
}
