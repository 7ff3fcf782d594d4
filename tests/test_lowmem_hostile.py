"""``exithand lowmem`` against a hostile user and a faulty environment (issue 23).

Each daemon run uses ``tests/lowmem_ns.py`` (see ``test_lowmem.py``): pid 1 of a private pid
namespace, real memory hogs in a 256 MiB memory cgroup, a floor set relative to what is
available once they are ready, so the victim a scenario needs is known.

* a hog that calls itself ``sshd`` (``avoid``) or ``postgres`` (``ignore``) is still the victim:
  those match the executable, which a process cannot rename;
* memory split over many small processes of one user reaches ``min-size`` as a group;
* stdout on a full filesystem, a closed pipe, a pipe nobody reads: the hog is still killed and
  the daemon exits on time, saying how many lines it dropped;
* the priority boost never outlives the kill: a victim that forks on SIGTERM, a daemon SIGKILLed
  mid-kill and restarted.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_lowmem import FAST, dead, kinds, scenario

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: memory cgroups, "
                                "pid namespaces, tmpfs mounts")

NOBODY = 65534


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name, rule", [("sshd", "--avoid"), ("postgres", "--ignore")])
def test_a_hog_renamed_to_a_protected_name_is_still_the_victim(name: str, rule: str) -> None:
    victims = [{"name": name, "mib": 120}, {"name": "innocent", "mib": 40}]
    # one kill is needed; the forged name must not move it onto the innocent process
    res = scenario(victims, [*FAST, rule, f"^{name}$|/{name}$", "--duration", "3"],
                   plus_mib=24)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == [name], res["events"]
    assert kills[0]["exe"] and not kills[0]["exe"].endswith(name), kills[0]
    assert kills[0]["score"] == kills[0]["oom_score"]  # no -300: its executable is python
    assert dead(res, name) and not dead(res, "innocent")


@pytest.mark.timeout(90)
def test_comm_matching_is_the_weaker_option_and_says_so() -> None:
    """The same forged name under ``--avoid-comm``: the documented weaker match is fooled, so
    the dry run picks the innocent process (what the issue saw with the old ``--avoid``)."""
    victims = [{"name": "sshd", "mib": 120}, {"name": "innocent", "mib": 40}]
    res = scenario(victims, [*FAST, "--avoid-comm", "^sshd$", "--dry-run", "--duration", "2",
                             "--mem-min", "{limit-1}"], plus_mib=0)
    would = kinds(res, "would_kill")
    assert would and {w["comm"] for w in would} == {"innocent"}, res["events"]


@pytest.mark.timeout(90)
def test_memory_split_over_small_processes_is_counted_by_user() -> None:
    """16 processes of one user, each below min-size, hold more than the innocent one: they
    are candidates as a group (largest first, one at a time); the innocent and the protected
    processes survive."""
    splitters = [{"name": f"split{i}", "mib": 6 + (i == 5), "uid": NOBODY} for i in range(16)]
    victims = [*splitters, {"name": "innocent", "mib": 30},
               {"name": "protected", "mib": 40}]
    res = scenario(victims, [*FAST, "--min-size", "{rss+8}", "--ignore-comm", "^protected$",
                             "--duration", "4"], plus_mib=8)
    kills = kinds(res, "kill")
    assert kills, res["events"]
    assert all(k["group"] == f"uid {NOBODY}" and k["uid"] == NOBODY for k in kills), kills
    assert kills[0]["comm"] == "split5"  # the group's largest member first
    assert all(k["score"] > k["oom_score"] for k in kills)  # scored as the group
    assert not dead(res, "innocent") and not dead(res, "protected"), res["victims"]
    killed = {k["comm"] for k in kills}
    assert all(dead(res, n) == (n in killed) for n in (s["name"] for s in splitters))


@pytest.mark.timeout(90)
def test_group_by_none_is_the_old_loophole() -> None:
    splitters = [{"name": f"split{i}", "mib": 6, "uid": NOBODY} for i in range(12)]
    victims = [*splitters, {"name": "innocent", "mib": 30}]
    res = scenario(victims, [*FAST, "--min-size", "{rss+8}", "--group-by", "none",
                             "--dry-run", "--duration", "2"], plus_mib=8)
    would = kinds(res, "would_kill")
    assert would and {w["comm"] for w in would} == {"innocent"}, res["events"]


@pytest.mark.timeout(90)
def test_comm_with_a_newline_never_starts_a_log_line() -> None:
    evil = "a\n<0>PWNED"
    victims = [{"name": evil, "mib": 60}, {"name": "other", "mib": 10}]
    text = [a for a in FAST if a != "--json"]
    res = scenario(victims, [*text, "--dry-run", "--duration", "1.5", "--mem-min",
                             "{limit-1}"], plus_mib=0)
    lines = [e["line"] for e in res["events"]]
    assert lines and all(e["event"] == "text" for e in res["events"])
    assert not any(line.startswith("<") for line in lines), lines
    would = [line for line in lines if "would kill" in line]
    assert would and all("(a\\x0a<0>PWNED)" in line for line in would), lines
    # JSON: the same name, exactly, inside one line
    res = scenario(victims, [*FAST, "--dry-run", "--duration", "1.5", "--mem-min",
                             "{limit-1}"], plus_mib=0)
    assert {w["comm"] for w in kinds(res, "would_kill")} == {evil}, res["events"]


@contextlib.contextmanager
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled to the last byte."""
    mnt = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            with contextlib.suppress(OSError):
                while True:  # the last partial page
                    os.write(fd, b"\0")
        finally:
            os.close(fd)
        fd = os.open(mnt / "probe", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError, match="No space left"):
                os.write(fd, b"x")
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sink", ["full", "closed", "unread"])
def test_a_broken_log_sink_costs_no_kill(sink: str, tmp_path: Path) -> None:
    victims = [{"name": "hog", "mib": 100}, {"name": "innocent", "mib": 20}]
    args = [*FAST, "--duration", "3", "--report-interval", "20ms"]  # plenty to write
    with contextlib.ExitStack() as st:
        if sink == "full":
            mnt = st.enter_context(full_tmpfs(tmp_path))
            how = f"file:{mnt / 'probe'}"
        else:
            how = sink
        res = scenario(victims, args, plus_mib=24, extra={"stdout": how})
    assert dead(res, "hog") and not dead(res, "innocent"), res
    assert res["seconds"] < 3 + 4, res["seconds"]  # the duration, then at most a bounded exit
    m = re.search(r"(\d+) stdout line\(s\) dropped \((.*)\)", res["stderr"])
    assert m and int(m.group(1)) > 0, res["stderr"]
    want = {"full": "No space left on device", "closed": "Broken pipe", "unread": "blocked"}
    assert want[sink] in m.group(2), res["stderr"]
    assert "Traceback" not in res["stderr"]


