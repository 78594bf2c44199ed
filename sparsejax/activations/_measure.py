# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Measuring realised activation sparsity and the FLOPs it can skip."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


def activation_sparsity(activations):
  """Realised sparsity (fraction of exact zeros) of each activation leaf.

  Args:
    activations: an array or a pytree of arrays, e.g. one leaf per layer.

  Returns:
    The same structure with a float32 scalar per leaf.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.activation_sparsity(
    ...     {"h1": jnp.array([0., 1., 0., 2.]), "h2": jnp.ones(3)})
    {'h1': Array(0.5, dtype=float32), 'h2': Array(0., dtype=float32)}
  """
  return jax.tree.map(
      lambda a: jnp.mean((jnp.asarray(a) == 0).astype(jnp.float32)),
      activations)


class MatmulFlops(NamedTuple):
  """FLOPs of `x @ W` dense and with the zero rows of `x` skipped.

  Attributes:
    dense: `2 * rows * d_in * d_out`.
    sparse: `2 * nnz(x) * d_out`, what a sparse-input matmul must do.
    skipped: `dense - sparse`.
  """
  dense: jax.Array
  sparse: jax.Array
  skipped: jax.Array


def sparse_input_flops(x: jax.Array, weight) -> MatmulFlops:
  """Multiply-add FLOPs of `x @ weight` that a sparse input lets you skip.

  A zero `x[b, j]` makes row `j` of `weight` irrelevant for output row `b`,
  so a sparse-input matmul does `2 * d_out` FLOPs per nonzero of `x`.

  Args:
    x: activations, shape `(..., d_in)`.
    weight: the weight or anything with a `.shape` of `(d_in, d_out)`
      (e.g. a `jax.ShapeDtypeStruct`).

  Returns:
    A :class:`MatmulFlops` of float32 scalars.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> x = jnp.array([[0., 1., 0., 2.]])
    >>> f = activations.sparse_input_flops(x, jnp.zeros((4, 10)))
    >>> [int(v) for v in f]
    [80, 40, 40]
  """
  x = jnp.asarray(x)
  shape = tuple(weight.shape)
  if x.ndim < 1 or len(shape) != 2 or shape[0] != x.shape[-1]:
    raise ValueError(f"weight must have shape ({x.shape[-1] if x.ndim else '?'}"
                     f", d_out) to consume x of shape {x.shape}, got {shape}.")
  rows = x.size // max(x.shape[-1], 1)
  dense = jnp.float32(2.0 * rows * shape[0] * shape[1])
  sparse = 2.0 * jnp.sum(x != 0).astype(jnp.float32) * shape[1]
  return MatmulFlops(dense, sparse, dense - sparse)
