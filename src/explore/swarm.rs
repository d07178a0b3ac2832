//! Swarm testing: each seed draws its own mix of faults on top of a scenario.
//!
//! As in FoundationDB's and TigerBeetle's simulators, a seed first decides
//! which fault kinds exist at all (each with probability 1/2), then how hard
//! each one hits. Runs that leave whole kinds out find bugs that constant,
//! evenly mixed chaos hides. Every drawn fault ends before a recovery point,
//! after which the cluster is healed and restarted and given time to settle,
//! so the template's liveness expectations still apply.
//!
//! Drawn steps target roles (`leader`, `follower`, `last_crashed`,
//! `last_paused`), never named nodes, so they can never conflict with the
//! template's own timeline, and the saved scenario always loads again.

use crate::rng::{Purpose, Rng};
use crate::scenario::parse::{parse_scenario, scenario_to_toml};
use crate::scenario::{Action, LinkConfig, Scenario, Step, Target};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// The fault kinds a seed can switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Crash,
    Pause,
    Partition,
    OneWay,
    LinkChaos,
    Clock,
}

const KINDS: [Kind; 6] = [
    Kind::Crash,
    Kind::Pause,
    Kind::Partition,
    Kind::OneWay,
    Kind::LinkChaos,
    Kind::Clock,
];

/// The concrete scenario that `seed` runs: `template` plus the drawn faults,
/// with `seed` as its own seed. Deterministic in (template, seed).
pub fn draw(template: &Scenario, seed: u64) -> Scenario {
    let mut rng = Rng::stream(seed, Purpose::Explore, 0);
    let mut sc = template.clone();
    sc.seed = seed;
    let Some((start, recover_at)) = fault_window(template) else {
        return sc; // too short a run to add faults to; the seed still varies the run
    };
    tune_raft(&mut sc, &mut rng);
    let mut drawn = Vec::new();
    for kind in KINDS {
        if !rng.chance(0.5) {
            continue;
        }
        if sc.nodes < 2 && matches!(kind, Kind::Partition | Kind::OneWay) {
            continue;
        }
        let count = rng.between(1, 4);
        for _ in 0..count {
            let at = round_ms(rng.between(start, recover_at - 50 * MS));
            let until = round_ms(at + rng.between(50 * MS, 1500 * MS)).min(recover_at - MS);
            match kind {
                Kind::Crash => {
                    drawn.push(step(at, Action::Crash(role(&mut rng))));
                    if until > at {
                        drawn.push(step(until, Action::Restart(Target::LastCrashed)));
                    }
                }
                Kind::Pause => {
                    drawn.push(step(at, Action::Pause(role(&mut rng))));
                    if until > at {
                        drawn.push(step(until, Action::Resume(Target::LastPaused)));
                    }
                }
                Kind::Partition => {
                    drawn.push(step(at, Action::Partition(split(&mut rng, sc.nodes))));
                    drawn.push(step(until, Action::Heal));
                }
                Kind::OneWay => {
                    let groups = split(&mut rng, sc.nodes);
                    let (from, to) = (groups[0].clone(), groups[1].clone());
                    drawn.push(step(at, Action::PartitionOneWay { from, to }));
                    drawn.push(step(until, Action::Heal));
                }
                Kind::LinkChaos => {
                    let config = chaotic_link(&mut rng, sc.network.link);
                    let link = if rng.chance(0.5) && sc.nodes > 1 {
                        Some(pair(&mut rng, sc.nodes))
                    } else {
                        None
                    };
                    let both_ways = link.is_some() && rng.chance(0.5);
                    drawn.push(step(
                        at,
                        Action::Network {
                            link,
                            both_ways,
                            config,
                        },
                    ));
                }
                Kind::Clock => {
                    let node = rng.below(sc.nodes as u64) as usize;
                    let signed =
                        |rng: &mut Rng, max: u64| rng.between(0, 2 * max) as i64 - max as i64;
                    let action = match rng.below(3) {
                        0 => Action::Clock {
                            node,
                            offset_ns: Some(round_ms_signed(signed(&mut rng, 500 * MS))),
                            drift_ppm: None,
                            step_ns: None,
                        },
                        1 => Action::Clock {
                            node,
                            offset_ns: None,
                            drift_ppm: Some(signed(&mut rng, 100_000)),
                            step_ns: None,
                        },
                        _ => Action::Clock {
                            node,
                            offset_ns: None,
                            drift_ppm: None,
                            step_ns: Some(round_ms_signed(signed(&mut rng, S))),
                        },
                    };
                    drawn.push(step(at, action));
                }
            }
        }
    }
    // Drawn after the node faults, so that templates without shards keep
    // drawing exactly the faults they always did.
    if sc.redis.shards > 0 {
        draw_shard_faults(&mut rng, &sc, start, recover_at, &mut drawn);
    }
    if drawn.is_empty() {
        return sc;
    }
    // The recovery point: partitions healed and links as the template had
    // them. Every drawn crash and pause already has its restart or resume
    // before this point.
    drawn.push(step(recover_at, Action::Heal));
    drawn.push(step(
        recover_at,
        Action::Network {
            link: None,
            both_ways: false,
            config: template.network.link,
        },
    ));
    for &(from, to, config) in &template.network.overrides {
        drawn.push(step(
            recover_at,
            Action::Network {
                link: Some((from, to)),
                both_ways: false,
                config,
            },
        ));
    }
    let plain = sc.clone();
    sc.timeline.extend(drawn);
    // Stable: the template's steps keep their order, drawn ones follow at ties.
    sc.timeline.sort_by_key(|s| s.at_ns);
    // Role targets keep drawn steps valid next to almost any template; in the
    // rare case they are not, the seed runs the template unchanged rather
    // than a scenario its own saved file could not reproduce.
    if loads_back(&sc) { sc } else { plain }
}

