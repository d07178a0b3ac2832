//! Real-process tests (feature real-network): `distsync node` processes on
//! loopback, killed, restarted and corrupted, checked through the HTTP API,
//! each node's committed Raft log and the `distsync client` binary.
//!
//!     cargo test --release --features real-network --test real

mod cluster;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster::{Cluster, wait_until};
use serde_json::Value;

/// Every test finishes within this, or fails.
const TEST_BUDGET: Duration = Duration::from_secs(60);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_distsync"))
}

fn deadline() -> Instant {
    Instant::now() + TEST_BUDGET
}

/// Runs `cmd` to its end, killing it if it outlives `deadline`.
fn run_bounded(mut cmd: Command, deadline: Instant) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn distsync");
    let Some(status) = wait_until(&mut child, deadline) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} was still running at the deadline");
    };
    // The outputs are a few lines, far below a pipe's buffer.
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `distsync client --url URL ARGS...`, bounded by `deadline`.
fn client(url: &str, args: &[&str], deadline: Instant) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["client", "--url", url, "--timeout", "10s"])
        .args(args);
    run_bounded(cmd, deadline)
}

/// Writes keys `keys` with value key*10+round through node `via`; records
/// each acknowledged write.
fn write_keys(
    c: &Cluster,
    via: usize,
    keys: std::ops::Range<u32>,
    round: u64,
    acked: &mut BTreeMap<u32, u64>,
    deadline: Instant,
) {
    for key in keys {
        let value = u64::from(key) * 10 + round;
        assert!(
            c.put(via, key, value, deadline),
            "PUT {key} not acknowledged in time"
        );
        acked.insert(key, value);
    }
}

/// Every acknowledged write is in every node's committed log with the
/// acknowledged value as the key's last, unless the node has folded that
/// key's writes into its snapshot; the nodes' committed logs agree entry
/// for entry where they overlap; and a linearizable GET through the leader
/// returns every acknowledged value. Returns how many writes each node's
/// log showed.
fn check_acked(c: &Cluster, acked: &BTreeMap<u32, u64>, deadline: Instant) -> Vec<usize> {
    c.wait_caught_up(deadline);
    let mut by_index: BTreeMap<u64, (usize, serde_json::Value)> = BTreeMap::new();
    let mut seen = Vec::new();
    for i in 0..c.len() {
        let (first_held, log) = c.committed_log(i, deadline);
        for e in &log {
            let index = e["index"].as_u64().unwrap();
            match by_index.get(&index) {
                Some((j, other)) => assert_eq!(
                    e,
                    other,
                    "n{} and n{} committed different entries at index {index}",
                    i + 1,
                    j + 1
                ),
                None => {
                    by_index.insert(index, (i, e.clone()));
                }
            }
        }
        let kv = Cluster::replay(&log);
        let mut in_log = 0;
        for (&key, &value) in acked {
            match kv.get(&u64::from(key)) {
                Some(last) => {
                    assert_eq!(
                        *last,
                        Some(value),
                        "n{}'s committed log changed acknowledged key {key}",
                        i + 1
                    );
                    in_log += 1;
                }
                None => assert!(
                    first_held > 1,
                    "n{}'s committed log (all of it, {} entries) lost acknowledged key {key}",
                    i + 1,
                    log.len()
                ),
            }
        }
        seen.push(in_log);
    }
    let leader = c.wait_leader(deadline);
    for (&key, &value) in acked {
        assert_eq!(
            c.get(leader, key, deadline),
            Some(value),
            "GET {key} via the leader"
        );
    }
    seen
}

