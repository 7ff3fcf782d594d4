"""The 128-byte ``siginfo_t`` that ``exithand_full`` returns, laid out as on x86_64 and aarch64.

Layout (``<asm-generic/siginfo.h>``, 64-bit)::

    offset  0  int   si_signo   SIGCHLD
    offset  4  int   si_errno   0
    offset  8  int   si_code    CLD_EXITED (1) / CLD_KILLED (2) / CLD_DUMPED (3)
    offset 12  int   (padding: the union is 8-byte aligned)
    offset 16  pid_t si_pid
    offset 20  uid_t si_uid     real uid of the process, as last seen ((uid_t)-1 if never seen)
    offset 24  int   si_status  exit code for CLD_EXITED, else the signal number
    offset 32  long  si_utime   0: not known to us
    offset 40  long  si_stime   0: not known to us
    ...        zero up to 128 bytes (SI_MAX_SIZE)

This is what ``waitid()`` would have told the parent.  It is built only from a *known*
:class:`exithand.ExitStatus`; an unknown status is never encoded.
"""

from __future__ import annotations

import os
import signal
import struct

import exithand

SIZE = 128
#: si_uid when the uid was never seen (the process was reaped before we could read it).
NO_UID = 0xFFFFFFFF
_FMT = "=iii4xiIi"


def pack(status: exithand.ExitStatus, uid: int) -> bytes:
    """Encode a known exit status; ``ValueError`` if it is unknown."""
    if not status.known:
        raise ValueError(f"exit status of {status.pid} is unknown: {status.reason}")
    if status.exit_code is not None:
        code, value = os.CLD_EXITED, status.exit_code
    else:
        assert status.signal is not None
        code = os.CLD_DUMPED if status.core_dumped else os.CLD_KILLED
        value = status.signal
    buf = bytearray(SIZE)
    struct.pack_into(_FMT, buf, 0, signal.SIGCHLD, 0, code, status.pid, uid & 0xFFFFFFFF, value)
    return bytes(buf)
