//! Simulator speed measurements, shared by `distsync bench` and `cargo bench`.
//!
//! Wall-clock time is read here and only here, to measure; it never reaches
//! a simulated decision.

use std::time::{Duration, Instant}; // determinism-ok: benchmark timing only

use crate::bugs::Bugs;
use crate::run::{RunOptions, run_scenario};
use crate::scenario::*;
use crate::sim::network::{Fate, Network};
use crate::sim::queue::EventQueue;
use crate::sim::rng::{Purpose, Rng};

/// Result of the bare message-passing benchmark.
pub struct MessageBench {
    pub deliveries: u64,
    pub wall: Duration,
}

impl MessageBench {
    /// Deliveries per wall-clock second.
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.wall.as_secs_f64()
    }
}

/// Two endpoints ping-pong `in_flight` pipelined messages through the event
/// queue and the network model (1-5 ms latency, 1% loss; a lost message is
/// resent at once) until `deliveries` messages have arrived.
pub fn message_passing(deliveries: u64, in_flight: u64) -> MessageBench {
    let link = LinkConfig {
        latency_min_ns: 1_000_000,
        latency_max_ns: 5_000_000,
        loss: 0.01,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay_max_ns: 0,
    };
    let net = Network::new(
        2,
        0,
        0,
        &NetworkConfig {
            link,
            overrides: vec![],
        },
    );
    let mut rng = Rng::stream(1, Purpose::Network, 0);
    let mut queue: EventQueue<(u8, u64)> = EventQueue::default();
    let send =
        |queue: &mut EventQueue<(u8, u64)>, rng: &mut Rng, now: u64, from: u8, payload: u64| loop {
            match net.route(from as usize, 1 - from as usize, rng) {
                Fate::Deliver { delays_ns, .. } => {
                    break queue.push(now + delays_ns[0], (1 - from, payload));
                }
                Fate::Drop(_) => continue,
            }
        };
    for i in 0..in_flight {
        send(&mut queue, &mut rng, 0, (i % 2) as u8, i);
    }
    let start = Instant::now(); // determinism-ok: benchmark timing only
    let mut delivered = 0u64;
    let mut checksum = 0u64;
    while delivered < deliveries {
        let Some((now, (to, payload))) = queue.pop() else {
            break;
        };
        delivered += 1;
        checksum = checksum.wrapping_add(payload);
        send(&mut queue, &mut rng, now, to, payload + 1);
    }
    let wall = start.elapsed();
    std::hint::black_box(checksum);
    MessageBench {
        deliveries: delivered,
        wall,
    }
}

/// The standard Raft load scenario: 5 nodes, `clients` clients at
/// `rate_per_s` ops/s each, 2% loss, a leader crash and restart, for
/// `seconds` simulated seconds.
pub fn raft_load_scenario(seconds: u64, clients: usize, rate_per_s: f64) -> Scenario {
    let s = 1_000_000_000;
    let link = LinkConfig {
        latency_min_ns: 1_000_000,
        latency_max_ns: 5_000_000,
        loss: 0.02,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay_max_ns: 0,
    };
    Scenario {
        name: "bench-raft-load".into(),
        description: "5 nodes under client load, for benchmarks".into(),
        nodes: 5,
        seed: 1,
        duration_ns: seconds * s,
        network: NetworkConfig {
            link,
            overrides: vec![],
        },
        raft: RaftConfig {
            election_timeout_min_ns: 150_000_000,
            election_timeout_max_ns: 300_000_000,
            heartbeat_ns: 50_000_000,
            pre_vote: true,
            check_quorum: true,
            snapshot_threshold: 1000,
            max_entries_per_append: 64,
        },
        clocks: vec![ClockConfig::default(); 5],
        workload: Workload {
            clients,
            rate_per_s,
            keys: 8,
            read_ratio: 0.5,
            start_ns: 0,
            stop_ns: seconds * s,
            request_timeout_ns: 300_000_000,
            op_timeout_ns: 2 * s,
        },
        timeline: vec![
            Step {
                at_ns: seconds * s / 3,
                action: Action::Crash(Target::Leader),
                line: 0,
            },
            Step {
                at_ns: seconds * s / 2,
                action: Action::Restart(Target::LastCrashed),
                line: 0,
            },
        ],
        expect: Expectations {
            linearizable: true,
            ..Expectations::default()
        },
        bugs: Bugs::default(),
        key_names: (0..8).map(|k| format!("k{k}")).collect(),
        locks: LockConfig::default(),
        lock_load: LockWorkload::default(),
        redis: Default::default(),
        queue: Default::default(),
        queue_load: Default::default(),
        cache: Default::default(),
        cache_load: Default::default(),
    }
}

