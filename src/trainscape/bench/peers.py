"""Benchmark: trainscape's vmapped sweep against the usual ways of training many small nets.

Every peer does the same work per run-step: a full-batch forward pass, the mean binary
cross-entropy on logits, its gradient, a plain SGD update, and the loss recorded for that step.
Peers build their own data and initial parameters (same distributions as the engine) so that a
bug in the engine cannot make a peer look slower or faster than it is.

Figures reported per peer:
- run-steps/s = runs x steps / seconds (best of ``repeats``), the peers timed in interleaved
  rounds (repeat r of every peer, then repeat r + 1, each round starting one peer further
  along) so that a drifting machine speed and the place in a round hit them alike;
- utilization = useful FLOP/s / dense float32 matmul FLOP/s measured in this same process (the
  best of the opening measurement and one after every round), where
  useful FLOPs per run-step = 6 x n_samples x sum(fan_in x fan_out) (forward 2, backward 4).

One-run-at-a-time peers (``numpy_loop``, ``torch_eager``) are timed on a diagonal subset of the
grid (every lr bucket represented) and extrapolated per run-step: their cost is linear in runs.

Each workload also gets a matmul bound: the run-step's matrix products alone (`step_products`),
laid out and grouped as the engine trains that network, timed after every round like the
matmul rate. It says how much of a step's time is left to anything but its matmuls, and so
whether a target needs more than XLA's matmuls of those shapes can give.

On a GPU (JAX's default backend) the torch peers run on CUDA when torch was built with it, the
vmapped peers get the whole grid, and every peer's float32 matmuls are true float32 (no TF32),
the precision of the engine's default ``matmul_precision = "highest"``. The NumPy loop stays on
the host's CPU: it is what a user without trainscape runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import ConfigError

# engine_no_early_exit: the engine with [train] early_exit = false (every step computed), so
# every workload times early exit on against off in the same process
PEERS = ("numpy_loop", "torch_eager", "torch_vmap", "jax_step_loop", "engine",
         "engine_no_early_exit")
ENGINES = ("engine", "engine_no_early_exit")
# Peers that train one run at a time: timed on a subset and extrapolated per run-step.
ONE_AT_A_TIME = ("numpy_loop", "torch_eager")
TORCH_PEERS = ("torch_eager", "torch_vmap")
MATMUL_N = 2048

# The performance issue's targets for a 2-core CPU: the engine's utilization, and the engine's
# run-steps/s over each peer's, both measured in the same run.
TARGETS: dict[str, dict[str, float]] = {
    "seed": {"utilization": 0.55, "numpy_loop": 1.5, "torch_eager": 4.0, "torch_vmap": 2.5,
             "jax_step_loop": 1.5},
    "small": {"utilization": 0.25, "numpy_loop": 8.0, "torch_eager": 20.0, "torch_vmap": 4.0,
              "jax_step_loop": 1.5},
    # the early-exit issue's: the engine's time with early exit at most this fraction of its
    # time without (best of the rounds each)
    "diverging": {"early_exit_time_ratio": 0.55},
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload. ``data`` is the trainscape data config, used verbatim."""

    name: str
    data: dict
    hidden: tuple[int, ...]
    init: str  # "seed": W1 ~ U[0,1), other W ~ N(0,1); "normal": W ~ N(0, 1/fan_in). b = 0.
    steps: int
    lr_range: tuple[float, float]
    n_lr: int
    n_seeds: int
    activation: str = "tanh"
    # Runs timed for the one-at-a-time peers; all runs for the vmapped ones unless vmap_runs.
    subset_runs: int = 16
    vmap_runs: int | None = None

    @property
    def n_runs(self) -> int:
        return self.n_lr * self.n_seeds

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(learning_rate, seed) per run, lr-major like the engine's sweep."""
        lrs = np.geomspace(self.lr_range[0], self.lr_range[1], self.n_lr)
        lr, seed = np.meshgrid(lrs, np.arange(self.n_seeds), indexing="ij")
        return lr.ravel().astype(np.float32), seed.ravel().astype(np.int64)


MOONS_256 = {"name": "moons", "n_samples": 256, "noise": 0.1, "data_seed": 0, "standardize": True}

WORKLOADS: dict[str, Workload] = {
    "seed": Workload(
        name="seed",
        data={"name": "breast_cancer", "standardize": True},
        hidden=(128, 64),
        init="seed",
        steps=200,
        lr_range=(1e-3, 10.0),
        n_lr=16,
        n_seeds=16,
        # 10.6 GFLOP per step over all 256 runs: a 64-run batch (every lr bucket) already fills
        # the cores and keeps each vmapped peer under a minute or so per repeat on 2 cores.
        vmap_runs=64,
    ),
    "small": Workload(
        name="small",
        data=MOONS_256,
        hidden=(16, 16),
        init="normal",
        steps=300,
        lr_range=(1e-3, 10.0),
        n_lr=64,
        n_seeds=64,
        # 1024 of the 4096 runs per vmapped peer (every lr bucket), so that one repeat stays
        # near half a minute on 2 cores; what is compared is the per-run-step rate.
        vmap_runs=1024,
    ),
    # Early exit's workload: most runs above a learning rate of about 10 blow up within the
    # first steps, and the engine stops computing a block once all its runs are frozen.
    "diverging": Workload(
        name="diverging",
        data=MOONS_256,
        hidden=(32, 32),
        init="normal",
        steps=300,
        lr_range=(1.0, 1e4),
        n_lr=16,
        n_seeds=64,
        vmap_runs=256,
    ),
}


def _resolve(workload: str | Workload) -> Workload:
    if isinstance(workload, Workload):
        return workload
    if workload not in WORKLOADS:
        raise ConfigError(
            f"bench workload: got {workload!r}; allowed: {', '.join(WORKLOADS)} or 'all'"
        )
    return WORKLOADS[workload]


