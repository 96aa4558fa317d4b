"""`Client` (blocking, httpx.Client) and `AsyncClient` (asyncio, httpx.AsyncClient) for TaskGate's REST admin API."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import time
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Type, TypeVar
from urllib.parse import urlsplit

import httpx

from ._core import (
    T,
    Answer,
    Call,
    LatestSeq,
    Notify,
    Op,
    Operations,
    Pause,
    encode_body,
    request_headers,
    sse_hello_seq,
)
from ._model import Task, TaskStatus, TransportError, TransportTimeout
from ._version import __version__
from .tokens import mint_token

__all__ = ["Client", "AsyncClient", "DEFAULT_TIMEOUT", "DEFAULT_URL"]

DEFAULT_TIMEOUT = 10.0
"""Seconds every request may take (to connect, and between bytes of the answer); wait()'s polls take longer."""
DEFAULT_URL = "http://127.0.0.1:9501"

_C = TypeVar("_C", bound="_Base")


def _base_url(base_url: str) -> str:
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http:// or https:// URL with a host, not {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query or fragment")
    return base_url.rstrip("/")


def _admin_token(token: Optional[str]) -> Optional[str]:
    if token is None or token == "":
        return None
    if not isinstance(token, str) or re.search(r"[\x00-\x20\x7f]", token):
        raise ValueError("admin_token must be a string without spaces or control characters")
    return token


def _timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")
    return float(timeout)


class _Base:
    def __init__(self, base_url: str, admin_token: Optional[str], timeout: float, user_agent: Optional[str]):
        self.base_url = _base_url(base_url)
        self.admin_token = _admin_token(admin_token)
        self.timeout = _timeout(timeout)
        self.user_agent = user_agent or f"taskgate-client-python/{__version__}"
        self._ops = Operations()

    mint_token = staticmethod(mint_token)

    @classmethod
    def from_env(cls: Type[_C], **kwargs: Any) -> _C:
        """A client of `$TASKGATE_URL` (default http://127.0.0.1:9501) with `$TASKGATE_ADMIN_TOKEN` (if set), as the
        `taskgate` CLI takes them; `kwargs` go to the constructor."""
        url = os.environ.get("TASKGATE_URL") or DEFAULT_URL
        return cls(url, os.environ.get("TASKGATE_ADMIN_TOKEN") or None, **kwargs)

    def _request_args(self, call: Call) -> Mapping[str, Any]:
        headers = request_headers(self.admin_token, self.user_agent, call)
        content = encode_body(call)
        if content is not None:
            headers["Content-Type"] = "application/json"
        read = self.timeout if call.read_timeout is None else call.read_timeout
        return {
            "method": call.method,
            "url": self.base_url + call.path,
            "params": dict(call.params) if call.params else None,
            "content": content,
            "headers": headers,
            "timeout": httpx.Timeout(self.timeout, read=read),
        }

    def _sse_args(self, step: LatestSeq) -> Dict[str, Any]:
        headers = {"Accept": "text/event-stream", "User-Agent": self.user_agent}
        if self.admin_token:
            headers["Authorization"] = "Bearer " + self.admin_token
        return {
            "method": "GET",
            "url": self.base_url + "/sse",
            "params": {"uid": step.uid},
            "headers": headers,
            "timeout": httpx.Timeout(min(self.timeout, max(step.budget, 0.001))),
        }

    @staticmethod
    def _transport_error(call: Call, error: Exception) -> TransportError:
        what = f"{call.method} {call.path}: {type(error).__name__}: {error}"
        if isinstance(error, httpx.TimeoutException):
            return TransportTimeout("no answer in time to " + what)
        return TransportError(what)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class Client(_Base):
    """A blocking client of TaskGate's REST admin API.

        with Client("http://127.0.0.1:9501", admin_token="s3cret") as tg:
            task = tg.submit("sleep", {"ms": 2000}, uid="alice", id="export-4711")
            done = tg.wait(task.id, timeout=30)

    `admin_token` is the server's `--admin-token` (None: the server has none and answers loopback clients only).
    `timeout` bounds every request. `http_client`: an httpx.Client to send the requests with (proxies, TLS, event
    hooks); the client does not close it. Safe to share between threads.
    """

    def __init__(self, base_url: str, admin_token: Optional[str] = None, *, timeout: float = DEFAULT_TIMEOUT,
                 http_client: Optional[httpx.Client] = None, user_agent: Optional[str] = None):
        super().__init__(base_url, admin_token, timeout, user_agent)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=self.timeout)

    # ---- the API

    def submit(self, cmd: str, args: Optional[Mapping[str, Any]] = None, uid: Optional[str] = None,
               id: Optional[str] = None) -> Task:
        """Submits a task (202). With `id`, submitting again for the same uid returns the existing task (200,
        `task.duplicate` true) and runs nothing. Events of a task with `uid` go to that uid's connections. Task
        options go into `args`: `timeout_ms`, `max_attempts`, `priority` (0-9, 0 first), and `delay_ms` or `run_at`
        (RFC 3339 with a zone); with a delay still ahead the task comes back `scheduled` with `run_at` set."""
        return self._run(self._ops.submit(cmd, args, uid, id))

    def task(self, id: str) -> Task:
        """One task by its full id (`task.id`: `uid~id`, `~id`, `t-…`; a uid-less task also by the id you gave)."""
        return self._run(self._ops.task(id))

    def cancel(self, id: str) -> Task:
        """Asks for cancellation; returns the task as it is now (it may still be `running`). A finished task:
        TaskGateError 409 `already_finished`."""
        return self._run(self._ops.cancel(id))

    def tasks(self, uid: Optional[str] = None, status: Optional[TaskStatus] = None,
              limit: Optional[int] = None) -> List[Task]:
        """Tasks, newest first, optionally of one uid and/or in one status; `limit` 1-1000 (server default 100)."""
        return self._run(self._ops.tasks(uid, status, limit))

    def wait(self, id: str, timeout: float = 30.0, on_progress: Optional[Callable[[Task], Any]] = None) -> Task:
        """Blocks until the task is final and returns it (whatever the outcome: check `task.status`); WaitTimeout
        (with the task's last state) after about `timeout` seconds; the task goes on. Long-polls the task's uid
        (see README, "How wait() waits"); `on_progress(task)` is called for each progress event seen meanwhile."""
        return self._run(self._ops.wait(id, timeout, on_progress))

    # ---- lifecycle

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    # ---- carrying out the operations

    def _send(self, call: Call) -> Answer:
        try:
            response = self._http.request(**self._request_args(call))
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from e
        return Answer(response.status_code, response.content)

    def _latest_seq(self, step: LatestSeq) -> Optional[int]:
        deadline = time.monotonic() + step.budget
        buffer = b""
        try:
            with self._http.stream(**self._sse_args(step)) as response:
                if response.status_code != 200:
                    return None
                for chunk in response.iter_bytes():
                    buffer += chunk
                    complete, seq = sse_hello_seq(buffer)
                    if complete or time.monotonic() > deadline:
                        return seq
        except httpx.HTTPError:
            return None
        return None

    def _run(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, Pause):
                    if step.seconds > 0:
                        time.sleep(step.seconds)
                    step = op.send(None)
                elif isinstance(step, LatestSeq):
                    step = op.send(self._latest_seq(step))
                elif isinstance(step, Notify):
                    step.fn(step.task)
                    step = op.send(None)
                else:
                    try:
                        answer = self._send(step)
                    except TransportError as e:
                        step = op.throw(e)
                    else:
                        step = op.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result


