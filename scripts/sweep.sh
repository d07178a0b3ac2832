#!/usr/bin/env bash
# Runs one scenario over a range of seeds through the CLI and lists failures.
# Usage: scripts/sweep.sh SCENARIO [FIRST_SEED] [LAST_SEED] [--bug NAME ...]
# Builds the release binary first; failing seeds are saved under reports/failures/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  echo "usage: scripts/sweep.sh SCENARIO [FIRST_SEED] [LAST_SEED] [--bug NAME ...]" >&2
  exit 2
fi
scenario=$1; shift
first=${1:-1}; [[ $# -gt 0 ]] && shift
last=${1:-200}; [[ $# -gt 0 ]] && shift
if ! [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ ]]; then
  echo "error: FIRST_SEED and LAST_SEED must be whole numbers, got '$first' and '$last'" >&2
  exit 2
fi
cargo build --release --quiet
failed=0
start=$(date +%s)
for seed in $(seq "$first" "$last"); do
  set +e
  ./target/release/distsync run "$scenario" --seed "$seed" "$@" > /dev/null 2> /tmp/distsync-sweep-$$.err
  code=$?
  set -e
  # 2 bad input, 3 a failure that could not be saved: neither gets better with more seeds.
  if [[ $code -eq 2 || $code -eq 3 ]]; then cat /tmp/distsync-sweep-$$.err >&2; exit $code; fi
  if [[ $code -ne 0 ]]; then
    failed=$((failed + 1))
    echo "seed $seed: $(grep -m1 -E 'VIOLATION|replay' /tmp/distsync-sweep-$$.err)"
  fi
done
rm -f /tmp/distsync-sweep-$$.err
echo "$scenario: $((last - first + 1)) seeds, $failed failed, $(( $(date +%s) - start ))s"
[[ $failed -eq 0 ]]
