"""TRAINSCAPE_TEST_LAYOUT=gpu: the suite on the CPU as the engine plans a GPU's work (one
device; blocks of `plan.block_runs("gpu")` runs, each vmapped whole; the GPU's loop unroll),
and tests marked cpu_only skipped as on a GPU. A test that assumes the CPU's blocks of 32
fails there as it would on a GPU, without one. Only the planning is the GPU's: the programs
still run on XLA:CPU, so GPU numerics (matmul algorithms, TF32) are not emulated.

The test process applies it in conftest.py; the trainscape processes that tests start apply
it through tests/gpu_layout/sitecustomize.py, which conftest.py puts on their PYTHONPATH.
Imports neither pytest nor trainscape at module level, so a fresh process can use it early."""

import os
import sys
from pathlib import Path

ENV = "TRAINSCAPE_TEST_LAYOUT"
SITE = Path(__file__).resolve().parent / "gpu_layout"


def wanted() -> str | None:
    """The layout asked for, None for the machine's own; ValueError for another value."""
    layout = os.environ.get(ENV) or None
    if layout not in (None, "gpu"):
        raise ValueError(f"{ENV}: got {layout!r}; allowed: gpu")
    return layout


def plan_as_on_a_gpu() -> None:
    """Patch the engine's planning to a GPU's, on one CPU device, in this process and in the
    processes it starts (their environment)."""
    os.environ["TRAINSCAPE_CPU_DEVICES"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])])
    if str(SITE) not in sys.path:  # for tests that pass their own sys.path on
        sys.path.append(str(SITE))
    from trainscape import runtime
    from trainscape.engine import plan

    if getattr(plan, "_planned_as_gpu", False):
        return
    runtime._ONE_DEVICE_NOTED[0] = True  # one device, as on the GPU: nothing to note
    block_runs, group_size, loop_unroll = plan.block_runs, plan.group_size, plan.loop_unroll
    plan.block_runs = lambda platform=None, flops_per_run_step=None: block_runs(
        "gpu", flops_per_run_step)
    plan.group_size = lambda flops_per_run_step, platform=None: group_size(
        flops_per_run_step, "gpu")
    plan.loop_unroll = lambda platform=None: loop_unroll("gpu")
    plan._planned_as_gpu = True