def workload_config(name: str | Workload) -> dict:
    """The trainscape config dict that makes the engine run exactly this workload."""
    w = _resolve(name)
    return {
        "name": f"bench-{w.name}",
        "data": dict(w.data),
        "model": {"hidden": list(w.hidden), "activation": w.activation, "init": w.init},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd"},
        "train": {"steps": w.steps, "dtype": "float32", "record_every": 1},
        "sweep": {
            "learning_rate": {
                "geomspace": [float(w.lr_range[0]), float(w.lr_range[1])],
                "num": w.n_lr,
            },
            "seed": {"range": w.n_seeds},
        },
    }


def useful_flops_per_run_step(n_samples: int, layer_sizes: Sequence[int]) -> int:
    """6 x n x sum(fan_in x fan_out): 2 for the forward matmul, 4 for the two backward ones.
    Elementwise work is left out on purpose: it is what an ideal implementation hides."""
    return (
        6 * n_samples * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
    )


# ---------------------------------------------------------------------------------------------
# Data and initial parameters (independent of the engine's own code paths)


def load_data(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 [n, d], y float32 [n]) for a trainscape data config."""
    from sklearn import datasets

    name = spec["name"]
    if name == "breast_cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
    elif name == "moons":
        X, y = datasets.make_moons(
            n_samples=spec.get("n_samples", 256),
            noise=spec.get("noise", 0.1),
            random_state=spec.get("data_seed", 0),
        )
    else:
        raise ConfigError(f"bench data.name: got {name!r}; allowed: breast_cancer, moons")
    X = np.asarray(X, dtype=np.float64)
    if spec.get("standardize", False):
        # Statistics in float64 so the float32 data is the correctly rounded standardized set.
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), np.asarray(y, dtype=np.float32)


Params = list[tuple[np.ndarray, np.ndarray]]


def init_params(layer_sizes: Sequence[int], init: str, seed: int) -> Params:
    """Initial (W [fan_in, fan_out], b [fan_out]) per layer for one run, float32."""
    rng = np.random.default_rng(seed)
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:], strict=True)):
        if init == "seed":
            W = rng.random((fan_in, fan_out)) if i == 0 else rng.standard_normal((fan_in, fan_out))
        elif init == "normal":
            W = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        else:
            raise ConfigError(f"bench model.init: got {init!r}; allowed: seed, normal")
        params.append((W.astype(np.float32), np.zeros(fan_out, dtype=np.float32)))
    return params


def _stack(inits: Sequence[Params]) -> Params:
    return [
        (np.stack([p[i][0] for p in inits]), np.stack([p[i][1] for p in inits]))
        for i in range(len(inits[0]))
    ]


def subset_indices(n_runs: int, k: int) -> np.ndarray:
    """k run indices on a diagonal of the lr-major grid: spread over every lr bucket and over
    seeds, so the subset sees the same mix of converging and diverging runs as the full grid."""
    k = min(k, n_runs)
    stride = n_runs // k
    return np.array([i * stride + (i % stride) for i in range(k)], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Peers. Each ``_prepare_*`` does untimed setup (tensor conversion, compilation) and returns a
# zero-argument callable that trains every given run from its initial parameters and returns the
# per-step losses as a numpy array [runs, steps].

Prepared = Callable[[], np.ndarray]


def np_loss_and_grads(params: Params, X: np.ndarray, y: np.ndarray) -> tuple[Any, Params]:
    """Mean BCE-on-logits loss and its gradient for one tanh MLP, by hand. Dtype follows the
    inputs (NumPy 2 keeps Python scalars weak), so the same code is checked in float64."""
    acts = [X]
    h = X
    for W, b in params[:-1]:
        h = np.tanh(h @ W + b)
        acts.append(h)
    W, b = params[-1]
    z = (h @ W + b)[:, 0]
    loss = np.mean(np.logaddexp(z, 0) - y * z)
    # sigmoid via tanh: no overflow for large |z| and no float64 promotion.
    g = ((0.5 * (np.tanh(0.5 * z) + 1) - y) / z.shape[0])[:, None]
    grads: Params = []
    for i in range(len(params) - 1, -1, -1):
        W = params[i][0]
        grads.append((acts[i].T @ g, g.sum(axis=0)))
        if i > 0:
            g = (g @ W.T) * (1 - acts[i] * acts[i])
    return loss, grads[::-1]


def _prepare_numpy_loop(X, y, inits, lrs, steps) -> Prepared:
    def train() -> np.ndarray:
        losses = np.empty((len(inits), steps), dtype=np.float32)
        # Diverging runs overflow on purpose; warnings would only cost time.
        with np.errstate(all="ignore"):
            for r, (p0, lr) in enumerate(zip(inits, lrs, strict=True)):
                params = [(W.copy(), b.copy()) for W, b in p0]
                lr = np.float32(lr)
                for t in range(steps):
                    loss, grads = np_loss_and_grads(params, X, y)
                    losses[r, t] = loss
                    params = [
                        (W - lr * gW, b - lr * gb)
                        for (W, b), (gW, gb) in zip(params, grads, strict=True)
                    ]
        return losses

    return train


def _torch_loss(params, X, y):
    import torch
    import torch.nn.functional as F

    h = X
    for W, b in params[:-1]:
        h = torch.tanh(h @ W + b)
    W, b = params[-1]
    z = (h @ W + b)[:, 0]
    return torch.mean(F.softplus(z) - y * z)


@functools.cache
def _torch_device() -> str:
    """Where the torch peers run: on the GPU when the engine does (JAX's default backend is a
    GPU and torch was built with CUDA), else on the CPU. TF32 stays off either way, as in the
    engine's default ``matmul_precision = "highest"``."""
    import torch

    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        return "cuda"
    return "cpu"


def _to_torch(a: np.ndarray):
    import torch

    return torch.from_numpy(a).to(_torch_device())


