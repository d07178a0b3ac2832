#!/usr/bin/env bash
# Fuzzes the HTTP API of a live 3-node cluster on loopback with schemathesis
# (from PyPI, installed when missing) against docs/api_spec.yaml: every
# operation, positive and negative inputs, through the leader and through a
# follower (whose 307s it follows). Fails on any 5xx, any response that
# breaks the spec's schema, status codes or content types. The cluster runs
# with metrics on, an API_TOKEN (which the fuzzer sends) and the queue on a
# private redis-server; every process it starts is stopped on exit.
#
#   scripts/schemathesis.sh [--max-examples N] [--seed S]
#
# Prints the number of test cases generated per pass.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

max_examples=40
seed=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --max-examples) max_examples="${2:?--max-examples needs a number}"; shift 2 ;;
        --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
        *) echo "schemathesis.sh: unknown argument \`$1\` (expected --max-examples N, --seed S)" >&2; exit 2 ;;
    esac
done

version=4.32.5
if ! command -v schemathesis >/dev/null || [[ "$(schemathesis --version 2>/dev/null)" != *"$version"* ]]; then
    echo "schemathesis.sh: installing schemathesis $version"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi
cargo build --release --quiet --features real-network --bin distsync

work="$(mktemp -d "${TMPDIR:-/tmp}/distsync-schemathesis.XXXXXX")"
cluster_pid=""
redis_pid=""
finish() {
    local status=$?
    if [[ -n "$cluster_pid" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
        kill -TERM "$cluster_pid" 2>/dev/null || true
        wait "$cluster_pid" 2>/dev/null || true
    fi
    if [[ -n "$redis_pid" ]] && kill -0 "$redis_pid" 2>/dev/null; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

base=$((20000 + ($$ % 200) * 200))
token="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# The queue's shard: a private redis-server, no persistence.
if ! command -v redis-server >/dev/null; then
    echo "schemathesis.sh: redis-server not found (Debian: apt-get install redis-server)" >&2
    exit 2
fi
redis_port=$((base + 199))
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
ENABLE_METRICS=true API_TOKEN="$token" REDIS_URL="redis://127.0.0.1:$redis_port" \
    scripts/run_cluster.sh --base-port "$base" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
deadline=$((SECONDS + 60))
until grep -q "cluster of 3 node(s) up" "$work/cluster.log"; do
    if ! kill -0 "$cluster_pid" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "schemathesis.sh: the cluster did not come up; its output:" >&2
        cat "$work/cluster.log" >&2
        exit 1
    fi
    sleep 0.2
done
leader="$(sed -n 's/.*; n\([0-9]\) leads$/\1/p' "$work/cluster.log")"
follower=$((leader % 3 + 1))

# One pass per node: the leader serves, the follower redirects.
for node in "$leader" "$follower"; do
    url="http://127.0.0.1:$((base + 100 + node))"
    echo "schemathesis.sh: fuzzing n$node ($url), up to $max_examples cases per operation"
    # From the scratch directory, where schemathesis keeps its cache.
    (cd "$work" && schemathesis run "$repo/docs/api_spec.yaml" --url "$url" \
        --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
        --header "Authorization: Bearer $token" \
        --max-examples "$max_examples" --seed "$seed" --max-redirects 3 \
        --request-timeout 70 --no-color --output-truncate true) 2>&1 | tee "$work/n$node.txt" | tail -n 25
    generated="$(grep -Eo '[0-9]+ generated' "$work/n$node.txt" | tail -n 1 || true)"
    echo "schemathesis.sh: n$node: ${generated:-? generated} test cases"
done
