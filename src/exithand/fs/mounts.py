"""Mount-table helpers that need no FUSE library: checking a mountpoint, clearing a mount.

A FUSE daemon killed hard leaves its mount behind: every access to the mountpoint then fails
with ENOTCONN ("Transport endpoint is not connected") until someone unmounts it
(``fusermount3 -u``, or ``umount -l`` as root).  ``exithand mount`` refuses such a
mountpoint with a message saying so, and ``exithand umount`` clears it.

Mount points are read with :func:`exithand.procfs.mountinfo` (the one mountinfo parser,
which undoes the kernel's octal escapes), so they compare with plain paths.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess

from exithand import procfs

#: The type ``/proc/self/mountinfo`` shows for our mounts, live or stale (``subtype=exithand``).
FSTYPE = "fuse.exithand"


class MountError(Exception):
    """A mountpoint we cannot use or clear; the message tells the user what to do."""


class MountUsageError(MountError):
    """A mountpoint the user should not have named (not empty): a usage error (exit 2)."""


def mount_fstype(path: str) -> str | None:
    """Filesystem type of the mount *at* ``path`` (e.g. ``fuse.exithand``), None if none.

    Read from ``/proc/self/mountinfo``, which works even when the mount is stale (``stat``
    would fail with ENOTCONN there).
    """
    where = os.path.abspath(path)
    found = None
    for m in procfs.mountinfo("self"):
        if m.mount_point == where:
            found = m.fstype
    return found


def is_stale(path: str) -> bool:
    """Is ``path`` a mount left behind by a dead FUSE daemon (``stat`` fails with ENOTCONN)?"""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


def check_mountpoint(path: str) -> str:
    """The absolute path if we can mount there, else :class:`MountError` saying why."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MountError(f"{path} does not exist (create it first: mkdir -p {path})") from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise MountError(
                f"{path} is a stale mount left by a FUSE daemon that died (Transport endpoint "
                f"is not connected); clear it with: exithand umount {path}") from None
        raise MountError(f"{path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"{path} is not a directory")
    fstype = mount_fstype(path)
    if fstype is not None:
        raise MountError(f"{path} is already a mount point ({fstype}); unmount it first: "
                         f"exithand umount {path}")
    try:
        with os.scandir(path) as it:
            first = next(it, None)
    except OSError as e:
        raise MountError(f"{path}: {e.strerror}") from None
    if first is not None:  # mounting would hide its files from everyone until the unmount
        raise MountUsageError(f"{path} is not empty (it holds {first.name!r}): mount on an "
                              f"empty directory")
    return path


def fuse_device_problem(device: str = "/dev/fuse") -> str | None:
    """Why this (non-root) user cannot mount a FUSE filesystem, or None if nothing is known.

    fusermount3 (set-uid root) drops to the calling user before it opens the device, so the
    device's mode decides: Debian ships /dev/fuse 0666, but a 0600 one refuses every non-root
    mount whatever /etc/fuse.conf says.  Probed by opening it read-write as the caller.
    """
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        try:
            mode = f"mode {stat.S_IMODE(os.stat(device).st_mode):04o}, "
        except OSError:
            mode = ""
        return (f"cannot open {device} read-write as uid {os.getuid()} ({mode}{e.strerror}): "
                f"non-root mounts need it (chmod 0666 {device}), or mount as root")
    os.close(fd)
    return None


def allow_other_problem(conf: str = "/etc/fuse.conf") -> str | None:
    """None if /etc/fuse.conf has an uncommented ``user_allow_other``, else why not."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as f:
            if any(line.split("#", 1)[0].strip() == "user_allow_other" for line in f):
                return None
    except OSError as e:
        return f"as non-root, allow_other needs 'user_allow_other' in {conf} ({e.strerror})"
    return f"as non-root, allow_other needs 'user_allow_other' in {conf}"


def unmount(path: str, lazy: bool = False) -> list[str]:
    """Unmount ``path`` (stale or live); returns notes for the user.  MountError on failure.

    Only an exithand mount (type ``fuse.exithand`` in mountinfo, which a stale mount keeps):
    anything else -- a tmpfs, ``/home``, another FUSE filesystem -- is refused untouched.

    Tries ``fusermount3 -u``, then the lazy ``fusermount3 -uz`` (if files are still open:
    the mount is detached now and freed when they close), then ``umount -l`` (root).
    """
    path = os.path.abspath(path)
    fstype = mount_fstype(path)
    if fstype is None:
        raise MountError(f"{path} is not a mount point")
    if fstype != FSTYPE:
        raise MountError(f"{path} is a {fstype} mount, not an exithand filesystem; "
                         "refusing to unmount it (use umount(8) for other filesystems)")
    attempts: list[list[str]] = []
    if not lazy:
        attempts.append(["fusermount3", "-u", path])
    attempts.append(["fusermount3", "-u", "-z", path])
    if os.geteuid() == 0:
        attempts.append(["umount", "-l", path])
    notes: list[str] = []
    for cmd in attempts:
        if shutil.which(cmd[0]) is None:
            notes.append(f"{cmd[0]} not found")
            continue
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if r.returncode == 0 and mount_fstype(path) is None:
            if "-z" in cmd or "-l" in cmd:
                notes.append("detached lazily: files still open keep the old mount until "
                             "they are closed")
            return notes
        notes.append(f"{' '.join(cmd[:-1])}: {(r.stderr or r.stdout).strip() or 'failed'}")
    raise MountError(f"cannot unmount {path}: " + "; ".join(notes))
