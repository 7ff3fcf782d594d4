"""Where the daemon reads "how much memory is left": the system, or one memory cgroup.

* System: ``MemAvailable``, ``MemTotal``, ``SwapFree``, ``SwapTotal`` of ``/proc/meminfo``.
* A memory cgroup with a limit (``--memory-cgroup``): available = limit - usage + inactive file
  pages (what reclaim can drop first), v1 ``memory.limit_in_bytes`` / ``usage_in_bytes`` /
  ``total_inactive_file`` or v2 ``memory.max`` / ``memory.current`` / ``inactive_file``.  Swap
  is not modelled for a cgroup (swap floors apply to the system only).

Per-CPU free lists (``pcp``): freed pages first land on per-CPU lists (``count:`` lines of the
``pagesets`` in ``/proc/zoneinfo``), which ``MemAvailable`` does not count; measured here, up to
~2.3 GiB for seconds after a kill.  :func:`pcp_bytes` reads their sum so a kill's freed memory
can be credited until it shows in ``MemAvailable`` (see :mod:`._ledger`).  A cgroup's usage is
uncharged when pages are freed, before they reach the per-CPU lists, so the cgroup view does not
lag this way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_UNLIMITED = 1 << 60  # v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX * page size)


@dataclass(frozen=True)
class Memory:
    """One reading, in bytes."""

    available: int
    total: int
    swap_free: int
    swap_total: int
    anon: int = 0  # system AnonPages (0 for a cgroup source: not needed there)


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` as bytes by field name."""
    out = {}
    with open(path, "rb") as f:
        for line in f:
            name, _, rest = line.partition(b":")
            parts = rest.split()
            if parts:
                out[name.decode()] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def pcp_bytes(path: str = "/proc/zoneinfo") -> int:
    """Bytes on the per-CPU free lists of all zones (``count:`` under each ``cpu:``)."""
    pages = 0
    with open(path, "rb") as f:
        for line in f:
            s = line.lstrip()
            if s.startswith(b"count:"):
                pages += int(s.split()[1])
    return pages * PAGE_SIZE


class SystemMemory:
    """The whole machine, from ``/proc/meminfo``."""

    name = "system"

    def read(self) -> Memory:
        m = read_meminfo()
        return Memory(m.get("MemAvailable", m.get("MemFree", 0)), m["MemTotal"],
                      m.get("SwapFree", 0), m.get("SwapTotal", 0), m.get("AnonPages", 0))


class CgroupMemory:
    """A memory cgroup directory (v1 or v2) that has a limit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"cgroup {path}"
        if os.path.exists(os.path.join(path, "memory.limit_in_bytes")):
            self._limit, self._usage, self._inactive = (
                "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        elif os.path.exists(os.path.join(path, "memory.max")):
            self._limit, self._usage, self._inactive = (
                "memory.max", "memory.current", "inactive_file")
        else:
            raise ValueError(f"{path}: not a memory cgroup (no memory.limit_in_bytes or "
                             "memory.max; is the memory controller enabled for it?)")
        if self.limit() is None:
            raise ValueError(f"{path}: this memory cgroup has no limit, so there is no "
                             f"'available' to watch (set {self._limit} or watch the system)")

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def limit(self) -> Optional[int]:
        text = self._read(self._limit).strip()
        if text == "max" or int(text) >= _UNLIMITED:
            return None
        return int(text)

    def read(self) -> Memory:
        limit = self.limit() or 0
        usage = int(self._read(self._usage))
        inactive = 0
        for line in self._read("memory.stat").splitlines():
            k, _, v = line.partition(" ")
            if k == self._inactive:
                inactive = int(v)
                break
        return Memory(max(0, limit - usage + inactive), limit, 0, 0)
