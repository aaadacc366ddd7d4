"""gradcheck: hand-written NumPy gradients against jax.grad / finite-difference references."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from trainscape.cli import commands
from trainscape.errors import InputError
from trainscape.gradcheck import finite_difference_grad, gradcheck

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "numpy_seed_net.py"

# Small net whose middle weight is square, so a transposed (8, 8) matrix keeps its shape.
SIZES = (6, 8, 8, 1)
M = 10


def make_problem(dtype=np.float64, sizes=SIZES, m=M, seed=0):
    rng = np.random.default_rng(seed)
    params = [
        {"w": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype),
         "b": (0.3 * rng.standard_normal(b)).astype(dtype)}
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    x = rng.standard_normal((m, sizes[0])).astype(dtype)
    y = (rng.random((m, 1)) < 0.5).astype(dtype)
    return params, x, y


def np_loss(params, x, y):
    a = x
    for layer in params[:-1]:
        a = np.tanh(a @ layer["w"] + layer["b"])
    z = a @ params[-1]["w"] + params[-1]["b"]
    return np.mean(np.logaddexp(0.0, z) - y * z)


def jnp_loss(params, x, y):
    a = x
    for layer in params[:-1]:
        a = jnp.tanh(a @ layer["w"] + layer["b"])
    z = a @ params[-1]["w"] + params[-1]["b"]
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)


def np_grads(params, x, y, mistake=None):
    """Hand-written backprop in the inputs' dtype, with one optional injected mistake."""
    m = x.shape[0]
    acts = [x]
    for layer in params[:-1]:
        acts.append(np.tanh(acts[-1] @ layer["w"] + layer["b"]))
    z = acts[-1] @ params[-1]["w"] + params[-1]["b"]
    p = 1 / (1 + np.exp(-z))
    dz = (p - y) / m
    out = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        dw, db = acts[i].T @ dz, dz.sum(axis=0)
        if i == 1 and mistake == "bias_sum_all":
            db = dz.sum()
        if i == 1 and mistake == "bias_broadcast":
            db = np.full_like(db, dz.sum())
        if i == 1 and mistake == "bias_per_sample":
            db = dz.sum(axis=1)
        if i == 1 and mistake == "bias_keepdims":
            db = dz.sum(axis=0, keepdims=True)
        if i == 2 and mistake == "missing_1_over_m":
            dw = acts[i].T @ (p - y)
        if i == 1 and mistake == "transposed_square":
            dw = dz.T @ acts[i]
        if i == 0 and mistake == "transposed_shape":
            dw = dw.T
        if i == 0 and mistake == "sign_flip":
            dw = -dw
        out[i] = {"w": dw, "b": db}
        if i > 0:
            dz = (dz @ params[i]["w"].T) * (1 - acts[i] ** 2)
    return out


LOSSES = {"finite-differences": np_loss, "jax.grad": jnp_loss}


def assert_only(table, param, hint_part):
    bad = table[~table["ok"]]
    assert bad["param"].tolist() == [param], table.to_string()
    assert hint_part in bad["hint"].iloc[0], bad["hint"].iloc[0]
    assert (table.loc[table["ok"], "hint"] == "").all()


@pytest.mark.parametrize("reference", sorted(LOSSES))
def test_correct_gradient_passes(reference):
    params, x, y = make_problem()
    table = gradcheck(LOSSES[reference], np_grads, params, x, y)
    assert table["ok"].all(), table.to_string()
    assert (table["reference"] == reference).all()
    assert table["param"].tolist() == [
        "[0]['b']", "[0]['w']", "[1]['b']", "[1]['w']", "[2]['b']", "[2]['w']"
    ]
    assert table["shape"].tolist() == [(8,), (6, 8), (8,), (8, 8), (1,), (8, 1)]
    assert (table["rel_err"] < 1e-7).all()
    assert (table["hint"] == "").all()


MISTAKES = {
    "bias_sum_all": ("[1]['b']", "constant across units"),
    "bias_broadcast": ("[1]['b']", "constant across units"),
    "bias_per_sample": ("[1]['b']", "summed over the wrong axis"),
    "bias_keepdims": ("[1]['b']", "shape (1, 8), expected (8,); values match once reshaped"),
    "missing_1_over_m": ("[2]['w']", f"off by a factor of ~m (={M}"),
    "transposed_square": ("[1]['w']", "transposed?"),
    "transposed_shape": ("[0]['w']", "transposed?"),
    "sign_flip": ("[0]['w']", "sign flipped (gradient ascent?)"),
}


@pytest.mark.parametrize("reference", sorted(LOSSES))
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_injected_mistake_flagged_on_that_array_only(mistake, reference):
    params, x, y = make_problem()
    table = gradcheck(
        LOSSES[reference], lambda p, x, y: np_grads(p, x, y, mistake), params, x, y
    )
    assert (table["reference"] == reference).all()
    param, hint = MISTAKES[mistake]
    assert_only(table, param, hint)


