#!/usr/bin/env python3
"""What one user can cost the others through the exithand filesystem (issue 12).

Side by side in one run, each scenario against a daemon from this tree and (``--compare DIR``)
one from another source tree (e.g. the code before the fix, ``git archive e39b291 src``):

  quota     an unprivileged user (nobody) tries ``--attack`` blocked reads on pid 1; how many
            were granted, how many refused (EAGAIN), and whether another user's read (65533)
            still blocks normally
  cost      daemon RSS and fds per blocked reader (on distinct processes, and all on one),
            and RSS per open directory handle (``--dirs`` handles on the top directory)
  idle      daemon CPU over 5 s with ``--files`` status files held open by nobody (no reads),
            one per distinct process (``--policy public``, so nobody may open them)
  latency   death-to-EOF (kill() to poll readable on MNT/<pid>/exithand) for 100 processes,
            p50/p90, with no attack and with ``--files`` status files held open by nobody
  close     (``--only-close``) seconds to close ``--files`` open files, 3 runs alternating

Needs root (allow_other, switching users).  Mounts its own daemons in temp dirs.

  sudo python3 bench/fs_dos.py --compare /tmp/old            # the figures in docs/benchmarks.md
  sudo python3 bench/fs_dos.py --attack 600 --files 500      # quicker
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Victims, machine, pct, proc_cpu_ctx, rss_bytes, table, write_json

NOBODY, OTHER = 65534, 65533
SRC = str(Path(__file__).resolve().parent.parent / "src")


class Daemon:
    """``exithand mount -f`` from source tree ``src``, ready when it says so."""

    def __init__(self, src: str, *extra: str) -> None:
        self.mnt = tempfile.mkdtemp(prefix="eh12-bench-")
        os.chmod(self.mnt, 0o755)
        sockpath = self.mnt + ".notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sockpath)
        env = dict(os.environ, NOTIFY_SOCKET=sockpath, PYTHONPATH=src)
        self.proc = subprocess.Popen([sys.executable, "-m", "exithand", "mount", "-f", *extra,
                                      self.mnt], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env)
        sock.settimeout(60)
        try:
            assert sock.recv(64) == b"READY=1"
        finally:
            sock.close()
            os.unlink(sockpath)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def cpu(self) -> float:
        return proc_cpu_ctx(self.proc.pid)[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        os.rmdir(self.mnt)


def as_user(uid: int, fn: Any, *args: Any) -> int:
    """Fork, become ``uid``, run ``fn(*args, report)``; returns the child's pid.  ``fn`` must
    never return while its fds should stay open (it blocks until killed)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            fn(*args)
        finally:
            os._exit(0)
    return pid


def _blocked_reads(path: str, n: int, wfd: int) -> None:
    """Start ``n`` threads blocked in read() on ``path``; report "granted refused" on wfd."""
    threading.stack_size(64 * 1024)
    results: list[int] = []
    lock = threading.Lock()
    started = threading.Semaphore(0)

    def reader() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            with lock:
                results.append(e.errno or -1)
            started.release()
            return
        started.release()
        try:
            os.read(fd, 1)
        except OSError as e:
            with lock:
                results.append(e.errno or -1)

    for _ in range(n):
        threading.Thread(target=reader, daemon=True).start()
    for _ in range(n):
        started.acquire()
    time.sleep(3)  # refusals come back at once; the rest are blocked
    with lock:
        refused = sum(1 for r in results if r == errno.EAGAIN)
        other = sum(1 for r in results if r != errno.EAGAIN)
    os.write(wfd, f"{n - refused - other} {refused} {other}\n".encode())
    threading.Event().wait()


def _hold_open(paths: list[str], wfd: int) -> None:
    fds, err = [], 0
    for p in paths:
        try:
            fds.append(os.open(p, os.O_RDONLY))
        except OSError:
            err += 1
    os.write(wfd, f"{len(fds)} {err}\n".encode())
    threading.Event().wait()


def _ask(uid: int, fn: Any, *args: Any) -> tuple[int, str]:
    r, w = os.pipe()
    pid = as_user(uid, fn, *args, w)
    os.close(w)
    with os.fdopen(r) as f:
        return pid, f.readline().strip()


