"""The filesystem daemon's logs: never blocking, never forged, unfloodable, never lost.

Against the real daemon: a stderr pipe nobody reads (issue 23: it froze the filesystem after
~35 refused opens), a process named ``a\\n<0>PWNED`` (log injection under journald), a loop of
refused opens by one user (issue 21.3: 1,757 lines/s before), a background daemon on a machine
without ``/dev/log`` (issue 22.4: its logs were lost).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import subprocess
import sys
import time

import pytest
from fshelp import exits_within, force_unmount, fsmount, make_mountpoint, needs_fuse, procs  # noqa: F401

from conftest import NOBODY, env_with_src, run_as

pytestmark = [needs_fuse, pytest.mark.timeout(120)]


def _refused_opens(path: str, n: int, name: bytes = b"") -> list[int]:
    """As nobody (optionally renamed with PR_SET_NAME): ``n`` opens of ``path``; the errnos."""
    def go() -> list[int]:
        if name:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
        seen = set()
        for _ in range(n):
            try:
                os.close(os.open(path, os.O_RDONLY))
                seen.add(0)
            except OSError as e:
                seen.add(e.errno or -1)
        return sorted(seen)
    got: list[int] = run_as(NOBODY, go, timeout=90)
    return got


@pytest.mark.timeout(90)
def test_unread_stderr_never_freezes_the_filesystem(fsmount, procs):  # noqa: F811
    """--debug daemon whose stderr pipe nobody reads: 5,000 refused opens (far more than a
    pipe or the 4,096-line queue holds) and the filesystem still answers a death at once;
    once the log is read, the count of lines dropped meanwhile is in it."""
    fs = fsmount(drain=False)
    assert _refused_opens(fs.path(1, "exitstatus"), 5000) == [errno.EACCES]
    target = procs.start(["sleep", "60"])
    reader = procs.start(["cat", fs.path(target.pid, "exithand")])
    target.kill()
    assert exits_within(reader, 20) and reader.wait(5) == 0
    fs.start_drain()
    fs.wait_log(r"exithand-fs: \d+ log lines dropped: the log was not read fast enough")


def test_a_process_name_cannot_forge_a_log_line(fsmount):  # noqa: F811
    """Under journald (JOURNAL_STREAM: a ``<N>`` at a line's start is its priority) a refused
    opener named ``a\\n<0>PWNED`` is logged escaped: no line starts with ``<0>``."""
    fs = fsmount(env={"JOURNAL_STREAM": "8:1"})
    assert _refused_opens(fs.path(1, "exitstatus"), 1, b"a\n<0>PWNED") == [errno.EACCES]
    fs.wait_log(r"open-refused 1/exitstatus uid=65534 .*\(a\\n<0>PWNED\)")
    assert not [line for line in fs.lines if line.startswith("<0>")]


@pytest.mark.timeout(60)
def test_refused_opens_are_rate_limited_per_person_and_counted(fsmount):  # noqa: F811
    """2,000 refused opens by nobody in a loop: at most the burst (3) logged as they happen,
    then one summary line counting all 2,000; nothing else from that flood."""
    fs = fsmount(debug=False)
    t0 = time.monotonic()
    assert _refused_opens(fs.path(1, "exitstatus"), 2000) == [errno.EACCES]
    fs.wait_log(r"uid 65534: [\d,]+ opens refused in the last", timeout=30)
    took = time.monotonic() - t0
    text = fs.log_text()
    assert fs.count(r"open-refused ") == 3, text
    counted = sum(int(m.replace(",", "")) for m in
                  re.findall(r"uid 65534: ([\d,]+) opens refused in the last", text))
    assert counted == 2000, text
    flood = fs.count(r"open-refused |uid 65534: ")
    assert flood <= 3 + 1 + int(took / 5) * 2, text  # burst + one summary per 5 s window


@pytest.mark.timeout(90)
def test_background_daemon_without_dev_log_logs_to_a_file(tmp_path):
    """No /dev/log (none on this machine; skipped where there is one): the background daemon
    says where it logs at start, and its lines are in that file."""
    if os.path.exists("/dev/log"):
        pytest.skip("this machine has /dev/log: the fallback is not reached")
    mnt = make_mountpoint()
    try:
        r = subprocess.run([sys.executable, "-m", "exithand", "mount", "--max-readers", "8",
                            mnt], capture_output=True, text=True, timeout=60,
                           env=env_with_src())
        assert r.returncode == 0, r.stderr
        m = re.search(r"exithand mount: daemon (\d+) logs to (\S+) \(no /dev/log\)", r.stderr)
        assert m, r.stderr
        pid, logfile = int(m.group(1)), m.group(2)
        pfd = os.pidfd_open(pid)
        try:
            os.kill(pid, 15)
            import select
            assert select.select([pfd], [], [], 30)[0]
        finally:
            os.close(pfd)
        with open(logfile) as f:
            text = f.read()
        assert re.search(rf"exithand-fs\[{pid}\] INFO mounted {re.escape(mnt)} ", text), text
        assert re.search(rf"exithand-fs\[{pid}\] INFO unmounted {re.escape(mnt)}", text), text
    finally:
        force_unmount(mnt)
        os.rmdir(mnt)
