# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul in plain XLA: touch only the active rows of `W`.

`y = x @ W` needs row `j` of `W` only where column `j` of `x` has a nonzero.
The active rows (nonzero in any row of the batch) are listed once with
`jnp.nonzero`, and a loop with a *dynamic* trip count walks them in blocks of
`block_rows`: gather the block's rows of `W` and columns of `x`, multiply,
accumulate. Gathering block by block keeps each gathered piece small (it
stays in cache) and bounds the work by the number of active rows, without a
static capacity that could overflow. On CPU one big gather of all active rows
was 5-15x slower than this at 50 % density.
"""

import jax.numpy as jnp
from jax import lax

__all__ = ("active_rows", "forward", "weight_grad")


def _acc_dtype(a, b):
  # Accumulate in at least float32; the blocks are upcast before the dot
  # because XLA:CPU has no bf16 x bf16 -> f32 dot.
  return jnp.promote_types(jnp.result_type(a, b), jnp.float32)


def _gather_rows(w, idx):
  # The indices are sorted and in bounds by construction (nonzero + fill 0).
  dims = lax.GatherDimensionNumbers(
      offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
  return lax.gather(w, idx[:, None], dims, slice_sizes=(1, w.shape[1]),
                    indices_are_sorted=True,
                    mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def active_rows(x, block_rows):
  """Indices of the columns of `x` [b, d] that are nonzero in any row.

  Returns:
    `(idx, count)`: `idx` int32 of length `d` rounded up to a multiple of
    `block_rows`, the active indices first in increasing order and then
    zeros; `count` the number of active indices.
  """
  d = x.shape[1]
  active = jnp.any(x != 0, axis=0)
  size = d + (-d) % block_rows
  # jnp.nonzero(size=...) by hand: the j-th active column goes to slot j,
  # inactive ones are dropped (a third cheaper than jnp.nonzero on CPU).
  slot = jnp.where(active, jnp.cumsum(active, dtype=jnp.int32) - 1, size)
  idx = jnp.zeros(size, jnp.int32).at[slot].set(
      jnp.arange(d, dtype=jnp.int32), mode="drop", unique_indices=True)
  return idx, jnp.sum(active, dtype=jnp.int32)


def _block(x, idx, count, i, block_rows):
  start = i * block_rows
  ii = lax.dynamic_slice(idx, (start,), (block_rows,))
  valid = start + jnp.arange(block_rows) < count
  xg = jnp.where(valid, jnp.take(x, ii, axis=1), jnp.zeros((), x.dtype))
  return ii, xg


def forward(x, w, idx, count, *, block_rows, out_dtype):
  """`x @ w` for `x` [b, d] from the rows `idx[:count]` of `w` [d, n]."""
  n_blocks = (count + block_rows - 1) // block_rows

  acc_dtype = _acc_dtype(x, w)

  def body(i, acc):
    ii, xg = _block(x, idx, count, i, block_rows)
    return acc + jnp.dot(xg.astype(acc_dtype),
                         _gather_rows(w, ii).astype(acc_dtype))

  acc = jnp.zeros((x.shape[0], w.shape[1]), acc_dtype)
  return lax.fori_loop(0, n_blocks, body, acc).astype(out_dtype)


def weight_grad(x, g, idx, count, *, block_rows, d, out_dtype):
  """`x.T @ g` [d, n], computed only at the rows `idx[:count]`."""
  n_blocks = (count + block_rows - 1) // block_rows

  acc_dtype = _acc_dtype(x, g)

  def body(i, dw):
    ii, xg = _block(x, idx, count, i, block_rows)
    rows = jnp.dot(xg.T.astype(acc_dtype), g.astype(acc_dtype))
    # Padding slots carry zero columns of x and index 0: they add 0.
    return dw.at[ii].add(rows, indices_are_sorted=True)

  dw = jnp.zeros((d, g.shape[1]), acc_dtype)
  return lax.fori_loop(0, n_blocks, body, dw).astype(out_dtype)
