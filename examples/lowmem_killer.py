#!/usr/bin/env python3
"""EXAMPLE ONLY -- a minimal PSI-driven low-memory killer built on exithand's public API.

This is a worked example of the library, not part of it and not a production OOM daemon.  It
follows the workflow of Android's lmkd:

1. Register a PSI trigger on ``/proc/pressure/memory`` (Linux 5.2, ``CONFIG_PSI``): writing
   ``"some 300000 2000000"`` asks the kernel to wake us (``POLLPRI``) when tasks stalled on memory
   for 300 ms within any 2 s window.  Triggers fire at most once per window, so a wake-up means
   pressure is (still) there.  Without CAP_SYS_RESOURCE (which even root may lack in a
   container) only windows that are multiples of 2 s are accepted (Linux 6.5+); with it, any
   window from 0.5 s to 10 s (lmkd uses ``some 70000 1000000``).
2. On a wake-up, pick the victim with the highest ``/proc/<pid>/oom_score`` (the kernel's own
   badness: memory footprint plus ``oom_score_adj``), skipping ``oom_score_adj == -1000``
   ("never kill"), pid 1, kernel threads and ourselves.  The victim is pinned with
   ``exithand.open(pid, start_time=...)`` so a pid reused since the scan is not killed.
3. ``exithand.kill_and_wait(handle, signal=SIGKILL, release_memory=True)``: SIGKILL through the
   pidfd, ``process_mrelease`` on our CPU, wait until it is really dead.
4. Only then consider the next victim, and only if PSI fires again.

Usage (root, scoped to one cgroup so it cannot hit anything else)::

    python3 examples/lowmem_killer.py --cgroup /sys/fs/cgroup/memory/job --max-kills 3 --json

``--cgroup DIR`` restricts victims to the processes listed in ``DIR/cgroup.procs`` and its
sub-cgroups (v1 or v2).  Without it every process on the machine is a candidate: do not run it
like that on a machine you care about.  Exit status: 0 done (``--max-kills`` reached or
``--duration`` over), 1 error (e.g. PSI not available), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
from typing import Any, Optional

import exithand

OOM_SCORE_ADJ_MIN = -1000


def read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/<pid>/stat (parse after the last ')': comm may contain anything)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def cgroup_pids(path: str) -> list[int]:
    """Processes of the cgroup directory ``path`` and its sub-cgroups (v1 or v2)."""
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(path):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return pids


def candidates(scope: Optional[str]) -> list[tuple[int, int, int]]:
    """(oom_score, pid, start_time) of every process we may consider, best victim first."""
    pids = cgroup_pids(scope) if scope else [int(p) for p in os.listdir("/proc") if p.isdigit()]
    me = os.getpid()
    out = []
    for pid in pids:
        if pid in (1, me):
            continue
        adj = read_int(f"/proc/{pid}/oom_score_adj")
        score = read_int(f"/proc/{pid}/oom_score")
        st = start_time(pid)
        if adj is None or score is None or st is None or adj == OOM_SCORE_ADJ_MIN:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read(1):
                    continue  # a kernel thread (or a zombie): nothing to free
        except OSError:
            continue
        out.append((score, pid, st))
    out.sort(reverse=True)
    return out


def open_psi(path: str, trigger: str) -> int:
    """Open a PSI file and register ``trigger`` ("some|full STALL_US WINDOW_US")."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, trigger.encode() + b"\0")
    except OSError:
        os.close(fd)
        raise
    return fd


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    obj["time"] = round(time.monotonic(), 6)
    sys.stdout.write((json.dumps(obj) if args.json else f"lowmem_killer: {text}") + "\n")
    sys.stdout.flush()


def kill_one(args: argparse.Namespace, pressure: str) -> bool:
    """Kill the best candidate that is still there; False if there is nothing to kill."""
    for score, pid, st in candidates(args.cgroup):
        try:
            h = exithand.open(pid, start_time=st)  # pinned: a reused pid is refused
        except exithand.NoSuchProcess:
            continue
        with h:
            t0 = time.monotonic()
            name = comm(pid)
            if args.dry_run:
                emit(args, {"event": "would_kill", "pid": pid, "comm": name,
                            "oom_score": score}, f"would kill {pid} ({name}), oom_score {score}")
                return True
            try:
                (r,) = exithand.kill_and_wait(h, signal=signal.SIGKILL, release_memory=True,
                                              timeout=args.kill_timeout)
            except exithand.AccessDenied as e:
                emit(args, {"event": "denied", "pid": pid, "error": str(e)}, str(e))
                continue
            t1 = time.monotonic()
            mib = (r.memory or 0) / 1048576
            emit(args, {"event": "kill", "pid": pid, "comm": name, "oom_score": score,
                        "pressure": pressure, "outcome": r.outcome, "memory_bytes": r.memory,
                        "seconds": r.seconds, "mrelease": r.mrelease,
                        "mrelease_error": r.mrelease_error, "t_start": round(t0, 6),
                        "t_done": round(t1, 6)},
                 f"killed {pid} ({name}), oom_score {score}: {r.outcome}, {mib:.1f} MiB "
                 f"released in {r.seconds or 0:.3f} s (process_mrelease: {r.mrelease})")
            return True
    return False


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description="EXAMPLE: a PSI-driven low-memory killer on exithand (see the module "
                    "docstring; not part of exithand itself)")
    p.add_argument("--psi", default="/proc/pressure/memory",
                   help="PSI file to watch (a cgroup v2 memory.pressure works too)")
    p.add_argument("--trigger", default="some 300000 2000000",
                   help='PSI trigger: "some|full STALL_US WINDOW_US" (default: %(default)s)')
    p.add_argument("--cgroup", metavar="DIR", help="only consider processes of this cgroup")
    p.add_argument("--max-kills", type=int, default=0, help="stop after N kills (0: never)")
    p.add_argument("--duration", type=float, default=0, help="stop after SECONDS (0: never)")
    p.add_argument("--kill-timeout", type=float, default=10.0,
                   help="give up waiting for one victim after SECONDS")
    p.add_argument("--dry-run", action="store_true", help="only say whom it would kill")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    args = p.parse_args(argv)
    if args.cgroup and not os.path.isfile(os.path.join(args.cgroup, "cgroup.procs")):
        p.error(f"--cgroup {args.cgroup}: not a cgroup directory")
    try:
        fd = open_psi(args.psi, args.trigger)
    except OSError as e:
        sys.stderr.write(f"lowmem_killer: PSI not available ({args.psi}: {e.strerror}); "
                         "needs Linux 5.2+ with CONFIG_PSI (and psi=1 if off by default)\n")
        return 1
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    kills = 0
    emit(args, {"event": "start", "trigger": args.trigger, "psi": args.psi},
         f"watching {args.psi} for '{args.trigger}'")
    poller = select.poll()
    poller.register(fd, select.POLLPRI)
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            events = poller.poll(None if left is None else max(1, int(left * 1000)))
            if not events:
                continue
            if any(ev & select.POLLERR for _fd, ev in events):
                sys.stderr.write("lowmem_killer: the PSI source went away\n")
                return 1
            with open(args.psi) as f:
                pressure = f.readline().strip()
            emit(args, {"event": "pressure", "line": pressure}, f"pressure: {pressure}")
            done = kill_one(args, pressure)
            if done:
                kills += 1
                if args.max_kills and kills >= args.max_kills:
                    break
            else:
                emit(args, {"event": "no_candidate"}, "pressure, but nothing left to kill")
    except KeyboardInterrupt:
        return 130
    finally:
        os.close(fd)
    emit(args, {"event": "stop", "kills": kills}, f"stopping after {kills} kill(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
