"""A results folder while a sweep is being written: lock, manifest, atomic chunks, resume.

Layout of an unfinished sweep::

    DIR/.lock                 host and pid of the writing process (plus a kernel flock)
    DIR/manifest.json         what is being computed: config, data fingerprint, software
                              versions, chunk size; `finished` once the final files are written
    DIR/chunks/runs-000007.parquet, curves-000007.parquet   one finished chunk
    DIR/chunks/done.jsonl     one line per finished chunk: its index and both files' SHA-256
    DIR/.lock-pK, DIR/chunks/done-pK.jsonl   process K > 0 of a distributed sweep
                                             (sweep/distributed.py)

Every file is written to a temporary name, fsynced and renamed, and a chunk is recorded in
`done.jsonl` (appended and fsynced) only after both its files are in place, so a kill at any
moment costs at worst the chunk being saved, to be recomputed (and the one computing beside it,
see sweep.runner). The chunk record is an append-only journal rather than a field of
manifest.json because rewriting a growing manifest after every chunk costs time quadratic in
the number of chunks. `--resume` refuses a folder written for another
config, other data or other software versions (naming what changed), re-hashes every recorded
chunk (a partial or altered file is recomputed, never read) and computes only the rest.
A new sweep's final files are written as its chunks are saved (`stream_final`), under their
temporary names, and `assemble` renames them once every chunk is in; a resumed or distributed
sweep's (or one whose stream failed) are streamed from the chunk files by `assemble`, one chunk
in memory at a time.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..io import atomic, memory
from ..io.results import CURVES_FILE, META_FILE, RUNS_FILE, atomic_json, atomic_parquet

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock relies on the pid check alone
    fcntl = None

MANIFEST = "manifest.json"
LOCK = ".lock"
CHUNKS = "chunks"
JOURNAL = "done.jsonl"
JOURNAL_GLOB = "done*.jsonl"
FORMAT = 2
ROW_GROUP = 1 << 16  # rows per row group of the final files (chunks are often smaller)
# Any of these makes a folder one of ours (a sweep in progress or finished). A non-empty folder
# with none of them belongs to someone else and is never written into.
_OURS = (MANIFEST, CHUNKS, RUNS_FILE, META_FILE, LOCK)


# A file that could not be written (disk full, folder turned read-only, I/O error): the
# chunks written before it are kept and the sweep can be resumed (see atomic.py).
WriteError = atomic.WriteError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_arrays(*arrays) -> str:
    """Fingerprint of the training data (and caller-given init params): shapes, dtypes, bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a killed process its parent has not reaped yet still answers kill(0): a zombie is dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def folder_state(path: Path) -> str:
    """'new' (absent or empty), 'interrupted', 'finished', 'foreign' (other files) or 'file'."""
    if not path.exists():
        return "new"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "new"
    if not names & set(_OURS):
        return "foreign"
    chunk_files = (path / CHUNKS).is_dir() and any((path / CHUNKS).iterdir())
    if not names - {LOCK, CHUNKS, f"{MANIFEST}.tmp"} and not chunk_files:
        return "new"  # killed before its manifest was written: nothing to keep
    if MANIFEST in names:
        try:
            if json.loads((path / MANIFEST).read_text()).get("finished"):
                return "finished"
        except (OSError, ValueError, AttributeError):
            pass
        return "interrupted"
    if {RUNS_FILE, META_FILE} <= names and CHUNKS not in names:
        return "finished"
    return "interrupted"


def check_output_folder(out, names, where: str) -> Path:
    """The folder a command writes the new files `names` into, checked before its work: an
    existing folder holding none of them, or a new one in an existing folder; writable; not a
    results or zoom folder. Anything else is a one-line InputError starting with `where`
    (e.g. "bench --out 'x'"). `write_new_files` then writes them without replacing anything."""
    out = atomic.path_arg(out, where)
    real = out.resolve()  # R/x/.. is R
    for top in (real, real.parent):  # the folder, or a new one directly inside results
        if any((top / f).is_file() for f in (META_FILE, MANIFEST, "zoom.json")):
            raise InputError(f"{where}: {str(top)!r} holds trainscape results; give another "
                             "folder (results folders take only their own files)")
    if out.is_dir():
        for name in names:
            if (out / name).exists() or (out / name).is_symlink():
                raise InputError(f"{where}: {str(out / name)!r} already exists; choose another "
                                 "folder (an existing file is never replaced)")
        atomic.check_parent(out / names[0], where)
    elif out.exists() or out.is_symlink():
        raise InputError(f"{where}: exists and is not a folder; give a folder (new or holding "
                         f"no {' or '.join(names)})")
    else:
        atomic.check_parent(out, where)
    return out


