//! Criterion benchmarks of the simulator: bare message passing and a 5-node
//! Raft cluster under load with every checker on.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use distsync::bench::{message_passing, raft_cluster};

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

criterion_group!(benches, bench_message_passing, bench_raft_cluster);
criterion_main!(benches);
