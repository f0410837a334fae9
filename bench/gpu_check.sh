#!/usr/bin/env bash
# Training throughput on a lent GPU machine (no network there), for an LFM2-350M-shaped random model, and the
# estimated time of one Phase 14D seed arm (2k examples × 3 epochs).
#
#   bash bench/gpu_check.sh --prepare     # HERE (with network): .gpu-deps/ = what the GPU image lacks
#                                         #   (pydantic, datasets, trl, gguf … for its Python 3.12) + tokenizer
#   bash bench/gpu_check.sh               # THERE: device run with carry [".gpu-deps"]; tables go to $OUT
#
# The GPU image has torch (CUDA), transformers, peft and accelerate; the rest comes from .gpu-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=.gpu-deps

if [[ "${1:-}" == "--prepare" ]]; then
    rm -rf "$DEPS" && mkdir -p "$DEPS"
    .venv/bin/python -m pip install --quiet --target "$DEPS/site" --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        pydantic pydantic-core annotated-types typing-inspection datasets dill multiprocess trl gguf
    .venv/bin/python - <<'EOF'
from transformers import AutoTokenizer
from ada_slm.run import models
AutoTokenizer.from_pretrained(models.resolve("smollm2-135m")).save_pretrained(".gpu-deps/tokenizer")
EOF
    du -sh "$DEPS"
    exit 0
fi

PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/$DEPS/site${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TQDM_DISABLE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: not a GPU machine"; } | tee "$OUT/gpu.txt"
$PY bench/matmul_peak.py --seconds 1 | tee "$OUT/matmul_peak.txt"
MODEL=/tmp/lfm2-350m-shaped
$PY bench/lfm2_350m_shaped.py "$MODEL" --tokenizer "$DEPS/tokenizer"
# The seed's two splits of 16 sequences per step, then the GPU lever: one micro-batch of 16 (same objective).
for split in "4 4" "1 16" "16 1"; do
    set -- $split
    echo "== micro $1 × accum $2" | tee -a "$OUT/train_throughput.txt"
    $PY bench/train_throughput.py --base "$MODEL" --sequences 256 --micro "$1" --accum "$2" \
        --only "${ONLY:-plain,trl,trl-fp32,ours}" 2>&1 | tee -a "$OUT/train_throughput.txt"
done
