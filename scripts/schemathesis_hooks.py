"""Schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

GET /poll is a long-poll: for a uid with no new events the server answers only after `timeout` seconds (default 25,
at most 60). Generated uids are random and have no events, so almost every valid request would wait the full
timeout. This hook caps a *valid* `timeout` (an integer, or its decimal text, from 0 to 60) at POLL_TIMEOUT_CAP
seconds (default 1) and sets it to the cap when the generated request leaves it out. Invalid values (negative,
over 60, not a number) are sent unchanged, so the negative tests still check that the server rejects them with 400.
The tradeoff: the run never exercises a long wait or the server's default timeout (a request without `timeout`);
the end-to-end tests cover those.
"""
import os

import schemathesis

CAP = int(os.environ.get("POLL_TIMEOUT_CAP", "1"))
MAX = 60


def _capped(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return min(value, CAP) if 0 <= value <= MAX else value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) <= MAX:
        return str(min(int(value), CAP))
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    if operation.method.upper() != "GET" or operation.path != "/poll":
        return
    if case.query is None:
        case.query = {}
    if "timeout" in case.query:
        case.query["timeout"] = _capped(case.query["timeout"])
    else:
        case.query["timeout"] = CAP
