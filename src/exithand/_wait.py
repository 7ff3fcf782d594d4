"""One-call waits over a :class:`WaitSet`: ``wait_any``, ``wait_all`` and psutil's ``wait_procs``.

Each accepts :class:`ExitHandle` objects, pids (``int``), or any object with an integer ``pid``
attribute (``psutil.Process``, ``subprocess.Popen``), and returns the *same objects* it was given.
Handles it opens itself (for pids and objects) are closed before it returns; handles you pass
stay yours and stay open.  Nothing here ever reaps a process.

A ``subprocess.Popen`` is watched through :meth:`ExitHandle.from_popen` while unreaped (its pid
cannot be reused before the reap); one that ``Popen`` already reaped counts as dead at once, and
is never looked up by its pid, which may name another process by now.  Its ``returncode``
attribute is never set here: for ``Popen`` it means "reaped", so call ``p.wait()`` as usual.

Why not psutil's loop: ``psutil.wait_procs`` visits the processes round-robin, giving each a
slice of ``1/len(alive)`` seconds, so a death is noticed up to a second late (and at 1,000+
processes the slice rounds down to a 0 ms poll: a busy loop).  Here all of them sit in one epoll:
a death is noticed when it happens, and waiting costs no CPU.
"""

from __future__ import annotations

import enum
import signal as _signal
import subprocess
from collections.abc import Iterable
from typing import Any, Callable, Optional, TypeVar

from ._handle import ExitHandle, check_timeout
from ._kernel.errors import NoSuchProcess, TimeoutExpired
from ._waitset import WaitSet

#: What the caller passed (ExitHandle, int, psutil.Process, Popen, ...): given back as is.
T = TypeVar("T")

#: ``-SIGNAL`` as an IntEnum, as psutil reports a signal death in ``returncode``
#: (``<Negsignal.SIGKILL: -9>``, equal to ``-9``).
Negsignal = enum.IntEnum(  # type: ignore[misc]
    "Negsignal", {s.name: -s.value for s in _signal.Signals})


def _pid_of(item: Any) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    pid = getattr(item, "pid", None)
    if isinstance(pid, int) and not isinstance(pid, bool):
        return pid
    raise TypeError(f"expected an ExitHandle, a pid or an object with a .pid, "
                    f"not {type(item).__name__}")


def _still_same(item: Any) -> bool:
    """For objects that can tell (``psutil.Process.is_running`` compares the start time it saw
    with the pid's current one), checked *after* our pidfd is open: True means our pidfd pins
    the very process the object describes."""
    is_running = getattr(item, "is_running", None)
    if not callable(is_running):
        return True
    try:
        return bool(is_running())
    except Exception:  # e.g. psutil.AccessDenied: cannot tell, trust the pid
        return True


def _key(item: Any) -> object:
    # psutil dedups its argument through a set, i.e. by equality (two psutil.Process objects
    # for one process are equal: same pid and create time).  Unhashable items: by identity.
    try:
        hash(item)
    except TypeError:
        return ("id", id(item))
    return ("eq", type(item) is int, item)


class _Group:
    """Items -> handles in one WaitSet; closes the handles it opened."""

    def __init__(self, items: Iterable[Any], *, gone_ok: bool) -> None:
        self.ws = WaitSet()
        self.items: list[Any] = []
        self.item_of: dict[ExitHandle, Any] = {}
        self.owned: list[ExitHandle] = []
        # already gone when opened: a reaped Popen, or (with gone_ok) a pid naming no process
        self.gone: list[Any] = []
        seen: set[object] = set()
        try:
            for item in items:
                k = _key(item)
                if k in seen:
                    continue
                seen.add(k)
                self.items.append(item)
                if isinstance(item, ExitHandle):
                    h = item
                    self.ws.add(h)
                elif isinstance(item, subprocess.Popen):
                    if item.returncode is not None:  # reaped: its pid may name another now
                        self.gone.append(item)
                        continue
                    h = ExitHandle.from_popen(item)  # unreaped child: the pid is still ours
                    self.owned.append(h)
                    self.ws.add(h)
                else:
                    pid = _pid_of(item)
                    try:
                        h = self.ws.open(pid)
                    except NoSuchProcess:
                        if not gone_ok:
                            raise
                        self.gone.append(item)
                        continue
                    self.owned.append(h)
                    if not _still_same(item):  # the number names another process now
                        self.ws.remove(h)
                        self.owned.remove(h)
                        h.close()
                        if not gone_ok:
                            raise NoSuchProcess(f"process {pid} is gone (its pid now names "
                                                "another process)", pid)
                        self.gone.append(item)
                        continue
                self.item_of.setdefault(h, item)
        except BaseException:
            self.close()
            raise

    def alive(self) -> list[Any]:
        left = {id(self.item_of[h]) for h in self.ws.handles()}
        return [x for x in self.items if id(x) in left]

    def close(self) -> None:
        self.ws.close()
        for h in self.owned:
            h.close()

    def __enter__(self) -> _Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alive_pids(items: list[Any]) -> str:
    pids = []
    for x in items[:10]:
        try:
            pids.append(str(x.pid if not isinstance(x, int) else x))
        except ValueError:
            pids.append("?")
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return ", ".join(pids) + more


