"""ExitHandle.credentials(): real/effective uid and parent, as last seen alive."""

from __future__ import annotations

import os
import subprocess

import pytest
from fshelp import Forked

import exithand
from conftest import NOBODY, drop_to, wait_dead


def test_live_child_and_zombie_are_final(no_fd_leak):
    p = subprocess.Popen(["sleep", "100"], preexec_fn=drop_to(NOBODY))
    try:
        with exithand.open(p.pid) as h:
            c = h.credentials()
            assert (c.pid, c.ppid, c.ruid, c.euid, c.final) == (p.pid, os.getpid(), NOBODY,
                                                                 NOBODY, False)
            p.kill()
            h.wait(timeout=10)
            c = h.credentials()  # a zombie: what it died with
            assert (c.ruid, c.final) == (NOBODY, True)
            p.wait()
            assert h.credentials() == c  # reaped: the last seen ones
    finally:
        p.kill()
        p.wait()


def test_reaped_nonchild_keeps_last_seen(no_fd_leak, victim_factory):
    v = victim_factory(reap=True)
    with exithand.open(v.pid) as h:
        seen = h.credentials()
        assert seen.ppid == v.keeper.pid and not seen.final
        v.exit(0)
        assert v.keeper.stdout.readline() == b"reaped\n"
        assert h.credentials() == seen


def test_reaped_before_any_read(no_fd_leak, victim_factory):
    v = victim_factory(reap=True)
    with exithand.open(v.pid) as h:
        v.exit(0)
        assert v.keeper.stdout.readline() == b"reaped\n"
        with pytest.raises(exithand.NoSuchProcess):
            h.credentials()


def test_uid_change_is_seen(no_fd_leak):
    def handler(line: str) -> str:
        if line == "exit":
            os._exit(0)
        os.setresuid(0, 0, 0)
        return "ok"

    t = Forked(lambda: os.setresuid(NOBODY, NOBODY, 0), handler)
    try:
        with exithand.open(t.pid) as h:
            c = h.credentials()
            assert (c.ruid, c.euid, c.final) == (NOBODY, NOBODY, False)
            assert t.ask("root") == "ok"
            assert (h.credentials().ruid, h.credentials().euid) == (0, 0)
            t.tell("exit")
            wait_dead(t.pid)
            c = h.credentials()
            assert (c.ruid, c.final) == (0, True)
    finally:
        assert t.close() == 0


def test_closed_handle(victim_factory):
    v = victim_factory()
    h = exithand.open(v.pid)
    h.close()
    with pytest.raises(ValueError):
        h.credentials()


def test_proc_fallback_without_pidfd_get_info(no_fd_leak, monkeypatch):
    """Before Linux 6.13 (forced with EXITHAND_DISABLE): read from /proc/<pid>/status."""
    monkeypatch.setenv("EXITHAND_DISABLE", "pidfd_info")
    t = Forked(lambda: os.setresuid(NOBODY, NOBODY, NOBODY), lambda line: os._exit(0))
    try:
        with exithand.open(t.pid) as h:
            c = h.credentials()
            assert (c.ppid, c.ruid, c.euid, c.final) == (os.getpid(), NOBODY, NOBODY, False)
            t.tell("exit")
            wait_dead(t.pid)
            assert h.credentials().final
    finally:
        assert t.close() == 0