/// Stops every node with SIGTERM (so each flushes its trace), then runs
/// `distsync report` over the nodes' traces: its Raft checker must pass.
fn check_traces(c: &mut Cluster, deadline: Instant) {
    let running: Vec<usize> = (0..c.len()).filter(|&i| c.is_running(i)).collect();
    for i in running {
        let status = c.terminate(i, deadline);
        assert_eq!(status.code(), Some(0), "n{} after SIGTERM", i + 1);
    }
    let mut cmd = Command::new(bin());
    cmd.arg("report");
    for i in 0..c.len() {
        cmd.arg(c.trace_path(i));
    }
    cmd.arg("-o").arg(c.dir.0.join("report"));
    let out = run_bounded(cmd, deadline);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code() == Some(0) && stdout.contains("passed"),
        "distsync report over the merged traces ({:?}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn acknowledged_writes_survive_a_leader_killed_and_restarted() {
    let deadline = deadline();
    let mut c = Cluster::start_all("failover", bin(), 3, deadline);
    let leader = c.wait_leader(deadline);
    let follower = c.other_running(leader);
    let mut acked = BTreeMap::new();

    // 1,000 keys over HTTP, some through a follower (redirected), then a
    // second value for a few so that "last value wins" is checked too.
    write_keys(&c, leader, 0..800, 0, &mut acked, deadline);
    write_keys(&c, follower, 800..1000, 0, &mut acked, deadline);
    write_keys(&c, follower, 0..20, 1, &mut acked, deadline);

    // The client binary, end to end: a write through a follower, a read
    // back, and a missing key.
    let f_url = c.url(follower);
    for key in 5000..5005u32 {
        let out = client(
            &f_url,
            &["put", &key.to_string(), &(key + 1).to_string()],
            deadline,
        );
        assert!(out.status.success(), "client put: {out:?}");
        acked.insert(key, u64::from(key) + 1);
    }
    let out = client(&f_url, &["get", "5003"], deadline);
    assert!(out.status.success(), "client get: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"value\":5004"),
        "{out:?}"
    );
    let out = client(&f_url, &["get", "4999999"], deadline);
    assert_eq!(out.status.code(), Some(1), "missing key: {out:?}");

    // kill -9 the leader; failover lasts until another node acknowledges a write.
    let killed_at = Instant::now();
    c.kill9(leader);
    let via = c.other_running(leader);
    assert!(
        c.put(via, 6000, 6, deadline),
        "no write acknowledged after the leader died"
    );
    let failover = killed_at.elapsed();
    acked.insert(6000, 6);
    eprintln!("failover after kill -9 of n{}: {failover:?}", leader + 1);
    let new_leader = c.wait_leader(deadline);
    assert_ne!(new_leader, leader);

    // The dead node's address is unreachable: the client says so with 5.
    let mut cmd = Command::new(bin());
    cmd.args([
        "client",
        "--url",
        &c.url(leader),
        "--timeout",
        "300ms",
        "get",
        "1",
    ]);
    let out = run_bounded(cmd, deadline);
    assert_eq!(
        out.status.code(),
        Some(5),
        "client against a dead node: {out:?}"
    );

    write_keys(&c, via, 1000..1100, 0, &mut acked, deadline);
    c.start(leader);
    write_keys(&c, via, 1100..1200, 0, &mut acked, deadline);
    let seen = check_acked(&c, &acked, deadline);
    eprintln!(
        "acknowledged writes shown by each node's log (the rest are in its snapshot): {seen:?}"
    );
    // The writes after the failover are past any snapshot: every node's log holds them.
    assert!(seen.iter().all(|&n| n >= 200), "{seen:?}");
    check_traces(&mut c, deadline);
}

