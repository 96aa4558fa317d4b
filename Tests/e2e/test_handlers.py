"""Handlers in any language (command and worker-process), soft reload from the config file, SIGHUP and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, TASKGATE_BIN, new_uid, run, wait_task_final

EXAMPLES = REPO / "examples"
NO_PROXY = {"http": None, "https": None}

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "php"], capture_output=True).returncode != 0 and not os.environ.get("TASKGATE_REQUIRE_PHP"),
    reason="php-cli is not installed (scripts/install-test-deps.sh installs it)")


def write_config(path: Path, handlers: dict) -> Path:
    """A config whose handlers run the examples (cwd made absolute, so the file can live anywhere)."""
    for handler in handlers.values():
        handler.setdefault("cwd", str(EXAMPLES))
    path.write_text("// written by the test\n" + json.dumps({"handlers": handlers}, indent=2))
    return path


REPORT = {"type": "command", "command": ["python3", "handlers/report.py"], "timeout_ms": 20000}
EXPORT = {"type": "worker", "command": ["php", "handlers/worker.php"], "processes": 1, "max_requests": 3,
          "timeout_ms": 20000}


@pytest.fixture
def handler_server(start_server, tmp_path):
    config = write_config(tmp_path / "taskgate.json", {"report": dict(REPORT), "export": dict(EXPORT)})
    server = start_server("--config", str(config), "--store", "memory")
    server.config_path = config
    return server


def submit(server, cmd: str, args: dict, uid: str | None = None) -> str:
    r = requests.post(f"{server.base_url}/api/v1/tasks", json={"cmd": cmd, "args": args, "uid": uid}, timeout=10,
                      proxies=NO_PROXY)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def final(server, task_id: str, timeout: float = 20) -> dict:
    return wait_task_final(requests.Session(), server.base_url, task_id, timeout)


# --------------------------------------------------------------------------- command handlers


def test_command_handler_progress_and_result(handler_server, ws_connect):
    uid = new_uid("cmd")

    async def body():
        ws = await ws_connect(uid, srv=handler_server)
        await ws.next()  # hello
        reply = await ws.request({"cmd": "report", "args": {"rows": 4}})
        assert reply["type"] == "submitted", reply
        events = await ws.events_until_done(reply["task"]["id"], timeout=20)
        progress = [e["task"]["progress"] for e in events if e["type"] == "progress" and e["task"]["progress"] > 0]
        assert progress == [0.25, 0.5, 0.75, 1.0], progress
        done = events[-1]["task"]
        assert done["status"] == "succeeded"
        assert done["result"]["rows"] == 4 and done["result"]["sum_of_squares"] == 30 and done["result"]["uid"] == uid

    run(body())


@pytest.mark.parametrize("args,expected", [
    ({"fail": "no data"}, "failed: no data"),
    ({"garbage": True}, "output is not JSON lines: 'this is not JSON'"),
    ({"exit_code": 3}, "exited with status 3: report.py: giving up on purpose"),
])
def test_command_handler_failures_are_explained(handler_server, args, expected):
    task = final(handler_server, submit(handler_server, "report", args, new_uid()))
    assert task["status"] == "failed"
    assert expected in task["error"], task["error"]


def _process_alive(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_command_handler_timeout_and_cancel_kill_the_process(handler_server):
    timed = submit(handler_server, "report", {"sleep_ms": 30000, "timeout_ms": 400, "rows": 1, "tag": "timeout-probe"})
    task = final(handler_server, timed)
    assert task["status"] == "timed_out", task
    cancelled = submit(handler_server, "report", {"sleep_ms": 30000, "rows": 1})
    deadline = time.monotonic() + 10
    while requests.get(f"{handler_server.base_url}/api/v1/tasks/{cancelled}", timeout=5, proxies=NO_PROXY).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # let the process start
    r = requests.post(f"{handler_server.base_url}/api/v1/tasks/{cancelled}/cancel", timeout=5, proxies=NO_PROXY)
    assert r.status_code == 200
    assert final(handler_server, cancelled, timeout=5)["status"] == "cancelled"
    time.sleep(0.3)
    assert not _process_alive("handlers/report.py"), "the handler process outlived its task"


# --------------------------------------------------------------------------- worker-process handlers


def test_worker_pool_serves_many_tasks_per_process_and_recycles(handler_server):
    pids = []
    for i in range(4):
        task = final(handler_server, submit(handler_server, "export", {"rows": 3}, new_uid()))
        assert task["status"] == "succeeded", task
        assert task["result"]["rows"] == 3 and task["result"]["bytes"] > 0
        pids.append((task["result"]["pid"], task["result"]["served"]))
    # max_requests 3, one process: three tasks on the first pid, then a fresh process.
    assert pids[0][0] == pids[1][0] == pids[2][0], pids
    assert [served for _, served in pids[:3]] == [1, 2, 3]
    assert pids[3][0] != pids[0][0] and pids[3][1] == 1, pids


def test_worker_progress_error_garbage_crash(handler_server, ws_connect):
    uid = new_uid("wrk")

    async def body():
        ws = await ws_connect(uid, srv=handler_server)
        await ws.next()
        reply = await ws.request({"cmd": "export", "args": {"rows": 2}})
        events = await ws.events_until_done(reply["task"]["id"], timeout=20)
        assert [e["task"]["progress"] for e in events if e["type"] == "progress"][-2:] == [0.5, 1.0]
        assert events[-1]["task"]["status"] == "succeeded"

    run(body())
    failed = final(handler_server, submit(handler_server, "export", {"fail": "disk full"}))
    assert failed["status"] == "failed" and failed["error"] == "export failed: disk full"
    garbage = final(handler_server, submit(handler_server, "export", {"garbage": True}))
    assert garbage["status"] == "failed" and "not a JSON line" in garbage["error"], garbage
    crashed = final(handler_server, submit(handler_server, "export", {"crash": True}))
    assert crashed["status"] == "failed" and "crashed during the task" in crashed["error"], crashed
    assert "crashing on purpose" in crashed["error"], "the error should quote the worker's stderr"
    # The pool restarts a process and goes on.
    after = final(handler_server, submit(handler_server, "export", {"rows": 1}))
    assert after["status"] == "succeeded", after


def test_worker_timeout_and_cancel_replace_the_process(handler_server):
    first = final(handler_server, submit(handler_server, "export", {"rows": 1}))["result"]["pid"]
    timed = final(handler_server, submit(handler_server, "export", {"sleep_ms": 30000, "timeout_ms": 400}))
    assert timed["status"] == "timed_out", timed
    second = final(handler_server, submit(handler_server, "export", {"rows": 1}))
    assert second["status"] == "succeeded" and second["result"]["pid"] != first


# --------------------------------------------------------------------------- config errors and reload


def test_bad_config_is_a_clear_startup_error(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text('{\n  "handlers": {\n    "x": {"type": "worker", "command": ["php"], "proceses": 2}\n  }\n}\n')
    result = subprocess.run([str(TASKGATE_BIN), "serve", "--port", "0", "--config", str(config), "--store", "memory",
                             "--log-dir", str(tmp_path / "log")], capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert str(config) in output and "handlers.x.proceses" in output and "unknown key" in output, output

    config.write_text('{\n  "handlers": {\n    "x": {"type": "worker" "command": []}\n  }\n}\n')
    result = subprocess.run([str(TASKGATE_BIN), "serve", "--port", "0", "--config", str(config), "--store", "memory",
                             "--log-dir", str(tmp_path / "log")], capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert "line 3" in result.stdout + result.stderr, result.stdout + result.stderr


def test_reload_under_load_keeps_connections_and_uses_new_handlers(handler_server, ws_connect):
    uid = new_uid("reload")
    base = handler_server.base_url

    async def body():
        ws = await ws_connect(uid, srv=handler_server)
        await ws.next()
        running = (await ws.request({"cmd": "sleep", "args": {"ms": 1500}}))["task"]["id"]
        old_worker = (await ws.request({"cmd": "export", "args": {"rows": 2, "sleep_ms": 800}}))["task"]["id"]
        poll_cursor = requests.get(f"{base}/poll", params={"uid": uid, "timeout": 0}, timeout=5, proxies=NO_PROXY).json()["cursor"]
        await ws.wait_for(lambda m: m.get("type") == "progress" and m["task"]["id"] == old_worker, 10, "export running")

        # Change the config: a new handler, a changed one (export), and reload while tasks run.
        write_config(handler_server.config_path, {
            "report": dict(REPORT), "export": dict(EXPORT, processes=2), "report2": dict(REPORT, description="new")})
        r = requests.post(f"{base}/api/v1/reload", timeout=10, proxies=NO_PROXY)
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["added"] == ["report2"] and result["changed"] == ["export"] and result["removed"] == []
        assert "report2" in result["handlers"]

        # Connections stay, running tasks finish, events keep coming.
        await ws.ping()
        for task_id in (running, old_worker):
            events = await ws.events_until_done(task_id, timeout=15)
            assert events[-1]["task"]["status"] == "succeeded", events[-1]
        polled = requests.get(f"{base}/poll", params={"uid": uid, "cursor": poll_cursor, "timeout": 5}, timeout=10,
                              proxies=NO_PROXY).json()
        assert any(e["type"] == "done" for e in polled["events"])
        fresh = await ws.request({"cmd": "report2", "args": {"rows": 1}})
        assert fresh["type"] == "submitted"
        assert (await ws.events_until_done(fresh["task"]["id"], 20))[-1]["task"]["status"] == "succeeded"

        # A broken config is refused and the handlers in force stay.
        handler_server.config_path.write_text('{"handlers": {"report": {"type": "command"}}}')
        r = requests.post(f"{base}/api/v1/reload", timeout=10, proxies=NO_PROXY)
        assert r.status_code == 400
        assert "handlers.report.command" in r.json()["info"] and "stay in force" in r.json()["info"], r.json()
        still = await ws.request({"cmd": "report2", "args": {"rows": 1}})
        assert still["type"] == "submitted"
        await ws.events_until_done(still["task"]["id"], 20)
        admin = await ws_connect(new_uid("adm"), admin=True, srv=handler_server)
        await admin.next()
        refused = await admin.request({"cmd": "reload"})
        assert refused["type"] == "error" and refused["code"] == 400

    run(body(), timeout=60)


def test_sighup_reloads(handler_server):
    before = requests.get(f"{handler_server.base_url}/healthz", timeout=5, proxies=NO_PROXY).json()["generation"]
    handler_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while requests.get(f"{handler_server.base_url}/healthz", timeout=5, proxies=NO_PROXY).json()["generation"] == before:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.05)


# --------------------------------------------------------------------------- graceful shutdown


def test_sigterm_lets_running_tasks_finish_then_closes_websockets(start_server, ws_connect, tmp_path):
    server = start_server("--data-dir", str(tmp_path / "data"), "--shutdown-grace", "10")
    uid = new_uid("term")

    async def body():
        ws = await ws_connect(uid, srv=server)
        await ws.next()
        reply = await ws.request({"cmd": "sleep", "args": {"ms": 1200}})
        await ws.wait_for(lambda m: m.get("type") == "progress", 5, "the task running")
        server.proc.send_signal(signal.SIGTERM)
        events = await ws.events_until_done(reply["task"]["id"], timeout=15)
        assert events[-1]["task"]["status"] == "succeeded"
        # Then the server closes the socket with a proper close frame.
        try:
            while True:
                await ws._recv_one(15)
        except Exception:
            pass
        assert ws.conn.close_code == 1001, ws.conn.close_code  # going away: the server is shutting down

    run(body(), timeout=40)
    assert server.proc.wait(timeout=20) == 0


def test_sigterm_past_the_grace_records_the_task_as_interrupted(start_server, tmp_path):
    data = tmp_path / "data"
    server = start_server("--data-dir", str(data), "--shutdown-grace", "1")
    task_id = submit(server, "sleep", {"ms": 30000, "max_attempts": 1}, new_uid())
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    again = start_server("--data-dir", str(data))
    task = requests.get(f"{again.base_url}/api/v1/tasks/{task_id}", timeout=5, proxies=NO_PROXY).json()
    assert task["status"] == "failed" and task["error"].startswith("interrupted"), task
