"""Reads and opens by number must never land on a reuser of the number (review findings).

``ExitHandle.from_popen`` must pin the Popen's own process, never a reuser of its number.

``from_popen`` trusts ``Popen.returncode is None`` to mean "not reaped yet".  It is not proof:
another thread's ``Popen.poll()`` can reap between that check and the open, and code that reaps
with ``os.waitpid(-1, ...)`` (a SIGCHLD handler, a child watcher) never sets it at all.  If the
number is then reused, a handle on the newcomer was returned, and ``kill()`` on it hit the
wrong process.  A Popen's process is our child: that is checked on the pinned process.

Reuse is forced for real: the Popen child is reaped behind Popen's back, and a keeper process
writes ``ns_last_pid`` (root, initial pid namespace) so that its next fork, not our child, gets
the number.  The same forced reuse checks the memory that kill_and_wait reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import exithand

pytestmark = pytest.mark.timeout(60)

KEEPER = textwrap.dedent("""
    import os, sys
    target = int(sys.argv[1])
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(target - 1))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    sys.stdout.write(f"{pid}\\n"); sys.stdout.flush()
    sys.stdin.read()  # until the test closes our stdin
    os.close(w)
    os.waitpid(pid, 0)
""")


def _popen_whose_number_names_a_stranger() -> tuple[subprocess.Popen[bytes],
                                                    subprocess.Popen[str]]:
    for _ in range(50):
        p = subprocess.Popen(["true"])
        os.waitpid(p.pid, 0)  # reaped behind Popen's back: p.returncode stays None
        keeper = subprocess.Popen([sys.executable, "-c", KEEPER, str(p.pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert keeper.stdout is not None and keeper.stdin is not None
        got = int(keeper.stdout.readline())
        if got == p.pid:
            return p, keeper
        keeper.stdin.close()  # someone else on the machine took the number: try again
        keeper.wait(timeout=10)
        keeper.stdout.close()
        p.returncode = 0
    pytest.fail("could not make a pid be reused")


def test_from_popen_refuses_a_reused_number(backend: str) -> None:
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("needs root in the initial pid namespace (ns_last_pid)")
    p, keeper = _popen_whose_number_names_a_stranger()
    try:
        assert p.returncode is None
        with pytest.raises(exithand.NoSuchProcess):
            h = exithand.ExitHandle.from_popen(p, backend=backend)
            h.close()  # (before the fix: a handle on the keeper's child)
        # the stranger was not touched and still lives
        with exithand.open(p.pid) as s:
            assert s.is_alive()
    finally:
        assert keeper.stdin is not None and keeper.stdout is not None
        keeper.stdin.close()
        keeper.wait(timeout=10)
        keeper.stdout.close()
        p.returncode = 0  # it was reaped above; keep Popen from waiting on the number


def test_kill_memory_reading_is_never_a_reusers(no_fd_leak: None) -> None:
    """``KillResult.memory`` is read from ``/proc/<pid>/status`` by number: a read that may
    have hit a reuser of the number (our process is gone by the end of the read) is dropped."""
    from exithand._kill import _Member, memory_bytes

    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("needs root in the initial pid namespace (ns_last_pid)")
    for _ in range(50):
        p = subprocess.Popen(["sleep", "60"])
        h = exithand.ExitHandle.from_popen(p)
        p.kill()
        p.wait()  # reaped: the handle's number is free
        keeper = subprocess.Popen([sys.executable, "-c", KEEPER, str(p.pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert keeper.stdout is not None and keeper.stdin is not None
        got = int(keeper.stdout.readline())
        if got == p.pid:
            break
        keeper.stdin.close()
        keeper.wait(timeout=10)
        keeper.stdout.close()
        h.close()
    else:
        pytest.fail("could not make a pid be reused")
    try:
        m = _Member(h, owned=True)
        # the stranger holding the number has memory (what a read by number gives) ...
        assert memory_bytes(h.pid)
        # ... and our reaped process has none to report
        assert m.read_memory() is None
    finally:
        h.close()
        keeper.stdin.close()
        keeper.wait(timeout=10)
        keeper.stdout.close()
