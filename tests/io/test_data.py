import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel
from sklearn.datasets import load_breast_cancer

from trainscape.errors import DataError
from trainscape.io.data import load_dataset, standardize_features, task_of, validate_arrays


class Spec(BaseModel):
    # Mirrors how the config layer passes a model: unset fields are None.
    name: str | None = None
    path: str | None = None
    target: str | None = None
    n_samples: int | None = None
    noise: float | None = None
    data_seed: int | None = None
    standardize: bool | None = None
    n_features: int | None = None
    n_classes: int | None = None
    teacher_hidden: int | None = None
    n_outputs: int | None = None


# ---------------------------------------------------------------- built-ins


@pytest.mark.parametrize(
    "spec, shape, y_dtype, labels",
    [
        ({}, (569, 30), np.float64, {0.0, 1.0}),
        ({"name": "breast_cancer"}, (569, 30), np.float64, {0.0, 1.0}),
        ({"name": "moons"}, (256, 2), np.float64, {0.0, 1.0}),
        ({"name": "circles", "n_samples": 101}, (101, 2), np.float64, {0.0, 1.0}),
        ({"name": "xor", "n_features": 5}, (256, 5), np.float64, {0.0, 1.0}),
        ({"name": "blobs"}, (256, 2), np.float64, {0.0, 1.0}),
        ({"name": "blobs", "n_classes": 4, "n_features": 3}, (256, 3), np.int64, {0, 1, 2, 3}),
    ],
)
def test_classification_builtins(spec, shape, y_dtype, labels):
    x, y = load_dataset(spec)
    assert x.shape == shape and x.dtype == np.float64
    assert y.shape == (shape[0],) and y.dtype == y_dtype
    assert set(np.unique(y).tolist()) == labels
    assert np.isfinite(x).all()
    assert task_of(x, y) == ("multiclass" if y_dtype == np.int64 else "binary")


def test_classes_are_balanced_for_generators():
    for spec in ({"name": "moons", "n_samples": 100}, {"name": "xor", "n_samples": 4000}):
        _, y = load_dataset(spec)
        assert abs(y.mean() - 0.5) < 0.05, spec
    _, y = load_dataset({"name": "blobs", "n_classes": 3, "n_samples": 90})
    assert np.bincount(y).tolist() == [30, 30, 30]


def test_xor_labels_follow_signs_without_noise():
    x, y = load_dataset({"name": "xor", "noise": 0.0, "standardize": False, "n_features": 3})
    assert ((x >= -1) & (x <= 1)).all()
    np.testing.assert_array_equal(y, ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(float))


def test_circles_and_moons_geometry_without_noise():
    x, y = load_dataset({"name": "circles", "noise": 0.0, "standardize": False})
    radius = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0)
    np.testing.assert_allclose(radius[y == 1], 0.5)
    x, y = load_dataset({"name": "moons", "noise": 0.0, "standardize": False})
    np.testing.assert_allclose(np.linalg.norm(x[y == 0], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(x[y == 1] - [1.0, 0.5], axis=1), 1.0)


def test_teacher_shapes_and_noise():
    x, y = load_dataset({"name": "teacher"})
    assert x.shape == (256, 8) and y.shape == (256,) and y.dtype == np.float64
    assert task_of(x, y) == "regression" and y.std() > 0.1
    x, y = load_dataset({"name": "teacher", "n_outputs": 3, "n_features": 4, "teacher_hidden": 7})
    assert x.shape == (256, 4) and y.shape == (256, 3)
    _, clean = load_dataset({"name": "teacher", "data_seed": 5})
    _, noisy = load_dataset({"name": "teacher", "data_seed": 5, "noise": 0.5})
    assert 0.3 < np.std(noisy - clean) < 0.7


def test_teacher_is_a_function_of_raw_x():
    # Same teacher for a prefix-size change: weights must not depend on n_samples.
    xa, ya = load_dataset({"name": "teacher", "n_samples": 50, "standardize": False})
    xb, yb = load_dataset({"name": "teacher", "n_samples": 80, "standardize": False})
    np.testing.assert_array_equal(xa, xb[:50])
    np.testing.assert_allclose(ya, yb[:50], rtol=0, atol=1e-12)  # BLAS blocking may differ


def test_breast_cancer_standardized_matches_independent_computation():
    x, y = load_dataset({"name": "breast_cancer"})
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-12)
    raw = load_breast_cancer()
    ref = (raw.data - raw.data.mean(axis=0)) / raw.data.std(axis=0)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(y, raw.target.astype(float))


