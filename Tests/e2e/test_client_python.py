"""The Python client package for backends (clients/python, `taskgate_client`) against the real server.

Both forms, `Client` (httpx.Client) and `AsyncClient` (httpx.AsyncClient): submit (202), an idempotent resubmit
(200, the same task), status, lists with filters, cancelling a long task, waiting by long-poll (a task finished
before the wait, one that finishes during it, a uid-less one, several at once, the timeout), the errors (404, 401,
403, transport failures and timeouts), and user tokens: HS256 as `taskgate token` mints them, accepted by a
token-mode server; RS256 checked with PyJWT, and accepted by a server given the public key (`--token-key`).

Every answer the client gets goes through an httpx event hook that checks it against openapi.yaml. The package is
used as installed (scripts/install-test-deps.sh installs it); a test checks that the installed copy is this
checkout's.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from conftest import ADMIN_TOKEN, REPO, TASKGATE_BIN, ServerHandle, new_uid, require_flags, run, wait_until

try:
    import httpx
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    import taskgate_client
    from taskgate_client import (
        AsyncClient,
        Client,
        Task,
        TaskGateError,
        TaskGateException,
        TransportError,
        TransportTimeout,
        WaitTimeout,
        mint_token,
    )
    IMPORT_ERROR: ImportError | None = None
except ImportError as e:  # reported by the autouse fixture below, so that the rest of the suite still runs
    IMPORT_ERROR = e

SECRET = "python-client-secret-0123456789-abcdef"
PACKAGE_SRC = REPO / "clients" / "python" / "src" / "taskgate_client"
NO_PROXY = {"http": None, "https": None}


@pytest.fixture(autouse=True)
def _package_installed():
    if IMPORT_ERROR is not None:
        pytest.fail(f"{IMPORT_ERROR}: install the client and its test dependencies with scripts/install-test-deps.sh "
                    f"(python3 -m pip install -r Tests/e2e/requirements.txt './clients/python[rs256]')")


# --------------------------------------------------------------------------- plumbing


class Recorder:
    """httpx response hooks: checks every answer against openapi.yaml and records (method, path, status)."""

    def __init__(self, contract):
        self.contract = contract
        self.seen: list[tuple[str, str, int]] = []

    def _check(self, response: "httpx.Response") -> None:
        request = response.request
        self.seen.append((request.method, request.url.path, response.status_code))
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return  # GET /sse: a stream the client reads one frame of; not read to the end here
        problems = self.contract.check(request.method, str(request.url), response.status_code,
                                       response.headers.get("content-type", ""), response.content)
        if problems:
            self.contract.violations.extend(problems)
            raise AssertionError("OpenAPI drift:\n  " + "\n  ".join(problems))

    def sync_hook(self, response: "httpx.Response") -> None:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        self._check(response)

    async def async_hook(self, response: "httpx.Response") -> None:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
        self._check(response)

    def statuses(self, method: str, path: str) -> list[int]:
        return [status for m, p, status in self.seen if m == method and p == path]


@pytest.fixture
def recorder(contract) -> Recorder:
    return Recorder(contract)


def sync_client(srv: ServerHandle, recorder: Recorder, token: str | None = ADMIN_TOKEN, **kwargs) -> "Client":
    http = httpx.Client(trust_env=False, event_hooks={"response": [recorder.sync_hook]})
    client = Client(srv.base_url, token, http_client=http, **kwargs)
    client._test_http = http  # closed by the fixture / the caller
    return client


def async_client(srv: ServerHandle, recorder: Recorder, token: str | None = ADMIN_TOKEN, **kwargs) -> "AsyncClient":
    http = httpx.AsyncClient(trust_env=False, event_hooks={"response": [recorder.async_hook]})
    client = AsyncClient(srv.base_url, token, http_client=http, **kwargs)
    client._test_http = http
    return client


@pytest.fixture
def tg(token_server, recorder):
    client = sync_client(token_server, recorder)
    yield client
    client.close()
    client._test_http.close()


def poll_command(srv: ServerHandle, message: dict, token: str | None = None, bearer: str | None = None,
                 ) -> requests.Response:
    """POST /poll as a browser in token mode would (the token in ?token=, or as a bearer)."""
    params = {"token": token} if token is not None else {}
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return requests.post(f"{srv.base_url}/poll", params=params, headers=headers, json=message, timeout=10,
                         proxies=NO_PROXY)


def token_server_args(*extra: str) -> list[str]:
    return ["--auth", "token", "--admin-token", ADMIN_TOKEN, "--store", "memory", *extra]


def rsa_key(bits: int = 2048) -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def jwt_parts(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


# --------------------------------------------------------------------------- the package itself


def test_installed_package_is_this_checkout():
    """The suite runs the package as pip installed it: its metadata, the py.typed marker, and the same sources."""
    from importlib import metadata

    assert metadata.version("taskgate-client") == taskgate_client.__version__
    installed = Path(taskgate_client.__file__).resolve().parent
    assert (installed / "py.typed").exists(), f"py.typed missing from the installed package at {installed}"
    for source in sorted(PACKAGE_SRC.glob("*.py")):
        copy = installed / source.name
        assert copy.exists() and copy.read_bytes() == source.read_bytes(), (
            f"the installed taskgate_client ({installed}) is not this checkout's ({source.name} differs): "
            f"python3 -m pip install './clients/python[rs256]'")
    requires = metadata.requires("taskgate-client") or []
    assert any(r.startswith("httpx") for r in requires), requires
    assert any("cryptography" in r and "rs256" in r for r in requires), requires


# --------------------------------------------------------------------------- Client (blocking)


def test_submit_resubmit_status_and_list(tg, recorder):
    uid = new_uid("py")
    first = tg.submit("echo", {"n": 1}, uid=uid, id="job-1")
    assert isinstance(first, Task)
    assert (first.id, first.uid, first.cmd, first.duplicate) == (f"{uid}~job-1", uid, "echo", False)
    assert first.args["n"] == 1 and first.status in ("queued", "running", "succeeded")
    assert first.created_at is not None and first.created_at.tzinfo is not None
    assert recorder.statuses("POST", "/api/v1/tasks") == [202]

    again = tg.submit("echo", {"n": 2}, uid=uid, id="job-1")       # the same id of the same uid: not run again
    assert again.duplicate and again.id == first.id and again.args["n"] == 1
    assert again.created_at == first.created_at
    assert recorder.statuses("POST", "/api/v1/tasks") == [202, 200]

    done = tg.wait(first.id, timeout=15)
    assert done.status == "succeeded" and done.is_final and done.succeeded
    assert done.result["n"] == 1 and done.finished_at is not None
    assert tg.task(first.id).status == "succeeded"

    second = tg.submit("sleep", {"ms": 60000}, uid=uid)
    assert second.id.startswith("t-") and not second.duplicate
    try:
        assert {t.id for t in tg.tasks(uid=uid)} == {first.id, second.id}
        assert [t.id for t in tg.tasks(uid=uid, limit=1)] == [second.id]          # newest first
        assert [t.id for t in tg.tasks(uid=uid, status="succeeded")] == [first.id]
        assert tg.tasks(uid=uid, status="failed") == []
        assert len(tg.tasks(limit=2)) <= 2
    finally:
        tg.cancel(second.id)
    assert tg.wait(second.id, timeout=15).status == "cancelled"

    with pytest.raises(TaskGateError) as bad_status:
        tg.tasks(status="bogus")  # type: ignore[arg-type]
    assert (bad_status.value.status, bad_status.value.error) == (400, "bad_request")
    with pytest.raises(TaskGateError) as bad_limit:
        tg.tasks(limit=0)
    assert bad_limit.value.status == 400


def test_uidless_task_and_unknown_handler(tg):
    task = tg.submit("sleep", {"ms": 200})
    assert task.uid is None
    done = tg.wait(task.id, timeout=15)                 # no uid, no events: waited for by its status
    assert (done.status, done.result) == ("succeeded", {"slept_ms": 200})

    named = tg.submit("echo", {"x": 1}, id=f"nouid-{new_uid()}")
    assert named.id.startswith("~nouid-")
    assert tg.task(named.id[1:]).id == named.id         # a uid-less task is found by the id it was given, too

    with pytest.raises(TaskGateError) as unknown:
        tg.submit("no-such-handler", {})
    assert (unknown.value.status, unknown.value.error) == (404, "unknown_command")


def test_task_ids_are_percent_encoded(tg):
    uid = f"py@example.com:{new_uid()}"                 # '@' and ':' in the uid, '~' in the scoped id
    task = tg.submit("echo", {"v": "x"}, uid=uid, id="a.b:c-1")
    assert task.id == f"{uid}~a.b:c-1"
    assert tg.task(task.id).uid == uid
    assert tg.wait(task.id, timeout=15).result["v"] == "x"
    with pytest.raises(TaskGateError) as err:
        tg.task(task.id + "/../x")                      # one path segment (%2F), whatever is in it: no other route
    assert err.value.status in (400, 404)


def test_cancel_a_long_sleep(tg):
    uid = new_uid("py")
    task = tg.submit("sleep", {"ms": 60000}, uid=uid)
    wait_until(lambda: tg.task(task.id).status == "running", 10, "the sleep to start")
    cancelling = tg.cancel(task.id)
    assert cancelling.id == task.id and cancelling.status in ("running", "cancelled")
    final = tg.wait(task.id, timeout=15)
    assert final.status == "cancelled" and final.error
    with pytest.raises(TaskGateError) as again:
        tg.cancel(task.id)
    assert (again.value.status, again.value.error) == (409, "already_finished")


def test_wait_times_out(tg):
    uid = new_uid("py")
    task = tg.submit("sleep", {"ms": 60000}, uid=uid)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        tg.wait(task.id, timeout=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.0, elapsed
    assert isinstance(timed_out.value, TimeoutError) and isinstance(timed_out.value, TaskGateException)
    assert timed_out.value.task.id == task.id and timed_out.value.task.status in ("queued", "running")
    with pytest.raises(WaitTimeout):
        tg.wait(task.id, timeout=0)
    tg.cancel(task.id)
    assert tg.wait(task.id, timeout=15).status == "cancelled"


def test_wait_returns_a_task_that_finished_before_it(token_server, recorder, tg):
    uid = new_uid("py")
    task = tg.submit("echo", {"early": True}, uid=uid)
    wait_until(lambda: tg.task(task.id).is_final, 10, "the echo task to finish")
    fresh = sync_client(token_server, recorder)         # no cursor remembered for the uid
    try:
        started = time.monotonic()
        assert fresh.wait(task.id, timeout=20).result == {"early": True}
        assert time.monotonic() - started < 2.0
    finally:
        fresh.close()
        fresh._test_http.close()


def test_wait_follows_progress_on_a_uid_with_history(token_server, recorder, tg):
    uid = new_uid("py")
    earlier = [tg.submit("echo", {"i": i}, uid=uid) for i in range(5)]
    for t in earlier:
        tg.wait(t.id, timeout=15)
    fresh = sync_client(token_server, recorder)
    try:
        task = fresh.submit("sleep", {"ms": 1500}, uid=uid)
        progress: list[Task] = []
        sse_before = len(recorder.statuses("GET", "/sse"))
        done = fresh.wait(task.id, timeout=20, on_progress=progress.append)
        assert (done.status, done.result) == ("succeeded", {"slept_ms": 1500})
        # Events carry what changed; wait() still returns the whole task, and on_progress gets it merged.
        assert (done.cmd, done.uid, done.args) == ("sleep", uid, {"ms": 1500}), done
        assert done.finished_at is not None and done.started_at is not None and done.attempts == 1, done
        assert done.progress == pytest.approx(1.0) and set(done.raw) >= {"createdAt", "finishedAt", "args"}, done
        assert progress and all(p.id == task.id and p.status == "running" for p in progress), progress
        assert all(p.cmd == "sleep" and p.args == {"ms": 1500} and p.uid == uid for p in progress), progress
        assert [p.progress for p in progress] == sorted(p.progress for p in progress)
        # Long-polled (the latest seq from the SSE hello, then GET /poll), not by reading the status over and over.
        assert recorder.statuses("GET", "/sse")[sse_before:] == [200], recorder.seen
        polls = recorder.statuses("GET", "/poll")
        assert polls and set(polls) == {200}, recorder.seen
        assert len(recorder.statuses("GET", f"/api/v1/tasks/{task.id}")) <= 3, recorder.seen
        # A second wait of the same client starts from the cursor it saw last: no SSE request this time.
        again = fresh.submit("sleep", {"ms": 300}, uid=uid)
        assert fresh.wait(again.id, timeout=15).result == {"slept_ms": 300}
        assert len(recorder.statuses("GET", "/sse")) == sse_before + 1, recorder.seen
    finally:
        fresh.close()
        fresh._test_http.close()


def test_unknown_task_is_404(tg):
    for call in (tg.task, tg.cancel, lambda i: tg.wait(i, timeout=5)):
        with pytest.raises(TaskGateError) as err:
            call("no-such-task-" + new_uid())
        assert (err.value.status, err.value.code, err.value.error) == (404, 404, "not_found")
        assert err.value.info and isinstance(err.value.body, dict) and err.value.body["type"] == "error"
    with pytest.raises(ValueError):
        tg.task("")


def test_bad_admin_token_is_refused(token_server, start_server, recorder):
    for token in ("wrong-token", None):
        client = sync_client(token_server, recorder, token=token)
        try:
            with pytest.raises(TaskGateError) as err:
                client.submit("echo", {})
            assert (err.value.status, err.value.error) == (401, "unauthorized")
            with pytest.raises(TaskGateError) as err:
                client.tasks()
            assert err.value.status == 401
        finally:
            client._test_http.close()
    # Token mode without an admin token: no admin at all, from loopback neither.
    srv = start_server("--auth", "token", "--token-secret", SECRET, "--store", "memory")
    client = sync_client(srv, recorder, token=None)
    try:
        with pytest.raises(TaskGateError) as err:
            client.tasks()
        assert (err.value.status, err.value.error) == (403, "forbidden")
    finally:
        client._test_http.close()


def test_transport_failures_and_timeouts():
    with socket.socket() as s:                          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{closed_port}", ADMIN_TOKEN, timeout=2) as client:
        with pytest.raises(TransportError) as err:
            client.task("x")
        assert not isinstance(err.value, TaskGateError)

    with socket.socket() as silent:                     # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with Client(f"http://127.0.0.1:{silent.getsockname()[1]}", ADMIN_TOKEN, timeout=0.5) as client:
            started = time.monotonic()
            with pytest.raises(TransportTimeout):
                client.submit("echo", {})
            assert time.monotonic() - started < 5

    for bad in ("127.0.0.1:9501", "ftp://127.0.0.1", "http://127.0.0.1:9501/?x=1"):
        with pytest.raises(ValueError):
            Client(bad)
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:9501", "two words")


def test_default_http_client(token_server, monkeypatch):
    """Without http_client the client makes its own httpx.Client (loopback here: no proxy from the environment)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with Client(token_server.base_url + "/", admin_token=ADMIN_TOKEN) as client:
        task = client.submit("echo", {"plain": True}, uid=new_uid("py"))
        assert client.wait(task.id, timeout=15).result == {"plain": True}

    async def main():
        async with AsyncClient(token_server.base_url, admin_token=ADMIN_TOKEN) as client:
            task = await client.submit("echo", {"plain": 2}, uid=new_uid("py"))
            return await client.wait(task.id, timeout=15)

    assert run(main()).result == {"plain": 2}

    monkeypatch.setenv("TASKGATE_URL", token_server.base_url)
    monkeypatch.setenv("TASKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    with Client.from_env(timeout=5) as client:
        assert (client.base_url, client.timeout) == (token_server.base_url, 5.0)
        assert client.tasks(limit=1) is not None
    from_env = AsyncClient.from_env()
    assert isinstance(from_env, AsyncClient) and from_env.base_url == token_server.base_url
    run(from_env.aclose())
    monkeypatch.setenv("TASKGATE_ADMIN_TOKEN", "wrong")
    with Client.from_env() as client, pytest.raises(TaskGateError) as denied:
        client.tasks()
    assert denied.value.status == 401


# --------------------------------------------------------------------------- AsyncClient


def test_async_client_end_to_end(token_server, recorder):
    async def main():
        tg = async_client(token_server, recorder)
        try:
            uid = new_uid("pya")
            first = await tg.submit("echo", {"n": 1}, uid=uid, id="job-1")
            assert (first.id, first.duplicate) == (f"{uid}~job-1", False)
            again = await tg.submit("echo", {"n": 2}, uid=uid, id="job-1")
            assert again.duplicate and again.id == first.id
            assert recorder.statuses("POST", "/api/v1/tasks") == [202, 200]
            done = await tg.wait(first.id, timeout=15)
            assert done.status == "succeeded" and done.result["n"] == 1
            assert (await tg.task(first.id)).status == "succeeded"

            slow = await tg.submit("sleep", {"ms": 60000}, uid=uid)
            assert [t.id for t in await tg.tasks(uid=uid, status="succeeded")] == [first.id]
            assert [t.id for t in await tg.tasks(uid=uid, limit=1)] == [slow.id]
            started = time.monotonic()
            with pytest.raises(WaitTimeout):
                await tg.wait(slow.id, timeout=1.0)
            assert 1.0 <= time.monotonic() - started < 4.0
            cancelling = await tg.cancel(slow.id)
            assert cancelling.id == slow.id
            assert (await tg.wait(slow.id, timeout=15)).status == "cancelled"
            with pytest.raises(TaskGateError) as finished:
                await tg.cancel(slow.id)
            assert finished.value.status == 409

            progressed: list[float] = []

            async def on_progress(task: Task) -> None:   # a coroutine function is awaited
                progressed.append(task.progress)

            sleeper = await tg.submit("sleep", {"ms": 1500}, uid=uid)
            assert (await tg.wait(sleeper.id, timeout=20, on_progress=on_progress)).status == "succeeded"
            assert progressed and progressed == sorted(progressed)

            with pytest.raises(TaskGateError) as missing:
                await tg.task("no-such-task")
            assert (missing.value.status, missing.value.error) == (404, "not_found")
            with pytest.raises(TaskGateError) as bad:
                await tg.tasks(limit=5000)
            assert bad.value.status == 400
        finally:
            await tg._test_http.aclose()

        wrong = async_client(token_server, recorder, token="wrong-token")
        try:
            with pytest.raises(TaskGateError) as denied:
                await wrong.submit("echo", {})
            assert (denied.value.status, denied.value.error) == (401, "unauthorized")
        finally:
            await wrong._test_http.aclose()

    run(main(), timeout=90)


def test_async_waits_run_concurrently(token_server, recorder):
    async def main():
        tg = async_client(token_server, recorder)
        try:
            uid = new_uid("pya")
            tasks = [await tg.submit("sleep", {"ms": ms}, uid=uid) for ms in (900, 300, 600)]
            uidless = await tg.submit("sleep", {"ms": 300})
            started = time.monotonic()
            done = await asyncio.gather(*(tg.wait(t.id, timeout=20) for t in [*tasks, uidless]))
            assert [d.id for d in done] == [t.id for t in [*tasks, uidless]]
            assert [d.result for d in done] == [{"slept_ms": ms} for ms in (900, 300, 600, 300)]
            assert time.monotonic() - started < 10       # side by side, not one after the other
        finally:
            await tg._test_http.aclose()

    run(main(), timeout=60)


def test_async_transport_errors():
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        async with AsyncClient(f"http://127.0.0.1:{port}", timeout=2) as client:
            with pytest.raises(TransportError):
                await client.tasks()

    run(main(), timeout=20)


# --------------------------------------------------------------------------- user tokens


def test_hs256_tokens_match_the_cli_and_are_accepted(start_server, recorder):
    srv = start_server(*token_server_args("--token-secret", SECRET))
    uid = new_uid("tok")
    ours = mint_token(uid, 600, secret=SECRET)
    cli = subprocess.run([str(TASKGATE_BIN), "token", uid, "--secret", SECRET, "--ttl", "600"],
                         capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                         env={k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")})
    assert cli.returncode == 0, cli.stderr
    theirs = cli.stdout.strip()
    (our_header, our_claims), (their_header, their_claims) = jwt_parts(ours), jwt_parts(theirs)
    assert our_header == their_header == {"alg": "HS256", "typ": "JWT"}
    assert set(our_claims) == set(their_claims) == {"sub", "exp", "iat"}
    assert our_claims["sub"] == their_claims["sub"] == uid
    assert our_claims["exp"] - our_claims["iat"] == their_claims["exp"] - their_claims["iat"] == 600
    assert abs(our_claims["iat"] - their_claims["iat"]) <= 30
    for token in (ours, theirs):                         # each verifies with the shared secret (PyJWT)
        assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == uid

    # The server takes our token in ?token= and as a bearer, on POST and GET /poll.
    for kwargs in ({"token": ours}, {"bearer": ours}, {"token": theirs}):
        r = poll_command(srv, {"cmd": "ping", "ref": "p"}, **kwargs)
        assert (r.status_code, r.json()["type"]) == (200, "pong"), (kwargs, r.text)
    r = requests.get(f"{srv.base_url}/poll", params={"token": ours, "timeout": 0}, timeout=10, proxies=NO_PROXY,
                     headers={"Connection": "close"})
    assert r.status_code == 200 and r.json()["events"] == [], r.text

    # The uid comes from the token; the backend (admin token) waits for the user's task as that uid.
    r = poll_command(srv, {"cmd": "sleep", "args": {"ms": 300}, "ref": "s"}, token=ours)
    assert r.status_code == 202, r.text
    submitted = r.json()["task"]
    assert submitted["uid"] == uid
    backend = sync_client(srv, recorder)
    try:
        assert backend.wait(submitted["id"], timeout=15).result == {"slept_ms": 300}
        assert recorder.statuses("GET", "/sse") == [200]     # the admin token may listen as the uid in token mode
        mine = backend.submit("echo", {"for": "user"}, uid=uid)
        assert backend.wait(mine.id, timeout=15).result == {"for": "user"}
        assert Client.mint_token is mint_token and AsyncClient.mint_token is mint_token
    finally:
        backend._test_http.close()


def test_expired_and_forged_tokens_are_refused(start_server):
    srv = start_server(*token_server_args("--token-secret", SECRET))
    uid = new_uid("tok")
    expired = mint_token(uid, 60, secret=SECRET, now=time.time() - 7200)    # expired an hour and 59 minutes ago
    forged = mint_token(uid, 600, secret="not-the-servers-secret-at-all-0123456789")
    for token in (expired, forged):
        r = poll_command(srv, {"cmd": "ping"}, token=token)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), r.text
        r = poll_command(srv, {"cmd": "ping"}, bearer=token)
        assert r.status_code == 401, r.text
    assert "expired" in poll_command(srv, {"cmd": "ping"}, token=expired).json()["info"]
    assert poll_command(srv, {"cmd": "ping"}, token=mint_token(uid, 600, secret=SECRET)).status_code == 200


def test_mint_token_checks_its_arguments():
    private, _ = rsa_key()
    small, _ = rsa_key(1024)
    bad_calls: list[Callable[[], Any]] = [
        lambda: mint_token("alice", 60),                                           # no key
        lambda: mint_token("alice", 60, secret=SECRET, private_key_pem=private),   # two keys
        lambda: mint_token("alice", 60, secret="short"),                           # < 32 bytes: the server refuses it
        lambda: mint_token("al ice", 60, secret=SECRET),                           # not a uid
        lambda: mint_token("alice", 0, secret=SECRET),
        lambda: mint_token("alice", 1.5, secret=SECRET),                           # type: ignore[arg-type]
        lambda: mint_token("alice", 60, secret=SECRET, algorithm="RS256"),
        lambda: mint_token("alice", 60, private_key_pem=private, algorithm="HS256"),
        lambda: mint_token("alice", 60, secret=SECRET, algorithm="none"),
        lambda: mint_token("alice", 60, private_key_pem=b"not a key"),
        lambda: mint_token("alice", 60, private_key_pem=small),                   # < 2048 bits
        lambda: mint_token("alice", 60, secret=SECRET, kid=""),
        lambda: mint_token("alice", 60, secret=SECRET, audience=[]),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()


def test_rs256_tokens_verify_with_pyjwt():
    private, public = rsa_key()
    other_private, _ = rsa_key()
    now = int(time.time())
    token = mint_token("alice@example.com", 900, private_key_pem=private.decode(), kid="web-1",
                       issuer="https://app.example.com", audience="taskgate", now=now)
    header, claims = jwt_parts(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "web-1"}
    assert claims == {"sub": "alice@example.com", "exp": now + 900, "iat": now, "iss": "https://app.example.com",
                      "aud": "taskgate"}
    verified = jwt.decode(token, public, algorithms=["RS256"], audience="taskgate", issuer="https://app.example.com")
    assert verified["sub"] == "alice@example.com"
    many = mint_token("bob", 60, private_key_pem=private, audience=["a", "taskgate"])
    assert jwt.decode(many, public, algorithms=["RS256"], audience="taskgate")["aud"] == ["a", "taskgate"]
    assert "kid" not in jwt.get_unverified_header(many)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(mint_token("alice", 60, private_key_pem=other_private), public, algorithms=["RS256"])
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(mint_token("alice", 60, private_key_pem=private, now=now - 3600), public, algorithms=["RS256"])


def test_rs256_tokens_are_accepted_by_a_token_key_server(start_server, tmp_path, recorder):
    """`--token-key PATH` with a PEM public key: its kid is the file's base name; a token without kid is checked
    against the only key."""
    require_flags("--token-key")
    private, public = rsa_key()
    other_private, _ = rsa_key()
    key_file = tmp_path / "web-1.pem"
    key_file.write_bytes(public)
    srv = start_server(*token_server_args("--token-key", str(key_file)))
    uid = new_uid("rsa")
    for token in (mint_token(uid, 600, private_key_pem=private, kid="web-1"),
                  mint_token(uid, 600, private_key_pem=private)):
        r = poll_command(srv, {"cmd": "ping"}, token=token)
        assert (r.status_code, r.json()["type"]) == (200, "pong"), r.text
        assert poll_command(srv, {"cmd": "ping"}, bearer=token).status_code == 200
    refused = {
        "another key": mint_token(uid, 600, private_key_pem=other_private, kid="web-1"),
        "an unknown kid": mint_token(uid, 600, private_key_pem=private, kid="web-2"),
        "expired": mint_token(uid, 60, private_key_pem=private, kid="web-1", now=time.time() - 7200),
        "HS256": mint_token(uid, 600, secret=SECRET),
    }
    for why, token in refused.items():
        r = poll_command(srv, {"cmd": "ping"}, token=token)
        assert (r.status_code, r.json().get("error")) == (401, "unauthorized"), (why, r.text)

    token = mint_token(uid, 600, private_key_pem=private, kid="web-1")
    r = poll_command(srv, {"cmd": "echo", "args": {"rs": 256}}, token=token)
    assert r.status_code == 202 and r.json()["task"]["uid"] == uid, r.text
    backend = sync_client(srv, recorder)
    try:
        assert backend.wait(r.json()["task"]["id"], timeout=15).result == {"rs": 256}
    finally:
        backend._test_http.close()


def test_rs256_issuer_and_audience_are_checked(start_server, tmp_path):
    require_flags("--token-key", "--token-issuer", "--token-audience")
    private, public = rsa_key()
    key_file = tmp_path / "backend.pem"
    key_file.write_bytes(public)
    srv = start_server(*token_server_args("--token-key", str(key_file), "--token-issuer", "https://app.example.com",
                                          "--token-audience", "taskgate"))
    uid = new_uid("rsa")

    def status(**claims) -> int:
        token = mint_token(uid, 600, private_key_pem=private, kid="backend", **claims)
        return poll_command(srv, {"cmd": "ping"}, token=token).status_code

    assert status(issuer="https://app.example.com", audience="taskgate") == 200
    assert status(issuer="https://app.example.com", audience=["other", "taskgate"]) == 200
    assert status(issuer="https://app.example.com", audience="other") == 401
    assert status(issuer="https://evil.example.com", audience="taskgate") == 401
    assert status(audience="taskgate") == 401                        # no iss
    assert status(issuer="https://app.example.com") == 401           # no aud


# --------------------------------------------------------------------------- wait()'s paths a real server rarely takes


def fake_task(status: str, uid: str | None = "u1", id: str = "u1~job") -> dict:
    return {"id": id, "cmd": "sleep", "uid": uid, "args": {"ms": 2000}, "status": status,
            "progress": 1.0 if status != "running" else 0.5,
            "result": {"ok": True} if status == "succeeded" else None,
            "error": "failed on purpose" if status == "failed" else None, "attempts": 1,
            "createdAt": "2026-11-25T20:00:00.123Z", "startedAt": "2026-11-25T20:00:00.130Z",
            "finishedAt": "2026-11-25T20:00:02.131Z" if status != "running" else None}


def progress_event(seq: int, progress: float = 0.5, id: str = "u1~job") -> dict:
    """A progress event as the server sends it: what changed, not the whole task."""
    return {"seq": seq, "task": {"attempts": 1, "id": id, "progress": progress, "status": "running"},
            "type": "progress"}


class FakeServer:
    """A scripted TaskGate for httpx.MockTransport: `statuses` are the task's successive states (the last repeats),
    `sse` the answer to GET /sse (the head of its hello, or an HTTP status), `polls` the successive GET /poll answers
    ((status, body); the last repeats). `hello_key`: what the hello calls the latest seq (`seq` before December
    2026)."""

    def __init__(self, statuses: list[str], sse: int | str, polls: list[tuple[int, dict]], hello_key: str = "head"):
        self.statuses, self.sse, self.polls, self.hello_key = list(statuses), sse, list(polls), hello_key
        self.log: list[str] = []

    def __call__(self, request: "httpx.Request") -> "httpx.Response":
        path = request.url.path
        self.log.append(f"{request.method} {path}" + (f"?{request.url.query.decode()}" if path == "/poll" else ""))
        if path.startswith("/api/v1/tasks/"):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return httpx.Response(200, json=fake_task(status))
        if path == "/sse":
            if isinstance(self.sse, str):
                return httpx.Response(int(self.sse), json={"type": "error", "code": int(self.sse), "error": "x",
                                                           "info": "x"})
            hello = json.dumps({"admin": True, self.hello_key: self.sse, "info": "connected", "reset": False,
                                "transport": "sse", "type": "hello", "uid": "u1"})
            return httpx.Response(200, headers={"Content-Type": "text/event-stream"},
                                  content=f"event: hello\ndata: {hello}\n\n: heartbeat\n\n".encode())
        if path == "/poll":
            status, body = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
            return httpx.Response(status, json=body)
        return httpx.Response(404, json={"type": "error", "code": 404, "error": "not_found", "info": path})


def fake_client(fake: FakeServer) -> "Client":
    return Client("http://taskgate.invalid", "s3cret", http_client=httpx.Client(transport=httpx.MockTransport(fake)))


def done_event(seq: int, status: str = "succeeded", id: str = "u1~job") -> dict:
    """A done event as the server sends it: the outcome (id, status, result, error), not the whole task."""
    task = fake_task(status, id=id)
    return {"code": 200, "info": "task finished", "seq": seq,
            "task": {k: task[k] for k in ("error", "id", "result", "status")}, "type": "done"}


@pytest.mark.parametrize("hello_key", ["head", "seq"], ids=["head", "older-server-seq"])
def test_wait_done_between_the_first_read_and_the_latest_seq(hello_key):
    fake = FakeServer(["running", "succeeded"], sse=7, polls=[(200, {"events": [], "cursor": 7, "reset": False})],
                      hello_key=hello_key)
    assert fake_client(fake).wait("u1~job", timeout=5).status == "succeeded"
    assert fake.log == ["GET /api/v1/tasks/u1~job", "GET /sse", "GET /api/v1/tasks/u1~job"]   # no poll needed


def test_wait_from_the_hellos_head_returns_the_whole_task_after_the_done_event():
    fake = FakeServer(["running", "running", "succeeded"], sse=7, polls=[
        (200, {"events": [progress_event(8, 0.25), progress_event(9, 0.75)], "cursor": 9, "reset": False}),
        (200, {"events": [done_event(10)], "cursor": 10, "reset": False}),
    ])
    seen: list[Task] = []
    done = fake_client(fake).wait("u1~job", timeout=5, on_progress=seen.append)
    # The polls start at the hello's head; the progress tasks are the task read, the events merged in.
    assert "cursor=7" in [line for line in fake.log if line.startswith("GET /poll")][0], fake.log
    assert [(t.progress, t.cmd, t.args, t.status) for t in seen] == [(0.25, "sleep", {"ms": 2000}, "running"),
                                                                     (0.75, "sleep", {"ms": 2000}, "running")]
    # After the done event the task is read once more: the whole final task, as stored.
    assert fake.log[-1] == "GET /api/v1/tasks/u1~job", fake.log
    assert (done.status, done.result, done.cmd, done.args) == ("succeeded", {"ok": True}, "sleep", {"ms": 2000})
    assert done.finished_at is not None and done.progress == 1.0, done


def test_wait_without_sse_reads_the_log_from_zero():
    fake = FakeServer(["running", "running", "failed"], sse="403", polls=[
        (200, {"events": [progress_event(1)], "cursor": 1, "reset": True}),
        (200, {"events": [done_event(2, "failed")], "cursor": 2, "reset": False}),
    ])
    seen: list[float] = []
    done = fake_client(fake).wait("u1~job", timeout=5, on_progress=lambda t: seen.append(t.progress))
    assert done.status == "failed" and done.error == "failed on purpose" and seen == [0.5]
    assert done.cmd == "sleep" and done.finished_at is not None, done     # read after the done event
    polls = [line for line in fake.log if line.startswith("GET /poll")]
    assert "cursor=0" in polls[0] and "cursor=1" in polls[1], fake.log
    # the first read, one after the reset, and one after the done event
    assert fake.log.count("GET /api/v1/tasks/u1~job") == 3, fake.log


def test_wait_merges_the_done_event_when_the_read_after_it_fails():
    """The read after the done event fails (here: the task is gone, 404): wait() returns the task it had, with the
    done event's outcome merged in, rather than failing a wait whose answer it already has."""
    class Gone(FakeServer):
        def __call__(self, request):
            if request.url.path.startswith("/api/v1/tasks/") and self.log.count("GET /api/v1/tasks/u1~job") >= 2:
                self.log.append(f"{request.method} {request.url.path}")
                return httpx.Response(404, json={"type": "error", "code": 404, "error": "not_found", "info": "gone"})
            return super().__call__(request)

    fake = Gone(["running"], sse=3, polls=[(200, {"events": [done_event(4)], "cursor": 4, "reset": False})])
    done = fake_client(fake).wait("u1~job", timeout=5)
    assert (done.status, done.result, done.error) == ("succeeded", {"ok": True}, None), done
    assert (done.cmd, done.args) == ("sleep", {"ms": 2000}), done   # from the task as read before
    assert fake.log.count("GET /api/v1/tasks/u1~job") == 3, fake.log


def test_wait_backs_off_while_the_uid_has_too_many_polls():
    busy = {"type": "error", "code": 429, "error": "rate_limited", "info": "uid 'u1' already has 4 polls waiting"}
    fake = FakeServer(["running"], sse=3, polls=[(429, busy), (429, busy), (200, {"events": [done_event(4)],
                                                                                   "cursor": 4, "reset": False})])
    client = fake_client(fake)
    assert client.wait("u1~job", timeout=10).result == {"ok": True}
    assert [line.split("?")[0] for line in fake.log].count("GET /poll") == 3
    # The next wait of this client for the same uid starts at the cursor it saw (4), without GET /sse.
    fake.log.clear()
    fake.polls = [(200, {"events": [done_event(5)], "cursor": 5, "reset": False})]
    client.wait("u1~job", timeout=5)
    assert fake.log[0] == "GET /api/v1/tasks/u1~job" and "cursor=4" in fake.log[1], fake.log


def test_wait_raises_what_the_server_says_and_stops_at_its_deadline():
    fake = FakeServer(["running"], sse=3, polls=[(500, {"type": "error", "code": 500, "error": "internal_error",
                                                        "info": "boom"})])
    with pytest.raises(TaskGateError) as err:
        fake_client(fake).wait("u1~job", timeout=5)
    assert (err.value.status, err.value.error) == (500, "internal_error")

    # Empty answers long before the poll's timeout (a server shutting down, a proxy cutting polls): no busy loop.
    quiet = FakeServer(["running"], sse=3, polls=[(200, {"events": [], "cursor": 3, "reset": False})])
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        fake_client(quiet).wait("u1~job", timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 2.0
    assert 2 <= sum(line.startswith("GET /poll") for line in quiet.log) <= 6, quiet.log


# --------------------------------------------------------------------------- scheduling


def test_delayed_submit_is_scheduled_then_runs(tg):
    uid = new_uid("py")
    plain = tg.submit("echo", {"n": 0}, uid=uid)
    assert (plain.priority, plain.run_at, plain.schedule) == (0, None, None)

    started = time.monotonic()
    task = tg.submit("echo", {"text": "later", "delay_ms": 1500, "priority": 7}, uid=uid)
    assert task.status == "scheduled" and not task.is_final
    assert (task.priority, task.schedule) == (7, None)
    assert task.run_at is not None and task.run_at.tzinfo is not None and task.created_at is not None
    assert abs((task.run_at - task.created_at).total_seconds() - 1.5) < 0.25, (task.created_at, task.run_at)
    assert tg.task(task.id).status == "scheduled"
    assert [t.id for t in tg.tasks(uid=uid, status="scheduled")] == [task.id]
    done = tg.wait(task.id, timeout=15)
    assert done.status == "succeeded" and time.monotonic() - started >= 1.2
    assert (done.priority, done.run_at) == (7, task.run_at)             # both stay on the finished task
    assert done.started_at is not None and done.started_at >= task.run_at

    # run_at with an offset (reported back in UTC); cancelled while it waits.
    at = datetime.now(timezone(timedelta(hours=1))) + timedelta(seconds=60)
    later = tg.submit("echo", {"run_at": at.isoformat()}, uid=uid)
    assert later.status == "scheduled" and later.run_at is not None
    assert later.raw["runAt"].endswith("Z") and abs((later.run_at - at).total_seconds()) < 0.01
    tg.cancel(later.id)
    cancelled = tg.wait(later.id, timeout=10)
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled before it started")

    for bad in ({"priority": 10}, {"delay_ms": -1}, {"delay_ms": 10, "run_at": at.isoformat()}):
        with pytest.raises(TaskGateError) as err:
            tg.submit("echo", bad)
        assert (err.value.status, err.value.error) == (400, "bad_request"), bad


def test_async_client_priority_and_delay(token_server, recorder):
    async def main():
        tg = async_client(token_server, recorder)
        try:
            uid = new_uid("pya")
            task = await tg.submit("sleep", {"ms": 100, "priority": 9, "delay_ms": 800}, uid=uid)
            assert (task.status, task.priority) == ("scheduled", 9) and task.run_at is not None
            done = await tg.wait(task.id, timeout=15)
            assert (done.status, done.priority, done.run_at) == ("succeeded", 9, task.run_at)
            urgent = await tg.submit("echo", {"priority": 0}, uid=uid)          # any 0-9 over the admin API
            assert urgent.priority == 0 and urgent.run_at is None
        finally:
            await tg._test_http.aclose()

    run(main(), timeout=30)


def test_task_scheduling_fields_are_read_tolerantly():
    old = Task.from_json(fake_task("running"))                                  # an older server: no such fields
    assert (old.priority, old.run_at, old.schedule) == (0, None, None)
    tick = Task.from_json({**fake_task("scheduled"), "priority": 3, "runAt": "2026-12-02T03:00:00Z",
                           "schedule": "nightly-report"})
    assert tick.status == "scheduled" and not tick.is_final
    assert (tick.priority, tick.schedule) == (3, "nightly-report")
    assert tick.run_at == datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
