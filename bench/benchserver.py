"""The server under benchmark: `taskgate serve` on a free loopback port, with the per-client limits lifted (they
would throttle the load generator), stopped by PID afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def taskgate(binary: str, *flags: str, workers: int = 4) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """Yields (process, port, a scratch folder that is removed afterwards)."""
    workdir = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    port = free_port()
    args = [binary, "serve", "--port", str(port), "--data-dir", str(workdir / "data"), "--log-dir", str(workdir / "log"),
            "--log-level", "warning", "--task-workers", str(workers), "--queue-limit", "100000",
            "--max-messages-per-second", "1000000", "--max-tasks-per-uid", "100000", *flags]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        yield server, port, workdir
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
