"""Structured records to systemd-journald over its native protocol, written here.

The protocol (``systemd.io/JOURNAL_NATIVE_PROTOCOL``, stable since systemd 38): one
``AF_UNIX``/``SOCK_DGRAM`` datagram per record to ``/run/systemd/journal/socket``, a list of
``FIELD=value\\n`` lines; a value holding a newline (or any value, if one wishes) is sent as
``FIELD\\n`` + its length as a 64-bit little-endian integer + the raw bytes + ``\\n``.  Field names
are upper-case ``A-Z``, ``0-9`` and ``_``, not starting with ``_`` (those are the trusted fields
journald adds itself: ``_PID``, ``_UID``, ``_COMM`` of the *sender*).  A record bigger than the
socket's datagram limit (``EMSGSIZE``) goes in a sealed memfd passed with ``SCM_RIGHTS`` and an
empty datagram (journald accepts only sealed memfds, ``F_SEAL_SHRINK|GROW|WRITE``).

Why not a binding: ``python-systemd`` (``systemd.journal.send``) compiles against libsystemd's
headers, which a ``pip install`` on a machine without ``libsystemd-dev`` cannot do, and the core
stays dependency-free; the datagram format is small, documented and stable, so this module has
no dependency at all (it works wherever journald runs).

Our records: ``MESSAGE_ID`` (one per event kind, below, documented in ``docs/metrics.md``),
``MESSAGE``, ``PRIORITY`` and ``SYSLOG_IDENTIFIER``; fields named as systemd names them where it
has a name (``EXIT_CODE=exited|killed|dumped`` and ``EXIT_STATUS`` as in systemd's own unit
records, ``COREDUMP_SIGNAL``/``COREDUMP_SIGNAL_NAME`` as systemd-coredump writes them), ``PID``,
``COMM``, ``UID``, ``CGROUP`` for the process concerned (not the sender: journald's ``_PID`` and
``_COMM`` say who logged), everything else as ``EXITHAND_<NAME>``.

Sending never blocks for long: the socket has a short send timeout (journald's receive queue can
be full under a log storm), and a record that cannot be sent is counted (:attr:`Journal.dropped`)
rather than waited for.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Mapping
from typing import Any, Optional

SOCKET = "/run/systemd/journal/socket"

#: MESSAGE_ID per event kind (``journalctl MESSAGE_ID=...``); never change a published one.
MESSAGE_IDS = {
    "exit": "f67cdc8f1bd848a0800c6102cf6be62f",
    "gap": "d5c945e5ac0f442eb15b0dd0986514be",
    "lowmem_kill": "30f5ed52ab204226894319f7d0b9d9a5",
    "lowmem_freed": "564ab187ac154ca786a2dffffaf2f27b",
    "lowmem_stuck": "a286e00697f64b22a4933b8719deeeac",
}

#: syslog priorities (``PRIORITY=``)
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO = 3, 4, 5, 6

SEND_TIMEOUT = 0.05  # seconds a record may wait for room in journald's queue
_NAME_OK = re.compile(r"[A-Z0-9][A-Z0-9_]*\Z")
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 1, 2, 4, 8
_F_ADD_SEALS = 1033


class JournalError(Exception):
    """journald cannot be reached (no socket, refused): reported at start, exit 1."""


def field_name(key: str) -> str:
    """``age`` -> ``AGE``; anything outside ``[A-Z0-9_]`` becomes ``_``; never a leading ``_``."""
    name = re.sub(r"[^A-Z0-9_]", "_", key.upper()).lstrip("_") or "X"
    assert _NAME_OK.match(name), name
    return name


def _value(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool):
        return b"1" if v else b"0"
    if isinstance(v, (list, dict)):
        return json.dumps(v).encode()
    return str(v).encode("utf-8", "surrogateescape")


def encode(fields: Mapping[str, Any]) -> bytes:
    """One native-protocol record; ``None`` values are left out; names are checked."""
    out = bytearray()
    for key, v in fields.items():
        if v is None:
            continue
        if not _NAME_OK.match(key):
            raise ValueError(f"invalid journal field name {key!r}")
        data = _value(v)
        name = key.encode()
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


class Journal:
    """A connected datagram socket to journald; :meth:`send` one record at a time."""

    def __init__(self, path: str = SOCKET, identifier: str = "exithand") -> None:
        self.path = path
        self.identifier = identifier
        self.dropped = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            why = "no journald socket" if e.errno in (errno.ENOENT, errno.ECONNREFUSED) \
                else e.strerror
            raise JournalError(f"cannot reach journald at {path}: {why}") from None
        self.sock.settimeout(SEND_TIMEOUT)

    def send(self, fields: Mapping[str, Any]) -> bool:
        """Send one record (``SYSLOG_IDENTIFIER`` added); False (and counted) if dropped."""
        data = encode({"SYSLOG_IDENTIFIER": self.identifier, **fields})
        try:
            self.sock.send(data)
            return True
        except OSError as e:
            if e.errno in (errno.EMSGSIZE, errno.ENOBUFS):
                return self._send_memfd(data)
            self.dropped += 1
            return False

    def _send_memfd(self, data: bytes) -> bool:
        try:
            fd = os.memfd_create("exithand-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (OSError, AttributeError):
            self.dropped += 1
            return False
        try:
            os.write(fd, data)
            fcntl.fcntl(fd, _F_ADD_SEALS, _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE
                        | _F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [fd]))])
            return True
        except OSError:
            self.dropped += 1
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()


class JournalHandler(logging.Handler):
    """A :class:`logging.Handler` writing each record natively (``PRIORITY``, ``CODE_FILE``,
    ``CODE_LINE``, ``CODE_FUNC``, ``LOGGER``); for daemons started by systemd, where
    ``JOURNAL_STREAM`` says stderr already is the journal and structure would be lost."""

    _PRIO: Mapping[int, int] = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                                logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            self.journal.send({
                "MESSAGE": msg, "PRIORITY": self._PRIO.get(record.levelno, 6),
                "CODE_FILE": record.pathname, "CODE_LINE": record.lineno,
                "CODE_FUNC": record.funcName, "LOGGER": record.name,
                "THREAD_NAME": record.threadName})
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.journal.close()
        super().close()


def handler_for_journal_stream(identifier: str) -> Optional[JournalHandler]:
    """A :class:`JournalHandler` when ``JOURNAL_STREAM`` is set and journald answers, else
    ``None`` (the caller keeps its stderr handler)."""
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    try:
        return JournalHandler(Journal(identifier=identifier))
    except JournalError:
        return None
