//! Human and machine summaries of a run: tables and JSON, and (in
//! `html`) the self-contained HTML report.

pub mod html;
mod timelines;

use serde_json::{Value, json};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::run::{CacheReport, QueueReport, RunReport};

#[derive(Tabled)]
struct NodeRow<'a> {
    node: &'a str,
    role: &'a str,
    term: u64,
    commit: u64,
    applied: u64,
    #[tabled(rename = "log last")]
    log_last: u64,
    snapshot: u64,
}

#[derive(Tabled)]
struct CheckRow<'a> {
    check: &'a str,
    verdict: &'static str,
    detail: &'a str,
}

/// The plain-text summary printed by `distsync run`.
pub fn render_text(r: &RunReport) -> String {
    let rows: Vec<NodeRow> = r
        .nodes
        .iter()
        .map(|n| NodeRow {
            node: &n.name,
            role: &n.status,
            term: n.term,
            commit: n.commit,
            applied: n.applied,
            log_last: n.log_last,
            snapshot: n.snapshot,
        })
        .collect();
    let mut out = format!(
        "scenario {}  seed {}  simulated {}\n",
        r.scenario,
        r.seed,
        human_duration(r.sim_time_ns)
    );
    out += &Table::new(rows).with(Style::sharp()).to_string();
    out.push('\n');
    let s = &r.stats;
    let first = s
        .first_leader_ns
        .map_or_else(|| "never".to_string(), human_duration);
    out += &format!(
        "messages: {} sent, {} delivered, {} dropped   elections: {} started, {} won   first leader: {}\nclient operations: {} invoked, {} completed   events: {}   trace events: {}\n",
        s.sent,
        s.delivered,
        s.dropped,
        s.elections,
        r.leaders_elected,
        first,
        r.ops_total,
        r.ops_completed,
        s.events,
        r.trace_events
    );
    if let Some(max) = s.leader_recoveries_ns.iter().max() {
        let n = s.leader_recoveries_ns.len() as u64;
        let mean = s.leader_recoveries_ns.iter().sum::<u64>() / n;
        out += &format!(
            "leader recovery after a leader crash: {n} times, mean {}, max {}\n",
            human_duration(mean),
            human_duration(*max)
        );
    }
    if let Some(l) = &r.locks {
        let c = l.counts;
        out += &format!(
            "locks: {} grants, {} releases, {} expiries, {} deadlocks broken ({} victims), {} fencing rejections; acquire latency p50 {}, p99 {}, max {}\n",
            c.grants,
            c.releases,
            c.expiries,
            c.deadlocks,
            l.victims,
            l.fencing_rejections,
            human_duration(l.acquire_p50_ns),
            human_duration(l.acquire_p99_ns),
            human_duration(l.acquire_max_ns)
        );
        let edges: Vec<String> = l
            .wait_for
            .iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        out += &format!(
            "lock wait-for graph at the end: {}\n",
            if edges.is_empty() {
                "empty".to_string()
            } else {
                edges.join(", ")
            }
        );
    }
    if let Some(q) = &r.queue {
        out += &queue_text(q);
    }
    if let Some(c) = &r.cache {
        out += &cache_text(c);
    }
    let checks: Vec<CheckRow> = r
        .checks
        .iter()
        .map(|c| CheckRow {
            check: &c.name,
            verdict: if c.ok { "ok" } else { "FAILED" },
            detail: &c.detail,
        })
        .collect();
    out += &Table::new(checks).with(Style::sharp()).to_string();
    out += &format!("\ntrace digest: {}\n", r.digest_hex());
    out
}

