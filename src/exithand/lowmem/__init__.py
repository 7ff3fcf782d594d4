"""``exithand lowmem``: a low-memory killer daemon built on exithand's public API.

Modules, one job each:

* :mod:`._keys` setting names (imported by the CLI at start-up; nothing else is);
* :mod:`._units` durations, sizes and percentages;
* :mod:`._psi` PSI triggers (parse, register, verify a wake-up against ``total=``);
* :mod:`._meminfo` available memory of the system or a memory cgroup, per-CPU free lists;
* :mod:`._victims` candidates, their order, and pinning the victim by pidfd;
* :mod:`._match` what the policy matches on (exe path and owner), regexes checked at start;
* :mod:`._groups` small processes counted together by uid or cgroup against ``min-size``;
* :mod:`._ledger` the "kill again?" decision (credit, hold-off, dying victims);
* :mod:`._daemon` the epoll loop, the reaper thread, kill modes;
* :mod:`._reaper` boosting a victim, ``process_mrelease`` with retries, its cgroup;
* :mod:`._events` text/JSON/syslog events and the post-kill hook;
* :mod:`._output` bounded, non-blocking sinks with drop counts, and text escaping;
* :mod:`._config` settings from TOML and flags, checked all at once.

Import the submodules directly (``from exithand.lowmem import _daemon``): this package imports
nothing, so ``exithand --help`` stays cheap.  The daemon is driven through ``exithand lowmem``.
"""
