"""``exithand lowmem`` settings: trigger parsing, the unprivileged PSI window, config errors.

Every bad setting must exit 2 with the setting named and *before* the daemon starts (no
``start`` event); an environment without PSI exits 1.  Nothing here kills anything: the runs
that start use ``--dry-run`` and a scope that holds no process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from conftest import env_with_src, run_cli
from exithand.lowmem._psi import SYSTEM_PSI, parse_psi
from exithand.lowmem._units import SettingError, parse_amount, parse_duration


def test_parse_psi_units_kernel_form_and_path() -> None:
    s = parse_psi("some 150ms 2s", privileged=False)
    assert (s.kind, s.stall, s.window, s.path) == ("some", 0.15, 2.0, SYSTEM_PSI)
    assert s.kernel_text() == "some 150000 2000000"
    k = parse_psi("full 100000 4000000 /sys/fs/cgroup/x/memory.pressure", privileged=False)
    assert (k.kind, k.kernel_text()) == ("full", "full 100000 4000000")
    assert k.path == "/sys/fs/cgroup/x/memory.pressure"
    assert parse_psi("some 70ms 1s", privileged=True).window == 1.0  # lmkd's, with the cap


@pytest.mark.parametrize("text, words", [
    ("avg 150ms 2s", "some|full"),
    ("some 150ms", "some|full"),
    ("some 1x 2s", "invalid duration '1x': not a number"),
    ("some 150ms 20s", "outside the kernel's 0.5 s..10 s"),
    ("some 3s 2s", "at most the window"),
    ("some 0 2s", "must be > 0"),
])
def test_parse_psi_errors_say_which_rule(text: str, words: str) -> None:
    with pytest.raises(SettingError, match=words.replace("|", r"\|").replace(".", r"\.")):
        parse_psi(text, privileged=True)


def test_unprivileged_window_must_be_a_multiple_of_2s() -> None:
    with pytest.raises(SettingError, match="not a multiple of 2 s: without CAP_SYS_RESOURCE"):
        parse_psi("some 100ms 1s", privileged=False)
    with pytest.raises(SettingError, match="multiple of 2 s"):
        parse_psi("some 100ms 3s", privileged=False)
    assert parse_psi("some 100ms 10s", privileged=False).window == 10.0


def test_units() -> None:
    assert parse_duration("150ms", "x") == 0.15
    assert parse_duration(2, "x") == 2.0
    assert parse_amount("10%", "x").resolve(1000) == 100
    assert parse_amount("512M", "x").resolve(0) == 512 << 20
    assert parse_amount("1GiB", "x").bytes == 1 << 30
    for bad in ("-1s", "soon", True):
        with pytest.raises(SettingError):
            parse_duration(bad, "x")
    for bad2 in ("101%", "lots", -5, 1.5):
        with pytest.raises(SettingError):
            parse_amount(bad2, "x")


# Without CAP_SYS_RESOURCE, whoever we are: dropping it from the bounding set removes it from
# what even root gets at exec (root in this project's sandbox lacks it anyway).
NO_CAP = ["setpriv", "--bounding-set=-sys_resource"]
RAW_PROBE = (f"import os\nfd = os.open({SYSTEM_PSI!r}, os.O_RDWR | os.O_NONBLOCK)\n"
             "os.write(fd, b'some 100000 1000000\\0')\n")


def _raw_window_refused() -> Optional[str]:
    """Without the capability, with raw syscalls: does the kernel refuse a 1 s window?"""
    if shutil.which("setpriv") is None:
        return "setpriv(1) not installed"
    r = subprocess.run([*NO_CAP, sys.executable, "-c", RAW_PROBE], capture_output=True,
                       text=True, timeout=30)
    if r.returncode == 0:
        return "the kernel accepts a 1 s window without CAP_SYS_RESOURCE (before 6.5?)"
    if "Invalid argument" not in r.stderr:
        return f"PSI not usable here: {r.stderr.strip().splitlines()[-1]}"
    return None


def test_cli_unprivileged_window_error_exit_2() -> None:
    why = _raw_window_refused()
    if why:
        pytest.skip(why)
    r = subprocess.run([*NO_CAP, sys.executable, "-m", "exithand", "lowmem", "--psi",
                        "some 100ms 1s", "--dry-run", "--duration", "1"],
                       capture_output=True, text=True, timeout=30, env=env_with_src())
    assert r.returncode == 2, r
    assert "multiple of 2 s" in r.stderr and "CAP_SYS_RESOURCE" in r.stderr
    assert "needs Linux 5.2" not in r.stderr and r.stdout == ""


def _no_start(r: object) -> None:
    assert "start" not in getattr(r, "stdout", "")


@pytest.mark.parametrize("args, words", [
    (["--mem-min", "lots"], "mem-min"),
    (["--swap-min", "120%"], "swap-min"),
    (["--prefer", "(unclosed"], "prefer: '(unclosed' is not a valid regular expression"),
    (["--kill-mode", "everything"], "invalid choice"),
    (["--grace", "soon"], "grace"),
    (["--min-size", "10%"], "min-size"),
    (["--hook", "/nonexistent/notify-me"], "hook: '/nonexistent/notify-me'"),
    (["--scope", "/tmp"], "scope: /tmp is not a cgroup directory"),
    (["--memory-cgroup", "/tmp"], "memory-cgroup"),
    (["--interval", "0"], "interval"),
    (["--max-kills", "-1"], "max-kills"),
    (["--psi", "some 150ms 2s", "--hook", "/nonexistent/x"], "hook"),  # psi fine, hook not
])
def test_bad_settings_exit_2_before_start(args: list[str], words: str) -> None:
    r = run_cli("lowmem", "--json", "--dry-run", "--duration", "1", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert words in r.stderr, r.stderr
    assert r.stdout == ""  # not even a start event: never half started
    assert "Traceback" not in r.stderr


def test_config_file_errors_exit_2(tmp_path: Path) -> None:
    cases = {
        "unknown.toml": ('mem-min = "5%"\nmem_maxx = 3\n', "unknown setting 'mem_maxx'"),
        "broken.toml": ('mem-min = "5%\n', "not valid TOML"),
        "type.toml": ("dry-run = \"yes\"\n", "dry-run: expected true or false"),
        "psi.toml": ('psi = ["some 150ms 3s"]\n', "multiple of 2 s"),
    }
    for name, (text, words) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        r = run_cli("lowmem", "--config", str(p), "--duration", "1")
        assert r.returncode == 2 and words in r.stderr, (name, r.stderr)
        assert r.stdout == ""
    r = run_cli("lowmem", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml" in r.stderr


def test_missing_psi_exits_1_or_runs_on_floors_when_optional(tmp_path: Path) -> None:
    spec = f"some 150ms 2s {tmp_path}/memory.pressure"
    r = run_cli("lowmem", "--psi", spec, "--dry-run", "--duration", "0.3")
    assert r.returncode == 1, r
    assert "PSI not available" in r.stderr and "psi-optional" in r.stderr
    assert r.stdout == ""
    r = run_cli("lowmem", "--psi", spec, "--psi-optional", "--json", "--dry-run",
                "--duration", "0.3", "--mem-min", "0", "--no-protect-self")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    # (where the proc connector is refused, a "no process table" warning comes too)
    events = [e for e in events if "no process table" not in e.get("message", "")]
    assert [e["event"] for e in events] == ["warning", "start", "stop"], events
    assert "PSI not available" in events[0]["message"]


def _swap_total() -> int:
    with open("/proc/meminfo") as f:
        return next((int(line.split()[1]) for line in f if line.startswith("SwapTotal:")), 0)


def test_config_file_and_flags_merge(tmp_path: Path) -> None:
    p = tmp_path / "lowmem.toml"
    p.write_text('mem_min = "0"\nswap-min = "5%"\npsi = ["some 200ms 4s"]\njson = false\n'
                 'report-interval = "100ms"\n')
    r = run_cli("lowmem", "--config", str(p), "--json", "--dry-run", "--duration", "0.35",
                "--no-protect-self")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["triggers"][0] == "some 200ms/4s"
    # (22.4) the swap floor is named only where there is swap
    swap = _swap_total()
    assert start["triggers"][1] == ("available < 0 MiB (and free swap < 5%)" if swap else
                                    "available < 0 MiB (no swap on this machine: swap-min "
                                    "does not apply)"), (swap, start)
    reports = [e for e in events if e["event"] == "report"]
    assert len(reports) >= 2 and all(e["kills"] == 0 for e in reports)
    assert events[-1]["event"] == "stop" and events[-1]["kills"] == 0


def test_help_documents_exit_codes_and_keys() -> None:
    r = run_cli("lowmem", "--help")
    assert r.returncode == 0
    for words in ("--mem-min", "--psi", "--dry-run", "--hook", "exit status", "multiple of 2 s",
                  "process_mrelease"):
        assert words in r.stdout, words


CONTRIB = Path(__file__).resolve().parent.parent / "contrib"


def test_contrib_config_is_valid_and_starts(tmp_path: Path) -> None:
    from exithand.lowmem._config import build_config, load_toml

    cfg = build_config(load_toml(str(CONTRIB / "lowmem.toml")), {})
    assert cfg.mem_min is not None and str(cfg.mem_min) == "10%"
    assert cfg.policy.avoid is not None and cfg.policy.avoid.search("/usr/sbin/sshd")
    assert not cfg.policy.avoid.search("sshd")  # the path, not a self-given name
    r = run_cli("lowmem", "--config", str(CONTRIB / "lowmem.toml"), "--dry-run", "--json",
                "--mem-min", "0", "--duration", "0.2", "--no-protect-self")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["event"] for line in r.stdout.splitlines()][-1] == "stop"


def test_contrib_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze, exe = shutil.which("systemd-analyze"), shutil.which("exithand")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    if exe is None:
        pytest.skip("no exithand command on PATH for the unit's ExecStart")
    unit = tmp_path / "exithand-lowmem.service"
    unit.write_text((CONTRIB / "exithand-lowmem.service").read_text()
                    .replace("/usr/local/bin/exithand", exe))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_ledger_credit_hold_off_and_dying_rules() -> None:
    from exithand.lowmem._ledger import KillRecord, Ledger
    from exithand.lowmem._victims import Candidate

    mib = 1 << 20
    led = Ledger(kill_timeout=1.0, hold_off=0.5, credit_window=10.0, stuck_after=10.0)
    v = Candidate(4242, 1, "hog", 900, 0, 900, 1024 * mib, 0)
    r = KillRecord(v, None, t_kill=100.0, pcp0=50 * mib, trigger="test")
    led.add(r)
    assert led.exclude() == {(4242, 1)}
    assert led.waiting(100.2) == "victim 4242 (hog) is dying"
    assert led.credit(100.2, 50 * mib) == 1024 * mib  # all of it is still on its way
    r.remaining = 300 * mib  # process_mrelease at work
    assert led.waiting(101.5) is None  # past kill-timeout: decide, with what is left credited
    assert led.credit(101.5, 50 * mib) == 300 * mib
    led.mark_dead(r, 102.0)
    assert led.exclude() == frozenset()
    assert led.waiting(102.3) == "holding off after the last kill"
    assert led.waiting(102.6) is None
    # freed pages parked on per-CPU lists: their growth is credited, capped at the victim ...
    assert led.credit(103.0, 850 * mib) == 800 * mib
    assert led.credit(103.0, 5000 * mib) == 1024 * mib
    assert led.credit(103.0, 10 * mib) == 0  # lists drained below the baseline: nothing
    # memory unmapped (AnonPages fell by the victim) but not yet available counts too, and a
    # concurrent allocator (AnonPages and MemAvailable both move by what it takes) cancels out
    r.anon0, r.avail0 = 5000 * mib, 20000 * mib
    assert led.credit(103.0, 50 * mib, 5000 * mib - 1024 * mib, 20000 * mib + 800 * mib) == (
        224 * mib)
    assert led.credit(103.0, 50 * mib, 5000 * mib - 1024 * mib + 300 * mib,
                      20000 * mib + 800 * mib - 300 * mib) == 224 * mib
    assert led.credit(103.0, 850 * mib, 5000 * mib - 1024 * mib, 20000 * mib + 800 * mib) == (
        800 * mib)  # the larger of the two measures
    # ... for the credit window only, then the record is done
    assert led.credit(112.5, 850 * mib) == 0
    assert led.expired(112.5) == [] and led.records  # the reaper has not reported yet
    r.finished = True
    assert led.expired(112.5) == [r] and not led.records


BIG = "9" * 400


@pytest.mark.parametrize("args, words", [
    (["--mem-min", BIG], "mem-min: '999999999999999999999999999999999999..."),
    (["--min-size", BIG + "M"], "min-size"),
    (["--mem-min", BIG + "%"], "mem-min"),
    (["--grace", BIG], "grace"),
    (["--mem-min", "100%"], "mem-min: 100% of the memory can never be available"),
    (["--mem-min", "64T"], "mem-min: 67108864 MiB is not below"),
    (["--mem-min", "64T"], "of system: every check would kill"),
    (["--avoid", "^((a+)+)+$"], "avoid: '^((a+)+)+$' is refused: a repeat inside a repeat"),
    (["--ignore", "(a|ab)+c"], "ignore: '(a|ab)+c' is refused: an alternation"),
    (["--prefer-comm", "(x*)*"], "prefer-comm"),
    (["--ignore-uid", "no-such-user-xyz"], "ignore-uid: no user named 'no-such-user-xyz'"),
    (["--group-by", "pid"], "invalid choice"),
])
def test_hostile_values_exit_2_at_once_without_traceback(args: list[str], words: str) -> None:
    import time
    t0 = time.monotonic()
    r = run_cli("lowmem", "--json", "--dry-run", "--duration", "1", "--no-protect-self", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert words in r.stderr, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert len(r.stderr) < 2000  # a 400-digit value is named, not echoed whole
    assert time.monotonic() - t0 < 30  # (a start-up bound, not a benchmark)


def test_hostile_config_files_exit_2(tmp_path: Path) -> None:
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli")
    cases = {
        "latin1.toml": (b'mem-min = "5%"\nprefer = "caf\xe9"\n', "not UTF-8 at byte"),
        "bigint.toml": (f"min-size = {BIG}\n".encode(), "min-size"),
        "bigmem.toml": (f"mem-min = {BIG}\n".encode(), "below 8 EiB"),
        "bigdur.toml": (f"interval = {BIG}\n".encode(), "interval"),
        "uids.toml": (b'ignore-uid = [0, "nobody", true]\n', "expected uids or user names"),
    }
    for name, (data, words) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        r = run_cli("lowmem", "--config", str(p), "--dry-run", "--duration", "1")
        assert r.returncode == 2 and words in r.stderr, (name, r.stderr)
        assert r.stdout == "" and "Traceback" not in r.stderr, (name, r.stderr)


def test_a_hostile_regex_costs_nothing_at_decision_time() -> None:
    """What is accepted stays linear: the checked patterns against 12 hostile 4 KiB names."""
    from exithand.lowmem._match import UnsafeRegex, compile_checked, search

    for bad in ("^((a+)+)+$", "(a*)*b", "(a|a)+$", "(?:x+y?)+z"):
        with pytest.raises(UnsafeRegex):
            compile_checked(bad)
    ok = [compile_checked(p) for p in ("^(chrome|java)$", "/(sshd|postgres)$", "(foo|bar)+",
                                       "^systemd-.*", "a{2,5}b")]
    names = ["a" * 30 + "!", "a" * 4096 + "!", "\n<0>" * 1000] * 4
    assert not any(search(p, n) for p in ok for n in names)
    assert search(ok[1], "/usr/sbin/sshd") and not search(ok[1], "/usr/sbin/sshd-x")