def _end(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def quota(src: str, attack: int) -> dict[str, Any]:
    d = Daemon(src, "--max-readers", str(attack))
    try:
        path = os.path.join(d.mnt, "1", "exithand")
        att, line = _ask(NOBODY, _blocked_reads, path, attack)
        granted, refused, other = map(int, line.split())
        vic, vline = _ask(OTHER, _blocked_reads, path, 1)
        v_granted = int(vline.split()[0])
        for p in (att, vic):
            _end(p)
        return {"attempted": attack, "granted": granted, "refused_eagain": refused,
                "other_errors": other, "victim_read_blocks": bool(v_granted)}
    finally:
        d.stop()


def cost(src: str, n: int, dirs: int) -> dict[str, Any]:
    d = Daemon(src)
    out: dict[str, Any] = {}
    try:
        with Victims(n, idle=True) as v:
            for label, paths in (("distinct", [os.path.join(d.mnt, str(p), "exithand")
                                               for p in v.pids]),
                                 ("one", [os.path.join(d.mnt, "1", "exithand")] * n)):
                time.sleep(0.5)
                rss0, fd0 = d.rss(), d.fds()
                readers = []
                for p in paths:
                    r, w = os.pipe()
                    pid = as_user(0, _blocked_reads, p, 1, w)
                    os.close(w)
                    readers.append((pid, r))
                for _, r in readers:
                    with os.fdopen(r) as f:
                        f.readline()
                out[f"rss_per_reader_{label}_kib"] = (d.rss() - rss0) / n / 1024
                out[f"fds_per_reader_{label}"] = (d.fds() - fd0) / n
                for pid, _ in readers:
                    _end(pid)
        nprocs = sum(1 for x in os.listdir("/proc") if x.isdigit())
        time.sleep(0.5)
        rss0 = d.rss()
        held = [os.open(d.mnt, os.O_RDONLY | os.O_DIRECTORY) for _ in range(dirs)]
        out["rss_per_dir_handle_kib"] = (d.rss() - rss0) / dirs / 1024
        out["processes_listed"] = nprocs
        for fd in held:
            os.close(fd)
    finally:
        d.stop()
    return out


def settle(d: Daemon, limit: float = 15.0) -> None:
    """Wait until the daemon is quiet (under 2% CPU over 0.5 s): a killed holder's 2,000
    files come back as RELEASE requests that must not fall into the next measurement."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        c0 = d.cpu()
        time.sleep(0.5)
        if d.cpu() - c0 < 0.01:
            return


def idle_cpu(d: Daemon, pids: list[int]) -> tuple[float, int]:
    paths = [os.path.join(d.mnt, str(p), "exitstatus") for p in pids]
    holder, line = _ask(NOBODY, _hold_open, paths)
    try:
        time.sleep(2)  # let the opens' aftermath (forgets, releases of earlier phases) settle
        c0 = d.cpu()
        time.sleep(5)
        return (d.cpu() - c0) / 5, int(line.split()[0])
    finally:
        _end(holder)


def latency(d: Daemon, holder_paths: Optional[list[str]], rounds: int = 100) -> list[float]:
    holder = _ask(NOBODY, _hold_open, holder_paths)[0] if holder_paths else None
    settle(d)
    try:
        lat = []
        for _ in range(rounds):
            p = subprocess.Popen(["sleep", "60"])
            fd = os.open(os.path.join(d.mnt, str(p.pid), "exithand"), os.O_RDONLY)
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                assert not poller.poll(0)
                t0 = time.perf_counter()
                p.kill()
                assert poller.poll(10_000)
                lat.append((time.perf_counter() - t0) * 1000)
            finally:
                os.close(fd)
                p.wait()
        return lat
    finally:
        if holder is not None:
            _end(holder)


def close_cost(src: str, n: int) -> float:
    """Seconds to close ``n`` open files (opened first; the daemon otherwise idle)."""
    d = Daemon(src)
    try:
        path = os.path.join(d.mnt, "1", "exithand")
        fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
        t0 = time.perf_counter()
        for fd in fds:
            os.close(fd)
        return time.perf_counter() - t0
    finally:
        d.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", metavar="SRC", help="another source tree to run alongside")
    ap.add_argument("--attack", type=int, default=2000, help="blocked reads nobody attempts")
    ap.add_argument("--readers", type=int, default=300, help="readers for the cost figures")
    ap.add_argument("--dirs", type=int, default=200, help="directory handles held")
    ap.add_argument("--files", type=int, default=2000, help="status files held open")
    ap.add_argument("--only-attack", action="store_true",
                    help="only the idle CPU and latency phases (N = --files), side by side")
    ap.add_argument("--only-close", action="store_true",
                    help="only the close() cost (N = --files), side by side")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    trees = {"this tree": SRC}
    if a.compare:
        trees["compare"] = os.path.abspath(a.compare)
    res: dict[str, Any] = {"machine": machine(), "args": vars(a), "trees": {}}
    if a.only_close:
        for _ in range(3):  # alternate, so load affects both alike
            for name, src in trees.items():
                res["trees"].setdefault(name, []).append(close_cost(src, a.files))
        print(table(["tree", f"close() of {a.files} open files, s (3 runs)"],
                    [[k, " ".join(f"{x:.3f}" for x in v)] for k, v in res["trees"].items()]))
        print("results:", write_json("fs_close", res))
        return 0
    with Victims(a.files, idle=True) as herd:
        for name, src in trees.items():
            r: dict[str, Any] = {}
            if not a.only_attack:
                r["quota"] = quota(src, a.attack)
                r["cost"] = cost(src, a.readers, a.dirs)
            d = Daemon(src, "--policy", "public")  # nobody may open root's victims' files
            try:
                r["idle_cpu"], r["files_open"] = idle_cpu(d, herd.pids)
                settle(d)
                calm = latency(d, None)
                attacked = latency(d, [os.path.join(d.mnt, str(p), "exitstatus")
                                       for p in herd.pids])
                r["latency_ms"] = {"calm_p50": pct(calm, 50), "calm_p90": pct(calm, 90),
                                   "attack_p50": pct(attacked, 50),
                                   "attack_p90": pct(attacked, 90)}
            finally:
                d.stop()
            res["trees"][name] = r
    if a.only_attack:
        print(table(["tree", f"idle CPU, {a.files} files", "p50 / p90 ms calm",
                     "p50 / p90 ms attacked"],
                    [[k, f"{100 * r['idle_cpu']:.1f}%",
                      f"{r['latency_ms']['calm_p50']:.2f} / {r['latency_ms']['calm_p90']:.2f}",
                      f"{r['latency_ms']['attack_p50']:.2f} / "
                      f"{r['latency_ms']['attack_p90']:.2f}"]
                     for k, r in res["trees"].items()]))
        print("results:", write_json("fs_attack", res))
        return 0
    rows = []
    for name, r in res["trees"].items():
        q, c, lat = r["quota"], r["cost"], r["latency_ms"]
        rows.append([name, f"{q['granted']}/{q['attempted']}", q["refused_eagain"],
                     "yes" if q["victim_read_blocks"] else "NO",
                     c["fds_per_reader_distinct"], c["fds_per_reader_one"],
                     c["rss_per_reader_distinct_kib"], c["rss_per_dir_handle_kib"],
                     f"{100 * r['idle_cpu']:.1f}%", lat["calm_p90"], lat["attack_p90"]])
    print(table(["tree", "nobody's reads granted", "EAGAIN", "other user ok",
                 "fds/reader (distinct)", "fds/reader (one pid)", "KiB/reader",
                 "KiB/dir handle", f"idle CPU, {a.files} files", "p90 ms calm",
                 "p90 ms attacked"], rows))
    print(f"(processes listed per directory handle: "
          f"{next(iter(res['trees'].values()))['cost']['processes_listed']}; "
          f"load average at start {res['machine']['loadavg_at_start']})")
    print("results:", write_json("fs_dos", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