def _prepare_torch_eager(X, y, inits, lrs, steps) -> Prepared:
    import torch

    Xt, yt = _to_torch(X), _to_torch(y)
    inits_t = [[(_to_torch(W), _to_torch(b)) for W, b in p] for p in inits]

    def run(inits_t, lrs, steps) -> np.ndarray:
        losses = torch.empty((len(inits_t), steps), dtype=torch.float32, device=Xt.device)
        for r, (p0, lr) in enumerate(zip(inits_t, lrs, strict=True)):
            params = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in p0]
            flat = [t for pair in params for t in pair]
            lr = float(lr)
            for t in range(steps):
                loss = _torch_loss(params, Xt, yt)
                loss.backward()
                losses[r, t] = loss.detach()
                with torch.no_grad():
                    for p in flat:
                        p -= lr * p.grad
                        p.grad = None
        return losses.cpu().numpy()  # on a GPU this waits for the last step

    run(inits_t[:1], lrs[:1], 1)  # autograd's first backward allocates its engine threads

    def train() -> np.ndarray:
        return run(inits_t, lrs, steps)

    return train


def _prepare_torch_vmap(X, y, inits, lrs, steps) -> Prepared:
    import torch
    from torch.func import grad_and_value, vmap

    Xt, yt = _to_torch(X), _to_torch(y)
    stacked = [(_to_torch(W), _to_torch(b)) for W, b in _stack(inits)]
    lr_t = _to_torch(np.asarray(lrs, dtype=np.float32))
    lr_W, lr_b = lr_t[:, None, None], lr_t[:, None]
    step_grad = vmap(grad_and_value(_torch_loss), in_dims=(0, None, None))

    def run(params, n_steps):
        losses = torch.empty((len(inits), n_steps), dtype=torch.float32, device=Xt.device)
        with torch.no_grad():
            for t in range(n_steps):
                grads, loss = step_grad(params, Xt, yt)
                losses[:, t] = loss
                params = [
                    (W - lr_W * gW, b - lr_b * gb)
                    for (W, b), (gW, gb) in zip(params, grads, strict=True)
                ]
        return losses.cpu().numpy()

    run(stacked, 1)  # vmap/grad build their dispatch caches on the first call

    def train() -> np.ndarray:
        return run(stacked, steps)

    return train


def _jax_loss(params, X, y):
    # the engine's default precision: true float32 on a GPU (XLA's default there may be TF32)
    dot = functools.partial(jnp.matmul, precision=lax.Precision.HIGHEST)
    h = X
    for W, b in params[:-1]:
        h = jnp.tanh(dot(h, W) + b)
    W, b = params[-1]
    z = (dot(h, W) + b)[:, 0]
    return jnp.mean(jnp.logaddexp(z, 0) - y * z)


def _jax_step(params, lr, X, y):
    loss, grads = jax.value_and_grad(_jax_loss)(params, X, y)
    params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    return params, loss


# Module level so that repeated benchmarks with the same shapes reuse one compilation.
_jax_vmapped_step = jax.jit(jax.vmap(_jax_step, in_axes=(0, 0, None, None)))


def _prepare_jax_step_loop(X, y, inits, lrs, steps) -> Prepared:
    Xj, yj = jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)
    stacked = [
        (jnp.asarray(W, dtype=jnp.float32), jnp.asarray(b, dtype=jnp.float32))
        for W, b in _stack(inits)
    ]
    lr_j = jnp.asarray(lrs, dtype=jnp.float32)
    step = _jax_vmapped_step
    jax.block_until_ready(step(stacked, lr_j, Xj, yj))  # compile outside the timed region

    def train() -> np.ndarray:
        params, losses = stacked, []
        for _ in range(steps):
            params, loss = step(params, lr_j, Xj, yj)
            losses.append(loss)
        # Dispatch is async: the stack + host copy is what waits for the last step.
        return np.asarray(jnp.stack(losses, axis=1))

    return train


_PREPARE = {
    "numpy_loop": _prepare_numpy_loop,
    "torch_eager": _prepare_torch_eager,
    "torch_vmap": _prepare_torch_vmap,
    "jax_step_loop": _prepare_jax_step_loop,
}


def _torch_available() -> str | None:
    """None if torch imports, else the reason it does not."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        return f"torch not installed ({e}); pip install 'trainscape[bench]'"
    return None


# ---------------------------------------------------------------------------------------------
# Agreement between peers


def _check_agreement(
    workload: str | Workload = "seed",
    *,
    steps: int = 20,
    lr: float = 0.1,
    seed: int = 0,
    peers: Iterable[str] = ("torch_eager", "torch_vmap", "jax_step_loop"),
    rtol: float = 1e-4,
) -> dict:
    """Loss curves of one (lr, seed) run from shared initial params, each peer vs numpy_loop.

    Returns {"steps", "lr", "seed", "reference", "rtol", "max_rel_diff": {peer: x},
    "skipped": {peer: why}, "ok"}. The vmapped peers get the run twice (a batch of two) so
    their batched code path is the one compared."""
    w = _resolve(workload)
    X, y = load_data(w.data)
    sizes = (X.shape[1], *w.hidden, 1)
    p0 = init_params(sizes, w.init, seed)
    ref = _prepare_numpy_loop(X, y, [p0], [lr], steps)()[0]
    out: dict[str, Any] = {
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "reference": "numpy_loop",
        "rtol": rtol,
        "max_rel_diff": {},
        "skipped": {},
    }
    torch_missing = _torch_available()
    for peer in peers:
        if peer in TORCH_PEERS and torch_missing:
            out["skipped"][peer] = torch_missing
            continue
        n = 1 if peer in ONE_AT_A_TIME else 2
        curves = _PREPARE[peer](X, y, [p0] * n, [lr] * n, steps)()
        diff = np.abs(curves.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-6)
        out["max_rel_diff"][peer] = float(np.max(diff))
    out["ok"] = all(v <= rtol for v in out["max_rel_diff"].values())
    return out


# ---------------------------------------------------------------------------------------------
# Timing


def _operands(shapes, seed: int) -> tuple[np.ndarray, ...]:
    """Standard normal float32 operands for the timed products, drawn by NumPy: a JAX draw
    compiles a sampler per shape (about 0.5-1 s each on 2 cores) for values nobody reads."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s, dtype=np.float32) for s in shapes)


