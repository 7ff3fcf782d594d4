"""Shared pieces of the observability tests (tests/test_obs_*.py): free ports, waiting for a
condition with a bound, named copies of small programs (so ``--comm`` selects only ours), and a
background ``exithand watch`` that is ready once it says it listens."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from conftest import env_with_src

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    """Call ``fn`` until it returns something other than None (at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            got = fn()
            if got is not None:
                return got
        except Exception as e:  # not ready yet (connection refused, partial data)
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {last!r}")
        time.sleep(0.1)


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def named_copy(tmp: Path, program: str, name: str) -> str:
    """A copy of ``program`` called ``name``: its processes have that comm."""
    src = shutil.which(program)
    assert src is not None, program
    dst = tmp / name
    shutil.copy(src, dst)
    os.chmod(dst, 0o755)
    return str(dst)


def run_exits(tmp: Path, prefix: str = "ehobs") -> dict[str, int]:
    """Make processes named PREFIX_sh / PREFIX_sleep end in known ways; returns their pids:
    ``exit3`` (exited 3), ``exit0`` (exited 0), ``killed`` (SIGKILL), ``dumped`` (SIGSEGV with
    a core file written in ``tmp``: core_pattern must be a plain file name)."""
    sh = named_copy(tmp, "sh", f"{prefix}_sh")
    sleep = named_copy(tmp, "sleep", f"{prefix}_sl")
    pids = {}
    for key, code in (("exit3", 3), ("exit0", 0)):
        # each waits on its stdin until it is seen exec'd: a process that dies right after
        # its exec can reach the watcher with no name yet (issue 22.3), which is not what
        # this helper tests
        p = subprocess.Popen([sh, "-c", f"read x; exit {code}"], stdin=subprocess.PIPE)
        _until_named(p.pid, f"{prefix}_sh")
        assert p.stdin is not None
        p.stdin.write(b"\n")
        p.stdin.close()
        assert p.wait(timeout=10) == code
        pids[key] = p.pid
    for key, sig, core in (("killed", 9, 0), ("dumped", 11, -1)):
        import resource

        def limits(core: int = core) -> None:
            resource.setrlimit(resource.RLIMIT_CORE, (core, core))

        p = subprocess.Popen([sleep, "100"], cwd=tmp, preexec_fn=limits)
        _until_named(p.pid, f"{prefix}_sl")  # signalled before its exec it would die unnamed
        p.send_signal(sig)
        assert p.wait(timeout=10) == -sig
        pids[key] = p.pid
    return pids


def _until_named(pid: int, name: str, timeout: float = 10.0) -> None:
    """Return once ``pid`` has exec'd into ``name`` (its comm says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == name[:15]:
                return
        os.sched_yield()
    raise AssertionError(f"{pid} never became {name}")


def core_dumps_to_cwd() -> bool:
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    return not pattern.startswith("|") and "/" not in pattern


class Watch:
    """``exithand watch ARGS`` in the background (``prefix`` runs it through e.g. nsenter)."""

    def __init__(self, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.p = subprocess.Popen([*prefix, sys.executable, "-m", "exithand", "watch", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env_with_src())
        assert self.p.stderr is not None
        line = self.p.stderr.readline()
        assert "listening" in line, line + self.p.stderr.read()

    def finish(self, timeout: float = 30) -> tuple[int, list[dict[str, Any]], str]:
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, [json.loads(x) for x in out.splitlines() if x], err

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.communicate()