class AsyncClient(_Base):
    """The asyncio form of `Client`, on httpx.AsyncClient; the same methods, as coroutines.

        async with AsyncClient("http://127.0.0.1:9501", admin_token="s3cret") as tg:
            task = await tg.submit("sleep", {"ms": 2000}, uid="alice")
            done = await tg.wait(task.id, timeout=30)
    """

    def __init__(self, base_url: str, admin_token: Optional[str] = None, *, timeout: float = DEFAULT_TIMEOUT,
                 http_client: Optional[httpx.AsyncClient] = None, user_agent: Optional[str] = None):
        super().__init__(base_url, admin_token, timeout, user_agent)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=self.timeout)

    async def submit(self, cmd: str, args: Optional[Mapping[str, Any]] = None, uid: Optional[str] = None,
                     id: Optional[str] = None) -> Task:
        """See Client.submit."""
        return await self._run(self._ops.submit(cmd, args, uid, id))

    async def task(self, id: str) -> Task:
        """See Client.task."""
        return await self._run(self._ops.task(id))

    async def cancel(self, id: str) -> Task:
        """See Client.cancel."""
        return await self._run(self._ops.cancel(id))

    async def tasks(self, uid: Optional[str] = None, status: Optional[TaskStatus] = None,
                    limit: Optional[int] = None) -> List[Task]:
        """See Client.tasks."""
        return await self._run(self._ops.tasks(uid, status, limit))

    async def wait(self, id: str, timeout: float = 30.0,
                   on_progress: Optional[Callable[[Task], Any]] = None) -> Task:
        """See Client.wait; `on_progress` may also be a coroutine function. Several waits may run at once (the server
        lets 4 long-polls of one uid wait at a time, browsers' included; past that a wait backs off and retries)."""
        return await self._run(self._ops.wait(id, timeout, on_progress))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Answer:
        try:
            response = await self._http.request(**self._request_args(call))
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from e
        return Answer(response.status_code, response.content)

    async def _latest_seq(self, step: LatestSeq) -> Optional[int]:
        deadline = time.monotonic() + step.budget
        buffer = b""
        try:
            async with self._http.stream(**self._sse_args(step)) as response:
                if response.status_code != 200:
                    return None
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    complete, seq = sse_hello_seq(buffer)
                    if complete or time.monotonic() > deadline:
                        return seq
        except httpx.HTTPError:
            return None
        return None

    async def _run(self, op: Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, Pause):
                    if step.seconds > 0:
                        await asyncio.sleep(step.seconds)
                    step = op.send(None)
                elif isinstance(step, LatestSeq):
                    step = op.send(await self._latest_seq(step))
                elif isinstance(step, Notify):
                    returned = step.fn(step.task)
                    if inspect.isawaitable(returned):
                        await returned
                    step = op.send(None)
                else:
                    try:
                        answer = await self._send(step)
                    except TransportError as e:
                        step = op.throw(e)
                    else:
                        step = op.send(answer)
        except StopIteration as stop:
            result: T = stop.value
            return result
