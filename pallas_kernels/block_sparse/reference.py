# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pure-XLA block-sparse products: the CPU default and the oracle's peer.

Three products cover the forward and backward passes of ``y = x @ W``:

- :func:`matmul`: ``x @ W``;
- :func:`matmul_t`: ``dy @ W.T``;
- :func:`sdd`: ``x.T @ dy`` sampled at the stored blocks (the gradient of the
  block data), zero in the padding slots.

Each runs ``lax.fori_loop`` loops with traced trip counts, so the work
follows ``nnz``, not the capacity, and a new topology at the same capacity
reuses the compiled program. Nothing of size ``nnz x M x b`` is materialized.

- Pieces (:func:`matmul`, :func:`matmul_t`, :func:`sdd`): the stored blocks
  of each output block column (contiguous slots ``col_offsets[j]`` to
  ``col_offsets[j + 1]`` in the block-CSC order; for :func:`matmul_t` the
  block rows, slots through ``t_perm``) are cut into pieces of
  ``p = min(8, 256 // b)`` blocks, then one piece per set bit of the
  remainder (``p`` is rounded down to a power of two). A piece of ``s``
  blocks is one matmul, its ``s`` column blocks of the dense operand stacked
  into ``[M, s * b]`` times its ``s`` blocks stacked into ``[s * b, b]``
  (for :func:`sdd`, the stacked operand transposed times the output column
  block, written to the piece's ``s`` slots), and one read-modify-write of
  the output column block instead of ``s``. One loop per piece size.
  :func:`sdd` cuts the block rows instead (block-CSR order, slots through
  ``t_perm``) when the grid has more block columns than block rows, so that
  its segments are the longer ones: one ``[bk, M] @ [M, s * bn]`` product
  per piece.
- Per-block loop (``_max_piece=1``): one step per stored block slices the
  operand's column block, multiplies it by the stored block and adds the
  product into its output column block in place (or writes the gradient
  block to its slot).

What was measured (``benchmarks/block_sparse.py --variants`` and probes,
float32, the project's 2-core AVX-512 host, best wall-time ratios to dense
``x @ W`` timed interleaved in the same run; they move by +-0.03 or more
between runs on this shared host):

- XLA:CPU already runs each ``[M, 128] @ [128, 128]`` product on both cores
  at about the dense matmul's FLOP rate (0.19 ms for ``M = 2048``, 350 GFLOP/s
  against 360-400 for dense): the per-block loop is not single-threaded. A
  batched matmul over two row halves was no faster, and row halves as
  separate products or two blocks per step into two accumulators were slower
  (up to 1.7x at ``M = 1024``). With 128 x 128 blocks the products alone,
  without slicing or accumulating, take 0.29x dense at 25 % density and
  0.11x (2048) to 0.13x (1024) at 10 %, which leaves almost nothing of the
  issue's 0.35x / 0.15x targets for the rest.
- Pieces against the per-block loop (10 % / 25 % density): 32 x 32 blocks
  0.48-0.49x / 0.83-0.98x against 0.55-0.84x / 1.37-2.0x (pieces of 8);
  64 x 64 blocks 0.27x / 0.57-0.71x against 0.33-0.42x / 0.89-1.02x (4);
  128 x 128 blocks at ``M = 2048`` 0.18-0.19x / 0.38-0.42x against
  0.19-0.21x / 0.44-0.47x (2); at ``M = 1024`` the two are within noise
  (0.15-0.20x / 0.39-0.43x).
- Pieces of 16 were no better than 8. A per-column ``[M, b]`` accumulator
  written once, stacking with ``concatenate`` or ``take`` (an extra copy or a
  slow gather on XLA:CPU), a gather + batched matmul + segment-sum,
  column-ELL (not jit-stable) and densify-then-matmul were slower.
- Backward products (FFN shapes ``M = 2048``, ``[1024, 4096]`` and
  ``[4096, 1024]`` kernels, ``benchmarks/block_sparse_training.py``):
  pieces for ``dy @ W.T`` and the block gradient were as fast as or faster
  than the per-block loop at every block (32, 64, 128) and density (10 %,
  25 %) measured: ``dy @ W.T`` with 64 x 64 blocks at 10 % 18.7 ms against
  29.5 (long block rows) and 31 against 37 (short ones), 32 x 32 45 against
  76 and 68 against 108 ms; the block gradient gained up to 10 %. A batched
  product of 410 ``[64, 2048] @ [2048, 64]`` blocks alone, operands already
  sliced, took 15 ms (about 115 GFLOP/s against 300 for the dense matmul):
  long contractions into small blocks are slow on XLA:CPU, which bounds the
  block gradient. Transposing the operands first to slice contiguous rows
  was slower (28-39 ms against 26-34). Grouping by block rows where they are
  the longer segments (the ``[1024, 4096]`` kernel's 64 x 64 blocks at 10 %:
  6.4 blocks per block row against 1.6 per block column) took the first
  layer's block gradient from 28-31 ms to 25-27 ms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

__all__ = ("matmul", "matmul_t", "sdd")

# Forward pieces contract up to _PIECE_DEPTH rows of W, at most _MAX_PIECE
# blocks (measured on CPU; see the module docstring).
_PIECE_DEPTH = 256
_MAX_PIECE = 8


def _default_piece(bk):
  return min(_MAX_PIECE, max(1, _PIECE_DEPTH // bk))


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


def _add_columns(out, start, prod):
  """``out[:, start:start + width] += prod``, in place in a loop carry."""
  cols = lax.dynamic_slice_in_dim(out, start, prod.shape[1], axis=1)
  return lax.dynamic_update_slice_in_dim(out, cols + prod, start, axis=1)


def _accumulate(a, w, *, out_cols, in_ids, out_ids, in_block, out_block,
                transpose_w, out_dtype):
  """``out[:, o_z] += a[:, i_z] @ op(data[z])`` for the stored blocks ``z``."""
  acc = _acc_type(out_dtype)
  data = w.data.astype(a.dtype)
  dims = (((1,), (1,)), ((), ())) if transpose_w else (((1,), (0,)), ((), ()))

  def body(z, out):
    ab = lax.dynamic_slice_in_dim(a, in_ids[z] * in_block, in_block, axis=1)
    prod = lax.dot_general(ab, data[z], dims, preferred_element_type=acc)
    return _add_columns(out, out_ids[z] * out_block, prod)

  out = lax.fori_loop(0, _trip_count(w), body,
                      _zeros_rows_like(a, out_cols, acc))
  return out.astype(out_dtype)


def _pieces(offsets, capacity, max_piece):
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


def _piece_products(a, w, *, offsets, in_ids, slot, in_block, transpose,
                    max_piece, acc):
  """Yields ``(loop body inputs)`` per piece size; see the callers.

  For each piece of segment ``j`` (positions ``offsets[j]`` to
  ``offsets[j + 1]``, the stored slot at position ``p`` being ``slot(p)``)
  the body gets the segment and the product of ``a``'s column blocks
  ``in_ids[slot(p)]`` stacked side by side with the piece's blocks stacked
  (transposed first when ``transpose``).
  """
  data = w.data.astype(a.dtype)
  bk, bn = w.block_shape
  out_block = bk if transpose else bn
  for size, starts, segs, count in _pieces(offsets, w.capacity, max_piece):

    def product(i, size=size, starts=starts, segs=segs):
      pos = starts[i]
      zs = [slot(pos + t) for t in range(size)]
      g = _stack_slabs(a, [in_ids[z] for z in zs], in_block)
      if transpose:
        blocks = jnp.stack([data[z] for z in zs]).transpose(0, 2, 1)
      else:  # The piece's slots are contiguous (block-CSC order).
        blocks = lax.dynamic_slice_in_dim(data, pos, size, axis=0)
      blocks = blocks.reshape(size * in_block, out_block)
      return segs[i], jnp.dot(g, blocks, preferred_element_type=acc)

    yield count, product


def _matmul_pieces(x, w, *, max_piece, out_dtype, transpose=False):
  """``x @ W`` (or ``x @ W.T``) with one matmul per piece of a segment.

  The segments are the block columns of ``W`` (block-CSC, contiguous slots)
  for ``x @ W`` and its block rows (block-CSR, slots through ``t_perm``) for
  ``x @ W.T``.
  """
  acc = _acc_type(out_dtype)
  bk, bn = w.block_shape
  if transpose:
    kw = dict(offsets=w.row_offsets, in_ids=w.col_ids,
              slot=lambda p: w.t_perm[p], in_block=bn)
    out_block, out_cols = bk, w.shape[0]
  else:
    kw = dict(offsets=w.col_offsets, in_ids=w.row_ids, slot=lambda p: p,
              in_block=bk)
    out_block, out_cols = bn, w.shape[1]
  out = _zeros_rows_like(x, out_cols, acc)
  for count, product in _piece_products(x, w, transpose=transpose,
                                        max_piece=max_piece, acc=acc, **kw):

    def body(i, out, product=product):
      seg, prod = product(i)
      return _add_columns(out, seg * out_block, prod)

    out = lax.fori_loop(0, count, body, out)
  return out.astype(out_dtype)


def _sdd_pieces(x, dy, w, *, max_piece, out_dtype):
  """Block gradient with one product per piece of a segment.

  The segments are the block columns of ``W`` (one ``[s * bk, M] @ [M, bn]``
  product per piece, written to its ``s`` contiguous slots) or, when the
  grid has more block columns than block rows so that the rows hold the
  longer segments, its block rows (one ``[bk, M] @ [M, s * bn]`` product,
  written slot by slot through ``t_perm``). Longer segments make fewer,
  larger products.
  """
  acc = _acc_type(out_dtype)
  bk, bn = w.block_shape
  kb, nb = w.block_grid
  by_rows = nb > kb
  out_sharding = _replicated_out(x)
  out = jnp.zeros((w.capacity, bk, bn), out_dtype, out_sharding=out_sharding)
  offsets = w.row_offsets if by_rows else w.col_offsets
  for size, starts, segs, count in _pieces(offsets, w.capacity, max_piece):

    def body(i, out, size=size, starts=starts, segs=segs):
      pos = starts[i]
      if by_rows:
        zs = [w.t_perm[pos + t] for t in range(size)]
        a = lax.dynamic_slice_in_dim(x, segs[i] * bk, bk, axis=1)
        b = _stack_slabs(dy, [w.col_ids[z] for z in zs], bn)
      else:
        a = _stack_slabs(x, [w.row_ids[pos + t] for t in range(size)], bk)
        b = lax.dynamic_slice_in_dim(dy, segs[i] * bn, bn, axis=1)
      blk = lax.dot_general(a, b, (((0,), (0,)), ((), ())),
                            preferred_element_type=acc,
                            out_sharding=out_sharding).astype(out_dtype)
      if not by_rows:
        blk = blk.reshape(size, bk, bn)
        return lax.dynamic_update_slice_in_dim(out, blk, pos, axis=0)
      blk = blk.reshape(bk, size, bn)
      for t, z in enumerate(zs):
        out = lax.dynamic_update_index_in_dim(out, blk[:, t], z, 0)
      return out

    out = lax.fori_loop(0, count, body, out)
  return out


def matmul(x, w, *, out_dtype=None, _max_piece=None):
  """``x @ w.to_dense()`` for ``x [M, K]`` and a ``BlockSparseMatrix`` ``w``.

  Args:
    x: dense ``[M, K]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(x, w.dtype)``.
    _max_piece: private (tests, benchmark variants): largest piece in blocks;
      1 is the per-block loop. Default: ``256 // bk`` blocks, at most 8.

  Returns:
    ``[M, N]``.
  """
  out_dtype = out_dtype or jnp.result_type(x.dtype, w.dtype)
  if _max_piece is None:
    _max_piece = _default_piece(w.block_shape[0])
  if _max_piece > 1:
    return _matmul_pieces(x, w, max_piece=_max_piece, out_dtype=out_dtype)
  bk, bn = w.block_shape
  return _accumulate(x, w, out_cols=w.shape[1], in_ids=w.row_ids,
                     out_ids=w.col_ids, in_block=bk, out_block=bn,
                     transpose_w=False, out_dtype=out_dtype)


def matmul_t(dy, w, *, out_dtype=None, _max_piece=None):
  """``dy @ w.to_dense().T`` for ``dy [M, N]``.

  Args:
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` of shape ``[K, N]``.
    out_dtype: result dtype; default ``result_type(dy, w.dtype)``.
    _max_piece: private, as in :func:`matmul` (pieces of a block row's
      stored blocks, in block-CSR order through ``t_perm``).

  Returns:
    ``[M, K]``.
  """
  out_dtype = out_dtype or jnp.result_type(dy.dtype, w.dtype)
  bk, bn = w.block_shape
  if _max_piece is None:
    _max_piece = _default_piece(bn)
  if _max_piece > 1:
    return _matmul_pieces(dy, w, max_piece=_max_piece, out_dtype=out_dtype,
                          transpose=True)
  return _accumulate(dy, w, out_cols=w.shape[0], in_ids=w.col_ids,
                     out_ids=w.row_ids, in_block=bn, out_block=bk,
                     transpose_w=True, out_dtype=out_dtype)


def sdd(x, dy, w, *, out_dtype=None, _max_piece=None):
  """``x.T @ dy`` at the stored blocks of ``w``: ``[capacity, bk, bn]``.

  Args:
    x: dense ``[M, K]``.
    dy: dense ``[M, N]``.
    w: ``BlockSparseMatrix`` giving the topology.
    out_dtype: result dtype; default ``w.dtype``.
    _max_piece: private, as in :func:`matmul` (one ``[s * bk, bn]`` product
      per piece of a block column's stored blocks).

  Returns:
    The blocks of ``x.T @ dy`` at ``w``'s stored blocks; padding slots are
    zero.
  """
  out_dtype = jnp.dtype(out_dtype or w.dtype)
  if _max_piece is None:
    _max_piece = _default_piece(w.block_shape[0])
  if _max_piece > 1:
    return _sdd_pieces(x, dy, w, max_piece=_max_piece, out_dtype=out_dtype)
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