def test_standardize_false_returns_raw_values():
    x, _ = load_dataset({"standardize": False})
    np.testing.assert_array_equal(x, load_breast_cancer().data)
    x, _ = load_dataset({"name": "moons", "noise": 0.0, "standardize": False})
    assert abs(x.max() - 2.0) < 1e-12  # inner moon reaches x = 2 before any rescaling


def test_a_changed_copy_of_the_parsed_dataset_does_not_reach_the_next_load():
    """breast_cancer is parsed once per process; each load hands out its own arrays."""
    x, y = load_dataset({"standardize": False})
    x[:] = -1.0
    y[:] = 7.0
    x2, y2 = load_dataset({"standardize": False})
    np.testing.assert_array_equal(x2, load_breast_cancer().data)
    np.testing.assert_array_equal(y2, load_breast_cancer().target.astype(float))


def test_standardize_scales_each_column_by_its_own_spread():
    """A column varying little next to its size (unix times in seconds) or next to another
    column's size is standardized, not taken for a constant one."""
    t = 1.7e9 + np.array([0.0, 1.0, 2.0, 3.0])
    x = np.stack([t, [1e15, 1e15, 1e15, 1e15], [0.0, 1.0, 0.0, 1.0]], axis=1)
    z = standardize_features(x)
    by_hand = (t - 1.7e9 - 1.5) / np.sqrt((1.5**2 + 0.5**2) / 2)  # population std, ddof 0
    np.testing.assert_allclose(z[:, 0], by_hand, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0.0)
    np.testing.assert_array_equal(z[:, 2], [-1.0, 1.0, -1.0, 1.0])


def test_odd_sample_counts_split_classes_as_scikit_learn_does():
    """moons and circles of n samples: n // 2 of class 0 (the outer curve), the rest class 1,
    as sklearn.datasets.make_moons / make_circles; blobs may have one sample per class."""
    from sklearn.datasets import make_circles, make_moons

    for name, make in (("moons", make_moons), ("circles", make_circles)):
        _, y = load_dataset({"name": name, "n_samples": 7, "noise": 0.0})
        _, ref = make(n_samples=7, noise=0.0)
        assert np.bincount(y.astype(int)).tolist() == np.bincount(ref).tolist() == [3, 4]
    _, y = load_dataset({"name": "blobs", "n_samples": 3, "n_classes": 3})
    assert sorted(y.tolist()) == [0, 1, 2]


def test_standardize_leaves_constant_columns_centred():
    x = np.array([[0.1, 1.0, 0.0], [0.1, 2.0, 0.0], [0.1, 4.0, 0.0]])
    z = standardize_features(x)
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-15)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    np.testing.assert_allclose(z[:, 1].std(), 1.0)
    assert np.isfinite(z).all()


def test_standardize_columns_of_huge_and_tiny_numbers():
    """Squared deviations of 1e200 overflow float64 and those of 1e-200 underflow: such columns
    were standardized to 0 (std inf) or taken for constants (std 0). Against the textbook
    formula on the same numbers in ordinary units."""
    x = np.array([[1.0, -2.0], [2.0, 0.5], [4.0, 3.0], [-1.5, 1.0]])
    by_hand = (x - x.mean(axis=0)) / np.sqrt(((x - x.mean(axis=0))**2).mean(axis=0))
    for unit in (1e200, 1e300, 1e-200, 1e-300, 1e160):
        with np.errstate(all="raise"):
            z = standardize_features(x * unit)
        np.testing.assert_allclose(z, by_hand, rtol=1e-12, err_msg=f"unit {unit:g}")
    big = np.array([[3e300], [3e300], [3e300]])  # a constant column stays ~0, never huge
    np.testing.assert_allclose(standardize_features(big), 0.0, atol=1e-12)


