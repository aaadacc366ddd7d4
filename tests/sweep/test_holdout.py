"""Held-out data: the split ([data] holdout) and the test metrics, against a float64 NumPy
reference that follows the same gradient-descent path on the training rows only."""

import json
import subprocess
import sys

import numpy as np
import pytest
from numpy_mlp import accuracy, forward, gd_trajectory, loss_and_dout, seed_init

import trainscape as ts
from trainscape.errors import ConfigError, DataError
from trainscape.spec import schema

STEPS, EVERY = 24, 5
RECORDED = [*range(0, STEPS, EVERY), STEPS]


def _split_by_hand(fraction, seed=0):
    """breast cancer split as meta.json records it, standardized with NumPy from the training
    rows' own mean and standard deviation."""
    res = ts.run({"data": {"name": "breast_cancer", "holdout": fraction, "data_seed": seed},
                  "model": {"hidden": [2]}, "train": {"steps": 1}, "sweep": {"seed": [0]}},
                 out=None, progress=False)
    test_rows = np.array(res.meta["data"]["holdout"]["test_rows"])
    x, y = ts.load_dataset({"name": "breast_cancer", "standardize": False})
    train = np.setdiff1d(np.arange(len(y)), test_rows)
    mu, sd = x[train].mean(0), x[train].std(0)
    return (x[train] - mu) / sd, y[train], (x[test_rows] - mu) / sd, y[test_rows], test_rows


def test_split_is_stratified_disjoint_reproducible_and_recorded(tmp_path):
    x, y = ts.load_dataset({"name": "breast_cancer"})
    *_, rows = _split_by_hand(0.2)
    *_, again = _split_by_hand(0.2)
    *_, other = _split_by_hand(0.2, seed=1)
    np.testing.assert_array_equal(rows, again)
    assert not np.array_equal(rows, other)
    assert len(rows) == int(np.ceil(0.2 * len(y))) == len(np.unique(rows))
    for c in (0, 1):  # each class held out in its own proportion, to within one row
        assert abs(np.sum(y[rows] == c) - 0.2 * np.sum(y == c)) <= 1
    # written to the results folder, read back by ts.load
    res = ts.run({"data": {"name": "breast_cancer", "holdout": 0.2}, "model": {"hidden": [2]},
                  "train": {"steps": 1}, "sweep": {"seed": [0]}}, out=tmp_path / "r",
                 progress=False)
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["data"]["holdout"]["test_rows"] == rows.tolist()
    assert meta["data"]["n_samples"] == len(y) - len(rows)
    assert "test_loss" in ts.load(tmp_path / "r").curves.columns and res is not None


@pytest.mark.parametrize("hidden", [[], [128, 64]], ids=["linear", "seed-network"])
def test_test_metrics_equal_numpy_reference(hidden):
    """Every recorded step's held-out loss and accuracy from the parameters NumPy's own
    gradient descent on the training rows reaches; NaN from the step after a run is frozen."""
    x, y, xt, yt, _ = _split_by_hand(0.2)
    sizes = (30, *hidden, 1)
    params = seed_init(np.random.default_rng(3), sizes)
    lrs = [0.05, 0.8] if not hidden else [0.01, 0.3, 1e4]
    res = ts.run({"data": {"name": "breast_cancer", "holdout": 0.2},
                  "model": {"hidden": hidden, "init": "seed"},
                  "train": {"steps": STEPS, "record_every": EVERY, "dtype": "float64"},
                  "sweep": {"learning_rate": lrs}}, init_params=params, out=None,
                 progress=False)
    frozen_seen = False
    for row in res.runs.itertuples():
        c = res.curves[res.curves.run_id == row.run_id].set_index("step")
        loss, hist = gd_trajectory(params, x, y, row.learning_rate, STEPS)
        blown = np.flatnonzero(~(loss <= 1e3 * loss[0]))  # classify.BLOWUP_FACTOR
        frozen = blown[0] if len(blown) else None
        for s in RECORDED:
            if frozen is not None and s > frozen:
                assert np.isnan(c.loc[s, "test_loss"]) and np.isnan(c.loc[s, "loss"])
                assert np.isnan(c.loc[s, "test_accuracy"])
                frozen_seen = True
                continue
            ref = loss_and_dout(forward(hist[s], xt)[0], yt, "bce")[0]
            np.testing.assert_allclose(c.loc[s, "test_loss"], ref, rtol=1e-8)
            # accuracies are float32 means (as the training accuracy): within its rounding
            np.testing.assert_allclose(c.loc[s, "test_accuracy"],
                                       accuracy(hist[s], xt, yt, "bce"), atol=1e-7)
        live = [s for s in RECORDED if frozen is None or s <= frozen]
        refs = [loss_and_dout(forward(hist[s], xt)[0], yt, "bce")[0] for s in live]
        np.testing.assert_allclose(row.final_test_loss, refs[-1], rtol=1e-8)
        np.testing.assert_allclose(row.min_test_loss, min(refs), rtol=1e-8)
        np.testing.assert_allclose(row.final_test_accuracy,
                                   accuracy(hist[live[-1]], xt, yt, "bce"), atol=1e-7)
    assert frozen_seen == bool(hidden)


