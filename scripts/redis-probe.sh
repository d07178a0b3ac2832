#!/usr/bin/env bash
# Sends commands to a real redis-server and prints its raw replies, to check
# the Redis stand-in (src/redis/) against. Starts redis-server on a free
# loopback port (no RDB, no AOF), stops it when done.
# Usage: scripts/redis-probe.sh [FILE]   (commands on standard input without FILE)
# One command a line, arguments split on spaces, each with Python's byte
# escapes (\r \n \x00 \xff \x20 for a space); blank lines and # comments skipped.
# Example: printf 'ZADD z 0x1p3 m\nZSCORE z m\nEXEC x\n' | scripts/redis-probe.sh
set -euo pipefail
if ! command -v redis-server > /dev/null; then
  echo "error: redis-server not found (Debian: apt-get install redis-server)" >&2
  exit 2
fi
dir=$(mktemp -d)
input=${1:-$dir/input}
[[ $# -gt 0 ]] || cat > "$input"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
stop() {
  if [[ -f $dir/redis.pid ]]; then kill "$(cat "$dir/redis.pid")" 2> /dev/null || true; fi
  rm -rf "$dir"
}
trap stop EXIT
python3 - "$port" "$input" <<'PY'
import codecs, socket, sys, time

port, path = int(sys.argv[1]), sys.argv[2]
for _ in range(100):  # up to 5 s for the server to listen
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=2)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("error: redis-server did not start")
conn.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n")  # RESP2, as the stand-in speaks
conn.recv(65536)


def reply(sock):
    """Reads until the server has been quiet for 50 ms (at most 2 s)."""
    data, deadline = b"", time.monotonic() + 2
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            if data:
                break
            continue
        if not chunk:
            break
        data += chunk
    return data


version = None
with open(path, "rb") as lines:
    for line in lines:
        line = line.rstrip(b"\n")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        args = [codecs.escape_decode(w)[0] for w in line.split(b" ")]
        frame = b"*%d\r\n" % len(args)
        for a in args:
            frame += b"$%d\r\n%s\r\n" % (len(a), a)
        conn.sendall(frame)
        print(line.decode("utf-8", "backslashreplace"), "=>", repr(reply(conn))[2:-1])
PY
