"""PSI memory triggers: parse, register, and check that a wake-up was real stall.

Kernel facts (kernel/sched/psi.c, Documentation/accounting/psi.rst):

* Writing ``"some|full STALL_US WINDOW_US"`` (NUL-terminated) to ``/proc/pressure/memory``
  (Linux 5.2, ``CONFIG_PSI``, ``psi=1`` where off by default) or a cgroup v2
  ``memory.pressure`` registers a trigger on that open file; ``poll`` then reports ``POLLPRI``
  when the stall time of the chosen kind grew by ``STALL_US`` within a ``WINDOW_US`` window, at
  most once per window.  ``POLLERR`` means the source went away (its cgroup was removed).
* ``EINVAL`` for a window outside 500 ms..10 s, a stall of 0 or longer than the window, and,
  from Linux 6.5, for a window that is not a multiple of 2 s when the *opener* lacks
  CAP_SYS_RESOURCE (root in a container usually lacks it).  We check all of that before writing,
  so the error can say which rule was broken.
* The trigger's first window may count stall that happened before it was registered, and a
  wake-up can report stall that the last kill already ended.  So a wake-up is only a hint: the
  daemon re-reads the file's cumulative ``total=`` (microseconds) and fires only when the stall
  grew by ``STALL_US`` within the last window *and* after the last kill's memory was freed
  (:meth:`PsiWatch.stalled`).  The same check, driven by a timer, is the polling fallback used
  when a trigger cannot be registered (e.g. a ``memory.pressure`` we may read but not write).
"""

from __future__ import annotations

import collections
import errno
import os
from dataclasses import dataclass
from typing import Optional

from ._units import SettingError, parse_duration

SYSTEM_PSI = "/proc/pressure/memory"
WINDOW_MIN = 0.5
WINDOW_MAX = 10.0
UNPRIVILEGED_WINDOW_STEP = 2.0
_CAP_SYS_RESOURCE = 24


class PsiUnavailable(Exception):
    """The PSI source cannot be used at all (no file, PSI disabled, not readable)."""


@dataclass(frozen=True)
class PsiSpec:
    """One trigger: ``kind`` some/full, ``stall`` and ``window`` in seconds, the ``path``."""

    kind: str
    stall: float
    window: float
    path: str = SYSTEM_PSI

    def kernel_text(self) -> str:
        return f"{self.kind} {round(self.stall * 1e6)} {round(self.window * 1e6)}"

    def __str__(self) -> str:
        return (f"{self.kind} {self.stall * 1000:g}ms/{self.window:g}s"
                + ("" if self.path == SYSTEM_PSI else f" on {self.path}"))


def has_cap_sys_resource() -> bool:
    """Does this process hold CAP_SYS_RESOURCE in its effective set (``CapEff``)?"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError):
        pass
    return False


def parse_psi(text: str, what: str = "psi", *, privileged: Optional[bool] = None) -> PsiSpec:
    """Parse ``"some 150ms 2s [PATH]"`` (bare numbers are microseconds, as the kernel reads them).

    Raises :class:`SettingError` naming the broken rule, including the unprivileged one: a
    window that is not a multiple of 2 s needs CAP_SYS_RESOURCE (Linux 6.5+).  ``privileged``
    defaults to what this process holds now.
    """
    parts = text.split()
    if len(parts) not in (3, 4) or parts[0] not in ("some", "full"):
        raise SettingError(f"{what}: {text!r}: expected 'some|full STALL WINDOW [PATH]', "
                           "e.g. 'some 150ms 2s' or the kernel's 'some 150000 2000000'")
    stall = parse_duration(parts[1], f"{what} stall", default_unit="us")
    window = parse_duration(parts[2], f"{what} window", default_unit="us")
    path = parts[3] if len(parts) == 4 else SYSTEM_PSI
    if not WINDOW_MIN <= window <= WINDOW_MAX:
        raise SettingError(f"{what}: window {window:g} s is outside the kernel's 0.5 s..10 s")
    if not 0 < stall <= window:
        raise SettingError(f"{what}: stall {stall:g} s must be > 0 and at most the window "
                           f"({window:g} s)")
    if privileged is None:
        privileged = has_cap_sys_resource()
    step_us = round(UNPRIVILEGED_WINDOW_STEP * 1e6)
    if not privileged and round(window * 1e6) % step_us:
        raise SettingError(
            f"{what}: window {window:g} s is not a multiple of 2 s: without CAP_SYS_RESOURCE "
            "the kernel (6.5+) accepts only 2, 4, 6, 8 or 10 s windows")
    return PsiSpec(parts[0], stall, window, path)


def read_total(fd: int, kind: str) -> int:
    """The cumulative stall of ``kind`` in microseconds (``total=`` of its line)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096).decode("ascii", "replace")
    for line in data.splitlines():
        if line.startswith(kind + " "):
            for field in line.split():
                if field.startswith("total="):
                    return int(field[6:])
    raise PsiUnavailable(f"no '{kind}' line with total= in the PSI file")


