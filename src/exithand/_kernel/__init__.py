"""The kernel band: everything that talks to the kernel below the backends.

Raw syscalls and ioctls (:mod:`.syscalls`), the netlink proc connector (:mod:`.netlink`), cgroup
mounts and files (:mod:`.cgroup`), the process tree (:mod:`.tree`), open-file limits
(:mod:`.fdlimit`), signal wake-ups (:mod:`.sigwake`), the frozen-record shim (:mod:`.frozen`) and
the one errno translation with the library's exceptions (:mod:`.errors`) and the one
procfs reader (:mod:`.procfs`, public as :mod:`exithand.procfs`).  Modules here import
nothing of exithand's above this package.
"""
