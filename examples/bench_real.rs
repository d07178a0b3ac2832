//! Failover and latency figures of a real 3-node cluster on loopback, and
//! the same put and lock loads against a 3-member etcd cluster when `etcd`
//! is on the PATH. Run by `scripts/bench_real.sh`, which builds it.
//!
//!     bench_real [--bin PATH] [--trials N] [--seconds S] [--phases failover,puts,locks,queue]
//!
//! The queue phase starts its own redis-servers (1, then 3 shards) and
//! measures messages per second from produce to ack, with batches of 1
//! and 100, and `redis-benchmark`'s LPUSH and RPOP on the same server as
//! the ceiling.

#[path = "../real-tests/cluster.rs"]
mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{Cluster, TempDir, free_ports};
use distsync::real::http_client::{request, request_following};
use serde_json::Value;

/// How long any one phase may wait for the cluster before giving up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_COUNTS: [usize; 3] = [1, 8, 64];

/// Concurrent lock clients, each on its own lock (uncontended).
const LOCK_CLIENT_COUNTS: [usize; 2] = [1, 8];

struct Args {
    bin: PathBuf,
    trials: usize,
    seconds: u64,
    phases: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        bin: PathBuf::from("target/release/distsync"),
        trials: 20,
        seconds: 5,
        phases: vec![
            "failover".into(),
            "puts".into(),
            "locks".into(),
            "queue".into(),
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--bin" => args.bin = PathBuf::from(v),
            "--trials" => args.trials = v.parse().expect("--trials: a number"),
            "--seconds" => args.seconds = v.parse().expect("--seconds: a number"),
            "--phases" => {
                args.phases = v.split(',').map(str::to_owned).collect();
                for p in &args.phases {
                    assert!(
                        ["failover", "puts", "locks", "queue"].contains(&p.as_str()),
                        "--phases: {p}? expected failover, puts, locks and/or queue"
                    );
                }
            }
            _ => panic!("unknown argument {a}: expected --bin, --trials, --seconds or --phases"),
        }
    }
    args
}

/// The value at quantile `q` of sorted `xs` (nearest rank).
fn quantile(xs: &[Duration], q: f64) -> Duration {
    assert!(!xs.is_empty());
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Three nodes without traces: the figures are the protocol's and the disk's.
fn untraced_cluster(name: &str, bin: &Path) -> Cluster {
    let mut c = Cluster::new(name, bin, 3);
    c.trace = false;
    c.start_each(Instant::now() + PHASE_TIMEOUT);
    c
}

fn failover(bin: &Path, trials: usize) -> Vec<Duration> {
    let mut c = untraced_cluster("bench-failover", bin);
    let mut times = Vec::new();
    for trial in 0..trials {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        let leader = c.wait_leader(deadline);
        assert!(c.put(leader, 1, trial as u64, deadline), "warm-up write");
        c.wait_caught_up(deadline);
        let killed_at = Instant::now();
        c.kill9(leader);
        let via = c.other_running(leader);
        assert!(
            c.put(via, 2, trial as u64, deadline),
            "no write after the kill"
        );
        let took = killed_at.elapsed();
        eprintln!("failover trial {}: {}", trial + 1, ms(took));
        times.push(took);
        c.start(leader);
        c.wait_caught_up(deadline);
    }
    times.sort();
    times
}

/// What the load generator drives: one operation (a put, or a lock taken
/// and given back), true once acknowledged.
trait Target: Sync {
    fn op(&self, client: usize, seq: u64) -> bool;
}

struct DistsyncTarget {
    url: String,
}

impl Target for DistsyncTarget {
    fn op(&self, client: usize, seq: u64) -> bool {
        let key = (client as u64 * 100_000 + seq % 100_000) as u32;
        let body = format!("{{\"value\":{seq}}}");
        let url = format!("{}/kv/{key}", self.url);
        matches!(
            request_following("PUT", &url, Some(body.as_bytes()), Duration::from_secs(5)),
            Ok((r, _)) if r.status == 200
        )
    }
}

struct EtcdTarget {
    url: String,
}

impl Target for EtcdTarget {
    fn op(&self, client: usize, seq: u64) -> bool {
        let key = (client as u64 * 100_000 + seq % 100_000) as u32;
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key.to_string().as_bytes()),
            base64(seq.to_string().as_bytes())
        );
        let url = format!("{}/v3/kv/put", self.url);
        matches!(
            request("POST", &url, Some(body.as_bytes()), Duration::from_secs(5)),
            Ok(r) if r.status == 200
        )
    }
}

struct LoadResult {
    clients: usize,
    ok: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
    per_s: f64,
}

