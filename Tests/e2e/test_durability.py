"""Durability end to end: kill -9 mid-run, restart on the same data dir, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import websockets

from conftest import TASKGATE_BIN, _launch, new_uid

NO_PROXY = {"http": None, "https": None}


class WSCollector:
    """Reads a uid's events over WebSocket in a background thread until told to stop."""

    def __init__(self, url: str):
        self.url = url
        self.messages: list[dict] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.ready.wait(10), f"could not connect to {url}"

    async def _run(self):
        try:
            async with websockets.connect(self.url, compression="deflate", open_timeout=10) as ws:
                self.ws = ws
                self.ready.set()
                while not self._stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.2)
                    except asyncio.TimeoutError:
                        continue
                    self.messages.append(json.loads(raw))
        except (websockets.ConnectionClosed, OSError):
            pass  # the server was killed
        finally:
            self.ready.set()

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def events(self):
        return [m for m in self.messages if m.get("type") in ("progress", "done")]


def submit_ws(port: int, uid: str, messages: list[dict]) -> list[dict]:
    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?uid={uid}", open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # hello
            replies = []
            for message in messages:
                await ws.send(json.dumps(message))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if reply["type"] in ("submitted", "error"):
                        replies.append(reply)
                        break
            return replies

    return asyncio.run(go())


