"""Task scheduling end to end, on one node: fair share across uids, priorities (0 first), delayed tasks
(`args.delay_ms`, `args.run_at`) on every front door, cancel and restart of scheduled tasks, per-handler rate
limits, and recurring cron schedules (ticks, `GET /api/v1/schedules`, `taskgate schedules`, reload, missed ticks).

Start delays and accuracy are measured with the server's own timestamps (createdAt, runAt, startedAt,
finishedAt), not with the client's clock. Every wait polls the API with a deadline; the only sleep is the
downtime of a stopped server (the point of the missed-tick and restart tests). Loopback only.
Helpers here are shared with test_cluster_schedules.py.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import pytest
import requests
import websockets

from conftest import (_OPEN_CLIENTS, REPO, TASKGATE_BIN, ServerHandle, ValidatingSession, WSClient, new_uid, run,
                      wait_until)

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
EARLY_SLACK = 0.05   # s: "never early", allowing for timestamps rounded to the millisecond
UTC_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
# A tick's task: client id schedule:<name>:<unix seconds>, stored as <uid>~<client id> (uid empty when null).
TICK_ID = re.compile(r"^(?:(?P<uid>[A-Za-z0-9._:@-]{0,128})~)?schedule:(?P<name>[A-Za-z0-9._-]{1,64}):(?P<unix>[0-9]+)$")
TASK_ID = re.compile(r"\bt-[A-Za-z0-9]+\b")


# --------------------------------------------------------------------------- time


def now() -> datetime:
    return datetime.now(timezone.utc)


def ts(stamp: str) -> datetime:
    """A task/schedule timestamp: RFC 3339 in UTC (`…Z`), as createdAt is written."""
    assert isinstance(stamp, str) and UTC_STAMP.match(stamp), f"not an RFC 3339 UTC timestamp: {stamp!r}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def iso_z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at_second(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, timezone.utc)


def start_delay(task: dict) -> float:
    return seconds(ts(task["startedAt"]), ts(task["createdAt"]))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --------------------------------------------------------------------------- REST, long-poll, WebSocket


def rest_submit(api, srv: ServerHandle, cmd: str, args: dict | None = None, uid: str | None = None,
                expect: int = 202) -> dict:
    body: dict = {"cmd": cmd, "args": args or {}}
    if uid is not None:
        body["uid"] = uid
    r = api.post(f"{srv.base_url}/api/v1/tasks", json=body)
    assert r.status_code == expect, f"POST /api/v1/tasks {body} -> {r.status_code} {r.text}"
    return r.json()


def get_task(api, srv: ServerHandle, task_id: str) -> dict:
    r = api.get(f"{srv.base_url}/api/v1/tasks/{task_id}")
    assert r.status_code == 200, f"GET /api/v1/tasks/{task_id} -> {r.status_code} {r.text}"
    return r.json()


def list_tasks(api, srv: ServerHandle, **params) -> list[dict]:
    params.setdefault("limit", 1000)
    r = api.get(f"{srv.base_url}/api/v1/tasks", params=params)
    assert r.status_code == 200, f"GET /api/v1/tasks {params} -> {r.status_code} {r.text}"
    return r.json()["tasks"]


def tasks_by_id(api, srv: ServerHandle, **params) -> dict[str, dict]:
    return {t["id"]: t for t in list_tasks(api, srv, **params)}


def wait_final(api, srv: ServerHandle, ids: Iterable[str], timeout: float) -> dict[str, dict]:
    """Every task of ids in a final status (bounded); returns them by id."""
    ids = list(ids)
    deadline = time.monotonic() + timeout
    while True:
        got = tasks_by_id(api, srv)
        missing = [i for i in ids if i not in got]
        for i in missing:  # not among the newest 1000: ask for it
            got[i] = get_task(api, srv, i)
        pending = {i: got[i]["status"] for i in ids if got[i]["status"] not in FINAL}
        if not pending:
            return {i: got[i] for i in ids}
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} of {len(ids)} tasks not final after {timeout}s: "
                                 f"{dict(list(pending.items())[:10])}")
        time.sleep(0.1)


def wait_started(api, srv: ServerHandle, task_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = get_task(api, srv, task_id)
        if task["startedAt"] is not None:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} not started after {timeout}s: {task}")
        time.sleep(0.03)


def poll_submit(api, srv: ServerHandle, uid: str, msg: dict, expect: int = 202, admin: bool = False) -> dict:
    params = {"uid": uid}
    if admin:
        params["admin"] = "1"
    r = api.post(f"{srv.base_url}/poll", params=params, json=msg)
    assert r.status_code == expect, f"POST /poll {msg} -> {r.status_code} {r.text}"
    reply = r.json()
    assert reply["code"] == expect, reply
    return reply


def uid_events(api, srv: ServerHandle, uid: str) -> list[dict]:
    """The uid's whole event log, read with GET /poll from cursor 0 (no waiting)."""
    events: list[dict] = []
    cursor = 0
    for _ in range(100):
        r = api.get(f"{srv.base_url}/poll", params={"uid": uid, "cursor": cursor, "timeout": 0}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        if not body["events"]:
            return events
        events += body["events"]
        cursor = body["cursor"]
    raise AssertionError(f"the event log of {uid} did not end after 100 polls")


def done_counts(events: list[dict]) -> Counter:
    return Counter(e["task"]["id"] for e in events if e["type"] == "done")


async def ws_open(srv: ServerHandle, uid: str, contract, admin: bool = False) -> WSClient:
    """A WSClient (messages checked against openapi.yaml) with its hello read; closed by conftest.run()."""
    url = f"{srv.ws_url}?uid={uid}" + ("&admin=1" if admin else "")
    conn = await websockets.connect(url, open_timeout=5, close_timeout=3, proxy=None, ping_interval=None,
                                    max_size=4 * 1024 * 1024)
    contract.covered.add(("/ws", "get", "101"))
    client = WSClient(conn, contract)
    _OPEN_CLIENTS.append(client)
    hello = await client.next(5)
    assert hello["type"] == "hello" and hello["uid"] == uid, hello
    assert hello["admin"] is admin, hello
    return client


def ws_exchange(srv: ServerHandle, uid: str, contract, msgs: list[dict], admin: bool = False) -> list[dict]:
    """Sends each message on one WebSocket and returns the direct replies, in order."""
    async def go():
        ws = await ws_open(srv, uid, contract, admin)
        return [await ws.request(m, timeout=10) for m in msgs]

    return run(go(), timeout=30)


def submit_parallel(contract, jobs: list[tuple[ServerHandle, dict]], threads: int = 8) -> list[dict]:
    """POST /api/v1/tasks for every (node, body), from `threads` threads (one validating session each)."""
    local = threading.local()
    sessions: list[ValidatingSession] = []
    lock = threading.Lock()

    def one(job):
        node, body = job
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = ValidatingSession(contract)
            with lock:
                sessions.append(session)
        r = session.post(f"{node.base_url}/api/v1/tasks", json=body)
        assert r.status_code == 202, f"POST /api/v1/tasks {body} -> {r.status_code} {r.text}"
        return r.json()

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, jobs))
    finally:
        for s in sessions:
            s.close()