/// Shard crashes (each restarted before the recovery point), shards cut off
/// from every node, and a shard taken off the ring and put back (moving its
/// partitions away and home again), each kind switched on by the seed.
fn draw_shard_faults(
    rng: &mut Rng,
    sc: &Scenario,
    start: u64,
    recover_at: u64,
    drawn: &mut Vec<Step>,
) {
    let shards = sc.redis.shards as u64;
    for crash in [true, false] {
        if !rng.chance(0.5) {
            continue;
        }
        for _ in 0..rng.between(1, 2) {
            let at = round_ms(rng.between(start, recover_at - 50 * MS));
            let until = round_ms(at + rng.between(50 * MS, 1500 * MS)).min(recover_at - MS);
            let j = rng.below(shards) as usize;
            if crash {
                drawn.push(step(at, Action::Crash(Target::Shard(j))));
                drawn.push(step(until.max(at + MS), Action::Restart(Target::Shard(j))));
            } else {
                let place = sc.nodes + j;
                let rest: Vec<usize> = (0..sc.nodes + sc.redis.shards)
                    .filter(|&p| p != place)
                    .collect();
                drawn.push(step(at, Action::Partition(vec![rest, vec![place]])));
                drawn.push(step(until.max(at + MS), Action::Heal));
            }
        }
    }
    if rng.chance(0.5) {
        let at = round_ms(rng.between(start, recover_at - 50 * MS));
        let until = round_ms(at + rng.between(20 * MS, 1500 * MS)).min(recover_at - MS);
        let j = rng.below(shards) as u32;
        drawn.push(step(at, Action::RemoveShard(j)));
        drawn.push(step(until.max(at + MS), Action::AddShard(j)));
    }
}

