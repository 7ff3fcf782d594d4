"""Shared pieces of the subcommands: exit codes, target parsing, output."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import exithand

from ._duration import DurationError, parse_duration

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, NamedTuple, Optional

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit status:
  0    done: the processes waited for are dead
  1    error: a target does not exist (without -e), is a thread, or access was denied
  2    usage error: bad option or malformed target
  124  timeout: some targets were still alive (listed with -p)
  130  interrupted (Ctrl-C)
"""


class UsageError(Exception):
    """Bad command-line input: message printed, exit 2."""


class CommandError(Exception):
    """The command cannot go on (a target is missing, a thread, not ours): message, exit 1."""


class Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so cleanup (``finally``) runs as for Ctrl-C.

    A BaseException like KeyboardInterrupt: library code that undoes half-done work on any
    exception (e.g. resuming a tree frozen with SIGSTOP) undoes it here too.  Exit 128 + signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    def handler(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if TYPE_CHECKING:
    class Target(NamedTuple):
        """A command-line target as given (``text``) and parsed.

        ``gone`` is set when the target is known to be gone without opening it (a pid above
        ``pid_max`` with ``-e``): the reason to report.
        """

        text: str
        pid: int
        inode: Optional[int]
        gone: Optional[str] = None
else:
    from collections import namedtuple

    Target = namedtuple("Target", "text pid inode gone", defaults=(None,))


def read_pid_max() -> int:
    """The kernel's ``pid_max`` (``/proc/sys/kernel/pid_max``), or the 64-bit limit 2**22."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4194304


def strip_proc(text: str) -> str:
    """``/proc/1234`` (and ``/proc/1234/``) -> ``1234``: the Solaris form pwait(1) accepts."""
    if text.startswith("/proc/"):
        return text[len("/proc/"):].rstrip("/")
    return text


def parse_targets(texts: list[str], exited: bool = False) -> list[Target]:
    """Parse ``PID`` / ``PID:INODE`` / ``/proc/PID`` arguments; a malformed one is a usage
    error.  With ``exited`` (``-e``) a well-formed pid above ``pid_max`` is no error: no
    process can have that number, so it has exited (as util-linux waitpid(1) -e treats it)."""
    out = []
    for t in texts:
        bare = strip_proc(t)
        try:
            pid, inode = exithand.parse_target(bare)
        except ValueError as e:
            pid_s, _sep, ino_s = bare.strip().partition(":")
            if (exited and is_ascii_decimal(pid_s) and (not ino_s or is_ascii_decimal(ino_s))
                    and int(pid_s) > read_pid_max()):
                out.append(Target(t, int(pid_s), int(ino_s) if ino_s else None,
                                  f"no such process: {pid_s} is above the kernel's pid_max"))
                continue
            raise UsageError(str(e)) from None
        out.append(Target(t, pid, inode))
    return out


def open_targets(targets: list[Target],
                 opener: Callable[[int, Optional[int]], exithand.ExitHandle],
                 exited: bool, consequence: str = "",
                 ) -> tuple[list[tuple[Target, exithand.ExitHandle]], list[tuple[Target, str]]]:
    """Open every target before anything else happens (identity pinned up front).

    Returns (target, handle) pairs and, with ``exited`` (``-e``), the targets already gone
    with the reason.  Without ``-e`` a missing target, and always a thread id or another
    error, raises :class:`CommandError` after closing what was opened; ``consequence`` is
    appended to the message (e.g. "; nothing was signalled").
    """
    opened: list[tuple[Target, exithand.ExitHandle]] = []
    gone: list[tuple[Target, str]] = []
    try:
        for t in targets:
            if t.gone is not None:
                gone.append((t, t.gone))
                continue
            try:
                h = opener(t.pid, t.inode)
                opened.append((t, h))
                if h.pid == os.getpid():  # pinned and alive: this very process
                    raise CommandError(f"{t.text}: that is this exithand process itself; it "
                                       f"cannot wait for its own death{consequence}")
            except exithand.NotProcessLeader as e:
                raise CommandError(f"{e}{consequence}") from None
            except exithand.NoSuchProcess as e:
                if not exited:
                    raise CommandError(f"{t.text}: {e}{consequence}") from None
                gone.append((t, str(e)))
            except exithand.Error as e:
                raise CommandError(f"{t.text}: {e}{consequence}") from None
    except BaseException:
        for _t, h in opened:
            h.close()
        raise
    return opened, gone


def is_ascii_decimal(text: str) -> bool:
    """Only ASCII digits, at least one (``str.isdigit()`` also takes other scripts' digits
    and superscripts, on some of which ``int()`` then fails)."""
    return bool(text) and all("0" <= c <= "9" for c in text)


def mountpoint_arg(text: str) -> str:
    """argparse type for MOUNTPOINT: a non-empty path (``""`` would mean the current
    directory, so ``exithand mount "$UNSET"`` would mount over it)."""
    if not text:
        import argparse

        raise argparse.ArgumentTypeError("invalid mount point '': empty path")
    return text


def timeout_arg(text: str) -> Optional[float]:
    """argparse type for ``-t``: a duration (``1.5``, ``250ms``, ``2m``, ``1h``, ``1d``);
    ``0`` means no timeout (``None``), as in pwait(1), waitpid(1) and timeout(1)."""
    v = duration_arg(text)
    return v if v > 0 else None


def duration_arg(text: str) -> float:
    """argparse type for other times (``--grace``): a duration >= 0, ``0`` meaning now."""
    try:
        return parse_duration(text)
    except DurationError as e:
        import argparse

        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int_arg(text: str) -> int:
    """argparse type for counts (``-c N``): an integer >= 1."""
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be at least 1")
    return v


class OutputError(CommandError):
    """Standard output cannot be written (closed with ``>&-``, ``/dev/full``): exit 1."""


def emit(line: str) -> None:
    """Print one line and flush (output is often piped to another program).

    ``BrokenPipeError`` (the reader went away, ``| head``) propagates as is; a closed or
    failing stdout raises :class:`OutputError`.
    """
    out = sys.stdout
    if out is None:  # started with stdout closed (>&-)
        raise OutputError("cannot write to standard output: it is closed")
    try:
        out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as e:  # ValueError: the file object itself was closed
        abandon_stdout()
        raise OutputError(f"cannot write to standard output: {e}") from None


def abandon_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's last flush of what could not be written
    does not fail again at exit (the recipe of the Python docs on SIGPIPE)."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(fd, sys.stdout.fileno() if sys.stdout is not None else 1)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        pass


def emit_json(obj: dict[str, Any]) -> None:
    """Print one JSON object as one line (``--json`` output) and flush."""
    import json  # only --json needs it: keep it off every command's start-up path

    emit(json.dumps(obj, sort_keys=False))


def debug(msg: str) -> None:
    """A line on stderr when ``EXITHAND_DEBUG=1`` (scripts and tests use it as a sync point)."""
    if os.environ.get("EXITHAND_DEBUG") == "1":
        warn(f"debug: {msg}")


def warn(msg: str) -> None:
    """An ``exithand: MSG`` line on stderr (errors and notes; stdout stays for results);
    dropped if stderr is closed or failing (there is nowhere to report it)."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(f"exithand: {msg}\n")
        err.flush()
    except (OSError, ValueError):
        pass
