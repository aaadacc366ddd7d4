"""A results folder while a sweep is being written: lock, manifest, atomic chunk files, resume.

Each finished chunk is written as two Parquet files (temp file, fsync, rename) and recorded in
`manifest.json` with its SHA-256; the manifest itself is replaced atomically. `--resume` reads
the manifest, refuses a different config or different data (naming what changed), re-verifies
every chunk's checksum (a partial or corrupt file is recomputed, never read) and skips the rest.
A lock file (`.lock`, holding host and pid) stops two processes writing one folder; a lock whose
process is gone is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .results import CURVES_FILE, META_FILE, RUNS_FILE, atomic_json, atomic_parquet

MANIFEST = "manifest.json"
LOCK = ".lock"
CHUNKS = "chunks"


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
    return True


def holds_results(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).exists() for f in (MANIFEST, RUNS_FILE, CURVES_FILE, META_FILE, CHUNKS)
    )


class Store:
    """Owns one results folder for the duration of a sweep (use as a context manager)."""

    def __init__(self, path: Path, fingerprint: dict, n_runs: int, chunk_size: int,
                 resume: bool):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.resume = resume
        self._locked = False
        if holds_results(self.path) and not resume:
            raise InputError(
                f"output folder {str(self.path)!r} already holds results; pass --resume "
                "(resume=True) to continue that sweep, or choose another --out"
            )
        if (self.path / RUNS_FILE).exists() and (self.path / META_FILE).exists() and \
                not (self.path / CHUNKS).exists():
            raise InputError(
                f"output folder {str(self.path)!r} holds a finished sweep; nothing to resume "
                "(load it with ts.load, or choose another --out)"
            )
        self.manifest = self._read_manifest() if resume else None
        if self.manifest is not None:
            self._check_same(self.manifest)
            self.chunk_size = int(self.manifest["chunk_size"])
        else:
            self.chunk_size = chunk_size
        self.n_runs = n_runs

    # -------------------------------------------------------------- setup
    def _read_manifest(self) -> dict | None:
        f = self.path / MANIFEST
        if not f.exists():
            return None
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{str(f)!r} is unreadable ({e}); cannot resume") from None

    def _check_same(self, m: dict) -> None:
        old, new = m.get("fingerprint", {}), self.fingerprint
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if changed:
            detail = "; ".join(_describe_change(k, old.get(k), new.get(k)) for k in changed)
            raise InputError(
                f"--resume refused: {str(self.path)!r} was written by a different sweep "
                f"({detail}); use a new --out for the new sweep"
            )

    def __enter__(self) -> Store:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / CHUNKS).mkdir(exist_ok=True)
        except OSError as e:
            raise InputError(f"output folder {str(self.path)!r} cannot be written: {e}") from None
        if not os.access(self.path, os.W_OK):
            raise InputError(f"output folder {str(self.path)!r} is not writable")
        self._lock()
        if self.manifest is None:
            self.manifest = {
                "fingerprint": self.fingerprint,
                "chunk_size": self.chunk_size,
                "n_runs": self.n_runs,
                "chunks": {},
            }
            self._write_manifest()
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _lock(self) -> None:
        lock = self.path / LOCK
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(lock.read_text())
                except (OSError, json.JSONDecodeError):
                    other = {}
                same_host = other.get("host") == me["host"]
                if same_host and isinstance(other.get("pid"), int) and \
                        not _pid_alive(other["pid"]):
                    lock.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise InputError(
                    f"output folder {str(self.path)!r} is being written by another process "
                    f"(pid {other.get('pid', '?')} on {other.get('host', '?')}); wait for it, or "
                    f"delete {str(lock)!r} if that process is dead"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            return

    def _unlock(self) -> None:
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    def _write_manifest(self) -> None:
        atomic_json(self.manifest, self.path / MANIFEST)

    # -------------------------------------------------------------- chunks
    def _files(self, index: int) -> tuple[Path, Path]:
        d = self.path / CHUNKS
        return d / f"runs-{index:06d}.parquet", d / f"curves-{index:06d}.parquet"

    def done_chunks(self) -> set[int]:
        """Indices of chunks on disk whose files match their recorded checksums."""
        done = set()
        for key, sums in list(self.manifest["chunks"].items()):
            files = self._files(int(key))
            if all(f.exists() for f in files) and \
                    [sha256_file(f) for f in files] == sums:
                done.add(int(key))
            else:
                print(f"trainscape: chunk {key} in {str(self.path)!r} is missing or corrupt; "
                      "recomputing it", file=sys.stderr)
                del self.manifest["chunks"][key]
        return done

    def save_chunk(self, index: int, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
        files = self._files(index)
        atomic_parquet(runs, files[0])
        atomic_parquet(curves, files[1])
        self.manifest["chunks"][str(index)] = [sha256_file(f) for f in files]
        self._write_manifest()

    def load_chunks(self, indices) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
        runs, curves = [], []
        for i in sorted(indices):
            fr, fc = self._files(i)
            runs.append(pd.read_parquet(fr))
            curves.append(pd.read_parquet(fc))
        return runs, curves

    def finish(self) -> None:
        """Once runs/curves/meta are written, the chunk files are redundant."""
        for key in list(self.manifest["chunks"]):
            for f in self._files(int(key)):
                f.unlink(missing_ok=True)
        try:
            (self.path / CHUNKS).rmdir()
        except OSError:
            pass
        self.manifest["finished"] = True
        self._write_manifest()


def _describe_change(key: str, old, new) -> str:
    if key == "config" and isinstance(old, dict) and isinstance(new, dict):
        diffs = _dict_diff(old, new)
        return "config changed: " + ", ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")
    return f"{key} changed"


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