/// The JSON summary printed by `distsync run --json`.
pub fn render_json(r: &RunReport) -> Value {
    let s = &r.stats;
    json!({
        "scenario": r.scenario,
        "seed": r.seed,
        "passed": r.passed(),
        "sim_time_ns": r.sim_time_ns,
        "digest": r.digest_hex(),
        "trace_events": r.trace_events,
        "events": s.events,
        "messages": { "sent": s.sent, "delivered": s.delivered, "dropped": s.dropped },
        "elections": s.elections,
        "leaders_elected": r.leaders_elected,
        "first_leader_ns": s.first_leader_ns,
        "leader_recoveries_ns": s.leader_recoveries_ns,
        "locks": r.locks.as_ref().map(|l| json!({
            "grants": l.counts.grants, "releases": l.counts.releases, "expiries": l.counts.expiries,
            "deadlocks": l.counts.deadlocks, "victims": l.victims, "fencing_rejections": l.fencing_rejections,
            "acquire_latency_ns": { "p50": l.acquire_p50_ns, "p99": l.acquire_p99_ns, "max": l.acquire_max_ns },
            "wait_for": l.wait_for.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        })),
        "queue": r.queue.as_ref().map(queue_json),
        "cache": r.cache.as_ref().map(cache_json),
        "ops": { "invoked": r.ops_total, "completed": r.ops_completed },
        "nodes": r.nodes.iter().map(|n| json!({
            "node": n.name, "role": n.status, "term": n.term, "commit": n.commit,
            "applied": n.applied, "log_last": n.log_last, "snapshot": n.snapshot,
        })).collect::<Vec<_>>(),
        "checks": r.checks.iter().map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail })).collect::<Vec<_>>(),
        "violation": r.violation.as_ref().map(|f| json!({
            "invariant": f.violation.invariant,
            "detail": f.violation.detail,
            "event": f.seq,
            "t_ns": f.t_ns,
            "nodes": f.violation.nodes.iter().map(|n| format!("n{}", n + 1)).collect::<Vec<_>>(),
        })),
    })
}

/// The queue's figures as summary lines, lost messages listed one by one.
fn queue_text(q: &QueueReport) -> String {
    let s = &q.summary;
    let p = |x| s.latency_percentile(x).map_or("-".into(), human_duration);
    let mut out = format!(
        "queue: {} produced at {:.0} msg/s, {} delivered at {:.0} msg/s (simulated); end-to-end latency p50 {}, p99 {}\n",
        s.produced,
        s.produce_rate_per_s(),
        s.delivered,
        s.consume_rate_per_s(),
        p(0.5),
        p(0.99),
    );
    out += &format!(
        "queue: {} redeliveries, {} duplicate deliveries, {} duplicate produces skipped, {} dead-lettered, {} consumer crashes, {} revived by a shard crash\n",
        s.redeliveries,
        s.duplicate_deliveries,
        s.duplicate_stores,
        s.dead,
        s.consumer_crashes,
        s.revived,
    );
    let ring: Vec<String> = q.ring.iter().map(|x| format!("s{}", x + 1)).collect();
    let moved: Vec<String> = q
        .key_space_moved
        .iter()
        .map(|f| format!("{:.1}%", f * 100.0))
        .collect();
    out += &format!(
        "queue: ring epoch {} [{}]; key space moved per ring change: {}; {} of {} partitions moved, carrying {} messages\n",
        q.ring_epoch,
        ring.join(", "),
        if moved.is_empty() {
            "none".to_string()
        } else {
            moved.join(", ")
        },
        q.partitions_moved,
        q.partitions,
        s.migrated_messages,
    );
    out += &format!(
        "queue: {} messages lost as the persistence mode permits\n",
        s.lost.len()
    );
    for l in &s.lost {
        out += &format!(
            "  lost p{} seq {} of partition {}{}: {}\n",
            l.id.producer + 1,
            l.id.seq,
            l.partition,
            if l.acked_to_producer {
                " (acknowledged)"
            } else {
                ""
            },
            l.reason
        );
    }
    out
}

