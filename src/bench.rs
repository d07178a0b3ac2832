//! Simulator speed measurements, shared by `distsync bench` and `cargo bench`.
//!
//! Wall-clock and CPU time are read here and only here, to measure; they
//! never reach a simulated decision. CPU time (user plus system, of the whole
//! process, from `getrusage`) is the figure to compare on a shared machine,
//! where wall time also counts the time other programs held the processor.

use std::time::{Duration, Instant}; // determinism-ok: benchmark timing only

use crate::bugs::Bugs;
use crate::rng::{Purpose, Rng};
use crate::run::{RunOptions, run_scenario};
use crate::scenario::*;
use crate::sim::network::{Fate, Network};
use crate::sim::queue::EventQueue;

/// CPU time (user plus system) the process has used so far, all threads.
#[cfg(unix)]
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time is read through `getrusage`, which only Unix systems have;
/// elsewhere it reads as zero (and the per-CPU-second rates as unmeasured).
#[cfg(not(unix))]
pub fn cpu_time() -> Duration {
    Duration::ZERO
}

/// Wall-clock and CPU time of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub wall: Duration,
    pub cpu: Duration,
}

impl Timing {
    /// Times `f`.
    pub fn of<T>(f: impl FnOnce() -> T) -> (T, Timing) {
        let cpu = cpu_time();
        let start = Instant::now(); // determinism-ok: benchmark timing only
        let out = f();
        let wall = start.elapsed();
        let cpu = cpu_time().saturating_sub(cpu);
        (out, Timing { wall, cpu })
    }

    /// `count` per wall-clock second and per CPU second.
    pub fn rates(&self, count: f64) -> (f64, f64) {
        (
            count / self.wall.as_secs_f64().max(1e-9),
            count / self.cpu.as_secs_f64().max(1e-9),
        )
    }
}

/// Result of the bare message-passing benchmark.
pub struct MessageBench {
    pub deliveries: u64,
    pub time: Timing,
}

