"""The daemon's settings: one flat table, from a TOML file and/or command-line flags.

Every key has the name of its long flag (``mem-min`` is ``--mem-min``; ``mem_min`` is accepted
too).  Flags override the file.  :func:`build_config` checks every value and raises
:class:`SettingError` with the key named, so the daemon either starts fully configured or not at
all (exit 2).  TOML needs Python 3.11 (``tomllib``) or the ``tomli`` package on 3.9/3.10; without
either, ``--config`` is refused with that explanation and flags still work.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from ._groups import GROUP_BY
from ._keys import KEYS, KILL_MODES
from ._match import UnsafeRegex, compile_checked
from ._psi import PsiSpec, parse_psi
from ._units import Amount, SettingError, parse_amount, parse_duration
from ._victims import Policy

__all__ = ["KEYS", "KILL_MODES", "Config", "build_config", "load_toml"]


@dataclass(frozen=True)
class Config:
    mem_min: Optional[Amount]
    swap_min: Amount
    psi: tuple[PsiSpec, ...]
    psi_optional: bool
    memory_cgroup: Optional[str]
    policy: Policy
    kill_mode: str
    grace: Optional[float]
    mrelease: bool
    kill_timeout: float
    hold_off: float
    credit_window: float
    stuck_after: float
    interval: float
    max_kills: int
    duration: float
    dry_run: bool
    json: bool
    syslog: bool
    hook: Optional[tuple[str, ...]]
    report_interval: float
    mlockall: bool
    protect_self: bool
    metrics: Optional[str] = None
    metrics_textfile: Optional[str] = None
    journal: bool = False
    notify: bool = False
    notify_bus: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict, compare=False)


def load_toml(path: str) -> dict[str, Any]:
    """Read a TOML file; SettingError for a missing/unreadable/malformed file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.9/3.10 only
        try:
            import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise SettingError(
                f"--config {path}: reading TOML needs Python 3.11+ or the 'tomli' package "
                "(pip install tomli); or pass the settings as flags") from None
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as e:
        raise SettingError(f"--config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingError(f"--config {path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8; tomllib raises this, not TOMLDecodeError
        raise SettingError(f"--config {path}: not valid TOML: not UTF-8 at byte {e.start}"
                           ) from None
    return data


def _norm(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    out = {}
    for k, v in raw.items():
        key = k.replace("_", "-")
        if key not in KEYS:
            raise SettingError(f"{origin}: unknown setting {k!r} (known: {', '.join(KEYS)})")
        out[key] = v
    return out


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise SettingError(f"{key}: expected true or false, got {v!r}")
    return v


def _int(v: Any, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise SettingError(f"{key}: expected an integer >= 0, got {v!r}")
    return v


def _regex(v: Any, key: str) -> Optional[re.Pattern[str]]:
    if v is None:
        return None
    if not isinstance(v, str):
        raise SettingError(f"{key}: expected a regular expression, got {v!r}")
    try:
        return compile_checked(v)
    except re.error as e:
        raise SettingError(f"{key}: {v!r} is not a valid regular expression: {e}") from None
    except UnsafeRegex as e:
        raise SettingError(f"{key}: {v!r} is refused: {e}") from None
    except RecursionError:
        raise SettingError(f"{key}: regular expression nested too deeply") from None


def _uids(v: Any, key: str) -> frozenset[int]:
    """uids from numbers or user names (resolved once, at start)."""
    import pwd

    items = v if isinstance(v, list) else [] if v is None else [v]
    out = set()
    for x in items:
        if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 32:
            out.add(x)
        elif isinstance(x, str) and x.isdigit() and int(x) < 1 << 32:
            out.add(int(x))
        elif isinstance(x, str):
            try:
                out.add(pwd.getpwnam(x).pw_uid)
            except KeyError:
                raise SettingError(f"{key}: no user named {x!r}") from None
        else:
            raise SettingError(f"{key}: expected uids or user names, got {x!r}")
    return frozenset(out)


def _strlist(v: Any, key: str) -> list[str]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SettingError(f"{key}: expected a string or a list of strings, got {v!r}")
    return list(v)


def _optstr(v: Any, key: str) -> Optional[str]:
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise SettingError(f"{key}: expected a non-empty string, got {v!r}")
    return v


def _cgroup_dir(path: str, key: str) -> str:
    if not os.path.isfile(os.path.join(path, "cgroup.procs")):
        raise SettingError(f"{key}: {path} is not a cgroup directory (no cgroup.procs)")
    return os.path.realpath(path)


def build_config(file_settings: dict[str, Any], flag_settings: dict[str, Any]) -> Config:
    """Merge (flags win) and check every setting; raises :class:`SettingError`."""
    s = _norm(file_settings, "config file")
    s.update(_norm(flag_settings, "flags"))
    g = s.get
    psi = tuple(parse_psi(t, "psi") for t in _strlist(g("psi", []), "psi"))
    floors_default = "10%" if not psi else None
    mem_min = g("mem-min", floors_default)
    hook = g("hook")
    if hook is not None:
        if not isinstance(hook, str) or not hook.strip():
            raise SettingError("hook: expected a command line")
        try:
            argv = tuple(shlex.split(hook))
        except ValueError as e:
            raise SettingError(f"hook: {hook!r}: {e}") from None
        if shutil.which(argv[0]) is None:
            raise SettingError(f"hook: {argv[0]!r} is not an executable file or on PATH")
        hook_argv: Optional[tuple[str, ...]] = argv
    else:
        hook_argv = None
    mode = g("kill-mode", "process")
    if mode not in KILL_MODES:
        raise SettingError(f"kill-mode: {mode!r} is not one of {', '.join(KILL_MODES)}")
    grace = g("grace")
    mem_cg = g("memory-cgroup")
    if mem_cg is not None:
        if not isinstance(mem_cg, str):
            raise SettingError(f"memory-cgroup: expected a directory, got {mem_cg!r}")
        mem_cg = _cgroup_dir(mem_cg, "memory-cgroup")
    min_size = parse_amount(g("min-size", 0), "min-size")
    if min_size.bytes is None:
        raise SettingError("min-size: expected a size like 64M, not a percentage")
    group_by = g("group-by", "uid")
    if group_by not in GROUP_BY:
        raise SettingError(f"group-by: {group_by!r} is not one of {', '.join(GROUP_BY)}")
    rx = {k: _regex(g(k), k) for k in ("prefer", "avoid", "ignore", "prefer-comm", "avoid-comm",
                                       "ignore-comm", "prefer-cgroup", "avoid-cgroup",
                                       "ignore-cgroup")}
    policy = Policy(
        prefer=rx["prefer"], avoid=rx["avoid"], ignore=rx["ignore"],
        prefer_comm=rx["prefer-comm"], avoid_comm=rx["avoid-comm"],
        ignore_comm=rx["ignore-comm"], prefer_cgroup=rx["prefer-cgroup"],
        avoid_cgroup=rx["avoid-cgroup"], ignore_cgroup=rx["ignore-cgroup"],
        avoid_uid=_uids(g("avoid-uid"), "avoid-uid"),
        ignore_uid=_uids(g("ignore-uid"), "ignore-uid"), group_by=group_by,
        min_size=min_size.bytes,
        scope=tuple(_cgroup_dir(p, "scope") for p in _strlist(g("scope", []), "scope")))
    cfg = Config(
        mem_min=None if mem_min is None else parse_amount(mem_min, "mem-min"),
        swap_min=parse_amount(g("swap-min", "10%"), "swap-min"),
        psi=psi, psi_optional=_bool(g("psi-optional", False), "psi-optional"),
        memory_cgroup=mem_cg, policy=policy, kill_mode=mode,
        grace=None if grace is None else parse_duration(grace, "grace"),
        mrelease=_bool(g("mrelease", True), "mrelease"),
        kill_timeout=parse_duration(g("kill-timeout", 1.0), "kill-timeout"),
        hold_off=parse_duration(g("hold-off", 1.0), "hold-off"),
        credit_window=parse_duration(g("credit-window", 10.0), "credit-window"),
        stuck_after=parse_duration(g("stuck-after", 10.0), "stuck-after"),
        interval=parse_duration(g("interval", 0.1), "interval"),
        max_kills=_int(g("max-kills", 0), "max-kills"),
        duration=parse_duration(g("duration", 0), "duration"),
        dry_run=_bool(g("dry-run", False), "dry-run"), json=_bool(g("json", False), "json"),
        syslog=_bool(g("syslog", False), "syslog"), hook=hook_argv,
        report_interval=parse_duration(g("report-interval", 0), "report-interval"),
        mlockall=_bool(g("mlockall", False), "mlockall"),
        protect_self=_bool(g("protect-self", True), "protect-self"),
        metrics=_optstr(g("metrics"), "metrics"),
        metrics_textfile=_optstr(g("metrics-textfile"), "metrics-textfile"),
        journal=_bool(g("journal", False), "journal"),
        notify=_bool(g("notify", False), "notify"),
        notify_bus=tuple(_strlist(g("notify-bus", []), "notify-bus")),
        source=s)
    if cfg.interval <= 0:
        raise SettingError("interval: must be > 0")
    if cfg.mem_min is not None and cfg.mem_min.percent is not None \
            and cfg.mem_min.percent >= 100:
        raise SettingError(f"mem-min: {cfg.mem_min} of the memory can never be available: "
                           "every check would kill (a floor must be below 100%)")
    if cfg.mem_min is None and not cfg.psi:
        raise SettingError("no trigger: set mem-min and/or at least one psi trigger")
    return cfg
