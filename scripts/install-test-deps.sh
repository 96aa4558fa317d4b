#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks: C headers for the Swift packages, Chromium and its
# driver for the browser tests, PHP for the example worker handler, PostgreSQL for the cluster tests (they start their
# own throwaway server on a loopback port; Tests/e2e/pg.py), and the Python packages of the end-to-end suite. Installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -e /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v curl >/dev/null || missing+=(curl)
command -v php >/dev/null || missing+=(php-cli)
php -r 'exit(extension_loaded("curl") ? 0 : 1);' 2>/dev/null || missing+=(php-curl)  # clients/php
command -v pgrep >/dev/null || missing+=(procps)
have_postgres() {  # initdb/pg_ctl/postgres where Tests/e2e/pg.py looks for them, and psql
    local dirs=() d
    if command -v pg_config >/dev/null; then dirs+=("$(pg_config --bindir 2>/dev/null || true)"); fi
    dirs+=(/usr/lib/postgresql/*/bin)
    for d in "${dirs[@]}"; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            [ -x "$d/psql" ] || command -v psql >/dev/null
            return
        fi
    done
    return 1
}
have_postgres || missing+=(postgresql)
# The benchmark smoke run (bench/run.sh --smoke): node's `ws` baseline and wrk.
command -v node >/dev/null || missing+=(nodejs)
[ -e /usr/share/nodejs/ws ] || node -e "require('ws')" 2>/dev/null || missing+=(node-ws)
command -v wrk >/dev/null || missing+=(wrk)
# The type check of the browser client's declarations, public/taskgate.d.ts (Tests/e2e/test_typescript.py).
command -v tsc >/dev/null || missing+=(node-typescript)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import pytest, websockets, requests, selenium, yaml, jsonschema, openapi_spec_validator, httpx, jwt, opentelemetry.proto" 2>/dev/null; then
    echo "installing Python packages from Tests/e2e/requirements.txt"
    python3 -m pip install -q -r Tests/e2e/requirements.txt
fi
# The Python client package for backends (clients/python) as pip installs it, with its RS256 extra; again whenever the
# installed copy is not this checkout's (Tests/e2e/test_client_python.py checks that too).
if ! python3 - 2>/dev/null <<'EOF'
import filecmp, pathlib, taskgate_client
src = pathlib.Path("clients/python/src/taskgate_client")
dst = pathlib.Path(taskgate_client.__file__).parent
assert all(filecmp.cmp(f, dst / f.name, shallow=False) for f in src.iterdir() if f.is_file())
EOF
then
    echo "installing the Python client package from clients/python"
    python3 -m pip install -q './clients/python[rs256]'
fi
