#!/usr/bin/env bash
# The benchmark suite: TaskGate side by side with the servers a user would pick instead, in one run.
#
#   bench/run.sh            full run (≈ 25 min, 10 of them the steady run), writes bench/results.md
#   bench/run.sh --smoke    a few seconds per scenario, small counts; prints the figures, writes nothing in the repo
#   bench/run.sh --out F    write the report to F instead
#   TASKGATE_BENCH_SERVER=PATH bench/run.sh   the same scenarios against another taskgate binary
#   TASKGATE_BENCH_BIN_DIR=DIR bench/run.sh   no `swift build`: taskgate, taskgate-load and hummingbird-echo from DIR
#   TASKGATE_BENCH_STEADY_SECONDS=N           the steady run's length (default 600; --smoke 3)
#   TASKGATE_BENCH_STEADY_RATE=R              its tasks/s (default 1000; --smoke 200): 540 s at 1900/s is a million tasks
#   TASKGATE_BENCH_SWOOLE_DIR=DIR             the Swoole peer (swoole.so, seed_swoole_tasks.php); default ../shared/peers/swoole
#
# Every server starts on a free loopback port, is driven by `taskgate-load` (a multi-threaded SwiftNIO client, built
# here in release mode), `wrk` or bench/ws_tasks.py (a picows client, the same for TaskGate and the Swoole seed
# server), has its CPU time (/proc/PID/stat, summed over its process tree where it has one) and RSS
# (/proc/PID/status) measured over the measurement window, and is stopped by its PID (SIGTERM, then every process of
# its tree is waited for). Exits non-zero only if a scenario fails to run (or, in a full run, a peer it needs is
# missing: the Swoole seed server in ../shared/peers/swoole, PostgreSQL, picows); figures are never asserted on,
# but the cluster run's "every task done exactly once" is.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
out="bench/results.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1; out="" ;;
        --out) out="$2"; shift ;;
        *) echo "usage: bench/run.sh [--smoke] [--out FILE]" >&2; exit 64 ;;
    esac
    shift
done

if [ "$smoke" = 1 ]; then
    duration=1; warmup=0.3; conns=20; idle=200; polls=200; big_conns=4; wrk_time=1s; settle=0.5
    configuration=${TASKGATE_BENCH_CONFIGURATION:-debug}
    # The steady run: tasks/s started in all, connections, seconds between two samples; retention lowered so that
    # the pruning shows within seconds.
    steady_seconds=${TASKGATE_BENCH_STEADY_SECONDS:-3}; steady_rate=${TASKGATE_BENCH_STEADY_RATE:-200}; steady_conns=10; steady_sample=1
    steady_flags=(--task-retention-count 200 --event-retention-count 10 --maintenance-interval 1)
    cluster_seconds=2; cluster_conns=20; cluster_samples=20
else
    duration=5; warmup=1; conns=100; idle=10000; polls=5000; big_conns=20; wrk_time=5s; settle=2
    configuration=${TASKGATE_BENCH_CONFIGURATION:-release}
    # The server's default retention (--task-retention-count 100000 finished tasks, --event-retention-count 1000
    # events per uid, pruned every --maintenance-interval 60 s): at 1,000 tasks/s the task count reaches its bound
    # after 100 s and each uid's event log (20 tasks/s, two logged events each) after 25 s.
    steady_seconds=${TASKGATE_BENCH_STEADY_SECONDS:-600}; steady_rate=${TASKGATE_BENCH_STEADY_RATE:-1000}; steady_conns=50; steady_sample=30
    steady_flags=()
    cluster_seconds=10; cluster_conns=100; cluster_samples=200
fi
# The Swoole seed server, the system TaskGate replaces (see its README.md there), relative to the repository.
swoole_dir="${TASKGATE_BENCH_SWOOLE_DIR:-../shared/peers/swoole}"
swoole_php=(php -d "extension=$swoole_dir/swoole.so")

# Room for 10,000 sockets on each side (the client and the server each hold one per connection).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle + 1000)) ]; then
    echo "bench: ulimit -n is $(ulimit -n); lowering idle connections to fit" >&2
    idle=$(( $(ulimit -n) - 1000 ))
fi

if [ -n "${TASKGATE_BENCH_BIN_DIR:-}" ]; then
    # Binaries built elsewhere (by whoever builds): nothing is built here.
    bin="$(cd "$TASKGATE_BENCH_BIN_DIR" && pwd)"
    echo "bench: TASKGATE_BENCH_BIN_DIR: taskgate, taskgate-load and hummingbird-echo from $bin, not built"
    for program in taskgate taskgate-load hummingbird-echo; do
        [ -x "$bin/$program" ] || { echo "bench: $bin/$program is missing" >&2; exit 1; }
    done
