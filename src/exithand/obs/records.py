"""Events as journal records: field names and MESSAGE_IDs, one place for every sink.

``exit`` records carry systemd's own names: ``EXIT_CODE`` is ``exited``, ``killed`` or
``dumped`` (``sigchld_code_to_string``), ``EXIT_STATUS`` the exit code or the signal number (as in
systemd's unit records), and a dumped process also ``COREDUMP_SIGNAL`` and
``COREDUMP_SIGNAL_NAME`` (as systemd-coredump writes them).  The process concerned is ``PID``,
``PPID``, ``COMM``, ``UID`` (and ``CGROUP`` where the event knows it: lowmem victims); the
sender is journald's own ``_PID``/``_COMM``.
"""

from __future__ import annotations

from typing import Any, Optional

import exithand

from .journal import LOG_INFO, LOG_NOTICE, LOG_WARNING, MESSAGE_IDS, field_name

#: lowmem event -> MESSAGE_ID kind; the daemon's other events get no MESSAGE_ID
LOWMEM_KINDS = {"kill": "lowmem_kill", "freed": "lowmem_freed", "stuck": "lowmem_stuck"}
LOWMEM_WARNINGS = frozenset({"warning", "no_candidate", "kill_failed", "hook_failed", "stuck"})
_SYSTEMD_NAMES = {"pid": "PID", "ppid": "PPID", "comm": "COMM", "uid": "UID", "cgroup": "CGROUP"}


def how(ev: exithand.ProcessExit) -> str:
    """``exited``, ``killed`` or ``dumped`` (systemd's EXIT_CODE words)."""
    if ev.signal is None:
        return "exited"
    return "dumped" if ev.core_dumped else "killed"


def exit_record(ev: exithand.ProcessExit) -> dict[str, Any]:
    d = ev.as_dict()
    kind = how(ev)
    status = ev.exit_code if ev.signal is None else ev.signal
    rec: dict[str, Any] = {
        "MESSAGE_ID": MESSAGE_IDS["exit"],
        "MESSAGE": f"{ev.pid} ({ev.comm or '?'}) " + (
            f"exited with status {ev.exit_code}" if ev.signal is None else
            f"killed by signal {ev.signal} ({d['signal_name']})"
            + (", core dumped" if ev.core_dumped else "")),
        "PRIORITY": LOG_INFO if not ev.failed else LOG_NOTICE,
        "EXIT_CODE": kind, "EXIT_STATUS": status,
        "PID": ev.pid, "PPID": ev.ppid, "COMM": ev.comm, "UID": ev.uid,
        "EXITHAND_AGE": d["age"], "EXITHAND_TIME": d["time"],
        "EXITHAND_SIGNAL_NAME": d["signal_name"],
    }
    if kind == "dumped":
        rec["COREDUMP_SIGNAL"] = ev.signal
        rec["COREDUMP_SIGNAL_NAME"] = d["signal_name"]
    return rec


def gap_record(ev: exithand.ExitGap) -> dict[str, Any]:
    n = "an unknown number of" if ev.lost is None else str(ev.lost)
    return {"MESSAGE_ID": MESSAGE_IDS["gap"], "PRIORITY": LOG_WARNING,
            "MESSAGE": f"{n} process events lost (kernel buffer overflow)",
            "EXITHAND_LOST": ev.lost}


def lowmem_record(event: str, text: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A low-memory daemon event (its ``emit`` fields) as a record."""
    kind: Optional[str] = LOWMEM_KINDS.get(event)
    rec: dict[str, Any] = {
        "MESSAGE_ID": MESSAGE_IDS[kind] if kind else None,
        "MESSAGE": text,
        "PRIORITY": LOG_WARNING if event in LOWMEM_WARNINGS
        else LOG_NOTICE if event == "kill" else LOG_INFO,
        "EXITHAND_EVENT": event,
    }
    for k, v in fields.items():
        if k in ("event", "time"):
            continue
        rec[_SYSTEMD_NAMES.get(k) or "EXITHAND_" + field_name(k)] = v
    return rec
