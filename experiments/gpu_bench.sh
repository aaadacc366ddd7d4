#!/usr/bin/env bash
# The GPU checks as one prepared script, each step under its own time limit and all of them
# under one budget, so that one slow or failing step cannot cost the others' numbers. Needs a
# Python whose JAX sees the GPU (`pip install -U "jax[cuda12]"`, or a machine image that has
# it); PyTorch with CUDA is used for the torch peers when present. Everything lands in $OUT
# (at most 8 files), each file as soon as its step ends:
#
#   log.txt            versions, nvidia-smi, every step's output with its wall time, and at
#                      the end the steps that did not run (skipped for lack of time)
#   bench-seed.json/.md, bench-small.json/.md
#                      `trainscape bench --workload W`: run-steps/s, ratios, utilization
#                      against the GPU's own float32 matmul rate at precision HIGHEST
#   gap-seed.json, gap-small.json
#                      experiments/engine_gap.py: the engine's compiled block programs alone,
#                      its init program alone, ts.run end to end and the JAX step loop,
#                      and the programs rebuilt six ways (`--variants`: without early exit,
#                      its loop unrolled 4 blocks, without the summaries, TF32 matmuls, the
#                      step loop's layout, the loop unrolled 16 blocks)
#   runs.tar.gz        rewritten after every step: runs.parquet + meta.json of the GPU sweeps
#                      below, the `diverging` bench's bench.json/.md (early exit on and off),
#                      gap-small-cmdbuf/ (engine_gap.py again with XLA's command buffers for
#                      loops and branches) and host-overlap/ (experiments/host_overlap_ab.py)
#
# Steps, most wanted first (the order they run in):
#   bench-seed bench-small   the engine against every peer (the 1.5x target over the step loop)
#   bench-diverging          the `diverging` workload with early exit on and off
#   run-highest compare-cpu  the seed question at matmul precision "highest" (the default),
#                            compared with the CPU's copy in results/studies/seed_question
#   tests-early-exit         tests/engine/test_early_exit.py: bit-identity on the GPU
#   tests                    the default test suite, the GPU as JAX's default backend
#   gap-small gap-seed       where the engine's time goes, and which rebuilt program pays
#   gap-small-cmdbuf host-overlap run-again same-bits run-det1 run-det2 same-bits-det
#   run-tf32 compare-tf32    command buffers, the host worker, bits from one process to the
#                            next, and TF32 against "highest"
#
# Time: BUDGET (default 540 s) is the whole script's; a step gets its own limit or what is
# left of the budget, whichever is less, and one with under 20 s left is skipped. On the H200
# with 0.8.0 the steps took: bench-seed 89 s, bench-small 48 s, each `trainscape run` 6-18 s,
# the test suite 148 s (533 tests then, about 820 now; TESTS_LIMIT, default 300 s); the gap
# steps and the host worker have not run on a GPU yet. Where a GPU machine is at hand for a
# short while (15 minutes, say), run it twice on that machine: first under a 600 s limit,
#
#   OUT=$OUT BUDGET=540 bash experiments/gpu_bench.sh
#
# and, at once while the machine is warm, a second with STEPS set to the names the first
# one's log.txt lists as not run and BUDGET to what the session has left, e.g.
#
#   OUT=$OUT BUDGET=200 STEPS="tests gap-small-cmdbuf" bash experiments/gpu_bench.sh
#
# STEPS: the step names to run (shell patterns, space- or comma-separated; default all).
# SKIP_TESTS=1 leaves out both test steps.
#
# Offline machines: Python wheels in ./.whl are installed into /tmp/site first. A CUDA image
# without pydantic: run `bash experiments/gpu_wheels.sh` where there is network and copy .whl/
# along with the checkout; without it the script stops after the versions, exit 3. Knobs (also for a smoke test on a CPU): WORKLOADS, PEERS, BENCH_ARGS,
# GAP_ARGS, GAP_VARIANTS, RUN_SETS, TEST_ARGS, TESTS_LIMIT, SKIP_TESTS, STEPS, BUDGET, WORK
# (the steps' folder, default /tmp/trainscape-gpu-bench; empty it for a fresh start), PYTHON.
OUT=${OUT:-results/bench/gpu}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
# the steps' folders: kept across calls on one machine, so that a second call's comparisons
# (same-bits, compare-tf32) find the first call's sweeps
W=${WORK:-/tmp/trainscape-gpu-bench}
mkdir -p "$W"
NOT_RUN=()
export PYTHONUNBUFFERED=1
# JAX and torch share the GPU in the bench process: no up-front grab of 75% of its memory
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/log.txt"

