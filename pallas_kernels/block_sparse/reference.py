# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pure-XLA block-sparse products: the CPU default and the test oracle's peer.

Three products cover the forward and backward passes of ``y = x @ W``:

- :func:`matmul`: ``x @ W`` (DDS): gather the ``x`` column blocks each stored
  block reads, one batched matmul over the stored blocks, and a sorted
  segment-sum into the output column blocks;
- :func:`matmul_t`: ``dy @ W.T`` (DSD with the transposed topology): the same
  over the block-CSR order ``t_perm``, no data moved but ``data[t_perm]``;
- :func:`sdd`: ``(x.T @ dy)`` sampled at the stored blocks (the gradient of
  ``data``), zero in the padding slots.

The work is proportional to the capacity, not to ``nnz``. On CPU the gathered
operand and the per-block products are materialized, so rows of ``x`` are
processed in tiles that keep them cache-sized (``_row_tile``); see
``benchmarks/block_sparse.py`` for the measured cost against dense.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ("matmul", "matmul_t", "sdd")

# Bytes of gathered operand per row tile (measured on a 2-core AVX-512 host,
# see benchmarks/block_sparse.py): small enough to stay in a 32 MB L3.
_TILE_BYTES = 8 * 2**20
_MIN_TILE_ROWS = 256


def _row_tile(m: int, bytes_per_row: int) -> int:
  """Largest divisor of ``m`` whose tile fits ``_TILE_BYTES`` (or ``m``)."""
  if m * bytes_per_row <= _TILE_BYTES or m <= _MIN_TILE_ROWS:
    return m
  for parts in range(2, m + 1):
    if m % parts == 0:
      rows = m // parts
      if rows < _MIN_TILE_ROWS:
        break
      if rows * bytes_per_row <= _TILE_BYTES:
        return rows
  # No divisor both fits and keeps tiles big enough: the smallest big tile.
  best = m
  for parts in range(2, m + 1):
    if m % parts == 0 and m // parts >= _MIN_TILE_ROWS:
      best = m // parts
  return best


def _acc_type(dtype):
  return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def _gather_mm_segsum(a, blocks, in_ids, out_ids, num_out, out_block, *,
                      transpose_blocks, out_dtype):
  """``out[:, j] = sum_{z: out_ids[z]==j} a[:, in_ids[z]] @ op(blocks[z])``.

  ``a`` is ``[M, Ga * ka]`` seen as ``Ga`` column blocks of width ``ka``;
  ``out_ids`` must be sorted. Returns ``[M, num_out * out_block]``.
  """
  m = a.shape[0]
  cap, ka = blocks.shape[0], blocks.shape[2 if transpose_blocks else 1]
  ga = a.shape[1] // ka
  acc = _acc_type(out_dtype)
  spec = "zmk,znk->zmn" if transpose_blocks else "zmk,zkn->zmn"

  def tile(a_t):
    rows = a_t.shape[0]
    at = a_t.reshape(rows, ga, ka).transpose(1, 0, 2)
    prods = jnp.einsum(spec, at[in_ids], blocks, preferred_element_type=acc)
    out = jax.ops.segment_sum(prods, out_ids, num_segments=num_out,
                              indices_are_sorted=True)
    return out.transpose(1, 0, 2).reshape(rows, num_out * out_block)

  rows = _row_tile(m, cap * ka * a.dtype.itemsize)
  if rows == m:
    out = tile(a)
  else:
    out = lax.map(tile, a.reshape(m // rows, rows, a.shape[1]))
    out = out.reshape(m, num_out * out_block)
  return out.astype(out_dtype)


def _valid(w):
  return jnp.arange(w.capacity) < w.nnz


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
  _, bn = w.block_shape
  _, nb = w.block_grid
  data = jnp.where(_valid(w)[:, None, None], w.data, 0).astype(x.dtype)
  return _gather_mm_segsum(x, data, w.row_ids, w.col_ids, nb, bn,
                           transpose_blocks=False, out_dtype=out_dtype)


def matmul_t(dy, w, *, out_dtype=None):
  """``dy @ w.to_dense().T`` for ``dy [M, N]``, through the block-CSR order.

  Args:
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(dy, w.dtype)``.

  Returns:
    ``[M, K]``.
  """
  out_dtype = out_dtype or jnp.result_type(dy.dtype, w.dtype)
  bk, _ = w.block_shape
  kb, _ = w.block_grid
  valid_t = _valid(w)  # t_perm lists the stored blocks first.
  data = jnp.where(valid_t[:, None, None], w.data[w.t_perm], 0)
  # Padding goes to the last segment (with zero data) to keep ids sorted.
  rows = jnp.where(valid_t, w.row_ids[w.t_perm], kb - 1)
  return _gather_mm_segsum(dy, data.astype(dy.dtype), w.col_ids[w.t_perm],
                           rows, kb, bk, transpose_blocks=True,
                           out_dtype=out_dtype)


def sdd(x, dy, w, *, out_dtype=None):
  """``(x.T @ dy)`` at the stored blocks of ``w``: ``[capacity, bk, bn]``.

  Args:
    x: dense ``[M, K]``.
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` giving the topology.
    out_dtype: result dtype; default ``w.dtype``.

  Returns:
    The block data of ``x.T @ dy`` sampled at ``w``'s blocks; padding slots
    are zero.
  """
  out_dtype = out_dtype or w.dtype
  bk, bn = w.block_shape
  kb, nb = w.block_grid
  m = x.shape[0]
  acc = _acc_type(out_dtype)

  def tile(x_t, dy_t):
    r = x_t.shape[0]
    xg = x_t.reshape(r, kb, bk).transpose(1, 0, 2)[w.row_ids]
    dg = dy_t.reshape(r, nb, bn).transpose(1, 0, 2)[w.col_ids]
    return jnp.einsum("zmk,zmn->zkn", xg, dg, preferred_element_type=acc)

  rows = _row_tile(m, w.capacity * (bk + bn) * x.dtype.itemsize)
  if rows == m:
    out = tile(x, dy)
  else:
    def body(carry, xs):
      return carry + tile(*xs), None
    out, _ = lax.scan(body, jnp.zeros((w.capacity, bk, bn), acc),
                      (x.reshape(m // rows, rows, -1),
                       dy.reshape(m // rows, rows, -1)))
  out = jnp.where(_valid(w)[:, None, None], out, 0)
  return out.astype(out_dtype)