def test_extra_averaging_and_generic_hints():
    params, x, y = make_problem()

    def grads(p, x, y):
        g = np_grads(p, x, y)
        g[0]["b"] = g[0]["b"] / M  # divided by m twice
        g[2]["w"] = 2.0 * g[2]["w"]
        g[1]["w"] = g[1]["w"] + 0.5 * np.abs(g[1]["w"]).max() * np.eye(8)
        return g

    table = gradcheck(np_loss, grads, params, x, y).set_index("param")
    assert table["ok"].tolist().count(False) == 3
    assert "extra 1/m averaging" in table.loc["[0]['b']", "hint"]
    assert "constant factor c=2" in table.loc["[2]['w']", "hint"]
    assert table.loc["[1]['w']", "hint"].startswith("wrong values")


@pytest.mark.parametrize("reference", sorted(LOSSES))
def test_float32_inputs_no_false_alarm(reference):
    params, x, y = make_problem(np.float32, sizes=(20, 32, 16, 1), m=100, seed=3)
    g = np_grads(params, x, y)
    assert all(a.dtype == np.float32 for layer in g for a in layer.values())
    table = gradcheck(LOSSES[reference], np_grads, params, x, y)
    assert table["ok"].all(), table.to_string()
    assert (table["rtol"] == 1e-3).all()
    # The looser float32 tolerance must still catch a real mistake.
    bad = gradcheck(
        LOSSES[reference], lambda p, x, y: np_grads(p, x, y, "sign_flip"), params, x, y
    )
    assert_only(bad, "[0]['w']", "sign flipped")


def test_float32_loss_output_uses_coarser_step():
    params, x, y = make_problem(np.float32, seed=4)

    def loss32(p, x, y):  # computes in float32 whatever it is given
        p32 = [{k: v.astype(np.float32) for k, v in layer.items()} for layer in p]
        return np.float32(np_loss(p32, x.astype(np.float32), y.astype(np.float32)))

    table = gradcheck(loss32, np_grads, params, x, y)
    assert table["ok"].all(), table.to_string()


def test_finite_differences_match_closed_form_quadratic():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 7))  # not symmetric: gradient of 0.5 v'Av is 0.5 (A + A') v
    v = 10.0 * rng.standard_normal(7)

    def quad(p, x, y):  # np.dot rejects JAX tracers, so gradcheck must fall back to FD
        return 0.5 * np.dot(p["v"], np.dot(a, p["v"])) + np.sum(p["c"] ** 2)

    params = {"v": v, "c": np.array([[1.5, -2.0]])}
    fd = finite_difference_grad(quad, params, None, None)
    np.testing.assert_allclose(fd["v"], 0.5 * (a + a.T) @ v, rtol=1e-8)
    np.testing.assert_allclose(fd["c"], 2.0 * params["c"], rtol=1e-8)

    def wrong(p, x, y):  # forgot the symmetric part: A v instead of 0.5 (A + A') v
        return {"v": a @ p["v"], "c": 2 * p["c"]}

    table = gradcheck(quad, wrong, params, None, None)
    assert_only(table, "['v']", "wrong values")
    assert (table["reference"] == "finite-differences").all()


def test_sampling_is_reproducible_and_still_catches_bugs():
    params, x, y = make_problem(sizes=(30, 64, 1), m=20)
    runs = [gradcheck(np_loss, np_grads, params, x, y, max_entries_per_array=50, seed=s)
            for s in (7, 7, 8)]
    assert runs[0]["checked"].tolist() == [50, 50, 1, 50]
    assert runs[0]["max_abs_err"].tolist() == runs[1]["max_abs_err"].tolist()
    assert runs[0]["max_abs_err"].tolist() != runs[2]["max_abs_err"].tolist()
    bad = gradcheck(np_loss, lambda p, x, y: np_grads(p, x, y, "sign_flip"), params, x, y,
                    max_entries_per_array=50)
    assert_only(bad, "[0]['w']", "sign flipped")


def test_explicit_tolerances_and_zero_gradient():
    params, x, y = make_problem()

    def grads(p, x, y):
        g = np_grads(p, x, y)
        g[2]["b"] = np.zeros_like(g[2]["b"])
        return g

    assert_only(gradcheck(np_loss, grads, params, x, y), "[2]['b']", "all zeros")
    loose = gradcheck(np_loss, grads, params, x, y, rtol=1.0)
    assert loose["ok"].all() and (loose["rtol"] == 1.0).all()


def test_bad_inputs_raise_input_error():
    params, x, y = make_problem()
    with pytest.raises(InputError, match="one per parameter array"):
        gradcheck(np_loss, lambda p, x, y: np_grads(p, x, y)[:2], params, x, y)
    # (w, b) tuples would pair w with params' sorted 'b' key: refuse rather than guess.
    with pytest.raises(InputError, match="structured like params"):
        gradcheck(np_loss, lambda p, x, y: [(g["w"], g["b"]) for g in np_grads(p, x, y)],
                  params, x, y)
    # Other dict keys would be paired by position (here "v" with "b", "u" with "w"): refused
    renamed = lambda p, x, y: [{"u": g["w"], "v": g["b"]} for g in np_grads(p, x, y)]  # noqa: E731
    with pytest.raises(InputError, match=r"dict keys \['u', 'v'\]; params has \['b', 'w'\]"):
        gradcheck(np_loss, renamed, params, x, y)
    # A tuple where params has a list is fine: the leaves line up one for one.
    assert gradcheck(np_loss, lambda p, x, y: tuple(np_grads(p, x, y)), params, x, y)["ok"].all()
    with pytest.raises(InputError, match="must return one float"):
        gradcheck(lambda p, x, y: np.ones(3), np_grads, params, x, y)
    with pytest.raises(InputError, match="floating-point"):
        gradcheck(np_loss, np_grads, [{"w": np.ones((2, 2), dtype=np.int64)}], x, y)


