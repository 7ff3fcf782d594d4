#!/usr/bin/env bash
# Install exithand (with its filesystem extra) from this checkout into its own virtual
# environment, and put the command, its man pages and its shell completions where users expect.
#
#   sudo bash scripts/install.sh          system-wide: venv /opt/exithand,
#                                         /usr/local/bin/exithand, /usr/local/share/{man,...}
#   bash scripts/install.sh --user        one user: venv ~/.local/share/exithand/venv,
#                                         ~/.local/bin/exithand, ~/.local/share/{man,...}
#
# Why a venv: Debian 12's python3 is "externally managed" (PEP 668): a system-wide
# `pip install` is refused, and mixing pip packages into /usr breaks apt's.  A venv made
# from Debian's own /usr/bin/python3 is the supported way (pipx does the same per user:
# `apt install pipx && pipx install 'exithand[fs]'` works too).
#
# Environment (all optional): PYTHON (default /usr/bin/python3 if present, else python3),
# EXITHAND_VENV (the venv directory), EXITHAND_PREFIX (where bin/ and share/ links go),
# EXITHAND_EXTRAS (default "fs"; "" for the core library and CLI only, which need no compiler),
# EXITHAND_NO_APT=1 (do not apt-get install build dependencies; as root they are installed).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=system
[ "${1:-}" = "--user" ] && mode=user
if [ "$mode" = system ]; then
    venv=${EXITHAND_VENV:-/opt/exithand}
    prefix=${EXITHAND_PREFIX:-/usr/local}
else
    venv=${EXITHAND_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/exithand/venv}
    prefix=${EXITHAND_PREFIX:-$HOME/.local}
fi
extras=${EXITHAND_EXTRAS-fs}
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

if [ "$(id -u)" = 0 ] && [ -z "${EXITHAND_NO_APT:-}" ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # python3-venv: venv + ensurepip (Debian splits them out); the rest builds pyfuse3:
    # fuse3 + libfuse3-dev + pkg-config + gcc + python3-dev (Python.h)
    apt-get install -y -qq python3 python3-venv python3-dev fuse3 libfuse3-dev pkg-config \
        gcc >/dev/null
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "install.sh: $PYTHON has no venv/ensurepip: apt-get install python3-venv" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
spec=.
[ -n "$extras" ] && spec=".[$extras]"
"$venv/bin/python" -m pip install -q "$spec"

# Links, as `pipx` makes them: the command on PATH, man pages on MANPATH (man(1) derives
# PREFIX/share/man from PREFIX/bin on PATH), completions where bash-completion, zsh and fish
# look for them.
link() {  # link SRC DIR [NAME]
    mkdir -p "$2"
    ln -sfn "$1" "$2/${3:-$(basename "$1")}"
}
link "$venv/bin/exithand" "$prefix/bin"
for page in "$venv"/share/man/man1/exithand*.1; do
    link "$page" "$prefix/share/man/man1"
done
link "$venv/share/bash-completion/completions/exithand" "$prefix/share/bash-completion/completions"
link "$venv/share/zsh/site-functions/_exithand" "$prefix/share/zsh/site-functions"
link "$venv/share/fish/vendor_completions.d/exithand.fish" \
    "$prefix/share/fish/vendor_completions.d"

echo "exithand installed: $prefix/bin/exithand -> $venv (python: $("$venv/bin/python" -V))"
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on your PATH" ;;
esac
