"""Retention of finished tasks: pruned by count and by age in the background, never the unfinished ones, and shown
in /healthz."""

from __future__ import annotations

import pytest

from conftest import new_uid, wait_task_final, wait_until
from test_scheduling import refused_start


def submit(api, server, body: dict) -> dict:
    r = api.post(f"{server.base_url}/api/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_finished_tasks_beyond_the_count_are_pruned_and_waiting_ones_kept(start_server, api, store):
    srv = start_server("--store", store, "--task-retention-count", "3", "--maintenance-interval", "1")
    uid = new_uid("keep")
    waiting = submit(api, srv, {"cmd": "echo", "args": {"delay_ms": 600_000}, "uid": uid})
    finished = []
    for i in range(8):
        task = submit(api, srv, {"cmd": "echo", "args": {"i": i}, "uid": uid})
        wait_task_final(api, srv.base_url, task["id"])
        finished.append(task["id"])

    def pruned():
        tasks = api.get(f"{srv.base_url}/api/v1/tasks", params={"uid": uid, "limit": 100}).json()["tasks"]
        return {t["id"] for t in tasks} if len(tasks) <= 4 else None

    kept = wait_until(pruned, 20, "the maintenance pass to prune the oldest finished tasks", 0.2)
    # The three newest finished tasks and the scheduled one stay; the five oldest are gone for good.
    assert kept == set(finished[-3:]) | {waiting["id"]}
    assert api.get(f"{srv.base_url}/api/v1/tasks/{finished[0]}").status_code == 404
    health = api.get(f"{srv.base_url}/healthz").json()["retention"]
    assert health["count"] == 3 and health["maxAgeHours"] == 168, health
    assert health["lastRun"] is not None and health["lastError"] is None, health
    # The memory store also trims to the count as it inserts (its memory is bounded between passes), so the
    # background pass has less left to prune there.
    assert health["totalPruned"] >= (5 if store == "sqlite" else 0), health


def test_retention_settings_are_checked(tmp_path):
    for flags in (["--task-retention-count", "-1"], ["--task-retention-hours", "-5"], ["--maintenance-interval", "0"]):
        out = refused_start(tmp_path, *flags).lower()
        assert "retention" in out or "maintenance-interval" in out, out
