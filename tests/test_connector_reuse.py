"""The proc connector must never hand a handle the exit event of an earlier process that had
the same number (review finding: "a handle names a process", "never invent a status").

An exit event names a number.  If the listener lags (a busy system, a long GIL hold, a burst
of events) the exit event of process O can still be queued when O has been reaped, its number
given to a new process A, A opened, and A dead.  The listener then finds A dead and, before the
fix, took O's event as A's.

Forced for real: a keeper process (our child, root in the initial pid namespace where the proc
connector works) forks O, lets it exit with 3, reaps it, then writes ``ns_last_pid`` so that its
next fork, A, gets O's number.  The listener's lag is simulated by holding its lock (an RLock,
so this thread can still open handles): the events stay queued in the kernel socket meanwhile,
exactly as when the thread is descheduled.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import pytest

import exithand
from conftest import require
from exithand._backends import _connector

KEEPER = textwrap.dedent("""
    import os, sys, time
    ticks = os.sysconf("SC_CLK_TCK")

    def child(code_pipe):
        r, w = code_pipe
        pid = os.fork()
        if pid == 0:
            os.close(w)
            data = os.read(r, 16)
            os._exit(int(data or b"99"))
        os.close(r)
        return pid, w

    def say(*a):
        sys.stdout.write(" ".join(str(x) for x in a) + "\\n"); sys.stdout.flush()

    for attempt in range(200):
        o, ow = child(os.pipe())
        os.write(ow, b"3"); os.close(ow)
        os.waitpid(o, 0)  # O is reaped: its exit event (code 3) is queued for the listener
        # let A be born in a later clock tick than O died (start times have tick resolution)
        t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
        while time.clock_gettime(time.CLOCK_BOOTTIME) < t0 + 2.5 / ticks:
            pass
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(o - 1))
        a, aw = child(os.pipe())
        if a == o:
            break
        os.close(aw)  # another process on the machine took the number first: again
        os.waitpid(a, 0)
    else:
        say("fail")
        sys.exit(1)
    say("reused", o, a)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "exit":
            os.write(aw, cmd[1].encode()); os.close(aw)
        elif cmd[0] == "reap":
            os.waitpid(a, 0)
            say("reaped")
        elif cmd[0] == "quit":
            break
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["zombie", "reaped", "dead-at-open"])
def test_stale_exit_event_of_previous_process_is_not_taken(backend_availability,
                                                           exit_listener, when) -> None:
    require("proc_connector")
    assert exit_listener is True
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("needs root in the initial pid namespace (ns_last_pid)")
    lock = _connector.LISTENER._lock
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, bufsize=1)
    assert keeper.stdin is not None and keeper.stdout is not None
    h = None
    held = True
    lock.acquire()  # the listener now lags: every event stays queued in the socket
    try:
        line = keeper.stdout.readline().split()
        assert line and line[0] == "reused", line
        pid = int(line[2])
        if when == "dead-at-open":
            keeper.stdin.write("exit 7\n")
            fd = os.pidfd_open(pid)
            try:
                assert select.select([fd], [], [], 10)[0]
            finally:
                os.close(fd)
        h = exithand.open(pid)  # a handle on A (registered: the lock is reentrant)
        if when != "dead-at-open":
            keeper.stdin.write("exit 7\n")
        assert select.select([h.fileno()], [], [], 10)[0], "A did not die"
        if when == "reaped":
            keeper.stdin.write("reap\n")
            assert keeper.stdout.readline().split() == ["reaped"]
        lock.release()  # the listener catches up: O's event (code 3) first, then A's (7)
        held = False
        st = h.wait(timeout=10)
        # A exited with 7; O's 3 must never be reported for it
        assert st.exit_code != 3, st
        if st.known:
            assert st.exit_code == 7, st
    finally:
        if held:
            lock.release()
        if h is not None:
            h.close()
        try:
            keeper.stdin.write("quit\n")
            keeper.stdin.close()
        except OSError:
            pass
        keeper.wait(timeout=10)
        keeper.stdout.close()


