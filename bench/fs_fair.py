#!/usr/bin/env python3
"""Another person's latency while one person floods the exithand filesystem (issue 21.2).

Side by side in one run, against a daemon from this tree and (``--compare DIR``) one from
another source tree (e.g. the code before the change: ``git archive main src | tar -x -C
/tmp/old``), for each flood:

  none      no flood (the baseline)
  stat      ``--threads`` threads of nobody ``stat()`` MNT/1 in a loop (lookups: no quota)
  refused   ``--threads`` threads of nobody open root's MNT/1/exitstatus in a loop (EACCES)

the victim (root, another person; ``--rounds`` times) starts a process, opens
MNT/<pid>/exithand (open latency), kills it and waits for the fd to poll readable
(death-to-EOF latency); p50/p90 of each, plus the daemon's CPU share during the flood.

Needs root.  Run it on a quiet machine for figures; on a loaded one report only ratios.

  sudo python3 bench/fs_fair.py --compare /tmp/old --threads 2000
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pct, table
from fs_dos import NOBODY, SRC, Daemon, as_user


def _flood(kind: str, path: str, threads: int) -> None:
    threading.stack_size(64 * 1024)

    def loop() -> None:
        while True:
            try:
                if kind == "stat":
                    os.stat(path)
                else:
                    os.close(os.open(path, os.O_RDONLY))
            except OSError:
                pass

    for _ in range(threads):
        threading.Thread(target=loop, daemon=True).start()
    signal.pause()


def victim(mnt: str, rounds: int) -> tuple[list[float], list[float]]:
    opens, eofs = [], []
    for _ in range(rounds):
        p = subprocess.Popen(["sleep", "60"])
        t0 = time.perf_counter()
        fd = os.open(f"{mnt}/{p.pid}/exithand", os.O_RDONLY)
        t1 = time.perf_counter()
        p.kill()
        t2 = time.perf_counter()
        select.select([fd], [], [], 60)
        t3 = time.perf_counter()
        os.close(fd)
        p.wait()
        opens.append((t1 - t0) * 1e3)
        eofs.append((t3 - t2) * 1e3)
    return opens, eofs


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", help="another source tree's src/ to run side by side")
    ap.add_argument("--threads", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    trees = [("this tree", SRC)] + ([("compare", a.compare)] if a.compare else [])
    rows = []
    for flood in ("none", "stat", "refused"):
        for label, src in trees:
            d = Daemon(src, "--max-readers", "4096")
            pid = 0
            try:
                if flood != "none":
                    target = f"{d.mnt}/1" if flood == "stat" else f"{d.mnt}/1/exitstatus"
                    pid = as_user(NOBODY, _flood, flood, target, a.threads)
                    time.sleep(2)  # let the flood reach its steady state
                c0, w0 = cpu_ticks(d.proc.pid), time.monotonic()
                opens, eofs = victim(d.mnt, a.rounds)
                cpu = (cpu_ticks(d.proc.pid) - c0) / os.sysconf("SC_CLK_TCK") / (
                    time.monotonic() - w0)
            finally:
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                d.stop()
            rows.append([flood, label, f"{pct(opens, 50):.1f}", f"{pct(opens, 90):.1f}",
                         f"{pct(eofs, 50):.1f}", f"{pct(eofs, 90):.1f}", f"{cpu:.0%}"])
            print(rows[-1], flush=True)
    print(table(["flood", "daemon", "open p50 ms", "open p90 ms", "EOF p50 ms", "EOF p90 ms",
                 "daemon CPU"], rows))


if __name__ == "__main__":
    main()
