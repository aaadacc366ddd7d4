"""Hand-written NumPy backprop for a 30 -> tanh 128 -> tanh 64 -> sigmoid 1 network (mean BCE).

Mirrors the "are my gradients calculated wrong?" question: `grads` contains ONE deliberate,
realistic mistake (the second layer's bias gradient is summed over every axis instead of the
batch axis; NumPy broadcasts the scalar in `b -= lr * db`, so nothing crashes), `grads_fixed`
is the corrected version. Check them with

    trainscape gradcheck experiments/numpy_seed_net.py                        # flags [1]['b']
    trainscape gradcheck experiments/numpy_seed_net.py:loss,grads_fixed,example   # passes

Parameters are a list of dicts {"w": (fan_in, fan_out), "b": (fan_out,)}.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

SIZES = (30, 128, 64, 1)


def _forward(params, x):
    """Activations of every layer (input included) and the output logits."""
    acts = [x]
    for layer in params[:-1]:
        acts.append(np.tanh(acts[-1] @ layer["w"] + layer["b"]))
    logits = acts[-1] @ params[-1]["w"] + params[-1]["b"]
    return acts, logits


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def loss(params, x, y):
    """Mean binary cross-entropy of sigmoid(logits) against labels y of shape (m, 1)."""
    _, z = _forward(params, x)
    # -[y log s(z) + (1-y) log(1-s(z))] written as log(1+e^z) - y z: same value, no log(0).
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _backprop(params, x, y, *, bias_axis):
    m = x.shape[0]
    acts, z = _forward(params, x)
    dz = (_sigmoid(z) - y) / m  # d(mean BCE)/d logits
    out = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        axis = bias_axis if i == 1 else 0
        out[i] = {"w": acts[i].T @ dz, "b": dz.sum(axis=axis)}
        if i > 0:
            # tanh'(u) = 1 - tanh(u)^2, and acts[i] is tanh of layer i-1's pre-activation.
            dz = (dz @ params[i]["w"].T) * (1.0 - acts[i] ** 2)
    return out


def grads(params, x, y):
    """Backprop with the bug: db for the second hidden layer uses dz.sum() (no axis=0)."""
    return _backprop(params, x, y, bias_axis=None)


def grads_fixed(params, x, y):
    """Correct backprop: every bias gradient sums over the batch axis only."""
    return _backprop(params, x, y, bias_axis=0)


def example(n_rows: int = 64, seed: int = 0):
    """(params, x, y): 64 standardized breast-cancer rows and params from a fixed RNG."""
    data = load_breast_cancer()
    x_all = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    rng = np.random.default_rng(seed)
    rows = rng.choice(x_all.shape[0], size=n_rows, replace=False)
    x = x_all[rows].astype(np.float64)
    y = data.target[rows].astype(np.float64).reshape(-1, 1)
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        # As in the question: uniform [0, 1) first-layer weights, Gaussian after that (scaled
        # by 1/sqrt(fan_in) so the tanh units are not all saturated).
        if i == 0:
            w = rng.random((fan_in, fan_out))
        else:
            w = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params.append({"w": w.astype(np.float64), "b": np.zeros(fan_out, dtype=np.float64)})
    return params, x, y


if __name__ == "__main__":
    from trainscape.cli.main import main

    raise SystemExit(main(["gradcheck", __file__]))
