"""``--journal`` (issue 18): records sent over journald's native protocol to a real
``systemd-journald`` the test starts, read back with ``journalctl -o json``.

journald runs in a private mount namespace (``unshare -m``) with its own tmpfs on
``/run/systemd``, ``/run/log`` and ``/var/log/journal``, so it never sees or touches the host's
journal; the commands under test join that namespace (``nsenter -m``) and find its socket at the
standard path, ``/run/systemd/journal/socket``, as they would on any systemd machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obshelp import Watch, core_dumps_to_cwd, run_exits, wait_for

from conftest import env_with_src, require
from exithand.obs.journal import MESSAGE_IDS

JOURNALD = "/lib/systemd/systemd-journald"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a mount namespace "
                                "for a private journald")

_PRIVATE_RUN = """\
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/journal
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
"""


class Journald:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.enter = ("nsenter", "-t", str(pid), "-m")

    def records(self, *match: str) -> list[dict[str, Any]]:
        r = subprocess.run([*self.enter, "journalctl", "--directory=/run/log/journal",
                            "-a", "-o", "json", "--no-pager", *match],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode in (0, 1), r.stderr  # 1: no entries yet (older journalctl)
        return [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]

    def wait_records(self, n: int, *match: str) -> list[dict[str, Any]]:
        return wait_for(lambda: (lambda rs: rs if len(rs) >= n else None)(self.records(*match)),
                        20, f"{n} journal record(s) matching {match}")


@pytest.fixture(scope="module")
def journald() -> Iterator[Journald]:
    if not os.access(JOURNALD, os.X_OK) or shutil.which("journalctl") is None:
        pytest.skip(f"{JOURNALD} / journalctl not installed (Debian package systemd)")
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("unshare/nsenter not installed (util-linux)")
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", _PRIVATE_RUN + f"exec {JOURNALD}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        j = Journald(p.pid)

        def ready() -> Any:
            if p.poll() is not None:
                raise RuntimeError(f"journald exited {p.returncode}: {p.stderr.read()}")  # type: ignore[union-attr]
            r = subprocess.run([*j.enter, "test", "-S", "/run/systemd/journal/socket"],
                               timeout=10)
            return True if r.returncode == 0 else None

        try:
            wait_for(ready, 20, "journald's socket")
        except AssertionError as e:
            pytest.skip(f"systemd-journald cannot run here: {e}")
        yield j
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def connector(backend_availability: dict[str, tuple[bool, str]]) -> None:
    require("proc_connector")


def _by_pid(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["PID"]): r for r in records}


@pytest.mark.timeout(90)
def test_watch_journal_records_exits_with_systemd_field_names(connector, journald,
                                                              tmp_path: Path) -> None:
    w = Watch("--json", "--journal", "--comm", "^ehobs_", "-c", "4", "-t", "40",
              prefix=journald.enter)
    try:
        pids = run_exits(tmp_path)
        rc, events, err = w.finish(40)
    finally:
        w.stop()
    assert rc == 0, err
    assert len(events) == 4, events
    recs = _by_pid(journald.wait_records(4, f"MESSAGE_ID={MESSAGE_IDS['exit']}",
                                         "SYSLOG_IDENTIFIER=exithand-watch"))
    assert set(recs) == set(pids.values()), recs
    r3, r0 = recs[pids["exit3"]], recs[pids["exit0"]]
    assert (r3["EXIT_CODE"], r3["EXIT_STATUS"], r3["COMM"]) == ("exited", "3", "ehobs_sh")
    assert (r0["EXIT_CODE"], r0["EXIT_STATUS"]) == ("exited", "0")
    assert r3["UID"] == str(os.getuid()) and int(r3["PPID"]) == os.getpid()
    assert r3["PRIORITY"] == "5" and r0["PRIORITY"] == "6"
    assert "exited with status 3" in r3["MESSAGE"]
    k = recs[pids["killed"]]
    assert (k["EXIT_CODE"], k["EXIT_STATUS"], k["EXITHAND_SIGNAL_NAME"]) == (
        "killed", "9", "SIGKILL")
    assert "COREDUMP_SIGNAL" not in k
    d = recs[pids["dumped"]]
    if core_dumps_to_cwd():
        assert (d["EXIT_CODE"], d["EXIT_STATUS"]) == ("dumped", "11")
        assert (d["COREDUMP_SIGNAL"], d["COREDUMP_SIGNAL_NAME"]) == ("11", "SIGSEGV")
    else:
        assert d["EXIT_CODE"] in ("killed", "dumped")
    # journald's own trusted fields name the sender (exithand), ours the process concerned
    assert int(d["_PID"]) != int(d["PID"])


@pytest.mark.timeout(60)
def test_wire_format_newlines_binary_and_big_records_via_memfd(journald) -> None:
    code = """if 1:
        from exithand.obs.journal import Journal
        j = Journal(identifier="exithand-wiretest")
        assert j.send({"MESSAGE": "line one\\nline two", "MESSAGE_ID": "MID",
                       "EXITHAND_BIG": "x" * 1048576, "EXITHAND_EMPTY": "",
                       "EXITHAND_BYTES": b"\\x00\\xff\\n", "EXITHAND_SKIPPED": None})
        assert j.dropped == 0
    """.replace("MID", MESSAGE_IDS["gap"])
    r = subprocess.run([*journald.enter, sys.executable, "-c", code], capture_output=True,
                       text=True, env=env_with_src(), timeout=30)
    assert r.returncode == 0, r.stderr
    (rec,) = journald.wait_records(1, "SYSLOG_IDENTIFIER=exithand-wiretest")
    assert rec["MESSAGE"] == "line one\nline two"  # the binary length form
    assert rec["EXITHAND_BIG"] == "x" * 1048576  # > the datagram limit: sent in a memfd
    assert rec["EXITHAND_EMPTY"] == ""
    assert rec["EXITHAND_BYTES"] == [0, 255, 10]  # journalctl's form for binary data
    assert "EXITHAND_SKIPPED" not in rec


def test_field_names_are_checked() -> None:
    from exithand.obs.journal import encode, field_name
    assert field_name("memory_bytes") == "MEMORY_BYTES"
    assert field_name("_x-y") == "X_Y"
    with pytest.raises(ValueError):
        encode({"_PID": 1})
    with pytest.raises(ValueError):
        encode({"lower": 1})


@pytest.mark.timeout(60)
def test_fs_daemon_logs_natively_under_journal_stream(journald) -> None:
    pytest.importorskip("pyfuse3")
    code = """if 1:
        from exithand.fs.daemon import log, setup_logging
        setup_logging(False)
        log.warning("fs says %s", "hello")
    """
    env = env_with_src(JOURNAL_STREAM="8:12345")
    r = subprocess.run([*journald.enter, sys.executable, "-c", code], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # natively, not as a stderr line
    (rec,) = journald.wait_records(1, "SYSLOG_IDENTIFIER=exithand-fs")
    assert rec["MESSAGE"] == "fs says hello" and rec["PRIORITY"] == "4"
    assert rec["CODE_FUNC"] == "<module>" and rec["LOGGER"] == "exithand.fs"
    # no journald socket answering: the stderr form with a priority prefix, as before
    r = subprocess.run(["unshare", "-m", "sh", "-c", _PRIVATE_RUN + 'exec "$@"', "sh",
                        sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "<4>fs says hello\n"


@pytest.mark.parametrize("cmd", ["watch", "lowmem"])
def test_no_journald_socket_is_an_error_at_start(cmd: str) -> None:
    extra = ["-t", "5"] if cmd == "watch" else ["--dry-run", "--duration", "5",
                                                 "--no-protect-self"]
    r = subprocess.run(["unshare", "-m", "sh", "-c", _PRIVATE_RUN + 'exec "$@"', "sh",
                        sys.executable, "-m", "exithand", cmd, "--journal", *extra],
                       capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot reach journald at /run/systemd/journal/socket: no journald socket" \
        in r.stderr
    assert "Traceback" not in r.stderr and "listening" not in r.stderr
    assert '"start"' not in r.stdout and "watching" not in r.stdout
