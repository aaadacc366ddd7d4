"""Datasets: built-in generators, sklearn's breast-cancer set, and CSV/Parquet/NPZ files.

`load_dataset(spec)` returns NumPy arrays (x float64 (n, d); y float64 {0, 1} for binary,
int64 for multi-class, float64 for regression); the engine casts them to the run dtype.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import memory
from ..spec import registry

# Config section the spec comes from; prefixes keys in error messages.
_SECTION = "data"

BUILTINS = tuple(registry.DATASETS)
FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".npz")
SPEC_KEYS = (
    "name",
    "path",
    "target",
    "n_samples",
    "noise",
    "data_seed",
    "standardize",
    "n_features",
    "n_classes",
    "teacher_hidden",
    "n_outputs",
)

# Keys each source reads besides name/path/data_seed/standardize, which every source accepts
# (data_seed is simply unused by breast_cancer and files, so a config that always sets it stays
# valid), and what an unset key means: spec.registry.
_USES = {**registry.DATASETS, "file": registry.DATA_FILE_KEYS}
_COMMON = registry.DATA_COMMON
DEFAULTS = registry.DATA_DEFAULTS

_CIRCLES_INNER_RADIUS = 0.5
_BLOBS_CENTER_BOX = 5.0


# ---------------------------------------------------------------- spec access and checks


def _key(k: str) -> str:
    return f"{_SECTION}.{k}"


def _get(spec: Any, k: str) -> Any:
    """Value of `k` in a mapping or attribute-style spec; None means "not given"."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(k)
    return getattr(spec, k, None)


def _given(spec: Any) -> dict[str, Any]:
    return {k: v for k in SPEC_KEYS if (v := _get(spec, k)) is not None}


def _check_unknown_keys(spec: Any) -> None:
    # Only mappings can carry stray keys; a pydantic model already rejects them itself.
    if not isinstance(spec, Mapping):
        return
    for k in spec:
        if k == "holdout":  # a [data] key that ts.run applies, not the loader
            raise DataError(f"{_key(str(k))}: load_dataset returns the whole dataset; the "
                            "held-out split is made by ts.run (give it in the config)")
        if k not in SPEC_KEYS:
            raise DataError(
                f"{_key(str(k))}: unknown key; allowed: {', '.join(SPEC_KEYS)}"
                f"{registry.did_you_mean(k, SPEC_KEYS)}"
            )