def test_standardize_leaves_every_bit_of_ordinary_columns():
    """Only columns beyond 1e150 (or below 1e-150) in magnitude are measured in other units:
    any other is computed exactly as the plain formula does (results stay bit-identical)."""
    x = np.random.default_rng(3).standard_normal((50, 3)) * np.array([1e-140, 1.0, 1e140])
    mean = x.mean(axis=0)
    plain = (x - mean) / np.sqrt(np.mean((x - mean)**2, axis=0))
    np.testing.assert_array_equal(standardize_features(x), plain)


def test_a_noise_that_overflows_the_generated_data_is_a_one_line_error():
    with pytest.raises(DataError, match=r"^data\.noise: got 1e\+308; the moons data it makes "
                                        r"overflow float64: give a smaller noise$"):
        load_dataset({"name": "moons", "noise": 1e308})
    x, _ = load_dataset({"name": "teacher", "noise": 1e200})  # huge but finite: standardized
    np.testing.assert_allclose(x.std(axis=0), 1.0)


@pytest.mark.parametrize("name", ["moons", "circles", "xor", "blobs", "teacher"])
def test_deterministic_by_seed(name):
    x1, y1 = load_dataset({"name": name, "data_seed": 3})
    x2, y2 = load_dataset({"name": name, "data_seed": 3})
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = load_dataset({"name": name, "data_seed": 4})
    assert not np.allclose(x1, x3)


def test_mapping_and_model_specs_agree():
    fields = {"name": "blobs", "n_classes": 3, "data_seed": 2, "noise": 0.3}
    xd, yd = load_dataset(fields)
    xm, ym = load_dataset(Spec(**fields))
    np.testing.assert_array_equal(xd, xm)
    np.testing.assert_array_equal(yd, ym)
    xb, _ = load_dataset(Spec())
    assert xb.shape == (569, 30)


# ---------------------------------------------------------------- files


