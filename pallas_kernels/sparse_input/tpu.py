# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Mosaic TPU kernel: `x @ W` over the active row blocks of `W`.

**Granularity: row blocks, not rows.** A TPU DMA moves tiles: `W` lives in
HBM in (8, 128) tiles for 32-bit dtypes and (16, 128) for 16-bit ones, and a
Pallas block must have a second-minor size divisible by 8 (the (8, 128)
rule). So `W` [d, n] is cut into row blocks of `block_rows` rows (default:
one HBM tile, 8 rows for float32, 16 for bfloat16), and a row block is
*active* when any of its input channels is nonzero in any row of the batch.
The kernel reads every active block whole. For independent channels of
sparsity `s` the fraction of active blocks is `1 - s**block_rows`, far above
the fraction of active rows `1 - s` (at `s = 0.5` and 16 rows: 99.998 %
against 50 %); activations whose active channels cluster (or channels
permuted offline so that co-active ones are neighbours) approach `1 - s`.
`benchmarks/sparse_input_roofline.py` tabulates the effect.

The kernel. The active block ids are listed in XLA (a cumsum and a
scatter, active ones first) and passed with their count through scalar
prefetch (`pltpu.PrefetchScalarGridSpec`). Each grid step reads
`blocks_per_step` active blocks: `x.T` and `W` are passed that many times,
and the index map of copy `g` picks the block `ids[k * blocks_per_step +
g]` of grid step `k` (a step of one block would be bound by the fixed cost
of a grid step, below). The grid is `(output column tiles,
max(cdiv(active blocks, blocks_per_step), 1))`: its second size is
*traced*, so no step runs past the active blocks (a dynamic grid, as
megablox's `gmm` uses). A step adds `x[:, block] @ W[block, tile]` for
each of its blocks below the count (`pl.when`) into a float32 VMEM
accumulator, which is zeroed at step 0 and stored at the last step (the
output block is revisited only on consecutive steps). In the last step
the copies past the count point at the block they read one step earlier
(no new copy) or, in a first step, at block 0; every id is in bounds, so
with no active block at all the single step reads block 0, skips the
product and stores zeros.

`x` enters transposed, `[d, b]`, so that its block `(block_rows, b)` obeys
the (8, 128) rule (a `(b, block_rows)` block would not). Up to
`MAX_ROW_SUM_BATCH` batch rows each row's product is an elementwise
multiply of a column of `x.T` broadcast over lanes and a sublane sum (VPU
work; the MXU would idle at batch 1); larger batches use one
`dot_general` contracting the row axis of both blocks. When `block_rows`
does not divide `d` the last block's rows past `d` are masked (they are
padding, NaN in the simulator).

Step cost, not in the bandwidth roofline: every Pallas TPU grid step has a
fixed cost, often quoted as about 0.35 us (not measured here: no TPU), so
a step should move at least as many bytes as HBM delivers in that time
(about 0.3 MB on a v5e). Output tiles are therefore as wide as possible
(all of `n` up to 16384 columns) and `blocks_per_step` defaults to enough
blocks for about 0.5 MB (at most 8): for bf16 and 16-row blocks, 4 blocks
(512 KB) of a 4096-column `W` and 2 (704 KB) of an 11008-column one. The
cost is granularity at the end: the last step of a tile may carry up to
`blocks_per_step - 1` idle copies (no new DMA, no compute).

References:
  Liu et al, `Training-Free Activation Sparsity in Large Language Models
  <https://arxiv.org/abs/2408.14690>`_ (TEAL), 2024.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

__all__ = ("MAX_ROW_SUM_BATCH", "active_blocks", "check_blocks",
           "default_block_rows", "default_blocks_per_step", "matmul")

#: Largest batch that uses the elementwise (VPU) body.
MAX_ROW_SUM_BATCH = 8
_MAX_COLS = 16384
# Bytes of W to aim for per grid step (see the module docstring).
_STEP_BYTES = 512 * 1024
# Largest float32 accumulator block (2 MB), which bounds the output tile
# width for large batches.
_ACC_ELEMS = 1 << 19


