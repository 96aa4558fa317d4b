"""The client's logic without I/O, shared by `Client` and `AsyncClient`.

Each operation is a generator that yields what it needs done — an HTTP request (`Call`, answered with an `Answer`,
or with a `TransportError` thrown into the generator), a pause (`Pause`), the latest event seq of a uid
(`LatestSeq`, answered with an int or None) or a call of the user's callback (`Notify`) — and returns its result.
The two clients only differ in how they carry these out (httpx.Client and time.sleep, or httpx.AsyncClient and
asyncio.sleep).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

from ._model import Task, TaskGateError, TransportError, TransportTimeout, WaitTimeout

_NO_BODY: Any = object()


@dataclass(frozen=True)
class Call:
    method: str
    path: str                              # below the base URL, starting with "/"
    params: Optional[Mapping[str, str]] = None
    body: Any = _NO_BODY                   # JSON-encodable, or _NO_BODY
    read_timeout: Optional[float] = None   # None: the client's timeout
    one_shot: bool = False                 # send "Connection: close" (the server closes after GET /poll)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class LatestSeq:
    """Asks for the uid's latest event seq: the `head` of the `hello` frame that opens `GET /sse?uid=…` (without a
    cursor the stream replays nothing, and it is closed right after that frame). Answered with an int, or None when
    it cannot be had within `budget` seconds (any error: the caller then reads the log from the start)."""
    uid: str
    budget: float


@dataclass(frozen=True)
class Notify:
    """Calls `fn(task)` (and, in AsyncClient, awaits what it returns if that is awaitable)."""
    fn: Callable[[Task], Any]
    task: Task


Step = Union[Call, Pause, LatestSeq, Notify]
T = TypeVar("T")
Op = Generator[Step, Any, T]
"""An operation: yields steps, is sent their outcomes, returns a T."""

LONG_POLL_MAX = 25          # seconds one GET /poll may wait (the server allows 60; proxies often cut at 30 or 60)
LONG_POLL_MARGIN = 10.0     # extra seconds the HTTP read may take beyond the poll's own timeout
STATUS_POLL_FIRST = 0.1     # seconds between status checks of a task without uid, growing to STATUS_POLL_MAX
STATUS_POLL_MAX = 1.0
BUSY_RETRY_MAX = 2.0        # seconds between polls after 429 / 503
LATEST_SEQ_BUDGET = 5.0     # seconds to learn a uid's latest seq from GET /sse before reading its log from 0
HELLO_MAX_BYTES = 65536     # a first SSE frame larger than this is not a hello
CURSOR_CACHE_SIZE = 1024    # uids whose latest seen cursor is remembered


def task_path(task_id: str, suffix: str = "") -> str:
    """`/api/v1/tasks/<id>` with the id percent-encoded as one path segment (`alice@x~job-1` has `@` and `~`)."""
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("task id must be a non-empty string")
    return "/api/v1/tasks/" + quote(task_id, safe="") + suffix


def parse_json(answer: Answer, call: Call) -> Any:
    try:
        return json.loads(answer.body)
    except ValueError:
        raise TransportError(f"{call.method} {call.path} answered {answer.status} with a body that is not JSON: "
                             f"{answer.body[:200]!r}") from None


def expect(answer: Answer, call: Call, *ok: int) -> Any:
    """The answer's JSON when its status is one of `ok`; TaskGateError otherwise."""
    if answer.status in ok:
        return parse_json(answer, call)
    raise TaskGateError.from_answer(answer.status, answer.body, call.method, call.path)


class CursorCache:
    """The latest GET /poll cursor seen per uid (bounded, thread-safe).

    A cursor seen before a task's status was read is a safe place to wait for its `done` event from: had the task
    finished by then, the status would have said so (a task's final state is stored together with its done event,
    before the event is handed out)."""

    def __init__(self, size: int = CURSOR_CACHE_SIZE):
        self._size = size
        self._cursors: "OrderedDict[str, int]" = OrderedDict()
        self._lock = Lock()

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._cursors)

    def put(self, uid: str, cursor: int) -> None:
        with self._lock:
            self._cursors[uid] = cursor
            self._cursors.move_to_end(uid)
            while len(self._cursors) > self._size:
                self._cursors.popitem(last=False)