impl MessageBench {
    /// Deliveries per wall-clock second and per CPU second.
    pub fn per_second(&self) -> (f64, f64) {
        self.time.rates(self.deliveries as f64)
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
    let (delivered, time) = Timing::of(|| {
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
        std::hint::black_box(checksum);
        delivered
    });
    MessageBench {
        deliveries: delivered,
        time,
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
        raft: RaftConfig::default(),
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
    /// The load it ran under: clients, ops/s per client, trace digest on.
    pub clients: usize,
    pub rate_per_s: f64,
    pub tracing: bool,
    pub events: u64,
    pub sim_ns: u64,
    pub time: Timing,
    pub passed: bool,
}

impl RaftBench {
    /// Simulated events per wall-clock second and per CPU second.
    pub fn events_per_second(&self) -> (f64, f64) {
        self.time.rates(self.events as f64)
    }
    /// How many times faster than real time the cluster was simulated, per
    /// wall-clock second and per CPU second.
    pub fn speedup(&self) -> (f64, f64) {
        self.time.rates(self.sim_ns as f64 / 1e9)
    }
}

/// Runs the load scenario with every checker on; `tracing` toggles the trace digest.
pub fn raft_cluster(seconds: u64, clients: usize, rate_per_s: f64, tracing: bool) -> RaftBench {
    let sc = raft_load_scenario(seconds, clients, rate_per_s);
    let (report, time) = Timing::of(|| {
        run_scenario(
            &sc,
            RunOptions {
                tracing,
                ..RunOptions::new(1)
            },
        )
        .expect("no trace file, so no I/O error")
    });
    RaftBench {
        clients,
        rate_per_s,
        tracing,
        events: report.stats.events,
        sim_ns: report.sim_time_ns,
        time,
        passed: report.passed(),
    }
}

/// Result of the fuzz throughput benchmark.
pub struct FuzzBench {
    pub seeds: u64,
    pub jobs: usize,
    pub time: Timing,
    /// Seeds that failed (a healthy build has none).
    pub failed: usize,
}

impl FuzzBench {
    /// Seeds per wall-clock minute and per CPU minute (all workers' CPU time).
    pub fn seeds_per_minute(&self) -> (f64, f64) {
        let (wall, cpu) = self.time.rates(self.seeds as f64);
        (wall * 60.0, cpu * 60.0)
    }
}

/// Fuzz throughput: `seeds` swarm seeds of the standard 10-second, 5-node
/// scenario (5 clients x 50 ops/s, a leader crash) on `jobs` workers, with
/// every checker and the trace digest on.
pub fn fuzz_throughput(seeds: u64, jobs: usize) -> FuzzBench {
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
        limits: crate::run::RunLimits::default(),
        extreme: false,
    };
    let (sweep, time) =
        Timing::of(|| fuzz(std::slice::from_ref(&template), &opts, &|_, _| {}).remove(0));
    FuzzBench {
        seeds: sweep.results.len() as u64,
        jobs,
        time,
        failed: sweep.failures().count(),
    }
}

/// Everything `distsync bench` measures (`report::bench_summary` prints it).
pub struct Measurements {
    pub message_passing: MessageBench,
    /// The Raft load scenario under two loads, each with and without the trace digest.
    pub raft: Vec<RaftBench>,
    pub fuzz: FuzzBench,
    /// The steady queue at three producer rates.
    pub queue: Vec<QueueBench>,
    /// The Zipf cache scenarios, both protocols, at each capacity.
    pub caches: Vec<CacheBench>,
}

/// Runs every measurement; `quick` shortens them (for smoke tests).
pub fn measure(quick: bool) -> Measurements {
    let (deliveries, seconds) = if quick {
        (2_000_000, 10)
    } else {
        (30_000_000, 120)
    };
    let message_passing = message_passing(deliveries, 64);
    let mut raft = Vec::new();
    for (clients, rate) in [(10, 100.0), (5, 20.0)] {
        for tracing in [true, false] {
            raft.push(raft_cluster(seconds, clients, rate, tracing));
        }
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fuzz = fuzz_throughput(if quick { 200 } else { 3000 }, jobs);
    let queue = [400.0, 1000.0, 2000.0]
        .into_iter()
        .map(queue_throughput)
        .collect();
    let (capacities, cache_s): (&[usize], u64) = if quick {
        (&[100], 20)
    } else {
        (&[100, 500], 300)
    };
    let mut caches = Vec::new();
    for &capacity in capacities {
        for protocol in ["bus", "dir"] {
            caches.push(cache_figures(protocol, capacity, cache_s));
        }
    }
    Measurements {
        message_passing,
        raft,
        fuzz,
        queue,
        caches,
    }
}

/// Result of the cache benchmark.
pub struct CacheBench {
    /// Its setting: "bus" or "dir", lines per node, simulated seconds.
    pub protocol: &'static str,
    pub capacity: usize,
    pub seconds: u64,
    pub report: crate::run::CacheReport,
    pub time: Timing,
    pub passed: bool,
}

/// The shipped Zipf cache scenario for `protocol` ("bus" or "dir") with
/// `capacity` lines per node, run for `seconds` of simulated time (load
/// until the last two): hit ratio, messages and latency with every checker
/// on.
pub fn cache_figures(protocol: &'static str, capacity: usize, seconds: u64) -> CacheBench {
    let (report, time) = run_shipped(&format!("cache-{protocol}-zipf"), |sc| {
        sc.cache.capacity = capacity;
        sc.duration_ns = seconds * 1_000_000_000;
        sc.cache_load.stop_ns = seconds.saturating_sub(2) * 1_000_000_000;
    });
    CacheBench {
        protocol,
        capacity,
        seconds,
        report: report.cache.clone().expect("the scenario has caches"),
        time,
        passed: report.passed(),
    }
}

/// Runs a shipped scenario, changed by `adjust`, on seed 1 with every
/// checker on: its report and the time it took.
fn run_shipped(name: &str, adjust: impl FnOnce(&mut Scenario)) -> (crate::run::RunReport, Timing) {
    let text = crate::scenario::shipped::SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .expect("benchmarks use shipped scenarios");
    let mut sc = crate::scenario::parse_scenario(text, &format!("{name}.toml"))
        .expect("shipped scenarios parse");
    adjust(&mut sc);
    Timing::of(|| run_scenario(&sc, RunOptions::new(1)).expect("no trace file, so no I/O error"))
}

/// Result of the queue benchmark.
pub struct QueueBench {
    /// Messages a second each producer sends.
    pub rate_per_s: f64,
    pub summary: crate::check::queue_delivery::QueueSummary,
    /// Simulated time.
    pub sim_ns: u64,
    pub time: Timing,
    pub passed: bool,
}

impl QueueBench {
    /// How many times faster than real time the queue was simulated, per
    /// wall-clock second and per CPU second.
    pub fn speedup(&self) -> (f64, f64) {
        self.time.rates(self.sim_ns as f64 / 1e9)
    }
}

/// The shipped steady-load queue scenario with each producer sending
/// `rate_per_s` messages a second: simulated throughput and latency with
/// every checker on.
pub fn queue_throughput(rate_per_s: f64) -> QueueBench {
    let (report, time) = run_shipped("queue-steady", |sc| {
        sc.queue_load.rate_per_s = rate_per_s;
        // Consumers take bigger batches so that they, not polling, set the pace.
        sc.queue_load.consume_batch = 64;
    });
    QueueBench {
        rate_per_s,
        summary: report
            .queue
            .as_ref()
            .map(|q| q.summary.clone())
            .unwrap_or_default(),
        sim_ns: report.sim_time_ns,
        time,
        passed: report.passed(),
    }
}
