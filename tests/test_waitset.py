"""WaitSet: many real processes, exactly-once reporting, timeouts, threads, closed handles."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from _herd import EPOLL_WAITS, herd, thread_in_syscall

import exithand
from conftest import wait_reaped


def _open_all(ws: exithand.WaitSet, pids: list[int]) -> list[exithand.ExitHandle]:
    return [ws.open(p) for p in pids]


def _close_all(hs: list[exithand.ExitHandle]) -> None:
    for h in hs:
        h.close()


class _Waiter(threading.Thread):
    """Runs ``fn()`` in a thread and keeps its result or exception."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e

    def wait_blocked(self):
        assert thread_in_syscall(self.native_id, EPOLL_WAITS), "waiter never reached epoll_wait"


@pytest.mark.timeout(120)
def test_thousand_die_in_random_order_each_reported_once_never_early(no_fd_leak):
    n = 1000
    with herd(n) as hd, exithand.WaitSet() as ws:
        hs = _open_all(ws, hd.pids)
        try:
            assert len(ws) == n
            order = list(hs)
            random.shuffle(order)
            killed: set[exithand.ExitHandle] = set()
            lock = threading.Lock()

            def killer():
                for h in order:
                    with lock:
                        killed.add(h)
                    h.kill()

            reported: list[exithand.ExitHandle] = []
            t = threading.Thread(target=killer)
            t.start()
            for h in ws.as_exited(timeout=60):
                with lock:
                    assert h in killed, f"{h} reported before it was killed"
                assert not h.is_alive()  # its pidfd is readable: really dead
                reported.append(h)
            t.join(30)
            assert len(reported) == n
            assert len(set(reported)) == n  # each exactly once
            assert set(reported) == set(hs)
            assert len(ws) == 0
            assert ws.wait(timeout=0) == []
            # handles stay usable after being reported
            st = reported[0].wait(timeout=10)
            assert st.pid == reported[0].pid
        finally:
            _close_all(hs)


@pytest.mark.timeout(120)
def test_thousand_in_chunks_with_count(no_fd_leak):
    n = 1000
    with herd(n) as hd, exithand.WaitSet() as ws:
        hs = _open_all(ws, hd.pids)
        try:
            order = list(hs)
            random.shuffle(order)
            for i in range(0, n, 100):
                chunk = order[i:i + 100]
                for h in chunk:
                    h.kill()
                got = ws.wait(timeout=30, count=len(chunk))
                assert len(got) == len(chunk)
                assert set(got) == set(chunk)  # nobody early, nobody twice, nobody missing
                assert len(ws) == n - i - len(chunk)
            assert ws.wait(timeout=0) == []
        finally:
            _close_all(hs)


def test_count_and_timeout(no_fd_leak):
    with herd(3) as hd, exithand.WaitSet() as ws:
        a, b, c = hs = _open_all(ws, hd.pids)
        try:
            assert ws.wait(timeout=0) == []
            t0 = time.monotonic()
            assert ws.wait(timeout=0.2, count=1) == []
            assert time.monotonic() - t0 >= 0.2  # the timeout is honoured, not cut short
            t0 = time.monotonic()
            assert list(ws.as_exited(timeout=0.1)) == []
            assert time.monotonic() - t0 >= 0.1
            a.kill()
            b.kill()
            first = ws.wait(count=1, timeout=10)
            assert len(first) == 1 and first[0] in (a, b)
            second = ws.wait(count=5, timeout=0.2)  # more than remain dead: times out
            assert second == [({a, b} - set(first)).pop()]
            assert ws.handles() == [c] and len(ws) == 1
            for bad in (0, -1, True, 1.5, "2"):
                with pytest.raises(ValueError, match="count"):
                    ws.wait(count=bad)
            for bad in (-1, float("nan"), "1", True):
                with pytest.raises(ValueError, match="timeout"):
                    ws.wait(timeout=bad)
            c.kill()
            assert ws.wait(timeout=10) == [c]
            assert ws.wait() == []  # empty set: returns at once
        finally:
            _close_all(hs)


