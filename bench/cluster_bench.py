#!/usr/bin/env python3
"""Cluster mode: 1 node vs 3 nodes sharing one PostgreSQL.

Starts a throwaway PostgreSQL (Tests/e2e/pg.py) on a free loopback port and, for each node count, a fresh database
and that many `taskgate serve --store postgres` nodes on free loopback ports, then measures:

* tasks/s: `--connections` WebSocket clients spread round-robin over the nodes, each with one echo task in flight
  (bench/ws_tasks.py, the client of bench/run.sh's echo-task scenarios: a unique `args.id` per task, submit -> the
  final reply, `code` 200, wherever the task runs), for `--seconds`; plus submit->done latency;
* exactly once: every task the clients submitted got exactly one final reply (none lost, none twice), and, read from
  the database afterwards, each of those tasks is on record once, succeeded, after one attempt, with one `done`
  event;
* cross-node delivery latency: a uid's WebSocket on node A and echo tasks for that uid submitted by REST on node B
  (the same node when there is only one), one after another, `--samples` of them, timed from just before the POST
  is written to the done event arriving on the socket;
* server CPU per task: the nodes' and PostgreSQL's processes (from /proc/PID/stat).

Prints a table and one JSON line (also written to --json-out). Loopback only; bounded in time and count; every wait
has a timeout. Needs picows (bench/requirements.txt).
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
import types
import uuid
from pathlib import Path

import picows

import ws_tasks
from benchserver import CLOCK_TICKS, cpu_seconds, rss_kb, taskgate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "e2e"))
from pg import PostgresServer  # noqa: E402  (Tests/e2e/pg.py)

SAMPLE_TIMEOUT = 10.0    # a latency sample's done event must come within this
RECV_TIMEOUT = 30.0
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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drive(ports: list[int], uid_prefix: str, connections: int, seconds: float, warmup: float, on_window=None) -> dict:
    """bench/ws_tasks.py's closed loop over every node in turn (connection i on node i mod n)."""
    options = types.SimpleNamespace(
        url=",".join(f"ws://127.0.0.1:{port}/ws?uid={uid_prefix}-{{i}}" for port in ports),
        connections=connections, duration=seconds, warmup=warmup, message=ws_tasks.DEFAULT_MESSAGE, skip_first=1,
        replies=0, rate=0, sample_interval=0, db_dir=None, server_pid=None, label=uid_prefix)
    return asyncio.run(asyncio.wait_for(ws_tasks.main_async(options, on_window), warmup + seconds + 120))


def database_check(pg: PostgresServer, database: str, uid_prefix: str) -> dict:
    """What the database holds of the measured run's tasks: how many, how many succeeded, how many took more than
    one attempt, and the `done` events logged for them. Read from the store's own tables, so a schema change leaves
    these figures out (with the reason), it does not fail the run."""
    like = f"{uid_prefix}-%"
    try:
        tasks, succeeded, retried = pg.psql(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
            "count(*) FILTER (WHERE coalesce((record::jsonb->>'attempts')::int, 1) <> 1) "
            f"FROM tasks WHERE uid LIKE '{like}'", database=database).split("|")
        done_events = pg.psql(f"SELECT count(*) FROM events WHERE uid LIKE '{like}' AND type = 'done'",
                              database=database)
        return {"db_tasks": int(tasks), "db_succeeded": int(succeeded), "db_not_one_attempt": int(retried),
                "db_done_events": int(done_events)}
    except Exception as e:  # noqa: BLE001 - see above
        return {"db_error": str(e)[-300:]}


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


class DoneListener(picows.WSListener):
    """The uid's socket: the first message is `hello`, then each `done` event resolves the sample waiting for it.
    Samples go one at a time, so the next `done` on this uid's socket is the sample's."""

    def __init__(self):
        self.hello = asyncio.get_running_loop().create_future()
        self.waiting: asyncio.Future | None = None

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == picows.WSMsgType.CLOSE:
            transport.disconnect()
            return
        if frame.msg_type != picows.WSMsgType.TEXT:
            return
        now = time.perf_counter()
        if not self.hello.done():
            self.hello.set_result(True)
            return
        if json.loads(frame.get_payload_as_bytes()).get("type") == "done":
            if self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(now)

    def on_ws_disconnected(self, transport):
        for future in (self.hello, self.waiting):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("the WebSocket closed"))


async def delivery_latency(ws_port: int, rest_port: int, samples: int) -> list[float]:
    uid = f"lat-{uuid.uuid4().hex[:10]}"
    transport, listener = await asyncio.wait_for(picows.ws_connect(
        DoneListener, f"ws://127.0.0.1:{ws_port}/ws?uid={uid}", enable_auto_ping=False,
        websocket_handshake_timeout=10), 15)
    http = HttpConnection(rest_port)
    latencies = []
    try:
        await asyncio.wait_for(listener.hello, RECV_TIMEOUT)
        await http.open()
        for i in range(samples):
            listener.waiting = asyncio.get_running_loop().create_future()
            begun = time.perf_counter()
            http.send_post("/api/v1/tasks", {"cmd": "echo", "id": f"{uid}-{i}", "uid": uid, "args": {"i": i}})
            status, body = await http.read_response()
            if status != 202:
                raise RuntimeError(f"POST /api/v1/tasks: {status} {body[:200]!r}")
            done_at = await asyncio.wait_for(asyncio.shield(listener.waiting), SAMPLE_TIMEOUT)
            latencies.append(done_at - begun)
    finally:
        await http.close()
        transport.disconnect()
    return latencies


