"""``exithand wait --thread`` targets: ``TID``, ``PID/TID`` or ``/proc/PID/task/TID``.

A thread id alone names one thread of whichever process has it; ``PID/TID`` (and the
``/proc`` path) also says which process it must belong to, checked through the pinned thread
(``exithand.open(tid, thread=True, tgid=pid)``): a thread of another process is an error
(exit 1), as is a thread id no live thread has.  A malformed target is a usage error (exit 2).
"""

from __future__ import annotations

from ._common import Target, UsageError, is_ascii_decimal

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Optional


def parse_thread_target(text: str) -> tuple[int, Optional[int]]:
    """``(tid, tgid or None)``; raises :class:`UsageError` for a malformed target."""
    bare = text.strip()
    if bare.startswith("/proc/"):
        parts = bare[len("/proc/"):].rstrip("/").split("/")
        if len(parts) != 3 or parts[1] != "task":
            raise UsageError(f"invalid thread target {text!r}: expected TID, PID/TID or "
                             "/proc/PID/task/TID")
        pid_s, tid_s = parts[0], parts[2]
    elif "/" in bare:
        pid_s, _sep, tid_s = bare.partition("/")
    else:
        pid_s, tid_s = "", bare
    for what, s in (("thread id", tid_s), ("process id", pid_s)):
        if s == "" and what == "process id":
            continue
        if not is_ascii_decimal(s) or int(s) < 1:
            raise UsageError(f"invalid thread target {text!r}: {what} {s!r} is not a positive "
                             "decimal number")
    return int(tid_s), (int(pid_s) if pid_s else None)


def parse_thread_targets(texts: list[str]) -> tuple[list[Target], list[Optional[int]]]:
    """The targets (``pid`` = the thread id) and, in the same order, the process each must
    belong to (None: any)."""
    targets: list[Target] = []
    owners: list[Optional[int]] = []
    for t in texts:
        tid, tgid = parse_thread_target(t)
        targets.append(Target(t, tid, None))
        owners.append(tgid)
    return targets, owners
