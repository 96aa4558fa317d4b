# Sourced by the test scripts: starts `taskgate serve` on a free loopback port and stops it on exit.
#   start_taskgate NAME OUTDIR [serve flags…]   sets PORT and SERVER_PID, exits 4 if the server does not come up
#   stop_taskgate                               SIGTERM, then SIGKILL after 10 s

SERVER_PID=""
PORT=""

stop_taskgate() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

start_taskgate() {
    local name="$1" outdir="$2"
    shift 2
    mkdir -p "$outdir/server-log"
    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # --shutdown-grace 1: tasks a test left running must not hold up the stop.
    "$BIN" serve --host 127.0.0.1 --port "$PORT" --store memory --shutdown-grace 1 --log-dir "$outdir/server-log" "$@" \
        >"$outdir/server.log" 2>&1 &
    SERVER_PID=$!
    local up=""
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" \
            2>/dev/null; then up=1; break; fi
        sleep 0.2
    done
    if [ -z "$up" ]; then
        echo "$name: the server did not come up on 127.0.0.1:$PORT; its output:" >&2
        tail -n 30 "$outdir/server.log" >&2
        exit 4
    fi
}
