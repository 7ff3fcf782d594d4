"""Exit statuses of multi-threaded processes: the group's code, never an early thread's.

Every thread's exit sends a proc connector event under the group's tgid.  A leader that calls
``pthread_exit`` sends one with code 0 while its other threads live on; when a later thread
calls ``exit(7)`` the process's status (what waitpid reports) is 7.  A listener that lags
behind meets the leader's early event with the group already dead: it used to take it and
report "exited with status 0".  The lag is made deterministic (white-box) by holding the
listener's lock while the process dies, so both events wait in the socket.  No single event
can be trusted then (events from different CPUs can also be queued out of order): the
connector declines, and the kernel's exact sources answer.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Optional

import kprobe
import pytest

import exithand
from conftest import require
from exithand._backends import _connector

# The parent of the thread group (so it is not ours): starts it, forwards cues, reaps on cue.
_PARENT = """
import subprocess, sys
p = subprocess.Popen([sys.argv[1], "7", "cue"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert p.stdout.readline() == b"ready\\n"
print(p.pid, flush=True)
for cmd in sys.stdin:
    if cmd == "leader\\n":      # the leader calls pthread_exit
        p.stdin.write(b"\\n"); p.stdin.flush()
        assert p.stdout.readline() == b"leader-gone\\n"
        print("leader-gone", flush=True)
    elif cmd == "exit\\n":      # the last thread calls exit(7)
        p.stdin.write(b"\\n"); p.stdin.flush()
        print("sent", flush=True)
    elif cmd == "reap\\n":
        print(p.wait(), flush=True)
p.kill()
p.wait()
"""


@pytest.fixture(scope="session")
def on_cue(leader_exits_first: str) -> str:
    """tests/helpers/leader_exits_first.c, run by _PARENT in its "cue" mode."""
    return leader_exits_first


class _Group:
    def __init__(self, binary: str) -> None:
        self.parent = subprocess.Popen([sys.executable, "-c", _PARENT, binary],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.parent.stdout is not None
        self.pid = int(self.parent.stdout.readline())

    def cue(self, what: str) -> str:
        assert self.parent.stdin is not None and self.parent.stdout is not None
        self.parent.stdin.write(what + "\n")
        self.parent.stdin.flush()
        return self.parent.stdout.readline().strip()

    def close(self) -> None:
        assert self.parent.stdin is not None and self.parent.stdout is not None
        self.parent.stdin.close()
        self.parent.wait(timeout=10)
        self.parent.stdout.close()


@contextlib.contextmanager
def _group(binary: str) -> Iterator[_Group]:
    g = _Group(binary)
    try:
        yield g
    finally:
        g.close()


def _die(g: _Group, h: exithand.ExitHandle, seen: Optional[threading.Event] = None) -> None:
    """Leader exits first (the group lives on), then the group exits with 7.

    ``seen``: wait (bounded) until it is set: the listener has read the leader's exit event
    before the group exits: "in time" must not depend on how fast the listener thread runs
    on a loaded machine (the kernel sends the event a moment after the leader turns Z)."""
    assert g.cue("leader") == "leader-gone"
    assert h.is_alive(), "a group whose leader exited is not dead"
    if seen is not None:
        assert seen.wait(10), "the listener never read the leader's exit event"
    assert g.cue("exit") == "sent"
    assert select.select([h], [], [], 10)[0], "the group did not die"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["in-time", "lagging", "lagging-reaped"])
def test_connector_never_reports_an_early_threads_code(no_fd_leak, backend_availability,
                                                       exit_listener, on_cue: str,
                                                       when: str, monkeypatch) -> None:
    """In time: the connector's status is the group's (7).  Lagging: the leader's early event
    (0) and the last thread's (7) are both met with the group dead; the connector must not
    pick one (it said 0 before): it declines with its reason, and the exact kernel source
    answers (field 52 of the zombie, or PIDFD_INFO_EXIT after the reap)."""
    require("proc_connector")
    assert exit_listener is True
    with _group(on_cue) as g, exithand.open(g.pid) as h:
        lock = _connector.LISTENER._lock
        lagging = when != "in-time"
        read = threading.Event()  # set once the listener has matched an event of g.pid
        if lagging:
            lock.acquire()  # the listener cannot match events: they wait in the socket
        else:  # record what the listener reads (our own code, wrapped; not the kernel)
            real = _connector.LISTENER._on_exits

            def spy(events, drained):  # type: ignore[no-untyped-def]
                real(events, drained)
                if any(ev.tgid == g.pid for ev in events):
                    read.set()

            monkeypatch.setattr(_connector.LISTENER, "_on_exits", spy)
        try:
            _die(g, h, None if lagging else read)
            if when == "lagging-reaped":
                assert g.cue("reap") == "7"
        finally:
            if lagging:
                lock.release()
        st = h.wait(timeout=10)
        said = _connector._provider(h._live_ref())
        assert said is not None
        if not lagging:
            assert said.known and said.exit_code == 7
            assert st.known and st.source == "connector" and st.exit_code == 7, st
            return
        assert not said.known and "disagree" in (said.reason or ""), said
        assert "status 0" in (said.reason or "") and "status 7" in (said.reason or "")
        if when == "lagging-reaped" and not kprobe.probe("pidfd_info_exit").ok:
            assert not st.known and "disagree" in (st.reason or ""), st  # before Linux 6.15
            require("pidfd_info_exit")  # skips with the probe's reason
        assert st.known and st.exit_code == 7, st
        assert st.source == ("zombie" if when == "lagging" else "pidfd_info"), st


@pytest.mark.timeout(30)
def test_kernel_sources_report_the_group_code(no_fd_leak, on_cue: str) -> None:
    """/proc field 52 of the zombie and PIDFD_INFO_EXIT after the reap give the group's code
    too (the leader's own was 0): what _sources.py says of them."""
    with _group(on_cue) as g, exithand.open(g.pid) as h, exithand.open(g.pid) as later:
        _die(g, h)
        st = h.wait(timeout=10)
        assert st.known and st.source == "zombie" and st.exit_code == 7, st
        assert g.cue("reap") == "7"
        st2 = later.status()
        assert st2 is not None
        require("pidfd_info_exit")  # where the kernel has it, it must be what answered
        assert st2.known and st2.exit_code == 7, st2


@pytest.mark.timeout(60)
def test_status_does_not_wait_for_a_batch_that_never_comes(backend_availability, exit_listener,
                                                           victim_factory, monkeypatch) -> None:
    """status() lets the listener catch up with what is queued; it must count the batch being
    read as the one holding the queued events, not wait for one more (review finding: a 1 s
    stall, EVENT_GRACE, whenever a status was read while the listener was inside a batch)."""
    require("proc_connector")
    assert exit_listener is True
    monkeypatch.setattr(_connector, "EVENT_GRACE", 20.0)  # a stall would last this long
    real = _connector._read_batch
    gate = threading.Event()
    gate.set()

    def gated_read(sock):  # type: ignore[no-untyped-def]
        gate.wait(10)  # the batch is open (peeked), its events still queued
        return real(sock)

    monkeypatch.setattr(_connector, "_read_batch", gated_read)
    listener = _connector.LISTENER
    for _ in range(3):
        v = victim_factory(reap=False)  # not our child: the connector is the first source
        with exithand.open(v.pid) as h:
            gate.clear()
            v.exit(4)
            assert select.select([h], [], [], 10)[0]
            deadline = time.monotonic() + 10
            while not listener._in_batch:  # its exit event opened a batch (or waits behind one)
                assert time.monotonic() < deadline, "the listener never opened a batch"
                os.sched_yield()
            opener = threading.Timer(0.05, gate.set)  # let the batch go on a moment later
            opener.start()
            t0 = time.monotonic()
            st = h.status()
            took = time.monotonic() - t0
            opener.join()
            assert st is not None and st.known and st.exit_code == 4, st
            assert took < 10, f"status() waited {took:.1f} s for the listener"
