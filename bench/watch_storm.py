#!/usr/bin/env python3
"""Exit storm: system-wide exit watchers under N short non-exec'ing exits, side by side.

K forking processes (``storm.c``, built with ``cc`` on first use) fork N children in all that
``_exit(0)`` at once (no exec), as fast as they can or paced to a total rate, while ONE watcher
runs (each watcher gets its own storm, one after another, in the same run):

* ``exithand watch`` text, ``--json``, ``--json --comm ^ehstorm$`` (matches every storm child)
  and ``--comm ^nomatch$`` (matches none: the cost of filtering alone);
* the library, ``for ev in exithand.watch()`` (collecting pids in a list);
* ``forkstat -e exit`` (C, the same proc connector; ``apt-get install forkstat``);
* bpftrace / exitsnoop where the kernel's tracepoints are reachable (tracefs mounted); on a
  machine without tracefs they cannot attach and the run says so.

For each it prints: exits seen (of the storm's N, by pid), events reported lost (exithand's
gap lines; forkstat has none, so what it misses is lost silently), the watcher's CPU time
(user+sys from ``wait4`` rusage) per storm exit, and the storm's achieved rate.  A watcher is
stopped (SIGINT) once its CPU time has not grown for 0.6 s after the storm ended, so its
backlog is drained and counted.  Needs root (the proc connector).

    sudo python3 bench/watch_storm.py              # 20,000 exits, 1 and 4 forkers
    sudo python3 bench/watch_storm.py --n 100000 --forkers 1 4 --rounds 2
    sudo python3 bench/watch_storm.py --rates 5000 10000 20000 --only json forkstat
    sudo python3 bench/watch_storm.py --baseline /tmp/old/src          # before/after, one run

``--rates``: paced storms at these total exit rates (exits/s), to find the highest rate at
which each watcher loses nothing; 0 (the default) is as fast as the forkers can go.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from _common import SRC, c_binary, env, machine, table, write_json

NAME = "ehstorm"
STORM_SYSCALLS = {0, 7, 23, 45, 47, 202, 232, 270, 271, 281, 299, 441}  # read poll select ...

_LIB = r"""
import json, signal, sys
import exithand
pids, lost, gaps = [], 0, 0
w = exithand.watch()
sys.stderr.write("ready\n"); sys.stderr.flush()
try:
    for ev in w:
        if isinstance(ev, exithand.ProcessExit):
            pids.append(ev.pid)
        else:
            gaps += 1
            lost += ev.lost or 0
except KeyboardInterrupt:
    pass
w.close()
with open(sys.argv[1], "w") as f:
    json.dump({"pids": pids, "lost": lost, "gaps": gaps}, f)
