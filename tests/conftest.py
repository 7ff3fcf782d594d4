"""Shared test helpers: real processes, real users, fd-leak checks, the CLI as a subprocess.

Synchronisation is by pipes and pidfds, never by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pwd
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

# A runner started in the background by a non-interactive shell ignores SIGINT (and nohup
# SIGHUP); an ignored signal stays ignored across exec, and Python then installs no
# KeyboardInterrupt handler in the CLIs the tests start.  The Ctrl-C tests need the default.
for _sig in (signal.SIGINT, signal.SIGHUP):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler if _sig == signal.SIGINT
                      else signal.SIG_DFL)

SRC = str(Path(__file__).resolve().parent.parent / "src")
if SRC not in sys.path:  # test this checkout's code, whatever else is installed
    sys.path.insert(0, SRC)

import kprobe  # noqa: E402

from exithand._kernel import sigwake as _sigwake  # noqa: E402

# The signal pipe lives as long as the process and is made at its first blocking main-thread
# wait: make it now, so the per-test fd-leak check does not count it in whichever test is first.
_sigwake._the_pipe()

# Backends the per-backend behaviour suite runs against (extended as backends are added).
BACKENDS = ["pidfd", "connector", "procpoll"]

NOBODY = pwd.getpwnam("nobody").pw_uid  # 65534 on Debian
OTHER_UID = 65533  # a second unprivileged uid, no passwd entry needed


def env_with_src(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 30, input: Optional[str] = None,
            env: Optional[dict[str, str]] = None,
            preexec_fn: Optional[Callable[[], None]] = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m exithand ARGS`` with this checkout's sources."""
    return subprocess.run([sys.executable, "-m", "exithand", *args], capture_output=True,
                          text=True, timeout=timeout, input=input,
                          env=env or env_with_src(), preexec_fn=preexec_fn)


def require(feature: str, uid: Optional[int] = None) -> None:
    """Skip unless the kernel grants ``feature`` (a :mod:`kprobe` name) to ``uid`` (default:
    this process's user), as a raw syscall probe run as that user says; never asks exithand,
    so a defect of ours fails the test instead of skipping it."""
    why = kprobe.skip_reason(kprobe.probe(feature, uid))
    if why is not None:
        # name the test: pytest groups skips by the line that raised them (this one)
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        pytest.skip(f"{test}: {why}" if test else why)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The suite's kernel assumptions, in the log: every raw probe as root (or this user) and
    as nobody, so a CI log shows what was exercised and why something was skipped."""
    return kprobe.report_lines()


@pytest.fixture(scope="session")
def backend_availability() -> dict[str, tuple[bool, str]]:
    """Probe every backend once per session (session scope: set up before any per-test fd
    snapshot, so the connector's shared socket and thread are not counted as leaks)."""
    from exithand._backends import availability

    return {name: (ok, why) for name, ok, why in availability()}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            backend_availability: dict[str, tuple[bool, str]]) -> str:
    """Each backend in turn; also forced with ``EXITHAND_BACKEND`` for CLI subprocesses.

    A backend the kernel cannot offer here (e.g. the proc connector inside a container) is
    skipped with the raw probe's reason (:mod:`kprobe`): if the kernel allows it and the library
    still says unavailable, the test runs and fails.
    """
    name = str(request.param)
    if name in ("pidfd", "connector"):
        require("pidfd" if name == "pidfd" else "proc_connector")
    monkeypatch.setenv("EXITHAND_BACKEND", name)
    return name


