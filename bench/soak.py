"""A bounded soak of one TaskGate server under mixed load, loopback only.

For `--seconds` (default 600) it keeps running at once:
  * WebSocket clients that submit echo and sleep tasks, and now and then drop and reconnect with their cursor;
  * SSE clients that follow a uid's events and reconnect with Last-Event-ID;
  * long-poll clients (GET /poll with a cursor, POST /poll to submit);
  * REST submits (POST /api/v1/tasks);
  * a soft reload every 30 s (POST /api/v1/reload);
  * a few slow consumers: WebSockets that submit tasks with large args and never read.

It prints the server's RSS and open file descriptors at the start and at the end, and at the end the tasks that
were accepted (202) but never reached a final state (lost) and the tasks whose `done` a reading client saw twice
(duplicated). Exit status 1 if any task was lost or duplicated, or the server died.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import urllib.request
import uuid

import websockets


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, base: str, pid: int, seconds: float):
        self.base = base
        self.ws_base = base.replace("http://", "ws://")
        self.pid = pid
        self.deadline = time.monotonic() + seconds
        self.accepted: set[str] = set()      # task ids that got a 202
        self.done_seen: dict[str, int] = {}  # task id -> times a reading client saw its `done`
        self.counts = {"ws": 0, "sse": 0, "poll": 0, "rest": 0, "reloads": 0, "reconnects": 0, "slow_closed": 0}
        self.errors: list[str] = []

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def http(self, method: str, path: str, body: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def saw_done(self, task_id: str) -> None:
        self.done_seen[task_id] = self.done_seen.get(task_id, 0) + 1

    # -- WebSocket clients: submit, read, now and then reconnect with the cursor

    async def websocket_client(self) -> None:
        uid = f"soak-ws-{uuid.uuid4().hex[:8]}"
        cursor = 0
        seen_seqs: set[int] = set()
        while self.running():
            try:
                async with websockets.connect(f"{self.ws_base}/ws?uid={uid}&cursor={cursor}", open_timeout=10,
                                              max_size=1 << 22) as ws:
                    stop_at = time.monotonic() + random.uniform(5, 20)
                    pending = 0
                    while self.running() and time.monotonic() < stop_at:
                        if pending < 4:
                            cmd = random.choice(["echo", "echo", "sleep"])
                            args = {"n": random.randint(0, 1 << 30)} if cmd == "echo" else {"ms": random.randint(10, 200)}
                            await ws.send(json.dumps({"cmd": cmd, "args": args, "ref": "s"}))
                            pending += 1
                        try:
                            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
                        except asyncio.TimeoutError:
                            continue
                        seq = message.get("seq")
                        if message.get("type") == "submitted" and message.get("code") == 202:
                            self.accepted.add(message["task"]["id"])
                            self.counts["ws"] += 1
                        elif message.get("type") == "error":
                            pending -= 1
                        if seq is not None:
                            cursor = max(cursor, seq)
                            if message.get("type") == "done" and seq not in seen_seqs:
                                self.saw_done(message["task"]["id"])
                                pending -= 1
                            seen_seqs.add(seq)
                self.counts["reconnects"] += 1
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as error:
                self.errors.append(f"ws: {error!r}")
                await asyncio.sleep(1)

    # -- SSE clients: follow a uid's events (submitting through POST /poll), reconnect with Last-Event-ID

    async def sse_client(self) -> None:
        uid = f"soak-sse-{uuid.uuid4().hex[:8]}"
        last = 0
        while self.running():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.host_port()), 10)
                headers = f"Last-Event-ID: {last}\r\n" if last else ""
                writer.write(f"GET /sse?uid={uid} HTTP/1.1\r\nHost: soak\r\n{headers}\r\n".encode())
                await writer.drain()
                stop_at = time.monotonic() + random.uniform(5, 20)
                submitted_at = 0.0
                event_type = None
                while self.running() and time.monotonic() < stop_at:
                    if time.monotonic() - submitted_at > 0.5:
                        status, body = await asyncio.to_thread(
                            self.http, "POST", f"/poll?uid={uid}", {"cmd": "echo", "args": {"sse": True}})
                        if status == 202:
                            self.accepted.add(body["task"]["id"])
                            self.counts["sse"] += 1
                        submitted_at = time.monotonic()
                    try:
                        line = (await asyncio.wait_for(reader.readline(), 2)).decode().rstrip("\r\n")
                    except asyncio.TimeoutError:
                        continue
                    if not line and reader.at_eof():
                        break
                    if line.startswith("event: "):
                        event_type = line[7:]
                    elif line.startswith("id: "):
                        last = int(line[4:])
                    elif line.startswith("data: ") and event_type == "done":
                        self.saw_done(json.loads(line[6:])["task"]["id"])
                writer.close()
                self.counts["reconnects"] += 1
            except (OSError, asyncio.TimeoutError, ValueError) as error:
                self.errors.append(f"sse: {error!r}")
                await asyncio.sleep(1)

    # -- long-poll clients

    async def poll_client(self) -> None:
        uid = f"soak-lp-{uuid.uuid4().hex[:8]}"
        cursor = 0
        while self.running():
            status, body = await asyncio.to_thread(self.http, "POST", f"/poll?uid={uid}", {"cmd": "echo", "args": {"lp": 1}})
            if status == 202:
                self.accepted.add(body["task"]["id"])
                self.counts["poll"] += 1
            status, batch = await asyncio.to_thread(self.http, "GET", f"/poll?uid={uid}&cursor={cursor}&timeout=5", None, 15)
            if status == 200:
                for event in batch.get("events", []):
                    if event.get("type") == "done":
                        self.saw_done(event["task"]["id"])
                cursor = batch.get("cursor", cursor)

    # -- REST submits (read back by status at the end) and reloads

    async def rest_client(self) -> None:
        while self.running():
            status, body = await asyncio.to_thread(
                self.http, "POST", "/api/v1/tasks", {"cmd": "echo", "args": {"rest": True}, "uid": "soak-rest"})
            if status in (200, 202):
                self.accepted.add(body["id"] if "id" in body else body["task"]["id"])
                self.counts["rest"] += 1
            await asyncio.sleep(0.05)

    async def reloader(self) -> None:
        while self.running():
            await asyncio.sleep(30)
            if not self.running():
                break
            status, _ = await asyncio.to_thread(self.http, "POST", "/api/v1/reload", {})
            if status == 200:
                self.counts["reloads"] += 1
            else:
                self.errors.append(f"reload: {status}")

    # -- slow consumers: big results, never read

    async def slow_consumer(self) -> None:
        uid = f"soak-slow-{uuid.uuid4().hex[:8]}"
        while self.running():
            try:
                async with websockets.connect(f"{self.ws_base}/ws?uid={uid}", open_timeout=10, max_queue=1) as ws:
                    blob = "x" * 30_000
                    while self.running():
                        await ws.send(json.dumps({"cmd": "echo", "args": {"blob": blob}}))
                        await asyncio.sleep(0.05)
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
                self.counts["slow_closed"] += 1
                await asyncio.sleep(1)

    def host_port(self) -> tuple[str, int]:
        host, port = self.base.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    async def run(self, clients: int) -> None:
        jobs = [self.websocket_client() for _ in range(clients)]
        jobs += [self.sse_client() for _ in range(max(1, clients // 4))]
        jobs += [self.poll_client() for _ in range(max(1, clients // 4))]
        jobs += [self.rest_client(), self.reloader()]
        jobs += [self.slow_consumer() for _ in range(2)]
        await asyncio.gather(*jobs)


def final_states(soak: Soak) -> tuple[int, int]:
    """Waits (bounded) for every accepted task to be final; returns (lost, still unfinished at the deadline)."""
    deadline = time.monotonic() + 60
    unfinished = set(soak.accepted)
    while unfinished and time.monotonic() < deadline:
        for task_id in list(unfinished):
            status, body = soak.http("GET", f"/api/v1/tasks/{task_id}")
            if status == 200 and body.get("status") in ("succeeded", "failed", "cancelled", "timed_out"):
                unfinished.discard(task_id)
        if unfinished:
            time.sleep(1)
    return len(unfinished), len(unfinished)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    soak = Soak(args.url.rstrip("/"), args.pid, args.seconds)
    start_rss, start_fds = rss_kb(args.pid), fds(args.pid)
    print(f"soak: start  rss={start_rss} KB fds={start_fds}", flush=True)
    asyncio.run(soak.run(args.clients))
    time.sleep(2)  # the clients' sockets close
    lost, _ = final_states(soak)
    duplicated = sum(1 for count in soak.done_seen.values() if count > 1)
    alive = os.path.exists(f"/proc/{args.pid}")
    end_rss, end_fds = (rss_kb(args.pid), fds(args.pid)) if alive else (0, 0)
    print(f"soak: end    rss={end_rss} KB fds={end_fds}")
    print(f"soak: submitted {json.dumps(soak.counts)}; accepted={len(soak.accepted)} lost={lost} duplicated={duplicated}")
    if soak.errors:
        print(f"soak: {len(soak.errors)} client errors (reconnected), first: {soak.errors[:3]}")
    return 0 if alive and lost == 0 and duplicated == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