def _int(value: Any, k: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise DataError(f"{_key(k)}: got {value!r}; must be an integer >= {low}")
    return int(value)


def _nonneg_float(value: Any, k: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise DataError(f"{_key(k)}: got {value!r}; must be a finite number >= 0")
    return float(value)


def _bool(value: Any, k: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise DataError(f"{_key(k)}: got {value!r}; must be true or false")
    return bool(value)


def _reject_unused(given: dict[str, Any], source: str, what: str) -> None:
    allowed = _COMMON + _USES[source]
    for k in given:
        if k not in allowed:
            used = ", ".join(_USES[source]) or "none"
            raise DataError(
                f"{_key(k)}: not used by {what} (got {given[k]!r}); "
                f"keys it takes besides name/path/data_seed/standardize: {used}"
            )


# ---------------------------------------------------------------- public API


def load_dataset(spec: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the dataset a spec (a mapping or attribute object with the [data] keys, a built-in
    name such as "moons", or None for the defaults) describes."""
    if isinstance(spec, str):
        spec = {"name": spec}
    elif spec is not None and not isinstance(spec, Mapping) and \
            not any(hasattr(spec, k) for k in ("name", "path")):
        raise DataError(f"data: expected a mapping of [data] keys or a dataset name, got "
                        f"{type(spec).__name__} {spec!r}")
    _check_unknown_keys(spec)
    given = _given(spec)
    standardize = _bool(given.get("standardize", DEFAULTS["standardize"]), "standardize")
    seed = _int(given.get("data_seed", DEFAULTS["data_seed"]), "data_seed", 0)

    if "name" in given and "path" in given:
        raise DataError(
            f"{_key('name')}/{_key('path')}: both given (name={given['name']!r}, "
            f"path={str(given['path'])!r}); give a built-in name or a file path, not both"
        )
    if "path" in given:
        _reject_unused(given, "file", f"a data file ({_key('path')})")
        x, y = _load_file(given["path"], given.get("target", DEFAULTS["target"]))
    else:
        name = given.get("name", "breast_cancer")
        if not isinstance(name, str) or name not in BUILTINS:
            raise DataError(
                f"{_key('name')}: unknown dataset {name!r}; allowed: {', '.join(BUILTINS)}"
                f"{registry.did_you_mean(name, BUILTINS)}"
            )
        _reject_unused(given, name, f"dataset '{name}'")
        with np.errstate(over="ignore", invalid="ignore"):
            x, y = _builtin(name, given, seed)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):  # only the noise can do it
            raise DataError(f"{_key('noise')}: got {given.get('noise')!r}; the {name} data "
                            "it makes overflow float64: give a smaller noise")

    if standardize:
        x = standardize_features(x)
    return x, y


def standardize_features(x: np.ndarray) -> np.ndarray:
    """Per-column zero mean, unit variance in float64; constant columns are only centred
    (those of huge or tiny numbers also divided by their largest magnitude)."""
    x = np.asarray(x, dtype=np.float64)
    mean, scale = standardizer(x)
    return (x - mean) / scale


def standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of each column of `x` in float64: `(x - mean) / scale` standardizes it."""
    x = np.asarray(x, dtype=np.float64)
    scale_ref = np.max(np.abs(x), axis=0, initial=0.0)
    # A column of huge or tiny numbers is measured in units of its largest magnitude: its
    # squared deviations would overflow to inf (every value then standardized to 0) or
    # underflow to 0 (a constant). Other columns are divided by 1.0, which leaves every bit.
    unit = np.where((scale_ref > _EXTREME) | ((scale_ref > 0) & (scale_ref < 1 / _EXTREME)),
                    scale_ref, 1.0)
    z = x / unit
    mean = z.mean(axis=0)
    std = np.sqrt(np.mean((z - mean)**2, axis=0))
    # A constant column's computed std is rounding noise, not zero; dividing by it would blow
    # the noise up to O(1) values, so treat anything at rounding level as constant.
    constant = std <= 1e-12 * np.maximum(scale_ref / unit, np.finfo(np.float64).tiny)
    return mean * unit, np.where(constant, 1.0, std) * unit


_EXTREME = 1e150  # a column's largest magnitude beyond which (or below whose inverse) its
# squares leave float64's range


def task_of(x: np.ndarray, y: np.ndarray) -> str:
    """'binary' (1-D y in {0, 1}), 'multiclass' (1-D integer y otherwise) or 'regression'."""
    del x  # the task depends only on the labels; x is taken so callers pass the pair
    y = np.asarray(y)
    if y.ndim == 1:
        if np.isin(y, (0, 1)).all():
            return "binary"
        if y.dtype.kind in "iu":
            return "multiclass"
    return "regression"


def validate_arrays(x: Any, y: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check user arrays and return x float64 (n, d) and y normalised for `task_of`.

    `source` names where the arrays came from (a file, `data=(x, y)`) in error messages.
    x and y may also be pandas objects, so errors can name the offending column.
    """
    x_arr, x_cols = _numeric_2d(x, "x", source)
    if y is None:
        raise DataError(f"{source}: y is missing; give labels/targets with the same rows as x")
    y_arr, y_cols = _numeric_2d(y, "y", source)
    if x_arr.ndim == 1:
        raise DataError(
            f"{source}: x is 1-D with shape {x_arr.shape}; x must be 2-D (n_samples, n_features)"
            f" - for a single feature use x.reshape(-1, 1)"
        )
    if x_arr.ndim != 2:
        raise DataError(
            f"{source}: x has shape {x_arr.shape}; x must be 2-D (n_samples, n_features)"
        )
    if y_arr.ndim not in (1, 2):
        raise DataError(
            f"{source}: y has shape {y_arr.shape}; y must be 1-D (n,) or 2-D (n, n_outputs)"
        )
    if x_arr.shape[1] == 0:
        raise DataError(f"{source}: x has no feature columns (shape {x_arr.shape})")
    if y_arr.ndim == 2 and y_arr.shape[1] == 0:
        raise DataError(f"{source}: y has no columns (shape {y_arr.shape})")
    if x_arr.shape[0] != y_arr.shape[0]:
        raise DataError(
            f"{source}: x has {x_arr.shape[0]} rows but y has {y_arr.shape[0]}; "
            f"they must have the same number of rows"
        )
    if x_arr.shape[0] < 2:
        raise DataError(f"{source}: x and y have {x_arr.shape[0]} row(s); at least 2 are needed")
    _check_finite(x_arr, "x", x_cols, source)
    _check_finite(y_arr, "y", y_cols, source)
    return np.ascontiguousarray(x_arr, dtype=np.float64), _normalise_y(y_arr, source)


# ---------------------------------------------------------------- array checks


def _numeric_2d(a: Any, which: str, source: str) -> tuple[np.ndarray, list[str] | None]:
    """Array of a numeric kind (bool/int/uint/float), plus column names when a is pandas."""
    columns = None
    if hasattr(a, "dtypes") and hasattr(a, "columns"):  # pandas DataFrame
        columns = [str(c) for c in a.columns]
        for col, dtype in zip(columns, a.dtypes, strict=True):
            if not _is_numeric_dtype(dtype):
                raise DataError(
                    f"{source}: column '{col}' of {which} is non-numeric ({dtype}); "
                    f"all {which} columns must be numbers (encode categories as integers)"
                )
        a = _to_numpy(a, _common_dtype(a.dtypes))
    elif hasattr(a, "dtype") and hasattr(a, "to_numpy"):  # pandas Series
        columns = [str(a.name)] if a.name is not None else None
        if not _is_numeric_dtype(a.dtype):
            label = f"column '{a.name}'" if a.name is not None else which
            raise DataError(
                f"{source}: {label} of {which} is non-numeric ({a.dtype}); "
                f"it must hold numbers (encode classes as integers 0..K-1)"
            )
        a = _to_numpy(a, _common_dtype([a.dtype]))

    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:  # ragged nested lists and the like
        raise DataError(f"{source}: {which} is not a rectangular array ({_first_line(e)})") from e
    if arr.dtype.kind in "biuf":
        return arr, columns
    if arr.dtype.kind == "O":
        # Object arrays may still be all numbers; find the first column that is not.
        try:
            return arr.astype(np.float64), columns
        except (ValueError, TypeError):
            pass
        if arr.ndim == 2:
            for j in range(arr.shape[1]):
                try:
                    arr[:, j].astype(np.float64)
                except (ValueError, TypeError):
                    raise DataError(
                        f"{source}: column {j} of {which} is non-numeric (e.g. "
                        f"{_first_bad(arr[:, j])!r}); all {which} columns must be numbers"
                    ) from None
    raise DataError(
        f"{source}: {which} has dtype {arr.dtype}; it must be numeric (bool, int or float)"
    )


def _is_numeric_dtype(dtype: Any) -> bool:
    import pandas as pd

    return (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) and (
        not pd.api.types.is_complex_dtype(dtype)
    )


# The exact float of each written decimal: before 3.1, pandas' default CSV parser was 1 ulp off
# for 10% of a test table's values (pandas 3.0.6) unless asked for "round_trip"; 3.1 made that
# the default and deprecated the argument.
def _csv_args(pd) -> dict:
    major_minor = tuple(int(v) for v in pd.__version__.split(".")[:2])
    return {} if major_minor >= (3, 1) else {"float_precision": "round_trip"}


def _to_numpy(a: Any, dtype: Any) -> np.ndarray:
    """A pandas frame or series as `dtype`, missing values as NaN. Only a float target can hold
    NaN (and integer/bool NumPy columns have no missing values): pandas 3.0 raises on an
    integer target given na_value=nan."""
    if np.dtype(dtype).kind == "f":
        return a.to_numpy(dtype=dtype, na_value=np.nan)
    return a.to_numpy(dtype=dtype)


def _common_dtype(dtypes) -> Any:
    # Keep all-integer/bool columns integral so y labels stay ints; anything nullable or
    # mixed becomes float64 so missing values surface as NaN for the finiteness check.
    kinds = {getattr(d, "kind", "O") for d in dtypes}
    numpy_dtypes = all(isinstance(d, np.dtype) for d in dtypes)
    if numpy_dtypes and kinds <= {"b"}:
        return np.bool_
    if numpy_dtypes and kinds <= {"i", "u", "b"}:
        return np.int64
    return np.float64


def _first_bad(col: np.ndarray) -> Any:
    for v in col:
        try:
            float(v)
        except (ValueError, TypeError):
            return v
    return None


def _check_finite(a: np.ndarray, which: str, columns: list[str] | None, source: str) -> None:
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return
    if a.ndim == 2:
        j = int(np.argmax(bad.any(axis=0)))
        where = f"column '{columns[j]}'" if columns else f"column {j}"
        n_cols = int(bad.any(axis=0).sum())
        where = f"first in {where}" + (f", {n_cols} columns affected" if n_cols > 1 else "")
    else:
        where = f"first at row {int(np.argmax(bad))}"
        if columns:
            where = f"column '{columns[0]}', {where}"
    raise DataError(
        f"{source}: {which} has {n_bad} NaN/inf value(s) ({where}); "
        f"remove or impute them (all values must be finite)"
    )


def _normalise_y(y: np.ndarray, source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # one output column is the same task as a 1-D target
    if y.ndim == 2:
        return np.ascontiguousarray(y, dtype=np.float64)
    if np.isin(y, (0, 1)).all():
        return y.astype(np.float64)
    if y.dtype.kind in "iu":
        if y.min() < 0:
            raise DataError(
                f"{source}: y has negative class label {int(y.min())}; integer labels are "
                f"classes and must be 0..K-1 (use float y for regression)"
            )
        return y.astype(np.int64)
    return y.astype(np.float64)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------- files


def _load_file(path: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"{_key('path')}: got {path!r}; must be a file path string")
    if not isinstance(target, str):
        raise DataError(f"{_key('target')}: got {target!r}; must be a column/array name")
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            f"{_key('path')}: '{p}' has unsupported extension '{p.suffix}'; "
            f"allowed: {', '.join(FILE_SUFFIXES)}{registry.did_you_mean(suffix, FILE_SUFFIXES)}"
        )
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "file not found"
        raise DataError(f"{_key('path')}: {what}: '{p.resolve()}'")
    source = f"data file '{p}'"
    _check_fits(_key("path"), _file_bytes(p, suffix), source)
    if suffix == ".npz":
        return _load_npz(p, target, source)
    return _load_table(p, suffix, target, source)


def _load_table(p: Path, suffix: str, target: str, source: str):
    import pandas as pd

    try:
        df = pd.read_csv(p, **_csv_args(pd)) if suffix == ".csv" else pd.read_parquet(p)
    except Exception as e:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{source}: cannot be read ({_first_line(e)})") from e
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if target not in columns:
        raise DataError(
            f"{_key('target')}: column '{target}' not in {source}; available columns: "
            f"{', '.join(columns)}{registry.did_you_mean(target, columns)}"
        )
    if len(columns) < 2:
        raise DataError(f"{source}: only the target column '{target}'; no feature columns")
    if len(df) < 2:  # before the dtypes: the columns of a header-only file read as text
        raise DataError(f"{source}: {len(df)} data row(s) under the header; at least 2 are "
                        "needed")
    return validate_arrays(df.drop(columns=[target]), df[target], source)


def _load_npz(p: Path, target: str, source: str):
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # corrupt archive or pickled object arrays
        raise DataError(f"{source}: cannot be read as .npz ({_first_line(e)})") from e
    names = sorted(arrays)
    for k, key in (("x", "path"), (target, "target")):
        if k not in arrays:
            raise DataError(
                f"{_key(key)}: array '{k}' not in {source}; available arrays: "
                f"{', '.join(names) or 'none'}{registry.did_you_mean(k, names)}"
            )
    return validate_arrays(arrays["x"], arrays[target], source)


# ---------------------------------------------------------------- built-in datasets


@functools.cache
def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's copy, parsed once per process (its CSV took about 10 ms on every run)."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    return np.asarray(raw.data, dtype=np.float64), np.asarray(raw.target, dtype=np.float64)


def _builtin(name: str, given: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    if name == "breast_cancer":
        x, y = _breast_cancer()
        return x.copy(), y.copy()

    n = _int(given.get("n_samples", DEFAULTS["n_samples"]), "n_samples", 2)
    noise = _nonneg_float(given.get("noise", DEFAULTS["noise"][name]), "noise")
    # Independent streams so e.g. the teacher's weights do not change with n_samples.
    rng_struct, rng_x, rng_noise = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence([seed, BUILTINS.index(name)]).spawn(3)
    )
    # the generated columns (features, then the teacher's hidden units and outputs, or the
    # labels), each checked before any is built; the key named is the largest one given
    sizes = {"n_samples": n}
    if name not in ("moons", "circles"):
        sizes["n_features"] = _int(given.get("n_features", DEFAULTS["n_features"][name]),
                                   "n_features", 1)
    if name == "teacher":
        for k in ("teacher_hidden", "n_outputs"):
            sizes[k] = _int(given.get(k, DEFAULTS[k]), k, 1)
    columns = sum(sizes.values()) - n + (2 if name in ("moons", "circles") else 0) + \
        (name != "teacher")
    big = max((k for k in sizes if k in given), key=sizes.get, default="n_samples")
    _check_fits(_key(big), n * columns * 8,
                f"got {sizes[big]}; the {name} data ({n} samples x {columns} float64 columns)")
    if name in ("moons", "circles"):
        x, y = (_moons if name == "moons" else _circles)(n)
        order = rng_x.permutation(n)
        x, y = x[order], y[order]
        return x + noise * rng_noise.standard_normal(x.shape), y

    d = _int(given.get("n_features", DEFAULTS["n_features"][name]), "n_features", 1)
    if name == "xor":
        if d < 2:
            raise DataError(f"{_key('n_features')}: got {d}; xor needs n_features >= 2")
        x = rng_x.uniform(-1.0, 1.0, size=(n, d))
        y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.float64)
        return x + noise * rng_noise.standard_normal(x.shape), y
    if name == "blobs":
        k = _int(given.get("n_classes", DEFAULTS["n_classes"]), "n_classes", 2)
        if n < k:
            raise DataError(
                f"{_key('n_samples')}: got {n}; blobs needs n_samples >= n_classes ({k})"
            )
        centres = rng_struct.uniform(-_BLOBS_CENTER_BOX, _BLOBS_CENTER_BOX, size=(k, d))
        y = rng_x.permutation(np.arange(n) % k)  # balanced classes in random order
        x = centres[y] + noise * rng_noise.standard_normal((n, d))
        return x, (y.astype(np.float64) if k == 2 else y.astype(np.int64))
    # teacher
    h = _int(given.get("teacher_hidden", DEFAULTS["teacher_hidden"]), "teacher_hidden", 1)
    k = _int(given.get("n_outputs", DEFAULTS["n_outputs"]), "n_outputs", 1)
    w1 = rng_struct.standard_normal((d, h)) / np.sqrt(d)
    w2 = rng_struct.standard_normal((h, k)) / np.sqrt(h)
    x = rng_x.standard_normal((n, d))
    y = np.tanh(x @ w1) @ w2 + noise * rng_noise.standard_normal((n, k))
    return x, (y[:, 0] if k == 1 else y)


# While a dataset is generated or a file parsed it is held several times over (the generator's
# temporaries, the permuted copy, the noise, the standardized copy; a parsed frame and its
# NumPy copy), so this many times its float64 size must be free before it is built.
DATA_COPIES = 4


def _check_fits(key: str, nbytes: int, what: str) -> None:
    """Refuse data whose building would not fit in host memory, before building it."""
    need, avail = nbytes * DATA_COPIES, memory.host_available_bytes()
    if avail is not None and need > avail:
        raise DataError(f"{key}: {what} needs about {memory.format_bytes(need)} of host memory "
                        f"to load, but {memory.format_bytes(avail)} is available; use less data")


# pandas holds every parsed CSV column as an object of its own: a 4-row CSV of 10**6 columns
# (30 MB) peaked at 5.7 GB resident (pandas 3.1), about 5.7 KB a column, counted here a
# quarter at a time since DATA_COPIES multiplies it
CSV_COLUMN_BYTES = 1536


def _file_bytes(p: Path, suffix: str) -> int:
    """The float64 size of a data file's table, as far as it can be told without reading it:
    from a Parquet footer or the npz members' sizes; for a CSV its own size (a number takes at
    least two characters of text and 8 bytes once parsed) plus its columns' overhead, counted
    from its header line."""
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(p).metadata
            return meta.num_rows * meta.num_columns * 8
        if suffix == ".npz":
            import zipfile

            with zipfile.ZipFile(p) as z:
                return sum(i.file_size for i in z.infolist())
        with open(p, "rb") as f:
            columns = f.readline(1 << 26).count(b",") + 1
        return p.stat().st_size + columns * CSV_COLUMN_BYTES
    except Exception:  # noqa: BLE001 - unreadable: the reader names the problem
        return 0


def _moons(n: int) -> tuple[np.ndarray, np.ndarray]:
    n_out = n // 2
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n - n_out)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)
    y = np.concatenate([np.zeros(n_out), np.ones(n - n_out)])
    return np.concatenate([outer, inner]), y


def _circles(n: int) -> tuple[np.ndarray, np.ndarray]:
    n_out = n // 2
    t_out = np.linspace(0.0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0.0, 2 * np.pi, n - n_out, endpoint=False)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = _CIRCLES_INNER_RADIUS * np.stack([np.cos(t_in), np.sin(t_in)], axis=1)
    y = np.concatenate([np.zeros(n_out), np.ones(n - n_out)])
    return np.concatenate([outer, inner]), y
