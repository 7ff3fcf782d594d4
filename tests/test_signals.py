"""Signals end blocking waits: the main thread's wakeup fd, and our threads' signal masks.

CI once caught `exithand kill` ignoring a SIGTERM for ever (about 1 in 600 tries): the signal
came just before the main thread went to sleep in epoll_wait, which therefore never returned.
The deterministic form of that race used here: direct the signal at *another* thread while the
main thread sleeps in the kernel.  That thread's C handler records it, the main thread's syscall
is not interrupted, and only a wakeup fd in its poll set can end the wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from kill_helpers import v2_cgroup

import exithand
from conftest import env_with_src, require

# Run in a fresh interpreter (its main thread, its own handlers), with a victim child that
# never dies on its own.  ``API`` is the blocking call under test.
_SCRIPT = """
import os, re, signal, subprocess, sys, threading, time
import exithand
from exithand._kernel import cgroup as _cgroup

class Hit(Exception):
    pass

calls = []
def on_usr1(signum, frame):
    calls.append(signum)
    if RAISE:
        raise Hit()
signal.signal(signal.SIGUSR1, on_usr1)

victim = subprocess.Popen(["sleep", "300"], preexec_fn=lambda: (
    signal.signal(signal.SIGTERM, signal.SIG_IGN),
    CGROUP and open(CGROUP + "/cgroup.procs", "w").write(str(os.getpid()))))
pid = victim.pid
MAIN = threading.get_native_id()

def main_thread_sleeps_in_kernel():
    with open(f"/proc/self/task/{MAIN}/wchan") as f:
        return re.search("poll|select", f.read()) is not None

def shooter():
    # Wait (bounded) until the main thread sleeps in poll/epoll_wait/select, then signal this
    # thread, not the main one: the main thread's syscall is not interrupted.
    end = time.monotonic() + 20
    while not main_thread_sleeps_in_kernel():
        if time.monotonic() > end:
            os.write(2, b"main thread never blocked\\n")
            os._exit(3)
        time.sleep(0.001)  # no event says "a thread sleeps in the kernel": /proc, bounded
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
    if not RAISE:
        # the handler returns: the wait must go on, then end at the death
        victim.kill()

exec(SETUP)  # e.g. subscribe a watch: its bounded self-test sleeps in select(), not the wait
threading.Thread(target=shooter, daemon=True).start()
try:
    result = API
    print("returned", result is not None, calls)
except Hit:
    print("interrupted", calls)
finally:
    victim.kill()
    victim.wait()
print("wakeup fd after:", signal.set_wakeup_fd(-1))
"""

_APIS = {
    "ExitHandle.wait": "exithand.open(pid).wait()",
    "WaitSet.wait": "exithand.WaitSet([exithand.open(pid)]).wait()",
    "WaitSet.as_exited": "next(exithand.WaitSet([exithand.open(pid)]).as_exited())",
    "wait_all": "exithand.wait_all([pid])",
    "kill_and_wait": "exithand.kill_and_wait([pid])",  # the victim ignores SIGTERM
    "kill_cgroup": "exithand.kill_cgroup(CGROUP, signal=signal.SIGTERM)",
    "wait_unpopulated": "_cgroup.wait_unpopulated(CGROUP)",
    "watch": "next(iter(W))",
}
_SETUP = {"watch": "W = exithand.watch(pids=[pid])"}
_NEEDS_CGROUP = {"kill_cgroup", "wait_unpopulated"}


def _run(api: str, raise_: bool, cgroup: str = "") -> subprocess.CompletedProcess[str]:
    code = (f"API_CODE = {_APIS[api]!r}\nRAISE = {raise_!r}\nCGROUP = {cgroup!r}\n"
            f"SETUP = {_SETUP.get(api, '')!r}\n"
            + _SCRIPT.replace("result = API", "result = eval(API_CODE)"))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=40, env=env_with_src())


def _skip_unless_possible(api: str, backend_availability) -> None:
    if api == "watch":
        require("proc_connector")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", list(_APIS))
def test_signal_caught_by_another_thread_ends_the_wait(api: str, backend_availability) -> None:
    """The handler raises: the blocking call ends with that exception, and the process's
    wakeup fd is left as it was (none)."""
    _skip_unless_possible(api, backend_availability)
    if api in _NEEDS_CGROUP:
        with v2_cgroup("sigwake") as cg:
            res = _run(api, True, cg)
    else:
        res = _run(api, True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["interrupted [10]", "wakeup fd after: -1"], res


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", ["ExitHandle.wait", "WaitSet.wait", "watch"])
def test_handler_that_returns_does_not_end_the_wait(api: str, backend_availability) -> None:
    """A handler that returns (e.g. one that only logs) wakes the wait, which goes on and ends
    at the death as usual."""
    _skip_unless_possible(api, backend_availability)
    res = _run(api, False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["returned True [10]", "wakeup fd after: -1"], res


@pytest.mark.timeout(30)
def test_event_loop_wakeup_fd_is_left_in_place(no_fd_leak) -> None:
    """Where an event loop owns the wakeup fd, a blocking wait neither replaces nor clears it."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    p = subprocess.Popen(["sleep", "300"])
    old = signal.set_wakeup_fd(w)
    try:
        with exithand.open(p.pid) as h:
            with pytest.raises(exithand.TimeoutExpired):
                h.wait(timeout=0.01)
            with exithand.WaitSet([h]) as ws:
                assert ws.wait(timeout=0.01) == []
        assert signal.set_wakeup_fd(w) == w
    finally:
        signal.set_wakeup_fd(old)
        p.kill()
        p.wait()
        os.close(r)
        os.close(w)


