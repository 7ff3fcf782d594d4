"""Observability faces: Prometheus metrics, journald records, desktop kill notifications.

Each module has one job and is fed only by what the other faces already see: the public
:func:`exithand.watch` stream (``exithand watch``) and the low-memory daemon's own events
(:class:`exithand.lowmem._events.Emitter`), never by a second path into the kernel.  Aggregation
belongs to existing engines: we expose counters with bounded labels (:mod:`.metrics`, through
``prometheus_client``, extra ``exithand[metrics]``), structured journal records (:mod:`.journal`,
journald's native protocol, standard library only) and notifications (:mod:`.notify`, through
``jeepney``, extra ``exithand[notify]``).

Nothing is imported here: ``import exithand`` and the plain CLI never load these modules, and a
missing extra is reported only by the command that needs it.
"""
