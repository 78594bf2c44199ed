# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul (gmm) and its weight gradient (tgmm) as Mosaic TPU kernels.

The rows of ``lhs`` are sorted by group: group ``g`` owns the rows
``[offsets[g], offsets[g + 1])`` where ``offsets`` is the exclusive cumulative
sum of ``group_sizes``. Both kernels walk a list of *visits*, each a pair
(group, row tile of ``tm`` rows) with the group's rows meeting the tile. The
list is ordered by group and, within a group, by tile. Because groups occupy
consecutive rows, tile ids in that order never decrease either, so

* in ``gmm`` the output tile ``(tile, n)`` is revisited only on consecutive
  grid steps (the TPU pipeline keeps it in VMEM and writes it back once), and
* in ``tgmm`` the output block ``(group, k, n)`` is revisited only on
  consecutive grid steps as well.

A row tile that straddles a group boundary is visited once per group; each
visit writes only its own rows, selected with a row mask. Every group gets at
least one visit (an empty group gets a visit with an empty row range, which
zeroes its ``tgmm`` output), and ``gmm`` adds one visit to every tile past the
last group so that rows beyond ``sum(group_sizes)`` come out as zeros, as with
``jax.lax.ragged_dot``. The number of visits is at most ``tiles_m + G``, which
is the static grid size; the unused tail of the grid repeats the last real
visit (so it fetches nothing new) and is skipped with ``pl.when``.

The visit list (group ids, tile ids, offsets and the real count) is computed in
XLA and handed to the kernels as scalar-prefetch operands in SMEM.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

__all__ = ("gmm", "tgmm", "make_group_metadata", "GroupMetadata",
           "DEFAULT_TILING")

#: Default ``(tm, tk, tn)`` tile sizes. Dimensions smaller than a tile use a
#: tile equal to the whole dimension, which the TPU block-shape rule allows.
DEFAULT_TILING = (128, 128, 128)


class GroupMetadata(NamedTuple):
  """Visit list driving the grouped-matmul kernels (all int32).

  Attributes:
    offsets: ``[G + 1]`` row offsets; group ``g`` owns rows
      ``[offsets[g], offsets[g + 1])``, clamped to ``[0, m]``.
    group_ids: ``[tiles_m + G]`` the group of each visit.
    tile_ids: ``[tiles_m + G]`` the row tile of each visit.
    num_visits: ``[1]`` how many leading entries are real visits.
  """
  offsets: jax.Array
  group_ids: jax.Array
  tile_ids: jax.Array
  num_visits: jax.Array


