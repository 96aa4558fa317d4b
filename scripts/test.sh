#!/usr/bin/env bash
# Runs every test: the Swift unit and server tests, then the end-to-end suite that starts the real binary and
# drives it with a Python WebSocket client, HTTP clients, the CLI and headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
swift build
swift test
TASKGATE_BIN="$PWD/.build/debug/taskgate" python3 -m pytest Tests/e2e -q
