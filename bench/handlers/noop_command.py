#!/usr/bin/env python3
"""A no-op command handler: reads the task, answers at once. Measures the per-task cost of a process per task."""
import json
import sys

task = json.loads(sys.stdin.readline())
print(json.dumps({"result": {"id": task["id"]}}), flush=True)
