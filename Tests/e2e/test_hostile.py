"""Hostile clients end to end: HTTP/1.1 framing abuse, slow and idle connections, connection floods, upgrade
header spellings, token-mode identity, slow consumers (bytes, not just messages), per-uid task ids, static-file
path tricks, POST /poll rate limits, JSON nesting, and SIGTERM with half-open clients.

Every probe talks to 127.0.0.1 on a bare socket (``raw_exchange`` / ``read_answer`` in conftest.py) or with the
usual clients, reads the status line with a deadline and then waits, with a deadline, for the server to close the
connection. Nothing waits unbounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import resource
import signal
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import websockets
from websockets.exceptions import InvalidStatus

from conftest import (RawAnswer, wait_until, _launch, _stop_and_check, has_flag, new_uid, raw_connect, raw_exchange,
                      read_answer, require_flags, rss_kib, run, serve_help)

NO_PROXY = {"http": None, "https": None}
SECRET = "a-hostile-test-secret-of-some-length"

HEADER_TIMEOUT = 3      # --header-timeout for the module's server
KEEPALIVE_TIMEOUT = 2   # --keepalive-timeout
BODY_TIMEOUT = 2        # --body-timeout
SLACK = 4.0             # seconds allowed past a timeout for the answer and the close

NEW_FLAGS = ["--header-timeout", "--keepalive-timeout", "--body-timeout", "--max-header-bytes",
             "--max-request-line-bytes", "--max-http-connections", "--outbound-bytes"]


def http(method: str, url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", 10)
    return requests.request(method, url, proxies=NO_PROXY, **kw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(uid: str, exp_in: int = 3600) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": uid, "exp": int(time.time()) + exp_in}).encode())
    sig = b64url(hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{sig}"


def alive(srv) -> bool:
    if srv.proc.poll() is not None:
        return False
    try:
        return http("GET", f"{srv.base_url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def assert_answered_and_closed(ans: RawAnswer, statuses: tuple[int, ...], what: str) -> None:
    assert ans.status in statuses, f"{what}: expected {statuses} then a close, got {ans.short()}"
    assert ans.closed, f"{what}: answered {ans.status} but the connection stayed open: {ans.short()}"


# --------------------------------------------------------------------------- servers


def _module_server(tmp_path_factory, name: str, args: list[str]):
    handle = _launch(tmp_path_factory.mktemp(name), args, None)
    return handle


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A server with short HTTP timeouts (only the flags this binary knows, so the probes run on any build)."""
    wanted = {"--header-timeout": HEADER_TIMEOUT, "--keepalive-timeout": KEEPALIVE_TIMEOUT,
              "--body-timeout": BODY_TIMEOUT}
    args = ["--store", "memory"]
    for flag, value in wanted.items():
        if has_flag(flag):
            args += [flag, str(value)]
    handle = _module_server(tmp_path_factory, "hostile", args)
    yield handle
    _stop_and_check(handle)


@pytest.fixture(scope="module")
def token_only(tmp_path_factory):
    """Token mode without an admin token: tokens are the only identity."""
    handle = _module_server(tmp_path_factory, "tokenonly", ["--store", "memory", "--auth", "token",
                                                            "--token-secret", SECRET])
    yield handle
    _stop_and_check(handle)


def test_new_flags_are_in_serve_help():
    missing = [f for f in NEW_FLAGS if not has_flag(f)]
    assert not missing, f"taskgate serve --help lacks {missing}"


# --------------------------------------------------------------------------- timeouts


def test_partial_request_head_gets_408_after_header_timeout(hostile):
    require_flags("--header-timeout")
    ans = raw_exchange(hostile.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", status_timeout=HEADER_TIMEOUT + SLACK,
                       close_timeout=SLACK)
    assert_answered_and_closed(ans, (408,), "partial head")
    assert ans.seconds >= HEADER_TIMEOUT - 1, f"408 came before the header timeout: {ans.short()}"


def test_silent_connection_is_answered_408_or_closed_after_header_timeout(hostile):
    require_flags("--header-timeout")
    ans = raw_exchange(hostile.port, b"", status_timeout=HEADER_TIMEOUT + SLACK, close_timeout=SLACK)
    assert ans.status in (408, None) and ans.closed, f"a connection that sends nothing: {ans.short()}"


def test_slowloris_dribble_does_not_extend_the_header_timeout(hostile):
    """One header byte every 0.25 s: the deadline is for the whole head, not per read."""
    require_flags("--header-timeout")
    sock = raw_connect(hostile.port)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        pad = b"X-Slow: " + b"a" * 400
        ans = None
        for i, byte in enumerate(pad):
            if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            ans = read_answer(sock, 0.25, None, started)
            if ans.status is not None or ans.closed:
                break
        if ans is None or (ans.status is None and not ans.closed):
            ans = read_answer(sock, 1.0, SLACK, started)
        elif not ans.closed:
            ans2 = read_answer(sock, 0.1, SLACK, started)
            ans = RawAnswer(ans.status, ans.head, ans.body, ans2.closed, ans.seconds, ans2.closed_after)
    finally:
        sock.close()
    assert ans.status == 408 and ans.closed, f"slowloris: {ans.short()}"
    assert ans.seconds <= HEADER_TIMEOUT + SLACK, ans.short()


def test_idle_keepalive_connection_is_closed_silently(hostile):
    require_flags("--keepalive-timeout")
    sock = raw_connect(hostile.port)
    try:
        for _ in range(2):  # keep-alive works: two requests on one connection
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            ans = read_answer(sock, 5.0)
            assert ans.status == 200 and not ans.closed, ans.short()
        idle_from = time.monotonic()
        ans = read_answer(sock, KEEPALIVE_TIMEOUT + SLACK, None, idle_from)
    finally:
        sock.close()
    assert ans.closed and ans.head == b"", f"idle keep-alive connection: expected a silent close, got {ans.short()}"
    assert ans.closed_after >= KEEPALIVE_TIMEOUT - 1, f"closed too soon: {ans.short()}"