def write_new_files(out: Path, files: dict[str, bytes], where: str, during: str) -> None:
    """Write `files` (name: bytes) into the folder `out` that `check_output_folder` passed
    (made here if new), each whole, none replacing a file made there `during` the work
    (`atomic.write_new`); such a file is kept and the rest is not written."""
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise atomic.write_error(out, None, e) from e
    for name, data in files.items():
        try:
            atomic.write_new(data, out / name)
        except FileExistsError:
            raise InputError(f"{where}: {name} appeared there while {during} ran; it was left "
                             "as it is (choose another folder)") from None


def unfinished_note(path: Path) -> str | None:
    """For a reader (ts.load, report, explore) of a folder whose sweep has not finished: one
    sentence saying whether it is still being written and how many of its runs are saved.
    Only reads (no lock is taken, not even to probe one): a reader never disturbs the writer.
    None when the folder holds no unfinished sweep."""
    path = Path(path)
    if folder_state(path) != "interrupted":
        return None
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        n_runs, n_chunks = int(manifest["n_runs"]), int(manifest["n_chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        n_runs = n_chunks = None
    saved: dict[int, int] = {}
    for j in sorted((path / CHUNKS).glob(JOURNAL_GLOB)):
        try:
            lines = j.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                e = json.loads(line)
                saved[int(e["index"])] = int(e["runs"])
            except (ValueError, KeyError, TypeError):
                continue  # a record being appended right now, or cut short by a kill
    done = sum(saved.values())
    if n_runs is None:
        count = f"{len(saved)} chunks saved"
    else:
        count = (f"{len(saved)} of {n_chunks} chunks saved, {n_runs - done:,} of "
                 f"{n_runs:,} runs missing")
    writers = [_read_lock(lock) for lock in sorted(path.glob(f"{LOCK}*"))]
    live = [w for w in writers if _other_alive(w)]
    if live:
        return (f"its sweep is still running (pid {live[0].get('pid')} on "
                f"{live[0].get('host')}; {count}); read it once that sweep has finished")
    return (f"its sweep did not finish ({count}); finish it with trainscape run CONFIG "
            f"--out {str(path)} --resume (or ts.run(..., out=DIR, resume=True))")


# The stores whose lock this process holds, for `release_locks`.
_HELD: set = set()


def release_locks() -> None:
    """Release every lock this process holds (a store's own exit does this normally; for a
    process about to end without unwinding, see `hear_signals_while_busy`)."""
    for st in list(_HELD):
        st._unlock()


class Store:
    """Owns one results folder for the duration of a sweep (use as a context manager).

    Constructing it only reads: every refusal (folder of another sweep, locked, not ours)
    happens before anything is written. Entering it creates the folder, takes the lock and
    writes the manifest; an unwritable folder is reported then, still before any compute.
    """

    def __init__(self, path: Path, fingerprint: dict, n_runs: int, chunk_size: int | None,
                 resume: bool, process: int = 0):
        """`process` > 0: a further process of a distributed sweep joining the folder that
        process 0 has already opened (see sweep/distributed.py): it only checks that the
        manifest is for the same sweep, and writes its own lock and journal."""
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.resume = resume
        self.n_runs = n_runs
        self.process = process
        self.lock_name = LOCK if process == 0 else f"{LOCK}-p{process}"
        self.journal_name = JOURNAL if process == 0 else f"done-p{process}.jsonl"
        self._lock_fd: int | None = None
        self._created: list[Path] = []
        self._stream: _FinalStream | None = None
        where = repr(str(self.path))
        if process:
            self.manifest = self._read_manifest()
            if self.manifest is None:
                raise InputError(f"output folder {where} has no {MANIFEST}: process 0 of this "
                                 "distributed sweep did not open it (different --out?)")
            self._check_same(self.manifest)
            self.chunk_size = int(self.manifest["chunk_size"])
            self.finished = bool(self.manifest.get("finished"))
            return
        state = folder_state(self.path)
        if state == "file":
            raise InputError(f"output folder {where} is a file; choose a folder")
        holder = self._live_holder()
        if holder is not None:
            raise self._busy(holder)
        if state == "foreign":
            sample = sorted(p.name for p in self.path.iterdir())[0]
            raise InputError(f"output folder {where} holds files that are not trainscape "
                             f"results (e.g. {sample!r}); choose a new or empty folder")
        self.manifest = self._read_manifest() if state in ("interrupted", "finished") else None
        if not resume and state == "interrupted":
            raise InputError(
                f"output folder {where} already holds results of an interrupted sweep "
                f"({len(self._read_journal())} chunks saved); pass --resume (resume=True) to "
                "continue it, or choose another --out"
            )
        if not resume and state == "finished":
            raise InputError(f"output folder {where} already holds results; choose another "
                             "--out (load these with ts.load)")
        if state == "finished" and self.manifest is None:
            raise InputError(f"output folder {where} holds a finished sweep without "
                             f"{MANIFEST}, so it cannot be checked; choose another --out")
        if self.manifest is not None:
            # a finished sweep is returned as it is on disk, nothing computed, so other
            # software cannot mix into it: a job script can pass --resume after an upgrade
            self._check_same(self.manifest, ignore=("software",) if state == "finished" else ())
        self.chunk_size = int(self.manifest["chunk_size"]) if self.manifest else chunk_size
        self.finished = state == "finished"

    # -------------------------------------------------------------- setup
    def _read_manifest(self) -> dict | None:
        f = self.path / MANIFEST
        if not f.exists():
            return None
        try:
            m = json.loads(f.read_text())
            int(m["chunk_size"])
            return m
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{str(f)!r} is unreadable ({type(e).__name__}); cannot resume; "
                             "choose another --out") from None

    def _check_same(self, m: dict, ignore: tuple[str, ...] = ()) -> None:
        old, new = (without_neutral(f) for f in (m.get("fingerprint", {}), self.fingerprint))
        changed = [k for k in sorted(set(old) | set(new))
                   if k not in ignore and old.get(k) != new.get(k)]
        if changed:
            detail = "; ".join(_describe_change(k, old.get(k), new.get(k)) for k in changed)
            raise InputError(
                f"--resume refused: {str(self.path)!r} was written by a different sweep "
                f"({detail}); use a new --out for the new sweep"
            )

    def __enter__(self) -> Store:
        try:
            for d in (self.path, self.path / CHUNKS):
                if d.name == CHUNKS and self.finished:
                    continue
                if not d.exists():
                    d.mkdir(parents=True)
                    self._created.append(d)
            self._lock()
            if self.manifest is None:
                self.manifest = {
                    "format": FORMAT,
                    "fingerprint": self.fingerprint,
                    "chunk_size": self.chunk_size,
                    "n_runs": self.n_runs,
                    "n_chunks": -(-self.n_runs // self.chunk_size),
                }
                atomic_json(self.manifest, self.path / MANIFEST)
            self._end_journal_line()
            self._drop_temporaries()
        except (OSError, WriteError) as e:
            self._unlock()
            self._remove_created()
            cause = e.__cause__ if isinstance(e, WriteError) else e
            raise InputError(f"output folder {str(self.path)!r} cannot be written: "
                             f"{getattr(cause, 'strerror', None) or e}") from None
        except BaseException:
            self._unlock()
            self._remove_created()
            raise
        return self

    def _drop_temporaries(self) -> None:
        """Remove the temporary files of writes a kill or a full disk cut short: never read
        (only renamed files count), they would only hold space a resumed sweep needs. Only
        this process's own kind: a distributed sweep's other processes write theirs."""
        if self.process:
            return
        for d in (self.path, self.path / CHUNKS):
            for f in d.glob("*.tmp"):
                with contextlib.suppress(OSError):
                    f.unlink()

    def __exit__(self, *exc) -> None:
        self.stop_streaming()  # a sweep that stopped early: the chunk files are what counts
        self._unlock()

    def _remove_created(self) -> None:
        # a failed start leaves nothing behind: the folders this call made hold only our files
        if self.path in self._created:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self._created:
            with contextlib.suppress(OSError):
                self._created[-1].rmdir()

    # -------------------------------------------------------------- lock
    def _busy(self, other: dict) -> InputError:
        lock = other.get("lock", self.lock_name)
        return InputError(
            f"output folder {str(self.path)!r} is being written by another process "
            f"(pid {other.get('pid', '?')} on {other.get('host', '?')}); wait for it to finish, "
            f"or delete {str(self.path / lock)!r} if that process is not a trainscape "
            "sweep"
        )

    def _live_holder(self) -> dict | None:
        """The other live process holding this folder's lock, if any (probed, not taken).
        Process 0 also probes the locks of a distributed sweep's other processes (`.lock-pK`):
        a sweep may not be reopened while any of them still writes its chunks."""
        locks = [self.path / self.lock_name]
        if self.process == 0 and self.path.is_dir():
            locks += sorted(self.path.glob(f"{LOCK}-p*"))
        for lock in locks:
            holder = self._probe(lock)
            if holder is not None:
                return {**holder, "lock": lock.name}
        return None

    @staticmethod
    def _probe(lock: Path) -> dict | None:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            return None
        try:
            info = _read_lock(lock)
            if not _try_flock(fd):
                return info or {}
            return info if _other_alive(info) else None
        finally:
            os.close(fd)  # releases the probe's flock

    def _lock(self) -> None:
        lock = self.path / self.lock_name
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_flock(fd):
                os.close(fd)
                raise self._busy(_read_lock(lock))
            # the holder may have removed or replaced the file between our open and flock: then
            # we hold a lock nobody else sees, so start again on the file now at that path
            if fcntl is None or _same_file(lock, fd):
                break
            os.close(fd)
        info = _read_lock(lock)
        if _other_alive(info):
            os.close(fd)
            raise self._busy(info)
        if info.get("pid") not in (None, os.getpid()):
            print(f"trainscape: taking over the lock of pid {info['pid']} in "
                  f"{str(self.path)!r} (that process is gone)", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(), 0)
        os.fsync(fd)
        self._lock_fd = fd
        _HELD.add(self)

    def _unlock(self) -> None:
        _HELD.discard(self)
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        lock = self.path / self.lock_name
        with contextlib.suppress(OSError):
            if _same_file(lock, fd):
                lock.unlink()
        os.close(fd)

    # -------------------------------------------------------------- chunks
    def _files(self, index: int) -> tuple[Path, Path]:
        d = self.path / CHUNKS
        return d / f"runs-{index:06d}.parquet", d / f"curves-{index:06d}.parquet"

    def _read_journal(self) -> dict[int, dict]:
        # every process of a distributed sweep keeps its own journal (done.jsonl, done-pN.jsonl)
        text = ""
        for j in sorted((self.path / CHUNKS).glob(JOURNAL_GLOB)):
            try:
                text += j.read_text() + "\n"
            except (OSError, UnicodeDecodeError):
                continue
        entries = {}
        for line in text.splitlines():
            try:
                e = json.loads(line)
                entries[int(e["index"])] = e
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill: its chunk is simply recomputed
        return entries

    def _end_journal_line(self) -> None:
        # a kill mid-append leaves a line without its newline; end it so the next record
        # starts a line of its own instead of being glued to the broken one
        j = self.path / CHUNKS / self.journal_name
        if j.exists() and j.stat().st_size:
            with open(j, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def done_chunks(self) -> set[int]:
        """Indices of chunks on disk whose files match their recorded checksums."""
        done = set()
        for index, entry in sorted(self._read_journal().items()):
            files = self._files(index)
            ok = all(f.is_file() for f in files) and \
                [sha256_file(f) for f in files] == entry.get("sha256")
            if ok:
                done.add(index)
            else:
                print(f"trainscape: chunk {index} in {str(self.path)!r} is missing or corrupt "
                      "(checksum mismatch); recomputing it", file=sys.stderr)
        return done

    def save_chunk(self, index: int, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
        """Write a chunk's two files, then record it in the journal; then, while the final
        files are streamed (`stream_final`), append it to them."""
        files = self._files(index)
        journal = self.path / CHUNKS / self.journal_name
        tables = [pa.Table.from_pandas(df, preserve_index=False) for df in (runs, curves)]
        try:
            atomic_parquet(tables[0], files[0])
            atomic_parquet(tables[1], files[1])
            line = json.dumps({"index": index, "runs": len(runs),
                               "sha256": [sha256_file(f) for f in files]}) + "\n"
            try:
                with open(journal, "a") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a record cut short is skipped when read (_read_journal)
                raise atomic.write_error(journal, len(line), e) from e
        except WriteError as e:
            raise WriteError(f"chunk {index} not saved: {e}; the chunks before it are "
                             "saved") from e
        except OSError as e:  # reading a file just written back for its checksum
            raise WriteError(f"chunk {index} not saved: {str(self.path)!r}: "
                             f"{e.strerror or e}; the chunks before it are saved") from e
        if self._stream is not None:
            try:
                self._stream.add(index, tables)
            except (OSError, pa.ArrowException, ValueError):
                # the chunk is saved; the final files are assembled from the chunk files
                # instead, which reports a failure of its own
                self.stop_streaming()

    def chunk_run_ids(self, index: int) -> np.ndarray:
        """The run_id column of a saved chunk (read alone, not the whole chunk)."""
        return pd.read_parquet(self._files(index)[0], columns=["run_id"])["run_id"].to_numpy()

    def stream_final(self) -> None:
        """Write the final files as the chunks are saved, which must then be chunks 0, 1, 2,
        ... in order, all by this process (`_FinalStream`): `assemble` only renames them."""
        self._stream = _FinalStream(self.path)

    def stop_streaming(self) -> None:
        if self._stream is not None:
            self._stream.abandon()
            self._stream = None

    def assemble(self, n_chunks: int) -> None:
        """The final runs.parquet and curves.parquet of chunks 0..n_chunks-1: the streamed
        files renamed into place when `stream_final` wrote them all; otherwise the chunk files
        streamed into them, one chunk in memory at a time (row groups of at least ROW_GROUP
        rows), each file written under a temporary name and renamed once complete. The sweep's
        freed memory is handed back first, so the assembly's buffers do not come on top of
        it."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                if stream.finish(n_chunks):
                    return
            except (OSError, pa.ArrowException):
                stream.abandon()
        memory.release_free_memory()
        for kind, final in ((0, RUNS_FILE), (1, CURVES_FILE)):
            # about what the final file takes: its chunks' files, rewritten in larger row groups
            need = sum(self._files(i)[kind].stat().st_size for i in range(n_chunks))
            with atomic.streamed(self.path / final, need) as tmp:
                out = _RowGroups(tmp)
                try:
                    for i in range(n_chunks):
                        if out.add(pq.read_table(self._files(i)[kind])):
                            memory.release_free_memory()
                    out.flush()
                finally:
                    out.close()

    def finish(self) -> None:
        """Mark the sweep finished (runs/curves/meta are written), then drop the chunk files.

        In this order, a kill during the clean-up leaves a finished folder, not a broken one."""
        if not self.manifest.get("finished"):
            self.manifest["finished"] = True
            atomic_json(self.manifest, self.path / MANIFEST)
        # the results are complete from here on: a clean-up that fails (a folder turned
        # read-only) leaves files a later --resume removes, nothing a reader would use
        d = self.path / CHUNKS
        with contextlib.suppress(OSError):
            if d.is_dir():
                for pattern in ("runs-*.parquet*", "curves-*.parquet*", JOURNAL_GLOB):
                    for f in d.glob(pattern):
                        f.unlink(missing_ok=True)
                d.rmdir()
        with contextlib.suppress(OSError):
            for name in (MANIFEST, RUNS_FILE, CURVES_FILE, META_FILE):
                (self.path / f"{name}.tmp").unlink(missing_ok=True)


class _RowGroups:
    """One Parquet file written in row groups of at least ROW_GROUP rows, every table cast to
    the first one's schema (the final files, from the chunk files or from the chunks' tables
    as they are saved). The tables of a row group not yet written stay in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, t: pa.Table) -> bool:
        """Append `t`; True when that completed a row group, which is then written."""
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, t.schema)
        schema = self.writer.schema
        self.pending.append(t.cast(schema) if t.schema != schema else t)
        self.rows += t.num_rows
        if self.rows < ROW_GROUP:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=self.rows)
            self.pending, self.rows = [], 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _FinalStream:
    """The final runs.parquet and curves.parquet written while the sweep runs, from the tables
    of each chunk as it is saved (chunks 0, 1, 2, ... in order), under their temporary names;
    `finish` renames them into place. Written by `_RowGroups` as `Store.assemble` writes them
    from the chunk files, so the final files hold the same tables either way. Until a row
    group is written its chunks' tables stay in memory (up to ROW_GROUP rows of runs and of
    curves: about 12 MB). Saves the assembly's second read and write of every chunk after the
    last one (on a 2-core CPU, 5.4 s of a 39 s sweep of 1,000,000 runs)."""

    def __init__(self, path: Path):
        self.finals = [path / RUNS_FILE, path / CURVES_FILE]
        self.files = [_RowGroups(atomic.tmp_name(f)) for f in self.finals]
        self.next = 0  # the chunk expected next

    def add(self, index: int, tables: list[pa.Table]) -> None:
        if index != self.next:
            raise ValueError(f"chunk {index} streamed after {self.next - 1}")
        for f, t in zip(self.files, tables, strict=True):
            f.add(t)
        self.next += 1

    def finish(self, n_chunks: int) -> bool:
        """Rename both files into place if they hold chunks 0..n_chunks-1 (True); else drop
        them (False)."""
        if self.next != n_chunks or not self.next:
            self.abandon()
            return False
        for f in self.files:
            f.flush()
            f.close()
        for f, final in zip(self.files, self.finals, strict=True):
            atomic.fsync_replace(f.path, final)
        return True

    def abandon(self) -> None:
        for f in self.files:
            with contextlib.suppress(OSError, pa.ArrowException):
                f.close()
            with contextlib.suppress(OSError):
                f.path.unlink(missing_ok=True)


