"""A minimal Server-Sent Events reader for the end-to-end tests (plain http.client, every wait bounded)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit


@dataclass
class Frame:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def json(self):
        return json.loads(self.data)


class SSEStream:
    """GET /sse?uid=…[&cursor=…] with an optional Last-Event-ID header; read frames one by one."""

    def __init__(self, base_url: str, uid: str | None = None, cursor: int | None = None,
                 last_event_id: str | int | None = None, params: dict | None = None, timeout: float = 10.0):
        parts = urlsplit(base_url)
        query = dict(params or {})
        if uid is not None:
            query["uid"] = uid
        if cursor is not None:
            query["cursor"] = str(cursor)
        self.path = "/sse" + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", self.path, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.broken = False
        self.frames: list[Frame] = []

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def body(self) -> bytes:
        """For a non-200 answer: the whole (JSON) body."""
        return self.response.read()

    def next_frame(self, timeout: float = 5.0, skip_comments: bool = True) -> Frame:
        """The next frame; raises TimeoutError after `timeout` seconds (the stream is unusable afterwards)."""
        assert not self.broken, "the stream timed out before; open a new one"
        deadline = time.monotonic() + timeout
        frame = Frame()
        seen_field = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.broken = True
                raise TimeoutError(f"no complete SSE frame within {timeout}s")
            self.conn.sock.settimeout(left)
            try:
                raw = self.response.readline()
            except (socket.timeout, TimeoutError):
                self.broken = True
                raise TimeoutError(f"no complete SSE frame within {timeout}s") from None
            if raw == b"":
                raise EOFError("the server ended the SSE stream")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if seen_field:
                    self.frames.append(frame)
                    return frame
                if frame.comments and not skip_comments:
                    return frame
                frame = Frame()
                continue
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            seen_field = True
            if name == "event":
                frame.event = value
            elif name == "id":
                frame.id = value
            elif name == "data":
                frame.data = value if not frame.data else frame.data + "\n" + value

    def events_until(self, pred, timeout: float = 10.0) -> list[Frame]:
        """Frames read until pred(frame) holds for one of them (inclusive)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            f = self.next_frame(max(0.05, deadline - time.monotonic()))
            out.append(f)
            if pred(f):
                return out

    def assert_silent(self, duration: float) -> None:
        """No frame (other than heartbeats) arrives within `duration` seconds. Breaks the stream."""
        try:
            f = self.next_frame(duration)
        except TimeoutError:
            return
        raise AssertionError(f"expected no SSE frame, got {f}")

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
