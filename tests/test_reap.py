"""``exithand.wait_reaped``: dead is not reaped.  On every backend (pidfd: POLLHUP at the
reap on 6.9+; procpoll/connector: asked on a backoff)."""

from __future__ import annotations

import threading

import pytest

import exithand

pytestmark = pytest.mark.timeout(60)


def test_zombie_is_dead_not_reaped(no_fd_leak, backend, victim_factory):
    v = victim_factory(reap=False)
    with exithand.open(v.pid) as h:
        v.exit(4)
        h.wait(timeout=30)
        assert not h.is_reaped()
        assert exithand.wait_reaped([h], timeout=0) == []
        assert exithand.wait_reaped([h], timeout=0.05) == []
        t = threading.Thread(target=v.reap)
        t.start()
        try:
            assert exithand.wait_reaped([h], timeout=30) == [h]
        finally:
            t.join(30)
        assert h.is_reaped()
        st = h.status()
        assert st is not None and (st.exit_code == 4 or not st.known)


def test_count_and_order(backend, victim_factory):
    a, b = victim_factory(reap=False), victim_factory(reap=False)
    with exithand.open(a.pid) as ha, exithand.open(b.pid) as hb:
        a.exit(0)
        b.exit(0)
        ha.wait(timeout=30)
        hb.wait(timeout=30)
        b.reap()
        assert exithand.wait_reaped([ha, hb], timeout=30, count=1) == [hb]
        assert exithand.wait_reaped([ha, hb], timeout=0) == [hb]  # a still a zombie
        a.reap()
        assert set(exithand.wait_reaped([ha, hb], timeout=30)) == {ha, hb}


def test_bad_arguments(victim_factory):
    v = victim_factory()
    with exithand.open(v.pid) as h:
        for bad in (-1, True, 1.5):
            with pytest.raises(ValueError):
                exithand.wait_reaped([h], timeout=0, count=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            exithand.wait_reaped([h], timeout=-1)