def _matmul_timer(n: int | None = None) -> Callable[[], float]:
    """A call that times one jitted float32 n x n matmul (n defaults to MATMUL_N) and
    returns its FLOP/s; compiled and warmed here."""
    n = MATMUL_N if n is None else n
    a, b = (jnp.asarray(m) for m in _operands([(n, n), (n, n)], seed=0))
    # the precision the engine's matmuls use by default ([train] matmul_precision): on a GPU
    # "highest" is true float32, not TF32; CPUs compute float32 either way
    dot = jax.jit(lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))
    jax.block_until_ready(dot(a, b))

    def once() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        return 2 * n**3 / (time.perf_counter() - t0)

    return once


def measure_matmul_rate(n: int | None = None, repeats: int = 5) -> dict:
    """Dense float32 n x n matmul FLOP/s, JAX (jit, the rate utilization is relative to) and
    NumPy (reference), best of ``repeats`` after a warm-up. ``n`` defaults to MATMUL_N."""
    n = MATMUL_N if n is None else n
    once = _matmul_timer(n)
    flop = 2 * n**3
    jax_times = [flop / once() for _ in range(repeats)]
    rng = np.random.default_rng(0)
    an, bn = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    an @ bn
    np_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        an @ bn
        np_times.append(time.perf_counter() - t0)
    return {
        "n": n,
        "flop_per_matmul": flop,
        "repeats": repeats,
        "jax_best_s": min(jax_times),
        "jax_flops": flop / min(jax_times),
        "numpy_best_s": min(np_times),
        "numpy_flops": flop / min(np_times),
    }


def step_products(n_samples: int, layer_sizes: Sequence[int], feature_major: bool
                  ) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """The matrix products of one run-step of full-batch gradient descent on an MLP, as
    (lhs shape, rhs shape, (lhs contracted axis, rhs contracted axis)): for every layer the
    forward product and the weight gradient, and for every layer but the first the gradient
    of its input (the data needs none). `feature_major` writes them in the engine's
    feature-major layout (activations (width, n), each product in the form XLA:CPU computes
    fastest; `models.feature_major`), otherwise sample-major ((n, width)). Their FLOPs add up
    to the useful FLOPs less the first layer's input gradient."""
    n = n_samples
    out = []
    for i, (fi, fo) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:], strict=True)):
        if feature_major:
            out.append(((fo, fi), (fi, n), (1, 0)))  # w.T @ h -> (fo, n)
            out.append(((fi, n), (fo, n), (1, 1)))  # weight gradient h . dz -> (fi, fo)
            if i:
                out.append(((fi, fo), (fo, n), (1, 0)))  # input gradient w @ dz -> (fi, n)
        else:
            out.append(((n, fi), (fi, fo), (1, 0)))  # h @ w -> (n, fo)
            out.append(((n, fi), (n, fo), (0, 0)))  # weight gradient h.T @ dz -> (fi, fo)
            if i:
                out.append(((n, fo), (fi, fo), (1, 1)))  # input gradient dz @ w.T -> (n, fi)
    return out


def _products_timer(n_samples: int, layer_sizes: Sequence[int],
                    iters: int = 400) -> tuple[dict, Callable[[], float]]:
    """The matmul bound of a workload: `step_products` alone, laid out and grouped as the
    engine trains the network (its layout, `plan.group_size` runs vmapped per group, one
    group per local device at once through `shard_map`), `iters` steps in one compiled loop.
    Nothing else is computed: no activation, loss or update, so no program that trains these
    runs with these products as XLA matmuls, group by group, can take less time per step. (The
    engine writes a first layer of few inputs as multiply-adds instead, and can beat it there:
    the `small` workload.) Returns what was
    timed and a call that times it once and returns run-steps/s."""
    from ..engine import plan
    from ..engine.compile import compiler_options
    from ..nn import models

    devices = jax.devices()
    fm = models.feature_major(
        [{"w": jax.ShapeDtypeStruct((a, b), jnp.float32)}
         for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True)],
        jax.ShapeDtypeStruct((n_samples, layer_sizes[0]), jnp.float32))
    n_params = sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
    sub = plan.group_size(6 * n_samples * n_params, devices[0].platform)
    products = step_products(n_samples, layer_sizes, fm)
    lead = (len(devices) * sub,)
    ops = _operands([lead + s for a, b, _ in products for s in (a, b)], seed=1)

    def products_once(ops):
        outs = []
        for j, (_, _, (ca, cb)) in enumerate(products):
            a, b = ops[2 * j], ops[2 * j + 1]
            if sub == 1:  # the engine calls its one-run step directly then, with no vmap
                outs.append(lax.dot_general(a[0], b[0], (((ca,), (cb,)), ((), ())))[None])
            else:
                outs.append(lax.dot_general(a, b, (((ca + 1,), (cb + 1,)), ((0,), (0,)))))
        return outs

    def per_device(ops):
        def body(_, carry):
            ops, acc = carry
            # the barriers keep XLA from hoisting the products out of the loop (their operands
            # come back each step) or shrinking them to the element read below
            ops = lax.optimization_barrier(ops)
            outs = lax.optimization_barrier(products_once(ops))
            return ops, acc + sum(o[0, 0, 0] for o in outs)
        return lax.fori_loop(0, iters, body, (ops, jnp.zeros((), jnp.float32)))[1][None]

    P = jax.sharding.PartitionSpec
    mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
    options = compiler_options(devices[0].platform)
    with jax.default_matmul_precision("highest"):
        fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("runs"),),
                                   out_specs=P("runs"), check_vma=False),
                     compiler_options=options or None)
        ops = jax.device_put(ops, jax.sharding.NamedSharding(mesh, P("runs")))
        jax.block_until_ready(fn(ops))
    run_steps = lead[0] * iters

    def once() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(ops))
        return run_steps / (time.perf_counter() - t0)

    info = {"layout": "features" if fm else "samples", "runs_per_group": sub,
            "devices": len(devices), "iters": iters, "products_per_run_step": len(products),
            "flop_per_run_step": sum(2 * int(np.prod(a)) * b[1 - cb]
                                     for a, b, (_, cb) in products)}
    return info, once