def open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves file descriptors open.

    List it *first* among a test's fixtures so it is torn down last (after the others
    have closed what they opened).
    """
    before = open_fds()
    yield
    leaked = open_fds() - before
    # listdir's own fd is gone by now; anything left is ours
    assert not leaked, f"leaked fds: {sorted(leaked)}"


@dataclass
class Victim:
    """A process that is *not* our child: a grandchild whose parent (the 'keeper') is ours.

    The victim waits for a line on its stdin pipe, then exits with the code/signal it was told.
    ``reap`` says whether the keeper reaps it (else it stays a zombie until the keeper dies).
    """

    pid: int
    keeper: subprocess.Popen[bytes]
    _ctl: int

    def exit(self, code: int = 0) -> None:
        os.write(self._ctl, f"exit {code}\n".encode())

    def die_by(self, sig: int) -> None:
        os.write(self._ctl, f"kill {sig}\n".encode())

    def reap(self) -> None:
        """Make the keeper reap its victim now (it must be dead already); waits until it has."""
        os.write(self._ctl, b"reap\n")
        assert self.keeper.stdout is not None
        assert self.keeper.stdout.readline() == b"reaped\n"

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._ctl)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.keeper.poll() is None:
            self.keeper.kill()
        self.keeper.wait(timeout=10)
        for f in (self.keeper.stdout, self.keeper.stdin):
            if f is not None:
                f.close()


_KEEPER = textwrap.dedent("""
    import os, signal, sys
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        f = os.fdopen(r)
        line = f.readline().split()
        if not line:
            os._exit(99)
        if line[0] == "kill":
            if int(line[1]) not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(int(line[1]), signal.SIG_DFL)
            os.kill(os.getpid(), int(line[1]))
        os._exit(int(line[1]))
    os.close(r)
    sys.stdout.write(f"{pid}\\n"); sys.stdout.flush()
    # forward command lines to the victim; reap it after that (REAP) or on "reap"
    reaped = False
    for data in sys.stdin.buffer:
        if data != b"reap\\n":
            try:
                os.write(w, data)
            except BrokenPipeError:
                pass  # the victim is already dead
        if not reaped and (REAP or data == b"reap\\n"):
            os.waitpid(pid, 0)
            reaped = True
            sys.stdout.write("reaped\\n"); sys.stdout.flush()
""")


def _make_victim(reap: bool, preexec_fn: Optional[Callable[[], None]] = None) -> Victim:
    keeper = subprocess.Popen([sys.executable, "-c", f"REAP = {reap!r}\n" + _KEEPER],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              preexec_fn=preexec_fn)
    assert keeper.stdout is not None and keeper.stdin is not None
    pid = int(keeper.stdout.readline())
    return Victim(pid, keeper, os.dup(keeper.stdin.fileno()))


@pytest.fixture
def victim_factory() -> Iterator[Callable[..., Victim]]:
    """``victim_factory(reap=True, preexec_fn=None) -> Victim`` (cleaned up after the test)."""
    made: list[Victim] = []

    def make(reap: bool = True, preexec_fn: Optional[Callable[[], None]] = None) -> Victim:
        v = _make_victim(reap, preexec_fn)
        made.append(v)
        return v

    yield make
    for v in made:
        v.cleanup()


def drop_to(uid: int, gid: Optional[int] = None) -> Callable[[], None]:
    """A ``preexec_fn`` that becomes ``uid`` for real (no supplementary groups)."""
    g = uid if gid is None else gid

    def fn() -> None:
        os.setgroups([])
        os.setresgid(g, g, g)
        os.setresuid(uid, uid, uid)

    return fn


def run_as(uid: int, fn: Callable[[], Any], timeout: float = 30) -> Any:
    """Run ``fn()`` in a forked child that dropped to ``uid``; return its result or re-raise.

    The result (or exception) crosses back pickled over a pipe.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            drop_to(uid)()
            try:
                out: tuple[str, Any] = ("ok", fn())
            except BaseException as e:
                out = ("err", e)
            try:
                data = pickle.dumps(out)
            except Exception as e:
                data = pickle.dumps(("err", RuntimeError(f"unpicklable result: {e!r}")))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    pidfd = os.pidfd_open(pid)
    try:
        import select
        if not select.select([pidfd], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError("run_as child timed out")
    finally:
        os.close(pidfd)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


def sleeps_in_poll(tid: int) -> bool:
    """Does thread ``tid`` of this process sleep in poll/epoll_wait/select (its kernel wait
    channel)?  For tests that must act only once a thread is blocked in the kernel."""
    try:
        with open(f"/proc/self/task/{tid}/wchan") as f:
            w = f.read()
    except FileNotFoundError:
        return False
    return "poll" in w or "select" in w


def wait_dead(pid: int, timeout: float = 10) -> None:
    """Block (on a pidfd, no sleeping) until ``pid`` is dead or gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import select
        assert select.select([fd], [], [], timeout)[0], f"{pid} did not die in {timeout}s"
    finally:
        os.close(fd)


def wait_reaped(pidfd: int, timeout: float = 10) -> None:
    """Block until the pidfd's process is reaped (by its parent, not by us).

    Linux 6.9+ (pidfs): wait for POLLHUP alone, so the POLLIN a dead process already shows
    does not end the wait.  Before 6.9 no event tells a non-parent of the reap: poll the
    pidfd's ``Pid:`` in fdinfo (-1 once reaped) with a backoff, bounded."""
    import select
    import time

    from exithand._kernel import syscalls as _sys

    if _sys.pidfd_has_unique_inode():
        p = select.poll()
        p.register(pidfd, select.POLLHUP)
        assert p.poll(timeout * 1000), f"pidfd {pidfd}: process not reaped in {timeout}s"
        return
    deadline, pause = time.monotonic() + timeout, 0.001
    while _sys.fdinfo_pid(pidfd) != -1:
        assert time.monotonic() < deadline, f"pidfd {pidfd}: process not reaped in {timeout}s"
        select.select([], [], [], pause)
        pause = min(pause * 2, 0.05)


def build_helper(name: str, out_dir: Path) -> str:
    """Compile tests/helpers/NAME.c (needs gcc) into ``out_dir``; the binary's path."""
    src = Path(__file__).parent / "helpers" / f"{name}.c"
    out = out_dir / name
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(out), str(src)], check=True, timeout=60)
    return str(out)


