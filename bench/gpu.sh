#!/usr/bin/env bash
# The GPU figures in one table, in at most 8 minutes on one H200 (bench/gpu_bench.py):
# PixelCNN++ paper-config training img/s and MFU (batch 16/64; fp32, bf16, bf16+compile),
# cached sampling s/img (16 and 256 images), Glow CIFAR training img/s and 256x256 sampling
# time, and the CUDA tests. Needs a Python with a CUDA build of torch 2.13 and this
# package's dependencies (PYTHON=..., default python3). Extra arguments go to gpu_bench.py.
#
#   bench/gpu.sh                  # on the GPU machine
#   bench/gpu.sh --device cpu --tiny --no-compile   # smoke test anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch, sys; print("# nvidia:", torch.cuda.is_available() and torch.cuda.get_device_name(0))' || true
exec timeout --signal=INT --kill-after=20 "${GPU_BENCH_LIMIT_S:-470}" "$PY" bench/gpu_bench.py --budget-s 430 "$@"
