#!/usr/bin/env bash
# A crate outside this repository that depends on graft as a user's would: examples/downstream
# copied to a temporary directory (its path dependencies pointed back here), built, and run with
# no LD_LIBRARY_PATH — graft-build's one-line build script puts libtorch on its rpath. It
# fine-tunes the digits source model that the finetune_imagefolder example wrote, on that
# example's image folder. README.md's "Use graft from your crate" program must be this crate's
# src/main.rs, character for character. Run by `make test` after the examples.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
src=examples/downstream
# the README shows the program that is built here
readme_prog=$(awk '/<!-- downstream:main.rs -->/{f=1; next} f && /^```rust$/{g=1; next} g && /^```$/{exit} g' README.md)
if [ "$readme_prog" != "$(cat "$src/src/main.rs")" ]; then
    echo "error: README.md's \"Use graft from your crate\" program differs from $src/src/main.rs" >&2
    diff <(echo "$readme_prog") "$src/src/main.rs" >&2 || true
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
sed -i "s#\"\.\./\.\.#\"$repo#g" "$work/Cargo.toml"
# the versions the workspace is tested with
cp Cargo.lock "$work/Cargo.lock"
export LIBTORCH="${LIBTORCH:-$repo/.libtorch}"
# one target directory: the dependencies built for the workspace are reused
CARGO_TARGET_DIR="$repo/target" cargo build -q --manifest-path "$work/Cargo.toml"
bin="$repo/target/debug/graft-downstream"
# ldd's output taken whole first: `ldd | grep -q` under pipefail fails when grep stops reading
# early and ldd dies of SIGPIPE — a found libtorch reported as missing
libs=$(ldd "$bin")
if ! grep -q "libtorch_cpu.so => /" <<<"$libs"; then
    echo "error: the downstream binary does not find libtorch by itself:" >&2
    grep -i torch <<<"$libs" >&2
    exit 1
fi
ex="$repo/target/graft-examples"
if [ ! -d "$ex/digits04" ] || [ ! -d "$ex/digits59-folder/train" ]; then
    echo "error: run the finetune_imagefolder example first (make examples)" >&2
    exit 1
fi
data="$work/data"
mkdir -p "$data"
cp -r "$ex/digits59-folder/train" "$ex/digits59-folder/val" "$data/"
out=$(env -u LD_LIBRARY_PATH "$bin" "$ex/digits04" "$data")
echo "$out"
grep -q "val top-1" <<<"$out"
test -f "$data/finetuned/model.safetensors"
