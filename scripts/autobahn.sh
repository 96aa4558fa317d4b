#!/usr/bin/env bash
# Runs the Autobahn WebSocket testsuite (wstest -m fuzzingclient) against TaskGate's /ws/echo, an echo WebSocket on
# the same stack and settings as /ws (permessage-deflate, validateUTF8, 1 MiB frame limit), and summarises it.
#
#   scripts/autobahn.sh [PRESET] [--cases LIST] [--exclude LIST] [--timeout SECONDS]
#
#   PRESET     full   every case except the slow 9.* (the default; 463 cases)
#              quick  1-7.*, 10.*, 12.1.*, 12.2.*, 13.1.*, 13.2.* (319 cases)
#              all    every case, 9.* included (517 cases; 9.1.4-9.1.6 and 9.2.4-9.2.6 send 4-16 MiB messages, over
#                     the 1 MiB frame limit: the server closes with 1009 and they FAIL by design)
#   --cases    comma-separated wstest case patterns instead of a preset, e.g. "1.*,5.*,12.1.*"
#   --exclude  comma-separated patterns to leave out (added to the preset's own exclusions)
#   --timeout  hard limit in seconds for wstest (default: quick 900, full 2400, all 5400, --cases 2400); measured
#              on 2 shared cores against a debug build: full ≈ 19 min (12.*/13.* take ~95% of it)
#
# Environment: TASKGATE_BIN (default .build/debug/taskgate; needs `serve --enable-echo`), TASKGATE_SERVE_ARGS (more
# serve flags, e.g. "--log-level debug"), AUTOBAHN_PYTHON (a CPython 2.7; default: pyenv's 2.7.18), AUTOBAHN_DIR
# (install folder, default .tools/autobahn).
#
# The testsuite (autobahntestsuite 0.8.2, Python 2 only) is installed on first use with pip --target into
# AUTOBAHN_DIR. Reports go to build/autobahn/reports (index.html for a browser, index.json and one JSON per case);
# wstest's and the server's output to build/autobahn/*.log. Exit status: 0 no case FAILED, 1 some case FAILED,
# 2 no usable report / incomplete run, 3 wstest timed out, 4 setup error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

preset="full"
cases=""
extra_exclude=""
wstest_timeout=""
while [ $# -gt 0 ]; do
    case "$1" in
        quick|full|all) preset="$1" ;;
        --cases) cases="${2:?--cases needs a list}"; preset="custom"; shift ;;
        --cases=*) cases="${1#--cases=}"; preset="custom" ;;
        --exclude) extra_exclude="${2:?--exclude needs a list}"; shift ;;
        --exclude=*) extra_exclude="${1#--exclude=}" ;;
        --timeout) wstest_timeout="${2:?--timeout needs seconds}"; shift ;;
        --timeout=*) wstest_timeout="${1#--timeout=}" ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "autobahn.sh: unknown argument '$1' (try --help)" >&2; exit 4 ;;
    esac
    shift
done

exclude=""
case "$preset" in
    quick) cases="1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*,12.1.*,12.2.*,13.1.*,13.2.*"; : "${wstest_timeout:=900}" ;;
    full) cases="*"; exclude="9.*"; : "${wstest_timeout:=2400}" ;;
    all) cases="*"; : "${wstest_timeout:=5400}" ;;
    custom) : "${wstest_timeout:=2400}" ;;
esac
[ -n "$extra_exclude" ] && exclude="${exclude:+$exclude,}$extra_exclude"

BIN="${TASKGATE_BIN:-.build/debug/taskgate}"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$ROOT/.tools/autobahn}"
OUT="$ROOT/build/autobahn"
REPORTS="$OUT/reports"

# --- a CPython 2.7 and the testsuite ------------------------------------------------------------------------------
find_python2() {
    local candidate
    for candidate in "${AUTOBAHN_PYTHON:-}" \
        "${PYENV_ROOT:+$PYENV_ROOT/versions/2.7.18/bin/python2.7}" \
        "$HOME/.pyenv/versions/2.7.18/bin/python2.7" \
        "$(command -v python2.7 || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
PY2="$(find_python2)" || {
    echo "autobahn.sh: no CPython 2.7 found (set AUTOBAHN_PYTHON; pyenv's 2.7.18 is the usual one)" >&2
    exit 4
}

if [ ! -f "$AUTOBAHN_DIR/.installed" ]; then
    echo "installing autobahntestsuite 0.8.2 into ${AUTOBAHN_DIR#$ROOT/} (with $PY2)"
    rm -rf "$AUTOBAHN_DIR.partial"
    mkdir -p "$(dirname "$AUTOBAHN_DIR")"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore \
        "$PY2" -m pip install -q --no-warn-script-location --target "$AUTOBAHN_DIR.partial" autobahntestsuite==0.8.2
    rm -rf "$AUTOBAHN_DIR"
    mv "$AUTOBAHN_DIR.partial" "$AUTOBAHN_DIR"
    touch "$AUTOBAHN_DIR/.installed"
fi

# The launcher uses site.addsitedir (not PYTHONPATH) so that the *-nspkg.pth of the zope namespace package that pip
# --target installs is processed: `python2.7 launcher.py AUTOBAHN_DIR ARGS...` runs wstest (or, with `--count SPEC`,
# prints how many cases a spec selects).
LAUNCHER="$AUTOBAHN_DIR/taskgate-wstest.py"
cat >"$LAUNCHER" <<'EOF'
import site, sys
site.addsitedir(sys.argv.pop(1))
if sys.argv[1:2] == ["--count"]:
    import json
    from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseBasename, CaseSetname
    from autobahntestsuite.caseset import CaseSet
    spec = json.load(open(sys.argv[2]))
    print(len(CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)))
    sys.exit(0)
