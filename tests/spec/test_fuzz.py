"""Property-based (Hypothesis) inputs: configs, --set overrides, data files and ts.run arrays.

Every generated input must end in exit 0 (a valid sweep, run on a tiny budget) or exit 2 with
one line `trainscape: error: KEY...`, never a traceback and never exit 1, and nothing may be
written on exit 2. That line must name what was broken: one of the config keys (or --set
overrides) the case mutated, the data file, or the array argument (`data=`, and x or y when
only one of them was broken). The network (moons 64 x 2, hidden [4]) and the steps (2) are
fixed, and keys that would change the compiled program are only given values of the wrong
kind, so the valid cases share a few compiled programs.

Default run: a fixed number of examples per category, derandomized (the same inputs every
run); `pytest -m slow tests/spec/test_fuzz.py` runs the long profile (25 times as many, random).
"""

import contextlib
import io
import math
import re
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import trainscape as ts
from trainscape.cli.main import main
from trainscape.errors import InputError

# numpy's overflow and invalid-value warnings from the package are failures here: each was a
# case computed on inf or NaN without a word (a noise of 1e308 overflowing the generated data)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

BASE = {
    "name": "fuzz",
    "data": {"name": "moons", "n_samples": 64},
    "model": {"hidden": [4]},
    "train": {"steps": 2},
    "sweep": {"learning_rate": [0.1, 1.0]},
}
# examples per category: the default suite's, and the slow profile's
N_DEFAULT = {"config": 60, "overrides": 60, "csv": 20, "arrays": 40}
N_LONG = {k: 25 * v for k, v in N_DEFAULT.items()}


def _settings(kind: str, long: bool = False):
    return settings(max_examples=(N_LONG if long else N_DEFAULT)[kind], derandomize=not long,
                    deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------- values and keys

HUGE = st.sampled_from([10**6 + 1, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e308, 1e-320])
NUMBERS = st.one_of(
    st.integers(-5, 5), HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0]))
