#!/usr/bin/env bash
# The GPU benchmark as one prepared script: install JAX with CUDA, run `trainscape bench` on
# both workloads, write bench.json / bench.md (and the memory table) under $OUT.
#
#   OUT=/some/folder bash experiments/gpu_bench.sh
#
# Peers on the GPU: the engine and the Python-driven JAX step loop run on the GPU; the NumPy
# loop runs on the host's CPU (what a user without trainscape would run). The utilization
# denominator is the GPU's own float32 2048x2048 matmul rate at precision HIGHEST, the
# precision the engine uses by default ([train] matmul_precision = "highest": no TF32).
# PyTorch peers are left out: a CUDA build of torch is a multi-GB download.
set -euo pipefail
OUT=${OUT:-results/bench/gpu}
mkdir -p "$OUT"
python -m venv .venv-gpu
. .venv-gpu/bin/activate
pip install -q --upgrade pip
pip install -q -e . "jax[cuda12]"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python -c "import jax; print(jax.devices())" | tee "$OUT/devices.txt"
trainscape bench --workload all --peers engine,jax_step_loop,numpy_loop --repeats 2 \
    --out "$OUT" 2>&1 | tee "$OUT/bench.log"
