#!/usr/bin/env bash
# The accelerator side-by-side: stylejax against NVIDIA's stylegan2-ada-pytorch at 256 px
# config-f (batch 32), stylejax in float32 and bfloat16, fused and non-fused: img/s of G
# forward and of the G+D training step, and the achieved TFLOP/s (XLA's cost analysis) as a
# share of the H200's dense peaks. Written for the lent GPU machine (jax with CUDA, torch;
# no tensorflow, clu or ml_collections, nothing downloadable), in well under 8 minutes.
#
#   tools/device_benchmark.sh ADA_DIR OUT_DIR [WHEEL_DIR]
#
# ADA_DIR: a stylegan2-ada-pytorch checkout (carried with the working tree, never committed);
# WHEEL_DIR: where `pip download ml-collections --no-deps -d WHEEL_DIR` put its wheel, installed
# when ml_collections is missing. The table goes to OUT_DIR/sidebyside_f256.md.
set -euo pipefail
ada=${1:?usage: tools/device_benchmark.sh ADA_DIR OUT_DIR [WHEEL_DIR]}
out=${2:?usage: tools/device_benchmark.sh ADA_DIR OUT_DIR [WHEEL_DIR]}
wheels=${3:-}
cd "$(dirname "$0")/.."
mkdir -p "$out"
if ! python -c "import ml_collections" 2>/dev/null; then
  if [ -z "$wheels" ]; then
    echo "ml_collections is missing: pass WHEEL_DIR holding its wheel" >&2
    exit 2
  fi
  pip install --no-index --no-deps "$wheels"/ml_collections-*.whl
fi
(nvidia-smi || true) > "$out/nvidia-smi.txt" 2>&1
timeout 450 python tools/benchmark.py sidebyside --ada "$ada" --device cuda --configs f256 \
  --dtypes float32,bfloat16 --rounds 2 --iters 5 --no-xla-route 2>"$out/stderr.txt" \
  | tee "$out/sidebyside_f256.md"