TEXT = st.one_of(st.text(max_size=12),
                 st.sampled_from(["", " ", "é", "学习率", "🙂", "\x00", "nan", "tanh", "sgd",
                                  "float16", "a" * 300]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
AXIS_SPECS = st.one_of(
    st.lists(SCALARS, max_size=4),
    st.lists(st.floats(0.001, 10.0), min_size=1, max_size=3),
    st.fixed_dictionaries({"geomspace": st.lists(NUMBERS, max_size=3), "num": SCALARS}),
    st.fixed_dictionaries({"linspace": st.lists(NUMBERS, max_size=3), "num": SCALARS}),
    st.fixed_dictionaries({"range": st.one_of(SCALARS, st.lists(st.integers(-3, 3),
                                                                 max_size=3))}),
    st.dictionaries(TEXT, SCALARS, max_size=3),
    # empty and enormous axes
    st.sampled_from([[], {"range": 0}, {"range": 10**7}, {"geomspace": [0.1, 1.0], "num": 10**7},
                     {"linspace": [0.1, 1.0], "num": 2**40}]),
    SCALARS,
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(TEXT, SCALARS,
                                                                            max_size=2))

# keys whose valid values keep the compiled program: any value
TRACED = ["name", "optimizer.learning_rate", "optimizer.momentum", "model.init_scale",
          "train.seed", "data.data_seed", "data.noise"]
# keys whose valid values would compile another program (or a long sweep): values of the
# wrong kind only (text, None, lists, tables, NaN, infinities, negative or enormous numbers)
STATIC = ["model.hidden", "model.activation", "model.init", "model.bias", "model.dropout",
          "model.parameterization", "loss.name", "optimizer.name", "optimizer.weight_decay",
          "optimizer.b1", "optimizer.eps", "optimizer.l2", "optimizer.grad_clip", "train.steps",
          "train.dtype", "train.record_every", "train.batch_size", "train.matmul_precision",
          "data.name", "data.path", "data.target", "data.n_samples", "data.standardize",
          "data.n_features", "data.n_classes", "metrics.accuracy", "metrics.sharpness",
          "metrics.sharpness_every", "metrics.sharpness_iters", "metrics.sharpness_which",
          "data", "model", "train", "optimizer", "sweep", "metrics", "loss"]
WRONG = st.one_of(st.none(), TEXT, st.lists(SCALARS, min_size=1, max_size=3),
                  st.dictionaries(TEXT, SCALARS, min_size=1, max_size=2), HUGE,
                  st.integers(-(10**6), 0),
                  st.sampled_from([math.nan, math.inf, -math.inf, -1.5, 0.5]))
# sweep axes: hyperparameters swept by value (one program), static axes given wrong values
SWEPT = ["learning_rate", "seed", "init_scale", "momentum", "learning_rate.0",
         "learning_rate.7"]
VALID = {
    "name": st.text(min_size=1, max_size=20),
    "optimizer.learning_rate": st.floats(1e-4, 10.0),
    "model.init_scale": st.floats(0.0, 3.0),
    "train.seed": st.sampled_from([0, 1, 2**31 - 1]),
    "sweep.seed": st.sampled_from([{"range": 2}, {"range": [5, 7]}, [3, 2**31 - 1]]),
    "sweep.learning_rate": st.sampled_from([{"geomspace": [0.01, 1.0], "num": 3}, [2.0],
                                            {"linspace": [0.1, 0.2], "num": 2}, 0.3]),
    "sweep.init_scale": st.lists(st.floats(0.1, 2.0), min_size=1, max_size=2, unique=True),
    "sweep.momentum": st.sampled_from([[0.0, 0.5], [0.9]]),
}
RANDOM_KEY = st.text(alphabet=string.ascii_letters + "._-é学 ", min_size=1, max_size=12)


@st.composite
def mutation(draw):
    """(dotted key, value) applied to BASE."""
    kind = draw(st.sampled_from(["valid", "valid", "traced", "static", "sweep", "random",
                                 "duplicate"]))
    if kind == "valid":  # values a sweep accepts (unicode names, edge seeds, small grids)
        key = draw(st.sampled_from(list(VALID)))
        return key, draw(VALID[key])
    if kind == "traced":
        return draw(st.sampled_from(TRACED)), draw(VALUES)
    if kind == "static":
        return draw(st.sampled_from(STATIC)), draw(WRONG)
    if kind == "sweep":
        return "sweep." + draw(st.sampled_from(SWEPT)), draw(AXIS_SPECS)
    if kind == "duplicate":  # duplicated axis values, or a per-entry and a whole lr axis
        return draw(st.sampled_from([
            ("sweep.learning_rate", [0.1, 0.1]), ("sweep.seed", [1, 1, 2]),
            ("sweep.dtype", ["float32", "float32"]), ("sweep.batch_size", [8, 8]),
            ("sweep.learning_rate.0", [0.1, 0.2])]))
    key = draw(st.one_of(RANDOM_KEY, st.sampled_from(["sweep", "data", "model"]).map(
        lambda s: s + ".") .flatmap(lambda s: RANDOM_KEY.map(lambda k: s + k))))
    return key, draw(VALUES)


def _set(raw: dict, key: str, value) -> None:
    parts = key.split(".")
    if parts[0] == "sweep" and len(parts) > 1:
        parts = ["sweep", ".".join(parts[1:])]
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def _has_none(v) -> bool:
    if v is None:
        return True
    if isinstance(v, dict):
        return any(_has_none(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_none(x) for x in v)
    return False


def _toml(raw: dict) -> str:
    """`raw` as a TOML document (keys quoted, so any text is a key)."""
    top = [f"{_key(k)} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    tables = [f"[{_key(k)}]\n" + "\n".join(f"{_key(kk)} = {_toml_value(vv)}"
                                            for kk, vv in v.items())
              for k, v in raw.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def _key(k: str) -> str:
    """`k` as a TOML basic string, every character but printable ASCII escaped (as \\uXXXX or
    \\UXXXXXXXX: JSON's surrogate pairs for characters beyond U+FFFF are not TOML)."""
    return '"' + "".join(
        c if " " <= c <= "~" and c not in '"\\' else
        f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in k) + '"'


def _toml_value(v, bare: bool = False) -> str:
    """A TOML rendering of `v` (floats NaN and infinities as TOML spells them); `bare`: a
    word such as tanh unquoted, as --set takes it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v if bare and v.isidentifier() and v.isascii() else _key(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


# ----------------------------------------------------------------- naming the key

# Checks that refuse a combination of keys rather than one key's value, with the error's text
# and the mutated keys that can trigger them: a data file given with a built-in dataset (BASE
# names one), and a key of BASE's dataset that the dataset or file a mutation chose does not
# read (data.name = None, given as a dict, falls back to breast_cancer, which takes no
# n_samples). (The grid-size check, spec.schema.MAX_RUNS, is out of reach: no generated axis
# of more than MAX_AXIS_VALUES values gets that far.)
DATA_SOURCE = ("data.name", "data.path")
CROSS_KEY = [(re.compile(r"^\[data\]: give either name .* or path .*, not both; got name = "),
              lambda key: key in DATA_SOURCE),
             (re.compile(r"^data\.\w+: not used by (dataset '\w+'|a data file \(data\.path\))"),
              lambda key: key in DATA_SOURCE)]


def _message(line: str) -> str:
    return re.sub(r"^trainscape( run)?: error: ", "", line)


def _names_key(msg: str, key: str) -> bool:
    """Whether error message `msg` names the dotted config key `key` (or the part of it the
    config reading stops at) in one of the forms the messages use: `[train] steps`,
    `[train]: unknown key 'x'`, `sweep.seed[0]`, `sweep: unknown axis 'x'`, `data.path`
    (io.data), `--set train.steps`, `unknown section or key 'x'`, `[data]`, `name:`."""
    parts = key.split(".")
    if parts[0] == "sweep" and len(parts) > 1:  # an axis name may hold dots: learning_rate.0
        parts = ["sweep", ".".join(parts[1:])]
    sec, e = parts[0], re.escape
    pats = [rf"unknown section or key {e(repr(sec))}"]
    if len(parts) == 1:
        pats += [rf"^\[{e(sec)}\]", rf"^{e(sec)}[:.]", rf"^--set {e(sec)}:"]
    else:
        sub = parts[1]
        pats += [rf"(?<![\w.]){e(sec + '.' + sub)}(?!\w)",
                 rf"\[{e(sec)}\] {e(sub)}(?!\w)",
                 rf"^\[{e(sec)}\]: unknown key {e(repr(sub))}",
                 rf"^sweep: unknown axis {e(repr(sub))}" if sec == "sweep" else r"(?!)"]
    return any(re.search(p, msg) for p in pats)


def _assert_names_a_key(line: str, keys: list[str]) -> None:
    """The error line names at least one of the mutated `keys`, or is a cross-key refusal
    that one of them can trigger."""
    msg = _message(line)
    ok = any(_names_key(msg, k) for k in keys) or any(
        pat.search(msg) and any(applies(k) for k in keys) for pat, applies in CROSS_KEY)
    assert ok, f"the error names none of the mutated keys {keys}: {line}"


def _override_names(item: str) -> list[str]:
    """The key an override sets, as the command line reads it (the text before the first
    `=`, stripped); an override with none is named by its whole text."""
    key = item.partition("=")[0].strip()
    return [key] if "=" in item and key else []


def _assert_names_an_override(line: str, sets: list[str]) -> None:
    msg = _message(line)
    # a malformed override is quoted whole: --set 'train..steps=2': expected KEY=VALUE ...
    if any(f"--set {item!r}" in msg for item in sets):
        return
    _assert_names_a_key(line, [k for item in sets for k in _override_names(item)])


# ----------------------------------------------------------------- the property

CASES: dict[str, dict[int, int]] = {}  # category -> exit code -> cases, for the notes


def _expect_0_or_2(argv: list[str], out: Path, category: str) -> str | None:
    """Run the command line; None on exit 0, the error line on exit 2."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors exit 2 themselves
            code = e.code
    text = err.getvalue()
    CASES.setdefault(category, {}).setdefault(code, 0)
    CASES[category][code] += 1
    assert "Traceback" not in text, text
    assert code in (0, 2), f"exit {code}: {text}"
    if code == 2:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 1, text
        assert lines[0].startswith(("trainscape: error: ", "trainscape run: error: ")), text
        assert not out.exists(), f"written on exit 2: {sorted(out.iterdir())}"
        return lines[0]
    assert (out / "runs.parquet").is_file()
    return None


def _run_config(raw: dict, sets: list[str], category: str) -> str | None:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "c.toml"
        f.write_text(_toml(raw), encoding="utf-8")
        out = Path(d) / "out"
        argv = ["run", str(f), "--out", str(out), "--no-progress", "--no-plot",
                *[f"--set={s}" for s in sets]]
        return _expect_0_or_2(argv, out, category)


def _config_case(muts) -> None:
    import copy

    raw = copy.deepcopy(BASE)
    for k, v in muts:
        _set(raw, k, v)
    if _has_none(raw):  # TOML has no null: given to ts.run as a dict instead
        line = _run_dict(raw)
    else:
        line = _run_config(raw, [], "config")
    if line is not None:
        _assert_names_a_key(line, [k for k, _ in muts])


def _run_dict(raw: dict) -> str | None:
    """A config TOML cannot write, given to ts.run as a dict: a valid sweep (None) or an
    InputError (its message)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        try:
            ts.run(raw, out=out, progress=False)
            CASES.setdefault("config", {}).setdefault(0, 0)
            CASES["config"][0] += 1
            return None
        except InputError as e:
            assert "\n" not in str(e).strip(), str(e)
            assert not out.exists()
            CASES.setdefault("config", {}).setdefault(2, 0)
            CASES["config"][2] += 1
            return str(e)


CONFIGS = st.lists(mutation(), min_size=1, max_size=3)


@given(CONFIGS)
@_settings("config")
def test_fuzzed_configs_exit_0_or_one_line_2(muts):
    _config_case(muts)


OVERRIDES = st.lists(st.one_of(
    mutation().map(lambda kv: f"{kv[0]}={_toml_value(kv[1], bare=True)}"),
    st.text(max_size=20),  # anything at all after --set
    st.sampled_from(["=", "a=", "=1", "..=1", "train..steps=2", "sweep.=1", "train.steps=",
                     "train.steps=2=3", "model.hidden=[4", "sweep.learning_rate={range=3",
                     "train=1", "data.name=moons", "data.path=/nonexistent.csv"])),
    min_size=1, max_size=3)


@given(OVERRIDES)
@_settings("overrides")
def test_fuzzed_overrides_exit_0_or_one_line_2(sets):
    _overrides_case(sets)


def _overrides_case(sets: list[str]) -> None:
    line = _run_config(BASE, sets, "overrides")
    if line is not None:
        _assert_names_an_override(line, sets)


# ----------------------------------------------------------------- data files and arrays

CELLS = st.one_of(st.floats(-3, 3), st.integers(0, 1), st.sampled_from(
    ["", "NA", "nan", "inf", "x", "1e400", "é", "0x1", " 1", "1,5"]))


@st.composite
def csv_text(draw):
    n_rows = draw(st.sampled_from([64, 64, 1, 0, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 100)))
    x = rng.standard_normal((n_rows, 2)).round(3).astype(object)
    y = (np.arange(n_rows) % 2).astype(object)
    if draw(st.booleans()):
        y[:] = 0  # a single class
    for _ in range(draw(st.integers(0, 3))):  # corrupt a few cells
        if n_rows:
            r, c = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, 2))
            cell = draw(CELLS)
            if c == 2:
                y[r] = cell
            else:
                x[r, c] = cell
    header = draw(st.sampled_from(["a,b,y", "a,a,y", "a,b,label", "a,b", ",b,y", "a,b,y,z"]))
    body = "\n".join(",".join(str(v) for v in [*x[i], y[i]]) for i in range(n_rows))
    return header + "\n" + body + ("\n" if draw(st.booleans()) else "")


@given(csv_text())
@_settings("csv")
def test_fuzzed_csv_files_exit_0_or_one_line_2(text):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "d.csv"
        f.write_text(text)
        raw = {**BASE, "data": {"path": str(f), "target": "y", "standardize": False}}
        line = _run_config(raw, [], "csv")
        assert line is None or f.name in line, f"the error does not name {f.name}: {line}"


DTYPES = [np.float64, np.float32, np.int64, np.bool_, np.complex128, object, np.str_,
          np.float16, np.uint8]


# dtypes validate_arrays refuses (object arrays of numbers are read as float64)
NON_NUMERIC = (np.complex128, np.str_)


@st.composite
def arrays(draw):
    """(data=, the arrays of it that were broken: a subset of {"x", "y"})."""
    x_shape = draw(st.sampled_from([(64, 2), (64, 2), (64,), (0, 2), (64, 0), (64, 2, 1),
                                    (63, 2), ()]))
    y_shape = draw(st.sampled_from([(64,), (64,), (64, 1), (63,), (0,), (64, 2), ()]))
    rng = np.random.default_rng(draw(st.integers(0, 100)))
    x = rng.standard_normal(x_shape)
    y = rng.integers(0, 2, y_shape).astype(np.float64)
    x_dt, y_dt = draw(st.sampled_from(DTYPES[:2] * 3 + DTYPES)), draw(st.sampled_from(
        DTYPES[:1] * 3 + DTYPES))
    x, y = x.astype(x_dt), y.astype(y_dt)
    # (64, 1) labels are one output column, a 1-D target; (64, 2) ones are regression
    # targets, which bce refuses
    broken = {"x"} if x_shape != (64, 2) or x_dt in NON_NUMERIC else set()
    broken |= {"y"} if y_shape not in ((64,), (64, 1)) or y_dt in NON_NUMERIC else set()
    if x.size and x.dtype.kind == "f" and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
        broken.add("x")
    if y.size and draw(st.integers(0, 4)) == 0:
        y = np.real(y).astype(np.float64)
        y.flat[0] = draw(st.sampled_from([np.nan, 0.5, 2.0, -1.0]))
        broken.add("y")
    wrap = draw(st.sampled_from(["tuple", "tuple", "list", "x only", "three", "nested"]))
    if wrap == "list":
        return [x, y], broken
    if wrap == "x only":
        return x, set()
    if wrap == "three":
        return (x, y, y), set()
    if wrap == "nested":
        return (x.tolist(), y.tolist()), broken
    return (x, y), broken


_RNG = np.random.default_rng(0)
VALID_ARRAYS = (_RNG.standard_normal((64, 2)), _RNG.integers(0, 2, 64).astype(np.float64))


@given(arrays())
@example((VALID_ARRAYS, set()))  # the derandomized draw alone has no valid pair
@example(((VALID_ARRAYS[0].astype(np.float32), VALID_ARRAYS[1].astype(np.int64)), set()))
@_settings("arrays")
def test_fuzzed_data_arrays_run_or_raise_input_error(case):
    data, broken = case
    try:
        res = ts.run(BASE, data=data, out=None, progress=False)  # nothing written to ./results
        code = 0
        assert len(res.runs) == 2
    except InputError as e:
        code = 2
        msg = str(e)
        assert msg and "\n" not in msg.strip(), msg
        # the argument, then the array in it (its name without the argument's own spelling)
        assert "data=" in msg, f"the error does not name data=: {msg}"
        words = set(re.findall(r"\w+", msg.replace("data=(x, y)", "")))
        assert not broken or broken & words, f"the error names none of {broken}: {msg}"
    CASES.setdefault("arrays", {}).setdefault(code, 0)
    CASES["arrays"][code] += 1


# ----------------------------------------------------------------- the slow profile
# The same properties on N_LONG random (not derandomized) examples per category.


@pytest.mark.slow
@given(CONFIGS)
@_settings("config", long=True)
def test_fuzzed_configs_long(muts):
    _config_case(muts)


@pytest.mark.slow
@given(OVERRIDES)
@_settings("overrides", long=True)
def test_fuzzed_overrides_long(sets):
    _overrides_case(sets)


@pytest.mark.slow
@given(csv_text())
@_settings("csv", long=True)
def test_fuzzed_csv_files_long(text):
    test_fuzzed_csv_files_exit_0_or_one_line_2.hypothesis.inner_test(text)


@pytest.mark.slow
@given(arrays())
@_settings("arrays", long=True)
def test_fuzzed_data_arrays_long(case):
    test_fuzzed_data_arrays_run_or_raise_input_error.hypothesis.inner_test(case)


def teardown_module(module):
    if CASES:
        print("\nfuzz cases (category: exit code -> cases):", CASES)


@pytest.mark.slow
def test_a_csv_of_a_million_columns_runs_or_is_refused_in_one_line(tmp_path):
    """4 rows x 10**6 feature columns (30 MB of text): a sweep (exit 0; 179 s and 5.7 GB
    resident on a 2-core AMD EPYC, nearly all of it pandas parsing the columns) or, with less
    than its estimated 5.8 GiB available, a refusal before it is read (exit 2)."""
    rng = np.random.default_rng(0)
    f = tmp_path / "wide.csv"
    with open(f, "w") as out:
        out.write(",".join(f"c{i}" for i in range(10**6)) + ",y\n")
        for r in range(4):
            out.write(",".join(f"{v:.2f}" for v in rng.standard_normal(10**6)) + f",{r % 2}\n")
    line = _run_config({**BASE, "data": {"path": str(f), "target": "y"}}, [], "csv")
    assert line is None or f.name in line, line
