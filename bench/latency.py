#!/usr/bin/env python3
"""Latency: how late is a death noticed?  Side by side, same run, same victims' schedule.

N victims (children of a helper process that reaps them, so not children of the waiter) die at
staggered, known times in a random order; each records its own death time (CLOCK_MONOTONIC)
just before ``_exit``.  Each method runs in its own fresh waiter process and stamps the moment
it learns of each death.  Delay = notice - death.

    python3 bench/latency.py                      # quick: N=100,1000, 1 round
    python3 bench/latency.py --n 100 1000 10000 --rounds 3    # the full run

Methods: raw (os.pidfd_open + select.epoll, the floor), waitset (exithand.WaitSet), cli
(`exithand wait --json`, timed when its line is read), asyncio / uvloop (ExitHandle.wait_async,
one task per process), asyncio-raw / uvloop-raw (the floor for a task per process: a pidfd,
``add_reader`` and one future each, no status read), psutil (psutil.wait_procs with a
callback).  Rounds rotate the method order so no method always runs first or last.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from _common import HERE, Victims, env, machine, summary, table, write_json

ALL = ["raw", "waitset", "cli", "asyncio", "asyncio-raw", "uvloop", "uvloop-raw", "psutil"]
OURS = {"waitset", "cli", "asyncio", "uvloop"}  # the methods that run exithand's code
SPAN_US = {100: 1_000_000, 1000: 2_000_000, 10000: 5_000_000}  # deaths spread over this


def run_one(method: str, n: int, seed: int, src: Optional[Path] = None) -> dict[str, Any]:
    spacing = SPAN_US.get(n, 2_000_000) // n
    # the lead gives all N victims time to wake from the "go" pipe and go to sleep again before
    # the first death (10,000 wakeups take a while on 2 CPUs)
    lead_ms = 300 + n // 10
    with Victims(n, lead_ms=lead_ms, spacing_us=spacing, seed=seed) as v:
        w = subprocess.Popen([sys.executable, str(HERE / "_waiter.py"), method],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env(src))
        assert w.stdin and w.stdout
        w.stdin.write(" ".join(map(str, v.pids)) + "\n")
        w.stdin.flush()
        line = w.stdout.readline()
        if not line.startswith("ready"):
            w.kill()
            raise RuntimeError(f"{method}: waiter failed to start: {line!r}")
        v.go()
        _t0, deaths = v.deaths()
        notices: dict[int, int] = {}
        for line in w.stdout:
            if line.startswith("end"):
                break
            a, b = line.split()
            notices[int(a)] = int(b)
        w.wait(timeout=600)
    delays = [(notices[p] - deaths[p]) / 1e6 for p in deaths if p in notices]
    missing = len(deaths) - len(delays)
    early = sum(1 for d in delays if d < 0)
    return {"method": method, "n": n, "spacing_us": spacing, "missing": missing,
            "early": early, **summary(delays)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=ALL, choices=ALL)
    ap.add_argument("--baseline", type=Path, metavar="SRC",
                    help="also run the exithand methods (waitset, cli, asyncio, uvloop) with "
                         "this src dir, as METHOD@base, interleaved in the same rounds")
    ap.add_argument("--skip-psutil-above", type=int, default=10000,
                    help="skip psutil for N above this (it busy-loops at large N)")
    args = ap.parse_args()
    methods = list(args.methods)
    if args.baseline:
        methods += [f"{m}@base" for m in args.methods if m in OURS]
    results = []
    for n in args.n:
        for r in range(args.rounds):
            k = r % len(methods)
            order = methods[k:] + methods[:k]
            for m in order:
                if m == "psutil" and n > args.skip_psutil_above:
                    continue
                base = m.endswith("@base")
                res = run_one(m.removesuffix("@base"), n, seed=1000 * r + n,
                              src=args.baseline if base else None)
                res["method"] = m
                res["round"] = r
                results.append(res)
                print(f"  n={n} round={r} {m:8s} median {res['median_ms']:.3f} ms "
                      f"p95 {res['p95_ms']:.3f} max {res['max_ms']:.3f} "
                      f"missing {res['missing']}", file=sys.stderr, flush=True)
    # per (n, method): median of the rounds' medians etc.; ratios vs raw and vs psutil
    rows = []
    agg: dict[tuple[int, str], dict[str, float]] = {}
    for n in args.n:
        for m in methods:
            rs = [x for x in results if x["n"] == n and x["method"] == m]
            if not rs:
                continue
            med = sorted(x["median_ms"] for x in rs)[len(rs) // 2]
            agg[(n, m)] = {"median_ms": med,
                           "p95_ms": sorted(x["p95_ms"] for x in rs)[len(rs) // 2],
                           "max_ms": max(x["max_ms"] for x in rs),
                           "missing": sum(x["missing"] for x in rs),
                           "early": sum(x["early"] for x in rs)}
    for (n, m), a in agg.items():
        raw = agg.get((n, "raw"), {}).get("median_ms", float("nan"))
        ps = agg.get((n, "psutil"), {}).get("median_ms", float("nan"))
        rows.append([n, m, a["median_ms"], a["p95_ms"], a["max_ms"],
                     a["median_ms"] / raw if raw else float("nan"),
                     ps / a["median_ms"] if a["median_ms"] else float("nan"),
                     int(a["missing"]), int(a["early"])])
    print(table(["N", "method", "median ms", "p95 ms", "max ms", "x raw", "psutil/x",
                 "missing", "early"], rows))
    path = write_json("latency", {"machine": machine(),
                                  "args": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in vars(args).items()},
                                  "runs": results,
                                  "summary": [dict(zip(["n", "method", "median_ms", "p95_ms",
                                                        "max_ms", "ratio_vs_raw",
                                                        "psutil_over_this", "missing", "early"],
                                                       r)) for r in rows]})
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