/// `distsync client` with the cluster's token; its stdout as JSON.
fn lock_client(url: &str, token: &str, args: &[&str], deadline: Instant) -> (Output, Value) {
    let mut cmd = Command::new(bin());
    cmd.args(["client", "--url", url, "--timeout", "10s", "lock"])
        .args(args)
        .env("DISTSYNC_TOKEN", token);
    let out = run_bounded(cmd, deadline);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

#[test]
fn a_lock_and_its_session_survive_a_leader_killed_and_need_the_token() {
    let deadline = deadline();
    const TOKEN: &str = "real-test-token-0123456789";
    let mut c = Cluster::new("locks", bin(), 3);
    c.env.push(("API_TOKEN".into(), TOKEN.into()));
    c.start_each(deadline);
    let leader = c.wait_leader(deadline);
    let follower = c.other_running(leader);
    let f_url = c.url(follower);

    // Without the token: refused (exit 1, 401), and nothing opened.
    let out = client(&f_url, &["lock", "open"], deadline);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    let (out, v) = lock_client(&f_url, TOKEN, &["open", "--ttl-ms", "5000"], deadline);
    assert!(out.status.success(), "{out:?}");
    let session = v["session"].as_u64().expect("a session id").to_string();
    let (out, v) = lock_client(
        &f_url,
        TOKEN,
        &["acquire", "7", "--session", &session],
        deadline,
    );
    assert!(out.status.success(), "{out:?}");
    let token = v["token"].as_u64().expect("a fencing token");

    c.kill9(leader);
    let via = c.other_running(leader);
    let url = c.url(via);
    // The next leader has the session and its hold; the lease restarted
    // with its term, so a keep-alive within 5 s keeps it.
    let (out, v) = lock_client(&url, TOKEN, &["show", "7"], deadline);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(v["holders"][0]["session"].to_string(), session, "{v}");
    assert_eq!(v["holders"][0]["token"], token, "{v}");
    let (out, _) = lock_client(&url, TOKEN, &["keepalive", &session], deadline);
    assert!(out.status.success(), "{out:?}");
    // Another session cannot take it, nor release it.
    let (_, v) = lock_client(&url, TOKEN, &["open"], deadline);
    let other = v["session"].as_u64().expect("a second session").to_string();
    let (out, _) = lock_client(
        &url,
        TOKEN,
        &["acquire", "7", "--session", &other, "--wait-ms", "0"],
        deadline,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (out, _) = lock_client(
        &url,
        TOKEN,
        &["release", "7", "--session", &other],
        deadline,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
    // Released by its holder, it goes to the other session, with a higher token.
    let (out, _) = lock_client(
        &url,
        TOKEN,
        &["release", "7", "--session", &session],
        deadline,
    );
    assert!(out.status.success(), "{out:?}");
    let (out, v) = lock_client(
        &url,
        TOKEN,
        &["acquire", "7", "--session", &other, "--wait-ms", "0"],
        deadline,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(v["token"].as_u64().unwrap() > token, "{v}");
    let (out, _) = lock_client(&url, TOKEN, &["close", &other], deadline);
    assert!(out.status.success(), "{out:?}");
    check_traces(&mut c, deadline);
}

#[test]
fn nothing_acknowledged_is_lost_when_every_node_restarts_at_once() {
    let deadline = deadline();
    let mut c = Cluster::start_all("restart-all", bin(), 3, deadline);
    let leader = c.wait_leader(deadline);
    let mut acked = BTreeMap::new();
    write_keys(&c, leader, 0..300, 0, &mut acked, deadline);
    for i in 0..c.len() {
        c.kill9(i);
    }
    for i in 0..c.len() {
        c.start(i);
    }
    let leader = c.wait_leader(deadline);
    write_keys(&c, leader, 300..310, 0, &mut acked, deadline);
    // Under 1,000 entries: no snapshot, so each node's log shows every write.
    let seen = check_acked(&c, &acked, deadline);
    assert_eq!(seen, vec![acked.len(); c.len()]);
    check_traces(&mut c, deadline);
}

#[test]
fn sigterm_stops_a_node_with_exit_0() {
    let deadline = deadline();
    let mut c = Cluster::start_all("sigterm", bin(), 3, deadline);
    let leader = c.wait_leader(deadline);
    assert!(c.put(leader, 1, 1, deadline));
    let follower = c.other_running(leader);
    for i in [follower, leader] {
        let status = c.terminate(i, Instant::now() + Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(0),
            "n{} after SIGTERM: {status:?}",
            i + 1
        );
    }
}

/// The segment files of a data dir, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs
}

/// The byte offsets at which a segment's records start (12-byte header:
/// len, crc, header crc, all u32 little-endian).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 12 + len > bytes.len() {
            break;
        }
        offsets.push(at);
        at += 12 + len;
    }
    offsets
}

#[test]
fn a_corrupt_record_mid_segment_refuses_to_start_naming_file_and_offset() {
    let deadline = deadline();
    let mut c = Cluster::start_all("corrupt", bin(), 3, deadline);
    let leader = c.wait_leader(deadline);
    let mut acked = BTreeMap::new();
    write_keys(&c, leader, 0..50, 0, &mut acked, deadline);
    let victim = c.other_running(leader);
    c.wait_caught_up(deadline);
    let status = c.terminate(victim, Instant::now() + Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));

    let segs = segments(&c.data_dir(victim));
    let seg = segs.first().expect("a .wal segment").clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    assert!(
        offsets.len() >= 4,
        "expected several records in {}",
        seg.display()
    );
    // The second record's payload: intact records follow it.
    let bad_at = offsets[1];
    bytes[bad_at + 12] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();

    let out = run_bounded(c.command(victim), Instant::now() + Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let expected = format!("{} is corrupt at byte {bad_at}", seg.display());
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in: {stderr}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let deadline = deadline();
    let c = Cluster::new("bad-config", bin(), 3);
    let mut cmd = c.command(0);
    cmd.env("NODE_ID", "n4");
    let out = run_bounded(cmd, deadline);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("NODE_ID"), "stderr: {stderr}");

    let mut cmd = c.command(0);
    cmd.env("HEARTBEAT_TIMEOUT", "soon");
    let out = run_bounded(cmd, deadline);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("HEARTBEAT_TIMEOUT"), "stderr: {stderr}");
}
