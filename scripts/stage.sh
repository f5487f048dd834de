#!/usr/bin/env bash
# Runs one named stage of `make`, printing its wall time: scripts/stage.sh NAME CMD [ARGS...]
set -uo pipefail
name="$1"; shift
echo "==> $name"
start=$(date +%s%N)
"$@"
rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '==> %s: %d.%01d s%s\n' "$name" $((ms / 1000)) $(((ms % 1000) / 100)) "$([ $rc -eq 0 ] || echo " (FAILED, exit $rc)")"
exit $rc
