# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""block_sparse_matmul, Pallas paths: interpret-mode numerics and lowering.

Numerics run under ``interpret=pltpu.InterpretParams()``, the TPU simulator,
which raises on out-of-bounds block indices and on output blocks revisited out
of order (plain ``interpret=True`` hides both). Lowering for real hardware is
checked with ``jax.export`` for ``tpu`` (Mosaic) and ``cuda`` (Triton).
"""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.experimental.pallas import tpu as pltpu
from jax.test_util import check_grads
import numpy as np
import pytest

from _block_sparse_cases import check_forward_and_grads
from _block_sparse_cases import make_case
from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul
from pallas_kernels.block_sparse.gpu import TRITON_CALL_TARGET

IMPLS = ("pallas_tpu", "pallas_gpu")
STRICT = pltpu.InterpretParams()


@pytest.fixture(autouse=True)
def _reset_simulator():
  yield
  pltpu.reset_tpu_interpret_mode_state()


# (m, kb, nb, bk, bn, density, empty_row, empty_col, extra_capacity)
FIXED = [
    (8, 3, 4, 8, 16, 0.5, True, True, 2),    # empty block row and column
    (5, 2, 3, 8, 8, 0.0, False, False, 1),   # no stored block at all
    (16, 2, 2, 16, 8, 1.0, False, False, 0),  # full, capacity exact
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", FIXED)
def test_interpret_strict_matches_dense(impl, case):
  m, kb, nb, bk, bn, density, empty_row, empty_col, extra = case
  c = make_case(7, m, kb, nb, bk, bn, density, empty_row=empty_row,
                empty_col=empty_col, extra_capacity=extra)
  check_forward_and_grads(c, jnp.float32, implementation=impl,
                          interpret=STRICT)


@pytest.mark.parametrize("impl", IMPLS)
def test_interpret_strict_bf16_and_row_tiles(impl):
  # Several row tiles plus row padding (TPU: 600 rows -> 5 tiles of 128,
  # GPU: 300 rows -> 3 tiles of 128).
  m = 600 if impl == "pallas_tpu" else 300
  c = make_case(11, m, 2, 2, 8, 16, 0.5, dtype=jnp.bfloat16,
                empty_col=True, extra_capacity=1)
  check_forward_and_grads(c, jnp.bfloat16, implementation=impl,
                          interpret=STRICT)


_RANDOM = dict(
    impl=st.sampled_from(IMPLS),
    m=st.integers(1, 20), kb=st.integers(1, 3), nb=st.integers(1, 3),
    bk=st.sampled_from([8, 16]), bn=st.sampled_from([8, 16]),
    density=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    empty_row=st.booleans(), empty_col=st.booleans(),
    seed=st.integers(0, 2**31 - 1))


def _check_random(impl, m, kb, nb, bk, bn, density, empty_row, empty_col,
                  seed):
  c = make_case(seed, m, kb, nb, bk, bn, density, empty_row=empty_row,
                empty_col=empty_col)
  check_forward_and_grads(c, jnp.float32, implementation=impl,
                          interpret=STRICT)


@hypothesis.settings(max_examples=4, deadline=None)
@hypothesis.given(**_RANDOM)
def test_interpret_strict_random(**kw):
  _check_random(**kw)


@pytest.mark.slow
@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(**_RANDOM)
def test_interpret_strict_random_sweep(**kw):
  _check_random(**kw)


def test_check_grads_pallas_tpu_interpret():
  c = make_case(2, 4, 2, 2, 8, 8, 0.5)
  wm = c["wm"]
  f = jax.jit(lambda x, d: block_sparse_matmul(
      x, wm.with_data(d), implementation="pallas_tpu", interpret=True))
  check_grads(f, (c["x"], wm.data), order=1, modes=("rev",))


def test_pallas_topology_change_does_not_recompile():
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.standard_normal((16, 32)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((4, 16)), jnp.float32)
  traces = []

  @jax.jit
  def f(x, w, mask):
    traces.append(1)
    wm = BlockSparseMatrix.from_dense(w, (8, 8), mask, capacity=5)
    return block_sparse_matmul(x, wm, implementation="pallas_tpu",
                               interpret=True)

  for mk in ([[1, 0, 0, 1], [0, 1, 0, 0]], [[0, 0, 1, 1], [1, 1, 1, 0]]):
    mk = np.array(mk, bool)
    np.testing.assert_allclose(
        f(x, w, jnp.asarray(mk)), x @ (w * np.kron(mk, np.ones((8, 8)))),
        rtol=1e-5, atol=1e-5)
  assert len(traces) == 1 and f._cache_size() == 1


def _export(impl, dtype, backward, m=256, platform="tpu"):
  mask = np.array([[True, False, True], [False, False, True]])
  wm = BlockSparseMatrix.from_block_mask(mask, (128, 128), capacity=4,
                                         dtype=dtype)
  w_spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), wm)
  x_spec = jax.ShapeDtypeStruct((m, 256), dtype)

  def fwd(x, w):
    return block_sparse_matmul(x, w, implementation=impl)

  def bwd(x, w):
    y, vjp = jax.vjp(lambda x, d: fwd(x, w.with_data(d)), x, w.data)
    return vjp(y)

  checks = ([jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL_TARGET)]
            if platform == "cuda" else [])
  exp = jax.export.export(jax.jit(bwd if backward else fwd),
                          platforms=[platform], disabled_checks=checks)(
                              x_spec, w_spec)
  return exp.mlir_module()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("backward", [False, True])
def test_export_for_tpu(dtype, backward):
  text = _export("pallas_tpu", dtype, backward, m=1024)
  # Forward: one kernel; with the backward also dx (transposed DDS) and
  # d(data) (SDD).
  assert text.count("tpu_custom_call") == (3 if backward else 1)
  assert "block_sparse_dds" in text
  assert ("block_sparse_sdd" in text) == backward


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("backward", [False, True])
def test_export_for_cuda(dtype, backward):
  text = _export("pallas_gpu", dtype, backward, platform="cuda")
  assert text.count(TRITON_CALL_TARGET) == (3 if backward else 1)


def test_tpu_tiling_rule_is_enforced_when_compiling():
  wm = BlockSparseMatrix.from_block_mask(np.ones((2, 2), bool), (64, 128))
  x_spec = jax.ShapeDtypeStruct((8, 128), jnp.float32)
  with pytest.raises(ValueError, match="multiples of 128"):
    jax.export.export(jax.jit(lambda x: block_sparse_matmul(
        x, wm, implementation="pallas_tpu")), platforms=["tpu"])(x_spec)
  wg = BlockSparseMatrix.from_block_mask(np.ones((2, 2), bool), (24, 32))
  with pytest.raises(ValueError, match="powers of two"):
    jax.export.export(jax.jit(lambda x: block_sparse_matmul(
        x, wg, implementation="pallas_gpu")), platforms=["cuda"])(
            jax.ShapeDtypeStruct((8, 48), jnp.float32))


def test_second_order_runs_on_the_kernels():
  # Reverse-over-reverse Hessian-vector product: the backward products are
  # custom VJPs of the same kernels, so this never differentiates a kernel.
  c = make_case(4, 6, 2, 2, 8, 8, 0.6)
  wm, x = c["wm"], c["x"]
  v = jnp.asarray(np.random.default_rng(0).standard_normal(wm.data.shape),
                  jnp.float32)

  def hvp(impl, interpret):
    def loss(xx, d):
      y = block_sparse_matmul(xx, wm.with_data(d), implementation=impl,
                              interpret=interpret)
      return jnp.sum(jnp.sin(y))
    g = lambda xx, d: jax.grad(loss, (0, 1))(xx, d)
    return jax.jit(jax.grad(
        lambda xx, d: jnp.vdot(g(xx, d)[1], v), (0, 1)))(x, wm.data)

  want = hvp("xla", None)
  got = hvp("pallas_tpu", STRICT)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # And against the dense reference through jax's own autodiff.
  def dense_loss(xx, w):
    return jnp.sum(jnp.sin(xx @ w))
  gd = lambda xx, w: jax.grad(dense_loss, 1)(xx, w)
  vd = wm.with_data(v).to_dense()
  hx = jax.grad(lambda xx: jnp.vdot(gd(xx, wm.to_dense()), vd))(x)
  np.testing.assert_allclose(want[0], hx, rtol=1e-4, atol=1e-5)


def test_strict_simulator_catches_out_of_bounds_block_ids():
  # The numerics tests above are meaningful because the simulator rejects a
  # bad block table (plain interpret=True would clamp it silently).
  c = make_case(1, 8, 2, 2, 8, 16, 1.0)
  wm = c["wm"]
  leaves, aux = wm.tree_flatten()
  bad_rows = leaves[1].at[0].set(wm.block_grid[0] + 3)
  bad = BlockSparseMatrix.tree_unflatten(aux, (leaves[0], bad_rows,
                                               *leaves[2:]))
  with pytest.raises(Exception, match="(?i)out[- ]of[- ]bounds"):
    jax.block_until_ready(block_sparse_matmul(
        c["x"], bad, implementation="pallas_tpu", interpret=STRICT))
