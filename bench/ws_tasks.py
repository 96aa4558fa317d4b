#!/usr/bin/env python3
"""Echo tasks over WebSocket with one client for every server: TaskGate and the Swoole seed server alike.

Each connection keeps one task in flight: it sends `--message` with `{id}` replaced by an id of its own (unique per
run, connection and task: Swoole's seed server needs `args.id`, and TaskGate treats the same id as the same task),
reads replies until the final one, then sends the next. The final reply is the first with `"code":200` (TaskGate's
`done`, after `submitted` 202 and `progress`; Swoole's onFinish push, after its 202); a reply with a code of 400 or
more ends the task as an error. Nothing else of a reply is read, so the payloads may change. `--skip-first N` reads N
messages after connecting before the first send (TaskGate's `hello`).

    closed loop (default)  as fast as the server answers, for --duration after --warmup
    --rate R               steady: the connections together start R tasks/s (each on its own schedule, never more
                           than one in flight), for --duration; with --sample-interval, RSS and the size of the SQLite
                           files in --db-dir are sampled over the run

The server's CPU time is read from /proc over the measurement window and summed over the process tree of
--server-pid (every process of a Swoole server: master, manager, workers, task workers; bench/proc.py). Writes a
JSON summary (--json-out) in the shape of taskgate-load's, plus a few figures of its own. Loopback only; bounded in
connections, time and every wait.

Needs picows (bench/requirements.txt)."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import resource
import sqlite3
import sys
import time
import urllib.parse
from pathlib import Path

import picows

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proc  # noqa: E402  (bench/proc.py)

DRAIN_TIMEOUT = 10.0      # after the window: seconds the tasks in flight get to finish
CONNECT_TIMEOUT = 10.0
DEFAULT_MESSAGE = '{"cmd":"echo","args":{"id":"{id}","n":1}}'


def percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(-(-len(ordered) * q // 1)) - 1))
    return ordered[index] / 1e6


def reply_code(payload: bytes) -> int | None:
    """The reply's `code`: its first `"code":` member, read without parsing the whole reply (both servers write
    compact JSON with `code` at the top level, before any task data). None when there is none."""
    at = payload.find(b'"code":')
    if at < 0:
        return None
    at += 7
    while at < len(payload) and payload[at] in b" \t":
        at += 1
    end = at
    while end < len(payload) and 48 <= payload[end] <= 57:
        end += 1
    if end == at:
        try:
            code = json.loads(payload).get("code")
        except (ValueError, AttributeError):
            return None
        return code if isinstance(code, int) else None
    return int(payload[at:end])


class Run:
    def __init__(self, options):
        self.options = options
        self.phase = "warmup"             # warmup, measuring, stopping
        self.completed = 0                # finals during the window
        self.completed_all = 0            # finals over the whole run
        self.errors = 0
        self.unexpected = 0               # finals with no task in flight: a duplicate answer
        self.wrong_replies = 0            # tasks whose reply count was not --replies
        self.replies = 0                  # replies of the tasks completed in the window
        self.latencies: list[int] = []
        self.behind = 0                   # steady: sends that came after their scheduled time
        self.run_id = f"{os.getpid():x}{time.time_ns() % 10**9:x}"
        before, _, after = options.message.partition("{id}")
        self.template = (before.encode(), after.encode()) if _ else None
        self.fixed = options.message.encode()
        self.idle = asyncio.Event()
        self.in_flight = 0


class Connection(picows.WSListener):
    def __init__(self, run: Run, index: int, interval: float | None, first_at: float):
        self.run = run
        self.index = index
        self.interval = interval
        self.next_at = first_at
        self.to_skip = run.options.skip_first
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: picows.WSTransport | None = None
        self.sent_at = 0
        self.count = 0
        self.replies = 0
        self.waiting = False
        self.loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: picows.WSTransport):
        self.transport = transport
        if self.to_skip == 0 and not self.ready.done():
            self.ready.set_result(True)

    def on_ws_disconnected(self, transport: picows.WSTransport):
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before it was ready"))
        if self.waiting:
            self.waiting = False
            self.run.errors += 1
            self._settle()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame):
        kind = frame.msg_type
        if kind == picows.WSMsgType.CLOSE:
            transport.disconnect()
            return
        if kind != picows.WSMsgType.TEXT or not frame.fin:
            return  # pings are answered by picows; nothing here is fragmented
        if self.to_skip > 0:
            self.to_skip -= 1
            if self.to_skip == 0 and not self.ready.done():
                self.ready.set_result(True)
            return
        code = reply_code(frame.get_payload_as_bytes())
        if not isinstance(code, int) or (code != 200 and code < 400):
            if self.waiting:
                self.replies += 1
            return
        if not self.waiting:
            self.run.unexpected += 1
            return
        self.replies += 1
        self.waiting = False
        run = self.run
        measuring = run.phase == "measuring"
        run.completed_all += 1
        if code >= 400:
            run.errors += 1
        elif measuring:
            run.completed += 1
            run.replies += self.replies
            run.latencies.append(time.perf_counter_ns() - self.sent_at)
        if run.options.replies and self.replies != run.options.replies and code == 200:
            run.wrong_replies += 1
        self._settle()
        if run.phase != "stopping":
            self.schedule()

    # ------------------------------------------------------------------ sending

    def schedule(self):
        if self.interval is None:
            self.send()
            return
        now = self.loop.time()
        at = self.next_at
        self.next_at = max(at, now - self.interval) + self.interval  # one missed slot is not made up twice
        if at > now:
            self.loop.call_at(at, self.send)
        else:
            if now - at > 0.005:
                self.run.behind += 1
            self.send()

    def send(self):
        run = self.run
        if run.phase == "stopping" or self.waiting or self.transport is None or self.transport.is_disconnected:
            return
        self.count += 1
        if run.template:
            task_id = f"{run.run_id}-{self.index}-{self.count}".encode()
            message = run.template[0] + task_id + run.template[1]
        else:
            message = run.fixed
        self.waiting = True
        self.replies = 0
        run.in_flight += 1
        self.sent_at = time.perf_counter_ns()
        self.transport.send(picows.WSMsgType.TEXT, message)

    def _settle(self):
        self.run.in_flight -= 1
        if self.run.in_flight == 0:
            self.run.idle.set()


def db_figures(directory: str | None) -> dict:
    """Bytes of the SQLite files (taskgate.sqlite, -wal, -shm) and, read-only, the rows of tasks and events."""
    if not directory:
        return {}
    files = {Path(p).name: os.path.getsize(p) for p in glob.glob(os.path.join(directory, "taskgate.sqlite*"))
             if os.path.isfile(p)}
    figures = {"db_bytes": sum(files.values()), "db_files": files}
    database = os.path.join(directory, "taskgate.sqlite")
    if os.path.exists(database):
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2) as db:
                for table in ("tasks", "events"):
                    figures[f"{table}_rows"] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        except sqlite3.Error as e:  # the schema is the server's business: a figure missing is not a failure
            figures["rows_error"] = str(e)
    return figures


def sample(run: Run, options, started: float) -> dict:
    pid = options.server_pid
    figures = {"t": round(time.perf_counter() - started, 1), "done": run.completed, "errors": run.errors}
    if pid:
        figures["rss_kb"] = proc.tree_rss_kb(pid)
        figures["processes"] = len(proc.tree(pid))
    figures.update(db_figures(options.db_dir))
    return figures


async def open_connections(run: Run, options) -> list[Connection]:
    loop = asyncio.get_running_loop()
    interval = options.connections / options.rate if options.rate else None
    start = loop.time() + 0.05
    connections: list[Connection] = []
    failures: list[str] = []

    urls = options.url.split(",")

    async def one(index: int):
        url = urls[index % len(urls)].replace("{i}", str(index + 1))
        first_at = start + (interval * index / options.connections if interval else 0)
        try:
            _, listener = await asyncio.wait_for(picows.ws_connect(
                lambda: Connection(run, index, interval, first_at), url, enable_auto_ping=False,
                websocket_handshake_timeout=CONNECT_TIMEOUT, max_frame_size=16 << 20), CONNECT_TIMEOUT)
            await asyncio.wait_for(listener.ready, CONNECT_TIMEOUT)
            connections.append(listener)
        except Exception as e:  # noqa: BLE001 - counted and shown, the run goes on with the others
            failures.append(f"{type(e).__name__}: {e}")

    for first in range(0, options.connections, 200):
        await asyncio.gather(*(one(i) for i in range(first, min(options.connections, first + 200))))
    for failure in sorted(set(failures))[:5]:
        print(f"ws_tasks: {failures.count(failure)} connection(s) failed: {failure}", file=sys.stderr)
    run.errors += len(failures)
    return connections


async def main_async(options, on_window=None) -> dict:
    """One run. `on_window(phase)`, if given, is called with "start" and "end" at the edges of the measurement window
    (bench/cluster_bench.py reads the nodes' and PostgreSQL's CPU time there)."""
    run = Run(options)
    connections = await open_connections(run, options)
    samples: list[dict] = []
    if not connections:
        return summary(run, options, connections, 0.0, None, 0.0, samples)
    started = time.perf_counter()
    if options.sample_interval:
        samples.append(sample(run, options, started))
    for connection in connections:
        connection.schedule()
    await asyncio.sleep(options.warmup)
    pid = options.server_pid
    cpu_start = proc.tree_cpu_seconds(pid) if pid else None
    client_start = resource.getrusage(resource.RUSAGE_SELF)
    if on_window:
        on_window("start")
    window_start = time.perf_counter()
    run.phase = "measuring"
    if options.sample_interval:
        started = window_start
        deadline = window_start + options.duration
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            await asyncio.sleep(min(options.sample_interval, remaining))
            if deadline - time.perf_counter() > options.sample_interval / 2:
                samples.append(sample(run, options, started))
    else:
        await asyncio.sleep(options.duration)
    run.phase = "stopping"
    seconds = time.perf_counter() - window_start
    cpu_end = proc.tree_cpu_seconds(pid) if pid else None
    if on_window:
        on_window("end")
    client_end = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (client_end.ru_utime + client_end.ru_stime) - (client_start.ru_utime + client_start.ru_stime)
    if options.sample_interval:
        samples.append(sample(run, options, started))
    server_cpu = cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None
    if run.in_flight > 0:
        run.idle.clear()
        try:
            await asyncio.wait_for(run.idle.wait(), DRAIN_TIMEOUT)
        except asyncio.TimeoutError:
            pass
    # A duplicate answer would come shortly after the first one.
    await asyncio.sleep(0.2)
    result = summary(run, options, connections, seconds, server_cpu, client_cpu, samples)
    for connection in connections:
        if connection.transport and not connection.transport.is_disconnected:
            connection.transport.send_close(picows.WSCloseCode.OK)
    await asyncio.sleep(0.1)
    for connection in connections:
        if connection.transport:
            connection.transport.disconnect()
    return result


def summary(run: Run, options, connections, seconds, server_cpu, client_cpu, samples) -> dict:
    lost = sum(1 for c in connections if c.waiting)
    figures = {
        "mode": "steady" if options.rate else "rtt",
        "label": options.label,
        "client": f"ws_tasks.py (picows {picows.__version__})",
        "connections": options.connections,
        "connected": len(connections),
        "seconds": round(seconds, 3),
        "completed": run.completed,
        "errors": run.errors + lost,
        "lost": lost,
        "unexpected_finals": run.unexpected,
        "wrong_reply_counts": run.wrong_replies,
        "per_second": run.completed / seconds if seconds else 0,
        "p50_ms": percentile(run.latencies, 0.50),
        "p99_ms": percentile(run.latencies, 0.99),
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_op": server_cpu * 1e6 / run.completed if server_cpu is not None and run.completed else None,
        "client_cpu_s": client_cpu,
        "replies_per_task": run.replies / run.completed if run.completed else None,
        "submitted": sum(c.count for c in connections),
        "finals": run.completed_all,
    }
    if options.server_pid:
        figures["rss_after_kb"] = proc.tree_rss_kb(options.server_pid)
        figures["server_processes"] = len(proc.tree(options.server_pid))
    if options.rate:
        figures["target_rate"] = options.rate
        figures["behind_schedule"] = run.behind
        figures["samples"] = samples
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/PATH; {i} is the connection's number from "
                        "1; several URLs, comma-separated, are taken in turn")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--message", default=DEFAULT_MESSAGE, help="{id} is replaced by the task's unique id")
    parser.add_argument("--skip-first", type=int, default=0, help="messages to read after connecting (hello: 1)")
    parser.add_argument("--replies", type=int, default=0, help="replies a task should get (counted when not)")
    parser.add_argument("--rate", type=float, default=0, help="steady: tasks/s started by all connections together")
    parser.add_argument("--sample-interval", type=float, default=0, help="steady: seconds between two samples")
    parser.add_argument("--db-dir", help="the server's --data-dir, for the size of its SQLite files")
    parser.add_argument("--server-pid", type=int, help="the server process; CPU and RSS are summed over its tree")
    parser.add_argument("--label", default="")
    parser.add_argument("--json-out")
    options = parser.parse_args()
    for url in options.url.split(","):
        host = urllib.parse.urlsplit(url.replace("{i}", "1")).hostname or ""
        if not (host == "localhost" or host.startswith("127.") or host == "::1"):
            parser.error(f"{url}: {host or 'no host'} is not a loopback address")
    if not (1 <= options.connections <= 5000 and 0 < options.duration <= 900 and 0 <= options.warmup <= 60
            and 0 <= options.rate <= 100_000 and 0 <= options.sample_interval <= 300 and 0 <= options.skip_first <= 10):
        parser.error("bounded runs only: 1-5000 connections, up to 900 s, warm-up up to 60 s, rate up to 100,000/s")
    figures = asyncio.run(asyncio.wait_for(main_async(options), options.warmup + options.duration + 120))
    text = json.dumps(figures)
    if options.json_out:
        Path(options.json_out).write_text(text + "\n")
    print(text)
    show = lambda v, f="{:.3f}": "-" if v is None else f.format(v)  # noqa: E731
    print(f"{figures['label'] or figures['mode']}: {figures['connected']}/{figures['connections']} connections, "
          f"{figures['completed']} tasks in {figures['seconds']:.2f} s ({figures['per_second']:.0f}/s), "
          f"p50/p99 {show(figures['p50_ms'])}/{show(figures['p99_ms'])} ms, "
          f"server CPU {show(figures['server_cpu_us_per_op'], '{:.1f}')} µs/task "
          f"over {figures.get('server_processes', '?')} processes, replies/task "
          f"{show(figures['replies_per_task'], '{:.2f}')}, {figures['errors']} errors "
          f"({figures['lost']} lost, {figures['unexpected_finals']} unexpected finals), "
          f"client CPU {figures['client_cpu_s']:.2f} s")
    return 0 if figures["completed"] > 0 and figures["connected"] == options.connections else 2


if __name__ == "__main__":
    sys.exit(main())
