#!/usr/bin/env python3
"""Summarises an Autobahn testsuite (wstest -m fuzzingclient) run.

Reads OUTDIR/index.json (and the per-case JSON reports it points to) and prints:
  - counts per behaviour (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED), overall and per top-level case group;
  - counts per closing behaviour, and the cases whose closing behaviour is not OK/INFORMATIONAL;
  - every FAILED case with its description, expectation and result.

Exit status: 0 when no case FAILED, 1 when at least one did, 2 when there is no usable report (or fewer cases ran
than --expect-cases says).

    python3 scripts/autobahn_summary.py build/autobahn/reports [--agent TaskGate] [--expect-cases N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
GOOD_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in case_id.split("."))


def shorten(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_case(outdir: str, entry: dict) -> dict:
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        with open(os.path.join(outdir, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def table(rows: list[tuple[str, Counter, int]], columns: list[str]) -> str:
    header = ["group"] + columns + ["total", "time s"]
    body = [[name] + [str(c.get(col, 0)) for col in columns] + [str(sum(c.values())), f"{ms / 1000:.0f}"]
            for name, c, ms in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
    lines = [fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in body]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", help="the fuzzingclient outdir (holds index.json)")
    parser.add_argument("--agent", default=None, help="agent name in the report (default: the only one)")
    parser.add_argument("--expect-cases", type=int, default=None,
                        help="number of cases the spec selected; fewer in the report is an error (aborted run)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the summary as JSON to this file")
    args = parser.parse_args()

    index_path = os.path.join(args.outdir, "index.json")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as error:
        print(f"autobahn summary: no usable report at {index_path}: {error}", file=sys.stderr)
        return 2
    if not index:
        print(f"autobahn summary: {index_path} lists no agent", file=sys.stderr)
        return 2
    agent = args.agent or next(iter(index))
    if agent not in index:
        print(f"autobahn summary: agent {agent!r} not in {index_path} (has: {', '.join(index)})", file=sys.stderr)
        return 2
    cases = index[agent]

    overall: Counter = Counter()
    per_group: dict[str, Counter] = defaultdict(Counter)
    group_ms: Counter = Counter()
    close_overall: Counter = Counter()
    failed, close_problems = [], []
    total_ms = 0
    for case_id in sorted(cases, key=case_key):
        entry = cases[case_id]
        behaviour = entry.get("behavior", "?")
        close = entry.get("behaviorClose", "?")
        overall[behaviour] += 1
        per_group[case_id.split(".")[0]][behaviour] += 1
        close_overall[close] += 1
        total_ms += int(entry.get("duration") or 0)
        group_ms[case_id.split(".")[0]] += int(entry.get("duration") or 0)
        if behaviour == "FAILED":
            failed.append((case_id, entry))
        elif close not in GOOD_CLOSE and behaviour != "UNIMPLEMENTED":
            close_problems.append((case_id, entry))

    columns = BEHAVIOURS + sorted(set(overall) - set(BEHAVIOURS))
    rows = [(group, per_group[group], group_ms[group]) for group in sorted(per_group, key=lambda g: case_key(g))]
    rows.append(("all", overall, total_ms))
    print(f"Autobahn fuzzingclient results for agent {agent}: {len(cases)} cases "
          f"(sum of case durations {total_ms / 1000:.1f} s)")
    print()
    print(table(rows, columns))
    print()
    print("closing behaviour: " + ", ".join(f"{k} {v}" for k, v in sorted(close_overall.items())))

    if close_problems:
        print()
        print(f"{len(close_problems)} case(s) passed but with a closing behaviour other than OK:")
        for case_id, entry in close_problems:
            report = load_case(args.outdir, entry)
            print(f"  {case_id}: {entry.get('behaviorClose')} (remote close code {entry.get('remoteCloseCode')}) - "
                  f"{shorten(report.get('resultClose', ''), 200)}")

    if failed:
        print()
        print(f"FAILED cases ({len(failed)}):")
        for case_id, entry in failed:
            report = load_case(args.outdir, entry)
            print(f"  {case_id}  [close: {entry.get('behaviorClose')}, remote close code "
                  f"{entry.get('remoteCloseCode')}, {entry.get('duration')} ms]  report: "
                  f"{os.path.join(args.outdir, entry.get('reportfile', '?'))}")
            print(f"      description: {shorten(report.get('description', '?'))}")
            print(f"      expectation: {shorten(report.get('expectation', '?'))}")
            print(f"      result:      {shorten(report.get('result', '?'))}")
            print(f"      close:       {shorten(report.get('resultClose', '?'))}")
            if report.get("wasNotCleanReason"):
                print(f"      not clean:   {shorten(report['wasNotCleanReason'])}")

    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({
                "agent": agent,
                "cases": len(cases),
                "behaviour": dict(overall),
                "behaviourClose": dict(close_overall),
                "groups": {group: dict(counter) for group, counter in per_group.items()},
                "failed": [case_id for case_id, _ in failed],
                "closeProblems": [case_id for case_id, _ in close_problems],
            }, f, indent=2, sort_keys=True)

    print()
    if args.expect_cases is not None and len(cases) < args.expect_cases:
        print(f"INCOMPLETE: the spec selected {args.expect_cases} cases but only {len(cases)} were reported "
              f"(wstest aborted or timed out?)")
        return 2
    if failed:
        print(f"RESULT: {len(failed)} of {len(cases)} cases FAILED")
        return 1
    print(f"RESULT: no case FAILED ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
