# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul in plain XLA: ``jax.lax.ragged_dot_general``.

This is the default off TPU and the oracle the Pallas kernels are tested
against. On CPU, XLA expands the ragged operand into a masked ``[G, m, k]``
tensor, so it does ``G`` times the FLOPs of one dense matmul: use it for
correctness, not speed (see ``benchmarks/moe.py``).
"""

import jax.numpy as jnp
from jax import lax

__all__ = ("gmm", "tgmm")


def gmm(lhs, rhs, group_sizes, *, preferred_element_type=None,
        transpose_rhs=False):
  """``out[rows of g] = lhs[rows of g] @ rhs[g]`` (``rhs[g].T`` if transposed).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    rhs: ``[G, k, n]``, or ``[G, n, k]`` with ``transpose_rhs=True``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the promoted input dtype.
    transpose_rhs: contract with the last axis of ``rhs``.

  Returns:
    ``[m, n]``; rows past ``sum(group_sizes)`` are zero.
  """
  rhs_contract = 2 if transpose_rhs else 1
  dims = lax.RaggedDotDimensionNumbers(
      dot_dimension_numbers=(([1], [rhs_contract]), ([], [])),
      lhs_ragged_dimensions=[0],
      rhs_group_dimensions=[0])
  return lax.ragged_dot_general(
      lhs, rhs, group_sizes, dims,
      preferred_element_type=_out_dtype(lhs, rhs, preferred_element_type))


def tgmm(lhs, grad, group_sizes, *, preferred_element_type=None):
  """``out[g] = lhs[rows of g].T @ grad[rows of g]`` (ragged contraction).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    grad: ``[m, n]``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the promoted input dtype.

  Returns:
    ``[G, k, n]``; an empty group gives zeros.
  """
  dims = lax.RaggedDotDimensionNumbers(
      dot_dimension_numbers=(([0], [0]), ([], [])),
      lhs_ragged_dimensions=[0],
      rhs_group_dimensions=[])
  return lax.ragged_dot_general(
      lhs, grad, group_sizes, dims,
      preferred_element_type=_out_dtype(lhs, grad, preferred_element_type))


def _out_dtype(a, b, preferred):
  return jnp.dtype(preferred) if preferred is not None else (
      jnp.result_type(a.dtype, b.dtype))

