#!/usr/bin/env python3
"""Open event streams: what one waiting `GET /sse` costs the server, and that every stream still gets its event.

--connections streams `GET /sse?uid=s{i}`, each on a connection of its own (as a browser's EventSource opens one),
are opened and read up to their `hello`. RSS is read before the first and, --settle seconds after the last greeting,
with all of them open: the difference per stream is the figure. Then one echo task per uid is submitted over REST
(--submitters keep-alive connections) and every stream must receive its `done`; delivery is the submit's 202 → the
stream's `done`.

Writes a JSON summary (--json-out) in the shape of taskgate-load's poll mode: connections, completed, errors,
rss_per_connection_kb, p50_ms, p99_ms. Loopback only; bounded in connections and every wait. No dependencies."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proc  # noqa: E402  (bench/proc.py)

CONNECT_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 30.0


async def open_stream(host: str, port: int, uid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /sse?uid={uid} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream {uid}: {status!r}")
    buffered = b""
    while b"event: hello" not in buffered:
        chunk = await reader.read(4096)
        if not chunk:
            raise RuntimeError(f"stream {uid} closed before its hello")
        buffered += chunk
    return reader, writer


async def wait_for_done(reader: asyncio.StreamReader) -> float:
    buffered = b""
    while b"event: done" not in buffered:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("stream closed before its done")
        buffered = buffered[-64:] + chunk
    return time.perf_counter()


async def submitter(host: str, port: int, uids: list[str], accepted: dict[str, float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for uid in uids:
            body = json.dumps({"cmd": "echo", "args": {"n": 1}, "uid": uid}).encode()
            writer.write(
                f"POST /api/v1/tasks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if b" 202 " not in status:
                raise RuntimeError(f"submit for {uid}: {status!r}")
            accepted[uid] = time.perf_counter()
    finally:
        writer.close()


async def main(options: argparse.Namespace) -> dict:
    target = urllib.parse.urlsplit(options.url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    before = proc.rss_kb(options.server_pid)
    uids = [f"s{i}" for i in range(options.connections)]
    streams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    errors = 0
    # Opened in batches, so that the accept queue is never the limit being measured.
    for start in range(0, len(uids), 200):
        batch = uids[start:start + 200]
        opened = await asyncio.wait_for(
            asyncio.gather(*(open_stream(host, port, uid) for uid in batch), return_exceptions=True), CONNECT_TIMEOUT)
        for uid, result in zip(batch, opened):
            if isinstance(result, BaseException):
                errors += 1
            else:
                streams[uid] = result
    await asyncio.sleep(options.settle)
    during = proc.rss_kb(options.server_pid)

    accepted: dict[str, float] = {}
    waiting = {uid: asyncio.create_task(wait_for_done(reader)) for uid, (reader, _) in streams.items()}
    names = list(streams)
    share = max(1, -(-len(names) // options.submitters))
    await asyncio.wait_for(
        asyncio.gather(*(submitter(host, port, names[i:i + share], accepted) for i in range(0, len(names), share))),
        DELIVERY_TIMEOUT)
    done, pending = await asyncio.wait(waiting.values(), timeout=DELIVERY_TIMEOUT)
    for task in pending:
        task.cancel()
    latencies = []
    for uid, task in waiting.items():
        if task in done and task.exception() is None and uid in accepted:
            latencies.append(max(0.0, task.result() - accepted[uid]))
        else:
            errors += 1
    for _, writer in streams.values():
        writer.close()
    latencies.sort()

    def percentile(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000

    return {
        "label": options.label, "mode": "sse", "connections": options.connections, "completed": len(latencies),
        "errors": errors, "rss_before_kb": before, "rss_kb": during,
        "rss_per_connection_kb": (during - before) / max(1, len(streams)),
        "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--submitters", type=int, default=8)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--label", default="taskgate")
    parser.add_argument("--json-out")
    options = parser.parse_args()
    if urllib.parse.urlsplit(options.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, options.connections * 2 + 256)), hard))
    figures = asyncio.run(main(options))
    text = json.dumps(figures)
    if options.json_out:
        Path(options.json_out).write_text(text + "\n")
    print(text)
