"""Core-dump helpers for the tests: where cores go, and a coredump socket server.

``core_rlimit(limit, cwd)`` is a ``preexec_fn`` for a victim's keeper: RLIMIT_CORE (inherited
by the victim) and a working directory inside the test's tmp_path, so a core written with the
default relative ``core_pattern`` (``core``) never lands in the source tree.

``coredump_socket(tmp)`` points ``/proc/sys/kernel/core_pattern`` at a Unix socket (``@PATH``,
Linux 6.16) served by a thread that reads every dump to its end, and restores the old pattern in
a ``finally``.  Only a dump into such a socket makes 6.16-6.18 record ``PIDFD_INFO_COREDUMP``
(measured; see src/exithand/_kernel/syscalls.py).  The pattern is system-wide for the few
hundred milliseconds it is set: another process crashing meanwhile dumps into our socket, which
reads and drops it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

CORE_PATTERN = "/proc/sys/kernel/core_pattern"


def core_rlimit(limit: int, cwd: Path) -> Callable[[], None]:
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))
        os.chdir(cwd)
    return pre




class Dumps(list):  # type: ignore[type-arg]
    """Dump sizes received so far (one entry per dump, filled by a thread); ``got`` is set at
    each complete dump (the kernel closes the socket when the dump is written, which may be
    after the dumper is already seen dead)."""

    def __init__(self) -> None:
        super().__init__()
        self.got = threading.Event()


@contextlib.contextmanager
def coredump_socket(tmp: Path) -> Iterator[Dumps]:
    """Yield the :class:`Dumps` received so far."""
    path = str(tmp / "core.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    sizes = Dumps()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                n = 0
                while chunk := conn.recv(1 << 16):
                    n += len(chunk)
                sizes.append(n)
                sizes.got.set()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with open(CORE_PATTERN) as f:
        old = f.read().rstrip("\n")
    try:
        with open(CORE_PATTERN, "w") as f:
            f.write("@" + path)
        yield sizes
    finally:
        with open(CORE_PATTERN, "w") as f:
            f.write(old)
        stop.set()
        srv.shutdown(socket.SHUT_RDWR)
        srv.close()
        t.join(10)


def core_pattern_writable() -> str:
    """'' if this process may change core_pattern and it is a plain file pattern; else why not."""
    if os.geteuid() != 0:
        return "changing core_pattern needs root"
    try:
        with open(CORE_PATTERN) as f:
            cur = f.read()
        with open(CORE_PATTERN, "w") as f:
            f.write(cur.rstrip("\n"))
    except OSError as e:
        return f"core_pattern not writable: {e.strerror}"
    return ""
