"""Files written whole or not at all, and one error for a write that failed.

Every file trainscape writes (chunks, the final tables, meta.json, the manifest, figures, the
report, the explorer page) goes to a temporary name next to it, is fsynced and then renamed,
so a reader (or a resumed sweep) sees either the old file or the complete new one, never a
part. A write that fails (disk full, folder turned read-only, an I/O error) removes its
temporary file and raises `WriteError`, one line naming the file, how many bytes it needed
and how many were free.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from . import memory


class WriteError(RuntimeError):
    """A file could not be written (disk full, read-only folder, I/O error). Everything
    finished before it is kept; a sweep can be resumed once the cause is fixed."""


def path_arg(value, what: str) -> Path:
    """`value` as a Path, refused unless a non-empty str or os.PathLike (a number or a list
    was a TypeError deep in pathlib, and "" the current folder)."""
    from ..errors import InputError

    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise InputError(f"{what}: expected a path (str or os.PathLike), got "
                         f"{type(value).__name__} {value!r}")
    if not os.fspath(value):
        raise InputError(f"{what}: empty path; give a file or folder name")
    return Path(value)


def names_folder(value, path: Path) -> bool:
    """Whether the output argument `value` (read as `path`) names a folder: one that exists,
    or one written with a trailing separator ("new/"), which Path drops: written as a file
    named "new", a report or page was not where it was asked for."""
    return path.is_dir() or os.fspath(value).endswith(("/", os.sep))


def check_parent(path: Path, where: str) -> Path:
    """The folder `path` is to be written into, refused unless it exists, is a folder and can
    be written: a one-line InputError starting with `where` (e.g. "out 'x.html'")."""
    from ..errors import InputError

    folder = Path(path).parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{where}: {str(folder)!r} is a file, not a folder")
    if not folder.is_dir():
        raise InputError(f"{where}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{where}: folder {str(folder)!r} is not writable")
    return folder


def tmp_name(path: Path) -> Path:
    """The temporary name `path` is written under before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def write_error(path: Path, need: int | None, e: OSError) -> WriteError:
    """The one-line WriteError for a failed write of `need` bytes (None: not known) to
    `path`, with the free space of its file system as it is now."""
    fmt = memory.format_bytes
    free = memory.disk_free_bytes(path.parent)
    facts = [f"needs {fmt(need)}" if need is not None else None,
             f"{fmt(free)} free" if free is not None else None]
    facts = ", ".join(f for f in facts if f)
    # pyarrow's errors wrap the system's message in its own words: the system's is clearer
    why = os.strerror(e.errno) if e.errno else (e.strerror or str(e) or type(e).__name__)
    return WriteError(f"cannot write {str(path)!r}" + (f" ({facts})" if facts else "")
                      + f": {why}")


def fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _publish(data: bytes, path: Path, place) -> None:
    """Write `data` to a temporary name beside `path`, fsync it, then `place(tmp, path)`; the
    temporary file is gone afterwards whatever happened. An OSError other than
    FileExistsError becomes the one-line WriteError."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        place(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:
        raise write_error(path, len(data), e) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes(data: bytes, path: Path) -> None:
    """Write `data` to `path` atomically (temporary name, fsync, rename)."""
    _publish(data, path, os.replace)


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # FileExistsError if path exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: one more check, then the rename
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


def write_new(data: bytes, path: Path) -> None:
    """Write `data` to `path` whole, and only if `path` does not exist when it is published:
    a hard link, unlike a rename, never replaces a file (made, say, while a long computation
    ran after its folder was checked). FileExistsError if it exists, the data left in no file."""
    _publish(data, path, _link_new)


@contextlib.contextmanager
def streamed(path: Path, need: int | None = None):
    """Write `path` in pieces: yields the temporary path to write to; once the block ends it is
    fsynced and renamed into place. On an OSError the temporary file is removed and a
    WriteError raised (`need`: the bytes the whole file takes, as far as they are known)."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        fsync_replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(path, need, e) from e
