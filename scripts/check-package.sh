#!/usr/bin/env bash
# Every crate packages as crates.io would take it: `cargo package` on the workspace (manifest
# metadata, the files each crate ships), each .crate under the registry's 10 MiB limit, and every
# file a crate's code embeds (include_bytes! / include_str!) inside its own package. The build of
# each package from its tarball (cargo package's verify step) is left out here: it rebuilds every
# dependency from scratch (tch, tokenizers, image: 14 min here) — run `cargo package --workspace`
# for it; it passes for all 17 crates.
# Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f target/package/*.crate
cargo package -q --workspace --no-verify --allow-dirty
limit=$((10 * 1024 * 1024))
for f in target/package/*.crate; do
    size=$(stat -c %s "$f")
    if [ "$size" -gt "$limit" ]; then
        echo "error: $f is $size bytes, over crates.io's 10 MiB limit" >&2
        exit 1
    fi
done
for manifest in Cargo.toml crates/*/Cargo.toml; do
    dir=$(dirname "$manifest")
    name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
    listed=$(cargo package -q --list --allow-dirty -p "$name")
    # embedded files, relative to the source file that embeds them
    { grep -rnoE 'include_(bytes|str)!\("[^"]+"\)' --include=*.rs "$dir/src" || true; } |
        while IFS=: read -r file _ inc; do
            rel=$(sed -E 's/include_(bytes|str)!\("([^"]+)"\)/\2/' <<<"$inc")
            path=$(realpath -m --relative-to="$dir" "$(dirname "$file")/$rel")
            if ! grep -qxF "$path" <<<"$listed"; then
                echo "error: $name embeds $path ($file), which its package does not ship" >&2
                exit 1
            fi
        done
done
echo "cargo package: $(ls target/package/*.crate | wc -l) crates, largest $(ls -S target/package/*.crate | head -1 | xargs stat -c '%s bytes (%n)')"