else
    echo "bench: building taskgate and taskgate-load ($configuration)"
    swift build -c "$configuration" --product taskgate >/dev/null
    swift build -c "$configuration" --product taskgate-load >/dev/null
    bin="$(swift build -c "$configuration" --show-bin-path)"
fi
# TASKGATE_BENCH_SERVER runs another build of the server (an earlier commit's, for a before/after comparison) under
# the same client and scenarios.
taskgate="${TASKGATE_BENCH_SERVER:-$bin/taskgate}"
load="$bin/taskgate-load"
# The bare Hummingbird echo: a program of its own under bench/peers/hummingbird-echo (TaskGate has no
# hummingbird-websocket engine), a target of this package so that it shares the built dependencies.
if [ -z "${TASKGATE_BENCH_BIN_DIR:-}" ]; then
    echo "bench: building the hummingbird-echo peer ($configuration)"
    swift build -c "$configuration" --product hummingbird-echo >/dev/null
fi
hummingbird_echo="$bin/hummingbird-echo"

work="$(mktemp -d "${TMPDIR:-/tmp}/taskgate-bench.XXXXXX")"
results="$work/results"
mkdir -p "$results"
server_pid=""
failed=()

cleanup() {
    stop
    [ -n "${TASKGATE_BENCH_KEEP:-}" ] && echo "bench: kept $work" && return 0
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# start NAME COMMAND... — $port is chosen first and may appear in COMMAND as {port}.
start() {
    local name="$1"; shift
    port="$(free_port)"
    local args=("${@//\{port\}/$port}")
    "${args[@]}" >"$work/$name.log" 2>&1 </dev/null &
    server_pid=$!
    if ! wait_port "$port"; then
        echo "bench: $name did not start:" >&2; tail -5 "$work/$name.log" >&2
        kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
        return 1
    fi
}

# stop: SIGTERM to the server started last; then its whole process tree (as it was) is waited for, ≤ 15 s, and what
# is left of it is killed by PID (bench/proc.py --stop-tree; a Swoole server is 8 processes).
stop() {
    [ -n "$server_pid" ] || return 0
    if ! python3 bench/proc.py --stop-tree "$server_pid"; then
        echo "bench: the server (pid $server_pid) did not stop on SIGTERM" >&2
        failed+=("stop/$server_pid")
    fi
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# skip SCENARIO REASON — a scenario that cannot run here: skipped (and said so in the report) in --smoke; in a full
# run, loud and a failure.
skip() {
    local scenario="$1" reason="$2"
    echo "$reason" >"$results/$scenario.skipped"
    if [ "$smoke" = 1 ]; then
        echo "bench: $scenario SKIPPED: $reason" >&2
    else
        echo "bench: ################################################################" >&2
        echo "bench: $scenario NOT RUN: $reason" >&2
        echo "bench: ################################################################" >&2
        failed+=("$scenario/not-run")
    fi
}

# The Python client's one dependency.
have_picows=0
python3 -c 'import picows' 2>/dev/null && have_picows=1
picows_missing="picows is not installed (python3 -m pip install -r bench/requirements.txt)"

start_taskgate() {
    local name="$1"; shift
    mkdir -p "$work/$name"
    start "$name" "$taskgate" serve --port "{port}" --data-dir "$work/$name/data" --log-dir "" --log-level warning \
        --public-dir public --enable-echo --queue-limit 100000 --max-messages-per-second 1000000 \
        --max-tasks-per-uid 100000 --max-connections 60000 --max-polls-per-uid 16 "$@"
}

# run SCENARIO NAME LOAD-ARGS... — one taskgate-load run against the server started last.
run() {
    local scenario="$1" name="$2"; shift 2
    echo "bench: $scenario / $name"
    if ! "$load" --server-pid "$server_pid" --label "$name" --json-out "$results/$scenario--$name.json" "$@" \
        >"$work/$scenario--$name.out" 2>"$work/$scenario--$name.err"; then
        echo "bench: $scenario / $name FAILED" >&2; tail -5 "$work/$scenario--$name.err" >&2
        failed+=("$scenario/$name")
    fi
    tail -n 12 "$work/$scenario--$name.out" | sed 's/^/    /'
}

# run_py SCENARIO NAME WS_TASKS-ARGS... — one bench/ws_tasks.py run against the server started last.
run_py() { run_script bench/ws_tasks.py "$@"; }

# run_script SCRIPT SCENARIO NAME ARGS... — one run of a Python client (--server-pid, --label, --json-out).
run_script() {
    local script="$1" scenario="$2" name="$3"; shift 3
    echo "bench: $scenario / $name"
    if ! python3 "$script" --server-pid "$server_pid" --label "$name" \
        --json-out "$results/$scenario--$name.json" "$@" >"$work/$scenario--$name.out" 2>"$work/$scenario--$name.err"; then
        echo "bench: $scenario / $name FAILED" >&2; tail -5 "$work/$scenario--$name.err" >&2
        failed+=("$scenario/$name")
    fi
    tail -n 1 "$work/$scenario--$name.out" | sed 's/^/    /'
}

peer() {
    # peer KIND DEFLATE: start one echo baseline.
    case "$1" in
        node) start "node-ws" node bench/peers/node_ws_echo.js "{port}" $2 ;;
        python) start "python-websockets" python3 bench/peers/python_ws_echo.py "{port}" $2 ;;
        # Deflate is always offered (as the old `/ws/echo` did); the client's --deflate decides.
        hummingbird) start "hummingbird-echo" "$hummingbird_echo" --host 127.0.0.1 --port "{port}" ;;
    esac
}

