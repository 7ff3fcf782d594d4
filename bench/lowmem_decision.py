"""Cost of one ``exithand lowmem`` victim choice: listing ``/proc`` vs the process table.

Starts ``--procs`` idle processes (``victims.c``: a keeper forks them; they are not ours), then
times, interleaved round by round so machine load hits both alike:

* ``scan``:  ``candidates(policy)``: list ``/proc``, read each process's files, sort (what the
  daemon does without the proc connector, or once after an overflow);
* ``table``: ``candidates(policy, table.pids(), table.discard)`` with an
  :class:`exithand.ProcessTable` (what it does with the connector);
* and the two ways of getting the pids alone: ``os.listdir("/proc")`` vs ``table.pids()``.

Each process's own ``/proc`` files (stat, status, oom_score, oom_score_adj) are read either way:
the table saves the listing, not the reads.  Needs root (the proc connector).

    sudo python3 bench/lowmem_decision.py [--procs 2000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _common import SRC, Victims, machine, table, write_json

sys.path.insert(0, str(SRC))

import exithand
from exithand.lowmem._victims import Policy, all_pids, candidates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2000, help="idle processes to add")
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    policy = Policy()
    times: dict[str, list[float]] = {"scan": [], "table": [], "listdir": [], "pids": []}
    with Victims(a.procs, idle=True) as _v, exithand.ProcessTable() as t:
        n = len(all_pids())
        found = {"scan": 0, "table": 0}
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            found["scan"] = len(candidates(policy))
            t1 = time.perf_counter()
            found["table"] = len(candidates(policy, frozenset(), t.pids(), t.discard))
            t2 = time.perf_counter()
            all_pids()
            t3 = time.perf_counter()
            t.pids()
            t4 = time.perf_counter()
            times["scan"].append((t1 - t0) * 1e3)
            times["table"].append((t2 - t1) * 1e3)
            times["listdir"].append((t3 - t2) * 1e3)
            times["pids"].append((t4 - t3) * 1e3)
        gaps, rescans = t.gaps, t.rescans
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [["decision: list /proc + read each", med["scan"], 1.0, found["scan"]],
            ["decision: table + read each", med["table"], med["table"] / med["scan"],
             found["table"]],
            ["pids only: os.listdir('/proc')", med["listdir"], med["listdir"] / med["scan"], n],
            ["pids only: ProcessTable.pids()", med["pids"], med["pids"] / med["scan"], n]]
    print(f"{n} processes, {a.rounds} rounds, load {os.getloadavg()[0]:.2f}; "
          f"table gaps {gaps}, rescans {rescans}")
    print(table(["what", "median ms", "vs scan", "candidates/pids"], rows))
    write_json("lowmem_decision", {"machine": machine(), "procs": n, "rounds": a.rounds,
                                   "median_ms": med, "found": found, "gaps": gaps,
                                   "rescans": rescans})
    return 0


if __name__ == "__main__":
    sys.exit(main())
