#!/usr/bin/env bash
# Starts a local distsync cluster on loopback: N real nodes (3 by default),
# each with its own data directory under a fresh temporary directory and its
# log under logs/. Waits until a node's /health names a leader, prints the
# URLs and a client example, then runs until Ctrl-C or SIGTERM, and stops
# every node it started on the way out, whatever the reason.
#
#   scripts/run_cluster.sh [--nodes N] [--base-port PORT] [--keep-data]
#
# Raft ports are PORT+1..PORT+N and HTTP ports PORT+101..PORT+100+N; without
# --base-port, PORT is derived from this script's pid so that two clusters
# started side by side do not collide. The binary is built (release, feature
# real-network) if it is missing.
set -euo pipefail

nodes=3
base_port=""
keep_data=0
leader_wait_s=20

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes)
            nodes="${2:?--nodes needs a number}"
            shift 2
            ;;
        --base-port)
            base_port="${2:?--base-port needs a port}"
            shift 2
            ;;
        --keep-data)
            keep_data=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "run_cluster.sh: unknown argument \`$1\`" >&2
            usage >&2
            exit 2
            ;;
    esac
done

if ! [[ "$nodes" =~ ^[0-9]+$ ]] || ((nodes < 1 || nodes > 64)); then
    echo "run_cluster.sh: --nodes is \"$nodes\": expected 1 to 64" >&2
    exit 2
fi
if [[ -z "$base_port" ]]; then
    # 20000..59800 in steps of 200: room for 64 Raft and 64 HTTP ports.
    base_port=$((20000 + ($$ % 200) * 200))
fi
if ! [[ "$base_port" =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port + 100 + nodes > 65535)); then
    echo "run_cluster.sh: --base-port is \"$base_port\": expected 1024 to $((65535 - 100 - nodes))" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/target/release/distsync"
if [[ ! -x "$bin" ]]; then
    echo "building $bin (release, feature real-network)..."
    (cd "$repo" && cargo build --release --features real-network)
fi

logs="$repo/logs/cluster-$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$logs"
data="$(mktemp -d "${TMPDIR:-/tmp}/distsync-cluster.XXXXXX")"
pids=()

stop_all() {
    local status=$?
    trap - EXIT INT TERM
    if ((${#pids[@]} > 0)); then
        echo
        echo "stopping ${#pids[@]} node(s)..."
        kill -TERM "${pids[@]}" 2>/dev/null || true
        # A node finishes its batch and fsync, then exits: give it 5 s.
        local deadline=$((SECONDS + 5))
        for pid in "${pids[@]}"; do
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "node pid $pid did not stop within 5 s: killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    fi
    if ((keep_data)); then
        echo "data directories kept in $data"
    else
        rm -rf "$data"
    fi
    echo "logs are in $logs"
    exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

peers=""
http_peers=""
for ((i = 1; i <= nodes; i++)); do
    peers+="${peers:+,}n$i=127.0.0.1:$((base_port + i))"
    http_peers+="${http_peers:+,}n$i=127.0.0.1:$((base_port + 100 + i))"
done

for ((i = 1; i <= nodes; i++)); do
    NODE_ID="n$i" PEERS="$peers" HTTP_PEERS="$http_peers" DATA_DIR="$data/n$i" \
        "$bin" node >"$logs/n$i.log" 2>&1 &
    pids+=("$!")
done

url() { echo "http://127.0.0.1:$((base_port + 100 + $1))"; }

# Polls every node's /health until one says it leads, for at most
# $leader_wait_s seconds; a node that exited early fails the start.
leader=""
deadline=$((SECONDS + leader_wait_s))
while [[ -z "$leader" ]]; do
    for ((i = 1; i <= nodes; i++)); do
        if ! kill -0 "${pids[i - 1]}" 2>/dev/null; then
            echo "node n$i exited during start-up; its log, $logs/n$i.log, ends:" >&2
            tail -n 5 "$logs/n$i.log" >&2
            exit 1
        fi
        health="$("$bin" client --url "$(url "$i")" --timeout 1s health 2>/dev/null || true)"
        if [[ "$health" == *'"role":"leader"'* ]]; then
            leader="n$i"
            break
        fi
    done
    if [[ -z "$leader" ]]; then
        if ((SECONDS >= deadline)); then
            echo "no leader after ${leader_wait_s} s; logs are in $logs" >&2
            exit 1
        fi
        sleep 0.2
    fi
done

echo "distsync cluster of $nodes node(s) up; $leader leads"
for ((i = 1; i <= nodes; i++)); do
    echo "  n$i  HTTP $(url "$i")  Raft 127.0.0.1:$((base_port + i))  pid ${pids[i - 1]}"
done
echo "data in $data, logs in $logs"
echo
echo "try:"
echo "  $bin client --url $(url 1) put 7 42"
echo "  $bin client --url $(url "$nodes") get 7"
echo "  curl -s $(url 1)/health"
echo
echo "Ctrl-C stops the cluster."
# Wait for the nodes; a node that dies on its own is reported, the rest run on.
while ((${#pids[@]} > 0)); do
    if wait -n "${pids[@]}" 2>/dev/null; then
        code=0
    else
        code=$?
    fi
    alive=()
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            alive+=("${pids[i]}")
        else
            echo "node pid ${pids[i]} exited (status $code)"
            wait "${pids[i]}" 2>/dev/null || true
        fi
    done
    pids=("${alive[@]}")
done
echo "every node has exited"