# Every peer echoes on /.
peer_path() { echo "/"; }

ping='{"cmd":"ping"}'
big="{\"cmd\":\"echo\",\"args\":{\"rows\":{payload}}}"

# 1. Round trips: TaskGate's ping → pong through the whole protocol vs the peers' echo of the same bytes.
start_taskgate taskgate --store memory
run ping taskgate --mode rtt --url "ws://127.0.0.1:$port/ws?uid=p{i}" --connections "$conns" \
    --duration "$duration" --warmup "$warmup" --message "$ping" --skip-first 1 --expect '"pong"'
stop
for kind in node python hummingbird; do
    for deflate in "" deflate; do
        peer "$kind" "$deflate"
        flag=(); [ -n "$deflate" ] && flag=(--deflate)
        run ping "$kind-echo${deflate:+-deflate}" --mode rtt --url "ws://127.0.0.1:$port$(peer_path $kind)" \
            --connections "$conns" --duration "$duration" --warmup "$warmup" --message "$ping" "${flag[@]}"
        stop
    done
done

# 2. Echo tasks through the pool: submitted, progress (running), done = 3 replies per task.
for store in memory sqlite; do
    start_taskgate "taskgate-$store" --store "$store"
    run tasks "taskgate-$store" --mode rtt --url "ws://127.0.0.1:$port/ws?uid=t{i}" --connections "$conns" \
        --duration "$duration" --warmup "$warmup" --message '{"cmd":"echo","args":{"n":1}}' --skip-first 1 --replies 3 \
        --expect '"done"'
    stop
done

# 2b. The same echo tasks with tracing switched on (`--otel`): four spans per task exported over OTLP/HTTP to a
# loopback sink that only counts them; against taskgate-memory above, the cost of tracing per task.
otlp_port="$(free_port)"
python3 bench/peers/otlp_sink.py "$otlp_port" >"$work/otlp-sink.log" 2>&1 &
otlp_pid=$!
if wait_port "$otlp_port"; then
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp_port" start_taskgate "taskgate-memory-otel" --store memory --otel
    run tasks "taskgate-memory-otel" --mode rtt --url "ws://127.0.0.1:$port/ws?uid=t{i}" --connections "$conns" \
        --duration "$duration" --warmup "$warmup" --message '{"cmd":"echo","args":{"n":1}}' --skip-first 1 --replies 3 \
        --expect '"done"'
    stop
    echo "    spans exported: $(curl -s "http://127.0.0.1:$otlp_port/stats")"
else
    echo "bench: the OTLP sink did not start" >&2; failed+=("tasks/taskgate-memory-otel")
fi
kill -TERM "$otlp_pid" 2>/dev/null || true; wait "$otlp_pid" 2>/dev/null || true

# 3. Idle connections: RSS per held connection; with deflate, after one ≈ 1 KB message each way.
# TaskGate with deflate, two ways: a ping whose 256-byte ref comes back in the pong (compressed both ways, nothing
# stored: the connection's own cost), and an echo task of ≈ 1 KB (3 replies, after the hello), which also leaves
# the task record and its events in the in-memory store.
ping_ref="{\"cmd\":\"ping\",\"ref\":\"$(printf 'r%.0s' $(seq 1 256))\"}"
for deflate in "" deflate-ping deflate; do
    flag=(); [ -n "$deflate" ] && flag=(--deflate --exchange)
    message=("--replies" 3 --message "$big" --payload-bytes 1024)
    [ "$deflate" = deflate-ping ] && message=(--replies 1 --message "$ping_ref")
    name="taskgate${deflate:+-$deflate}"
    start_taskgate "$name" --store memory
    run idle "$name" --mode idle --url "ws://127.0.0.1:$port/ws?uid=i{i}" --connections "$idle" \
        --duration 1 --settle "$settle" --skip-first 1 "${message[@]}" "${flag[@]}"
    stop
