"""Faults underneath the server: the SQLite disk fills up, PostgreSQL restarts mid-run, a cluster node freezes
(SIGSTOP) past its lease and wakes up (SIGCONT).

Each scenario counts the tasks that got a 202 and never ended (lost) and the tasks with more than one `done`
(duplicated), prints a line ``fault NAME: accepted=N lost=L duplicated=D …`` and asserts both are 0.
These need root (mount, another user's processes) and skip only when the facility is really missing; the cluster
ones need PostgreSQL (fixture `postgres`: skipped without it unless TASKGATE_REQUIRE_POSTGRES=1).
Every wait is bounded; everything talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import websockets

from conftest import new_uid, wait_until
from test_cluster import LEASE_TIMEOUT, Follower, all_tasks, cluster, done_ids  # noqa: F401 - fixture

NO_PROXY = {"http": None, "https": None}
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def http(method: str, url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", 10)
    return requests.request(method, url, proxies=NO_PROXY, **kw)


def health(base: str) -> tuple[int | str, dict]:
    try:
        r = http("GET", f"{base}/healthz", timeout=5)
        return r.status_code, r.json()
    except (requests.RequestException, ValueError) as e:
        return type(e).__name__, {}


class EventReader(threading.Thread):
    """Reads one uid's events over WebSocket from cursor 0 in a background thread, reconnecting with its cursor."""

    def __init__(self, ws_url: str, uid: str, max_seconds: float = 180):
        super().__init__(daemon=True)
        self.ws_url, self.uid, self.max_seconds = ws_url, uid, max_seconds
        self.events: list[dict] = []
        self.cursor = 0
        self.connects = 0
        self.drops: list[str] = []
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self):
        asyncio.run(self._run())

    async def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < deadline:
            try:
                async with websockets.connect(f"{self.ws_url}?uid={self.uid}&cursor={self.cursor}", open_timeout=5,
                                              close_timeout=2, proxy=None, ping_interval=None,
                                              max_size=16 * 1024 * 1024) as ws:
                    self.connects += 1
                    await asyncio.wait_for(ws.recv(), 5)  # hello
                    self.ready.set()
                    while not self._halt.is_set() and time.monotonic() < deadline:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.2)
                        except asyncio.TimeoutError:
                            continue
                        msg = json.loads(raw)
                        if msg.get("type") in ("progress", "done") and "seq" in msg:
                            with self._lock:
                                self.events.append(msg)
                                self.cursor = max(self.cursor, msg["seq"])
            except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError) as e:
                self.drops.append(repr(e)[:200])
                await asyncio.sleep(0.3)

    def done_counts(self) -> Counter:
        with self._lock:
            return Counter(done_ids(self.events))

    def stop(self):
        self._halt.set()
        self.join(10)


def replay_done_counts(base: str, uid: str, timeout: float = 30) -> Counter:
    """Every done event in uid's log, by long-poll from cursor 0 (until a poll comes back empty)."""
    cursor, counts = 0, Counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = http("GET", f"{base}/poll", params={"uid": uid, "cursor": cursor, "timeout": 0}, timeout=15)
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        if not body["events"]:
            return counts
        counts.update(done_ids(body["events"]))
        cursor = body["cursor"]
    raise AssertionError(f"replay of {uid} did not finish within {timeout}s")


def tally(accepted: set[str], finals: dict[str, str], *done_counts: Counter) -> tuple[list[str], list[str]]:
    """(lost, duplicated): accepted tasks without a succeeded end or without a done; tasks with 2+ dones."""
    lost = sorted(t for t in accepted
                  if finals.get(t) != "succeeded" or any(c.get(t, 0) == 0 for c in done_counts))
    duplicated = sorted(t for t in accepted if any(c.get(t, 0) > 1 for c in done_counts))
    return lost, duplicated


