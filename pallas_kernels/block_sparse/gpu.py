# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pallas GPU kernels for the block-sparse products, lowered through Triton.

Backend choice (jax 0.10.2). A plain ``pl.pallas_call`` on GPU lowers to
Mosaic GPU by default; Triton is used when ``compiler_params`` is a
``pltriton.CompilerParams``. Both lower for ``cuda`` from a CPU host. These
kernels use **Triton**, because a block-sparse product needs data-dependent
block addressing, and in 0.10.2:

- Mosaic GPU has no scalar prefetch (``NotImplementedError: Scalar prefetch
  not supported in Mosaic GPU lowering``), and its matmul is a warpgroup
  ``wgmma`` on shared-memory operands: a ``jnp.dot`` on blocks read with
  dynamic slices fails to lower (``Unimplemented primitive ... dot_general for
  lowering semantics Lane``), so a Mosaic GPU kernel needs a hand-written TMA
  pipeline (``plgpu.emit_pipeline`` with index maps over scalars read from
  global memory, as ``ragged_dot_mgpu.py`` does);
- Triton reads the int32 block tables from global memory inside the kernel,
  slices the operands with ``pl.ds`` at those offsets and multiplies with
  ``pltriton.dot``; and its kernels run on CPU under ``interpret=True``, so
  their numerics are tested here (Mosaic GPU's interpreter is private and
  runs a single block). With Mosaic TPU compiler params swapped in, the same
  kernel bodies also run in the TPU simulator
  (``interpret=pltpu.InterpretParams()``), which checks every dynamic slice
  against its array.

``jax.export`` refuses the Triton custom call by default because it carries no
compatibility guarantee: pass ``disabled_checks=[
jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL_TARGET)]``.
JAX main deprecates the Triton backend (0.11.0 notes); a Mosaic GPU port
following ``ragged_dot_mgpu.py`` is the way forward once it is removed.

Kernels (no scalar prefetch; the loops read offsets and ids directly):

- ``matmul`` / ``matmul_t``: grid ``(output block columns, M // bm)``; each
  program loops over its column's stored blocks (``col_offsets``, or
  ``row_offsets`` with ``t_perm`` for the transpose), so empty columns store
  zeros and the work is ``nnz`` blocks, not the capacity.
- ``sdd``: grid ``(capacity,)``; each program reduces over row tiles (none for
  padding slots, which store zeros).