/// `clients` threads putting as fast as they can for `seconds`.
fn load(target: &dyn Target, clients: usize, seconds: u64) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (mut lat, failed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let stop = stop.clone();
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut failed = 0;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        if target.op(client, seq) {
                            lat.push(t.elapsed());
                        } else {
                            failed += 1;
                        }
                        seq += 1;
                    }
                    (lat, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("load thread"))
            .fold((Vec::new(), 0), |(mut all, f), (lat, failed)| {
                all.extend(lat);
                (all, f + failed)
            })
    });
    let elapsed = started.elapsed();
    lat.sort();
    assert!(
        !lat.is_empty(),
        "no operation succeeded with {clients} clients"
    );
    LoadResult {
        clients,
        ok: lat.len(),
        failed,
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn print_load(name: &str, r: &LoadResult) {
    print_load_of(name, "puts", r);
}

fn print_load_of(name: &str, what: &str, r: &LoadResult) {
    println!(
        "{name:8} {:3} clients: p50 {:>9}  p99 {:>9}  {:8.0} {what}/s  ({} ok, {} failed)",
        r.clients,
        ms(r.p50),
        ms(r.p99),
        r.per_s,
        r.ok,
        r.failed
    );
}

fn wal_stats(c: &Cluster, i: usize) -> (u64, u64) {
    let h = c.health(i).expect("leader health");
    (
        h["wal"]["syncs"].as_u64().unwrap(),
        h["wal"]["entries"].as_u64().unwrap(),
    )
}

fn distsync_load(bin: &Path, seconds: u64) -> Vec<LoadResult> {
    let c = untraced_cluster("bench-load", bin);
    let leader = c.wait_leader(Instant::now() + PHASE_TIMEOUT);
    let target = DistsyncTarget { url: c.url(leader) };
    let mut results = Vec::new();
    for clients in CLIENT_COUNTS {
        let before = wal_stats(&c, leader);
        let r = load(&target, clients, seconds);
        let after = wal_stats(&c, leader);
        print_load("distsync", &r);
        if clients == 64 {
            let syncs = after.0 - before.0;
            let entries = after.1 - before.1;
            println!(
                "distsync  64 clients: leader fsyncs per committed entry {:.3} ({syncs} syncs, {entries} entries)",
                syncs as f64 / entries.max(1) as f64
            );
        }
        assert_eq!(c.leader(), Some(leader), "leadership moved during the load");
        results.push(r);
    }
    results
}

/// Acquire (without waiting) and release of the client's own lock, with
/// one session per client.
struct DistsyncLocks {
    url: String,
    sessions: Vec<u64>,
}

impl DistsyncLocks {
    fn new(url: String, clients: usize) -> DistsyncLocks {
        let sessions = (0..clients)
            .map(|_| {
                let (r, _) = request_following(
                    "POST",
                    &format!("{url}/locks/sessions"),
                    Some(br#"{"ttl_ms": 60000}"#),
                    Duration::from_secs(5),
                )
                .expect("open a session");
                assert_eq!(r.status, 201, "open a session");
                let v: Value = serde_json::from_slice(&r.body).expect("JSON");
                v["session"].as_u64().expect("a session id")
            })
            .collect();
        DistsyncLocks { url, sessions }
    }
}

impl Target for DistsyncLocks {
    fn op(&self, client: usize, _seq: u64) -> bool {
        let session = self.sessions[client];
        let ok = |path: &str, body: String| {
            let url = format!("{}{path}", self.url);
            matches!(
                request("POST", &url, Some(body.as_bytes()), Duration::from_secs(5)),
                Ok(r) if r.status == 200
            )
        };
        ok(
            "/locks/acquire",
            format!("{{\"session\":{session},\"lock\":{client},\"wait_ms\":0}}"),
        ) && ok(
            "/locks/release",
            format!("{{\"session\":{session},\"lock\":{client}}}"),
        )
    }
}

/// etcd's lock service through its v3 HTTP gateway (what `etcdctl lock`
/// calls): Lock on the client's own name with a lease, then Unlock.
struct EtcdLocks {
    url: String,
    leases: Vec<String>,
}

impl EtcdLocks {
    fn new(url: String, clients: usize) -> EtcdLocks {
        let leases = (0..clients)
            .map(|_| {
                let r = request(
                    "POST",
                    &format!("{url}/v3/lease/grant"),
                    Some(br#"{"TTL": 60}"#),
                    Duration::from_secs(5),
                )
                .expect("grant a lease");
                let v: Value = serde_json::from_slice(&r.body).expect("JSON");
                v["ID"].as_str().expect("a lease id").to_owned()
            })
            .collect();
        EtcdLocks { url, leases }
    }
}

impl Target for EtcdLocks {
    fn op(&self, client: usize, _seq: u64) -> bool {
        let body = format!(
            "{{\"name\":\"{}\",\"lease\":\"{}\"}}",
            base64(format!("lock-{client}").as_bytes()),
            self.leases[client]
        );
        let locked = request(
            "POST",
            &format!("{}/v3/lock/lock", self.url),
            Some(body.as_bytes()),
            Duration::from_secs(5),
        );
        let Ok(r) = locked else { return false };
        let Some(key) = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_owned))
        else {
            return false;
        };
        let body = format!("{{\"key\":\"{key}\"}}");
        matches!(
            request("POST", &format!("{}/v3/lock/unlock", self.url), Some(body.as_bytes()), Duration::from_secs(5)),
            Ok(r) if r.status == 200
        )
    }
}

fn distsync_locks(bin: &Path, seconds: u64) -> Vec<LoadResult> {
    let c = untraced_cluster("bench-locks", bin);
    let leader = c.wait_leader(Instant::now() + PHASE_TIMEOUT);
    let mut results = Vec::new();
    for clients in LOCK_CLIENT_COUNTS {
        let target = DistsyncLocks::new(c.url(leader), clients);
        let r = load(&target, clients, seconds);
        print_load_of("distsync", "acquire+release", &r);
        assert_eq!(c.leader(), Some(leader), "leadership moved during the load");
        results.push(r);
    }
    results
}

/// Processes the benchmark started, killed and reaped on drop (declared
/// before their directory, so they are gone before it is removed).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// redis-servers on loopback without persistence, killed on drop.
struct RedisServers {
    _children: Children,
    _dir: TempDir,
    ports: Vec<u16>,
}

fn start_redis(n: usize) -> RedisServers {
    let dir = TempDir::new("bench-redis");
    let ports = free_ports(n);
    // Guarded at once: a server that never listens fails the phase below,
    // and the others must not outlive it.
    let children = Children(
        ports
            .iter()
            .map(|p| {
                Command::new("redis-server")
                    .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server (Debian: apt-get install redis-server)")
            })
            .collect(),
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    for p in &ports {
        while std::net::TcpStream::connect(("127.0.0.1", *p)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {p} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    RedisServers {
        _children: children,
        _dir: dir,
        ports,
    }
}

/// Messages per second from produce to ack: one producer and one
/// consumer per partition of queue 0, for `seconds`.
fn queue_load(url: &str, batch: usize, seconds: u64) -> (f64, usize) {
    const PARTITIONS: u32 = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let post = |path: &str, body: &str| -> Option<Value> {
        let r = request(
            "POST",
            &format!("{url}{path}"),
            Some(body.as_bytes()),
            Duration::from_secs(10),
        )
        .ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        for p in 0..PARTITIONS {
            let producing = stop.clone();
            s.spawn(move || {
                let mut seq = 1u64;
                let messages: Vec<String> = (0..batch).map(|i| format!("\"m{i}\"")).collect();
                let messages = messages.join(",");
                while !producing.load(Ordering::Relaxed) {
                    let body = format!(
                        "{{\"producer\":{p},\"first_seq\":{seq},\"partition\":{p},\"messages\":[{messages}]}}"
                    );
                    if post("/queue/0/produce", &body).is_some() {
                        seq += batch as u64;
                    }
                }
            });
            let (stop, acked) = (stop.clone(), acked.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("{{\"consumer\":{p},\"partition\":{p},\"max\":100}}");
                    let Some(v) = post("/queue/0/consume", &body) else {
                        continue;
                    };
                    let ids: Vec<String> = v["messages"]
                        .as_array()
                        .map(|m| m.iter().map(|m| m["id"].to_string()).collect())
                        .unwrap_or_default();
                    if ids.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let body = format!("{{\"partition\":{p},\"ids\":[{}]}}", ids.join(","));
                    if let Some(v) = post("/queue/0/ack", &body) {
                        acked.fetch_add(
                            v["acked"].as_u64().unwrap_or(0) as usize,
                            Ordering::Relaxed,
                        );
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let n = acked.load(Ordering::Relaxed);
    (n as f64 / started.elapsed().as_secs_f64(), n)
}

/// `redis-benchmark`'s requests per second for `test` on `port`.
fn redis_benchmark(port: u16, test: &str) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", test, "-n", "200000", "-q"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines end in '\r'; the result is the one that says
    // "LPUSH: 123456.79 requests per second, p50=0.191 msec".
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn queue_phase(bin: &Path, seconds: u64) {
    for shards in [1, 3] {
        let redis = start_redis(shards);
        let urls: Vec<String> = redis
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let mut c = Cluster::new("bench-queue", bin, 3);
        c.trace = false;
        c.env.push(("REDIS_URL".into(), urls.join(",")));
        c.start_each(Instant::now() + PHASE_TIMEOUT);
        let url = c.url(c.wait_leader(Instant::now() + PHASE_TIMEOUT));
        for batch in [1, 100] {
            let (rate, n) = queue_load(&url, batch, seconds);
            println!(
                "queue    {shards} shard(s), batch {batch:3}: {rate:9.0} msg/s produce to ack ({n} acked)"
            );
        }
        if shards == 1 {
            let port = redis.ports[0];
            for test in ["lpush", "rpop"] {
                match redis_benchmark(port, test) {
                    Some(r) => println!("redis-benchmark {test}: {r:9.0} requests/s (the ceiling)"),
                    None => println!("redis-benchmark {test}: not run (is it installed?)"),
                }
            }
        }
    }
}

/// A 3-member etcd cluster on loopback, every member killed on drop.
struct Etcd {
    children: Children,
    dir: TempDir,
    client_urls: Vec<String>,
}

fn start_etcd() -> Option<Etcd> {
    let etcd = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())?;
    let dir = TempDir::new("bench-etcd");
    let ports = free_ports(6);
    let peer = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let client = |i: usize| format!("http://127.0.0.1:{}", ports[3 + i]);
    let cluster = (0..3)
        .map(|i| format!("e{i}={}", peer(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut e = Etcd {
        children: Children(Vec::new()),
        dir,
        client_urls: (0..3).map(client).collect(),
    };
    for i in 0..3 {
        let log = std::fs::File::create(e.dir.0.join(format!("e{i}.log"))).ok()?;
        let child = Command::new(&etcd)
            .args(["--name", &format!("e{i}")])
            .args([
                "--data-dir",
                &e.dir.0.join(format!("e{i}")).to_string_lossy(),
            ])
            .args(["--listen-peer-urls", &peer(i)])
            .args(["--initial-advertise-peer-urls", &peer(i)])
            .args(["--listen-client-urls", &client(i)])
            .args(["--advertise-client-urls", &client(i)])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "bench"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        e.children.0.push(child);
    }
    Some(e)
}

/// The client URL of etcd's leader, polled until `deadline`.
fn etcd_leader(e: &Etcd, deadline: Instant) -> Option<String> {
    while Instant::now() < deadline {
        for url in &e.client_urls {
            let status = request(
                "POST",
                &format!("{url}/v3/maintenance/status"),
                Some(b"{}"),
                Duration::from_secs(1),
            );
            if let Ok(r) = status
                && r.status == 200
                && let Ok(v) = serde_json::from_slice::<Value>(&r.body)
                && v["leader"].is_string()
                && v["leader"] == v["header"]["member_id"]
            {
                return Some(url.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn main() {
    let args = parse_args();
    assert!(args.bin.is_file(), "{}: build it first", args.bin.display());
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let phase = |p: &str| args.phases.iter().any(|q| q == p);
    if phase("failover") {
        let times = failover(&args.bin, args.trials);
        println!(
            "failover after kill -9 of the leader, {} trials: p50 {}  p99 {}  max {}",
            times.len(),
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.99)),
            ms(*times.last().unwrap())
        );
    }
    let ours = if phase("puts") {
        distsync_load(&args.bin, args.seconds)
    } else {
        Vec::new()
    };
    if phase("queue") {
        queue_phase(&args.bin, args.seconds);
    }
    let our_locks = if phase("locks") {
        distsync_locks(&args.bin, args.seconds)
    } else {
        Vec::new()
    };

    match start_etcd() {
        None => println!("etcd: not on the PATH (or failed to start); no comparison"),
        Some(e) => {
            let Some(url) = etcd_leader(&e, Instant::now() + PHASE_TIMEOUT) else {
                println!("etcd: no leader within {PHASE_TIMEOUT:?}; no comparison");
                return;
            };
            let target = EtcdTarget { url };
            for (clients, mine) in CLIENT_COUNTS.into_iter().zip(&ours) {
                let r = load(&target, clients, args.seconds);
                print_load("etcd", &r);
                println!(
                    "ratio    {clients:3} clients: distsync/etcd throughput {:.2}x, p50 latency {:.2}x",
                    mine.per_s / r.per_s,
                    mine.p50.as_secs_f64() / r.p50.as_secs_f64()
                );
            }
            for (clients, mine) in LOCK_CLIENT_COUNTS.into_iter().zip(&our_locks) {
                let locks = EtcdLocks::new(target.url.clone(), clients);
                let r = load(&locks, clients, args.seconds);
                print_load_of("etcd", "lock+unlock", &r);
                println!(
                    "ratio    {clients:3} lock clients: distsync/etcd p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
                    mine.p50.as_secs_f64() / r.p50.as_secs_f64(),
                    mine.p99.as_secs_f64() / r.p99.as_secs_f64(),
                    mine.per_s / r.per_s
                );
            }
        }
    }
}
