"""The `trainscape` command's own process, set up before the package loads pyarrow.

Arrow's C++ allocator is fixed when pyarrow loads (pandas loads it, in the package's imports),
and Parquet's writer allocates from it whatever `pyarrow.set_memory_pool` says later: Arrow's
default, mimalloc, kept 30-35 MiB of a sweep's freed Parquet buffers resident to the end of
`trainscape run` (2-core AMD EPYC, 10,000-run memory bench sweep: 389-394 MiB peak against
358-360 with the C library's allocator). So where this process is the command, the package
asks for the C library's allocator here, first (`runtime.configure` would be too late); a
pool the user chose with ARROW_DEFAULT_MEMORY_POOL wins. A program that imports the library
is left as it is: importing trainscape changes nothing global.
"""

import os
import sys


def is_the_command() -> bool:
    """Whether this process is the `trainscape` command (`python -m trainscape ...` or the
    installed script), as opposed to a program that imports the library."""
    argv = list(getattr(sys, "orig_argv", ()))
    if "-mtrainscape" in argv or ("-m", "trainscape") in zip(argv, argv[1:], strict=False):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("trainscape", "trainscape.exe")


if is_the_command() and "pyarrow" not in sys.modules:
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