# --------------------------------------------------------------------------- one configuration


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.loads(r.read())


def run(binary: str, pg: PostgresServer, nodes: int, connections: int, seconds: float, workers: int,
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
            pg_root = postmaster_pid(pg)
            readings = {}

            def on_window(edge: str):
                readings[edge] = (sum(cpu_seconds(s.pid) for s, _ in servers), process_tree_cpu(pg_root))

            # Every connection runs a short warm-up (1 s, not counted), then the measured window.
            uid_prefix = f"bench{nodes}"
            figures = drive(ports, uid_prefix, connections, seconds, 1.0, on_window)
            completed = figures["completed"]
            elapsed = figures["seconds"]
            if "end" not in readings:  # no connection opened: nothing was measured
                sys.exit(f"{nodes} node(s): no WebSocket connection could be opened")
            node_cpu = readings["end"][0] - readings["start"][0]
            pg_cpu = sum(v - readings["start"][1].get(pid, 0.0) for pid, v in readings["end"][1].items())
            database = PostgresServer.database_of(database_url)
            checked = database_check(pg, database, uid_prefix)
            exactly_once = (figures["connected"] == connections and figures["errors"] == 0 and figures["lost"] == 0
                            and figures["unexpected_finals"] == 0 and figures["finals"] == figures["submitted"])
            if "db_error" not in checked:
                exactly_once = exactly_once and (
                    checked["db_tasks"] == checked["db_succeeded"] == checked["db_done_events"] == figures["submitted"]
                    and checked["db_not_one_attempt"] == 0)
            rest_port = ports[1 % len(ports)]
            delivery = asyncio.run(asyncio.wait_for(delivery_latency(ports[0], rest_port, samples),
                                                    samples * SAMPLE_TIMEOUT + 30))
            return {
                "nodes": nodes,
                "connections": connections,
                "window": 1,
                "workers_per_node": workers,
                "tasks": completed,
                "seconds": round(elapsed, 2),
                "tasks_per_second": round(completed / elapsed) if elapsed else 0,
                "p50_ms": round(figures["p50_ms"], 2) if figures["p50_ms"] is not None else None,
                "p99_ms": round(figures["p99_ms"], 2) if figures["p99_ms"] is not None else None,
                "errors": figures["errors"],
                "submitted": figures["submitted"],
                "finals": figures["finals"],
                "lost": figures["lost"],
                "duplicate_finals": figures["unexpected_finals"],
                **checked,
                "exactly_once": exactly_once,
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
    parser.add_argument("--connections", type=int, default=100,
                        help="WebSocket clients, spread over the nodes, one task in flight each")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4, help="--task-workers of each node")
    parser.add_argument("--samples", type=int, default=200, help="cross-node delivery latency samples")
    parser.add_argument("--json-out", type=Path, help="also write the JSON results here")
    options = parser.parse_args()
    node_counts = [int(n) for n in options.nodes.split(",")]
    if not (1 <= options.connections <= 2000 and 0 < options.seconds <= 300
            and 1 <= options.samples <= 10000 and all(1 <= n <= len(NODE_NAMES) for n in node_counts)):
        sys.exit(f"bounded runs only: 1-2000 connections, up to 300 s, 1-10000 samples, "
                 f"1-{len(NODE_NAMES)} nodes")
    if not Path(options.bin).exists():
        sys.exit(f"{options.bin} not found (swift build -c release, or --bin)")
    usage = subprocess.run([options.bin, "serve", "--help"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    if "--database-url" not in usage.stdout + usage.stderr:
        sys.exit(f"{options.bin} has no `serve --database-url` (no PostgreSQL cluster mode)")
    with PostgresServer() as pg:
        results = [run(options.bin, pg, n, options.connections, options.seconds, options.workers,
                       options.samples) for n in node_counts]
    print(json.dumps(results))
    if options.json_out:
        options.json_out.write_text(json.dumps(results) + "\n")
    print()
    print(f"{'nodes':>5} {'tasks/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'deliv p50':>10} {'deliv p99':>10} "
          f"{'node µs/task':>13} {'db µs/task':>11} {'exactly once':>13}")
    for r in results:
        print(f"{r['nodes']:>5} {r['tasks_per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['delivery_p50_ms']:>10} {r['delivery_p99_ms']:>10} {r['node_cpu_us_per_task']:>13} "
              f"{r['db_cpu_us_per_task']:>11} {'yes' if r['exactly_once'] else 'NO':>13}")
    if len(results) == 2 and results[0]["tasks_per_second"]:
        ratio = results[1]["tasks_per_second"] / results[0]["tasks_per_second"]
        print(f"\n{results[1]['nodes']} nodes / {results[0]['nodes']} node tasks/s: {ratio:.2f}")
    failed = [r for r in results if not r["exactly_once"]]
    for r in failed:
        print(f"cluster_bench: {r['nodes']} node(s): NOT every task done exactly once: {r['submitted']} submitted, "
              f"{r['finals']} final replies, {r['lost']} lost, {r['duplicate_finals']} answered twice, {r['errors']} "
              f"errors; database: {r.get('db_tasks', '?')} tasks, {r.get('db_succeeded', '?')} succeeded, "
              f"{r.get('db_not_one_attempt', '?')} not in one attempt, {r.get('db_done_events', '?')} done events",
              file=sys.stderr)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