class PsiWatch:
    """One registered trigger (or a polled PSI file) and its recent ``total=`` samples."""

    def __init__(self, spec: PsiSpec, now: float) -> None:
        self.spec = spec
        self.polled_reason: Optional[str] = None
        try:
            self.fd = os.open(spec.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise PsiUnavailable(_unavailable(spec.path, e)) from None
            # readable but not writable for us: poll the totals instead of a trigger
            try:
                self.fd = os.open(spec.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e2:
                raise PsiUnavailable(_unavailable(spec.path, e2)) from None
            self.polled_reason = f"{spec.path} is not writable for us ({e.strerror})"
        try:
            if self.polled_reason is None:
                self._register()
            self.samples: collections.deque[tuple[float, int]] = collections.deque()
            self.sample(now)
        except BaseException:
            os.close(self.fd)
            raise

    def _register(self) -> None:
        try:
            os.write(self.fd, self.spec.kernel_text().encode() + b"\0")
        except OSError as e:
            if e.errno == errno.EINVAL:
                raise SettingError(
                    f"psi: the kernel refused the trigger '{self.spec.kernel_text()}' on "
                    f"{self.spec.path} (EINVAL): windows must be 0.5-10 s, and multiples of "
                    "2 s without CAP_SYS_RESOURCE (Linux 6.5+)") from None
            raise PsiUnavailable(f"{self.spec.path}: cannot register a trigger: "
                                 f"{e.strerror}") from None

    @property
    def polled(self) -> bool:
        return self.polled_reason is not None

    def sample(self, now: float) -> int:
        """Read ``total=`` now and remember it (samples older than two windows are dropped)."""
        total = read_total(self.fd, self.spec.kind)
        self.samples.append((now, total))
        while len(self.samples) > 2 and self.samples[1][0] <= now - 2 * self.spec.window:
            self.samples.popleft()
        return total

    def stalled(self, now: float, since: float) -> Optional[int]:
        """Stall (µs) grown within the last window and after ``since``, if it reaches the
        trigger's threshold; else ``None``.  Call :meth:`sample` first."""
        start = max(now - self.spec.window, since)
        # the first sample at or after ``start``: stall before it is never counted (a slight
        # undercount, never an overcount)
        base = next((total for t, total in self.samples if t >= start), None)
        if base is None:
            return None
        growth = self.samples[-1][1] - base
        return growth if growth >= self.spec.stall * 1e6 else None

    def close(self) -> None:
        os.close(self.fd)


def _unavailable(path: str, e: OSError) -> str:
    if e.errno == errno.ENOENT:
        hint = ("PSI needs Linux 4.20+ with CONFIG_PSI (and psi=1 on the kernel command line "
                "where it is off by default); a cgroup's memory.pressure needs cgroup v2")
    elif e.errno == errno.EOPNOTSUPP:
        hint = "PSI is compiled in but disabled (boot with psi=1)"
    else:
        hint = e.strerror or str(e)
    return f"PSI not available: {path}: {e.strerror} ({hint})"
