//! Criterion benchmarks of the simulator: bare message passing, a 5-node
//! Raft cluster under load with every checker on, and the trace writer alone.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use distsync::bench::{message_passing, raft_cluster};
use distsync::trace::{Outcome, Subject, TraceEvent, Tracer};

fn bench_message_passing(c: &mut Criterion) {
    let mut g = c.benchmark_group("message_passing");
    let deliveries = 200_000;
    g.throughput(Throughput::Elements(deliveries));
    g.bench_function("2 nodes, 64 in flight, latency + 1% loss", |b| {
        b.iter(|| message_passing(deliveries, 64))
    });
    g.finish();
}

fn bench_raft_cluster(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft_cluster");
    g.sample_size(10);
    let events = raft_cluster(5, 10, 100.0, true).events;
    g.throughput(Throughput::Elements(events));
    g.bench_function(
        "5 nodes, 10 clients x 100 ops/s, 5s simulated, checkers + trace digest",
        |b| b.iter(|| raft_cluster(5, 10, 100.0, true)),
    );
    g.finish();
}

/// The lines of a Raft run under client load, in about the proportions such
/// a run writes them (sends and deliveries are three quarters), with the
/// digest on and no file: the cost of the trace alone.
fn bench_trace_lines(c: &mut Criterion) {
    let mix = [
        (
            Subject::Node(4),
            TraceEvent::NetSend {
                from: 4,
                to: 2,
                msg: "AppendResp",
                term: 3,
            },
        ),
        (
            Subject::Node(2),
            TraceEvent::NetDeliver {
                from: 1,
                to: 2,
                msg: "Append",
                term: 3,
            },
        ),
        (
            Subject::Node(4),
            TraceEvent::RaftAppend {
                index: 18_342,
                term: 3,
                digest: 12_900_367_444_143_625_027,
            },
        ),
        (
            Subject::Node(4),
            TraceEvent::RaftApply {
                index: 18_341,
                term: 3,
                digest: 2_900_367_444_143_625_027,
            },
        ),
        (
            Subject::Node(1),
            TraceEvent::NetSend {
                from: 1,
                to: 6,
                msg: "Reply",
                term: 0,
            },
        ),
        (Subject::Node(0), TraceEvent::RaftCommit { index: 18_341 }),
        (
            Subject::Client(3),
            TraceEvent::ClientInvoke {
                client: 3,
                op: "put",
                key: 4,
                value: Some(81_234),
            },
        ),
        (
            Subject::Node(3),
            TraceEvent::NetDeliver {
                from: 9,
                to: 3,
                msg: "Put",
                term: 0,
            },
        ),
        (
            Subject::Client(3),
            TraceEvent::ClientReturn {
                client: 3,
                op: "put",
                key: 4,
                value: Some(81_234),
                outcome: Outcome::Ok,
            },
        ),
        (
            Subject::Node(2),
            TraceEvent::NetSend {
                from: 2,
                to: 0,
                msg: "Append",
                term: 3,
            },
        ),
    ];
    let lines = 10_000u64;
    let mut g = c.benchmark_group("trace");
    g.throughput(Throughput::Elements(lines));
    g.bench_function("10,000 lines of a Raft run, digest on", |b| {
        b.iter(|| {
            let mut tracer = Tracer::new(5, None);
            for i in 0..lines {
                let (subject, ev) = &mix[i as usize % mix.len()];
                tracer
                    .record(300_000_000 + i * 7_919, *subject, ev)
                    .expect("no sink");
            }
            tracer.digest()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_message_passing,
    bench_raft_cluster,
    bench_trace_lines
);
criterion_main!(benches);