# The opposite order: our process O dies (3) and is reaped, then a newcomer A takes its number,
# runs a thread and exits (5), all while the listener lags, so both groups' events arrive in one
# batch behind O's.  (Review finding: the batch rule once let A's events replace O's.)
NEWCOMER_KEEPER = textwrap.dedent("""
    import os, sys, threading
    r, w = os.pipe()
    o = os.fork()
    if o == 0:
        os.close(w); os.read(r, 1); os._exit(3)
    os.close(r)
    print(o, flush=True)
    sys.stdin.readline()
    os.write(w, b"x"); os.waitpid(o, 0)       # O exits with 3 and is reaped
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(o - 1))
        a = os.fork()
        if a == 0:
            if os.getpid() == o:             # A: one thread (its own exit event), then exit 5
                t = threading.Thread(target=lambda: None); t.start(); t.join()
            os._exit(5)
        os.waitpid(a, 0)
        if a == o:
            break
    print("reused" if a == o else "fail", flush=True)
    sys.stdin.readline()
""")


@pytest.mark.timeout(60)
def test_newcomers_events_in_the_same_batch_are_not_taken(no_fd_leak, backend_availability,
                                                          exit_listener) -> None:
    require("proc_connector")
    assert exit_listener is True
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("needs root in the initial pid namespace (ns_last_pid)")
    keeper = subprocess.Popen([sys.executable, "-c", NEWCOMER_KEEPER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert keeper.stdin is not None and keeper.stdout is not None
    lock = _connector.LISTENER._lock
    try:
        with exithand.open(int(keeper.stdout.readline())) as h:
            with lock:  # the listener lags: O's and A's events all wait in the socket
                keeper.stdin.write("go\n")
                keeper.stdin.flush()
                assert keeper.stdout.readline() == "reused\n"
            st = h.wait(timeout=10)
            # O exited with 3: A's 5 (or its thread's 0) must never be reported for it; the
            # connector, unable to tell, declines, and PIDFD_INFO_EXIT (6.15+) answers
            assert st.exit_code not in (0, 5) and st.signal is None, st
            if st.known:
                assert st.exit_code == 3, st
            else:
                assert "disagree" in (st.reason or ""), st
    finally:
        keeper.stdin.close()
        keeper.wait(timeout=10)
        keeper.stdout.close()


TIMENS_SCRIPT = textwrap.dedent("""
    import json, os, exithand
    assert exithand.start_exit_listener()
    cr, cw = os.pipe(); kr, kw = os.pipe(); pr, pw = os.pipe()
    k = os.fork()
    if k == 0:  # keeper: its child stays an unreaped zombie until the keeper is told to go
        os.close(cw); os.close(kw)
        c = os.fork()
        if c == 0:
            os.read(cr, 1)
            os._exit(9)
        os.write(pw, f"{c}\\n".encode())
        os.read(kr, 1)
        os._exit(0)
    os.close(cr); os.close(kr)
    pid = int(os.read(pr, 64))
    with exithand.open(pid) as h:
        os.write(cw, b"x")
        st = h.wait(timeout=10)
    os.close(kw)
    os.waitpid(k, 0)
    print(json.dumps(st.as_dict()))
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("offsets", [["--monotonic", "1000", "--boottime", "3000"],
                                     ["--monotonic", "-50"]], ids=["ahead", "behind"])
def test_statuses_at_death_inside_a_time_namespace(backend_availability, offsets) -> None:
    """Event stamps are the host's clock; ours is shifted in a time namespace: a genuine
    exit event must still be taken (the stale-event filter works in host time)."""
    import json
    import shutil

    from conftest import env_with_src

    require("proc_connector")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    res = subprocess.run(["unshare", "--time", *offsets, sys.executable, "-c", TIMENS_SCRIPT],
                         capture_output=True, text=True, timeout=50, env=env_with_src())
    if res.returncode != 0 and "unshare failed" in res.stderr:
        pytest.skip(f"cannot make a time namespace: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["known"] and st["exit_code"] == 9 and st["source"] == "connector", st
