# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Statistical top-k (Spark Transformer, Gemma 3n): a sort-free cutoff."""

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from sparsejax import _validate

_POST_ACTIVATION_NOTE = """
  The cutoff assumes the entries of a row are roughly Gaussian, which holds
  for pre-activations (the input of the nonlinearity). On post-activation
  inputs it misses the target: for ReLU outputs of standard normal
  pre-activations (half the row exactly zero) a target of 0.5 realises about
  0.655 sparsity (over-shoot, because the cutoff is the mean) and a target of
  0.9 realises about 0.874 (under-shoot, because the right tail is heavier
  than a Gaussian with the same mean and standard deviation). Use
  :func:`topk` or a calibrated :func:`threshold` where the exact sparsity
  matters.
"""


def statistical_topk_cutoff(x: jax.Array, sparsity, *,
                            axis: int = -1) -> jax.Array:
  """Per-row cutoff `mean + std * Phi^-1(sparsity)` of statistical top-k.

  Mean and (population) standard deviation are taken over `axis`; statistics
  are computed in at least float32.

  Args:
    x: array, at least one dimension.
    sparsity: target fraction of zeros, in the open interval (0, 1); a float
      or a scalar array (may be traced).
    axis: the axis holding the features of one row.

  Returns:
    The cutoff, with `axis` kept as a size-1 dimension so that it broadcasts
    against `x`; dtype of `x`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.statistical_topk_cutoff(jnp.array([-1., 1.]), 0.5)
    Array([0.], dtype=float32)
  """
  x = jnp.asarray(x)
  axis = _validate.check_axis(x.ndim, axis)
  _validate.check_fraction(sparsity, "sparsity", allow_zero=False)
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  xf = x.astype(dtype)
  mean = jnp.mean(xf, axis=axis, keepdims=True)
  std = jnp.std(xf, axis=axis, keepdims=True)
  cutoff = mean + std * ndtri(jnp.asarray(sparsity, dtype))
  return cutoff.astype(x.dtype)


def statistical_topk_mask(x: jax.Array, sparsity, *,
                          axis: int = -1) -> jax.Array:
  """Bool mask `x > cutoff` of statistical top-k (no sort, linear time).

  Args:
    x: array, at least one dimension.
    sparsity: target fraction of zeros in (0, 1).
    axis: the axis holding the features of one row.

  Returns:
    A bool array shaped like `x`; on Gaussian rows about `1 - sparsity` of
    each row is True.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import activations
    >>> x = jax.random.normal(jax.random.key(0), (8, 4096))
    >>> m = activations.statistical_topk_mask(x, 0.9)
    >>> print(round(float(1 - m.mean()), 2))
    0.9
  """
  return x > statistical_topk_cutoff(x, sparsity, axis=axis)


def statistical_topk(x: jax.Array, sparsity, *, axis: int = -1,
                     hard: bool = False) -> jax.Array:
  """Statistical top-k: `relu(x - (mean + std * Phi^-1(sparsity)))`.

  Spark Transformer's linear-time replacement of top-k, used on the gate
  pre-activations of Gemma 3n: per row, the cutoff is the `sparsity`
  quantile of a Gaussian with the row's mean and population standard
  deviation, and the row is soft-thresholded (shifted) by it. No sort is
  needed. With `hard=True` the surviving entries keep their value
  (`x * (x > cutoff)`), which is the form to use on a model trained without
  the shift. Gradients are those of the formula (they flow through the mean
  and standard deviation as well).
""" + _POST_ACTIVATION_NOTE + """
  Args:
    x: array, at least one dimension; typically a pre-activation.
    sparsity: target fraction of zeros in (0, 1); a float or a scalar array
      (may be traced).
    axis: the axis holding the features of one row.
    hard: keep surviving entries unshifted instead of subtracting the cutoff.

  Returns:
    An array like `x` in which about `sparsity` of every row is zero.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> x = jnp.array([-1., 1., -1., 1.])   # mean 0, std 1
    >>> activations.statistical_topk(x, 0.5)
    Array([0., 1., 0., 1.], dtype=float32)

  References:
    You et al, `Spark Transformer: Reactivating Sparsity in FFN and Attention
    <https://arxiv.org/abs/2506.06644>`_, 2025.
  """
  x = jnp.asarray(x)
  cutoff = statistical_topk_cutoff(x, sparsity, axis=axis)
  if hard:
    return jnp.where(x > cutoff, x, jnp.zeros_like(x))
  return jax.nn.relu(x - cutoff)
