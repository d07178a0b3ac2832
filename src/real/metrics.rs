//! A real node's metrics (`GET /metrics` when `ENABLE_METRICS` is on), in
//! the OpenMetrics text format Prometheus scrapes, and the same figures as
//! JSON (`?format=json`).
//!
//! Who writes what: the actor (`runtime.rs`) the Raft figures, once per
//! batch and around each fsync; the HTTP layer (`http.rs`) one count and
//! one latency per request, by route and status. The metric types are
//! atomics, so both sides share one `Metrics` behind an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

use crate::lock::protocol::LockReply;
use crate::queue::protocol::QueueReply;
use crate::trace::Role;

/// Every role, so that `distsync_raft_role` has a series for each (1 for
/// the current one).
const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

type RoleLabels = [(&'static str, &'static str); 1];
type RequestLabels = [(&'static str, String); 3];
type RouteLabels = [(&'static str, String); 1];
type ErrorLabels = [(&'static str, &'static str); 1];
type ShardLabels = [(&'static str, String); 1];

/// Latency buckets from 50 µs to about 3 s, doubling: an fsync and a
/// committed write on a fast disk sit in the first few, a stalled disk or
/// a write waiting out an election in the last.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(50e-6, 2.0, 17)
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The node's metric handles and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    term: Gauge,
    /// One series of `distsync_raft_role` per entry of `ROLES`, resolved
    /// once: the actor sets them after every batch.
    roles: [Gauge; ROLES.len()],
    commit_index: Gauge,
    applied_index: Gauge,
    last_index: Gauge,
    leader_changes: Counter,
    write_seconds: Histogram,
    fsync_seconds: Histogram,
    http_requests: Family<RequestLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    lock_acquire_seconds: Histogram,
    lock_grants: Counter,
    lock_waits: Counter,
    lock_failures: Family<ErrorLabels, Counter>,
    lock_sessions: Gauge,
    queue_stored: Counter,
    queue_duplicates: Counter,
    queue_delivered: Counter,
    queue_redelivered: Counter,
    queue_acked: Counter,
    queue_retries: Counter,
    redis_call_seconds: Family<ShardLabels, Histogram, fn() -> Histogram>,
    redis_failures: Family<ShardLabels, Counter>,
}

/// The Raft figures the actor reports after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftFigures {
    pub term: u64,
    pub role: Role,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("distsync");
        let m = Metrics {
            term: Gauge::default(),
            roles: Default::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_index: Gauge::default(),
            leader_changes: Counter::default(),
            write_seconds: histogram(),
            fsync_seconds: histogram(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(histogram),
            lock_acquire_seconds: histogram(),
            lock_grants: Counter::default(),
            lock_waits: Counter::default(),
            lock_failures: Family::default(),
            lock_sessions: Gauge::default(),
            queue_stored: Counter::default(),
            queue_duplicates: Counter::default(),
            queue_delivered: Counter::default(),
            queue_redelivered: Counter::default(),
            queue_acked: Counter::default(),
            queue_retries: Counter::default(),
            redis_call_seconds: Family::new_with_constructor(histogram),
            redis_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register("raft_term", "The node's current term", m.term.clone());
        let role: Family<RoleLabels, Gauge> = Family::default();
        let roles = ROLES.map(|r| role.get_or_create_owned(&[("role", r.name())]));
        registry.register(
            "raft_role",
            "1 for the node's current role, 0 for the others",
            role,
        );
        registry.register(
            "raft_commit_index",
            "The highest log index known committed",
            m.commit_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "The highest log index applied to the state machine",
            m.applied_index.clone(),
        );
        registry.register(
            "raft_last_index",
            "The last index of the node's log",
            m.last_index.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times the leader this node knows of changed to another node",
            m.leader_changes.clone(),
        );
        registry.register(
            "raft_write_seconds",
            "From a local client's write entering the node to its acknowledgement (appended on a majority, committed and applied)",
            m.write_seconds.clone(),
        );
        registry.register(
            "raft_fsync_seconds",
            "One group-commit fdatasync of the write-ahead log",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            m.http_seconds.clone(),
        );
        registry.register(
            "lock_acquire_seconds",
            "From an API lock acquire entering the node to its grant (waiting in the queue included)",
            m.lock_acquire_seconds.clone(),
        );
        registry.register(
            "lock_grants",
            "API lock acquires this node answered granted",
            m.lock_grants.clone(),
        );
        registry.register(
            "lock_waits",
            "API lock acquires that joined a lock's queue",
            m.lock_waits.clone(),
        );
        registry.register(
            "lock_failures",
            "API lock requests this node answered failed, by error (deadlock counts the victims, one per wait-for cycle)",
            m.lock_failures.clone(),
        );
        registry.register(
            "lock_sessions",
            "Live lock sessions in this node's applied state",
            m.lock_sessions.clone(),
        );
        for (name, help, c) in [
            (
                "queue_stored",
                "Messages stored by produces this node routed",
                &m.queue_stored,
            ),
            (
                "queue_duplicates",
                "Messages a produce sent again and the shard already had",
                &m.queue_duplicates,
            ),
            (
                "queue_delivered",
                "Messages handed to consumers through this node",
                &m.queue_delivered,
            ),
            (
                "queue_redelivered",
                "Deliveries past a message's first (a consumer's nack, or a visibility timeout)",
                &m.queue_redelivered,
            ),
            (
                "queue_acked",
                "Messages acked through this node and removed",
                &m.queue_acked,
            ),
            (
                "queue_retries",
                "Queue requests answered Retry (503): partition moving or its shard unreachable",
                &m.queue_retries,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "redis_call_seconds",
            "One call of the queue's Lua library on a Redis shard, by shard",
            m.redis_call_seconds.clone(),
        );
        registry.register(
            "redis_failures",
            "Calls on a Redis shard that failed (unreachable, timed out, or a bad reply), by shard",
            m.redis_failures.clone(),
        );
        Arc::new(Metrics {
            registry,
            roles,
            ..m
        })
    }

    /// Records the node's Raft state after a batch; `leader_changed` when
    /// the leader it knows of is now another node.
    pub fn raft(&self, f: RaftFigures, leader_changed: bool) {
        self.term.set(gauge_value(f.term));
        for (role, gauge) in ROLES.iter().zip(&self.roles) {
            gauge.set(i64::from(*role == f.role));
        }
        self.commit_index.set(gauge_value(f.commit_index));
        self.applied_index.set(gauge_value(f.applied_index));
        self.last_index.set(gauge_value(f.last_index));
        if leader_changed {
            self.leader_changes.inc();
        }
    }

    /// The lock service's answer to one API request; `since`, when the
    /// request entered the node (for an acquire's latency).
    pub fn lock_reply(&self, reply: &LockReply, since: Option<Duration>) {
        match reply {
            LockReply::Granted { .. } => {
                self.lock_grants.inc();
                if let Some(took) = since {
                    self.lock_acquire_seconds.observe(took.as_secs_f64());
                }
            }
            LockReply::Waiting => {
                self.lock_waits.inc();
            }
            LockReply::Failed(e) => {
                self.lock_failures
                    .get_or_create(&[("error", e.code())])
                    .inc();
            }
            LockReply::Session(_)
            | LockReply::Alive
            | LockReply::Released { .. }
            | LockReply::Closed => {}
        }
    }

    /// The answer to one queue request routed through this node.
    pub fn queue_reply(&self, reply: &QueueReply) {
        match reply {
            QueueReply::Produced(s) => {
                self.queue_stored.inc_by(u64::from(s.stored));
                self.queue_duplicates.inc_by(u64::from(s.duplicate));
            }
            QueueReply::Delivered(d) => {
                self.queue_delivered.inc_by(d.len() as u64);
                let again = d.iter().filter(|m| m.attempt > 1).count();
                self.queue_redelivered.inc_by(again as u64);
            }
            QueueReply::Settled(n) => {
                self.queue_acked.inc_by(u64::from(*n));
            }
            QueueReply::Retry => {
                self.queue_retries.inc();
            }
        }
    }

    /// One call on Redis shard `shard`: how long it took, and whether it
    /// failed.
    pub fn redis_call(&self, shard: usize, took: Duration, failed: bool) {
        let labels = [("shard", shard.to_string())];
        self.redis_call_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.redis_failures.get_or_create(&labels).inc();
        }
    }

    /// Live sessions, after each batch.
    pub fn lock_sessions(&self, live: usize) {
        self.lock_sessions.set(gauge_value(live as u64));
    }

    pub fn fsync(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    pub fn write(&self, took: Duration) {
        self.write_seconds.observe(took.as_secs_f64());
    }

    /// One answered HTTP request; `route` is the matched path pattern
    /// (`/kv/{key}`), never the raw path, so the series stay few.
    pub fn http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&[
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_seconds
            .get_or_create(&[("route", route.to_owned())])
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The same samples as JSON: `{"metrics": [{"name", "labels", "value"}]}`,
    /// read back from the text so that the two cannot differ.
    pub fn json(&self) -> Value {
        let samples: Vec<Value> = self.text().lines().filter_map(sample_json).collect();
        json!({ "metrics": samples })
    }
}

/// Gauges hold i64; an index or term past that is out of any real range.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One exposition line (`name{a="x",b="y"} value`) as JSON; None for
/// comments and anything that is not a sample.
fn sample_json(line: &str) -> Option<Value> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Map::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(json!({"name": name, "labels": labels, "value": value}))
}

/// `a="x",b="y"` with OpenMetrics' escapes (`\\`, `\"`, `\n`).
fn parse_labels(text: &str) -> Option<Map<String, Value>> {
    let mut labels = Map::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), Value::String(value));
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_give_the_same_figures() {
        let m = Metrics::new();
        m.raft(
            RaftFigures {
                term: 3,
                role: Role::Leader,
                commit_index: 10,
                applied_index: 9,
                last_index: 11,
            },
            true,
        );
        m.fsync(Duration::from_micros(700));
        m.write(Duration::from_millis(2));
        m.http("/kv/{key}", "PUT", 200, Duration::from_millis(3));
        let text = m.text();
        for expected in [
            "distsync_raft_term 3",
            "distsync_raft_role{role=\"leader\"} 1",
            "distsync_raft_role{role=\"follower\"} 0",
            "distsync_raft_commit_index 10",
            "distsync_raft_leader_changes_total 1",
            "distsync_raft_fsync_seconds_count 1",
            "distsync_raft_write_seconds_count 1",
            "distsync_http_requests_total{route=\"/kv/{key}\",method=\"PUT\",status=\"200\"} 1",
            "distsync_http_request_seconds_count{route=\"/kv/{key}\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        let json = m.json();
        let samples = json["metrics"].as_array().unwrap();
        let find = |name: &str| samples.iter().find(|s| s["name"] == name).cloned();
        assert_eq!(find("distsync_raft_term").unwrap()["value"], 3.0);
        let req = find("distsync_http_requests_total").unwrap();
        assert_eq!(req["labels"]["route"], "/kv/{key}");
        assert_eq!(req["labels"]["status"], "200");
        // Every sample line of the text is in the JSON.
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples.len(), lines);
    }

    /// The Grafana dashboard in docs/ reads only metrics this module
    /// exports, so renaming one cannot leave a panel silently empty.
    #[test]
    fn the_dashboard_names_only_exported_metrics() {
        let dashboard: Value =
            serde_json::from_str(include_str!("../../docs/grafana/distsync.json")).unwrap();
        // Families show in the text once they hold a series.
        let m = Metrics::new();
        m.raft(
            RaftFigures {
                term: 1,
                role: Role::Follower,
                commit_index: 0,
                applied_index: 0,
                last_index: 0,
            },
            false,
        );
        m.http("/health", "GET", 200, Duration::ZERO);
        // Families show only once they have a series.
        m.redis_call(0, Duration::ZERO, true);
        m.lock_reply(
            &LockReply::Failed(crate::lock::LockError::TimedOut { lock: 0 }),
            None,
        );
        let text = m.text();
        let exported: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut named = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !word.starts_with("distsync_") {
                        continue;
                    }
                    let base = ["_bucket", "_sum", "_count", "_total"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    assert!(
                        exported.contains(&base),
                        "panel {:?} reads {word}, which the node does not export ({exported:?})",
                        panel["title"]
                    );
                    named += 1;
                }
            }
        }
        assert!(named >= 10, "the dashboard reads {named} metrics");
    }

    #[test]
    fn label_values_with_escapes_read_back() {
        let labels = parse_labels(r#"a="x\"y",b="back\\slash",c="line\nbreak""#).unwrap();
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "back\\slash");
        assert_eq!(labels["c"], "line\nbreak");
        assert!(parse_labels(r#"a="unterminated"#).is_none());
    }
}
