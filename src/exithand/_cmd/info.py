"""``exithand info``: which kernel mechanisms this system and this caller can use."""

from __future__ import annotations

import argparse
import os
from typing import Any

import exithand

from . import _common
from ._common import emit, emit_json, warn

HELP = "show the kernel, each backend's availability, and where exit statuses come from"

DESCRIPTION = """\
Probe every backend for real (as this user, in this namespace) and show which one
'exithand wait' and the library use, and whether exit statuses of processes that are not your
children are available at the moment they die (proc connector) or only after their parent
reaps them (PIDFD_INFO_EXIT, Linux 6.15+).  Each kernel feature exithand uses is tried with
the smallest real operation (pidfd, pidfs inodes, PIDFD_INFO_EXIT, process_mrelease, proc
connector), never inferred from the kernel version: run it as the user you care about.

Backends, best first:
  pidfd      Linux 5.3+ pidfd_open: exact, no polling (refused by some seccomp sandboxes)
  connector  netlink proc connector: no polling, statuses at death (root/CAP_NET_ADMIN; from
             Linux 6.6 some kernels also let other users in the initial user and pid
             namespace subscribe, others refuse the bind: the line below says which)
  procpoll   /proc polling with start-time identity: works everywhere, with some latency
EXITHAND_BACKEND=NAME forces one of them.
"""

EPILOG = """\
examples:
  exithand info
  exithand info --json | jq .selected
  EXITHAND_NO_PIDFD=1 exithand info      see what a pidfd-less sandbox would get

exit status:
  0    done
  1    no backend is usable here
  2    usage error
"""


def register(sub: Any) -> None:
    p = sub.add_parser("info", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    infos = exithand.backends()
    selected = next((b.name for b in infos if b.selected), None)
    selection_error = None
    if selected is None:
        try:
            exithand.selected_backend()
        except exithand.BackendUnavailable as e:
            selection_error = str(e)
    connector = next((b for b in infos if b.name == "connector"), None)
    at_death = bool(connector and connector.available)
    if at_death:
        status_src = ("at death, for any process (proc connector), once the listener runs; "
                      "own children always")
    else:
        why = connector.reason if connector else "no connector backend"
        status_src = (f"not at death for non-children ({why}); own children always; others "
                      "from a zombie you may ptrace, or after the reap on Linux 6.15+")
    feats = exithand.features()
    forced = os.environ.get("EXITHAND_BACKEND")
    if args.json:
        emit_json({
            "kernel": exithand.kernel_release(),
            "version": exithand.__version__,
            "backends": [{"name": b.name, "available": b.available,
                          "reason": b.reason or None} for b in infos],
            "selected": selected,
            "forced": forced or None,
            "selection_error": selection_error,
            "exit_status_at_death": at_death,
            "exit_status": status_src,
            "uid": os.getuid(),
            "features": [{"name": f.name, "available": f.available,
                          "reason": f.reason or None} for f in feats],
        })
    else:
        emit(f"kernel:    {exithand.kernel_release()}")
        emit(f"exithand:  {exithand.__version__}")
        emit("backends:")
        for b in infos:
            mark = "*" if b.selected else " "
            state = "available" if b.available else f"unavailable: {b.reason}"
            emit(f"  {mark} {b.name:<10} {state}")
        tail = f" (forced by EXITHAND_BACKEND={forced})" if forced else ""
        emit(f"selected:  {selected or 'none'}{tail}")
        emit(f"exit status of non-children: {status_src}")
        emit(f"kernel features (probed as uid {os.getuid()}):")
        for f in feats:
            emit(f"    {f.name:<17} {'yes' if f.available else 'no: ' + f.reason}")
    if selection_error:
        warn(selection_error)
    return _common.EXIT_OK if selected else _common.EXIT_ERROR
