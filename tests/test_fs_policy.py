"""The access policy matrix, through a real mount, with real users and a real parent."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from fshelp import Forked, fsmount, needs_fuse, procs  # noqa: F401

from conftest import NOBODY, OTHER_UID, drop_to, run_as

pytestmark = [needs_fuse, pytest.mark.timeout(120)]

PARENT_UID = OTHER_UID  # the parent runs as this uid but is judged by being the parent


def start_parent(target_uid: int) -> Forked:
    """A parent (fsuid PARENT_UID, no capabilities; saved uid 0 so it can give its child any
    uid) with one child running as ``target_uid``.  Answers "pid" and "open PATH"."""
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
                os.setresuid(target_uid, target_uid, target_uid)
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


def start_target(ruid: int, suid: int) -> Forked:
    """Our child running as ``ruid`` (saved uid ``suid``); "uid R S" changes, "exit N" exits."""

    def handler(line: str) -> str:
        cmd = line.split()
        if cmd[0] == "exit":
            os._exit(int(cmd[1]))
        os.setresuid(int(cmd[1]), int(cmd[1]), int(cmd[2]))
        return "ok"

    return Forked(lambda: os.setresuid(ruid, ruid, suid), handler)


def test_uid_change_judged_by_last_credentials(fsmount, procs):  # noqa: F811
    fs = fsmount()
    # 1. nobody's process that becomes root before dying: the reader allowed at open is
    #    refused at death.
    t = start_target(NOBODY, 0)
    path = fs.path(t.pid, "exitstatus")
    cat = procs.start(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      preexec_fn=drop_to(NOBODY))
    fs.wait_blocked(t.pid)
    assert t.ask("uid 0 0") == "ok"
    assert run_as(NOBODY, lambda: try_open(path)) == errno.EACCES  # judged now as root's
    t.tell("exit 5")  # stays a zombie (our child, not reaped yet): credentials are final
    out, err = cat.communicate(timeout=10)
    assert cat.returncode == 1 and out == b"" and b"Permission denied" in err
    assert t.close() == 5 << 8
    # 2. root's process that becomes nobody's: refused before, allowed after the change.
    t = start_target(0, 0)
    path = fs.path(t.pid, "exitstatus")
    assert run_as(NOBODY, lambda: try_open(path)) == errno.EACCES
    assert t.ask(f"uid {NOBODY} {NOBODY}") == "ok"
    cat = procs.start(["cat", path], stdout=subprocess.PIPE, preexec_fn=drop_to(NOBODY))
    fs.wait_blocked(t.pid)
    t.tell("exit 5")
    out, _ = cat.communicate(timeout=10)
    assert (cat.returncode, out) == (0, f"{t.pid}: exited with status 5.\n".encode())
    assert t.close() == 5 << 8


def start_keeper() -> Forked:
    """Our child whose child (the target, a non-child for the test) runs as nobody with saved
    uid 0.  "pid"; "root" makes the target root; "exit" makes it exit 6 and reaps it at once."""
    st: dict[str, int] = {}

    def setup() -> None:
        c_r, c_w = os.pipe()
        a_r, a_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(NOBODY, NOBODY, 0)
                os.write(a_w, b"!")
                while True:
                    cmd = os.read(c_r, 1)
                    if cmd != b"r":
                        os._exit(6)
                    os.setresuid(0, 0, 0)
                    os.write(a_w, b"!")
            finally:
                os._exit(6)
        assert os.read(a_r, 1) == b"!"
        st.update(pid=pid, c=c_w, a=a_r)

    def handler(line: str) -> str:
        if line == "pid":
            return str(st["pid"])
        if line == "root":
            os.write(st["c"], b"r")
            return os.read(st["a"], 1).decode()
        os.write(st["c"], b"x")
        return str(os.waitpid(st["pid"], 0)[1])  # reaped as soon as it dies

    return Forked(setup, handler)


def test_uid_change_then_reaped_at_once(fsmount, procs):  # noqa: F811
    """The parent reaps the process at once, so the daemon may never see the zombie: the
    periodic credential refresh still judges the reader by the uid it last had alive."""
    fs = fsmount()
    keeper = start_keeper()
    try:
        target = int(keeper.ask("pid"))
        path = fs.path(target, "exitstatus")
        cat = procs.start(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=drop_to(NOBODY))
        fs.wait_blocked(target)
        assert keeper.ask("root") == "!"
        fs.wait_log(rf"credentials-changed pid={target} ruid=0 euid=0 ")
        assert keeper.ask("exit") == str(6 << 8)
        out, err = cat.communicate(timeout=10)
        assert cat.returncode == 1 and out == b"" and b"Permission denied" in err
    finally:
        keeper.close()


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
