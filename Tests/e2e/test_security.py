"""Hardening end to end: signed tokens, admin auth, Origin, every limit, slow consumers, deflate bombs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time

import pytest
import requests
import websockets
from websockets.exceptions import InvalidStatus

from conftest import TASKGATE_BIN, new_uid, run

SECRET = "a-test-secret-of-some-length-123"
NO_PROXY = {"http": None, "https": None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(uid: str, exp_in: int = 3600, secret: str = SECRET, alg: str = "HS256") -> str:
    """What an application backend does (docs/backend.md): JWT HS256 with sub and exp."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": uid, "exp": int(time.time()) + exp_in}).encode())
    signature = b64url(hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


async def refused(url: str, headers: dict | None = None) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(url, additional_headers=headers, open_timeout=5, proxy=None)
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


@pytest.fixture
def token_mode(start_server):
    return start_server("--auth", "token", "--token-secret", SECRET, "--admin-token", "adm1n", "--store", "memory")


def test_cli_mints_tokens_the_server_accepts(token_mode):
    uid = new_uid("cli")
    token = subprocess.run([str(TASKGATE_BIN), "token", uid, "--secret", SECRET, "--ttl", "60"], capture_output=True,
                           text=True, timeout=10, check=True).stdout.strip()
    assert token.count(".") == 2

    async def body():
        async with websockets.connect(f"{token_mode.ws_url}?token={token}", open_timeout=5, proxy=None) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert hello["type"] == "hello" and hello["uid"] == uid

    run(body())
    r = requests.post(f"{token_mode.base_url}/poll", params={"token": mint(uid)}, json={"cmd": "ping"}, timeout=5, proxies=NO_PROXY)
    assert r.status_code == 200 and r.json()["type"] == "pong"
    r = requests.get(f"{token_mode.base_url}/poll", params={"timeout": 0}, headers={"Authorization": f"Bearer {mint(uid)}"},
                     timeout=5, proxies=NO_PROXY)
    assert r.status_code == 200


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "mismatch", "alg-none", "garbage", "uid-only"])
def test_bad_tokens_are_refused_before_upgrade(token_mode, case):
    uid = new_uid("tok")
    query = {
        "missing": "",
        "forged": f"token={mint(uid, secret='another-secret-entirely-123456')}",
        "expired": f"token={mint(uid, exp_in=-120)}",  # past the 30 s clock-skew leeway
        "mismatch": f"token={mint(uid)}&uid=someone-else",
        "alg-none": f"token={mint(uid, alg='none')}",
        "garbage": "token=not.a.jwt",
        "uid-only": f"uid={uid}",
    }[case]
    status, error = run(refused(f"{token_mode.ws_url}?{query}"))
    assert status == 401, (status, error)
    assert error["error"] == "unauthorized" and error["info"], error
    r = requests.get(f"{token_mode.base_url}/poll?{query}&timeout=0", timeout=5, proxies=NO_PROXY)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = requests.get(f"{token_mode.base_url}/sse?{query}", timeout=5, proxies=NO_PROXY)
    assert r.status_code == 401


