"""What the peer faces (``pwait``, ``waitpid``, ``pidwait``) share: err(3)-style messages,
leaving with a code, and the wait itself.

Each face prints exactly what its peer prints, so these helpers take the program name and the
text and add nothing but err(3)'s ``PROG: `` prefix.  What every face adds beyond its peer is
here too, in :func:`pin` and :func:`wait`: each process is pinned with a pidfd the moment it
is chosen (a number reused afterwards is never waited for), deaths are seen the moment they
happen (one epoll, no polling) and a zombie counts as dead.
"""

from __future__ import annotations

import errno
import os
import sys

import exithand

from .. import _common

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Callable, Optional


class FaceExit(Exception):
    """Leave the face with ``code`` (after the message, if any, was printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def warnx(prog: str, msg: str) -> None:
    """``PROG: MSG`` on stderr, as err(3)'s warnx; dropped if stderr is unusable."""
    warnx_raw(f"{prog}: {msg}")


def warnx_raw(line: str) -> None:
    """One line on stderr as is (usage lines); dropped if stderr is unusable."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(line + "\n")
        err.flush()
    except (OSError, ValueError):
        pass


def errx(prog: str, code: int, msg: str) -> FaceExit:
    """err(3)'s errx: the message, then (raise the result) leave with ``code``."""
    warnx(prog, msg)
    return FaceExit(code)


def strerror(code: int) -> str:
    """The C library's words for an errno (``No such process``), as err(3) appends them."""
    return os.strerror(code)


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a face's body; turn the ways out into exit codes without a traceback."""
    try:
        return body()
    except FaceExit as e:
        return e.code
    except _common.OutputError as e:
        warnx(prog, str(e))
        return 1
    except KeyboardInterrupt:
        return _common.EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (| head): no message
        _common.abandon_stdout()
        return 1


def pin(ws: exithand.WaitSet, pid: int, *, inode: Optional[int] = None,
        start_time: Optional[int] = None) -> tuple[Optional[exithand.ExitHandle], int]:
    """Open a handle on ``pid`` into ``ws`` (checked against ``inode``/``start_time`` when
    given; the set raises the soft open-file limit when many targets need it).

    Returns ``(handle, 0)``, or ``(None, errno)`` with the errno the peer's own
    ``pidfd_open``/``kevent`` would have seen: ESRCH when the process is gone (or the number
    names another one now), ENOENT for a thread id (Linux 6.15+), EINVAL for a pid that
    cannot be one (0, above pid_max: the kernel's ESRCH for the latter).
    """
    try:
        return ws.open(pid, inode=inode, start_time=start_time), 0
    except exithand.NotProcessLeader:
        return None, errno.ENOENT
    except exithand.NoSuchProcess:
        return None, errno.ESRCH
    except exithand.AccessDenied:
        return None, errno.EPERM
    except ValueError:
        return None, errno.EINVAL if pid <= 0 else errno.ESRCH


def wait(ws: exithand.WaitSet, timeout: Optional[float]) -> Iterator[exithand.ExitHandle]:
    """Yield each handle of ``ws`` the moment its process is dead, until all are or
    ``timeout`` (None: never) runs out; the caller stops early by not iterating further.
    Prints the ``EXITHAND_DEBUG=1`` sync line first (everything is pinned by then)."""
    _common.debug(f"waiting for {len(ws)} process(es)")
    return ws.as_exited(timeout)


def exit_words(st: Optional[exithand.ExitStatus], pid: int) -> str:
    """FreeBSD pwait -v's line: ``N: exited with status C.`` / ``N: killed by signal S.`` /
    ``N: terminated.`` (status not known: pwait's words for "neither")."""
    if st is not None and st.exit_code is not None:
        return f"{pid}: exited with status {st.exit_code}."
    if st is not None and st.signal is not None:
        return f"{pid}: killed by signal {st.signal}."
    return f"{pid}: terminated."
