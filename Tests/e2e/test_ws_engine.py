"""TaskGate's WebSocket engine seen from real clients: how it negotiates permessage-deflate and what it answers at
the edges of the protocol."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from conftest import new_uid, run


async def raw_connect(server, path: str, **kwargs):
    return await websockets.connect(f"ws://{server.host}:{server.port}{path}", open_timeout=5, close_timeout=3,
                                    proxy=None, ping_interval=None, **kwargs)


async def receive(ws, timeout: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, message: dict, timeout: float = 5) -> dict:
    await ws.send(json.dumps(message))
    return await receive(ws, timeout)


ROWS = [{"id": i, "name": f"row {i}", "status": "ok"} for i in range(200)]


def test_deflate_is_negotiated_without_context_takeover_and_honours_the_window(server):
    async def body():
        # The usual browser offer: the server answers without context takeover in both directions.
        ws = await raw_connect(server, f"/ws?uid={new_uid('nct')}", compression="deflate")
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        assert header == "permessage-deflate; server_no_context_takeover; client_no_context_takeover", header
        assert (await receive(ws))["type"] == "hello"
        # Several compressed messages each way, each one compressed on its own.
        for _ in range(3):
            reply = await request(ws, {"cmd": "echo", "args": {"rows": ROWS}, "ref": "r"})
            assert reply["type"] == "submitted" and reply["task"]["args"]["rows"] == ROWS, reply
            while (event := await receive(ws))["type"] != "done":
                pass
            assert event["task"]["id"] == reply["task"]["id"] and event["task"]["result"]["rows"] == ROWS, event
        await ws.close()

        # A client that limits the server's window gets it.
        factory = ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True)
        ws = await raw_connect(server, f"/ws?uid={new_uid('win')}", extensions=[factory], compression=None)
        assert "server_max_window_bits=10" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert (await receive(ws))["type"] == "hello"
        reply = await request(ws, {"cmd": "echo", "args": {"rows": ROWS}})
        assert reply["task"]["args"]["rows"] == ROWS
        await ws.close()

        # An 8-bit server window is declined (zlib cannot write raw deflate with it): the connection runs uncompressed.
        factory = ClientPerMessageDeflateFactory(server_max_window_bits=8)
        ws = await raw_connect(server, f"/ws?uid={new_uid('w8')}", extensions=[factory], compression=None)
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert (await receive(ws))["type"] == "hello"
        assert (await request(ws, {"cmd": "ping"}))["type"] == "pong"
        await ws.close()

    run(body())


def test_upgrade_to_a_path_without_websocket_is_404_json(server):
    async def body():
        with pytest.raises(InvalidStatus) as refused:
            await raw_connect(server, "/api/v1/tasks")
        response = refused.value.response
        assert response.status_code == 404
        answer = json.loads(response.body)
        assert answer["code"] == 404 and answer["error"] == "not_found" and "/api/v1/tasks" in answer["info"], answer
        # /ws/echo exists only with --enable-echo.
        with pytest.raises(InvalidStatus) as refused:
            await raw_connect(server, "/ws/echo")
        assert refused.value.response.status_code == 404

    run(body())


def test_unmasked_frame_closes_with_1002(server):
    """A raw socket: clients must mask their frames (RFC 6455 §5.1); an unmasked one is a protocol error."""
    sock = socket.create_connection((server.host, server.port), timeout=5)
    try:
        sock.sendall((f"GET /ws?uid={new_uid('raw')} HTTP/1.1\r\nHost: {server.host}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        head, _, data = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(bytes([0x81, 0x02]) + b"{}")  # FIN + text, length 2, no mask
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        # The hello, then a close frame (0x88) with 1002; then the server hangs up.
        close_at = data.rfind(b"\x88")
        assert close_at >= 0, data
        assert int.from_bytes(data[close_at + 2:close_at + 4], "big") == 1002, data[close_at:]
    finally:
        sock.close()