# A peer ready to time: what it is (status, runs timed, note) and one repeat of its work, or
# None when it cannot run (skipped, failed in its set-up).
Setup = tuple[dict, Callable[[], Any] | None]


def _setup_peer(peer: str, w: Workload, X, y) -> Setup:
    """Data, initial parameters and any compilation of `peer` on `w`, outside the timed region;
    the returned call trains its runs once and checks the output."""
    lr_all, seed_all = w.grid()
    if peer in ONE_AT_A_TIME:
        idx = subset_indices(w.n_runs, w.subset_runs)
        note = (
            f"one run at a time: {len(idx)} of {w.n_runs} runs timed (diagonal of the grid),"
            " rate extrapolated per run-step"
        )
    elif w.vmap_runs is not None and w.vmap_runs < w.n_runs and jax.default_backend() == "cpu":
        # the subset keeps a CPU's repeats short; an accelerator gets the whole grid, which a
        # batch of a few dozen runs would leave mostly idle
        idx = subset_indices(w.n_runs, w.vmap_runs)
        note = f"{len(idx)} of {w.n_runs} runs in one batch"
    else:
        idx = np.arange(w.n_runs)
        note = f"all {w.n_runs} runs in one batch"
    sizes = (X.shape[1], *w.hidden, 1)
    inits = [init_params(sizes, w.init, int(s)) for s in seed_all[idx]]
    train = _PREPARE[peer](X, y, inits, lr_all[idx], w.steps)
    if peer in TORCH_PEERS:
        note += f"; torch on {_torch_device()}"
    info = {"status": "ok", "runs_timed": int(len(idx)), "steps": w.steps,
            "run_steps_timed": int(len(idx)) * w.steps, "note": note}

    def once() -> None:
        losses = train()
        assert losses.shape == (len(idx), w.steps), losses.shape
        info["final_loss_finite_fraction"] = float(np.isfinite(losses[:, -1]).mean())

    return info, once


def _setup_engine(w: Workload, early_exit: bool = True) -> Setup:
    """The engine through the public call, after one warm-up sweep of the same shapes (so the
    timed sweeps hit the compilation cache); `early_exit` False: with [train] early_exit =
    false."""
    import trainscape as ts

    run = getattr(ts, "run", None)
    if run is None:
        return {"status": "skipped",
                "note": "engine not available (trainscape.run not defined)"}, None
    config = workload_config(w)
    if not early_exit:
        config["train"]["early_exit"] = False

    def once() -> None:
        res = jax.block_until_ready(run(config, out=None, progress=False))
        meta = getattr(res, "meta", None)
        if meta is not None:
            info["run_steps_skipped"] = meta["timings"].get("run_steps_skipped")

    info = {"status": "ok", "runs_timed": w.n_runs, "steps": w.steps,
            "run_steps_timed": w.n_runs * w.steps,
            "note": f"ts.run end to end, all {w.n_runs} runs, after one warm-up sweep"
                    + ("" if early_exit else ", [train] early_exit = false")}
    try:
        once()
    except Exception as e:  # noqa: BLE001 - one failing peer must not hide the others' numbers
        return {"status": "error", "note": f"engine failed: {type(e).__name__}: {e}"}, None
    return info, once


def _time_rounds(setups: dict[str, Setup], repeats: int, w_name: str = "",
                 stream: TextIO | None = None,
                 between: Callable[[], None] | None = None) -> dict[str, dict]:
    """Time the ready peers in rounds: round r times repeat r of every peer, one after the
    other, so that a machine whose speed drifts (this project's 2-core VM varies ~1.4x within
    minutes) slows every peer alike instead of whichever happened to run then. Each round
    starts one peer further along (round r: peers r, r + 1, ..., then 0 .., r - 1), since a
    fixed order favoured one place: `small`'s engine with early exit on and off measured on/off
    0.64 timed first and 1.02 timed second (results/bench/README.md, "Early exit"), with the
    same programs. Garbage is collected before every call. `between` runs once after each
    round (the in-round matmul measurement). A peer that raises is reported as an error and
    left out of the later rounds."""
    results = {p: info for p, (info, _) in setups.items()}  # the calls add to their info
    calls = {p: once for p, (_, once) in setups.items() if once is not None}
    times: dict[str, list[float]] = {p: [] for p in calls}
    order = list(calls)
    for r in range(repeats):
        k = r % max(len(order), 1)
        this_round = [p for p in order[k:] + order[:k] if p in calls]
        if stream is not None:
            print(f"  [{w_name}] round {r + 1}/{repeats}: {', '.join(this_round)}",
                  file=stream, flush=True)
        for peer in this_round:
            gc.collect()
            load = _loadavg()
            results[peer].setdefault("loadavg_1min", [load, load])
            t0 = time.perf_counter()
            try:
                calls[peer]()
            except Exception as e:  # noqa: BLE001 - the other peers' numbers still count
                results[peer] = {"status": "error",
                                 "note": f"{peer} failed: {type(e).__name__}: {e}"}
                del calls[peer], times[peer]
                continue
            times[peer].append(time.perf_counter() - t0)
            results[peer]["loadavg_1min"][1] = _loadavg()
        if between is not None:
            between()
    for peer, ts_ in times.items():
        r = results[peer]
        r.update(seconds=ts_, best_seconds=min(ts_),
                 run_steps_per_s=r["run_steps_timed"] / min(ts_))
    return results


def _time_peer(peer: str, w: Workload, X, y, repeats: int) -> dict:
    """One peer alone: set up, then `repeats` timed calls."""
    return _time_rounds({peer: _setup_peer(peer, w, X, y)}, repeats)[peer]


def _time_engine(w: Workload, repeats: int) -> dict:
    """The engine alone: one warm-up sweep, then `repeats` timed ones."""
    return _time_rounds({"engine": _setup_engine(w)}, repeats)["engine"]


