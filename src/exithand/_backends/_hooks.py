"""Where backends plug exit statuses and open notifications in, without importing upward.

The proc connector (a backend) knows statuses at death time; the status resolution
(:mod:`exithand._status_sources`) and the handle (:mod:`exithand._handle`) sit above the backends
and
must not be imported by them.  So the two tables live down here: the connector registers its
provider and open hook into them when its listener starts, and the layers above read them.
Each list is replaced, never mutated, so a reader iterating a snapshot needs no lock.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Callable, Optional

    from .._status import ExitStatus
    from ._base import ProcessRef

    #: A status provider (e.g. the proc connector), asked after child/popen and before /proc:
    #: the ref -> a status, None, or an unknown status whose reason is kept (later sources
    #: still asked).
    Provider = Callable[[ProcessRef], Optional[ExitStatus]]
    #: Told about every ref an ExitHandle is made from (the connector keeps those processes'
    #: events).
    OpenHook = Callable[[ProcessRef], None]

providers: list[Provider] = []
open_hooks: list[OpenHook] = []


def register_provider(fn: Provider) -> None:
    """Add a status provider (idempotent)."""
    global providers
    if fn not in providers:
        providers = [*providers, fn]


def unregister_provider(fn: Provider) -> None:
    """Remove a status provider (no error if absent)."""
    global providers
    providers = [p for p in providers if p != fn]


def register_open_hook(fn: OpenHook) -> None:
    """Call ``fn(ref)`` for every handle opened from now on (idempotent)."""
    global open_hooks
    if fn not in open_hooks:
        open_hooks = [*open_hooks, fn]


def unregister_open_hook(fn: OpenHook) -> None:
    """Remove an open hook (no error if absent)."""
    global open_hooks
    open_hooks = [h for h in open_hooks if h != fn]


def notify_open(ref: ProcessRef) -> None:
    """Called by ExitHandle once per new ref."""
    for fn in open_hooks:
        fn(ref)