def test_caller_test_data_and_no_cost_without_it():
    x, y, xt, yt, _ = _split_by_hand(0.25)
    cfg = {"model": {"hidden": [4]}, "train": {"steps": 6, "record_every": 3},
           "sweep": {"learning_rate": [0.1, 1.0]}}
    own = ts.run(cfg, data=(x, y), test_data=(xt, yt), out=None, progress=False)
    plain = ts.run(cfg, data=(x, y), out=None, progress=False)
    # the training side is untouched by held-out data
    cols = list(plain.runs.columns)
    assert set(own.runs.columns) - set(cols) == {"final_test_loss", "min_test_loss",
                                                  "final_test_accuracy"}
    assert "test_loss" not in plain.curves.columns
    import pandas as pd

    pd.testing.assert_frame_equal(own.runs[cols], plain.runs, check_exact=True)
    assert own.meta["data"]["test_data"]["n_samples"] == len(yt)


def test_bad_held_out_data_is_refused():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1.0])
    x = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ConfigError, match="holdout.*class"):
        ts.run({"data": {"holdout": 0.1}, "sweep": {"seed": [0]}}, data=(x, y), out=None)
    with pytest.raises(DataError, match="x has 3 features, the training data 2"):
        ts.run({"sweep": {"seed": [0]}}, data=(x, y), test_data=(np.ones((4, 3)), y[:4]),
               out=None)
    with pytest.raises(schema.ConfigError, match=r"holdout.*\[0, 1\)"):
        schema.parse({"data": {"holdout": 1.0}})
    # a batch larger than the rows left to train on says where the others went
    with pytest.raises(ConfigError, match=r"batch_size: got 8; the data has only 5 samples "
                                          r"to train on \(5 more held out\)$"):
        ts.run({"data": {"holdout": 0.5}, "train": {"batch_size": 8}, "sweep": {"seed": [0]}},
               data=(x, np.arange(10.0) % 2), out=None)


def test_split_rows_is_scikit_learns_stratified_split_sorted():
    """split_rows is train_test_split's (stratified for binary and multiclass labels, not for
    regression targets) with random_state = data_seed, each side sorted; as few held-out
    rows as classes is enough."""
    from sklearn.model_selection import train_test_split

    from trainscape.io.holdout import split_rows

    y_multi = np.repeat([0, 1, 2], [6, 9, 15])
    y_reg = np.linspace(-1.0, 1.0, 30)
    for y, task, stratify in ((y_multi, "multiclass", y_multi), (y_reg, "regression", None),
                              (np.repeat([0.0, 1.0], 4), "binary", np.repeat([0.0, 1.0], 4))):
        for fraction, seed in ((0.3, 4), (0.25, 0)):
            n_test = int(np.ceil(fraction * len(y)))
            want_train, want_test = train_test_split(
                np.arange(len(y)), test_size=n_test, random_state=seed, stratify=stratify)
            train, test = split_rows(y, fraction, seed, task)
            np.testing.assert_array_equal(test, np.sort(want_test))
            np.testing.assert_array_equal(train, np.sort(want_train))
    with pytest.raises(ConfigError, match="holdout.*no rows on one side"):
        split_rows(y_reg[:10], 0.95, 0, "regression")  # ceil(9.5) = 10 of 10 rows


