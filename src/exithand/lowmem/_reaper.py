"""Work on a victim off the main loop: boost it, release its memory, find its cgroup.

* :func:`boost`: nice -20 and every allowed CPU for each thread of a live pinned victim, once
  its SIGKILL is pending (what lmkd does before ``process_mrelease``), so a victim short of CPU
  runs its exit promptly; never before (a victim could fork a boosted survivor, see
  :mod:`._daemon`).  Only while its pidfd says it is alive: a pid cannot be reused before the
  process is reaped, so the only window left is a death *and* reap *and* reuse between the
  check and ``setpriority``, whose worst outcome is a wrongly niced process, never a signal.
* :func:`release`: ``process_mrelease`` through :meth:`exithand.ExitHandle.release_memory`
  (Linux 5.15), retried while the kernel says "not dying yet" (EINVAL: the SIGKILL has not taken
  effect, or the mm is shared with a live process) or "busy" (EAGAIN); "no such process" means
  the victim's own exit already released it.  Runs on the daemon's reaper thread.
"""

from __future__ import annotations

import os
import select
from typing import Optional

import exithand

_MRELEASE_TRIES = 20


def boost(h: exithand.ExitHandle) -> Optional[str]:
    """nice -20 and all CPUs for every thread of a live pinned process; the error, if any."""
    if not h.is_alive():
        return "not alive"
    err = None
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{h.pid}/task")]
    except OSError:
        tids = [h.pid]
    cpus = set(range(os.cpu_count() or 1))
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, -20)
            os.sched_setaffinity(tid, cpus)
        except OSError as e:
            err = err or e.strerror
    return err


def release(h: exithand.ExitHandle) -> tuple[str, Optional[str]]:
    """``process_mrelease`` with retries; (``released``/``already_released``/``failed``, error)."""
    last = None
    for _ in range(_MRELEASE_TRIES):
        try:
            h.release_memory()
            return "released", None
        except exithand.NoSuchProcess:
            return "already_released", None
        except exithand.AccessDenied as e:
            return "failed", str(e)
        except exithand.Error as e:  # EINVAL (not dying yet) or EAGAIN (lock contention)
            last = str(e)
            if "ENOSYS" in last:
                break
            p = select.poll()
            p.register(h.fileno(), select.POLLIN)
            if p.poll(5):
                return "already_released", None
        except ValueError:  # handle closed under us: the daemon is stopping
            return "failed", "stopped"
    return "failed", last


def v2_cgroup(pid: int) -> Optional[str]:
    """The process's cgroup v2 path as ``/proc/<pid>/cgroup`` prints it (``None``: root/none)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    path = line[3:].strip()
                    return None if path == "/" else path
    except OSError:
        pass
    return None
