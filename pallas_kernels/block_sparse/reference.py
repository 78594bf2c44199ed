# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pure-XLA block-sparse products: the CPU default and the oracle's peer.

Three products cover the forward and backward passes of ``y = x @ W``:

- :func:`matmul`: ``x @ W``;
- :func:`matmul_t`: ``dy @ W.T``;
- :func:`sdd`: ``x.T @ dy`` sampled at the stored blocks (the gradient of the
  block data), zero in the padding slots.

Each output block column is a segment of the stored blocks: a block column of
``W`` for :func:`matmul` and :func:`sdd` (slots ``col_offsets[j]`` to
``col_offsets[j + 1]``, contiguous in the block-CSC order), a block row for
:func:`matmul_t` (the same through ``row_offsets`` and ``t_perm``). A segment
of ``c`` blocks is cut into ``c // 2`` pieces of 2 blocks and, for odd ``c``,
one piece of 1. A piece of ``s`` blocks is one
matmul with a contraction of ``s`` blocks: its ``s`` operand column blocks are
stacked into ``[M, s * b]`` and multiplied by its ``s`` blocks stacked into
``[s * b, b]``, and the product is added into the output column block in
place. For :func:`sdd` a piece gives its ``s`` gradient blocks in one matmul,
written to their slots without accumulation. There is one ``lax.fori_loop``
per piece size (2 and 1) with a traced trip count, so the work follows
``nnz``, not the capacity, and a new topology at the same capacity reuses the
compiled program. Nothing of size ``nnz x M x b`` is materialized.