@pytest.mark.timeout(90)
def test_a_victim_forking_on_sigterm_leaves_no_boosted_child(tmp_path: Path) -> None:
    log = tmp_path / "kids.log"
    victims = [{"name": "forker", "mib": 100, "fork_on_term": True, "log": str(log)},
               {"name": "innocent", "mib": 20}]
    res = scenario(victims, [*FAST, "--grace", "2s", "--ignore-comm", "^sleep$",
                             "--duration", "3"], plus_mib=24)
    assert [k["comm"] for k in kinds(res, "kill")] == ["forker"], res["events"]
    assert dead(res, "forker")
    assert res["kids"], (log.read_text() if log.exists() else "no log", res)
    for pid, kid in res["kids"].items():
        assert kid["state"] not in ("Z", "X", "gone") and kid["nice"] == 0, (pid, kid)


@pytest.mark.timeout(90)
def test_a_daemon_killed_mid_kill_leaves_no_boosted_victim_and_restarts_clean() -> None:
    victims = [{"name": "stubborn", "mib": 100, "ignore_term": True},
               {"name": "innocent", "mib": 20}]
    res = scenario(victims, [*FAST, "--grace", "30s", "--duration", "20"], plus_mib=24,
                   extra={"crash_after": "kill", "restart": ["--grace", "200ms",
                                                             "--duration", "3"]}, rc=None)
    assert res["rc"] == -9, res
    assert [k["comm"] for k in kinds(res, "kill")] == ["stubborn"], res["events"]
    after_crash = res["victims"]["stubborn"]
    assert after_crash["state"] not in ("Z", "X", "gone") and after_crash["nice"] == 0, res
    again = res["restarted"]
    assert again["rc"] == 0, again
    assert [k["comm"] for k in kinds(again, "kill")] == ["stubborn"], again["events"]
    assert [e["pid"] for e in kinds(again, "escalate")], again["events"]
    assert again["victims"]["stubborn"]["state"] in ("Z", "X", "gone"), again
    assert again["victims"]["innocent"]["nice"] == 0


