"""Cluster mode end to end: several TaskGate nodes on one machine sharing one PostgreSQL (issue #6).

Every node runs `taskgate serve --store postgres --database-url … --node-id NAME --lease-timeout 3` on its own
loopback port; each test gets a fresh database of the session's throwaway PostgreSQL (fixtures `postgres` and
`pg_database` in conftest.py, the server itself in pg.py). Select these tests with `-m cluster` or by file.

What is checked: concurrent start-up (migrations under an advisory lock), cross-node delivery over WebSocket, SSE
and long-poll, the cluster-wide client list, `/api/v1/nodes`, targeted and cluster-wide reload, a node killed
with -9 mid-run (its tasks reclaimed after the lease, its clients resuming on a survivor with their cursor), and a
PostgreSQL restart mid-run (unhealthy and 503 meanwhile, sockets open, recovery without losing anything).
Everything talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
import traceback
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import websockets

from conftest import (_OPEN_CLIENTS, REPO, TASKGATE_BIN, ServerHandle, ValidatingSession, WSClient, _launch,
                      _stop_and_check, new_uid, run, strip, wait_until)
from sse_client import SSEStream

pytestmark = pytest.mark.cluster

LEASE_TIMEOUT = 3                 # seconds; heartbeats every lease/3
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
NODES3 = ["node-a", "node-b", "node-c"]


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """TaskGate nodes on one database. Nodes killed with -9 are not expected to exit cleanly at teardown."""

    def __init__(self, tmp_path: Path, database_url: str):
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.nodes: dict[str, ServerHandle] = {}
        self.killed: set[str] = set()
        self.retired: list[tuple[str, ServerHandle]] = []  # stopped, kept for their output
        self._round = 0

    def args(self, name: str, *extra: str) -> list[str]:
        return ["--store", "postgres", "--database-url", self.database_url, "--node-id", name,
                "--lease-timeout", str(LEASE_TIMEOUT), *extra]

    def start(self, names: list[str], *extra: str) -> list[ServerHandle]:
        """Starts the nodes at the same moment (one thread each); returns once every one answers /healthz 200."""
        self._round += 1
        barrier = threading.Barrier(len(names), timeout=10)

        def launch(name: str) -> ServerHandle:
            barrier.wait()
            return _launch(self.tmp_path / f"{name}-{self._round}", self.args(name, *extra), None)

        failures = []
        with ThreadPoolExecutor(len(names)) as pool:
            futures = {name: pool.submit(launch, name) for name in names}
            for name, future in futures.items():
                try:
                    self.nodes[name] = future.result(timeout=90)
                except BaseException as e:  # noqa: BLE001 - pytest.fail raises an OutcomeException
                    failures.append(f"{name}: {e}")
        if failures:
            pytest.fail("cluster nodes did not start:\n" + "\n".join(failures))
        return [self.nodes[n] for n in names]

    def __getitem__(self, name: str) -> ServerHandle:
        return self.nodes[name]

    def alive(self) -> dict[str, ServerHandle]:
        return {n: h for n, h in self.nodes.items() if n not in self.killed}

    def kill(self, name: str) -> None:
        handle = self.nodes[name]
        handle.proc.send_signal(signal.SIGKILL)
        handle.proc.wait(timeout=10)
        self.killed.add(name)

    def stop_all(self) -> None:
        """SIGTERM every live node (each must exit 0), in parallel; raises with every problem at once."""
        errors = []
        alive = self.alive()

        def stop(handle: ServerHandle):
            try:
                _stop_and_check(handle)
            except AssertionError as e:
                errors.append(str(e))

        with ThreadPoolExecutor(max(1, len(alive))) as pool:
            list(pool.map(stop, alive.values()))
        for name, handle in self.nodes.items():
            if name in self.killed and handle.proc.poll() is None:
                handle.proc.kill()
        self.retired += list(self.nodes.items())
        self.nodes.clear()
        self.killed.clear()
        assert not errors, "\n".join(errors)

    def diag(self, chars: int = 1500) -> str:
        """The output tails of every node, for assertion messages."""
        return "".join(f"\n--- {name} (port {h.port}) output tail ---\n{h.output()[-chars:]}"
                       for name, h in self.retired + list(self.nodes.items()))


@pytest.fixture
def cluster(pg_database, tmp_path) -> Cluster:
    # pg_database comes first: the nodes stop before their database is dropped.
    c = Cluster(tmp_path, pg_database)
    yield c
    c.stop_all()


# --------------------------------------------------------------------------- helpers


def error_slug(body: dict) -> str | None:
    """The error slug of an error body: {"type":"error","code":404,"error":"slug",...} (or {"error":{"code":…}})."""
    err = body.get("error")
    if isinstance(err, dict):
        return err.get("code") if isinstance(err.get("code"), str) else err.get("error")
    return err


def iso(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def rest_submit(api, node: ServerHandle, body: dict, expect: int = 202) -> dict:
    r = api.post(f"{node.base_url}/api/v1/tasks", json=body)
    assert r.status_code == expect, f"POST /api/v1/tasks on {node.port} {body} -> {r.status_code} {r.text}"
    return r.json()


def poll_submit(api, node: ServerHandle, uid: str, msg: dict, expect: int = 202) -> dict:
    r = api.post(f"{node.base_url}/poll", params={"uid": uid}, json=msg)
    assert r.status_code == expect, f"POST /poll on {node.port} {msg} -> {r.status_code} {r.text}"
    reply = r.json()
    assert reply["code"] == expect, reply
    return reply


def ws_submit(node: ServerHandle, uid: str, msgs: list[dict], contract) -> list[dict]:
    """Opens a WebSocket for uid on node, sends each message and collects its direct reply."""

    async def go():
        async with websockets.connect(f"{node.ws_url}?uid={uid}", open_timeout=5, close_timeout=2, proxy=None,
                                      ping_interval=None) as conn:
            client = WSClient(conn, contract)
            hello = await client.next(5)
            assert hello["type"] == "hello", hello
            return [await client.request(m, timeout=5) for m in msgs]

    return asyncio.run(asyncio.wait_for(go(), 30))


async def ws_open(node: ServerHandle, uid: str, contract, cursor: int | None = None) -> WSClient:
    """A WSClient (messages validated against openapi.yaml) for uid on node, hello read; closed by run()."""
    url = f"{node.ws_url}?uid={uid}" + (f"&cursor={cursor}" if cursor is not None else "")
    conn = await websockets.connect(url, open_timeout=5, close_timeout=3, proxy=None, ping_interval=None,
                                    max_size=4 * 1024 * 1024)
    contract.covered.add(("/ws", "get", "101"))
    client = WSClient(conn, contract)
    _OPEN_CLIENTS.append(client)
    hello = await client.next(5)
    assert hello["type"] == "hello" and hello["uid"] == uid and hello["reset"] is False, hello
    return client


def all_tasks(api, node: ServerHandle) -> dict[str, dict]:
    """Every task of the (fresh, per-test) database, by id, as one node sees them."""
    r = api.get(f"{node.base_url}/api/v1/tasks", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {t["id"]: t for t in r.json()["tasks"]}


def wait_all_final(api, node: ServerHandle, ids: set[str], timeout: float, diag=lambda: "") -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        tasks = all_tasks(api, node)
        pending = {i: (tasks.get(i) or {}).get("status") for i in ids if (tasks.get(i) or {}).get("status") not in FINAL}
        if not pending:
            return {i: tasks[i] for i in ids}
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} of {len(ids)} tasks not final after {timeout}s: "
                                 f"{dict(list(pending.items())[:10])}{diag()}")
        time.sleep(0.25)


def health(api, node: ServerHandle) -> tuple[int, dict]:
    r = api.get(f"{node.base_url}/healthz", timeout=5)
    return r.status_code, r.json()


def nodes_of(api, node: ServerHandle) -> dict[str, dict]:
    r = api.get(f"{node.base_url}/api/v1/nodes")
    assert r.status_code == 200, r.text
    return {n["id"]: n for n in r.json()["nodes"]}


def clients_of(api, node: ServerHandle) -> list[dict]:
    r = api.get(f"{node.base_url}/api/v1/clients")
    assert r.status_code == 200, r.text
    return r.json()["clients"]


def generation(api, node: ServerHandle) -> int:
    r = api.get(f"{node.base_url}/api/v1/handlers")
    assert r.status_code == 200, r.text
    return r.json()["generation"]


def done_ids(events: list[dict]) -> list[str]:
    return [e["task"]["id"] for e in events if e["type"] == "done"]


def assert_gapless(events: list[dict], what: str, first: int | None = 1) -> None:
    """seq goes up by exactly 1 from event to event (no gap, no duplicate), from `first` if given."""
    seqs = [e["seq"] for e in events]
    assert seqs, f"{what}: no events"
    start = seqs[0] if first is None else first
    assert seqs == list(range(start, start + len(seqs))), \
        f"{what}: seqs are not {start}, {start + 1}, … without gaps or repeats: {seqs}"


def cli(*args: str, url: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TASKGATE_URL", "TASKGATE_ADMIN_TOKEN")}
    p = subprocess.run([str(TASKGATE_BIN), *args, "--url", url], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    p.all = p.stdout + p.stderr  # type: ignore[attr-defined]
    return p


# --------------------------------------------------------------------------- a uid's follower thread


class Follower(threading.Thread):
    """Follows one uid's events over WebSocket or long-poll in a background thread.

    Starts on nodes[0] with cursor 0 (so it sees the uid's whole log). When the connection is lost it goes on
    at the next node of `nodes` with its cursor, the way a browser client resumes. Every message is validated
    against openapi.yaml; problems land in `errors`. Stops on stop() or after `max_seconds`."""

    def __init__(self, uid: str, transport: str, nodes: list[ServerHandle], contract, max_seconds: float = 150):
        super().__init__(daemon=True, name=f"follow-{uid}")
        assert transport in ("websocket", "long-poll")
        self.uid, self.transport, self.nodes, self.contract = uid, transport, nodes, contract
        self.max_seconds = max_seconds
        self.events: list[dict] = []
        self.cursor = 0
        self.node_index = 0
        self.sessions: list[dict] = []     # one per connection (or first poll) on a node: port, cursor, hello
        self.drops: list[str] = []         # why connections ended
        self.errors: list[str] = []
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def node(self) -> ServerHandle:
        return self.nodes[self.node_index]

    def stop(self) -> None:
        self._stopping.set()
        self.join(15)
        assert not self.is_alive(), f"follower of {self.uid} did not stop"

    def done_ids(self) -> list[str]:
        with self._lock:
            return done_ids(self.events)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def _failover(self, why: str) -> None:
        self.drops.append(f"{self.node.port}: {why}")
        if self.node_index + 1 < len(self.nodes):
            self.node_index += 1

    def _take(self, msg: dict) -> None:
        problems = self.contract.check_message("ServerMessage", msg)
        if problems:
            self.errors.extend(problems)
        if msg.get("type") in ("progress", "done") and "seq" in msg:
            with self._lock:
                self.events.append(msg)
                self.cursor = max(self.cursor, msg["seq"])

    def run(self) -> None:
        try:
            if self.transport == "websocket":
                asyncio.run(self._websocket())
            else:
                self._long_poll()
        except BaseException:  # noqa: BLE001 - reported by the test
            self.errors.append(traceback.format_exc())
        finally:
            self.connected.set()

    async def _websocket(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            node = self.node
            try:
                async with websockets.connect(f"{node.ws_url}?uid={self.uid}&cursor={self.cursor}", open_timeout=5,
                                              close_timeout=2, proxy=None, ping_interval=None,
                                              max_size=4 * 1024 * 1024) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if hello.get("type") != "hello" or hello.get("reset") is not False:
                        self.errors.append(f"bad hello on {node.port} with cursor {self.cursor}: {hello}")
                    self.sessions.append({"port": node.port, "cursor": self.cursor, "hello": hello})
                    self.connected.set()
                    while not self._stopping.is_set() and time.monotonic() < deadline:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.2)
                        except asyncio.TimeoutError:
                            continue
                        self._take(json.loads(raw))
            except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError) as e:
                self._failover(repr(e))
                await asyncio.sleep(0.2)

    def _long_poll(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        session = ValidatingSession(self.contract)
        current_port = None
        try:
            while not self._stopping.is_set() and time.monotonic() < deadline:
                node = self.node
                try:
                    r = session.get(f"{node.base_url}/poll", params={"uid": self.uid, "cursor": self.cursor,
                                                                      "timeout": 1}, timeout=10)
                except requests.RequestException as e:
                    self._failover(repr(e))
                    time.sleep(0.2)
                    continue
                if r.status_code != 200:
                    self.errors.append(f"GET /poll on {node.port}: {r.status_code} {r.text[:300]}")
                    time.sleep(0.2)
                    continue
                body = r.json()
                if current_port != node.port:
                    self.sessions.append({"port": node.port, "cursor": self.cursor, "reset": body["reset"]})
                    current_port = node.port
                    self.connected.set()
                if body["reset"]:
                    self.errors.append(f"GET /poll on {node.port} with cursor {self.cursor}: reset: {body}")
                for event in body["events"]:
                    self._take(event)
                if body["events"] and body["cursor"] != body["events"][-1]["seq"]:
                    self.errors.append(f"poll cursor {body['cursor']} is not the last seq: {body}")
                self.cursor = body["cursor"]
        finally:
            session.close()


# --------------------------------------------------------------------------- start-up


def test_three_nodes_start_at_once_on_an_empty_database(cluster, api):
    """Concurrent migrations (advisory lock): all three nodes become healthy and see each other."""
    handles = cluster.start(NODES3)
    for name, node in zip(NODES3, handles):
        status, body = health(api, node)
        assert status == 200, body
        assert body["status"] == "ok" and body["node"] == name, body
        assert body["store"] == "postgres" and body["database"] == "ok", body

    def all_three(node):
        nodes = nodes_of(api, node)
        return nodes if set(nodes) == set(NODES3) else None

    for name, node in zip(NODES3, handles):
        seen = wait_until(lambda: all_three(node), LEASE_TIMEOUT + 5, f"{name} to list all three nodes")
        assert [n for n, info in seen.items() if info["self"]] == [name], seen
        for info in seen.values():
            assert abs((datetime.now(timezone.utc) - iso(info["heartbeatAt"])).total_seconds()) < 2 * LEASE_TIMEOUT + 5
            assert iso(info["startedAt"]) <= iso(info["heartbeatAt"]), info
            assert info["clients"] >= 0 and info["running"] >= 0, info

    # The schema works from every node: a task submitted on each one finishes.
    uid = new_uid("boot")
    ids = {rest_submit(api, node, {"cmd": "echo", "args": {"n": i}, "uid": uid})["id"]
           for i, node in enumerate(handles)}
    finals = wait_all_final(api, handles[0], ids, 20, cluster.diag)
    assert all(t["status"] == "succeeded" and t.get("node") in NODES3 for t in finals.values()), finals

    # All three again at once on the now migrated database: nothing to migrate, nothing lost.
    cluster.stop_all()
    handles = cluster.start(NODES3)
    for node in handles:
        status, body = health(api, node)
        assert status == 200 and body["database"] == "ok", body
    again = all_tasks(api, handles[2])
    assert {i: again[i]["status"] for i in ids} == {i: "succeeded" for i in ids}


# --------------------------------------------------------------------------- cross-node delivery


def test_done_event_reaches_websocket_sse_and_long_poll_on_three_nodes(cluster, api, contract):
    a, b, c = cluster.start(NODES3)
    uid = new_uid("x")

    async def body():
        ws = await ws_open(a, uid, contract, cursor=0)
        sse = SSEStream(b.base_url, uid=uid, cursor=0)
        try:
            assert sse.status == 200, sse.body()
            hello = sse.next_frame(5)
            assert hello.event == "hello" and hello.json["uid"] == uid and hello.json["reset"] is False, hello
            lp_cursor = 0
            lp_events: list[dict] = []
            submits = [
                ("REST on node-b", lambda: rest_submit(api, b, {"cmd": "sleep", "args": {"ms": 300}, "uid": uid})),
                ("WebSocket on node-a", None),
                ("POST /poll on node-c", lambda: poll_submit(api, c, uid, {"cmd": "echo", "args": {"k": 2}})["task"]),
            ]
            for how, submit in submits:
                # The long-poll waits on node-c before the task exists: it must be woken by node-b's (or a's) event.
                waiting = asyncio.create_task(asyncio.to_thread(
                    api.get, f"{c.base_url}/poll", params={"uid": uid, "cursor": lp_cursor, "timeout": 20},
                    timeout=30))
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                if submit is None:
                    reply = await ws.request({"cmd": "echo", "args": {"k": 1}})
                    assert reply["type"] == "submitted" and reply["code"] == 202, reply
                    task = reply["task"]
                else:
                    task = await asyncio.to_thread(submit)
                tid = task["id"]
                # WebSocket on node-a
                ws_events = await ws.events_until_done(tid, timeout=15)
                # long-poll on node-c: the waiting request answers soon after the first event, then poll on
                r = await waiting
                assert r.status_code == 200, r.text
                first = r.json()
                assert first["events"], f"{how}: the waiting long-poll on node-c was not woken: {first}"
                assert time.monotonic() - t0 < 10, f"{how}: the waiting long-poll answered only at its timeout"
                lp_events += first["events"]
                lp_cursor = first["cursor"]
                deadline = time.monotonic() + 15
                while tid not in done_ids(lp_events):
                    assert time.monotonic() < deadline, f"{how}: no done on the long-poll: {lp_events}"
                    r = await asyncio.to_thread(api.get, f"{c.base_url}/poll",
                                                params={"uid": uid, "cursor": lp_cursor, "timeout": 5}, timeout=15)
                    assert r.status_code == 200 and r.json()["reset"] is False, r.text
                    lp_events += r.json()["events"]
                    lp_cursor = r.json()["cursor"]
                # SSE on node-b
                frames = await asyncio.to_thread(
                    sse.events_until, lambda f: f.event == "done" and f.json["task"]["id"] == tid, 15)
                sse_events = []
                for f in frames:
                    problems = contract.check_message("ServerMessage", f.json)
                    assert not problems, problems
                    assert f.id == str(f.json["seq"]) and f.event == f.json["type"], f
                    sse_events.append(f.json)
                key = lambda e: (e["seq"], e["type"], e["task"]["id"], e["task"]["status"], e["task"].get("progress"))
                lp_mine = [e for e in lp_events if e["task"]["id"] == tid]
                sse_mine = [e for e in sse_events if e["task"]["id"] == tid]
                assert [key(e) for e in ws_events] == [key(e) for e in sse_mine] == [key(e) for e in lp_mine], \
                    f"{how}: the three transports on three nodes disagree:\nws  {list(map(strip, ws_events))}" \
                    f"\nsse {list(map(strip, sse_mine))}\nlp  {list(map(strip, lp_mine))}"
                assert ws_events == sse_mine == lp_mine, f"{how}: the same events in other shapes"
                done = [e for e in ws_events if e["type"] == "done"]
                assert len(done) == 1 and done[0]["task"]["status"] == "succeeded", done
                # The done event says what changed; the node that ran it is on the stored task.
                stored = (await asyncio.to_thread(api.get, f"{c.base_url}/api/v1/tasks/{tid}")).json()
                assert stored["status"] == "succeeded" and stored.get("node") in NODES3, stored
            # One uid, one numbering: the same gapless seqs on all three nodes.
            assert_gapless(ws.events(), "websocket on node-a")
            assert_gapless(lp_events, "long-poll on node-c")
            assert [e["seq"] for e in lp_events] == [e["seq"] for e in ws.events()]
            await ws.assert_silent(0.5)
        finally:
            sse.close()

    run(body(), timeout=90)


# --------------------------------------------------------------------------- clients, nodes, reload


def test_clients_nodes_and_reload_across_the_cluster(cluster, api, contract):
    a, b, c = cluster.start(NODES3)
    by_name = dict(zip(NODES3, (a, b, c)))
    uid_a, uid_b, uid_c = new_uid("ca"), new_uid("cb"), new_uid("cc")

    async def body():
        await ws_open(a, uid_a, contract)
        await ws_open(b, uid_b, contract)
        sse = SSEStream(c.base_url, uid=uid_c)
        try:
            assert sse.status == 200
            sse.next_frame(5)  # hello
            expected = {uid_a: ("node-a", "websocket"), uid_b: ("node-b", "websocket"), uid_c: ("node-c", "sse")}

            def everyone_listed(node):  # each client once, with the node it is connected to
                mine = sorted((cl["uid"], cl.get("node"), cl["transport"]) for cl in clients_of(api, node)
                              if cl["uid"] in expected)
                return mine if mine == sorted((u, n, t) for u, (n, t) in expected.items()) else None

            for name, node in by_name.items():
                await asyncio.to_thread(wait_until, lambda: everyone_listed(node), 10,
                                        f"{name}'s /api/v1/clients to list the clients of every node")
            for cl in await asyncio.to_thread(clients_of, api, a):
                assert cl.get("node") in NODES3, f"a client without a node: {cl}"

            # /api/v1/nodes: every node sees all three, itself as self, with its client count.
            def counted(node):
                nodes = nodes_of(api, node)
                ok = set(nodes) == set(NODES3) and all(nodes[n]["clients"] >= 1 for n in NODES3)
                return nodes if ok else None

            for name, node in by_name.items():
                nodes = await asyncio.to_thread(wait_until, lambda: counted(node), 10, f"{name}'s /api/v1/nodes")
                assert [n for n, info in nodes.items() if info["self"]] == [name], nodes

            # CLI: `taskgate list` has a NODE column, `taskgate nodes` lists the nodes.
            p = await asyncio.to_thread(cli, "list", url=b.base_url)
            assert p.returncode == 0, p.all
            assert "NODE" in p.stdout.upper(), p.all
            for uid, (node_name, _) in expected.items():
                line = next((ln for ln in p.stdout.splitlines() if uid in ln), None)
                assert line and node_name in line, f"`taskgate list` should show {uid} on {node_name}:\n{p.all}"
            p = await asyncio.to_thread(cli, "nodes", url=c.base_url)
            assert p.returncode == 0 and all(n in p.stdout for n in NODES3), p.all
        finally:
            sse.close()

    run(body(), timeout=90)

    def generations():
        return {name: generation(api, node) for name, node in by_name.items()}

    def wait_generations(want: dict[str, int], what: str):
        wait_until(lambda: generations() == want, 10, what)

    # Reload one node, asked on another.
    before = generations()
    r = api.post(f"{a.base_url}/api/v1/reload", params={"node": "node-b"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert [e["node"] for e in result["nodes"]] == ["node-b"], result
    entry = result["nodes"][0]
    assert "error" not in entry and entry["generation"] == before["node-b"] + 1, result
    assert sorted(entry["handlers"]) == sorted(result["handlers"]) and "echo" in entry["handlers"], result
    assert result["generation"] == before["node-b"] + 1, result
    wait_generations(dict(before, **{"node-b": before["node-b"] + 1}), "only node-b to reload")

    # Reload them all.
    before = generations()
    r = api.post(f"{c.base_url}/api/v1/reload")
    assert r.status_code == 200, r.text
    result = r.json()
    entries = {e["node"]: e for e in result["nodes"]}
    assert sorted(entries) == sorted(NODES3) and len(result["nodes"]) == 3, result
    for name, e in entries.items():
        assert "error" not in e, result
        assert e["generation"] == before[name] + 1, result
        for k in ("handlers", "added", "changed", "removed"):
            assert isinstance(e[k], list), e
    assert result["generation"] in {e["generation"] for e in entries.values()}, result
    wait_generations({n: g + 1 for n, g in before.items()}, "every node to reload")

    # An unknown node.
    before = generations()
    r = api.post(f"{b.base_url}/api/v1/reload", params={"node": "node-zz"})
    assert r.status_code == 404, r.text
    assert error_slug(r.json()) == "node_not_found", r.json()
    assert generations() == before, "a reload of an unknown node must not reload anything"

    # CLI: taskgate reload --node
    p = cli("reload", "--node", "node-c", url=a.base_url)
    assert p.returncode == 0, p.all
    wait_generations(dict(before, **{"node-c": before["node-c"] + 1}), "`taskgate reload --node node-c`")


# --------------------------------------------------------------------------- kill -9 mid-run


def test_three_nodes_kill_9_mid_run_every_task_once_every_done_once(cluster, api, contract):
    handles = cluster.start(NODES3, "--task-workers", "2")
    by_name = dict(zip(NODES3, handles))
    victim, survivors = "node-b", ["node-a", "node-c"]

    # 6 uids, each followed by one client: a WebSocket or a long-poll, two per node.
    # The clients on the victim resume on a survivor.
    plan = [("websocket", "node-a"), ("long-poll", "node-a"), ("websocket", "node-b"),
            ("long-poll", "node-b"), ("websocket", "node-c"), ("long-poll", "node-c")]
    followers = []
    for i, (transport, home) in enumerate(plan):
        uid = new_uid(f"k{i}")
        resume_on = "node-c" if transport == "websocket" else "node-a"
        nodes = [by_name[home]] + ([by_name[resume_on]] if home == victim else [])
        followers.append(Follower(uid, transport, nodes, contract))
    for f in followers:
        f.start()
    for f in followers:
        assert f.connected.wait(10) and not f.errors, (f.uid, f.errors)
    uids = [f.uid for f in followers]

    # ~60 sleep tasks of 200–2500 ms (long enough that the kill finds the victim with a task under way): every (uid, node, front door) combination, and 6 more.
    rng = random.Random(6)
    combos = list(itertools.product(uids, NODES3, ["websocket", "long-poll", "rest"]))
    combos += rng.sample(combos, 6)
    rng.shuffle(combos)
    tasks: dict[str, dict] = {}  # id -> {uid, node, via, ms}
    for uid, node_name, via in combos:
        node, ms = by_name[node_name], rng.randint(200, 2500)
        msg = {"cmd": "sleep", "args": {"ms": ms}}
        if via == "websocket":
            (reply,) = ws_submit(node, uid, [msg], contract)
            assert reply["type"] == "submitted" and reply["code"] == 202, reply
            task = reply["task"]
        elif via == "long-poll":
            task = poll_submit(api, node, uid, msg)["task"]
        else:
            task = rest_submit(api, node, {"cmd": "sleep", "args": {"ms": ms}, "uid": uid})
        assert task["uid"] == uid and task["status"] in ("queued", "running"), task
        tasks[task["id"]] = {"uid": uid, "node": node_name, "via": via, "ms": ms}
    assert len(tasks) == 60

    # Mid-run: some tasks done, and the victim running some (3 nodes × 2 workers, ~50 s of work in all).
    def done_count():
        return sum(len(f.done_ids()) for f in followers)

    wait_until(lambda: done_count() >= 6, 30, "the first 6 done events")

    def victim_running():  # the victim's running tasks, as listed by a survivor
        # Kill only while one of them has a second of sleep left: on a loaded machine the listing and the
        # kill can be a few hundred milliseconds apart, and the test needs a task that is cut off.
        now = datetime.now(timezone.utc)
        running = [t for t in all_tasks(api, by_name["node-a"]).values()
                   if t["status"] == "running" and t.get("node") == victim and t.get("startedAt")]  # claimed, not yet started: skip
        time_left = [iso(t["startedAt"]) + timedelta(milliseconds=tasks[t["id"]]["ms"]) - now for t in running]
        if not any(left > timedelta(seconds=1) for left in time_left):
            return None
        return [t["id"] for t in running]

    running_on_victim = set(wait_until(victim_running, 15, f"{victim} to run a task", 0.05))
    cluster.kill(victim)
    killed_at = datetime.now(timezone.utc)
    done_before_kill = done_count()
    assert done_before_kill < 50, "the kill came too late to test anything"

    # The victim leaves the node list and the client list once its lease has expired.
    for name in survivors:
        node = by_name[name]
        wait_until(lambda: set(nodes_of(api, node)) == set(survivors), LEASE_TIMEOUT + 10,
                   f"{name}'s /api/v1/nodes to drop {victim}")
        wait_until(lambda: not [cl for cl in clients_of(api, node) if cl.get("node") == victim],
                   LEASE_TIMEOUT + 10, f"{name}'s /api/v1/clients to drop the clients of {victim}")

    # The cluster goes on: a few more tasks, on the survivors only.
    for i, uid in enumerate(uids):
        node, msg = by_name[survivors[i % 2]], {"cmd": "echo", "args": {"after": i}}
        if i % 3 == 0:
            task = rest_submit(api, node, dict(msg, uid=uid))
        elif i % 3 == 1:
            task = poll_submit(api, node, uid, msg)["task"]
        else:
            (reply,) = ws_submit(node, uid, [msg], contract)
            assert reply["code"] == 202, reply
            task = reply["task"]
        tasks[task["id"]] = {"uid": uid, "node": survivors[i % 2], "via": "after", "ms": 0}

    # Every task ends (bounded), each exactly once.
    finals = wait_all_final(api, by_name["node-a"], set(tasks), 60, cluster.diag)
    expected_by_uid = {uid: {t for t, info in tasks.items() if info["uid"] == uid} for uid in uids}
    for f in followers:
        wait_until(lambda: expected_by_uid[f.uid] <= set(f.done_ids()), 30,
                   f"every done event of {f.uid} ({f.transport}, sessions {f.sessions})")
    time.sleep(1.5)  # room for a late duplicate to show up
    for f in followers:
        f.stop()

    problems = [f"{f.uid}: {e}" for f in followers for e in f.errors]
    assert not problems, "\n".join(problems) + cluster.diag()
    for f in followers:
        events = f.snapshot()
        what = f"{f.uid} ({f.transport}, sessions {[(s['port'], s['cursor']) for s in f.sessions]})"
        assert_gapless(events, what)
        counts = Counter(done_ids(events))
        assert set(counts) == expected_by_uid[f.uid], f"{what}: done events for other tasks: " \
                                                      f"{set(counts) ^ expected_by_uid[f.uid]}"
        assert all(n == 1 for n in counts.values()), f"{what}: repeated done events: " \
                                                     f"{ {t: n for t, n in counts.items() if n > 1} }"
        for e in events:
            # Events carry no uid (what changed only): the task must be one this uid submitted.
            assert (tasks.get(e["task"]["id"]) or {}).get("uid") == f.uid, f"{what}: an event of another uid: {strip(e)}"
            if e["type"] == "done":
                assert e["task"]["status"] == finals[e["task"]["id"]]["status"], (strip(e), finals[e["task"]["id"]])
    for f in followers[2:4]:  # the victim's clients resumed on a survivor, with their cursor
        assert len(f.sessions) >= 2, f"{f.uid} never reconnected: {f.sessions} {f.drops}"
        assert f.sessions[-1]["port"] != by_name[victim].port, f.sessions

    for tid, task in finals.items():
        assert task["status"] == "succeeded", task
        assert task["uid"] == tasks[tid]["uid"], task
        assert task.get("node") in NODES3, task
        assert task["attempts"] >= 1, task
    # The victim's running tasks were reclaimed after the lease and ran again on a survivor (unless one finished
    # in the few milliseconds between the listing and the kill). Only a reclaim starts a sleep task twice.
    reclaimed = [finals[t] for t in running_on_victim
                 if finals[t]["attempts"] >= 2 and finals[t].get("node") in survivors]
    ran_twice = [task for task in finals.values() if task["attempts"] >= 2]
    assert all(task.get("node") in survivors for task in ran_twice), \
        f"a task started more than once did not end on a survivor: {ran_twice}"
    finished_in_time = [finals[t] for t in running_on_victim
                        if finals[t].get("node") == victim and iso(finals[t]["finishedAt"]) <= killed_at]
    assert len(reclaimed) + len(finished_in_time) == len(running_on_victim), \
        f"tasks running on {victim} at the kill: {[finals[t] for t in running_on_victim]}"
    assert reclaimed, f"no task of {victim} was reclaimed: {[finals[t] for t in running_on_victim]}"
    for t in finals.values():
        assert t.get("node") != victim or iso(t["finishedAt"]) <= killed_at, f"{victim} finished a task after its death: {t}"


# --------------------------------------------------------------------------- PostgreSQL restart mid-run


def test_database_restart_mid_run(cluster, api, contract, postgres):
    n1, n2 = cluster.start(["node-a", "node-b"], "--task-workers", "2")
    uid1, uid2 = new_uid("db1"), new_uid("db2")
    rng = random.Random(7)
    refused_ids = [f"refused-{uuid.uuid4().hex[:10]}-{i}" for i in range(6)]
    pg_stopped = False

    async def body():
        nonlocal pg_stopped
        ws1 = await ws_open(n1, uid1, contract, cursor=0)
        ws2 = await ws_open(n2, uid2, contract, cursor=0)
        owner = {uid1: ws1, uid2: ws2}
        accepted: dict[str, str] = {}  # task id -> uid
        for ws, uid in ((ws1, uid1), (ws2, uid2)):
            for _ in range(5):
                reply = await ws.request({"cmd": "sleep", "args": {"ms": rng.randint(1500, 3000)}})
                assert reply["type"] == "submitted" and reply["code"] == 202, reply
                accepted[reply["task"]["id"]] = uid
        for _ in range(2):  # cross-node: uid1's tasks by REST on node-b, uid2's by POST /poll on node-a
            t = await asyncio.to_thread(rest_submit, api, n2, {"cmd": "sleep", "args": {"ms": 1500}, "uid": uid1})
            accepted[t["id"]] = uid1
            t = (await asyncio.to_thread(poll_submit, api, n1, uid2, {"cmd": "sleep", "args": {"ms": 1500}}))["task"]
            accepted[t["id"]] = uid2
        # Tasks are running (progress seen) when PostgreSQL goes.
        await ws1.wait_for(lambda m: m.get("type") == "progress", 15, "a progress event on node-a")

        await asyncio.to_thread(postgres.stop, "fast")
        pg_stopped = True

        def unhealthy(node):
            status, h = health(api, node)
            return (status, h) if status == 503 else None

        for name, node in (("node-a", n1), ("node-b", n2)):
            status, h = await asyncio.to_thread(wait_until, lambda: unhealthy(node), 15,
                                                f"{name} to report unhealthy", 0.2)
            assert h["status"] == "unhealthy" and h["database"] == "unreachable", h
            assert h["node"] == name and h["store"] == "postgres", h
        # New submits are refused on every door of both nodes; the sockets stay open.
        ids = iter(refused_ids)
        for ws, uid, node in ((ws1, uid1, n1), (ws2, uid2, n2)):
            reply = await ws.request({"cmd": "echo", "args": {"id": next(ids)}}, timeout=10)
            assert reply["type"] == "error" and reply["code"] == 503, reply
            r = await asyncio.to_thread(api.post, f"{node.base_url}/api/v1/tasks",
                                        json={"cmd": "echo", "id": next(ids), "uid": uid})
            assert r.status_code == 503 and r.json()["code"] == 503, r.text
            r = await asyncio.to_thread(api.post, f"{node.base_url}/poll", params={"uid": uid},
                                        json={"cmd": "echo", "args": {"id": next(ids)}})
            assert r.status_code == 503 and r.json()["code"] == 503 and r.json()["type"] == "error", r.text
            await ws.ping(timeout=5)
        # The node list lives in the database: 503, not a list that pretends.
        r = await asyncio.to_thread(api.get, f"{n1.base_url}/api/v1/nodes")
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        await asyncio.sleep(1.0)
        for ws in (ws1, ws2):
            await ws.ping(timeout=5)

        await asyncio.to_thread(postgres.start)
        pg_stopped = False

        def healthy(node):
            status, h = health(api, node)
            return h if status == 200 and h["database"] == "ok" else None

        for name, node in (("node-a", n1), ("node-b", n2)):
            h = await asyncio.to_thread(wait_until, lambda: healthy(node), 30, f"{name} to recover", 0.2)
            assert h["status"] == "ok", h

        # Everything accepted before the stop ends exactly once, its done delivered to the open sockets.
        finals = await asyncio.to_thread(wait_all_final, api, n1, set(accepted), 60, cluster.diag)
        assert all(t["status"] == "succeeded" for t in finals.values()), finals
        for uid, ws in owner.items():
            for tid in (t for t, u in accepted.items() if u == uid):
                await ws.wait_for(lambda m, tid=tid: m.get("type") == "done" and m["task"]["id"] == tid, 30,
                                  f"the done event of {tid} on {uid}'s socket")
        for uid, ws in owner.items():
            await ws.assert_silent(1.0)
            events = ws.events()
            assert_gapless(events, f"{uid}'s socket across the database restart")
            counts = Counter(done_ids(events))
            mine = {t for t, u in accepted.items() if u == uid}
            assert set(counts) == mine and all(n == 1 for n in counts.values()), counts
        # The refused submits were not stored.
        for rid in refused_ids:
            r = await asyncio.to_thread(api.get, f"{n1.base_url}/api/v1/tasks/{rid}")
            assert r.status_code == 404, f"a submit refused with 503 was stored: {r.text}"
        # The log itself agrees: the other node replays exactly what the socket saw.
        for uid, ws, other in ((uid1, ws1, n2), (uid2, ws2, n1)):
            seen = ws.events()
            replay = await ws_open(other, uid, contract, cursor=0)
            last = seen[-1]["seq"]
            await replay.wait_for(lambda m: m.get("seq") == last, 15, f"the replay of {uid} up to {last}")
            key = lambda e: (e["seq"], e["type"], e["task"]["id"], e["task"]["status"])
            assert [key(e) for e in replay.events()] == [key(e) for e in seen], uid
        # New submits work again, on both nodes.
        for ws, node, uid in ((ws1, n1, uid1), (ws2, n2, uid2)):
            reply = await ws.request({"cmd": "echo", "args": {"again": 1}})
            assert reply["code"] == 202, reply
            await ws.events_until_done(reply["task"]["id"], 15)
            t = await asyncio.to_thread(rest_submit, api, node, {"cmd": "echo", "uid": uid})
            await ws.events_until_done(t["id"], 15)

    try:
        run(body(), timeout=150)
    finally:
        if pg_stopped or not postgres.is_running():
            postgres.start()
