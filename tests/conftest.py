import os
from pathlib import Path

import layout
import matplotlib
import pytest

import trainscape

matplotlib.use("Agg")


def pytest_configure(config):
    """What the command line sets up for itself (runtime.configure): every core a JAX CPU
    device, so the sharded paths run, and the compile cache."""
    try:
        planned = layout.wanted()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if planned == "gpu":  # the suite as on a GPU (tests/layout.py)
        layout.plan_as_on_a_gpu()
    trainscape.configure()


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `cpu_only("why")` when JAX's default backend is not a CPU (the suite
    run on a GPU machine): they assert facts of XLA:CPU or of this project's CPU setup."""
    marked = [item for item in items if item.get_closest_marker("cpu_only")]
    if not marked:
        return
    import jax

    backend = jax.default_backend()
    if layout.wanted():
        backend = f"cpu planned as {layout.wanted()} ({layout.ENV})"
    elif backend == "cpu":
        return
    for item in marked:
        why = item.get_closest_marker("cpu_only").args
        item.add_marker(pytest.mark.skip(
            reason=f"CPU-only ({why[0] if why else 'asserts CPU behaviour'}); backend is "
                   f"{backend}"))


def _entries(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


@pytest.fixture(autouse=True)
def _nothing_written_to_the_working_folder():
    """`ts.run`'s default folder is ./results/<name>-<time>: a test that leaves it to choose
    would leave sweeps in the checkout's results/ (each test writes under tmp_path or keeps
    its results in memory, out=None)."""
    before = _entries(Path("results"))
    yield
    new = _entries(Path("results")) - before
    assert not new, f"a test wrote into {Path('results').resolve()}: {sorted(new)}"


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