def make_group_metadata(group_sizes, *, m, tm, visit_trailing_rows):
  """Builds the visit list for ``m`` rows in tiles of ``tm``.

  Args:
    group_sizes: ``[G]`` integer group sizes.
    m: number of rows of the ragged operand.
    tm: row tile size.
    visit_trailing_rows: also visit every tile that lies wholly past the last
      group (``gmm`` needs it to write zeros there; ``tgmm`` does not).

  Returns:
    A :class:`GroupMetadata`.
  """
  num_groups = group_sizes.shape[0]
  tiles_m = pl.cdiv(m, tm)
  size = tiles_m + num_groups
  ends = jnp.clip(jnp.cumsum(group_sizes.astype(jnp.int32)), 0, m)
  starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
  offsets = jnp.concatenate([starts, ends[-1:]])
  nonempty = ends > starts
  first_tile = jnp.minimum(starts // tm, tiles_m - 1)
  last_tile = jnp.where(nonempty, (ends - 1) // tm, first_tile)
  counts = last_tile - first_tile + 1
  # Tiles wholly past the last group: [cdiv(total, tm), tiles_m).
  tail_first = pl.cdiv(ends[-1], tm)
  tail_count = (tiles_m - tail_first) if visit_trailing_rows else 0
  counts = jnp.concatenate([counts, jnp.reshape(tail_count, (1,))])
  cum = jnp.cumsum(counts)
  num_visits = cum[-1]
  # Visits past the real count repeat the last real one.
  visit = jnp.minimum(jnp.arange(size, dtype=jnp.int32), num_visits - 1)
  owner = jnp.searchsorted(cum, visit, side="right")
  local = visit - (cum[owner] - counts[owner])
  # Tail visits (owner == G) borrow the last group: its rows end before them.
  group_ids = jnp.minimum(owner, num_groups - 1)
  first = jnp.concatenate([first_tile, jnp.reshape(tail_first, (1,))])
  tile_ids = first[owner] + local
  return GroupMetadata(
      offsets=offsets.astype(jnp.int32),
      group_ids=group_ids.astype(jnp.int32),
      tile_ids=tile_ids.astype(jnp.int32),
      num_visits=jnp.reshape(num_visits, (1,)).astype(jnp.int32))


def _pick_tile(dim, preferred):
  # A block equal to the whole dimension always satisfies the (8, 128) rule.
  return dim if dim <= preferred else preferred


def _gmm_kernel(offsets, group_ids, tile_ids, num_visits, lhs_ref, rhs_ref,
                out_ref, acc_ref, *, k, tk, tm, transpose_rhs):
  v = pl.program_id(1)
  kt = pl.program_id(2)
  last_kt = pl.num_programs(2) - 1
  is_real = v < num_visits[0]
  group = group_ids[v]
  tile = tile_ids[v]
  lo = offsets[group]
  hi = offsets[group + 1]

  @pl.when(kt == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(is_real & (hi > lo))
  def _():
    x = lhs_ref[...]
    w = rhs_ref[0]
    if k % tk:
      # The last k block reaches past k; its padding is not zero.
      col = kt * tk + jax.lax.broadcasted_iota(jnp.int32, x.shape, 1)
      x = jnp.where(col < k, x, jnp.zeros_like(x))
      w_axis = 1 if transpose_rhs else 0
      row = kt * tk + jax.lax.broadcasted_iota(jnp.int32, w.shape, w_axis)
      w = jnp.where(row < k, w, jnp.zeros_like(w))
    contract = (((1,), (1,)) if transpose_rhs else ((1,), (0,)), ((), ()))
    acc_ref[...] += jax.lax.dot_general(
        x, w, contract, preferred_element_type=jnp.float32)

  @pl.when(is_real & (kt == last_kt))
  def _():
    row = tile * tm + jax.lax.broadcasted_iota(jnp.int32, acc_ref.shape, 0)
    mine = (row >= lo) & (row < hi)
    prev_tile = tile_ids[jnp.maximum(v - 1, 0)]
    first_visit = (v == 0) | (prev_tile != tile)
    # where() selects, so stale or NaN contents of a fresh block never leak.
    kept = jnp.where(first_visit, jnp.zeros(out_ref.shape, out_ref.dtype),
                     out_ref[...])
    out_ref[...] = jnp.where(mine, acc_ref[...].astype(out_ref.dtype), kept)


def gmm(lhs, rhs, group_sizes, *, preferred_element_type=None,
        tiling=DEFAULT_TILING, transpose_rhs=False, interpret=False):
  """Grouped matmul on the TPU: ``out[rows of g] = lhs[rows of g] @ rhs[g]``.

  Shapes are not checked here (see :func:`pallas_kernels.gmm`).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    rhs: ``[G, k, n]``, or ``[G, n, k]`` with ``transpose_rhs=True``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the promoted input dtype.
    tiling: ``(tm, tk, tn)``; ``tm`` a multiple of 8, ``tk`` and ``tn``
      multiples of 128.
    transpose_rhs: contract with the last axis of ``rhs``.
    interpret: passed to ``pl.pallas_call``.

  Returns:
    ``[m, n]``; rows past ``sum(group_sizes)`` are zero.
  """
  m, k = lhs.shape
  num_groups = rhs.shape[0]
  n = rhs.shape[1] if transpose_rhs else rhs.shape[2]
  out_dtype = jnp.dtype(preferred_element_type or
                        jnp.result_type(lhs.dtype, rhs.dtype))
  tm, tk, tn = (_pick_tile(d, t) for d, t in zip((m, k, n), tiling))
  tiles_m, tiles_k, tiles_n = pl.cdiv(m, tm), pl.cdiv(k, tk), pl.cdiv(n, tn)
  meta = make_group_metadata(group_sizes, m=m, tm=tm,
                             visit_trailing_rows=True)
  grid = (tiles_n, tiles_m + num_groups, tiles_k)

  def lhs_map(j, v, kt, offsets, group_ids, tile_ids, num_visits):
    del j, offsets, group_ids, num_visits
    return tile_ids[v], kt

  if transpose_rhs:
    rhs_block = (1, tn, tk)

    def rhs_map(j, v, kt, offsets, group_ids, tile_ids, num_visits):
      del offsets, tile_ids, num_visits
      return group_ids[v], j, kt
  else:
    rhs_block = (1, tk, tn)

    def rhs_map(j, v, kt, offsets, group_ids, tile_ids, num_visits):
      del offsets, tile_ids, num_visits
      return group_ids[v], kt, j

  def out_map(j, v, kt, offsets, group_ids, tile_ids, num_visits):
    del kt, offsets, group_ids, num_visits
    return tile_ids[v], j

  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=4,
      grid=grid,
      in_specs=[pl.BlockSpec((tm, tk), lhs_map),
                pl.BlockSpec(rhs_block, rhs_map)],
      out_specs=pl.BlockSpec((tm, tn), out_map),
      scratch_shapes=[pltpu.VMEM((tm, tn), jnp.float32)])
  kernel = functools.partial(_gmm_kernel, k=k, tk=tk, tm=tm,
                             transpose_rhs=transpose_rhs)
  cost = pl.CostEstimate(
      flops=2 * m * k * n, transcendentals=0,
      bytes_accessed=(lhs.size * lhs.dtype.itemsize * tiles_n +
                      rhs.size * rhs.dtype.itemsize +
                      m * n * out_dtype.itemsize))
  call = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((m, n), out_dtype),
      grid_spec=grid_spec,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "arbitrary", "arbitrary")),
      cost_estimate=cost,
      interpret=interpret,
      name="sparsejax_gmm")
  return call(*meta, lhs, rhs)


