"""An independent NumPy (float64) MLP with hand-written backprop: the reference the tests
compare trainscape against. Nothing here imports JAX or trainscape."""

import math

import numpy as np

# GELU, tanh approximation (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", sec. 2):
# gelu(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))). `gelu_erf` is the exact form,
# z Phi(z) = z/2 (1 + erf(z / sqrt(2))).
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_erf = np.vectorize(math.erf, otypes=[np.float64])


def act(name, z):
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "identity":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + _GELU_A * z**3)))
    if name == "gelu_erf":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    raise ValueError(name)


def dact(name, z, a):
    if name == "tanh":
        return 1.0 - a * a
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "identity":
        return np.ones_like(z)
    if name == "sigmoid":
        return a * (1.0 - a)
    if name == "gelu":
        t = np.tanh(_GELU_C * (z + _GELU_A * z**3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * _GELU_A * z * z)
    if name == "gelu_erf":
        return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(
            2.0 * math.pi)
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
        with np.errstate(over="ignore"):  # exp(-z) = inf for z << 0: the sigmoid is 0 there
            dz = (1.0 / (1.0 + np.exp(-z)) - y) / n
        return value, dz[:, None]
    if loss == "mse":
        yy = y.reshape(out.shape)
        r = out - yy
        return np.mean(r * r), 2.0 * r / r.size
    if loss == "cross_entropy":  # softmax over the k outputs, integer labels y in [0, k)
        labels = np.asarray(y).astype(np.int64)
        shifted = out - out.max(axis=1, keepdims=True)
        logz = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        logp = shifted - logz
        value = -np.mean(logp[np.arange(n), labels])
        onehot = np.zeros_like(out)
        onehot[np.arange(n), labels] = 1.0
        return value, (np.exp(logp) - onehot) / n
    raise ValueError(loss)


def loss_and_grads(params, x, y, loss="bce", activation="tanh"):
    out, cache = forward(params, x, activation)
    value, d = loss_and_dout(out, y, loss)
    return value, _backprop(params, cache, d, activation)


def _backprop(params, cache, d, activation, masks=None, keep=1.0):
    """Gradients from d(loss)/d(output) back through the layers' cached (input, z, a); with
    `masks`, through inverted dropout on every hidden activation."""
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        h_in, z, a = cache[i]
        if i < len(params) - 1:
            if masks is not None:
                d = d * masks[i] / keep
            d = d * dact(activation, z, a)
        g = {"w": h_in.T @ d}
        if "b" in params[i]:
            g["b"] = d.sum(axis=0)
        grads[i] = g
        d = d @ params[i]["w"].T
    return grads


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


def copy_params(params):
    return [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in params]


def scaled(params, s):
    """Every parameter (weights and biases) times s."""
    return [{k: s * np.asarray(v, dtype=np.float64) for k, v in layer.items()}
            for layer in params]


def gd_trajectory(params, x, y, lr, steps, loss="bce", activation="tanh"):
    """Plain full-batch gradient descent: (losses at steps 0..steps, parameters at steps
    0..steps)."""
    p = copy_params(params)
    curve, history = [], [copy_params(p)]
    for _ in range(steps):
        value, g = loss_and_grads(p, x, y, loss, activation)
        curve.append(value)
        p = sgd_step(p, g, lr)
        history.append(p)
    curve.append(loss_and_grads(p, x, y, loss, activation)[0])
    return np.array(curve), history


def sgd_step(params, grads, lr):
    """A new parameter list: p - lr * g."""
    return [{k: layer[k] - lr * gl[k] for k in layer}
            for layer, gl in zip(params, grads, strict=True)]


def accuracy(params, x, y, loss, activation="tanh"):
    """Fraction correct: logit > 0 for bce, argmax of the outputs for cross_entropy."""
    out, _ = forward(params, x, activation)
    if loss == "bce":
        return float(np.mean((out[:, 0] > 0).astype(np.float64) == y))
    if loss == "cross_entropy":
        return float(np.mean(np.argmax(out, axis=1) == np.asarray(y).astype(np.int64)))
    raise ValueError(loss)


def loss_and_grads_dropout(params, x, y, masks, rate, loss="mse", activation="tanh"):
    """Loss and gradients with inverted dropout on every hidden activation:
    h = act(z) * mask / (1 - rate), with masks[i] a 0/1 array shaped like layer i's
    activations (n, width). The output layer is not dropped."""
    keep = 1.0 - rate
    cache, h = [], x
    for i, layer in enumerate(params):
        z = h @ layer["w"] + layer.get("b", 0.0)
        if i < len(params) - 1:
            a = act(activation, z)
            out = a * masks[i] / keep
        else:
            a = out = z
        cache.append((h, z, a))
        h = out
    value, d = loss_and_dout(h, y, loss)
    return value, _backprop(params, cache, d, activation, masks, keep)