def test_stalled_request_body_gets_408_after_body_timeout(hostile):
    require_flags("--body-timeout")
    body = json.dumps({"cmd": "echo", "args": {"p": "z" * 150}, "uid": new_uid("body")}).encode()
    head = (f"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    ans = raw_exchange(hostile.port, [head, body[:20]], status_timeout=BODY_TIMEOUT + SLACK, close_timeout=SLACK)
    assert_answered_and_closed(ans, (408,), "stalled body")
    assert ans.seconds >= BODY_TIMEOUT - 1, ans.short()


def test_half_a_second_request_head_on_keepalive_is_not_held(hostile):
    """After one answer, a second request head that never completes: closed (408 or silently) by the timeouts."""
    require_flags("--header-timeout", "--keepalive-timeout")
    sock = raw_connect(hostile.port)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_answer(sock, 5.0)
        assert first.status == 200, first.short()
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        ans = read_answer(sock, max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + SLACK, SLACK, started)
    finally:
        sock.close()
    assert ans.closed and ans.status in (None, 408), f"half a second head on a keep-alive connection: {ans.short()}"


def test_stalled_chunked_body_gets_408(hostile):
    require_flags("--body-timeout")
    head = (b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    ans = raw_exchange(hostile.port, [head, b"5\r\n{\"cmd\r\n"], status_timeout=BODY_TIMEOUT + SLACK, close_timeout=SLACK)
    assert_answered_and_closed(ans, (408,), "stalled chunked body")


def test_pipelined_requests_are_answered_in_order(hostile):
    sock = raw_connect(hostile.port)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope-404 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_answer(sock, 5.0)
        at = first.extra.find(b"HTTP/1.1 ")
        if at >= 0:  # the second answer came in the same read as the first
            second_status = int(first.extra[at + 9:at + 12])
        else:
            second_status = read_answer(sock, 5.0).status
    finally:
        sock.close()
    assert (first.status, second_status) == (200, 404), (first.short(), second_status)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("shape", ["one-big-header", "many-headers"])
def test_oversized_headers_get_431(hostile, shape):
    if shape == "one-big-header":
        extra = b"X-Big: " + b"a" * 40_000 + b"\r\n"
    else:
        extra = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 30) for i in range(1200))  # ~45 KB
    ans = raw_exchange(hostile.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n", status_timeout=8)
    assert_answered_and_closed(ans, (431,), f"{len(extra)} bytes of headers ({shape})")


def test_headers_below_the_limit_are_fine(hostile):
    extra = b"X-Big: " + b"a" * 20_000 + b"\r\n"
    ans = raw_exchange(hostile.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n", close_timeout=None)
    assert ans.status == 200, ans.short()


@pytest.mark.parametrize("length", [9_000, 100_000])
def test_overlong_request_line_gets_414(hostile, length):
    line = b"GET /healthz?pad=" + b"a" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    ans = raw_exchange(hostile.port, line, status_timeout=8)
    assert_answered_and_closed(ans, (414,), f"request line of {length} bytes")


def test_request_line_below_the_limit_is_fine(hostile):
    ans = raw_exchange(hostile.port, b"GET /healthz?pad=" + b"a" * 7000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                       close_timeout=None)
    assert ans.status is not None and ans.status not in (414, 431) and ans.status < 500, ans.short()


# --------------------------------------------------------------------------- malformed requests

POST_HEAD = b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
ECHO = b'{"cmd":"echo","uid":"mal"}'

MALFORMED = {
    "cl-and-te": POST_HEAD + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(ECHO) + ECHO,
    "two-content-lengths": POST_HEAD + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(ECHO), len(ECHO) + 1)
    + ECHO + b"x",
    "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
    "unknown-method": b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul-in-path": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
}


# Beyond the spec: request-smuggling and framing variants RFC 9112 says to refuse (400, then close).
SMUGGLING = {
    "te-chunked-then-identity": POST_HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n%x\r\n" % len(ECHO) + ECHO
    + b"\r\n0\r\n\r\n",
    "te-unknown-coding": POST_HEAD + b"Transfer-Encoding: xchunked\r\n\r\n" + ECHO,
    "te-identity-and-cl": POST_HEAD + b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(ECHO) + ECHO,
    "te-chunked-twice": POST_HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(ECHO)
    + ECHO + b"\r\n0\r\n\r\n",
    "space-before-colon": POST_HEAD + b"Content-Length : %d\r\n\r\n" % len(ECHO) + ECHO,
    "te-space-before-colon-and-cl": POST_HEAD + b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n\r\n" % len(ECHO)
    + ECHO,
    "cl-list-of-two": POST_HEAD + b"Content-Length: %d, %d\r\n\r\n" % (len(ECHO), len(ECHO)) + ECHO,
    "cl-plus-sign": POST_HEAD + b"Content-Length: +%d\r\n\r\n" % len(ECHO) + ECHO,
    "cl-negative": POST_HEAD + b"Content-Length: -1\r\n\r\n" + ECHO,
    "cl-overflow": POST_HEAD + b"Content-Length: 99999999999999999999999\r\n\r\n" + ECHO,
    "chunk-size-overflow": POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n" + ECHO,
    "lone-cr": b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n",
    "ctl-in-header-value": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "nul-in-header-value": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "space-in-header-name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "empty-header-name": b"GET /healthz HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n",
    "tab-in-path": b"GET /health\tz HTTP/1.1\r\nHost: x\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_smuggling_variants_get_400_and_close(hostile, case):
    ans = raw_exchange(hostile.port, SMUGGLING[case], status_timeout=8, close_timeout=SLACK)
    assert_answered_and_closed(ans, (400,), case)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_400_and_close(hostile, case):
    ans = raw_exchange(hostile.port, MALFORMED[case], status_timeout=8, close_timeout=SLACK)
    assert_answered_and_closed(ans, (400,), case)
    assert alive(hostile)


def test_http09_request_is_answered_or_closed_not_held(hostile):
    ans = raw_exchange(hostile.port, b"GET /\r\n", status_timeout=HEADER_TIMEOUT + SLACK, close_timeout=SLACK)
    assert ans.closed and ans.status in (400, 408, None), f"HTTP/0.9 GET /: {ans.short()}"


def test_bare_lf_request_is_answered_not_held(hostile):
    ans = raw_exchange(hostile.port, b"GET /healthz HTTP/1.1\nHost: x\n\n", status_timeout=HEADER_TIMEOUT + SLACK,
                       close_timeout=1.0)
    assert ans.status in (200, 400), f"bare LF: {ans.short()}"
    if ans.status == 400:
        assert ans.closed, f"bare LF answered 400 but left open: {ans.short()}"


def test_http10_without_keepalive_is_answered_then_closed(hostile):
    ans = raw_exchange(hostile.port, b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n", close_timeout=SLACK)
    assert_answered_and_closed(ans, (200,), "HTTP/1.0 without keep-alive")


# --------------------------------------------------------------------------- file descriptors


def _limit_fds(soft: int, hard: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files line")


def test_server_raises_its_soft_fd_limit_to_the_hard_limit(start_server):
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 8192)
    srv = start_server("--store", "memory", preexec_fn=_limit_fds(256, hard))
    assert _soft_nofile(srv.proc.pid) == hard, f"soft RLIMIT_NOFILE of the server: {_soft_nofile(srv.proc.pid)}, hard {hard}"


def test_connection_flood_past_the_fd_limit(start_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    srv = start_server("--store", "memory", preexec_fn=_limit_fds(256, 256))
    uid = new_uid("fd")
    idle: list[socket.socket] = []
    stats = Counter()

    async def body():
        ws = await websockets.connect(f"{srv.ws_url}?uid={uid}", open_timeout=5, proxy=None, ping_interval=None)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"

        def flood():
            for _ in range(400):
                s = socket.socket()
                s.settimeout(0.5)  # past --max-http-connections new ones wait in the backlog: fine
                try:
                    s.connect(("127.0.0.1", srv.port))
                    idle.append(s)
                    stats["connected"] += 1
                except OSError as e:
                    stats[type(e).__name__] += 1
                    s.close()

        await asyncio.to_thread(flood)
        assert srv.proc.poll() is None, f"the server died under the flood:\n{srv.output()[-3000:]}"
        started = time.monotonic()
        await ws.send(json.dumps({"cmd": "ping", "ref": "p"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        stats["ping_ms"] = int((time.monotonic() - started) * 1000)
        assert reply["type"] == "pong", reply
        await ws.close()

    try:
        run(body(), timeout=60)
    finally:
        for s in idle:
            s.close()
        print(f"fd flood: {dict(stats)}")
    assert srv.proc.poll() is None, srv.output()[-3000:]
    wait_until(lambda: alive(srv), 15, "a new request to be served after the idle sockets closed")
    r = http("POST", f"{srv.base_url}/api/v1/tasks", json={"cmd": "echo", "uid": uid})
    assert r.status_code == 202, r.text


def test_idle_connection_flood_is_shed_by_the_header_timeout(start_server):
    """Beyond the spec's flood test: the idle sockets stay open. With --header-timeout 3 the server answers them
    408 in rounds (at most --max-http-connections at a time), so a real request gets through in bounded time."""
    require_flags("--header-timeout", "--max-http-connections")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    srv = start_server("--store", "memory", "--header-timeout", "3", preexec_fn=_limit_fds(256, 256))
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", srv.port))
                idle.append(s)
            except OSError:
                s.close()
        started = time.monotonic()
        served = wait_until(lambda: alive(srv), 30, "a real request to be served while 400 idle sockets stay open", 0.2)
        took = time.monotonic() - started
    finally:
        for s in idle:
            s.close()
    print(f"idle flood of {len(idle)} kept open: a real request served after {took:.1f}s")
    assert served and srv.proc.poll() is None


# --------------------------------------------------------------------------- WebSocket upgrade admission


SPELLINGS = {
    "plain": ("websocket", "Upgrade"),
    "websocket-comma-foo": ("websocket, foo", "Upgrade"),
    "capitalised": ("WebSocket", "Upgrade"),
    "keep-alive-upgrade": ("websocket", "keep-alive, Upgrade"),
}


def upgrade_bytes(path: str, upgrade: str, connection: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def read_ws_frame(sock: socket.socket, buf: bytes, timeout: float) -> tuple[int, bytes, bytes]:
    """One unmasked server frame: (opcode, payload, leftover)."""
    deadline = time.monotonic() + timeout

    def need(n: int) -> None:
        nonlocal buf
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole WebSocket frame")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed before a whole frame")
            buf += data

    need(2)
    opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
    offset = 2
    if length == 126:
        need(4)
        length, offset = struct.unpack(">H", buf[2:4])[0], 4
    elif length == 127:
        need(10)
        length, offset = struct.unpack(">Q", buf[2:10])[0], 10
    need(offset + length)
    return opcode, buf[offset:offset + length], buf[offset + length:]


def raw_upgrade(port: int, path: str, spelling: str, extra: str = "") -> tuple[RawAnswer, socket.socket, dict | None]:
    """Sends an upgrade; returns the answer, the socket (open; the caller closes it) and the hello if it was a 101."""
    upgrade, connection = SPELLINGS[spelling]
    sock = raw_connect(port)
    sock.sendall(upgrade_bytes(path, upgrade, connection, extra))
    ans = read_answer(sock, 8.0)
    hello = None
    if ans.status == 101:
        try:
            opcode, payload, _ = read_ws_frame(sock, ans.extra, 5.0)
            if opcode == 1:
                hello = json.loads(payload)
        except (OSError, TimeoutError, ConnectionError, ValueError):
            hello = None
    return ans, sock, hello


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_upgrade_spellings_without_token_get_401_json(token_only, spelling):
    for query in ("", "?uid=victim", "?admin=1&uid=victim"):
        ans, sock, hello = raw_upgrade(token_only.port, f"/ws{query}", spelling)
        sock.close()
        assert ans.status == 401, f"{spelling} {query or '(no query)'}: {ans.short()} hello={hello}"
        assert "json" in ans.headers().get("content-type", ""), ans.short()
        assert ans.json().get("error") == "unauthorized", ans.short()


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if s != "plain"])
def test_per_uid_limit_applies_to_every_upgrade_spelling(start_server, spelling):
    srv = start_server("--store", "memory", "--max-connections-per-uid", "2")
    uid = new_uid("spell")
    opened = []
    try:
        for _ in range(2):
            ans, sock, hello = raw_upgrade(srv.port, f"/ws?uid={uid}", "plain")
            opened.append(sock)
            assert ans.status == 101 and hello and hello["type"] == "hello", ans.short()
        ans, sock, hello = raw_upgrade(srv.port, f"/ws?uid={uid}", spelling)
        opened.append(sock)
        assert ans.status == 429, f"third connection of {uid} spelled {spelling}: {ans.short()} hello={hello}"
        # The odd spelling counts as well: with two of them open, a plain one is refused.
        other = new_uid("spell2")
        ok = []
        for _ in range(2):
            ans, sock, hello = raw_upgrade(srv.port, f"/ws?uid={other}", spelling)
            opened.append(sock)
            ok.append((ans.status, bool(hello)))
        ans, sock, _ = raw_upgrade(srv.port, f"/ws?uid={other}", "plain")
        opened.append(sock)
        assert ok == [(101, True), (101, True)], f"{spelling} upgrades for a fresh uid: {ok}"
        assert ans.status == 429, f"plain upgrade after two {spelling} ones: {ans.short()}"
    finally:
        for s in opened:
            s.close()


def test_concurrent_upgrades_for_one_uid_respect_the_limit(start_server):
    srv = start_server("--store", "memory", "--max-connections-per-uid", "4")
    uid = new_uid("race")
    names = list(SPELLINGS)
    barrier = threading.Barrier(20, timeout=10)
    results: list[tuple[str, int | None, bool]] = []
    sockets: list[socket.socket] = []
    lock = threading.Lock()

    def one(i: int):
        spelling = names[i % len(names)]
        upgrade, connection = SPELLINGS[spelling]
        sock = raw_connect(srv.port)
        data = upgrade_bytes(f"/ws?uid={uid}", upgrade, connection)
        barrier.wait()
        sock.sendall(data)
        ans = read_answer(sock, 10.0)
        hello = False
        if ans.status == 101:
            try:
                opcode, payload, _ = read_ws_frame(sock, ans.extra, 5.0)
                hello = opcode == 1 and json.loads(payload).get("type") == "hello"
            except (OSError, TimeoutError, ConnectionError, ValueError):
                hello = False
        with lock:
            results.append((spelling, ans.status, hello))
            sockets.append(sock)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(results) == 20, results
        summary = Counter((s, st, h) for s, st, h in results)
        print(f"20 concurrent upgrades, limit 4: {dict(summary)}")
        ok = [r for r in results if r[1] == 101 and r[2]]
        assert len(ok) == 4, f"{len(ok)} of 20 upgrades succeeded (want 4): {dict(summary)}"
        assert sum(1 for r in results if r[1] == 429) == 16, dict(summary)
    finally:
        for s in sockets:
            s.close()


def test_concurrent_websockets_and_sse_for_one_uid_share_the_limit(start_server):
    """Beyond the spec: the per-uid limit counts WebSocket and SSE together (README), also under a race."""
    srv = start_server("--store", "memory", "--max-connections-per-uid", "4")
    uid = new_uid("mix")
    barrier = threading.Barrier(20, timeout=10)
    results: list[tuple[str, int | None]] = []
    sockets: list[socket.socket] = []
    lock = threading.Lock()

    def one(i: int):
        kind = "sse" if i % 2 else "ws"
        sock = raw_connect(srv.port)
        if kind == "ws":
            data = upgrade_bytes(f"/ws?uid={uid}", *SPELLINGS[list(SPELLINGS)[i % 4]])
        else:
            data = f"GET /sse?uid={uid} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
        barrier.wait()
        sock.sendall(data)
        ans = read_answer(sock, 10.0)
        with lock:
            results.append((kind, ans.status))
            sockets.append(sock)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        summary = Counter(results)
        print(f"20 concurrent ws+sse, limit 4: {dict(summary)}")
        assert len(results) == 20, results
        ok = [r for r in results if r[1] in (101, 200)]
        assert len(ok) == 4 and sum(1 for r in results if r[1] == 429) == 16, dict(summary)
    finally:
        for s in sockets:
            s.close()


# --------------------------------------------------------------------------- token mode: tokens only


def test_admin_query_is_not_an_identity_in_token_mode(token_only):
    base = token_only.base_url

    async def ws_refused():
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(f"{token_only.ws_url}?admin=1&uid=victim", open_timeout=5, proxy=None)
        return info.value.response.status_code

    assert run(ws_refused()) == 401
    for msg in ({"cmd": "ping"}, {"cmd": "clients"}, {"cmd": "echo", "args": {"as": "victim"}}):
        r = http("POST", f"{base}/poll?admin=1&uid=victim", json=msg)
        assert r.status_code == 401, f"POST /poll?admin=1&uid=victim {msg}: {r.status_code} {r.text[:200]}"
    r = http("GET", f"{base}/poll?admin=1&uid=victim&timeout=0")
    assert r.status_code == 401, r.text[:200]
    r = http("GET", f"{base}/sse?admin=1&uid=victim", stream=True, timeout=5)
    try:
        assert r.status_code == 401, f"GET /sse?admin=1&uid=victim: {r.status_code}"
    finally:
        r.close()

    # With a valid token for someone else, ?admin=1 does not make an admin either.
    attacker = new_uid("att")

    async def with_token():
        async with websockets.connect(f"{token_only.ws_url}?token={mint(attacker)}&admin=1", open_timeout=5,
                                      proxy=None) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["uid"] == attacker and hello.get("admin") is not True, hello
            await ws.send(json.dumps({"cmd": "clients"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "error" and reply["code"] in (401, 403), reply

    try:
        run(with_token())
    except InvalidStatus as e:  # refusing the mix of token and ?admin=1 outright is fine too
        assert e.response.status_code in (400, 401, 403), e.response.status_code
    r = http("POST", f"{base}/poll?admin=1", params={"token": mint(attacker)}, json={"cmd": "clients"})
    assert r.status_code in (401, 403) or r.json().get("code") in (401, 403), r.text[:200]


# --------------------------------------------------------------------------- slow consumers


BIG = 50_000


def _trim_args() -> list[str]:
    help_text = serve_help()
    for flag in ("--malloc-trim-interval", "--trim-interval", "--memory-trim-interval"):
        if flag in help_text:
            return [flag, "1"]
    return []


class RSSSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._halt = pid, 0, threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, AssertionError):
                return
            self._halt.wait(0.1)

    def stop(self):
        self._halt.set()
        self.join(5)


def _flood(base: str, uids: list[str], per_uid: int) -> Counter:
    codes: Counter = Counter()
    lock = threading.Lock()

    def one(uid: str):
        with requests.Session() as s:
            s.trust_env = False
            for i in range(per_uid):
                try:
                    r = s.post(f"{base}/api/v1/tasks", json={"cmd": "echo", "args": {"p": "y" * BIG, "i": i}, "uid": uid},
                               timeout=20)
                    code = r.status_code
                except requests.RequestException as e:
                    code = type(e).__name__
                with lock:
                    codes[code] += 1

    threads = [threading.Thread(target=one, args=(u,), daemon=True) for u in uids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return codes


def _drained_and_closed(sock: socket.socket, timeout: float) -> tuple[bool, int]:
    """Reads everything; (closed by the server, bytes read)."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        sock.settimeout(0.5)
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            return True, total
        if not data:
            return True, total
        total += len(data)
    return False, total


def _idle(srv, timeout: float) -> None:
    def idle():
        h = http("GET", f"{srv.base_url}/healthz", timeout=5).json()
        return h["queued"] == 0 and h["running"] == 0
    wait_until(idle, timeout, "every flooded task to finish", 0.25)


def _raw_sse(port: int, uid: str) -> socket.socket:
    sock = raw_connect(port, rcvbuf=4096)
    sock.sendall(f"GET /sse?uid={uid} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    ans = read_answer(sock, 5.0)
    assert ans.status == 200, ans.short()
    return sock


def _raw_ws(port: int, uid: str) -> socket.socket:
    sock = raw_connect(port, rcvbuf=4096)
    sock.sendall(upgrade_bytes(f"/ws?uid={uid}", "websocket", "Upgrade"))
    ans = read_answer(sock, 5.0)
    assert ans.status == 101, ans.short()
    return sock


def _server_holds(pid: int, server_port: int, client_port: int) -> bool:
    """Whether the server process still has its end of this connection open (its fd), read from /proc: a closed
    fd shows up as an orphan (inode 0, FIN_WAIT1 behind unread data) or not at all, without the client reading."""
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            fds.add(int(target[8:-1]))
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], int(parts[9])
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                if inode in fds:
                    return True
    return False


def _settle_rss(pid: int, ceiling_kib: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        now = rss_kib(pid)
        if now <= ceiling_kib or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def test_slow_consumers_are_bounded_in_bytes(start_server):
    """3 WebSockets and 1 SSE stream that never read; 200 echo tasks of 50 KB each for every one of them."""
    srv = start_server("--max-tasks-per-uid", "1000", "--event-retention-count", "50", *_trim_args())
    per_uid = 200
    plan = [("websocket", new_uid("slowws")) for _ in range(3)] + [("sse", new_uid("slowsse"))]
    warm = new_uid("warm")
    # Warm up the allocator and the code paths before the baseline.
    codes = _flood(srv.base_url, [warm], 20)
    assert codes == Counter({202: 20}), codes
    _idle(srv, 30)
    slow = [(_raw_ws if kind == "websocket" else _raw_sse)(srv.port, uid) for kind, uid in plan]
    baseline = rss_kib(srv.proc.pid)
    sampler = RSSSampler(srv.proc.pid)
    sampler.start()
    started = time.monotonic()
    try:
        codes = _flood(srv.base_url, [uid for _, uid in plan], per_uid)
        _idle(srv, 120)
        flood_s = time.monotonic() - started
        sampler.stop()

        async def calm():
            async with websockets.connect(f"{srv.ws_url}?uid={new_uid('calm')}", open_timeout=5, proxy=None) as ws:
                await asyncio.wait_for(ws.recv(), 5)
                t0 = time.monotonic()
                await ws.send(json.dumps({"cmd": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
                return time.monotonic() - t0

        ping_s = run(calm())
        growth_mb = (sampler.peak - baseline) / 1024
        # Cut off without the client's help: the server lets go of each connection while it still reads nothing.
        ports = [sk.getsockname()[1] for sk in slow]
        held_since = time.monotonic()
        try:
            wait_until(lambda: not any(_server_holds(srv.proc.pid, srv.port, p) for p in ports), 20,
                       "the server to let go of every non-reading connection", 0.25)
        except AssertionError:
            pass
        still_held = [kind for (kind, _), p in zip(plan, ports) if _server_holds(srv.proc.pid, srv.port, p)]
        let_go_s = time.monotonic() - held_since
        listed = http("GET", f"{srv.base_url}/api/v1/clients").json()["clients"]
        still_listed = sorted({c.get("transport", "?") for c in listed if c.get("uid") in {u for _, u in plan}})
        drain_started = time.monotonic()
        outcome = [_drained_and_closed(s, 15) for s in slow]
        drain_s = time.monotonic() - drain_started
    finally:
        sampler.stop()
        for s in slow:
            s.close()
    settle_started = time.monotonic()
    settled = _settle_rss(srv.proc.pid, baseline + 32 * 1024, 75)
    settle_s = time.monotonic() - settle_started
    per_socket = [(kind, "closed" if c else "OPEN", f"{b // 1024} KiB queued") for (kind, _), (c, b) in zip(plan, outcome)]
    print(f"slow consumers: 3 ws + 1 sse x {per_uid} x {BIG // 1000} KB, codes={dict(codes)}, flood {flood_s:.1f}s, "
          f"rss baseline {baseline // 1024} MB peak {sampler.peak // 1024} MB (+{growth_mb:.0f} MB) settled "
          f"{settled // 1024} MB after {settle_s:.1f}s; sockets {per_socket} (drained in {drain_s:.1f}s); "
          f"bystander ping {ping_s * 1000:.0f} ms; still held by the server without reading: {still_held} "
          f"(checked {let_go_s:.1f}s); still in /api/v1/clients: {still_listed}")
    assert codes == Counter({202: len(plan) * per_uid}), codes
    assert srv.proc.poll() is None
    assert all(closed for closed, _ in outcome), f"slow consumers not cut off: {per_socket}"
    assert not still_held, f"the server still holds non-reading connections 20 s after their backlog: {still_held} " \
                           f"(the close waits for the client to read what is queued?)"
    # What was still queued for each cut-off socket: --outbound-bytes (4 MiB) plus the socket buffers at most.
    assert all(b < 12 * 1024 * 1024 for _, b in outcome), per_socket
    assert growth_mb < 100, f"RSS grew by {growth_mb:.0f} MB with 4 non-reading clients"
    assert settled <= baseline + 32 * 1024, \
        f"RSS did not come back down: baseline {baseline // 1024} MB, peak {sampler.peak // 1024} MB, " \
        f"75 s after the clients left {settled // 1024} MB"


# --------------------------------------------------------------------------- task ids per uid


def test_client_task_ids_are_scoped_per_uid(server):
    a, b = new_uid("ida"), new_uid("idb")
    cid = f"job-{new_uid('x')}"
    base = server.base_url

    def poll_submit(uid):
        r = http("POST", f"{base}/poll", params={"uid": uid}, json={"cmd": "echo", "args": {"id": cid, "who": uid}})
        return r.status_code, r.json()

    sa, ra = poll_submit(a)
    sb, rb = poll_submit(b)
    assert sa == 202 and ra["duplicate"] is False, ra
    assert sb == 202 and rb.get("duplicate") is False, f"the same client id from another uid: {sb} {rb}"
    assert ra["task"]["id"] != rb["task"]["id"], (ra["task"], rb["task"])
    sa2, ra2 = poll_submit(a)
    assert sa2 in (200, 202) and ra2["duplicate"] is True and ra2["task"]["id"] == ra["task"]["id"], ra2

    # REST: the same id under two uids.
    rid = f"rest-{new_uid('x')}"
    r1 = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "id": rid, "uid": a})
    r2 = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "id": rid, "uid": b})
    assert r1.status_code == 202, r1.text
    assert r2.status_code == 202, f"REST: the same id under another uid: {r2.status_code} {r2.text[:200]}"
    assert r1.json()["id"] != r2.json()["id"]
    r3 = http("POST", f"{base}/api/v1/tasks", json={"cmd": "echo", "id": rid, "uid": a})
    assert r3.status_code == 200 and r3.json()["id"] == r1.json()["id"], r3.text[:200]

    async def status_of(uid, task_id):
        async with websockets.connect(f"{server.ws_url}?uid={uid}", open_timeout=5, proxy=None) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            await ws.send(json.dumps({"cmd": "status", "args": {"id": task_id}, "ref": "s"}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m.get("ref") == "s":
                    return m

    for uid, own in ((a, ra), (b, rb)):
        m = run(status_of(uid, cid))
        assert m["type"] == "status" and m["task"]["id"] == own["task"]["id"] and m["task"]["uid"] == uid, \
            f"{uid} asking for its client id {cid}: {m}"
    # Beyond the spec, the same property: b asking for a's server task id does not see a's task.
    m = run(status_of(b, ra["task"]["id"]))
    assert m["type"] == "error" or m["task"]["uid"] == b, f"{b} read {a}'s task by its server id: {m}"


def test_cancel_by_client_id_is_scoped_per_uid(server):
    a, b = new_uid("cana"), new_uid("canb")
    cid = f"long-{new_uid('c')}"
    base = server.base_url
    ids = {}
    for uid in (a, b):
        r = http("POST", f"{base}/poll", params={"uid": uid}, json={"cmd": "sleep", "args": {"ms": 8000, "id": cid}})
        assert r.status_code == 202, r.text
        ids[uid] = r.json()["task"]["id"]
    r = http("POST", f"{base}/poll", params={"uid": b}, json={"cmd": "cancel", "args": {"id": cid}})
    assert r.status_code in (200, 202), r.text
    _final(base, ids[b])
    state_a = http("GET", f"{base}/api/v1/tasks/{ids[a]}").json()["status"]
    r = http("POST", f"{base}/poll", params={"uid": a}, json={"cmd": "cancel", "args": {"id": cid}})
    assert state_a in ("queued", "running"), f"{b} cancelling its {cid} also ended {a}'s: {state_a}"
    assert http("GET", f"{base}/api/v1/tasks/{ids[b]}").json()["status"] == "cancelled"


# --------------------------------------------------------------------------- static files


@pytest.mark.parametrize("path", ["/taskgate.js%00.html", "/taskgate.js%00", "/taskgate%01.js", "/taskgate.js%0a",
                                  "/taskgate.js%0d%0aX-Injected:%201", "/taskgate.js%1f", "/taskgate.js%7f"])
def test_encoded_control_characters_in_static_paths_get_400(server, path):
    ans = raw_exchange(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), close_timeout=None)
    assert ans.status == 400, f"GET {path}: {ans.short()}"
    assert b"x-injected" not in ans.head.lower(), ans.head


@pytest.fixture
def public_with_symlinks(tmp_path):
    public = tmp_path / "public"
    outside = tmp_path / "outside"
    public.mkdir()
    outside.mkdir()
    (public / "index.html").write_text("<!doctype html><title>ok</title>")
    (public / "ok.txt").write_text("inside")
    (outside / "secret.txt").write_text("TOP-SECRET-OUTSIDE")
    os.symlink(outside / "secret.txt", public / "leak.txt")
    os.symlink(outside, public / "linkdir")
    os.symlink("/etc/passwd", public / "passwd")
    return public


def test_symlinks_out_of_the_public_dir_are_not_followed(start_server, public_with_symlinks):
    flag = "--public-dir" if has_flag("--public-dir") else "--public"
    srv = start_server("--store", "memory", flag, str(public_with_symlinks))
    r = http("GET", f"{srv.base_url}/ok.txt")
    assert r.status_code == 200 and r.text == "inside", (r.status_code, r.text[:100])
    results = {}
    for path in ("/leak.txt", "/linkdir/secret.txt", "/passwd", "/%2e%2e/outside/secret.txt",
                 "/linkdir/../linkdir/secret.txt"):
        ans = raw_exchange(srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), close_timeout=None)
        results[path] = ans.status
        assert b"TOP-SECRET" not in ans.body and b"root:" not in ans.body, f"GET {path} leaked: {ans.short()}"
    assert results["/leak.txt"] == 404 and results["/linkdir/secret.txt"] == 404 and results["/passwd"] == 404, results


# --------------------------------------------------------------------------- POST /poll rate


def test_post_poll_is_rate_limited_per_uid(start_server):
    srv = start_server("--store", "memory")
    uid = new_uid("rate")
    codes: Counter = Counter()
    started = time.monotonic()
    with requests.Session() as s:
        s.trust_env = False
        for _ in range(300):
            r = s.post(f"{srv.base_url}/poll", params={"uid": uid}, json={"cmd": "ping"}, timeout=10)
            codes[r.status_code] += 1
    took = time.monotonic() - started
    print(f"300 POST /poll pings from one uid in {took:.2f}s: {dict(codes)}")
    assert not [c for c in codes if c >= 500], codes
    assert alive(srv)
    # Another uid is not limited by the first one's burst.
    r = http("POST", f"{srv.base_url}/poll", params={"uid": new_uid("other")}, json={"cmd": "ping"})
    assert r.status_code == 200, r.text
    assert codes[429] > 0, f"no 429 among 300 POST /poll in {took:.2f}s (limit 50/s, burst 100): {dict(codes)}"
    assert codes[200] >= 90, codes


# --------------------------------------------------------------------------- JSON nesting


def nested_text(arrays: int, uid: str | None = None) -> str:
    inner = "[" * arrays + "]" * arrays
    extra = f',"uid":"{uid}"' if uid else ""
    return f'{{"cmd":"echo","args":{{"x":{inner}}}{extra}}}'


def _final(base: str, task_id: str, timeout: float = 15) -> dict:
    def final():
        r = http("GET", f"{base}/api/v1/tasks/{task_id}")
        if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return r.json()
        return None
    return wait_until(final, timeout, f"task {task_id} to end")


def test_json_nesting_over_post_poll_and_rest(start_server):
    srv = start_server("--store", "memory")
    base = srv.base_url
    uid = new_uid("deep")
    results = {}
    for door in ("poll", "rest"):
        for arrays in (98, 30_000):  # total depth 100; and a stack-exhaustion attempt
            body = nested_text(arrays, uid if door == "rest" else None)
            url = f"{base}/poll?uid={uid}" if door == "poll" else f"{base}/api/v1/tasks"
            try:
                r = http("POST", url, data=body, headers={"Content-Type": "application/json"})
                results[(door, arrays + 2)] = r.status_code
            except requests.RequestException as e:
                results[(door, arrays + 2)] = type(e).__name__
            assert srv.proc.poll() is None, f"{door} depth {arrays + 2} crashed the server:\n{srv.output()[-2000:]}"
    accepted = {}
    for door in ("poll", "rest"):
        body = nested_text(58, uid if door == "rest" else None)  # total depth 60
        url = f"{base}/poll?uid={uid}" if door == "poll" else f"{base}/api/v1/tasks"
        r = http("POST", url, data=body, headers={"Content-Type": "application/json"})
        results[(door, 60)] = r.status_code
        if r.status_code == 202:
            accepted[door] = r.json()["task"]["id"] if door == "poll" else r.json()["id"]
    finals = {door: _final(base, tid)["status"] for door, tid in accepted.items()}
    lists = {}
    for path in ("/api/v1/tasks", f"/api/v1/tasks?uid={uid}", "/api/v1/stats", "/healthz"):
        try:
            lists[path] = http("GET", base + path).status_code
        except requests.RequestException as e:
            lists[path] = type(e).__name__
    print(f"json nesting: {results} finals={finals} lists={lists}")
    assert srv.proc.poll() is None, srv.output()[-2000:]
    for door in ("poll", "rest"):
        assert results[(door, 100)] == 400, f"{door}: depth 100 -> {results[(door, 100)]}"
        assert results[(door, 30_002)] in (400, 413), f"{door}: depth 30002 -> {results[(door, 30_002)]}"
        assert results[(door, 60)] == 202, f"{door}: depth 60 -> {results[(door, 60)]}"
    assert finals == {"poll": "succeeded", "rest": "succeeded"}, finals
    assert all(v == 200 for v in lists.values()), lists


def test_json_objects_nested_too_deep_get_400(start_server):
    srv = start_server("--store", "memory")
    uid = new_uid("deepobj")
    inner = '{"a":' * 98 + "1" + "}" * 98
    text = f'{{"cmd":"echo","args":{inner}}}'
    r = http("POST", f"{srv.base_url}/poll", params={"uid": uid}, data=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert srv.proc.poll() is None


def test_every_accepted_nesting_depth_keeps_the_task_list_working(start_server):
    """Whatever depth the parser accepts, the writer must be able to write back (task, list, done event): near the
    limit of 64 the task list wraps the result in 3-5 more levels."""
    srv = start_server("--store", "memory")
    base = srv.base_url
    table = {}
    for depth in range(60, 67):
        uid = new_uid(f"d{depth}")
        r = http("POST", f"{base}/api/v1/tasks", data=nested_text(depth - 2, uid), headers={"Content-Type": "application/json"})
        row = {"submit": r.status_code}
        if r.status_code == 202:
            tid = r.json()["id"]
            final = _final(base, tid)
            row["final"] = final["status"]
            if final.get("error"):
                row["error"] = final["error"][:80]
            row["task"] = http("GET", f"{base}/api/v1/tasks/{tid}").status_code
            row["list(uid)"] = http("GET", f"{base}/api/v1/tasks", params={"uid": uid}).status_code
            row["poll replay"] = http("GET", f"{base}/poll", params={"uid": uid, "cursor": 0, "timeout": 0}).status_code
        table[depth] = row
    lists = {p: http("GET", base + p).status_code for p in ("/api/v1/tasks", "/api/v1/stats")}
    print(f"nesting depth table: {table}; lists after: {lists}")
    assert srv.proc.poll() is None
    # An accepted task ends: succeeded, or (near the limit, where its result cannot be nested into the answers)
    # failed with an error saying so; either way everything that shows it still answers 200.
    bad = {d: row for d, row in table.items()
           if row["submit"] == 202 and (row["final"] not in ("succeeded", "failed")
                                        or (row["final"] == "failed" and "deep" not in row.get("error", ""))
                                        or any(row[k] != 200 for k in ("task", "list(uid)", "poll replay")))}
    assert not bad, f"accepted depths whose task cannot be written back: {bad}"
    assert table[60]["submit"] == 202 and table[60]["final"] == "succeeded" and table[66]["submit"] == 400, table
    assert all(v == 200 for v in lists.values()), lists


def test_json_nesting_over_websocket(start_server):
    srv = start_server("--store", "memory")
    uid = new_uid("deepws")

    async def body():
        async with websockets.connect(f"{srv.ws_url}?uid={uid}", open_timeout=5, proxy=None, ping_interval=None,
                                      max_size=None) as ws:
            await asyncio.wait_for(ws.recv(), 5)

            async def reply_to(text: str, ref: str) -> dict:
                await ws.send(text[:-1] + f',"ref":"{ref}"}}')
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m.get("ref") == ref or (m.get("type") == "error" and "ref" not in m):
                        return m

            deep = await reply_to(nested_text(98), "d100")
            hostile = await reply_to(nested_text(30_000), "d30k")
            ok = await reply_to(nested_text(58), "d60")
            done = None
            if ok.get("type") == "submitted":
                tid = ok["task"]["id"]
                while done is None:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if m.get("type") == "done" and m["task"]["id"] == tid:
                        done = m
            pong = await reply_to(json.dumps({"cmd": "ping"}), "p2")
            return deep, hostile, ok, done, pong

    deep, hostile, ok, done, pong = run(body(), timeout=45)
    print(f"ws nesting: 100 -> {deep.get('type')}/{deep.get('code')}, 30002 -> {hostile.get('type')}/"
          f"{hostile.get('code')}, 60 -> {ok.get('type')}/{ok.get('code')}, done={done and done['task']['status']}")
    assert srv.proc.poll() is None
    assert deep["type"] == "error" and deep["code"] == 400, deep
    assert hostile["type"] == "error" and hostile["code"] in (400, 413), hostile
    assert ok["type"] == "submitted" and ok["code"] == 202, ok
    assert done and done["task"]["status"] == "succeeded", done
    assert pong["type"] == "pong"
    assert http("GET", f"{srv.base_url}/api/v1/tasks").status_code == 200


# --------------------------------------------------------------------------- SIGTERM with half-open clients


def test_sigterm_with_partial_and_idle_connections(tmp_path):
    """SIGTERM while a task runs (so the grace period is spent), a client holds half a request head and another an
    idle keep-alive connection: the process exits within --shutdown-grace + 5 s, and new connections made in the
    meantime are not served (refused, closed, or 503)."""
    grace = 2
    srv = _launch(tmp_path / "term", ["--store", "memory", "--shutdown-grace", str(grace)], None)
    r = http("POST", f"{srv.base_url}/api/v1/tasks", json={"cmd": "sleep", "args": {"ms": 20000}, "uid": new_uid("term")})
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    wait_until(lambda: http("GET", f"{srv.base_url}/api/v1/tasks/{tid}").json()["status"] == "running", 10,
               "the sleep task to run")
    partial = raw_connect(srv.port)
    idle = raw_connect(srv.port)
    attempts: list[tuple[float, str]] = []
    try:
        partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        ans = read_answer(idle, 5.0)
        assert ans.status == 200 and not ans.closed, ans.short()
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        deadline = t0 + grace + 5
        while srv.proc.poll() is None and time.monotonic() < deadline:
            at = time.monotonic() - t0
            try:
                sock = raw_connect(srv.port, timeout=1.0)
            except OSError as e:
                attempts.append((at, f"connect:{type(e).__name__}"))
                time.sleep(0.05)  # pacing between attempts
                continue
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                a = read_answer(sock, 2.0, 1.0)
                attempts.append((at, f"status:{a.status}" if a.status else ("closed" if a.closed else "held")))
            except OSError as e:
                attempts.append((at, f"send:{type(e).__name__}"))
            finally:
                sock.close()
            time.sleep(0.05)  # pacing between attempts
        exited_after = time.monotonic() - t0
        code = srv.proc.poll()
        partial_seen = read_answer(partial, 0.2).short() if code is not None else "n/a"
    finally:
        partial.close()
        idle.close()
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(5)
    kinds = Counter(k for _, k in attempts)
    served_late = [(round(at, 2), k) for at, k in attempts if at > 0.5 and k not in ("closed", "status:503")
                   and not k.startswith(("connect:", "send:"))]
    print(f"SIGTERM: exit {code} after {exited_after:.2f}s (grace {grace}); new connection attempts: {dict(kinds)}; "
          f"not refused after 0.5 s: {served_late[:5]}; partial client saw: {partial_seen}")
    assert code is not None, f"still running {grace + 5}s after SIGTERM with a partial and an idle connection:\n" \
                             f"{srv.output()[-2000:]}"
    assert code == 0, f"exit code {code}"
    assert exited_after >= grace - 1, f"exited after {exited_after:.2f}s, before the grace period of the running task"
    assert not served_late, f"new connections were served (or held) after SIGTERM: {served_late[:10]}"
