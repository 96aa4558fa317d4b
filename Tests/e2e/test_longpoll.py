"""Long-poll transport: GET /poll (events) and POST /poll (commands)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
import uuid

import pytest
import requests

from conftest import new_uid, run, strip
from sse_client import SSEStream


def poll(api, server, uid, cursor=0, timeout=5, **kw):
    return api.get(f"{server.base_url}/poll", params={"uid": uid, "cursor": cursor, "timeout": timeout},
                   timeout=timeout + 10, **kw)


def post(api, server, uid, msg, admin=False, **kw):
    params = {"uid": uid}
    if admin:
        params["admin"] = "1"
    return api.post(f"{server.base_url}/poll", params=params, json=msg, **kw)


def poll_until_done(api, server, uid, task_id, cursor=0, deadline_s=15.0):
    """GET /poll loop; returns (events, cursor) once task_id's done event was seen."""
    events = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        r = poll(api, server, uid, cursor, timeout=5)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["reset"] is False, body
        if body["events"]:
            assert body["cursor"] == body["events"][-1]["seq"], body
        else:
            assert body["cursor"] == cursor
        events.extend(body["events"])
        cursor = body["cursor"]
        if any(e["type"] == "done" and e["task"]["id"] == task_id for e in body["events"]):
            return events, cursor
    raise AssertionError(f"no done event for {task_id} via GET /poll: {[strip(e) for e in events]}")


def submit(api, server, uid, cmd, args=None, ref=None):
    msg = {"cmd": cmd}
    if args is not None:
        msg["args"] = args
    if ref is not None:
        msg["ref"] = ref
    r = post(api, server, uid, msg)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["type"] == "submitted" and body["code"] == 202, body
    return body


def test_longpoll_sequence_matches_websocket(server, api, ws_connect):
    uid = new_uid("lp")

    async def body():
        ws = await ws_connect(uid)
        hello = await ws.next()
        assert hello["head"] == 0 and "seq" not in hello

        r = await asyncio.to_thread(post, api, server, uid, {"cmd": "sleep", "args": {"ms": 300}, "ref": "lp-r1"})
        assert r.status_code == 202, r.text
        reply = r.json()
        assert reply["type"] == "submitted" and reply["code"] == 202
        assert reply["ref"] == "lp-r1" and reply["duplicate"] is False
        assert reply["task"]["status"] == "queued" and reply["task"]["uid"] == uid
        tid = reply["task"]["id"]

        (lp_events, cursor), ws_events = await asyncio.gather(
            asyncio.to_thread(poll_until_done, api, server, uid, tid),
            ws.events_until_done(tid, 15))

        seqs = [e["seq"] for e in lp_events]
        assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
        assert seqs[0] == 1 and cursor == seqs[-1]
        assert lp_events[-1]["type"] == "done"
        assert lp_events[-1]["task"]["status"] == "succeeded"
        assert lp_events[-1]["task"]["result"] == {"slept_ms": 300}
        assert any(e["type"] == "progress" for e in lp_events)
        for e in lp_events[:-1]:
            assert e["type"] == "progress" and e["task"]["status"] == "running"
        # identical stream on both transports: the same events, in the same (new) shapes
        key = lambda e: (e["seq"], e["type"], e["task"]["status"], e["task"].get("progress"))  # noqa: E731
        assert [key(e) for e in lp_events] == [key(e) for e in ws_events]
        assert lp_events == ws_events, ([strip(e) for e in lp_events], [strip(e) for e in ws_events])
        # the submitted reply is never part of GET /poll
        assert all(e["type"] in ("progress", "done") for e in lp_events)

    run(body())


def test_poll_timeout_returns_empty_and_same_cursor(server, api):
    uid = new_uid("lp-idle")
    # fresh uid
    t0 = time.monotonic()
    r = poll(api, server, uid, 0, timeout=1)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200
    assert r.json() == {"events": [], "cursor": 0, "reset": False}
    assert 0.8 <= elapsed <= 3.0, f"timeout=1 answered after {elapsed:.2f}s"

    # uid with events, cursor at the latest seq
    tid = submit(api, server, uid, "echo", {"k": "v"})["task"]["id"]
    _, cursor = poll_until_done(api, server, uid, tid)
    assert cursor >= 1
    t0 = time.monotonic()
    r = poll(api, server, uid, cursor, timeout=1)
    elapsed = time.monotonic() - t0
    assert r.json() == {"events": [], "cursor": cursor, "reset": False}
    assert 0.8 <= elapsed <= 3.0, f"timeout=1 answered after {elapsed:.2f}s"

    # timeout=0 answers at once
    t0 = time.monotonic()
    r = poll(api, server, uid, cursor, timeout=0)
    assert time.monotonic() - t0 < 1.0
    assert r.json() == {"events": [], "cursor": cursor, "reset": False}

    # an older cursor gets the retained events at once
    r = poll(api, server, uid, 0, timeout=0)
    body = r.json()
    assert [e["seq"] for e in body["events"]] == list(range(1, cursor + 1))
    assert body["cursor"] == cursor and body["reset"] is False


