"""The taskgate CLI (submit/status/cancel/list/reload/handlers/tasks) against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import ADMIN_TOKEN, REPO, TASKGATE_BIN, free_port, new_uid, run, wait_task_final

TASK_ID = re.compile(r"\bt-[A-Za-z0-9]+\b")


def cli(*args: str, url: str | None = None, env: dict | None = None, timeout: float = 30.0):
    full_env = {k: v for k, v in os.environ.items() if k not in ("TASKGATE_URL", "TASKGATE_ADMIN_TOKEN")}
    full_env.update(env or {})
    cmd = [str(TASKGATE_BIN), *args]
    if url:
        cmd += ["--url", url]
    p = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    p.all = p.stdout + p.stderr  # type: ignore[attr-defined]
    return p


def test_submit_prints_task_id(server, api):
    uid = new_uid("cli")
    p = cli("submit", "echo", "--uid", uid, "--arg", "text=hi", "--arg", "n=2", url=server.base_url)
    assert p.returncode == 0, p.all
    ids = TASK_ID.findall(p.stdout)
    assert ids, f"no task id in output: {p.all!r}"
    task = wait_task_final(api, server.base_url, ids[0])
    assert task["uid"] == uid
    assert task["args"] == {"text": "hi", "n": 2}, "--arg values are JSON when they parse, else text"
    assert task["result"] == {"text": "hi", "n": 2}


def test_submit_with_id_and_wait(server):
    t0 = time.monotonic()
    p = cli("submit", "sleep", "--arg", "ms=300", "--wait", url=server.base_url)
    assert p.returncode == 0, p.all
    assert time.monotonic() - t0 >= 0.3
    assert "succeeded" in p.stdout, p.all
    assert "slept_ms" in p.stdout and "300" in p.stdout

    tid = "cli-" + new_uid("id")[2:]
    p = cli("submit", "echo", "--id", tid, "--wait", url=server.base_url)
    assert p.returncode == 0 and tid in p.stdout, p.all


def test_submit_errors(server):
    p = cli("submit", "resize", url=server.base_url)
    assert p.returncode != 0
    assert "404" in p.all and "unknown_command" in p.all, p.all
    p = cli("submit", "sleep", "--arg", "ms=-5", url=server.base_url)
    assert p.returncode != 0 and "400" in p.all, p.all


def test_status_and_cancel(server, api):
    p = cli("submit", "sleep", "--arg", "ms=10000", url=server.base_url)
    assert p.returncode == 0, p.all
    tid = TASK_ID.findall(p.stdout)[0]
    p = cli("status", tid, url=server.base_url)
    assert p.returncode == 0, p.all
    assert tid in p.stdout and re.search(r"\b(queued|running)\b", p.stdout), p.all
    p = cli("cancel", tid, url=server.base_url)
    assert p.returncode == 0, p.all
    assert wait_task_final(api, server.base_url, tid, 5)["status"] == "cancelled"
    p = cli("status", tid, url=server.base_url)
    assert p.returncode == 0 and "cancelled" in p.stdout, p.all
    p = cli("cancel", tid, url=server.base_url)
    assert p.returncode != 0 and "409" in p.all, p.all
    p = cli("status", "no-such-task", url=server.base_url)
    assert p.returncode != 0 and "404" in p.all and "not_found" in p.all, p.all


def test_list_shows_connected_websocket_client(server, ws_connect):
    uid = new_uid("cli-list")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        p = await asyncio.to_thread(cli, "list", url=server.base_url)
        assert p.returncode == 0, p.all
        lines = [line for line in p.stdout.splitlines() if uid in line]
        assert len(lines) == 1, p.stdout
        assert "websocket" in lines[0]

    run(body())


def test_list_on_fresh_server_says_no_clients(start_server):
    fresh = start_server()
    p = cli("list", url=fresh.base_url)
    assert p.returncode == 0, p.all
    assert "no clients connected" in p.stdout.lower(), p.all


def test_reload_prints_generation(server, api):
    before = api.get(f"{server.base_url}/healthz").json()["generation"]
    p = cli("reload", url=server.base_url)
    assert p.returncode == 0, p.all
    m = re.search(r"generation\s+(\d+)", p.stdout)
    assert m, p.all
    assert int(m.group(1)) == before + 1
    assert api.get(f"{server.base_url}/healthz").json()["generation"] == before + 1


def test_handlers(server):
    p = cli("handlers", url=server.base_url)
    assert p.returncode == 0, p.all
    for name in ("echo", "fail", "primes", "sleep"):
        assert re.search(rf"^{name}\b", p.stdout, re.M), p.stdout


def test_tasks(server, api):
    uid = new_uid("cli-tasks")
    p = cli("submit", "echo", "--uid", uid, url=server.base_url)
    tid = TASK_ID.findall(p.stdout)[0]
    wait_task_final(api, server.base_url, tid)
    p = cli("tasks", url=server.base_url)
    assert p.returncode == 0 and tid in p.stdout, p.all
    p = cli("tasks", "--uid", uid, url=server.base_url)
    assert p.returncode == 0, p.all
    rows = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(rows) == 1 and tid in rows[0] and "succeeded" in rows[0], p.stdout
    p = cli("tasks", "--uid", uid, "--status", "failed", url=server.base_url)
    assert p.returncode == 0 and tid not in p.stdout, p.all
    p = cli("tasks", "--status", "bogus", url=server.base_url)
    assert p.returncode != 0 and "400" in p.all, p.all


def test_url_from_environment(server):
    p = cli("handlers", env={"TASKGATE_URL": server.base_url})
    assert p.returncode == 0 and "sleep" in p.stdout, p.all


def test_server_not_running(server):
    """Nothing listens on the port: a clear message, a non-zero exit, and no long hang
    (a refused connection is immediate, so the CLI has nothing to wait for)."""
    url = f"http://127.0.0.1:{free_port()}"
    commands = [("list",), ("submit", "echo"), ("status", "x"), ("reload",)]
    with ThreadPoolExecutor(len(commands)) as pool:  # in parallel: bounded by one slow invocation
        started = time.monotonic()
        results = list(pool.map(lambda a: (a, cli(*a, url=url, timeout=45), time.monotonic()), commands))
    for args, p, _ in results:
        assert p.returncode != 0, f"{args}: {p.all}"
        assert re.search(r"not running|server running|is the server", p.all, re.I), f"{args}: {p.all!r}"
        assert "Traceback" not in p.all and "Fatal error" not in p.all
    slowest = max(t for _, _, t in results) - started
    assert slowest < 10, f"the CLI took {slowest:.1f}s to report a refused connection"


def test_admin_token(token_server):
    p = cli("list", "--admin-token", "wrong", url=token_server.base_url)
    assert p.returncode != 0
    assert "401" in p.all, p.all
    p = cli("list", url=token_server.base_url)
    assert p.returncode != 0 and "401" in p.all, p.all
    p = cli("list", "--admin-token", ADMIN_TOKEN, url=token_server.base_url)
    assert p.returncode == 0, p.all
    p = cli("handlers", url=token_server.base_url, env={"TASKGATE_ADMIN_TOKEN": ADMIN_TOKEN})
    assert p.returncode == 0 and "echo" in p.stdout, p.all


def test_start_is_an_alias_of_serve():
    p = cli("start", "--help")
    assert p.returncode == 0, p.all
    assert "--port" in p.all and "--admin-token" in p.all
    s = cli("serve", "--help")
    assert s.returncode == 0
    top = cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "start" in top.stdout


def test_readme_settings_table_is_the_servers_own():
    """The README's table of server settings is what `serve --settings-table` prints from the same table as `--help`."""
    p = cli("serve", "--settings-table")
    assert p.returncode == 0, p.all
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert section.strip() == p.stdout.strip(), "README.md's settings table is stale: paste `taskgate serve --settings-table`"


