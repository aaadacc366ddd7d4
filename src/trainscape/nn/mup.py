"""muP (the maximal update parameterization) for the built-in MLP: per-layer initial weight
scales, forward multipliers and learning-rate factors, relative to the standard
parameterization and static per network shape.

The rules are those of Yang et al. 2021, "Tensor Programs V: Tuning Large Neural Networks via
Zero-Shot Hyperparameter Transfer", Table 8 (the form with an output multiplier, which the
`mup` package implements as MuReadout, MuSGD and MuAdam), with width multipliers
m = width / base_width; docs/mup.md writes them out and shows they are Table 3 of the same
paper. At width == base_width every factor is exactly 1 and muP is the standard
parameterization bit for bit.

A dimension of a weight is a *width* when it is a hidden layer's size; the data's features and
the outputs are finite. For layer i with sizes (fan_in, fan_out) and multipliers m_in, m_out of
its width dimensions:

    layer kind   fan_in  fan_out  init x        multiplier  SGD lr x (w, b)    Adam lr x (w, b)
    input        finite  width    1             1           m_out, m_out       1, 1
    hidden       width   width    1             1           m_out/m_in, m_out  1/m_in, 1
    output       width   finite   sqrt(m_in)    1/m_in      m_in, 1            1, 1
    (no width)   finite  finite   1             1           1, 1               1, 1

"init x" multiplies the standard initialization's draw (`[model] init`, e.g. N(0, 1/fan_in)).
SGD-like optimizers are sgd, momentum and nesterov; Adam-like (entrywise normalized updates)
are adam, adamw and rmsprop, as the `mup` package's MuSGD and MuAdam docstrings class them.
Decoupled weight decay is not scaled: MuSGD and MuAdam divide the decay by the factor they
multiply the learning rate by, which leaves the step's decay term lr * wd * p unchanged.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SGD_LIKE = ("sgd", "momentum", "nesterov")
ADAM_LIKE = ("adam", "adamw", "rmsprop")


class LayerRule(NamedTuple):
    """muP's factors for one layer, relative to the standard parameterization."""

    init: float  # multiplies the standard init's weights (and biases)
    mult: float  # forward multiplier of the weights
    lr_w: float  # multiplies the learning rate of the weights
    lr_b: float  # ... and of the biases


def width_mults(sizes: tuple[int, ...], base_width: int | None) -> tuple[float | None, ...]:
    """m of each dimension of `sizes` = (d_in, *hidden, d_out): hidden / base_width for the
    hidden sizes (1 when base_width is None: the network is its own base), None for the
    finite ones (the data's features, the outputs)."""
    last = len(sizes) - 1
    return tuple(None if i in (0, last) else sizes[i] / base_width if base_width else 1.0
                 for i in range(len(sizes)))


def rules(sizes: tuple[int, ...], base_width: int | None, optimizer: str) -> tuple[LayerRule, ...]:
    """muP's factors for every layer of an MLP with layer sizes `sizes` (see the module's
    table) trained by `optimizer`."""
    if optimizer not in SGD_LIKE + ADAM_LIKE:
        raise ValueError(f"muP has no rule for optimizer {optimizer!r}")
    adam = optimizer in ADAM_LIKE
    m = width_mults(tuple(sizes), base_width)
    out = []
    for m_in, m_out in zip(m[:-1], m[1:], strict=True):
        init = mult = 1.0
        if m_in is not None and m_out is None:  # the output (readout) layer
            init, mult = math.sqrt(m_in), 1.0 / m_in
        if adam:  # MuAdam: matrices with two width dimensions get lr / m_in
            lr_w = 1.0 / m_in if m_in is not None and m_out is not None else 1.0
            lr_b = 1.0
        else:  # MuSGD: one width dimension, lr x its m; two, lr x m_out / m_in
            if m_in is not None and m_out is not None:
                lr_w = m_out / m_in
            else:
                lr_w = m_out if m_out is not None else (m_in if m_in is not None else 1.0)
            lr_b = m_out if m_out is not None else 1.0
        out.append(LayerRule(init, mult, lr_w, lr_b))
    return tuple(out)


def lr_scale(sizes: tuple[int, ...], base_width: int, optimizer: str,
             bias: bool = True) -> tuple[tuple[tuple[str, float], ...], ...] | None:
    """The learning-rate factor of every leaf of the MLP's parameters, as `optim` reads it:
    per layer, ((leaf name, factor), ...). None when every factor is 1 (nothing to scale)."""
    scale = tuple((("b", r.lr_b), ("w", r.lr_w)) if bias else (("w", r.lr_w),)
                  for r in rules(sizes, base_width, optimizer))
    if all(f == 1.0 for layer in scale for _, f in layer):
        return None
    return scale
