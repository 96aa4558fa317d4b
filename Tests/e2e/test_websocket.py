"""WebSocket transport: /ws, hello, commands, events, cursor replay, errors, admin."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import new_uid, run, strip, wait_task_final

FINAL = ("succeeded", "failed", "cancelled", "timed_out")


def is_event_of(task_id: str, kind: str | None = None):
    def pred(m: dict) -> bool:
        return ("seq" in m and (m.get("task") or {}).get("id") == task_id
                and (kind is None or m["type"] == kind))
    return pred


async def submit(ws, cmd: str, args: dict | None = None, timeout: float = 5.0) -> dict:
    msg = {"cmd": cmd}
    if args is not None:
        msg["args"] = args
    reply = await ws.request(msg, timeout)
    assert reply["type"] == "submitted", reply
    assert reply["code"] == 202, reply
    return reply


# --------------------------------------------------------------------------- handshake


def test_permessage_deflate_negotiated_and_optional(server, ws_connect):
    uid = new_uid("deflate")

    async def body():
        ws = await ws_connect(uid, compression="deflate")
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in ext, f"server did not negotiate permessage-deflate: {ext!r}"
        hello = await ws.next()
        assert hello["type"] == "hello"
        await ws.ping()
        # A big, compressible message round-trips through the compressed connection.
        text = "compress me " * 2000
        reply = await submit(ws, "echo", {"text": text})
        done = await ws.wait_for(is_event_of(reply["task"]["id"], "done"), 10)
        assert done["task"]["status"] == "succeeded"
        assert done["task"]["result"] == {"text": text}

        plain = await ws_connect(uid, compression=None)
        ext = plain.response_headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" not in ext, f"deflate negotiated although not offered: {ext!r}"
        hello = await plain.next()
        assert hello["type"] == "hello"
        await plain.ping()

    run(body())


def test_hello_is_first_message_for_fresh_uid(server, ws_connect):
    uid = new_uid("hello")

    async def body():
        ws = await ws_connect(uid)
        hello = await ws.next()
        assert hello["type"] == "hello"
        assert "code" not in hello  # a Swoole-era page would read code 200 as a finished task
        assert hello["uid"] == uid
        assert hello["head"] == 0  # the uid's latest seq
        assert "seq" not in hello  # only events carry seq
        assert hello["transport"] == "websocket"
        assert hello["admin"] is False
        assert hello["reset"] is False
        # hello is sent only once
        await ws.ping()
        assert [m["type"] for m in ws.messages].count("hello") == 1

    run(body())


@pytest.mark.parametrize("query", ["", "cursor=0", "uid=", "uid=a%20b", "uid=" + "x" * 200,
                                   "uid=bad/slash", "uid=%C3%A9t%C3%A9"],
                         ids=["missing", "missing-with-cursor", "empty", "space", "200-chars", "slash", "non-ascii"])
def test_upgrade_rejected_for_bad_query(server, ws_connect, query):
    async def body():
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(None, query=query)
        resp = info.value.response
        assert resp.status_code == 400, f"?{query}: expected HTTP 400, got {resp.status_code}"

    run(body())


@pytest.mark.parametrize("query", ["", "uid=a%20b"], ids=["missing", "invalid"])
def test_upgrade_rejection_is_400_before_upgrade(server, ws_connect, contract, query):
    """A refused upgrade is HTTP 400 with Connection: close; the WebSocket library writes it, with no body
    (openapi.yaml says so). A plain GET without upgrade headers gets the JSON error (next test)."""
    async def body():
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(None, query=query)
        resp = info.value.response
        assert resp.status_code == 400
        assert resp.headers.get("Connection", "").lower() == "close"
        if resp.body:
            problems = contract.check("GET", "/ws", resp.status_code,
                                      resp.headers.get("Content-Type", ""), resp.body)
            assert not problems, problems

    run(body())


def test_plain_get_ws_without_upgrade_is_400_json(server, api):
    r = api.get(f"{server.base_url}/ws", params={"uid": new_uid()})
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"


# --------------------------------------------------------------------------- task lifecycle


def test_sleep_task_lifecycle(server, ws_connect, api):
    uid = new_uid("life")

    async def body():
        ws = await ws_connect(uid)
        assert (await ws.next())["type"] == "hello"
        await ws.send_json({"cmd": "sleep", "args": {"ms": 300}, "ref": "r-sleep"})
        reply = await ws.wait_for(lambda m: m.get("ref") == "r-sleep", 5, "the submitted reply")
        assert reply["type"] == "submitted"
        assert reply["code"] == 202
        assert reply["info"] == "task submitted"
        assert reply["duplicate"] is False
        task = reply["task"]
        assert task["status"] == "queued"
        assert task["cmd"] == "sleep" and task["uid"] == uid and task["args"] == {"ms": 300}
        assert task["startedAt"] is None and task["finishedAt"] is None
        assert task["result"] is None and task["error"] is None
        tid = task["id"]

        events = await ws.events_until_done(tid, 10)
        # the direct reply comes before any event of the task
        first_event_index = ws.messages.index(events[0])
        assert ws.messages.index(reply) < first_event_index, [strip(m) for m in ws.messages]

        progress = [e for e in events if e["type"] == "progress"]
        done = [e for e in events if e["type"] == "done"]
        assert len(done) == 1 and events[-1] is done[0], [strip(e) for e in events]
        assert len(progress) >= 1
        for e in progress:
            assert e["task"]["status"] == "running", strip(e)
            assert set(e["task"]) == {"id", "status", "progress", "attempts"}, e  # what changed, no args
            assert e["task"]["attempts"] == 1, e
            assert "code" not in e or e["code"] is None, e
            assert "ref" not in e or e["ref"] is None, e
        values = [e["task"]["progress"] for e in progress]
        assert all(b > a for a, b in zip(values, values[1:])), f"progress not increasing: {values}"
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1)), f"seq of a fresh uid must be 1,2,3...: {seqs}"

        d = done[0]
        assert d["code"] == 200
        assert d["task"] == {"id": tid, "status": "succeeded", "result": {"slept_ms": 300}, "error": None}, d
        assert "ref" not in d or d["ref"] is None
        # The whole task, with what the events do not carry, is the REST one.
        whole = (await asyncio.to_thread(api.get, f"{server.base_url}/api/v1/tasks/{tid}")).json()
        assert whole["status"] == "succeeded" and whole["result"] == {"slept_ms": 300}
        assert whole["progress"] == pytest.approx(1.0)
        assert whole["startedAt"] and whole["finishedAt"]
        assert whole["cmd"] == "sleep" and whole["args"] == {"ms": 300} and whole["uid"] == uid

    run(body())


def test_done_event_info_is_task_finished(server, ws_connect):
    """spec.md / protocol.md: done events have code 200 and info "task finished" for every outcome."""
    uid = new_uid("info")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        infos = {}
        for cmd, args in (("echo", {"x": 1}), ("fail", {"message": "nope"})):
            tid = (await submit(ws, cmd, args))["task"]["id"]
            done = await ws.wait_for(is_event_of(tid, "done"), 10)
            infos[done["task"]["status"]] = done["info"]
        assert infos == {"succeeded": "task finished", "failed": "task finished"}, infos

    run(body())


def test_echo_and_primes_results(server, ws_connect):
    uid = new_uid("results")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        e = await submit(ws, "echo", {"text": "hi", "n": [1, 2, {"k": None}]})
        p = await submit(ws, "primes", {"limit": 100})
        p0 = await submit(ws, "primes", {"limit": 0})
        s0 = await submit(ws, "sleep", {"ms": 0})
        e_done = await ws.wait_for(is_event_of(e["task"]["id"], "done"), 10)
        p_done = await ws.wait_for(is_event_of(p["task"]["id"], "done"), 10)
        p0_done = await ws.wait_for(is_event_of(p0["task"]["id"], "done"), 10)
        s0_done = await ws.wait_for(is_event_of(s0["task"]["id"], "done"), 10)
        assert e_done["task"]["result"] == {"text": "hi", "n": [1, 2, {"k": None}]}
        assert p_done["task"]["result"] == {"limit": 100, "count": 25}
        assert p0_done["task"]["result"] == {"limit": 0, "count": 0}
        assert s0_done["task"]["result"] == {"slept_ms": 0}
        # handlers command lists the built-ins
        h = await ws.request({"cmd": "handlers"})
        assert h["type"] == "handlers" and h["code"] == 200
        assert sorted(h["handlers"]) == ["echo", "fail", "primes", "sleep"]

    run(body())


def test_events_only_reach_the_owner_uid(server, ws_connect):
    owner, other = new_uid("owner"), new_uid("other")

    async def body():
        a1 = await ws_connect(owner)
        a2 = await ws_connect(owner, compression="deflate")
        b = await ws_connect(other)
        for c in (a1, a2, b):
            assert (await c.next())["type"] == "hello"
        tid = (await submit(a1, "sleep", {"ms": 200}))["task"]["id"]
        ev1 = await a1.events_until_done(tid, 10)
        ev2 = await a2.events_until_done(tid, 10)
        # both connections of the owner see the same events with the same seqs
        assert [(e["seq"], e["type"]) for e in ev1] == [(e["seq"], e["type"]) for e in ev2]
        # the other uid gets nothing at all (bounded wait), and its socket still works
        await b.assert_silent(0.7)
        await b.ping()
        assert b.events() == [], [strip(m) for m in b.events()]
        # a2 did not send anything, so it must not have got a submitted reply
        assert not [m for m in a2.messages if m["type"] == "submitted"]

    run(body())


def test_reconnect_with_cursor_replays_missed_events(server, ws_connect, api):
    uid = new_uid("resume")

    async def body():
        ws = await ws_connect(uid)
        assert (await ws.next())["head"] == 0
        tid = (await submit(ws, "sleep", {"ms": 1000}))["task"]["id"]
        first = await ws.wait_for(is_event_of(tid, "progress"), 5)
        last_seq = max(e["seq"] for e in ws.events())
        assert first["seq"] <= last_seq
        await ws.close()

        task = await asyncio.to_thread(wait_task_final, api, server.base_url, tid, 10)
        assert task["status"] == "succeeded"

        ws2 = await ws_connect(uid, cursor=last_seq)
        hello = await ws2.next()
        assert hello["type"] == "hello"
        assert hello["reset"] is False and "seq" not in hello
        latest = hello["head"]
        assert latest > last_seq
        replay = [await ws2.next() for _ in range(latest - last_seq)]
        seqs = [m["seq"] for m in replay]
        assert seqs == list(range(last_seq + 1, latest + 1)), f"gap/order problem: {seqs}"
        assert all(m["task"]["id"] == tid for m in replay)
        assert replay[-1]["type"] == "done" and replay[-1]["task"]["status"] == "succeeded"
        assert all(m["type"] == "progress" for m in replay[:-1])
        await ws2.assert_silent(0.3)

        # Without a cursor there is no replay at all.
        ws3 = await ws_connect(uid)
        hello3 = await ws3.next()
        assert hello3["head"] == latest and hello3["reset"] is False
        await ws3.assert_silent(0.5)

        # cursor=0 replays everything from seq 1 (the whole log is retained) without reset.
        ws4 = await ws_connect(uid, cursor=0)
        hello4 = await ws4.next()
        assert hello4["reset"] is False
        all_events = [await ws4.next() for _ in range(latest)]
        assert [m["seq"] for m in all_events] == list(range(1, latest + 1))

    run(body())


def test_cursor_newer_than_log_resets(server, ws_connect):
    fresh = new_uid("reset")
    used = new_uid("reset-used")

    async def body():
        ws = await ws_connect(fresh, cursor=999999)
        hello = await ws.next()
        assert hello["type"] == "hello" and hello["reset"] is True and hello["head"] == 0, hello

        w = await ws_connect(used)
        await w.next()
        tid = (await submit(w, "echo", {"a": 1}))["task"]["id"]
        await w.events_until_done(tid)
        latest = max(e["seq"] for e in w.events())

        ws2 = await ws_connect(used, cursor=latest + 5)
        hello2 = await ws2.next()
        assert hello2["reset"] is True and hello2["head"] == latest, hello2
        # replay starts at the oldest retained event
        replay = [await ws2.next() for _ in range(latest)]
        assert [m["seq"] for m in replay] == list(range(1, latest + 1))

        # cursor == latest is exact: no reset, no replay
        ws3 = await ws_connect(used, cursor=latest)
        hello3 = await ws3.next()
        assert hello3["reset"] is False
        await ws3.assert_silent(0.3)

    run(body())


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_get_errors_and_socket_stays_open(server, ws_connect, api):
    uid = new_uid("bad")
    # a task that belongs to another uid
    r = api.post(f"{server.base_url}/api/v1/tasks", json={"cmd": "echo", "args": {}, "uid": new_uid("owner")})
    assert r.status_code == 202
    foreign_id = r.json()["id"]

    big = json.dumps({"cmd": "echo", "args": {"blob": "x" * (64 * 1024 + 10)}, "ref": "r-big"})
    cases = [
        # (name, frame, code, slug, ref echoed)
        ("not json", "this is not json", 400, "bad_request", None),
        ("json array", '[{"cmd": "ping"}]', 400, "bad_request", None),
        ("json string", '"ping"', 400, "bad_request", None),
        ("no cmd", json.dumps({"args": {}}), 400, "bad_request", None),
        ("cmd not string", json.dumps({"cmd": 42}), 400, "bad_request", None),
        ("args not object", json.dumps({"cmd": "echo", "args": [1, 2]}), 400, "bad_request", None),
        ("unknown command", json.dumps({"cmd": "resize", "ref": "r-unknown"}), 404, "unknown_command", "r-unknown"),
        ("status unknown id", json.dumps({"cmd": "status", "args": {"id": "no-such-" + uuid.uuid4().hex},
                                          "ref": "r-st"}), 404, "not_found", "r-st"),
        ("status foreign task", json.dumps({"cmd": "status", "args": {"id": foreign_id}, "ref": "r-sf"}),
         404, "not_found", "r-sf"),
        ("cancel without id", json.dumps({"cmd": "cancel", "ref": "r-c"}), 400, "bad_request", "r-c"),
        ("cancel args without id", json.dumps({"cmd": "cancel", "args": {}, "ref": "r-c2"}), 400,
         "bad_request", "r-c2"),
        ("binary frame", b'{"cmd": "ping"}', 400, "bad_request", None),
        ("too large", big, 413, "too_large", None),
        ("sleep ms -1", json.dumps({"cmd": "sleep", "args": {"ms": -1}, "ref": "r-ms"}), 400, "bad_request", "r-ms"),
        ("sleep ms too big", json.dumps({"cmd": "sleep", "args": {"ms": 600001}, "ref": "r-ms2"}), 400,
         "bad_request", "r-ms2"),
        ("sleep ms string", json.dumps({"cmd": "sleep", "args": {"ms": "300"}, "ref": "r-ms3"}), 400,
         "bad_request", "r-ms3"),
        ("primes limit too big", json.dumps({"cmd": "primes", "args": {"limit": 100000001}, "ref": "r-pl"}),
         400, "bad_request", "r-pl"),
        ("timeout_ms zero", json.dumps({"cmd": "echo", "args": {"timeout_ms": 0}, "ref": "r-t0"}), 400,
         "bad_request", "r-t0"),
        ("bad task id", json.dumps({"cmd": "echo", "args": {"id": "has space"}, "ref": "r-id"}), 400,
         "bad_request", "r-id"),
        ("task id too long", json.dumps({"cmd": "echo", "args": {"id": "i" * 129}, "ref": "r-id2"}), 400,
         "bad_request", "r-id2"),
        ("clients without admin", json.dumps({"cmd": "clients", "ref": "r-cl"}), 403, "forbidden", "r-cl"),
        ("reload without admin", json.dumps({"cmd": "reload", "ref": "r-rl"}), 403, "forbidden", "r-rl"),
    ]

    async def body():
        ws = await ws_connect(uid, compression=None)
        assert (await ws.next())["type"] == "hello"
        failures = []
        for name, frame, code, slug, ref in cases:
            await ws.conn.send(frame)
            try:
                reply = await ws.next(5)
            except (AssertionError, asyncio.TimeoutError, websockets.ConnectionClosed) as e:
                failures.append(f"{name}: no reply ({type(e).__name__}: {e})")
                if isinstance(e, websockets.ConnectionClosed):
                    break
                continue
            problems = []
            if reply.get("type") != "error":
                problems.append(f"type={reply.get('type')!r}")
            if reply.get("code") != code:
                problems.append(f"code={reply.get('code')!r} (want {code})")
            if reply.get("error") != slug:
                problems.append(f"error={reply.get('error')!r} (want {slug})")
            if not isinstance(reply.get("info"), str) or not reply.get("info"):
                problems.append("info missing")
            if ref is not None and reply.get("ref") != ref:
                problems.append(f"ref={reply.get('ref')!r} (want {ref})")
            if problems:
                failures.append(f"{name}: {', '.join(problems)}; reply={reply}")
            try:
                await ws.ping(5)
            except Exception as e:  # noqa: BLE001 - report which case killed the socket
                failures.append(f"{name}: socket unusable afterwards ({type(e).__name__}: {e})")
                break
        assert not failures, "\n".join(failures)
        # nothing got submitted by any of these
        assert not [m for m in ws.messages if m["type"] in ("submitted", "progress", "done")]

    run(body())


# --------------------------------------------------------------------------- admin over WS


def test_admin_over_websocket_from_loopback(server, ws_connect, api):
    uid = new_uid("wsadmin")

    async def body():
        ws = await ws_connect(uid, admin=True)
        hello = await ws.next()
        assert hello["admin"] is True, hello
        reply = await ws.request({"cmd": "clients"})
        assert reply["type"] == "clients" and reply["code"] == 200, reply
        mine = [c for c in reply["clients"] if c["uid"] == uid]
        assert len(mine) == 1, reply["clients"]
        assert mine[0]["transport"] == "websocket" and mine[0]["admin"] is True
        assert mine[0]["remote"].startswith("127.0.0.1:")

        gen0 = (await asyncio.to_thread(api.get, f"{server.base_url}/healthz")).json()["generation"]
        r1 = await ws.request({"cmd": "reload"})
        assert r1["type"] == "reloaded" and r1["code"] == 200, r1
        assert r1["generation"] == gen0 + 1
        assert sorted(r1["handlers"]) == ["echo", "fail", "primes", "sleep"]
        r2 = await ws.request({"cmd": "reload"})
        assert r2["generation"] == r1["generation"] + 1
        health = (await asyncio.to_thread(api.get, f"{server.base_url}/healthz")).json()
        assert health["generation"] == r2["generation"]
        # tasks keep working after a reload
        tid = (await submit(ws, "echo", {"after": "reload"}))["task"]["id"]
        done = await ws.wait_for(is_event_of(tid, "done"), 10)
        assert done["task"]["status"] == "succeeded"

        # admin=1 is not admin for a connection that did not ask
        plain = await ws_connect(new_uid("notadmin"))
        assert (await plain.next())["admin"] is False

    run(body())


# --------------------------------------------------------------------------- ids, cancel, timeout, fail


def test_duplicate_id_returns_same_task_and_runs_once(server, ws_connect):
    uid = new_uid("dup")
    task_id = "job-" + uuid.uuid4().hex[:12]

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        r1 = await submit(ws, "sleep", {"ms": 200, "id": task_id})
        r2 = await submit(ws, "sleep", {"ms": 200, "id": task_id})
        assert r1["duplicate"] is False
        assert r2["duplicate"] is True, r2
        scoped = f"{uid}~{task_id}"  # client-given ids are per uid
        assert r1["task"]["id"] == r2["task"]["id"] == scoped
        await ws.events_until_done(scoped, 10)
        r3 = await submit(ws, "sleep", {"ms": 200, "id": task_id})  # after it finished
        assert r3["duplicate"] is True and r3["task"]["status"] == "succeeded", r3
        await ws.assert_silent(0.6)
        dones = [e for e in ws.events(scoped) if e["type"] == "done"]
        assert len(dones) == 1, [strip(e) for e in ws.events(scoped)]

        st = await ws.request({"cmd": "status", "args": {"id": task_id}})
        assert st["type"] == "status" and st["code"] == 200
        assert st["task"]["id"] == scoped and st["task"]["status"] == "succeeded"
        assert st["task"]["result"] == {"slept_ms": 200}

        # the same id from another uid is another task, and the first stays invisible to it
        other = await ws_connect(new_uid("dup-other"))
        await other.next()
        theirs = await other.request({"cmd": "echo", "args": {"id": task_id}})
        assert theirs["type"] == "submitted" and theirs["code"] == 202 and theirs["task"]["id"] != scoped, theirs
        foreign = await other.request({"cmd": "status", "args": {"id": scoped}})
        assert foreign["type"] == "error" and foreign["code"] == 404, foreign

    run(body())


def test_cancel_running_task(server, ws_connect):
    uid = new_uid("cancel")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        tid = (await submit(ws, "sleep", {"ms": 10000}))["task"]["id"]
        await ws.wait_for(is_event_of(tid, "progress"), 5)
        t0 = time.monotonic()
        reply = await ws.request({"cmd": "cancel", "args": {"id": tid}})
        assert reply["type"] == "cancelling" and reply["code"] == 200, reply
        assert reply["task"]["id"] == tid
        done = await ws.wait_for(is_event_of(tid, "done"), 5)
        assert time.monotonic() - t0 < 3, "cancel took too long"
        assert done["task"]["status"] == "cancelled"
        assert isinstance(done["task"]["error"], str) and done["task"]["error"]
        assert done["task"]["result"] is None
        again = await ws.request({"cmd": "cancel", "args": {"id": tid}})
        assert again["type"] == "error" and again["code"] == 409 and again["error"] == "already_finished", again
        unknown = await ws.request({"cmd": "cancel", "args": {"id": "nope-" + uuid.uuid4().hex}})
        assert unknown["code"] == 404 and unknown["error"] == "not_found", unknown

    run(body())


def test_per_task_timeout(server, ws_connect):
    uid = new_uid("timeout")

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        t0 = time.monotonic()
        reply = await submit(ws, "sleep", {"ms": 5000, "timeout_ms": 300})
        assert reply["task"]["args"].get("timeout_ms") == 300
        done = await ws.wait_for(is_event_of(reply["task"]["id"], "done"), 5)
        elapsed = time.monotonic() - t0
        assert done["task"]["status"] == "timed_out", done
        assert isinstance(done["task"]["error"], str) and done["task"]["error"]
        assert done["task"]["result"] is None
        assert 0.25 < elapsed < 3, f"timed out after {elapsed:.2f}s, expected ~0.3s"

    run(body())


def test_fail_handler(server, ws_connect):
    uid = new_uid("fail")
    message = "boom " + uuid.uuid4().hex

    async def body():
        ws = await ws_connect(uid)
        await ws.next()
        t1 = (await submit(ws, "fail", {"message": message}))["task"]["id"]
        t2 = (await submit(ws, "fail"))["task"]["id"]
        d1 = await ws.wait_for(is_event_of(t1, "done"), 5)
        d2 = await ws.wait_for(is_event_of(t2, "done"), 5)
        assert d1["code"] == 200
        assert d1["task"]["status"] == "failed" and d1["task"]["error"] == message
        assert d1["task"]["result"] is None
        assert d2["task"]["status"] == "failed" and d2["task"]["error"] == "failed on purpose"

    run(body())


def test_cpu_bound_task_does_not_block_pings(server, ws_connect):
    async def body():
        worker = await ws_connect(new_uid("cpu"))
        pinger = await ws_connect(new_uid("pinger"))
        await worker.next()
        await pinger.next()
        tid = (await submit(worker, "primes", {"limit": 100_000_000}))["task"]["id"]
        await worker.wait_for(is_event_of(tid, "progress"), 5)  # it is really running now
        latencies = []
        for _ in range(20):
            t = time.perf_counter()
            await pinger.ping(2)
            latencies.append(time.perf_counter() - t)
        st = await pinger.request({"cmd": "status", "args": {"id": tid}})
        # status of another uid's task is not visible; ask the owner instead
        assert st["code"] == 404
        own = await worker.request({"cmd": "status", "args": {"id": tid}})
        assert own["task"]["status"] == "running", "primes finished before the pings: test proves nothing"
        assert max(latencies) < 0.5, f"pings blocked by a CPU-bound task: max {max(latencies):.3f}s"
        done = await worker.wait_for(is_event_of(tid, "done"), 60)
        assert done["task"]["status"] == "succeeded"
        assert done["task"]["result"] == {"limit": 100_000_000, "count": 5761455}
        progress = [e["task"]["progress"] for e in worker.events(tid) if e["type"] == "progress"]
        assert progress == sorted(progress)

    run(body(), timeout=90)
