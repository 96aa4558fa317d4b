#!/usr/bin/env bash
# Two builds of TaskGate under the same client, interleaved round by round (A then B, then B then A, …), so that a
# machine whose speed drifts during the run (a shared host) weighs on both alike. Prints the median of each figure
# per build and B's ratio to A, with each side's range over the rounds. Figures are never asserted on.
#
#   bench/compare.sh [--rounds N] [--seconds S] [--only SCENARIO] A_BINARY B_BINARY
#
# For a before/after comparison: build the earlier commit (`git checkout OLD && swift build -c release --product
# taskgate`), copy its binary aside, come back, and pass it as A and `.build/release/taskgate` as B.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3; seconds=5; only=""
while [ $# -gt 2 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        *) echo "usage: bench/compare.sh [--rounds N] [--seconds S] [--only SCENARIO] A_BINARY B_BINARY" >&2; exit 64 ;;
    esac
done
[ $# -eq 2 ] || { echo "usage: bench/compare.sh [--rounds N] [--seconds S] [--only SCENARIO] A_BINARY B_BINARY" >&2; exit 64; }
binaries=("$1" "$2")

swift build -c release --product taskgate-load >/dev/null
load="$(swift build -c release --show-bin-path)/taskgate-load"
work="$(mktemp -d "${TMPDIR:-/tmp}/taskgate-compare.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# scenario NAME STORE LOAD-ARGS… — one run of one build: start it, drive it, stop it by its PID.
scenario() {
    local binary="$1" out="$2" store="$3"; shift 3
    local port data
    port="$(free_port)"; data="$(mktemp -d "$work/data.XXXXXX")"
    "$binary" serve --port "$port" --data-dir "$data" --log-dir "" --log-level warning --store "$store" --enable-echo \
        --queue-limit 100000 --max-messages-per-second 1000000 --max-tasks-per-uid 100000 >"$work/server.log" 2>&1 </dev/null &
    server_pid=$!
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    "$load" --server-pid "$server_pid" --json-out "$out" --duration "$seconds" --warmup 1 \
        --url "ws://127.0.0.1:$port/ws?uid=c{i}" "$@" >/dev/null 2>"$work/load.err" || { cat "$work/load.err" >&2; return 1; }
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

names=(ping echo-memory echo-sqlite echo-16kb)
if [ -n "$only" ]; then
    case " ${names[*]} " in *" $only "*) names=("$only") ;; *) echo "compare: no scenario '$only' (${names[*]})" >&2; exit 64 ;; esac
fi
# run_named NAME BINARY OUT — the load of each scenario.
run_named() {
    case "$1" in
        ping) scenario "$2" "$3" memory --mode rtt --connections 100 --message '{"cmd":"ping"}' --skip-first 1 --expect '"pong"' ;;
        echo-memory) scenario "$2" "$3" memory --mode rtt --connections 100 \
            --message '{"cmd":"echo","args":{"n":1}}' --skip-first 1 --replies 3 --expect '"done"' ;;
        echo-sqlite) scenario "$2" "$3" sqlite --mode rtt --connections 100 \
            --message '{"cmd":"echo","args":{"n":1}}' --skip-first 1 --replies 3 --expect '"done"' ;;
        echo-16kb) scenario "$2" "$3" memory --mode rtt --connections 20 \
            --message '{"cmd":"echo","args":{"rows":{payload}}}' --payload-bytes 16384 --skip-first 1 --replies 3 ;;
    esac
}
for round in $(seq 1 "$rounds"); do
    # A then B in odd rounds, B then A in even ones, so that a drift within a round does not favour one side.
    order="0 1"; [ $((round % 2)) -eq 0 ] && order="1 0"
    for side in $order; do
        echo "compare: round $round, build $((side + 1)) of 2" >&2
        for name in "${names[@]}"; do run_named "$name" "${binaries[$side]}" "$work/$name-$side-$round.json"; done
    done
done

python3 - "$work" "$rounds" "${names[@]}" <<'PY'
import json, statistics, sys
work, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
# The range beside each median shows how far one round can stray on this host: a B/A inside both ranges is noise.
print("| scenario | figure | A (median) | A (min–max) | B (median) | B (min–max) | B / A |")
print("|---|---|---|---|---|---|---|")
for name in names:
    runs = [[json.load(open(f"{work}/{name}-{side}-{r}.json")) for r in range(1, rounds + 1)] for side in (0, 1)]
    for key, label in (("server_cpu_us_per_op", "server CPU µs/op"), ("per_second", "ops/s"), ("p99_ms", "p99 ms")):
        (a, a_range), (b, b_range) = (
            (statistics.median(values), f"{min(values):,.2f}–{max(values):,.2f}")
            for values in ([run[key] for run in side] for side in runs))
        print(f"| {name} | {label} | {a:,.2f} | {a_range} | {b:,.2f} | {b_range} | {b / a:.2f}× |")
PY