def bench_workload(
    w: str | Workload,
    peers: Sequence[str],
    repeats: int,
    matmul_flops: float,
    stream: TextIO | None = None,
) -> dict:
    """Time every peer on one workload, in interleaved rounds (`_time_rounds`); adds
    utilization and engine/peer ratios. The matmul rate is measured again after every round
    and the best of those and `matmul_flops` (the run's opening measurement) is the
    utilization denominator, so a slow spell of the machine lowers it as it lowers the peers."""
    w = _resolve(w)
    X, y = load_data(w.data)
    sizes = (X.shape[1], *w.hidden, 1)
    flops = useful_flops_per_run_step(X.shape[0], sizes)
    torch_missing = _torch_available()
    setups: dict[str, Setup] = {}
    for peer in peers:
        if stream is not None:
            print(f"  [{w.name}] setting up {peer} ...", file=stream, flush=True)
        if peer in ENGINES:
            setups[peer] = _setup_engine(w, early_exit=peer == "engine")
        elif peer in TORCH_PEERS and torch_missing:
            setups[peer] = {"status": "skipped", "note": torch_missing}, None
        else:
            setups[peer] = _setup_peer(peer, w, X, y)
    rates = [matmul_flops]
    matmul_once = _matmul_timer()
    if stream is not None:
        print(f"  [{w.name}] setting up the matmul bound ...", file=stream, flush=True)
    bound, bound_once = _products_timer(X.shape[0], sizes)
    bound_rates = [bound_once()]

    def between() -> None:
        rates.append(matmul_once())
        bound_rates.append(bound_once())

    results = _time_rounds(setups, repeats, w.name, stream, between)
    matmul_used = max(rates)
    bound.update(run_steps_per_s_in_rounds=bound_rates, run_steps_per_s=max(bound_rates),
                 utilization=max(bound_rates) * flops / matmul_used)
    engine_rate = results.get("engine", {}).get("run_steps_per_s")
    bound["engine_fraction"] = engine_rate / bound["run_steps_per_s"] if engine_rate else None
    for r in results.values():
        rate = r.get("run_steps_per_s")
        r["utilization"] = rate * flops / matmul_used if rate else None
        r["ratio_engine_over_peer"] = engine_rate / rate if rate and engine_rate else None
    agreement = _check_agreement(w, peers=[p for p in peers if p in _PREPARE and p != "numpy_loop"])
    return {
        "spec": dataclasses.asdict(w),
        "config": workload_config(w),
        "n_samples": int(X.shape[0]),
        "layer_sizes": list(sizes),
        "n_runs": w.n_runs,
        "steps": w.steps,
        "useful_flops_per_run_step": flops,
        "matmul_flops_in_rounds": rates[1:],
        "matmul_flops_used": matmul_used,
        "peers": results,
        "matmul_bound": bound,
        "agreement": agreement,
        "early_exit": early_exit_figures(results, w),
        # the targets are for a 2-core CPU; on a GPU or TPU they would mislead
        "targets": check_targets(w.name, results) if jax.default_backend() == "cpu" else [],
    }


def early_exit_figures(peers: dict[str, dict], w: Workload) -> dict | None:
    """The engine with early exit against itself without (both peers timed in the same
    rounds): the ratio of their best times, of each round's times, and the run-steps early exit
    skipped of the runs x (steps + 1) evaluations. None unless both engines ran."""
    on, off = peers.get("engine", {}), peers.get("engine_no_early_exit", {})
    if not on.get("seconds") or not off.get("seconds"):
        return None
    return {"time_ratio_on_over_off": on["best_seconds"] / off["best_seconds"],
            "time_ratio_per_round": [a / b for a, b in zip(on["seconds"], off["seconds"],
                                                           strict=True)],
            "run_steps_skipped": on.get("run_steps_skipped"),
            "run_steps_total": w.n_runs * (w.steps + 1)}


def check_targets(name: str, peers: dict[str, dict]) -> list[dict]:
    """Each of workload `name`'s TARGETS against the timed `peers` (a bench workload's "peers"
    block): the goal, the measured figure, whether it is met (None when a figure is missing)
    and, for a ratio, `needs_utilization`: the engine utilization at which the ratio would be
    met, the goal times the peer's own utilization. Both utilizations share one denominator,
    so a ratio needing more than 1.0 asks the engine to beat the machine's dense matmul rate:
    no layout or fusion can meet it on that machine."""
    out = []
    engine_util = peers.get("engine", {}).get("utilization")
    for key, goal in TARGETS.get(name, {}).items():
        if key == "early_exit_time_ratio":  # at most the goal
            on, off = (peers.get(p, {}).get("best_seconds") for p in ENGINES)
            ratio = on / off if on and off else None
            out.append({"target": "early exit time on/off", "goal": goal, "measured": ratio,
                        "met": None if ratio is None else ratio <= goal,
                        "needs_utilization": None})
            continue
        if key == "utilization":
            out.append({"target": "utilization", "goal": goal, "measured": engine_util,
                        "met": None if engine_util is None else engine_util >= goal,
                        "needs_utilization": goal})
            continue
        ratio = peers.get(key, {}).get("ratio_engine_over_peer")
        peer_util = peers.get(key, {}).get("utilization")
        out.append({"target": f"engine/{key}", "goal": goal, "measured": ratio,
                    "met": None if ratio is None else ratio >= goal,
                    "needs_utilization": None if peer_util is None else goal * peer_util})
    return out


# ---------------------------------------------------------------------------------------------
# Machine description and report


