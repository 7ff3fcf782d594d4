"""Many real processes that are *not* our children, for WaitSet and async tests.

A keeper process (our child) spawns ``n`` ``sleep`` processes (its children, our grandchildren),
prints their pids, and reaps each as it dies (unless ``reap=False``: then they stay zombies until
the keeper exits).  The keeper holds a pidfd on each of its children, so its cleanup can SIGKILL
the survivors without ever hitting a reused pid.  Closing the keeper's stdin makes it kill the
rest, reap everything and exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

_KEEPER = textwrap.dedent("""
    import os, signal, sys, threading
    n, reap, sleep = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
    kids = {}
    for _ in range(n):
        pid = os.posix_spawn(sleep, ["sleep", "1000"], {})
        kids[pid] = os.pidfd_open(pid)
    sys.stdout.write(" ".join(map(str, kids)) + "\\n"); sys.stdout.flush()
    lock = threading.Lock()
    reaped = set()
    def reaper():
        while len(reaped) < n:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            with lock:
                reaped.add(pid)
                os.close(kids.pop(pid))
    if reap:
        threading.Thread(target=reaper, daemon=True).start()
    sys.stdin.buffer.read()          # until our stdin closes
    with lock:
        for fd in kids.values():
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        while True:
            os.waitpid(-1, 0)
    except ChildProcessError:
        pass
""")


class Herd:
    """``n`` sleeping non-child processes; ``.pids`` in spawn order."""

    def __init__(self, n: int, reap: bool = True) -> None:
        sleep = shutil.which("sleep") or "/bin/sleep"
        self.keeper = subprocess.Popen(
            [sys.executable, "-c", _KEEPER, str(n), "1" if reap else "0", sleep],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.keeper.stdout is not None
        line = self.keeper.stdout.readline()
        self.pids = [int(x) for x in line.split()]
        assert len(self.pids) == n, line

    def close(self) -> None:
        """Kill the survivors, reap everything, wait for the keeper."""
        assert self.keeper.stdin is not None and self.keeper.stdout is not None
        self.keeper.stdin.close()
        try:
            self.keeper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.keeper.kill()
            self.keeper.wait()
        self.keeper.stdout.close()


@contextmanager
def herd(n: int, reap: bool = True) -> Iterator[Herd]:
    h = Herd(n, reap)
    try:
        yield h
    finally:
        h.close()


def thread_in_syscall(tid: int, names: tuple[int, ...], timeout: float = 10.0) -> bool:
    """Spin (yielding the CPU) until thread ``tid`` of this process is blocked in one of the
    syscalls ``names`` (numbers), as ``/proc/self/task/<tid>/syscall`` shows.  An event, read
    from the kernel: no sleeping."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/self/task/{tid}/syscall") as f:
                first = f.read().split()[0]
        except (OSError, IndexError):
            first = ""
        if first.lstrip("-").isdigit() and int(first) in names:
            return True
        os.sched_yield()
    return False


# x86_64 syscall numbers of the epoll waits
EPOLL_WAITS = (232, 281, 441)  # epoll_wait, epoll_pwait, epoll_pwait2
