# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul for Mixture-of-Experts: the public functions and checks.

``gmm`` has the signature of :func:`jax.lax.ragged_dot`; ``tgmm`` is its
weight gradient (a ragged contraction). Both check their arguments, choose
the implementation with :func:`pallas_kernels._dispatch.backend` and call
the custom VJPs of :mod:`pallas_kernels.gmm.ops`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import _dispatch
from pallas_kernels.gmm import gpu
from pallas_kernels.gmm import ops
from pallas_kernels.gmm import tpu

__all__ = ("gmm", "tgmm")


def gmm(lhs, rhs, group_sizes, *, preferred_element_type=None,
        transpose_rhs=False, tiling=None, implementation=None,
        interpret=None):
  """Grouped matmul: each row block of ``lhs`` times its group's matrix.

  With ``offsets = [0, cumsum(group_sizes)]``, the rows
  ``offsets[g]:offsets[g + 1]`` of ``lhs`` form group ``g`` and are multiplied
  by ``rhs[g]``. This is the expert computation of a dropless
  Mixture-of-Experts layer once tokens are sorted by expert (MegaBlocks), and
  it equals :func:`jax.lax.ragged_dot`: rows past ``sum(group_sizes)`` come
  out as zeros, and groups may be empty.

  Differentiable in ``lhs`` and ``rhs`` through a custom VJP:
  ``d lhs = gmm(grad, rhs, transpose_rhs=True)`` and
  ``d rhs = tgmm(lhs, grad)``.

  Args:
    lhs: ``[m, k]`` array whose rows are sorted by group.
    rhs: ``[G, k, n]`` array, one matrix per group (``[G, n, k]`` with
      ``transpose_rhs=True``).
    group_sizes: ``[G]`` integer array, the number of rows of each group. The
      sizes must be non-negative and sum to at most ``m`` (checked when the
      values are concrete; under ``jit`` rows past ``m`` are dropped, as in
      :func:`jax.lax.ragged_dot`).
    preferred_element_type: dtype of the result; by default the promoted
      dtype of ``lhs`` and ``rhs``. The Pallas kernel accumulates in float32
      either way.
    transpose_rhs: multiply by ``rhs[g].T`` instead of ``rhs[g]``.
    tiling: ``(tm, tk, tn)`` tile sizes of the Pallas kernel. For
      ``"pallas_tpu"`` (default ``(128, 128, 128)``) ``tm`` is a multiple of
      8, ``tk`` and ``tn`` multiples of 128, and a dimension smaller than its
      tile is one whole tile. For ``"pallas_gpu"`` (default
      ``(128, 64, 128)``) all three are powers of two of at least 16. The XLA
      implementation has no tiles and does not use it.
    implementation: ``None`` (``"pallas_tpu"`` on a TPU backend,
      ``"pallas_gpu"`` on a GPU backend, else ``"xla"``; with ``interpret``
      given, ``"pallas_gpu"`` on a GPU backend and ``"pallas_tpu"``
      elsewhere), ``"xla"`` (:func:`jax.lax.ragged_dot_general`),
      ``"pallas_tpu"`` (the Mosaic TPU kernel of
      :mod:`pallas_kernels.gmm.tpu`) or ``"pallas_gpu"`` (the Pallas Triton
      kernel of :mod:`pallas_kernels.gmm.gpu`, tiled over the rows of each
      group without padding groups to a capacity). An explicit
      implementation is used as given, whatever the default backend, so a
      CPU host can lower ``"pallas_tpu"`` for TPU and ``"pallas_gpu"`` for
      CUDA with :func:`jax.export.export` (the latter with the Triton
      custom-call check disabled, see :mod:`pallas_kernels.gmm.gpu`).
    interpret: run the Pallas kernel in interpret mode: ``True`` (the HLO
      interpreter) or a :class:`jax.experimental.pallas.tpu.InterpretParams`
      (the TPU simulator, which also checks block indices, slices and
      revisit order).

  Returns:
    ``[m, n]`` array.

  Raises:
    ValueError: if a shape, dtype or option is invalid; the message names
      the argument.

  Examples:
    >>> import jax.numpy as jnp
    >>> from pallas_kernels import gmm
    >>> lhs = jnp.ones((5, 2))
    >>> rhs = jnp.stack([jnp.eye(2), 2 * jnp.eye(2), 3 * jnp.eye(2)])
    >>> group_sizes = jnp.array([2, 0, 2], jnp.int32)  # row 4 is in no group
    >>> gmm(lhs, rhs, group_sizes)[:, 0]
    Array([1., 1., 3., 3., 0.], dtype=float32)
    >>> gmm(lhs, rhs, group_sizes, interpret=True)[:, 0]  # the Pallas kernel
    Array([1., 1., 3., 3., 0.], dtype=float32)
    >>> gmm(lhs, rhs, group_sizes, implementation="pallas_gpu",
    ...     interpret=True)[:, 0]  # the GPU kernel, interpreted
    Array([1., 1., 3., 3., 0.], dtype=float32)

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with Mixture-of-Experts
    <https://arxiv.org/abs/2211.15841>`_, 2022.
  """
  _check_matrix("lhs", lhs, 2, "[m, k]")
  _check_matrix("rhs", rhs, 3, "[G, k, n]")
  rhs_k = rhs.shape[2] if transpose_rhs else rhs.shape[1]
  if rhs_k != lhs.shape[1]:
    axis = 2 if transpose_rhs else 1
    raise ValueError(
        f"rhs.shape[{axis}] must equal lhs.shape[1] (the contracted k), got "
        f"rhs.shape={rhs.shape} and lhs.shape={lhs.shape}.")
  group_sizes = _check_group_sizes(group_sizes, rhs.shape[0], lhs.shape[0],
                                   "rhs.shape[0]")
  config = _make_config(implementation, interpret, tiling,
                        _out_dtype(lhs, rhs, preferred_element_type),
                        bool(transpose_rhs))
  return ops.gmm(lhs, rhs, group_sizes, config)


