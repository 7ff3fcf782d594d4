"""Backend registry and the default choice.

Order of preference, decided once at first use (like ``selectors.DefaultSelector``):

1. ``pidfd`` (Linux 5.3+): a kernel object per process, exact, no polling, no thread, and
   signals that cannot hit a reused number.  Best whenever the kernel and sandbox allow it.
2. ``connector`` (netlink proc connector): no pidfds and no polling; one shared listener thread,
   deaths confirmed through ``/proc`` identity, and exit statuses at death time.  Needs the
   initial user and pid namespace, and root or CAP_NET_ADMIN (from 6.6 some kernels let other
   users subscribe, some refuse their bind: tried, never assumed); its signals go
   through ``kill()`` after an identity check (a tiny race, see ``_procpoll``).
3. ``procpoll``: works wherever ``/proc`` does, at the price of a polling thread (latency up to
   ``POLL_MAX``) and the same ``kill()`` race.  The last resort.

``EXITHAND_BACKEND=<name>`` forces one backend (to test fallbacks, or to work around a broken
sandbox); an unknown or unavailable forced backend is an error, never a silent substitution.
"""

from __future__ import annotations

import os
import threading

from .._kernel.errors import BackendUnavailable
from ._base import Backend, ProcessRef

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Callable, Optional


__all__ = ["Backend", "ProcessRef", "availability", "backend_names", "default_backend",
           "get_backend", "open_thread", "usable_backend"]


# Each backend's module is imported only when that backend is first asked for: the default
# pidfd backend never pays for the connector's netlink machinery (start-up time of the CLI).
def _make_pidfd() -> Backend:
    from ._pidfd import PidfdBackend

    return PidfdBackend()


def _make_connector() -> Backend:
    from ._connector import ConnectorBackend

    return ConnectorBackend()


def _make_procpoll() -> Backend:
    # the procpoll backend uses the proc connector for statuses (not deaths) where it can;
    # wired here, above both, since the connector module builds on the procpoll one
    from ._connector import start_exit_listener
    from ._procpoll import ProcpollBackend

    return ProcpollBackend(on_open=start_exit_listener)


def _make_thread() -> Callable[[int], ProcessRef]:
    # thread handles (``_thread``) are their own small mechanism, imported when first asked
    # for (the leader's case brings the procpoll monitor with it)
    from ._thread import open_thread as _open

    return _open


def open_thread(tid: int) -> ProcessRef:
    """A ref on one thread (``pidfd_open(tid, PIDFD_THREAD)``, Linux 6.9): see ``_thread``."""
    return _make_thread()(tid)


# name -> factory, in order of preference
_FACTORIES: dict[str, Callable[[], Backend]] = {
    "pidfd": _make_pidfd,
    "connector": _make_connector,
    "procpoll": _make_procpoll,
}
_instances: dict[str, Backend] = {}
_default: Optional[Backend] = None
_lock = threading.Lock()


def backend_names() -> list[str]:
    """All backend names, best first."""
    return list(_FACTORIES)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per process); raises if unknown."""
    with _lock:
        if name not in _FACTORIES:
            raise BackendUnavailable(
                f"unknown backend {name!r}; choose one of: {', '.join(_FACTORIES)}")
        if name not in _instances:
            _instances[name] = _FACTORIES[name]()
        return _instances[name]


def availability() -> list[tuple[str, bool, str]]:
    """``(name, usable, reason-if-not)`` for every backend, best first (probes each one)."""
    out = []
    for name in _FACTORIES:
        ok, why = get_backend(name).available()
        out.append((name, ok, why))
    return out


def default_backend() -> Backend:
    """The backend ``exithand.open`` uses: ``$EXITHAND_BACKEND`` or the best available."""
    return usable_backend(None)


def usable_backend(name: Optional[str]) -> Backend:
    """The one backend-usability decision: the backend ``name`` if it is usable here, else
    :class:`BackendUnavailable` saying why; ``None`` (or ``""``) means the default, decided once
    per process: ``$EXITHAND_BACKEND`` when set (then it must be usable: never a silent
    substitution), else the best usable one in preference order."""
    global _default
    if name:
        return _usable(name, f"backend {name!r}")
    if _default is not None:
        return _default
    forced = os.environ.get("EXITHAND_BACKEND")
    if forced:
        _default = _usable(forced, f"EXITHAND_BACKEND={forced}")
        return _default
    reasons = []
    for n in _FACTORIES:
        b = get_backend(n)
        ok, why = b.available()
        if ok:
            _default = b
            return b
        reasons.append(f"{n}: {why}")
    raise BackendUnavailable("no usable backend: " + "; ".join(reasons))


def _usable(name: str, label: str) -> Backend:
    b = get_backend(name)
    ok, why = b.available()
    if not ok:
        raise BackendUnavailable(f"{label}: backend unavailable: {why}")
    return b