def test_cli_flags_buggy_example_and_passes_fixed():
    out = io.StringIO()
    assert commands.gradcheck(str(EXAMPLE), stream=out) == 1
    text = out.getvalue()
    assert "finite differences" in text
    failing = [line for line in text.splitlines() if " FAIL " in line]
    assert len(failing) == 1 and failing[0].startswith("[1]['b']"), text
    assert "constant across units" in failing[0]

    out = io.StringIO()
    assert commands.gradcheck(f"{EXAMPLE}:loss,grads_fixed,example", stream=out) == 0
    assert "FAIL" not in out.getvalue() and "6/6 arrays ok" in out.getvalue()


def test_cli_dotted_module_and_partial_names(tmp_path, monkeypatch):
    (tmp_path / "my_gc_mod.py").write_text(textwrap.dedent("""
        import numpy as np
        def loss(p, x, y):
            return float(np.sum((x @ p["w"] - y) ** 2))
        def wrong(p, x, y):
            return {"w": x.T @ (x @ p["w"] - y)}
        def right(p, x, y):
            return {"w": 2 * x.T @ (x @ p["w"] - y)}
        def example():
            rng = np.random.default_rng(0)
            return {"w": rng.standard_normal(3)}, rng.standard_normal((5, 3)), np.ones(5)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert commands.gradcheck("my_gc_mod:,right", stream=io.StringIO()) == 0
    out = io.StringIO()
    assert commands.gradcheck("my_gc_mod:loss,wrong,example", stream=out) == 1
    assert "constant factor c=0.5" in out.getvalue()


@pytest.mark.parametrize("spec, match", [
    ("no/such/file.py", "no such file"),
    ("no_such_module_for_gradcheck", "cannot import"),
    ("json", "has no function 'loss'"),
    (f"{EXAMPLE}:loss,nope,example", "has no function 'nope'"),
    (f"{EXAMPLE}:loss,gradz,example", r"has no function 'gradz'.*\(did you mean 'grads'\?\)"),
    (f"{EXAMPLE}:a,b,c,d", "at most three"),
    ("", "expected module_or_path"),
])
def test_cli_bad_spec(spec, match):
    with pytest.raises(InputError, match=match) as err:
        commands.gradcheck(spec, stream=io.StringIO())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("tol", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_tolerances_must_be_finite_and_non_negative(tol, value):
    """An infinite tolerance passed a wrong gradient; NaN and negative ones pass nothing."""
    params, x, y = make_problem()
    with pytest.raises(InputError, match=f"gradcheck {tol}: got") as err:
        gradcheck(np_loss, lambda p, x, y: np_grads(p, x, y)[::-1], params, x, y,
                  **{tol: value})
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=f"gradcheck --{tol}: got"):
        commands.gradcheck(str(EXAMPLE), stream=io.StringIO(), **{tol: value})


def test_bad_tolerance_on_the_command_line_exits_2(capsys):
    from trainscape.cli.main import main

    assert main(["gradcheck", str(EXAMPLE), "--rtol", "inf"]) == 2
    err = capsys.readouterr().err
    assert "--rtol" in err and "finite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"loss_fn": 3}, "gradcheck loss_fn: got 3; expected a function loss"),
    ({"grad_fn": None}, "gradcheck grad_fn: got None; expected a function grad"),
    ({"max_entries_per_array": "a"}, "gradcheck max_entries_per_array: got 'a'; allowed: an int"),
    ({"max_entries_per_array": 2.7}, "max_entries_per_array: got 2.7"),
    ({"max_entries_per_array": True}, "max_entries_per_array: got True"),
    ({"max_entries_per_array": 0}, "max_entries_per_array: got 0"),
    ({"seed": "a"}, "gradcheck seed: got 'a'; allowed: an integer >= 0"),
    ({"seed": -1}, "gradcheck seed: got -1"), ({"seed": 1.5}, "gradcheck seed: got 1.5"),
])
def test_arguments_are_checked_before_anything_runs(kwargs, match):
    params, x, y = make_problem()
    calls = []

    def loss(p, x, y):
        calls.append(1)
        return np_loss(p, x, y)

    args = {"loss_fn": loss, "grad_fn": np_grads, **kwargs}
    with pytest.raises(InputError, match=match) as err:
        gradcheck(args.pop("loss_fn"), args.pop("grad_fn"), params, x, y, **args)
    assert "\n" not in str(err.value) and not calls