# --------------------------------------------------------------------------- SQLite disk full


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MiB tmpfs (unmounted at teardown, after the servers of the test have stopped)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mnt = tmp_path / "full"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True,
                       timeout=20)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    yield mnt
    p = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=20)
    if p.returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def test_sqlite_disk_full_refuses_with_503_and_recovers_without_restart(small_tmpfs, start_server):
    srv = start_server("--data-dir", str(small_tmpfs), "--task-workers", "2", "--max-tasks-per-uid", "1000")
    base = srv.base_url
    uid = new_uid("disk")
    reader = EventReader(srv.ws_url, uid)
    reader.start()
    assert reader.ready.wait(10), "no WebSocket for the disk-full uid"
    accepted: set[str] = set()
    refused: Counter = Counter()
    codes_in_order: list = []
    payload = "d" * 40_000
    health_full = None
    other_doors: dict[str, object] = {}
    try:
        consecutive = 0
        for i in range(400):
            try:
                r = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "args": {"p": payload, "n": i}, "uid": uid})
                code = r.status_code
            except requests.RequestException as e:
                code = type(e).__name__
            codes_in_order.append(code)
            if code == 202:
                accepted.add(r.json()["id"])
                consecutive = 0
            else:
                refused[code] += 1
                consecutive += 1
                if consecutive >= 3:
                    break
        assert refused, f"400 submits of 40 KB fitted into a 3 MiB tmpfs? codes {Counter(codes_in_order)}"
        health_full = health(base)
        # The other front doors refuse too, with 503.
        try:
            r = http("POST", f"{base}/poll", params={"uid": uid}, json={"cmd": "echo", "args": {"p": payload}})
            other_doors["POST /poll"] = r.status_code
            if r.status_code == 202:
                accepted.add(r.json()["task"]["id"])
        except requests.RequestException as e:
            other_doors["POST /poll"] = type(e).__name__

        async def ws_submit():
            async with websockets.connect(f"{srv.ws_url}?uid={uid}", open_timeout=5, proxy=None) as ws:
                await asyncio.wait_for(ws.recv(), 5)
                await ws.send(json.dumps({"cmd": "echo", "args": {"p": payload}, "ref": "full"}))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m.get("ref") == "full":
                        return m

        try:
            m = asyncio.run(asyncio.wait_for(ws_submit(), 20))
            other_doors["websocket"] = m.get("code")
            if m.get("code") == 202:
                accepted.add(m["task"]["id"])
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            other_doors["websocket"] = repr(e)[:120]
        # Stay full a little while, so that the accepted tasks finish (or fail to write their results) on it.
        def settled_on_full_disk():
            h = health(base)[1]
            return h.get("running") == 0 and h.get("queued") == 0
        try:
            wait_until(settled_on_full_disk, 8, "the pool to be idle on the full disk", 0.2)
        except AssertionError:
            pass
        while_full = Counter()
        for tid in accepted:
            try:
                r = http("GET", f"{base}/api/v1/tasks/{tid}", timeout=5)
                while_full[r.json().get("status") if r.status_code == 200 else f"http {r.status_code}"] += 1
            except (requests.RequestException, ValueError) as e:
                while_full[type(e).__name__] += 1
        health_full_later = health(base)
        alive_when_full = srv.proc.poll() is None
    finally:
        # Space comes back, without a restart.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True, timeout=20)
        remounted_at = time.monotonic()

    # Space is back. Without any new traffic, /healthz must say so soon (a balancer that took the node out on the
    # 503 sends it nothing that could write and clear the state).
    def store_ok():
        code, body = health(base)
        return code == 200 and body.get("database") == "ok"
    try:
        wait_until(store_ok, 15, "/healthz ok after the remount, without traffic", 0.25)
    except AssertionError:
        pass
    healthy_idle_after = time.monotonic() - remounted_at
    healthy_idle = store_ok()
    health_idle = health(base)

    # How soon is a new submit accepted again? (Each probe is a small echo task.)
    probe_codes: Counter = Counter()
    first_accept_after = None
    probe_deadline = remounted_at + 75
    while srv.proc.poll() is None and time.monotonic() < probe_deadline:
        try:
            r = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "args": {"probe": 1}, "uid": uid}, timeout=5)
            probe_codes[r.status_code] += 1
            if r.status_code == 202:
                accepted.add(r.json()["id"])
                first_accept_after = time.monotonic() - remounted_at
                break
        except requests.RequestException as e:
            probe_codes[type(e).__name__] += 1
        time.sleep(0.25)  # pacing of the probes

    def finals_now() -> dict[str, str]:
        out = {}
        for tid in accepted:
            try:
                r = http("GET", f"{base}/api/v1/tasks/{tid}", timeout=5)
                out[tid] = r.json().get("status") if r.status_code == 200 else f"http {r.status_code}"
            except (requests.RequestException, ValueError) as e:
                out[tid] = type(e).__name__
        return out

    finals: dict[str, str] = {}
    final_after = float("nan")

    def all_final():
        nonlocal finals
        finals = finals_now()
        return all(s in FINAL for s in finals.values())

    try:
        if srv.proc.poll() is None:
            try:
                wait_until(all_final, 60, "every accepted task to end after space came back", 0.25)
            except AssertionError:
                pass
            final_after = time.monotonic() - remounted_at
            try:
                wait_until(lambda: reader.done_counts().keys() >= accepted, 20, "a done event per accepted task", 0.25)
            except AssertionError:
                pass
        health_after = health(base)
        def ok():
            code, body = health(base)
            return code == 200 and body.get("database") == "ok"
        try:
            healthy = wait_until(ok, 60, "/healthz to be 200 again", 0.25)
        except AssertionError:
            healthy = False
        healthy_after = time.monotonic() - remounted_at
        # A sentinel after everything: its done closes the observation of the older ones.
        sentinel = None
        if srv.proc.poll() is None:
            r = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "args": {"sentinel": 1}, "uid": uid})
            if r.status_code == 202:
                sentinel = r.json()["id"]
                try:
                    wait_until(lambda: sentinel in reader.done_counts(), 20, "the sentinel's done", 0.1)
                except AssertionError:
                    sentinel = f"{sentinel} (no done)"
            else:
                sentinel = f"submit -> {r.status_code} {r.text[:120]}"
        replay = replay_done_counts(base, uid) if srv.proc.poll() is None else Counter()
        listed = set()
        if srv.proc.poll() is None:
            r = http("GET", f"{base}/api/v1/tasks", params={"uid": uid, "limit": 1000})
            listed = {t["id"] for t in r.json()["tasks"]} if r.status_code == 200 else set()
    finally:
        reader.stop()
    live = reader.done_counts()
    lost, duplicated = tally(accepted, finals, live, replay)
    phantom = sorted(listed - accepted - ({sentinel} if isinstance(sentinel, str) else set()))
    print(f"fault disk-full: accepted={len(accepted)} refused={dict(refused)} lost={len(lost)} "
          f"duplicated={len(duplicated)} phantom={len(phantom)}")
    print(f"  after the remount, without traffic: /healthz ok={healthy_idle} after {healthy_idle_after:.1f}s "
          f"({health_idle[0]}, {str(health_idle[1].get('database'))[:60]})")
    print(f"  after the remount: first submit accepted after {first_accept_after if first_accept_after is None else round(first_accept_after, 1)}s "
          f"(probe answers {dict(probe_codes)})")
    print(f"  after the remount: every task final after {final_after:.1f}s, /healthz ok after {healthy_after:.1f}s")
    print(f"  while full: tasks {dict(while_full)}, healthz a few seconds in: {health_full_later}")
    print(f"  healthz while full: {health_full}; other doors while full: {other_doors}; "
          f"healthz after remount: {health_after}; healthy again: {bool(healthy)}; sentinel: {sentinel}")
    print(f"  final states: {Counter(finals.values())}; lost: {[(t, finals.get(t), live.get(t, 0), replay.get(t, 0)) for t in lost[:8]]}")
    if duplicated:
        print(f"  duplicated: {[(t, live.get(t), replay.get(t)) for t in duplicated[:8]]}")
    assert alive_when_full and srv.proc.poll() is None, f"the server died:\n{srv.output()[-3000:]}"
    assert set(refused) == {503}, f"submits on a full disk must get 503: {dict(refused)} (order {codes_in_order[-8:]})"
    code, body = health_full
    assert code == 503 or body.get("database") not in (None, "ok"), f"/healthz on a full disk: {health_full}"
    assert all(v == 503 for v in other_doors.values()), other_doors
    assert not lost and not duplicated, f"lost {lost[:10]} duplicated {duplicated[:10]}"
    assert not phantom, f"submits refused on the full disk were stored anyway: {phantom[:10]}"
    assert healthy, f"/healthz after the remount: {health(base)}"
    assert healthy_idle, f"/healthz still reports the store problem {healthy_idle_after:.0f}s after space came " \
                         f"back (no traffic meanwhile): {health_idle}"
    assert first_accept_after is not None and first_accept_after <= 15, \
        f"new submits were refused for {first_accept_after}s after space came back: {dict(probe_codes)}"
    assert isinstance(sentinel, str) and " " not in sentinel, f"a submit after the remount: {sentinel}"


