#!/usr/bin/env python3
"""Tasks through the pool: `echo` tasks submitted over WebSocket, measured end to end.

Starts `taskgate serve` on a free loopback port with the given store, keeps `--connections` WebSocket clients
each with `--window` tasks in flight (submit -> submitted -> running -> done), for `--seconds`, then prints
tasks/s, submit->done latency percentiles and the server's CPU time per task (from /proc/PID/stat).
Loopback only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import websockets

from benchserver import cpu_seconds, rss_kb, taskgate

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


RECV_TIMEOUT = 30.0  # no single WebSocket read waits longer


async def client(url: str, window: int, deadline: float, latencies: list[float], counts: list[int]):
    """One WebSocket keeping `window` echo tasks in flight until `deadline`; submit->done times into `latencies`."""
    async with websockets.connect(url, compression=None, max_queue=None, open_timeout=10, proxy=None,
                                  ping_interval=None) as ws:
        await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)  # hello
        sent: dict[str, float] = {}
        next_ref = 0

        async def submit():
            nonlocal next_ref
            next_ref += 1
            ref = str(next_ref)
            sent[ref] = time.perf_counter()
            await ws.send(json.dumps({"cmd": "echo", "args": {"n": next_ref}, "ref": ref}))

        for _ in range(window):
            await submit()
        started_by_task: dict[str, float] = {}
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
            kind = message["type"]
            if kind == "submitted":
                started_by_task[message["task"]["id"]] = sent.pop(message["ref"])
            elif kind == "done":
                begun = started_by_task.pop(message["task"]["id"])
                latencies.append(time.perf_counter() - begun)
                counts[0] += 1
                if time.perf_counter() < deadline:
                    await submit()
                elif not started_by_task and not sent:
                    return
            elif kind == "error":
                raise RuntimeError(message)


async def drive(port: int, uid_prefix: str, connections: int, window: int, seconds: float):
    latencies: list[float] = []
    counts = [0]
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*[
        client(f"ws://127.0.0.1:{port}/ws?uid={uid_prefix}-{i}", window, deadline, latencies, counts)
        for i in range(connections)
    ])
    return counts[0], latencies


def run(binary: str, store: str, connections: int, window: int, seconds: float, workers: int) -> dict:
    with taskgate(binary, "--store", store, workers=workers) as (server, port, _):
        # A short warm-up, not measured.
        asyncio.run(drive(port, "warm", min(connections, 10), window, 1.0))
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        completed, latencies = asyncio.run(drive(port, "bench", connections, window, seconds))
        elapsed = time.perf_counter() - started
        cpu_used = cpu_seconds(server.pid) - cpu_before
        return {
            "store": store,
            "connections": connections,
            "window": window,
            "tasks": completed,
            "seconds": round(elapsed, 2),
            "tasks_per_second": round(completed / elapsed),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "server_cpu_us_per_task": round(cpu_used / completed * 1e6, 1) if completed else None,
            "server_rss_kb": rss_kb(server.pid),
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build/release/taskgate")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--window", type=int, default=4, help="tasks in flight per connection")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4)
    options = parser.parse_args()
    if not (1 <= options.connections <= 2000 and 0 < options.seconds <= 300):
        sys.exit("bounded runs only: 1-2000 connections, up to 300 s")
    results = [run(options.bin, store, options.connections, options.window, options.seconds, options.workers)
               for store in options.stores.split(",")]
    print(json.dumps(results, indent=2))
    print()
    print(f"{'store':<8} {'tasks/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/task':>12} {'RSS KB':>8}")
    for r in results:
        print(f"{r['store']:<8} {r['tasks_per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['server_cpu_us_per_task']:>12} {r['server_rss_kb']:>8}")
    if len(results) == 2 and results[0]["tasks_per_second"]:
        ratio = results[1]["tasks_per_second"] / results[0]["tasks_per_second"]
        print(f"\n{results[1]['store']} / {results[0]['store']} tasks/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
