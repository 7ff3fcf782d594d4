"""Async waits: asyncio (default loop and uvloop), trio, anyio on both backends.

200 real non-child processes per test; cancellation of one waiter must leave the others and the
handle intact; a closed handle wakes its waiters with ValueError instead of hanging them.
"""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest
import trio
import trio.testing
import uvloop
from _herd import herd

import exithand

N = 200


def _epoll_watch_count(epfd: int) -> int:
    """How many fds an epoll instance watches, from /proc/self/fdinfo (``tfd:`` lines)."""
    with open(f"/proc/self/fdinfo/{epfd}") as f:
        return sum(1 for line in f if line.startswith("tfd:"))


def _run_asyncio(loop_kind: str, coro_fn):
    if loop_kind == "uvloop":
        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(scope="module", autouse=True)
def _uvloop_warm():
    """libuv opens two process-wide fds on first use and keeps them: not a leak of ours."""
    async def noop():
        pass

    uvloop.run(noop())


# ----- asyncio / uvloop ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_asyncio_200_waiters_cancel_one(loop_kind, no_fd_leak):
    with herd(N) as hd:
        hs = [exithand.open(p) for p in hd.pids]
        try:
            async def main():
                loop = asyncio.get_running_loop()
                selector = getattr(loop, "_selector", None)  # absent on uvloop
                before = _epoll_watch_count(selector.fileno()) if selector else 0
                tasks = [asyncio.create_task(h.wait_async()) for h in hs]
                await asyncio.sleep(0)  # let every task reach its await
                if selector:
                    assert _epoll_watch_count(selector.fileno()) == before + N
                victim = random.randrange(N)
                tasks[victim].cancel()
                with pytest.raises(asyncio.CancelledError):
                    await tasks[victim]
                if selector:  # its reader is gone, the others stay
                    assert _epoll_watch_count(selector.fileno()) == before + N - 1
                order = list(hs)
                random.shuffle(order)
                for h in order:
                    h.kill()
                results = await asyncio.gather(*(t for i, t in enumerate(tasks) if i != victim))
                assert [st.pid for st in results] == [h.pid for i, h in enumerate(hs)
                                                      if i != victim]
                assert all(st.signal == 9 or not st.known for st in results)
                # the cancelled one's handle still works, in a new wait
                st = await hs[victim].wait_async()
                assert st.pid == hs[victim].pid and not hs[victim].is_alive()
                if selector:
                    assert _epoll_watch_count(selector.fileno()) == before  # nothing left over

            _run_asyncio(loop_kind, main)
        finally:
            for h in hs:
                h.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_asyncio_many_tasks_on_one_handle(loop_kind, no_fd_leak):
    with herd(1) as hd, exithand.open(hd.pids[0]) as h:
        async def main():
            tasks = [asyncio.create_task(h.wait_async()) for _ in range(5)]
            await asyncio.sleep(0)
            tasks[0].cancel()  # the first registered the reader; the others must not lose it
            await asyncio.sleep(0)
            assert not any(t.done() for t in tasks[1:])
            h.kill()
            sts = await asyncio.gather(*tasks[1:])
            assert {st.pid for st in sts} == {h.pid}
            assert tasks[0].cancelled()

        _run_asyncio(loop_kind, main)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_asyncio_timeout_leaves_handle_usable(loop_kind, no_fd_leak):
    with herd(1) as hd, exithand.open(hd.pids[0]) as h:
        async def main():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(h.wait_async(), 0.05)
            assert h.is_alive()
            h.kill()
            st = await asyncio.wait_for(h.wait_async(), 10)
            assert st.pid == h.pid

        _run_asyncio(loop_kind, main)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_asyncio_close_wakes_waiters(loop_kind, no_fd_leak):
    with herd(1) as hd:
        h = exithand.open(hd.pids[0])

        async def main():
            tasks = [asyncio.create_task(h.wait_async()) for _ in range(3)]
            await asyncio.sleep(0)
            h.close()
            for t in tasks:
                with pytest.raises(ValueError, match="closed"):
                    await asyncio.wait_for(t, 10)

        _run_asyncio(loop_kind, main)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_asyncio_as_exited_async(loop_kind, no_fd_leak):
    with herd(N) as hd, exithand.WaitSet(close_handles=True) as ws:
        hs = [ws.open(p) for p in hd.pids]

        async def main():
            # cancelling one iteration leaves the set usable
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(_first(ws), 0.05)
            order = list(hs)
            random.shuffle(order)
            killed = set()

            async def killer():
                for h in order:
                    killed.add(h)
                    h.kill()
                    await asyncio.sleep(0)

            kt = asyncio.create_task(killer())
            seen = []
            async for h in ws.as_exited_async():
                assert h in killed and not h.is_alive()
                seen.append(h)
            await kt
            assert len(seen) == N and set(seen) == set(hs)

        _run_asyncio(loop_kind, main)


async def _first(ws):
    async for h in ws.as_exited_async():
        return h
    return None


# ----- trio ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_trio_200_waiters_cancel_one(no_fd_leak):
    with herd(N) as hd:
        hs = [exithand.open(p) for p in hd.pids]
        try:
            async def main():
                results = {}
                scopes = {}

                async def waiter(i, task_status=trio.TASK_STATUS_IGNORED):
                    with trio.CancelScope() as cs:
                        scopes[i] = cs
                        task_status.started()
                        results[i] = await hs[i].wait_async()

                victim = random.randrange(N)
                async with trio.open_nursery() as n:
                    for i in range(N):
                        await n.start(waiter, i)
                    await trio.testing.wait_all_tasks_blocked()
                    scopes[victim].cancel()
                    order = list(hs)
                    random.shuffle(order)
                    for h in order:
                        h.kill()
                assert set(results) == set(range(N)) - {victim}
                assert all(results[i].pid == hs[i].pid for i in results)
                st = await hs[victim].wait_async()  # still usable
                assert st.pid == hs[victim].pid

            trio.run(main)
        finally:
            for h in hs:
                h.close()