# --------------------------------------------------------------------------- PostgreSQL restart under load


@pytest.mark.cluster
def test_postgres_restart_under_load_every_task_once(cluster, postgres, contract):
    a, b = cluster.start(["node-a", "node-b"], "--task-workers", "2")
    uid_ws, uid_lp = new_uid("pgws"), new_uid("pglp")
    followers = [Follower(uid_ws, "websocket", [a, b], contract), Follower(uid_lp, "long-poll", [b, a], contract)]
    for f in followers:
        f.start()
    for f in followers:
        assert f.connected.wait(10) and not f.errors, (f.uid, f.errors)
    rng = random.Random(11)
    accepted: dict[str, str] = {}          # task id -> uid
    refused: Counter = Counter()
    lock = threading.Lock()
    stop_submitting = threading.Event()

    def submitter():
        for i in range(40):
            if stop_submitting.is_set():
                return
            node, uid = (a, b)[i % 2], (uid_ws, uid_lp)[(i // 2) % 2]
            body = {"cmd": "sleep", "args": {"ms": rng.randint(200, 600)}, "uid": uid}
            try:
                r = http("POST", f"{node.base_url}/api/v1/tasks", json=body)
                with lock:
                    if r.status_code == 202:
                        accepted[r.json()["id"]] = uid
                    else:
                        refused[r.status_code] += 1
            except requests.RequestException as e:
                with lock:
                    refused[type(e).__name__] += 1
            stop_submitting.wait(0.15)  # pacing, so that submits straddle the restart

    sub = threading.Thread(target=submitter, daemon=True)
    sub.start()
    try:
        wait_until(lambda: sum(len(f.done_ids()) for f in followers) >= 4, 30, "the first done events")
        t0 = time.monotonic()
        postgres.stop("fast")
        # Down until a node has noticed (its /healthz says 503), so that submits meet the outage; then back.
        wait_until(lambda: any(health(n.base_url)[0] == 503 for n in (a, b)), 15, "a node to notice the outage", 0.1)
        postgres.start()
        down_s = time.monotonic() - t0
        sub.join(60)
        assert not sub.is_alive(), "the submitter did not finish"
        for node in (a, b):
            wait_until(lambda: health(node.base_url)[0] == 200 and health(node.base_url)[1].get("database") == "ok",
                       30, f"{node.port} to be healthy after the restart", 0.25)
        finals: dict[str, str] = {}

        def all_final():
            nonlocal finals
            tasks = all_tasks(requests_session(), a)
            finals = {t: (tasks.get(t) or {}).get("status") for t in accepted}
            return all(s in FINAL for s in finals.values())

        try:
            wait_until(all_final, 60, "every accepted task to end", 0.5)
        except AssertionError:
            pass
        by_uid = {u: {t for t, o in accepted.items() if o == u} for u in (uid_ws, uid_lp)}
        for f in followers:
            try:
                wait_until(lambda: by_uid[f.uid] <= set(f.done_ids()), 30, f"the done events of {f.uid}", 0.25)
            except AssertionError:
                pass
        # A sentinel per uid after everything, then the followers stop.
        for f, node in zip(followers, (b, a)):
            r = http("POST", f"{node.base_url}/api/v1/tasks", json={"cmd": "echo", "uid": f.uid})
            assert r.status_code == 202, r.text
            sid = r.json()["id"]
            wait_until(lambda: sid in f.done_ids(), 20, f"the sentinel done of {f.uid}", 0.1)
    finally:
        stop_submitting.set()
        if not postgres.is_running():
            postgres.start()
        for f in followers:
            f.stop()
    counts = [Counter(f.done_ids()) for f in followers]
    merged = counts[0] + counts[1]
    replays = replay_done_counts(a.base_url, uid_ws) + replay_done_counts(b.base_url, uid_lp)
    lost, duplicated = tally(set(accepted), finals, merged, replays)
    listed = set(all_tasks(requests_session(), b))
    sentinels = {t for c in counts for t in c} - set(accepted)
    phantom = sorted(listed - set(accepted) - sentinels)
    print(f"fault pg-restart: accepted={len(accepted)} refused={dict(refused)} lost={len(lost)} "
          f"duplicated={len(duplicated)} phantom={len(phantom)} restart took {down_s:.1f}s; "
          f"follower drops {[len(f.drops) for f in followers]}")
    # A long-poll answered 503 while the database was away is fine (the follower goes on); anything else is not.
    outage = [e for f in followers for e in f.errors if ": 503 " in e]
    errors = [e for f in followers for e in f.errors if ": 503 " not in e]
    print(f"  long-polls answered 503 during the restart: {len(outage)}")
    assert not errors, errors[:5]
    assert not lost and not duplicated, f"lost {lost[:10]} duplicated {duplicated[:10]}{cluster.diag()}"
    assert all(k == 503 for k in refused), f"submits during the restart: {dict(refused)}"
    assert not phantom, f"submits refused during the restart were stored anyway: {phantom[:10]}"


_SESSION: list[requests.Session] = []


def requests_session() -> requests.Session:
    """One plain session (no proxy, 10 s default timeout) for the listings of the main thread."""
    if _SESSION:
        return _SESSION[0]
    s = requests.Session()
    s.trust_env = False
    orig = s.request

    def request(method, url, *args, **kw):
        kw.setdefault("timeout", 10)
        return orig(method, url, *args, **kw)

    s.request = request  # type: ignore[method-assign]
    _SESSION.append(s)
    return s


# --------------------------------------------------------------------------- a node frozen past its lease

WHOAMI = r'''
import json, os, sys, time
node, ms, marks = sys.argv[1], int(sys.argv[2]), sys.argv[3]
task = json.loads(sys.stdin.readline())
time.sleep(ms / 1000)
open(os.path.join(marks, f"{task['id'].replace('/', '_')}.{node}.{os.getpid()}"), "w").close()
print(json.dumps({"result": {"node": node, "task": task["id"]}}), flush=True)
'''


def whoami_config(tmp: Path, node: str, ms: int, marks: Path) -> Path:
    script = tmp / "whoami.py"
    script.write_text(WHOAMI)
    cfg = tmp / f"taskgate-{node}.json"
    cfg.write_text(json.dumps({"handlers": {"whoami": {
        "type": "command", "command": [sys.executable, str(script), node, str(ms), str(marks)],
        "timeout_ms": 60000, "max_attempts": 3, "idempotent": True, "concurrency": 4}}}))
    return cfg


@pytest.mark.cluster
def test_node_frozen_past_its_lease_does_not_finish_twice(cluster, tmp_path, contract):
    marks = tmp_path / "marks"
    marks.mkdir()
    (victim,) = cluster.start(["node-a"], "--config", str(whoami_config(tmp_path, "node-a", 8000, marks)),
                              "--task-workers", "2")
    uid = new_uid("frozen")
    ids = []
    for i in range(2):
        r = http("POST", f"{victim.base_url}/api/v1/tasks", json={"cmd": "whoami", "args": {"i": i}, "uid": uid})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])

    def running_on_victim():
        tasks = all_tasks(requests_session(), victim)
        return all(tasks[t]["status"] == "running" and tasks[t].get("node") == "node-a" for t in ids)

    wait_until(running_on_victim, 15, "both tasks to run on node-a")
    (survivor,) = cluster.start(["node-b"], "--config", str(whoami_config(tmp_path, "node-b", 300, marks)))
    follower = Follower(uid, "websocket", [survivor], contract)
    follower.start()
    assert follower.connected.wait(10) and not follower.errors, follower.errors
    early = sorted(p.name for p in marks.iterdir())
    assert not early, f"node-a's tasks finished before it could be frozen (survivor too slow to start): {early}"
    frozen_at = time.monotonic()
    victim.proc.send_signal(signal.SIGSTOP)
    continued = False
    timeline = []
    try:
        def taken_over():
            tasks = all_tasks(requests_session(), survivor)
            return all(tasks[t]["status"] == "succeeded" for t in ids) and tasks
        tasks_b = wait_until(taken_over, LEASE_TIMEOUT + 30, "node-b to take both tasks over and finish them", 0.25)
        timeline.append(("taken over and finished on node-b", round(time.monotonic() - frozen_at, 1)))
        # node-a's own handler processes finish while it is frozen: their results wait in its pipes.
        wait_until(lambda: len([p for p in marks.iterdir() if ".node-a." in p.name]) >= 2, 20,
                   "node-a's handler processes to finish", 0.1)
        victim.proc.send_signal(signal.SIGCONT)
        continued = True
        woke_at = time.monotonic()
        timeline.append(("SIGCONT", round(woke_at - frozen_at, 1)))

        def settled():
            code, h = health(victim.base_url)
            return code == 200 and h.get("running") == 0 and h
        try:
            wait_until(settled, 25, "node-a to answer /healthz 200 with nothing running", 0.2)
            timeline.append(("node-a settled", round(time.monotonic() - frozen_at, 1)))
        except AssertionError as e:
            timeline.append(("node-a did not settle", str(e)[:200]))
        # A sentinel submitted on the woken node: its done closes the observation.
        r = http("POST", f"{victim.base_url}/api/v1/tasks", json={"cmd": "echo", "uid": uid})
        sentinel = r.json().get("id") if r.status_code == 202 else None
        timeline.append(("sentinel on node-a", r.status_code))
        if sentinel:
            wait_until(lambda: sentinel in follower.done_ids(), 20, "the sentinel's done", 0.1)
    finally:
        if not continued and victim.proc.poll() is None:
            victim.proc.send_signal(signal.SIGCONT)
        follower.stop()
    live = Counter(follower.done_ids())
    replay = replay_done_counts(victim.base_url, uid)
    views = {name: all_tasks(requests_session(), node) for name, node in (("node-a", victim), ("node-b", survivor))}
    overwritten = [(name, t, v[t].get("node"), (v[t].get("result") or {}).get("node"), v[t]["status"])
                   for name, v in views.items() for t in ids
                   if v[t].get("node") != "node-b" or (v[t].get("result") or {}).get("node") != "node-b"
                   or v[t]["status"] != "succeeded"]
    finals = {t: views["node-b"][t]["status"] for t in ids}
    lost, duplicated = tally(set(ids), finals, live, replay)
    attempts = {t: views["node-b"][t].get("attempts") for t in ids}
    print(f"fault sigstop: tasks={len(ids)} lost={len(lost)} duplicated={len(duplicated)} overwritten={len(overwritten)} "
          f"attempts={attempts} timeline={timeline}")
    if duplicated or overwritten:
        print(f"  live dones {dict(live)} replay dones {dict(replay)} overwritten {overwritten}")
    assert victim.proc.poll() is None, f"node-a died after SIGCONT:{cluster.diag()}"
    assert not follower.errors, follower.errors[:5]
    assert not duplicated, f"a second done after node-a woke up: live {dict(live)} replay {dict(replay)}"
    assert not overwritten, f"node-a's late result overwrote node-b's: {overwritten}"
    assert not lost, lost
    assert all(views["node-b"][t]["result"]["node"] == "node-b" for t in ids), tasks_b