def test_dead_and_zombie_handles_are_reported_at_once(no_fd_leak):
    with herd(2, reap=False) as hd, exithand.WaitSet() as ws:
        hs = [exithand.open(p) for p in hd.pids]
        try:
            hs[0].kill()
            hs[0].wait(timeout=10)  # a zombie now: its parent does not reap
            ws.add(hs[0])
            ws.add(hs[0])  # no-op
            ws.add(hs[1])
            assert len(ws) == 2 and hs[0] in ws
            assert ws.wait(timeout=0) == [hs[0]]
            assert hs[0] not in ws and len(ws) == 1
        finally:
            _close_all(hs)


def test_remove_while_another_thread_waits_ends_the_wait(no_fd_leak):
    with herd(2) as hd, exithand.WaitSet() as ws:
        a, b = hs = _open_all(ws, hd.pids)
        try:
            w = _Waiter(lambda: ws.wait())
            w.start()
            w.wait_blocked()
            ws.remove(a)
            a.kill()  # no longer watched: must not be reported
            a.wait(timeout=10)
            assert w.is_alive()
            ws.remove(b)  # the set is empty: the waiter returns
            w.join(10)
            assert not w.is_alive()
            assert w.error is None and w.result == []
            with pytest.raises(KeyError):
                ws.remove(a)
            ws.discard(a)
        finally:
            _close_all(hs)


def test_removed_handle_is_not_reported(no_fd_leak):
    with herd(2) as hd, exithand.WaitSet() as ws:
        a, b = hs = _open_all(ws, hd.pids)
        try:
            w = _Waiter(lambda: ws.wait(count=1))
            w.start()
            w.wait_blocked()
            ws.remove(a)
            a.kill()
            a.wait(timeout=10)
            b.kill()
            w.join(10)
            assert w.error is None and w.result == [b]
        finally:
            _close_all(hs)


def test_add_during_iteration(no_fd_leak):
    with herd(4) as hd, exithand.WaitSet() as ws:
        first = ws.open(hd.pids[0])
        more = [exithand.open(p) for p in hd.pids[1:]]
        try:
            first.kill()
            seen = []
            for h in ws.as_exited(timeout=30):
                seen.append(h)
                if h is first:  # add the others from inside the loop, then let them die
                    for m in more:
                        ws.add(m)
                        m.kill()
            assert seen[0] is first and set(seen[1:]) == set(more) and len(seen) == 4
        finally:
            _close_all([first, *more])


def test_add_from_another_thread_while_waiting(no_fd_leak):
    with herd(2) as hd, exithand.WaitSet() as ws:
        a = ws.open(hd.pids[0])
        b = exithand.open(hd.pids[1])
        try:
            w = _Waiter(lambda: ws.wait(count=1))
            w.start()
            w.wait_blocked()
            ws.add(b)
            b.kill()
            w.join(10)
            assert w.error is None and w.result == [b]
            assert ws.handles() == [a]
        finally:
            _close_all([a, b])


def test_closed_handle_in_set_is_a_clear_error(no_fd_leak):
    with herd(2) as hd, exithand.WaitSet() as ws:
        a, b = hs = _open_all(ws, hd.pids)
        try:
            pid = a.pid
            a.close()
            assert a not in ws and len(ws) == 1
            with pytest.raises(ValueError, match=rf"closed while in the WaitSet \(process {pid}\)"):
                ws.wait(timeout=10)
            # reported once; the set goes on working for the others
            b.kill()
            assert ws.wait(timeout=10) == [b]
        finally:
            _close_all(hs)


def test_close_handle_while_another_thread_waits(no_fd_leak):
    with herd(2) as hd, exithand.WaitSet() as ws:
        a, _b = hs = _open_all(ws, hd.pids)
        try:
            w = _Waiter(lambda: ws.wait())
            w.start()
            w.wait_blocked()
            a.close()  # epoll forgets a closed fd silently: the set must wake the waiter
            w.join(10)
            assert not w.is_alive(), "waiter hangs after a member handle was closed"
            assert isinstance(w.error, ValueError) and "closed while in the WaitSet" in str(w.error)
        finally:
            _close_all(hs)


def test_close_waitset_while_another_thread_waits(no_fd_leak):
    with herd(1) as hd:
        ws = exithand.WaitSet()
        h = ws.open(hd.pids[0])
        try:
            w = _Waiter(lambda: ws.wait())
            w.start()
            w.wait_blocked()
            ws.close()
            w.join(10)
            assert not w.is_alive()
            assert isinstance(w.error, ValueError) and "closed" in str(w.error)
            with pytest.raises(ValueError, match="closed WaitSet"):
                ws.add(h)
            assert not h.closed  # the set did not own it
        finally:
            h.close()
            ws.close()