sys.argv[0] = "wstest"
from autobahntestsuite.wstest import run
sys.exit(run())
EOF

# --- the server ---------------------------------------------------------------------------------------------------
if [ ! -x "$BIN" ]; then
    echo "autobahn.sh: no taskgate binary at $BIN (swift build, or set TASKGATE_BIN)" >&2
    exit 4
fi
# The help is read whole first: `grep -q` stops reading at the match, and under pipefail the writer's SIGPIPE would
# fail the check.
serve_help="$("$BIN" serve --help 2>/dev/null || true)"
if ! grep -q -- '--enable-echo' <<<"$serve_help"; then
    echo "autobahn.sh: $BIN has no 'serve --enable-echo' (rebuild it)" >&2
    exit 4
fi

rm -rf "$OUT"
mkdir -p "$REPORTS"
source "$ROOT/scripts/lib/taskgate-server.sh"
WSTEST_PID=""
cleanup() {
    [ -z "$WSTEST_PID" ] || kill -TERM "$WSTEST_PID" 2>/dev/null || true
    stop_taskgate
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2086 # TASKGATE_SERVE_ARGS is a list of flags, e.g. "--log-level debug"
start_taskgate autobahn.sh "$OUT" --enable-echo ${TASKGATE_SERVE_ARGS:-}

# --- the spec and the run -----------------------------------------------------------------------------------------
python3 - "$OUT/fuzzingclient.json" "$REPORTS" "ws://127.0.0.1:$PORT/ws/echo" "$cases" "$exclude" <<'EOF'
import json, sys
path, outdir, url, cases, exclude = sys.argv[1:6]
split = lambda s: [c.strip() for c in s.split(",") if c.strip()]
spec = {
    "outdir": outdir,
    "servers": [{"agent": "TaskGate", "url": url}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
EOF

selected="$(PYTHONWARNINGS=ignore "$PY2" "$LAUNCHER" "$AUTOBAHN_DIR" --count "$OUT/fuzzingclient.json")"
if [ "$selected" -eq 0 ]; then
    echo "autobahn.sh: the case selection '$cases' (minus '$exclude') matches no case" >&2
    exit 4
fi

echo "autobahn: $selected cases (${preset}: cases '$cases'${exclude:+, excluding '$exclude'}) against" \
    "ws://127.0.0.1:$PORT/ws/echo, wstest timeout ${wstest_timeout}s"
started=$(date +%s)
PYTHONWARNINGS=ignore timeout --signal=TERM --kill-after=15 "$wstest_timeout" \
    "$PY2" "$LAUNCHER" "$AUTOBAHN_DIR" -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/wstest.log" 2>&1 &
WSTEST_PID=$!
last_report=$started
while kill -0 "$WSTEST_PID" 2>/dev/null; do
    sleep 2
    now=$(date +%s)
    if [ $((now - last_report)) -ge 30 ]; then
        last_report=$now
        done_cases=$(grep -c '^Running test case ID' "$OUT/wstest.log" || true)
        echo "  … $((now - started)) s: case ${done_cases}/${selected} running"
    fi
done
wstest_rc=0
wait "$WSTEST_PID" || wstest_rc=$?
WSTEST_PID=""
elapsed=$(($(date +%s) - started))
server_died=""
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_died=1
    echo "autobahn.sh: the server EXITED during the run; the end of its output:" >&2
    tail -n 30 "$OUT/server.log" >&2
fi
# CPU seconds the server used (user + system), to tell server cost from client cost in slow cases.
server_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo "?")
stop_taskgate

if ! grep -q '^Running test case ID' "$OUT/wstest.log"; then
    echo "autobahn.sh: wstest ran no case; its output:" >&2
    tail -n 30 "$OUT/wstest.log" >&2
fi
if [ "$wstest_rc" -eq 124 ] || [ "$wstest_rc" -eq 137 ]; then
    echo "autobahn.sh: wstest TIMED OUT after ${wstest_timeout}s during case" \
        "$(grep '^Running test case ID' "$OUT/wstest.log" | tail -n 1 | awk '{print $5}') (no report is written" \
        "before the end); output in ${OUT#$ROOT/}/wstest.log" >&2
    exit 3
fi
echo "autobahn: wstest finished in ${elapsed}s (exit $wstest_rc; server CPU ${server_cpu}s); report: ${REPORTS#$ROOT/}/index.html"
echo
summary_rc=0
python3 scripts/autobahn_summary.py "$REPORTS" --agent TaskGate --expect-cases "$selected" \
    --json "$OUT/summary.json" || summary_rc=$?
if [ -n "$server_died" ] && [ "$summary_rc" -eq 0 ]; then
    exit 2
fi
if [ "$wstest_rc" -ne 0 ] && [ "$summary_rc" -eq 0 ]; then
    echo "autobahn.sh: wstest exited with $wstest_rc; output in ${OUT#$ROOT/}/wstest.log" >&2
    exit 2
fi
exit "$summary_rc"
