"""``exithand lowmem``: the low-memory killer daemon (:mod:`exithand.lowmem`) as a command.

Flags and the TOML file (``--config``) set the same keys; flags win.  Every setting is checked
and every source opened before the daemon says ``start``: a bad value exits 2, an environment
that cannot support the configuration (no PSI) exits 1, and nothing is ever half started.
"""

from __future__ import annotations

import argparse
from typing import Any

from exithand.lowmem import _keys

from ._common import CommandError, UsageError

HELP = "low-memory killer daemon: PSI and memory floors, one victim at a time, mrelease"

DESCRIPTION = """\
Watch memory pressure and kill one process at a time when it is too high, like earlyoom or
Android's lmkd, without over-killing: after each kill the memory still on its way back (the
dying victim's RSS, pages on the per-CPU free lists that MemAvailable does not count yet) is
credited, the daemon holds off, and every trigger is re-checked before the next kill. A dying
victim is never signalled twice; every victim is pinned by pidfd when chosen, so a reused pid is
never hit. Victims are SIGKILLed (or SIGTERMed with --grace) and their memory is released with
process_mrelease(2) on a reaper thread after raising their priority, so a frozen or starved
victim cannot keep its memory.

Triggers (any one fires): --mem-min (available memory, with --swap-min also free swap, below a
floor; default 10%/10% when no --psi is given) and --psi (a PSI stall trigger on
/proc/pressure/memory or a cgroup v2 memory.pressure). A PSI wake-up counts only if the file's
stall total really grew by STALL within the last WINDOW after the last kill. Without
CAP_SYS_RESOURCE the kernel (6.5+) accepts only PSI windows that are a multiple of 2 s.

Victims: highest /proc/PID/oom_score first, +300 for --prefer, -300 for --avoid; never pid 1,
kernel threads, this daemon, oom_score_adj -1000, --ignore matches, processes below --min-size
(unless their user's small processes reach it together: --group-by) or already dying (SIGKILL
pending). --prefer/--avoid/--ignore match the executable (/proc/PID/exe; --avoid/--ignore
protect only root-owned executables), which a process cannot forge; the *-comm variants match
the name a process gives itself, which any process can set (weaker). Regexes that can
backtrack exponentially (nested quantifiers) are refused. --scope limits candidates to cgroups.
"""

EPILOG = """\
examples:
  exithand lowmem                                  earlyoom-like: available < 10% (and swap)
  exithand lowmem --psi 'some 150ms 2s' --json     PSI only, JSON events
  exithand lowmem --mem-min 5% --psi 'full 100ms 2s' --prefer '/(chrome|java)$' --avoid /sshd$
  exithand lowmem --scope /sys/fs/cgroup/memory/job --memory-cgroup /sys/fs/cgroup/memory/job
  exithand lowmem --config /etc/exithand/lowmem.toml --dry-run

events (text on stdout, or one JSON object per line with --json): start, warning, kill,
would_kill (--dry-run), mrelease, freed, stuck (memory not back after stuck-after), escalate,
killed (tree/cgroup modes), no_candidate, kill_failed, hook_failed, report, stop. The hook
(--hook CMD) runs when a victim's memory is back, with EXITHAND_PID, EXITHAND_COMM,
EXITHAND_UID, EXITHAND_MEMORY_BYTES, EXITHAND_SECONDS, EXITHAND_TRIGGER and EXITHAND_EVENT
(the whole event as JSON) in its environment.

observability (docs/metrics.md): --metrics [HOST:]PORT serves Prometheus metrics (extra
exithand[metrics]), --metrics-textfile PATH writes them every second; --journal sends every
event to journald as a structured record (MESSAGE_IDs for kill, freed, stuck); --notify sends a
desktop notification after each kill to every logged-in user's session bus, the victim's owner
first (extra exithand[notify]); a bus that cannot be reached is a warning event, never a delay.

exit status:
  0    stopped: SIGTERM/SIGHUP, --max-kills reached or --duration over
  1    the environment cannot support the configuration (e.g. PSI not available, the
       metrics port in use, no journald socket, a missing extra)
  2    bad flag, bad config file or bad value, e.g. --metrics 99999 (nothing was started)
  130  interrupted (Ctrl-C)
"""

_S = argparse.SUPPRESS