Why this formulation (``benchmarks/block_sparse.py --variants``, float32,
2-core AVX-512 host, ratios to dense ``x @ W`` at 128 x 128 blocks): XLA:CPU
already runs each ``[M, 128] @ [128, 128]`` product on both cores at about the
dense matmul's FLOP rate, so splitting rows or pairing blocks for concurrency
gains nothing. The cost beyond the products is the read-modify-write of the
output column block after every product and the fixed cost per XLA op. Pieces
of up to 4 blocks cut both by up to 4x and give each matmul a deeper
contraction. The previous one-product-per-stored-block loop, a per-column loop
with a small accumulator, pieces of up to 8, pieces built with
``concatenate`` or ``take``, and a gather + batched matmul + segment-sum were
all measured slower (see the benchmark's ``--variants``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

__all__ = ("matmul", "matmul_t", "sdd")

# Largest piece (in blocks); powers of two below it cover the remainders.
_MAX_PIECE = 2


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


def _pieces(offsets, capacity, max_piece=_MAX_PIECE):
  """Cuts every segment into pieces of ``max_piece`` blocks and fewer.

  Segment ``j`` holds positions ``offsets[j]`` to ``offsets[j + 1]``. It gets
  ``c // smax`` pieces of ``smax`` positions, then one piece per set bit of
  ``c % smax``, in that order, so the pieces tile it exactly.

  Returns:
    A list of ``(size, starts, segments, count)``, one per piece size from the
    largest down: the first position and the segment of each piece (arrays of
    static length ``capacity // size``, valid up to the traced ``count``).
  """
  nseg = offsets.shape[0] - 1
  smax = max(1, min(max_piece, capacity))
  smax = 1 << (smax.bit_length() - 1)
  counts = offsets[1:] - offsets[:-1]
  done = jnp.zeros_like(counts)
  out = []
  size = smax
  while size >= 1:
    n = counts // size if size == smax else (counts // size) % 2
    cum = jnp.cumsum(n)
    excl = cum - n
    length = capacity // size
    i = jnp.arange(length, dtype=jnp.int32)
    # seg[i] = #{j : cum[j] <= i} (a searchsorted without its while loop).
    hist = jnp.zeros((length,), jnp.int32).at[cum].add(1, mode="drop")
    seg = jnp.minimum(jnp.cumsum(hist), nseg - 1).astype(jnp.int32)
    start = offsets[seg] + done[seg] + (i - excl[seg]) * size
    out.append((size, start, seg, cum[-1]))
    done = done + n * size
    size //= 2
  return out


def _stack_slabs(a, ids, block):
  """``[a[:, ids[0]*block:...], a[:, ids[1]*block:...], ...]`` side by side."""
  slabs = [lax.dynamic_slice_in_dim(a, i * block, block, axis=1) for i in ids]
  if len(slabs) == 1:
    return slabs[0]
  # One fused gather; concatenate here costs an extra copy on XLA:CPU.
  return jnp.stack(slabs, axis=1).reshape(a.shape[0], len(slabs) * block)


def _accumulate(a, w, *, out_cols, in_ids, offsets, order, in_block,
                out_block, transpose_w, out_dtype, max_piece=_MAX_PIECE):
  """``out[:, seg] += a[:, in blocks] @ op(blocks)`` over the pieces."""
  acc = _acc_type(out_dtype)
  data = w.data.astype(a.dtype)
  bk, bn = w.block_shape
  out = _zeros_rows_like(a, out_cols, acc)
  for size, starts, segs, count in _pieces(offsets, w.capacity, max_piece):

    def body(i, out, size=size, starts=starts, segs=segs):
      pos = starts[i]
      if order is None:  # The piece's slots are contiguous.
        slots = [pos + t for t in range(size)]
        blocks = lax.dynamic_slice_in_dim(data, pos, size, axis=0)
      else:
        slots = [order[pos + t] for t in range(size)]
        blocks = jnp.stack([data[z] for z in slots])
      g = _stack_slabs(a, [in_ids[z] for z in slots], in_block)
      if transpose_w:  # [s, bk, bn] -> [s * bn, bk]
        blocks = blocks.transpose(0, 2, 1).reshape(size * bn, bk)
      else:
        blocks = blocks.reshape(size * bk, bn)
      prod = jnp.dot(g, blocks, preferred_element_type=acc)
      col = segs[i] * out_block
      ob = lax.dynamic_slice_in_dim(out, col, out_block, axis=1)
      return lax.dynamic_update_slice_in_dim(out, ob + prod, col, axis=1)

    out = lax.fori_loop(0, count, body, out)
  return out.astype(out_dtype)


def matmul(x, w, *, out_dtype=None, _max_piece=_MAX_PIECE):
  """``x @ w.to_dense()`` for ``x [M, K]`` and a ``BlockSparseMatrix`` ``w``.

  Args:
    x: dense ``[M, K]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(x, w.dtype)``.
    _max_piece: largest piece in blocks (private: the benchmark's variants).

  Returns:
    ``[M, N]``.
  """
  out_dtype = out_dtype or jnp.result_type(x.dtype, w.dtype)
  bk, bn = w.block_shape
  return _accumulate(x, w, out_cols=w.shape[1], in_ids=w.row_ids,
                     offsets=w.col_offsets, order=None, in_block=bk,
                     out_block=bn, transpose_w=False, out_dtype=out_dtype,
                     max_piece=_max_piece)


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
                     offsets=w.row_offsets, order=w.t_perm, in_block=bn,
                     out_block=bk, transpose_w=True, out_dtype=out_dtype)


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
  out = jnp.zeros((w.capacity, bk, bn), out_dtype, out_sharding=out_sharding)
  for size, starts, segs, count in _pieces(w.col_offsets, w.capacity):

    def body(i, out, size=size, starts=starts, segs=segs):
      pos = starts[i]
      g = _stack_slabs(x, [w.row_ids[pos + t] for t in range(size)], bk)
      db = lax.dynamic_slice_in_dim(dy, segs[i] * bn, bn, axis=1)
      blk = lax.dot_general(g, db, (((0,), (0,)), ((), ())),
                            preferred_element_type=acc,
                            out_sharding=out_sharding)
      blk = blk.reshape(size, bk, bn).astype(out_dtype)
      return lax.dynamic_update_slice_in_dim(out, blk, pos, axis=0)

    out = lax.fori_loop(0, count, body, out)
  return out
