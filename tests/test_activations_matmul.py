# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of the sparse-input matmul against a NumPy `x @ W`."""

import hypothesis
from hypothesis import strategies as st
import jax
from jax.test_util import check_grads
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import sparse_input_matmul


def _sparse_x(rng, shape, density, shared):
  x = rng.normal(size=shape).astype(np.float32)
  mask_shape = (1,) * (len(shape) - 1) + shape[-1:] if shared else shape
  return x * (rng.uniform(size=mask_shape) < density)


@hypothesis.settings(max_examples=6, deadline=None)
@hypothesis.given(
    b=st.integers(1, 5), d=st.integers(1, 40), n=st.integers(1, 9),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    block_rows=st.sampled_from([1, 3, 8, 128]),
    shared=st.booleans(), seed=st.integers(0, 1000))
def test_matches_numpy(b, d, n, density, block_rows, shared, seed):
  rng = np.random.default_rng(seed)
  x = _sparse_x(rng, (b, d), density, shared)
  w = rng.normal(size=(d, n)).astype(np.float32)
  y = sparse_input_matmul(x, w, block_rows=block_rows)
  expected = x.astype(np.float64) @ w.astype(np.float64)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b", [1, 4, 5, 16])
def test_default_block_rows_both_loop_bodies(b):
  # b <= 4 takes the fused row-sum loop, b > 4 the gather-and-dot loop; d is
  # not a multiple of either default step (8 and 128 rows). A shared pattern
  # keeps the union of active columns near 10 % (the loops); the dense x
  # takes the dense branch.
  rng = np.random.default_rng(b)
  d, n = 300, 7
  x = _sparse_x(rng, (b, d), 0.1, True)
  w = rng.normal(size=(d, n)).astype(np.float32)
  f = jax.jit(sparse_input_matmul)
  expected = x.astype(np.float64) @ w.astype(np.float64)
  np.testing.assert_allclose(f(x, w), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(f(np.zeros_like(x), w), np.zeros((b, n)))
  dense_x = rng.normal(size=(b, d)).astype(np.float32)
  np.testing.assert_allclose(
      f(dense_x, w), dense_x.astype(np.float64) @ w.astype(np.float64),
      rtol=1e-4, atol=1e-4)
  g = rng.normal(size=(b, n)).astype(np.float32)
  dx, dw = jax.vjp(sparse_input_matmul, x, w)[1](g)
  np.testing.assert_allclose(dx, g @ w.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, x.T @ g, rtol=1e-5, atol=1e-5)


def test_leading_axes_jit_vmap_and_dtypes():
  rng = np.random.default_rng(0)
  x = _sparse_x(rng, (2, 3, 64), 0.1, False)
  w = rng.normal(size=(64, 5)).astype(np.float32)
  f = jax.jit(lambda a, b: sparse_input_matmul(a, b, block_rows=16))
  np.testing.assert_allclose(f(x, w), x @ w, rtol=1e-5, atol=1e-5)
  # vmap over a batch of weights (a per-example loop trip count).
  ws = rng.normal(size=(4, 64, 5)).astype(np.float32)
  xs = _sparse_x(rng, (4, 2, 64), 0.2, False)
  got = jax.vmap(lambda a, b: sparse_input_matmul(a, b, block_rows=8))(xs, ws)
  np.testing.assert_allclose(got, np.einsum("bik,bkn->bin", xs, ws),
                             rtol=1e-5, atol=1e-5)
  yb = sparse_input_matmul(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
  assert yb.dtype == jnp.bfloat16
  ref = (x.astype(jnp.bfloat16).astype(np.float32)
         @ w.astype(jnp.bfloat16).astype(np.float32))
  np.testing.assert_allclose(yb.astype(np.float32), ref, rtol=2e-2, atol=2e-2)
  # All columns active: the dense branch, same dtype rules.
  xd = rng.normal(size=(3, 64)).astype(jnp.bfloat16)
  yd = jax.jit(sparse_input_matmul)(xd, w.astype(jnp.bfloat16))
  assert yd.dtype == jnp.bfloat16
  ref = xd.astype(np.float32) @ w.astype(jnp.bfloat16).astype(np.float32)
  np.testing.assert_allclose(yd.astype(np.float32), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("b", [1, 3, 16])
def test_bfloat16_reads_bfloat16_rows(b):
  # Both loop bodies widen each bfloat16 row exactly (the products and sums
  # are float32), so the result is the float32 product of the bfloat16
  # values rounded once to bfloat16. And no float32 copy of w is compiled:
  # XLA:CPU's bfloat16 normalisation used to convert all of w before the
  # loop (hoisted), so the "sparse" call read twice the bytes of w.
  rng = np.random.default_rng(b)
  d, n = 96, 256
  x = jnp.asarray(_sparse_x(rng, (b, d), 0.3, True), jnp.bfloat16)
  w = jnp.asarray(rng.normal(size=(d, n)), jnp.bfloat16)
  f = jax.jit(lambda a, c: sparse_input_matmul(a, c, block_rows=8))
  expected = (np.asarray(x, np.float64) @ np.asarray(w, np.float64))
  np.testing.assert_allclose(np.asarray(f(x, w), np.float64), expected,
                             rtol=1e-2, atol=1e-2)
  hlo = f.lower(x, w).compile().as_text()
  assert f"f32[{d},{n}]" not in hlo
  assert not any(f"f32[{d},{p},{n // p}]" in hlo for p in (1, 2, 4, 8))


def test_gradients_match_dense_formulas():
  rng = np.random.default_rng(1)
  x = _sparse_x(rng, (3, 20), 0.3, False)
  w = rng.normal(size=(20, 6)).astype(np.float32)
  g = rng.normal(size=(3, 6)).astype(np.float32)
  _, vjp = jax.vjp(lambda a, b: sparse_input_matmul(a, b, block_rows=4), x, w)
  dx, dw = vjp(g)
  np.testing.assert_allclose(dx, g @ w.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, x.T @ g, rtol=1e-5, atol=1e-5)
  inactive = ~np.any(x != 0, axis=0)
  assert inactive.any()
  np.testing.assert_array_equal(np.asarray(dw)[inactive], 0)
  # Numerical check of the VJP (at a point; x's zero pattern is kept fixed
  # because the op is linear in x).
  check_grads(lambda a, b: sparse_input_matmul(a, b, block_rows=4),
              (x, w), order=1, modes=("rev",), eps=1e-2, atol=1e-2,
              rtol=1e-2)


def test_rejects_bad_arguments():
  x, w = jnp.ones((2, 4)), jnp.ones((4, 3))
  with pytest.raises(ValueError, match="implementation"):
    sparse_input_matmul(x, w, implementation="cuda")
  with pytest.raises(ValueError, match="block_rows"):
    sparse_input_matmul(x, w, block_rows=0)
  with pytest.raises(ValueError, match="block_rows"):
    sparse_input_matmul(x, w, block_rows=True)
  with pytest.raises(ValueError, match="x must"):
    sparse_input_matmul(jnp.ones((2, 5)), w)
  with pytest.raises(ValueError, match="w must"):
    sparse_input_matmul(x, jnp.ones((4,)))
  with pytest.raises(ValueError, match="x must be floating"):
    sparse_input_matmul(jnp.ones((2, 4), jnp.int32), w)
