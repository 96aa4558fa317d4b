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
"""
import os

import schemathesis

CAP = int(os.environ.get("POLL_TIMEOUT_CAP", "1"))
MAX_TIMEOUT = 60
MAX_REF_BYTES = 256


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