def test_sink_never_blocks_and_reports_what_it_dropped() -> None:
    """In-process, a real pipe of one page that nobody reads: 3000 lines are queued without
    blocking; once the pipe is read again, a notice with the drop count comes first."""
    from exithand.lowmem._output import Sink, fd_writer

    F_SETPIPE_SZ = 1031
    r, w = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
        sink = Sink("t", fd_writer(w), lambda n: f"DROPPED {n}\n".encode(), capacity=16)
        t0 = time.monotonic()
        for i in range(3000):
            sink.put(f"line {i:04d} {'x' * 90}\n".encode())
        assert time.monotonic() - t0 < 5  # nothing waited on the pipe
        assert sink.dropped > 2000
        got = b""
        os.set_blocking(r, False)
        deadline = time.monotonic() + 20
        while b"LAST" not in got and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                got += os.read(r, 65536)
            if b"line 0" in got and b"LAST" not in got and not sink._queue:
                sink.put(b"LAST\n")
            time.sleep(0.01)
        text = got.decode()
        m = re.search(r"DROPPED (\d+)\nline \d{4} x+\n", text)  # before the next line out
        assert m and "LAST\n" in text, text[-300:]
        assert int(m.group(1)) == sink.dropped
        assert sink.close(2.0) == sink.dropped
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.timeout(60)
def test_exe_protection_needs_a_root_owned_executable(tmp_path: Path) -> None:
    """A real process run from a copy of sleep: ``avoid``/``ignore`` on its path protect it
    while the file belongs to root, not once it belongs to a user; ``prefer`` applies either
    way (it only makes its own process more likely to go)."""
    import shutil

    from exithand.lowmem._match import compile_checked
    from exithand.lowmem._victims import Policy, evaluate

    exe = tmp_path / "protectedd"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    os.chown(exe, 0, 0)
    p = subprocess.Popen([str(exe), "60"])
    try:
        rx = compile_checked("/protectedd$")
        root_avoid, _ = evaluate(p.pid, Policy(avoid=rx))
        root_ignore, why = evaluate(p.pid, Policy(ignore=rx))
        prefer, _ = evaluate(p.pid, Policy(prefer=rx))
        assert root_avoid is not None and root_avoid.exe == str(exe)
        assert root_avoid.score == root_avoid.oom_score - 300
        assert root_ignore is None and why == "ignored by executable"
        assert prefer is not None and prefer.score == prefer.oom_score + 300
        os.chown(exe, NOBODY, NOBODY)  # the same inode, now a user's file
        user_avoid, _ = evaluate(p.pid, Policy(avoid=rx))
        user_ignore, _ = evaluate(p.pid, Policy(ignore=rx))
        assert user_avoid is not None and user_avoid.score == user_avoid.oom_score
        assert user_ignore is not None
        # and its self-given name is only what the *-comm rules see
        forged, why = evaluate(p.pid, Policy(ignore_comm=compile_checked("^protectedd$")))
        assert forged is None and why == "ignored by name (comm)"
    finally:
        p.kill()
        p.wait()
