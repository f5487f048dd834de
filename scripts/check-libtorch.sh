#!/usr/bin/env bash
# Fails with what to run when libtorch is missing or is not the version tch 0.26 needs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="$(sed -n 's/^torch==//p' "$repo/scripts/constraints.txt")"
lt="${LIBTORCH:-$repo/.libtorch}"
if [ ! -d "$lt/lib" ] || [ ! -e "$lt/lib/libtorch_cpu.so" ]; then
    echo "graft: no libtorch at $lt (expected $lt/lib/libtorch_cpu.so)." >&2
    echo "       Run 'make setup' (scripts/setup.sh) to install torch==$want into the venv," >&2
    echo "       or export LIBTORCH=/path/to/libtorch-$want." >&2
    exit 1
fi
ver=""
if [ -f "$lt/version.py" ]; then
    ver="$(sed -n "s/^__version__ = ['\"]\([^'\"+]*\).*/\1/p" "$lt/version.py")"
elif [ -f "$lt/build-version" ]; then
    ver="$(cut -d+ -f1 < "$lt/build-version")"
fi
if [ -n "$ver" ] && [ "$ver" != "$want" ] && [ -z "${LIBTORCH_BYPASS_VERSION_CHECK:-}" ]; then
    echo "graft: libtorch at $lt is version $ver; graft (tch 0.26) needs $want." >&2
    echo "       Run 'make setup' to install torch==$want, or point LIBTORCH at libtorch $want," >&2
    echo "       then 'cargo clean -p torch-sys'." >&2
    exit 1
fi
