# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Shared oracle for the block-sparse tests: NumPy float64 references."""

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul


def make_case(seed, m, kb, nb, bk, bn, density, *, dtype=jnp.float32,
              empty_row=False, empty_col=False, extra_capacity=1):
  """A random block mask, matrix and inputs; optionally empty a row/column."""
  rng = np.random.default_rng(seed)
  mask = rng.random((kb, nb)) < density
  if empty_row:
    mask[rng.integers(kb), :] = False
  if empty_col:
    mask[:, rng.integers(nb)] = False
  k, n = kb * bk, nb * bn
  w = rng.standard_normal((k, n)).astype(np.float32)
  x = rng.standard_normal((m, k)).astype(np.float32)
  dy = rng.standard_normal((m, n)).astype(np.float32)
  cap = max(int(mask.sum()), 1) + extra_capacity
  wm = BlockSparseMatrix.from_dense(jnp.asarray(w, dtype), (bk, bn), mask,
                                    capacity=cap)
  # The oracle sees exactly the values the kernel sees (after the cast).
  w_eff = np.asarray(wm.to_dense(), np.float64)
  x_eff = np.asarray(jnp.asarray(x, dtype), np.float64)
  dy_eff = np.asarray(jnp.asarray(dy, dtype), np.float64)
  return dict(mask=mask, wm=wm, x=jnp.asarray(x, dtype),
              dy=jnp.asarray(dy, dtype), w64=w_eff, x64=x_eff, dy64=dy_eff)


def tolerance(dtype):
  return 1e-5 if jnp.dtype(dtype) == jnp.float32 else 1.6e-2


def assert_close(got, want, scale, rtol):
  """``|got - want| <= rtol * scale`` elementwise, ``scale`` = sum of |terms|.

  ``scale`` (e.g. ``|x| @ |W|``) bounds the rounding error of any summation
  order, so entries that cancel to ~0 are judged fairly.
  """
  got = np.asarray(jnp.asarray(got, jnp.float32), np.float64)
  np.testing.assert_array_less(np.abs(got - want), rtol * scale + 1e-30)


def blocks_of(dense, wm):
  """Stored-block view of a dense ``[K, N]`` array, zero in padding slots."""
  bk, bn = wm.block_shape
  rows, cols = np.asarray(wm.row_ids), np.asarray(wm.col_ids)
  nnz = int(wm.nnz)
  out = np.zeros((wm.capacity, bk, bn), np.float64)
  for z in range(nnz):
    r, c = rows[z], cols[z]
    out[z] = dense[r * bk:(r + 1) * bk, c * bn:(c + 1) * bn]
  return out


def check_forward_and_grads(case, dtype, **kw):
  """Forward, dx and d(data) against the float64 dense reference."""
  wm, x, dy = case["wm"], case["x"], case["dy"]
  x64, w64, dy64 = case["x64"], case["w64"], case["dy64"]
  rtol = tolerance(dtype)

  @jax.jit  # One compilation per case instead of one per primitive.
  def run(x, wm, dy):
    y, vjp = jax.vjp(
        lambda x, d: block_sparse_matmul(x, wm.with_data(d), **kw), x, wm.data)
    return (y, *vjp(dy))

  y, dx, dd = run(x, wm, dy)
  assert y.dtype == dtype and y.shape == (x.shape[0], wm.shape[1])
  assert_close(y, x64 @ w64, np.abs(x64) @ np.abs(w64), rtol)
  assert dx.dtype == dtype and dd.dtype == dtype
  assert_close(dx, dy64 @ w64.T, np.abs(dy64) @ np.abs(w64).T, rtol)
  want = blocks_of(x64.T @ dy64, wm)
  scale = blocks_of(np.abs(x64).T @ np.abs(dy64), wm)
  assert_close(dd, want, scale, rtol)
  np.testing.assert_array_equal(np.asarray(dd, np.float32)[int(wm.nnz):], 0)