def poll_all(base: str, uid: str, cursor: int, until, timeout: float = 60) -> list[dict]:
    """Long-polls from `cursor` until `until(events)` holds; returns every event received, in order."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, f"timed out waiting for events of {uid}; got {events}"
        r = requests.get(f"{base}/poll", params={"uid": uid, "cursor": cursor, "timeout": 5}, timeout=15, proxies=NO_PROXY)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body["reset"], body
        events.extend(body["events"])
        cursor = body["cursor"]
    return events


def done_ids(events: list[dict]) -> list[str]:
    return [e["task"]["id"] for e in events if e["type"] == "done"]


def assert_strictly_increasing(seqs: list[int], what: str):
    assert all(b > a for a, b in zip(seqs, seqs[1:])), f"{what}: seq not strictly increasing: {seqs}"


def test_kill_9_mid_run_loses_nothing_and_repeats_nothing(tmp_path):
    data_dir = tmp_path / "data"
    server = _launch(tmp_path / "run1", ["--data-dir", str(data_dir), "--task-workers", "2"], None)
    ws_uid, poll_uid, rest_uid = new_uid("ws"), new_uid("lp"), new_uid("rest")
    tasks: dict[str, str] = {}  # id -> uid
    try:
        watcher = WSCollector(f"ws://127.0.0.1:{server.port}/ws?uid={ws_uid}")
        mix = lambda i: {"cmd": "sleep", "args": {"ms": 700 + 50 * (i % 4)}} if i % 3 else {"cmd": "echo", "args": {"i": i}}
        # Round-robin over the three front doors, so each uid has tasks all along the queue.
        for i in range(10):
            (reply,) = submit_ws(server.port, ws_uid, [mix(i)])
            assert reply["code"] == 202, reply
            tasks[reply["task"]["id"]] = ws_uid
            r = requests.post(f"{server.base_url}/poll", params={"uid": poll_uid}, json=mix(i), timeout=10, proxies=NO_PROXY)
            assert r.status_code == 202, r.text
            tasks[r.json()["task"]["id"]] = poll_uid
            # REST submits name their tasks (ids are per uid: the server reports rest_uid~rest-i).
            body = {"cmd": mix(i)["cmd"], "args": mix(i)["args"], "uid": rest_uid, "id": f"rest-{i}"}
            r = requests.post(f"{server.base_url}/api/v1/tasks", json=body, timeout=10, proxies=NO_PROXY)
            assert r.status_code == 202, r.text
            tasks[r.json()["id"]] = rest_uid
        # The long-poll client reads a little before the crash.
        seen_poll = poll_all(server.base_url, poll_uid, 0, lambda ev: len(ev) >= 1, timeout=20)
        time.sleep(0.4)
        # Mid-run: some tasks done, some running, most queued (2 workers, 30 tasks of up to ~0.85 s).
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
        watcher.stop()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()

    seen_ws = watcher.events()
    assert_strictly_increasing([e["seq"] for e in seen_ws], "websocket before crash")
    ws_cursor = seen_ws[-1]["seq"] if seen_ws else 0
    poll_cursor = seen_poll[-1]["seq"]
    finished_before = len(done_ids(seen_ws))
    assert finished_before < 10, "the crash came too late to test anything"

    restarted = _launch(tmp_path / "run2", ["--data-dir", str(data_dir), "--task-workers", "2"], None)
    try:
        base = restarted.base_url
        # WebSocket owner reconnects with its cursor and waits for every done it has not seen.
        expected_ws = {t for t, u in tasks.items() if u == ws_uid}
        missing_ws = expected_ws - set(done_ids(seen_ws))

        async def resume_ws():
            got = []
            async with websockets.connect(f"ws://127.0.0.1:{restarted.port}/ws?uid={ws_uid}&cursor={ws_cursor}", open_timeout=10) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert hello["type"] == "hello" and hello["reset"] is False, hello
                while not missing_ws <= set(done_ids(got)):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return got

        after_ws = asyncio.run(asyncio.wait_for(resume_ws(), 90))
        after_ws = [e for e in after_ws if e.get("type") in ("progress", "done")]
        assert after_ws and after_ws[0]["seq"] == ws_cursor + 1, "the replay must start right after the cursor"
        assert_strictly_increasing([e["seq"] for e in after_ws], "websocket after restart")
        all_ws_done = done_ids(seen_ws) + done_ids(after_ws)
        assert sorted(all_ws_done) == sorted(expected_ws), "each websocket task: exactly one done event"

        # Long-poll owner resumes from its cursor.
        expected_poll = {t for t, u in tasks.items() if u == poll_uid}
        after_poll = poll_all(base, poll_uid, poll_cursor,
                              lambda ev: expected_poll <= set(done_ids(seen_poll) + done_ids(ev)), timeout=90)
        assert after_poll[0]["seq"] == poll_cursor + 1
        assert_strictly_increasing([e["seq"] for e in seen_poll + after_poll], "long-poll across the restart")
        assert sorted(done_ids(seen_poll) + done_ids(after_poll)) == sorted(expected_poll)

        # The REST owner never connected: its whole log replays from 0.
        expected_rest = {t for t, u in tasks.items() if u == rest_uid}
        rest_events = poll_all(base, rest_uid, 0, lambda ev: expected_rest <= set(done_ids(ev)), timeout=90)
        assert_strictly_increasing([e["seq"] for e in rest_events], "rest uid")
        assert sorted(done_ids(rest_events)) == sorted(expected_rest)

        # Every task reached a final state, recorded once.
        for task_id, uid in tasks.items():
            r = requests.get(f"{base}/api/v1/tasks/{task_id}", timeout=10, proxies=NO_PROXY)
            assert r.status_code == 200
            assert r.json()["status"] == "succeeded", r.json()
            assert r.json()["uid"] == uid
        health = requests.get(f"{base}/healthz", timeout=10, proxies=NO_PROXY).json()
        assert health["queued"] == 0 and health["running"] == 0

        # Idempotent submit survives the restart.
        r = requests.post(f"{base}/api/v1/tasks", json={"cmd": "echo", "id": "rest-0", "uid": rest_uid}, timeout=10, proxies=NO_PROXY)
        assert r.status_code == 200 and r.json()["id"] == f"{rest_uid}~rest-0" and r.json()["id"] in expected_rest
    finally:
        restarted.stop()


def _start_expecting_failure(data_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TASKGATE_BIN), "serve", "--port", "0", "--data-dir", str(data_dir), "--log-dir", str(tmp_path / "log")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_unusable_data_dir_is_a_clear_startup_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    result = _start_expecting_failure(blocker / "data", tmp_path)
    assert result.returncode != 0
    assert "cannot open the task database" in result.stderr + result.stdout
    assert "Not a directory" in result.stderr + result.stdout


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("options,reason", [("ro,size=1m", "unable to open"), ("size=12k", "disk")])
def test_read_only_or_full_disk_is_a_clear_startup_error(tmp_path, options, reason):
    mount_point = tmp_path / "mnt"
    if not _mount_tmpfs(mount_point, options):
        pytest.skip("cannot mount a tmpfs here (needs root and mount privileges)")
    try:
        result = _start_expecting_failure(mount_point, tmp_path)
        assert result.returncode != 0, result.stdout
        output = result.stderr + result.stdout
        assert "cannot open the task database" in output and reason in output, output
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)
