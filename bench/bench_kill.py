#!/usr/bin/env python3
"""Kill a 1 GiB process: time to dead, and time until its memory is really free.

Compares, on the same victim and in the same run:

* ``exithand``            ``kill_and_wait(pid, signal=SIGKILL)``
* ``exithand+mrelease``   ``kill_and_wait(pid, signal=SIGKILL, release_memory=True)``
* ``kill+tail``           ``sh -c 'kill -9 PID; tail --pid=PID -f /dev/null'``
* ``pkill+pidwait``       ``sh -c 'pkill -9 -f MARK; pidwait -f MARK'``

each with the victim idle, and with the victim's CPU busy (victim pinned to one CPU at nice 5
with two nice-0 spinners on that CPU, so it gets about 1/7 of that CPU; the killer runs on the
other CPU), the situation where lmkd measured process_mrelease to matter.

Three times per run, all from ``t0`` = just before the kill is issued:

* ``tool``:  when the tool returned (what a script using it sees);
* ``dead``:  when the victim's pidfd became readable (seen by a watcher thread);
* ``freed``: when the victim's cgroup memory usage fell below 128 MiB.  The victim lives in its own
  memory cgroup (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``, 1.25 GiB, so it cannot hurt
  the machine); on v1 the watcher gets a ``cgroup.event_control`` eventfd threshold notification
  (no polling); on v2 it polls ``memory.current`` every 0.2 ms.

The victim is not our child: a reaping keeper is its parent (so ``tail --pid`` sees it vanish).
Root is needed for the cgroup.  Usage::

    python3 bench/bench_kill.py --quick            # 2 runs per cell
    python3 bench/bench_kill.py --runs 7 --json bench-kill.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import exithand
from exithand._kernel import cgroup as _cgroup

SIZE = 1 << 30
LIMIT = SIZE + (256 << 20)
FREED_BELOW = 128 << 20
NICE = 5  # the busy victim's nice value: a background app, as lmkd's victims are

VICTIM = """
import ctypes, mmap, os, sys
for d in sys.argv[1].split(","):
    if d:
        open(os.path.join(d, "cgroup.procs"), "w").write(str(os.getpid()))
m = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
buf = (ctypes.c_char * SIZE).from_buffer(m)
ctypes.memset(ctypes.addressof(buf), 1, SIZE)
os.write(1, b"r")
os.read(0, 1)   # the keeper never writes: block until killed
"""

KEEPER = """
import base64, json, os, sys
code, dirs, mark = json.loads(base64.b64decode(sys.argv[1]))   # (the mark must not show here)
r, w = os.pipe()
blk_r, blk_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(w, 1); os.dup2(blk_r, 0)
    os.execv(sys.executable, [sys.executable, "-c", code, dirs, mark])
os.close(w)
if os.read(r, 1) != b"r":
    sys.exit(1)
