"""Coordinate check: the size of every layer's output against width over the first steps of
training, the `mup` package's diagnostic (Yang et al. 2021, Tensor Programs V, sec. D.1 and
Fig. 5). Under muP the curves are flat in width; under the standard parameterization the
output's change after a step grows with width (with SGD at a fixed learning rate, linearly).

Each width is trained from each seed's own draw with the config's optimizer at its
`[optimizer] learning_rate` (a swept learning rate is not used), full batch, for `steps`
steps, as `trainscape run` trains it (the same init, init_scale, multipliers and muP factors;
no dropout, no l2, no mini-batches: the check is of the parameterization, not the noise).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..engine import plan
from ..errors import InputError
from ..io import memory
from ..nn import losses, optim
from ..nn.models import layer_outputs
from ..runtime import x64
from ..spec import schema as cfg
from ..spec.schema import INT32_MAX, resolve_config
from ..sweep.prepare import Prepared
from ..train.loop import init_params_of

COLUMNS = ("width", "seed", "layer", "step", "mean_abs", "mean_abs_change")
CSV, PNG = "coord_check.csv", "coord_check.png"  # what `--out` gets


@x64
def coord_check(config, widths, steps: int = 4, seeds=3, data=None, *,
                overrides: list[str] | None = None) -> pd.DataFrame:
    """Mean |activation| of every layer, and mean |change since initialization|, at steps
    0..`steps` of training, per width and seed.

    config: as for :func:`trainscape.run`; its `[model] hidden` gives the depth (uniform, or
    swept `depth`: the first value); its sweep is ignored. widths: the hidden widths to check.
    seeds: a number n (seeds 0..n-1) or a list of seeds (int32: 0..2**31 - 1).

    Returns a tidy table, one row per (width, seed, layer, step): `layer` is 1..depth for the
    hidden activations and depth + 1 for the output, `mean_abs` = mean over samples and units
    of |h|, `mean_abs_change` = mean of |h_t - h_0|. Draw it with
    :func:`trainscape.viz.scaling.plot_coord_check`.

    Bad arguments, and widths or seeds too many for this machine's memory, are refused with an
    InputError before anything is compiled."""
    exp = resolve_config(config, overrides)
    widths = _positive_ints("widths", widths)
    seeds = _seeds(seeds)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps: expected a positive integer, got {steps!r}")
    if exp.model.hidden and len(set(exp.model.hidden)) > 1 and "depth" not in exp.sweep:
        raise InputError(f"[model] hidden: got {list(exp.model.hidden)}; the coordinate check "
                         "varies the width of uniform hidden layers such as [64, 64]")
    raw = exp.to_dict()
    depth = exp.sweep.get("depth", (len(exp.model.hidden),))[0]
    raw["model"]["hidden"] = [widths[0]] * int(depth)
    raw["sweep"] = {"width": widths}
    prep = Prepared(cfg.parse(raw), data=data)
    _check_memory(prep, len(seeds), steps)
    hp = {k: jnp.asarray(v) for k, v in prep.hp_defaults.items()}
    parts = []
    for (static, _), sizes in zip(prep.groups, prep.group_sizes, strict=True):
        fn = jax.jit(lambda seed, st=static: _one_run(st, hp, prep.x, prep.y, seed, steps))
        for seed in seeds:
            abs_LxT, change_LxT = (np.asarray(a, np.float64) for a in fn(jnp.int32(seed)))
            n_layers, n_steps = abs_LxT.shape
            parts.append(pd.DataFrame({
                "width": np.int64(sizes[1]), "seed": np.int64(seed),
                "layer": np.repeat(np.arange(1, n_layers + 1, dtype=np.int64), n_steps),
                "step": np.tile(np.arange(n_steps, dtype=np.int64), n_layers),
                "mean_abs": abs_LxT.ravel(), "mean_abs_change": change_LxT.ravel()}))
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(name=exp.name, parameterization=exp.model.parameterization,
                     optimizer=exp.optimizer.name, learning_rate=exp.optimizer.learning_rate,
                     base_width=exp.model.base_width)
    return out


def _one_run(static, hp, x, y, seed, steps):
    """(mean |h_t| and mean |h_t - h_0| per layer, (layers, steps + 1)) of one run."""
    dt = jnp.dtype(static.dtype)
    apply = static.model.apply
    act, mults = apply.activation, apply.mults or None
    x = jnp.asarray(x, dt)
    y = jnp.asarray(y, jnp.int32 if static.loss == "cross_entropy" else dt)
    scale = hp["init_scale"]
    params = jax.tree.map(lambda p: (p * scale).astype(dt),
                          init_params_of(static.model, seed))
    hpt = {k: jnp.asarray(v, dt) for k, v in hp.items() if k != "seed"}
    opt = optim.make_optimizer(static.optimizer, hpt, optim.n_top_level(params),
                               clip=static.grad_clip, lr_scale=static.lr_scale)
    loss_of = losses.LOSSES[static.loss]
    h0 = layer_outputs(params, x, act, mults)

    def sizes(p):
        hs = layer_outputs(p, x, act, mults)
        return (jnp.stack([jnp.mean(jnp.abs(h)) for h in hs]),
                jnp.stack([jnp.mean(jnp.abs(h - a)) for h, a in zip(hs, h0, strict=True)]))

    def step(carry, _):
        p, s = carry
        g = jax.grad(lambda q: loss_of(apply(q, x), y))(p)
        upd, s = opt.update(g, s, p)
        p = jax.tree.map(lambda a, u: a + u.astype(a.dtype), p, upd)
        return (p, s), sizes(p)

    _, (abs_TxL, ch_TxL) = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    a0, c0 = sizes(params)
    return (jnp.concatenate([a0[None], abs_TxL]).T, jnp.concatenate([c0[None], ch_TxL]).T)


def _seeds(seeds) -> range | list[int]:
    """Seeds 0..n-1 for a number n (a range: never a list of n items), or the list given; int32,
    as the engine holds them (`[train] seed`)."""
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        if not 1 <= seeds <= INT32_MAX + 1:
            raise InputError(f"seeds: got {seeds}; expected a number of seeds from 1 to "
                             f"{INT32_MAX + 1:,} (seeds 0..n-1 are int32)")
        return range(int(seeds))
    out = _positive_ints("seeds", seeds, allow_zero=True)
    if max(out) > INT32_MAX:
        raise InputError(f"seeds: got {max(out)}; seeds must be in [0, {INT32_MAX}] (seeds "
                         "are int32)")
    return out


def _check_memory(prep: Prepared, n_seeds: int, steps: int) -> None:
    """Refuse a width whose one run cannot fit in the device's memory, and a table that cannot
    fit in host memory, with the estimates `ts.run` refuses a grid with (io/memory.py)."""
    fmt = memory.format_bytes
    device = plan.run_devices()[0]
    available = memory.device_memory_bytes(device)
    n_layers = len(prep.group_sizes[0]) - 1  # hidden layers and the output
    points = n_layers * (steps + 1)  # recorded per run: a size and a change per point
    for (static, _), sizes in zip(prep.groups, prep.group_sizes, strict=True):
        need = memory.estimate_bytes(plan.n_params(static), prep.x.shape[0], prep.x.shape[1],
                                     tuple(sizes[1:]), points, 1, static.dtype)
        if available is not None and need > available:
            raise InputError(
                f"widths: width {sizes[1]} is too large for this machine: one run needs about "
                f"{fmt(need)} on the {device.platform} device, but {fmt(available)} is "
                "available; give smaller widths (or reduce [data] n_samples)")
    n_runs = len(prep.groups) * n_seeds
    need = memory.host_results_bytes(n_runs, points)
    host = memory.host_available_bytes()
    if host is not None and need > host:
        raise InputError(
            f"seeds: {n_seeds:,} seeds are too many for this machine: the table's "
            f"{n_runs * points:,} rows (widths x seeds x layers x steps 0..{steps}) need "
            f"about {fmt(need)} of host memory, but {fmt(host)} is available; give fewer "
            "seeds, widths or steps")


def _positive_ints(name, values, allow_zero=False) -> list[int]:
    lo = 0 if allow_zero else 1
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise InputError(f"{name}: expected a list of integers >= {lo}, got {values!r}")
    out = list(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo
                      for v in out):
        raise InputError(f"{name}: expected a non-empty list of integers >= {lo}, got "
                         f"{values!r}")
    if len(set(out)) != len(out):
        raise InputError(f"{name}: duplicated values in {out!r}")
    return [int(v) for v in out]


def flatness(table: pd.DataFrame, layer: int | None = None, step: int | None = None,
             of: str = "mean_abs_change") -> float:
    """Exponent of `of` against width (least-squares slope of log median-over-seeds against
    log width) for one layer (default: the output) at one step (default: the last): ~0 when
    flat in width, ~1 when it grows linearly."""
    layer = int(table["layer"].max()) if layer is None else layer
    step = int(table["step"].max()) if step is None else step
    sel = table[(table["layer"] == layer) & (table["step"] == step)]
    med = sel.groupby("width")[of].median()
    return float(np.polyfit(np.log(med.index.to_numpy(np.float64)),
                            np.log(med.to_numpy()), 1)[0]) if len(med) > 1 else math.nan


def format_table(table: pd.DataFrame) -> str:
    """The table as text: per width, layer and step, the medians over seeds."""
    a, n_seeds = table.attrs, table["seed"].nunique()
    med = (table.groupby(["width", "layer", "step"])[["mean_abs", "mean_abs_change"]]
           .median().reset_index())
    head = (f"{a.get('name', 'experiment')}: coordinate check, {a.get('parameterization')} "
            f"parameterization" + (f" (base_width {a['base_width']})" if a.get("base_width")
                                   else "")
            + f", {a.get('optimizer')} at lr {a.get('learning_rate'):g}, median over "
            f"{n_seeds} seed{'s' * (n_seeds != 1)}; layer {int(table['layer'].max())} is the "
            "output")
    lines = [head, "", med.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    if table["width"].nunique() < 2:  # no slope to fit: `flatness` is NaN
        lines.append("one width: no exponent against width (give two --widths or more)")
        return "\n".join(lines) + "\n"
    for layer in sorted(table["layer"].unique()):
        lines.append(f"layer {layer}: change at the last step ~ width^"
                     f"{flatness(table, layer=int(layer)):.3f}")
    return "\n".join(lines) + "\n"


def cli(config_path, widths, steps: int = 4, seeds: int = 3,
        overrides: list[str] | None = None, out=None, stream=None) -> int:
    """`trainscape coord-check CONFIG --widths ...`: print the table; with `out`, write
    coord_check.csv and coord_check.png (mean |activation| above, its change below) into that
    folder, each whole or not at all. Bad input, an `out` that cannot take them or already
    holds either (an existing file is never replaced) and widths or seeds too many for the
    machine are refused with an InputError before anything is computed or written."""
    import sys

    stream = sys.stdout if stream is None else stream
    target = None if out is None else check_out(out)
    try:
        table = coord_check(config_path, widths, steps=steps, seeds=seeds, overrides=overrides)
    except InputError as e:  # the checks of the arguments, worded for the command line
        if str(e).startswith(("widths:", "seeds:", "steps:")):
            raise InputError(f"--{e}") from None
        raise
    stream.write(format_table(table))
    if target is not None:
        import matplotlib.pyplot as plt

        from ..viz.scaling import plot_coord_check
        from ..viz.summary import png_bytes

        n = table["layer"].nunique()
        fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.6), squeeze=False,
                                 constrained_layout=True)
        plot_coord_check(table, "mean_abs", axes[0])
        plot_coord_check(table, "mean_abs_change", axes[1])
        from ..io import store

        store.write_new_files(target, {CSV: table.to_csv(index=False).encode(),
                                       PNG: png_bytes(fig, dpi=120)},
                              f"--out {str(out)!r}", "the check")
        stream.write(f"\ntable: {target / CSV}\nfigure: {target / PNG}\n")
    return 0


def check_out(out):
    """The folder `--out` names, refused unless it can take coord_check.csv and
    coord_check.png without replacing anything (`store.check_output_folder`)."""
    from ..io import store

    return store.check_output_folder(out, (CSV, PNG), f"--out {str(out)!r}")