def tgmm(lhs, grad, group_sizes, *, preferred_element_type=None, tiling=None,
         implementation=None, interpret=None):
  """Grouped transposed matmul, the weight gradient of :func:`gmm`.

  ``out[g] = lhs[rows of g].T @ grad[rows of g]`` with the same row groups as
  :func:`gmm`: if ``y = gmm(x, w, group_sizes)`` then the gradient of
  ``sum(y * grad)`` with respect to ``w`` is ``tgmm(x, grad, group_sizes)``.
  It is :func:`jax.lax.ragged_dot_general` with a ragged contracting axis.
  Rows past ``sum(group_sizes)`` take part in no group; an empty group gives a
  zero matrix.

  Differentiable in ``lhs`` and ``grad`` through a custom VJP built from
  :func:`gmm`.

  Args:
    lhs: ``[m, k]`` array whose rows are sorted by group.
    grad: ``[m, n]`` array with the same row order.
    group_sizes: ``[G]`` integer array (see :func:`gmm`).
    preferred_element_type: dtype of the result; by default the promoted
      dtype of ``lhs`` and ``grad``.
    tiling: ``(tm, tk, tn)`` tile sizes of the Pallas kernel (see
      :func:`gmm`).
    implementation: ``None``, ``"xla"``, ``"pallas_tpu"`` or
      ``"pallas_gpu"`` (see :func:`gmm`).
    interpret: Pallas interpret mode (see :func:`gmm`).

  Returns:
    ``[G, k, n]`` array.

  Raises:
    ValueError: as :func:`gmm`, naming the argument.

  Examples:
    >>> import jax.numpy as jnp
    >>> from pallas_kernels import tgmm
    >>> lhs = jnp.arange(4.0).reshape(4, 1)  # rows 0..3, values 0, 1, 2, 3
    >>> grad = jnp.ones((4, 1))
    >>> group_sizes = jnp.array([1, 0, 3], jnp.int32)
    >>> tgmm(lhs, grad, group_sizes)[:, 0, 0]  # 0, nothing, 1 + 2 + 3
    Array([0., 0., 6.], dtype=float32)

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with Mixture-of-Experts
    <https://arxiv.org/abs/2211.15841>`_, 2022.
  """
  _check_matrix("lhs", lhs, 2, "[m, k]")
  _check_matrix("grad", grad, 2, "[m, n]")
  if grad.shape[0] != lhs.shape[0]:
    raise ValueError(
        f"grad.shape[0] must equal lhs.shape[0] (the grouped rows m), got "
        f"grad.shape={grad.shape} and lhs.shape={lhs.shape}.")
  if jnp.ndim(group_sizes) != 1:
    raise ValueError("group_sizes must be a 1-D [G] integer array, got shape "
                     f"{jnp.shape(group_sizes)}.")
  group_sizes = _check_group_sizes(group_sizes, jnp.shape(group_sizes)[0],
                                   lhs.shape[0], None)
  config = _make_config(implementation, interpret, tiling,
                        _out_dtype(lhs, grad, preferred_element_type), False)
  return ops.tgmm(lhs, grad, group_sizes, config)