def test_close_handles_true_closes_reported_handles_too(no_fd_leak):
    with herd(2) as hd:
        with exithand.WaitSet(close_handles=True) as ws:
            a, b = _open_all(ws, hd.pids)
            a.kill()
            assert ws.wait(count=1, timeout=10) == [a]
        assert a.closed and b.closed


def test_reused_fd_number_is_not_reported_for_the_new_handle(no_fd_leak):
    """An event batch may name an fd whose handle was replaced while we were yielding."""
    with herd(3) as hd, exithand.WaitSet() as ws:
        a, c = _open_all(ws, hd.pids[:2])
        d = None
        try:
            a.kill()
            c.kill()
            a.wait(timeout=10)
            c.wait(timeout=10)  # both dead before the first epoll_wait: one batch
            seen = []
            for h in ws.as_exited(timeout=0.3):
                seen.append(h)
                if len(seen) == 1:
                    other = c if h is a else a
                    fd = other.fileno()
                    ws.remove(other)
                    other.close()
                    d = exithand.open(hd.pids[2])  # alive, and gets the same fd number
                    assert d.fileno() == fd
                    ws.add(d)
            assert len(seen) == 1, f"a live process was reported: {seen}"
            assert d.is_alive() and d in ws
        finally:
            _close_all([a, c] + ([d] if d else []))


def test_type_errors_and_repr(no_fd_leak):
    with exithand.WaitSet() as ws:
        with pytest.raises(TypeError):
            ws.add(os.getpid())
        assert "0 handle" in repr(ws)
        assert 123 not in ws
    assert "closed" in repr(ws)
    with pytest.raises(ValueError):
        ws.wait()


# ----- wait_any / wait_all -------------------------------------------------------------------


def test_wait_any_and_wait_all_accept_pids_and_handles(no_fd_leak):
    with herd(3) as hd:
        h0, h1, h2 = hs = [exithand.open(p) for p in hd.pids]
        try:
            items = [h0, h1, hd.pids[2]]  # the pid's process is opened by wait_* itself
            with pytest.raises(exithand.TimeoutExpired, match="none of the 3"):
                exithand.wait_any(items, timeout=0.05)
            h1.kill()
            assert exithand.wait_any(items, timeout=10) is h1
            with pytest.raises(exithand.TimeoutExpired, match="2 of 3") as ei:
                exithand.wait_all(items, timeout=0.05)
            assert isinstance(ei.value, TimeoutError)
            h0.kill()
            h0.wait(timeout=10)  # dead before h2 is killed: the result lists deaths in order
            w = _Waiter(lambda: exithand.wait_all(items, timeout=30))
            w.start()
            w.wait_blocked()
            h2.kill()  # the process behind the plain pid dies while wait_all waits
            w.join(10)
            assert w.error is None, w.error
            assert set(w.result[:2]) == {h0, h1} and w.result[2] == hd.pids[2]
            assert not h0.closed  # the caller's handles stay open
        finally:
            _close_all(hs)
    with pytest.raises(ValueError):
        exithand.wait_any([])
    assert exithand.wait_all([]) == []
    with pytest.raises(TypeError):
        exithand.wait_any(["1"])


def test_wait_all_unknown_pid_is_an_error(no_fd_leak):
    with herd(1) as hd:
        pid = hd.pids[0]
        with exithand.open(pid) as h:
            h.kill()
            h.wait(timeout=10)
            wait_reaped(h.fileno())  # once the keeper reaps it, the pid names no process
        with pytest.raises(exithand.NoSuchProcess):
            exithand.wait_all([pid], timeout=1)


def test_unclosed_waitset_is_collected_without_leaking(no_fd_leak):
    import gc
    import warnings

    with herd(1) as hd, exithand.open(hd.pids[0]) as h:
        ws = exithand.WaitSet([h])
        # members hold the set only weakly: dropping it frees its epoll and eventfd
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            del ws
            gc.collect()
        assert any(issubclass(x.category, ResourceWarning) for x in w)
        assert h._close_hooks is None  # the dead set's hook was removed from the handle