/// `draw` with parameters pushed to the limits the scenario format allows:
/// each of these, with probability 1/2, from a stream of its own (so the
/// faults are exactly `draw`'s): every node's clock drifting by the largest
/// drift, fast or slow; the cache's operation timeout at its shortest or at
/// an hour; every generated rate at the smallest allowed; lock clients
/// spread over the most locks allowed (an expectation the smallest rate
/// makes impossible, a floor on completed operations, is lifted). Rates are
/// never raised to their
/// maximum: a run that must simulate 10^5 operations per second per client
/// only meets its event budget, which proves nothing new.
pub fn draw_extreme(template: &Scenario, seed: u64) -> Scenario {
    use crate::scenario::parse::{MAX_DRIFT_PPM, MAX_LOCKS, MIN_CACHE_TIMEOUT_NS, MIN_RATE};
    let mut sc = draw(template, seed);
    let mut rng = Rng::stream(seed, Purpose::Explore, 1);
    if rng.chance(0.5) {
        for c in &mut sc.clocks {
            c.drift_ppm = if rng.chance(0.5) {
                MAX_DRIFT_PPM
            } else {
                -MAX_DRIFT_PPM
            };
        }
    }
    if sc.cache.enabled && rng.chance(0.5) {
        sc.cache.op_timeout_ns = if rng.chance(0.5) {
            MIN_CACHE_TIMEOUT_NS
        } else {
            3_600 * S
        };
    }
    if rng.chance(0.5) {
        if sc.workload.clients > 0 {
            sc.workload.rate_per_s = MIN_RATE;
            // At one operation per 1,000 s a client completes none: the
            // template's floor on completed operations no longer applies.
            sc.expect.min_completed_ops = 0;
        }
        if sc.queue_load.producers > 0 {
            sc.queue_load.rate_per_s = MIN_RATE;
        }
        if sc.cache_load.rate_per_s > 0.0 {
            sc.cache_load.rate_per_s = MIN_RATE;
        }
    }
    if sc.lock_load.clients > 0 && rng.chance(0.5) {
        sc.lock_load.locks = MAX_LOCKS as u32;
    }
    sc
}

/// True if the scenario's saved form loads back to the same scenario.
pub fn loads_back(c: &Scenario) -> bool {
    let Ok(mut back) = parse_scenario(&scenario_to_toml(c), "drawn.toml") else {
        return false;
    };
    let mut want = c.clone();
    back.timeline.iter_mut().for_each(|s| s.line = 0);
    want.timeline.iter_mut().for_each(|s| s.line = 0);
    back == want
}

/// When drawn faults may happen: after the first election, and ending early
/// enough to leave the cluster at least 2 s (or 20% of the run) to recover.
/// None when the template leaves no room.
pub fn fault_window(template: &Scenario) -> Option<(u64, u64)> {
    let d = template.duration_ns;
    let template_last = template.timeline.iter().map(|s| s.at_ns).max().unwrap_or(0);
    let start = (d / 10).max(S / 2);
    let recover_at = round_ms((d * 6 / 10).max(template_last + MS));
    let room = recover_at + (2 * S).max(d / 5) <= d && recover_at > start + 100 * MS;
    room.then_some((start, recover_at))
}

/// Varies Raft settings that change which code paths run. Pre-vote and
/// check-quorum stay as the template sets them: without them elections can
/// legitimately take longer than a template's liveness bound.
fn tune_raft(sc: &mut Scenario, rng: &mut Rng) {
    if rng.chance(0.3) {
        sc.raft.snapshot_threshold = [10, 50, 200][rng.below(3) as usize];
    }
    if rng.chance(0.3) {
        sc.raft.max_entries_per_append = [1, 4][rng.below(2) as usize];
    }
}

fn chaotic_link(rng: &mut Rng, base: LinkConfig) -> LinkConfig {
    let mut link = base;
    link.loss = (rng.below(31) as f64) / 100.0;
    link.duplicate = if rng.chance(0.5) {
        (rng.below(21) as f64) / 100.0
    } else {
        0.0
    };
    link.reorder = if rng.chance(0.5) {
        (rng.below(31) as f64) / 100.0
    } else {
        0.0
    };
    link.reorder_delay_max_ns = rng.between(1, 30) * MS;
    link.latency_min_ns = rng.between(1, 5) * MS;
    link.latency_max_ns = link.latency_min_ns + rng.between(0, 25) * MS;
    link
}

fn role(rng: &mut Rng) -> Target {
    if rng.chance(0.5) {
        Target::Leader
    } else {
        Target::Follower
    }
}

