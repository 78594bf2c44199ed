# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pallas GPU (Triton) kernel: split-K GEMV over the active rows of `W`.

The TEAL kernel in Pallas. The active input channels (columns of `x` that
are nonzero in some row of the batch) are listed first, in XLA, by
`reference.active_rows`: int32 indices, active ones first, and their count.
The kernel's grid is `(output column tiles, K splits, batch tiles)` (one
batch tile up to `MAX_BATCH_TILE` rows). Program `(j, s, .)` takes the `s`-th share of the active list (a multiple of `block_rows`
entries), and per step loads `block_rows` indices, gathers those columns of
`x` and those rows of `W` restricted to its `block_cols` output columns, and
adds their product into a float32 accumulator. Rows of `W` whose channel is
inactive are never read. Steps past the active count do not run; the last,
partial step of a share zeroes the `x` entries beyond its end (their indices
are valid rows, so the loads stay in bounds).

Batch: up to `MAX_ROW_SUM_BATCH` rows, each row's product is an elementwise
multiply and a column sum (the GEMV of TEAL; Triton's `dot` needs at least
16 rows); larger batches are padded to a power of two of at least 16 rows
and use `pltriton.dot` (tensor cores; float32 operands without TF32), in
tiles of at most `MAX_BATCH_TILE` rows along a third grid axis (each tile
reads the active rows of `W` again: the kernel is meant for decoding).

**Combining the K splits: a second reduction, not atomics.** Each program
writes its partial sums to its own slot of a float32 `[splits, b, n]`
buffer, and XLA sums over the splits. This is deterministic (atomic float
adds are not: the sum order varies from run to run), needs no zero-filled
output aliased into the call, and runs in the HLO interpreter, so the
kernel's numerics are tested on CPU. Its cost is writing and reading
`splits * b * n * 4` bytes, under 1 % of the weight bytes at batch 1 for
the default splits (0.4 % for a bf16 4096x11008 `W`, 4 splits; 0.9 % for
4096x4096, 9 splits), plus one small reduction kernel launch (a few
microseconds; `pltriton.atomic_add` into a zeroed output would save that
launch but not the zeroing).

Backend (jax 0.10.2): Triton, chosen with `pltriton.CompilerParams`, as in
`pallas_kernels/block_sparse/gpu.py`. The gather of rows at a vector of
indices (`w_ref[idx, pl.ds(...)]`) lowers to one Triton pointer load; Mosaic
GPU, the default GPU lowering, has no such gather and no scalar prefetch.
`jax.export` refuses the Triton custom call unless its safety check is
disabled (`TRITON_CALL_TARGET`). On CPU the kernel runs under
`interpret=True` only: the TPU simulator (`pltpu.InterpretParams`) rejects
vector-indexed loads ("Advanced indexers are not supported on TPU"), and
the HLO interpreter clamps out-of-bounds indices silently, so the indices
are in bounds by construction (see `matmul`) and the tests check the
listing separately.

`block_rows` and `block_cols` must be powers of two (Triton block shapes),
`block_rows >= 16` when the batch exceeds `MAX_ROW_SUM_BATCH` (Triton dot).

References:
  Liu et al, `Training-Free Activation Sparsity in Large Language Models
  <https://arxiv.org/abs/2408.14690>`_ (TEAL), 2024: its split-K sparse
  GEMV kernel.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

__all__ = ("BLOCK_COLS", "BLOCK_ROWS", "MAX_BATCH_TILE", "MAX_ROW_SUM_BATCH",
           "TRITON_CALL_TARGET", "check_blocks", "default_splits", "matmul",
           "split_range")

#: The custom-call target of Triton kernels in the lowered module.
TRITON_CALL_TARGET = "__gpu$xla.gpu.triton"
#: Default active indices per loop step and output columns per program.
BLOCK_ROWS = 32
BLOCK_COLS = 128
#: Largest batch that uses the elementwise GEMV body.
MAX_ROW_SUM_BATCH = 4
#: Rows of the batch per program of the dot body.
MAX_BATCH_TILE = 64
# Programs to aim for: two per SM of an H100 (132 SMs).
_TARGET_PROGRAMS = 264
_MAX_SPLITS = 16


def _pow2(n):
  return n > 0 and n & (n - 1) == 0


def check_blocks(batch, block_rows, block_cols):
  """Raise `ValueError` unless the blocks make valid Triton shapes."""
  for name, b in (("block_rows", block_rows), ("block_cols", block_cols)):
    if not _pow2(b):
      raise ValueError(f"pallas_gpu needs {name} to be a power of two "
                       f"(Triton block shapes), got {b}.")
  if batch > MAX_ROW_SUM_BATCH and block_rows < 16:
    raise ValueError(f"pallas_gpu needs block_rows >= 16 for a batch of "
                     f"more than {MAX_ROW_SUM_BATCH} rows (Triton dot), got "
                     f"block_rows={block_rows} for batch {batch}.")


def default_splits(d, n, block_rows, block_cols):
  """K splits so that the grid has about two programs per H100 SM."""
  tiles = pl.cdiv(n, block_cols)
  return max(1, min(pl.cdiv(_TARGET_PROGRAMS, tiles),
                    pl.cdiv(d, block_rows), _MAX_SPLITS))


def split_range(count, s, splits, block_rows):
  """Active-list positions `[lo, hi)` of split `s` and its loop steps.

  Each split's share is a multiple of `block_rows`, so every step loads
  `block_rows` entries starting at a multiple of `block_rows` below
  `count`: no load reaches past `count` rounded up to `block_rows`, which
  is within the list (`reference.active_rows` rounds its length up).
  Works on Python ints and traced int32 scalars alike.
  """
  per_split = (count + splits - 1) // splits
  share = (per_split + block_rows - 1) // block_rows * block_rows
  lo = s * share
  hi = jnp.minimum(lo + share, count)
  steps = (jnp.maximum(hi - lo, 0) + block_rows - 1) // block_rows
  return lo, hi, steps


