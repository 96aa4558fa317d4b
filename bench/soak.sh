#!/usr/bin/env bash
# A bounded soak: one TaskGate server (SQLite, in a temporary data directory) under mixed load for 10 minutes —
# WebSocket, SSE, long-poll and REST submits, reconnects with cursors, a reload every 30 s, a few slow consumers.
# Prints RSS and open descriptors at the start and the end, and the tasks lost and duplicated (both must be 0).
#
#   bench/soak.sh                 10 minutes, release build
#   bench/soak.sh --seconds 60    shorter
#
# Loopback only; the server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
clients=20
configuration=${TASKGATE_BENCH_CONFIGURATION:-release}
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift ;;
        --clients) clients="$2"; shift ;;
        *) echo "usage: bench/soak.sh [--seconds N] [--clients N]" >&2; exit 64 ;;
    esac
    shift
done

swift build -c "$configuration" --product taskgate >/dev/null
taskgate="$(swift build -c "$configuration" --show-bin-path)/taskgate"
work="$(mktemp -d "${TMPDIR:-/tmp}/taskgate-soak.XXXXXX")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$taskgate" serve --port "$port" --data-dir "$work/data" --log-dir "" --log-level warning >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
python3 bench/soak.py --url "http://127.0.0.1:$port" --pid "$server_pid" --seconds "$seconds" --clients "$clients"
