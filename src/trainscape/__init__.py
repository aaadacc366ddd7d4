"""trainscape: map where training converges, spikes and diverges across hyperparameter grids."""

import os

import jax

# XLA runs one vmapped chunk on one CPU thread; exposing every core as its own host device lets
# the engine shard the run axis over them (TRAINSCAPE_CPU_DEVICES=1 turns this off). It must be
# set before JAX initialises its backends, hence here; if they already are, it is left alone.
try:
    jax.config.update(
        "jax_num_cpu_devices",
        int(os.environ.get("TRAINSCAPE_CPU_DEVICES", 0)) or (os.cpu_count() or 1),
    )
except Exception:  # noqa: BLE001 - backends already initialised by the caller
    pass

# JAX's persistent compilation cache: a second process (or a second `trainscape run`) with the
# same shapes loads the compiled program from disk instead of compiling it again. Opt out with
# TRAINSCAPE_NO_CACHE=1 (or `trainscape run --no-cache`); the folder is
# $TRAINSCAPE_CACHE_DIR, else $XDG_CACHE_HOME/trainscape/jax, else ~/.cache/trainscape/jax.
def _cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("TRAINSCAPE_CACHE_DIR") or os.path.join(root, "trainscape", "jax")


if not os.environ.get("TRAINSCAPE_NO_CACHE") and not jax.config.jax_compilation_cache_dir:
    try:
        jax.config.update("jax_compilation_cache_dir", _cache_dir())
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # noqa: BLE001 - an old JAX without the option: just compile
        pass

# Arrow's allocator: the C library's malloc (whose freed memory `memory.release_free_memory`
# hands back) instead of Arrow's default mimalloc pool, which kept 40-60 MiB of a sweep's
# freed Parquet buffers resident (results/bench/README.md, "Peak memory as the grid grows").
# Arrow reads this when it is first loaded, so it applies only if pyarrow is not loaded yet;
# a value set by the user wins (ARROW_DEFAULT_MEMORY_POOL=mimalloc restores Arrow's default).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# float64 studies need x64 enabled before any array is made; every array in trainscape is
# created with an explicit dtype, so float32 runs stay float32.
jax.config.update("jax_enable_x64", True)

from .analysis import divergence_table, label_counts  # noqa: E402
from .api import run  # noqa: E402
from .compare import compare, compare_dtypes  # noqa: E402
from .config import Experiment, parse  # noqa: E402
from .critical import critical_lr  # noqa: E402
from .data import load_dataset  # noqa: E402
from .errors import ConfigError, DataError, InputError  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .models import Model  # noqa: E402
from .results import Results, load  # noqa: E402
from .zoom import Zoom, zoom  # noqa: E402

__version__ = "0.10.0"

__all__ = [
    "run", "load", "load_dataset", "Results", "Model", "Experiment", "parse", "gradcheck",
    "divergence_table", "label_counts", "compare", "compare_dtypes", "critical_lr",
    "InputError", "ConfigError", "DataError", "zoom", "Zoom",
]