/// The caches' figures as summary lines.
fn cache_text(c: &CacheReport) -> String {
    let s = &c.summary;
    let warm = s.warm_hit_ratio().map_or(String::new(), |(r, from)| {
        format!(" ({:.1}% once warm, from {from}s)", r * 100.0)
    });
    let mut out = format!(
        "cache: {} reads ({} hits), {} writes ({} hits): hit ratio {:.1}%{warm}; {} failed; {} messages, {:.2} per operation; {} write-backs\n",
        s.reads,
        s.read_hits,
        s.writes,
        s.write_hits,
        s.hit_ratio() * 100.0,
        s.failed,
        c.bus_messages,
        c.messages_per_op(),
        s.writebacks,
    );
    let transitions: Vec<String> = s
        .transitions
        .iter()
        .map(|((from, to, cause), n)| format!("{from}->{to} {cause} {n}"))
        .collect();
    let l = &s.latency;
    out += &format!(
        "cache latency: reads p50 {}, p99 {}, max {} (hits p50 {}, misses p50 {}); writes p50 {}, p99 {}, max {}\n",
        millis(l.read.p50_ns),
        millis(l.read.p99_ns),
        millis(l.read.max_ns),
        millis(l.read_hit.p50_ns),
        millis(l.read_miss.p50_ns),
        millis(l.write.p50_ns),
        millis(l.write.p99_ns),
        millis(l.write.max_ns),
    );
    out += &format!("cache transitions: {}\n", transitions.join(", "));
    for (key, value, node, t) in &s.lost_writes {
        out += &format!(
            "  lost write: n{} crashed at {} holding key {key} = {value} in M, never written back\n",
            node + 1,
            human_duration(*t)
        );
    }
    out
}

/// Simulated nanoseconds as milliseconds with two decimals.
fn millis(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

fn cache_json(c: &CacheReport) -> Value {
    let s = &c.summary;
    let l = &s.latency;
    json!({
        "reads": s.reads, "read_hits": s.read_hits, "writes": s.writes, "write_hits": s.write_hits,
        "hit_ratio": s.hit_ratio(),
        "warm_hit_ratio": s.warm_hit_ratio().map(|(r, _)| r),
        "warm_from_s": s.warm_hit_ratio().map(|(_, from)| from),
        "failed": s.failed, "writebacks": s.writebacks,
        "bus_messages": c.bus_messages, "messages_per_op": c.messages_per_op(),
        "read_latency_ns": {
            "p50": l.read.p50_ns, "p99": l.read.p99_ns, "max": l.read.max_ns,
            "hit_p50": l.read_hit.p50_ns, "miss_p50": l.read_miss.p50_ns,
        },
        "write_latency_ns": { "p50": l.write.p50_ns, "p99": l.write.p99_ns, "max": l.write.max_ns },
        "transitions": s.transitions.iter().map(|((f, t, cause), n)| json!({"from": f, "to": t, "cause": cause, "count": n})).collect::<Vec<_>>(),
        "lost_writes": s.lost_writes.iter().map(|(k, v, node, t)| json!({"key": k, "value": v, "node": format!("n{}", node + 1), "t_ns": t})).collect::<Vec<_>>(),
    })
}

fn queue_json(q: &QueueReport) -> Value {
    let s = &q.summary;
    json!({
        "produced": s.produced, "produce_rate_per_s": s.produce_rate_per_s(),
        "delivered": s.delivered, "consume_rate_per_s": s.consume_rate_per_s(),
        "latency_ns": { "p50": s.latency_percentile(0.5), "p99": s.latency_percentile(0.99) },
        "messages_sent": s.messages_sent, "stored": s.stored, "duplicate_stores": s.duplicate_stores,
        "receipts": s.receipts, "redeliveries": s.redeliveries, "duplicate_deliveries": s.duplicate_deliveries,
        "acked": s.acked, "dead_lettered": s.dead, "consumer_crashes": s.consumer_crashes, "revived": s.revived,
        "ring": { "epoch": q.ring_epoch, "shards": q.ring.iter().map(|x| format!("s{}", x + 1)).collect::<Vec<_>>() },
        "key_space_moved": q.key_space_moved,
        "partitions": q.partitions, "partitions_moved": q.partitions_moved, "migrated_messages": s.migrated_messages,
        "lost": s.lost.iter().map(|l| json!({
            "partition": l.partition, "producer": format!("p{}", l.id.producer + 1), "seq": l.id.seq,
            "shard": format!("s{}", l.shard.wrapping_add(1)), "crash_ns": l.crash_ns, "stored_ns": l.stored_ns,
            "acknowledged": l.acked_to_producer, "reason": l.reason,
        })).collect::<Vec<_>>(),
    })
}

/// A rounded, readable duration for summaries ("206.85ms", "7s"); scenario
/// files use the exact forms of `format_duration` instead.
pub fn human_duration(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns}ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn human_durations_round_readably() {
        assert_eq!(human_duration(206_848_597), "206.85ms");
        assert_eq!(human_duration(7_000_000_000), "7s");
        assert_eq!(human_duration(1_500), "1.5us");
        assert_eq!(human_duration(12), "12ns");
    }
}

