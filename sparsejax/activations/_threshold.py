# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Magnitude thresholding of activations (TEAL, CATS, CHESS, WINA)."""

import jax
import jax.numpy as jnp

from sparsejax import _validate


def _broadcast_threshold(t: jax.Array, x: jax.Array, axis: int) -> jax.Array:
  if t.ndim == 0:
    return t
  if t.shape != (x.shape[axis],):
    raise ValueError(f"t must be a scalar or have shape ({x.shape[axis]},) "
                     f"(the size of x along axis {axis}), got shape "
                     f"{t.shape}.")
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  return t.reshape(shape)


def threshold_mask(x: jax.Array, t, *, axis: int = -1) -> jax.Array:
  """Bool mask `|x| > t`; `t` is a scalar or one threshold per channel.

  Args:
    x: array, at least one dimension.
    t: non-negative threshold: a scalar (per tensor) or a vector with one
      entry per channel along `axis` (per channel, as returned by
      :func:`calibrate`).
    axis: the channel axis that a vector `t` runs along.

  Returns:
    A bool array shaped like `x`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.threshold_mask(jnp.array([0.1, -0.5, 2.]), 0.3)
    Array([False,  True,  True], dtype=bool)
  """
  x = jnp.asarray(x)
  axis = _validate.check_axis(x.ndim, axis)
  t = jnp.asarray(t)
  return jnp.abs(x) > _broadcast_threshold(t, x, axis).astype(x.dtype)


def threshold(x: jax.Array, t, *, axis: int = -1) -> jax.Array:
  """Zeroes every entry with `|x| <= t` (TEAL's `s_t(x) = x * 1[|x| > t]`).

  The thresholds come from :func:`calibrate`: a scalar for TEAL or CATS
  (per tensor), or one value per channel for CHESS-style channel thresholds
  and for WINA (whose score `|x_j| * ||W_j||` is folded into per-channel
  thresholds on `|x_j|`). The gradient is the masked gradient.

  Args:
    x: array, at least one dimension.
    t: a scalar or a vector of length `x.shape[axis]`.
    axis: the channel axis that a vector `t` runs along.

  Returns:
    `x` with the entries at or below the threshold set to zero.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.threshold(jnp.array([0.1, -0.5, 2.]), 0.3)
    Array([ 0. , -0.5,  2. ], dtype=float32)
    >>> activations.threshold(jnp.array([[0.1, -0.5, 2.]]),
    ...                       jnp.array([0., 1., 1.]))
    Array([[0.1, 0. , 2. ]], dtype=float32)

  References:
    Liu et al, `Training-Free Activation Sparsity in Large Language Models
    <https://arxiv.org/abs/2408.14690>`_, 2024.
  """
  x = jnp.asarray(x)
  mask = jax.lax.stop_gradient(threshold_mask(x, t, axis=axis))
  return jnp.where(mask, x, jnp.zeros_like(x))
