"""poll/epoll on the filesystem's files: readable exactly at death, never before."""

from __future__ import annotations

import os
import random
import select
import signal
import threading
import time

import pytest
from fshelp import fsmount, needs_fuse, procs  # noqa: F401

pytestmark = [needs_fuse, pytest.mark.timeout(120)]

N = 200


def test_epoll_200_files_none_early(fsmount, procs):  # noqa: F811
    fs = fsmount()
    targets = [procs.start(["sleep", "1000"]) for _ in range(N)]
    ep = select.epoll()
    fs_fds, pid_fds = {}, {}
    try:
        for i, t in enumerate(targets):
            f = os.open(fs.path(t.pid, "exithand"), os.O_RDONLY | os.O_NONBLOCK)
            fs_fds[f] = i
            ep.register(f, select.EPOLLIN)
            p = os.pidfd_open(t.pid)
            pid_fds[p] = i
            ep.register(p, select.EPOLLIN)
        assert ep.poll(0.2) == [], "a file or pidfd was readable before any death"
        rng = random.Random(4)
        order = list(range(N))
        rng.shuffle(order)
        gaps = [rng.uniform(0, 0.01) for _ in order]

        def killer() -> None:
            for i, gap in zip(order, gaps):
                time.sleep(gap)  # spreads deaths over time; not synchronisation
                targets[i].send_signal(signal.SIGKILL)

        th = threading.Thread(target=killer)
        th.start()
        t_pid: dict[int, float] = {}
        t_fs: dict[int, float] = {}
        by_index = {i: f for f, i in pid_fds.items()}
        deadline = time.monotonic() + 60
        while len(t_fs) < N and time.monotonic() < deadline:
            for fd, _ev in ep.poll(1.0):
                now = time.monotonic()
                if fd in pid_fds:
                    t_pid.setdefault(pid_fds[fd], now)
                    ep.unregister(fd)
                else:
                    i = fs_fds[fd]
                    # not early: the process must be dead by the time the file says readable
                    pfd = by_index[i]
                    assert select.select([pfd], [], [], 0)[0], \
                        f"file of {targets[i].pid} readable while it was alive"
                    t_pid.setdefault(i, now)
                    t_fs[i] = now
                    ep.unregister(fd)
                    assert os.read(fd, 10) == b""
        th.join()
        assert len(t_fs) == N, f"only {len(t_fs)} of {N} files became readable"
        delays = sorted(t_fs[i] - t_pid[i] for i in range(N))
        assert delays[-1] < 1.0, f"slowest poll wakeup {delays[-1]:.3f}s after death"
    finally:
        ep.close()
        for f in (*fs_fds, *pid_fds):
            os.close(f)
        for t in targets:
            t.kill()
            t.wait()


def test_select_poll_on_one_file(fsmount, procs):  # noqa: F811
    fs = fsmount()
    t = procs.start(["sleep", "1000"])
    with open(fs.path(t.pid, "exitstatus"), "rb", buffering=0) as f:
        p = select.poll()
        p.register(f, select.POLLIN)
        assert p.poll(100) == []
        t.kill()
        assert p.poll(5000) and select.select([f], [], [], 0)[0]
        assert f.read() == f"{t.pid}: killed by signal 9.\n".encode()
    assert t.wait(timeout=5) == -signal.SIGKILL
