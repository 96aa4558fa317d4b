#!/usr/bin/env python3
"""Per-task overhead of external handlers: tasks/s of a no-op command handler (a process per task) against a
no-op worker-process handler (long-lived processes), and the built-in Swift `echo` as the floor.

Starts `taskgate serve` on a free loopback port with a generated config, submits `--tasks` tasks of each kind over
REST from a few threads, waits until all are final (via /api/v1/stats), and prints tasks/s. Bounded in count and
time; loopback only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchserver import taskgate

HERE = Path(__file__).resolve().parent
NO_PROXY = {"http": None, "https": None}


def finished(base: str) -> int:
    stats = requests.get(f"{base}/api/v1/stats", timeout=5, proxies=NO_PROXY).json()
    return sum(stats["pool"]["finished"].values())


def measure(base: str, cmd: str, tasks: int, threads: int, timeout: float) -> float:
    before = finished(base)
    started = time.perf_counter()
    session = requests.Session()

    def submit(_):
        r = session.post(f"{base}/api/v1/tasks", json={"cmd": cmd, "args": {}}, timeout=30, proxies=NO_PROXY)
        r.raise_for_status()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, range(tasks)))
    deadline = started + timeout
    while finished(base) - before < tasks:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{cmd}: not done within {timeout}s")
        time.sleep(0.02)
    return tasks / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build/release/taskgate")
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--processes", type=int, default=4, help="worker processes, and command concurrency")
    options = parser.parse_args()
    if not 1 <= options.tasks <= 20_000:
        sys.exit("bounded runs only: 1-20000 tasks")
    workdir = Path(tempfile.mkdtemp(prefix="taskgate-handlers-bench-"))
    config = {"handlers": {
        "noop_command": {"type": "command", "command": [sys.executable, str(HERE / "handlers/noop_command.py")],
                         "concurrency": options.processes},
        "noop_worker": {"type": "worker", "command": [sys.executable, str(HERE / "handlers/noop_worker.py")],
                        "processes": options.processes},
    }}
    (workdir / "taskgate.json").write_text(json.dumps(config))
    with taskgate(options.bin, "--config", str(workdir / "taskgate.json"), "--store", "memory",
                  workers=options.processes) as (_, port, _):
        base = f"http://127.0.0.1:{port}"
        measure(base, "noop_worker", 20, options.threads, 60)  # warm-up: starts the worker processes
        results = {}
        for cmd in ("echo", "noop_worker", "noop_command"):
            count = options.tasks if cmd != "noop_command" else min(options.tasks, 200)
            results[cmd] = measure(base, cmd, count, options.threads, 300)
        print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=2))
        print()
        print(f"{'handler':<14} {'tasks/s':>9} {'ms/task (per slot)':>20}")
        for cmd, rate in results.items():
            print(f"{cmd:<14} {rate:>9.1f} {options.processes * 1000 / rate:>20.2f}")
        print(f"\nworker / command tasks/s: {results['noop_worker'] / results['noop_command']:.1f}x")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