/// Two non-empty groups (three, sometimes, from five nodes up) of a shuffled cluster.
fn split(rng: &mut Rng, nodes: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..nodes).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    debug_assert!(nodes >= 2, "a split needs two nodes");
    let cut = rng.between(1, nodes as u64 - 1) as usize;
    let (a, b) = order.split_at(cut);
    let mut groups = vec![a.to_vec(), b.to_vec()];
    if nodes >= 5 && b.len() >= 2 && rng.chance(0.3) {
        let c = groups[1].split_off(1);
        groups.push(c);
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups
}

fn pair(rng: &mut Rng, nodes: usize) -> (usize, usize) {
    let a = rng.below(nodes as u64) as usize;
    let b = (a + 1 + rng.below(nodes as u64 - 1) as usize) % nodes;
    (a, b)
}

fn step(at_ns: u64, action: Action) -> Step {
    Step {
        at_ns,
        action,
        line: 0,
    }
}

fn round_ms(ns: u64) -> u64 {
    ns / MS * MS
}

fn round_ms_signed(ns: i64) -> i64 {
    ns / MS as i64 * MS as i64
}

#[cfg(test)]
mod tests {
    /// Extreme draws keep `draw`'s faults, reach the limits on some seeds,
    /// and every drawn scenario loads back unchanged.
    #[test]
    fn extreme_draws_reach_the_limits_and_load_back() {
        use crate::scenario::parse::MAX_DRIFT_PPM;
        let templates = [
            "cache-bus-zipf",
            "lock-contention",
            "queue-steady",
            "leader-crash",
        ];
        let mut drifted = 0;
        for name in templates {
            let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            let template = crate::scenario::load_scenario(std::path::Path::new(&path)).unwrap();
            for seed in 1..=20 {
                let e = draw_extreme(&template, seed);
                assert_eq!(e.timeline, draw(&template, seed).timeline, "{name} {seed}");
                assert!(loads_back(&e), "{name} seed {seed}");
                drifted += e.clocks.iter().all(|c| c.drift_ppm.abs() == MAX_DRIFT_PPM) as u32;
            }
        }
        assert!(
            drifted > 10 && drifted < 70,
            "{drifted} of 80 seeds drift at the limit"
        );
    }

    use super::*;
    use crate::scenario::shipped::SHIPPED;

    #[test]
    fn drawn_scenarios_are_deterministic_and_load_back_unchanged() {
        for (name, text) in SHIPPED {
            let template = parse_scenario(text, name).unwrap();
            for seed in 1..=40 {
                let a = draw(&template, seed);
                assert_eq!(a, draw(&template, seed), "{name} seed {seed}");
                let saved = scenario_to_toml(&a);
                let mut back = parse_scenario(&saved, "saved.toml")
                    .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}\n{saved}"));
                back.timeline.iter_mut().for_each(|s| s.line = 0);
                let mut want = a.clone();
                want.timeline.iter_mut().for_each(|s| s.line = 0);
                assert_eq!(back, want, "{name} seed {seed}");
            }
        }
    }

    #[test]
    fn drawn_faults_are_kept_for_most_seeds() {
        // The fallback to the bare template must stay rare.
        for (name, text) in SHIPPED {
            let template = parse_scenario(text, name).unwrap();
            if fault_window(&template).is_none() {
                continue;
            }
            let kept = (1..=40)
                .filter(|&s| draw(&template, s).timeline.len() > template.timeline.len())
                .count();
            assert!(
                kept >= 25,
                "{name}: only {kept} of 40 seeds kept drawn faults"
            );
        }
    }

    #[test]
    fn seeds_switch_fault_kinds_on_and_off() {
        let template = parse_scenario(
            SHIPPED
                .iter()
                .find(|(n, _)| *n == "initial-election")
                .unwrap()
                .1,
            "t",
        )
        .unwrap();
        let counts: Vec<usize> = (1..=30)
            .map(|s| draw(&template, s).timeline.len())
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            min < max,
            "seeds must differ in how much they add: {counts:?}"
        );
        assert!(
            *max > template.timeline.len() + 6,
            "some seeds add many faults: {counts:?}"
        );
    }
}
