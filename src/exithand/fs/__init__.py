"""The exithand filesystem: ``/proc/<pid>/exithand``-style files served with FUSE.

``exithand mount /run/exithand`` serves, for every process the daemon can see::

    <mnt>/<pid>/exithand        read() blocks until the process is dead, then EOF;
                                poll/select/epoll say readable exactly at death
    <mnt>/<pid>/exithand_full   read() blocks, then returns a 128-byte siginfo_t (SIGCHLD)
    <mnt>/<pid>/exitstatus      read() blocks, then one line: "1234: exited with status 7."
    <mnt>/<pid>:<inode>/...     the same, pinned to one process (pidfs inode)

Built on pyfuse3 (>= 3.5, the first with poll) and trio, installed with ``exithand[fs]``; it
uses only the public :mod:`exithand` API.  Modules, one job each:

* :mod:`.names`   -- which directory names exist (hostile input parsing)
* :mod:`.inodes`  -- FUSE inode numbers and lookup counts
* :mod:`.policy`  -- who may read an exit status (same-user, public, parent, root)
* :mod:`.askkernel` -- asks the kernel, as the reader, whether it may read an exit code
* :mod:`.siginfo` -- the 128-byte ``siginfo_t`` of ``exithand_full``
* :mod:`.watch`   -- one pidfd watcher task per watched process, shared by its readers
* :mod:`.scanner` -- releases blocked readers whose opener has a signal pending
* :mod:`.ops`     -- the pyfuse3 ``Operations``
* :mod:`.daemon`  -- mount, serve, signals, logging, unmount
"""

from __future__ import annotations

INSTALL_HINT = ("the exithand filesystem needs the optional dependencies pyfuse3 (>= 3.5) and "
                "trio: pip install 'exithand[fs]' (building pyfuse3 needs the fuse3, "
                "libfuse3-dev and pkg-config packages: apt-get install fuse3 libfuse3-dev "
                "pkg-config)")


def missing_dependency() -> str | None:
    """``None`` when pyfuse3 >= 3.5 and trio import; else a message saying what to install."""
    try:
        import pyfuse3
        import trio  # noqa: F401
    except ImportError as e:
        return f"{e}; {INSTALL_HINT}"
    if not hasattr(pyfuse3.Operations, "poll"):
        return f"pyfuse3 {getattr(pyfuse3, '__version__', '?')} is too old (no poll); " \
               + INSTALL_HINT
    return None
