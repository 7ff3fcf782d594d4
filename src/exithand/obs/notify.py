"""Desktop notifications (``org.freedesktop.Notifications``) on users' session buses.

The freedesktop Desktop Notifications spec: ``Notify(app_name s, replaces_id u, app_icon s,
summary s, body s, actions as, hints a{sv}, expire_timeout i) -> u`` on the well-known name
``org.freedesktop.Notifications``, object ``/org/freedesktop/Notifications``, on each user's
*session* bus.  Sent with ``jeepney`` (pure Python, extra ``exithand[notify]``).

Never on the kill path: :meth:`Notifier.submit` only puts a job in a bounded queue (a full queue
drops the job and says so); one worker thread sends, with a timeout per bus (connect, auth and
the reply each bounded by ``timeout``), so a hung or absent bus delays nothing but other
notifications.  Problems come back as warnings (:meth:`Notifier.pending`), which the daemon
prints as ``warning`` events from its own loop.

Which buses: those given (``--notify-bus ADDRESS``), else every logged-in user's
``/run/user/UID/bus`` (systemd-logind's runtime directories; a socket not owned by that uid is
skipped).  The victim's owner's bus comes first.  A session bus admits only its owner's uid
(dbus-daemon's default policy checks ``SO_PEERCRED``), so a root daemon sends to another user's
bus from the notification thread switched to that user for the connection only (per-thread
credentials, :mod:`.threadcreds`); the daemon's main thread stays root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import threading
from dataclasses import dataclass
from typing import Any, Optional

from . import threadcreds

RUN_USER = "/run/user"
DEFAULT_TIMEOUT = 2.0
QUEUE_SIZE = 16
APP_NAME = "exithand lowmem"
URGENCY_CRITICAL = 2

class NotifyError(Exception):
    """Notifications cannot work at all (no jeepney): reported at start, exit 1."""


@dataclass(frozen=True)
class Bus:
    address: str
    owner: Optional[int]  # uid owning the socket, if known


def check_available() -> None:
    try:
        import jeepney  # noqa: F401
    except ImportError:
        raise NotifyError("--notify needs the jeepney package: "
                          "pip install 'exithand[notify]'") from None


def bus_owner(address: str) -> Optional[int]:
    """The uid owning a ``unix:path=`` bus socket (``None``: abstract, tcp, or unreadable)."""
    for part in address.split(";", 1)[0].split(":", 1)[-1].split(","):
        if part.startswith("path="):
            try:
                return os.stat(part[5:]).st_uid
            except OSError:
                return None
    return None


def session_buses(root: str = RUN_USER) -> list[Bus]:
    """Every ``/run/user/UID/bus`` socket owned by UID (a logged-in user's session bus)."""
    found = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        path = os.path.join(root, name, "bus")
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_uid == int(name):
            found.append(Bus(f"unix:path={path}", st.st_uid))
    return sorted(found, key=lambda b: b.owner or 0)


def owner_first(buses: list[Bus], uid: Optional[int]) -> list[Bus]:
    """The victim's owner's buses first, the rest in their order."""
    return sorted(buses, key=lambda b: b.owner != uid)


def send(bus: Bus, summary: str, body: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """One notification to one bus (as the bus's owner, on this thread only, if we are root
    and it is not us); raises OSError/TimeoutError/RuntimeError with the reason."""
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    dest = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                       interface="org.freedesktop.Notifications")
    msg = new_method_call(dest, "Notify", "susssasa{sv}i",
                          (APP_NAME, 0, "", summary, body, [],
                           {"urgency": ("y", URGENCY_CRITICAL)}, -1))
    switch: Any = contextlib.nullcontext()
    if bus.owner is not None and bus.owner != os.geteuid() and threadcreds.supported():
        switch = threadcreds.as_user(bus.owner, pwd.getpwuid(bus.owner).pw_gid)
    with switch, open_dbus_connection(bus=bus.address, auth_timeout=timeout) as conn:
        reply = conn.send_and_get_reply(msg, timeout=timeout)
    if reply.header.message_type == MessageType.error:
        raise RuntimeError(f"{reply.header.fields.get(4, 'error')}: {reply.body}")


class Notifier:
    """A worker thread sending queued notifications; :meth:`submit` never blocks."""

    def __init__(self, buses: Optional[list[str]] = None, timeout: float = DEFAULT_TIMEOUT,
                 queue_size: int = QUEUE_SIZE, run_user: str = RUN_USER) -> None:
        self.fixed = [Bus(a, bus_owner(a)) for a in buses] if buses else None
        self.timeout = timeout
        self.run_user = run_user
        self.jobs: queue.Queue[Optional[tuple[Optional[int], str, str]]] = queue.Queue(
            queue_size)
        self.sent = self.failed = self.dropped = 0
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Check jeepney (NotifyError) and start the worker; no bus found is a warning."""
        check_available()
        if not self.buses():
            self._warn("no session bus found (none given, no /run/user/UID/bus): kill "
                       "notifications will be tried again at each kill")
        self._thread = threading.Thread(target=self._work, name="exithand-notify", daemon=True)
        self._thread.start()

    def buses(self) -> list[Bus]:
        return list(self.fixed) if self.fixed is not None else session_buses(self.run_user)

    def submit(self, uid: Optional[int], summary: str, body: str) -> bool:
        try:
            self.jobs.put_nowait((uid, summary, body))
            return True
        except queue.Full:
            self.dropped += 1
            self._warn(f"notification queue full ({self.jobs.maxsize}): dropped '{summary}'")
            return False

    def _warn(self, text: str) -> None:
        with self._lock:
            self._warnings.append(text)

    def pending(self) -> list[str]:
        """Warnings since the last call (for the daemon's own loop to print)."""
        with self._lock:
            out, self._warnings = self._warnings, []
        return out

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            uid, summary, body = job
            buses = owner_first(self.buses(), uid)
            if not buses:
                self.failed += 1
                self._warn(f"no session bus to notify: '{summary}'")
            for bus in buses:
                try:
                    send(bus, summary, body, self.timeout)
                    self.sent += 1
                except threadcreds.CredentialsError as e:  # this thread cannot be trusted
                    self._warn(f"notifications stopped: {e}")
                    return
                except Exception as e:  # any bus problem is a warning, never a crash
                    self.failed += 1
                    self._warn(f"notification to {bus.address} failed: "
                               f"{type(e).__name__}: {e}")

    def close(self, wait: float = 0.0) -> None:
        """Stop the worker after the queued jobs (waiting at most ``wait`` seconds)."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.jobs.put(None, timeout=max(wait, 0.01))
        self._thread.join(timeout=wait)
        self._thread = None


def kill_text(kill: dict[str, Any], freed: Optional[dict[str, Any]]) -> tuple[str, str]:
    """Summary and body for one victim: the process, the memory it freed, why it was chosen."""
    comm, pid = kill.get("comm", "?"), kill.get("pid", "?")
    mib = int(kill.get("memory_bytes") or 0) / 1048576
    why = (f"chosen for the highest score {kill.get('score')} (oom_score "
           f"{kill.get('oom_score')}, oom_score_adj {kill.get('oom_score_adj')}) "
           f"because {kill.get('trigger', '?')}")
    if freed is not None:
        summary = f"Low memory: killed {comm} ({pid}), {mib:.0f} MiB freed"
        back = f"Its {mib:.0f} MiB were back after {float(freed.get('seconds') or 0):.2f} s."
    else:
        summary = f"Low memory: killed {comm} ({pid}), memory not back"
        back = f"Its {mib:.0f} MiB had not come back by stuck-after."
    return summary, (f"{comm} (pid {pid}, uid {kill.get('uid')}) was killed by exithand "
                     f"lowmem, {why}. {back}")