done
for deflate in "" deflate; do
    flag=(); [ -n "$deflate" ] && flag=(--deflate --exchange)
    for kind in node python hummingbird; do
        peer "$kind" "$deflate"
        run idle "$kind-echo${deflate:+-deflate}" --mode idle --url "ws://127.0.0.1:$port$(peer_path $kind)" \
            --connections "$idle" --duration 1 --settle "$settle" --message "$big" --payload-bytes 1024 "${flag[@]}"
        stop
    done
done

# 4. Long-poll: waiting polls, each woken by an echo task submitted over REST for its uid.
start_taskgate taskgate-poll --store memory --task-workers 4
run poll taskgate --mode poll --url "http://127.0.0.1:$port" --connections "$polls" --settle "$settle" --duration 10 \
    --threads 2
stop
start_taskgate taskgate-sse --store memory --task-workers 4
run_script bench/sse_streams.py sse taskgate --url "http://127.0.0.1:$port" --connections "$polls" --settle "$settle"
stop

# 5. Compression: echo tasks carrying ≈ 16 KB of JSON rows; the same without deflate gives the bytes of JSON.
for deflate in "" deflate; do
    flag=(); [ -n "$deflate" ] && flag=(--deflate)
    start_taskgate taskgate --store memory
    run compression "taskgate${deflate:+-deflate}" --mode rtt --url "ws://127.0.0.1:$port/ws?uid=c{i}" \
        --connections "$big_conns" --duration "$duration" --warmup "$warmup" --message "$big" --payload-bytes 16384 \
        --skip-first 1 --replies 3 "${flag[@]}"
    stop
done
for kind in node python hummingbird; do
    for deflate in "" deflate; do
        flag=(); [ -n "$deflate" ] && flag=(--deflate)
        peer "$kind" "$deflate"
        run compression "$kind-echo${deflate:+-deflate}" --mode rtt --url "ws://127.0.0.1:$port$(peer_path $kind)" \
            --connections "$big_conns" --duration "$duration" --warmup "$warmup" --message "$big" --payload-bytes 16384 \
            "${flag[@]}"
        stop
    done
done

# 6. REST with wrk: reading one task, and submitting echo tasks.
if command -v wrk >/dev/null; then
    start_taskgate taskgate-rest --store memory
    id="$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/tasks" -H 'Content-Type: application/json' \
        -d '{"cmd":"echo","args":{"n":1},"uid":"rest"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
    cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"cmd":"echo","args":{"n":1}}'
EOF
    for what in get post; do
        echo "bench: rest / $what"
        script=(); target="http://127.0.0.1:$port/api/v1/tasks/$id"
        [ "$what" = post ] && script=(-s "$work/post.lua") && target="http://127.0.0.1:$port/api/v1/tasks"
        before="$(python3 bench/proc.py "$server_pid")"
        if wrk -t1 -c50 -d"$wrk_time" --latency "${script[@]}" "$target" >"$results/rest--$what.wrk" 2>&1; then
            echo "$before $(python3 bench/proc.py "$server_pid")" >"$results/rest--$what.proc"
            grep -E "Requests/sec|50%|99%" "$results/rest--$what.wrk" | sed 's/^/    /'
        else
            echo "bench: rest / $what FAILED" >&2; failed+=("rest/$what")
        fi
    done
    stop
else
    echo "bench: wrk not installed: REST scenario skipped" >&2
    failed+=("rest/wrk-missing")
fi

# 7. Echo tasks against the Swoole seed server (../shared/peers/swoole: SWOOLE_PROCESS, 2 workers, 4 task workers,
# as the seed configures it; SWOOLE_BASE besides), with one client for both sides, bench/ws_tasks.py: 100
# connections, one task in flight each, a unique args.id per task, latency submit → the final reply (code 200:
# TaskGate's done after submitted and progress, 3 replies; Swoole's onFinish push after its 202, 2 replies). Server
# CPU is summed over the server's process tree.
swoole_reason=""
if [ "$have_picows" = 0 ]; then
    swoole_reason="$picows_missing"