def _frame(rng, n=40):
    return pd.DataFrame(
        {
            "f0": rng.standard_normal(n),
            "f1": rng.integers(0, 5, n),
            "flag": rng.integers(0, 2, n).astype(bool),
            "label": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_table_round_trip(tmp_path, suffix):
    df = _frame(np.random.default_rng(0))
    path = tmp_path / f"d{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    x, y = load_dataset({"path": str(path), "target": "label", "standardize": False})
    expected = df[["f0", "f1", "flag"]].to_numpy(dtype=float)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, df["label"].to_numpy(dtype=float))
    assert x.dtype == np.float64 and y.dtype == np.float64 and task_of(x, y) == "binary"
    xs, _ = load_dataset(Spec(path=str(path), target="label"))
    np.testing.assert_allclose(xs, standardize_features(expected), atol=1e-12)


def test_npz_round_trip_default_and_named_target(tmp_path):
    rng = np.random.default_rng(1)
    x0, y0 = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    y0[:3] = [0, 1, 2]
    path = tmp_path / "d.npz"
    np.savez(path, x=x0, y=y0, reg=rng.standard_normal((30, 2)))
    x, y = load_dataset({"path": str(path), "standardize": False})
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    assert y.dtype == np.int64 and task_of(x, y) == "multiclass"
    _, reg = load_dataset({"path": str(path), "target": "reg"})
    assert reg.shape == (30, 2) and task_of(x, reg) == "regression"


def test_multiclass_csv_keeps_integer_labels(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": [0, 2, 1, 2]}).to_csv(path, index=False)
    x, y = load_dataset({"path": str(path)})
    assert y.dtype == np.int64 and y.tolist() == [0, 2, 1, 2] and x.shape == (4, 1)


# ---------------------------------------------------------------- errors


def _csv(tmp_path, df, name="d.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return str(path)


ERROR_CASES = {
    "unknown name": (lambda t: {"name": "moon"}, ["data.name", "'moon'", "'moons'", "xor"]),
    "name and path": (
        lambda t: {"name": "moons", "path": "a.csv"},
        ["data.name", "data.path", "not both"],
    ),
    "missing file": (lambda t: {"path": str(t / "nope.csv")}, ["data.path", "nope.csv"]),
    "bad extension": (lambda t: {"path": str(t / "d.cvs")}, ["data.path", "'.cvs'", ".csv"]),
    "missing target": (
        lambda t: {
            "path": _csv(t, pd.DataFrame({"a": [1, 2], "lable": [0, 1]})),
            "target": "label",
        },
        ["data.target", "'label'", "'lable'", "a, lable"],
    ),
    "default target missing": (
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [1, 2], "b": [0, 1]}))},
        ["data.target", "'y'", "a, b"],
    ),
    "string column": (
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [1, 2], "s": ["p", "q"], "y": [0, 1]}))},
        ["d.csv", "column 's'", "non-numeric"],
    ),
    "header only": (  # its columns read as text: it once said column 'a' was non-numeric
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [], "y": []}))},
        ["d.csv", "0 data row(s) under the header"],
    ),
    "string target": (
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [1, 2], "y": ["M", "B"]}))},
        ["d.csv", "column 'y'", "non-numeric"],
    ),
    "nan in feature": (
        lambda t: {
            "path": _csv(
                t, pd.DataFrame({"a": [1, 2, 3], "b": [1, np.nan, np.nan], "y": [0, 1, 1]})
            )
        },
        ["d.csv", "x has 2 NaN/inf", "column 'b'"],
    ),
    "inf in target": (
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [1, 2, 3], "y": [0.5, np.inf, 1]}))},
        ["d.csv", "y has 1 NaN/inf", "'y'"],
    ),
    "npz missing x": (
        lambda t: (
            np.savez(t / "d.npz", X=np.ones((3, 2)), y=np.ones(3)),
            {"path": str(t / "d.npz")},
        )[1],
        ["data.path", "array 'x'", "'X'"],
    ),
    "npz missing target": (
        lambda t: (
            np.savez(t / "d.npz", x=np.ones((3, 2)), y=np.ones(3)),
            {"path": str(t / "d.npz"), "target": "z"},
        )[1],
        ["data.target", "array 'z'", "x, y"],
    ),
    "n_samples too small": (
        lambda t: {"name": "moons", "n_samples": 1},
        ["data.n_samples", "1", ">= 2"],
    ),
    "n_samples not int": (lambda t: {"name": "xor", "n_samples": 10.5}, ["data.n_samples", "10.5"]),
    "n_samples for breast_cancer": (
        lambda t: {"n_samples": 100},
        ["data.n_samples", "breast_cancer", "100"],
    ),
    "n_samples for file": (
        lambda t: {"path": _csv(t, pd.DataFrame({"a": [1, 2], "y": [0, 1]})), "n_samples": 5},
        ["data.n_samples", "data file"],
    ),
    "negative noise": (lambda t: {"name": "moons", "noise": -0.1}, ["data.noise", "-0.1", ">= 0"]),
    "unused key": (lambda t: {"name": "moons", "n_classes": 3}, ["data.n_classes", "'moons'"]),
    "unknown key": (lambda t: {"name": "moons", "n_sample": 3}, ["data.n_sample", "'n_samples'"]),
    "xor one feature": (lambda t: {"name": "xor", "n_features": 1}, ["data.n_features", ">= 2"]),
    "negative seed": (lambda t: {"name": "xor", "data_seed": -1}, ["data.data_seed", "-1"]),
    "standardize not bool": (lambda t: {"standardize": "yes"}, ["data.standardize", "'yes'"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_load_errors(tmp_path, case):
    make_spec, fragments = ERROR_CASES[case]
    spec = make_spec(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


# ---------------------------------------------------------------- validate_arrays / task_of


@pytest.mark.parametrize(
    "x, y, fragments",
    [
        (np.ones(5), np.ones(5), ["x is 1-D", "reshape(-1, 1)"]),
        (np.ones((5, 2, 2)), np.ones(5), ["x has shape (5, 2, 2)"]),
        (np.ones((5, 2)), np.ones(4), ["5 rows", "y has 4"]),
        (np.ones((1, 2)), np.ones(1), ["x and y have 1 row(s); at least 2 are needed"]),
        (np.ones((3, 2)), np.ones((3, 2, 1)), ["y has shape"]),
        (np.array([[1, "a"], [2, "b"]], dtype=object), np.ones(2), ["column 1 of x", "'a'"]),
        (np.array([[1.0, np.nan], [np.inf, 2.0]]), np.ones(2), ["x has 2 NaN/inf", "column 0"]),
        (np.ones((3, 1)), np.array([0.0, np.nan, 1.0]), ["y has 1 NaN/inf", "row 1"]),
        (np.ones((3, 1)), np.array([0, -1, 2]), ["negative class label -1"]),
        (np.ones((3, 1)), None, ["y is missing"]),
        (pd.DataFrame({"k": ["u", "v"]}), np.ones(2), ["column 'k' of x"]),
    ],
)
def test_validate_arrays_errors(x, y, fragments):
    with pytest.raises(DataError) as info:
        validate_arrays(x, y, "data=(x, y)")
    msg = str(info.value)
    assert msg.startswith("data=(x, y):") and "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_validate_arrays_normalises():
    x, y = validate_arrays([[1, 2], [3, 4], [5, 6]], np.array([[1], [0], [1]]), "src")
    assert x.dtype == np.float64 and x.shape == (3, 2)
    assert y.shape == (3,) and y.dtype == np.float64 and task_of(x, y) == "binary"
    _, yb = validate_arrays(np.ones((2, 1)), np.array([True, False]), "src")
    assert yb.dtype == np.float64 and yb.tolist() == [1.0, 0.0]
    _, ym = validate_arrays(np.ones((3, 1)), np.array([0, 2, 1], dtype=np.int32), "src")
    assert ym.dtype == np.int64 and task_of(None, ym) == "multiclass"
    _, yr = validate_arrays(np.ones((3, 1)), [0.5, 2.0, 1.0], "src")
    assert yr.dtype == np.float64 and task_of(None, yr) == "regression"


@pytest.mark.parametrize(
    "y, task",
    [
        (np.array([0.0, 1.0, 1.0]), "binary"),
        (np.array([0, 1, 0]), "binary"),
        (np.array([1, 1, 1]), "binary"),
        (np.array([0, 1, 2]), "multiclass"),
        (np.array([1, 2, 1]), "multiclass"),
        (np.array([0.0, 1.0, 2.0]), "regression"),
        (np.array([0.5, 1.0]), "regression"),
        (np.zeros((3, 2)), "regression"),
    ],
)
def test_task_of(y, task):
    assert task_of(np.ones((len(y), 1)), y) == task


def test_load_dataset_takes_a_name_and_refuses_what_is_not_a_spec():
    """load_dataset("moons") returned breast_cancer (a string has no [data] attributes, so
    every key read as unset); 5 and ["moons"] did the same."""
    from trainscape.errors import DataError
    from trainscape.io.data import load_dataset

    x, y = load_dataset("moons")
    x2, y2 = load_dataset({"name": "moons"})
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (256, 2)
    for bad in (5, ["moons"]):
        with pytest.raises(DataError, match="expected a mapping of \\[data\\] keys or a dataset"):
            load_dataset(bad)
    with pytest.raises(DataError, match="data.holdout: load_dataset returns the whole dataset"):
        load_dataset({"name": "moons", "holdout": 0.2})