# --- argument checks ---------------------------------------------------------


def _check_matrix(name, x, ndim, layout):
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise ValueError(f"{name} must be an array {layout}, got {type(x)}.")
  if x.ndim != ndim:
    raise ValueError(
        f"{name} must be {ndim}-D {layout}, got shape {x.shape}.")


def _check_group_sizes(group_sizes, num_groups, m, groups_from):
  if not hasattr(group_sizes, "dtype"):
    group_sizes = np.asarray(group_sizes)
  if group_sizes.ndim != 1 or (groups_from is not None and
                               group_sizes.shape[0] != num_groups):
    want = f"[{num_groups}] (= {groups_from})" if groups_from else "[G]"
    raise ValueError(f"group_sizes must be a 1-D {want} array, got shape "
                     f"{group_sizes.shape}.")
  if group_sizes.shape[0] == 0:
    raise ValueError("group_sizes must name at least one group, got G = 0.")
  if not jnp.issubdtype(group_sizes.dtype, jnp.integer):
    raise ValueError("group_sizes must have an integer dtype, got "
                     f"{group_sizes.dtype}.")
  if not isinstance(group_sizes, jax.core.Tracer):
    sizes = np.asarray(group_sizes).astype(np.int64)
    if (sizes < 0).any():
      raise ValueError(f"group_sizes must be non-negative, got {sizes}.")
    if sizes.sum() > m:
      raise ValueError(
          f"group_sizes must sum to at most m = lhs.shape[0] = {m}, got "
          f"sum {sizes.sum()}.")
  return jnp.asarray(group_sizes, jnp.int32)


def _make_config(implementation, interpret, tiling, out_dtype, transpose_rhs):
  backend = _dispatch.backend(implementation, interpret)
  return ops.Config(backend, jnp.dtype(out_dtype), transpose_rhs,
                    _check_tiling(tiling, backend))


def _check_tiling(tiling, backend):
  # The XLA path has no tiles; it checks them as the TPU kernel would.
  gpu_rule = backend.implementation == "pallas_gpu"
  if tiling is None:
    return gpu.DEFAULT_TILING if gpu_rule else tpu.DEFAULT_TILING
  try:
    tm, tk, tn = (int(t) for t in tiling)
    ok = tuple(tiling) == (tm, tk, tn)
  except (TypeError, ValueError):
    ok = False
  if gpu_rule:
    if not ok or any(t < 16 or t & (t - 1) for t in (tm, tk, tn)):
      raise ValueError(
          "tiling must be (tm, tk, tn) powers of two of at least 16 for "
          f"implementation='pallas_gpu' (Triton dot), got {tiling!r}.")
  elif not ok or min(tm, tk, tn) <= 0 or tm % 8 or tk % 128 or tn % 128:
    raise ValueError(
        "tiling must be (tm, tk, tn) positive ints with tm a multiple of 8 "
        f"and tk, tn multiples of 128 (the TPU block rule), got {tiling!r}.")
  return (tm, tk, tn)


def _out_dtype(a, b, preferred):
  return jnp.dtype(preferred) if preferred is not None else (
      jnp.result_type(a.dtype, b.dtype))
