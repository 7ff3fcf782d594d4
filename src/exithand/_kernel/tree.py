"""Finding a process's descendants through ``/proc``.

``/proc/<pid>/task/<tid>/children`` (Linux 3.5, ``CONFIG_PROC_CHILDREN``) lists the children of
one *thread*: a process's children are the union over its threads.  The list is a snapshot; it
is exact only while the parent cannot fork, which is why :mod:`exithand._kill` stops a parent
(SIGSTOP) and waits until it *is* stopped before reading its children:

* Since Linux 4.19 ("signal: Don't restart fork when signals come in") only a *fatal* signal
  aborts a ``fork`` in progress (``copy_process()`` checks ``fatal_signal_pending()`` under
  ``siglock``, in the same critical section that links the child into its parent's list).  A
  SIGSTOP sent while the parent is inside ``fork`` does not stop that fork: the child appears,
  then the parent stops.  So "SIGSTOP sent" is not enough; "every thread is in state ``T``"
  is: a stopped thread is not inside ``fork``, and cannot start one until continued.
* A child whose parent dies is reparented (to the nearest subreaper, or init) *during* the
  parent's exit, before the parent's pidfd becomes readable.  After that it can no longer be
  found by ancestry, so children must be read while the parent is alive (and stopped).

There is no event for "a non-child has stopped" (``waitid(WSTOPPED)`` is for children and
tracers), so :func:`wait_stopped` polls the threads' states with a short backoff, bounded.
Without ``CONFIG_PROC_CHILDREN`` we fall back to one scan of every ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
import select
import time
from typing import Optional

from . import procfs
from .errors import Error, NoSuchProcess


def _children_files(pid: int) -> Optional[list[int]]:
    """Children of ``pid`` via its threads' ``children`` files; ``None`` if unsupported."""
    try:
        tids = procfs.tasks(pid)
    except Error:
        return []
    out: list[int] = []
    any_file = False
    for tid in tids:
        try:
            data = procfs.children(pid, tid)
        except NoSuchProcess:
            # the thread exited, or the kernel lacks CONFIG_PROC_CHILDREN (ENOENT)
            continue
        except Error:
            continue
        any_file = True
        out.extend(data)
    if not any_file and procfs.exists(pid) and not _proc_children_supported():
        return None
    return out


_SUPPORTED: Optional[bool] = None


def _proc_children_supported() -> bool:
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = os.path.exists(procfs.path("self", "children", os.getpid()))
    return _SUPPORTED


def _children_by_scan(pid: int) -> list[int]:
    out = []
    for p in procfs.pids():
        st = procfs.try_stat(p)
        if st is not None and st.ppid == pid:
            out.append(st.pid)
    return out


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children right now (empty if ``pid`` is gone)."""
    kids = _children_files(pid)
    if kids is None:
        kids = _children_by_scan(pid)
    # a child of two threads cannot happen, but a pid may show twice if read during a reparent
    return list(dict.fromkeys(kids))


def parent_of(pid: int) -> Optional[int]:
    """``ppid`` of ``pid`` from ``/proc/<pid>/stat`` (``None`` if gone)."""
    st = procfs.try_stat(pid)
    return None if st is None else st.ppid


def _task_states(pid: int) -> Optional[list[str]]:
    try:
        tids = procfs.tasks(pid)
    except Error:
        return None
    out = []
    for tid in tids:
        st = procfs.try_stat(pid, tid)
        if st is not None:  # else the thread exited
            out.append(st.state)
    return out


def wait_stopped(pid: int, timeout: float = 1.0) -> bool:
    """Wait until every thread of ``pid`` is stopped (``T``/``t``) or dead; ``False`` after
    ``timeout`` (e.g. a thread in uninterruptible sleep, which stops only when it wakes).

    Polls ``/proc/<pid>/task/*/stat`` with a backoff from 50 us to 5 ms: a signalled process
    usually stops within microseconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.00005
    while True:
        states = _task_states(pid)
        if states is None or all(s in ("T", "t", "Z", "X", "x") for s in states):
            return True
        if time.monotonic() >= deadline:
            return False
        select.select([], [], [], delay)
        delay = min(delay * 2, 0.005)