def test_admin_commands_need_the_admin_token(token_mode):
    uid = new_uid("adm")

    async def body():
        async with websockets.connect(f"{token_mode.ws_url}?token={mint(uid)}", open_timeout=5, proxy=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"cmd": "reload"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == 403
        headers = {"Authorization": "Bearer adm1n"}
        async with websockets.connect(f"{token_mode.ws_url}?uid=ops", additional_headers=headers, open_timeout=5, proxy=None) as ws:
            hello = json.loads(await ws.recv())
            assert hello["admin"] is True and hello["uid"] == "ops"
            await ws.send(json.dumps({"cmd": "clients"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "clients", reply
        status, _ = await refused(f"{token_mode.ws_url}?uid=ops", {"Authorization": "Bearer wrong"})
        assert status == 401

    run(body())
    assert requests.get(f"{token_mode.base_url}/api/v1/clients", timeout=5, proxies=NO_PROXY).status_code == 401
    assert requests.get(f"{token_mode.base_url}/api/v1/clients", headers={"Authorization": f"Bearer {mint('x')}"},
                        timeout=5, proxies=NO_PROXY).status_code == 401


def test_origin_allow_list(start_server):
    server = start_server("--store", "memory", "--allowed-origin", "https://app.example.com")
    uid = new_uid("org")

    async def body():
        status, error = await refused(f"{server.ws_url}?uid={uid}", {"Origin": "https://evil.example"})
        assert status == 403 and error["error"] == "forbidden"
        for origin in ("https://app.example.com", "http://localhost:8080", f"http://127.0.0.1:{server.port}"):
            async with websockets.connect(f"{server.ws_url}?uid={uid}", origin=origin, open_timeout=5, proxy=None) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"

    run(body())
    r = requests.post(f"{server.base_url}/poll", params={"uid": uid}, json={"cmd": "ping"},
                      headers={"Origin": "https://evil.example"}, timeout=5, proxies=NO_PROXY)
    assert r.status_code == 403


def test_connection_limits(start_server):
    server = start_server("--store", "memory", "--max-connections-per-uid", "2", "--max-connections", "3")
    uid = new_uid("lim")

    async def body():
        async def connected(query: str):
            ws = await websockets.connect(f"{server.ws_url}?{query}", open_timeout=5, proxy=None)
            await asyncio.wait_for(ws.recv(), 5)  # hello comes once the connection is registered (and counted)
            return ws

        first = await connected(f"uid={uid}")
        second = await connected(f"uid={uid}")
        status, error = await refused(f"{server.ws_url}?uid={uid}")
        assert status == 429 and error["error"] == "rate_limited", error
        third = await connected(f"uid=other-{uid}")
        status, error = await refused(f"{server.ws_url}?uid=fourth-{uid}")
        assert status == 503, error
        await first.close()
        await asyncio.sleep(0.3)
        again = await connected(f"uid={uid}")
        for ws in (second, third, again):
            await ws.close()

    run(body())


def test_message_rate_limit_answers_429_and_keeps_the_socket(start_server):
    server = start_server("--store", "memory", "--max-messages-per-second", "5")

    async def body():
        async with websockets.connect(f"{server.ws_url}?uid={new_uid()}", open_timeout=5, proxy=None) as ws:
            await ws.recv()
            for _ in range(30):
                await ws.send(json.dumps({"cmd": "ping"}))
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(30)]
            limited = [r for r in replies if r["type"] == "error"]
            assert limited and all(r["code"] == 429 and r["error"] == "rate_limited" for r in limited)
            assert 8 <= sum(r["type"] == "pong" for r in replies) <= 14
            await asyncio.sleep(1.0)
            await ws.send(json.dumps({"cmd": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"

    run(body())


def test_task_poll_and_size_limits(start_server):
    server = start_server("--store", "memory", "--max-tasks-per-uid", "2", "--max-polls-per-uid", "1",
                          "--max-message-bytes", "200000")
    uid = new_uid("cap")
    base = server.base_url
    for expected in (202, 202, 429):
        r = requests.post(f"{base}/api/v1/tasks", json={"cmd": "sleep", "args": {"ms": 3000}, "uid": uid}, timeout=5,
                          proxies=NO_PROXY)
        assert r.status_code == expected, r.text
    assert r.json()["error"] == "rate_limited"
    # Another uid is not affected.
    assert requests.post(f"{base}/api/v1/tasks", json={"cmd": "echo", "uid": new_uid()}, timeout=5, proxies=NO_PROXY).status_code == 202
    # Arguments over 64 KiB are refused even when the message limit is higher.
    big = {"cmd": "echo", "args": {"blob": "x" * 70_000}}
    r = requests.post(f"{base}/poll", params={"uid": new_uid()}, json=big, timeout=5, proxies=NO_PROXY)
    assert r.status_code == 413 and "args" in r.json()["info"]
    r = requests.post(f"{base}/api/v1/tasks", data=b"{" + b" " * 300_000 + b"}", timeout=5, proxies=NO_PROXY)
    assert r.status_code == 413
    # One poll waiting per uid: a second one is refused while the first waits.
    poller = new_uid("poll")

    async def polls():
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(None, lambda: requests.get(f"{base}/poll", params={"uid": poller, "timeout": 2},
                                                                   timeout=10, proxies=NO_PROXY))
        await asyncio.sleep(0.5)
        second = await loop.run_in_executor(None, lambda: requests.get(f"{base}/poll", params={"uid": poller, "timeout": 1},
                                                                       timeout=10, proxies=NO_PROXY))
        assert second.status_code == 429
        assert (await waiting).status_code == 200

    run(polls())


def raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket handshake on a bare socket, which then reads nothing: the slowest consumer there is."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def socket_closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Drains what the server sent; True once the server has closed the connection."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_slow_consumer_is_cut_off_and_others_are_not(start_server):
    server = start_server("--store", "memory", "--max-outbound-messages", "16", "--max-tasks-per-uid", "1000")
    slow_uid, calm_uid = new_uid("slow"), new_uid("calm")
    slow = raw_websocket(server.port, f"/ws?uid={slow_uid}")

    async def body():
        calm = await websockets.connect(f"{server.ws_url}?uid={calm_uid}", open_timeout=5, proxy=None)
        await calm.recv()
        # The slow client reads nothing; big events for it pile up (socket buffers first, then the queue).
        payload = "y" * 60_000
        loop = asyncio.get_running_loop()

        def flood():
            session = requests.Session()
            for _ in range(200):
                session.post(f"{server.base_url}/api/v1/tasks", json={"cmd": "echo", "args": {"p": payload}, "uid": slow_uid},
                             timeout=10, proxies=NO_PROXY)

        await loop.run_in_executor(None, flood)
        for _ in range(5):
            started = time.monotonic()
            await calm.send(json.dumps({"cmd": "ping"}))
            assert json.loads(await asyncio.wait_for(calm.recv(), 5))["type"] == "pong"
            assert time.monotonic() - started < 1.0
        await calm.close()

    run(body(), timeout=90)
    # The server gave up on the slow connection (a close frame behind the backlog, then the socket itself).
    assert socket_closed_by_peer(slow, 20), "the slow connection was not closed"
    slow.close()
    assert "closing a connection that does not read" in server.output()
    # Its events stayed in the log: a resume gets the retained ones.
    r = requests.get(f"{server.base_url}/poll", params={"uid": slow_uid, "cursor": 0, "timeout": 0}, timeout=10,
                     proxies=NO_PROXY)
    assert r.status_code == 200 and r.json()["events"]


def test_deflate_bomb_is_refused_without_harm(server):
    async def body():
        async with websockets.connect(f"{server.ws_url}?uid={new_uid()}", open_timeout=5, proxy=None) as bystander:
            await bystander.recv()
            bomb = await websockets.connect(f"{server.ws_url}?uid={new_uid('bomb')}", compression="deflate", open_timeout=5,
                                            proxy=None, max_size=None)
            assert "permessage-deflate" in bomb.response.headers.get("Sec-WebSocket-Extensions", "")
            await bomb.recv()
            await bomb.send("0" * (64 * 1024 * 1024))  # 64 MiB of one byte: a few dozen KiB on the wire
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(bomb.recv(), 10)
            # 1009 would be the apt code; the WebSocket library closes an over-inflating message with 1011.
            assert bomb.close_code in (1009, 1011), bomb.close_code
            await bystander.send(json.dumps({"cmd": "ping"}))
            assert json.loads(await asyncio.wait_for(bystander.recv(), 5))["type"] == "pong"
        health = requests.get(f"{server.base_url}/healthz", timeout=5, proxies=NO_PROXY)
        assert health.status_code == 200

    run(body(), timeout=60)