sys.stdout.write(f"{pid}\\n"); sys.stdout.flush()
os.waitpid(pid, 0)    # reap at once, like a good parent
"""


class MemCgroup:
    """A memory-limited cgroup for one victim; ``watch_below`` gives an fd that fires."""

    def __init__(self) -> None:
        mounts = _cgroup.cgroup_mounts()
        v1 = next((m for m in mounts if m.version == 1 and "memory" in m.controllers), None)
        v2 = next((m for m in mounts if m.version == 2), None)
        name = f"exithand-issue6-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.dirs: list[str] = []
        if v1 is not None:
            own = "/"
            with open("/proc/self/cgroup") as f:
                for line in f:
                    parts = line.strip().split(":", 2)
                    if "memory" in parts[1].split(","):
                        own = parts[2]
            self.mem = os.path.join(v1.mount_point, own.lstrip("/"), name)
            os.mkdir(self.mem)
            self.dirs.append(self.mem)
            Path(self.mem, "memory.limit_in_bytes").write_text(str(LIMIT))
            self.version = 1
        elif v2 is not None and "memory" in v2.controllers:
            self.mem = os.path.join(v2.mount_point, name)
            os.mkdir(self.mem)
            self.dirs.append(self.mem)
            Path(self.mem, "memory.max").write_text(str(LIMIT))
            with contextlib.suppress(OSError):
                Path(self.mem, "memory.swap.max").write_text("0")
            self.version = 2
        else:
            raise SystemExit("no memory cgroup controller: cannot bound the 1 GiB victim")

    def usage(self) -> int:
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int(Path(self.mem, name).read_text())

    def threshold_fd(self) -> Optional[int]:
        """v1: an eventfd that fires when usage crosses FREED_BELOW (either way)."""
        if self.version != 1:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        ufd = os.open(os.path.join(self.mem, "memory.usage_in_bytes"), os.O_RDONLY)
        try:
            Path(self.mem, "cgroup.event_control").write_text(f"{efd} {ufd} {FREED_BELOW}")
        finally:
            os.close(ufd)
        return efd

    def remove(self) -> None:
        for d in reversed(self.dirs):
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    select.select([], [], [], 0.01)


class Watcher(threading.Thread):
    """Records when the victim is dead (pidfd) and when its memory is freed (cgroup)."""

    def __init__(self, pid: int, cg: MemCgroup) -> None:
        super().__init__(daemon=True)
        self.pidfd = os.pidfd_open(pid)
        self.cg = cg
        self.efd = cg.threshold_fd()
        self.t_dead: Optional[float] = None
        self.t_freed: Optional[float] = None
        self.stop = False

    def run(self) -> None:
        ep = select.epoll()
        ep.register(self.pidfd, select.EPOLLIN)
        if self.efd is not None:
            ep.register(self.efd, select.EPOLLIN)
        deadline = time.monotonic() + 60
        while (self.t_dead is None or self.t_freed is None) and time.monotonic() < deadline:
            timeout = 0.0002 if self.efd is None and self.t_freed is None else 1.0
            for fd, _ev in ep.poll(timeout):
                now = time.monotonic()
                if fd == self.pidfd and self.t_dead is None:
                    self.t_dead = now
                    ep.unregister(fd)
                elif fd == self.efd:
                    os.eventfd_read(self.efd)
                    if self.t_freed is None and self.cg.usage() < FREED_BELOW:
                        self.t_freed = now
            if self.efd is None and self.t_freed is None and self.cg.usage() < FREED_BELOW:
                self.t_freed = time.monotonic()
        ep.close()

    def close(self) -> None:
        os.close(self.pidfd)
        if self.efd is not None:
            os.close(self.efd)


def spawn_victim(cg: MemCgroup, mark: str) -> tuple[subprocess.Popen[bytes], int]:
    code = f"SIZE = {SIZE}\n" + VICTIM
    keeper = subprocess.Popen(
        [sys.executable, "-c", KEEPER,
         base64.b64encode(json.dumps([code, ",".join(cg.dirs), mark]).encode()).decode()],
        stdout=subprocess.PIPE)
    assert keeper.stdout is not None
    line = keeper.stdout.readline()
    if not line:
        keeper.wait()
        raise RuntimeError("victim failed to start (out of memory?)")
    return keeper, int(line)


def spinners(cpu: int, n: int = 2) -> list[subprocess.Popen[bytes]]:
    out = []
    for _ in range(n):
        p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        os.sched_setaffinity(p.pid, {cpu})
        out.append(p)
    return out


def run_once(tool: str, busy: bool, cpus: tuple[int, int]) -> dict[str, Any]:
    cg = MemCgroup()
    mark = f"eh6victim-{uuid.uuid4().hex[:10]}"
    keeper, pid = spawn_victim(cg, mark)
    spin: list[subprocess.Popen[bytes]] = []
    watcher = Watcher(pid, cg)
    try:
        killer_cpu, victim_cpu = cpus
        os.sched_setaffinity(0, {killer_cpu})
        if busy:
            os.sched_setaffinity(pid, {victim_cpu})
            os.setpriority(os.PRIO_PROCESS, pid, NICE)
            spin = spinners(victim_cpu)
        rss_before = cg.usage()
        watcher.start()
        mrelease = None
        t0 = time.monotonic()
        if tool.startswith("exithand"):
            (r,) = exithand.kill_and_wait(pid, signal=signal.SIGKILL,
                                          release_memory=tool.endswith("mrelease"), timeout=60)
            t_tool = time.monotonic()
            mrelease = r.mrelease
        elif tool == "kill+tail":
            subprocess.run(["sh", "-c", f"kill -9 {pid}; tail --pid={pid} -f /dev/null"],
                           check=False, timeout=60)
            t_tool = time.monotonic()
        elif tool == "pkill+pidwait":
            # "[x]" keeps the pattern from matching the sh -c command line itself
            pat = f"{mark[:10]}[{mark[10]}]{mark[11:]}"
            subprocess.run(["sh", "-c", f"pkill -9 -f '{pat}'; pidwait -f '{pat}'"],
                           check=False, timeout=60)
            t_tool = time.monotonic()
        else:
            raise ValueError(tool)
        watcher.join(60)
        keeper.wait(30)
        return {
            "tool": tool, "busy": busy, "mrelease": mrelease, "usage_before": rss_before,
            "tool_ms": (t_tool - t0) * 1000,
            "dead_ms": None if watcher.t_dead is None else (watcher.t_dead - t0) * 1000,
            "freed_ms": None if watcher.t_freed is None else (watcher.t_freed - t0) * 1000,
        }
    finally:
        for p in spin:
            p.kill()
            p.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if keeper.poll() is None:
            keeper.kill()
        keeper.wait()
        if keeper.stdout:
            keeper.stdout.close()
        watcher.close()
        cg.remove()


TOOLS = ["exithand", "exithand+mrelease", "kill+tail", "pkill+pidwait"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (default 5)")
    ap.add_argument("--quick", action="store_true", help="2 runs per cell")
    ap.add_argument("--json", metavar="PATH", help="write all runs as JSON")
    ap.add_argument("--tools", default=",".join(TOOLS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_kill needs root (it makes a memory cgroup for the victim)")
    runs = 2 if args.quick else args.runs
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs 2 CPUs (killer on one, victim on the other)")
    pair = (cpus[0], cpus[1])
    old_aff = os.sched_getaffinity(0)
    results = []
    try:
        for busy in (False, True):
            for i in range(runs):
                for tool in args.tools.split(","):  # interleaved, so drift hits all alike
                    res = run_once(tool, busy, pair)
                    res["run"] = i
                    results.append(res)
                    print(f"  {'busy' if busy else 'idle'} {tool:18} tool {res['tool_ms']:8.1f}"
                          f" ms  dead {res['dead_ms'] or float('nan'):8.1f} ms  freed "
                          f"{res['freed_ms'] or float('nan'):8.1f} ms  {res['mrelease'] or ''}",
                          file=sys.stderr)
    finally:
        os.sched_setaffinity(0, old_aff)

    def med(xs: list[Optional[float]]) -> str:
        v = [x for x in xs if x is not None]
        return f"{statistics.median(v):8.1f}" if v else "     n/a"

    print(f"\nkill a 1 GiB process ({runs} runs per cell, medians in ms from the kill; "
          f"Linux {platform.release()}, {os.cpu_count()} CPUs)")
    print(f"{'victim CPU':10}  {'tool':18} {'tool returns':>12} {'dead':>8} {'mem freed':>9}")
    for busy in (False, True):
        for tool in args.tools.split(","):
            rs = [r for r in results if r["tool"] == tool and r["busy"] == busy]
            cpu = "busy" if busy else "idle"
            print(f"{cpu:10}  {tool:18} {med([r['tool_ms'] for r in rs]):>12}"
                  f" {med([r['dead_ms'] for r in rs])} {med([r['freed_ms'] for r in rs]):>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernel": platform.release(), "runs": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
