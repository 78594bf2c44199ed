# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of the grouped matmul kernels (pallas_kernels.gmm).

Oracles: a NumPy loop over the groups, and ``jax.lax.ragged_dot`` with its own
autodiff. The Pallas kernels run on CPU under the TPU simulator
(``pltpu.InterpretParams()``, which raises on out-of-bounds blocks and
out-of-order output revisits) and are lowered for TPU with ``jax.export``.
"""

import re

import hypothesis
from hypothesis import strategies as st
import jax
from jax.experimental.pallas import tpu as pltpu
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

import pallas_kernels
from pallas_kernels import gmm
from pallas_kernels import tgmm
from pallas_kernels.gmm import tpu as gmm_tpu

STRICT = pltpu.InterpretParams()
# Small tiles so that a few dozen rows already span several tiles, straddled
# by group boundaries.
SMALL_TILES = (8, 128, 128)


def _np_gmm(lhs, rhs, sizes, transpose_rhs=False):
  lhs, rhs = np.asarray(lhs, np.float64), np.asarray(rhs, np.float64)
  n = rhs.shape[1] if transpose_rhs else rhs.shape[2]
  out = np.zeros((lhs.shape[0], n))
  start = 0
  for g, size in enumerate(np.asarray(sizes)):
    w = rhs[g].T if transpose_rhs else rhs[g]
    out[start:start + size] = lhs[start:start + size] @ w
    start += size
  return out


def _np_tgmm(lhs, grad, sizes):
  lhs, grad = np.asarray(lhs, np.float64), np.asarray(grad, np.float64)
  out = np.zeros((len(sizes), lhs.shape[1], grad.shape[1]))
  start = 0
  for g, size in enumerate(np.asarray(sizes)):
    out[g] = lhs[start:start + size].T @ grad[start:start + size]
    start += size
  return out


def _random_sizes(rng, num_groups, m, *, fill):
  """Random group sizes with some empty groups; sum == m if fill else <= m."""
  total = m if fill else int(rng.integers(0, m + 1))
  cuts = np.sort(rng.integers(0, total + 1, size=num_groups - 1))
  sizes = np.diff(np.concatenate([[0], cuts, [total]]))
  sizes[rng.random(num_groups) < 0.3] = 0  # more empty groups
  return sizes.astype(np.int32)


def _operands(seed, m, k, n, num_groups, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  lhs = jnp.asarray(rng.normal(size=(m, k)), dtype)
  rhs = jnp.asarray(rng.normal(size=(num_groups, k, n)), dtype)
  grad = jnp.asarray(rng.normal(size=(m, n)), dtype)
  return rng, lhs, rhs, grad


# --- numerics ----------------------------------------------------------------


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 40),
    k=st.sampled_from([3, 16, 130]),
    n=st.sampled_from([5, 128]),
    num_groups=st.integers(1, 6),
    fill=st.booleans())
def test_pallas_matches_ragged_dot_and_numpy(seed, m, k, n, num_groups, fill):
  rng, lhs, rhs, grad = _operands(seed, m, k, n, num_groups)
  sizes = _random_sizes(rng, num_groups, m, fill=fill)
  group_sizes = jnp.asarray(sizes)
  out = gmm(lhs, rhs, group_sizes, tiling=SMALL_TILES, interpret=STRICT)
  np.testing.assert_allclose(out, _np_gmm(lhs, rhs, sizes), atol=1e-4,
                             rtol=1e-4)
  np.testing.assert_allclose(
      out, jax.lax.ragged_dot(lhs, rhs, group_sizes), atol=1e-4, rtol=1e-4)
  wgrad = tgmm(lhs, grad, group_sizes, tiling=SMALL_TILES, interpret=STRICT)
  np.testing.assert_allclose(wgrad, _np_tgmm(lhs, grad, sizes), atol=1e-4,
                             rtol=1e-4)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 40),
    num_groups=st.integers(1, 6),
    fill=st.booleans(),
    transpose_rhs=st.booleans())
def test_xla_matches_numpy(seed, m, num_groups, fill, transpose_rhs):
  rng, lhs, rhs, grad = _operands(seed, m, 6, 6, num_groups)
  sizes = _random_sizes(rng, num_groups, m, fill=fill)
  out = gmm(lhs, rhs, jnp.asarray(sizes), transpose_rhs=transpose_rhs,
            implementation="xla")
  np.testing.assert_allclose(out, _np_gmm(lhs, rhs, sizes, transpose_rhs),
                             atol=1e-4, rtol=1e-4)
  wgrad = tgmm(lhs, grad, jnp.asarray(sizes), implementation="xla")
  np.testing.assert_allclose(wgrad, _np_tgmm(lhs, grad, sizes), atol=1e-4,
                             rtol=1e-4)


def test_pallas_default_tiles_partial_blocks_and_transpose():
  # m, k and n are not multiples of the 128 tiles: partial edge blocks, a
  # masked k remainder, and group boundaries inside tiles.
  rng, lhs, rhs, grad = _operands(0, 300, 200, 260, 6)
  sizes = np.array([0, 50, 0, 100, 130, 0], np.int32)  # 20 trailing rows
  group_sizes = jnp.asarray(sizes)
  out = gmm(lhs, rhs, group_sizes, interpret=STRICT)
  np.testing.assert_allclose(out, _np_gmm(lhs, rhs, sizes), atol=1e-3,
                             rtol=1e-4)
  rhs_t = jnp.swapaxes(rhs, 1, 2)
  out_t = gmm(lhs, rhs_t, group_sizes, transpose_rhs=True, interpret=STRICT)
  np.testing.assert_allclose(out_t, out, atol=1e-3, rtol=1e-4)
  wgrad = tgmm(lhs, grad, group_sizes, interpret=STRICT)
  np.testing.assert_allclose(wgrad, _np_tgmm(lhs, grad, sizes), atol=1e-3,
                             rtol=1e-4)
  del rng


def test_trailing_rows_are_zero_like_ragged_dot():
  lhs = jnp.arange(1.0, 11.0).reshape(10, 1)
  rhs = jnp.array([[[2.0]], [[3.0]], [[5.0]]])
  group_sizes = jnp.array([2, 0, 3], jnp.int32)  # rows 5..9 are in no group
  want = np.array([2, 4, 15, 20, 25, 0, 0, 0, 0, 0], np.float32)[:, None]
  for kwargs in ({"implementation": "xla"}, {"interpret": STRICT}):
    np.testing.assert_array_equal(gmm(lhs, rhs, group_sizes, **kwargs), want)
  np.testing.assert_array_equal(
      jax.lax.ragged_dot(lhs, rhs, group_sizes), want)
  # tgmm ignores the trailing rows: 1 + 2 | nothing | 3 + 4 + 5.
  grad = jnp.ones((10, 1))
  np.testing.assert_array_equal(
      tgmm(lhs, grad, group_sizes, interpret=STRICT)[:, 0, 0], [3, 0, 12])


def test_all_groups_empty_gives_zeros():
  _, lhs, rhs, grad = _operands(1, 24, 8, 8, 3)
  group_sizes = jnp.zeros((3,), jnp.int32)
  out = gmm(lhs, rhs, group_sizes, tiling=SMALL_TILES, interpret=STRICT)
  np.testing.assert_array_equal(out, np.zeros((24, 8)))
  wgrad = tgmm(lhs, grad, group_sizes, tiling=SMALL_TILES, interpret=STRICT)
  np.testing.assert_array_equal(wgrad, np.zeros((3, 8, 8)))


def test_bfloat16_and_preferred_element_type():
  rng, lhs, rhs, grad = _operands(2, 40, 16, 128, 4, jnp.bfloat16)
  sizes = _random_sizes(rng, 4, 40, fill=False)
  group_sizes = jnp.asarray(sizes)
  out = gmm(lhs, rhs, group_sizes, tiling=(16, 128, 128), interpret=STRICT)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(np.float32), _np_gmm(lhs, rhs, sizes),
                             atol=0.1, rtol=2e-2)
  out32 = gmm(lhs, rhs, group_sizes, preferred_element_type=jnp.float32,
              tiling=(16, 128, 128), interpret=STRICT)
  assert out32.dtype == jnp.float32
  # bf16 inputs are exact in float64, and the kernel accumulates in float32.
  np.testing.assert_allclose(out32, _np_gmm(lhs, rhs, sizes), atol=1e-4,
                             rtol=1e-4)
  wgrad = tgmm(lhs, grad, group_sizes, preferred_element_type=jnp.float32,
               tiling=(16, 128, 128), interpret=STRICT)
  np.testing.assert_allclose(wgrad, _np_tgmm(lhs, grad, sizes), atol=1e-4,
                             rtol=1e-4)


def test_traced_group_sizes_under_jit_including_overflow():
  _, lhs, rhs, _ = _operands(3, 20, 8, 8, 3)

  @jax.jit
  def both(group_sizes):
    return (gmm(lhs, rhs, group_sizes, tiling=SMALL_TILES, interpret=STRICT),
            jax.lax.ragged_dot(lhs, rhs, group_sizes))

  for sizes in ([4, 0, 9], [20, 0, 0], [15, 10, 7]):  # the last sums past m
    out, want = both(jnp.array(sizes, jnp.int32))
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)


def test_hlo_interpreter_smoke():
  rng, lhs, rhs, _ = _operands(4, 33, 8, 8, 4)
  sizes = _random_sizes(rng, 4, 33, fill=False)
  out = gmm(lhs, rhs, jnp.asarray(sizes), tiling=SMALL_TILES, interpret=True)
  np.testing.assert_allclose(out, _np_gmm(lhs, rhs, sizes), atol=1e-4,
                             rtol=1e-4)


def test_group_metadata_matches_brute_force():
  rng = np.random.default_rng(5)
  for trial in range(12):
    m, tm = int(rng.integers(1, 60)), int(rng.choice([8, 16]))
    num_groups = int(rng.integers(1, 7))
    sizes = _random_sizes(rng, num_groups, m, fill=trial % 2 == 0)
    tiles_m = -(-m // tm)
    for trailing in (False, True):
      meta = gmm_tpu.make_group_metadata(
          jnp.asarray(sizes), m=m, tm=tm, visit_trailing_rows=trailing)
      # Brute force: every (group, tile) whose rows meet; empty groups once.
      want, start = [], 0
      for g, size in enumerate(sizes):
        if size:
          want += [(g, t) for t in range(start // tm,
                                         (start + size - 1) // tm + 1)]
        else:
          want.append((g, min(start // tm, tiles_m - 1)))
        start += size
      if trailing:
        want += [(num_groups - 1, t)
                 for t in range(-(-start // tm), tiles_m)]
      count = int(meta.num_visits[0])
      got = list(zip(np.asarray(meta.group_ids[:count]).tolist(),
                     np.asarray(meta.tile_ids[:count]).tolist()))
      assert got == want
      assert len(meta.group_ids) == tiles_m + num_groups >= count
      # The unused tail repeats the last visit: no new block is fetched.
      assert (np.asarray(meta.group_ids[count:]) == want[-1][0]).all()
      assert (np.asarray(meta.tile_ids[count:]) == want[-1][1]).all()
      np.testing.assert_array_equal(
          meta.offsets, np.concatenate([[0], np.cumsum(sizes)]))


# --- gradients ---------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["xla", "pallas_tpu"])
def test_check_grads(implementation):
  interpret = STRICT if implementation == "pallas_tpu" else None
  _, lhs, rhs, grad = _operands(6, 20, 8, 8, 3)
  group_sizes = jnp.array([7, 0, 9], jnp.int32)
  kwargs = dict(implementation=implementation, interpret=interpret,
                tiling=SMALL_TILES)
  # custom_vjp functions support reverse mode only. jit: check_grads calls
  # each function many times with the same shapes.
  check_grads(jax.jit(lambda a, b: gmm(a, b, group_sizes, **kwargs)),
              (lhs, rhs), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
  if implementation == "xla":
    # The VJP rules do not depend on the backend; the Pallas transposed
    # kernel's values are checked in the numerics tests above.
    check_grads(jax.jit(lambda a, b: gmm(a, b, group_sizes,
                                         transpose_rhs=True, **kwargs)),
                (lhs, jnp.swapaxes(rhs, 1, 2)), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)
  check_grads(jax.jit(lambda a, b: tgmm(a, b, group_sizes, **kwargs)),
              (lhs, grad), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_check_grads_second_order_xla():
  # The backward passes are gmm / tgmm again, so they differentiate too.
  _, lhs, rhs, _ = _operands(7, 12, 4, 4, 3)
  group_sizes = jnp.array([5, 0, 6], jnp.int32)
  check_grads(lambda a, b: gmm(a, b, group_sizes, implementation="xla"),
              (lhs, rhs), order=2, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_pallas_grads_equal_ragged_dot_autodiff():
  _, lhs, rhs, grad = _operands(8, 30, 16, 128, 4)
  group_sizes = jnp.array([9, 0, 13, 3], jnp.int32)  # 5 trailing rows

  def loss(fn):
    return lambda a, b: jnp.sum(fn(a, b) * grad)

  want = jax.grad(loss(lambda a, b: jax.lax.ragged_dot(a, b, group_sizes)),
                  argnums=(0, 1))(lhs, rhs)
  got = jax.jit(jax.grad(loss(lambda a, b: gmm(
      a, b, group_sizes, tiling=SMALL_TILES, interpret=STRICT)),
                         argnums=(0, 1)))(lhs, rhs)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)
  assert not np.asarray(got[0][25:]).any()  # trailing rows get no gradient


# --- lowering for real TPUs --------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pallas_exports_for_tpu_forward_and_backward(dtype):
  m, k, n, num_groups = 384, 256, 384, 8
  spec = jax.ShapeDtypeStruct
  lhs, rhs = spec((m, k), dtype), spec((num_groups, k, n), dtype)
  grad, sizes = spec((m, n), dtype), spec((num_groups,), jnp.int32)

  def forward(a, b, s):
    return gmm(a, b, s, implementation="pallas_tpu")

  def backward(a, b, s):
    loss = lambda a, b: jnp.sum(forward(a, b, s).astype(jnp.float32))
    return jax.grad(loss, argnums=(0, 1))(a, b)

  def tgmm_backward(a, g, s):
    loss = lambda a, g: jnp.sum(
        tgmm(a, g, s, implementation="pallas_tpu").astype(jnp.float32))
    return jax.grad(loss, argnums=(0, 1))(a, g)

  # Under grad the forward value is dead code: only the two backward kernels
  # remain.
  for fn, args, kernels in (
      (forward, (lhs, rhs, sizes), ["sparsejax_gmm"]),
      (backward, (lhs, rhs, sizes), ["sparsejax_gmm", "sparsejax_tgmm"]),
      (tgmm_backward, (lhs, grad, sizes), ["sparsejax_gmm"] * 2)):
    exported = jax.export.export(jax.jit(fn), platforms=["tpu"])(*args)
    assert exported.platforms == ("tpu",)
    text = exported.mlir_module()
    assert text.count("tpu_custom_call") == len(kernels), fn.__name__
    found = re.findall(r'kernel_name = "(sparsejax_t?gmm)"', text)
    assert sorted(found) == sorted(kernels), fn.__name__


def test_bad_tile_shape_fails_tpu_lowering():
  # The (8, 128) rule is enforced by our tiling check before lowering.
  with pytest.raises(ValueError, match="tiling"):
    gmm(jnp.ones((64, 256)), jnp.ones((2, 256, 256)),
        jnp.array([32, 32], jnp.int32), tiling=(8, 64, 128),
        implementation="pallas_tpu")


# --- dispatch and bad input --------------------------------------------------


def _has_pallas_call(fn, *args):
  return "pallas_call" in str(jax.make_jaxpr(fn)(*args))


def test_dispatch():
  lhs, rhs = jnp.ones((8, 4)), jnp.ones((2, 4, 4))
  sizes = jnp.array([4, 4], jnp.int32)
  assert jax.default_backend() == "cpu"
  assert not _has_pallas_call(lambda: gmm(lhs, rhs, sizes))
  assert _has_pallas_call(lambda: gmm(lhs, rhs, sizes, interpret=True))
  assert _has_pallas_call(
      lambda: gmm(lhs, rhs, sizes, implementation="pallas_tpu"))
  assert not _has_pallas_call(lambda: tgmm(lhs, lhs, sizes))
  assert _has_pallas_call(lambda: tgmm(lhs, lhs, sizes, interpret=STRICT))
  with pytest.raises(ValueError, match="implementation"):
    gmm(lhs, rhs, sizes, implementation="triton")
  assert _has_pallas_call(  # the GPU kernel: tests/test_gmm_gpu.py
      lambda: gmm(lhs, rhs, sizes, implementation="pallas_gpu"))
  with pytest.raises(ValueError, match="interpret"):
    gmm(lhs, rhs, sizes, implementation="xla", interpret=True)
  assert pallas_kernels.gmm is gmm and pallas_kernels.tgmm is tgmm


@pytest.mark.parametrize("args, name", [
    ((jnp.ones((8,)), jnp.ones((2, 4, 4)), jnp.array([4, 4])), "lhs"),
    ((jnp.ones((8, 4)), jnp.ones((4, 4)), jnp.array([4, 4])), "rhs"),
    ((jnp.ones((8, 4)), jnp.ones((2, 3, 4)), jnp.array([4, 4])), "rhs.shape"),
    ((jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([4, 2, 2])),
     "group_sizes"),
    ((jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([[4, 4]])),
     "group_sizes"),
    ((jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([4.0, 4.0])),
     "group_sizes"),
    ((jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([6, 6])),
     "group_sizes"),
    ((jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([-1, 4])),
     "group_sizes"),
])
def test_gmm_bad_input_names_argument(args, name):
  with pytest.raises(ValueError, match=name):
    gmm(*args)


def test_tgmm_and_tiling_bad_input_names_argument():
  ok = jnp.array([4, 4], jnp.int32)
  with pytest.raises(ValueError, match="grad"):
    tgmm(jnp.ones((8, 4)), jnp.ones((7, 4)), ok)
  with pytest.raises(ValueError, match="grad"):
    tgmm(jnp.ones((8, 4)), jnp.ones((8,)), ok)
  with pytest.raises(ValueError, match="group_sizes"):
    tgmm(jnp.ones((8, 4)), jnp.ones((8, 4)), jnp.array([4, 4], jnp.float32))
  with pytest.raises(ValueError, match="group_sizes"):
    tgmm(jnp.ones((8, 4)), jnp.ones((8, 4)), jnp.zeros((0,), jnp.int32))
  for tiling in ((0, 128, 128), (12, 128, 128), (8, 128), (8, 128, 100)):
    with pytest.raises(ValueError, match="tiling"):
      gmm(jnp.ones((8, 4)), jnp.ones((2, 4, 4)), ok, tiling=tiling)


@pytest.mark.slow
@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 600),
    k=st.sampled_from([64, 200, 256]),
    n=st.sampled_from([128, 300]),
    num_groups=st.integers(1, 16),
    fill=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]))
def test_pallas_sweep_default_tiles(seed, m, k, n, num_groups, fill, dtype):
  rng, lhs, rhs, grad = _operands(seed, m, k, n, num_groups, dtype)
  sizes = _random_sizes(rng, num_groups, m, fill=fill)
  group_sizes = jnp.asarray(sizes)
  f32 = jnp.float32
  out = gmm(lhs, rhs, group_sizes, preferred_element_type=f32,
            interpret=STRICT)
  np.testing.assert_allclose(out, _np_gmm(lhs, rhs, sizes), atol=1e-3,
                             rtol=1e-3)
  out_t = gmm(grad, rhs, group_sizes, transpose_rhs=True,
              preferred_element_type=f32, interpret=STRICT)
  np.testing.assert_allclose(out_t, _np_gmm(grad, rhs, sizes, True),
                             atol=1e-3, rtol=1e-3)
  wgrad = tgmm(lhs, grad, group_sizes, preferred_element_type=f32,
               interpret=STRICT)
  np.testing.assert_allclose(wgrad, _np_tgmm(lhs, grad, sizes), atol=1e-3,
                             rtol=1e-3)
