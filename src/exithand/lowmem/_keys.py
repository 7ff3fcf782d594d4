"""The daemon's setting names (long flags and TOML keys) with one line each.

Imported by the CLI at start-up, so it imports nothing.
"""

KILL_MODES = ("process", "tree", "cgroup")

#: key -> short description (the config reference in the README is built from the same words)
KEYS = {
    "mem-min": "kill when available memory is below this (bytes, 512M, or 10%)",
    "swap-min": "... and free swap is below this too (ignored without swap)",
    "psi": "PSI triggers, 'some|full STALL WINDOW [PATH]' (a list in the file)",
    "psi-optional": "run on the memory floors alone if PSI is not available",
    "memory-cgroup": "measure available memory in this memory cgroup instead of the system",
    "scope": "only processes of these cgroup directories are candidates (a list)",
    "prefer": "regex on the executable's path (/proc/PID/exe): +300 to its score",
    "avoid": "regex on the executable's path, root-owned executables only: -300",
    "ignore": "regex on the executable's path, root-owned executables only: never a victim",
    "prefer-comm": "regex on the name a process gives itself (comm; forgeable): +300",
    "avoid-comm": "regex on the name a process gives itself (comm; forgeable): -300",
    "ignore-comm": "regex on the name a process gives itself (comm; forgeable): never",
    "prefer-cgroup": "regex on the cgroup path: +300",
    "avoid-cgroup": "regex on the cgroup path: -300",
    "ignore-cgroup": "regex on the cgroup path: never a victim",
    "avoid-uid": "users (uids or names) whose processes get -300 (a list)",
    "ignore-uid": "users (uids or names) whose processes are never victims (a list)",
    "min-size": "never kill a process using less than this (RSS + swap), unless its group does",
    "group-by": "count small processes together by uid (default), cgroup, or none",
    "kill-mode": "process, tree (with its descendants) or cgroup (its whole cgroup v2)",
    "grace": "send SIGTERM first and SIGKILL after this long (default: SIGKILL at once)",
    "mrelease": "process_mrelease the victim (default true)",
    "kill-timeout": "how long a dying victim blocks further decisions",
    "hold-off": "after a victim's memory is freed, wait this long before the next decision",
    "credit-window": "credit a kill's memory on the per-CPU free lists for this long",
    "stuck-after": "stop crediting a victim that neither dies nor frees memory after this",
    "interval": "how often the memory floors are read",
    "max-kills": "exit after this many kills (0: never)",
    "duration": "exit after this long (0: never)",
    "dry-run": "choose victims and say so, never signal",
    "json": "one JSON object per event on stdout",
    "syslog": "also send each event line to syslog (daemon facility)",
    "hook": "command run after each kill (EXITHAND_* environment variables)",
    "report-interval": "print a report line this often (0: never)",
    "mlockall": "lock the daemon's memory (mlockall)",
    "protect-self": "set our own oom_score_adj to -1000 where allowed (default true)",
    "metrics": "serve Prometheus metrics on HOST:PORT (a port alone: 127.0.0.1)",
    "metrics-textfile": "write the metrics to this file every second (node_exporter)",
    "journal": "send each event to journald as a structured record",
    "notify": "desktop notification to logged-in users' session buses after each kill",
    "notify-bus": "D-Bus addresses to notify instead of /run/user/UID/bus (a list)",
}
