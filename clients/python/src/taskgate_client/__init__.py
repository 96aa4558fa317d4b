"""TaskGate client for application backends.

    from taskgate_client import Client, mint_token

    with Client("http://127.0.0.1:9501", admin_token="s3cret") as tg:
        task = tg.submit("sleep", {"ms": 2000}, uid="alice", id="export-4711")
        done = tg.wait(task.id, timeout=30)            # the final task: done.status, done.result

    token = mint_token("alice", 3600, secret="the server's --token-secret")   # for the browser, in token mode

`AsyncClient` has the same methods as coroutines. Errors: `TaskGateError` (the server answered an error: `status`,
`error`, `info`), `TransportError` (no usable answer; `TransportTimeout` when a request timed out), `WaitTimeout`
(`wait()` ran out of time; `task` is its last state). All derive from `TaskGateException`.
"""

from ._model import (
    FINAL_STATUSES,
    Task,
    TaskGateError,
    TaskGateException,
    TaskStatus,
    TransportError,
    TransportTimeout,
    WaitTimeout,
)
from ._version import __version__
from .client import DEFAULT_TIMEOUT, AsyncClient, Client
from .tokens import mint_token

__all__ = [
    "AsyncClient",
    "Client",
    "DEFAULT_TIMEOUT",
    "FINAL_STATUSES",
    "Task",
    "TaskGateError",
    "TaskGateException",
    "TaskStatus",
    "TransportError",
    "TransportTimeout",
    "WaitTimeout",
    "__version__",
    "mint_token",
]
