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

from .errors import InputError

# Pieces of the compile-cache folder: $TRAINSCAPE_CACHE_DIR, else
# $XDG_CACHE_HOME/trainscape/jax, else ~/.cache/trainscape/jax.
CACHE_ENV = "TRAINSCAPE_CACHE_DIR"
NO_CACHE_ENV = "TRAINSCAPE_NO_CACHE"
CPU_DEVICES_ENV = "TRAINSCAPE_CPU_DEVICES"
# A program is written to the persistent cache when it took at least this long to compile
# (JAX's default, 1 s, left most of a sweep's small programs out).
CACHE_MIN_COMPILE_SECONDS = 0.5
# At most this many CPU devices per core (more only slices the same cores thinner; 10**6 made
# the next JAX computation hang).
MAX_CPU_DEVICES_PER_CORE = 4


def default_cache_dir() -> str:
    """Where `configure` puts JAX's persistent compilation cache by default."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get(CACHE_ENV) or os.path.join(root, "trainscape", "jax")


def configure(cpu_devices: int | None = None, cache_dir: str | None | bool = None,
              arrow_system_pool: bool = True) -> dict:
    """Set up this process for sweeps; call it before the first JAX computation.

    cpu_devices: CPU devices JAX exposes, an integer from 1 to 4 per core (default:
        $TRAINSCAPE_CPU_DEVICES, same rule, else one per core). XLA runs one vmapped block
        on one CPU thread, so one device per core lets the engine shard the runs over every
        core. Ignored (with a note in the returned dict) once JAX's backends are initialized.
    cache_dir: JAX's persistent compilation cache (a second process with the same shapes
        loads its programs from disk instead of compiling them): a folder (str or
        os.PathLike, not a file), None for `default_cache_dir()`, False for none.
        $TRAINSCAPE_NO_CACHE=1 also turns it off; a folder the user already configured in
        JAX is kept.
    arrow_system_pool: Arrow allocates with the C library's malloc, whose freed memory a
        sweep on disk hands back to the system (Arrow's default mimalloc pool kept 40-60 MiB of
        a sweep's freed Parquet buffers resident). A pool the user chose with
        ARROW_DEFAULT_MEMORY_POOL wins. This sets pyarrow's default pool only: Parquet's
        writer allocates from Arrow's C++ default, fixed when pyarrow loads (importing
        trainscape loads it), which the `trainscape` command's process chooses before that
        (`_command_process`); a program gets it by setting ARROW_DEFAULT_MEMORY_POOL=system
        before its first import of pandas or pyarrow.

    Returns what was set: {"cpu_devices": n or None, "cache_dir": path or None}. A value
    outside these rules is a one-line InputError, raised before anything is set."""
    _check_cache_dir(cache_dir)
    if not isinstance(arrow_system_pool, bool):  # a truthy "no" would switch the pool
        raise InputError(f"configure arrow_system_pool: got {arrow_system_pool!r}; allowed: "
                         "True or False")
    if cpu_devices is None:
        env = os.environ.get(CPU_DEVICES_ENV, "").strip()
        whole = env.isascii() and env.isdigit()  # "²" is a digit to str.isdigit, not to int
        n = (_cpu_devices(f"${CPU_DEVICES_ENV}", int(env) if whole else env)
             if env else os.cpu_count() or 1)
    else:
        n = _cpu_devices("configure cpu_devices", cpu_devices)
    done: dict = {"cpu_devices": None, "cache_dir": None}
    try:
        jax.config.update("jax_num_cpu_devices", n)
        done["cpu_devices"] = n
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


def _cpu_devices(what: str, v) -> int:
    top = MAX_CPU_DEVICES_PER_CORE * (os.cpu_count() or 1)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
        raise InputError(f"{what}: got {v!r}; allowed: an integer from 1 to {top} "
                         f"({MAX_CPU_DEVICES_PER_CORE} per core), or unset for one per core")
    return v


def _check_cache_dir(v) -> None:
    if v is None or v is False:
        return
    if isinstance(v, bool) or not isinstance(v, str | os.PathLike) or not os.fspath(v):
        raise InputError(f"configure cache_dir: got {v!r}; allowed: a folder (str or "
                         "os.PathLike), None for the default, False for no cache")
    if os.path.exists(v) and not os.path.isdir(v):
        raise InputError(f"configure cache_dir: got {os.fspath(v)!r}, a file; give a folder")


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
