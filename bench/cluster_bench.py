#!/usr/bin/env python3
"""Cluster mode: 1 node vs 3 nodes sharing one PostgreSQL.

Starts a throwaway PostgreSQL (Tests/e2e/pg.py) on a free loopback port and, for each node count, a fresh database
and that many `taskgate serve --store postgres` nodes on free loopback ports, then measures:

* tasks/s: `--connections` WebSocket clients spread round-robin over the nodes, each keeping `--window` echo tasks
  in flight (submit -> submitted -> done, wherever the task runs), for `--seconds`; plus submit->done latency;
* cross-node delivery latency: a uid's WebSocket on node A and echo tasks for that uid submitted by REST on node B
  (the same node when there is only one), one after another, `--samples` of them, timed from just before the POST
  is written to the done event arriving on the socket;
* server CPU per task: the nodes' and PostgreSQL's processes (from /proc/PID/stat).

Prints a table and one JSON line. Loopback only; bounded in time and count; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import websockets

from benchserver import CLOCK_TICKS, cpu_seconds, rss_kb, taskgate
from tasks_bench import RECV_TIMEOUT, client, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "e2e"))
from pg import PostgresServer  # noqa: E402  (Tests/e2e/pg.py)

SAMPLE_TIMEOUT = 10.0    # a latency sample's done event must come within this
NODE_NAMES = ["node-a", "node-b", "node-c", "node-d", "node-e"]


def process_tree_cpu(root_pid: int) -> dict[int, float]:
    """CPU seconds of root_pid and its children (PostgreSQL: the postmaster and its backends)."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


# --------------------------------------------------------------------------- throughput


async def drive(ports: list[int], uid_prefix: str, connections: int, window: int, seconds: float):
    latencies: list[float] = []
    counts = [0]
    deadline = time.perf_counter() + seconds
    clients = [client(f"ws://127.0.0.1:{ports[i % len(ports)]}/ws?uid={uid_prefix}-{i}", window, deadline,
                      latencies, counts) for i in range(connections)]
    await asyncio.wait_for(asyncio.gather(*clients), seconds + 2 * RECV_TIMEOUT)
    return counts[0], latencies


# --------------------------------------------------------------------------- cross-node delivery latency


