//! The queue's end-of-run delivery check on plain workloads: a correct run
//! with default settings passes whatever its seed, and messages nobody has
//! consumed yet are reported as waiting, not lost.

use distsync::scenario::{Scenario, parse_scenario};

use crate::common::{run, why};

/// Defaults everywhere: the producers' backlog drains after their stop,
/// so messages arrive until the very end of the run.
const DEFAULTS: &str = r#"
name = "queue-defaults"
description = "A fault-free queue with default settings"
nodes = 3
duration = "10s"
[redis]
shards = 2
[queue]
queues = ["jobs"]
[queue_clients]
producers = 2
consumers = CONSUMERS
"#;

fn queue(nodes: usize, consumers: usize) -> Scenario {
    let text = DEFAULTS
        .replace("CONSUMERS", &consumers.to_string())
        .replace("nodes = 3", &format!("nodes = {nodes}"));
    parse_scenario(&text, "queue-defaults.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn delivery_detail(r: &distsync::run::RunReport) -> String {
    r.checks
        .iter()
        .find(|c| c.name.starts_with("queue delivery"))
        .map(|c| c.detail.clone())
        .expect("a queue run has a delivery check")
}

/// Seeds 3 and 4 end with messages stored in the last 100 ms that no
/// consumer had reached yet; the check used to call them lost.
#[test]
fn default_queue_runs_pass_on_every_seed() {
    for nodes in [1, 3] {
        let sc = queue(nodes, 2);
        for seed in 1..=12 {
            let r = run(&sc, seed);
            assert!(r.passed(), "{nodes} nodes, seed {seed}: {}", why(&r));
        }
    }
}

#[test]
fn without_consumers_every_message_waits_and_the_run_passes() {
    let r = run(&queue(3, 0), 1);
    assert!(r.passed(), "{}", why(&r));
    let detail = delivery_detail(&r);
    assert!(detail.contains(" 0 delivered"), "{detail}");
    let produced: u64 = detail
        .split(" acknowledged produces")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(produced > 0, "{detail}");
    assert!(
        detail.contains(&format!("{produced} still waiting for a consumer")),
        "{detail}"
    );
}