Blocks must be powers of two of at least 16 (Triton's ``dot``); interpret mode
does not check this.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

__all__ = ("matmul", "matmul_t", "sdd", "TRITON_CALL_TARGET")

#: The custom-call target of Triton kernels in the lowered module.
TRITON_CALL_TARGET = "__gpu$xla.gpu.triton"

_ROW_TILE = 128


def _pow2(n: int) -> bool:
  return n > 0 and n & (n - 1) == 0


def _check_blocks(block_shape, interpret):
  if interpret:
    return
  for name, b in zip(("bk", "bn"), block_shape):
    if not _pow2(b) or b < 16:
      raise ValueError(
          f"pallas_gpu needs block_shape entries that are powers of two >= 16 "
          f"(Triton dot): {name}={b} in block_shape={tuple(block_shape)}. Use "
          f"implementation='xla' for other blocks.")


def _row_tiling(m):
  bm = _ROW_TILE if m >= _ROW_TILE else max(16, 1 << max(m - 1, 0).bit_length())
  return -(-m // bm) * bm, bm


def _pad_rows(a, mp):
  return a if a.shape[0] == mp else jnp.pad(a, ((0, mp - a.shape[0]), (0, 0)))


def _params(interpret):
  # The TPU simulator (InterpretParams) accepts Mosaic TPU params only; it then
  # runs the same kernel body and checks every slice against its array.
  if isinstance(interpret, pltpu.InterpretParams):
    return pltpu.CompilerParams()
  return pltriton.CompilerParams(num_warps=4, num_stages=2)


def _dds_kernel(off_ref, order_ref, ids_ref, a_ref, w_ref, o_ref, *, bm,
                in_block, transpose_w):
  # Output block columns vary fastest, so the programs that run side by side
  # share one x row tile, which then comes from L2.
  g, i = pl.program_id(0), pl.program_id(1)

  def body(p, acc):
    z = order_ref[p]
    a = a_ref[pl.ds(i * bm, bm), pl.ds(ids_ref[z] * in_block, in_block)]
    return acc + pltriton.dot(a, w_ref[z], trans_b=transpose_w)

  acc = lax.fori_loop(off_ref[g], off_ref[g + 1], body,
                      jnp.zeros(o_ref.shape, jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _dds(a, data, offsets, order, in_ids, *, in_block, out_block,
         transpose_w, out_dtype, interpret):
  m = a.shape[0]
  mp, bm = _row_tiling(m)
  a = _pad_rows(a, mp)
  num_out = offsets.shape[0] - 1
  out = pl.pallas_call(
      functools.partial(_dds_kernel, bm=bm, in_block=in_block,
                        transpose_w=transpose_w),
      grid=(num_out, mp // bm),
      in_specs=[pl.BlockSpec()] * 5,
      out_specs=pl.BlockSpec((bm, out_block), lambda g, i: (i, g)),
      out_shape=jax.ShapeDtypeStruct((mp, num_out * out_block), out_dtype),
      compiler_params=_params(interpret),
      interpret=interpret or False,
      name="block_sparse_dds",
  )(offsets, order, in_ids, a, data)
  return out[:m]


def matmul(x, w, *, out_dtype=None, interpret=None):
  """``x @ w.to_dense()`` with a Triton kernel (see module docstring)."""
  _check_blocks(w.block_shape, interpret)
  out_dtype = out_dtype or jnp.result_type(x.dtype, w.dtype)
  bk, bn = w.block_shape
  order = jnp.arange(w.capacity, dtype=jnp.int32)
  return _dds(x, w.data.astype(x.dtype), w.col_offsets, order, w.row_ids,
              in_block=bk, out_block=bn, transpose_w=False,
              out_dtype=out_dtype, interpret=interpret)


def matmul_t(dy, w, *, out_dtype=None, interpret=None):
  """``dy @ w.to_dense().T`` over the block-CSR order ``t_perm``."""
  _check_blocks(w.block_shape, interpret)
  out_dtype = out_dtype or jnp.result_type(dy.dtype, w.dtype)
  bk, bn = w.block_shape
  return _dds(dy, w.data.astype(dy.dtype), w.row_offsets, w.t_perm, w.col_ids,
              in_block=bn, out_block=bk, transpose_w=True,
              out_dtype=out_dtype, interpret=interpret)


def _sdd_kernel(rows_ref, cols_ref, nnz_ref, x_ref, dy_ref, o_ref, *, bm, bk,
                bn, tiles):
  z = pl.program_id(0)
  r, c = rows_ref[z], cols_ref[z]

  def body(t, acc):
    xb = x_ref[pl.ds(t * bm, bm), pl.ds(r * bk, bk)]
    db = dy_ref[pl.ds(t * bm, bm), pl.ds(c * bn, bn)]
    return acc + pltriton.dot(xb, db, trans_a=True)

  n = jnp.where(z < nnz_ref[0], tiles, 0)
  acc = lax.fori_loop(0, n, body, jnp.zeros((bk, bn), jnp.float32))
  o_ref[...] = acc.astype(o_ref.dtype)


def sdd(x, dy, w, *, out_dtype=None, interpret=None):
  """``x.T @ dy`` at the stored blocks of ``w`` (zero in padding slots)."""
  _check_blocks(w.block_shape, interpret)
  out_dtype = out_dtype or w.dtype
  bk, bn = w.block_shape
  m = x.shape[0]
  mp, bm = _row_tiling(m)
  x, dy = _pad_rows(x, mp), _pad_rows(dy, mp)
  nnz = jnp.reshape(w.nnz, (1,)).astype(jnp.int32)
  return pl.pallas_call(
      functools.partial(_sdd_kernel, bm=bm, bk=bk, bn=bn, tiles=mp // bm),
      grid=(w.capacity,),
      in_specs=[pl.BlockSpec()] * 5,
      out_specs=pl.BlockSpec((None, bk, bn), lambda z: (z, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((w.capacity, bk, bn), out_dtype),
      compiler_params=_params(interpret),
      interpret=interpret or False,
      name="block_sparse_sdd",
  )(w.row_ids, w.col_ids, nnz, x, dy)
