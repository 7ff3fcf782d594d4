#!/usr/bin/env python3
"""Scale: time and memory to open and register 10,000 handles.

Each variant runs in a fresh process against the same 10,000 live victims (children of a helper
process).  Time is wall-clock for the whole open+register loop; memory is the RSS delta
(``/proc/self/statm``) across it, divided per handle.  Kernel memory (struct file, struct pid,
the epoll item: a few hundred bytes per fd) is not in RSS and not counted.

    python3 bench/scale.py                 # 10,000 handles, 3 rounds
    python3 bench/scale.py --n 10000 --rounds 5
    python3 bench/scale.py --baseline /tmp/old/src   # before/after, interleaved in one run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import SRC, Victims, env, machine, table, write_json

VARIANTS = {
    "raw pidfd_open + epoll.register": "raw",
    "exithand.open (list of handles)": "open",
    "WaitSet.open (open + register)": "waitset",
}

_CHILD = r"""
import gc, json, os, select, sys, time
sys.path.insert(0, SRC)
import exithand
variant, pids = sys.argv[1], [int(x) for x in sys.stdin.readline().split()]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")

# warm up: import, backend probe, one handle (first-use costs are not per-handle costs)
with exithand.open(pids[0]):
    pass
ws = exithand.WaitSet()
ep = select.epoll()
keep = []
gc.collect()
r0 = rss()
t0 = time.perf_counter()
if variant == "raw":
    for p in pids:
        fd = os.pidfd_open(p)
        ep.register(fd, select.EPOLLIN)
        keep.append(fd)
elif variant == "open":
    for p in pids:
        keep.append(exithand.open(p))
else:
    for p in pids:
        keep.append(ws.open(p))
t1 = time.perf_counter()
r1 = rss()
print(json.dumps({"seconds": t1 - t0, "rss_delta": r1 - r0}))
"""


def run(variant: str, pids: list[int], src: Path = SRC) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", _CHILD.replace("SRC", repr(str(src))), variant],
                       input=" ".join(map(str, pids)) + "\n", capture_output=True, text=True,
                       env=env(src), timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    out: dict[str, float] = json.loads(p.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", type=Path, metavar="SRC",
                    help="also run the exithand variants with this src dir (e.g. a git "
                         "worktree of an older commit), interleaved in the same rounds")
    args = ap.parse_args()
    variants = [(label, variant, SRC) for label, variant in VARIANTS.items()]
    if args.baseline:
        variants += [(f"{label} [baseline]", variant, args.baseline)
                     for label, variant in VARIANTS.items() if variant != "raw"]
    runs = []
    with Victims(args.n, idle=True) as v:
        for r in range(args.rounds):
            for label, variant, src in variants:
                res = run(variant, v.pids, src)
                res.update(variant=variant, label=label, round=r)
                runs.append(res)
                print(f"  round {r} {label}: {res['seconds']:.3f} s, "
                      f"{res['rss_delta'] / args.n:.0f} B/handle", file=sys.stderr, flush=True)
    rows = []
    raw_sec = statistics.median(x["seconds"] for x in runs if x["variant"] == "raw")
    for label, _variant, _src in variants:
        rs = [x for x in runs if x["label"] == label]
        sec = statistics.median(x["seconds"] for x in rs)
        mem = statistics.median(x["rss_delta"] for x in rs)
        rows.append([label, args.n, sec, sec / args.n * 1e6, sec / raw_sec, mem / 2**20,
                     mem / args.n])
    print(table(["variant", "N", "total s", "us/handle", "x raw", "RSS delta MiB",
                 "B/handle"], rows))
    argd = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_json("scale", {"machine": machine(), "args": argd,
                                "runs": runs,
                                "summary": [dict(zip(["variant", "n", "seconds", "us_per_handle",
                                                      "ratio_vs_raw", "rss_mib",
                                                      "bytes_per_handle"], r))
                                            for r in rows]})
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