class Operations:
    """The REST admin API calls, as generators (see the module docstring)."""

    def __init__(self) -> None:
        self.cursors = CursorCache()

    def submit(self, cmd: str, args: Optional[Mapping[str, Any]] = None, uid: Optional[str] = None,
               id: Optional[str] = None) -> Op[Task]:
        if not isinstance(cmd, str) or not cmd:
            raise ValueError("cmd must be a handler name")
        if args is not None and not isinstance(args, Mapping):
            raise TypeError("args must be a mapping (a JSON object) or None")
        body: Dict[str, Any] = {"cmd": cmd, "args": dict(args) if args is not None else {}}
        if uid is not None:
            body["uid"] = uid
        if id is not None:
            body["id"] = id
        call = Call("POST", "/api/v1/tasks", body=body)
        answer = yield call
        doc = expect(answer, call, 200, 202)
        return Task.from_json(doc, duplicate=answer.status == 200)

    def task(self, id: str) -> Op[Task]:
        call = Call("GET", task_path(id))
        return Task.from_json(expect((yield call), call, 200))

    def cancel(self, id: str) -> Op[Task]:
        call = Call("POST", task_path(id, "/cancel"))
        return Task.from_json(expect((yield call), call, 200))

    def tasks(self, uid: Optional[str] = None, status: Optional[str] = None,
              limit: Optional[int] = None) -> Op[List[Task]]:
        params: Dict[str, str] = {}
        if uid is not None:
            params["uid"] = uid
        if status is not None:
            params["status"] = status
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError("limit must be an int")
            params["limit"] = str(limit)
        call = Call("GET", "/api/v1/tasks", params=params or None)
        doc = expect((yield call), call, 200)
        if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
            raise TransportError(f"GET /api/v1/tasks answered without a task list: {str(doc)[:200]}")
        return [Task.from_json(t) for t in doc["tasks"]]

    def wait(self, id: str, timeout: float, on_progress: Optional[Callable[[Task], Any]] = None) -> Op[Task]:
        """The task once it is final, or WaitTimeout after `timeout` seconds.

        Reads the task first (a task that finished before the wait began is returned at once), then long-polls its
        uid's events (`GET /poll?uid=…`, which the admin token may do for any uid) for its `done` event, from a
        cursor that was current before the task was last read: so a done event published in between is either
        after the cursor or already in the status. The cursor is the last one this client saw for the uid (taken
        before the first read), else the `head` of the `hello` that opens `GET /sse?uid=…` (then the task is read
        once more), else 0 (the uid's retained events are read through). A task without uid has no events: its
        status is read again and again instead (every 0.1 s, slowing down to every 1 s).

        Events carry only what changed (progress: status, progress, attempts; done: status, result, error), so
        `on_progress` gets the task as last read with the event's fields merged in, and after the done event the
        task is read once more and returned whole (as stored, final; should that read fail, the task as last read
        with the done event's fields merged in)."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError("timeout must be a non-negative number of seconds")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress must be callable")
        deadline = time.monotonic() + float(timeout)
        known = self.cursors.snapshot()          # before the status read: see CursorCache
        task: Task = yield from self.task(id)
        if task.is_final:
            return task
        if task.uid is None:
            return (yield from self._wait_by_status(task, deadline, float(timeout)))
        uid = task.uid
        cursor = known.get(uid)
        if cursor is None:
            budget = min(LATEST_SEQ_BUDGET, deadline - time.monotonic())
            latest = (yield LatestSeq(uid, budget)) if budget > 0 else None
            if latest is None:
                cursor = 0                       # read the uid's retained events from the start: slower, as safe
            else:
                cursor = latest
                task = yield from self.task(task.id)
                if task.is_final:
                    return task
        busy = STATUS_POLL_FIRST
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            seconds = min(LONG_POLL_MAX, max(1, math.ceil(remaining)))
            call = Call("GET", "/poll", params={"uid": uid, "cursor": str(cursor), "timeout": str(seconds)},
                        read_timeout=min(seconds + LONG_POLL_MARGIN, remaining + 0.1), one_shot=True)
            asked_at = time.monotonic()
            try:
                answer = yield call
            except TransportTimeout:
                if time.monotonic() >= deadline:
                    break                        # the read was cut at the deadline
                raise
            if answer.status in (429, 503):      # too many polls of this uid waiting, or the server is busy
                task = yield from self.task(task.id)
                if task.is_final:
                    return task
                yield Pause(max(0.0, min(busy, deadline - time.monotonic())))
                busy = min(BUSY_RETRY_MAX, busy * 2)
                continue
            doc = expect(answer, call, 200)
            if not (isinstance(doc, dict) and isinstance(doc.get("events"), list)
                    and isinstance(doc.get("cursor"), int)):
                raise TransportError(f"GET /poll answered without events and cursor: {str(doc)[:200]}")
            cursor = doc["cursor"]
            self.cursors.put(uid, cursor)
            for event in doc["events"]:
                seen = event.get("task") if isinstance(event, dict) else None
                if not isinstance(seen, dict) or seen.get("id") != task.id:
                    continue
                if event.get("type") == "done":
                    return (yield from self._final(task, seen))
                if event.get("type") == "progress":
                    task = merge_change(task, seen)
                    if on_progress is not None:
                        yield Notify(on_progress, task)
            if doc.get("reset"):
                # The log did not go on from our cursor (pruned, or a restarted in-memory server): the done event
                # may be gone, so ask for the task itself.
                task = yield from self.task(task.id)
                if task.is_final:
                    return task
            if doc["events"] or time.monotonic() - asked_at >= seconds / 2:
                busy = STATUS_POLL_FIRST
            else:
                # Nothing, and long before the poll's timeout: a server shutting down answers so, or a proxy in the
                # way cuts polls short. Do not turn that into a busy loop.
                yield Pause(max(0.0, min(busy, deadline - time.monotonic())))
                busy = min(BUSY_RETRY_MAX, busy * 2)
        task = yield from self.task(task.id)     # one last look
        if task.is_final:
            return task
        raise WaitTimeout(task, float(timeout))

    def _final(self, task: Task, done: Mapping[str, Any]) -> Op[Task]:
        """The whole final task after its done event (which carries only id, status, result and error): read once
        more, as stored (a task's final state is stored before its done event is handed out); if that read fails or
        is not final (it should not be), the task as last known with the done event's fields merged in."""
        merged = merge_change(task, done)
        try:
            final: Task = yield from self.task(task.id)
        except (TaskGateError, TransportError):
            return merged
        return final if final.is_final else merged

    def _wait_by_status(self, task: Task, deadline: float, timeout: float) -> Op[Task]:
        interval = STATUS_POLL_FIRST
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(task, timeout)
            yield Pause(min(interval, remaining))
            interval = min(STATUS_POLL_MAX, interval * 1.5)
            task = yield from self.task(task.id)
            if task.is_final:
                return task


def merge_change(task: Task, change: Mapping[str, Any]) -> Task:
    """`task` with the fields of an event's task (what the event changed) put over its own; `raw` is the merged JSON."""
    whole = dict(task.raw) if task.raw else {}
    whole.update(change)
    return Task.from_json(whole)


def request_headers(admin_token: Optional[str], user_agent: str, call: Call) -> Dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    if admin_token:
        headers["Authorization"] = "Bearer " + admin_token
    if call.one_shot:
        headers["Connection"] = "close"
    return headers


def encode_body(call: Call) -> Optional[bytes]:
    if call.body is _NO_BODY:
        return None
    return json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sse_hello_seq(buffer: bytes) -> Tuple[bool, Optional[int]]:
    """Looks at the start of an SSE stream: (False, None) while its first frame is incomplete; (True, head) once it
    is in and is a `hello` with a whole-number `head`, the uid's latest seq (`seq` from a server older than December
    2026, whose hello called it so); (True, None) for anything else (comments are skipped)."""
    text = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    while True:
        end = text.find(b"\n\n")
        if end < 0:
            return (len(text) > HELLO_MAX_BYTES, None)
        frame, text = text[:end], text[end + 2:]
        event, data = b"message", []
        for line in frame.split(b"\n"):
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"event":
                event = value
            elif name == b"data":
                data.append(value)
        if not data and event == b"message":
            continue                             # only comments (a heartbeat): not a frame
        if event != b"hello":
            return (True, None)
        try:
            hello = json.loads(b"\n".join(data))
        except ValueError:
            return (True, None)
        if not isinstance(hello, dict):
            return (True, None)
        head = hello.get("head", hello.get("seq"))
        ok = isinstance(head, int) and not isinstance(head, bool) and head >= 0
        return (True, head if ok else None)
