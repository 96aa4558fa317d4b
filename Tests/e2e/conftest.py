"""End-to-end fixtures for TaskGate.

Starts the real ``taskgate`` binary on a free loopback port, and provides:

* ``server``        – the session-wide server (no admin token),
* ``token_server``  – a session-wide server started with ``--admin-token s3cret``,
* ``start_server``  – a function that starts extra servers with extra CLI args
                      (stopped at the end of the test that started them),
* ``api``           – a ``requests`` session that validates every response of a
                      documented path/method against ``openapi.yaml``,
* ``ws_connect``    – an async helper that opens a WebSocket (``WSClient``) and
                      validates every message against ``ServerMessage``,
* ``run``           – runs a coroutine with a hard timeout.

Every network wait is bounded, everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import requests
import websockets
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
TASKGATE_BIN = Path(os.environ.get("TASKGATE_BIN", REPO / ".build" / "debug" / "taskgate"))
OPENAPI_PATH = REPO / "openapi.yaml"
ADMIN_TOKEN = "s3cret"

HTTP_TIMEOUT = 10.0          # default timeout of every HTTP request
STARTUP_TIMEOUT = 20.0       # /healthz must answer 200 within this
SHUTDOWN_TIMEOUT = 15.0      # SIGTERM -> exit, else SIGKILL


def new_uid(prefix: str = "u") -> str:
    """A unique uid, valid per spec ([A-Za-z0-9._:@-]{1,128})."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def wait_until(fn, timeout: float, what: str, interval: float = 0.1):
    """Calls fn() until it returns something truthy (returned); AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- server process


@dataclass
class ServerHandle:
    port: int
    proc: subprocess.Popen
    log_dir: Path
    output_path: Path
    args: list[str]
    admin_token: str | None = None
    exit_code: int | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, wait up to 15 s, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self.exit_code = self.proc.returncode
                raise AssertionError(
                    f"taskgate (port {self.port}) did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM; "
                    f"killed.\n--- output tail ---\n{self.output()[-3000:]}"
                )
        self.exit_code = self.proc.returncode
        return self.exit_code


def _launch(tmp_dir: Path, extra_args: list[str], admin_token: str | None,
            preexec_fn: Callable[[], None] | None = None) -> ServerHandle:
    """Starts taskgate serve; `preexec_fn` runs in the child before exec (e.g. to lower RLIMIT_NOFILE)."""
    if not TASKGATE_BIN.exists():
        pytest.fail(f"taskgate binary not found at {TASKGATE_BIN} (set TASKGATE_BIN)")
    last_error = ""
    for _attempt in range(3):  # a free port can be grabbed by someone else in between
        port = free_port()
        log_dir = tmp_dir / f"log-{port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        output_path = tmp_dir / f"server-{port}.out"
        args = [
            str(TASKGATE_BIN), "serve",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--log-dir", str(log_dir),
            "--public-dir", str(REPO / "public"),
            *extra_args,
        ]
        if "--data-dir" not in extra_args:  # each server gets its own SQLite database
            args += ["--data-dir", str(tmp_dir / f"data-{port}")]
        env = dict(os.environ)
        env.pop("TASKGATE_ADMIN_TOKEN", None)  # only explicit --admin-token counts
        with open(output_path, "wb") as out:
            proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, preexec_fn=preexec_fn)
        handle = ServerHandle(port=port, proc=proc, log_dir=log_dir, output_path=output_path,
                              args=args, admin_token=admin_token)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                r = requests.get(handle.base_url + "/healthz", timeout=1.0,
                                 proxies={"http": None, "https": None})
                if r.status_code == 200:
                    return handle
            except requests.RequestException:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
            pytest.fail(f"taskgate did not answer GET /healthz with 200 within {STARTUP_TIMEOUT}s\n"
                        f"args: {args}\n--- output ---\n{handle.output()[-3000:]}")
        last_error = f"exit code {proc.returncode}\n--- output ---\n{handle.output()[-3000:]}"
    pytest.fail(f"taskgate failed to start 3 times: {last_error}")


def _stop_and_check(handle: ServerHandle) -> None:
    code = handle.stop()
    assert handle.proc.poll() is not None, "taskgate process is still alive after shutdown"
    # A clean SIGTERM shutdown must not crash (negative = killed by a signal other than our TERM).
    # SIGTERM is a graceful shutdown (running tasks get --shutdown-grace seconds): exit status 0.
    assert code == 0, (f"taskgate (port {handle.port}) exited with {code} after SIGTERM"
                       f"\n--- output tail ---\n{handle.output()[-3000:]}")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerHandle:
    handle = _launch(tmp_path_factory.mktemp("taskgate-main"), [], None)
    yield handle
    _stop_and_check(handle)


@pytest.fixture(scope="session")
def token_server(tmp_path_factory) -> ServerHandle:
    handle = _launch(tmp_path_factory.mktemp("taskgate-token"), ["--admin-token", ADMIN_TOKEN], ADMIN_TOKEN)
    yield handle
    _stop_and_check(handle)


@pytest.fixture
def start_server(tmp_path) -> Callable[..., ServerHandle]:
    """start_server("--task-workers", "1", ..., preexec_fn=None) -> ServerHandle; stopped after the test."""
    started: list[ServerHandle] = []

    def _start(*extra_args: str, preexec_fn: Callable[[], None] | None = None) -> ServerHandle:
        token = None
        if "--admin-token" in extra_args:
            token = extra_args[list(extra_args).index("--admin-token") + 1]
        handle = _launch(tmp_path / f"srv{len(started)}", list(extra_args), token, preexec_fn=preexec_fn)
        started.append(handle)
        return handle

    yield _start
    errors = []
    for handle in started:
        try:
            _stop_and_check(handle)
        except AssertionError as e:  # stop all of them before failing
            errors.append(str(e))
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- OpenAPI contract


class OpenAPIContract:
    """Validates HTTP responses against openapi.yaml and records (path, method, status) coverage."""

    def __init__(self, spec_path: Path):
        self.spec: dict = yaml.safe_load(spec_path.read_text())
        self.uri = "urn:taskgate:openapi"
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(self.uri, resource)
        self.covered: set[tuple[str, str, str]] = set()
        self.violations: list[str] = []
        self._routes: list[tuple[re.Pattern, str]] = []
        for path in self.spec["paths"]:
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
            self._routes.append((re.compile(rx), path))
        # literal paths first, so /api/v1/tasks/{id}/cancel and /api/v1/tasks never collide
        self._routes.sort(key=lambda r: ("{" in r[1], -len(r[1])))
        self._validators: dict[str, Draft202012Validator] = {}

    # -- spec navigation

    def _deref(self, node: dict, pointer: str) -> tuple[dict, str]:
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            pointer = ref[1:]
            node = self.spec
            for part in pointer.lstrip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    @staticmethod
    def _esc(part: str) -> str:
        return part.replace("~", "~0").replace("/", "~1")

    def match_path(self, url_path: str) -> str | None:
        for rx, path in self._routes:
            if rx.match(url_path):
                return path
        return None

    def operations(self) -> list[tuple[str, str, str]]:
        out = []
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                for status in op.get("responses", {}):
                    out.append((path, method, str(status)))
        return out

    def validator_for_pointer(self, pointer: str) -> Draft202012Validator:
        v = self._validators.get(pointer)
        if v is None:
            v = Draft202012Validator({"$ref": f"{self.uri}#{pointer}"}, registry=self.registry,
                                     format_checker=FormatChecker())
            self._validators[pointer] = v
        return v

    def schema_validator(self, name: str) -> Draft202012Validator:
        return self.validator_for_pointer(f"/components/schemas/{self._esc(name)}")

    # -- checks

    def check(self, method: str, url: str, status: int, content_type: str, body: bytes) -> list[str]:
        """Returns a list of problems ([] if fine). Records coverage for documented operations."""
        method = method.lower()
        url_path = urlsplit(url).path or "/"
        path = self.match_path(url_path)
        if path is None or method not in self.spec["paths"][path]:
            return []  # undocumented path/method: nothing to check against
        op = self.spec["paths"][path][method]
        key = (path, method, str(status))
        responses = op.get("responses", {})
        if str(status) not in responses:
            return [f"{method.upper()} {url_path} answered {status}, which openapi.yaml does not document "
                    f"(documented: {sorted(responses)}); body={body[:300]!r}"]
        self.covered.add(key)
        base_ptr = f"/paths/{self._esc(path)}/{method}/responses/{status}"
        resp, ptr = self._deref(responses[str(status)], base_ptr)
        content = resp.get("content")
        if not content:
            return []
        problems = []
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype not in content:
            return [f"{method.upper()} {url_path} {status}: Content-Type {content_type!r} not in documented "
                    f"{sorted(content)}"]
        if ctype == "application/json":
            try:
                doc = json.loads(body)
            except ValueError as e:
                return [f"{method.upper()} {url_path} {status}: body is not JSON ({e}): {body[:200]!r}"]
            schema_ptr = f"{ptr}/content/{self._esc(ctype)}/schema"
            errors = sorted(self.validator_for_pointer(schema_ptr).iter_errors(doc), key=lambda e: e.path)
            for err in errors[:5]:
                problems.append(f"{method.upper()} {url_path} {status}: schema violation at "
                                f"{'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}; "
                                f"body={json.dumps(doc)[:400]}")
        return problems

    def check_message(self, schema_name: str, msg: Any) -> list[str]:
        errs = list(self.schema_validator(schema_name).iter_errors(msg))
        return [f"{schema_name} violation: {e.message}; message={json.dumps(msg)[:400]}" for e in errs[:3]]


@pytest.fixture(scope="session")
def contract() -> OpenAPIContract:
    return OpenAPIContract(OPENAPI_PATH)


class ValidatingSession(requests.Session):
    """requests.Session that bounds every request and checks every response against openapi.yaml."""

    def __init__(self, contract: OpenAPIContract):
        super().__init__()
        self.contract = contract
        self.trust_env = False  # loopback only: never go through a proxy

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        if method.upper() == "GET" and urlsplit(url).path == "/poll":
            # Known server bug (test_longpoll.py::test_get_poll_keeps_connection_reusable): the server closes
            # the connection after every GET /poll answer without "Connection: close", so a pooled connection
            # fails on its next request. Use a one-shot connection for GET /poll so that the other tests
            # exercise their own feature rather than this bug.
            with requests.Session() as one_shot:
                one_shot.trust_env = False
                resp = one_shot.request(method, url, *args, **kwargs)
        else:
            resp = super().request(method, url, *args, **kwargs)
        problems = self.contract.check(method, resp.url if resp.url else url, resp.status_code,
                                       resp.headers.get("Content-Type", ""), resp.content)
        if problems:
            self.contract.violations.extend(problems)
            raise AssertionError("OpenAPI drift:\n  " + "\n  ".join(problems))
        return resp


@pytest.fixture
def api(contract) -> ValidatingSession:
    s = ValidatingSession(contract)
    yield s
    s.close()


# --------------------------------------------------------------------------- WebSocket helper


_OPEN_CLIENTS: list["WSClient"] = []


class WSClient:
    """Buffered JSON WebSocket client.

    Every received message is appended to ``messages`` (after validation against the
    ``ServerMessage`` schema of openapi.yaml). ``next`` and ``wait_for`` hand out each
    message at most once, so replies and events can be picked in any order.
    """

    def __init__(self, conn, contract: OpenAPIContract):
        self.conn = conn
        self.contract = contract
        self.messages: list[dict] = []
        self._consumed: set[int] = set()
        self._ref = 0

    @property
    def response_headers(self):
        return self.conn.response.headers

    async def _recv_one(self, timeout: float) -> dict:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        assert isinstance(raw, str), f"server sent a non-text frame: {raw!r}"
        msg = json.loads(raw)
        assert isinstance(msg, dict) and isinstance(msg.get("type"), str), f"message without type: {raw}"
        problems = self.contract.check_message("ServerMessage", msg)
        assert not problems, "WebSocket message does not match openapi ServerMessage:\n" + "\n".join(problems)
        self.messages.append(msg)
        return msg

    async def wait_for(self, pred: Callable[[dict], bool], timeout: float = 10.0, what: str = "a message") -> dict:
        """The earliest not-yet-handed-out message matching pred (buffered or new)."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(len(self.messages)):
                if i not in self._consumed and pred(self.messages[i]):
                    self._consumed.add(i)
                    return self.messages[i]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last messages: "
                                     f"{[strip(m) for m in self.messages[-12:]]}")
            try:
                await self._recv_one(left)
            except asyncio.TimeoutError:
                continue

    async def next(self, timeout: float = 5.0) -> dict:
        """The next message not handed out yet, in arrival order."""
        return await self.wait_for(lambda m: True, timeout, "the next message")

    async def send_json(self, msg: Any) -> None:
        await self.conn.send(json.dumps(msg))

    async def request(self, msg: dict, timeout: float = 5.0) -> dict:
        """Send msg with a unique ref and return the direct reply that echoes it."""
        self._ref += 1
        ref = msg.get("ref") or f"ref-{self._ref}-{uuid.uuid4().hex[:6]}"
        msg = dict(msg, ref=ref)
        await self.send_json(msg)
        return await self.wait_for(lambda m: m.get("ref") == ref and "seq" not in m, timeout,
                                   f"the reply to {msg.get('cmd')!r} (ref {ref})")

    async def ping(self, timeout: float = 5.0) -> dict:
        reply = await self.request({"cmd": "ping"}, timeout)
        assert reply["type"] == "pong" and reply["code"] == 200, reply
        return reply

    def events(self, task_id: str | None = None) -> list[dict]:
        return [m for m in self.messages if "seq" in m and m.get("type") in ("progress", "done")
                and (task_id is None or (m.get("task") or {}).get("id") == task_id)]

    async def events_until_done(self, task_id: str, timeout: float = 15.0) -> list[dict]:
        """All events of task_id received so far and until its done event (inclusive)."""
        await self.wait_for(lambda m: m.get("type") == "done" and (m.get("task") or {}).get("id") == task_id,
                            timeout, f"the done event of {task_id}")
        return self.events(task_id)

    async def assert_silent(self, duration: float) -> None:
        """Nothing arrives for `duration` seconds."""
        try:
            msg = await self._recv_one(duration)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected no message, got {msg}")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.conn.close(), 5)
        except (asyncio.TimeoutError, websockets.ConnectionClosed, OSError):
            pass