"""


def watchers(tag: str) -> dict[str, list[str]]:
    py = [sys.executable, "-m", "exithand", "watch"]
    return {
        f"exithand watch (text){tag}": py,
        f"exithand watch --json{tag}": [*py, "--json"],
        f"exithand watch --json --comm ^{NAME}${tag}": [*py, "--json", "--comm", f"^{NAME}$"],
        f"exithand watch --comm ^nomatch${tag}": [*py, "--comm", "^nomatch$"],
        f"exithand.watch() library{tag}": [sys.executable, "-c", _LIB, "OUT"],
    }


def tracing_available() -> Optional[str]:
    """None if tracepoints can be attached, else why not."""
    if not os.path.isdir("/sys/kernel/tracing/events/sched"):
        return "no tracefs (/sys/kernel/tracing/events missing): bpftrace/exitsnoop cannot attach"
    tools = [t for t in ("bpftrace", "exitsnoop-bpfcc", "exitsnoop") if shutil.which(t)]
    return None if tools else "neither bpftrace nor exitsnoop is installed"


def cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(p: subprocess.Popen[bytes], kind: str, errpath: Path) -> None:
    """Until the watcher is subscribed: exithand says so on stderr; forkstat is seen asleep
    in a read/select-like syscall (its stdout is a file, so fully buffered)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"watcher died: {errpath.read_text()[-2000:]}")
        if kind == "forkstat":
            try:
                nr = int(Path(f"/proc/{p.pid}/syscall").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                nr = -1
            if nr in STORM_SYSCALLS:
                time.sleep(0.2)
                return
        elif "listening" in errpath.read_text() or "ready" in errpath.read_text():
            return
        time.sleep(0.02)
    raise RuntimeError("watcher not ready within 30 s")


def storm(k: int, n: int, rate: float, out: Path) -> tuple[float, set[int]]:
    per = n // k
    r = subprocess.run([str(c_binary("storm")), str(k), str(per), str(rate), NAME, str(out)],
                       capture_output=True, text=True, check=True, timeout=1200)
    pids: set[int] = set()
    for f in range(k):
        data = Path(f"{out}.{f}").read_bytes()
        pids.update(x[0] for x in struct.iter_unpack("=i", data))
    return float(r.stdout), pids


def parse_output(kind: str, path: Path, libout: Path) -> tuple[set[int], int, int]:
    """(pids reported, events reported lost, gap lines)."""
    pids: set[int] = set()
    lost = gaps = 0
    if kind == "lib":
        d = json.loads(libout.read_text())
        return set(d["pids"]), d["lost"], d["gaps"]
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace")
            if kind == "forkstat":
                w = line.split()
                if len(w) >= 3 and w[1] == "exit" and w[2].isdigit():
                    pids.add(int(w[2]))
            elif kind == "json":
                d = json.loads(line)
                if d["event"] == "exit":
                    pids.add(d["pid"])
                else:
                    gaps += 1
                    lost += d["lost"] or 0
            elif line.startswith("# gap:"):
                gaps += 1
                w = line.split()
                lost += int(w[2]) if w[2].isdigit() else 0
            elif not line.startswith("TIME"):
                pids.add(int(line.split()[1]))
    return pids, lost, gaps


def run_one(label: str, cmd: list[str], src: Path, k: int, n: int, rate: float,
            tmp: Path) -> dict[str, Any]:
    kind = ("forkstat" if cmd[0] == "forkstat" else "lib" if "-c" in cmd
            else "json" if "--json" in cmd else "text")
    outp, errp, libout, pidbase = tmp / "out", tmp / "err", tmp / "lib.json", tmp / "pids"
    cmd = [str(libout) if c == "OUT" else c for c in cmd]
    with open(outp, "wb") as o, open(errp, "wb") as e:
        p = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env(src))
    try:
        wait_ready(p, kind, errp)
        wall, storm_pids = storm(k, n, rate, pidbase)
        # drained: CPU time unchanged for 0.6 s
        last, still, deadline = cpu_of(p.pid), 0, time.monotonic() + 300
        while still < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            c = cpu_of(p.pid)
            still = still + 1 if c == last else 0
            last = c
        p.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
    seen_pids, lost, gaps = parse_output(kind, outp, libout)
    seen = len(storm_pids & seen_pids)
    cpu = ru.ru_utime + ru.ru_stime
    nexp = len(storm_pids)
    return {"watcher": label, "forkers": k, "n": nexp, "rate_target": rate,
            "rate": nexp / wall if wall > 0 else 0.0, "seen": seen,
            "seen_pct": 100.0 * seen / nexp, "reported_lost_events": lost, "gap_lines": gaps,
            "cpu_s": cpu, "cpu_us_per_exit": 1e6 * cpu / nexp, "maxrss_kib": ru.ru_maxrss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20000], help="exits per storm")
    ap.add_argument("--forkers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0],
                    help="total exits/s (0: as fast as possible)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", nargs="+", default=None,
                    help="watchers whose label contains any of these words")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout's src, measured interleaved with this one")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("watch_storm needs root (the proc connector)")
    cmds: list[tuple[str, list[str], Path]] = []
    for lbl, c in watchers("").items():
        cmds.append((lbl, c, SRC))
    if a.baseline is not None:
        for lbl, c in watchers(" [baseline]").items():
            cmds.append((lbl, c, a.baseline))
    if shutil.which("forkstat"):
        cmds.append(("forkstat -e exit", ["forkstat", "-e", "exit"], SRC))
    else:
        print("forkstat: not installed (apt-get install forkstat), not measured")
    why = tracing_available()
    if why:
        print(f"bpftrace/exitsnoop: not measured: {why}")
    if a.only:
        cmds = [c for c in cmds if any(w in c[0] for w in a.only)]
    rmem = {k: Path(f"/proc/sys/net/core/{k}").read_text().strip()
            for k in ("rmem_default", "rmem_max")}
    print(f"load average at start: {os.getloadavg()}; net.core {rmem}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="storm-") as d:
        tmp = Path(d)
        for rnd in range(a.rounds):
            for n in a.n:
                for k in a.forkers:
                    for rate in a.rates:
                        order = cmds[rnd % len(cmds):] + cmds[:rnd % len(cmds)]
                        for lbl, c, src in order:
                            r = run_one(lbl, c, src, k, n, rate, tmp)
                            r["round"] = rnd
                            r["load"] = os.getloadavg()[0]
                            results.append(r)
                            print(f"  {lbl}: K={k} N={n} rate={r['rate']:.0f}/s "
                                  f"seen {r['seen_pct']:.2f}% cpu {r['cpu_s']:.2f}s",
                                  flush=True)
    rows = [[r["n"], r["forkers"], "max" if not r["rate_target"] else int(r["rate_target"]),
             int(r["rate"]), r["watcher"], f"{r['seen_pct']:.2f}%", r["reported_lost_events"],
             f"{r['cpu_s']:.2f}", f"{r['cpu_us_per_exit']:.1f}", f"{r['load']:.1f}"]
            for r in results]
    print(table(["N exits", "forkers", "target/s", "achieved/s", "watcher", "seen",
                 "reported lost", "CPU s", "CPU us/exit", "load"], rows))
    path = write_json("watch_storm", {"machine": machine(), "net_core": rmem,
                                      "results": results})
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