def test_bad_settings_fail_fast_with_their_name(tmp_path):
    """A misspelled flag, a bad value from a variable, or an unknown key in the config file: a non-zero exit naming it."""
    p = cli("serve", "--task-wrokers", "2")
    assert p.returncode != 0 and "--task-wrokers" in p.all, p.all
    p = cli("serve", env={"TASKGATE_QUEUE_LIMIT": "lots"})
    assert p.returncode != 0 and "TASKGATE_QUEUE_LIMIT" in p.all, p.all
    config = tmp_path / "taskgate.json"
    config.write_text('{"server": {"header_timeuot": 3}}')
    p = cli("serve", "--config", str(config))
    assert p.returncode != 0 and "header_timeuot" in p.all, p.all


def test_a_setting_from_the_config_file_is_used_and_a_flag_wins(tmp_path, start_server):
    """`server.max_tasks_per_uid` and `server.task_workers` from the file; `--task-workers` wins over the file."""
    import requests
    config = tmp_path / "taskgate.json"
    config.write_text('{"server": {"task_workers": 3, "max_tasks_per_uid": 1, "store": "memory"}}')
    srv = start_server("--config", str(config), "--task-workers", "5")
    stats = requests.get(f"{srv.base_url}/api/v1/stats", timeout=10).json()
    assert stats["pool"]["workers"] == 5, stats
    uid = new_uid("cfg")
    first = requests.post(f"{srv.base_url}/poll", params={"uid": uid}, json={"cmd": "sleep", "args": {"ms": 5000}}, timeout=10)
    second = requests.post(f"{srv.base_url}/poll", params={"uid": uid}, json={"cmd": "sleep", "args": {"ms": 5000}}, timeout=10)
    assert first.json()["code"] == 202, first.text
    assert second.json()["code"] == 429, second.text  # the file's per-uid task limit of 1
