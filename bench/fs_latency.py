#!/usr/bin/env python3
"""Death-to-EOF latency: through the exithand filesystem vs the library, for N readers.

One target process (``sleep``) is watched by N readers, then SIGKILLed; each reader records
CLOCK_MONOTONIC when it learns of the death, and the latency is that minus the time just
before ``kill()``.  Modes, side by side in the same run:

  fs-read      N threads, each blocked in read() on MNT/<pid>/exithand (EOF = death)
  lib-wait     N threads, each in ExitHandle.wait() on its own handle
  fs-epoll     1 thread, epoll over N open MNT/<pid>/exithand files
  lib-waitset  1 thread, WaitSet.as_exited() over N handles (one epoll)
  raw-pidfd    1 thread, epoll over N os.pidfd_open fds (the floor for Python)
  fs-cat       N separate `cat MNT/<pid>/exithand` processes; the time each cat exits
               (seen on its pidfd) -- what a shell user gets
  floor-read   as fs-read, floor-epoll as fs-epoll, on the minimal pyfuse3 daemon of
               _fuse_floor.py (one event per process, reads that return b"" at death): the
               floor of any pyfuse3 + trio daemon, measured in the same run
  c-fs-read    as fs-read with the N readers as C threads (readers.c): no GIL hand-offs in
               the client, which set the pace of fs-read at N=1000; c-floor-read likewise
  c-raw-poll   N C threads each in poll() on its own pidfd: the floor for N blocked waiters

Needs root (the mount uses allow_other).  Mounts its own daemon in a temp dir and unmounts it.

  sudo python3 bench/fs_latency.py                       # N = 1, 100, 1000; 3 rounds
  sudo python3 bench/fs_latency.py --quick               # N = 1, 100; 1 round
  sudo python3 bench/fs_latency.py --readers 1,10 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

SRC = str(Path(__file__).resolve().parent.parent / "src")
sys.path.insert(0, SRC)

from _common import c_binary  # noqa: E402

import exithand  # noqa: E402


class Daemon:
    """The exithand daemon (``floor=False``) or the minimal pyfuse3 one (``_fuse_floor.py``).

    ``EXITHAND_BENCH_PROFILE=FILE`` runs the exithand daemon under cProfile (written at
    unmount), to see where the daemon's time goes.
    """

    def __init__(self, floor: bool = False, src: str = SRC) -> None:
        self.mnt = tempfile.mkdtemp(prefix="eh4-bench-")
        os.chmod(self.mnt, 0o755)
        sockdir = tempfile.mkdtemp(prefix="eh4-bench-notify-")
        path = os.path.join(sockdir, "n")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        env = dict(os.environ, NOTIFY_SOCKET=path,
                   PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if floor:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "_fuse_floor.py"),
                   self.mnt]
        else:
            prof = os.environ.get("EXITHAND_BENCH_PROFILE")
            cmd = [sys.executable, *(["-m", "cProfile", "-o", prof] if prof else []),
                   "-m", "exithand", "mount", "-f", "--debug", self.mnt]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env)
        self.blocked = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()
        sock.settimeout(60)
        try:
            assert sock.recv(64) == b"READY=1"
        finally:
            sock.close()
            shutil.rmtree(sockdir, ignore_errors=True)

    def _drain(self) -> None:
        rx = re.compile(rb"read-blocked ")
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if rx.search(line):
                with self.cond:
                    self.blocked += 1
                    self.cond.notify_all()

    def wait_blocked(self, n: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.blocked >= n, timeout=120):
                raise RuntimeError(f"only {self.blocked} of {n} reads blocked")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        os.rmdir(self.mnt)


def _threads(n: int, setup: Callable[[int], Any], block: Callable[[Any], None],
             ready: Callable[[], None], kill: Callable[[], int]) -> list[int]:
    objs = [setup(i) for i in range(n)]
    times = [0] * n
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        barrier.wait()
        block(objs[i])
        times[i] = time.monotonic_ns()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    barrier.wait()
    ready()
    t0 = kill()
    for t in ts:
        t.join()
    return [x - t0 for x in times]


def _epoll(fds: list[int], kill: Callable[[], int]) -> list[int]:
    ep = select.epoll()
    for fd in fds:
        ep.register(fd, select.EPOLLIN)
    out: list[int] = []
    t0 = kill()
    while len(out) < len(fds):
        for fd, _ in ep.poll():
            out.append(time.monotonic_ns() - t0)
            ep.unregister(fd)
    ep.close()
    return out


def _c_readers(args: list[str], n: int, ready: Callable[[], None],
               kill: Callable[[], int]) -> list[int]:
    """``readers.c``: N C threads blocked in read()/poll(), each stamping its own return."""
    p = subprocess.Popen([str(c_binary("readers")), *args, str(n)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None
    try:
        if p.stdout.readline() != "ready\n":
            raise RuntimeError(f"readers {args}: did not start")
        ready()
        t0 = kill()
        stamps = [int(line) for line in iter(p.stdout.readline, "end\n")]
        if p.wait(timeout=60) != 0 or len(stamps) != n:
            raise RuntimeError(f"readers {args}: {len(stamps)} of {n} stamps")
        return [t - t0 for t in stamps]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def one_round(daemons: dict[str, Daemon], mode: str, n: int) -> list[int]:
    # "base-MODE": MODE against the --baseline daemon; "floor-...": against _fuse_floor.py
    d = daemons["base" if mode.startswith("base-") else
                "floor" if "floor-" in mode else "exithand"]
    mode = mode.removeprefix("base-").replace("floor-", "fs-")
    target = subprocess.Popen(["sleep", "1000"])
    path = os.path.join(d.mnt, str(target.pid), "exithand")

    def kill() -> int:
        t0 = time.monotonic_ns()
        os.kill(target.pid, signal.SIGKILL)
        return t0

    fds: list[int] = []
    handles: list[exithand.ExitHandle] = []
    try:
        if mode == "fs-read":
            base = d.blocked
            fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
            return _threads(n, lambda i: fds[i], lambda fd: os.read(fd, 1),
                            lambda: d.wait_blocked(base + n), kill)
        if mode == "lib-wait":
            handles = [exithand.open(target.pid) for _ in range(n)]
            return _threads(n, lambda i: handles[i], lambda h: h.wait(),
                            lambda: time.sleep(0.2 + n / 2000), kill)  # threads enter poll()
        if mode == "fs-epoll":
            fds = [os.open(path, os.O_RDONLY | os.O_NONBLOCK) for _ in range(n)]
            return _epoll(fds, kill)
        if mode == "lib-waitset":
            handles = [exithand.open(target.pid) for _ in range(n)]
            with exithand.WaitSet(handles) as ws:
                t0 = kill()
                return [time.monotonic_ns() - t0 for _ in ws.as_exited()]
        if mode == "fs-cat":
            base = d.blocked
            cats = [subprocess.Popen(["cat", path]) for _ in range(n)]
            try:
                d.wait_blocked(base + n)
                fds = [os.pidfd_open(c.pid) for c in cats]
                return _epoll(fds, kill)
            finally:
                for c in cats:
                    c.kill()
                    c.wait()
        if mode == "c-fs-read":
            base = d.blocked
            return _c_readers(["read", path], n, lambda: d.wait_blocked(base + n), kill)
        if mode == "c-raw-poll":
            # the threads are past the barrier; give them a moment to enter poll()
            return _c_readers(["poll", str(target.pid)], n,
                              lambda: time.sleep(0.05 + n / 5000), kill)
        if mode == "raw-pidfd":
            fds = [os.pidfd_open(target.pid) for _ in range(n)]
            return _epoll(fds, kill)
        raise ValueError(mode)
    finally:
        for fd in fds:
            os.close(fd)
        for h in handles:
            h.close()
        target.kill()
        target.wait()


MODES = ["fs-read", "floor-read", "lib-wait", "fs-epoll", "floor-epoll", "lib-waitset",
         "raw-pidfd", "fs-cat", "c-fs-read", "c-floor-read", "c-raw-poll"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readers", default="1,100,1000", help="comma-separated N values")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--quick", action="store_true", help="N = 1,100 and 1 round")
    ap.add_argument("--json", default="bench/results/fs_latency.json", help="output file")
    ap.add_argument("--baseline", metavar="SRC",
                    help="also mount a daemon from this src dir (e.g. a git worktree of an "
                         "older commit): modes base-fs-read, base-c-fs-read, base-fs-epoll")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark mounts the filesystem with allow_other",
              file=sys.stderr)
        return 2
    ns = [1, 100] if a.quick else [int(x) for x in a.readers.split(",")]
    rounds = 1 if a.quick else a.rounds
    modes = a.modes.split(",")
    import resource
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    daemons = {"exithand": Daemon()}
    if any(m.startswith("floor-") for m in modes):
        daemons["floor"] = Daemon(floor=True)
    if a.baseline:
        daemons["base"] = Daemon(src=a.baseline)
    elif any(m.startswith("base-") for m in modes):
        ap.error("base-* modes need --baseline SRC")
    results: list[dict[str, Any]] = []
    try:
        print(f"{'N':>5} {'mode':<12} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
        for n in ns:
            for mode in modes:
                lat: list[int] = []
                for _ in range(rounds):
                    lat += one_round(daemons, mode, n)
                lat.sort()
                row = {"n": n, "mode": mode, "rounds": rounds, "samples": len(lat),
                       "median_ms": statistics.median(lat) / 1e6,
                       "p95_ms": lat[int(0.95 * (len(lat) - 1))] / 1e6,
                       "max_ms": lat[-1] / 1e6}
                results.append(row)
                print(f"{n:>5} {mode:<12} {row['median_ms']:>10.3f} {row['p95_ms']:>8.3f} "
                      f"{row['max_ms']:>8.3f}", flush=True)
    finally:
        for d in daemons.values():
            d.stop()
    out = {"benchmark": "fs_latency", "kernel": platform.release(),
           "python": platform.python_version(), "cpus": os.cpu_count(),
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "results": results}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
