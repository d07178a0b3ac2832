//! A cluster of real `distsync node` processes on loopback, for the
//! real-process tests and the benchmark. Every child is killed (SIGKILL)
//! and reaped when the cluster is dropped, a failing test included.

#![allow(dead_code)] // the tests and the benchmark each use a part

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use distsync::real::http_client::{HttpResponse, request, request_following};
use serde_json::Value;

/// How long one HTTP request may take before it counts as unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `n` free loopback ports: each bound to port 0 at once, then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "distsync-real-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create the test's temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Real node processes sharing one temp dir; node `i` is `n{i+1}`.
pub struct Cluster {
    pub bin: PathBuf,
    pub dir: TempDir,
    pub raft_ports: Vec<u16>,
    pub http_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    /// Incarnations started per node, so each keeps its own log file.
    starts: Vec<u32>,
    /// Whether nodes write traces (`--trace`); off for the benchmark.
    pub trace: bool,
    /// More environment for every node (`API_TOKEN`, ...).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// A cluster of `n` nodes, none started yet.
    pub fn new(name: &str, bin: &Path, n: usize) -> Cluster {
        let ports = free_ports(2 * n);
        Cluster {
            bin: bin.to_owned(),
            dir: TempDir::new(name),
            raft_ports: ports[..n].to_vec(),
            http_ports: ports[n..].to_vec(),
            children: (0..n).map(|_| None).collect(),
            starts: vec![0; n],
            trace: true,
            env: Vec::new(),
        }
    }

    /// Starts every node and waits for a leader.
    pub fn start_all(name: &str, bin: &Path, n: usize, deadline: Instant) -> Cluster {
        let mut c = Cluster::new(name, bin, n);
        c.start_each(deadline);
        c
    }