/// Result of the Raft cluster benchmark.
pub struct RaftBench {
    pub events: u64,
    pub sim_ns: u64,
    pub wall: Duration,
    pub passed: bool,
}

impl RaftBench {
    /// Simulated events per wall-clock second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
    /// How many times faster than real time the cluster was simulated.
    pub fn speedup(&self) -> f64 {
        self.sim_ns as f64 / 1e9 / self.wall.as_secs_f64()
    }
}

/// Runs the load scenario with every checker on; `tracing` toggles the trace digest.
pub fn raft_cluster(seconds: u64, clients: usize, rate_per_s: f64, tracing: bool) -> RaftBench {
    let sc = raft_load_scenario(seconds, clients, rate_per_s);
    let start = Instant::now(); // determinism-ok: benchmark timing only
    let report = run_scenario(
        &sc,
        RunOptions {
            seed: 1,
            trace: None,
            tracing,
        },
    )
    .expect("no trace file, so no I/O error");
    let wall = start.elapsed();
    RaftBench {
        events: report.stats.events,
        sim_ns: report.sim_time_ns,
        wall,
        passed: report.passed(),
    }
}

/// Fuzz throughput: `seeds` swarm seeds of the standard 10-second, 5-node
/// scenario (5 clients x 50 ops/s, a leader crash) on `jobs` workers, with
/// every checker and the trace digest on. Returns seeds per minute.
pub fn fuzz_seeds_per_minute(seeds: u64, jobs: usize) -> (f64, usize) {
    use crate::explore::fuzz::{Budget, FuzzOptions, fuzz};
    let template = raft_load_scenario(10, 5, 50.0);
    let opts = FuzzOptions {
        budget: Budget::Seeds {
            first: 1,
            count: seeds,
        },
        jobs,
        shard: (0, 1),
        determinism_every: 16,
        failures_dir: None,
        stop_at_first_failure: false,
    };
    let start = Instant::now(); // determinism-ok: benchmark timing only
    let sweep = fuzz(std::slice::from_ref(&template), &opts, &|_, _| {}).remove(0);
    let per_minute = sweep.results.len() as f64 / start.elapsed().as_secs_f64() * 60.0;
    (per_minute, sweep.failures().count())
}

