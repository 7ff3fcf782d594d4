#!/usr/bin/env python3
"""Death-to-notification latency and idle CPU of each backend (issue 5).

For each backend (``pidfd``, ``connector``, ``procpoll``) and, as the floor, a raw
``os.pidfd_open`` + ``select``, each in a fresh subprocess.  ``procpoll+connector`` is procpoll
as it runs where the proc connector is usable (the status listener also wakes its refs);
``procpoll`` alone (``EXITHAND_DISABLE=connector``) is pure adaptive polling:

* **latency**: a child blocked on a pipe is SIGKILLed; we measure from just before ``kill()`` to
  the moment the handle's fd polls readable.  Measured for a *fresh* handle (opened just before)
  and a *settled* one (opened ``--settle`` seconds earlier, so procpoll's adaptive interval has
  backed off to its maximum).
* **idle CPU**: ``--idle-handles`` handles on sleeping processes, nothing dying (apart from
  whatever the rest of the machine does), CPU time of this whole process (all threads) over
  ``--idle-seconds``.

Run:  PYTHONPATH=src python3 bench/bench_backends.py            (quick: ~30 s)
      PYTHONPATH=src python3 bench/bench_backends.py --full     (n=200, settle 1 s, idle 10 s)
Prints a table and writes JSON to bench/results/backends.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import exithand


def spawn_sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "1000000"])


def one_latency(backend: Optional[str], settle: float) -> float:
    """Seconds from kill() to readable, for one process."""
    p = spawn_sleeper()
    try:
        if backend is None:
            fd = os.pidfd_open(p.pid)
            h = None
        else:
            h = exithand.open(p.pid, backend=backend)
            fd = h.fileno()
        if settle:
            # let the backend go idle (procpoll backs off); nothing else to wait for here
            select.select([fd], [], [], settle)
        t0 = time.perf_counter()
        os.kill(p.pid, signal.SIGKILL)
        r = select.select([fd], [], [], 30)[0]
        t1 = time.perf_counter()
        assert r, "no notification within 30 s"
        if h is not None:
            h.close()
        else:
            os.close(fd)
        return t1 - t0
    finally:
        p.kill()
        p.wait()


IDLE_EXITS: list[float] = []


def system_exits() -> int:
    """Processes created since boot (/proc/stat ``processes``): a proxy for the exit rate the
    proc connector listener has to read while we call it idle."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return 0


def idle_cpu(backend: Optional[str], n: int, seconds: float) -> float:
    """CPU seconds used by this process per wall second with n idle handles."""
    procs = [spawn_sleeper() for _ in range(n)]
    handles: list[Any] = []
    try:
        for p in procs:
            if backend is None:
                handles.append(os.pidfd_open(p.pid))
            else:
                handles.append(exithand.open(p.pid, backend=backend))
        select.select([], [], [], 0.5)  # warm-up: let adaptive polling settle
        exits0 = system_exits()
        c0, w0 = time.process_time(), time.monotonic()
        select.select([], [], [], seconds)
        c1, w1 = time.process_time(), time.monotonic()
        IDLE_EXITS.append((system_exits() - exits0) / (w1 - w0))
        return (c1 - c0) / (w1 - w0)
    finally:
        for h in handles:
            if isinstance(h, int):
                os.close(h)
            else:
                h.close()
        for p in procs:
            p.kill()
            p.wait()


# label, backend (None: raw os.pidfd_open), extra environment
CASES: list[tuple[str, Optional[str], dict[str, str]]] = [
    ("raw-pidfd", None, {}),
    ("pidfd", "pidfd", {}),
    ("connector", "connector", {}),
    ("procpoll+connector", "procpoll", {}),
    ("procpoll", "procpoll", {"EXITHAND_DISABLE": "connector"}),
]


def run_case(b: Optional[str], n: int, n_settled: int, settle: float, idle_handles: int,
             idle_s: float) -> dict[str, float]:
    if b is not None:
        # probe only this backend (exithand.backends() would start the connector listener too)
        from exithand._backends import get_backend

        ok, why = get_backend(b).available()
        if not ok:
            raise SystemExit(f"backend {b} unavailable: {why}")
    fresh = [one_latency(b, 0) for _ in range(n)]
    settled = [one_latency(b, settle) for _ in range(n_settled)]
    cpu = idle_cpu(b, idle_handles, idle_s)
    return {
        "fresh_median_us": statistics.median(fresh) * 1e6,
        "fresh_p90_us": pct(fresh, 0.9) * 1e6,
        "settled_median_us": statistics.median(settled) * 1e6,
        "settled_max_us": max(settled) * 1e6,
        "idle_cpu_percent": cpu * 100,
        "system_forks_per_s": IDLE_EXITS[-1] if IDLE_EXITS else 0.0,
    }


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="n=200, settle 1 s, idle 10 s")
    ap.add_argument("-n", type=int, default=None, help="latency samples per case (default 30)")
    ap.add_argument("--settle", type=float, default=None, help="seconds (default 0.5)")
    ap.add_argument("--idle-handles", type=int, default=100)
    ap.add_argument("--idle-seconds", type=float, default=None, help="default 3")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "backends.json"))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args()
    n = args.n or (200 if args.full else 30)
    settle = args.settle if args.settle is not None else (1.0 if args.full else 0.5)
    idle_s = args.idle_seconds or (10.0 if args.full else 3.0)
    n_settled = max(5, n // 5)

    if args.case:
        label, b, _env = next(c for c in CASES if c[0] == args.case)
        print(json.dumps(run_case(b, n, n_settled, settle, args.idle_handles, idle_s)))
        return 0
    rows = []
    for label, _b, env in CASES:
        res = subprocess.run(
            [sys.executable, __file__, "--case", label, "-n", str(n), "--settle", str(settle),
             "--idle-handles", str(args.idle_handles), "--idle-seconds", str(idle_s)],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)
        if res.returncode != 0:
            print(f"{label}: unavailable ({res.stderr.strip().splitlines()[-1]})")
            continue
        rows.append({"backend": label, **json.loads(res.stdout)})
    hdr = (f"{'backend':<20} {'fresh med':>10} {'fresh p90':>10} {'settled med':>12} "
           f"{'settled max':>12} {'idle CPU':>9} {'forks/s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['backend']:<20} {r['fresh_median_us']:>8.0f}us {r['fresh_p90_us']:>8.0f}us "
              f"{r['settled_median_us']:>10.0f}us {r['settled_max_us']:>10.0f}us "
              f"{r['idle_cpu_percent']:>8.2f}% {r['system_forks_per_s']:>8.0f}")
    print(f"(latency: kill() to fd readable; fresh n={n}, settled n={n_settled} after "
          f"{settle}s idle; idle CPU: {args.idle_handles} handles over {idle_s}s, all threads; "
          "forks/s: the rest of the machine meanwhile)")
    out = {"kernel": platform.release(), "python": platform.python_version(),
           "cpus": os.cpu_count(), "load1": os.getloadavg()[0], "n": n,
           "n_settled": n_settled, "settle_s": settle, "idle_handles": args.idle_handles,
           "idle_seconds": idle_s, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