def strip(m: dict) -> dict:
    """Short form of a message for assertion output."""
    t = m.get("task") or {}
    return {k: v for k, v in {"type": m.get("type"), "seq": m.get("seq"), "code": m.get("code"),
                                "ref": m.get("ref"), "task": t.get("id"), "status": t.get("status"),
                                "progress": t.get("progress")}.items() if v is not None}


@pytest.fixture
def ws_connect(server, contract):
    """async ws_connect(uid=..., cursor=None, admin=False, compression=None, headers=None, srv=None) -> WSClient"""
    async def _connect(uid: str | None, cursor: int | None = None, admin: bool = False,
                       compression: str | None = None, headers: dict | None = None,
                       srv: ServerHandle | None = None, query: str | None = None) -> WSClient:
        srv = srv or server
        if query is None:
            parts = []
            if uid is not None:
                parts.append(f"uid={uid}")
            if cursor is not None:
                parts.append(f"cursor={cursor}")
            if admin:
                parts.append("admin=1")
            query = "&".join(parts)
        url = srv.ws_url + (f"?{query}" if query else "")
        conn = await websockets.connect(url, compression=compression, additional_headers=headers,
                                        open_timeout=5, close_timeout=3, proxy=None,
                                        ping_interval=None, max_size=4 * 1024 * 1024)
        contract.covered.add(("/ws", "get", "101"))
        client = WSClient(conn, contract)
        _OPEN_CLIENTS.append(client)
        return client

    return _connect