/// The text `distsync bench` prints.
pub fn report(quick: bool) -> String {
    let (deliveries, seconds) = if quick {
        (2_000_000, 10)
    } else {
        (30_000_000, 120)
    };
    let m = message_passing(deliveries, 64);
    let mut out = format!(
        "(a) message passing, 2 nodes, 64 in flight, 1-5ms latency, 1% loss:\n    {} deliveries in {:.3}s = {:.1} M deliveries/s\n",
        m.deliveries,
        m.wall.as_secs_f64(),
        m.per_second() / 1e6
    );
    for (clients, rate) in [(10, 100.0), (5, 20.0)] {
        for (label, tracing) in [("trace digest on", true), ("trace off", false)] {
            let b = raft_cluster(seconds, clients, rate, tracing);
            out += &format!(
                "(b) 5-node Raft, {clients} clients x {rate} ops/s, 2% loss, leader crash, all checkers on, {label}:\n    {} events in {:.3}s = {:.2} M events/s; {}s simulated = {:.0}x real time; checks {}\n",
                b.events,
                b.wall.as_secs_f64(),
                b.events_per_second() / 1e6,
                b.sim_ns / 1_000_000_000,
                b.speedup(),
                if b.passed { "passed" } else { "FAILED" }
            );
        }
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seeds = if quick { 200 } else { 3000 };
    let (per_minute, failed) = fuzz_seeds_per_minute(seeds, jobs);
    out += &format!(
        "(c) fuzz: {seeds} swarm seeds of a 10s 5-node scenario (5 clients x 50 ops/s), {jobs} jobs, checkers + digest on:\n    {per_minute:.0} seeds/minute; {failed} failed\n"
    );
    for rate in [400.0, 1000.0, 2000.0] {
        let q = queue_throughput(rate);
        let s = &q.summary;
        let p = |x| s.latency_percentile(x).map_or(0.0, |ns| ns as f64 / 1e6);
        out += &format!(
            "(d) queue, 3 nodes, 3 shards (appendfsync always), 8 partitions, 3 producers x {rate} msg/s in batches of 4, 3 consumers taking up to 64, 0.2-1ms links:\n    produced {:.0} msg/s, delivered {:.0} msg/s (simulated); end-to-end latency p50 {:.2}ms, p99 {:.2}ms; {:.3}s wall; checks {}\n",
            s.produce_rate_per_s(),
            s.consume_rate_per_s(),
            p(0.5),
            p(0.99),
            q.wall.as_secs_f64(),
            if q.passed { "passed" } else { "FAILED" }
        );
    }
    let (capacities, cache_s): (&[usize], u64) = if quick {
        (&[100], 20)
    } else {
        (&[100, 500], 300)
    };
    for &capacity in capacities {
        for protocol in ["bus", "dir"] {
            let c = cache_figures(protocol, capacity, cache_s);
            let s = &c.report.summary;
            let (warm, from) = s.warm_hit_ratio().unwrap_or((0.0, 0));
            let ms = |ns: u64| ns as f64 / 1e6;
            out += &format!(
                "(e) caches, cache-{protocol}-zipf for {cache_s}s: 3 nodes x 50 ops/s, Zipf(0.99) over 1,000 keys, 10% writes, {capacity} lines per node:\n    hit ratio {:.1}% ({:.1}% once warm, from {from}s); {:.2} messages per operation; reads p50 {:.2}ms p99 {:.2}ms (misses p50 {:.2}ms), writes p50 {:.2}ms p99 {:.2}ms (simulated); {:.3}s wall; checks {}\n",
                s.hit_ratio() * 100.0,
                warm * 100.0,
                c.report.messages_per_op(),
                ms(s.latency.read.p50_ns),
                ms(s.latency.read.p99_ns),
                ms(s.latency.read_miss.p50_ns),
                ms(s.latency.write.p50_ns),
                ms(s.latency.write.p99_ns),
                c.wall.as_secs_f64(),
                if c.passed { "passed" } else { "FAILED" }
            );
        }
    }
    out
}

/// Result of the cache benchmark.
pub struct CacheBench {
    pub report: crate::run::CacheReport,
    pub wall: Duration,
    pub passed: bool,
}

/// The shipped Zipf cache scenario for `protocol` ("bus" or "dir") with
/// `capacity` lines per node, run for `seconds` of simulated time (load
/// until the last two): hit ratio, messages and latency with every checker
/// on.
pub fn cache_figures(protocol: &str, capacity: usize, seconds: u64) -> CacheBench {
    let (report, wall) = run_shipped(&format!("cache-{protocol}-zipf"), |sc| {
        sc.cache.capacity = capacity;
        sc.duration_ns = seconds * 1_000_000_000;
        sc.cache_load.stop_ns = seconds.saturating_sub(2) * 1_000_000_000;
    });
    CacheBench {
        report: report.cache.clone().expect("the scenario has caches"),
        wall,
        passed: report.passed(),
    }
}

/// Runs a shipped scenario, changed by `adjust`, on seed 1 with every
/// checker on: its report and the wall-clock time it took.
fn run_shipped(
    name: &str,
    adjust: impl FnOnce(&mut Scenario),
) -> (crate::run::RunReport, Duration) {
    let text = crate::scenario::shipped::SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .expect("benchmarks use shipped scenarios");
    let mut sc = crate::scenario::parse_scenario(text, &format!("{name}.toml"))
        .expect("shipped scenarios parse");
    adjust(&mut sc);
    let start = Instant::now(); // determinism-ok: benchmark timing only
    let report = run_scenario(
        &sc,
        RunOptions {
            seed: 1,
            trace: None,
            tracing: true,
        },
    )
    .expect("no trace file, so no I/O error");
    (report, start.elapsed())
}

/// Result of the queue benchmark.
pub struct QueueBench {
    pub summary: crate::check::queue_delivery::QueueSummary,
    pub wall: Duration,
    pub passed: bool,
}

/// The shipped steady-load queue scenario with each producer sending
/// `rate_per_s` messages a second: simulated throughput and latency with
/// every checker on.
pub fn queue_throughput(rate_per_s: f64) -> QueueBench {
    let (report, wall) = run_shipped("queue-steady", |sc| {
        sc.queue_load.rate_per_s = rate_per_s;
        // Consumers take bigger batches so that they, not polling, set the pace.
        sc.queue_load.consume_batch = 64;
    });
    QueueBench {
        summary: report
            .queue
            .as_ref()
            .map(|q| q.summary.clone())
            .unwrap_or_default(),
        wall,
        passed: report.passed(),
    }
}
