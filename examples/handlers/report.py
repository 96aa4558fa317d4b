#!/usr/bin/env python3
"""A TaskGate command handler in Python: started once per task.

TaskGate writes the task to stdin as one JSON object: {"id", "cmd", "uid", "args"}.
We answer on stdout with JSON lines: {"progress": 0.3, "message": "..."} any number of times,
then exactly one {"result": ...} or {"error": "..."}. Anything on stderr is kept for error reports.

This one "builds a report" in args.rows rows, the way a ThinkPHP controller action would have,
and has a few switches the tests use to show failures: fail, garbage, exit_code, sleep_ms.
"""

import json
import os
import sys
import time


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def main() -> int:
    task = json.loads(sys.stdin.readline())
    args = task.get("args") or {}

    if args.get("garbage"):
        print("this is not JSON", flush=True)
        return 0
    if "exit_code" in args:
        print("report.py: giving up on purpose", file=sys.stderr, flush=True)
        return int(args["exit_code"])
    if args.get("sleep_ms"):
        time.sleep(int(args["sleep_ms"]) / 1000)

    rows = int(args.get("rows", 5))
    total = 0
    for row in range(1, rows + 1):
        total += row * row            # the "work"
        time.sleep(float(args.get("row_ms", 10)) / 1000)
        emit({"progress": row / rows, "message": f"row {row} of {rows}"})

    if args.get("fail"):
        emit({"error": f"report for {task['uid']} failed: {args['fail']}"})
        return 0
    emit({"result": {"rows": rows, "sum_of_squares": total, "uid": task["uid"], "pid": os.getpid()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
