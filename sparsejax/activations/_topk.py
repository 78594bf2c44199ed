# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-row top-k activation sparsity (Lazy Neuron, Q-Sparse)."""

import numbers

import jax
import jax.numpy as jnp

from sparsejax import _validate


def _check_k(k, d: int) -> int:
  if not isinstance(k, numbers.Integral) or isinstance(k, bool):
    raise ValueError(f"k must be a Python int (it fixes shapes), got {k!r}.")
  if not 0 <= k <= d:
    raise ValueError(f"k must lie in [0, {d}] for an axis of size {d}, "
                     f"got {k}.")
  return int(k)


def topk_mask(x: jax.Array, k: int, *, axis: int = -1) -> jax.Array:
  """Boolean mask of the `k` largest-magnitude entries along `axis`.

  Selection is by threshold, not by scattering indices: the k-th largest
  magnitude of each row is found with :func:`jax.lax.top_k`, every entry
  strictly above it is kept, and among the entries equal to it the ones with
  the lowest index fill the remaining places. So exactly `k` entries are kept
  in every row and ties are broken deterministically (lowest index first).

  Args:
    x: array of any float dtype, at least one dimension.
    k: number of entries to keep per row, a Python int in `[0, x.shape[axis]]`.
    axis: the axis along which rows are formed.

  Returns:
    A bool array with the shape of `x` and exactly `k` True entries along
    `axis` for every position of the other axes.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.topk_mask(jnp.array([1., -3., 3., 0.5]), 2)
    Array([False,  True,  True, False], dtype=bool)
  """
  x = jnp.asarray(x)
  axis = _validate.check_axis(x.ndim, axis)
  d = x.shape[axis]
  k = _check_k(k, d)
  if k == 0:
    return jnp.zeros(x.shape, bool)
  if k == d:
    return jnp.ones(x.shape, bool)
  mag = jnp.moveaxis(jnp.abs(x), axis, -1)
  kth = jax.lax.top_k(mag, k)[0][..., -1:]
  above = mag > kth
  ties = mag == kth
  # Places left for entries equal to the k-th value, handed out by index.
  room = k - jnp.sum(above, axis=-1, keepdims=True)
  keep_tie = ties & (jnp.cumsum(ties, axis=-1) <= room)
  return jnp.moveaxis(above | keep_tie, -1, axis)


def topk(x: jax.Array, k: int, *, axis: int = -1,
         ste: bool = False) -> jax.Array:
  """Keeps the `k` largest-magnitude entries of every row, zeroes the rest.

  This is the per-token top-k activation sparsity of Lazy Neuron and Q-Sparse:
  `y = x * TopK(|x|, k)` along `axis`. Ties are broken deterministically
  (lowest index first, see :func:`topk_mask`), so exactly `k` entries survive
  in each row.

  Without `ste` the gradient is the masked one (`g * mask`). With `ste=True`
  the backward pass is the straight-through estimator of Q-Sparse: the
  gradient reaches every entry as if no mask had been applied, i.e. it equals
  the gradient of the dense identity.

  Args:
    x: array of any float dtype, at least one dimension.
    k: entries to keep per row, a Python int in `[0, x.shape[axis]]`.
    axis: the axis along which rows are formed.
    ste: use the straight-through estimator in the backward pass.

  Returns:
    An array like `x` with all but `k` entries per row set to zero.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import activations
    >>> x = jnp.array([[0.5, -2., 1., 3.], [1., 1., 1., 1.]])
    >>> activations.topk(x, 2)
    Array([[ 0., -2.,  0.,  3.],
           [ 1.,  1.,  0.,  0.]], dtype=float32)
    >>> jax.grad(lambda v: activations.topk(v, 1, ste=True).sum())(x[0])
    Array([1., 1., 1., 1.], dtype=float32)

  References:
    Wang et al, `Q-Sparse: All Large Language Models can be Fully Sparsely-
    Activated <https://arxiv.org/abs/2407.10969>`_, 2024.

    Li et al, `The Lazy Neuron Phenomenon: On Emergence of Activation Sparsity
    in Transformers <https://arxiv.org/abs/2210.06313>`_, 2023.
  """
  x = jnp.asarray(x)
  mask = jax.lax.stop_gradient(topk_mask(x, k, axis=axis))
  sparse = jnp.where(mask, x, jnp.zeros_like(x))
  if not ste:
    return sparse
  # x + (sparse - x) is exactly `sparse` in floating point (a - a == 0), and
  # its derivative is the identity.
  return x + jax.lax.stop_gradient(sparse - x)
