"""What a new user meets first: caller arrays and [data] standardize, heatmap titles and ticks,
Flax and Equinox models, output-shape checks, config-relative paths, the CLI's small facts.
Networks are tiny and steps few: every distinct config costs a compile."""

import numpy as np
import pytest

import trainscape as ts
from trainscape.viz import report

TINY = {"model": {"hidden": [4]}, "loss": {"name": "bce"},
        "train": {"steps": 5, "dtype": "float64"}, "sweep": {"learning_rate": [0.5]}}


@pytest.fixture(scope="module")
def raw_data():
    rng = np.random.default_rng(0)
    x = 100.0 * rng.standard_normal((40, 3)) + 7.0
    y = (x[:, 0] > 7.0).astype(np.float64)
    return x, y


def _with(cfg, **sections):
    out = dict(cfg)
    for k, v in sections.items():
        out[k] = {**cfg.get(k, {}), **v}
    return out


def _losses(res):
    return res.curves.sort_values(["run_id", "step"])["loss"].to_numpy()


def test_caller_arrays_are_standardized_as_the_config_says(raw_data):
    """`[data] standardize` applies to `data=(x, y)`: the run on raw x equals the run on x
    standardized by hand (NumPy, population std) with standardize off, and the meta and the
    report's data row say which was done."""
    x, y = raw_data
    on = ts.run(TINY, data=(x, y), out=None, progress=False)
    off = ts.run(_with(TINY, data={"standardize": False}), data=(x, y), out=None,
                 progress=False)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    by_hand = ts.run(_with(TINY, data={"standardize": False}), data=(z, y), out=None,
                     progress=False)
    np.testing.assert_allclose(_losses(on), _losses(by_hand), rtol=1e-12)
    assert not np.allclose(_losses(on), _losses(off))
    assert on.config.data.standardize is True and off.config.data.standardize is False
    assert on.meta["data"]["standardized"] is True
    assert off.meta["data"]["standardized"] is False
    rows = dict(report._environment_rows(on))
    assert "standardized" in rows["data"] and "caller arrays" in rows["data"]
    assert "as given" in dict(report._environment_rows(off))["data"]


def _dense_model(d_out):
    import jax
    import jax.numpy as jnp

    def init(key):
        return {"w": jax.random.normal(key, (3, d_out), jnp.float64)}

    def apply(params, x):
        return x @ params["w"]

    return ts.Model(init=init, apply=apply)


@pytest.mark.parametrize("loss, d_out, want", [
    ("bce", 3, "(40, 1) or (40,)"), ("mse", 2, "(40, 1) or (40,)"),
    ("cross_entropy", 1, "K >= 2")])
def test_custom_model_output_shape_is_checked_before_compiling(raw_data, loss, d_out, want):
    x, y = raw_data
    if loss == "cross_entropy":
        y = y.astype(np.int64)
    cfg = _with(TINY, loss={"name": loss})
    with pytest.raises(ts.InputError) as err:
        ts.run(cfg, data=(x, y), model=_dense_model(d_out), out=None, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("model=") and want in msg
    assert f"(40, {d_out})" in msg


def test_custom_model_of_the_right_shape_passes_the_check(raw_data):
    x, y = raw_data
    res = ts.run(TINY, data=(x, y), model=_dense_model(1), out=None, progress=False)
    assert len(res.runs) == 1
