"""Scheduling in a cluster: several TaskGate nodes on one PostgreSQL (the `cluster` fixture of test_cluster.py).

* A cron schedule ticking every second on three nodes: each tick runs exactly once across the cluster (every node
  submits it under the same id), also while one node is killed with -9.
* Delayed tasks submitted on any node run once, on some node, never early.
* Fair share counts the cluster's running tasks: a second uid gets past another uid's burst on two nodes.

Skipped like the other cluster tests when PostgreSQL is not installed (TASKGATE_REQUIRE_POSTGRES=1 makes it fail).
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from conftest import new_uid, wait_until
from test_cluster import (FINAL, LEASE_TIMEOUT, NODES3, all_tasks, cluster, poll_submit,  # noqa: F401 (fixture)
                          rest_submit, wait_all_final)
from test_scheduling import (EARLY_SLACK, at_second, burst_then_one, now, percentile, schedules_of, seconds,
                             start_delay, ticks_of, ts, uid_events, write_config)

pytestmark = pytest.mark.cluster


def test_cluster_cron_ticks_once_each_second_across_three_nodes_and_a_kill_9(cluster, api, tmp_path):
    config = write_config(tmp_path / "cluster-cron.json", schedules=[
        {"name": "beat", "cmd": "echo", "cron": "*/1 * * * * *", "args": {"beat": True}}])
    handles = cluster.start(NODES3, "--config", str(config), "--task-workers", "2")
    up_at = now().timestamp()
    by_name = dict(zip(NODES3, handles))
    victim, survivors = "node-b", ["node-a", "node-c"]
    a, c = by_name["node-a"], by_name["node-c"]

    def beats(node) -> dict[int, list[dict]]:
        return ticks_of(all_tasks(api, node).values(), "beat")

    wait_until(lambda: len(beats(a)) >= 4, 20, "four ticks of 'beat'", 0.2)
    cluster.kill(victim)
    kill_s = now().timestamp()
    wait_until(lambda: max(beats(c) or {0: None}) >= kill_s + 6, 25, "six seconds of ticks after the kill", 0.25)

    def settled():  # every tick but the newest has finished (one the victim had claimed: after the lease)
        got = beats(a)
        newest = max(got)
        pending = [t["id"] for s, v in got.items() if s < newest for t in v if t["status"] not in FINAL]
        return None if pending else got

    ticks = wait_until(settled, LEASE_TIMEOUT + 20, "the ticks to finish", 0.25)
    seen_from_c = {t["id"] for v in beats(c).values() for t in v}
    assert {t["id"] for v in ticks.values() for t in v} <= seen_from_c, "the survivors list different tick tasks"

    first, last = min(ticks), max(ticks)
    due = list(range(first, last))  # the newest may still be running: left out
    missing = [s for s in due if s not in ticks]
    duplicated = [s for s in ticks if len(ticks[s]) > 1]
    ran = [s for s in due if len(ticks.get(s, [])) == 1 and ticks[s][0]["status"] == "succeeded"]
    print(f"cluster cron: ticks due {len(due)}, run {len(ran)}, duplicated {len(duplicated)} "
          f"(seconds {first}..{last - 1}, {victim} killed at {kill_s:.1f}, missing {missing})", flush=True)
    assert first <= up_at + 2.5, f"the first tick came {first - up_at:.1f} s after the nodes were up"
    assert last >= kill_s + 6
    assert not duplicated, {s: [t["id"] for t in ticks[s]] for s in duplicated}
    assert not missing, f"seconds without a tick (around the kill at {kill_s:.1f}?): {missing}"
    assert len(ran) == len(due), [ticks[s] for s in due if s not in ran][:3]
    for s in due:
        (task,) = ticks[s]
        assert task["schedule"] == "beat" and task["uid"] is None and task["id"].endswith(f"schedule:beat:{s}"), task
        assert task.get("node") in NODES3, task
        near_kill = kill_s - 2 <= s <= kill_s + 1  # claimed by the victim, run again after the lease
        assert task["attempts"] == 1 or (near_kill and task["attempts"] == 2), task
        if s > kill_s + 1:
            assert task["node"] in survivors, f"a tick after the kill ran on {task['node']}: {task}"
        assert seconds(ts(task["startedAt"]), at_second(s)) >= -EARLY_SLACK, f"tick {s} ran early: {task}"

    before = now()
    (beat,) = schedules_of(api, c)
    assert beat["name"] == "beat" and beat["lastRun"] is not None, beat
    assert seconds(before, ts(beat["lastRun"])) < 3, f"a survivor should see the cluster's last tick: {beat}"
    assert -0.25 < seconds(ts(beat["nextRun"]), before) <= 1.25, beat


def test_cluster_delayed_tasks_run_once_and_never_early(cluster, api):
    handles = cluster.start(NODES3, "--task-workers", "2")
    uid = new_uid("cdelay")
    rng = random.Random(1202)
    accepted: dict[str, dict] = {}
    for i in range(12):
        node, delay = handles[i % 3], rng.randint(500, 1500)
        msg = {"cmd": "echo", "args": {"n": i, "delay_ms": delay}}
        if i % 2 == 0:
            task = rest_submit(api, node, dict(msg, uid=uid))
        else:
            task = poll_submit(api, node, uid, msg)["task"]
        assert task["status"] == "scheduled" and task["runAt"] is not None, task
        assert abs(seconds(ts(task["runAt"]), ts(task["createdAt"])) - delay / 1000) < 0.1, task
        accepted[task["id"]] = task

    finals = wait_all_final(api, handles[1], set(accepted), 30, cluster.diag)
    lags = []
    for tid, task in finals.items():
        assert task["status"] == "succeeded" and task["attempts"] == 1, task
        assert task.get("node") in NODES3, task
        assert task["runAt"] == accepted[tid]["runAt"], (task, accepted[tid])
        lag = seconds(ts(task["startedAt"]), ts(task["runAt"]))
        assert lag >= -EARLY_SLACK, f"started {-lag:.3f} s before its runAt: {task}"
        assert lag < 2.0, f"started {lag:.3f} s after its runAt: {task}"
        lags.append(lag)
    counts = Counter(e["task"]["id"] for e in uid_events(api, handles[2], uid) if e["type"] == "done")
    assert counts == {tid: 1 for tid in accepted}, f"done events per task: {counts}"
    print(f"cluster delayed: {len(finals)} tasks ran on {dict(Counter(t['node'] for t in finals.values()))}, "
          f"startedAt − runAt p50 {percentile(lags, 0.5) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms", flush=True)


def test_cluster_fair_share_counts_running_tasks_across_nodes(cluster, api, contract):
    n1, n2 = cluster.start(["node-a", "node-b"], "--task-workers", "2")
    b, a_tasks = burst_then_one(api, contract, [n1, n2], 30, 300)
    delay = start_delay(b)
    b_start = ts(b["startedAt"])
    behind = [t for t in a_tasks.values() if t["startedAt"] is None or ts(t["startedAt"]) > b_start]
    print(f"cluster fairness: uid B's task started {delay:.3f} s after its submit, ahead of {len(behind)} of uid A's "
          f"30 × 300 ms sleeps (2 nodes × 2 workers)", flush=True)
    assert delay < 1.0, f"uid B waited {delay:.3f} s behind uid A's burst: {b}"
    assert len(behind) >= 12, f"only {len(behind)} of uid A's tasks started after uid B's"


def test_cluster_retention_prunes_finished_tasks_in_postgres(cluster, api):
    """The PostgreSQL store prunes like the others: the newest finished tasks and the waiting ones stay."""
    [node] = cluster.start(["node-a"], "--task-retention-count", "3", "--maintenance-interval", "1")
    uid = new_uid("pgkeep")
    waiting = rest_submit(api, node, {"cmd": "echo", "args": {"delay_ms": 600_000}, "uid": uid})
    finished = [rest_submit(api, node, {"cmd": "echo", "args": {"i": i}, "uid": uid})["id"] for i in range(8)]
    wait_all_final(api, node, set(finished), 20)

    def kept():
        ids = {t["id"] for t in all_tasks(api, node).values() if t["uid"] == uid}
        return ids if len(ids) <= 4 else None

    assert wait_until(kept, 20, "the maintenance pass to prune", 0.2) == set(finished[-3:]) | {waiting["id"]}
    health = api.get(f"{node.base_url}/healthz").json()["retention"]
    assert health["totalPruned"] >= 5 and health["lastError"] is None, health