def test_caller_test_labels_must_be_the_training_labels_kind():
    x, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5, dtype=float)
    with pytest.raises(DataError, match="binary"):
        ts.run({"sweep": {"seed": [0]}}, data=(x, y), test_data=(x[:4], np.array([0, 1, 2, 1.0])),
               out=None)
    with pytest.raises(DataError, match="not classes of the training labels"):
        ts.run({"loss": {"name": "cross_entropy"}, "sweep": {"seed": [0]}},
               data=(x, np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])),
               test_data=(x[:3], np.array([0, 1, 3])), out=None)


def test_cli_refuses_an_empty_class_with_exit_2(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{int(i == 0)}\n" for i in range(12)))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\npath = "{csv}"\ntarget = "y"\nholdout = 0.2\n[train]\nsteps = 2\n')
    p = subprocess.run([sys.executable, "-m", "trainscape", "run", str(cfg), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "holdout" in lines[0] and "class" in lines[0]
    assert not (tmp_path / "out").exists()


def test_no_held_out_work_without_held_out_data():
    """Without held-out data the program has no test outputs and no held-out input."""
    import jax

    from trainscape.sweep.prepare import Prepared
    from trainscape.train.loop import train_one

    prep = Prepared(ts.parse({"data": {"name": "moons", "n_samples": 16},
                              "model": {"hidden": [2]}, "train": {"steps": 3}}))
    assert not prep.static.test and prep.test == ()
    hp = {k: np.asarray(v[0] if np.ndim(v) else v) for k, v in
          prep.hparams(np.arange(1)).items()}
    out = jax.eval_shape(lambda h: train_one(h, prep.x.astype(np.float32),
                                             prep.y.astype(np.float32), prep.static), hp)
    assert out.test_loss_R is None and out.test_acc_R is None
    held = Prepared(ts.parse({"data": {"name": "moons", "n_samples": 16, "holdout": 0.25},
                              "model": {"hidden": [2]}, "train": {"steps": 3}}))
    assert held.static.test and len(held.x_test) == 4
    out = jax.eval_shape(lambda h: train_one(h, held.x.astype(np.float32),
                                             held.y.astype(np.float32), held.static,
                                             test=(held.x_test.astype(np.float32),
                                                   held.y_test.astype(np.float32))), hp)
    assert out.test_loss_R.shape == out.loss_R.shape == (4,)


def test_held_out_summaries_read_the_steps_up_to_the_freeze():
    """final_test_loss / min_test_loss (and the final accuracy) over the recorded steps up to
    and including the one a run froze at: never frozen (-1), frozen at step 20, at step 0."""
    from trainscape.sweep.tables import held_out_summaries

    steps = np.array([0, 10, 20, 30])
    t = {"diverged_step": np.array([-1, 20, 0]),
         "test_loss_R": np.array([[4.0, 1.0, 3.0, 2.0],
                                  [6.0, 5.0, 7.0, np.nan],
                                  [9.0, 1.0, 1.0, 1.0]]),
         "test_acc_R": np.array([[0.1, 0.2, 0.3, 0.4],
                                 [0.5, 0.6, 0.7, 0.0],
                                 [0.8, 0.9, 0.9, 0.9]])}
    out = held_out_summaries(t, steps, accuracy=True)
    np.testing.assert_array_equal(out["final_test_loss"], [2.0, 7.0, 9.0])
    np.testing.assert_array_equal(out["min_test_loss"], [1.0, 5.0, 9.0])
    np.testing.assert_array_equal(out["final_test_accuracy"], [0.4, 0.7, 0.8])
    assert "final_test_accuracy" not in held_out_summaries(t, steps, accuracy=False)
