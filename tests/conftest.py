import os

import matplotlib
import pytest

import trainscape

matplotlib.use("Agg")

# TRAINSCAPE_TEST_LAYOUT=gpu: the suite on the CPU as the engine plans a GPU's work (one
# device; blocks of `plan.block_runs("gpu")` runs, each vmapped whole; the GPU's loop unroll),
# and tests marked cpu_only skipped as on a GPU. A test that assumes the CPU's blocks of 32
# fails here as it would on a GPU, without one. Only the planning is the GPU's: the programs
# still run on XLA:CPU, so GPU numerics (matmul algorithms, TF32) are not emulated.
LAYOUT_ENV = "TRAINSCAPE_TEST_LAYOUT"


def _plan_as_on_a_gpu() -> None:
    from trainscape import runtime
    from trainscape.engine import plan

    runtime._ONE_DEVICE_NOTED[0] = True  # one device, as on the GPU: nothing to note
    block_runs, group_size, loop_unroll = plan.block_runs, plan.group_size, plan.loop_unroll
    plan.block_runs = lambda platform=None, flops_per_run_step=None: block_runs(
        "gpu", flops_per_run_step)
    plan.group_size = lambda flops_per_run_step, platform=None: group_size(
        flops_per_run_step, "gpu")
    plan.loop_unroll = lambda platform=None: loop_unroll("gpu")


def pytest_configure(config):
    """What the command line sets up for itself (runtime.configure): every core a JAX CPU
    device, so the sharded paths run, and the compile cache."""
    layout = os.environ.get(LAYOUT_ENV)
    if layout not in (None, "", "gpu"):
        raise pytest.UsageError(f"{LAYOUT_ENV}: got {layout!r}; allowed: gpu")
    if layout == "gpu":
        trainscape.configure(cpu_devices=1)
        _plan_as_on_a_gpu()
    else:
        trainscape.configure()


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `cpu_only("why")` when JAX's default backend is not a CPU (the suite
    run on a GPU machine): they assert facts of XLA:CPU or of this project's CPU setup."""
    marked = [item for item in items if item.get_closest_marker("cpu_only")]
    if not marked:
        return
    import jax

    backend = jax.default_backend()
    if os.environ.get(LAYOUT_ENV):
        backend = f"cpu planned as {os.environ[LAYOUT_ENV]} ({LAYOUT_ENV})"
    elif backend == "cpu":
        return
    for item in marked:
        why = item.get_closest_marker("cpu_only").args
        item.add_marker(pytest.mark.skip(
            reason=f"CPU-only ({why[0] if why else 'asserts CPU behaviour'}); backend is "
                   f"{backend}"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def x64():
    """64-bit JAX types for a test's own float64 computations (trainscape scopes its own)."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture
def traces(monkeypatch):
    """How many times the training program was traced since the test began (a recompile
    traces it again): a counting wrapper around the one function the engine compiles."""
    from trainscape.engine import compile as engine_compile

    count = [0]
    real = engine_compile.train_one

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_compile, "train_one", counting)
    return lambda: count[0]
