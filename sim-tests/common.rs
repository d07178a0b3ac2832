//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use distsync::run::{CheckVerdict, RunOptions, RunReport, run_scenario};
use distsync::scenario::{Scenario, load_scenario};

/// Every shipped scenario file, sorted by name.
pub fn shipped_scenarios() -> Vec<(PathBuf, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let sc = load_scenario(&p).unwrap_or_else(|e| panic!("{e}"));
            (p, sc)
        })
        .collect()
}

/// One shipped scenario by name.
pub fn scenario(name: &str) -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    load_scenario(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs with the digest on and no trace file.
pub fn run(sc: &Scenario, seed: u64) -> RunReport {
    run_scenario(sc, RunOptions::new(seed)).expect("no trace file, no I/O")
}

/// Seeds per scenario in the sweep (DISTSYNC_SWEEP_SEEDS overrides; default 200).
pub fn sweep_seeds() -> u64 {
    std::env::var("DISTSYNC_SWEEP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// A one-line description of why a run failed.
pub fn why(r: &RunReport) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &r.violation {
        parts.push(format!(
            "{} at event {}: {}",
            f.violation.invariant, f.seq, f.violation.detail
        ));
    }
    for c in r
        .checks
        .iter()
        .filter(|c| c.verdict != CheckVerdict::Passed)
    {
        parts.push(format!("{}: {}", c.name, c.detail));
    }
    parts.join("; ")
}

/// Runs the built binary: (exit code, stdout, stderr).
pub fn distsync(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_distsync"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