def default_block_rows(dtype):
  """One HBM tile of rows: 8 for 32-bit dtypes, 16 for 16-bit ones."""
  return 8 * max(1, 4 // jnp.dtype(dtype).itemsize)


def check_blocks(d, block_rows):
  """Raise `ValueError` unless `block_rows` obeys the (8, 128) rule."""
  if block_rows % 8 and block_rows < d:
    raise ValueError(f"pallas_tpu needs block_rows to be a multiple of 8 "
                     f"(the TPU (8, 128) tiling rule), got {block_rows}. Use "
                     f"interpret= to run other blocks in interpret mode.")


def _block_cols(n, batch):
  if n % 128:
    return n  # A block as wide as the array is always allowed.
  # As wide as possible, with the float32 accumulator [batch, cols] within
  # _ACC_ELEMS (VMEM) for large batches.
  widest = min(_MAX_COLS, max(128, _ACC_ELEMS // batch // 128 * 128))
  tiles = n // 128
  return 128 * max(t for t in range(1, tiles + 1)
                   if tiles % t == 0 and 128 * t <= widest)


def default_blocks_per_step(block_rows, n, dtype, batch=1):
  """Row blocks per grid step: enough for about 0.5 MB of `W`, at most 8."""
  step_bytes = block_rows * _block_cols(n, batch) * jnp.dtype(dtype).itemsize
  return max(1, min(8, -(-_STEP_BYTES // step_bytes)))


def active_blocks(x, block_rows, blocks_per_step=1):
  """Row blocks of `W` that `x` [b, d] activates, grouped into grid steps.

  Returns:
    `(ids, count)`: `count` is the number of active blocks; int32 `ids`
    has length `cdiv(d, block_rows)` rounded up to `blocks_per_step`,
    holds the active block ids in increasing order at positions
    `[0, count)`, and at the positions of the last step past `count` the id
    that the same operand read one step earlier (so that its block stays
    in VMEM: no new copy), or 0 in a first step.
  """
  d = x.shape[1]
  nb = pl.cdiv(d, block_rows)
  size = pl.cdiv(nb, blocks_per_step) * blocks_per_step
  active = jnp.any(x != 0, axis=0)
  active = jnp.pad(active, (0, nb * block_rows - d))
  active = jnp.any(active.reshape(nb, block_rows), axis=1)
  count = jnp.sum(active, dtype=jnp.int32)
  slot = jnp.where(active, jnp.cumsum(active, dtype=jnp.int32) - 1, size)
  ids = jnp.zeros(size, jnp.int32).at[slot].set(
      jnp.arange(nb, dtype=jnp.int32), mode="drop", unique_indices=True)
  if blocks_per_step > 1:
    pos = jnp.arange(size, dtype=jnp.int32)
    prev = jnp.maximum(pos - blocks_per_step, 0)
    ids = jnp.where(pos < count, ids, jnp.where(
        pos >= blocks_per_step, ids[prev], 0))
  return ids, count


def _kernel(ids_ref, count_ref, *refs, d, block_rows, blocks_per_step):
  xt_refs = refs[:blocks_per_step]
  w_refs = refs[blocks_per_step:2 * blocks_per_step]
  o_ref, acc_ref = refs[2 * blocks_per_step:]
  k = pl.program_id(1)
  batch = acc_ref.shape[0]

  @pl.when(k == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  for g in range(blocks_per_step):
    p = k * blocks_per_step + g

    @pl.when(p < count_ref[0])
    def _():
      w, xt = w_refs[g][...], xt_refs[g][...]
      if d % block_rows:
        row = (ids_ref[p] * block_rows
               + lax.broadcasted_iota(jnp.int32, w.shape, 0))
        w = jnp.where(row < d, w, jnp.zeros((), w.dtype))
      if batch <= MAX_ROW_SUM_BATCH or xt.dtype != w.dtype:
        # The VPU multiplies in float32 (v5e has no bf16 VPU arithmetic).
        w, xt = w.astype(jnp.float32), xt.astype(jnp.float32)
      if batch <= MAX_ROW_SUM_BATCH:
        for r in range(batch):
          acc_ref[r:r + 1, :] += jnp.sum(xt[:, r:r + 1] * w, axis=0,
                                         keepdims=True)
      else:
        acc_ref[...] += lax.dot_general(
            xt, w, (((0,), (0,)), ((), ())),
            preferred_element_type=jnp.float32)

  @pl.when(k == pl.num_programs(1) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def matmul(x, w, *, block_rows=None, blocks_per_step=None, out_dtype=None,
           interpret=None):
  """`x @ w` for `x` [b, d] from the active row blocks of `w` [d, n].

  Args:
    x: [b, d] activations.
    w: [d, n] weight (a different float dtype from `x` is multiplied in
      float32).
    block_rows: rows per block, a multiple of 8 (or at least `d`); `None`
      for :func:`default_block_rows` of `w`'s dtype.
    blocks_per_step: active row blocks read per grid step; `None` for
      :func:`default_blocks_per_step`.
    out_dtype: result dtype (default `x.dtype`).
    interpret: `True` or `pltpu.InterpretParams()` runs the kernel in
      interpret mode on any backend; the (8, 128) rule is then unchecked.

  Returns:
    [b, n] in `out_dtype`, accumulated in float32.
  """
  b, d = x.shape
  n = w.shape[1]
  out_dtype = out_dtype or x.dtype
  if block_rows is None:
    block_rows = default_block_rows(w.dtype)
  if not interpret:
    check_blocks(d, block_rows)
  block_rows = min(block_rows, d)
  nb = pl.cdiv(d, block_rows)
  if blocks_per_step is None:
    blocks_per_step = default_blocks_per_step(block_rows, n, w.dtype, b)
  blocks_per_step = min(blocks_per_step, nb)
  ids, count = active_blocks(x, block_rows, blocks_per_step)
  xt = jnp.pad(x.T, ((0, nb * block_rows - d), (0, 0)))
  bn = _block_cols(n, b)
  g_range = range(blocks_per_step)
  # The same x.T and W are passed once per block of a step, each operand
  # with an index map that picks its own active block.
  in_specs = [
      pl.BlockSpec((block_rows, b),
                   lambda j, k, ids, c, g=g: (ids[k * blocks_per_step + g], 0))
      for g in g_range] + [
      pl.BlockSpec((block_rows, bn),
                   lambda j, k, ids, c, g=g: (ids[k * blocks_per_step + g], j))
      for g in g_range]
  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=2,
      grid=(pl.cdiv(n, bn),
            jnp.maximum(pl.cdiv(count, blocks_per_step), 1)),
      in_specs=in_specs,
      out_specs=pl.BlockSpec((b, bn), lambda j, k, ids, c: (0, j)),
      scratch_shapes=[pltpu.VMEM((b, bn), jnp.float32)])
  return pl.pallas_call(
      functools.partial(_kernel, d=d, block_rows=block_rows,
                        blocks_per_step=blocks_per_step),
      grid_spec=grid_spec,
      out_shape=jax.ShapeDtypeStruct((b, n), out_dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary")),
      interpret=interpret or False,
      name="sparse_input_row_blocks",
  )(ids, jnp.reshape(count, (1,)), *([xt] * blocks_per_step),
    *([w] * blocks_per_step))
