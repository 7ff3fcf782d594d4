"""Finding a process's descendants through ``/proc``.

``/proc/<pid>/task/<tid>/children`` (Linux 3.5, ``CONFIG_PROC_CHILDREN``) lists the children of
one *thread*: a process's children are the union over its threads.  The list is a snapshot; it
is exact only while the parent cannot fork, which is why :mod:`exithand._kill` stops (SIGSTOP)
a parent before reading its children:

* ``copy_process()`` re-checks for pending signals under ``siglock`` just before the new task
  becomes visible and aborts the fork (``-ERESTARTNOINTR``) if one is pending.  So once SIGSTOP
  has been *sent* to a parent, every child it will have until it is continued is already in its
  children list.  The same holds for SIGKILL.
* A child whose parent dies is reparented (to the nearest subreaper, or init) *during* the
  parent's exit, before the parent's pidfd becomes readable.  After that it can no longer be
  found by ancestry, so children must be read while the parent is alive (and stopped).

Without ``CONFIG_PROC_CHILDREN`` we fall back to one scan of every ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
from typing import Optional

from . import _identity


def _children_files(pid: int) -> Optional[list[int]]:
    """Children of ``pid`` via its threads' ``children`` files; ``None`` if unsupported."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []
    except OSError:
        return []
    out: list[int] = []
    any_file = False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                data = f.read()
        except FileNotFoundError:
            # the thread exited, or the kernel lacks CONFIG_PROC_CHILDREN
            continue
        except OSError:
            continue
        any_file = True
        out.extend(int(x) for x in data.split())
    if not any_file and os.path.isdir(f"/proc/{pid}/task") and not _proc_children_supported():
        return None
    return out


_SUPPORTED: Optional[bool] = None


def _proc_children_supported() -> bool:
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
    return _SUPPORTED


def _children_by_scan(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _identity.read_stat(int(name))
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
    st = _identity.read_stat(pid)
    return None if st is None else st.ppid
