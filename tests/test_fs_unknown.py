"""An exit status that truly cannot be learned: exithand_full fails ENODATA, never invented.

A daemon running as root always learns the status on Linux 6.15+ (zombie field 52 with ptrace
access, PIDFD_INFO_EXIT after the reap), so this runs the filesystem's operations directly,
without a mount, in a forked process that dropped to nobody: a root-owned zombie's exit code is
then hidden from it by the kernel (field 52 shows 0 without ptrace access; not yet reaped).
"""

from __future__ import annotations

import errno
import os
import types

import pytest
from fshelp import needs_fuse

from conftest import NOBODY, run_as, wait_dead

pytestmark = [needs_fuse, pytest.mark.timeout(60)]


def _read_as_daemon(pid: int) -> tuple[int, bytes, bytes]:
    import pyfuse3
    import trio

    from exithand.fs import inodes
    from exithand.fs.ops import ExitFS

    ops = ExitFS("public")
    ctx = types.SimpleNamespace(uid=os.getuid(), pid=os.getpid(), gid=os.getgid(), umask=0)

    async def main() -> tuple[int, bytes, bytes]:
        async with trio.open_nursery() as nursery:
            ops.nursery = nursery
            d = await ops.lookup(inodes.ROOT, str(pid).encode(), ctx)
            out: dict[str, object] = {}
            for name in ("exithand_full", "exitstatus", "exithand"):
                f = await ops.lookup(d.st_ino, name.encode(), ctx)
                fi = await ops.open(f.st_ino, os.O_RDONLY, ctx)
                try:
                    out[name] = await ops.read(fi.fh, 0, 4096)
                except pyfuse3.FUSEError as e:
                    out[name] = e.errno
                await ops.release(fi.fh)
            assert ops.statistics()["watches"] == 0
            nursery.cancel_scope.cancel()
        return out["exithand_full"], out["exitstatus"], out["exithand"]  # type: ignore

    return trio.run(main)


def test_unknown_status_is_enodata(victim_factory):
    v = victim_factory(reap=False)  # root's process, left a zombie by its (root) parent
    v.exit(3)
    wait_dead(v.pid)
    full, text, plain = run_as(NOBODY, lambda: _read_as_daemon(v.pid))
    assert full == errno.ENODATA
    assert text.startswith(f"{v.pid}: exited (status unknown: ".encode()), text
    assert plain == b""
    # as root the same zombie's status is known
    full, text, _ = _read_as_daemon(v.pid)
    assert len(full) == 128 and text == f"{v.pid}: exited with status 3.\n".encode()
