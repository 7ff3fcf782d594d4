"""Helpers for the kill tests: victims under a reaping subreaper, process trees, test cgroups.

Every victim runs below a *keeper*: a Python process that is a child subreaper
(``PR_SET_CHILD_SUBREAPER``) and reaps everything that ends up below it, so no test leaves
zombies behind even on machines whose pid 1 does not reap orphans.  Synchronisation is by
pipes: victims write a byte when they are ready.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

from exithand._kernel import cgroup as _cgroup
from exithand._kernel import tree as _tree

KEEPER = textwrap.dedent("""
    import ctypes, os, signal, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER
    READY_FD = int(sys.argv[1])
    def ready():
        os.write(READY_FD, b"r")
    def block():
        r, _w = os.pipe()
        while True:
            os.read(r, 1)
    pid = os.fork()
    if pid == 0:
        sys.stdin.close()
        try:
            exec(compile(sys.argv[2], "<victim>", "exec"))
        finally:
            os._exit(0)
    os.close(READY_FD)
    for fd in sys.argv[3].split(","):   # fds meant for the victim only
        if fd:
            os.close(int(fd))
    sys.stdout.write(f"{pid}\\n"); sys.stdout.flush()
    def reaper():
        while True:
            try:
                p, st = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
    threading.Thread(target=reaper, daemon=True).start()
    sys.stdin.buffer.read()   # live until the test closes our stdin
""")


@dataclass
class Keeper:
    """A subreaper keeper with one victim below it (``pid``)."""

    proc: subprocess.Popen[bytes]
    pid: int
    ready_r: int
    extra_fds: list[int] = field(default_factory=list)

    def wait_ready(self, n: int = 1, timeout: float = 30) -> None:
        """Block until ``n`` ready bytes arrived (written by ``ready()`` in the victim code)."""
        got = 0
        while got < n:
            if not select.select([self.ready_r], [], [], timeout)[0]:
                raise TimeoutError(f"only {got} of {n} processes got ready")
            data = os.read(self.ready_r, n - got)
            if not data:
                raise RuntimeError(f"victims exited before getting ready ({got} of {n})")
            got += len(data)

    def descendants(self) -> list[int]:
        out, todo = [], [self.proc.pid]
        while todo:
            for kid in _tree.children(todo.pop()):
                out.append(kid)
                todo.append(kid)
        return out

    def cleanup(self) -> None:
        # SIGKILL everything below the keeper, repeatedly (a forker may still be forking),
        # then let the keeper go; its reaper thread collects the zombies.
        for _ in range(100):
            pids = self.descendants()
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
                    os.kill(p, signal.SIGCONT)
            # wait for one of them on a pidfd rather than sleeping
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pids[0])
                select.select([fd], [], [], 1.0)
                os.close(fd)
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for fd in [self.ready_r, *self.extra_fds]:
            with contextlib.suppress(OSError):
                os.close(fd)


def start_keeper(code: str, env: Optional[dict[str, str]] = None,
                 pass_fds: tuple[int, ...] = (), user: Optional[int] = None) -> Keeper:
    """Start a keeper whose child runs ``code`` (with ``ready()`` and ``block()`` defined)."""
    r, w = os.pipe()
    code = textwrap.dedent(code)
    if user is not None:  # the victim drops to ``user`` (the keeper stays ours and reaps)
        code = (f"os.setgroups([]); os.setresgid({user}, {user}, {user}); "
                f"os.setresuid({user}, {user}, {user})\n"
                # a process started by that user would be dumpable (ptrace-readable) too
                "import ctypes; ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)\n") + code
    proc = subprocess.Popen([sys.executable, "-c", KEEPER, str(w), code,
                             ",".join(str(fd) for fd in pass_fds)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            pass_fds=(w, *pass_fds), env=env)
    os.close(w)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        os.close(r)
        raise RuntimeError("keeper failed to start")
    return Keeper(proc, int(line), r)


def is_alive(pid: int) -> bool:
    """Alive = exists and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# ----- cgroups -------------------------------------------------------------------------------

def v2_root() -> Optional[str]:
    """The cgroup v2 mount point if it is there and we can create cgroups in it."""
    m = _cgroup.cgroup2_mount()
    if m is None or not os.access(m.mount_point, os.W_OK):
        return None
    return m.mount_point


def unique_name(tag: str) -> str:
    return f"exithand-issue6-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def v2_cgroup(tag: str) -> Iterator[str]:
    """A fresh cgroup v2 directory (killed and removed afterwards)."""
    root = v2_root()
    if root is None:
        import pytest
        pytest.skip("no writable cgroup v2 mount (needs root and cgroup2 mounted)")
    path = os.path.join(root, unique_name(tag))
    os.mkdir(path)
    try:
        yield path
    finally:
        remove_cgroup(path)


