"""Work on a victim off the main loop: boost it, release its memory, find its cgroup.

* :func:`boost`: nice -20 and every allowed CPU for each thread of a live pinned victim, once
  its SIGKILL is pending (what lmkd does before ``process_mrelease``), so a victim short of CPU
  runs its exit promptly; never before (a victim could fork a boosted survivor, see
  :mod:`._daemon`).  Only while its pidfd says it is alive: a pid cannot be reused before the
  process is reaped, so the only window left is a death *and* reap *and* reuse between the
  check and ``setpriority``, whose worst outcome is a wrongly niced process, never a signal.
* :func:`release`: ``process_mrelease`` through :meth:`exithand.ExitHandle.release_memory`
  (Linux 5.15), retried by the library's one rule (EINVAL "not dying yet": the SIGKILL has not
  taken effect, or the mm is shared with a live process; EAGAIN "busy") for
  ``ExitHandle.RELEASE_RETRY`` seconds; "no such process" means the victim's own exit already
  released it.  Runs on the daemon's reaper thread.
"""

from __future__ import annotations

import os
from typing import Optional

import exithand


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
    """``process_mrelease`` under the library's one retry rule (``release_memory(retry=
    ExitHandle.RELEASE_RETRY)``); (``released``/``already_released``/``failed``, error)."""
    try:
        h.release_memory(retry=exithand.ExitHandle.RELEASE_RETRY)
        return "released", None
    except exithand.NoSuchProcess:  # its exit released the memory first
        return "already_released", None
    except exithand.Error as e:  # still not dying, no such syscall (e.errno), no permission
        return "failed", str(e)
    except ValueError:  # handle closed under us: the daemon is stopping
        return "failed", "stopped"


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