def _blocked_signals(tid: int) -> set[int]:
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                mask = int(line.split()[1], 16)
                return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    raise AssertionError("no SigBlk line")


def _thread_named(name: str) -> threading.Thread:
    ts = [t for t in threading.enumerate() if t.name == name]
    assert len(ts) == 1, threading.enumerate()
    return ts[0]


@pytest.mark.timeout(30)
def test_helper_threads_block_process_signals(backend_availability, exit_listener) -> None:
    """Our threads block the asynchronous signals, so a process-directed SIGINT/SIGTERM goes to
    the application's threads, whose sleeping syscalls it interrupts; fault signals stay
    deliverable."""
    wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD}
    faults = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}
    me = _blocked_signals(threading.get_native_id())
    p = subprocess.Popen(["sleep", "300"])
    try:
        with exithand.open(p.pid, backend="procpoll"):
            t = _thread_named("exithand-procpoll")
            assert t.native_id is not None
            blocked = _blocked_signals(t.native_id)
            assert wanted <= blocked and not faults & blocked
        if backend_availability["connector"][0]:
            assert exit_listener
            t = _thread_named("exithand-connector")
            assert t.native_id is not None
            blocked = _blocked_signals(t.native_id)
            assert wanted <= blocked and not faults & blocked
            with exithand.watch(pids=[p.pid]):
                t = _thread_named("exithand-watch")
                assert t.native_id is not None
                blocked = _blocked_signals(t.native_id)
                assert wanted <= blocked and not faults & blocked
    finally:
        p.kill()
        p.wait()
    assert _blocked_signals(threading.get_native_id()) == me  # the creator's mask restored


# ----- review findings: what the wakeup fd must never break ----------------------------------

_AIO_SCRIPT = """
import asyncio, signal, subprocess, sys
import exithand

calls = []
real = signal.set_wakeup_fd
def spy(*a, **k):  # every change of the wakeup fd while the loop runs
    calls.append(a)
    return real(*a, **k)

async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)  # asyncio now owns the wakeup fd
    p = subprocess.Popen(["sleep", "300"])
    signal.set_wakeup_fd = spy
    try:
        with exithand.open(p.pid) as h, exithand.WaitSet([h]) as ws:
            try:
                h.wait(timeout=0.01)  # blocking calls made inside the running loop
            except exithand.TimeoutExpired:
                pass
            ws.wait(timeout=0.01)
            p.kill()
            async for _h in ws.as_exited_async():  # and its async API
                break
            await h.wait_async()
    finally:
        signal.set_wakeup_fd = real
        p.kill()
        p.wait()
    print(len(calls))

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_a_running_event_loops_wakeup_fd_is_never_touched() -> None:
    """asyncio runs add_signal_handler callbacks from the bytes written to its wakeup fd: were
    it swapped for our pipe even for a moment, a signal landing then would be lost (measured
    by review: 8 % of callbacks lost at a high signal rate)."""
    res = subprocess.run([sys.executable, "-c", _AIO_SCRIPT], capture_output=True, text=True,
                         timeout=50, env=env_with_src())
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0", res


_FD_FULL_SCRIPT = """
import os, resource, subprocess, exithand
p = subprocess.Popen(["sleep", "300"])
h = exithand.open(p.pid)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
fill = []
try:
    while True:
        fill.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
try:
    h.wait(timeout=0.05)
except exithand.TimeoutExpired:
    print("timeout")
