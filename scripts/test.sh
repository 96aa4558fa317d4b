#!/usr/bin/env bash
# Runs every test: the Swift unit and server tests, the end-to-end suite that starts the real binary and drives it
# with a Python WebSocket client, HTTP clients, the CLI and headless Chromium (and, with PostgreSQL, a three-node
# cluster), then Autobahn, schemathesis and a CI-sized run of the benchmark suite.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
swift build
swift test
export TASKGATE_BIN="$PWD/.build/debug/taskgate"
python3 -m pytest Tests/e2e -q
# Tools nobody here wrote: the Autobahn WebSocket testsuite (a representative slice; `scripts/autobahn.sh` runs all
# of it but the slow 9.*) and schemathesis fuzzing the REST API against openapi.yaml.
scripts/autobahn.sh --cases "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*,12.1.*,13.1.*" --timeout 900
scripts/schemathesis.sh
# The benchmark suite, CI-sized: a few seconds per scenario; checks that every scenario runs, asserts no figures.
bench/run.sh --smoke
# Reached only when every step passed (set -e): Swift tests, end-to-end, Autobahn, schemathesis, benchmark smoke.
echo "suites: 5 passed, 0 failed"
