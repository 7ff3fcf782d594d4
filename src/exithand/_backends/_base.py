"""The small interface every backend implements.

A *backend* is one kernel mechanism for learning that a process died (pidfd, proc connector,
polling of ``/proc``).  It turns a pid into a :class:`ProcessRef`: a pinned reference to one
process with a file descriptor that becomes readable when the process is dead.

Shape borrowed from CPython's ``selectors``: one abstract base with the contract in docstrings,
one thin class per mechanism, the default chosen once (see :mod:`exithand._backends`).

Contract for every backend:

* **Dead means dead.**  ``is_dead()`` and readability of ``fileno()`` mean the whole thread
  group has exited (zombie or reaped).  A leader that called ``pthread_exit`` while other threads
  run shows state ``Z`` in ``/proc`` but is *not* dead.
* **A reference names a process, not a number.**  Once opened, a ref never starts reporting on a
  different process that reuses the number.
* Methods raise ``OSError`` with kernel errnos; :class:`exithand.ExitHandle` translates them.
"""

from __future__ import annotations

import abc

from .._identity import ProcessIdentity

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional


class ProcessRef(abc.ABC):
    """One pinned process, as seen by one backend."""

    __slots__ = ()  # lets a subclass with __slots__ (one ref per handle) go without a __dict__

    #: the backend's name (``"pidfd"``, ``"procpoll"``, ...)
    backend: str
    #: True for a ref on one thread (``exithand.open(tid, thread=True)``), not a process
    thread = False
    #: set by subclasses that know the identity at open; others override :attr:`identity`
    _identity: ProcessIdentity

    @property
    def identity(self) -> ProcessIdentity:
        """pid, pidfs inode, start time, boot id of the pinned process."""
        return self._identity

    @property
    def pid(self) -> int:
        return self.identity.pid

    def pidfs_inode(self) -> Optional[int]:
        """The pidfs inode (Linux 6.9+), or None; backends that hold a pidfd answer it with
        one ``fstat`` and nothing else (no ``/proc`` read)."""
        return self.identity.inode

    @property
    @abc.abstractmethod
    def pidfd(self) -> Optional[int]:
        """A kernel pidfd for the process, if this backend holds one (used for waitid/ioctls)."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """An fd that polls readable (POLLIN) exactly when the process is dead."""

    @abc.abstractmethod
    def is_dead(self) -> bool:
        """Non-blocking: has the whole thread group exited?"""

    @abc.abstractmethod
    def is_reaped(self) -> bool:
        """Non-blocking: has the process been reaped (no zombie left)?"""

    @abc.abstractmethod
    def send_signal(self, sig: int) -> None:
        """Signal exactly this process (never a reuser of its number)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the fd; idempotent."""


class Backend(abc.ABC):
    """A factory of :class:`ProcessRef` for one kernel mechanism."""

    name: str

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """Really try the mechanism (memoized); ``(usable, reason-if-not)``."""

    @abc.abstractmethod
    def open(self, pid: int) -> ProcessRef:
        """Pin the process that ``pid`` names now; raises ``OSError`` like the kernel."""

    def adopt_pidfd(self, pidfd: int) -> ProcessRef:
        """Take ownership of an existing pidfd.  Backends without pidfds raise ``OSError``."""
        import errno

        raise OSError(errno.EOPNOTSUPP, f"the {self.name} backend cannot adopt a pidfd")
