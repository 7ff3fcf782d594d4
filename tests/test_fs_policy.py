"""The access policy matrix, through a real mount, with real users and a real parent."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess

import pytest
from fshelp import Forked, fsmount, needs_fuse, procs  # noqa: F401

from conftest import NOBODY, OTHER_UID, run_as

pytestmark = [needs_fuse, pytest.mark.timeout(120)]

PR_SET_DUMPABLE = 4
PARENT_UID = OTHER_UID  # the parent runs as this uid but is judged by being the parent


def start_parent(target_uid: int) -> Forked:
    """A parent (fsuid PARENT_UID, no capabilities; saved uid 0 so it can give its child any
    uid) with one child running as ``target_uid`` (uids and gids), dumpable.
    Answers "pid" and "open PATH"."""
    child: list[int] = []

    def setup() -> None:
        os.setgroups([])
        os.setresgid(PARENT_UID, PARENT_UID, 0)
        os.setresuid(PARENT_UID, PARENT_UID, 0)
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.setresuid(0, 0, 0)
                os.setresgid(target_uid, target_uid, target_uid)
                os.setresuid(target_uid, target_uid, target_uid)
                # a credential change makes a process non-dumpable; an exec'ed program of
                # the same user would be dumpable, as this one now says it is
                ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1)
                os.write(ready_w, b"!")
                os.read(r, 1)  # until the parent is gone
            finally:
                os._exit(0)
        os.close(r)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"!"
        child.append(pid)

    def handler(line: str) -> str:
        if line == "pid":
            return str(child[0])
        code = try_open(line.split(None, 1)[1])
        return "ok" if code == 0 else str(code)

    return Forked(setup, handler)


def try_open(path: str) -> int:
    try:
        with open(path, "rb"):
            return 0
    except OSError as e:
        return e.errno or -1


# allowed[(policy, caller)] for exithand_full and exitstatus; "same" means the target's uid
ALLOWED = {
    "same-user": {"root", "same", "parent"},
    "public": {"root", "same", "other", "parent"},
    "parent": {"root", "parent"},
    "root": {"root"},
}


@pytest.mark.parametrize("policy", list(ALLOWED))
def test_policy_matrix(fsmount, procs, policy):  # noqa: F811
    fs = fsmount(policy=policy)
    for target_uid in (0, NOBODY):
        parent = start_parent(target_uid)
        target = int(parent.ask("pid"))
        with open(f"/proc/{target}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:3]
        assert uids == [str(target_uid)] * 2

        def as_parent(path: str, parent=parent) -> int:
            ans = parent.ask(f"open {path}")
            return 0 if ans == "ok" else int(ans)

        callers = {
            "root": try_open,
            "same": (try_open if target_uid == 0
                     else lambda p, u=target_uid: run_as(u, lambda: try_open(p))),
            "other": lambda p: run_as(OTHER_UID, lambda: try_open(p)),
            "parent": as_parent,
        }
        for caller, opener in callers.items():
            assert opener(fs.path(target, "exithand")) == 0, (policy, caller, target_uid)
            for name in ("exithand_full", "exitstatus"):
                role = "root" if caller == "same" and target_uid == 0 else caller
                want = 0 if role in ALLOWED[policy] else errno.EACCES
                got = opener(fs.path(target, name))
                assert got == want, (policy, caller, target_uid, name, errno.errorcode.get(got))
        parent.close()
        os.kill(target, 9)  # reparented to init (or our subreaper) once the parent is gone


# Credential changes during the target's life, setuid/setgid targets, dumpability and the
# time-of-check/time-of-use race: test_fs_leaks.py (judged at death, against the kernel).


def _open_in_own_user_ns(path: str) -> int:
    """As the current (unprivileged) user, inside a new user namespace where it is "root"
    with every capability (``unshare -Ur``): open ``path`` (a shell redirection, no read);
    0 if it opened, EACCES if refused, -1 for anything else."""
    res = subprocess.run(["unshare", "-Ur", "sh", "-c", 'exec 3< "$1" && echo opened', "sh",
                          path], timeout=30, capture_output=True, text=True)
    if res.stdout.strip() == "opened":
        return 0
    return errno.EACCES if "Permission denied" in res.stderr else -1


def test_capabilities_in_a_user_namespace_do_not_count(fsmount, procs):  # noqa: F811
    """CAP_SYS_PTRACE counts as it does for ptrace: in the daemon's user namespace.  Any user
    can make a user namespace and hold every capability *there* (CapEff is full), which
    grants nothing over root's processes."""
    probe = run_as(NOBODY, lambda: subprocess.run(
        ["unshare", "-Ur", "grep", "^CapEff", "/proc/self/status"],
        capture_output=True, text=True, timeout=30).stdout)
    if "1ffffffffff" not in probe:
        pytest.skip(f"unprivileged user namespaces unavailable here ({probe!r})")
    fs = fsmount()
    target = procs.start(["sleep", "60"])  # root's process
    for name in ("exitstatus", "exithand_full"):
        path = fs.path(target.pid, name)
        assert run_as(NOBODY, lambda p=path: try_open(p)) == errno.EACCES
        got = run_as(NOBODY, lambda p=path: _open_in_own_user_ns(p))
        assert got == errno.EACCES, (name, errno.errorcode.get(got, got))
    # the same user with CAP_SYS_PTRACE in the initial namespace is privileged, as for ptrace
    res = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                          "--clear-groups", "--inh-caps=+sys_ptrace",
                          "--ambient-caps=+sys_ptrace", "sh", "-c",
                          'exec 3< "$1" && echo opened', "sh",
                          fs.path(target.pid, "exitstatus")],
                         capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "opened", res.stderr
    # plain exithand stays open to anyone who can see the process
    assert run_as(NOBODY, lambda: _open_in_own_user_ns(fs.path(target.pid, "exithand"))) == 0
