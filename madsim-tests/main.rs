//! The real runtime's async code (the actor loop, timers, the TCP transport
//! with its handshakes and reconnects, the on-disk log) under madsim's
//! deterministic runtime: clusters of 3 and 5 nodes on madsim's network,
//! with partitions, kills and restarts, clients writing and reading, and
//! the Raft checker over the nodes' merged traces. Run by
//! scripts/madsim-test.sh, which sets `--cfg madsim`.
//!
//! `MADSIM_SEEDS` sets how many seeds each cluster size runs (default 200);
//! `MADSIM_SEED` runs that one seed only, to replay a failure.

#[cfg(not(madsim))]
compile_error!("the madsim tests need madsim's runtime: run scripts/madsim-test.sh");

mod cluster;

use std::time::Duration;

use cluster::{RunSpec, run};
use distsync::bugs::Bugs;

/// The seeds to run: `MADSIM_SEED` alone, or `MADSIM_SEEDS` of them from 0.
fn seeds() -> Vec<u64> {
    let parse = |name: &str| {
        let value = std::env::var(name); // determinism-ok: which seeds run, not what a run does
        value.ok().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number"))
        })
    };
    match (parse("MADSIM_SEED"), parse("MADSIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, n) => (0..n.unwrap_or(200)).collect(),
    }
}

fn spec(nodes: usize, seed: u64) -> RunSpec {
    RunSpec {
        nodes,
        seed,
        faulty_for: Duration::from_secs(20),
        bugs: Bugs::default(),
    }
}

/// Every seed passes every check; the faults really happened.
fn sweep(nodes: usize) {
    let seeds = seeds();
    let (mut kills, mut partitions, mut writes, mut reads, mut terms) = (0, 0, 0, 0, 0);
    let mut digest = Fnv::default();
    for &seed in &seeds {
        let r = run(spec(nodes, seed));
        if let Some(failure) = &r.failure {
            let kept = keep_trace(nodes, seed, &r.trace);
            panic!(
                "{nodes} nodes, seed {seed}: {failure}\n  the run: {} trace lines, {} client operations ({} acknowledged writes, {} reads), {} kills, {} partitions, highest term {}\n  merged trace: {kept}\n  replay: MADSIM_SEED={seed} scripts/madsim-test.sh {}",
                r.trace.len(),
                r.ops,
                r.acked_writes,
                r.ok_reads,
                r.kills,
                r.partitions,
                r.max_term,
                test_name(nodes)
            );
        }
        kills += r.kills;
        partitions += r.partitions;
        writes += r.acked_writes;
        reads += r.ok_reads;
        terms += r.max_term;
        for line in &r.trace {
            digest.add(line.as_bytes());
        }
    }
    eprintln!(
        "madsim, {nodes} nodes, {} seeds: {kills} kills, {partitions} partitions, {writes} acknowledged writes, {reads} reads, mean highest term {:.1}; no violation; traces digest {:016x}",
        seeds.len(),
        terms as f64 / seeds.len() as f64,
        digest.0
    );
    assert!(kills > 0 && partitions > 0, "the nemesis did nothing");
}

/// FNV-1a over every line of every run: equal on every machine and every
/// process for the same seeds, as the runs must be.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain(b"\n") {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Writes a failed run's merged trace where `distsync report` can read it;
/// where it went, or why not.
fn keep_trace(nodes: usize, seed: u64, trace: &[String]) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("madsim-{nodes}n-seed{seed}.jsonl"));
    match std::fs::write(&path, trace.join("\n") + "\n") {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("not kept ({}: {e})", path.display()),
    }
}

fn test_name(nodes: usize) -> &'static str {
    if nodes == 3 {
        "three_nodes"
    } else {
        "five_nodes"
    }
}

#[test]
fn three_nodes() {
    sweep(3);
}

#[test]
fn five_nodes() {
    sweep(5);
}

/// The same seed gives the same run: the same merged trace, byte for byte.
#[test]
fn same_seed_same_trace() {
    let seed = seeds()[0];
    let a = run(spec(3, seed));
    let b = run(spec(3, seed));
    assert!(
        a.trace.len() > 100,
        "a run of {} trace lines",
        a.trace.len()
    );
    if let Some(i) = (0..a.trace.len().min(b.trace.len())).find(|&i| a.trace[i] != b.trace[i]) {
        panic!(
            "seed {seed}: the traces differ at merged line {}:\n  {}\n  {}",
            i + 1,
            a.trace[i],
            b.trace[i]
        );
    }
    assert_eq!(a, b);
}

/// A planted bug is caught: leaders that serve reads without confirming
/// their leadership give a stale read behind a partition, which the
/// linearizability check must find within a few seeds.
#[test]
fn planted_stale_reads_are_caught() {
    let mut bugs = Bugs::default();
    bugs.enable("raft.read_without_quorum")
        .expect("a catalogued bug");
    let caught = (0..20).find_map(|seed| {
        run(RunSpec {
            bugs,
            ..spec(3, seed)
        })
        .failure
        .map(|f| (seed, f))
    });
    let (seed, failure) = caught.expect("raft.read_without_quorum went unnoticed for 20 seeds");
    eprintln!("raft.read_without_quorum caught on seed {seed}: {failure}");
    assert!(failure.contains("linearizable"), "{failure}");
}