def _try_flock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True  # a file system without flock: fall back to the pid check
    return True


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _read_lock(lock: Path) -> dict:
    try:
        info = json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _other_alive(info: dict) -> bool:
    """Whether a lock file's writer may still be running: a live pid on this host other than
    ours, or any pid on another host (which cannot be checked from here)."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if host != socket.gethostname():
        return host is not None
    return pid != os.getpid() and _pid_alive(pid)


# Settings in a sweep's fingerprint that change how it is computed but no result: a folder
# written with one value resumes with the other (`[train] early_exit`: bit-identical tables).
RESULT_NEUTRAL = (("config", "train", "early_exit"),)


def without_neutral(fingerprint: dict) -> dict:
    """`fingerprint` without the RESULT_NEUTRAL settings (also those of folders written
    before they were left out), so that changing one of them never refuses a resume."""
    out = copy.deepcopy(fingerprint)
    for *parents, key in RESULT_NEUTRAL:
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(key, None)
    return out


def _describe_change(key: str, old, new) -> str:
    if key == "data":
        return "the data changed (a data file was edited, or other arrays were passed)"
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = _dict_diff(old, new)
        return f"{key} changed: " + ", ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")
    return f"{key} changed: {_short(old)} -> {_short(new)}"


def _dict_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        name = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _dict_diff(va, vb, name + ".")
        elif va != vb:
            out.append(f"{name}: {_short(va)} -> {_short(vb)}")
    return out


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "..."
