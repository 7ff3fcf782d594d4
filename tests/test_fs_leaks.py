"""The ``same-user`` policy tells a reader exactly what the kernel would: the leak matrix.

Targets are real processes: a C helper (tests/helpers/credtarget.c) built here and installed
plain, setuid-root and setgid, started as an unprivileged user; readers are real users.  For each
target the kernel's own answer is read beside ours, *as the reader*: field 52 of the zombie's
``/proc/<pid>/stat`` (the kernel prints 0 there when it refuses ptrace read access; the targets
exit 7) against ``MNT/<pid>/exitstatus`` and ``exithand_full``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from fshelp import fsmount, needs_fuse, procs  # noqa: F401

from conftest import NOBODY, OTHER_UID, drop_to, run_as

pytestmark = [needs_fuse, pytest.mark.timeout(180)]

CODE = 7
OTHER_GID = OTHER_UID  # a group the reader is not in


@pytest.fixture(scope="module")
def bins() -> Iterator[dict[str, str]]:
    """credtarget installed plain (0755), setuid-root (4755) and setgid OTHER_GID (2755), in a
    directory every user can reach (pytest's tmp dirs are 0700)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the setuid/setgid helpers")
    d = tempfile.mkdtemp(prefix="eh12-bin-")
    os.chmod(d, 0o755)
    src = os.path.join(os.path.dirname(__file__), "helpers", "credtarget.c")
    plain = os.path.join(d, "plain")
    subprocess.run(["gcc", "-O1", "-o", plain, src], check=True, timeout=60)
    out = {"plain": plain}
    for name, mode, gid in (("suid", 0o4755, 0), ("sgid", 0o2755, OTHER_GID)):
        p = os.path.join(d, name)
        shutil.copy(plain, p)
        os.chown(p, 0, gid)
        os.chmod(p, mode)
        out[name] = p
    os.chmod(plain, 0o755)
    # the mount must honour setuid bits (probe: the setuid copy really runs with euid 0)
    probe = subprocess.run([out["suid"], "keep"], input=b"x", capture_output=True, timeout=30,
                           preexec_fn=drop_to(NOBODY))
    if probe.returncode != CODE:
        shutil.rmtree(d)
        pytest.skip(f"the setuid helper does not run here: {probe.stderr!r}")
    yield out
    shutil.rmtree(d)


# kind -> (binary, mode, uid, gid) of the target; the reader is NOBODY
TARGETS: dict[str, tuple[str, str, int, int]] = {
    "same user, dumpable": ("plain", "keep", NOBODY, NOBODY),
    "setuid-root, saved uid 0": ("suid", "keep", NOBODY, NOBODY),
    "setuid-root, dropped back": ("suid", "dropuid", NOBODY, NOBODY),
    "setgid": ("sgid", "keep", NOBODY, NOBODY),
    "setgid, egid dropped back": ("sgid", "dropgid", NOBODY, NOBODY),
    "other primary gid": ("plain", "keep", NOBODY, OTHER_GID),
    "PR_SET_DUMPABLE 0": ("plain", "nodump", NOBODY, NOBODY),
    "other user": ("plain", "keep", OTHER_UID, OTHER_UID),
}


def start_target(started: Any, bins: dict[str, str], kind: str) -> subprocess.Popen[bytes]:
    """Our child (so it stays a zombie until we reap it), announcing "ready" once set up."""
    binary, mode, uid, gid = TARGETS[kind]
    p = started.start([bins[binary], mode, str(CODE)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, preexec_fn=drop_to(uid, gid))
    assert p.stdout.readline() == b"ready\n"
    return p


def kill_zombie_wait(p: subprocess.Popen[bytes]) -> None:
    """Tell the target to exit and wait until it is a zombie (pidfd readable), not reaped."""
    fd = os.pidfd_open(p.pid)
    try:
        p.stdin.write(b"x")
        p.stdin.flush()
        import select
        assert select.select([fd], [], [], 10)[0]
    finally:
        os.close(fd)


def kernel_says(pid: int, reader: int) -> bool:
    """As ``reader``: does the kernel show the zombie's exit code (field 52)?"""
    def field52() -> str:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[49]
    v = run_as(reader, field52)
    assert v in ("0", str(CODE << 8)), v
    return v != "0"


def ours_says(path: str, reader: int) -> tuple[Optional[bytes], int]:
    def read() -> tuple[Optional[bytes], int]:
        try:
            with open(path, "rb") as f:
                return f.read(), 0
        except OSError as e:
            return None, e.errno or -1
    result: tuple[Optional[bytes], int] = run_as(reader, read)
    return result


def test_same_user_matrix_is_the_kernels(fsmount, procs, bins):  # noqa: F811
    """For every target kind, a zombie not yet reaped: ours answers iff the kernel does."""
    fs = fsmount()
    table = []
    for kind in TARGETS:
        p = start_target(procs, bins, kind)
        kill_zombie_wait(p)
        kernel = kernel_says(p.pid, NOBODY)
        text, err = ours_says(fs.path(p.pid, "exitstatus"), NOBODY)
        full, err_full = ours_says(fs.path(p.pid, "exithand_full"), NOBODY)
        ours = text is not None
        table.append((kind, kernel, ours))
        if ours:
            assert text == f"{p.pid}: exited with status {CODE}.\n".encode()
            assert full is not None and len(full) == 128
        else:
            assert err == errno.EACCES and err_full == errno.EACCES, (kind, err, err_full)
        assert ours == kernel, (kind, kernel, ours)
        p.wait(timeout=10)
    assert [k for k, kern, _ in table if kern] == ["same user, dumpable"], table
    out = os.environ.get("EXITHAND_LEAK_TABLE")
    if out:
        with open(out, "w") as f:
            for kind, kern, ours in table:
                f.write(f"{kind}\t{'code' if kern else 'refused'}\t"
                        f"{'status' if ours else 'EACCES'}\n")


def test_judged_at_death_not_at_open(fsmount, procs, bins):  # noqa: F811
    """A reader admitted at open (same user, dumpable) and blocked in read is refused when the
    target made itself non-dumpable just before dying: the kernel refuses it too."""
    fs = fsmount()
    p = start_target(procs, bins, "same user, dumpable")
    path = fs.path(p.pid, "exitstatus")
    cat = procs.start(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      preexec_fn=drop_to(NOBODY))
    fs.wait_blocked(p.pid)
    p.stdin.write(b"n")
    p.stdin.flush()
    assert p.stdout.readline() == b"ok\n"
    kill_zombie_wait(p)
    out, err = cat.communicate(timeout=10)
    assert not kernel_says(p.pid, NOBODY)
    assert cat.returncode == 1 and out == b"" and b"Permission denied" in err
    p.wait(timeout=10)


def test_setuid_exec_reaped_at_once_never_leaks(fsmount, procs, bins):  # noqa: F811
    """Time of check / time of use: nobody's shell, watched by a blocked reader it was allowed
    at open, execs a setuid-root program that exits after 20 ms and is reaped at once by its
    parent.  The daemon either sees the zombie (the kernel refuses) or not at all (it cannot
    know: refused); the status is never told."""
    fs = fsmount()
    leaks = []
    for i in range(10):
        code = 40 + i
        parent = procs.start(
            ["sh", "-c", 'sh -c \'echo $$; read x; exec "$0" sleep20 "$1"\' "$0" "$1"; '
             'echo reaped', bins["suid"], str(code)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=drop_to(NOBODY))
        pid = int(parent.stdout.readline())
        cat = procs.start(["cat", fs.path(pid, "exitstatus")], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, preexec_fn=drop_to(NOBODY))
        fs.wait_blocked(pid)
        parent.stdin.write(b"go\n")
        parent.stdin.flush()
        out, err = cat.communicate(timeout=10)
        assert parent.stdout.readline() == b"reaped\n"
        parent.wait(timeout=10)
        if f"status {code}".encode() in out:
            leaks.append(out)
        else:
            assert cat.returncode == 1 and b"Permission denied" in err, (out, err)
    assert not leaks


def test_privileged_reader_still_learns_setuid_status(fsmount, procs, bins):  # noqa: F811
    """Root (CAP_SYS_PTRACE) reads a setuid target's status, as the kernel lets it."""
    fs = fsmount()
    p = start_target(procs, bins, "setuid-root, saved uid 0")
    kill_zombie_wait(p)
    with open(fs.path(p.pid, "exitstatus"), "rb") as f:
        assert f.read() == f"{p.pid}: exited with status {CODE}.\n".encode()
    p.wait(timeout=10)