@pytest.fixture(scope="session")
def leader_exits_first(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the compiled tests/helpers/leader_exits_first.c (needs gcc)."""
    return build_helper("leader_exits_first", tmp_path_factory.mktemp("bin"))


@contextlib.contextmanager
def leader_zombie(binary: str, status: int = 3) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``binary`` (the ``leader_exits_first`` fixture) until its leader has exited: /proc
    shows it ``Z`` while a second thread lives on.  Any input on its stdin ends the process with
    exit code ``status``.  Killed, reaped and its pipes closed afterwards."""
    p = subprocess.Popen([binary, str(status)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"leader-gone\n"
        yield p
    finally:
        stop_process(p)


def stop_process(p: subprocess.Popen[Any]) -> None:
    """Cleanup for a test's Popen: SIGKILL it if still running, reap it, close its pipes."""
    if p.poll() is None:
        p.kill()
    p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            f.close()


@pytest.fixture(scope="session")
def eh5_bin() -> Iterator[dict[str, str]]:
    """Issue 5's C helpers from tests/helpers/eh5_*.c, compiled once (needs gcc), in a
    world-readable directory so that other uids can run them too."""
    import shutil
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="exithand-eh5-"))
    os.chmod(out, 0o755)
    paths = {}
    for name in ("eh5_burst", "eh5_deny_pidfd"):
        paths[name] = build_helper(name, out)
    yield paths
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def exit_listener() -> Iterator[bool]:
    """Start the proc connector status listener for one test; stop using it afterwards."""
    import exithand
    from exithand._backends import _connector

    yield exithand.start_exit_listener()
    _connector.stop_exit_listener()


@pytest.fixture(autouse=True)
def _no_exit_listener_leak() -> Iterator[None]:
    """The connector and procpoll backends turn on statuses at death (proc connector) for
    every handle; turn that off after each test so that other tests see the plain sources."""
    yield
    from exithand._backends import _connector

    _connector.stop_exit_listener()


@pytest.fixture
def keepers() -> Iterator[Callable[..., Any]]:
    """``keepers(code, **kw)``: a ready :class:`kill_helpers.Keeper` (a reaping subreaper with one
    victim running ``code``); every keeper and its victims are cleaned up after the test."""
    from kill_helpers import start_keeper

    made: list[Any] = []

    def make(code: str, **kw: Any) -> Any:
        k = start_keeper(code, **kw)
        made.append(k)
        k.wait_ready()
        return k

    yield make
    for k in made:
        k.cleanup()


def wait_holds_pidfd(holder: int, pid: int, timeout: float = 20) -> None:
    """Until process ``holder`` has a pidfd open on ``pid`` (one of its fds' fdinfo says
    ``Pid: PID``): the sign that a CLI under test has pinned its target.  Polled (there is no
    event for another process opening an fd), bounded."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for fd in os.listdir(f"/proc/{holder}/fdinfo"):
                try:
                    with open(f"/proc/{holder}/fdinfo/{fd}") as f:
                        if f"Pid:\t{pid}\n" in f.read():
                            return
                except OSError:
                    continue
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{holder} never opened a pidfd on {pid}")
