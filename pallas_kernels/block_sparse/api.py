# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""`block_sparse_matmul`: the public function and its argument checks.

It chooses the implementation with :func:`pallas_kernels._dispatch.backend`
and calls the custom VJPs of :mod:`pallas_kernels.block_sparse.ops`.
"""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels import _dispatch
from pallas_kernels.block_sparse import ops
from pallas_kernels.block_sparse.format import BlockSparseMatrix

__all__ = ("block_sparse_matmul",)


def block_sparse_matmul(x, w: BlockSparseMatrix, *, implementation=None,
                        interpret=None):
  """``x @ w.to_dense()`` computed over the stored blocks only.

  Differentiable in ``x`` and in ``w.data`` (a ``jax.custom_vjp``): ``dx`` runs
  through the transposed topology and the gradient of ``w`` is computed only at
  its stored blocks (zero in the padding slots). The backward products are
  custom VJPs too, so higher-order derivatives (Hessian-vector products) run on
  the same kernels; forward-mode (``jax.jvp``) is not supported. ``w``'s integer
  leaves get ``float0`` cotangents, so ``jax.grad`` with respect to the whole
  matrix needs ``allow_int=True``; to differentiate only the blocks, close over
  the topology and differentiate ``lambda d: f(w.with_data(d))`` at ``w.data``.

  Args:
    x: dense ``[..., K]``; leading dimensions are flattened into rows.
    w: a :class:`BlockSparseMatrix` of shape ``[K, N]``.
    implementation: ``None`` (choose by backend: ``"pallas_tpu"`` on TPU,
      ``"pallas_gpu"`` on GPU, ``"xla"`` elsewhere; with ``interpret`` set,
      the Pallas path of the backend, TPU on CPU), ``"xla"`` (gather, batched
      matmul and segment-sum over the stored blocks), ``"pallas_tpu"`` (Mosaic
      TPU kernels; blocks must obey the (8, 128) rule) or ``"pallas_gpu"``
      (Triton kernels). An explicit choice never checks the backend, so a CPU
      host can lower it for its target with ``jax.export``.
    interpret: for the Pallas paths, ``True`` or
      ``jax.experimental.pallas.tpu.InterpretParams()`` runs the kernel in
      interpret mode on any backend (the latter simulates the TPU and raises
      on out-of-bounds block indices and out-of-order output revisits).

  Returns:
    ``[..., N]`` with dtype ``result_type(x, w.dtype)``; products accumulate
    in float32 for 16-bit inputs.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from pallas_kernels import BlockSparseMatrix, block_sparse_matmul
    >>> w = jnp.arange(16.0).reshape(4, 4)
    >>> m = BlockSparseMatrix.from_dense(w, (2, 2), jnp.eye(2, dtype=bool))
    >>> x = jnp.ones((1, 4))
    >>> block_sparse_matmul(x, m).tolist()
    [[4.0, 6.0, 24.0, 26.0]]
    >>> g = jax.grad(lambda d: block_sparse_matmul(x, m.with_data(d)).sum())
    >>> g(m.data)[0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with Mixture-of-Experts
    <https://arxiv.org/abs/2211.15841>`_, 2022 (the DDS / DSD / SDD
    decomposition of the backward pass).
  """
  if not isinstance(w, BlockSparseMatrix):
    raise ValueError(
        f"w must be a BlockSparseMatrix, got {type(w).__name__}.")
  x = jnp.asarray(x)
  k, n = w.shape
  if x.ndim < 1 or x.shape[-1] != k:
    raise ValueError(
        f"x must have shape [..., {k}] to multiply w of shape {w.shape}, got "
        f"{x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x must have a floating dtype, got {x.dtype}.")
  backend = _dispatch.backend(implementation, interpret)
  lead = x.shape[:-1]
  x2 = x.reshape(-1, k)
  # One dtype inside the kernels: promote both operands.
  dtype = jnp.result_type(x.dtype, w.dtype)
  x2 = x2.astype(dtype)
  if w.dtype != dtype:
    w = w.with_data(w.data.astype(dtype))
  y = ops.matmul(x2, w, backend, False)
  return y.reshape(*lead, n)
