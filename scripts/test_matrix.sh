#!/usr/bin/env bash
# The core test suite (everything but the FUSE filesystem and the packaging tests, which do not
# depend on the interpreter) on every Python the package claims besides the main run's: one
# venv per version under EXITHAND_MATRIX_DIR, interpreters found under pyenv or on PATH.  Where
# pyfuse3 builds, the filesystem's basic tests run too.
#
#   bash scripts/test_matrix.sh                      3.9 3.10 3.12 3.13 (3.11 is the main run)
#   EXITHAND_PYTHONS="3.9 3.13" bash scripts/test_matrix.sh
#
# A claimed version with no interpreter fails the run (set EXITHAND_PYTHONS to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${EXITHAND_PYTHONS-"3.9 3.10 3.12 3.13"}
dir=${EXITHAND_MATRIX_DIR:-/opt/exithand-test/matrix}
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
core_deps=(pytest pytest-timeout hypothesis psutil anyio trio uvloop)
failed=()

find_python() {  # the newest pyenv X.Y.*, else pythonX.Y on PATH
    local v=$1 found=""
    for p in "$pyenv_root"/versions/"$v".*/bin/python"$v"; do
        [ -x "$p" ] && found=$p
    done
    [ -n "$found" ] || found=$(command -v "python$v" || true)
    [ -n "$found" ] && echo "$found"
}

for v in $versions; do
    py=$(find_python "$v") || { echo "== python $v: no interpreter found"; failed+=("$v"); continue; }
    echo "== python $v ($py)"
    start=$SECONDS
    venv=$dir/py$v
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "${core_deps[@]}"
    args=(-q -p no:cacheprovider)
    for t in tests/test_*.py; do
        case $t in tests/test_fs_*|tests/test_packaging.py) ;; *) args+=("$t") ;; esac
    done
    if "$venv/bin/python" -m pip install -q 'pyfuse3>=3.5' 2>/dev/null; then
        args+=(tests/test_fs_basic.py)
    else
        # e.g. 3.9: pyfuse3 3.5 (the first with poll) requires Python >= 3.10
        echo "   pyfuse3 >= 3.5 not installable on $v: filesystem tests skipped there"
    fi
    if ! PYTHONPATH=$PWD/src "$venv/bin/python" -m pytest "${args[@]}"; then
        failed+=("$v")
    fi
    echo "== python $v: $((SECONDS - start)) s"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "test_matrix: failed on python ${failed[*]}" >&2
    exit 1
fi
