#!/usr/bin/env python3
"""exithand demo: wait for processes that are *not* our children, from Python and the shell.

1. an orphan (reparented to init) exits 7: the library waits for it and, once init has reaped
   it, reads its status through PIDFD_INFO_EXIT (Linux 6.15+);
2. the same with the CLI, ``exithand wait -v PID`` (FreeBSD pwait's words);
3. a zombie whose parent never reaps it counts as dead at once; root reads its exit code from
   /proc/<pid>/stat, another user is told honestly that it is unknown, and why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import exithand


def orphan(seconds: float, code: int) -> int:
    """Start ``sleep SECONDS; exit CODE`` in a subshell whose parent exits at once."""
    out = subprocess.run(["sh", "-c", f"(sleep {seconds}; exit {code}) >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def section(title: str) -> None:
    print(f"\n== {title}")


def print_as_nobody(pid: int) -> None:
    """What another user (uid 65534) learns about root's zombie: dead, status unknown."""
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            with exithand.open(pid) as h:
                print(f"as uid 65534: {h.wait(timeout=10).describe()}", flush=True)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def main() -> int:
    exe = shutil.which("exithand") or ""
    cli = [exe] if exe else [sys.executable, "-m", "exithand"]

    section("1. library: wait for a process we did not start as a child")
    pid = orphan(1, 7)
    with exithand.open(pid) as h:
        print(f"opened {h.identity} (PID:INODE), parent is not us: ppid != {os.getpid()}")
        t0 = time.monotonic()
        st = h.wait(timeout=10)
        print(f"after {time.monotonic() - t0:.2f}s: {st.describe()}  [source: {st.source}]"
              + ("" if st.known else f"  (reason: {st.reason})"))

    section("2. CLI: exithand wait -v PID")
    pid = orphan(0.5, 3)
    cmd = [*cli, "wait", "-v", "-t", "10", str(pid)]
    print("$ exithand wait -v -t 10", pid, flush=True)
    rc = subprocess.run(cmd).returncode
    print(f"exit code {rc}")

    section("3. a zombie is dead, even though its /proc entry is still there")
    keeper = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\n"
         "pid = os.fork()\n"
         "if pid == 0: os._exit(5)\n"
         "print(pid, flush=True)\n"
         "sys.stdin.read()  # never reaps until stdin closes\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert keeper.stdout is not None and keeper.stdin is not None
    zpid = int(keeper.stdout.readline())
    with exithand.open(zpid) as h:
        st = h.wait(timeout=10)
        with open(f"/proc/{zpid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        print(f"/proc/{zpid}/stat state: {state}; exithand says: {st.describe()}"
              f"  [source: {st.source}]")
    if os.geteuid() == 0:
        print_as_nobody(zpid)
    keeper.stdin.close()
    keeper.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
