"""Shared benchmark plumbing: victim processes, /proc sampling, tables, JSON results.

Victims come from ``victims.c`` (built once with ``cc`` into ``bench/results/.build``): a keeper
process forks N children, so the victims are *not* children of the process that waits for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
RESULTS = HERE / "results"


def env(src: Optional[Path] = None) -> dict[str, str]:
    """The environment for a measured child: ``src`` (default: this checkout's) imported first.

    Benchmarks with ``--baseline DIR`` pass another checkout's ``src`` (e.g. a ``git worktree``
    of an older commit) to measure before and after side by side in one run.
    """
    e = dict(os.environ)
    s = str(src or SRC)
    e["PYTHONPATH"] = s + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def c_binary(name: str) -> Path:
    """``bench/NAME.c`` built once (keyed by its hash) into ``bench/results/.build``."""
    src = HERE / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = RESULTS / ".build" / f"{name}-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit(f"benchmarks need a C compiler (apt-get install gcc) to build {name}.c")
        tmp = out.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-pthread", "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


def victims_binary() -> Path:
    return c_binary("victims")


class Victims:
    """N processes, children of a keeper (not ours).  ``idle``: they live until :meth:`close`."""

    def __init__(self, n: int, *, idle: bool = False, lead_ms: int = 300,
                 spacing_us: int = 1000, seed: int = 1) -> None:
        args = [str(victims_binary()), str(n)]
        args += ["idle"] if idle else [str(lead_ms), str(spacing_us), str(seed)]
        self.n = n
        self.keeper = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
        assert self.keeper.stdout is not None
        self.pids = [int(x) for x in self.keeper.stdout.readline().split()]
        if len(self.pids) != n:
            self.close()
            raise RuntimeError(f"victims: expected {n} pids, got {len(self.pids)}")

    def go(self) -> None:
        assert self.keeper.stdin is not None
        self.keeper.stdin.write("go\n")
        self.keeper.stdin.flush()

    def deaths(self) -> tuple[int, dict[int, int]]:
        """After :meth:`go`: (T0, {pid: death time ns}) once all are dead and reaped."""
        assert self.keeper.stdout is not None
        t0 = 0
        out: dict[int, int] = {}
        for line in self.keeper.stdout:
            if line.startswith("end"):
                break
            a, b = line.split()
            if a == "t0":
                t0 = int(b)
            else:
                out[int(a)] = int(b)
        return t0, out

    def close(self) -> None:
        if self.keeper.stdin is not None and not self.keeper.stdin.closed:
            try:
                self.keeper.stdin.close()
            except BrokenPipeError:
                pass
        self.keeper.wait(timeout=120)
        if self.keeper.stdout is not None:
            self.keeper.stdout.close()

    def __enter__(self) -> Victims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proc_cpu_ctx(pid: int) -> tuple[float, int, int]:
    """(CPU seconds user+system, voluntary, involuntary context switches) of process ``pid``,
    summed over its threads, from ``/proc/<pid>/stat`` and ``/proc/<pid>/task/*/status``."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(rest[11]) + int(rest[12])) / ticks  # fields 14, 15
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return cpu, vol, invol


EPOLL_WAITS = {232, 281, 441}  # x86_64 epoll_wait, epoll_pwait, epoll_pwait2


def wait_in_epoll(pid: int, timeout: float = 120.0) -> None:
    """Block until some thread of ``pid`` sits in epoll_wait (for waiters we cannot instrument,
    like the CLI).  Reads ``/proc/<pid>/task/*/syscall``; setup phase only."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    first = f.read().split()[0]
            except (OSError, IndexError):
                continue
            if first.isdigit() and int(first) in EPOLL_WAITS:
                return
        time.sleep(0.005)
    raise TimeoutError(f"process {pid} never reached epoll_wait")


def rss_bytes(pid: Optional[int] = None) -> int:
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(values_ms) if values_ms else float("nan"),
        "p95_ms": pct(values_ms, 95),
        "max_ms": max(values_ms) if values_ms else float("nan"),
        "n": len(values_ms),
    }


def machine() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[h for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        if c != c:
            return "-"
        return f"{c:.3f}" if abs(c) < 100 else f"{c:.1f}"
    return str(c)


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