def burst_then_one(api, contract, nodes: list[ServerHandle], burst: int, ms: int) -> tuple[dict, dict[str, dict]]:
    """uid A submits `burst` sleeps of `ms` (spread over nodes), then uid B one. Waits for B's task to start;
    returns it and A's tasks as listed right after (so: which of A's had not started when B did)."""
    uid_a, uid_b = new_uid("burst"), new_uid("single")
    jobs = [(nodes[i % len(nodes)], {"cmd": "sleep", "args": {"ms": ms}, "uid": uid_a}) for i in range(burst)]
    a_ids = [t["id"] for t in submit_parallel(contract, jobs)]
    assert len(set(a_ids)) == burst
    b = rest_submit(api, nodes[0], "sleep", {"ms": ms}, uid=uid_b)
    b_started = wait_started(api, nodes[0], b["id"], 60)
    a_now = tasks_by_id(api, nodes[0], uid=uid_a)
    assert set(a_ids) <= set(a_now), "uid A's tasks are not all listed"
    return b_started, {i: a_now[i] for i in a_ids}


# --------------------------------------------------------------------------- config files


QUICK_HANDLER = """\
import json, sys
task = json.loads(sys.stdin.readline())
print(json.dumps({"result": {"id": task["id"], "args": task.get("args")}}), flush=True)
"""


def quick_handler(tmp_path: Path, **settings) -> dict:
    """A `"type": "command"` handler: a tiny Python script that reads the task from stdin, prints one result line."""
    script = tmp_path / "quick_handler.py"
    script.write_text(QUICK_HANDLER)
    return {"type": "command", "command": [sys.executable, str(script)], "cwd": str(tmp_path),
            "timeout_ms": 20000, **settings}


def write_config(path: Path, *, handlers: dict | None = None, schedules: list | None = None,
                 server: dict | None = None) -> Path:
    doc: dict = {}
    if server is not None:
        doc["server"] = server
    if handlers is not None:
        doc["handlers"] = handlers
    if schedules is not None:
        doc["schedules"] = schedules
    path.write_text("// written by the scheduling tests\n" + json.dumps(doc, indent=2))
    return path


def refused_start(tmp_path: Path, *flags: str, timeout: float = 20.0) -> str:
    """Runs `taskgate serve` with flags, expecting it to refuse to start; returns its output."""
    if not TASKGATE_BIN.exists():
        pytest.fail(f"taskgate binary not found at {TASKGATE_BIN} (set TASKGATE_BIN)")
    args = [str(TASKGATE_BIN), "serve", "--host", "127.0.0.1", "--port", "0", "--store", "memory",
            "--log-dir", str(tmp_path / f"log-refused-{uuid.uuid4().hex[:8]}"), *flags]
    env = dict(os.environ)
    env.pop("TASKGATE_ADMIN_TOKEN", None)
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
        pytest.fail(f"`taskgate serve {' '.join(flags)}` should refuse to start, but it still runs after "
                    f"{timeout}s:\n{out[-2000:]}")
    assert proc.returncode != 0, f"`taskgate serve {' '.join(flags)}` exited 0:\n{out[-2000:]}"
    return out


def ticks_of(tasks: Iterable[dict], name: str) -> dict[int, list[dict]]:
    """The tasks of schedule `name` by the unix second of their tick (from the id schedule:<name>:<unix>)."""
    out: dict[int, list[dict]] = defaultdict(list)
    for t in tasks:
        m = TICK_ID.match(t["id"])
        if t.get("schedule") != name:
            assert not (m and m["name"] == name), f"a tick task of {name!r} without `schedule: {name}`: {t}"
            continue
        assert m and m["name"] == name, f"a task of schedule {name!r} whose id is not schedule:{name}:<unix>: {t}"
        out[int(m["unix"])].append(t)
    return dict(out)


def schedules_of(api, srv: ServerHandle) -> list[dict]:
    r = api.get(f"{srv.base_url}/api/v1/schedules")
    assert r.status_code == 200, f"GET /api/v1/schedules -> {r.status_code} {r.text}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("schedules"), list), body
    return body["schedules"]


