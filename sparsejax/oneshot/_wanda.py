# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Wanda: pruning by weights and activations."""

from typing import Any

import jax
import jax.numpy as jnp

from sparsejax import masks as _masks
from sparsejax.oneshot import _common


def wanda(w: Any, x: Any, sparsity: Any) -> jax.Array:
  r"""Wanda: prunes each output neuron's inputs by ``|W| * ||X||``.

  The score of weight :math:`W_{ij}` (input :math:`i`, output :math:`j` of a
  Flax kernel) is :math:`|W_{ij}| \cdot \|X_i\|_2`, the norm of input feature
  :math:`i` over all calibration tokens. The comparison group is each output
  neuron: every column of ``w`` keeps ``round((1 - sparsity) * in)`` of its
  weights (with an ``(n, m)`` pair: the ``n`` best of every ``m``
  consecutive inputs). No weight is updated.

  Args:
    w: a kernel ``[in, out]``.
    x: calibration inputs ``[tokens, in]`` (leading dimensions are
      flattened).
    sparsity: a float in ``[0, 1)``, or an ``(n, m)`` pair for N:M.

  Returns:
    The bool keep-mask of ``w``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> w = jnp.array([[1., 1.], [2., -2.], [3., 1.]])
    >>> x = jnp.array([[4., 1., 0.5], [0., 1., 0.5]])  # norms 4, 1.4, 0.7
    >>> sj.wanda(w, x, 1 / 3).astype(int)
    Array([[1, 1],
           [1, 1],
           [0, 0]], dtype=int32)

  References:
    Sun et al, `A Simple and Effective Pruning Approach for Large Language
    Models <https://arxiv.org/abs/2306.11695>`_, 2024
  """
  fraction, nm = _common.parse_sparsity(sparsity)
  w, x = _common.check_layer(w, x, nm)
  norms = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=0))
  scores = jnp.abs(w.astype(jnp.float32)) * norms[:, None]
  if nm is not None:
    return _masks.n_m(scores, nm[0], nm[1], axis=-2)
  return _common.keep_per_column(scores, _masks.budget(w.shape[0], fraction))
