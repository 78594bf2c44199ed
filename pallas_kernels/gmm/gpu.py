# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul (gmm) and its weight gradient (tgmm) as Pallas GPU kernels.

Backend: **Pallas Triton** (``pltriton.CompilerParams``), for the reasons
:mod:`pallas_kernels.block_sparse.gpu` gives. In jax 0.10.2 the other Pallas
GPU backend, Mosaic GPU, has no scalar prefetch and its ``jnp.dot`` on blocks
read at data-dependent offsets does not lower: a Mosaic GPU grouped matmul is
a hand-written TMA pipeline (JAX's ``ragged_dot_mgpu.py``), Hopper-only and
not runnable on CPU. The Triton kernels read the group offsets from global
memory inside the kernel, slice the operands with ``pl.ds`` at those offsets,
multiply with ``pltriton.dot``, run on CPU under ``interpret=True`` and, with
Mosaic TPU compiler params swapped in, under the TPU simulator
(``interpret=pltpu.InterpretParams()``), which checks every slice against its
array. JAX main deprecates the Triton backend (0.11.0 notes); the Mosaic GPU
port is the way forward once it is removed.

The rows of ``lhs`` are sorted by group: group ``g`` owns the rows
``[offsets[g], offsets[g + 1])``. No group is padded to a capacity:

- ``gmm``: grid ``(n tiles, m tiles)``. Each program owns one aligned output
  tile of ``tm`` rows and loops over the groups whose rows meet it (their
  range is computed in XLA from the offsets), adding ``x_tile @ rhs[g]`` at
  the rows of ``g`` only. Programs never share an output tile, so there is
  no race; a tile that straddles ``j`` group boundaries costs ``j`` extra
  tile products (at most ``G - 1`` per column of tiles, as in megablox),
  empty groups cost nothing, and rows past ``sum(group_sizes)`` are zeros.
- ``tgmm``: grid ``(G, k tiles, n tiles)``. Each program reduces over its
  group's rows in steps of ``tm`` rows starting at the group's own offset
  (unaligned), so the work is ``cdiv(size_g, tm)`` steps and an empty group
  stores zeros. The last step of a group is shifted back to end inside the
  array and masked, so nothing is padded when ``m >= tm``.

Tiles are powers of two of at least 16 (Triton's ``dot``). Dimensions that are
not multiples of their tile are zero-padded in XLA (a copy; none at aligned
shapes). ``jax.export`` refuses the Triton custom call by default: pass
``disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
TRITON_CALL_TARGET)]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

__all__ = ("gmm", "tgmm", "DEFAULT_TILING", "TRITON_CALL_TARGET")

#: Default ``(tm, tk, tn)``: 128x128 output tiles and 64-deep k steps, a
#: common Triton GEMM configuration on A100 / H100.
DEFAULT_TILING = (128, 64, 128)

#: The custom-call target of Triton kernels in the lowered module.
TRITON_CALL_TARGET = "__gpu$xla.gpu.triton"


def _tile(dim, preferred):
  """The tile for ``dim``: ``preferred``, or the smallest power of two >= 16
  covering ``dim`` when ``dim`` is smaller."""
  if dim >= preferred:
    return preferred
  return max(16, 1 << max(dim - 1, 0).bit_length())


def _pad(a, axis, size):
  if a.shape[axis] == size:
    return a
  widths = [(0, 0)] * a.ndim
  widths[axis] = (0, size - a.shape[axis])
  return jnp.pad(a, widths)


def _params(interpret):
  # The TPU simulator accepts Mosaic TPU params only; it then runs the same
  # kernel body and checks every slice against its array.
  if isinstance(interpret, pltpu.InterpretParams):
    return pltpu.CompilerParams()
  return pltriton.CompilerParams(num_warps=4, num_stages=2)


def _offsets(group_sizes, m):
  ends = jnp.clip(jnp.cumsum(group_sizes.astype(jnp.int32)), 0, m)
  return jnp.concatenate([jnp.zeros((1,), jnp.int32), ends]).astype(jnp.int32)


