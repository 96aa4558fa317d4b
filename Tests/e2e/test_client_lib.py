"""The browser client library (public/taskgate.js), Server-Sent Events end to end, and the admin dashboard.

Browser tests drive headless Chromium (like test_browser.py) on the pages the server ships: the client example
(public/examples/client.html, which loads /taskgate.js), the demo page and /admin/. Library calls are injected with
execute_async_script; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from browser import SCREENSHOTS, launch_browser
from conftest import (REPO, STARTUP_TIMEOUT, TASKGATE_BIN, ADMIN_TOKEN, ServerHandle, _stop_and_check, free_port,
                      new_uid, wait_task_final)
from sse_client import SSEStream

HTTP = requests.Session()
HTTP.trust_env = False  # loopback only: never through a proxy


# --------------------------------------------------------------------------- browser plumbing


@pytest.fixture(scope="module")
def driver():
    drv = launch_browser("1400,1000")
    yield drv
    drv.quit()


def _wait(drv, cond, timeout, what):
    """WebDriverWait that retries while elements are missing or were just re-rendered (stale)."""
    from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                            TimeoutException)
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(cond)
    except TimeoutException as e:  # add the page state to the message
        shot = SCREENSHOTS / f"failure-{int(time.time() * 1000)}.png"
        drv.save_screenshot(str(shot))
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; screenshot={shot}") from e


JS_PRELUDE = """
const __done = arguments[arguments.length - 1];
const __args = Array.prototype.slice.call(arguments, 0, -1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (pred, ms, what) => {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) { throw new Error('timed out after ' + ms + ' ms waiting for ' + what); }
    await sleep(20);
  }
};
"""


def js(drv, body: str, *args, timeout: float = 15):
    """Runs `body` as an async function in the page (arguments = args) and returns its value; JS errors fail."""
    drv.set_script_timeout(timeout + 5)
    script = JS_PRELUDE + "(async function () {\n" + body + "\n}).apply(null, __args).then(" \
        "(v) => __done({ok: true, value: v === undefined ? null : v}), " \
        "(e) => __done({ok: false, error: String(e && e.stack || e)}));"
    r = drv.execute_async_script(script, *args)
    assert r["ok"], f"in-page script failed: {r['error']}"
    return r["value"]


def _library_page(drv, base_url: str):
    drv.get(f"{base_url}/examples/client.html")
    _wait(drv, lambda d: d.execute_script("return !!(window.TaskGate && window.exampleClient)"), 10,
          "taskgate.js on the example page")


def _event_log(base_url: str, uid: str) -> list[dict]:
    """Every retained event of the uid (GET /poll from cursor 0, no wait)."""
    r = HTTP.get(f"{base_url}/poll", params={"uid": uid, "cursor": 0, "timeout": 0}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def _contiguous(seqs: list[int], first: int = 1) -> bool:
    return seqs == list(range(first, first + len(seqs)))


# --------------------------------------------------------------------------- static files


def test_client_and_dashboard_files_are_served(server):
    s = HTTP
    r = s.get(f"{server.base_url}/taskgate.js", timeout=10)
    assert r.status_code == 200 and "javascript" in r.headers["Content-Type"], r.headers
    assert "root.TaskGate = TaskGate" in r.text and "export " not in r.text, "classic script: no export"
    r = s.get(f"{server.base_url}/taskgate.mjs", timeout=10)
    assert r.status_code == 200 and "javascript" in r.headers["Content-Type"], \
        "module scripts need a JavaScript MIME type"
    assert "export" in r.text and "import './taskgate.js'" in r.text
    r = s.get(f"{server.base_url}/admin", allow_redirects=False, timeout=10)
    assert r.status_code in (301, 302, 307, 308) and r.headers["Location"] == "/admin/", (r.status_code, r.headers)
    r = s.get(f"{server.base_url}/admin/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and "admin.js" in r.text
    for path in ("/admin/admin.js", "/admin/admin.css", "/examples/client.html"):
        assert s.get(server.base_url + path, timeout=10).status_code == 200, path
    page = s.get(f"{server.base_url}/", timeout=10).text
    assert page.index("taskgate.js") < page.index("app.js"), "the demo page loads the library before app.js"


# --------------------------------------------------------------------------- SSE with a plain HTTP client


def _post(base_url: str, uid: str, msg: dict) -> dict:
    r = HTTP.post(f"{base_url}/poll", params={"uid": uid}, json=msg, timeout=10)
    assert r.status_code in (200, 202), r.text
    return r.json()


def test_sse_resume_with_last_event_id(server, contract):
    uid = new_uid("sse-resume")
    base = server.base_url
    with SSEStream(base, uid=uid) as first:
        assert first.status == 200 and first.content_type.startswith("text/event-stream")
        hello = first.next_frame()
        assert hello.event == "hello" and hello.id is None and hello.json["head"] == 0 and "seq" not in hello.json
        tid = _post(base, uid, {"cmd": "echo", "args": {"n": 1}})["task"]["id"]
        frames = first.events_until(lambda f: f.event == "done", 10)
        assert all(f.json["task"]["id"] == tid for f in frames)
        last_id = int(frames[-1].id)
        assert [int(f.id) for f in frames] == list(range(1, last_id + 1))
    # Disconnected: more events happen.
    missed = [_post(base, uid, {"cmd": "sleep", "args": {"ms": 150}})["task"]["id"],
              _post(base, uid, {"cmd": "fail", "args": {"message": "while away"}})["task"]["id"]]
    for t in missed:
        wait_task_final(HTTP, base, t, 10)
    latest = _event_log(base, uid)[-1]["seq"]
    assert latest > last_id + 2

    # EventSource's reconnect: Last-Event-ID -> exactly the missed events, in order, then silence.
    with SSEStream(base, uid=uid, last_event_id=last_id) as again:
        hello = again.next_frame().json
        assert hello["type"] == "hello" and hello["head"] == latest and hello["reset"] is False, hello
        assert "seq" not in hello, hello
        frames = again.events_until(lambda f: int(f.id) == latest, 10)
        for f in frames:
            problems = contract.check_message("ServerMessage", f.json)
            assert not problems, problems
        assert [int(f.id) for f in frames] == list(range(last_id + 1, latest + 1)), [f.id for f in frames]
        assert [f.json["seq"] for f in frames] == [int(f.id) for f in frames]
        assert {f.json["task"]["id"] for f in frames} == set(missed)
        dones = {f.json["task"]["id"]: f.json["task"]["status"] for f in frames if f.event == "done"}
        assert dones == {missed[0]: "succeeded", missed[1]: "failed"}
        again.assert_silent(0.4)

    # No cursor: no replay. Last-Event-ID wins over ?cursor=. A cursor beyond the log: reset, replay from the start.
    with SSEStream(base, uid=uid) as live:
        assert live.next_frame().json["head"] == latest
        live.assert_silent(0.3)
    with SSEStream(base, uid=uid, cursor=0, last_event_id=latest) as both:
        assert both.next_frame().json["reset"] is False
        both.assert_silent(0.3)
    with SSEStream(base, uid=uid, cursor=latest + 50) as ahead:
        hello = ahead.next_frame().json
        assert hello["reset"] is True, hello
        assert int(ahead.next_frame().id) == 1


# --------------------------------------------------------------------------- the library over each transport


@pytest.mark.parametrize("transport", ["websocket", "sse", "long-poll"])
def test_client_library_over_each_transport(server, driver, api, transport):
    uid = new_uid("lib-" + transport.replace("-", ""))
    _library_page(driver, server.base_url)
    connected = js(driver, """
        const [uid, transport] = arguments;
        const c = TaskGate.connect({uid, transports: [transport]});
        window.__t = {c, states: [], seqs: [], resumed: [], keys: {}, hellos: []};
        const keys = (e) => { __t.keys[e.type + ':' + Object.keys(e.task).sort().join(',')] = true; };
        c.on('state', (s) => __t.states.push(s.state + ':' + s.transport));
        c.on('resumed', (r) => __t.resumed.push(r));
        c.on('hello', (h) => __t.hellos.push(h));
        c.on('progress', (e) => { __t.seqs.push(e.seq); keys(e); });
        c.on('done', (e) => { __t.seqs.push(e.seq); keys(e); });
        await c.ready(8000);
        return {transport: c.transport, cursor: c.cursor, uid: c.uid, hello: __t.hellos[0]};
    """, uid, transport)
    hello = connected.pop("hello")
    assert connected == {"transport": transport, "cursor": 0, "uid": uid}
    # The server's hello (or, on long-poll, the client's stand-in) says head, not seq.
    assert hello["head"] == 0 and "seq" not in hello and hello["transport"] == transport, hello
    assert hello.get("synthetic", False) is (transport == "long-poll"), hello
    if transport != "long-poll":  # a long-poll client is listed only while a GET /poll waits: racy, skip
        clients = api.get(f"{server.base_url}/api/v1/clients").json()["clients"]
        assert any(c["uid"] == uid and c["transport"] == transport for c in clients), clients

    out = js(driver, """
        const c = __t.c, uid = arguments[0];
        const progress = [], progressCmds = [];
        const task = await c.submit('sleep', {ms: 400}, {onProgress: (t) => {
          progress.push(t.progress); progressCmds.push(t.cmd + ' ' + JSON.stringify(t.args)); }});
        const rtt = await c.ping();
        const status = await c.status(task.id);
        const handlers = await c.handlers();
        const failure = async (p) => { try { await p; return null; } catch (e) {
          return {name: e.name, code: e.code, error: e.error, info: e.info, task: e.task || null}; } };
        const unknown = await failure(c.submit('nope', {}));
        const failed = await failure(c.submit('fail', {message: 'boom'}));
        const missing = await failure(c.status('missing-' + uid));
        const result = {task, progress, progressCmds, rtt, status: status.status, handlers, unknown, failed, missing,
          transport: c.transport, cursor: c.cursor, seqs: __t.seqs, states: __t.states, resumed: __t.resumed,
          keys: Object.keys(__t.keys).sort(), stored: sessionStorage.getItem('taskgate.cursor.' + uid)};
        c.close();
        return result;
    """, uid)
    task = out["task"]
    assert task["status"] == "succeeded" and task["result"] == {"slept_ms": 400} and task["uid"] == uid, task
    # Events carry what changed; submit() resolves with the whole task (the submitted reply's, events merged in).
    assert task["cmd"] == "sleep" and task["args"] == {"ms": 400} and task["error"] is None, task
    assert task["createdAt"] and task["attempts"] == 1, task
    assert out["keys"] == ["done:error,id,result,status", "progress:attempts,id,progress,status"], out["keys"]
    assert set(out["progressCmds"]) == {'sleep {"ms":400}'}, out["progressCmds"]
    assert len(out["progress"]) >= 5 and out["progress"] == sorted(out["progress"]), out["progress"]
    assert out["status"] == "succeeded" and out["rtt"] >= 0
    assert sorted(out["handlers"]) == ["echo", "fail", "primes", "sleep"]
    assert out["unknown"] == {"name": "TaskGateError", "code": 404, "error": "unknown_command",
                              "info": out["unknown"]["info"], "task": None}
    assert out["failed"]["error"] == "failed" and out["failed"]["info"] == "boom"
    assert out["failed"]["task"]["status"] == "failed" and out["failed"]["task"]["cmd"] == "fail"
    assert out["failed"]["task"]["args"] == {"message": "boom"} and out["failed"]["task"]["error"] == "boom"
    assert out["missing"]["code"] == 404 and out["missing"]["error"] == "not_found"
    assert out["transport"] == transport
    assert out["states"][:2] == [f"connecting:{transport}", f"connected:{transport}"], out["states"]
    assert out["resumed"][0]["fresh"] is True and out["resumed"][0]["complete"] is True
    # every event exactly once, in order, and the cursor is kept in sessionStorage
    assert _contiguous(out["seqs"]) and out["cursor"] == out["seqs"][-1], out["seqs"]
    assert out["stored"] == str(out["cursor"])
    log = _event_log(server.base_url, uid)
    assert [e["seq"] for e in log] == out["seqs"]


def test_es_module_import(server, driver):
    """taskgate.mjs on a page that did not load taskgate.js as a classic script."""
    driver.get(f"{server.base_url}/healthz")  # any same-origin page without the library
    uid = new_uid("esm")
    out = js(driver, """
        const before = typeof window.TaskGate;
        const m = await import('/taskgate.mjs');
        const c = m.TaskGate.connect({uid: arguments[0]});
        const task = await c.submit('echo', {via: 'module'});
        c.close();
        return {before, same: m.TaskGate === window.TaskGate && m.default === m.TaskGate,
                client: typeof m.Client, error: typeof m.TaskGateError, transport: c.transport, result: task.result};
    """, uid)
    assert out == {"before": "undefined", "same": True, "client": "function", "error": "function",
                   "transport": "websocket", "result": {"via": "module"}}


# --------------------------------------------------------------------------- fallback and upgrade


def test_fallback_when_websocket_fails_and_upgrade_later(server, driver):
    _library_page(driver, server.base_url)
    uid, uid2 = new_uid("fb-sse"), new_uid("fb-lp")
    out = js(driver, """
        const [uid, uid2] = arguments;
        window.wsOk = false;  // the WebSocket URL 404s until the test flips this
        const c = TaskGate.connect({uid, upgradeInterval: 600,
          webSocketUrl: () => location.origin + (window.wsOk ? '/ws' : '/no-such-endpoint')});
        const states = [], seqs = [];
        c.on('state', (s) => states.push(s.state + ':' + s.transport + (s.upgraded ? ':upgraded' : '')));
        c.on('progress', (e) => seqs.push(e.seq));
        c.on('done', (e) => seqs.push(e.seq));
        await c.ready(8000);
        const first = c.transport;
        const echo = await c.submit('echo', {n: 1});
        window.wsOk = true;
        const slow = c.submit('sleep', {ms: 1500});   // the upgrade happens while it runs
        await until(() => c.transport === 'websocket' && c.state === 'connected', 8000, 'the upgrade');
        const task = await slow;
        const after = c.transport;
        c.close();

        // WebSocket refused at the TCP level (nothing listens on port 1): long-poll is next in this list.
        const c2 = TaskGate.connect({uid: uid2, transports: ['websocket', 'long-poll'],
                                     webSocketUrl: 'ws://127.0.0.1:1/ws', upgradeInterval: 0});
        await c2.ready(8000);
        const lp = await c2.submit('echo', {n: 2});
        const second = c2.transport;
        c2.close();
        return {first, after, states, seqs, echo: echo.result, slow: task.status, second, lp: lp.result};
    """, uid, uid2, timeout=25)
    assert out["first"] == "sse", out
    assert out["after"] == "websocket", out
    assert out["states"][:3] == ["connecting:websocket", "connecting:sse", "connected:sse"], out["states"]
    assert "connected:websocket:upgraded" in out["states"], out["states"]
    assert out["echo"] == {"n": 1} and out["slow"] == "succeeded"
    # the switch lost nothing and duplicated nothing
    assert _contiguous(out["seqs"]), out["seqs"]
    assert out["second"] == "long-poll" and out["lp"] == {"n": 2}


# --------------------------------------------------------------------------- demo page over SSE


def test_demo_page_sse(server, driver, api):
    from selenium.webdriver.common.by import By

    uid = new_uid("br-sse")
    driver.get(f"{server.base_url}/?transport=sse")
    _wait(driver, lambda d: d.execute_script("return !!window.TaskGateDemo"), 10, "app.js")
    assert driver.find_element(By.ID, "transport").text == "sse"
    box = driver.find_element(By.ID, "uid")
    box.clear()
    box.send_keys(uid)
    driver.find_element(By.ID, "connect").click()
    _wait(driver, lambda d: d.find_element(By.ID, "state").text == "connected", 10, "#state connected")
    assert driver.find_element(By.ID, "transport").text == "sse"
    ms = driver.find_element(By.ID, "sleep-ms")
    ms.clear()
    ms.send_keys("500")
    driver.find_element(By.CSS_SELECTOR, 'button[data-cmd="sleep"]').click()
    card = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "div.task[data-id]"), 5, "a task card")[0]
    tid = card.get_attribute("data-id")
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'div.task[data-id="{tid}"]')
          .get_attribute("data-status") == "succeeded", 10, "the card to succeed")
    text = driver.find_element(By.CSS_SELECTOR, f'div.task[data-id="{tid}"]').text
    assert "slept_ms" in text, text
    # The events merged into the task of the submitted reply: its cmd and args are still on the card.
    assert text.startswith("sleep") and 'args {"ms":500}' in text, text
    assert int(driver.find_element(By.ID, "cursor").text) >= 2
    clients = api.get(f"{server.base_url}/api/v1/clients").json()["clients"]
    assert any(c["uid"] == uid and c["transport"] == "sse" for c in clients), clients
    driver.save_screenshot(str(SCREENSHOTS / "sse-succeeded.png"))
    driver.get("about:blank")


# --------------------------------------------------------------------------- server restart mid-task


def _launch_on_port(tmp_dir: Path, port: int, extra: list[str]) -> ServerHandle:
    """Like conftest._launch, but on a given port (so a restarted server is where the page expects it)."""
    log_dir = tmp_dir / f"log-{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    output_path = tmp_dir / f"server-{port}-{time.monotonic_ns()}.out"
    args = [str(TASKGATE_BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-dir", str(log_dir),
            "--public-dir", str(REPO / "public"), *extra]
    env = dict(os.environ)
    env.pop("TASKGATE_ADMIN_TOKEN", None)
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    handle = ServerHandle(port=port, proc=proc, log_dir=log_dir, output_path=output_path, args=args)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if HTTP.get(handle.base_url + "/healthz", timeout=1).status_code == 200:
                return handle
        except requests.RequestException:
            pass
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)
    pytest.fail(f"taskgate did not start on port {port}: {handle.output()[-2000:]}")


def test_demo_page_survives_server_restart(driver, tmp_path):
    from selenium.webdriver.common.by import By

    port = free_port()
    extra = ["--data-dir", str(tmp_path / "data"), "--shutdown-grace", "0"]
    srv = _launch_on_port(tmp_path, port, extra)
    restarted = None
    try:
        uid = new_uid("restart")
        driver.get(f"{srv.base_url}/?uid={uid}")
        _wait(driver, lambda d: d.execute_script("return !!window.TaskGateDemo"), 10, "app.js")
        driver.find_element(By.ID, "connect").click()
        _wait(driver, lambda d: d.find_element(By.ID, "state").text == "connected", 10, "#state connected")
        js(driver, """
            const c = TaskGateDemo.client();
            window.__r = {seqs: [], resumed: [], states: []};
            c.on('progress', (e) => __r.seqs.push(e.seq));
            c.on('done', (e) => __r.seqs.push(e.seq));
            c.on('resumed', (r) => __r.resumed.push(r));
            c.on('state', (s) => __r.states.push(s.state));
        """)
        ms = driver.find_element(By.ID, "sleep-ms")
        ms.clear()
        ms.send_keys("2000")
        driver.find_element(By.CSS_SELECTOR, 'button[data-cmd="sleep"]').click()
        card = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "div.task[data-id]"), 5, "a task card")[0]
        tid = card.get_attribute("data-id")
        js(driver, "await until(() => __r.seqs.length >= 3, 5000, 'a few progress events');")
        before = js(driver, "return TaskGateDemo.client().cursor;")

        code = srv.stop()   # SIGTERM: the running task is interrupted (grace 0) and re-run after the restart
        assert code == 0, srv.output()[-2000:]
        _wait(driver, lambda d: d.find_element(By.ID, "state").text != "connected", 5, "the page to notice")
        restarted = _launch_on_port(tmp_path, port, extra)

        _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'div.task[data-id="{tid}"]')
              .get_attribute("data-status") == "succeeded", 20, "the task to finish after the restart")
        out = js(driver, "return {r: __r, cursor: TaskGateDemo.client().cursor, "
                         "notice: document.getElementById('reset-notice').hidden};")
        r = out["r"]
        resumes = [x for x in r["resumed"] if not x["fresh"]]
        assert resumes and resumes[0]["complete"] is True and resumes[0]["cursor"] >= before, r["resumed"]
        assert out["notice"] is True, "a complete resume must not show the reset notice"
        assert "disconnected" in r["states"] and r["states"][-1] == "connected", r["states"]
        log = _event_log(restarted.base_url, uid)
        # the page saw every event of the uid exactly once, in order, across the restart
        assert r["seqs"] == [e["seq"] for e in log], (r["seqs"], [e["seq"] for e in log])
        assert out["cursor"] == log[-1]["seq"]
        final = HTTP.get(f"{restarted.base_url}/api/v1/tasks/{tid}", timeout=10).json()
        assert final["status"] == "succeeded" and final["attempts"] == 2, final
        text = driver.find_element(By.ID, "log").text
        assert "nothing missed" in text, text[:2000]
        driver.save_screenshot(str(SCREENSHOTS / "restart-resumed.png"))
    finally:
        driver.get("about:blank")
        for handle in (restarted, srv):
            if handle is not None and handle.proc.poll() is None:
                _stop_and_check(handle)


# --------------------------------------------------------------------------- admin dashboard


def _submit(base_url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = HTTP.post(f"{base_url}/api/v1/tasks", json=body, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    return r.json()


def test_dashboard(server, driver, api):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    uid = new_uid("dash")
    slow = _submit(server.base_url, {"cmd": "sleep", "args": {"ms": 20000, "id": "dash-" + uuid.uuid4().hex[:8]},
                                     "uid": uid})
    quick = _submit(server.base_url, {"cmd": "echo", "args": {"hello": "dashboard"}, "uid": uid})
    generation = api.get(f"{server.base_url}/api/v1/handlers").json()["generation"]

    driver.get(f"{server.base_url}/admin/?uid={uid}")
    _wait(driver, lambda d: d.find_element(By.ID, "auth-status").get_attribute("data-auth") == "open", 10,
          "the dashboard to find the API open (loopback, no token)")
    row = f'tr.task-row[data-id="{slow["id"]}"]'
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, row) and
          d.find_elements(By.CSS_SELECTOR, f'tr.task-row[data-id="{quick["id"]}"][data-status="succeeded"]'),
          10, "both REST tasks in the list")
    _wait(driver, lambda d: d.find_element(By.ID, "running").text not in ("", "\u2013", "0"), 5, "a running count")
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-handler="sleep"] td.running').text != "0", 5,
          "the sleep handler's running count")
    for t in ("websocket", "sse", "long-poll"):
        assert driver.find_element(By.ID, f"conn-{t}").text.isdigit()
    assert driver.find_element(By.ID, "error").is_displayed() is False

    # detail, then cancel
    driver.find_element(By.CSS_SELECTOR, f"{row} button[data-action=select]").click()
    _wait(driver, lambda d: d.find_element(By.ID, "detail").get_attribute("data-id") == slow["id"], 5, "the detail")
    assert driver.find_element(By.ID, "d-status").text.lower() == "running"
    assert driver.find_element(By.ID, "d-attempts").text == "1"
    assert '"ms": 20000' in driver.find_element(By.ID, "d-args").text
    assert driver.find_element(By.ID, "d-uid").text == uid
    driver.find_element(By.ID, "d-cancel").click()
    _wait(driver, lambda d: d.find_element(By.ID, "detail").get_attribute("data-status") == "cancelled", 5,
          "the task to be cancelled")
    assert wait_task_final(api, server.base_url, slow["id"], 5)["status"] == "cancelled"
    assert driver.find_element(By.ID, "d-cancel").is_enabled() is False

    # retry = the same cmd/args/uid as a new task (without the old id)
    driver.find_element(By.ID, "d-retry").click()
    _wait(driver, lambda d: d.find_element(By.ID, "detail").get_attribute("data-id") not in (None, slow["id"]), 5,
          "the retried task to be selected")
    new_id = driver.find_element(By.ID, "detail").get_attribute("data-id")
    again = api.get(f"{server.base_url}/api/v1/tasks/{new_id}").json()
    assert again["cmd"] == "sleep" and again["uid"] == uid and again["args"] == {"ms": 20000}, again
    _wait(driver, lambda d: d.find_element(By.ID, "d-cancel").is_enabled(), 5, "cancel for the new task")
    driver.find_element(By.ID, "d-cancel").click()   # do not leave a 20 s task behind
    assert wait_task_final(api, server.base_url, new_id, 5)["status"] == "cancelled"

    # handler filter (client side) and status filter
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#f-handler option[value="echo"]'), 5, "handler names")
    Select(driver.find_element(By.ID, "f-handler")).select_by_value("echo")
    _wait(driver, lambda d: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "tr.task-row")]
          == [quick["id"]], 5, "only the echo task")
    Select(driver.find_element(By.ID, "f-handler")).select_by_value("")
    Select(driver.find_element(By.ID, "f-status")).select_by_value("cancelled")
    rows = lambda d: sorted((r.get_attribute("data-id"), r.get_attribute("data-status"))
                            for r in d.find_elements(By.CSS_SELECTOR, "tr.task-row"))
    _wait(driver, lambda d: rows(d) == sorted([(slow["id"], "cancelled"), (new_id, "cancelled")]), 5,
          "the two cancelled tasks")

    # reload
    driver.find_element(By.ID, "reload").click()
    _wait(driver, lambda d: d.find_element(By.ID, "reload-result").get_attribute("data-generation")
          == str(generation + 1), 5, "the reload result")
    text = driver.find_element(By.ID, "reload-result").text
    assert f"generation {generation + 1}" in text and "added:" in text and "removed:" in text, text

    # the chart has counters behind it
    # (the counters come from /api/v1/stats, polled every second)
    def cancelled_count(d):
        text = d.find_element(By.ID, "fin-cancelled").text.strip()
        return int(text) if text.isdigit() else 0

    _wait(driver, lambda d: cancelled_count(d) >= 2, 5, "the cancelled counter")
    assert driver.find_element(By.ID, "chart").size["height"] > 100
    Select(driver.find_element(By.ID, "f-status")).select_by_value("")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.task-row")) == 3, 5, "all three tasks")
    size = driver.get_window_size()
    driver.set_window_size(1400, 1350)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)  # one more chart sample
    driver.save_screenshot(str(SCREENSHOTS / "dashboard.png"))
    driver.set_window_size(size["width"], size["height"])


def test_dashboard_with_admin_token(token_server, driver):
    from selenium.webdriver.common.by import By

    uid = new_uid("dash-tok")
    task = _submit(token_server.base_url, {"cmd": "echo", "args": {"t": 1}, "uid": uid}, ADMIN_TOKEN)
    driver.get(f"{token_server.base_url}/admin?uid={uid}")   # without the slash: redirected
    auth = lambda d: d.find_element(By.ID, "auth-status").get_attribute("data-auth")
    _wait(driver, lambda d: auth(d) == "required", 10, "read-only mode")
    assert driver.current_url.startswith(f"{token_server.base_url}/admin/")
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and "401" in error.text, error.text
    assert not driver.find_element(By.ID, "reload").is_enabled()
    _wait(driver, lambda d: d.find_element(By.ID, "generation").text.isdigit(), 5, "/healthz counters")
    assert not driver.find_elements(By.CSS_SELECTOR, "tr.task-row")
    driver.save_screenshot(str(SCREENSHOTS / "dashboard-token-required.png"))

    box = driver.find_element(By.ID, "token")
    box.send_keys("wrong")
    driver.find_element(By.ID, "token-save").click()
    _wait(driver, lambda d: auth(d) == "rejected", 5, "the wrong token to be refused")
    assert "401" in driver.find_element(By.ID, "error").text
    box.clear()
    box.send_keys(ADMIN_TOKEN)
    driver.find_element(By.ID, "token-save").click()
    _wait(driver, lambda d: auth(d) == "ok", 5, "the token to be accepted")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.task-row[data-id="{task["id"]}"]'), 10,
          "the task list")
    assert driver.find_element(By.ID, "reload").is_enabled()
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('taskgate.admin.token')") == ADMIN_TOKEN
    driver.find_element(By.ID, "token-forget").click()
    _wait(driver, lambda d: auth(d) == "required", 5, "read-only again after Forget")
    driver.get("about:blank")