def _kernel(idx_ref, count_ref, x_ref, w_ref, o_ref, *, splits, block_rows,
            block_cols, n, batch, use_dot):
  j, s, i = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  lo, hi, steps = split_range(count_ref[0], s, splits, block_rows)
  cols = pl.ds(j * block_cols, block_cols)
  if n % block_cols:
    # The last column tile is partial: clamp its column indices (the extra
    # columns repeat column n - 1 and are sliced off by the caller).
    cols = jnp.minimum(
        j * block_cols + lax.broadcasted_iota(jnp.int32, (block_cols,), 0),
        n - 1)[None, :]

  def load(t):
    p = lo + t * block_rows
    ii = idx_ref[pl.ds(p, block_rows)]
    live = p + lax.broadcasted_iota(jnp.int32, (block_rows,), 0) < hi
    if isinstance(cols, pl.Slice):
      wb = w_ref[ii, cols]
    else:
      wb = w_ref[ii[:, None], cols]
    return ii, live, wb

  if use_dot:
    def body(t, acc):
      ii, live, wb = load(t)
      # Full index arrays: Triton cannot broadcast a slice against `ii`.
      r = (i * acc.shape[0]
           + lax.broadcasted_iota(jnp.int32, (acc.shape[0], 1), 0))
      xb = jnp.where(live[None, :], x_ref[r, ii[None, :]], 0)
      if xb.dtype != wb.dtype:  # Mixed precision: multiply in float32.
        xb, wb = xb.astype(jnp.float32), wb.astype(jnp.float32)
      return acc + pltriton.dot(xb, wb, allow_tf32=False)

    acc = lax.fori_loop(0, steps, body,
                        jnp.zeros(o_ref.shape[1:], jnp.float32))
    o_ref[0] = acc
  else:
    def body(t, accs):
      ii, live, wb = load(t)
      wb = wb.astype(jnp.float32)
      out = []
      for r, acc in enumerate(accs):
        xr = jnp.where(live, x_ref[r, ii], 0).astype(jnp.float32)
        out.append(acc + jnp.sum(xr[:, None] * wb, axis=0))
      return tuple(out)

    accs = lax.fori_loop(
        0, steps, body,
        tuple(jnp.zeros((block_cols,), jnp.float32) for _ in range(batch)))
    # Rows of the block past the batch (padding to a power of two) are
    # sliced off by the caller and left unwritten.
    for r, acc in enumerate(accs):
      o_ref[0, r, :] = acc


def matmul(x, w, idx, count, *, block_rows=BLOCK_ROWS,
           block_cols=BLOCK_COLS, splits=None, out_dtype=None,
           interpret=None):
  """`x @ w` for `x` [b, d] from the rows `idx[:count]` of `w` [d, n].

  Args:
    x: [b, d] activations.
    w: [d, n] weight (a different float dtype from `x` is multiplied in
      float32).
    idx: int32 active-row list from `reference.active_rows(x, block_rows)`:
      length `d` rounded up to a multiple of `block_rows`, entries past
      `count` in bounds (they are loaded and multiplied by zero).
    count: int32 scalar, the number of active rows.
    block_rows: active rows per loop step (power of two).
    block_cols: output columns per program (power of two).
    splits: K splits (programs per column tile); `None` for
      :func:`default_splits`.
    out_dtype: result dtype (default `x.dtype`).
    interpret: `True` runs the HLO interpreter on any backend.

  Returns:
    [b, n] in `out_dtype`, accumulated in float32.
  """
  b, d = x.shape
  n = w.shape[1]
  out_dtype = out_dtype or x.dtype
  if idx.shape[0] < pl.cdiv(d, block_rows) * block_rows:
    raise ValueError(f"idx must have at least d={d} rounded up to "
                     f"block_rows={block_rows} entries, got {idx.shape[0]}.")
  use_dot = b > MAX_ROW_SUM_BATCH
  if not interpret:
    check_blocks(b, block_rows, block_cols)
  if splits is None:
    splits = default_splits(d, n, block_rows, block_cols)
  # Triton block shapes are powers of two; the dot needs 16 rows; larger
  # batches are cut into tiles of MAX_BATCH_TILE rows (a third grid axis).
  rows = 1 << (b - 1).bit_length()
  if use_dot:
    rows = max(16, rows)
  bm = min(rows, MAX_BATCH_TILE)
  rows = pl.cdiv(rows, bm) * bm
  if rows != b:
    x = jnp.pad(x, ((0, rows - b), (0, 0)))
  tiles = pl.cdiv(n, block_cols)
  partial = pl.pallas_call(
      functools.partial(_kernel, splits=splits, block_rows=block_rows,
                        block_cols=block_cols, n=n, batch=b,
                        use_dot=use_dot),
      grid=(tiles, splits, rows // bm),
      in_specs=[pl.BlockSpec()] * 4,
      out_specs=pl.BlockSpec((1, bm, block_cols),
                             lambda j, s, i: (s, i, j)),
      out_shape=jax.ShapeDtypeStruct((splits, rows, tiles * block_cols),
                                     jnp.float32),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=2),
      interpret=interpret or False,
      name="sparse_input_gemv",
  )(idx, jnp.reshape(count, (1,)).astype(jnp.int32), x, w)
  return jnp.sum(partial, axis=0)[:b, :n].astype(out_dtype)
