# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse matmul: the custom VJPs of its three products.

Forward ``y = x @ W``; backward ``dx = dy @ W.T`` through the transposed
topology and ``dW`` only at the stored blocks (``sdd``), as stk and MegaBlocks
do (research/kernels.md, sections 3.1 and 7). The integer leaves of the
``BlockSparseMatrix`` get ``float0`` cotangents. The public
``block_sparse_matmul`` with its argument checks is in
:mod:`pallas_kernels.block_sparse.api`.

Three products, each differentiated by the others, so the two custom VJPs
(``matmul`` and ``sdd``) are closed under differentiation (any order)::

  y = x @ W           dx = dy @ W.T     dW = sdd(x, dy)
  u = v @ W.T         dv = du @ W       dW = sdd(du, v)
  D = sdd(x, v)       dx = v @ G.T      dv = x @ G

with ``G`` the matrix ``W`` holding the data ``dD``; ``matmul`` computes
both ``x @ W`` and (``transpose=True``) ``x @ W.T``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.block_sparse import gpu
from pallas_kernels.block_sparse import reference
from pallas_kernels.block_sparse import tpu
from pallas_kernels.block_sparse.format import BlockSparseMatrix

__all__ = ("matmul", "sdd")


def _kernel(backend, name):
  return backend.kernel(xla=getattr(reference, name),
                        pallas_tpu=getattr(tpu, name),
                        pallas_gpu=getattr(gpu, name))


def _float0_like(a):
  return np.zeros(np.shape(a), dtype=jax.dtypes.float0)


def _w_cotangent(w, ddata):
  leaves, aux = w.tree_flatten()
  return BlockSparseMatrix.tree_unflatten(
      aux, (ddata,) + tuple(_float0_like(a) for a in leaves[1:]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def matmul(x, w, backend, transpose):
  """``x @ W``, or ``x @ W.T`` with ``transpose``."""
  return _kernel(backend, "matmul_t" if transpose else "matmul")(x, w)


def _matmul_fwd(x, w, backend, transpose):
  return matmul(x, w, backend, transpose), (x, w)


def _matmul_bwd(backend, transpose, res, dy):
  x, w = res
  dx = matmul(dy, w, backend, not transpose)
  # y = x @ W: dW = x.T @ dy; y = x @ W.T: dW = dy.T @ x (at the blocks).
  dw = sdd(dy, x, w, backend) if transpose else sdd(x, dy, w, backend)
  return dx, _w_cotangent(w, dw)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def sdd(x, v, w, backend):
  return _kernel(backend, "sdd")(x, v, w)


def _sdd_fwd(x, v, w, backend):
  return sdd(x, v, w, backend), (x, v, w)


def _sdd_bwd(backend, res, dd):
  x, v, w = res
  g = w.with_data(dd.astype(w.dtype))
  dx = matmul(v, g, backend, True)
  dv = matmul(x, g, backend, False)
  # D does not depend on the block data, only on the topology.
  return dx, dv, _w_cotangent(w, jnp.zeros_like(w.data))


sdd.defvjp(_sdd_fwd, _sdd_bwd)