def tile_groups(offsets, *, tiles_m, tm):
  """``(first, end)``: tile ``i`` meets the groups ``first[i] <= g < end[i]``.

  The range may include empty groups (they cost no product). A tile past the
  last group gets an empty range.

  Args:
    offsets: ``[G + 1]`` int32 row offsets (non-decreasing).
    tiles_m: number of row tiles.
    tm: rows per tile.

  Returns:
    Two ``[tiles_m]`` int32 arrays.
  """
  ends = offsets[1:]
  lo = jnp.arange(tiles_m, dtype=jnp.int32) * tm
  first = jnp.searchsorted(ends, lo, side="right")
  end = jnp.searchsorted(ends, lo + tm - 1, side="right") + 1
  end = jnp.minimum(end, ends.shape[0])
  return first.astype(jnp.int32), jnp.maximum(end, first).astype(jnp.int32)


def _gmm_kernel(offsets_ref, first_ref, end_ref, lhs_ref, rhs_ref, out_ref, *,
                tm, tk, tn, tiles_k, transpose_rhs):
  j, i = pl.program_id(0), pl.program_id(1)
  row = i * tm + lax.broadcasted_iota(jnp.int32, (tm, tn), 0)

  def group_body(g, acc):
    lo, hi = offsets_ref[g], offsets_ref[g + 1]

    def k_body(kt, part):
      x = lhs_ref[pl.ds(i * tm, tm), pl.ds(kt * tk, tk)]
      if transpose_rhs:
        w = rhs_ref[g, pl.ds(j * tn, tn), pl.ds(kt * tk, tk)]
      else:
        w = rhs_ref[g, pl.ds(kt * tk, tk), pl.ds(j * tn, tn)]
      return part + pltriton.dot(x, w, trans_b=transpose_rhs)

    trips = jnp.where(hi > lo, tiles_k, 0)
    part = lax.fori_loop(0, trips, k_body, jnp.zeros((tm, tn), jnp.float32))
    return jnp.where((row >= lo) & (row < hi), part, acc)

  acc = lax.fori_loop(first_ref[i], end_ref[i], group_body,
                      jnp.zeros((tm, tn), jnp.float32))
  out_ref[...] = acc.astype(out_ref.dtype)