class HttpConnection:
    """A keep-alive HTTP/1.1 connection to 127.0.0.1 for JSON POSTs (no thread hop, so the timing is tight)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)

    def send_post(self, path: str, body: dict) -> None:
        data = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        self.writer.write(head + data)

    async def read_response(self) -> tuple[int, bytes]:
        status_line = await asyncio.wait_for(self.reader.readline(), SAMPLE_TIMEOUT)
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await asyncio.wait_for(self.reader.readline(), SAMPLE_TIMEOUT)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await asyncio.wait_for(self.reader.readline(), SAMPLE_TIMEOUT)).split(b";")[0], 16)
                chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), SAMPLE_TIMEOUT)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))),
                                          SAMPLE_TIMEOUT)
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
            await self.open()
        return status, body

    async def close(self):
        if self.writer:
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 5)


async def delivery_latency(ws_port: int, rest_port: int, samples: int) -> list[float]:
    uid = f"lat-{uuid.uuid4().hex[:10]}"
    arrived: dict[str, asyncio.Future] = {}
    async with websockets.connect(f"ws://127.0.0.1:{ws_port}/ws?uid={uid}", compression=None, open_timeout=10,
                                  proxy=None, ping_interval=None) as ws:
        await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)  # hello

        async def reader():
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "done":
                    future = arrived.get(message["task"]["id"])
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter())

        reading = asyncio.create_task(reader())
        http = HttpConnection(rest_port)
        await http.open()
        latencies = []
        try:
            for i in range(samples):
                task_id = f"{uid}-{i}"
                arrived[task_id] = asyncio.get_running_loop().create_future()
                begun = time.perf_counter()
                http.send_post("/api/v1/tasks", {"cmd": "echo", "id": task_id, "uid": uid, "args": {"i": i}})
                status, body = await http.read_response()
                if status != 202:
                    raise RuntimeError(f"POST /api/v1/tasks: {status} {body[:200]!r}")
                done_at = await asyncio.wait_for(asyncio.shield(arrived[task_id]), SAMPLE_TIMEOUT)
                latencies.append(done_at - begun)
                del arrived[task_id]
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
            await http.close()
    return latencies


# --------------------------------------------------------------------------- one configuration


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.loads(r.read())


def run(binary: str, pg: PostgresServer, nodes: int, connections: int, window: int, seconds: float, workers: int,
        samples: int) -> dict:
    database_url = pg.create_database()
    try:
        with contextlib.ExitStack() as stack:
            servers = []
            for name in NODE_NAMES[:nodes]:
                server, port, _ = stack.enter_context(taskgate(
                    binary, "--store", "postgres", "--database-url", database_url, "--node-id", name,
                    workers=workers))
                try:
                    health = healthz(port)
                except OSError as e:
                    sys.exit(f"{name} did not start (exit code {server.poll()}): {e}")
                if health.get("store") != "postgres":
                    sys.exit(f"{name} does not run on PostgreSQL: {health}")
                servers.append((server, port))
            ports = [port for _, port in servers]
            # A short warm-up, not measured.
            asyncio.run(drive(ports, "warm", min(connections, 10), window, 1.0))
            pg_root = postmaster_pid(pg)
            node_cpu_before = sum(cpu_seconds(s.pid) for s, _ in servers)
            pg_cpu_before = process_tree_cpu(pg_root)
            started = time.perf_counter()
            completed, latencies = asyncio.run(drive(ports, "bench", connections, window, seconds))
            elapsed = time.perf_counter() - started
            node_cpu = sum(cpu_seconds(s.pid) for s, _ in servers) - node_cpu_before
            pg_cpu_after = process_tree_cpu(pg_root)
            pg_cpu = sum(v - pg_cpu_before.get(pid, 0.0) for pid, v in pg_cpu_after.items())
            rest_port = ports[1 % len(ports)]
            delivery = asyncio.run(asyncio.wait_for(delivery_latency(ports[0], rest_port, samples),
                                                    samples * SAMPLE_TIMEOUT + 30))
            return {
                "nodes": nodes,
                "connections": connections,
                "window": window,
                "workers_per_node": workers,
                "tasks": completed,
                "seconds": round(elapsed, 2),
                "tasks_per_second": round(completed / elapsed),
                "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "delivery_samples": len(delivery),
                "delivery_p50_ms": round(percentile(delivery, 0.50) * 1000, 2),
                "delivery_p99_ms": round(percentile(delivery, 0.99) * 1000, 2),
                "node_cpu_us_per_task": round(node_cpu / completed * 1e6, 1) if completed else None,
                "db_cpu_us_per_task": round(pg_cpu / completed * 1e6, 1) if completed else None,
                "node_rss_kb": [rss_kb(s.pid) for s, _ in servers],
            }
    finally:
        pg.drop_database(PostgresServer.database_of(database_url))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build/release/taskgate")
    parser.add_argument("--nodes", default="1,3", help="node counts to measure, e.g. 1,3")
    parser.add_argument("--connections", type=int, default=30, help="WebSocket clients, spread over the nodes")
    parser.add_argument("--window", type=int, default=4, help="tasks in flight per connection")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4, help="--task-workers of each node")
    parser.add_argument("--samples", type=int, default=200, help="cross-node delivery latency samples")
    options = parser.parse_args()
    node_counts = [int(n) for n in options.nodes.split(",")]
    if not (1 <= options.connections <= 2000 and 0 < options.seconds <= 300 and 1 <= options.window <= 100
            and 1 <= options.samples <= 10000 and all(1 <= n <= len(NODE_NAMES) for n in node_counts)):
        sys.exit(f"bounded runs only: 1-2000 connections, up to 300 s, window 1-100, 1-10000 samples, "
                 f"1-{len(NODE_NAMES)} nodes")
    if not Path(options.bin).exists():
        sys.exit(f"{options.bin} not found (swift build -c release, or --bin)")
    usage = subprocess.run([options.bin, "serve", "--help"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    if "--database-url" not in usage.stdout + usage.stderr:
        sys.exit(f"{options.bin} has no `serve --database-url` (no PostgreSQL cluster mode)")
    with PostgresServer() as pg:
        results = [run(options.bin, pg, n, options.connections, options.window, options.seconds, options.workers,
                       options.samples) for n in node_counts]
    print(json.dumps(results))
    print()
    print(f"{'nodes':>5} {'tasks/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'deliv p50':>10} {'deliv p99':>10} "
          f"{'node µs/task':>13} {'db µs/task':>11}")
    for r in results:
        print(f"{r['nodes']:>5} {r['tasks_per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['delivery_p50_ms']:>10} {r['delivery_p99_ms']:>10} {r['node_cpu_us_per_task']:>13} "
              f"{r['db_cpu_us_per_task']:>11}")
    if len(results) == 2 and results[0]["tasks_per_second"]:
        ratio = results[1]["tasks_per_second"] / results[0]["tasks_per_second"]
        print(f"\n{results[1]['nodes']} nodes / {results[0]['nodes']} node tasks/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