def run(coro, timeout: float = 30.0):
    """Run a coroutine with a hard timeout; closes every websockets connection opened in it."""

    async def _main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            clients = list(_OPEN_CLIENTS)
            _OPEN_CLIENTS.clear()
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    return asyncio.run(_main())


def wait_task_final(api: requests.Session, base_url: str, task_id: str, timeout: float = 15.0,
                    headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"{base_url}/api/v1/tasks/{task_id}", headers=headers, timeout=5)
        assert r.status_code == 200, r.text
        task = r.json()
        if task["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} not final after {timeout}s: {task}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- ordering / coverage plumbing

COVERAGE_TEST = "test_openapi_coverage"
COVERAGE_NEEDS = ("test_admin.py", "test_longpoll.py", "test_websocket.py")


def pytest_collection_modifyitems(session, config, items):
    # The coverage test has to run after everything else.
    last = [i for i in items if i.name == COVERAGE_TEST]
    rest = [i for i in items if i.name != COVERAGE_TEST]
    items[:] = rest + last
    files = {Path(str(i.fspath)).name for i in rest}
    config._taskgate_full_run = all(f in files for f in COVERAGE_NEEDS) and not config.getoption("keyword") \
        and not config.getoption("markexpr")
    config._taskgate_item_count = len(rest)


@pytest.fixture(scope="session")
def full_run(request) -> bool:
    return bool(getattr(request.config, "_taskgate_full_run", False))


# --------------------------------------------------------------------------- PostgreSQL (cluster tests)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: several TaskGate nodes sharing one PostgreSQL (test_cluster.py)")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (Tests/e2e/pg.py) for the whole session.

    Skips when PostgreSQL is not installed, unless TASKGATE_REQUIRE_POSTGRES=1 (then the test fails)."""
    from pg import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as e:
        if os.environ.get("TASKGATE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"TASKGATE_REQUIRE_POSTGRES=1 but {e}")
        pytest.skip(str(e))
    try:
        server.start()
    except Exception:
        server.cleanup()
        raise
    yield server
    server.cleanup()


@pytest.fixture
def pg_database(postgres) -> str:
    """A fresh, empty database of the session's PostgreSQL; yields its URL, drops it afterwards.

    Request it before the fixtures that start TaskGate nodes, so that they stop before the database goes."""
    url = postgres.create_database()
    yield url
    if not postgres.is_running():  # a test that stopped PostgreSQL and failed before starting it again
        postgres.start()
    postgres.drop_database(postgres.database_of(url))


# --------------------------------------------------------------------------- raw HTTP (hostile clients)


@dataclass
class RawAnswer:
    """What a server did with bytes sent on a bare socket (test_hostile.py)."""
    status: int | None          # the status code of the first answer; None: no status line before the deadline
    head: bytes                 # status line and headers, as received
    body: bytes                 # the body (by Content-Length), as far as it arrived
    closed: bool                # the server closed the connection (recv gave b'' or the connection was reset)
    seconds: float              # from the start to the status line (or to giving up on it)
    closed_after: float | None  # from the start to the close, if seen
    extra: bytes = b""          # anything after the first answer

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                out[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
        return out

    def json(self) -> Any:
        return json.loads(self.body)

    def short(self) -> str:
        first = self.head.split(b"\n", 1)[0].strip()
        return (f"status={self.status} line={first[:80]!r} closed={self.closed} after {self.seconds:.2f}s"
                + (f" (close at {self.closed_after:.2f}s)" if self.closed_after is not None else "")
                + (f" body={self.body[:160]!r}" if self.body else ""))


def raw_connect(port: int, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
    """A bare TCP connection to 127.0.0.1:port (rcvbuf: a small SO_RCVBUF, set before connecting)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def read_answer(sock: socket.socket, status_timeout: float, close_timeout: float | None = None,
                started: float | None = None) -> RawAnswer:
    """Reads one HTTP answer (head, and body by Content-Length) within status_timeout seconds; then, if
    close_timeout is given, waits up to that long for the server to close the connection."""
    started = time.monotonic() if started is None else started
    buf = b""
    closed = False
    closed_at: float | None = None
    deadline = time.monotonic() + status_timeout

    def recv(until: float) -> bytes | None:  # None: deadline passed; b"": closed
        nonlocal closed, closed_at
        left = until - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            data = b""
        if not data:
            closed, closed_at = True, time.monotonic() - started
        return data

    head_end = -1
    while head_end < 0:
        m = re.search(rb"\r?\n\r?\n", buf)
        if m:
            head_end = m.end()
            break
        data = recv(deadline)
        if not data:
            break
        buf += data
    seconds = time.monotonic() - started
    head = buf[:head_end] if head_end >= 0 else buf
    status = None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if m:
        status = int(m.group(1))
    body = b""
    if head_end >= 0:
        rest = buf[head_end:]
        answer = RawAnswer(status, head, b"", closed, seconds, closed_at)
        length = answer.headers().get("content-length")
        want = int(length) if length and length.isdigit() else 0
        body_deadline = time.monotonic() + max(1.0, status_timeout)
        while len(rest) < want and not closed:
            data = recv(body_deadline)
            if not data:
                break
            rest += data
        body, extra = rest[:want], rest[want:]
    else:
        extra = b""
    if close_timeout is not None and not closed:
        close_deadline = time.monotonic() + close_timeout
        while not closed:
            data = recv(close_deadline)
            if data is None:
                break
            extra += data
    return RawAnswer(status, head, body, closed, seconds, closed_at, extra)


def raw_exchange(port: int, payload: bytes | list[bytes], status_timeout: float = 5.0,
                 close_timeout: float | None = 5.0) -> RawAnswer:
    """Sends payload (or each piece of a list) on a fresh connection and reads what comes back."""
    sock = raw_connect(port)
    try:
        started = time.monotonic()
        try:
            for piece in payload if isinstance(payload, list) else [payload]:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may hang up before it has read everything: what it answered still counts
        return read_answer(sock, status_timeout, close_timeout, started)
    finally:
        sock.close()


_HELP: dict[str, str] = {}


def serve_help() -> str:
    """`taskgate serve --help`, cached."""
    if "serve" not in _HELP:
        p = subprocess.run([str(TASKGATE_BIN), "serve", "--help"], capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        _HELP["serve"] = p.stdout + p.stderr
    return _HELP["serve"]


def has_flag(flag: str) -> bool:
    return re.search(rf"(^|\s|,){re.escape(flag)}(\s|,|=|$)", serve_help(), re.M) is not None


def require_flags(*flags: str) -> None:
    """Fails (not skips) the test when `taskgate serve --help` lacks one of the flags: they are part of the spec."""
    missing = [f for f in flags if not has_flag(f)]
    if missing:
        pytest.fail(f"taskgate serve --help has no {', '.join(missing)} (binary {TASKGATE_BIN})")


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (/proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
