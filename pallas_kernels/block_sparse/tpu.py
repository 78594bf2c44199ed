# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Mosaic TPU Pallas kernels for the block-sparse products.

All three kernels drive their ``BlockSpec`` index maps from scalar-prefetched
int32 tables (``pltpu.PrefetchScalarGridSpec``), the block-sparse pattern of
the Pallas TPU tutorial (research/kernels.md, section 1.1):

- ``matmul`` / ``matmul_t`` (``x @ W`` and ``dy @ W.T``): grid
  ``(M // bm, V)`` over row tiles and a *visit schedule* of static length
  ``V = capacity + number of output block columns``. Each output block column
  gets ``max(count, 1)`` consecutive visits (so it is revisited only on
  consecutive steps and an empty column is still zeroed), then padding visits
  repeat the last one (no new copy, no compute). The float32 VMEM accumulator
  is zeroed on a column's first visit and stored on its last.
- ``sdd`` (the gradient of the blocks): grid ``(capacity, M // bm)`` with the
  row reduction innermost; padding slots pin their copies to the previous
  block and store zeros.

Block shapes must obey the TPU (8, 128) tiling rule: ``bk`` and ``bn`` are
multiples of 128 (or equal to the full ``K`` / ``N``). In interpret mode the
rule is not checked, so small blocks can test the indexing on CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

__all__ = ("matmul", "matmul_t", "sdd")

_FIRST, _COMPUTE, _LAST = 1, 2, 4
_MAX_ROW_TILE = 512


def _check_tiling(shape, block_shape, interpret):
  if interpret:
    return
  (k, n), (bk, bn) = shape, block_shape
  for name, b, full in (("bk", bk, k), ("bn", bn, n)):
    if b % 128 and b != full:
      raise ValueError(
          f"pallas_tpu needs block_shape entries that are multiples of 128 "
          f"(or the full dimension): {name}={b} in block_shape="
          f"{tuple(block_shape)} for a matrix of shape {tuple(shape)}. Use "
          f"interpret= to run other blocks in interpret mode, or "
          f"implementation='xla'.")


def _row_tiling(m):
  """(padded rows, row tile): one tile up to 512 rows, else 512/256/128 rows.

  Bigger row tiles re-read each stored block fewer times (the arithmetic
  intensity of a visit is ``bm * bn / (bm + bn)``).
  """
  if m <= _MAX_ROW_TILE:
    return m, m
  mp = -(-m // 128) * 128
  bm = next(t for t in (512, 256, 128) if mp % t == 0)
  return mp, bm


def _pad_rows(a, mp):
  return a if a.shape[0] == mp else jnp.pad(a, ((0, mp - a.shape[0]), (0, 0)))


def _visit_schedule(offsets, order, in_ids, capacity):
  """Per-visit tables for a DDS over output block columns.

  Args:
    offsets: ``[G + 1]`` slot ranges of each output block column, in the
      iteration order ``order``.
    order: ``[capacity]`` slot index at each iteration position.
    in_ids: ``[capacity]`` input block column of each slot.
    capacity: static number of slots.

  Returns:
    ``(out_blk, in_blk, slot, flags)``, each ``int32[capacity + G]``.
  """
  g = offsets.shape[0] - 1
  num = capacity + g
  counts = offsets[1:] - offsets[:-1]
  visits = jnp.maximum(counts, 1)
  ends = jnp.cumsum(visits)
  total = ends[-1]
  v = jnp.arange(num, dtype=jnp.int32)
  real = v < total
  ve = jnp.minimum(v, total - 1)
  col = jnp.searchsorted(ends, ve, side="right").astype(jnp.int32)
  t = ve - (ends[col] - visits[col])
  has = t < counts[col]
  pos = jnp.clip(offsets[col] + jnp.minimum(t, jnp.maximum(counts[col] - 1, 0)),
                 0, capacity - 1)
  slot = order[pos]
  first = real & (t == 0)
  last = (t == visits[col] - 1) | ~real
  flags = (jnp.where(first, _FIRST, 0) | jnp.where(real & has, _COMPUTE, 0)
           | jnp.where(last, _LAST, 0)).astype(jnp.int32)
  return col, in_ids[slot].astype(jnp.int32), slot.astype(jnp.int32), flags


def _dds_kernel(out_ref, in_ref, slot_ref, flag_ref, a_ref, w_ref, o_ref,
                acc_ref, *, transpose_w):
  del out_ref, in_ref, slot_ref
  f = flag_ref[pl.program_id(1)]

  @pl.when(f & _FIRST != 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(f & _COMPUTE != 0)
  def _():
    dims = (((1,), (1,)), ((), ())) if transpose_w else (((1,), (0,)), ((), ()))
    acc_ref[...] += lax.dot_general(a_ref[...], w_ref[...], dims,
                                    preferred_element_type=jnp.float32)

  @pl.when(f & _LAST != 0)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _dds(a, data, tables, *, in_block, out_block, num_out, transpose_w,
         out_dtype, interpret):
  """``out[:, j] = sum over visits of a[:, in_blk] @ op(data[slot])``."""
  m = a.shape[0]
  mp, bm = _row_tiling(m)
  a = _pad_rows(a, mp)
  cap, bk, bn = data.shape
  out_blk, in_blk, slot, flags = tables
  grid = (mp // bm, out_blk.shape[0])
  spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=4,
      grid=grid,
      in_specs=[
          pl.BlockSpec((bm, in_block), lambda i, v, o, n, s, f: (i, n[v])),
          pl.BlockSpec((None, bk, bn), lambda i, v, o, n, s, f: (s[v], 0, 0)),
      ],
      out_specs=pl.BlockSpec((bm, out_block),
                             lambda i, v, o, n, s, f: (i, o[v])),
      scratch_shapes=[pltpu.VMEM((bm, out_block), jnp.float32)],
  )
  itemsize = jnp.dtype(a.dtype).itemsize
  visits = cap * grid[0]
  cost = pl.CostEstimate(
      flops=2 * visits * bm * bk * bn,
      transcendentals=0,
      bytes_accessed=itemsize * (visits * (bm * in_block + bk * bn)
                                 + mp * num_out * out_block))
  out = pl.pallas_call(
      functools.partial(_dds_kernel, transpose_w=transpose_w),
      grid_spec=spec,
      out_shape=jax.ShapeDtypeStruct((mp, num_out * out_block), out_dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary")),
      cost_estimate=cost,
      interpret=interpret or False,
      name="block_sparse_dds",
  )(out_blk, in_blk, slot, flags, a, data)
  return out[:m]


def matmul(x, w, *, out_dtype=None, interpret=None):
  """``x @ w.to_dense()`` with a Mosaic TPU kernel (see module docstring)."""
  _check_tiling(w.shape, w.block_shape, interpret)
  out_dtype = out_dtype or jnp.result_type(x.dtype, w.dtype)
  bk, bn = w.block_shape
  _, nb = w.block_grid
  order = jnp.arange(w.capacity, dtype=jnp.int32)
  tables = _visit_schedule(w.col_offsets, order, w.row_ids, w.capacity)
  return _dds(x, w.data.astype(x.dtype), tables, in_block=bk, out_block=bn,
              num_out=nb, transpose_w=False, out_dtype=out_dtype,
              interpret=interpret)


def matmul_t(dy, w, *, out_dtype=None, interpret=None):
  """``dy @ w.to_dense().T`` over the block-CSR order ``t_perm``."""
  _check_tiling(w.shape, w.block_shape, interpret)
  out_dtype = out_dtype or jnp.result_type(dy.dtype, w.dtype)
  bk, bn = w.block_shape
  kb, _ = w.block_grid
  tables = _visit_schedule(w.row_offsets, w.t_perm, w.col_ids, w.capacity)
  return _dds(dy, w.data.astype(dy.dtype), tables, in_block=bn, out_block=bk,
              num_out=kb, transpose_w=True, out_dtype=out_dtype,
              interpret=interpret)


def _sdd_kernel(rows_ref, cols_ref, nnz_ref, x_ref, dy_ref, o_ref, acc_ref):
  del rows_ref, cols_ref
  z, i = pl.program_id(0), pl.program_id(1)

  @pl.when(i == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(z < nnz_ref[0])
  def _():
    acc_ref[...] += lax.dot_general(
        x_ref[...], dy_ref[...], (((0,), (0,)), ((), ())),
        preferred_element_type=jnp.float32)

  @pl.when(i == pl.num_programs(1) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def sdd(x, dy, w, *, out_dtype=None, interpret=None):
  """``x.T @ dy`` at the stored blocks of ``w`` (zero in padding slots)."""
  _check_tiling(w.shape, w.block_shape, interpret)
  out_dtype = out_dtype or w.dtype
  bk, bn = w.block_shape
  m = x.shape[0]
  mp, bm = _row_tiling(m)
  # Zero rows added by padding contribute nothing to x.T @ dy.
  x, dy = _pad_rows(x, mp), _pad_rows(dy, mp)
  tiles = mp // bm
  nnz = jnp.reshape(w.nnz, (1,)).astype(jnp.int32)

  def row_tile(z, i, nnz):
    # Padding slots stay on the last tile: their steps copy nothing new.
    return jnp.where(z < nnz[0], i, tiles - 1)

  spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=3,
      grid=(w.capacity, tiles),
      in_specs=[
          pl.BlockSpec((bm, bk),
                       lambda z, i, r, c, n: (row_tile(z, i, n), r[z])),
          pl.BlockSpec((bm, bn),
                       lambda z, i, r, c, n: (row_tile(z, i, n), c[z])),
      ],
      out_specs=pl.BlockSpec((None, bk, bn), lambda z, i, r, c, n: (z, 0, 0)),
      scratch_shapes=[pltpu.VMEM((bk, bn), jnp.float32)],
  )
  itemsize = jnp.dtype(x.dtype).itemsize
  cost = pl.CostEstimate(
      flops=2 * w.capacity * mp * bk * bn, transcendentals=0,
      bytes_accessed=itemsize * w.capacity * (mp * (bk + bn) + bk * bn))
  return pl.pallas_call(
      _sdd_kernel,
      grid_spec=spec,
      out_shape=jax.ShapeDtypeStruct((w.capacity, bk, bn), out_dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary")),
      cost_estimate=cost,
      interpret=interpret or False,
      name="block_sparse_sdd",
  )(w.row_ids, w.col_ids, nnz, x, dy)
