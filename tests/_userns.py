"""Real people for the fairness tests: a user made with ``useradd`` (removed after), its
subordinate uids in ``/etc/subuid``, mapped by the setuid ``newuidmap`` into a user namespace
(``unshare --map-users``, util-linux 2.38), and a small script run there as several of those
uids at once (forked children, each ``setresuid`` to one inner uid).

The script is run by ``/usr/bin/python3`` (any user may execute it) with only ``os``: each
child does its part, writes one line ``<inner uid> <done> <errno>`` and holds what it opened
until the test closes the script's stdin.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

SUBUID_BASE = 310000
SUBUID_COUNT = 16

#: argv: path-or-MNT, count, inner uids (comma-separated), mode ("f" files, "d" dirs,
#: "r" blocked reads in threads, "l" lingering entries of short-lived children)
SCRIPT = r'''
import errno, os, sys, threading
target, n, uids, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
def part(u, w):
    held, err, done = [], 0, 0
    if mode in "fd":
        fl = os.O_RDONLY | (os.O_DIRECTORY if mode == "d" else 0)
        for _ in range(n):
            try:
                held.append(os.open(target, fl))
            except OSError as e:
                err = e.errno
                break
        done = len(held)
    elif mode == "r":
        fails = []
        def reader():
            try:
                fd = os.open(target, os.O_RDONLY)
                os.read(fd, 1)
            except OSError as e:
                fails.append(e.errno)
        ts = [threading.Thread(target=reader, daemon=True) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(0.5 if not fails else 0.05)
        done, err = n - len(fails), (fails[0] if fails else 0)
    elif mode == "l":
        for _ in range(n):
            r, w2 = os.pipe()
            c = os.fork()
            if c == 0:
                os.close(w2)
                os.read(r, 1)
                os._exit(0)
            os.close(r)
            pfd = os.pidfd_open(c)
            ino = os.fstat(pfd).st_ino
            os.close(pfd)
            try:
                fd = os.open(f"{target}/{c}:{ino}/exithand", os.O_RDONLY)
            except OSError as e:
                err = e.errno
                os.close(w2); os.waitpid(c, 0)
                break
            os.close(w2)
            os.waitpid(c, 0)
            os.read(fd, 1)
            os.close(fd)
            done += 1
    os.write(w, f"{u} {done} {err}\n".encode())
kids = []
for u in map(int, uids):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if u:
            os.setgroups([]); os.setresgid(u, u, u); os.setresuid(u, u, u)
        part(u, w)
        os.read(0, 1)
        os._exit(0)
    os.close(w)
    sys.stdout.write(os.read(r, 100).decode()); sys.stdout.flush()
    os.close(r)
    kids.append(pid)
sys.stdout.write("done\n"); sys.stdout.flush()
sys.stdin.read()
for k in kids:
    os.waitpid(k, 0)
'''


class Person:
    """A real user with ``SUBUID_COUNT`` subordinate uids from ``SUBUID_BASE``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uid = pwd.getpwnam(name).pw_uid
        self.sub = SUBUID_BASE

    def in_userns(self, target: str, n: int, inner: list[int], mode: str,
                  ) -> tuple[subprocess.Popen[str], list[tuple[int, int, int]]]:
        """Run :data:`SCRIPT` as inner uids ``inner`` (1..SUBUID_COUNT; 0 is the user itself)
        of a fresh user namespace; return the running script (close its stdin to end it) and
        each part's ``(inner uid, done, errno)``."""
        u = self.uid
        p = subprocess.Popen(
            ["setpriv", f"--reuid={u}", f"--regid={u}", "--clear-groups",
             "unshare", "--user", "--map-user=0", "--map-group=0",
             f"--map-users={self.sub},1,{SUBUID_COUNT}",
             f"--map-groups={self.sub},1,{SUBUID_COUNT}", "--",
             "/usr/bin/python3", "-c", SCRIPT, target, str(n), ",".join(map(str, inner)), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd="/")
        out: list[tuple[int, int, int]] = []
        assert p.stdout is not None
        for line in p.stdout:
            if line.strip() == "done":
                return p, out
            a, b, c = line.split()
            out.append((int(a), int(b), int(c)))
        err = p.stderr.read() if p.stderr is not None else ""
        end(p)
        raise AssertionError(f"the user-namespace script failed: {out} {err}")


def end(p: subprocess.Popen[str]) -> None:
    """Let the script's children go and reap it (bounded)."""
    with contextlib.suppress(OSError):
        if p.stdin is not None:
            p.stdin.close()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=30)
    for f in (p.stdout, p.stderr):
        if f is not None:
            f.close()


def _skip_reason() -> str:
    for tool in ("useradd", "userdel", "usermod", "newuidmap", "newgidmap", "unshare",
                 "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install uidmap passwd util-linux)"
    if not os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3 is missing"
    if os.geteuid() != 0:
        return "creating users needs root"
    return ""


@pytest.fixture
def person() -> Iterator[Any]:
    """A fresh real user ``ehfair<pid>`` with subordinate uids; removed after."""
    why = _skip_reason()
    if why:
        pytest.skip(why)
    name = f"ehfair{os.getpid() % 100000}"
    subprocess.run(["userdel", "-f", name], capture_output=True, check=False)
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)
    try:
        last = SUBUID_BASE + SUBUID_COUNT - 1
        subprocess.run(["usermod", "--add-subuids", f"{SUBUID_BASE}-{last}",
                        "--add-subgids", f"{SUBUID_BASE}-{last}", name],
                       check=True, capture_output=True, timeout=30)
        probe = subprocess.run(
            ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups", "unshare",
             "--user", "--map-user=0", "--map-group=0",
             f"--map-users={SUBUID_BASE},1,{SUBUID_COUNT}",
             f"--map-groups={SUBUID_BASE},1,{SUBUID_COUNT}", "--", "true"],
            capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            pytest.skip(f"{name} cannot map its subordinate uids: {probe.stderr.strip()}")
        yield Person(name)
    finally:
        subprocess.run(["userdel", "-f", name], capture_output=True, check=False, timeout=30)
