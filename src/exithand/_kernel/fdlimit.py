"""Open-file limits: every handle is one file descriptor, so 10,000 handles need 10,000 fds.

Kernel facts (getrlimit(2), open(2)):

* ``RLIMIT_NOFILE`` has a *soft* limit (enforced: a new fd numbered >= soft fails with EMFILE) and
  a *hard* limit (the ceiling an unprivileged process may raise its soft limit to).  Raising the
  hard limit needs CAP_SYS_RESOURCE; ``fs.nr_open`` caps both.  ENFILE is the system-wide
  ``fs.file-max`` instead, which no process can raise for itself.
* The kernel hands out the lowest free fd number, so the highest fd a process holds is a good
  (slightly pessimistic) measure of how close it is to the soft limit.

Policy (as systemd recommends since v240: a default soft limit of 1024 keeps old ``select()``
users safe, and programs that need many fds raise their own soft limit to the hard one): a
:class:`exithand.WaitSet` raises the soft limit to the hard limit when it grows near the soft limit
or when opening a handle for it fails with EMFILE.  Plain :func:`exithand.open` never changes
process-wide limits; it fails with a message that names the limits and the way out.
"""

from __future__ import annotations

import errno
import resource
import threading

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional

_lock = threading.Lock()


def nofile() -> tuple[int, int]:
    """The current ``(soft, hard)`` RLIMIT_NOFILE (``RLIM_INFINITY`` stays as the kernel says)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _fmt(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def raise_soft_to_hard() -> bool:
    """Raise the soft RLIMIT_NOFILE to the hard limit.  True if it went up.

    Thread-safe.  Never lowers anything and never touches the hard limit.
    """
    with _lock:
        soft, hard = nofile()
        if soft == hard or (soft != resource.RLIM_INFINITY and hard != resource.RLIM_INFINITY
                            and soft >= hard):
            return False
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            # hard = unlimited is refused by the kernel (fs.nr_open caps it): take nr_open
            target = _nr_open()
            if target is None or target <= soft:
                return False
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                return False
        return True


def _nr_open() -> Optional[int]:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _headroom(soft: int) -> int:
    return max(1, min(64, soft // 16))


def near_soft_limit(fd: int) -> bool:
    """Is ``fd`` within a small headroom (1/16 of the limit, at most 64) of the soft limit?"""
    soft, hard = nofile()
    if soft == resource.RLIM_INFINITY or soft == hard:
        return False
    return fd + _headroom(soft) >= soft


def check_threshold() -> int:
    """The lowest fd number for which :func:`near_soft_limit` could be true now (a cheap
    pre-check that saves a ``getrlimit`` per handle); a quarter below it, to notice limits
    lowered by someone else in time."""
    soft, hard = nofile()
    if soft == resource.RLIM_INFINITY or soft == hard:
        return 2**62  # nothing to raise (WaitSet.open still retries after raising on EMFILE)
    return max(0, (soft - _headroom(soft)) * 3 // 4)


def describe(exc: OSError, what: str) -> str:
    """A clear message for EMFILE/ENFILE that names the limit that was hit and the way out."""
    if exc.errno == errno.ENFILE:
        return (f"{what}: the system-wide open-file limit was reached (ENFILE, "
                f"sysctl fs.file-max): close some files or raise fs.file-max")
    soft, hard = nofile()
    if soft == hard:
        return (f"{what}: out of file descriptors: RLIMIT_NOFILE is {_fmt(soft)}, which is "
                "also the hard limit (exithand never raises a hard limit: that needs "
                "CAP_SYS_RESOURCE); each handle holds one fd: close handles you no longer need, "
                "or start the program with a higher hard limit (ulimit -Hn, systemd "
                "LimitNOFILE=)")
    return (f"{what}: out of file descriptors: the soft RLIMIT_NOFILE is {_fmt(soft)} "
            f"(hard limit {_fmt(hard)}); each handle holds one fd: raise the soft limit "
            "(ulimit -n, resource.setrlimit) or open handles through a WaitSet "
            "(WaitSet.open), which raises it to the hard limit for you")
