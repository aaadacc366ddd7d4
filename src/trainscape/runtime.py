"""Process-wide settings, made only when asked: `configure()` (the CLI calls it first thing).

Importing trainscape changes nothing global. The settings here make the command line fast on
a CPU, and Python users opt into them with one call before their first JAX computation:

    import trainscape as ts
    ts.configure()             # every CPU core a JAX device, the compile cache on

and every computation trainscape runs is scoped: `x64` wraps each public entry point in
`jax.enable_x64(True)`, so float64 sweeps work and return float64 tables in a process whose
own JAX stays in float32.
"""

from __future__ import annotations

import functools
import os
import warnings

import jax

# Pieces of the compile-cache folder: $TRAINSCAPE_CACHE_DIR, else
# $XDG_CACHE_HOME/trainscape/jax, else ~/.cache/trainscape/jax.
CACHE_ENV = "TRAINSCAPE_CACHE_DIR"
NO_CACHE_ENV = "TRAINSCAPE_NO_CACHE"
CPU_DEVICES_ENV = "TRAINSCAPE_CPU_DEVICES"
# A program is written to the persistent cache when it took at least this long to compile
# (JAX's default, 1 s, left most of a sweep's small programs out).
CACHE_MIN_COMPILE_SECONDS = 0.5


def default_cache_dir() -> str:
    """Where `configure` puts JAX's persistent compilation cache by default."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get(CACHE_ENV) or os.path.join(root, "trainscape", "jax")


def configure(cpu_devices: int | None = None, cache_dir: str | None | bool = None,
              arrow_system_pool: bool = True) -> dict:
    """Set up this process for sweeps; call it before the first JAX computation.

    cpu_devices: CPU devices JAX exposes (default: $TRAINSCAPE_CPU_DEVICES, else one per
        core). XLA runs one vmapped block on one CPU thread, so one device per core lets the
        engine shard the runs over every core. Ignored (with a note in the returned dict)
        once JAX's backends are initialized.
    cache_dir: JAX's persistent compilation cache (a second process with the same shapes
        loads its programs from disk instead of compiling them): a folder, None for
        `default_cache_dir()`, False for none. $TRAINSCAPE_NO_CACHE=1 also turns it off; a
        folder the user already configured in JAX is kept.
    arrow_system_pool: Arrow allocates with the C library's malloc, whose freed memory a
        sweep on disk hands back to the system (Arrow's default mimalloc pool kept 40-60 MiB of
        a sweep's freed Parquet buffers resident). A pool the user chose with
        ARROW_DEFAULT_MEMORY_POOL wins. This sets pyarrow's default pool only: Parquet's
        writer allocates from Arrow's C++ default, fixed when pyarrow loads (importing
        trainscape loads it), which the `trainscape` command's process chooses before that
        (`_command_process`); a program gets it by setting ARROW_DEFAULT_MEMORY_POOL=system
        before its first import of pandas or pyarrow.

    Returns what was set: {"cpu_devices": n or None, "cache_dir": path or None}."""
    done: dict = {"cpu_devices": None, "cache_dir": None}
    n = cpu_devices or int(os.environ.get(CPU_DEVICES_ENV, 0) or 0) or (os.cpu_count() or 1)
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
        done["cpu_devices"] = int(n)
    except Exception as e:  # noqa: BLE001 - backends already initialized
        done["note"] = f"CPU device count left as it is: {e}"
    if cache_dir is not False and not os.environ.get(NO_CACHE_ENV):
        folder = jax.config.jax_compilation_cache_dir or cache_dir or default_cache_dir()
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          CACHE_MIN_COMPILE_SECONDS)
        done["cache_dir"] = str(folder)
    if arrow_system_pool and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    return done


def x64(fn):
    """Run `fn` with 64-bit types enabled for its own computations only: every array
    trainscape makes has an explicit dtype, so float32 runs stay float32, and float64 runs
    work whatever the caller's setting of `jax_enable_x64`."""

    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return scoped


_ONE_DEVICE_NOTED = [False]


def note_cpu_devices(devices: list) -> None:
    """Say once per process, in one line, when a multi-core CPU runs on one JAX device."""
    cores = os.cpu_count() or 1
    if (_ONE_DEVICE_NOTED[0] or len(devices) != 1 or devices[0].platform != "cpu"
            or cores < 2):
        return
    _ONE_DEVICE_NOTED[0] = True
    warnings.warn(f"trainscape: JAX sees 1 CPU device on a {cores}-core machine; call "
                  "trainscape.configure() before the first JAX computation to train on "
                  "every core", stacklevel=4)