def _read_first(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_info() -> dict:
    """What a reader needs to reproduce or discount the numbers."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": _read_first("/proc/cpuinfo", "model name") or platform.processor(),
        # "AMD EPYC" names several generations; family/model and the vector units tell them
        # apart (the speed of XLA's matmuls and the last bits of results depend on AVX-512)
        "cpu_family_model": "/".join(filter(None, (_read_first("/proc/cpuinfo", "cpu family"),
                                                   _read_first("/proc/cpuinfo", "model\t")))),
        "cpu_vector_isa": [f for f in ("avx2", "fma", "avx512f")
                           if f in (_read_first("/proc/cpuinfo", "flags") or "").split()],
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram": _read_first("/proc/meminfo", "MemTotal"),
        "loadavg_at_start": (
            [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        ),
        "trainscape": _trainscape_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
        "engine_compiler_options": _engine_compiler_options(),  # the peers get XLA's defaults
        "thread_env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "TORCH", "JAX_"))
        },
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_device"] = _torch_device()
        if info["torch_device"] == "cuda":
            info["torch_cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    try:
        from threadpoolctl import threadpool_info

        info["numpy_blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:
        info["numpy_blas"] = "threadpoolctl not installed"
    return info


def _engine_compiler_options() -> dict:
    from ..engine import compile as engine

    return engine.compiler_options()


def _trainscape_version() -> str:
    from ..version import __version__

    return __version__


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def format_table(name: str, wres: dict) -> str:
    """Markdown table for one workload."""
    lines = [
        f"### {name}: {wres['n_runs']} runs x {wres['steps']} steps, layers "
        f"{'-'.join(map(str, wres['layer_sizes']))}, n={wres['n_samples']}, "
        f"{wres['useful_flops_per_run_step']:,} useful FLOP/run-step",
        "",
    ]
    if wres.get("matmul_flops_used"):
        lines += [
            f"Peers timed in {len(wres.get('matmul_flops_in_rounds', []))} interleaved rounds; "
            f"utilization against {wres['matmul_flops_used'] / 1e9:.1f} GFLOP/s, the best "
            "matmul rate of the run's opening measurement and one after each round "
            f"({', '.join(f'{r / 1e9:.1f}' for r in wres['matmul_flops_in_rounds'])}).",
            "",
        ]
    lines += [
        "| peer | runs timed | best s | run-steps/s | engine/peer | utilization | load 1m | note |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for peer, r in wres["peers"].items():
        ratio = r.get("ratio_engine_over_peer")
        util = r.get("utilization")
        best = r.get("best_seconds")
        load = r.get("loadavg_1min") or [None, None]
        load_s = "-" if None in load else f"{load[0]:.1f}->{load[1]:.1f}"
        lines.append(
            f"| {peer} | {r.get('runs_timed', '-')} | {'-' if best is None else f'{best:.2f}'} | "
            f"{_fmt_rate(r.get('run_steps_per_s'))} | "
            f"{'-' if ratio is None else f'{ratio:.1f}x'} | "
            f"{'-' if util is None else f'{util:.2%}'} | {load_s} | "
            f"{r['note'] if r['status'] == 'ok' else r['status'] + ': ' + r['note']} |"
        )
    mb = wres.get("matmul_bound")
    if mb and mb.get("run_steps_per_s"):
        frac = mb.get("engine_fraction")
        layout = {"features": "feature-major", "samples": "sample-major"}[mb["layout"]]
        group = f"{mb['runs_per_group']} run{'s' * (mb['runs_per_group'] != 1)} per group"
        lines += [
            "",
            f"Matmul bound: the run-step's {mb['products_per_run_step']} matrix products alone "
            f"({mb['flop_per_run_step']:,} FLOP; {layout}, {group}, one group per device on "
            f"{mb['devices']} device{'s' * (mb['devices'] != 1)}, best of "
            f"{len(mb['run_steps_per_s_in_rounds'])}) run at "
            f"{_fmt_rate(mb['run_steps_per_s'])} run-steps/s, {mb['utilization']:.1%} "
            "utilization"
            + ("" if frac is None else f"; the engine reaches {frac:.1%} of that") + ".",
        ]
    ee = wres.get("early_exit")
    if ee:
        skipped = ee["run_steps_skipped"]
        rounds = ", ".join(f"{r:.3f}" for r in ee["time_ratio_per_round"])
        lines += [
            "",
            f"Early exit: on/off time ratio {ee['time_ratio_on_over_off']:.3f} (best of each; "
            f"per round {rounds}); "
            + ("run-steps skipped unknown" if skipped is None else
               f"{skipped:,} of {ee['run_steps_total']:,} run-step evaluations skipped "
               f"({skipped / ee['run_steps_total']:.1%})") + ".",
        ]
    ag = wres["agreement"]
    diffs = ", ".join(f"{p} {d:.1e}" for p, d in ag["max_rel_diff"].items()) or "none compared"
    lines += [
        "",
        f"Agreement ({ag['steps']} steps, lr={ag['lr']}, seed={ag['seed']}, max rel diff "
        f"vs numpy_loop, tol {ag['rtol']:g}): {diffs} -> {'ok' if ag['ok'] else 'FAIL'}",
    ]
    if wres.get("targets"):
        lines += ["", "| target | goal | measured | met | engine utilization it needs |",
                  "|---|---:|---:|---|---:|"]
        for t in wres["targets"]:
            util = t["target"] == "utilization"
            goal = f"{t['goal']:.0%}" if util else f"{t['goal']:g}x"
            m = t["measured"]
            measured = "-" if m is None else (f"{m:.1%}" if util else f"{m:.2f}x")
            met = {True: "yes", False: "no", None: "-"}[t["met"]]
            need = t["needs_utilization"]
            need_s = "-" if need is None else f"{need:.1%}"
            if need is not None and need > 1:
                need_s += " (above the dense matmul rate)"
            elif (need is not None and mb and mb.get("utilization") and need > mb["utilization"]
                  and (mb.get("engine_fraction") or 0) < 1):
                # only where the bound binds: an engine that beats its products timed alone
                # (small networks whose first layer is written as multiply-adds) is not bound
                need_s += " (above the matmul bound)"
            lines.append(f"| {t['target']} | {goal} | {measured} | {met} | {need_s} |")
    return "\n".join(lines)


def format_report(result: dict) -> str:
    m, mm = result["machine"], result["matmul"]
    blas = m.get("numpy_blas")
    if isinstance(blas, list):
        blas = "; ".join(
            f"{b['internal_api']} {b['version']} kernel={b['architecture']} "
            f"threads={b['num_threads']}"
            for b in blas
        )
    parts = [
        f"## trainscape bench ({m['date']})",
        "",
        f"- machine: {m['cpu_model']}"
        + (f" (family/model {m['cpu_family_model']}, {'+'.join(m['cpu_vector_isa'])})"
           if m.get("cpu_family_model") else "")
        + f", {m['cores_usable']} usable cores, RAM {m['ram']}, "
        f"load avg at start {m['loadavg_at_start']}",
        f"- versions: trainscape {m.get('trainscape')}, python {m['python']}, jax {m['jax']}, "
        f"jaxlib {m['jaxlib']}, "
        f"numpy {m['numpy']}, torch {m['torch']}",
        f"- jax backend {m['jax_backend']} {m['jax_devices']}, default_matmul_precision="
        f"{m['jax_default_matmul_precision']}, XLA_FLAGS={m['XLA_FLAGS']!r}, engine's XLA "
        f"options {m.get('engine_compiler_options')}",
        f"- numpy BLAS: {blas}; thread env: {m['thread_env'] or '{}'}",
        f"- matmul rate ({mm['n']}x{mm['n']} float32): jax {mm['jax_flops'] / 1e9:.1f} GFLOP/s "
        f"(opening measurement; each workload names its utilization denominator), numpy "
        f"{mm['numpy_flops'] / 1e9:.1f} GFLOP/s",
        "- every peer: float32, full-batch loss + gradient + SGD update + loss recorded every "
        "step; times are best of "
        f"{result['repeats']}, setup and compilation excluded (engine: ts.run end to end)",
    ]
    for name, wres in result["workloads"].items():
        parts += ["", format_table(name, wres)]
    return "\n".join(parts) + "\n"


def run_bench(
    workloads: Iterable[str | Workload] = ("seed", "small"),
    *,
    peers: Sequence[str] | str | None = None,
    repeats: int = 3,
    out_dir: str | os.PathLike | None = None,
    stream: TextIO | None = sys.stdout,
) -> dict:
    """Time the peers on each workload, print the report to ``stream`` (None: silent) and, with
    ``out_dir``, write bench.json (all numbers + machine) and bench.md (the report) there.
    ``peers`` may be a comma-separated string. Bad input (peers, repeats, workloads, an
    ``out_dir`` that cannot take the files or already holds one) raises before any timing."""
    peers = parse_peers(peers)
    if repeats < 1:
        raise ConfigError(f"bench repeats: got {repeats}; must be >= 1")
    wl = [_resolve(w) for w in workloads]
    out = check_out(out_dir, ("bench.json", "bench.md"))
    machine = machine_info()
    if "torch_eager" in peers and machine.get("torch"):
        import torch

        # The question's setting: eager torch allowed every core for its one run.
        torch.set_num_threads(machine["cores_usable"] or os.cpu_count() or 1)
        machine["torch_threads"] = torch.get_num_threads()
    matmul = measure_matmul_rate()
    result: dict[str, Any] = {
        "machine": machine,
        "matmul": matmul,
        "repeats": repeats,
        "peers": peers,
        "workloads": {},
    }
    for w in wl:
        result["workloads"][w.name] = bench_workload(w, peers, repeats, matmul["jax_flops"], stream)
    report = format_report(result)
    if stream is not None:
        print(report, file=stream, flush=True)
    if out is not None:
        write_out(out, {"bench.json": json.dumps(result, indent=2, default=_json_default) + "\n",
                        "bench.md": report})
    return result


def parse_peers(peers: Sequence[str] | str | None) -> list[str]:
    """The peers to time: all for None, else the given names (a comma-separated string or a
    list), each one of PEERS; none at all (``--peers ,,``) is refused."""
    given = peers
    if isinstance(peers, str):
        peers = [p.strip() for p in peers.split(",") if p.strip()]
    peers = list(PEERS if peers is None else peers)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ConfigError(f"bench peers: got {unknown}; allowed: {', '.join(PEERS)}")
    if not peers:
        raise ConfigError(f"bench peers: got {given!r}, which names no peer; allowed: "
                          f"{', '.join(PEERS)}")
    return peers


def check_out(out_dir: str | os.PathLike | None, names: Sequence[str]) -> Path | None:
    """The folder a bench writes the files `names` into (None for no `out_dir`), checked before
    any benchmarking (`store.check_output_folder`: a finished bench is never replaced)."""
    from ..io import store

    return None if out_dir is None else store.check_output_folder(
        out_dir, names, f"bench --out {str(out_dir)!r}")


def write_out(out: Path, files: dict[str, str]) -> None:
    """Write `files` (name: text) into the folder check_out passed, none replacing a file."""
    from ..io import store

    store.write_new_files(out, {k: v.encode("utf-8") for k, v in files.items()},
                          f"bench --out {str(out)!r}", "the bench")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def main(
    workload: str = "all",
    out_dir: str | os.PathLike | None = None,
    *,
    peers: Sequence[str] | str | None = None,
    repeats: int = 3,
    stream: TextIO | None = None,
) -> int:
    """Entry point for ``trainscape bench [--workload seed|small|diverging|all] [--out DIR]``.

    ``peers`` may be a comma-separated string. Returns 0, or 1 if the peers disagree
    numerically (the timings are then not comparing the same computation). Bad input raises
    InputError before any timing: see run_bench."""
    names = list(WORKLOADS) if workload == "all" else [_resolve(workload).name]
    result = run_bench(
        names,
        peers=peers,
        repeats=repeats,
        out_dir=out_dir,
        stream=sys.stdout if stream is None else stream,
    )
    bad = [n for n, r in result["workloads"].items() if not r["agreement"]["ok"]]
    if bad:
        print(
            f"bench: peers disagree numerically on {', '.join(bad)}; see agreement lines",
            file=sys.stderr,
        )
        return 1
    return 0

