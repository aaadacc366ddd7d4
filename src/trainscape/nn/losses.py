"""Losses on model outputs. All are means over samples, written to be stable for any logit."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bce(logits_NxK, y_N):
    """Mean binary cross-entropy on logits: softplus(z) - y z, stable for |z| large."""
    z = logits_NxK.reshape(y_N.shape)
    return jnp.mean(jnp.maximum(z, 0) - z * y_N + jnp.log1p(jnp.exp(-jnp.abs(z))))


def cross_entropy(logits_NxK, y_N):
    """Mean softmax cross-entropy with integer labels."""
    logp_NxK = jax.nn.log_softmax(logits_NxK, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp_NxK, y_N[:, None].astype(jnp.int32), axis=-1))


def mse(out_NxK, y):
    """Mean over samples and outputs of the squared error (no factor 1/2)."""
    return jnp.mean(jnp.square(out_NxK.reshape(y.shape) - y))


def accuracy(out_NxK, y_N, loss_name: str):
    """Fraction correct: sign of the logit for bce, argmax for cross_entropy."""
    if loss_name == "bce":
        pred = (out_NxK.reshape(y_N.shape) > 0).astype(y_N.dtype)
        return jnp.mean((pred == y_N).astype(jnp.float32))
    if loss_name == "cross_entropy":
        return jnp.mean((jnp.argmax(out_NxK, axis=-1) == y_N).astype(jnp.float32))
    raise ValueError(f"accuracy is not defined for loss {loss_name!r}")


LOSSES = {"bce": bce, "cross_entropy": cross_entropy, "mse": mse}
