#!/usr/bin/env bash
# Wall time of `make demo` from a warm venv (installed, embedded model converted), into fresh results/exports
# folders so that nothing is skipped as already done. Goal: ≤ 5 minutes.
#
#   bash bench/demo_time.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
.venv/bin/python -c "from ada_slm.run import models; models.resolve('smollm2-135m')"   # warm: converted once
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s.%N)
make demo RESULTS="$tmp/results" EXPORTS="$tmp/exports" > "$tmp/demo.log" 2>&1 || { tail -20 "$tmp/demo.log"; exit 1; }
end=$(date +%s.%N)
grep -E "^\[[0-9]+/[0-9]+\]|^done " "$tmp/demo.log" || true
python3 - "$start" "$end" <<'PY'
import sys
s = float(sys.argv[2]) - float(sys.argv[1])
print(f"make demo (warm venv): {s:.0f} s = {s / 60:.1f} min   goal ≤ 5 min: {'met' if s <= 300 else 'NOT met'}")
PY
