# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""block_sparse_matmul, XLA path: numerics, gradients, dispatch, jit stability.

The Pallas paths are tested in test_block_sparse_pallas.py.
"""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from _block_sparse_cases import assert_close
from _block_sparse_cases import check_forward_and_grads
from _block_sparse_cases import make_case
from _block_sparse_cases import tolerance
from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul
from pallas_kernels import _dispatch
from pallas_kernels.block_sparse import reference


_XLA_CASES = dict(
    m=st.integers(1, 24), kb=st.integers(1, 4), nb=st.integers(1, 4),
    bk=st.sampled_from([1, 2, 4, 8]), bn=st.sampled_from([1, 3, 8]),
    density=st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.8, 1.0]),
    empty_row=st.booleans(), empty_col=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
    seed=st.integers(0, 2**31 - 1))


def _check_xla(m, kb, nb, bk, bn, density, empty_row, empty_col, dtype,
               seed):
  case = make_case(seed, m, kb, nb, bk, bn, density, dtype=dtype,
                   empty_row=empty_row, empty_col=empty_col)
  check_forward_and_grads(case, dtype, implementation="xla")


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(**_XLA_CASES)
def test_xla_matches_dense_reference(**kw):
  _check_xla(**kw)


@pytest.mark.slow
@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(**_XLA_CASES)
def test_xla_matches_dense_reference_sweep(**kw):
  _check_xla(**kw)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(**_XLA_CASES, max_piece=st.sampled_from([1, 2, 4]))
def test_xla_forward_piece_sizes_match_dense_reference(max_piece, **kw):
  # Forces the piece size (1: the per-block loop) that the default derives
  # from the block shape.
  case = make_case(kw["seed"], kw["m"], kw["kb"], kw["nb"], kw["bk"], kw["bn"],
                   kw["density"], dtype=kw["dtype"], empty_row=kw["empty_row"],
                   empty_col=kw["empty_col"])
  y = jax.jit(lambda x, w: reference.matmul(x, w, _max_piece=max_piece))(
      case["x"], case["wm"])
  assert y.dtype == kw["dtype"]
  x64, w64 = case["x64"], case["w64"]
  assert_close(y, x64 @ w64, np.abs(x64) @ np.abs(w64), tolerance(kw["dtype"]))


@pytest.mark.parametrize("grid", [(2, 7), (7, 2)])  # by block rows, columns
@pytest.mark.parametrize("max_piece", [1, 2, 4])
def test_xla_block_gradient_groupings_match_numpy(grid, max_piece):
  # A wide grid groups the block gradient by block rows (slots written
  # through t_perm), a tall one by block columns (contiguous slots).
  case = make_case(3, 11, *grid, 4, 8, 0.6, empty_row=True)
  got = np.asarray(jax.jit(
      lambda x, dy, w: reference.sdd(x, dy, w, _max_piece=max_piece))(
          case["x"], case["dy"], case["wm"]))
  full = case["x64"].T @ case["dy64"]
  wm = case["wm"]
  for z in range(wm.capacity):
    if z < int(wm.nnz):
      r, c = int(wm.row_ids[z]), int(wm.col_ids[z])
      want = full[r * 4:(r + 1) * 4, c * 8:(c + 1) * 8]
    else:
      want = np.zeros((4, 8))
    np.testing.assert_allclose(got[z], want, rtol=1e-5, atol=1e-4)


def test_xla_forward_pieces_topology_change_does_not_recompile():
  rng = np.random.default_rng(2)
  w = jnp.asarray(rng.standard_normal((16, 24)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((5, 16)), jnp.float32)
  f = jax.jit(lambda x, wm: reference.matmul(x, wm, _max_piece=2))
  for p in (0.3, 0.6, 0.0):
    mk = rng.random((4, 3)) < p
    wm = BlockSparseMatrix.from_dense(w, (4, 8), mk, capacity=12)
    np.testing.assert_allclose(f(x, wm), x @ wm.to_dense(), rtol=1e-5,
                               atol=1e-5)
  assert f._cache_size() == 1


def test_xla_larger_case_matches():
  case = make_case(0, 1024, 8, 4, 128, 32, 0.6, extra_capacity=3)
  check_forward_and_grads(case, jnp.float32, implementation="xla")


def test_grads_equal_jax_grad_of_dense_reference():
  case = make_case(3, 12, 3, 4, 4, 2, 0.5, extra_capacity=2)
  wm, x = case["wm"], case["x"]
  c = jnp.asarray(np.random.default_rng(1).standard_normal((12, 8)),
                  jnp.float32)

  def loss_sparse(x, d):
    return jnp.sum(jnp.tanh(block_sparse_matmul(x, wm.with_data(d))) * c)

  def loss_dense(x, w):
    return jnp.sum(jnp.tanh(x @ w) * c)

  gx, gd = jax.grad(loss_sparse, (0, 1))(x, wm.data)
  rx, rw = jax.grad(loss_dense, (0, 1))(x, wm.to_dense())
  np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-6)
  # The dense gradient restricted to the stored blocks.
  want = BlockSparseMatrix.from_dense(rw, wm.block_shape, case["mask"],
                                      capacity=wm.capacity).data
  np.testing.assert_allclose(gd, want, rtol=1e-5, atol=1e-6)


def test_check_grads_on_custom_vjp():
  case = make_case(5, 6, 3, 2, 2, 4, 0.6)
  wm = case["wm"]
  f = jax.jit(lambda x, d: block_sparse_matmul(
      x, wm.with_data(d), implementation="xla"))
  check_grads(f, (case["x"], wm.data), order=1, modes=("rev",))
  # Second order through the (linear) VJP as well.
  g = jax.jit(lambda x, d: jnp.sum(jnp.sin(f(x, d))))
  check_grads(g, (case["x"], wm.data), order=2, modes=("rev",))


def test_grad_wrt_whole_matrix_needs_allow_int():
  case = make_case(1, 4, 2, 2, 2, 2, 1.0)
  wm, x = case["wm"], case["x"]
  loss = lambda w: jnp.sum(block_sparse_matmul(x, w))
  with pytest.raises(TypeError):
    jax.grad(loss)(wm)
  g = jax.grad(loss, allow_int=True)(wm)
  assert isinstance(g, BlockSparseMatrix)
  assert g.row_ids.dtype == jax.dtypes.float0
  np.testing.assert_allclose(
      g.data, jax.grad(lambda d: loss(wm.with_data(d)))(wm.data))


def test_leading_dims_and_dtype_promotion():
  case = make_case(2, 6, 2, 3, 4, 4, 0.5)
  wm, x = case["wm"], case["x"]
  x3 = x.reshape(2, 3, -1)
  y = block_sparse_matmul(x3, wm)
  assert y.shape == (2, 3, 12)
  np.testing.assert_allclose(y.reshape(6, -1), x @ wm.to_dense(), rtol=1e-5,
                             atol=1e-5)
  yb = block_sparse_matmul(x.astype(jnp.bfloat16), wm)
  assert yb.dtype == jnp.float32


def test_topology_change_at_fixed_capacity_does_not_recompile():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((16, 24)), jnp.float32)
  x = jnp.asarray(rng.standard_normal((5, 16)), jnp.float32)
  traces = []

  @jax.jit
  def step(x, w, mask):
    traces.append(1)
    wm = BlockSparseMatrix.from_dense(w, (4, 8), mask, capacity=6)
    return jax.value_and_grad(
        lambda d: jnp.sum(block_sparse_matmul(x, wm.with_data(d)) ** 2))(
            wm.data)

  masks = [rng.random((4, 3)) < p for p in (0.2, 0.5, 0.3)]
  masks = [mk for mk in masks if 0 < mk.sum() <= 6] + [np.zeros((4, 3), bool)]
  for mk in masks:
    val, _ = step(x, w, jnp.asarray(mk))
    dense = w * np.kron(mk, np.ones((4, 8)))
    np.testing.assert_allclose(val, np.sum((x @ dense) ** 2), rtol=1e-5)
  assert len(traces) == 1
  assert step._cache_size() == 1


def test_dispatch():
  assert _dispatch.resolve(None, None) == "xla"  # this CPU host
  assert _dispatch.resolve(None, True) == "pallas_tpu"
  assert _dispatch.resolve("pallas_gpu", None) == "pallas_gpu"
  case = make_case(0, 2, 2, 2, 2, 2, 1.0)
  with pytest.raises(ValueError, match="implementation"):
    block_sparse_matmul(case["x"], case["wm"], implementation="cuda")
  with pytest.raises(ValueError, match="interpret"):
    block_sparse_matmul(case["x"], case["wm"], implementation="xla",
                        interpret=True)
  with pytest.raises(ValueError, match="x must have shape"):
    block_sparse_matmul(case["x"][:, :3], case["wm"])
  with pytest.raises(ValueError, match="BlockSparseMatrix"):
    block_sparse_matmul(case["x"], case["wm"].to_dense())


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_xla_path_with_row_sharded_inputs(axis_type):
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  at = AxisType.Explicit if axis_type == "explicit" else AxisType.Auto
  mesh = jax.make_mesh((8,), ("data",), axis_types=(at,))
  case = make_case(9, 32, 4, 3, 16, 32, 0.5, extra_capacity=2)
  wm = case["wm"]
  x = jax.device_put(case["x"], NamedSharding(mesh, P("data", None)))
  dy = jax.device_put(case["dy"], NamedSharding(mesh, P("data", None)))

  @jax.jit
  def run(x, d, dy):
    y, vjp = jax.vjp(lambda x, d: block_sparse_matmul(x, wm.with_data(d)),
                     x, d)
    return (y, *vjp(dy))

  y, dx, dd = run(x, wm.data, dy)
  assert y.sharding.spec == P("data", None)
  assert dx.sharding.spec == P("data", None)
  yp = jax.jit(lambda x, w: reference.matmul(x, w, _max_piece=1))(x, wm)
  assert yp.sharding.spec == P("data", None)
  np.testing.assert_allclose(yp, case["x64"] @ case["w64"], rtol=1e-5,
                             atol=1e-4)
  x64, w64, dy64 = case["x64"], case["w64"], case["dy64"]
  np.testing.assert_allclose(y, x64 @ w64, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dx, dy64 @ w64.T, rtol=1e-5, atol=1e-4)
  want = BlockSparseMatrix.from_dense(
      jnp.asarray(x64.T @ dy64, jnp.float32), wm.block_shape, case["mask"],
      capacity=wm.capacity).data
  np.testing.assert_allclose(dd, want, rtol=1e-5, atol=1e-4)
