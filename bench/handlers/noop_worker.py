#!/usr/bin/env python3
"""A no-op worker-process handler: answers each task line at once. Measures the per-task cost of a worker pool."""
import json
import sys

for line in sys.stdin:
    task = json.loads(line)
    sys.stdout.write(json.dumps({"id": task["id"], "result": {"id": task["id"]}}) + "\n")
    sys.stdout.flush()