def test_poll_reset_for_cursor_beyond_latest(server, api):
    fresh = new_uid("lp-reset")
    r = poll(api, server, fresh, 5, timeout=0)
    assert r.status_code == 200
    body = r.json()
    assert body["reset"] is True and body["events"] == [], body
    assert body["cursor"] == 0, "the returned cursor must not be beyond the latest seq"

    uid = new_uid("lp-reset2")
    tid = submit(api, server, uid, "sleep", {"ms": 50})["task"]["id"]
    events, latest = poll_until_done(api, server, uid, tid)
    r = poll(api, server, uid, latest + 100, timeout=0)
    body = r.json()
    assert body["reset"] is True, body
    assert [e["seq"] for e in body["events"]] == list(range(1, latest + 1)), "replay must start at the oldest event"
    assert body["cursor"] == latest


@pytest.mark.parametrize("params", [
    {"uid": "U", "timeout": "61"},
    {"uid": "U", "timeout": "-1"},
    {"uid": "U", "timeout": "abc"},
    {"uid": "U", "timeout": "1.5"},
    {"uid": "U", "cursor": "-1"},
    {"uid": "U", "cursor": "abc"},
    {"timeout": "1"},
    {"uid": "", "timeout": "1"},
    {"uid": "a b", "timeout": "1"},
    {"uid": "x" * 129, "timeout": "1"},
], ids=["timeout-61", "timeout-neg", "timeout-abc", "timeout-float", "cursor-neg", "cursor-abc",
        "uid-missing", "uid-empty", "uid-space", "uid-too-long"])
def test_poll_bad_parameters_are_400(server, api, params):
    params = {k: (new_uid() if v == "U" else v) for k, v in params.items()}
    t0 = time.monotonic()
    r = api.get(f"{server.base_url}/poll", params=params)
    assert r.status_code == 400, f"{params}: {r.status_code} {r.text}"
    assert time.monotonic() - t0 < 2, "a bad request must not wait for the poll timeout"
    body = r.json()
    assert body["type"] == "error" and body["code"] == 400 and body["error"] == "bad_request"


def test_timeout_60_is_accepted(server, api):
    """timeout=60 is the documented maximum; answered promptly when events already exist."""
    uid = new_uid("lp-60")
    tid = submit(api, server, uid, "echo", {})["task"]["id"]
    poll_until_done(api, server, uid, tid)
    r = poll(api, server, uid, 0, timeout=60)
    assert r.status_code == 200 and r.json()["events"]


def test_waiting_poll_is_woken_promptly(server, api):
    uid = new_uid("lp-wake")
    result = {}

    def waiter():
        t = time.monotonic()
        r = poll(api, server, uid, 0, timeout=10)
        result["returned_at"] = time.monotonic()
        result["started_at"] = t
        result["response"] = r

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    time.sleep(0.5)  # the poll is now parked on the server
    assert "response" not in result, "poll returned before any event existed"
    t_submit = time.monotonic()
    tid = submit(api, server, uid, "echo", {"wake": True})["task"]["id"]
    th.join(timeout=12)
    assert not th.is_alive(), "poll did not return"
    r = result["response"]
    assert r.status_code == 200
    body = r.json()
    latency = result["returned_at"] - t_submit
    assert latency < 1.0, f"waiting poll woke up {latency:.2f}s after the task finished"
    assert any(e["task"]["id"] == tid for e in body["events"]), body


