"""Turns one run of bench/run.sh (taskgate-load JSON summaries and wrk outputs) into bench/results.md.

Usage: python3 bench/report.py RESULTS_DIR [--smoke 0|1] [--out FILE]"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path


def load(results: Path) -> dict[tuple[str, str], dict]:
    runs = {}
    for path in sorted(results.glob("*.json")):
        scenario, name = path.stem.split("--", 1)
        runs[(scenario, name)] = json.loads(path.read_text())
    return runs


def skipped(results: Path, scenario: str, smoke: bool) -> str | None:
    """The line that stands for a scenario bench/run.sh could not run here, or None."""
    path = results / f"{scenario}.skipped"
    if not path.exists():
        return None
    reason = path.read_text().strip()
    return f"*Skipped (smoke run): {reason}.*" if smoke else f"**NOT RUN: {reason}.**"


def kb_or_mb(kb) -> str:
    if kb is None:
        return "–"
    return f"{kb / 1024:,.1f} MB" if kb >= 10 * 1024 else f"{kb:,} KB"


def fmt(value, digits=1, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def wrk_figures(results: Path, what: str) -> dict | None:
    path = results / f"rest--{what}.wrk"
    proc = results / f"rest--{what}.proc"
    if not path.exists():
        return None
    text = path.read_text()

    def latency(percent: str):
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return None
        scale = {"us": 0.001, "ms": 1, "s": 1000}[match.group(2)]
        return float(match.group(1)) * scale

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    figures = {
        "per_second": float(rps.group(1)) if rps else None,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "requests": int(total.group(1)) if total else None,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "cpu_us": None,
    }
    if proc.exists() and figures["requests"]:
        before_cpu, _, after_cpu, _ = proc.read_text().split()
        figures["cpu_us"] = (float(after_cpu) - float(before_cpu)) * 1e6 / figures["requests"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--smoke", default="0")
    parser.add_argument("--out")
    options = parser.parse_args()
    runs = load(options.results)

    def get(scenario, name, key):
        return runs.get((scenario, name), {}).get(key)

    lines: list[str] = []
    add = lines.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    add("# Benchmark results" + (" (smoke run: tiny counts, figures not meaningful)" if options.smoke == "1" else ""))
    add("")
    add(f"Measured {now} by `bench/run.sh` on {os.cpu_count()} cores ({cpu_model()}), {platform.system()}; "
        "client (`taskgate-load`, one SwiftNIO event-loop thread unless noted) and server share the cores, so server "
        "CPU time per message (from `/proc/PID/stat` over the measurement window) is the fair measure. "
        f"{version(['swift', '--version'])}; node {version(['node', '--version'])} with Debian's `ws`; "
        f"Python {platform.python_version()} `websockets` "
        f"{version(['python3', '-c', 'import websockets; print(websockets.__version__)'])}. "
        "Sections 7–9 (the Swoole seed server, the steady run, the cluster) drive TaskGate and Swoole alike with "
        "`bench/ws_tasks.py`, one Python process on picows "
        f"{version(['python3', '-c', 'import picows; print(picows.__version__)'])}. "
        "TaskGate runs on its own WebSocket engine (channel handlers on swift-nio's frame codec). The bare "
        "Hummingbird echo is the separate program under `bench/peers/hummingbird-echo` (Hummingbird and "
        "hummingbird-websocket with the settings TaskGate's `/ws` had on that engine, since removed from TaskGate: "
        "permessage-deflate offered, 1 MiB frames, UTF-8 validated), echoing on `/`, without the protocol.")
    add("")

    # 1. ping
    add("## 1. Round trip: `{\"cmd\":\"ping\"}` → `pong` vs the peers' echo of the same 14 bytes")
    add("")
    add("Closed loop, one message in flight per connection.")
    add("")
    add("| server | connections | msgs/s | p50 ms | p99 ms | server CPU µs/msg | client CPU s |")
    add("|---|---|---|---|---|---|---|")
    for name in ["taskgate", "node-echo", "node-echo-deflate", "python-echo", "python-echo-deflate",
                 "hummingbird-echo", "hummingbird-echo-deflate"]:
        run = runs.get(("ping", name))
        if run:
            add(f"| {name} | {run['connected']} | {fmt(run['per_second'], 0)} | {fmt(run['p50_ms'], 3)} | "
                f"{fmt(run['p99_ms'], 3)} | {fmt(run['server_cpu_us_per_op'], 2)} | {fmt(run['client_cpu_s'], 2)} |")
    add("")

    # 2. tasks
    add("## 2. Echo tasks through the pool, over WebSocket")
    add("")
    add("Each task: the client's message, then `submitted`, `progress` (running) and `done`; one task in flight per "
        "connection. Latency is submit → `done`.")
    add("")
    add("| store | connections | tasks/s | p50 ms | p99 ms | server CPU µs/task | errors |")
    add("|---|---|---|---|---|---|---|")
    for store in ["memory", "sqlite", "memory-otel"]:
        run = runs.get(("tasks", f"taskgate-{store}"))
        if run:
            label = "memory, tracing on (`--otel`)" if store == "memory-otel" else store
            add(f"| {label} | {run['connected']} | {fmt(run['per_second'], 0)} | {fmt(run['p50_ms'], 3)} | "
                f"{fmt(run['p99_ms'], 3)} | {fmt(run['server_cpu_us_per_op'], 2)} | {run['errors']} |")
    off = get("tasks", "taskgate-memory", "server_cpu_us_per_op")
    on = get("tasks", "taskgate-memory-otel", "server_cpu_us_per_op")
    if off and on:
        add("")
        add(f"Tracing on (four spans per task exported over OTLP/HTTP to a loopback sink) costs "
            f"{fmt(on / off, 2, '×')} the server CPU per task of tracing off, in the same run.")
    add("")

    # 3. idle
    add("## 3. Idle connections")
    add("")
    add("Server RSS before and after opening the connections (held ≈ 1 s after settling). With deflate, each connection "
        "first exchanges one ≈ 1 KB JSON message (peers: an echo). TaskGate, two ways: `-deflate-ping` sends a ping "
        "with a 256-byte `ref` that comes back in the pong, compressed both ways and nothing stored (the cost of the "
        "connection itself); `-deflate` runs an echo task of ≈ 1 KB (three replies), which also leaves the task "
        "record and its two logged events in the in-memory store.")
    add("")
    add("| server | deflate negotiated | connections | RSS before → after KB | KB per connection |")
    add("|---|---|---|---|---|")
    for name in ["taskgate", "node-echo", "python-echo", "hummingbird-echo"]:
        for suffix in ["", "-deflate-ping", "-deflate"]:
            run = runs.get(("idle", name + suffix))
            if run:
                add(f"| {name}{suffix} | {run['deflate_negotiated']} | {run['connected']} | "
                    f"{fmt(run['rss_before_kb'])} → {fmt(run['rss_after_kb'])} | {fmt(run['rss_per_connection_kb'], 2)} |")
    add("")

    # 4. long-poll
    add("## 4. Long-poll")
    add("")
    add("`GET /poll?uid=U&cursor=0&timeout=60` parked for every uid at once, then one echo task per uid submitted over "
        "REST (8 keep-alive connections, as fast as they are answered; `taskgate-load` on 2 threads here). Each poll opens its own connection, so "
        "it waits on the server's event loop with no task. Delivery: the submit's 202 arriving → the poll's answer "
        "arriving (0 when the answer came first: the task may run before its 202 is read; events carry no "
        "timestamps to time from). Submit → answer adds the REST submit and the wait for one of the 4 task workers "
        "(the submits outrun the pool, so this is mostly queueing). RSS per poll: RSS with every poll parked minus "
        "RSS before, per poll.")
    add("")
    add("| polls | delivered | delivery p50 ms | delivery p99 ms | submit → answer p50 / p99 ms | KB per waiting poll | "
        "errors |")
    add("|---|---|---|---|---|---|---|")
    run = runs.get(("poll", "taskgate"))
    if run:
        add(f"| {run['connections']} | {run['completed']} | {fmt(run['p50_ms'], 2)} | {fmt(run['p99_ms'], 2)} | "
            f"{fmt(run.get('submit_to_answer_p50_ms'), 0)} / {fmt(run.get('submit_to_answer_p99_ms'), 0)} | "
            f"{fmt(run['rss_per_connection_kb'], 2)} | {run['errors']} |")
    add("")
    add("Event streams (`bench/sse_streams.py`): `GET /sse?uid=U` open for every uid at once, each on its own connection "
        "(as a browser's EventSource opens one), so it is served on the event loop with no task; then one echo task per "
        "uid over REST, and every stream must get its `done`. RSS per stream: RSS with every stream open (greeted) "
        "minus RSS before, per stream.")
    add("")
    add("| streams | delivered | delivery p50 ms | delivery p99 ms | KB per open stream | errors |")
    add("|---|---|---|---|---|---|")
    run = runs.get(("sse", "taskgate"))
    if run:
        add(f"| {run['connections']} | {run['completed']} | {fmt(run['p50_ms'], 2)} | {fmt(run['p99_ms'], 2)} | "
            f"{fmt(run['rss_per_connection_kb'], 2)} | {run['errors']} |")
    add("")

    # 5. compression
    add("## 5. Compression: ≈ 16 KB of JSON rows")
    add("")
    add("TaskGate: echo tasks whose args are ≈ 16 KB of JSON rows; `submitted` carries the task with its "
        "args and `done` its result, `progress` neither, so a task sends ≈ 2 × 16 KB of JSON back (three replies). Peers: echo of the same ≈ 16 KB message. Bytes of "
        "JSON per message come from the run without deflate (frame payloads); bytes on the wire with deflate are "
        "the TCP bytes received (frame headers included).")
    add("")
    add("| server | connections | ops/s | wire bytes per reply | ratio (JSON / wire) | server CPU µs per op | "
        "µs per 16 KB of JSON |")
    add("|---|---|---|---|---|---|---|")
    compression = {}
    for name in ["taskgate", "node-echo", "python-echo", "hummingbird-echo"]:
        plain = runs.get(("compression", name))
        deflated = runs.get(("compression", name + "-deflate"))
        for suffix, run in [("", plain), ("-deflate", deflated)]:
            if not run or not run["messages_in"]:
                continue
            json_per_reply = plain["payload_bytes_in"] / plain["messages_in"] if plain and plain["messages_in"] else None
            wire_per_reply = run["wire_bytes_in"] / run["messages_in"]
            ratio = json_per_reply / wire_per_reply if json_per_reply else None
            replies_per_op = run["messages_in"] / max(1, run["completed"])
            json_per_op = json_per_reply * replies_per_op if json_per_reply else None
            per16 = (run["server_cpu_us_per_op"] / (json_per_op / 16384)
                     if json_per_op and run["server_cpu_us_per_op"] else None)
            compression[name + suffix] = {"ratio": ratio, "per16": per16}
            add(f"| {name}{suffix} | {run['connected']} | {fmt(run['per_second'], 0)} | {fmt(wire_per_reply, 0)} | "
                f"{fmt(ratio, 2, '×')} | {fmt(run['server_cpu_us_per_op'], 1)} | {fmt(per16, 1)} |")
    add("")
    sixteen = {}
    for suffix in ["", "-deflate"]:
        task_cpu = get("compression", "taskgate" + suffix, "server_cpu_us_per_op")
        node_echo = get("compression", "node-echo" + suffix, "server_cpu_us_per_op")
        sixteen[suffix] = (task_cpu, node_echo, task_cpu / node_echo if task_cpu and node_echo else None)
    if any(r for _, _, r in sixteen.values()):
        add("A 16 KB echo task against node `ws` echoing the same 16 KB, server CPU per operation: "
            f"{fmt(sixteen[''][0], 1)} vs {fmt(sixteen[''][1], 1)} µs = **{fmt(sixteen[''][2], 2, '×')}** without "
            f"deflate, {fmt(sixteen['-deflate'][0], 1)} vs {fmt(sixteen['-deflate'][1], 1)} µs = "
            f"{fmt(sixteen['-deflate'][2], 2, '×')} with (target ≤ 4×). The task is the whole path: the 16 KB "
            "message parsed, stored, run and sent back in three replies; node's is one message echoed.")
        add("")

    # 6. REST
    add("## 6. REST with `wrk` (1 thread, 50 connections)")
    add("")
    add("| request | req/s | p50 ms | p99 ms | server CPU µs/req | non-2xx |")
    add("|---|---|---|---|---|---|")
    for what, label in [("get", "`GET /api/v1/tasks/{id}`"), ("post", "`POST /api/v1/tasks` (echo)")]:
        figures = wrk_figures(options.results, what)
        if figures:
            add(f"| {label} | {fmt(figures['per_second'], 0)} | {fmt(figures['p50_ms'], 3)} | {fmt(figures['p99_ms'], 3)} | "
                f"{fmt(figures['cpu_us'], 1)} | {figures['non2xx']} |")
    add("")

    smoke = options.smoke == "1"

    # 7. Swoole
    add("## 7. Echo tasks: TaskGate against the Swoole seed server")
    add("")
    add("The same client for both sides, `bench/ws_tasks.py` (one Python process, picows): one echo task in flight per "
        "connection, a unique `args.id` per task, latency from the submit to the final reply (`code` 200: TaskGate's "
        "`done` after `submitted` and `progress`; Swoole's `onFinish` push after its 202). The Swoole server is "
        "`../shared/peers/swoole/seed_swoole_tasks.php`, the seed tutorial's task server without ThinkPHP and its "
        "database: SWOOLE_PROCESS with the seed's options (a master, a manager, 2 workers, 4 task workers, "
        "task_max_request 1000), and the same in SWOOLE_BASE. Server CPU is summed over every process of the "
        "server's tree (`/proc/PID/stat` utime + stime, plus cutime + cstime for recycled workers), read at the start "
        "and the end of the window; RSS is summed over the processes too (shared pages count once per process). "
        "Not the same work per task: Swoole sends two short frames and keeps nothing; TaskGate sends three "
        "(`submitted` with the task, then `progress` and `done` with what changed) and keeps the record (and, with SQLite, writes it before the 202).")
    add("")
    line = skipped(options.results, "swoole", smoke)
    if line:
        add(line)
    else:
        version_file = options.results / "swoole.version"
        if version_file.exists():
            add(f"Swoole {version_file.read_text().strip()}, PHP {version(['php', '-r', 'echo PHP_VERSION;'])}.")
            add("")
        swoole_cpu = get("swoole", "swoole", "server_cpu_us_per_op")
        add("| server | connections | tasks/s | p50 ms | p99 ms | server CPU µs/task | × Swoole's CPU/task | "
            "replies/task | processes | RSS | errors | client CPU s |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, label in [("taskgate-memory", "TaskGate, memory store"), ("taskgate-sqlite", "TaskGate, SQLite store"),
                            ("swoole", "Swoole seed server (SWOOLE_PROCESS)"), ("swoole-base", "Swoole, SWOOLE_BASE")]:
            run = runs.get(("swoole", name))
            if not run:
                continue
            cpu = run.get("server_cpu_us_per_op")
            add(f"| {label} | {run['connected']} | {fmt(run['per_second'], 0)} | {fmt(run['p50_ms'], 2)} | "
                f"{fmt(run['p99_ms'], 2)} | {fmt(cpu, 1)} | {fmt(cpu / swoole_cpu if cpu and swoole_cpu else None, 2, '×')} | "
                f"{fmt(run.get('replies_per_task'), 2)} | {run.get('server_processes', '–')} | "
                f"{kb_or_mb(run.get('rss_after_kb'))} | {run['errors']} | {fmt(run['client_cpu_s'], 2)} |")
    add("")

    # 8. Steady run
    add("## 8. Steady run: echo tasks at a steady rate, SQLite store")
    add("")
    line = skipped(options.results, "steady", smoke)
    run = runs.get(("steady", "taskgate-sqlite"))
    if line:
        add(line)
    elif run:
        flags_file = options.results / "steady.flags"
        flags = flags_file.read_text().strip() if flags_file.exists() else ""
        retention = (f"retention lowered so that the pruning shows within the run: `{flags}`" if flags else
                     "the server's default retention (`--task-retention-count 100000` finished tasks, "
                     "`--event-retention-count 1000` events per uid, pruned every `--maintenance-interval 60` s)")
        add(f"{run['connections']} WebSocket connections of `bench/ws_tasks.py` start "
            f"{fmt(run.get('target_rate'), 0)} tasks/s in all (each on its own schedule, one task in flight at a time) "
            f"for {fmt(run['seconds'], 0)} s; {retention}. RSS is the server's; the database is the SQLite files in "
            "`--data-dir` (`taskgate.sqlite`, `-wal`, `-shm`), and its rows are counted read-only.")
        add("")
        samples = run.get("samples") or []
        first, last = (samples[0], samples[-1]) if samples else ({}, {})
        peak_rss = max((x.get("rss_kb") or 0 for x in samples), default=None)
        peak_db = max((x.get("db_bytes") or 0 for x in samples), default=None)
        add("| | start | end | peak |")
        add("|---|---|---|---|")
        add(f"| RSS | {kb_or_mb(first.get('rss_kb'))} | {kb_or_mb(last.get('rss_kb'))} | {kb_or_mb(peak_rss)} |")
        add(f"| database (all files) | {kb_or_mb(first.get('db_bytes', 0) // 1024 if 'db_bytes' in first else None)} | "
            f"{kb_or_mb(last.get('db_bytes', 0) // 1024 if 'db_bytes' in last else None)} | "
            f"{kb_or_mb(peak_db // 1024 if peak_db is not None else None)} |")
        wal = [x.get("db_files", {}).get("taskgate.sqlite-wal") for x in (first, last)]
        add(f"| of it, `-wal` | {kb_or_mb(wal[0] // 1024 if wal[0] is not None else None)} | "
            f"{kb_or_mb(wal[1] // 1024 if wal[1] is not None else None)} | |")
        for table in ("tasks", "events"):
            key = f"{table}_rows"
            add(f"| rows in `{table}` | {fmt(first.get(key))} | {fmt(last.get(key))} | "
                f"{fmt(max((x.get(key) or 0 for x in samples), default=None))} |")
        add("")
        add(f"Tasks done: {fmt(run['completed'])} ({fmt(run['per_second'], 0)}/s, target "
            f"{fmt(run.get('target_rate'), 0)}/s), errors: {run['errors']} ({run.get('lost', 0)} lost, "
            f"{run.get('unexpected_finals', 0)} answered twice), sends behind schedule: "
            f"{fmt(run.get('behind_schedule'))}; latency p50 {fmt(run['p50_ms'], 2)} ms, p99 {fmt(run['p99_ms'], 2)} ms; "
            f"server CPU {fmt(run.get('server_cpu_us_per_op'), 1)} µs per task.")
        if len(samples) > 2:
            add("")
            add("Over the run (t s: RSS, database): " + "; ".join(
                f"{x['t']:.0f}: {kb_or_mb(x.get('rss_kb'))}, {kb_or_mb(x.get('db_bytes', 0) // 1024)}"
                for x in samples))
    else:
        add("*Did not run to the end: bench/run.sh printed why.*")
    add("")

    # 9. Cluster
    add("## 9. Cluster: 1 node and 3 nodes on one PostgreSQL")
    add("")
    line = skipped(options.results, "cluster", smoke)
    cluster = runs.get(("cluster", "nodes"))
    if line:
        add(line)
    elif cluster:
        add("`bench/cluster_bench.py`: a throwaway PostgreSQL (`Tests/e2e/pg.py`) and a fresh database per row; the "
            "WebSocket connections of `bench/ws_tasks.py` spread round-robin over the nodes, one echo task in flight "
            "each, wherever it runs. Exactly once: every task submitted got one final reply (none lost, none twice), "
            "and the database holds each once, succeeded, after one attempt, with one `done` event. Delivery: an "
            "echo task submitted by REST on one node (the second, if any) reaching its owner's WebSocket on the "
            "first as `done`. Everything shares the same cores, so more nodes add coordination, not capacity.")
        add("")
        add("| nodes | connections | tasks/s | p50 ms | p99 ms | tasks | exactly once | delivery p50 / p99 ms | "
            "node CPU µs/task | PostgreSQL CPU µs/task |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for r in cluster:
            db = ("database not read" if "db_error" in r else
                  f"db: {fmt(r['db_tasks'])} tasks, {fmt(r['db_done_events'])} done events")
            once = "yes" if r["exactly_once"] else "**NO**"
            add(f"| {r['nodes']} | {r['connections']} | {fmt(r['tasks_per_second'])} | {fmt(r['p50_ms'], 2)} | "
                f"{fmt(r['p99_ms'], 2)} | {fmt(r['submitted'])} | {once} ({r['lost']} lost, {r['duplicate_finals']} "
                f"twice; {db}) | {fmt(r['delivery_p50_ms'], 2)} / {fmt(r['delivery_p99_ms'], 2)} | "
                f"{fmt(r['node_cpu_us_per_task'], 1)} | {fmt(r['db_cpu_us_per_task'], 1)} |")
        if len(cluster) == 2 and cluster[0]["tasks_per_second"]:
            add("")
            add(f"{cluster[1]['nodes']} nodes / {cluster[0]['nodes']} node, tasks/s: "
                f"{fmt(cluster[1]['tasks_per_second'] / cluster[0]['tasks_per_second'], 2, '×')}.")
    else:
        add("*Did not run to the end: bench/run.sh printed why.*")
    add("")

    # Targets
    add("## Targets")
    add("")
    add("| target | measured | ratio | |")
    add("|---|---|---|---|")

    def verdict(ok):
        return "–" if ok is None else ("met" if ok else "missed")

    def ratio(a, b):
        return a / b if a is not None and b else None

    node_cpu = get("ping", "node-echo", "server_cpu_us_per_op")
    node_p99 = get("ping", "node-echo", "p99_ms")
    ping_cpu = get("ping", "taskgate", "server_cpu_us_per_op")
    ping_p99 = get("ping", "taskgate", "p99_ms")
    r = ratio(ping_cpu, node_cpu)
    add(f"| ping CPU/msg ≤ 0.8× node `ws` echo | {fmt(ping_cpu, 2)} vs {fmt(node_cpu, 2)} µs | {fmt(r, 2, '×')} | "
        f"{verdict(None if r is None else r <= 0.8)} |")
    r = ratio(ping_p99, node_p99)
    add(f"| ping p99 ≤ node `ws` p99 | {fmt(ping_p99, 3)} vs {fmt(node_p99, 3)} ms | {fmt(r, 2, '×')} | "
        f"{verdict(None if r is None else r <= 1)} |")
    r = ratio(ping_cpu, 7.5)
    add(f"| toward Swoole's 7.5 µs/msg (2026-11-25 figure) | {fmt(ping_cpu, 2)} µs | {fmt(r, 2, '×')} | "
        f"{verdict(None if r is None else r <= 1)} |")
    for store, limit in [("memory", 2.5), ("sqlite", 4)]:
        cpu = get("tasks", f"taskgate-{store}", "server_cpu_us_per_op")
        r = ratio(cpu, node_cpu)
        add(f"| echo task ({store}) ≤ {limit}× node `ws` CPU/msg | {fmt(cpu, 1)} µs/task | {fmt(r, 2, '×')} | "
            f"{verdict(None if r is None else r <= limit)} |")
    for suffix, limit, what in [("", 8, ""), ("-deflate-ping", 12, " with deflate, one ping/pong exchanged"),
                                 ("-deflate", 12, " with deflate, one ≈ 1 KB echo task (its task and events stored)")]:
        kb = get("idle", "taskgate" + suffix, "rss_per_connection_kb")
        n = get("idle", "taskgate" + suffix, "connected")
        add(f"| idle connection{what} ≤ {limit} KB | "
            f"{fmt(kb, 2)} KB ({fmt(n)} conns) | {fmt(ratio(kb, limit), 2, '×')} of target | "
            f"{verdict(None if kb is None else kb <= limit)} |")
    run = runs.get(("poll", "taskgate"))
    if run:
        held = run["completed"] == run["connections"] and run["errors"] == 0
        add(f"| long-poll: {run['connections']} waiting polls held | {run['completed']} delivered, {run['errors']} errors | "
            f"| {verdict(held)} |")
        add(f"| long-poll delivery p99 ≤ 50 ms | {fmt(run['p99_ms'], 2)} ms | {fmt(ratio(run['p99_ms'], 50), 2, '×')} of target | "
            f"{verdict(None if run['p99_ms'] is None else run['p99_ms'] <= 50)} |")
    c = compression.get("taskgate-deflate", {})
    add(f"| compression ≥ 5× fewer bytes | {fmt(c.get('ratio'), 2, '×')} | | "
        f"{verdict(None if c.get('ratio') is None else c['ratio'] >= 5)} |")
    add(f"| CPU per 16 KB JSON message with deflate ≤ Swoole's ≈ 130 µs | {fmt(c.get('per16'), 1)} µs | "
        f"{fmt(ratio(c.get('per16'), 130), 2, '×')} | {verdict(None if c.get('per16') is None else c['per16'] <= 130)} |")
    task16, node16, r = sixteen[""]
    add(f"| 16 KB echo task CPU ≤ 4× node `ws` echoing 16 KB | {fmt(task16, 1)} vs {fmt(node16, 1)} µs | "
        f"{fmt(r, 2, '×')} | {verdict(None if r is None else r <= 4)} |")
    # The task path against the Swoole seed server (same client, same run).
    swoole_cpu = get("swoole", "swoole", "server_cpu_us_per_op")
    swoole_p99 = get("swoole", "swoole", "p99_ms")
    for store, limit in [("memory", 1.0), ("sqlite", 2.5)]:
        cpu = get("swoole", f"taskgate-{store}", "server_cpu_us_per_op")
        r = ratio(cpu, swoole_cpu)
        add(f"| echo task ({store}) CPU/task ≤ {limit}× the Swoole seed server's | "
            f"{fmt(cpu, 1)} vs {fmt(swoole_cpu, 1)} µs | {fmt(r, 2, '×')} | {verdict(None if r is None else r <= limit)} |")
    p99 = get("swoole", "taskgate-memory", "p99_ms")
    r = ratio(p99, swoole_p99)
    add(f"| echo task (memory) p99 ≤ the Swoole seed server's | {fmt(p99, 2)} vs {fmt(swoole_p99, 2)} ms | "
        f"{fmt(r, 2, '×')} | {verdict(None if r is None else r <= 1)} |")
    for store in ["memory", "sqlite"]:
        run = runs.get(("swoole", f"taskgate-{store}"))
        if run and run.get("seconds") and run.get("server_cpu_s") is not None:
            # Server and client are the only busy processes: together they are what the host spends.
            host = 100 * (run["server_cpu_s"] + run["client_cpu_s"]) / run["seconds"]
            add(f"| echo task ({store}) saturates the CPU (host ≥ 170 % at 100 connections) | {fmt(host, 0)} % "
                f"(server {fmt(100 * run['server_cpu_s'] / run['seconds'], 0)} % + client) | | {verdict(host >= 170)} |")
    kb = get("poll", "taskgate", "rss_per_connection_kb")
    add(f"| a parked long-poll ≤ 10 KB RSS | {fmt(kb, 2)} KB | {fmt(ratio(kb, 10), 2, '×')} of target | "
        f"{verdict(None if kb is None else kb <= 10)} |")
    kb = get("sse", "taskgate", "rss_per_connection_kb")
    if kb is not None:
        add(f"| an open SSE stream, parked on the event loop (no target; a long-poll's 10 KB for scale) | {fmt(kb, 2)} KB | "
            f"{fmt(ratio(kb, 10), 2, '×')} of 10 KB | (no target) |")
    steady = runs.get(("steady", "taskgate-sqlite"))
    if steady:
        add(f"| steady run: every task done, no error | {fmt(steady['completed'])} done, {steady['errors']} errors | | "
            f"{verdict(steady['errors'] == 0 and steady['completed'] > 0)} |")
        target = steady.get("target_rate")
        r = ratio(steady["per_second"], target)
        add(f"| steady run holds its rate (≥ 95 % of {fmt(target, 0)} tasks/s) | {fmt(steady['per_second'], 0)} tasks/s | "
            f"{fmt(r, 2, '×')} of target | {verdict(None if r is None else r >= 0.95)} |")
        samples = steady.get("samples") or []
        if len(samples) >= 4:
            # Bounded by retention: over the second half of the run neither grows past 10 % of its midpoint value.
            middle = samples[len(samples) // 2]
            for key, label in [("rss_kb", "RSS"), ("db_bytes", "database size")]:
                later = [x.get(key) or 0 for x in samples[len(samples) // 2:]]
                mid = middle.get(key) or 0
                flat = bool(mid) and max(later) <= 1.1 * mid
                add(f"| steady run: {label} bounded (second half within 10 % of its midpoint) | "
                    f"{fmt(mid)} → {fmt(max(later))} | {fmt(ratio(max(later), mid), 2, '×')} | {verdict(flat)} |")
    for r in runs.get(("cluster", "nodes")) or []:
        add(f"| cluster, {r['nodes']} node{'s' if r['nodes'] > 1 else ''}: every task done exactly once | "
            f"{fmt(r['submitted'])} tasks, {fmt(r['tasks_per_second'])}/s | | {verdict(r['exactly_once'])} |")
        if r["nodes"] == 3:
            add(f"| cluster, 3 nodes on one PostgreSQL ≥ 5,000 tasks/s | {fmt(r['tasks_per_second'])} tasks/s | "
                f"{fmt(ratio(r['tasks_per_second'], 5000), 2, '×')} of target | {verdict(r['tasks_per_second'] >= 5000)} |")
    add("")

    text = "\n".join(lines) + "\n"
    print(text)
    if options.out:
        Path(options.out).write_text(text)
        print(f"bench: wrote {options.out}")


if __name__ == "__main__":
    main()