def _tgmm_kernel(offsets, group_ids, tile_ids, num_visits, lhs_ref, grad_ref,
                 out_ref, acc_ref, *, tm):
  v = pl.program_id(2)
  count = num_visits[0]
  is_real = v < count
  group = group_ids[v]
  tile = tile_ids[v]
  lo = offsets[group]
  hi = offsets[group + 1]
  first_visit = (v == 0) | (group_ids[jnp.maximum(v - 1, 0)] != group)
  last_visit = (v == count - 1) | (
      group_ids[jnp.minimum(v + 1, pl.num_programs(2) - 1)] != group)

  @pl.when(is_real & first_visit)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  @pl.when(is_real & (hi > lo))
  def _():
    x = lhs_ref[...]
    dy = grad_ref[...]
    # Both operands are masked: rows outside the group, including the padding
    # of a partial last tile, may hold anything (NaN under the simulator), and
    # 0 * NaN is NaN.
    row_x = tile * tm + jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)
    row_dy = tile * tm + jax.lax.broadcasted_iota(jnp.int32, dy.shape, 0)
    x = jnp.where((row_x >= lo) & (row_x < hi), x, jnp.zeros_like(x))
    dy = jnp.where((row_dy >= lo) & (row_dy < hi), dy, jnp.zeros_like(dy))
    acc_ref[...] += jax.lax.dot_general(
        x, dy, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

  @pl.when(is_real & last_visit)
  def _():
    out_ref[0] = acc_ref[...].astype(out_ref.dtype)


def tgmm(lhs, grad, group_sizes, *, preferred_element_type=None,
         tiling=DEFAULT_TILING, interpret=False):
  """Grouped transposed matmul: ``out[g] = lhs[rows of g].T @ grad[rows of g]``.

  Shapes are not checked here (see :func:`pallas_kernels.tgmm`).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    grad: ``[m, n]``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the promoted input dtype.
    tiling: ``(tm, tk, tn)``; ``tm`` a multiple of 8, ``tk`` and ``tn``
      multiples of 128.
    interpret: passed to ``pl.pallas_call``.

  Returns:
    ``[G, k, n]``; an empty group gives zeros.
  """
  m, k = lhs.shape
  n = grad.shape[1]
  num_groups = group_sizes.shape[0]
  out_dtype = jnp.dtype(preferred_element_type or
                        jnp.result_type(lhs.dtype, grad.dtype))
  tm, tk, tn = (_pick_tile(d, t) for d, t in zip((m, k, n), tiling))
  tiles_m, tiles_k, tiles_n = pl.cdiv(m, tm), pl.cdiv(k, tk), pl.cdiv(n, tn)
  meta = make_group_metadata(group_sizes, m=m, tm=tm,
                             visit_trailing_rows=False)
  grid = (tiles_k, tiles_n, tiles_m + num_groups)

  def lhs_map(kt, j, v, offsets, group_ids, tile_ids, num_visits):
    del j, offsets, group_ids, num_visits
    return tile_ids[v], kt

  def grad_map(kt, j, v, offsets, group_ids, tile_ids, num_visits):
    del kt, offsets, group_ids, num_visits
    return tile_ids[v], j

  def out_map(kt, j, v, offsets, group_ids, tile_ids, num_visits):
    del offsets, tile_ids, num_visits
    return group_ids[v], kt, j

  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=4,
      grid=grid,
      in_specs=[pl.BlockSpec((tm, tk), lhs_map),
                pl.BlockSpec((tm, tn), grad_map)],
      out_specs=pl.BlockSpec((1, tk, tn), out_map),
      scratch_shapes=[pltpu.VMEM((tk, tn), jnp.float32)])
  cost = pl.CostEstimate(
      flops=2 * m * k * n, transcendentals=0,
      bytes_accessed=(lhs.size * lhs.dtype.itemsize * tiles_n +
                      grad.size * grad.dtype.itemsize * tiles_k +
                      num_groups * k * n * out_dtype.itemsize))
  call = pl.pallas_call(
      functools.partial(_tgmm_kernel, tm=tm),
      out_shape=jax.ShapeDtypeStruct((num_groups, k, n), out_dtype),
      grid_spec=grid_spec,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary")),
      cost_estimate=cost,
      interpret=interpret,
      name="sparsejax_tgmm")
  return call(*meta, lhs, grad)
