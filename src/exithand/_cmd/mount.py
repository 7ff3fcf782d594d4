"""``exithand mount``: serve the exithand filesystem (needs the ``exithand[fs]`` extra).

pyfuse3 and trio are imported only when the command runs, so the rest of the CLI works
without them; when they are missing the command says what to install (exit 1).
"""

from __future__ import annotations

import argparse
from typing import Any

from . import _common
from ._argparse import HelpFormatter
from ._common import warn

HELP = "serve MOUNTPOINT/<pid>/exithand files with FUSE (needs exithand[fs])"

DESCRIPTION = """\
Mount the exithand filesystem at MOUNTPOINT. For every process it can see, it serves:

  MOUNTPOINT/<pid>/exithand       read() blocks until the process is dead, then EOF;
                                  poll/select/epoll report it readable exactly at death
  MOUNTPOINT/<pid>/exithand_full  read() blocks, then returns a 128-byte siginfo_t (SIGCHLD,
                                  si_code CLD_EXITED/KILLED/DUMPED, si_pid, si_uid, si_status)
  MOUNTPOINT/<pid>/exitstatus     read() blocks, then one line in FreeBSD pwait's words
  MOUNTPOINT/<pid>:<inode>/...    the same, pinned to one process (pidfs inode); ENOENT when
                                  the number now names another process (after the reap: below)

Opening a file pins the process it names then, so a reader never switches to a process that
later reuses the number. 'ls MOUNTPOINT' lists live pids. Opening on a zombie returns EOF at once.
Every name is the reader's: pids of its own pid namespace (Linux 6.11+; older kernels show a
reader in another pid namespace nothing), and nothing its own /proc hides (hidepid=).

After the reap: a file open then keeps answering. A NEW open of MOUNTPOINT/<pid>:<inode>/...
(pinned form only: a bare <pid> then names nothing, or a reuser) answers until --linger
seconds after the dead process was first left with no file open (reopening never extends it),
if one was open at its death (the daemon keeps
that pidfd, at most --max-lingering of them), for readers in the daemon's pid namespace whose
/proc hides nothing. The policy still decides: a same-user reader whose verdict could not be
taken at death (no status file of its own open then) is refused.

Each person has quotas (blocked reads, open files, directory handles, lingering entries) under
global caps; beyond them that person gets EAGAIN, nobody else does. A person is a user with
every uid of the user namespaces it made (their subordinate uids count as that user; a
lingering entry counts for the dead process's owner). Repeated warnings are logged at most 3
per person and kind every 5 s, then summed in one line. The daemon raises its fd limit to what
the caps need (open files + lingering + 1024) or refuses to start. Out of fds is ENFILE, never
ENOENT.

The daemon normally runs as root (it needs allow_other). SIGTERM/SIGINT answer every blocked
reader EIO and unmount. Killed hard (SIGKILL), its readers get ECONNABORTED, later accesses
ENOTCONN, and the mountpoint is left 'not connected': clear it with 'exithand umount
MOUNTPOINT'. A reader never sees EOF because the daemon died.
"""

EPILOG = """\
access policy (--policy) for exithand_full and exitstatus (plain exithand is open to all):
  same-user  what the kernel itself would answer this reader for the process's exit code
             (/proc/PID/stat field 52: ptrace read access, same real/effective/saved uid and
             gid, dumpable, or CAP_SYS_PTRACE), asked as the reader at death; or the parent
             (default)
  public     anyone
  parent     the process's parent, and CAP_SYS_PTRACE
  root       uid 0 and CAP_SYS_PTRACE
A refused open or read fails with EACCES. same-user is decided at open and again at death
from the zombie; if the parent reaps the process before the daemon could ask the kernel, the
reader is refused. What no policy can hide: on Linux 6.15+ any pidfd holder reads the status
after the reap (PIDFD_INFO_EXIT), so the policy protects the zombie phase and unreaped zombies.
If the status cannot be learned at all, reading exithand_full fails with ENODATA.

examples:
  exithand mount /run/exithand                     mount in the background (as root)
  cat /run/exithand/1234/exithand && echo gone     block until 1234 is dead
  cat /run/exithand/1234/exitstatus                "1234: exited with status 7."
  exithand mount --foreground --policy public /mnt/eh
  exithand umount /run/exithand

exit status:
  0    background: mounted; --foreground: unmounted cleanly (SIGTERM, or 'exithand umount')
  1    error: missing pyfuse3/trio, unusable or stale mountpoint, fd limit too low for
       the caps (the shortfall is named), mount failed (as non-root: the cause probed,
       /dev/fuse not read-write for you or no user_allow_other in /etc/fuse.conf)
  2    usage error: bad option, MOUNTPOINT not an empty directory
  130  --foreground: stopped with Ctrl-C (unmounted cleanly)
"""


def max_readers_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not an integer") from None
    if not 1 <= v <= 1_000_000:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be 1..1000000")
    return v


def linger_arg(text: str) -> float:
    """``--linger``: a duration of the one grammar (``30``, ``500ms``, ``1m``), at most 1 h."""
    v = _common.duration_arg(text)
    if v > 3600:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be at most 1h")
    return v


def register(sub: Any) -> None:
    from ..fs.access import DEFAULT_POLICY, POLICIES

    p = sub.add_parser("mount", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("mountpoint", metavar="MOUNTPOINT", type=_common.mountpoint_arg,
                   help="an existing empty directory")
    p.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY,
                   help="who may read exit statuses (default: %(default)s)")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground (for systemd and debugging); logs on stderr")
    p.add_argument("--max-readers", type=max_readers_arg, default=10_000, metavar="N",
                   help="most read()s blocked at once (and N + 1024 files open); more fail "
                        "with EAGAIN; the fd limit is raised to N + 2048 + --max-lingering "
                        "(default: %(default)s)")
    p.add_argument("--max-per-user", type=max_readers_arg, default=None, metavar="N",
                   help="most blocked read()s (and twice as many open files) per user; "
                        "beyond it that user gets EAGAIN, others do not; uid 0 has no quota "
                        "(default: a quarter of --max-readers)")
    p.add_argument("--max-dirs", type=max_readers_arg, default=1024, metavar="N",
                   help="most open handles on the top directory (each holds a snapshot of "
                        "the process list, 8 bytes a process); an eighth of it (at least 8) "
                        "per user (default: %(default)s)")
    p.add_argument("--linger", type=linger_arg, default=30.0, metavar="DURATION",
                   help="keep a dead process's pidfd this long after it was first left with "
                        "no file open (reopening never extends it), "
                        "so a new open of <pid>:<inode>/... after the reap answers; 0: never "
                        "(default: %(default)g)")
    p.add_argument("--max-lingering", type=max_readers_arg, default=1024, metavar="N",
                   help="most dead processes kept (--linger), an eighth of it (at least 8) "
                        "per user (none for uid 0); keeping one more drops the oldest, the "
                        "user's own first (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="log every blocked/released read")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fs import missing_dependency
    from ..fs.mounts import MountError, MountUsageError
    from ..fs.quota import Limits

    problem = missing_dependency()
    if problem:
        warn(f"mount: {problem}")
        return _common.EXIT_ERROR
    from ..fs import daemon

    try:
        limits = Limits.default(args.max_readers, args.max_per_user or 0, args.max_dirs,
                                args.max_lingering, args.linger)
        return daemon.run(args.mountpoint, args.policy, limits, args.foreground, args.debug)
    except MountUsageError as e:
        warn(f"mount: {e}")
        return _common.EXIT_USAGE
    except MountError as e:
        warn(f"mount: {e}")
        return _common.EXIT_ERROR
