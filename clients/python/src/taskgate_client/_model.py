"""What the REST admin API returns (tasks) and what this package raises."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Literal, Mapping, Optional

__all__ = [
    "TaskStatus",
    "FINAL_STATUSES",
    "Task",
    "TaskGateException",
    "TaskGateError",
    "TransportError",
    "TransportTimeout",
    "WaitTimeout",
]

TaskStatus = Literal["scheduled", "queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
"""A task's status; `succeeded`, `failed`, `cancelled` and `timed_out` are final. `scheduled` (not final) is a task
waiting for its `run_at` (`args.delay_ms`, `args.run_at` or a recurring schedule's tick); it goes straight to
`running` when a worker takes it at or after that time."""

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(text: Optional[str]) -> Optional[datetime]:
    """An ISO 8601 timestamp as the server writes it (`2026-11-25T20:00:00.123Z`) as an aware datetime."""
    if text is None:
        return None
    m = _TIMESTAMP.match(text)
    if not m:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7) or "0"
    micro = int((fraction + "000000")[:6])
    zone = m.group(8)
    tz = timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


@dataclass(frozen=True)
class Task:
    """A task as the server reports it (`Task` in openapi.yaml).

    `id` is the full id: `<uid>~<your id>` for a task submitted with a uid and an id, `~<your id>` for one with an
    id and no uid, or a server-generated `t-...`. `raw` is the JSON object as received, with any fields newer than
    this package. `duplicate` is true only on what `submit()` returns when the server answered 200: a task with
    that id already existed and was returned instead of being run again.

    `priority` is 0-9, 0 first (`args.priority`, else the handler's default). `run_at` is when a delayed or scheduled
    task is due (None otherwise), and `schedule` the name of the recurring schedule that made the task (None
    otherwise). An older server that does not send them gives 0, None and None.
    """

    id: str
    cmd: str
    uid: Optional[str]
    args: Dict[str, Any]
    status: TaskStatus
    progress: float
    result: Any
    error: Optional[str]
    attempts: int
    created_at: Optional[datetime]
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    node: Optional[str] = None
    duplicate: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    priority: int = 0
    run_at: Optional[datetime] = None
    schedule: Optional[str] = None

    @property
    def is_final(self) -> bool:
        """True for `succeeded`, `failed`, `cancelled` and `timed_out`."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, obj: Any, duplicate: bool = False) -> "Task":
        """Builds a Task from the server's JSON object; TransportError if it is not one."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("status"), str):
            raise TransportError(f"expected a task object, got {_short(obj)}")
        try:
            args = obj.get("args")
            return cls(
                id=obj["id"],
                cmd=str(obj.get("cmd", "")),
                uid=obj.get("uid"),
                args=dict(args) if isinstance(args, dict) else {},
                status=obj["status"],
                progress=float(obj.get("progress") or 0.0),
                result=obj.get("result"),
                error=obj.get("error"),
                attempts=int(obj.get("attempts") or 0),
                created_at=parse_timestamp(obj.get("createdAt")),
                started_at=parse_timestamp(obj.get("startedAt")),
                finished_at=parse_timestamp(obj.get("finishedAt")),
                node=obj.get("node"),
                duplicate=duplicate,
                raw=obj,
                priority=int(obj.get("priority") or 0),
                run_at=parse_timestamp(obj.get("runAt")),
                schedule=_optional_str(obj.get("schedule")),
            )
        except (TypeError, ValueError) as e:
            raise TransportError(f"unreadable task object ({e}): {_short(obj)}") from None


def _optional_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _short(obj: Any, limit: int = 300) -> str:
    try:
        text = json.dumps(obj)
    except (TypeError, ValueError):
        text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- errors


class TaskGateException(Exception):
    """Base class of everything this package raises (besides ValueError/TypeError for bad arguments)."""


class TaskGateError(TaskGateException):
    """The server answered with an error status.

    `status` is the HTTP status; `code`, `error` (the slug: `not_found`, `unauthorized`, `already_finished`, …) and
    `info` (human text) come from the JSON error body `{"type":"error","code":N,"error":"slug","info":"…"}`. An
    answer without such a body (a proxy's error page, say) has `error` `"http_error"` and the start of the body as
    `info`.
    """

    def __init__(self, status: int, error: str, info: str, code: Optional[int] = None,
                 body: Optional[Mapping[str, Any]] = None, method: str = "", path: str = ""):
        self.status = status
        self.code = status if code is None else code
        self.error = error
        self.info = info
        self.body = body
        self.method = method
        self.path = path
        where = f" to {method} {path}" if method else ""
        super().__init__(f"TaskGate answered {status}{where}: {error}: {info}")

    @classmethod
    def from_answer(cls, status: int, body: bytes, method: str = "", path: str = "") -> "TaskGateError":
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            code = doc.get("code")
            return cls(status, doc["error"], str(doc.get("info", "")), code if isinstance(code, int) else None,
                       doc, method, path)
        text = body[:300].decode("utf-8", "replace")
        return cls(status, "http_error", text, None, None, method, path)


class TransportError(TaskGateException):
    """No usable answer: the server could not be reached, the connection broke, or the answer was unreadable."""


class TransportTimeout(TransportError):
    """A request got no (complete) answer within its timeout."""


class WaitTimeout(TaskGateException, TimeoutError):
    """`wait()` ran out of time before the task finished; `task` is its last known state."""

    def __init__(self, task: Task, timeout: float):
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task.id} not finished within {timeout:g} s (status {task.status})")