os.close(fill.pop())  # one fd free: the kill below needs none
p.kill()
print(h.wait(timeout=10).signal)
"""


@pytest.mark.timeout(30)
def test_wait_with_no_fd_left_still_waits() -> None:
    """The signal pipe is an extra: with no fd left for it, waits work as before."""
    res = subprocess.run([sys.executable, "-c", _FD_FULL_SCRIPT], capture_output=True,
                         text=True, timeout=20, env=env_with_src())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["timeout", str(int(signal.SIGKILL))], res


_FORK_SCRIPT = """
import os, re, signal, subprocess, threading, time
import exithand
p = subprocess.Popen(["sleep", "300"])
out = []
def forker():
    end = time.monotonic() + 20
    while not re.search("poll|select", open(f"/proc/self/task/{os.getpid()}/wchan").read()):
        assert time.monotonic() < end
        time.sleep(0.001)  # no event says "a thread sleeps in the kernel": /proc, bounded
    pid = os.fork()   # while the main thread waits with its signal pipe installed
    if pid == 0:
        os._exit(7 if signal.set_wakeup_fd(-1) == -1 else 8)
    out.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    p.kill()
threading.Thread(target=forker).start()
exithand.open(p.pid).wait(timeout=30)
p.wait()
print(out[0])
"""


@pytest.mark.timeout(40)
def test_fork_during_a_wait_leaves_the_child_no_wakeup_fd() -> None:
    """A thread forks while the main thread waits: the child must not inherit our pipe as its
    wakeup fd (it would wake the parent, and hide from the child's own waits)."""
    res = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                         timeout=35, env=env_with_src())
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "7", res


@pytest.mark.timeout(30)
def test_watch_iterator_holds_no_wakeup_fd_between_events(backend_availability) -> None:
    """The signal pipe is installed for one wait, never across a ``yield``: a suspended (or
    abandoned) iterator leaves no wakeup fd behind."""
    require("proc_connector")
    p = subprocess.Popen(["sleep", "300"])
    try:
        with exithand.watch(pids=[p.pid], timeout=20) as w:
            it = iter(w)
            p.kill()
            ev = next(it)
            assert isinstance(ev, exithand.ProcessExit) and ev.pid == p.pid
            old = signal.set_wakeup_fd(-1)
            assert old == -1, "a wakeup fd was left installed across the yield"
            closer = threading.Thread(target=it.close)  # closed in another thread
            closer.start()
            closer.join()
            assert signal.set_wakeup_fd(-1) == -1
    finally:
        p.kill()
        p.wait()


_ALARM_SCRIPT = """
import os, signal, subprocess
import exithand
from exithand._kernel import sigwake as _sigwake

class Timeout(Exception):
    pass
def on_alarm(signum, frame):
    raise Timeout()
signal.signal(signal.SIGALRM, on_alarm)
child = subprocess.Popen(["sleep", "300"])
h = exithand.open(child.pid)
fds = None
bad = []
for i in range(3000):  # alarm-based timeouts around a blocking wait, firing anywhere in it
    try:
        signal.setitimer(signal.ITIMER_REAL, 1e-6 * (1 + i % 100))
        h.wait(timeout=5)  # bounded, so that a lost alarm fails the test instead of hanging it
    except Timeout:
        pass
    except exithand.TimeoutExpired:
        bad.append(("alarm lost: the wait slept on", i))
    while True:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            break
        except Timeout:
            pass
    cur = signal.set_wakeup_fd(-1)
    if cur != -1 and (_sigwake._pipe is None or cur != _sigwake._pipe[1]):
        bad.append(cur)  # installed and not our live pipe: a number a file could get
    if i == 1000:  # (an alarm inside the pipe's one-time creation may leak that pair: bounded)
        fds = len(os.listdir("/proc/self/fd"))
    elif i > 1000 and len(os.listdir("/proc/self/fd")) != fds:
        bad.append(("fds", len(os.listdir("/proc/self/fd")), fds))
child.kill()
child.wait()
print(bad)
"""


@pytest.mark.timeout(120)
def test_handlers_raising_anywhere_in_a_wait_leave_no_dangling_wakeup_fd() -> None:
    """SIGALRM timeouts around h.wait() raise at arbitrary points, including inside the
    install/reset of the wakeup fd: every alarm ends its wait (CPython 3.11 could lose the
    pending mark of a signal landing just before the install: the wait then slept for ever),
    what may stay installed is only our live pipe, never a closed fd number (a file reusing
    it would receive signal bytes), and no fd leaks."""
    res = subprocess.run([sys.executable, "-c", _ALARM_SCRIPT], capture_output=True, text=True,
                         timeout=100, env=env_with_src())
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res