elif [ ! -f "$swoole_dir/swoole.so" ]; then
    swoole_reason="$swoole_dir/swoole.so not found"
elif ! command -v php >/dev/null; then
    swoole_reason="php is not installed (apt-get install -y php-cli libbrotli1)"
elif ! swoole_version="$("${swoole_php[@]}" -r 'echo swoole_version();' 2>&1)"; then
    swoole_reason="php cannot load $swoole_dir/swoole.so (apt-get install -y php-cli libbrotli1): $(echo "$swoole_version" | tail -1)"
fi
if [ -z "$swoole_reason" ]; then
    echo "$swoole_version" >"$results/swoole.version"
    for store in memory sqlite; do
        start_taskgate "swoole-taskgate-$store" --store "$store"
        run_py swoole "taskgate-$store" --url "ws://127.0.0.1:$port/ws?uid=t{i}" --connections "$conns" \
            --duration "$duration" --warmup "$warmup" --skip-first 1 --replies 3
        stop
    done
    for mode in process base; do
        flag=(); [ "$mode" = base ] && flag=(--base)
        if start "swoole-$mode" "${swoole_php[@]}" "$swoole_dir/seed_swoole_tasks.php" "{port}" "${flag[@]}"; then
            # It prints its master_pid (SWOOLE_PROCESS) and manager_pid (with --base, the first process): that is
            # the pid started here, which the stop's SIGTERM goes to.
            for _ in $(seq 1 40); do grep -q 'master_pid=' "$work/swoole-$mode.log" && break; sleep 0.05; done
            key=master_pid; [ "$mode" = base ] && key=manager_pid
            said="$(sed -n "s/.*$key=\([0-9]*\).*/\1/p" "$work/swoole-$mode.log" | head -1)"
            [ "$said" = "$server_pid" ] || echo "bench: swoole-$mode says $key=${said:-?}, started $server_pid" >&2
            name="swoole"; [ "$mode" = base ] && name="swoole-base"
            run_py swoole "$name" --url "ws://127.0.0.1:$port/?uid={i}" --connections "$conns" --duration "$duration" \
                --warmup "$warmup" --replies 2
            stop
        else
            failed+=("swoole/swoole-$mode")
        fi
    done
else
    skip swoole "$swoole_reason"
fi

# 8. A steady run: echo tasks at a steady rate on the SQLite store for $steady_seconds s; RSS and the SQLite files'
# size (taskgate.sqlite, -wal, -shm) sampled from the start to the end, tasks done and errors.
if [ "$have_picows" = 1 ]; then
    echo "${steady_flags[*]}" >"$results/steady.flags"
    start_taskgate taskgate-steady --store sqlite "${steady_flags[@]}"
    run_py steady taskgate-sqlite --url "ws://127.0.0.1:$port/ws?uid=s{i}" --connections "$steady_conns" \
        --rate "$steady_rate" --duration "$steady_seconds" --warmup 0 --sample-interval "$steady_sample" \
        --db-dir "$work/taskgate-steady/data" --skip-first 1 --replies 3
    stop
else
    skip steady "$picows_missing"
fi

# 9. The cluster: 1 node and 3 nodes on one throwaway PostgreSQL (bench/cluster_bench.py: tasks/s, every task done
# exactly once, cross-node delivery latency, node and database CPU per task).
cluster_reason=""
if [ "$have_picows" = 0 ]; then
    cluster_reason="$picows_missing"
elif ! python3 -c 'import sys; sys.path.insert(0, "Tests/e2e"); import pg; sys.exit(pg.find_bindir() is None)'; then
    cluster_reason="PostgreSQL is not installed (apt-get install -y postgresql; Tests/e2e/pg.py starts its own)"
fi
if [ -z "$cluster_reason" ]; then
    echo "bench: cluster / 1 and 3 nodes"
    if python3 bench/cluster_bench.py --bin "$taskgate" --nodes 1,3 --seconds "$cluster_seconds" \
        --connections "$cluster_conns" --samples "$cluster_samples" --json-out "$results/cluster--nodes.json" \
        >"$work/cluster.out" 2>"$work/cluster.err"; then
        :
    else
        echo "bench: cluster FAILED (exit code $?)" >&2; tail -8 "$work/cluster.err" >&2
        failed+=("cluster")
    fi
    tail -n 6 "$work/cluster.out" | sed 's/^/    /'
else
    skip cluster "$cluster_reason"
fi

python3 bench/report.py "$results" --smoke "$smoke" ${out:+--out "$out"}
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: scenarios that did not run: ${failed[*]}" >&2
    exit 1
fi
