#!/usr/bin/env bash
# Install mlh into ./.venv on a bare Debian machine with Python 3.11.
# System libraries that GPAW compiles against (libxc, OpenBLAS) come from apt;
# GPAW 26.7 compiles its sources as C++, hence CC=g++.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libxc-dev libopenblas-dev g++ python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip re-resolves every dependency even when nothing changed (~30 s with a warm cache); skip
# it when this venv was installed from the same pyproject.toml and still imports.
stamp=.venv/.mlh-installed-pyproject
want=$(sha256sum pyproject.toml | cut -d" " -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && .venv/bin/python -c "import gpaw, mlh" 2>/dev/null; then
    echo "dependencies unchanged since the last install (pyproject.toml $want)"
else
    rm -f "$stamp"
    .venv/bin/python -m pip install -q --upgrade pip
    CC=g++ .venv/bin/python -m pip install -q -e ".[test]"
    echo "$want" > "$stamp"
fi
.venv/bin/python -c "import gpaw, mlh; print('mlh installed; GPAW', gpaw.__version__)"
