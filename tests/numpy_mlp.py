"""An independent NumPy (float64) MLP with hand-written backprop: the reference the tests
compare trainscape against. Nothing here imports JAX or trainscape."""

import numpy as np


def act(name, z):
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "identity":
        return z
    raise ValueError(name)


def dact(name, z, a):
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(name)


def forward(params, x, activation="tanh"):
    """Returns the output and the cache of (pre-activation, activation) per layer."""
    cache = []
    h = x
    for i, layer in enumerate(params):
        z = h @ layer["w"] + layer.get("b", 0.0)
        a = act(activation, z) if i < len(params) - 1 else z
        cache.append((h, z, a))
        h = a
    return h, cache


def loss_and_dout(out, y, loss):
    n = out.shape[0]
    if loss == "bce":
        z = out[:, 0]
        value = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
        dz = (1.0 / (1.0 + np.exp(-z)) - y) / n
        return value, dz[:, None]
    if loss == "mse":
        yy = y.reshape(out.shape)
        r = out - yy
        return np.mean(r * r), 2.0 * r / r.size
    raise ValueError(loss)


def loss_and_grads(params, x, y, loss="bce", activation="tanh"):
    out, cache = forward(params, x, activation)
    value, d = loss_and_dout(out, y, loss)
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        h_in, z, a = cache[i]
        if i < len(params) - 1:
            d = d * dact(activation, z, a)
        g = {"w": h_in.T @ d}
        if "b" in params[i]:
            g["b"] = d.sum(axis=0)
        grads[i] = g
        d = d @ params[i]["w"].T
    return value, grads


def gd_curve(params, x, y, lr, steps, loss="bce", activation="tanh", momentum=None):
    """Loss at steps 0..steps of full-batch gradient descent (optionally heavy-ball)."""
    p = [{k: v.copy() for k, v in layer.items()} for layer in params]
    vel = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in params]
    curve = []
    for _ in range(steps):
        value, g = loss_and_grads(p, x, y, loss, activation)
        curve.append(value)
        for layer, gl, vl in zip(p, g, vel, strict=True):
            for k in layer:
                if momentum is None:
                    layer[k] -= lr * gl[k]
                else:
                    vl[k] = momentum * vl[k] + gl[k]
                    layer[k] -= lr * vl[k]
    curve.append(loss_and_grads(p, x, y, loss, activation)[0])
    return np.array(curve)


def seed_init(rng, sizes):
    """The question's init: W1 ~ U[0, 1), other weights N(0, 1), zero biases."""
    params = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.uniform(0, 1, (fi, fo)) if i == 0 else rng.standard_normal((fi, fo))
        params.append({"w": w, "b": np.zeros(fo)})
    return params
