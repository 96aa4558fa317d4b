"""A client of the Swoole task server, unchanged, against TaskGate: it connects to `/?uid=42` (not `/ws`), sends the
exact bytes the tutorial's browser sent, with an integer id, reads only `code`; an admin connection sends `clients`
and `reload`; and the tutorial's CLI verbs (start, reload, list) have their TaskGate counterparts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import requests
import websockets

from conftest import REPO, TASKGATE_BIN, run, wait_until

NO_PROXY = {"http": None, "https": None}
# A `report` handler as the ThinkPHP controller had it: the business id in, a result out.
REPORT_HANDLER = """
import json, sys
task = json.loads(sys.stdin.readline())
print(json.dumps({"result": {"id": task["args"]["id"], "status": True, "other": "report built"}}), flush=True)
"""


def swoole_config(tmp_path: Path) -> Path:
    handler = tmp_path / "report.py"
    handler.write_text(REPORT_HANDLER)
    config = tmp_path / "taskgate.json"
    config.write_text(json.dumps({"handlers": {"report": {"type": "command", "command": ["python3", str(handler)],
                                                          "timeout_ms": 20000}}}))
    return config


async def codes_until(ws, wanted: list[int], timeout: float = 15.0) -> list[dict]:
    """What a Swoole-era page does: it ignores messages without a `code` and reads the codes in order."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while [m["code"] for m in seen] != wanted:
            message = json.loads(await ws.recv())
            if "code" in message:
                seen.append(message)
                assert len(seen) <= len(wanted), seen
    return seen


def test_a_swoole_era_browser_on_the_root_path(start_server, tmp_path):
    server = start_server("--config", str(swoole_config(tmp_path)), "--store", "memory")
    root = f"ws://127.0.0.1:{server.port}/"

    async def body():
        async with websockets.connect(f"{root}?uid=42", open_timeout=5, proxy=None, compression=None) as ws:
            await ws.send('{"cmd":"report","args":{"id":123}}')  # byte for byte, an integer id
            accepted, done = await codes_until(ws, [202, 200])
            assert accepted["info"] and done["info"]
            assert done["task"]["result"] == {"id": 123, "status": True, "other": "report built"}
            # The 202 has the whole task (the business id in its args); the 200 says what changed, without args.
            assert accepted["task"]["args"] == {"id": 123} and "args" not in done["task"], (accepted, done)
            # A cmd with an id that no handler serves: 404, as method_exists() answered.
            await ws.send('{"cmd":"nosuchreport","args":{"id":124}}')
            (missing,) = await codes_until(ws, [404])
            assert missing["info"]

        # The tutorial's CLI talked to `/` from 127.0.0.1: in dev mode a loopback connection with ?admin=1 is admin.
        async with websockets.connect(f"{root}?uid=ops&admin=1", open_timeout=5, proxy=None) as admin, \
                websockets.connect(f"{root}?uid=42", open_timeout=5, proxy=None) as browser:
            # Its hello comes once it is registered: only then must `clients` list it.
            assert json.loads(await asyncio.wait_for(browser.recv(), 5))["type"] == "hello"
            await admin.send('{"cmd":"clients"}')
            reply = await asyncio.wait_for(_first(admin, lambda m: m.get("type") == "clients"), 5)
            assert "42" in {c["uid"] for c in reply["clients"]}
            await admin.send('{"cmd":"reload"}')
            reply = await asyncio.wait_for(_first(admin, lambda m: m.get("type") == "reloaded"), 10)
            assert reply["generation"] == 2 and "report" in reply["handlers"]

    run(body())
    # A plain GET of `/` is still the demo page.
    page = requests.get(f"http://127.0.0.1:{server.port}/", timeout=5, proxies=NO_PROXY)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def _first(ws, predicate):
    while True:
        message = json.loads(await ws.recv())
        if predicate(message):
            return message


def test_ws_path_is_configurable(start_server):
    server = start_server("--store", "memory", "--ws-path", "/socket", "--ws-path", "/legacy/ws")

    async def body():
        for path in ("/socket", "/legacy/ws", "/", "/ws"):
            async with websockets.connect(f"ws://127.0.0.1:{server.port}{path}?uid=7", open_timeout=5, proxy=None) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
        try:
            await websockets.connect(f"ws://127.0.0.1:{server.port}/elsewhere?uid=7", open_timeout=5, proxy=None)
            raise AssertionError("an upgrade on a path that is not a WebSocket path was accepted")
        except websockets.exceptions.InvalidStatus as refused:
            assert refused.response.status_code == 404

    run(body())


def test_bad_ws_paths_stop_the_start_with_a_reason(tmp_path):
    for bad in ("socket", "/api/v1/tasks", "/ws?x=1"):
        result = subprocess.run([str(TASKGATE_BIN), "serve", "--port", "0", "--store", "memory", "--ws-path", bad],
                                capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert result.returncode != 0, bad
        assert "--ws-path" in result.stderr + result.stdout


def test_the_tutorials_cli_verbs(start_server, tmp_path):
    """`php swoole.php start | reload | list` → `taskgate serve` (the fixture), `taskgate reload`, `taskgate list`."""
    server = start_server("--config", str(swoole_config(tmp_path)), "--store", "memory")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(TASKGATE_BIN), *args, "--url", server.base_url], capture_output=True, text=True,
                              timeout=30, cwd=REPO)

    async def body():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/?uid=42", open_timeout=5, proxy=None) as browser:
            assert json.loads(await asyncio.wait_for(browser.recv(), 5))["type"] == "hello"  # registered by now
            listed = await asyncio.to_thread(cli, "list")
            assert listed.returncode == 0 and "42" in listed.stdout, listed.stdout + listed.stderr

    run(body())
    reloaded = cli("reload")
    assert reloaded.returncode == 0 and "generation 2" in reloaded.stdout, reloaded.stdout + reloaded.stderr
    # And SIGHUP, what `systemctl reload` sends (examples/taskgate.service).
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _generation(server) >= 3, timeout=10,
               what="a reload on SIGHUP")


def _generation(server) -> int:
    r = requests.get(f"{server.base_url}/api/v1/handlers", timeout=5, proxies=NO_PROXY)
    return r.json()["generation"] if r.status_code == 200 else 0


def test_the_systemd_unit_reloads_with_sighup():
    unit = (REPO / "examples" / "taskgate.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "ExecStart=" in unit and " serve " in unit
