"""Schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

1. GET /poll is a long-poll: for a uid with no new events the server answers only after `timeout` seconds (default
   25, at most 60). Generated uids are random and have no events, so almost every valid request would wait the full
   timeout. This hook caps a *valid* `timeout` (an integer, or its decimal text, from 0 to 60) at POLL_TIMEOUT_CAP
   seconds (default 1) and sets it to the cap when the generated request leaves it out. Invalid values (negative,
   over 60, not a number) are sent unchanged, so the negative tests still check that the server rejects them with
   400. The tradeoff: the run never exercises a long wait or the server's default timeout (a request without
   `timeout`); the end-to-end tests cover those.

2. A client message's `ref` may be at most 256 *bytes* of UTF-8. JSON Schema counts characters, so the spec says
   `maxLength: 256`, and a generated string of at most 256 characters can still be longer than 256 bytes (the server
   rightly answers 400). Such a `ref` is cut to 256 bytes before it is sent; it is still a valid string, so the
   request stays what the generator meant it to be (valid or invalid).

3. `args.run_at` is an RFC 3339 time at most 30 days ahead and `args.delay_ms` at most 30 days: JSON Schema cannot
   say "relative to now", so a generated valid time may be years ahead (the server rightly answers 400), and a
   valid long delay would keep a task waiting for the rest of the run, counting against the queue limits. A valid
   `run_at` becomes a time a second ahead and a valid `delay_ms` at most DELAY_CAP_MS; invalid values (wrong types,
   negative, both given) are sent unchanged.
"""
import datetime
import os

import schemathesis

CAP = int(os.environ.get("POLL_TIMEOUT_CAP", "1"))
MAX_TIMEOUT = 60
MAX_REF_BYTES = 256
DELAY_CAP_MS = 50
MAX_DELAY_MS = 30 * 86_400_000


def _capped(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return min(value, CAP) if 0 <= value <= MAX_TIMEOUT else value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) <= MAX_TIMEOUT:
        return str(min(int(value), CAP))
    return value


def _cut_to_bytes(text, limit):
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _near_schedule(args):
    """Caps the scheduling options of a submit's `args` (see 3. above)."""
    if not isinstance(args, dict):
        return
    delay = args.get("delay_ms")
    if isinstance(delay, int) and not isinstance(delay, bool) and 0 <= delay <= MAX_DELAY_MS:
        args["delay_ms"] = min(delay, DELAY_CAP_MS)
    run_at = args.get("run_at")
    if isinstance(run_at, str):
        try:
            parsed = datetime.datetime.fromisoformat(run_at.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return
        if parsed.tzinfo is not None:
            soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
            args["run_at"] = soon.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    method, path = operation.method.upper(), operation.path
    if method == "GET" and path == "/poll":
        if case.query is None:
            case.query = {}
        if "timeout" in case.query:
            case.query["timeout"] = _capped(case.query["timeout"])
        else:
            case.query["timeout"] = CAP
    elif method == "POST" and path == "/poll" and isinstance(case.body, dict):
        ref = case.body.get("ref")
        if isinstance(ref, str) and len(ref) <= MAX_REF_BYTES:
            case.body["ref"] = _cut_to_bytes(ref, MAX_REF_BYTES)
    if method == "POST" and path in ("/poll", "/api/v1/tasks") and isinstance(case.body, dict):
        _near_schedule(case.body.get("args"))