def wait_any(items: Iterable[T], timeout: Optional[float] = None) -> T:
    """Wait until any one of the processes is dead; return that item (as given).

    ``items``: ExitHandles, pids (``int``) or objects with an int ``.pid``
    (``psutil.Process``, ``subprocess.Popen``); the return type is the items' type.  Equal
    items count once.  ``timeout``: seconds (fractions allowed), ``None`` for no limit.

    A pid that names no process raises :class:`NoSuchProcess` (as :func:`exithand.open`); a
    dead but unreaped one counts as dead.  Raises :class:`TimeoutExpired` (a ``TimeoutError``)
    after ``timeout`` seconds, ``ValueError`` for no items or a bad timeout, ``TypeError`` for an
    item without a pid.  Handles it opens are closed before it returns; nothing is reaped.
    One epoll over pidfds (Linux 5.3+): a death is seen when it happens.
    """
    timeout = check_timeout(timeout)
    with _Group(items, gone_ok=False) as g:
        if not g.items:
            raise ValueError("wait_any() needs at least one process")
        if g.gone:
            first: T = g.gone[0]
            return first
        got = g.ws.wait(timeout, count=1)
        if not got:
            raise TimeoutExpired(f"none of the {len(g.items)} process(es) exited within "
                                 f"{timeout} seconds", None, timeout)
        dead: T = g.item_of[got[0]]
        return dead


def wait_all(items: Iterable[T], timeout: Optional[float] = None) -> list[T]:
    """Wait until every process is dead; return the items (as given) in order of death.

    ``items`` as for :func:`wait_any` (equal items count once).  Raises
    :class:`NoSuchProcess` for a pid that names no process, :class:`TimeoutExpired` (listing
    the pids still alive) after ``timeout`` seconds (use :meth:`WaitSet.wait` or
    :func:`wait_procs` for a partial answer instead), ``ValueError``/``TypeError`` for bad
    arguments.  Nothing is reaped.
    """
    timeout = check_timeout(timeout)
    with _Group(items, gone_ok=False) as g:
        died = g.gone + [g.item_of[h] for h in g.ws.wait(timeout)]
        if len(g.ws):
            alive = g.alive()
            raise TimeoutExpired(f"{len(alive)} of {len(g.items)} process(es) still running "
                                 f"after {timeout} seconds: {_alive_pids(alive)}", None, timeout)
        return died


def _returncode(h: ExitHandle) -> Optional[int]:
    """psutil's convention: the exit code, ``Negsignal`` (``-SIGNAL``) if killed, ``None`` if
    unknown."""
    st = h.status()
    if st is None or not st.known:
        return None
    if st.signal is not None:
        try:
            neg: int = Negsignal(-st.signal)
        except ValueError:  # a signal number Python has no name for
            neg = -st.signal
        return neg
    return st.exit_code


def wait_procs(procs: Iterable[T], timeout: Optional[float] = None,
               callback: Optional[Callable[[T], object]] = None) -> tuple[list[T], list[T]]:
    """A drop-in for ``psutil.wait_procs``: ``gone, alive = wait_procs(procs, timeout, callback)``.

    Same shape and callback behaviour as psutil's: returns ``(gone, alive)`` lists of the objects
    given (typed as what was passed: ``psutil.Process`` in, ``psutil.Process`` out), counts
    equal objects once (psutil makes a set of them), calls ``callback(obj)`` once per object as
    it dies, sets ``obj.returncode`` on gone objects that take attributes (``psutil.Process``
    does: the exit code, or ``-SIGNAL`` as a ``Negsignal`` IntEnum for a signal death, as
    psutil), never raises on timeout, treats a pid that no longer exists as gone
    (``returncode`` None), ``ValueError`` for a negative timeout and ``TypeError`` for a
    callback that is not callable.

    Differences from psutil, all deliberate:

    * deaths are seen when they happen (one epoll), not on a round-robin visit;
    * ``returncode`` is known for non-children too whenever the system can tell
      (:meth:`ExitHandle.status`; psutil always gives ``None`` for them);
    * nothing is reaped: a child of yours stays a zombie until you wait for it
      (``proc.wait()``/``os.waitpid``), where psutil's ``wait`` reaps it;
    * ``gone`` is in order of death (psutil's comes from a set: any order), ``alive`` in the
      order given; ``ExitHandle`` and ``int`` items are accepted too (they cannot carry a
      ``returncode``: use ``h.status()``, or pass handles to keep statuses);
    * ``subprocess.Popen`` items are accepted, but their ``returncode`` is left alone (to Popen
      it means "reaped"): call ``p.wait()`` as usual, which also gives the code.
    """
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be a positive integer, got {timeout}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback {callback!r} is not a callable")
    timeout = check_timeout(timeout)
    with _Group(procs, gone_ok=True) as g:
        gone: list[T] = []

        def report(item: Any, rc: Optional[int]) -> None:
            if not isinstance(item, subprocess.Popen):  # Popen's own returncode means "reaped"
                try:
                    item.returncode = rc
                except (AttributeError, TypeError):
                    pass  # ints, ExitHandles, objects with __slots__
            gone.append(item)
            if callback is not None:
                callback(item)

        for item in g.gone:
            report(item, item.returncode if isinstance(item, subprocess.Popen) else None)
        for h in g.ws.as_exited(timeout):
            report(g.item_of[h], _returncode(h))
        return gone, g.alive()
