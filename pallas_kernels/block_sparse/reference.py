# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pure-XLA block-sparse products: the CPU default and the oracle's peer.

Three products cover the forward and backward passes of ``y = x @ W``:

- :func:`matmul`: ``x @ W``;
- :func:`matmul_t`: ``dy @ W.T``;
- :func:`sdd`: ``x.T @ dy`` sampled at the stored blocks (the gradient of the
  block data), zero in the padding slots.

Each is one ``lax.fori_loop`` over the ``nnz`` stored blocks (a traced trip
count, so the work follows ``nnz``, not the capacity). An iteration slices the
operand's column block, multiplies it by the stored block and adds the product
into its output column block in place (``dynamic_update_slice`` on the loop
carry). Nothing of size ``nnz x M x b`` is materialized: on CPU this beat a
gather + batched matmul + segment-sum formulation at every size, block and
density measured (``benchmarks/block_sparse.py --variants``), most of all at
``M = N = K = 2048`` where the gathered operand outgrows the caches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

__all__ = ("matmul", "matmul_t", "sdd")


def _acc_type(dtype):
  return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else jnp.dtype(dtype)


def _zeros_rows_like(a, cols, dtype):
  """Zeros ``[rows of a, cols]`` that keep ``a``'s row sharding (if any)."""
  return jnp.broadcast_to(jnp.zeros_like(a[:, :1], dtype=dtype),
                          (a.shape[0], cols))


def _replicated_out(a):
  """``out_sharding`` for a product contracting ``a``'s rows.

  Under explicit sharding (sharding in types) a contraction over a sharded
  dimension must name its output sharding; the block gradient is replicated.
  """
  mesh = getattr(getattr(jax.typeof(a), "sharding", None), "mesh", None)
  if mesh is None or mesh.empty or not mesh.explicit_axes:
    return None
  return NamedSharding(mesh, PartitionSpec())


def _trip_count(w):
  return jnp.clip(w.nnz, 0, w.capacity).astype(jnp.int32)


def _accumulate(a, w, *, out_cols, in_ids, out_ids, in_block, out_block,
                transpose_w, out_dtype):
  """``out[:, o_z] += a[:, i_z] @ op(data[z])`` for the stored blocks ``z``."""
  acc = _acc_type(out_dtype)
  data = w.data.astype(a.dtype)
  dims = (((1,), (1,)), ((), ())) if transpose_w else (((1,), (0,)), ((), ()))

  def body(z, out):
    ab = lax.dynamic_slice_in_dim(a, in_ids[z] * in_block, in_block, axis=1)
    col = out_ids[z] * out_block
    ob = lax.dynamic_slice_in_dim(out, col, out_block, axis=1)
    prod = lax.dot_general(ab, data[z], dims, preferred_element_type=acc)
    return lax.dynamic_update_slice_in_dim(out, ob + prod, col, axis=1)

  out = lax.fori_loop(0, _trip_count(w), body,
                      _zeros_rows_like(a, out_cols, acc))
  return out.astype(out_dtype)


def matmul(x, w, *, out_dtype=None):
  """``x @ w.to_dense()`` for ``x [M, K]`` and a ``BlockSparseMatrix`` ``w``.

  Args:
    x: dense ``[M, K]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(x, w.dtype)``.

  Returns:
    ``[M, N]``.
  """
  out_dtype = out_dtype or jnp.result_type(x.dtype, w.dtype)
  bk, bn = w.block_shape
  return _accumulate(x, w, out_cols=w.shape[1], in_ids=w.row_ids,
                     out_ids=w.col_ids, in_block=bk, out_block=bn,
                     transpose_w=False, out_dtype=out_dtype)


def matmul_t(dy, w, *, out_dtype=None):
  """``dy @ w.to_dense().T`` for ``dy [M, N]``.

  Args:
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(dy, w.dtype)``.

  Returns:
    ``[M, K]``.
  """
  out_dtype = out_dtype or jnp.result_type(dy.dtype, w.dtype)
  bk, bn = w.block_shape
  return _accumulate(dy, w, out_cols=w.shape[0], in_ids=w.col_ids,
                     out_ids=w.row_ids, in_block=bn, out_block=bk,
                     transpose_w=True, out_dtype=out_dtype)


def sdd(x, dy, w, *, out_dtype=None):
  """``x.T @ dy`` at the stored blocks of ``w``: ``[capacity, bk, bn]``.

  Args:
    x: dense ``[M, K]``.
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` giving the topology.
    out_dtype: result dtype; default ``w.dtype``.

  Returns:
    The blocks of ``x.T @ dy`` at ``w``'s stored blocks; padding slots are
    zero.
  """
  out_dtype = jnp.dtype(out_dtype or w.dtype)
  bk, bn = w.block_shape
  acc = _acc_type(out_dtype)
  out_sharding = _replicated_out(x)

  def body(z, out):
    xb = lax.dynamic_slice_in_dim(x, w.row_ids[z] * bk, bk, axis=1)
    db = lax.dynamic_slice_in_dim(dy, w.col_ids[z] * bn, bn, axis=1)
    blk = lax.dot_general(xb, db, (((0,), (0,)), ((), ())),
                          preferred_element_type=acc,
                          out_sharding=out_sharding)
    return lax.dynamic_update_index_in_dim(out, blk.astype(out_dtype), z, 0)

  return lax.fori_loop(
      0, _trip_count(w), body,
      jnp.zeros((w.capacity, bk, bn), out_dtype, out_sharding=out_sharding))
