"""One waiting method, run in its own process: ``python _waiter.py METHOD`` (pids on stdin).

Prints ``ready PID`` (PID: the process doing the waiting, to be measured) once set up, then, as
each victim is noticed, stamps ``time.monotonic_ns()`` (CLOCK_MONOTONIC, as the victims use) and,
when all are noticed, prints ``pid ns`` lines and ``end``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

now = time.monotonic_ns


def ready(pid: int) -> None:
    sys.stdout.write(f"ready {pid}\n")
    sys.stdout.flush()


def raw(pids: list[int]) -> dict[int, int]:
    ep = select.epoll()
    fds = {}
    for p in pids:
        fd = os.pidfd_open(p)
        ep.register(fd, select.EPOLLIN)
        fds[fd] = p
    ready(os.getpid())
    times = {}
    while fds:
        for fd, _ev in ep.poll():
            t = now()
            times[fds.pop(fd)] = t
            ep.unregister(fd)
            os.close(fd)
    return times


def waitset(pids: list[int]) -> dict[int, int]:
    import exithand

    ws = exithand.WaitSet(close_handles=True)
    for p in pids:
        ws.open(p)
    ready(os.getpid())
    times = {}
    for h in ws.as_exited():
        times[h.pid] = now()
    ws.close()
    return times


def aio(pids: list[int], loop: str) -> dict[int, int]:
    import asyncio

    import exithand

    hs = [exithand.open(p) for p in pids]
    times = {}

    async def one(h: exithand.ExitHandle) -> None:
        await h.wait_async()
        times[h.pid] = now()

    async def main() -> None:
        tasks = [asyncio.create_task(one(h)) for h in hs]
        await asyncio.sleep(0)
        ready(os.getpid())
        await asyncio.gather(*tasks)

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    for h in hs:
        h.close()
    return times


def aio_raw(pids: list[int], loop: str) -> dict[int, int]:
    """The floor for a coroutine per process: pidfd + ``add_reader`` + one future each."""
    import asyncio

    fds = [os.pidfd_open(p) for p in pids]
    times = {}

    async def one(pid: int, fd: int) -> None:
        lp = asyncio.get_running_loop()
        fut = lp.create_future()
        lp.add_reader(fd, fut.set_result, None)
        try:
            await fut
        finally:
            lp.remove_reader(fd)
        times[pid] = now()

    async def main() -> None:
        tasks = [asyncio.create_task(one(p, fd)) for p, fd in zip(pids, fds)]
        await asyncio.sleep(0)
        ready(os.getpid())
        await asyncio.gather(*tasks)

    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    for fd in fds:
        os.close(fd)
    return times


def psutil_(pids: list[int]) -> dict[int, int]:
    import psutil

    procs = [psutil.Process(p) for p in pids]
    times = {}

    def cb(proc: psutil.Process) -> None:
        times[proc.pid] = now()

    ready(os.getpid())
    psutil.wait_procs(procs, callback=cb)
    return times


def cli(pids: list[int]) -> dict[int, int]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import wait_in_epoll

    p = subprocess.Popen([sys.executable, "-m", "exithand", "wait", "--json", *map(str, pids)],
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    assert p.stdout is not None
    wait_in_epoll(p.pid)
    ready(p.pid)
    times = {}
    for line in p.stdout:
        t = now()
        times[json.loads(line)["pid"]] = t
    p.wait()
    return times


METHODS = {
    "raw": raw,
    "waitset": waitset,
    "asyncio": lambda pids: aio(pids, "asyncio"),
    "uvloop": lambda pids: aio(pids, "uvloop"),
    "asyncio-raw": lambda pids: aio_raw(pids, "asyncio"),
    "uvloop-raw": lambda pids: aio_raw(pids, "uvloop"),
    "psutil": psutil_,
    "cli": cli,
}


def main() -> None:
    method = sys.argv[1]
    pids = [int(x) for x in sys.stdin.readline().split()]
    times = METHODS[method](pids)
    out = sys.stdout
    for pid, t in times.items():
        out.write(f"{pid} {t}\n")
    out.write("end\n")
    out.flush()


if __name__ == "__main__":
    main()
