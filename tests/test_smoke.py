"""Smoke: the package imports and a non-child's death is seen."""

import exithand


def test_nonchild_reaped_status(no_fd_leak, victim_factory, backend):
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        assert h.is_alive()
        v.exit(7)
        st = h.wait(timeout=10)
        assert v.keeper.stdout.readline() == b"reaped\n"
        st = h.status()
        assert st is not None and st.known and st.exit_code == 7, st
