"""The TypeScript declarations of the browser client (public/taskgate.d.ts), checked with `tsc`.

* Tests/typescript/usage-module.ts (ES module, `import … from '/taskgate.mjs'`) and usage-global.ts (a classic
  script's global `TaskGate`) use every class, method, option, event and message type: `tsc -p Tests/typescript`
  must pass (their `@ts-expect-error` lines must fail, or tsc says so);
* Tests/typescript/wrong-usage.ts is wrong on purpose: `tsc -p Tests/typescript/tsconfig.wrong.json` must fail with
  exactly the error codes its lines are marked with (`// error TSnnnn`), and nothing else;
* without tsc, every public name of taskgate.js (methods, getters, options, the TaskGate object, emitted events) must
  be declared, so that the declarations cannot fall behind the code unnoticed.

tsc is Debian's `node-typescript` (scripts/install-test-deps.sh). Without it the tsc tests skip, unless
TASKGATE_REQUIRE_BROWSER is set (CI): then they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

TS_DIR = REPO / "Tests" / "typescript"
DTS = REPO / "public" / "taskgate.d.ts"
JS = REPO / "public" / "taskgate.js"
TSC_TIMEOUT = 300  # seconds; tsc takes a few on two cores
DIAGNOSTIC = re.compile(r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<text>.*)$")


def tsc() -> str:
    path = shutil.which("tsc")
    if path is None:
        if os.environ.get("TASKGATE_REQUIRE_BROWSER"):
            pytest.fail("TASKGATE_REQUIRE_BROWSER is set but tsc is missing (apt-get install node-typescript)")
        pytest.skip("tsc not installed (apt-get install node-typescript)")
    return path


def run_tsc(project: str) -> subprocess.CompletedProcess:
    return subprocess.run([tsc(), "-p", project, "--pretty", "false"], cwd=REPO, capture_output=True, text=True,
                          timeout=TSC_TIMEOUT, stdin=subprocess.DEVNULL)


def diagnostics(output: str) -> list[tuple[str, int, str, str]]:
    """(file name, line, code, text) of each error tsc printed."""
    out = []
    for line in output.splitlines():
        m = DIAGNOSTIC.match(line.strip())
        if m:
            out.append((os.path.basename(m["file"]), int(m["line"]), m["code"], m["text"]))
    return out


def test_tsc_version():
    p = subprocess.run([tsc(), "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and re.match(r"Version (\d+)\.(\d+)", p.stdout), p.stdout + p.stderr
    major, minor = map(int, re.match(r"Version (\d+)\.(\d+)", p.stdout).groups())
    assert (major, minor) >= (4, 5), f"the fixtures use `import {{ type X }}` (TypeScript 4.5): {p.stdout}"


def test_declarations_and_correct_usage_type_check():
    p = run_tsc("Tests/typescript")
    assert p.returncode == 0 and not diagnostics(p.stdout), (
        f"tsc -p Tests/typescript failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    good = (TS_DIR / "usage-module.ts").read_text()
    assert good.count("@ts-expect-error") >= 3  # mistakes tsc itself checks are caught, inside the passing run


def test_wrong_usage_fails_with_the_expected_errors():
    source = (TS_DIR / "wrong-usage.ts").read_text().splitlines()
    expected = {(number, m.group(1)) for number, text in enumerate(source, 1)
                for m in [re.search(r"// error (TS\d+)\s*$", text)] if m}
    assert len(expected) >= 10, "wrong-usage.ts has lost its marked mistakes"
    p = run_tsc("Tests/typescript/tsconfig.wrong.json")
    assert p.returncode != 0, f"tsc accepted wrong-usage.ts:\n{p.stdout}"
    found = diagnostics(p.stdout)
    elsewhere = [d for d in found if d[0] != "wrong-usage.ts"]
    assert not elsewhere, f"errors outside wrong-usage.ts (in the declarations?):\n{p.stdout}"
    actual = {(line, code) for _, line, code, _ in found}
    missing = sorted(expected - actual)
    unexpected = sorted(actual - expected)
    assert not missing and not unexpected, (
        f"wrong-usage.ts: expected errors not reported {missing}; unexpected errors {unexpected}\n{p.stdout}")


# --------------------------------------------------------------------------- the declarations against the code


def _block(text: str, start: str) -> str:
    """The braces-balanced block that follows `start` in text."""
    i = text.index(start)
    i = text.index("{", i)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    raise AssertionError(f"unbalanced block after {start!r}")


def _declared_members(block: str) -> set[str]:
    return set(re.findall(r"^\s+(?:readonly\s+)?([A-Za-z_]\w*)\s*[?]?\s*[(<:]", block, re.M))


def test_every_public_name_of_the_client_is_declared():
    js, dts = JS.read_text(), DTS.read_text()
    client = _declared_members(_block(dts, "export declare class Client extends EventTarget"))
    methods = set(re.findall(r"^\s*Client\.prototype\.([A-Za-z]\w*) = function", js, re.M))
    getters = set(re.findall(r"^\s*(\w+): \{ get:", _block(js, "Object.defineProperties(Client.prototype,"), re.M))
    fields = set(re.findall(r"^\s*this\.([A-Za-z]\w*) = ", _block(js, "Client.prototype._init = function"), re.M))
    assert {"submit", "status", "cancel", "ping", "handlers", "send", "ready", "on", "open", "close"} <= methods
    assert {"state", "transport", "cursor", "uid", "connected"} <= getters
    for name in sorted(methods | getters | fields):
        assert name in client, f"Client.{name} (public in taskgate.js) is not declared in taskgate.d.ts"

    static = _declared_members(_block(dts, "export interface TaskGateStatic"))
    module_object = set(re.findall(r"^\s{4}(\w+):", _block(js, "var TaskGate = {"), re.M))
    assert {"version", "connect", "Client", "TaskGateError", "storedCursor", "isFinal", "transports"} <= module_object
    assert module_object <= static, f"TaskGate members not declared: {sorted(module_object - static)}"

    options = _declared_members(_block(dts, "interface CommonOptions"))
    options |= {"uid", "token"}
    defaults = set(re.findall(r"^\s{4}(\w+):", _block(js, "var DEFAULTS = {"), re.M))
    used = {m.split(".")[-1] for m in re.findall(r"\bo\.\w+|\b(?:this|self|client)\.options\.\w+", js)}
    assert len(used) >= 20, sorted(used)
    assert defaults <= options, f"options with defaults not declared: {sorted(defaults - options)}"
    assert used <= options, f"options read by taskgate.js not declared: {sorted(used - options)}"

    events = _declared_members(_block(dts, "export interface ClientEventMap"))
    emitted = set(re.findall(r"_emit\('(\w+)'", js))
    if "this._emit(ev.type, ev);" in js:  # events are emitted under their protocol type
        emitted |= {"progress", "done"}
    assert emitted == events, f"emitted {sorted(emitted)}, declared {sorted(events)}"

    mjs = (REPO / "public" / "taskgate.mjs").read_text()
    exported = set(re.findall(r"export \{([^}]*)\}", mjs)[0].replace(" ", "").split(","))
    assert exported == {"TaskGate", "Client", "TaskGateError"}, exported
    for name in exported:
        assert re.search(rf"export declare (const|class) {name}\b", dts), f"taskgate.mjs exports {name}"
    assert "export default TaskGate;" in mjs and "export default TaskGate;" in dts
