#!/usr/bin/env bash
# Opens generated HTML reports in headless Chromium and fails on any
# uncaught JavaScript error or an empty diagram; saves a screenshot of each
# under reports/browser-check/. Installs Debian's chromium when missing.
#   1. a failing planted-bug run (figure-8, seed 2): the diagram must draw
#      messages and the violation line;
#   2. a large run (queue-steady with its load running two seconds longer:
#      over 100,000 simulator events, about 250,000 trace lines): the page
#      must load and draw its aggregated view, its queue depth and its
#      latency histogram; opened again as index.html#measure it times its
#      own redraws through a fixed run of zooms and pans, and the slowest
#      is printed;
#   3. a lock run (lock-deadlocks): the lock holder and waiter timelines.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "browser check: installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

out=reports/browser-check
mkdir -p "$out"
bin=target/release/distsync
[ -x "$bin" ] || cargo build --release --quiet

"$bin" report scenarios/figure-8.toml --seed 2 --bug raft.commit_old_term_by_count -o "$out/figure-8"
sed -e 's/^name = "queue-steady"/name = "queue-steady-long"/' -e 's/^duration = "10s"/duration = "12s"/' \
  -e 's/^stop = "8s"/stop = "10s"/' scenarios/queue-steady.toml >"$out/queue-steady-long.toml"
"$bin" report "$out/queue-steady-long.toml" -o "$out/queue-steady-long"
events=$("$bin" run "$out/queue-steady-long.toml" --json | grep -o '"events": [0-9]*' | grep -o '[0-9]*$')
if [ "${events:-0}" -lt 100000 ]; then
  echo "browser check: queue-steady-long has only ${events:-no} simulator events; the large-run check needs 100,000"; exit 1
fi
echo "browser check: queue-steady-long: $events simulator events"
"$bin" report scenarios/lock-deadlocks.toml -o "$out/lock-deadlocks"

# One page: load it, let its script run, and read back the drawn DOM and
# the console.
check() {
  local page="$1" name="$2"; shift 2
  local url="file://$PWD/$page"
  local dom="$out/$name.dom.html" log="$out/$name.console.log"
  local start end
  start=$(date +%s%N) # determinism-ok: measures the browser, not a run
  chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
    --virtual-time-budget=10000 --dump-dom "$url" >"$dom" 2>"$log"
  end=$(date +%s%N) # determinism-ok: measures the browser, not a run
  if grep -E 'CONSOLE.*(Uncaught|Error)' "$log"; then
    echo "browser check: $name: JavaScript error (above)"; exit 1
  fi
  for needle in "$@"; do
    if ! grep -q -- "$needle" "$dom"; then
      echo "browser check: $name: the page lacks $needle"; exit 1
    fi
  done
  chromium --headless --no-sandbox --disable-gpu --window-size=1200,1300 \
    --screenshot="$out/$name.png" "$url" >/dev/null 2>&1
  echo "browser check: $name ok ($(stat -c %s "$page") bytes, loaded and drawn in $(( (end - start) / 1000000 )) ms, screenshot $out/$name.png)"
}

check "$out/figure-8/index.html" figure-8 'id="lamport"' 'class="msg' 'id="violation"' 'Leader commit rule'
check "$out/queue-steady-long/index.html" queue-steady-long 'id="lamport"' 'drawn as messages sent per lane' 'id="queue-depth"' 'class="histogram"'
check "$out/lock-deadlocks/index.html" lock-deadlocks 'id="lock-timelines"' 'deadlock victim'

# Responsiveness: the large page's own redraw timings (script time for
# each redraw, in milliseconds, in headless Chromium on this machine).
chromium --headless --no-sandbox --disable-gpu --dump-dom \
  "file://$PWD/$out/queue-steady-long/index.html#measure" >"$out/queue-steady-long.measure.html" 2>/dev/null
if ! grep -q 'id="measure"' "$out/queue-steady-long.measure.html"; then
  echo "browser check: queue-steady-long: the page did not time its redraws"; exit 1
fi
echo "browser check: queue-steady-long redraws: $(grep -o 'slowest: [0-9][0-9.]*' "$out/queue-steady-long.measure.html") ms, each timed in $out/queue-steady-long.measure.html"
