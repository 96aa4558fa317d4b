"""OpenTelemetry tracing: `serve --otel` exports OTLP/HTTP spans to a loopback receiver started here.

One REST submit with a caller's `traceparent` header gives one trace: the HTTP server span (child of the caller),
`task.submit` (child of the HTTP span), `task.queued` and `task.run` (children of `task.submit`), `task.deliver`
(child of `task.run`), and the command handler's process sees a `TRACEPARENT` whose parent is `task.run`. A WebSocket
message's `traceparent` field does the same; without `--otel` nothing is stored.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import new_uid, run, wait_task_final, wait_until

# From Tests/e2e/requirements.txt (scripts/install-test-deps.sh installs it): a missing package fails, not skips.
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

NO_PROXY = {"http": None, "https": None}

HANDLER = """\
import json, os, sys
task = json.loads(sys.stdin.readline())
print(json.dumps({"result": {"traceparent": os.environ.get("TRACEPARENT")}}), flush=True)
"""

WORKER = """\
import json, sys
for line in sys.stdin:
    task = json.loads(line)
    print(json.dumps({"id": task["id"], "result": {"traceparent": task.get("traceparent")}}), flush=True)
"""


class Receiver:
    """A loopback OTLP/HTTP traces endpoint: decodes every POST /v1/traces and keeps the spans."""

    def __init__(self):
        self.spans: list[dict] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request):
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {}
                    for a in span.attributes:
                        kind = a.value.WhichOneof("value")
                        attributes[a.key] = getattr(a.value, kind) if kind else None
                    spans.append({
                        "name": span.name, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex(), "kind": span.kind, "attributes": attributes,
                        "status": span.status.code, "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano, "service": resource.get("service.name"),
                    })
        with self.lock:
            self.requests += 1
            self.spans.extend(spans)

    def trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def write_config(tmp_path: Path) -> Path:
    handler = tmp_path / "traced_handler.py"
    handler.write_text(HANDLER)
    worker = tmp_path / "traced_worker.py"
    worker.write_text(WORKER)
    config = tmp_path / "taskgate.json"
    config.write_text(json.dumps({"handlers": {
        "traced": {"type": "command", "command": [sys.executable, str(handler)], "timeout_ms": 20000},
        "traced_worker": {"type": "worker", "command": [sys.executable, str(worker)], "processes": 1,
                          "timeout_ms": 20000},
    }}))
    return config


@pytest.fixture
def traced_server(start_server, receiver, tmp_path, monkeypatch):
    # start_server passes its environment on to the server process.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    server = start_server("--otel", "--config", str(write_config(tmp_path)), "--store", "memory")
    monkeypatch.undo()
    return server


def parse_traceparent(value: str) -> tuple[str, str]:
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(parent_id) == 16 and len(flags) == 2, value
    return trace_id, parent_id


def spans_named(receiver: Receiver, trace_id: str, names: set[str], what: str) -> dict[str, dict]:
    """Waits (bounded) until the trace holds a span of each name; returns them by name."""
    def ready():
        by_name = {}
        for span in receiver.trace(trace_id):
            by_name.setdefault(span["name"], span)
        return by_name if names <= set(by_name) else None
    return wait_until(ready, timeout=20, what=what)


def test_rest_submit_is_one_trace_from_the_caller_to_the_handler(traced_server, receiver):
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    r = requests.post(f"{traced_server.base_url}/api/v1/tasks", json={"cmd": "traced", "args": {}, "uid": new_uid("tr")},
                      headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"}, timeout=10, proxies=NO_PROXY)
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    done = wait_task_final(requests.Session(), traced_server.base_url, task_id, timeout=20)
    assert done["status"] == "succeeded", done

    names = {"task.submit", "task.queued", "task.run", "task.deliver"}
    spans = spans_named(receiver, caller_trace, names, "the task's spans")
    http = wait_until(lambda: [s for s in receiver.trace(caller_trace) if s["name"] not in names],
                      timeout=20, what="the HTTP server span")
    assert len(http) == 1, http
    http = http[0]
    assert http["kind"] == 2, http  # SPAN_KIND_SERVER
    assert "/api/v1/tasks" in http["name"] or http["attributes"].get("url.path") == "/api/v1/tasks", http

    submit, queued, run_span, deliver = (spans[n] for n in ("task.submit", "task.queued", "task.run", "task.deliver"))
    assert http["parent_id"] == caller_span
    assert submit["parent_id"] == http["span_id"]
    assert queued["parent_id"] == submit["span_id"]
    assert run_span["parent_id"] == submit["span_id"]
    assert deliver["parent_id"] == run_span["span_id"]
    assert {s["service"] for s in [http, submit, queued, run_span, deliver]} == {"taskgate"}

    assert submit["attributes"]["taskgate.task.id"] == task_id
    assert submit["attributes"]["taskgate.task.cmd"] == "traced"
    assert submit["attributes"]["taskgate.uid"] == done["uid"]
    assert run_span["attributes"]["taskgate.task.attempt"] == 1
    assert run_span["attributes"]["taskgate.task.cmd"] == "traced"
    assert queued["start"] <= queued["end"] <= run_span["start"] + 5_000_000
    assert run_span["start"] <= deliver["start"] <= deliver["end"] <= run_span["end"]

    # The record keeps the submit span; the handler's process was given the run span.
    assert parse_traceparent(done["traceparent"]) == (caller_trace, submit["span_id"])
    handler_trace, handler_parent = parse_traceparent(done["result"]["traceparent"])
    assert (handler_trace, handler_parent) == (caller_trace, run_span["span_id"])


def test_a_worker_gets_the_traceparent_in_its_task_line(traced_server, receiver):
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    r = requests.post(f"{traced_server.base_url}/api/v1/tasks", json={"cmd": "traced_worker", "args": {}},
                      headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"}, timeout=10, proxies=NO_PROXY)
    assert r.status_code == 202, r.text
    done = wait_task_final(requests.Session(), traced_server.base_url, r.json()["id"], timeout=20)
    assert done["status"] == "succeeded", done
    spans = spans_named(receiver, caller_trace, {"task.run"}, "the run span")
    assert parse_traceparent(done["result"]["traceparent"]) == (caller_trace, spans["task.run"]["span_id"])


def test_a_websocket_message_joins_its_callers_trace(traced_server, receiver, ws_connect):
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    uid = new_uid("trws")

    async def body():
        ws = await ws_connect(uid, srv=traced_server)
        await ws.next()  # hello
        reply = await ws.request({"cmd": "traced", "args": {}, "traceparent": f"00-{caller_trace}-{caller_span}-01"})
        assert reply["type"] == "submitted", reply
        events = await ws.events_until_done(reply["task"]["id"], timeout=20)
        return events[-1]["task"]

    event = run(body())
    assert event["status"] == "succeeded", event
    # The done event says what changed (status, result, error); the stored task has its traceparent.
    done = wait_task_final(requests.Session(), traced_server.base_url, event["id"], timeout=20)
    assert done["result"] == event["result"], (done, event)
    spans = spans_named(receiver, caller_trace, {"task.submit", "task.run", "task.deliver"}, "the WebSocket task's spans")
    assert spans["task.submit"]["parent_id"] == caller_span
    assert spans["task.run"]["parent_id"] == spans["task.submit"]["span_id"]
    assert spans["task.deliver"]["parent_id"] == spans["task.run"]["span_id"]
    assert parse_traceparent(done["traceparent"]) == (caller_trace, spans["task.submit"]["span_id"])
    assert parse_traceparent(done["result"]["traceparent"]) == (caller_trace, spans["task.run"]["span_id"])


def test_an_invalid_traceparent_starts_a_new_trace(traced_server, receiver):
    r = requests.post(f"{traced_server.base_url}/api/v1/tasks", json={"cmd": "traced", "args": {}},
                      headers={"traceparent": "00-not-a-trace-01"}, timeout=10, proxies=NO_PROXY)
    assert r.status_code == 202, r.text
    done = wait_task_final(requests.Session(), traced_server.base_url, r.json()["id"], timeout=20)
    assert done["status"] == "succeeded", done
    trace_id, _ = parse_traceparent(done["traceparent"])
    spans = spans_named(receiver, trace_id, {"task.submit", "task.run"}, "the new trace")
    assert spans["task.run"]["parent_id"] == spans["task.submit"]["span_id"]


def test_without_otel_no_traceparent_is_stored(start_server, tmp_path, monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    server = start_server("--config", str(write_config(tmp_path)), "--store", "memory")
    monkeypatch.undo()
    r = requests.post(f"{server.base_url}/api/v1/tasks", json={"cmd": "traced", "args": {}},
                      headers={"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
                      timeout=10, proxies=NO_PROXY)
    assert r.status_code == 202, r.text
    assert r.json()["traceparent"] is None
    done = wait_task_final(requests.Session(), server.base_url, r.json()["id"], timeout=20)
    assert done["status"] == "succeeded", done
    assert done["traceparent"] is None
    assert done["result"]["traceparent"] is None
