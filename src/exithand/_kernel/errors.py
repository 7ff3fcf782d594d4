"""Exceptions, and the one place where an errno becomes one of them.

Every error the library raises about a process carries ``.pid``.  Kernel errnos are translated in
:func:`translate_oserror` only, in the manner of psutil's ``_psposix``: callers catch ``OSError``
around one syscall and re-raise what this returns.
"""

from __future__ import annotations

import errno
import os

from . import fdlimit as _fdlimit

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional


class Error(Exception):
    """Base class of every exithand error.

    ``pid`` is the process the error is about (``None`` when the error is not about one process).
    ``errno`` is the kernel's errno when the error comes from a failed syscall (set by
    :func:`translate_oserror`, e.g. ``errno.ENOSYS`` for a syscall this kernel lacks), else
    ``None``: test it, never the message text.
    """

    def __init__(self, msg: str, pid: Optional[int] = None, *,
                 errno: Optional[int] = None) -> None:
        super().__init__(msg)
        self.pid = pid
        self.msg = msg
        self.errno = errno

    def __str__(self) -> str:
        return self.msg


class NoSuchProcess(Error, ProcessLookupError):
    """The process does not exist, was reaped, or the number now names another process.

    Also a builtin :class:`ProcessLookupError` (what ``os.kill`` raises for ESRCH), so
    ``except ProcessLookupError`` catches it too; ``errno`` is ``ESRCH``.
    """

    def __init__(self, msg: str, pid: Optional[int] = None) -> None:
        Error.__init__(self, msg, pid)
        self.errno = errno.ESRCH
        self.strerror = msg


class NotProcessLeader(NoSuchProcess):
    """The number is a thread id, not a process (thread-group leader) id.

    ``tgid`` is the process the thread belongs to, when it could be read.
    """

    def __init__(self, msg: str, pid: Optional[int] = None, tgid: Optional[int] = None) -> None:
        NoSuchProcess.__init__(self, msg, pid)
        self.tgid = tgid


class AccessDenied(Error, PermissionError):
    """The kernel refused the operation (EPERM/EACCES), e.g. signalling another user's process.

    Also a builtin :class:`PermissionError`, so ``except PermissionError`` catches it too;
    ``errno`` is ``EPERM``.
    """

    def __init__(self, msg: str, pid: Optional[int] = None) -> None:
        Error.__init__(self, msg, pid)
        self.errno = errno.EPERM
        self.strerror = msg


class TimeoutExpired(Error, TimeoutError):
    """A wait ran out of time.  Also a builtin :class:`TimeoutError`.

    ``timeout`` is the number of seconds that was waited.
    """

    def __init__(self, msg: str, pid: Optional[int] = None,
                 timeout: Optional[float] = None) -> None:
        Error.__init__(self, msg, pid)
        self.timeout = timeout


class FdLimitError(Error):
    """Out of file descriptors (EMFILE/ENFILE): each handle holds one fd.

    The message names the limit that was hit (soft/hard ``RLIMIT_NOFILE`` or ``fs.file-max``)
    and the way out.  A :class:`exithand.WaitSet` raises the soft limit to the hard one before
    giving up, so from a WaitSet this means the hard limit itself was reached.
    """


class BackendUnavailable(Error):
    """No usable kernel mechanism to watch processes (e.g. pidfd_open refused by seccomp).

    Raised by :func:`exithand.open` with a forced ``backend=`` (or ``EXITHAND_BACKEND``) that
    this system lacks, and by :func:`exithand.watch` where the proc connector cannot be used;
    the message says why.  :func:`exithand.backends` lists what is available.
    """


def translate_oserror(exc: OSError, pid: Optional[int], what: str) -> Exception:
    """Map an ``OSError`` from a syscall about ``pid`` to an exithand exception.

    ESRCH -> NoSuchProcess; EPERM/EACCES -> AccessDenied; anything else becomes ``Error`` with
    the errno text and ``.errno``, so no bare ``OSError`` escapes the public API.
    """
    label = f"process {pid}" if pid is not None else "process"
    err = exc.errno
    if err == errno.ESRCH:
        return NoSuchProcess(f"{label}: no such process ({what})", pid)
    if err in (errno.EPERM, errno.EACCES):
        detail = exc.strerror if exc.strerror and exc.strerror != os.strerror(err) else ""
        return AccessDenied(f"{label}: permission denied ({what}{': ' + detail if detail else ''})",
                            pid)
    if err in (errno.EMFILE, errno.ENFILE):
        # _fdlimit.describe names the soft/hard limit that was hit
        return FdLimitError(_fdlimit.describe(exc, f"{label}: {what}"), pid, errno=err)
    return Error(f"{label}: {what} failed: [{errno.errorcode.get(err or 0, err)}] "
                 f"{exc.strerror}", pid, errno=err)
