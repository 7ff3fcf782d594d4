"""Hostile paths: random names and operations thrown at a live mount (hypothesis).

Every answer must be a clean error from the documented set, and the daemon must survive.
The set is the issue's ENOENT/EROFS/EACCES/EINVAL plus what the kernel's VFS itself answers
for path shapes before asking the filesystem (ENOTDIR, EISDIR, EEXIST, ENOTEMPTY, EXDEV,
ENAMETOOLONG), EAGAIN for a non-blocking read of a live process and ENODATA for a missing xattr.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest
from fshelp import fsmount, needs_fuse  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [needs_fuse, pytest.mark.timeout(180)]

ALLOWED = {errno.ENOENT, errno.EROFS, errno.EACCES, errno.EINVAL, errno.ENOTDIR, errno.EISDIR,
           errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV, errno.ENAMETOOLONG, errno.EAGAIN,
           errno.ENODATA}


def _name(special: list[str]) -> st.SearchStrategy[bytes]:
    raw = st.binary(min_size=1, max_size=60).filter(lambda b: b"/" not in b and b"\0" not in b
                                                     and b not in (b".", b".."))
    num = st.one_of(st.integers(min_value=-2**70, max_value=2**70).map(str),
                    st.text(alphabet="0123456789:-+ x\uff11", min_size=1, max_size=25))
    return st.one_of(raw, num.map(str.encode),
                     st.sampled_from([s.encode() for s in special]))


def _read_nb(p: bytes) -> None:
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.read(fd, 200)
    finally:
        os.close(fd)


OPS = {
    "stat": os.stat, "lstat": os.lstat, "listdir": os.listdir, "read": _read_nb,
    "write": lambda p: os.close(os.open(p, os.O_WRONLY)),
    "create": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)),
    "trunc": lambda p: os.truncate(p, 0), "mkdir": os.mkdir, "rmdir": os.rmdir,
    "unlink": os.unlink, "chmod": lambda p: os.chmod(p, 0o777),
    "chown": lambda p: os.chown(p, 1, 1), "symlink": lambda p: os.symlink(b"x", p),
    "readlink": os.readlink, "xattr": lambda p: os.getxattr(p, "user.x"),
    "setxattr": lambda p: os.setxattr(p, "user.x", b"1"),
    "access": lambda p: os.access(p, os.W_OK | os.X_OK),
    "utime": lambda p: os.utime(p, (1, 1)), "mknod": os.mkfifo, "rename": os.stat,
}


def test_hostile_paths(fsmount, victim_factory):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=False)
    ready, stop = threading.Event(), threading.Event()
    th = threading.Thread(target=lambda: (ready.set(), stop.wait(120)))
    th.start()
    ready.wait()
    ino = os.fstat(fd := os.pidfd_open(v.pid)).st_ino
    os.close(fd)
    special = [str(v.pid), f"{v.pid}:{ino}", f"{v.pid}:{ino + 7}", str(th.native_id), "0",
               "1", "exithand", "exithand_full", "exitstatus", str(os.getpid())]
    mnt = fs.mnt.encode()
    errors: dict[int, int] = {}

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(_name(special), min_size=1, max_size=3), st.sampled_from(sorted(OPS)),
           st.lists(_name(special), min_size=1, max_size=3))
    def check(parts: list[bytes], op: str, other: list[bytes]) -> None:
        path = os.path.join(mnt, *parts)
        try:
            if op == "rename":
                os.rename(path, os.path.join(mnt, *other))
            else:
                OPS[op](path)
        except OSError as e:
            assert e.errno in ALLOWED, (op, path, errno.errorcode.get(e.errno or 0))
            errors[e.errno or 0] = errors.get(e.errno or 0, 0) + 1
        assert fs.alive()

    try:
        check()
    finally:
        stop.set()
        th.join()
    assert fs.alive() and str(os.getpid()) in os.listdir(fs.mnt)
    assert errno.ENOENT in errors and errno.EROFS in errors
    assert "unexpected error" not in fs.log_text()
    v.exit(0)
