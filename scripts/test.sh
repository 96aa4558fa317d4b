#!/usr/bin/env bash
# Runs every test: the Swift unit and server tests, bounded libFuzzer runs, the end-to-end suite that starts the real
# binary and drives it with a Python WebSocket client, HTTP clients, the CLI and headless Chromium (and, with
# PostgreSQL, a three-node cluster; hostile clients and faults too), then Autobahn, schemathesis, a CI-sized run of
# the benchmark suite and a minute of the soak.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
swift build
# The Swift tests of the PostgreSQL store need a server: a throwaway one on 127.0.0.1 (Tests/e2e/pg.py) while
# `swift test` runs, unless TASKGATE_TEST_DATABASE_URL already names one. Without PostgreSQL those tests are skipped,
# or fail where TASKGATE_REQUIRE_POSTGRES=1.
test_postgres_pid=""
stop_test_postgres() {
    if [ -n "$test_postgres_pid" ]; then
        kill -TERM "$test_postgres_pid" 2>/dev/null || true
        wait "$test_postgres_pid" 2>/dev/null || true  # pg.py stops the server within its own time bound
        test_postgres_pid=""
        unset TASKGATE_TEST_DATABASE_URL  # the end-to-end tests start servers of their own
    fi
    if [ -n "${test_postgres_dir:-}" ]; then rm -rf "$test_postgres_dir"; fi
}
trap stop_test_postgres EXIT
if [ -z "${TASKGATE_TEST_DATABASE_URL:-}" ] \
    && python3 -c 'import sys; sys.path.insert(0, "Tests/e2e"); import pg; sys.exit(pg.find_bindir() is None)'; then
    test_postgres_dir="$(mktemp -d)"
    python3 Tests/e2e/pg.py --url-file "$test_postgres_dir/url" --exit-with-parent >"$test_postgres_dir/log" 2>&1 &
    test_postgres_pid=$!
    url_deadline=$((SECONDS + 120))  # pg.py bounds initdb and the start itself; this bounds the wait for its URL
    until [ -s "$test_postgres_dir/url" ] || [ "$SECONDS" -ge "$url_deadline" ]; do
        kill -0 "$test_postgres_pid" 2>/dev/null || break  # it gave up: its log says why
        sleep 0.25
    done
    if [ ! -s "$test_postgres_dir/url" ]; then
        echo "could not start PostgreSQL for the Swift tests:" >&2
        cat "$test_postgres_dir/log" >&2
        exit 1
    fi
    TASKGATE_TEST_DATABASE_URL="$(cat "$test_postgres_dir/url")"
    export TASKGATE_TEST_DATABASE_URL
fi
swift test
stop_test_postgres
# libFuzzer on the wire parser and writer, client-message decoding and the config loader: a bounded run per target
# from the seed corpus in fuzz/corpus (saved crashers in fuzz/regressions replay first). The upgrade_gate target
# compiles the whole server a second time with coverage (~10 min on 2 cores), so it runs when asked for:
# TASKGATE_FUZZ_TARGETS="wire_json client_message config upgrade_gate" (its pipeline is also in swift test).
# shellcheck disable=SC2086 # a list of target names
scripts/fuzz.sh --seconds "${TASKGATE_FUZZ_SECONDS:-30}" ${TASKGATE_FUZZ_TARGETS:-wire_json client_message config}
export TASKGATE_BIN="$PWD/.build/debug/taskgate"
python3 -m pytest Tests/e2e -q
# Tools nobody here wrote: the Autobahn WebSocket testsuite (a representative slice; `scripts/autobahn.sh` runs all
# of it but the slow 9.*) and schemathesis fuzzing the REST API against openapi.yaml.
# permessage-deflate: the first 8 cases of 12.1 and 13.1 (up to 4 KiB messages; the larger ones take ≈ 3 minutes
# and run in the full `scripts/autobahn.sh`).
scripts/autobahn.sh --cases "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*,12.1.1,12.1.2,12.1.3,12.1.4,12.1.5,12.1.6,12.1.7,12.1.8,13.1.1,13.1.2,13.1.3,13.1.4,13.1.5,13.1.6,13.1.7,13.1.8" --timeout 900
scripts/schemathesis.sh
# The benchmark suite, CI-sized: a few seconds per scenario; checks that every scenario runs, asserts no figures.
# Its Swoole peer (../shared/peers/swoole/swoole.so, loaded by php-cli) needs libbrotli1 as well, and its Python
# client picows (bench/requirements.txt).
if ! dpkg -s libbrotli1 >/dev/null 2>&1; then
    echo "installing Debian packages: libbrotli1"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libbrotli1 >/dev/null
fi
python3 -c 'import picows' 2>/dev/null || python3 -m pip install -q -r bench/requirements.txt
bench/run.sh --smoke
# A minute of the soak (bench/soak.sh runs ten): mixed load, reloads and slow consumers; fails if a task is lost or
# duplicated or the server dies.
TASKGATE_BENCH_CONFIGURATION=debug bench/soak.sh --seconds 60 --clients 10
# Reached only when every step passed (set -e): Swift tests, fuzzing, end-to-end, Autobahn, schemathesis,
# benchmark smoke, soak.
echo "suites: 7 passed, 0 failed"