wanted() {  # wanted NAME: is NAME among STEPS (all steps when STEPS is empty)?
    local - pat
    [ -z "${STEPS:-}" ] && return 0
    set -f  # the patterns are matched against names, not files
    for pat in ${STEPS//,/ }; do
        # shellcheck disable=SC2053  # a pattern on purpose
        [[ $1 == $pat ]] && return 0
    done
    return 1
}

pack() {  # the sweeps' and experiments' files so far, without curves and figures, in one file
    (cd "$W" && tar czf "$OUT/runs.tar.gz.part" --exclude=curves.parquet --exclude='*.png' \
        --exclude='chunks' . 2>/dev/null) && mv "$OUT/runs.tar.gz.part" "$OUT/runs.tar.gz"
}

step() {  # step NAME SECONDS CMD...: run CMD under min(SECONDS, what is left of BUDGET)
    local name=$1 lim=$2 t0=$SECONDS rc left
    shift 2
    wanted "$name" || return 0
    left=$((BUDGET - SECONDS - 10))  # 10 s kept for the last pack
    if [ "$left" -lt 20 ]; then
        NOT_RUN+=("$name")
        echo "== $name: not run, ${left} s left of BUDGET=${BUDGET}" | tee -a "$LOG"
        return 0
    fi
    [ "$lim" -gt "$left" ] && lim=$left
    echo "== $name: $* (limit ${lim}s, $(date -u +%T))" | tee -a "$LOG"
    timeout "$lim" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
    pack
}

{
    date -u
    nvidia-smi || true
    nproc
    "$PY" - <<'PYEOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for m in ("jax", "jaxlib", "optax", "numpy", "pandas", "pyarrow", "pydantic", "torch",
          "trainscape"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001
        print(m, "missing:", e)
import jax
print("devices", jax.devices(), "backend", jax.default_backend())
PYEOF
    echo "budget ${BUDGET} s; steps: ${STEPS:-all}"
} 2>&1 | tee -a "$LOG"
if ! "$PY" -c "import trainscape" >>"$LOG" 2>&1; then
    echo "== trainscape does not import (above); pydantic: bash experiments/gpu_wheels.sh" \
        "where there is network, and copy .whl/ along" | tee -a "$LOG"
    exit 3
fi

# the issue's target: the engine against the JAX step loop and every other peer, one process
# per workload (a timeout costs one workload only)
# (a bench never replaces its files: a step run again measures into a fresh folder)
for wl in ${WORKLOADS:-seed small}; do
    wanted "bench-$wl" && rm -rf "$W/bench-$wl"
    step "bench-$wl" 150 "$PY" -m trainscape bench --workload "$wl" ${BENCH_ARGS:---repeats 3} \
        ${PEERS:+--peers $PEERS} --out "$W/bench-$wl"
    for f in json md; do cp "$W/bench-$wl/bench.$f" "$OUT/bench-$wl.$f" 2>/dev/null; done
done

# early exit on the accelerator, where the loop over steps becomes a while_loop with a
# data-dependent condition: the `diverging` workload with early exit on and off in the same
# rounds (its markdown lands in log.txt, its json in runs.tar.gz)
wanted bench-diverging && rm -rf "$W/bench-diverging"
step bench-diverging 120 "$PY" -m trainscape bench --workload diverging \
    --peers engine,engine_no_early_exit ${BENCH_ARGS:---repeats 3} --out "$W/bench-diverging"

# the seed question at "highest", and its labels and losses against the CPU's
step run-highest 120 "$PY" -m trainscape run --no-progress ${RUN_SETS:-} \
    --out "$W/seed_question_highest"
step compare-cpu 60 "$PY" -m trainscape compare-precision \
    results/studies/seed_question "$W/seed_question_highest"

# is early exit exact on this GPU too? (its `while_loop` and the full `scan` are different
# programs, and XLA:GPU picks matmul algorithms by timing them)
[ -n "${SKIP_TESTS:-}" ] || step tests-early-exit 120 "$PY" -m pytest -q -p no:cacheprovider \
    -o addopts="-ra" ${TEST_ARGS:--n 8} tests/engine/test_early_exit.py

# the default suite (tests marked cpu_only skip themselves on a GPU)
[ -n "${SKIP_TESTS:-}" ] || step tests "${TESTS_LIMIT:-300}" "$PY" -m pytest -q \
    -p no:cacheprovider -o addopts="-ra" -m "not slow" ${TEST_ARGS:--n 8} tests

# where the engine's time goes (its programs alone, ts.run, the step loop) and which rebuilt
# program pays: `small` first, the workload furthest from the target
for wl in $(for w in ${WORKLOADS:-seed small}; do echo "$w"; done | sort -r); do
    step "gap-$wl" 150 "$PY" experiments/engine_gap.py --workload "$wl" ${GAP_ARGS:-} \
        --variants "${GAP_VARIANTS:-no_early_exit,unroll4,no_summaries,precision_default,samples_shared,unroll16}" \
        --out "$W/gap-$wl"
    cp "$W/gap-$wl/engine_gap.json" "$OUT/gap-$wl.json" 2>/dev/null
done

# XLA:GPU's command buffers (CUDA graphs) with while loops and conditionals added to the
# default command types: does the early-exit loop's per-iteration condition stop costing?
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL" \
    step gap-small-cmdbuf 120 "$PY" experiments/engine_gap.py --workload small ${GAP_ARGS:-} \
    --variants no_early_exit,unroll4 --out "$W/gap-small-cmdbuf"

# the host's work on a chunk (tables, Parquet, checksums, the final files) overlapped with the
# next chunk's compute, against one after the other and against 0.12.1's assembly after the
# last chunk: sweeps on disk, chunks of 2048 runs so that there is something to overlap
step host-overlap 180 "$PY" experiments/host_overlap_ab.py --cases tiny,small --rounds 3 \
    --chunk-size 2048 --out "$W/host-overlap"

# the same sweep again in a fresh process that compiles (and autotunes) everything anew:
# are a GPU's results the same bits from one process to the next?
step run-again 120 "$PY" -m trainscape run --no-progress --no-plot --no-cache ${RUN_SETS:-} \
    --out "$W/seed_question_again"
SAME_BITS='
import sys, numpy as np, pandas as pd
a, b = (pd.read_parquet(f"{d}/runs.parquet") for d in sys.argv[1:])
num = [c for c in a.columns if a[c].dtype.kind == "f"]
same = {c: int(np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True)) for c in num}
rows = int((~np.isclose(a[num], b[num], rtol=0, atol=0, equal_nan=True)).any(axis=1).sum())
print(f"runs with any float column different: {rows} of {len(a)}; labels different: "
      f"{int((a.label != b.label).sum())}; column identical: {same}")
'
step same-bits 60 "$PY" -c "$SAME_BITS" "$W/seed_question_highest" "$W/seed_question_again"
# and twice more with XLA's deterministic-ops flag (GPU autotuning picks by timing)
for i in 1 2; do
    XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" step "run-det$i" 120 \
        "$PY" -m trainscape run --no-progress --no-plot --no-cache ${RUN_SETS:-} --out "$W/det$i"
done
step same-bits-det 60 "$PY" -c "$SAME_BITS" "$W/det1" "$W/det2"
step run-tf32 120 "$PY" -m trainscape run --no-progress --no-plot ${RUN_SETS:-} \
    --set train.matmul_precision=default --out "$W/seed_question_tf32"
step compare-tf32 60 "$PY" -m trainscape compare-precision \
    "$W/seed_question_highest" "$W/seed_question_tf32"

pack
echo "== not run (STEPS for a next call): ${NOT_RUN[*]:-none}" | tee -a "$LOG"
echo "== done $(date -u +%T) after $SECONDS s" | tee -a "$LOG"