def register(sub: Any) -> None:
    p = sub.add_parser("lowmem", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       argument_default=_S)
    k = {key: text.replace("%", "%%") for key, text in _keys.KEYS.items()}
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys as the "
                   "long flags (flags win)")
    g = p.add_argument_group("triggers")
    g.add_argument("--mem-min", metavar="SIZE|PCT", help=k["mem-min"] + " [10%%]")
    g.add_argument("--swap-min", metavar="SIZE|PCT", help=k["swap-min"] + " [10%%]")
    g.add_argument("--psi", action="append", metavar="SPEC", help=k["psi"] + "; repeatable")
    g.add_argument("--psi-optional", action="store_true", help=k["psi-optional"])
    g.add_argument("--memory-cgroup", metavar="DIR", help=k["memory-cgroup"])
    v = p.add_argument_group("victims")
    v.add_argument("--scope", action="append", metavar="DIR", help=k["scope"] + "; repeatable")
    for name in ("prefer", "avoid", "ignore", "prefer-comm", "avoid-comm", "ignore-comm",
                 "prefer-cgroup", "avoid-cgroup", "ignore-cgroup"):
        v.add_argument(f"--{name}", metavar="REGEX", help=k[name])
    for name in ("avoid-uid", "ignore-uid"):
        v.add_argument(f"--{name}", action="append", metavar="USER",
                       help=k[name] + "; repeatable")
    v.add_argument("--min-size", metavar="SIZE", help=k["min-size"] + " [0]")
    v.add_argument("--group-by", choices=("uid", "cgroup", "none"), help=k["group-by"])
    v.add_argument("--kill-mode", choices=_keys.KILL_MODES, help=k["kill-mode"])
    v.add_argument("--grace", metavar="DURATION", help=k["grace"])
    v.add_argument("--no-mrelease", dest="mrelease", action="store_false",
                   help="do not call process_mrelease")
    t = p.add_argument_group("timing")
    for name, dflt in (("kill-timeout", "1s"), ("hold-off", "1s"), ("credit-window", "10s"),
                       ("stuck-after", "10s"), ("interval", "100ms"), ("duration", "0"),
                       ("report-interval", "0")):
        t.add_argument(f"--{name}", metavar="DURATION", help=f"{k[name]} [{dflt}]")
    t.add_argument("--max-kills", type=int, metavar="N", help=k["max-kills"])
    o = p.add_argument_group("output and daemon")
    o.add_argument("-n", "--dry-run", action="store_true", help=k["dry-run"])
    o.add_argument("--json", action="store_true", help=k["json"])
    o.add_argument("--syslog", action="store_true", help=k["syslog"])
    o.add_argument("--hook", metavar="CMD", help=k["hook"])
    o.add_argument("--mlockall", action="store_true", help=k["mlockall"])
    o.add_argument("--metrics", metavar="[HOST:]PORT", help=k["metrics"])
    o.add_argument("--metrics-textfile", metavar="PATH", help=k["metrics-textfile"])
    o.add_argument("--journal", action="store_true", help=k["journal"])
    o.add_argument("--notify", action="store_true", help=k["notify"])
    o.add_argument("--notify-bus", action="append", metavar="ADDRESS",
                   help=k["notify-bus"] + "; repeatable, implies --notify")
    o.add_argument("--no-protect-self", dest="protect_self", action="store_false",
                   help="leave our own oom_score_adj alone")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from exithand.lowmem import _config, _daemon, _events
    from exithand.lowmem._units import SettingError

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    try:
        file_settings = _config.load_toml(args.config) if getattr(args, "config", None) else {}
        cfg = _config.build_config(file_settings, flags)
        out = _events.Emitter(cfg.json, cfg.syslog, cfg.hook)
        out.sinks = _open_sinks(cfg)
        try:
            return _daemon.run(cfg, out)
        finally:
            _close_sinks(out.sinks)
            out.close()
    except SettingError as e:
        raise UsageError(str(e)) from None
    except _daemon.SetupError as e:
        raise CommandError(str(e)) from None


def _open_sinks(cfg: Any) -> list[Any]:
    """--metrics/--metrics-textfile/--journal/--notify (exithand.obs), started before the
    daemon: a bad value exits 2, one that cannot work here exits 1."""
    if not (cfg.metrics or cfg.metrics_textfile or cfg.journal or cfg.notify or cfg.notify_bus):
        return []
    from exithand.obs.exporter import MetricsError
    from exithand.obs.journal import JournalError
    from exithand.obs.notify import NotifyError
    from exithand.obs.sinks import open_sinks
    try:
        return open_sinks(cfg.metrics, cfg.metrics_textfile, cfg.journal, cfg.notify,
                          list(cfg.notify_bus) or None)
    except MetricsError as e:
        if e.exit_code == 2:
            raise UsageError(str(e)) from None
        raise CommandError(str(e)) from None
    except (JournalError, NotifyError) as e:
        raise CommandError(str(e)) from None


def _close_sinks(sinks: list[Any]) -> None:
    if sinks:
        from exithand.obs.sinks import close_sinks
        close_sinks(sinks)