def gmm(lhs, rhs, group_sizes, *, preferred_element_type=None,
        tiling=DEFAULT_TILING, transpose_rhs=False, interpret=None):
  """Grouped matmul on the GPU: ``out[rows of g] = lhs[rows of g] @ rhs[g]``.

  Shapes are not checked here (see :func:`pallas_kernels.gmm`).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    rhs: ``[G, k, n]``, or ``[G, n, k]`` with ``transpose_rhs=True``; the
      same dtype as ``lhs``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the input dtype.
    tiling: ``(tm, tk, tn)``, powers of two of at least 16.
    transpose_rhs: contract with the last axis of ``rhs``.
    interpret: ``None``, ``True`` (HLO interpreter) or
      ``pltpu.InterpretParams()`` (TPU simulator with slice checks).

  Returns:
    ``[m, n]``; rows past ``sum(group_sizes)`` are zero.
  """
  m, k = lhs.shape
  n = rhs.shape[1] if transpose_rhs else rhs.shape[2]
  out_dtype = jnp.dtype(preferred_element_type or lhs.dtype)
  tm, tk, tn = (_tile(d, t) for d, t in zip((m, k, n), tiling))
  mp, kp, np_ = (pl.cdiv(d, t) * t for d, t in ((m, tm), (k, tk), (n, tn)))
  lhs = _pad(_pad(lhs, 0, mp), 1, kp)
  rhs = _pad(_pad(rhs, 2 if transpose_rhs else 1, kp),
             1 if transpose_rhs else 2, np_)
  offsets = _offsets(group_sizes, m)
  first, end = tile_groups(offsets, tiles_m=mp // tm, tm=tm)
  kernel = functools.partial(_gmm_kernel, tm=tm, tk=tk, tn=tn,
                             tiles_k=kp // tk, transpose_rhs=transpose_rhs)
  out = pl.pallas_call(
      kernel,
      grid=(np_ // tn, mp // tm),
      in_specs=[pl.BlockSpec()] * 5,
      out_specs=pl.BlockSpec((tm, tn), lambda j, i: (i, j)),
      out_shape=jax.ShapeDtypeStruct((mp, np_), out_dtype),
      compiler_params=_params(interpret),
      interpret=interpret or False,
      name="sparsejax_gmm_gpu",
  )(offsets, first, end, lhs, rhs)
  return out[:m, :n]


def _tgmm_kernel(offsets_ref, lhs_ref, grad_ref, out_ref, *, tm, tk, tn,
                 last_start):
  g, kt, j = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  lo, hi = offsets_ref[g], offsets_ref[g + 1]

  def body(c, acc):
    start = lo + c * tm
    # The last step of a group may reach past the array: shift it back and
    # mask the rows a previous step already took.
    load = jnp.minimum(start, last_start)
    row = load + lax.broadcasted_iota(jnp.int32, (tm, 1), 0)
    mine = (row >= start) & (row < hi)
    x = lhs_ref[pl.ds(load, tm), pl.ds(kt * tk, tk)]
    dy = grad_ref[pl.ds(load, tm), pl.ds(j * tn, tn)]
    # Both operands masked: rows of other groups may hold inf or NaN.
    x = jnp.where(mine, x, jnp.zeros_like(x))
    dy = jnp.where(mine, dy, jnp.zeros_like(dy))
    return acc + pltriton.dot(x, dy, trans_a=True)

  trips = (hi - lo + tm - 1) // tm
  acc = lax.fori_loop(0, trips, body, jnp.zeros((tk, tn), jnp.float32))
  out_ref[...] = acc.astype(out_ref.dtype)


def tgmm(lhs, grad, group_sizes, *, preferred_element_type=None,
         tiling=DEFAULT_TILING, interpret=None):
  """Grouped transposed matmul: ``out[g] = lhs[rows of g].T @ grad[rows of g]``.

  Shapes are not checked here (see :func:`pallas_kernels.tgmm`).

  Args:
    lhs: ``[m, k]`` rows sorted by group.
    grad: ``[m, n]``, the same dtype as ``lhs``.
    group_sizes: ``[G]`` int32.
    preferred_element_type: output dtype; default: the input dtype.
    tiling: ``(tm, tk, tn)``, powers of two of at least 16.
    interpret: see :func:`gmm`.

  Returns:
    ``[G, k, n]``; an empty group gives zeros.
  """
  m, k = lhs.shape
  n = grad.shape[1]
  num_groups = group_sizes.shape[0]
  out_dtype = jnp.dtype(preferred_element_type or lhs.dtype)
  tm, tk, tn = (_tile(d, t) for d, t in zip((m, k, n), tiling))
  mp = max(m, tm)  # rows are padded only when there are fewer than tm
  kp, np_ = pl.cdiv(k, tk) * tk, pl.cdiv(n, tn) * tn
  lhs = _pad(_pad(lhs, 0, mp), 1, kp)
  grad = _pad(_pad(grad, 0, mp), 1, np_)
  kernel = functools.partial(_tgmm_kernel, tm=tm, tk=tk, tn=tn,
                             last_start=mp - tm)
  out = pl.pallas_call(
      kernel,
      grid=(num_groups, kp // tk, np_ // tn),
      in_specs=[pl.BlockSpec()] * 3,
      out_specs=pl.BlockSpec((None, tk, tn), lambda g, kt, j: (g, kt, j)),
      out_shape=jax.ShapeDtypeStruct((num_groups, kp, np_), out_dtype),
      compiler_params=_params(interpret),
      interpret=interpret or False,
      name="sparsejax_tgmm_gpu",
  )(_offsets(group_sizes, m), lhs, grad)
  return out[:, :k, :n]
