#!/usr/bin/env bash
# Install test dependencies and run the whole suite (lint, types, tests), then the core suite on
# every other supported Python (scripts/test_matrix.sh).  Run as root on Debian 12; a stock image
# works: everything is installed into a venv (PEP 668: Debian's python3 refuses system-wide pip).
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# Environment: PYTHON (the interpreter of the main run; default python3), EXITHAND_TEST_VENV
# (its venv; default /opt/exithand-test/venv), EXITHAND_SKIP_MATRIX=1 (main run only),
# EXITHAND_PYTHONS (versions for the matrix; see scripts/test_matrix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# python3-venv/python3-dev: a venv from Debian's python3 and headers to build pyfuse3;
# fuse3 + libfuse3-dev + pkg-config + gcc: build pyfuse3 (exithand[fs]) and mount it in the
# tests (gcc also builds the C test helpers); man-db, bash-completion, zsh, fish, systemd: the
# packaging tests (man pages, the three completions, systemd-analyze on the unit);
# systemd (journald, journalctl), prometheus (prometheus, promtool), dbus (dbus-daemon): the
# observability tests run the real servers (tests/test_obs_*.py); uidmap + passwd: real users
# with subordinate uids mapped by newuidmap (tests/test_fs_persons.py); busybox, forkstat: peers
apt-get install -y -qq util-linux uidmap passwd procps gcc fuse3 libfuse3-dev pkg-config python3 \
    python3-venv python3-dev man-db bash-completion zsh fish systemd prometheus dbus busybox \
    forkstat >/dev/null
modprobe fuse 2>/dev/null || true

venv=${EXITHAND_TEST_VENV:-/opt/exithand-test/venv}
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# editable inside this venv only: the tests import ./src first anyway (tests/conftest.py)
"$venv/bin/python" -m pip install -q -e '.[test,fs,metrics,notify]'
PATH="$venv/bin:$PATH"
ruff check src tests tools setup.py
mypy
# what this kernel grants root and nobody (tests that need a refused feature skip, naming it)
python tests/kprobe.py
python -m pytest -q "$@"
if [ -z "${EXITHAND_SKIP_MATRIX:-}" ]; then
    bash scripts/test_matrix.sh
fi