def cli(*args: str, url: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TASKGATE_URL", "TASKGATE_ADMIN_TOKEN")}
    p = subprocess.run([str(TASKGATE_BIN), *args, "--url", url], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    p.all = p.stdout + p.stderr  # type: ignore[attr-defined]
    return p


# --------------------------------------------------------------------------- fair share


def test_fair_share_lets_a_second_uid_past_a_burst_and_fifo_does_not(start_server, api, contract):
    burst, ms = 40, 300
    fair_srv = start_server("--task-workers", "4")  # fair share is on by default
    fair_b, fair_a = burst_then_one(api, contract, [fair_srv], burst, ms)
    assert fair_srv.stop() == 0
    fifo_srv = start_server("--task-workers", "4", "--fair-share", "off")
    fifo_b, fifo_a = burst_then_one(api, contract, [fifo_srv], burst, ms)
    assert fifo_srv.stop() == 0

    fair, fifo = start_delay(fair_b), start_delay(fifo_b)
    ratio = fifo / max(fair, 0.001)
    print(f"scheduling fairness: uid B's one task waited {fair:.3f} s with fair share and {fifo:.3f} s with "
          f"--fair-share off (ratio {ratio:.1f}), behind uid A's {burst} × {ms} ms sleeps on 4 workers", flush=True)

    # Fair share: B's lane has nothing running, so it goes next, ahead of most of A's queue.
    b_start = ts(fair_b["startedAt"])
    a_behind = [t["id"] for t in fair_a.values() if t["startedAt"] is None or ts(t["startedAt"]) > b_start]
    assert fair < 0.9, f"with fair share uid B waited {fair:.3f} s (> 0.9 s, ~one task of {ms} ms expected): {fair_b}"
    assert len(a_behind) >= 20, f"with fair share only {len(a_behind)} of uid A's tasks started after uid B's"
    # FIFO: B waits until every task of A queued ahead of it has started.
    b_start = ts(fifo_b["startedAt"])
    unstarted = [t["id"] for t in fifo_a.values() if t["startedAt"] is None]
    assert not unstarted, f"--fair-share off: uid B started before {len(unstarted)} older tasks of uid A"
    overtaken = [t["id"] for t in fifo_a.values()
                 if ts(t["startedAt"]) > b_start + timedelta(seconds=EARLY_SLACK)]
    assert not overtaken, f"--fair-share off: {len(overtaken)} older tasks of uid A started after uid B's"
    assert fifo > 1.5 and ratio >= 3, \
        f"--fair-share off should make uid B wait for most of A's queue: {fifo:.3f} s vs {fair:.3f} s"


def test_fair_share_setting_is_checked(tmp_path):
    out = refused_start(tmp_path, "--fair-share", "maybe")
    assert "fair" in out.lower(), f"the refusal should name the fair-share setting:\n{out}"
    config = write_config(tmp_path / "fair.json", server={"fair_share": "no"})
    out = refused_start(tmp_path, "--config", str(config))
    assert str(config) in out and "server.fair_share" in out, out


# --------------------------------------------------------------------------- priorities


def test_priority_order_zero_first(start_server, api):
    srv = start_server("--task-workers", "1")
    uid = new_uid("prio")
    blocker = rest_submit(api, srv, "sleep", {"ms": 800}, uid=uid)
    assert blocker["priority"] == 0, f"a built-in handler's default priority is 0: {blocker}"
    assert blocker["runAt"] is None and blocker["schedule"] is None, blocker
    wait_until(lambda: get_task(api, srv, blocker["id"])["status"] == "running", 10, "the blocker to run", 0.02)

    priorities = [5, 1, 9, 0, 3, 5]
    waiting = []
    for p in priorities:
        t = rest_submit(api, srv, "sleep", {"ms": 60, "priority": p}, uid=uid)
        assert t["priority"] == p and t["status"] == "queued", t
        waiting.append(t["id"])
    assert get_task(api, srv, waiting[2])["priority"] == 9
    finals = wait_final(api, srv, [blocker["id"], *waiting], 30)
    blocker_end = ts(finals[blocker["id"]]["finishedAt"])
    late = [i for i in waiting if ts(finals[i]["createdAt"]) >= blocker_end]
    assert not late, "the machine was too slow: tasks were submitted after the blocker had finished"
    assert all(finals[i]["status"] == "succeeded" for i in waiting), finals
    order = sorted(waiting, key=lambda i: ts(finals[i]["startedAt"]))
    assert [finals[i]["priority"] for i in order] == [0, 1, 3, 5, 5, 9], \
        [(finals[i]["priority"], finals[i]["startedAt"]) for i in order]
    fives = [i for i in order if finals[i]["priority"] == 5]
    assert fives == [waiting[0], waiting[5]], "within one priority the older task starts first"


def test_handler_default_priority_and_who_may_raise_it(start_server, api, contract, tmp_path):
    config = write_config(tmp_path / "ranked.json", handlers={"ranked": quick_handler(tmp_path, priority=7)})
    srv = start_server("--config", str(config), "--task-workers", "1")
    uid = new_uid("rank")

    # The default orders the queue: echo (0) and an admin-raised ranked task (2) go before a default ranked (7).
    blocker = rest_submit(api, srv, "sleep", {"ms": 600}, uid=uid)
    wait_until(lambda: get_task(api, srv, blocker["id"])["status"] == "running", 10, "the blocker to run", 0.02)
    plain = rest_submit(api, srv, "ranked", {"k": 1}, uid=uid)
    echo = rest_submit(api, srv, "echo", {"k": 2}, uid=uid)
    raised = rest_submit(api, srv, "ranked", {"k": 3, "priority": 2}, uid=uid)
    assert (plain["priority"], echo["priority"], raised["priority"]) == (7, 0, 2), (plain, echo, raised)
    finals = wait_final(api, srv, [blocker["id"], plain["id"], echo["id"], raised["id"]], 30)
    assert all(t["status"] == "succeeded" for t in finals.values()), finals
    assert ts(finals[raised["id"]]["createdAt"]) < ts(finals[blocker["id"]]["finishedAt"]), "machine too slow"
    order = sorted([plain["id"], echo["id"], raised["id"]], key=lambda i: ts(finals[i]["startedAt"]))
    assert order == [echo["id"], raised["id"], plain["id"]], [(finals[i]["cmd"], finals[i]["priority"]) for i in order]

    # A WebSocket client that is not admin may lower the urgency (>= 7), not raise it.
    replies = ws_exchange(srv, uid, contract, [
        {"cmd": "ranked", "args": {"priority": 3}},
        {"cmd": "ranked", "args": {"priority": 7}},
        {"cmd": "ranked", "args": {"priority": 9}},
        {"cmd": "ranked", "args": {}},
        {"cmd": "echo", "args": {"priority": 5}},
        {"cmd": "echo", "args": {}},
    ])
    refused = replies[0]
    assert refused["type"] == "error" and refused["code"] == 403 and refused["error"] == "forbidden", refused
    accepted = replies[1:]
    for reply, want in zip(accepted, [7, 9, 7, 5, 0]):
        assert reply["type"] == "submitted" and reply["code"] == 202, reply
        assert reply["task"]["priority"] == want, reply
    # The same over long-poll.
    r = poll_submit(api, srv, uid, {"cmd": "ranked", "args": {"priority": 6}}, expect=403)
    assert r["error"] == "forbidden", r
    lowered = poll_submit(api, srv, uid, {"cmd": "ranked", "args": {"priority": 8}})["task"]
    assert lowered["priority"] == 8, lowered
    # Admin connections may set any priority.
    (admin_reply,) = ws_exchange(srv, new_uid("rank-admin"), contract,
                                 [{"cmd": "ranked", "args": {"priority": 1}}], admin=True)
    assert admin_reply["type"] == "submitted" and admin_reply["task"]["priority"] == 1, admin_reply
    admin_poll = poll_submit(api, srv, uid, {"cmd": "ranked", "args": {"priority": 0}}, admin=True)["task"]
    assert admin_poll["priority"] == 0, admin_poll
    ids = [r["task"]["id"] for r in accepted] + [lowered["id"], admin_reply["task"]["id"], admin_poll["id"]]
    finals = wait_final(api, srv, ids, 30)
    assert all(t["status"] == "succeeded" for t in finals.values()), finals
    assert [finals[i]["priority"] for i in ids] == [7, 9, 7, 5, 0, 8, 1, 0], [finals[i]["priority"] for i in ids]


# --------------------------------------------------------------------------- validation and limits


def test_scheduling_options_are_validated_on_every_front_door(start_server, api, contract):
    srv = start_server()
    uid = new_uid("val")
    in_a_minute = iso_z(now() + timedelta(minutes=1))
    bad = [
        ({"priority": 10}, ["priority"]),
        ({"priority": -1}, ["priority"]),
        ({"priority": "x"}, ["priority"]),
        ({"priority": 2.5}, ["priority"]),
        ({"delay_ms": -5}, ["delay_ms"]),
        ({"delay_ms": 3_000_000_000}, ["delay_ms"]),
        ({"delay_ms": 2_592_000_001}, ["delay_ms"]),
        ({"delay_ms": "soon"}, ["delay_ms"]),
        ({"delay_ms": 1.5}, ["delay_ms"]),
        ({"delay_ms": 1000, "run_at": in_a_minute}, ["delay_ms", "run_at"]),
        ({"run_at": "tomorrow"}, ["run_at"]),
        ({"run_at": (now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")}, ["run_at"]),  # no zone
        ({"run_at": iso_z(now() + timedelta(days=40))}, ["run_at"]),
        ({"run_at": 1767225600}, ["run_at"]),
    ]
    for args, names in bad:
        r = api.post(f"{srv.base_url}/api/v1/tasks", json={"cmd": "echo", "args": args, "uid": uid})
        assert r.status_code == 400, f"args {args} -> {r.status_code} {r.text}"
        body = r.json()
        assert body["error"] == "bad_request", body
        assert any(n in body["info"] for n in names), f"the error for {args} should name {names}: {body}"
    assert list_tasks(api, srv, uid=uid) == [], "a refused submit was stored"

    # The edges that are allowed.
    for p in (0, 9):
        assert rest_submit(api, srv, "echo", {"priority": p}, uid=uid)["priority"] == p
    month = rest_submit(api, srv, "echo", {"delay_ms": 2_592_000_000}, uid=uid)
    assert month["status"] == "scheduled", month
    assert abs(seconds(ts(month["runAt"]), ts(month["createdAt"])) - 2_592_000) < 0.1, month
    india = datetime.now(timezone(timedelta(hours=5, minutes=30))) + timedelta(days=29)
    far = rest_submit(api, srv, "echo", {"run_at": india.isoformat(timespec="microseconds")}, uid=uid)
    assert far["status"] == "scheduled" and abs(seconds(ts(far["runAt"]), india)) < 0.002, far
    for t in (month, far):
        r = api.post(f"{srv.base_url}/api/v1/tasks/{t['id']}/cancel")
        assert r.status_code == 200, r.text
    past = rest_submit(api, srv, "echo", {"run_at": "2020-01-01T00:00:00Z"}, uid=uid)
    now_ = rest_submit(api, srv, "echo", {"delay_ms": 0}, uid=uid)
    finals = wait_final(api, srv, [past["id"], now_["id"]], 15)
    for t in finals.values():
        assert t["status"] == "succeeded" and start_delay(t) < 1.0, f"a due task should run at once: {t}"

    # WebSocket and long-poll check the same way; a non-admin client may choose a lower urgency (5 > 0).
    replies = ws_exchange(srv, uid, contract, [
        {"cmd": "echo", "args": {"priority": 5}},
        {"cmd": "echo", "args": {"priority": 10}},
        {"cmd": "echo", "args": {"delay_ms": "soon"}},
        {"cmd": "echo", "args": {"delay_ms": 100, "run_at": in_a_minute}},
        {"cmd": "echo", "args": {"run_at": "tomorrow"}},
    ])
    assert replies[0]["type"] == "submitted" and replies[0]["code"] == 202, replies[0]
    assert replies[0]["task"]["priority"] == 5, replies[0]
    for reply in replies[1:]:
        assert reply["type"] == "error" and reply["code"] == 400 and reply["error"] == "bad_request", reply
    for args in ({"priority": -1}, {"delay_ms": 3_000_000_000}, {"run_at": iso_z(now() + timedelta(days=31))}):
        reply = poll_submit(api, srv, uid, {"cmd": "echo", "args": args}, expect=400)
        assert reply["error"] == "bad_request", reply

    # CLI: `taskgate submit --arg` puts the options in args.
    p = cli("submit", "echo", "--uid", uid, "--arg", "delay_ms=60000", "--arg", "priority=4", url=srv.base_url)
    assert p.returncode == 0, p.all
    ids = TASK_ID.findall(p.stdout)
    assert ids, p.all
    t = get_task(api, srv, ids[0])
    assert t["status"] == "scheduled" and t["priority"] == 4 and t["runAt"] is not None, t
    assert api.post(f"{srv.base_url}/api/v1/tasks/{t['id']}/cancel").status_code == 200


def test_scheduled_tasks_count_against_the_limits(start_server, api):
    srv = start_server("--task-workers", "1", "--queue-limit", "2", "--max-tasks-per-uid", "2")
    u = new_uid("lim")
    for _ in range(2):
        assert rest_submit(api, srv, "echo", {"delay_ms": 60000}, uid=u)["status"] == "scheduled"
    r = api.post(f"{srv.base_url}/api/v1/tasks", json={"cmd": "echo", "args": {"delay_ms": 60000}, "uid": u})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited", r.text
    # The queue: at most --queue-limit tasks waiting beyond the workers' room (1 + 2 here), scheduled ones included.
    accepted, refused = 2, None
    for _ in range(3):
        r = api.post(f"{srv.base_url}/api/v1/tasks",
                     json={"cmd": "echo", "args": {"delay_ms": 60000}, "uid": new_uid("lim-other")})
        if r.status_code == 503:
            refused = r
            break
        assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text
        accepted += 1
    assert refused is not None, f"{accepted} scheduled tasks accepted with --task-workers 1 --queue-limit 2"
    assert refused.json()["error"] == "queue_full" and 2 <= accepted <= 3, (accepted, refused.text)
    r = api.post(f"{srv.base_url}/api/v1/tasks", json={"cmd": "echo", "uid": new_uid("lim-due")})
    assert r.status_code == 503 and r.json()["error"] == "queue_full", r.text


# --------------------------------------------------------------------------- delayed tasks


def test_delayed_tasks_start_on_time_via_every_front_door(start_server, api, contract):
    srv = start_server("--task-workers", "4")
    uid = new_uid("late")
    rng = random.Random(20261202)
    accepted: dict[str, tuple[str, dict, float | None]] = {}  # id -> (front door, task as accepted, delay s)

    checked = 0

    def waiting(task: dict) -> None:  # right after the submit, while it waits, the task says `scheduled`
        nonlocal checked
        if seconds(ts(task["runAt"]), now()) > 0.1:
            again = get_task(api, srv, task["id"])
            assert again["status"] == "scheduled" and again["startedAt"] is None, again
            checked += 1

    for i in range(10):
        delay = rng.randint(300, 1500)
        t = rest_submit(api, srv, "echo", {"n": i, "delay_ms": delay}, uid=uid)
        accepted[t["id"]] = ("rest", t, delay / 1000)
        waiting(t)
    (reply,) = ws_exchange(srv, uid, contract, [{"cmd": "echo", "args": {"via": "ws", "delay_ms": 900}}])
    assert reply["type"] == "submitted" and reply["code"] == 202, reply
    accepted[reply["task"]["id"]] = ("websocket", reply["task"], 0.9)
    waiting(reply["task"])
    t = poll_submit(api, srv, uid, {"cmd": "echo", "args": {"via": "poll", "delay_ms": 1100}})["task"]
    accepted[t["id"]] = ("long-poll", t, 1.1)
    waiting(t)
    run_at = datetime.now(timezone(timedelta(hours=1))) + timedelta(seconds=1)
    at_text = run_at.isoformat(timespec="milliseconds")
    assert at_text.endswith("+01:00"), at_text
    t = rest_submit(api, srv, "echo", {"via": "run_at", "run_at": at_text}, uid=uid)
    accepted[t["id"]] = ("run_at", t, None)
    waiting(t)
    assert len(accepted) == 13
    assert checked >= 10, f"only {checked} tasks could be seen waiting (the machine is too slow for this test)"

    for tid, (how, task, delay) in accepted.items():
        assert task["status"] == "scheduled" and task["runAt"] is not None, f"{how}: {task}"
        if delay is None:
            assert abs(seconds(ts(task["runAt"]), run_at)) <= 0.002, f"runAt is not {at_text} in UTC: {task}"
        else:
            assert abs(seconds(ts(task["runAt"]), ts(task["createdAt"])) - delay) < 0.1, f"{how}: {task}"

    # The list filtered by status shows the ones still waiting.
    ahead = [tid for tid, (_, task, _) in accepted.items() if seconds(ts(task["runAt"]), now()) > 0.3]
    listed = {t["id"]: t for t in list_tasks(api, srv, uid=uid, status="scheduled")}
    assert ahead, "the machine is too slow for this test: every task was due before the list"
    assert set(ahead) <= set(listed) <= set(accepted), (ahead, sorted(listed))
    assert all(t["status"] == "scheduled" for t in listed.values()), listed

    finals = wait_final(api, srv, accepted, 20)
    accuracy = []
    for tid, task in finals.items():
        assert task["status"] == "succeeded" and task["attempts"] == 1, task
        assert task["runAt"] == accepted[tid][1]["runAt"], (task, accepted[tid][1])
        lag = seconds(ts(task["startedAt"]), ts(task["runAt"]))
        assert lag >= -EARLY_SLACK, f"{accepted[tid][0]}: started {-lag:.3f} s before its runAt: {task}"
        accuracy.append(lag)
    p50, p99 = percentile(accuracy, 0.5), percentile(accuracy, 0.99)
    print(f"scheduling delay accuracy: startedAt − runAt p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"min {min(accuracy) * 1000:.0f} ms over {len(accuracy)} delayed tasks (REST, WebSocket, long-poll, "
          f"run_at)", flush=True)
    assert p99 < 1.0, f"delayed tasks started up to {p99:.3f} s late"


def test_cancel_a_scheduled_task_before_it_starts(start_server, api, contract):
    srv = start_server()
    uid = new_uid("cancel")
    doomed = rest_submit(api, srv, "echo", {"delay_ms": 5000}, uid=uid)
    assert doomed["status"] == "scheduled", doomed
    assert get_task(api, srv, doomed["id"])["status"] == "scheduled"
    r = api.post(f"{srv.base_url}/api/v1/tasks/{doomed['id']}/cancel")
    assert r.status_code == 200, r.text
    cancelled = wait_final(api, srv, [doomed["id"]], 5)[doomed["id"]]
    assert cancelled["status"] == "cancelled", cancelled
    assert "cancelled before it started" in (cancelled["error"] or ""), cancelled
    assert cancelled["startedAt"] is None and cancelled["attempts"] == 0, cancelled

    async def over_websocket():  # the owner cancels its own scheduled task and gets the done event
        ws = await ws_open(srv, uid, contract)
        reply = await ws.request({"cmd": "echo", "args": {"delay_ms": 5000}})
        assert reply["type"] == "submitted" and reply["task"]["status"] == "scheduled", reply
        tid = reply["task"]["id"]
        answer = await ws.request({"cmd": "cancel", "args": {"id": tid}})
        assert answer["type"] == "cancelling" and answer["code"] == 200, answer
        done = await ws.wait_for(lambda m: m.get("type") == "done" and m["task"]["id"] == tid, 10,
                                 "the done event of the cancelled scheduled task")
        assert done["task"]["status"] == "cancelled" and "cancelled before it started" in done["task"]["error"], done
        assert set(done["task"]) == {"id", "status", "result", "error"}, done  # what changed: no timestamps
        return reply["task"]

    ws_task = run(over_websocket(), timeout=30)

    # A later delayed task runs: by then both cancelled tasks' runAt has passed, and they never ran.
    sentinel = rest_submit(api, srv, "echo", {"delay_ms": 5300}, uid=uid)
    assert ts(sentinel["runAt"]) > max(ts(doomed["runAt"]), ts(ws_task["runAt"])), (sentinel, doomed, ws_task)
    done = wait_final(api, srv, [sentinel["id"]], 20)[sentinel["id"]]
    assert done["status"] == "succeeded" and ts(done["startedAt"]) >= ts(ws_task["runAt"]), done
    for before in (cancelled, ws_task):
        again = get_task(api, srv, before["id"])
        assert again["status"] == "cancelled" and again["startedAt"] is None and again["attempts"] == 0, again
    assert get_task(api, srv, doomed["id"])["finishedAt"] == cancelled["finishedAt"]
    r = api.post(f"{srv.base_url}/api/v1/tasks/{doomed['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "already_finished", r.text
    assert done_counts(uid_events(api, srv, uid))[doomed["id"]] == 1


def test_scheduled_tasks_survive_a_restart_and_run_once(start_server, api, tmp_path):
    data = tmp_path / "data"
    first = start_server("--data-dir", str(data), "--task-workers", "2")
    uid = new_uid("restart")
    overdue = rest_submit(api, first, "echo", {"which": "overdue", "delay_ms": 1500}, uid=uid)
    later = [rest_submit(api, first, "echo", {"which": f"later-{i}", "delay_ms": d}, uid=uid)
             for i, d in enumerate((2500, 2750, 3000))]
    everything = [overdue, *later]
    for t in everything:
        assert get_task(api, first, t["id"])["status"] == "scheduled", t
    assert first.stop() == 0
    stopped_at = now()
    assert stopped_at < ts(overdue["runAt"]), \
        (f"the server took too long to stop ({stopped_at} >= {overdue['runAt']}; SIGTERM should not wait for "
         f"scheduled tasks): cannot test a task that comes due while the server is down")

    # Down while the overdue task's runAt passes (the downtime is the point: a bounded sleep).
    time.sleep(min(3.0, max(0.0, seconds(ts(overdue["runAt"]), now()) + 0.3)))
    second = start_server("--data-dir", str(data), "--task-workers", "2")
    ready_at = now()
    for t in later:
        if seconds(ts(t["runAt"]), now()) > 0.3:
            assert get_task(api, second, t["id"])["status"] == "scheduled", t
    finals = wait_final(api, second, [t["id"] for t in everything], 20)
    for t in everything:
        task = finals[t["id"]]
        assert task["status"] == "succeeded" and task["attempts"] == 1, task
        assert task["runAt"] == t["runAt"], (task, t)
        assert ts(task["startedAt"]) >= ts(task["runAt"]) - timedelta(seconds=EARLY_SLACK), task
        assert ts(task["startedAt"]) > stopped_at, f"ran before the restart: {task}"
        if ts(task["runAt"]) > ready_at:
            assert seconds(ts(task["startedAt"]), ts(task["runAt"])) < 1.0, task
    late = seconds(ts(finals[overdue["id"]]["startedAt"]), ready_at)
    assert late < 1.5, f"the task that came due while the server was down ran {late:.2f} s after the restart"
    counts = done_counts(uid_events(api, second, uid))
    assert counts == {t["id"]: 1 for t in everything}, counts


# --------------------------------------------------------------------------- rate limits


def test_rate_limit_spaces_starts_and_lets_other_handlers_through(start_server, api, tmp_path):
    config = write_config(tmp_path / "rate.json",
                          handlers={"limited": quick_handler(tmp_path, rate="10/s", concurrency=8)})
    srv = start_server("--config", str(config), "--task-workers", "8")
    uid = new_uid("rate")
    limited = [rest_submit(api, srv, "limited", {"n": i}, uid=uid)["id"] for i in range(30)]
    others = [rest_submit(api, srv, "echo", {"n": i}, uid=uid)["id"] for i in range(10)]
    snapshot = tasks_by_id(api, srv, uid=uid)
    waiting = [i for i in limited if snapshot[i]["status"] == "queued"]
    assert len(waiting) >= 10, f"tasks beyond the rate should wait queued: {Counter(snapshot[i]['status'] for i in limited)}"

    finals = wait_final(api, srv, limited + others, 30)
    assert all(t["status"] == "succeeded" for t in finals.values()), \
        [t for t in finals.values() if t["status"] != "succeeded"][:3]
    starts = sorted(ts(finals[i]["startedAt"]) for i in limited)
    span = seconds(starts[-1], starts[0])
    measured = (len(starts) - 1) / span
    ratio = measured / 10
    gaps = [seconds(b, a) for a, b in zip(starts, starts[1:])]
    print(f"scheduling rate: measured {measured:.2f}/s for 10/s (ratio {ratio:.2f}); starts {span:.2f} s apart in "
          f"all, smallest gap {min(gaps) * 1000:.0f} ms", flush=True)
    assert 0.7 <= ratio <= 1.15, f"measured {measured:.2f} starts/s for a rate of 10/s"
    assert min(gaps) >= 0.04, f"a burst: two starts {min(gaps) * 1000:.0f} ms apart (evenly spaced, no burst)"
    # The echo tasks went ahead: each started at once and all finished before the limited batch did.
    for i in others:
        assert start_delay(finals[i]) < 1.0, f"an echo task was held back by another handler's rate: {finals[i]}"
        assert ts(finals[i]["finishedAt"]) < starts[-1], finals[i]


def test_bad_rate_refuses_to_start(start_server, api, tmp_path):
    for n, rate in enumerate(("fast", "0/s", "10/d", "100001/s", "-3/s")):
        config = write_config(tmp_path / f"bad-rate-{n}.json", handlers={"limited": quick_handler(tmp_path, rate=rate)})
        out = refused_start(tmp_path, "--config", str(config))
        assert str(config) in out and "handlers.limited.rate" in out, f"rate {rate!r}:\n{out}"
    # Per minute and per hour are fine.
    config = write_config(tmp_path / "good-rate.json", handlers={
        "per-minute": quick_handler(tmp_path, rate="120/m"), "per-hour": quick_handler(tmp_path, rate="3600/h")})
    srv = start_server("--config", str(config))
    r = api.get(f"{srv.base_url}/api/v1/handlers")
    assert {"per-minute", "per-hour"} <= {h["name"] for h in r.json()["handlers"]}, r.text


# --------------------------------------------------------------------------- recurring schedules


def test_bad_schedules_refuse_to_start(tmp_path):
    ok = {"name": "fine", "cmd": "echo", "cron": "@daily"}
    cases = [
        ([{"name": "x", "cmd": "echo", "cron": "61 * * * *"}], "schedules[0].cron"),
        ([{"name": "x", "cmd": "echo", "cron": "* * * *"}], "schedules[0].cron"),
        ([ok, {"name": "x", "cmd": "echo", "cron": "0 0 * * MON-FUN"}], "schedules[1].cron"),
        ([{"name": "x", "cmd": "echo"}], "schedules[0].cron"),
        ([ok, {"name": "bad name", "cmd": "echo", "cron": "@daily"}], "schedules[1].name"),
        ([ok, dict(ok, cron="@hourly")], "schedules[1].name"),
        ([{"name": "x", "cmd": "no-such-handler", "cron": "@daily"}], "schedules[0].cmd"),
        ([{"name": "x", "cmd": "echo", "cron": "@daily", "timezone": "Mars/Olympus_Mons"}], "schedules[0].timezone"),
        ([{"name": "x", "cmd": "echo", "cron": "@daily", "missed": "sometimes"}], "schedules[0].missed"),
        ([{"name": "x", "cmd": "echo", "cron": "@daily", "every": "day"}], "schedules[0].every"),
    ]
    for n, (schedules, where) in enumerate(cases):
        config = write_config(tmp_path / f"bad-schedule-{n}.json", schedules=schedules)
        out = refused_start(tmp_path, "--config", str(config))
        assert str(config) in out and where in out, f"{schedules}: the error should name {where}:\n{out}"


def _next_fire(after: datetime, tz, minutes: set[int], hours: set[int], dom: set[int] | None = None,
               months: set[int] | None = None, dow: set[int] | None = None, secs: frozenset = frozenset({0})) -> datetime:
    """The first time > after (UTC) matching the expanded fields, in zone tz (cron weekdays: 0 = Sunday).
    Day-of-month and day-of-week both restricted: either matches (Vixie cron)."""
    day: date = after.astimezone(tz).date()
    for _ in range(800):
        weekday = (day.weekday() + 1) % 7
        if dom is not None and dow is not None:
            day_ok = day.day in dom or weekday in dow
        else:
            day_ok = (dom is None or day.day in dom) and (dow is None or weekday in dow)
        if day_ok and (months is None or day.month in months):
            for h in sorted(hours):
                for m in sorted(minutes):
                    for s in sorted(secs):
                        candidate = datetime(day.year, day.month, day.day, h, m, s, tzinfo=tz).astimezone(timezone.utc)
                        if candidate > after:
                            return candidate
        day += timedelta(days=1)
    raise AssertionError("no match within 800 days")


def test_schedules_listing_shows_next_runs_by_cron_and_timezone(start_server, api, tmp_path):
    from zoneinfo import ZoneInfo

    utc = timezone.utc
    paris, tokyo = ZoneInfo("Europe/Paris"), ZoneInfo("Asia/Tokyo")
    # name -> (schedule, zone, expected fields)
    cases = {
        "a-daily": ({"cron": "@daily"}, utc, dict(minutes={0}, hours={0})),
        "b-paris": ({"cron": "0 3 * * *", "timezone": "Europe/Paris", "uid": "ops-1", "args": {"report": 7}},
                    paris, dict(minutes={0}, hours={3})),
        "c-new-year": ({"cron": "30 12 1 JAN *"}, utc, dict(minutes={30}, hours={12}, dom={1}, months={1})),
        "d-vixie": ({"cron": "0 0 13 * FRI"}, utc, dict(minutes={0}, hours={0}, dom={13}, dow={5})),
        "e-sunday": ({"cron": "15 10 * * 7"}, utc, dict(minutes={15}, hours={10}, dow={0})),
        "f-office": ({"cron": "0 9-17/4 * * MON-FRI", "timezone": "Asia/Tokyo"}, tokyo,
                     dict(minutes={0}, hours={9, 13, 17}, dow={1, 2, 3, 4, 5})),
        "g-list": ({"cron": "5,35 */6 * * *"}, utc, dict(minutes={5, 35}, hours={0, 6, 12, 18})),
        "h-seconds": ({"cron": "30 0 0 1 * *"}, utc, dict(secs=frozenset({30}), minutes={0}, hours={0}, dom={1})),
        "i-monthly": ({"cron": "@monthly"}, utc, dict(minutes={0}, hours={0}, dom={1})),
        "j-weekly": ({"cron": "@weekly"}, utc, dict(minutes={0}, hours={0}, dow={0})),
        "k-annually": ({"cron": "@annually"}, utc, dict(minutes={0}, hours={0}, dom={1}, months={1})),
        "l-summer": ({"cron": "0 12 * JUN-AUG SAT,SUN", "missed": "run_once"}, utc,
                     dict(minutes={0}, hours={12}, months={6, 7, 8}, dow={6, 0})),
    }
    schedules = [dict({"name": name, "cmd": "echo"}, **s) for name, (s, _, _) in cases.items()]
    random.Random(3).shuffle(schedules)  # the listing sorts by name
    config = write_config(tmp_path / "cron.json", schedules=schedules)
    srv = start_server("--config", str(config))

    before = now()
    listed = schedules_of(api, srv)
    after = now()
    assert [s["name"] for s in listed] == sorted(cases), listed
    for s in listed:
        spec, zone, fields = cases[s["name"]]
        want = (s["name"], "echo", spec.get("args", {}), spec["cron"], spec.get("timezone", "UTC"),
                spec.get("missed", "skip"), spec.get("uid"))
        got = (s["name"], s["cmd"], s["args"], s["cron"], s["timezone"], s["missed"], s["uid"])
        assert got == want, s
        expected = {_next_fire(before, zone, **fields), _next_fire(after, zone, **fields)}
        assert s["nextRun"] is not None and ts(s["nextRun"]) in expected, \
            f"{s['name']} ({spec['cron']} in {s['timezone']}): nextRun {s['nextRun']}, expected {sorted(expected)}"
        if s["missed"] == "skip" and seconds(ts(s["nextRun"]), after) > 60:
            assert s["lastRun"] is None, f"a new schedule that has not ticked has a lastRun: {s}"

    p = cli("schedules", url=srv.base_url)
    assert p.returncode == 0, p.all
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    header = lines[0].upper()
    assert all(col in header for col in ("NAME", "CMD", "CRON", "TIMEZONE", "NEXT RUN", "LAST RUN")), p.all
    for s in listed:
        line = next((ln for ln in lines[1:] if ln.split()[0] == s["name"]), None)
        assert line and s["cmd"] in line and s["cron"] in line and s["timezone"] in line, \
            f"`taskgate schedules` has no proper line for {s['name']}:\n{p.stdout}"
    p = cli("schedules", "--json", url=srv.base_url)
    assert p.returncode == 0, p.all
    doc = json.loads(p.stdout)
    entries = doc["schedules"] if isinstance(doc, dict) else doc
    assert [(e["name"], e["nextRun"]) for e in entries] == [(s["name"], s["nextRun"]) for s in listed], p.stdout


def test_cron_every_second_ticks_once_a_second_and_reload_changes_schedules(start_server, api, tmp_path):
    path = tmp_path / "cron.json"
    write_config(path, schedules=[{"name": "tick", "cmd": "echo", "cron": "*/1 * * * * *", "args": {"from": "tick"}}])
    srv = start_server("--config", str(path))

    def ticks(name: str) -> dict[int, list[dict]]:
        return ticks_of(list_tasks(api, srv), name)

    def settled(name: str, count: int, since: float = 0.0):
        """The ticks of name at or after `since`, once at least `count` of them but the newest are final."""
        got = {s: v for s, v in ticks(name).items() if s >= since}
        if len(got) < count + 1:
            return None
        older = {s: v for s, v in got.items() if s < max(got)}
        return older if all(t["status"] in FINAL for v in older.values() for t in v) else None

    seen = wait_until(lambda: settled("tick", 3), 20, "three finished ticks of 'tick'", 0.2)
    secs = sorted(seen)
    assert all(len(v) == 1 for v in seen.values()), {s: [t["id"] for t in v] for s, v in seen.items() if len(v) > 1}
    assert secs == list(range(secs[0], secs[0] + len(secs))), f"ticks are not one per second: {secs}"
    for sec, (task,) in seen.items():
        assert task["status"] == "succeeded" and task["attempts"] == 1, task
        assert task["cmd"] == "echo" and task["uid"] is None and task["schedule"] == "tick", task
        assert task["id"] == f"~schedule:tick:{sec}" or task["id"] == f"schedule:tick:{sec}", task
        assert task["args"].get("from") == "tick", task
        lag = seconds(ts(task["startedAt"]), at_second(sec))
        assert -EARLY_SLACK <= lag < 1.0, f"tick {sec} started {lag:.3f} s after its second: {task}"

    before = now()
    (tick,) = schedules_of(api, srv)
    assert tick["name"] == "tick" and tick["cron"] == "*/1 * * * * *" and tick["cmd"] == "echo", tick
    assert -0.25 < seconds(ts(tick["nextRun"]), before) <= 1.25, f"nextRun should be the coming second: {tick}"
    assert tick["lastRun"] is not None and seconds(before, ts(tick["lastRun"])) < 3, tick
    p = cli("schedules", url=srv.base_url)
    assert p.returncode == 0 and any(ln.split()[:1] == ["tick"] for ln in p.stdout.splitlines()), p.all

    # Reload: tick goes, tock (every 2 s, owned by a uid) comes.
    write_config(path, schedules=[{"name": "tock", "cmd": "echo", "cron": "*/2 * * * * *", "uid": "ops-tock"}])
    r = api.post(f"{srv.base_url}/api/v1/reload")
    assert r.status_code == 200, r.text
    reloaded_at = now().timestamp()
    tocks = wait_until(lambda: settled("tock", 2, reloaded_at), 15, "two finished ticks of 'tock' after the reload", 0.2)
    tock_secs = sorted(tocks)
    assert all(s % 2 == 0 for s in tock_secs) and all(b - a == 2 for a, b in zip(tock_secs, tock_secs[1:])), tock_secs
    for sec, (task,) in tocks.items():
        assert task["status"] == "succeeded" and task["uid"] == "ops-tock", task
        assert task["id"] == f"ops-tock~schedule:tock:{sec}", task
    stray = [s for s in ticks("tick") if s > reloaded_at + 1]
    assert not stray, f"'tick' still ticked after it was removed by the reload: {stray}"
    assert [s["name"] for s in schedules_of(api, srv)] == ["tock"]
    counts = done_counts(uid_events(api, srv, "ops-tock"))
    assert all(counts[t["id"]] == 1 for (t,) in tocks.values()), counts

    # A bad cron is refused (400) and the schedules in force stay.
    write_config(path, schedules=[{"name": "broken", "cmd": "echo", "cron": "61 * * * * *"}])
    with requests.Session() as plain:  # 400 is not among the documented answers of POST /api/v1/reload
        plain.trust_env = False
        r = plain.post(f"{srv.base_url}/api/v1/reload", timeout=10)
    assert r.status_code == 400, r.text
    assert "schedules[0].cron" in r.json()["info"], r.json()
    refused_at = now().timestamp()
    wait_until(lambda: any(s > refused_at for s in ticks("tock")), 10, "'tock' to tick after the refused reload", 0.2)
    assert [s["name"] for s in schedules_of(api, srv)] == ["tock"]
    assert not ticks("broken")


def test_missed_ticks_run_once_or_skip_after_downtime(start_server, api, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "missed.json", schedules=[
        {"name": "once", "cmd": "echo", "cron": "*/1 * * * * *", "missed": "run_once"},
        {"name": "skipper", "cmd": "echo", "cron": "*/1 * * * * *", "missed": "skip"},
    ])
    first = start_server("--data-dir", str(data), "--config", str(config))

    def both(srv):
        tasks = list_tasks(api, srv)
        return ticks_of(tasks, "once"), ticks_of(tasks, "skipper")

    def ticked(srv):
        once, skip = both(srv)
        ok = lambda t: sum(v[0]["status"] == "succeeded" for v in t.values()) >= 2
        return ok(once) and ok(skip)

    wait_until(lambda: ticked(first), 20, "both schedules to tick twice", 0.2)
    assert first.stop() == 0
    time.sleep(3.0)  # the downtime: ticks are missed
    launched_at = now()
    second = start_server("--data-dir", str(data), "--config", str(config))
    ready_at = now()
    launch_s = launched_at.timestamp()

    def split(ticks: dict[int, list[dict]]):  # (made by the first server, made by the second)
        pre = {s: v for s, v in ticks.items() if all(ts(t["createdAt"]) < launched_at for t in v)}
        return pre, {s: v for s, v in ticks.items() if s not in pre}

    def resumed():
        once, skip = both(second)
        (_, once_post), (_, skip_post) = split(once), split(skip)
        if len(skip_post) < 3 or len(once_post) < 3:
            return None
        newest = max(max(once_post), max(skip_post))
        pending = [t for d in (once_post, skip_post) for s, v in d.items() if s < newest for t in v
                   if t["status"] not in FINAL]
        return None if pending else (once, skip)

    once, skip = wait_until(resumed, 20, "both schedules to tick after the restart", 0.2)
    for d in (once, skip):
        dup = {s: [t["id"] for t in v] for s, v in d.items() if len(v) > 1}
        assert not dup, f"a tick ran twice: {dup}"
    (once_pre, once_post), (skip_pre, skip_post) = split(once), split(skip)
    assert len(once_pre) >= 2 and len(skip_pre) >= 2, (sorted(once_pre), sorted(skip_pre))

    # skip: nothing for the seconds no server ran; ticking goes on, one a second.
    in_downtime = [s for s in skip_post if s <= launch_s - 1]
    assert not in_downtime, (f"'skipper' (missed: skip) ran ticks of the downtime after {max(skip_pre)} and before "
                             f"{launch_s:.1f}: {in_downtime}")
    regular = sorted(skip_post)
    assert regular == list(range(regular[0], regular[0] + len(regular))), regular
    # run_once: exactly one catch-up task for the missed span, before the regular ticks resume.
    catch_up = [s for s in once_post if s < regular[0]]
    assert len(catch_up) == 1, (f"'once' (missed: run_once) should run exactly one catch-up task for the ticks missed "
                                f"after {max(once_pre)} and before {launch_s:.1f}; ticks of the restarted server: "
                                f"{sorted(once_post)}, regular ticks from {regular[0]}")
    (task,) = once_post[catch_up[0]]
    assert max(once_pre) < catch_up[0], (sorted(once_pre), catch_up)
    assert task["status"] == "succeeded" and task["attempts"] == 1, task
    assert seconds(ts(task["startedAt"]), ready_at) < 2.0, f"the catch-up task should run at start: {task}"
    horizon = min(max(once_post), max(skip_post))
    assert sorted(s for s in once_post if regular[0] <= s <= horizon) == [s for s in regular if s <= horizon], \
        f"after the catch-up 'once' should tick like 'skipper': {sorted(once_post)} vs {regular}"