    /// Starts every node of a new cluster and waits for a leader.
    pub fn start_each(&mut self, deadline: Instant) {
        for i in 0..self.len() {
            self.start(i);
        }
        self.wait_leader(deadline);
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.http_ports[i])
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.0.join(format!("n{}", i + 1))
    }

    fn list(ports: &[u16]) -> String {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s trace, appended to by each of its incarnations.
    pub fn trace_path(&self, i: usize) -> PathBuf {
        self.dir.0.join(format!("n{}.jsonl", i + 1))
    }

    /// The command that runs node `i`, its environment set, output not yet routed.
    pub fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .env("NODE_ID", format!("n{}", i + 1))
            .env("PEERS", Self::list(&self.raft_ports))
            .env("HTTP_PEERS", Self::list(&self.http_ports))
            .env("DATA_DIR", self.data_dir(i))
            .env("LOG_LEVEL", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if self.trace {
            cmd.arg("--trace").arg(self.trace_path(i));
        }
        cmd
    }

    /// Starts node `i` (which must not be running), its output in a log file.
    pub fn start(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "n{} is already running", i + 1);
        self.starts[i] += 1;
        let log_path = self
            .dir
            .0
            .join(format!("n{}.{}.log", i + 1, self.starts[i]));
        let log = File::create(&log_path).expect("create a node log");
        let err = log.try_clone().expect("clone the log handle");
        let child = self
            .command(i)
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn distsync node");
        self.children[i] = Some(child);
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().expect("node running").id()
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill9(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("node running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM to node `i` and waits (until `deadline`) for its exit.
    pub fn terminate(&mut self, i: usize, deadline: Instant) -> ExitStatus {
        let mut child = self.children[i].take().expect("node running");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        match wait_until(&mut child, deadline) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("n{} did not exit within the deadline after SIGTERM", i + 1);
            }
        }
    }

    /// The node's `/health`, or None if it does not answer.
    pub fn health(&self, i: usize) -> Option<Value> {
        let resp = request(
            "GET",
            &format!("{}/health", self.url(i)),
            None,
            REQUEST_TIMEOUT,
        )
        .ok()?;
        if resp.status != 200 {
            return None;
        }
        serde_json::from_slice(&resp.body).ok()
    }

    /// The running node that says it leads in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in (0..self.len()).filter(|&i| self.is_running(i)) {
            if let Some(h) = self.health(i)
                && h["role"] == "leader"
            {
                let term = h["term"].as_u64().unwrap_or(0);
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Waits until every running node has committed (and applied) at
    /// least what the leader had committed when this was called.
    pub fn wait_caught_up(&self, deadline: Instant) {
        let leader = self.wait_leader(deadline);
        let target = self.health(leader).expect("leader's health")["commit_index"]
            .as_u64()
            .unwrap();
        for i in (0..self.len()).filter(|&i| self.is_running(i)) {
            loop {
                let h = self.health(i);
                let applied = h.as_ref().and_then(|h| h["applied_index"].as_u64());
                if applied.is_some_and(|a| a >= target) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "n{} did not apply index {target} in time (at {applied:?})",
                    i + 1
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Polls until a running node leads; panics at `deadline`.
    pub fn wait_leader(&self, deadline: Instant) -> usize {
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no leader before the deadline; logs in {}",
                self.dir.0.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A running node other than `not`.
    pub fn other_running(&self, not: usize) -> usize {
        (0..self.len())
            .find(|&i| i != not && self.is_running(i))
            .expect("another node runs")
    }

    /// PUT key=value through node `via` (following redirects), retrying
    /// 503s and unanswered requests until `deadline`. Returns true once
    /// acknowledged with 200.
    pub fn put(&self, via: usize, key: u32, value: u64, deadline: Instant) -> bool {
        let body = format!("{{\"value\":{value}}}");
        let url = format!("{}/kv/{key}", self.url(via));
        while Instant::now() < deadline {
            match request_following("PUT", &url, Some(body.as_bytes()), REQUEST_TIMEOUT) {
                Ok((resp, _)) if resp.status == 200 => return true,
                Ok((resp, _)) if is_retryable(&resp) => {}
                Ok((resp, _)) => panic!(
                    "PUT {url}: unexpected {} {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// A linearizable GET through node `via`: Some(value), None on 404.
    pub fn get(&self, via: usize, key: u32, deadline: Instant) -> Option<u64> {
        let url = format!("{}/kv/{key}", self.url(via));
        loop {
            assert!(
                Instant::now() < deadline,
                "GET {url}: no answer before the deadline"
            );
            if let Ok((resp, _)) = request_following("GET", &url, None, REQUEST_TIMEOUT) {
                match resp.status {
                    200 => {
                        let v: Value = serde_json::from_slice(&resp.body).expect("JSON body");
                        return Some(v["value"].as_u64().expect("value is a u64"));
                    }
                    404 => return None,
                    _ if is_retryable(&resp) => {}
                    s => panic!("GET {url}: unexpected {s}"),
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `i`'s committed log entries that it still holds (those after
    /// its snapshot), read page by page from `/raft/log`, with the index of
    /// the first entry it holds.
    pub fn committed_log(&self, i: usize, deadline: Instant) -> (u64, Vec<Value>) {
        let page = |from: Option<u64>| -> Value {
            assert!(
                Instant::now() < deadline,
                "reading n{}'s log: deadline",
                i + 1
            );
            let from = from.map(|f| format!("from={f}&")).unwrap_or_default();
            let url = format!("{}/raft/log?{from}limit=1000", self.url(i));
            let resp = request("GET", &url, None, REQUEST_TIMEOUT)
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(resp.status, 200, "GET {url}");
            serde_json::from_slice(&resp.body).expect("JSON log page")
        };
        let mut next = page(None);
        let first_held = next["first_index"].as_u64().expect("first_index");
        let mut entries = Vec::new();
        let mut expect_index = first_held;
        loop {
            let commit = next["commit_index"].as_u64().expect("commit_index");
            let page_entries = next["entries"].as_array().expect("entries").clone();
            let page_len = page_entries.len();
            for e in page_entries {
                let index = e["index"].as_u64().expect("index");
                assert_eq!(index, expect_index, "n{}'s log pages skip an index", i + 1);
                expect_index += 1;
                if index <= commit {
                    entries.push(e);
                }
            }
            if page_len == 0 || expect_index > commit {
                return (first_held, entries);
            }
            next = page(Some(expect_index));
        }
    }

    /// The last value each key was given by the committed puts and deletes
    /// in `log` (a deleted key maps to None).
    pub fn replay(log: &[Value]) -> std::collections::BTreeMap<u64, Option<u64>> {
        let mut kv = std::collections::BTreeMap::new();
        for e in log {
            let cmd = &e["command"];
            match cmd["type"].as_str() {
                Some("put") => {
                    kv.insert(cmd["key"].as_u64().unwrap(), cmd["value"].as_u64());
                }
                Some("delete") => {
                    kv.insert(cmd["key"].as_u64().unwrap(), None);
                }
                _ => {}
            }
        }
        kv
    }
}

/// A 503 (no leader, retry, busy) or a 504 (timeout): try again.
pub fn is_retryable(resp: &HttpResponse) -> bool {
    matches!(resp.status, 503 | 504)
}

/// Polls a child until it exits or `deadline` passes.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self
            .children
            .iter_mut()
            .filter_map(Option::take)
            .collect::<Vec<_>>()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // The temp dir goes with the cluster: show how each node's log ends.
            for entry in std::fs::read_dir(&self.dir.0)
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(8).collect();
                    eprintln!("--- {} (last lines)", path.display());
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}
