#!/usr/bin/env bash
# graft setup: a Python venv that provides libtorch (for tch / torch-sys) and the PyTorch, torchvision
# and timm references the parity tests compare against.
#
# Idempotent and fast when already done: the venv lives outside the clone, keyed by the torch version,
# under ${GRAFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graft}, and `.venv` in the repo is a symlink to it,
# so every clone (and CI) reuses one ~4.7 GB install.
#
# A user with their own libtorch can skip the torch part of this script: export LIBTORCH=/path/to/libtorch
# (it overrides .cargo/config.toml) — the parity tests still need the venv's Python.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
torch_version="$(sed -n 's/^torch==//p' "$repo/scripts/constraints.txt")"
cache="${GRAFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graft}"
venv="$cache/venv-torch$torch_version"
stamp="$venv/.graft-setup-$(cat "$repo/scripts/constraints.txt" "$repo/scripts/requirements.txt" | sha256sum | cut -c1-16)"
python="${PYTHON:-python3}"

die() { printf 'graft setup: %s\n' "$*" >&2; exit 1; }

link_venv() {
    # Stable paths the build uses: .venv -> the venv, .libtorch -> torch inside it (LIBTORCH in
    # .cargo/config.toml points at .libtorch, relative to the repo).
    ln -sfn "$venv" "$repo/.venv"
    local torch_dir
    torch_dir="$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
    ln -sfn "$torch_dir" "$repo/.libtorch"
}

if [ -f "$stamp" ] && [ -x "$venv/bin/python" ]; then
    link_venv
    echo "graft setup: venv ready at $venv (torch $torch_version)"
    exit 0
fi

command -v "$python" >/dev/null 2>&1 || die "Python 3 not found ('$python'). Install Python 3.10+ with pip and venv (Debian: apt-get install python3 python3-venv python3-pip), or set PYTHON=/path/to/python3."
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$python" --version 2>&1) is too old: torch $torch_version needs Python 3.10+. Set PYTHON=/path/to/python3.10+."
"$python" -m pip --version >/dev/null 2>&1 || die "pip is missing for $python (Debian: apt-get install python3-pip)."

mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
    echo "graft setup: creating venv $venv"
    "$python" -m venv "$venv" || die "'$python -m venv' failed (Debian: apt-get install python3-venv)."
fi
echo "graft setup: installing torch $torch_version, torchvision, timm, numpy, safetensors, scikit-learn, sentence-transformers, MiniLM and VADER data, open_clip (~5 GB, first time only)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$repo/scripts/constraints.txt" -r "$repo/scripts/requirements.txt"
"$venv/bin/python" - "$torch_version" <<'PY'
import sys, torch
want = sys.argv[1]
got = torch.__version__.split("+")[0]
if got != want:
    sys.exit(f"graft setup: venv has torch {torch.__version__}, graft needs {want}")
PY
rm -f "$venv"/.graft-setup-*
touch "$stamp"
link_venv
echo "graft setup: done ($(du -sh "$venv" 2>/dev/null | cut -f1) in $venv)"
