#!/usr/bin/env bash
# Failover and put-latency figures of a real 3-node distsync cluster on
# loopback (kill -9 of the leader, 20 trials; 1, 8 and 64 concurrent
# clients; the leader's fsyncs per committed entry), uncontended lock
# acquire+release latency (1 and 8 clients, each on its own lock), and the
# same put and lock loads against a 3-member etcd cluster when `etcd` is
# installed (Debian: apt-get install etcd-server; its lock API through the
# v3 HTTP gateway, as `etcdctl lock` uses it), and the queue from produce
# to ack over 1 and 3 redis-servers with batches of 1 and 100, beside
# redis-benchmark's LPUSH and RPOP on the same server. Every process it
# starts is killed on exit.
#
#   scripts/bench_real.sh [--trials N] [--seconds S] [--phases failover,puts,locks,queue]
#
# Not a test: it takes about a minute and wants an otherwise idle machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo build --release --features real-network --bin distsync --example bench_real
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
disk="$(df --output=source "${TMPDIR:-/tmp}" | tail -n 1)"
echo "temp dir on $disk (lsblk ROTA=$(lsblk -ndo ROTA "$disk" 2>/dev/null | tr -d ' ' || echo '?'); a VM's virtio disk may claim to rotate)"
if command -v etcd >/dev/null; then
    echo "etcd: $(etcd --version 2>/dev/null | head -n 1)"
fi
exec target/release/examples/bench_real --bin target/release/distsync "$@"
