"""A server's processes seen through /proc: CPU time and RSS of one process or of its whole process tree, and a stop
that leaves none of the tree behind.

    python3 bench/proc.py PID              CPU seconds (utime + stime, /proc/PID/stat) and RSS in KB of PID
    python3 bench/proc.py --tree PID       the same summed over PID and every descendant (see tree_cpu_seconds)
    python3 bench/proc.py --stop-tree PID  SIGTERM to PID, then wait (bounded) until PID and every process that was
                                           its descendant are gone; SIGKILL, by PID, those still there after the wait

Only processes of the tree rooted at the given PID (a process the caller started) are ever signalled."""

from __future__ import annotations

import os
import signal
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "(comm)": [0] is the state (field 3), [1] the ppid, [11]/[12] utime/stime,
    [13]/[14] cutime/cstime (waited-for children), [19] the start time. None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads)."""
    fields = stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> dict[int, list[str]]:
    """root and every descendant that is there now: pid -> stat fields."""
    everything: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None:
                everything[int(entry)] = fields
    if root not in everything:
        return {}
    children: dict[int, list[int]] = {}
    for pid, fields in everything.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found: dict[int, list[str]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in everything:
            continue
        found[pid] = everything[pid]
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds of root's process tree: utime + stime + cutime + cstime of every process in it. cutime/cstime hold
    the time of children that exited and were waited for, so a worker that is recycled during a measurement (Swoole's
    task_max_request) still counts, in its parent's figures; the difference of two readings is the tree's CPU time
    in between. None when root is gone."""
    processes = tree(root)
    if not processes:
        return None
    return sum(int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]) for f in processes.values()) / CLOCK_TICKS


def tree_rss_kb(root: int) -> int:
    """RSS summed over the tree (pages shared between processes count once per process)."""
    return sum(rss_kb(pid) for pid in tree(root))


def _alive(pid: int, start_time: str) -> bool:
    fields = stat_fields(pid)
    # A zombie has exited (its parent has yet to reap it); another start time is another process on a reused pid.
    return fields is not None and fields[0] != "Z" and fields[19] == start_time


def stop_tree(root: int, timeout: float = 15.0) -> tuple[int, list[int]]:
    """SIGTERM to root; waits up to `timeout` s for root and every process of its tree (as it was before the signal) to
    exit; SIGKILLs the ones left. Returns (processes in the tree, pids that had to be killed)."""
    processes = {pid: fields[19] for pid, fields in tree(root).items()}
    if not processes:
        return 0, []
    try:
        os.kill(root, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Children forked while stopping (a worker restarted at the last moment) are waited for too.
        for pid, fields in tree(root).items():
            processes.setdefault(pid, fields[19])
        if not any(_alive(pid, start) for pid, start in processes.items()):
            return len(processes), []
        time.sleep(0.05)
    killed = []
    for pid, start in processes.items():
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return len(processes), killed


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 1:
        pid = int(args[0])
        print(f"{cpu_seconds(pid):.3f} {rss_kb(pid)}")
    elif len(args) == 2 and args[0] == "--tree":
        pid = int(args[1])
        cpu = tree_cpu_seconds(pid)
        if cpu is None:
            raise ProcessLookupError(pid)
        print(f"{cpu:.3f} {tree_rss_kb(pid)}")
    elif len(args) == 2 and args[0] == "--stop-tree":
        count, killed = stop_tree(int(args[1]))
        if killed:
            print(f"proc.py: {len(killed)} of {count} processes of {args[1]} did not exit on SIGTERM; killed "
                  f"{' '.join(map(str, killed))}", file=sys.stderr)
            return 1
    else:
        print(__doc__, file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main())
