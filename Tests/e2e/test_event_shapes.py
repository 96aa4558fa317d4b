"""Events say what changed (issue #14): the shapes of `hello`, `progress` and `done` on every transport.

* `progress` carries exactly `id`, `status`, `progress`, `attempts`; `done` exactly `id`, `status`, `result`, `error`:
  no `args`, `cmd`, timestamps (a task with 16 KB of args sends them once, in its `submitted` reply);
* `hello` reports the uid's latest seq as `head` and has no `seq`, so a client that keeps every `seq` it sees as its
  cursor still gets the events replayed after the hello;
* WebSocket, SSE and long-poll carry the same events in the same shapes;
* the whole task is still in the `submitted` and `status` replies and in `GET /api/v1/tasks/{id}`.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import new_uid, run, strip, wait_task_final
from sse_client import SSEStream

PROGRESS_KEYS = {"id", "status", "progress", "attempts"}
DONE_KEYS = {"id", "status", "result", "error"}
EVENT_KEYS = {"progress": {"type", "seq", "task"}, "done": {"type", "code", "info", "seq", "task"}}
HELLO_KEYS = {"type", "info", "uid", "transport", "head", "admin", "reset"}
WHOLE_TASK_KEYS = {"id", "cmd", "uid", "args", "status", "progress", "result", "error", "attempts", "createdAt",
                   "startedAt", "finishedAt"}


def assert_event_shape(e: dict) -> None:
    """An event as the protocol now has it: its own keys, and a task of exactly what it changed."""
    assert e["type"] in ("progress", "done"), e
    assert set(e) == EVENT_KEYS[e["type"]], f"{e['type']} event keys {sorted(e)}: {e}"
    assert isinstance(e["seq"], int) and e["seq"] >= 1, e
    task = e["task"]
    if e["type"] == "progress":
        assert set(task) == PROGRESS_KEYS, f"a progress event carries exactly {sorted(PROGRESS_KEYS)}: {e}"
        assert isinstance(task["progress"], (int, float)) and 0 <= task["progress"] <= 1, e
        assert isinstance(task["attempts"], int) and task["attempts"] >= 1, e
        assert task["status"] == "running", e
    else:
        assert set(task) == DONE_KEYS, f"a done event carries exactly {sorted(DONE_KEYS)}: {e}"
        assert e["code"] == 200 and e["info"] == "task finished", e
        assert task["status"] in ("succeeded", "failed", "cancelled", "timed_out"), e
    assert isinstance(task["id"], str) and task["id"], e


def assert_hello(hello: dict, uid: str, transport: str, head: int, reset: bool = False) -> None:
    assert hello["type"] == "hello", hello
    assert "seq" not in hello, f"a hello has no seq (only events do): {hello}"
    assert "code" not in hello, hello
    assert set(hello) == HELLO_KEYS, f"hello keys {sorted(hello)}: {hello}"
    assert hello["uid"] == uid and hello["transport"] == transport, hello
    assert hello["head"] == head, f"head must be the latest seq {head}: {hello}"
    assert hello["reset"] is reset, hello


async def submit(ws, cmd: str, args: dict) -> dict:
    reply = await ws.request({"cmd": cmd, "args": args})
    assert reply["type"] == "submitted" and reply["code"] == 202, reply
    return reply


def poll_all(api, base_url: str, uid: str, cursor: int = 0) -> dict:
    r = api.get(f"{base_url}/poll", params={"uid": uid, "cursor": cursor, "timeout": 0})
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- (a) progress and done carry exactly …


def test_progress_and_done_events_carry_only_what_changed(server, ws_connect, api):
    uid = new_uid("shape")
    big = "a" * 16 * 1024

    async def body():
        ws = await ws_connect(uid)
        assert_hello(await ws.next(), uid, "websocket", 0)
        # A sleep with 16 KB of args: its args go out once, in the submitted reply, never in an event.
        sleep = await submit(ws, "sleep", {"ms": 300, "blob": big})
        assert sleep["task"]["args"] == {"ms": 300, "blob": big} and sleep["task"]["cmd"] == "sleep", strip(sleep)
        assert WHOLE_TASK_KEYS <= set(sleep["task"]), sorted(sleep["task"])
        events = await ws.events_until_done(sleep["task"]["id"], 10)
        progress = [e for e in events if e["type"] == "progress"]
        assert progress, [strip(e) for e in events]
        for e in events:
            assert_event_shape(e)
            assert e["task"]["id"] == sleep["task"]["id"], e
            assert len(json.dumps(e)) < 1024, f"an event of a task with 16 KB of args is {len(json.dumps(e))} bytes"
        values = [e["task"]["progress"] for e in progress]
        assert values == sorted(values) and values[-1] > 0.5, values
        assert events[-1]["task"] == {"id": sleep["task"]["id"], "status": "succeeded",
                                      "result": {"slept_ms": 300}, "error": None}, events[-1]

        # Every outcome: failed, timed out, cancelled.
        failed = await submit(ws, "fail", {"message": "no luck", "max_attempts": 1})
        timed = await submit(ws, "sleep", {"ms": 5000, "timeout_ms": 200})
        doomed = await submit(ws, "sleep", {"ms": 10000})
        await ws.wait_for(lambda m: m.get("type") == "progress" and m["task"]["id"] == doomed["task"]["id"], 5)
        cancelling = await ws.request({"cmd": "cancel", "args": {"id": doomed["task"]["id"]}})
        assert cancelling["type"] == "cancelling" and WHOLE_TASK_KEYS <= set(cancelling["task"]), cancelling
        outcomes = {}
        for reply in (failed, timed, doomed):
            tid = reply["task"]["id"]
            for e in await ws.events_until_done(tid, 10):
                assert_event_shape(e)
            done = [e for e in ws.events(tid) if e["type"] == "done"]
            assert len(done) == 1, [strip(e) for e in ws.events(tid)]
            outcomes[tid] = done[0]["task"]
        assert outcomes[failed["task"]["id"]] == {"id": failed["task"]["id"], "status": "failed", "result": None,
                                                  "error": "no luck"}
        assert outcomes[timed["task"]["id"]]["status"] == "timed_out" and outcomes[timed["task"]["id"]]["error"]
        assert outcomes[doomed["task"]["id"]]["status"] == "cancelled" and outcomes[doomed["task"]["id"]]["error"]
        assert all(t["result"] is None for tid, t in outcomes.items()), outcomes

    run(body())


# --------------------------------------------------------------------------- (b) hello has head, no seq


def test_hello_reports_head_and_no_seq(server, ws_connect, api):
    uid = new_uid("head")

    async def body():
        ws = await ws_connect(uid)
        assert_hello(await ws.next(), uid, "websocket", 0)
        for n in range(2):
            await ws.events_until_done((await submit(ws, "echo", {"n": n}))["task"]["id"], 10)
        latest = max(e["seq"] for e in ws.events())
        assert latest == poll_all(api, server.base_url, uid)["cursor"]

        again = await ws_connect(uid)                   # no cursor: no replay, head = the latest seq
        assert_hello(await again.next(), uid, "websocket", latest)
        await again.assert_silent(0.3)
        ahead = await ws_connect(uid, cursor=latest + 10)  # a cursor beyond the log: reset, still head
        assert_hello(await ahead.next(), uid, "websocket", latest, reset=True)
        return latest

    latest = run(body())
    with SSEStream(server.base_url, uid=uid) as sse:
        frame = sse.next_frame()
        assert frame.event == "hello" and frame.id is None, frame
        assert_hello(frame.json, uid, "sse", latest)
        sse.assert_silent(0.3)


# --------------------------------------------------------------------------- (c) a resuming client gets the replay


def test_a_client_that_keeps_every_seq_as_its_cursor_still_gets_the_replay(server, ws_connect, api):
    """The reason hello.seq became hello.head: a naive client saves every `seq` it sees as its cursor. With a `seq`
    in the hello (the uid's latest), it jumped over the events replayed right after it."""
    uid = new_uid("naive")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        first = await submit(ws, "echo", {"n": 1})
        await ws.events_until_done(first["task"]["id"], 10)
        cursor = max(e["seq"] for e in ws.events())
        await ws.close()
        # While away: more events.
        missed = [(await asyncio.to_thread(api.post, f"{server.base_url}/api/v1/tasks",
                                           json={"cmd": "sleep", "args": {"ms": 100}, "uid": uid})).json()["id"]
                  for _ in range(2)]
        for tid in missed:
            await asyncio.to_thread(wait_task_final, api, server.base_url, tid, 10)
        latest = poll_all(api, server.base_url, uid)["cursor"]
        assert latest > cursor + 2

        back = await ws_connect(uid, cursor=cursor)
        naive_cursor = cursor
        hello = await back.next()
        if "seq" in hello:  # what the naive client does with every message
            naive_cursor = hello["seq"]
        assert_hello(hello, uid, "websocket", latest)
        assert naive_cursor == cursor, "the hello moved a naive client's cursor past the replay"
        replay = [await back.next() for _ in range(latest - cursor)]
        for e in replay:
            assert_event_shape(e)
            assert e["seq"] == naive_cursor + 1, f"not the next event after {naive_cursor}: {strip(e)}"
            naive_cursor = e["seq"]
        assert naive_cursor == latest
        assert {e["task"]["id"] for e in replay} == set(missed)
        assert [e["task"]["status"] for e in replay if e["type"] == "done"] == ["succeeded", "succeeded"]
        await back.assert_silent(0.3)
        return cursor, latest

    cursor, latest = run(body())
    # The same over SSE, resumed with Last-Event-ID (as EventSource does) and with ?cursor=.
    for kwargs in ({"last_event_id": cursor}, {"cursor": cursor}):
        with SSEStream(server.base_url, uid=uid, **kwargs) as sse:
            hello = sse.next_frame()
            assert_hello(hello.json, uid, "sse", latest)
            frames = sse.events_until(lambda f: f.id == str(latest), 10)
            assert [int(f.id) for f in frames] == list(range(cursor + 1, latest + 1)), [f.id for f in frames]
            for f in frames:
                assert_event_shape(f.json)
    # And over long-poll (no hello at all): the events after the cursor.
    body = poll_all(api, server.base_url, uid, cursor)
    assert [e["seq"] for e in body["events"]] == list(range(cursor + 1, latest + 1)) and body["reset"] is False


# --------------------------------------------------------------------------- (d) the same shapes on every transport


def test_long_poll_and_sse_events_have_the_same_shapes(server, ws_connect, api, contract):
    uid = new_uid("same")
    with SSEStream(server.base_url, uid=uid) as sse:
        hello = sse.next_frame()
        assert_hello(hello.json, uid, "sse", 0)

        async def body():
            ws = await ws_connect(uid)
            assert_hello(await ws.next(), uid, "websocket", 0)
            ids = []
            for cmd, args in (("sleep", {"ms": 200}), ("fail", {"message": "x", "max_attempts": 1}),
                              ("echo", {"k": [1, 2]})):
                r = await asyncio.to_thread(api.post, f"{server.base_url}/poll", params={"uid": uid},
                                            json={"cmd": cmd, "args": args})
                assert r.status_code == 202 and r.json()["type"] == "submitted", r.text
                assert r.json()["task"]["args"] == args, r.json()   # POST /poll's reply: the whole task
                ids.append(r.json()["task"]["id"])
            for tid in ids:
                await ws.events_until_done(tid, 10)
            return ids, ws.events()

        ids, ws_events = run(body())
        latest = ws_events[-1]["seq"]
        frames = sse.events_until(lambda f: f.id == str(latest), 10)
    sse_events = []
    for f in frames:
        assert f.event == f.json["type"] and f.id == str(f.json["seq"]), f
        problems = contract.check_message("ServerMessage", f.json)
        assert not problems, problems
        sse_events.append(f.json)
    lp = poll_all(api, server.base_url, uid)
    assert lp["cursor"] == latest and lp["reset"] is False
    lp_events = lp["events"]
    for e in ws_events + sse_events + lp_events:
        assert_event_shape(e)
    assert ws_events == sse_events == lp_events, (list(map(strip, ws_events)), list(map(strip, sse_events)),
                                                  list(map(strip, lp_events)))
    dones = {e["task"]["id"]: e["task"] for e in lp_events if e["type"] == "done"}
    assert dones[ids[0]]["result"] == {"slept_ms": 200}
    assert dones[ids[1]] == {"id": ids[1], "status": "failed", "result": None, "error": "x"}
    assert dones[ids[2]]["result"] == {"k": [1, 2]}


# --------------------------------------------------------------------------- (e) the whole task is still there


def test_rest_and_status_replies_still_return_the_whole_task(server, ws_connect, api):
    uid = new_uid("whole")
    args = {"ms": 150, "note": "kept", "nested": {"a": [1, 2, 3]}}

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        reply = await submit(ws, "sleep", args)
        tid = reply["task"]["id"]
        events = await ws.events_until_done(tid, 10)
        status = await ws.request({"cmd": "status", "args": {"id": tid}})
        named = await ws.request({"cmd": "sleep", "args": dict(args, id="whole-1")})
        return tid, events, status, named

    tid, events, status, named = run(body())
    for e in events:
        assert_event_shape(e)
    rest = api.get(f"{server.base_url}/api/v1/tasks/{tid}").json()
    assert WHOLE_TASK_KEYS <= set(rest), sorted(rest)
    assert rest["cmd"] == "sleep" and rest["uid"] == uid and rest["args"] == args, rest
    assert rest["status"] == "succeeded" and rest["result"] == {"slept_ms": 150} and rest["error"] is None, rest
    assert rest["progress"] == pytest.approx(1.0) and rest["attempts"] == 1, rest
    assert rest["createdAt"] and rest["startedAt"] and rest["finishedAt"], rest
    # The done event agrees with the stored task on what it carries.
    assert events[-1]["task"] == {k: rest[k] for k in DONE_KEYS}, (events[-1], rest)
    # The status reply and the list have the whole task too.
    assert status["type"] == "status" and status["task"] == rest, (status, rest)
    listed = api.get(f"{server.base_url}/api/v1/tasks", params={"uid": uid}).json()["tasks"]
    assert [t for t in listed if t["id"] == tid] == [rest], listed
    assert named["type"] == "submitted" and named["task"]["args"] == dict(args, id="whole-1"), named
    assert named["task"]["id"] == f"{uid}~whole-1" and named["task"]["cmd"] == "sleep", named
    wait_task_final(api, server.base_url, named["task"]["id"], 10)
    # A cancel's answer over REST is the whole task as well.
    r = api.post(f"{server.base_url}/api/v1/tasks", json={"cmd": "sleep", "args": {"ms": 10000}, "uid": uid})
    assert r.status_code == 202 and r.json()["args"] == {"ms": 10000}, r.text
    c = api.post(f"{server.base_url}/api/v1/tasks/{r.json()['id']}/cancel")
    assert c.status_code == 200 and c.json()["args"] == {"ms": 10000} and c.json()["cmd"] == "sleep", c.text
    assert wait_task_final(api, server.base_url, r.json()["id"], 10)["status"] == "cancelled"