#[derive(Tabled)]
struct SweepRow {
    scenario: String,
    seeds: usize,
    failures: usize,
    #[tabled(rename = "events/s")]
    events_per_s: String,
    #[tabled(rename = "sim time / wall time")]
    speedup: String,
}

/// The table `distsync fuzz` prints at the end.
pub fn render_sweeps(sweeps: &[crate::explore::fuzz::SweepSummary]) -> String {
    let rows: Vec<SweepRow> = sweeps
        .iter()
        .map(|s| SweepRow {
            scenario: s.scenario.clone(),
            seeds: s.results.len(),
            failures: s.failures().count(),
            events_per_s: format!("{:.2}M", s.events_per_second() / 1e6),
            speedup: format!("{:.0}x", s.speedup()),
        })
        .collect();
    let mut out = Table::new(rows).with(Style::sharp()).to_string();
    out.push('\n');
    for s in sweeps {
        for f in s.failures() {
            out += &format!(
                "FAILED {} seed {}: {}\n",
                s.scenario,
                f.seed,
                f.failure.as_deref().unwrap_or("")
            );
            if let Some(file) = &f.file {
                out += &format!("  replay: distsync run {}\n", file.display());
            }
        }
    }
    out
}

#[derive(Tabled)]
struct HuntRow {
    bug: &'static str,
    scenario: &'static str,
    #[tabled(rename = "seeds to find")]
    seeds: String,
    #[tabled(rename = "caught by")]
    caught_by: String,
    #[tabled(rename = "wall time")]
    wall: String,
    #[tabled(rename = "steps before -> after")]
    steps: String,
    #[tabled(rename = "nodes")]
    nodes: String,
    #[tabled(rename = "simulated")]
    duration: String,
}

/// The table `distsync bugs --hunt` prints.
pub fn render_hunts(hunts: &[crate::explore::hunt::Hunt]) -> String {
    let rows: Vec<HuntRow> = hunts
        .iter()
        .map(|h| {
            let (steps, nodes, duration) = match &h.shrunk {
                Some(s) => (
                    format!("{} -> {}", s.before.steps, s.after.steps),
                    format!("{} -> {}", s.before.nodes, s.after.nodes),
                    format!(
                        "{} -> {}",
                        human_duration(s.before.duration_ns),
                        human_duration(s.after.duration_ns)
                    ),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            HuntRow {
                bug: h.bug,
                scenario: h.scenario,
                seeds: h
                    .found
                    .map_or_else(|| "not found".into(), |(_, n)| n.to_string()),
                caught_by: h.signature.clone().unwrap_or_else(|| "-".into()),
                wall: format!("{:.2}s", h.wall.as_secs_f64()),
                steps,
                nodes,
                duration,
            }
        })
        .collect();
    Table::new(rows).with(Style::sharp()).to_string() + "\n"
}

/// What `distsync shrink` prints.
pub fn render_shrunk(s: &crate::explore::shrink::Shrunk) -> String {
    let (b, a) = (&s.before, &s.after);
    format!(
        "still fails with: {}\n{} candidate runs\n            before    after\nsteps       {:<9} {}\nnodes       {:<9} {}\nclients     {:<9} {}\nsimulated   {:<9} {}\nevents      {:<9} {}\n",
        s.signature,
        s.runs,
        b.steps,
        a.steps,
        b.nodes,
        a.nodes,
        b.clients,
        a.clients,
        human_duration(b.duration_ns),
        human_duration(a.duration_ns),
        b.events,
        a.events
    )
}
