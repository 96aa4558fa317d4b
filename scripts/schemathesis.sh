#!/usr/bin/env bash
# Property-based API tests: Schemathesis generates requests from openapi.yaml (valid and invalid ones), sends them to
# a TaskGate started here, and checks every response against the spec (all checks: no 5xx, documented status codes,
# content types, headers and schemas, invalid input rejected, valid input accepted, auth really required, ...).
#
#   scripts/schemathesis.sh [--max-examples N] [--timeout SECONDS] [--seed N] [-- EXTRA st run ARGUMENTS]
#
#   --max-examples  test cases per operation and phase (default 50)
#   --timeout       hard limit for the whole `st run` (default 900 s)
#   --seed          Hypothesis seed, to repeat a run (default: random; the seed is printed)
#   after --        passed to `st run` as they are, e.g. `-- --include-path /poll`, `-- --phases fuzzing`, or
#                   `-- --exclude-checks unsupported_method` (the known failure: Hummingbird's router answers an
#                   undeclared method on a known path, e.g. TRACE /healthz, with 404 instead of 405 + Allow)
#
# Environment: TASKGATE_BIN (default .build/debug/taskgate), SCHEMATHESIS_DIR (virtualenv, default
# .tools/schemathesis), SCHEMATHESIS_VERSION (default 4.32.5, the version whose CLI this script uses),
# POLL_TIMEOUT_CAP (default 1; see scripts/schemathesis_hooks.py), REQUEST_TIMEOUT (per request, default 10 s).
#
# The server runs with --admin-token s3cret --store memory; every request carries `Authorization: Bearer s3cret`
# (the `ignored_auth` check also sends requests without it / with a wrong one). Per-operation settings are in
# scripts/schemathesis.toml, the GET /poll timeout cap in scripts/schemathesis_hooks.py. Reports (JUnit XML, JSON) and the
# server's output go to build/schemathesis/. Exit status: that of `st run` (0 all checks passed, 1 failures or
# errors), 3 when the hard timeout hit, 4 on a setup error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

max_examples=50
run_timeout=900
seed=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --max-examples) max_examples="${2:?}"; shift ;;
        --max-examples=*) max_examples="${1#*=}" ;;
        --timeout) run_timeout="${2:?}"; shift ;;
        --timeout=*) run_timeout="${1#*=}" ;;
        --seed) seed="${2:?}"; shift ;;
        --seed=*) seed="${1#*=}" ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "schemathesis.sh: unknown argument '$1' (try --help)" >&2; exit 4 ;;
    esac
    shift
done
[ -n "$seed" ] || seed=$(python3 -c 'import random; print(random.randrange(2**31))')

BIN="${TASKGATE_BIN:-.build/debug/taskgate}"
VENV="${SCHEMATHESIS_DIR:-$ROOT/.tools/schemathesis}"
VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
TOKEN="s3cret"
OUT="$ROOT/build/schemathesis"

# --- schemathesis, in a project-local virtualenv ------------------------------------------------------------------
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q " $VERSION\$"; then
    echo "installing schemathesis $VERSION into ${VENV#$ROOT/}"
    python3 -m venv "$VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q "schemathesis==$VERSION"
fi

# --- the server ---------------------------------------------------------------------------------------------------
if [ ! -x "$BIN" ]; then
    echo "schemathesis.sh: no taskgate binary at $BIN (swift build, or set TASKGATE_BIN)" >&2
    exit 4
fi
rm -rf "$OUT"
source "$ROOT/scripts/lib/taskgate-server.sh"
trap stop_taskgate EXIT
trap 'exit 130' INT TERM
start_taskgate schemathesis.sh "$OUT" --admin-token "$TOKEN"

# --- the run ------------------------------------------------------------------------------------------------------
echo "schemathesis $VERSION: openapi.yaml against http://127.0.0.1:$PORT, checks all, max examples $max_examples," \
    "seed $seed, hard timeout ${run_timeout}s"
started=$(date +%s)
rc=0
SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py" SCHEMATHESIS_CACHE_DIR="$ROOT/build/schemathesis-cache" \
    timeout --signal=TERM --kill-after=15 "$run_timeout" \
    "$VENV/bin/st" --config-file "$ROOT/scripts/schemathesis.toml" run openapi.yaml \
    --url "http://127.0.0.1:$PORT" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --request-timeout "${REQUEST_TIMEOUT:-10}" \
    --generation-database none \
    --no-color \
    --report junit,json --report-dir "$OUT" \
    "${extra[@]}" 2>&1 | tee "$OUT/st.log" || rc=${PIPESTATUS[0]}
elapsed=$(($(date +%s) - started))
stop_taskgate
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "schemathesis.sh: st run TIMED OUT after ${run_timeout}s (output in ${OUT#$ROOT/}/st.log)" >&2
    exit 3
fi
echo "schemathesis.sh: st run finished in ${elapsed}s with exit status $rc (seed $seed); reports in ${OUT#$ROOT/}/"
exit "$rc"