def test_post_poll_commands(server, api):
    uid = new_uid("lp-cmd")
    base = f"{server.base_url}/poll"

    r = post(api, server, uid, {"cmd": "ping", "ref": "p1"})
    assert r.status_code == 200 and r.json() == {"type": "pong", "code": 200, "ref": "p1"}
    r = post(api, server, uid, {"cmd": "ping"})
    assert r.status_code == 200 and r.json().get("ref") is None, "ref must be absent when not sent"

    r = post(api, server, uid, {"cmd": "handlers"})
    assert r.status_code == 200 and sorted(r.json()["handlers"]) == ["echo", "fail", "primes", "sleep"]

    # status of own task, duplicate id, foreign id
    task_id = "lp-" + uuid.uuid4().hex[:10]
    first = submit(api, server, uid, "echo", {"id": task_id, "v": 1})
    again = post(api, server, uid, {"cmd": "echo", "args": {"id": task_id, "v": 1}})
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["task"]["id"] == first["task"]["id"] == f"{uid}~{task_id}"
    # Ids are per uid: another uid's same id is its own task.
    foreign = post(api, server, new_uid("lp-other"), {"cmd": "echo", "args": {"id": task_id}, "ref": "f"})
    assert foreign.status_code == 202 and foreign.json()["task"]["id"] != first["task"]["id"] and foreign.json()["ref"] == "f"
    poll_until_done(api, server, uid, first["task"]["id"])
    st = post(api, server, uid, {"cmd": "status", "args": {"id": task_id}, "ref": "s"})
    assert st.status_code == 200
    assert st.json()["type"] == "status" and st.json()["task"]["status"] == "succeeded"
    assert st.json()["task"]["result"] == {"id": task_id, "v": 1} or st.json()["task"]["result"] == {"v": 1}

    # cancel: running -> cancelling; finished -> 409; unknown -> 404
    long_id = submit(api, server, uid, "sleep", {"ms": 10000})["task"]["id"]
    c = post(api, server, uid, {"cmd": "cancel", "args": {"id": long_id}, "ref": "c"})
    assert c.status_code == 200 and c.json()["type"] == "cancelling" and c.json()["ref"] == "c"
    events, _ = poll_until_done(api, server, uid, long_id)
    assert events[-1]["task"]["status"] == "cancelled"
    c2 = post(api, server, uid, {"cmd": "cancel", "args": {"id": long_id}})
    assert c2.status_code == 409 and c2.json()["error"] == "already_finished"
    c3 = post(api, server, uid, {"cmd": "cancel", "args": {"id": "missing-" + uuid.uuid4().hex}})
    assert c3.status_code == 404 and c3.json()["error"] == "not_found"

    # errors
    r = post(api, server, uid, {"cmd": "resize", "ref": "r9"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_command" and r.json()["ref"] == "r9"
    r = post(api, server, uid, {"cmd": "status", "args": {"id": "nope-" + uuid.uuid4().hex}})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = post(api, server, uid, {"cmd": "sleep", "args": {"ms": -1}})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = api.post(base, params={"uid": uid}, data=b'{"cmd": "echo", "args": {"x": "' + b"y" * 70000 + b'"}}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


@pytest.mark.parametrize("body", [b"this is not json", b"[1, 2]", b"{}", b'{"cmd": 1}',
                                  b'{"cmd": "echo", "args": "x"}', b""],
                         ids=["not-json", "array", "no-cmd", "cmd-int", "args-string", "empty"])
def test_post_poll_malformed_body_is_400_json(server, api, body):
    r = api.post(f"{server.base_url}/poll", params={"uid": new_uid()}, data=body,
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    err = r.json()
    assert err["type"] == "error" and err["code"] == 400 and err["error"] == "bad_request"


def test_post_poll_requires_uid(server, api):
    r = api.post(f"{server.base_url}/poll", json={"cmd": "ping"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = api.post(f"{server.base_url}/poll", params={"uid": "bad uid"}, json={"cmd": "ping"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_post_poll_admin_commands(server, api):
    uid = new_uid("lp-admin")
    for cmd in ("clients", "reload"):
        r = post(api, server, uid, {"cmd": cmd, "ref": "a"})
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "forbidden" and r.json()["ref"] == "a"

    r = post(api, server, uid, {"cmd": "clients"}, admin=True)
    assert r.status_code == 200 and r.json()["type"] == "clients"
    assert any(c["uid"] == uid and c["transport"] == "long-poll" for c in r.json()["clients"]), r.json()

    gen = api.get(f"{server.base_url}/healthz").json()["generation"]
    r = post(api, server, uid, {"cmd": "reload"}, admin=True)
    assert r.status_code == 200 and r.json()["type"] == "reloaded"
    assert r.json()["generation"] == gen + 1


def _raw_exchange(server, requests_bytes: list[bytes], timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """Send HTTP/1.1 requests one after another on ONE TCP connection; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    out = []
    try:
        for method, path, body in requests_bytes:
            headers = {"Content-Type": "application/json"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            out.append((resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()))
            if out[-1][1].get("connection", "").lower() == "close":
                conn.close()  # the server announced it; a fresh connection is legitimate
    finally:
        conn.close()
    return out


def test_get_poll_keeps_connection_reusable(server):
    """HTTP/1.1 keep-alive after GET /poll.

    RFC 9112 §9.6: a server that closes a persistent connection must say so with
    "Connection: close". A plain HTTP client (requests, urllib3, curl with reuse) then sends
    its next request on the same connection, and fails if the server closed it silently.
    """
    uid = new_uid("ka")
    steps = [("GET", f"/poll?uid={uid}&cursor=0&timeout=0", None),
             ("POST", f"/poll?uid={uid}", b'{"cmd": "ping", "ref": "after-get"}'),
             ("GET", "/healthz", None)]
    try:
        results = _raw_exchange(server, steps)
    except (http.client.HTTPException, OSError) as e:  # RemoteDisconnected, ConnectionResetError
        pytest.fail(f"the server closed the connection after GET /poll without 'Connection: close': "
                    f"the next request on the same connection failed with {type(e).__name__}: {e}")
    assert [r[0] for r in results] == [200, 200, 200]


# --------------------------------------------------------------------------- Server-Sent Events (GET /sse)
# The SSE stream shares the uid's event log with WebSocket and long-poll; its commands go through POST /poll.
# The resume-with-Last-Event-ID test and the browser client are in test_client_lib.py.


def _sse_messages(contract, frames):
    msgs = []
    for f in frames:
        msg = f.json
        problems = contract.check_message("ServerMessage", msg)
        assert not problems, "SSE data does not match openapi ServerMessage:\n" + "\n".join(problems)
        assert f.event == msg["type"], f"event name {f.event!r} but data type {msg['type']!r}"
        if msg["type"] == "hello":
            assert "seq" not in msg and f.id is None, f"a hello has no seq and no id: {f}"
        else:
            assert f.id == str(msg["seq"]), f"id: {f.id!r} must be the seq {msg['seq']}"
        msgs.append(msg)
    return msgs


def test_sse_stream_matches_long_poll(server, api, contract):
    uid = new_uid("sse")
    with SSEStream(server.base_url, uid=uid) as sse:
        assert sse.status == 200
        assert sse.content_type.split(";")[0].strip() == "text/event-stream"
        assert sse.headers.get("Cache-Control") == "no-store"
        contract.covered.add(("/sse", "get", "200"))  # a stream: checked here frame by frame, not by `api`
        (hello,) = _sse_messages(contract, [sse.next_frame()])
        assert hello["type"] == "hello" and hello["transport"] == "sse" and hello["uid"] == uid, hello
        assert hello["head"] == 0 and hello["reset"] is False and hello["admin"] is False

        reply = submit(api, server, uid, "sleep", {"ms": 200}, ref="sse-1")
        tid = reply["task"]["id"]
        frames = sse.events_until(lambda f: f.event == "done", timeout=10)
        events = _sse_messages(contract, frames)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["task"]["id"] == tid and events[-1]["task"]["status"] == "succeeded"

        clients = api.get(f"{server.base_url}/api/v1/clients").json()["clients"]
        assert any(c["uid"] == uid and c["transport"] == "sse" for c in clients), clients
        stats = api.get(f"{server.base_url}/api/v1/stats").json()
        assert stats["connections"]["sse"] >= 1

    # the same events, the same seqs, in the same shapes, in the long-poll log
    r = poll(api, server, uid, 0, timeout=0)
    assert [(e["seq"], e["type"]) for e in r.json()["events"]] == [(e["seq"], e["type"]) for e in events]
    assert r.json()["events"] == events


@pytest.mark.parametrize("params,headers", [
    ({}, {}),
    ({"uid": "bad uid"}, {}),
    ({"uid": "x" * 129}, {}),
    ({"uid": "ok", "cursor": "-1"}, {}),
    ({"uid": "ok", "cursor": "abc"}, {}),
    ({"uid": "ok"}, {"Last-Event-ID": "not-a-seq"}),
], ids=["no-uid", "bad-uid", "long-uid", "negative-cursor", "text-cursor", "bad-last-event-id"])
def test_sse_bad_parameters_are_400(server, api, params, headers):
    r = api.get(f"{server.base_url}/sse", params=params, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "bad_request"


# --------------------------------------------------------------------------- where a GET /poll waits
# A GET /poll that opens its connection is parked on the event loop (no task); one that follows other requests on a
# kept-alive connection waits in the router. Both must wake on the same event, time out alike and free their place.


def test_get_poll_after_other_requests_on_one_connection_is_woken(server, api):
    uid = new_uid("lp-keepalive")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        conn.request("POST", f"/poll?uid={uid}", body=b'{"cmd":"ping"}', headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status == 200 and first.getheader("Connection", "").lower() != "close"
        first.read()
        conn.request("GET", f"/poll?uid={uid}&cursor=0&timeout=10")  # the same connection: the router's poll
        time.sleep(0.3)
        tid = submit(api, server, uid, "echo", {"n": 1})["task"]["id"]
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    assert answer.status == 200 and answer.getheader("Connection", "").lower() == "close"
    events = json.loads(body)["events"]
    assert events and events[0]["task"]["id"] == tid, body


@pytest.mark.parametrize("reuse", [False, True], ids=["own-connection", "kept-alive"])
def test_a_parked_poll_whose_client_leaves_frees_its_place(start_server, reuse):
    """--max-polls-per-uid 2: two polls parked and dropped by their clients, then two more fit again."""
    srv = start_server("--max-polls-per-uid", "2")
    uid = new_uid("lp-leave")

    def park():
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        if reuse:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        conn.request("GET", f"/poll?uid={uid}&cursor=0&timeout=30")
        return conn

    def parked_count():
        clients = requests.get(f"{srv.base_url}/api/v1/clients", timeout=5).json()["clients"]
        return sum(1 for c in clients if c["uid"] == uid)

    held = [park(), park()]
    # A third is over the limit once both wait (a poll is listed when it arrives and counted against the limit once
    # it is parked, a moment later: until then a third, which waits for nothing, is answered at once).
    deadline = time.monotonic() + 10
    while True:
        over = requests.get(f"{srv.base_url}/poll", params={"uid": uid, "timeout": 0}, timeout=10)
        if over.status_code == 429:
            break
        assert over.status_code == 200 and time.monotonic() < deadline, f"never over the limit: {over.status_code} {over.text}"
        time.sleep(0.05)
    assert parked_count() == 1  # the uid's polls are one client in the list
    for conn in held:
        conn.close()
    # Their places come back once the server sees them gone (the 429 turns into a wait again).
    deadline = time.monotonic() + 10
    while True:
        again = requests.get(f"{srv.base_url}/poll", params={"uid": uid, "timeout": 0}, timeout=10)
        if again.status_code == 200:
            break
        assert time.monotonic() < deadline, f"the dropped polls still hold their places: {again.status_code} {again.text}"
        time.sleep(0.1)
    held = [park(), park()]
    for conn in held:
        conn.close()


@pytest.mark.parametrize("reuse", [False, True], ids=["own-connection", "kept-alive"])
def test_a_poll_answer_nobody_reads_does_not_hold_the_connection(start_server, reuse):
    """A parked poll's answer of several MB to a client that never reads it: the server closes the connection
    within its answer deadline (10 s) instead of keeping it, and its buffers, forever. On its own connection the
    poll is served on the event loop; after another request on a kept-alive one, by the router."""
    srv = start_server()
    uid = new_uid("lp-unread")
    rows = [{"n": i, "text": "x" * 200} for i in range(200)]  # ≈ 45 KB of args, echoed back as each done's result
    for _ in range(150):
        r = requests.post(f"{srv.base_url}/api/v1/tasks", json={"cmd": "echo", "uid": uid, "args": {"rows": rows}},
                          timeout=10)
        assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while True:
        tasks = requests.get(f"{srv.base_url}/api/v1/tasks", params={"uid": uid, "limit": 200}, timeout=10).json()["tasks"]
        if len(tasks) == 150 and all(t["status"] == "succeeded" for t in tasks):
            break
        assert time.monotonic() < deadline, "the echo tasks did not finish"
        time.sleep(0.1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    if reuse:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(4096)
        head = first.split(b"\r\n\r\n", 1)[0]
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        while len(first.split(b"\r\n\r\n", 1)[1]) < length:
            first += sock.recv(4096)
    sock.sendall(f"GET /poll?uid={uid}&cursor=0&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(15)  # not reading: the answer (≈ 7 MB) cannot all be sent
    sock.settimeout(10)
    received = b""
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, socket.timeout) as e:
        assert not isinstance(e, socket.timeout), f"the connection was still open after 25 s ({len(received)} bytes read)"
    finally:
        sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    assert len(body) < length, "the whole answer arrived: the test did not exercise an unread answer"