def remove_cgroup(path: str) -> None:
    """Kill whatever is left in a test cgroup and remove it (children first)."""
    if not os.path.isdir(path):
        return
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        if os.path.exists(os.path.join(dirpath, "cgroup.kill")):
            with contextlib.suppress(OSError):
                _cgroup.cgroup_kill(dirpath)
            with contextlib.suppress(Exception):
                _cgroup.wait_unpopulated(dirpath, 10)
        else:  # v1: kill listed processes one by one
            for _ in range(50):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids = [int(x) for x in f.read().split()]
                except OSError:
                    break
                if not pids:
                    break
                for p in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    fd = os.pidfd_open(pids[0])
                    select.select([fd], [], [], 1.0)
                    os.close(fd)
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                # a v1 memcg may need a moment after its last task left; wait on nothing
                # but the kernel: retry a bounded number of times
                select.select([], [], [], 0.02)


@dataclass
class MemoryCgroup:
    """A cgroup with a memory limit, and the v2 cgroup (maybe the same dir) to kill it with."""

    mem_dir: str  # where memory.limit_in_bytes / memory.max lives
    v2_dir: Optional[str]  # for cgroup.kill (same as mem_dir on pure v2)
    version: int  # version of the memory controller

    def dirs(self) -> list[str]:
        return list(dict.fromkeys(d for d in (self.mem_dir, self.v2_dir) if d))

    def join_code(self) -> str:
        """Python statements that move the running process into this cgroup."""
        return "".join(f"open({os.path.join(d, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
                       for d in self.dirs())

    def usage(self) -> int:
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        with open(os.path.join(self.mem_dir, name)) as f:
            return int(f.read())


@contextlib.contextmanager
def memory_cgroup(tag: str, limit: int) -> Iterator[MemoryCgroup]:
    """A cgroup limited to ``limit`` bytes, on either layout; skips when none can be made.

    Hybrid (v1 memory controller): created below *our own* memory cgroup (so whatever
    accounts for us accounts for it too), plus a v2 cgroup for ``cgroup.kill`` if v2 is there.
    Pure v2: created below the root with ``memory.max`` (the root's ``subtree_control`` must
    offer ``memory``, which we try to enable).
    """
    import pytest
    mounts = _cgroup.cgroup_mounts()
    v1 = next((m for m in mounts if m.version == 1 and "memory" in m.controllers), None)
    v2 = next((m for m in mounts if m.version == 2), None)
    name = unique_name(tag)
    made: list[str] = []
    try:
        if v1 is not None:
            own = "/"
            with open("/proc/self/cgroup") as f:
                for line in f:
                    parts = line.strip().split(":", 2)
                    if "memory" in parts[1].split(","):
                        own = parts[2]
            base = os.path.join(v1.mount_point, own.lstrip("/"))
            mem_dir = os.path.join(base, name)
            try:
                os.mkdir(mem_dir)
            except OSError as e:
                pytest.skip(f"cannot create a v1 memory cgroup in {base}: {e.strerror}")
            made.append(mem_dir)
            with open(os.path.join(mem_dir, "memory.limit_in_bytes"), "w") as f:
                f.write(str(limit))
            v2_dir = None
            if v2 is not None and os.access(v2.mount_point, os.W_OK):
                v2_dir = os.path.join(v2.mount_point, name)
                os.mkdir(v2_dir)
                made.append(v2_dir)
            yield MemoryCgroup(mem_dir, v2_dir, 1)
        elif v2 is not None and "memory" in v2.controllers:
            sc = os.path.join(v2.mount_point, "cgroup.subtree_control")
            try:
                with open(sc) as f:
                    if "memory" not in f.read().split():
                        with open(sc, "w") as g:
                            g.write("+memory")
                d = os.path.join(v2.mount_point, name)
                os.mkdir(d)
            except OSError as e:
                pytest.skip(f"cannot create a v2 memory cgroup: {e.strerror}")
            made.append(d)
            with open(os.path.join(d, "memory.max"), "w") as f:
                f.write(str(limit))
            with contextlib.suppress(OSError), open(os.path.join(d, "memory.swap.max"), "w") as f:
                f.write("0")
            yield MemoryCgroup(d, d, 2)
        else:
            pytest.skip("no memory cgroup controller (neither v1 nor v2) to bound the hogs")
    finally:
        for d in reversed(made):
            remove_cgroup(d)