@pytest.mark.timeout(30)
def test_trio_many_tasks_on_one_handle_and_close(no_fd_leak):
    with herd(2) as hd:
        h = exithand.open(hd.pids[0])
        h2 = exithand.open(hd.pids[1])

        async def main():
            errors = []
            done = []

            async def waiter(handle, task_status=trio.TASK_STATUS_IGNORED):
                task_status.started()
                try:
                    done.append(await handle.wait_async())
                except ValueError as e:
                    errors.append(e)

            async with trio.open_nursery() as n:
                for _ in range(3):
                    await n.start(waiter, h)
                    await n.start(waiter, h2)
                await trio.testing.wait_all_tasks_blocked()
                h.close()  # must notify_closing first, or the waiters sleep forever
                await trio.testing.wait_all_tasks_blocked()
                h2.kill()
            assert len(errors) == 3 and all("closed" in str(e) for e in errors)
            assert len(done) == 3 and {st.pid for st in done} == {h2.pid}

        try:
            trio.run(main)
        finally:
            h.close()
            h2.close()


@pytest.mark.timeout(60)
def test_trio_as_exited_async_and_move_on_after(no_fd_leak):
    with herd(N) as hd, exithand.WaitSet(close_handles=True) as ws:
        hs = [ws.open(p) for p in hd.pids]

        async def main():
            with trio.move_on_after(0.05) as cs:
                async for _h in ws.as_exited_async():
                    raise AssertionError("nobody died yet")
            assert cs.cancelled_caught
            for h in random.sample(hs, len(hs)):
                h.kill()
            seen = [h async for h in ws.as_exited_async()]
            assert len(seen) == N and set(seen) == set(hs)

        trio.run(main)


# ----- anyio (asyncio and trio backends) -------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_anyio_200_waiters_cancel_one(anyio_backend, no_fd_leak):
    with herd(N) as hd:
        hs = [exithand.open(p) for p in hd.pids]
        try:
            results = {}
            scopes = {}

            async def waiter(i, *, task_status=anyio.TASK_STATUS_IGNORED):
                with anyio.CancelScope() as cs:
                    scopes[i] = cs
                    task_status.started()
                    results[i] = await hs[i].wait_async()

            victim = random.randrange(N)
            async with anyio.create_task_group() as tg:
                for i in range(N):
                    await tg.start(waiter, i)
                await anyio.wait_all_tasks_blocked()
                scopes[victim].cancel()
                for h in random.sample(hs, N):
                    h.kill()
            assert set(results) == set(range(N)) - {victim}
            with anyio.fail_after(10):
                st = await hs[victim].wait_async()
            assert st.pid == hs[victim].pid
        finally:
            for h in hs:
                h.close()


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_anyio_as_exited_async(anyio_backend, no_fd_leak):
    with herd(50) as hd, exithand.WaitSet(close_handles=True) as ws:
        hs = [ws.open(p) for p in hd.pids]
        with anyio.move_on_after(0.05) as cs:
            async for _h in ws.as_exited_async():
                raise AssertionError("nobody died yet")
        assert cs.cancelled_caught
        for h in random.sample(hs, len(hs)):
            h.kill()
        seen = []
        with anyio.fail_after(30):
            async for h in ws.as_exited_async():
                seen.append(h)
        assert set(seen) == set(hs) and len(seen) == len(hs)


def test_no_loop_is_a_clear_error():
    with herd(1) as hd, exithand.open(hd.pids[0]) as h:
        coro = h.wait_async()
        with pytest.raises(RuntimeError, match="event loop"):
            coro.send(None)
        coro.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lib", ["asyncio", "uvloop", "trio"])
def test_as_exited_async_closed_member_and_closed_set(lib, no_fd_leak):
    """A member closed (or the set closed) while a task iterates: ValueError, not a hang."""
    with herd(2) as hd:
        ws = exithand.WaitSet()
        a, _b = hs = [ws.open(p) for p in hd.pids]

        async def iterate(out):
            try:
                async for h in ws.as_exited_async():
                    out.append(h)
            except ValueError as e:
                out.append(e)

        async def main_asyncio():
            out1, out2 = [], []
            t = asyncio.create_task(iterate(out1))
            await asyncio.sleep(0)
            a.close()
            await asyncio.wait_for(t, 10)
            assert len(out1) == 1 and "closed while in the WaitSet" in str(out1[0])
            t = asyncio.create_task(iterate(out2))
            await asyncio.sleep(0)
            ws.close()
            await asyncio.wait_for(t, 10)
            assert len(out2) == 1 and isinstance(out2[0], ValueError)

        async def main_trio():
            out1, out2 = [], []
            with trio.fail_after(10):
                async with trio.open_nursery() as n:
                    n.start_soon(iterate, out1)
                    await trio.testing.wait_all_tasks_blocked()
                    a.close()
            assert len(out1) == 1 and "closed while in the WaitSet" in str(out1[0])
            with trio.fail_after(10):
                async with trio.open_nursery() as n:
                    n.start_soon(iterate, out2)
                    await trio.testing.wait_all_tasks_blocked()
                    ws.close()  # trio is told (notify_closing) before the epoll fd closes
            assert len(out2) == 1 and isinstance(out2[0], ValueError)

        try:
            if lib == "trio":
                trio.run(main_trio)
            else:
                _run_asyncio(lib, main_asyncio)
        finally:
            ws.close()
            for h in hs:
                h.close()
