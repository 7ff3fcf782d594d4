"""``exithand lowmem --notify`` (issue 18): a real ``dbus-daemon --session`` started by the test
and a receiver owning ``org.freedesktop.Notifications`` on it (a small jeepney server in a
child process) get one notification per victim, naming it, the memory it freed and why it was
chosen; absent, hung and other users' buses never delay or change a kill decision."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from obshelp import wait_for
from test_lowmem import FAST, kinds, scenario

from conftest import NOBODY

pytest.importorskip("jeepney")

RECEIVER = """\
import json, sys, time
from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
conn = open_dbus_connection(bus=sys.argv[1])
reply = conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications", 4))
assert reply.body == (1,), reply.body  # primary owner
print(json.dumps({"ready": True}), flush=True)
n = 0
while True:
    msg = conn.receive()
    if msg.header.message_type != MessageType.method_call:
        continue
    f = msg.header.fields
    if f.get(HeaderFields.member) == "Notify":
        n += 1
        print(json.dumps({"t": time.monotonic(), "signature": f.get(HeaderFields.signature),
                          "path": f.get(HeaderFields.path), "body": msg.body}), flush=True)
        conn.send(new_method_return(msg, "u", (n,)))
    else:
        conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
"""


class Bus:
    """A session dbus-daemon and a receiver, both as ``uid`` (None: us)."""

    def __init__(self, d: Path, uid: Optional[int] = None) -> None:
        self.path = d / "bus"
        self.address = f"unix:path={self.path}"
        pre: tuple[str, ...] = () if uid is None else (
            "setpriv", f"--reuid={uid}", f"--regid={pwd.getpwuid(uid).pw_gid}", "--clear-groups")
        self.daemon = subprocess.Popen(
            [*pre, "dbus-daemon", "--session", "--nofork", "--nopidfile",
             f"--address={self.address}", "--print-address=1"], stdout=subprocess.PIPE,
            text=True)
        assert self.daemon.stdout is not None
        assert self.daemon.stdout.readline().startswith("unix:path=")
        self.receiver = subprocess.Popen([*pre, sys.executable, "-c", RECEIVER, self.address],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, cwd="/")
        assert self.receiver.stdout is not None
        line = self.receiver.stdout.readline()
        assert line and json.loads(line) == {"ready": True}, self.receiver.stderr.read()  # type: ignore[union-attr]

    def notifications(self) -> list[dict[str, Any]]:
        """Everything received so far (stops the receiver)."""
        self.receiver.terminate()
        out, _err = self.receiver.communicate(timeout=10)
        return [json.loads(x) for x in out.splitlines() if x]

    def close(self) -> None:
        for p in (self.receiver, self.daemon):
            if p.poll() is None:
                p.terminate()
                p.communicate(timeout=10)


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[Bus]:
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon not installed (Debian package dbus)")
    b = Bus(tmp_path)
    yield b
    b.close()


VICTIMS = [{"name": "big", "mib": 48}, {"name": "other", "mib": 8}]


def _check_kills(res: dict[str, Any]) -> dict[str, Any]:
    """The decision is the one the same scenario makes without notifications: 'big' only."""
    (kill,) = kinds(res, "kill")
    assert kill["comm"] == "big", res["events"]
    (freed,) = kinds(res, "freed")
    assert freed["pid"] == kill["pid"]
    assert res["victims"]["other"]["state"] not in ("Z", "X", "gone")
    return kill


@pytest.mark.timeout(120)
def test_kill_notification_names_victim_memory_and_reason(session_bus: Bus) -> None:
    res = scenario(VICTIMS, [*FAST, "--duration", "3", "--notify-bus", session_bus.address],
                   plus_mib=24)
    kill = _check_kills(res)
    (n,) = wait_for(lambda: session_bus.notifications() or None, 10, "the notification")
    assert n["signature"] == "susssasa{sv}i" and n["path"] == "/org/freedesktop/Notifications"
    app, replaces, _icon, summary, body, actions, hints, expire = n["body"]
    assert (app, replaces, actions, expire) == ("exithand lowmem", 0, [], -1)
    mib = round(kill["memory_bytes"] / 1048576)
    assert summary == f"Low memory: killed big ({kill['pid']}), {mib} MiB freed"
    assert f"score {kill['score']}" in body and f"oom_score {kill['oom_score']}" in body
    assert kill["trigger"] in body and "were back after" in body
    assert hints == {"urgency": ["y", 2]}
    assert not [e for e in kinds(res, "warning") if "notif" in e["message"]], res["events"]


@pytest.mark.timeout(120)
def test_absent_and_hung_buses_are_warnings_and_kills_go_on(tmp_path: Path) -> None:
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(tmp_path / "hung"))
    hung.listen(8)  # accepts connections in the backlog, never answers the auth
    try:
        res = scenario(VICTIMS, [*FAST, "--duration", "3",
                                 "--notify-bus", f"unix:path={tmp_path / 'absent'}",
                                 "--notify-bus", f"unix:path={tmp_path / 'hung'}"],
                       plus_mib=24)
    finally:
        hung.close()
    kill = _check_kills(res)
    warnings = [e["message"] for e in kinds(res, "warning")]
    assert any("absent" in w and "FileNotFoundError" in w for w in warnings), warnings
    assert any("hung" in w and "TimeoutError" in w for w in warnings), warnings
    # the kill came first: the notification is sent after the freed event, on its own thread
    (freed,) = kinds(res, "freed")
    assert freed["time"] - kill["time"] < 2.0  # not held up by the 2 s bus timeout
    (stop,) = kinds(res, "stop")
    assert stop["kills"] == 1


@pytest.mark.timeout(120)
def test_other_users_bus_is_reached_as_that_user_owner_first(session_bus: Bus,
                                                             tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a bus of another user")
    d = Path(tempfile.mkdtemp(prefix="exithand-obs-bus-"))  # /tmp: nobody can reach it
    os.chmod(d, 0o755)
    os.chown(d, NOBODY, pwd.getpwuid(NOBODY).pw_gid)
    theirs = Bus(d, NOBODY)
    try:
        assert os.stat(theirs.path).st_uid == NOBODY
        # dbus-daemon refuses root on nobody's session bus (checked by hand: connection
        # reset), so this passes only through the per-thread switch to nobody.
        # theirs is given first; the victim is root's, so root's bus must be told first
        res = scenario(VICTIMS, [*FAST, "--duration", "4", "--notify-bus", theirs.address,
                                 "--notify-bus", session_bus.address], plus_mib=24)
        kill = _check_kills(res)
        (ours,) = wait_for(lambda: session_bus.notifications() or None, 10, "ours")
        (their,) = wait_for(lambda: theirs.notifications() or None, 10, "theirs")
    finally:
        theirs.close()
        shutil.rmtree(d, ignore_errors=True)
    assert ours["body"][3] == their["body"][3]
    assert f"({kill['pid']})" in their["body"][3]
    assert ours["t"] < their["t"]  # the victim's owner first
    assert not [e for e in kinds(res, "warning") if "notif" in e["message"]], res["events"]


def test_owner_first_order() -> None:
    from exithand.obs.notify import Bus as B
    from exithand.obs.notify import owner_first
    buses = [B("a", 1000), B("b", 0), B("c", None), B("d", 1000)]
    assert [b.address for b in owner_first(buses, 1000)] == ["a", "d", "b", "c"]
    assert [b.address for b in owner_first(buses, 0)] == ["b", "a", "c", "d"]


def test_session_buses_found_under_run_user(tmp_path: Path) -> None:
    """/run/user/UID/bus sockets owned by UID count; one owned by someone else does not."""
    from exithand.obs.notify import session_buses
    for uid in (0, NOBODY):
        (tmp_path / str(uid)).mkdir()
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / str(uid) / "bus"))
        s.close()
    (tmp_path / "1234").mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "1234" / "bus"))  # owned by us, not by 1234
    s.close()
    if os.geteuid() == 0:
        os.chown(tmp_path / str(NOBODY) / "bus", NOBODY, -1)
        want = [(f"unix:path={tmp_path}/0/bus", 0), (f"unix:path={tmp_path}/{NOBODY}/bus",
                                                     NOBODY)]
    else:
        want = []
    assert [(b.address, b.owner) for b in session_buses(str(tmp_path))] == want


@pytest.mark.timeout(30)
def test_submit_never_blocks_and_a_full_queue_drops_with_a_warning(tmp_path: Path) -> None:
    """A bus that never answers holds the worker; submissions still return at once."""
    import time

    from exithand.obs.notify import Notifier
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(tmp_path / "hung"))
    hung.listen(64)
    n = Notifier([f"unix:path={tmp_path / 'hung'}"], timeout=1.0, queue_size=4)
    n.start()
    try:
        t0 = time.monotonic()
        accepted = [n.submit(0, f"s{i}", "b") for i in range(20)]
        took = time.monotonic() - t0
        assert took < 0.5, took  # 20 submissions against a hung bus: no waiting
        assert accepted.count(False) >= 20 - 4 - 1  # the queue (4) + the one being sent
        assert n.dropped == accepted.count(False)
        warnings = n.pending()
        assert any("queue full" in w for w in warnings), warnings
    finally:
        n.close(wait=0.1)
        hung.close()


def test_no_session_bus_found_is_a_warning(tmp_path: Path) -> None:
    from exithand.obs.notify import Notifier
    n = Notifier(run_user=str(tmp_path))
    n.start()
    try:
        assert n.buses() == []
        assert any("no session bus found" in w for w in n.pending())
        assert n.submit(0, "x", "y")
        wait_for(lambda: n.failed or None, 10, "the failed attempt")
        assert any("no session bus to notify" in w for w in n.pending())
    finally:
        n.close(wait=1)
