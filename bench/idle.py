#!/usr/bin/env python3
"""Idle cost: wait on 1,000 live processes for 5 s; CPU seconds and context switches.

Each method runs in its own waiter process (see ``_waiter.py``) on the same 1,000 live victims
(children of a helper process).  Once the waiter is set up -- and, for event-driven methods,
actually sitting in ``epoll_wait`` (read from ``/proc/<pid>/task/*/syscall``) -- the waiter's
CPU time (``/proc/<pid>/stat`` utime+stime, the numbers ``getrusage`` reports) and context
switches (``/proc/<pid>/task/*/status``, summed over threads) are sampled, again after the
window, and the waiter is killed.

    python3 bench/idle.py                       # 1,000 processes, 5 s per method
    python3 bench/idle.py --n 1000 --seconds 5 --methods raw waitset psutil
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from _common import (
    HERE,
    Victims,
    env,
    machine,
    proc_cpu_ctx,
    table,
    wait_in_epoll,
    write_json,
)

ALL = ["raw", "waitset", "cli", "asyncio", "uvloop", "psutil"]


def measure(method: str, pids: list[int], seconds: float) -> dict[str, float]:
    w = subprocess.Popen([sys.executable, str(HERE / "_waiter.py"), method],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env())
    assert w.stdin and w.stdout
    target = 0
    try:
        w.stdin.write(" ".join(map(str, pids)) + "\n")
        w.stdin.flush()
        line = w.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"{method}: waiter failed: {line!r}")
        target = int(line.split()[1])
        if method != "psutil":
            wait_in_epoll(target)
        cpu0, v0, i0 = proc_cpu_ctx(target)
        t0 = time.monotonic()
        time.sleep(seconds)  # the measurement window itself, not synchronisation
        cpu1, v1, i1 = proc_cpu_ctx(target)
        dt = time.monotonic() - t0
    finally:
        if method == "cli" and target:
            # the CLI is the waiter's unreaped child while the waiter lives: its pid is safe
            os.kill(target, signal.SIGKILL)
        w.send_signal(signal.SIGKILL)
        w.wait()
        for f in (w.stdin, w.stdout):
            try:
                f.close()
            except BrokenPipeError:
                pass
    switches = (v1 - v0) + (i1 - i0)
    return {"method": method, "seconds": dt, "cpu_s": cpu1 - cpu0,
            "voluntary": v1 - v0, "involuntary": i1 - i0,
            "wakeups_per_s": switches / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--methods", nargs="+", default=ALL, choices=ALL)
    args = ap.parse_args()
    results = []
    with Victims(args.n, idle=True) as v:
        for m in args.methods:
            r = measure(m, v.pids, args.seconds)
            results.append(r)
            print(f"  {m:8s} cpu {r['cpu_s']:.3f} s  switches {r['voluntary']}+"
                  f"{r['involuntary']}", file=sys.stderr, flush=True)
    print(table(["method", "window s", "CPU s", "voluntary cs", "involuntary cs",
                 "wakeups/s"],
                [[r["method"], r["seconds"], r["cpu_s"], r["voluntary"], r["involuntary"],
                  r["wakeups_per_s"]] for r in results]))
    path = write_json("idle", {"machine": machine(), "args": vars(args), "runs": results})
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
