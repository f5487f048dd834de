#!/usr/bin/env bash
# The pure-Rust deployment path: build graft-cli with --no-default-features, check the binary
# links no libtorch, and run a torchvision-written user model on --backend ndarray against
# torchvision's own logits (≤ 1e-3 × max|ref|); check the facade builds without libtorch
# (`graft-tl = { default-features = false }`). Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p graft-cli --no-default-features
# the facade without its default feature: the pure-Rust stack, no libtorch in its tree
cargo check -q -p graft-tl --no-default-features --lib
# (each command's output is taken whole before grep reads it: `a | grep -q` under pipefail fails
# when grep stops reading early and `a` dies of SIGPIPE, which turns a found match into "absent")
tree=$(cargo tree -q -p graft-tl --no-default-features -e normal)
if grep -q "torch-sys" <<<"$tree"; then
    echo "error: graft with default-features = false depends on libtorch (torch-sys)" >&2
    exit 1
fi
bin=target/graft-ndarray-only
cp target/debug/graft "$bin"
libs=$(ldd "$bin")
if grep -qi torch <<<"$libs"; then
    echo "error: the --no-default-features graft links libtorch:" >&2
    grep -i torch <<<"$libs" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python tests/python/cli_fixture.py "$work"
listed=$("$bin" models --models-dir "$work/models" 'tv_*')
grep -q tv_small <<<"$listed"
"$bin" infer --models-dir "$work/models" --model tv_small --input "$work/x.npy" \
    --output "$work/y.npy" --backend ndarray
if "$bin" infer --model resnet18_small --input "$work/x.npy" --output "$work/t.npy" \
    --backend tch 2>"$work/err"; then
    echo "error: --backend tch should fail in a build without libtorch" >&2
    exit 1
fi
grep -q "without libtorch" "$work/err"
.venv/bin/python - "$work" <<'PY'
import sys
import numpy as np
w = sys.argv[1]
y, r = np.load(f"{w}/y.npy"), np.load(f"{w}/ref.npy")
rel = float(np.abs(y - r).max() / np.abs(r).max())
print(f"ndarray-only graft vs torchvision: shape {y.shape}, max abs diff / max|ref| = {rel:.2e}")
sys.exit(0 if y.shape == r.shape and rel <= 1e-3 else 1)
PY
echo "ndarray-only binary: no libtorch linked ($(du -h "$bin" | cut -f1))"
