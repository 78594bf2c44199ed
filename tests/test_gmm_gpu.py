# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of the Pallas GPU (Triton) grouped matmul, pallas_kernels.gmm.gpu.

No GPU here. Numerics run on CPU in interpret mode, mostly under the TPU
simulator (``pltpu.InterpretParams()``; the kernels swap in Mosaic TPU
compiler params for it), which checks every ``pl.ds`` slice against its
array, with one ``interpret=True`` (HLO interpreter) run. Oracles:
``jax.lax.ragged_dot`` and its autodiff. Lowering for real GPUs is checked
with ``jax.export`` for ``cuda``.
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

from pallas_kernels import gmm
from pallas_kernels import tgmm
from pallas_kernels.gmm import gpu as gmm_gpu
from pallas_kernels.gmm import ops as gmm_ops

STRICT = pltpu.InterpretParams()
GPU = dict(implementation="pallas_gpu", interpret=STRICT)
# Small tiles so that a few dozen rows span several tiles, straddled by group
# boundaries, and k spans several k steps.
SMALL = (16, 16, 16)


@pytest.fixture(autouse=True)
def _reset_simulator():
  yield
  pltpu.reset_tpu_interpret_mode_state()


def _random_sizes(rng, num_groups, m, *, fill):
  """Random group sizes with some empty groups; sum == m if fill else <= m."""
  total = m if fill else int(rng.integers(0, m + 1))
  cuts = np.sort(rng.integers(0, total + 1, size=num_groups - 1))
  sizes = np.diff(np.concatenate([[0], cuts, [total]]))
  sizes[rng.random(num_groups) < 0.3] = 0
  return sizes.astype(np.int32)


def _operands(seed, m, k, n, num_groups, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  lhs = jnp.asarray(rng.normal(size=(m, k)), dtype)
  rhs = jnp.asarray(rng.normal(size=(num_groups, k, n)), dtype)
  grad = jnp.asarray(rng.normal(size=(m, n)), dtype)
  return rng, lhs, rhs, grad


def _ragged_tgmm(lhs, grad, group_sizes):
  """The weight gradient of ragged_dot, from JAX's own transpose rule."""
  rhs0 = jnp.zeros((group_sizes.shape[0], lhs.shape[1], grad.shape[1]),
                   jnp.float32)
  _, vjp = jax.vjp(lambda w: jax.lax.ragged_dot(
      lhs.astype(jnp.float32), w, group_sizes), rhs0)
  return vjp(grad.astype(jnp.float32))[0]


def _ragged_gmm(lhs, rhs, group_sizes):
  return jax.lax.ragged_dot(lhs.astype(jnp.float32), rhs.astype(jnp.float32),
                            group_sizes)


# --- numerics ----------------------------------------------------------------


@hypothesis.settings(max_examples=4, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 48),
    k=st.sampled_from([5, 16, 40]),
    n=st.sampled_from([7, 32]),
    num_groups=st.integers(1, 6),
    fill=st.booleans(),
    transpose_rhs=st.booleans())
def test_strict_matches_ragged_dot_and_transpose(seed, m, k, n, num_groups,
                                                 fill, transpose_rhs):
  rng, lhs, rhs, grad = _operands(seed, m, k, n, num_groups)
  sizes = jnp.asarray(_random_sizes(rng, num_groups, m, fill=fill))
  want = _ragged_gmm(lhs, rhs, sizes)
  b = jnp.swapaxes(rhs, 1, 2) if transpose_rhs else rhs
  out = gmm(lhs, b, sizes, transpose_rhs=transpose_rhs, tiling=SMALL, **GPU)
  np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
  wgrad = tgmm(lhs, grad, sizes, tiling=SMALL, **GPU)
  np.testing.assert_allclose(wgrad, _ragged_tgmm(lhs, grad, sizes),
                             atol=1e-4, rtol=1e-4)


def test_bfloat16_default_tiles_and_preferred_element_type():
  # m = 150 is not a multiple of tm = 128 (padded rows); k = 200 and n = 130
  # are not multiples of their tiles; tgmm's last step of a group is shifted
  # back inside the array.
  rng, lhs, rhs, grad = _operands(1, 150, 200, 130, 5, jnp.bfloat16)
  sizes = jnp.array([0, 61, 0, 70, 9], jnp.int32)  # 10 trailing rows
  del rng
  f32 = jnp.float32
  out = gmm(lhs, rhs, sizes, **GPU)
  assert out.dtype == jnp.bfloat16
  want = _ragged_gmm(lhs, rhs, sizes)
  np.testing.assert_allclose(out.astype(f32), want, atol=0.1, rtol=2e-2)
  # bf16 products are exact in float32; the kernel accumulates in float32.
  out32 = gmm(lhs, rhs, sizes, preferred_element_type=f32, **GPU)
  np.testing.assert_allclose(out32, want, atol=1e-3, rtol=1e-4)
  wgrad = tgmm(lhs, grad, sizes, preferred_element_type=f32, **GPU)
  np.testing.assert_allclose(wgrad, _ragged_tgmm(lhs, grad, sizes),
                             atol=1e-3, rtol=1e-4)
  assert not np.asarray(out32[140:]).any()


def test_empty_groups_all_empty_and_single_group():
  _, lhs, rhs, grad = _operands(2, 24, 16, 16, 3)
  zero = jnp.zeros((3,), jnp.int32)
  np.testing.assert_array_equal(gmm(lhs, rhs, zero, tiling=SMALL, **GPU), 0)
  np.testing.assert_array_equal(tgmm(lhs, grad, zero, tiling=SMALL, **GPU), 0)
  one = jnp.array([0, 24, 0], jnp.int32)
  np.testing.assert_allclose(gmm(lhs, rhs, one, tiling=SMALL, **GPU),
                             lhs @ rhs[1], atol=1e-5, rtol=1e-5)
  wgrad = tgmm(lhs, grad, one, tiling=SMALL, **GPU)
  np.testing.assert_allclose(wgrad[1], lhs.T @ grad, atol=1e-4, rtol=1e-5)
  np.testing.assert_array_equal(wgrad[0], 0)


def test_hlo_interpreter_and_traced_group_sizes():
  _, lhs, rhs, _ = _operands(3, 33, 16, 16, 3)

  @jax.jit
  def both(sizes):
    return (gmm(lhs, rhs, sizes, tiling=SMALL, implementation="pallas_gpu",
                interpret=True), jax.lax.ragged_dot(lhs, rhs, sizes))

  for sizes in ([4, 0, 9], [33, 0, 0], [20, 10, 7]):  # the last sums past m
    out, want = both(jnp.array(sizes, jnp.int32))
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)


def test_tile_groups_matches_brute_force():
  rng = np.random.default_rng(4)
  for trial in range(10):
    m, tm = int(rng.integers(1, 70)), int(rng.choice([16, 32]))
    num_groups = int(rng.integers(1, 7))
    sizes = _random_sizes(rng, num_groups, m, fill=trial % 2 == 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    tiles_m = -(-m // tm)
    first, end = gmm_gpu.tile_groups(jnp.asarray(offsets), tiles_m=tiles_m,
                                     tm=tm)
    for i in range(tiles_m):
      meets = [g for g in range(num_groups) if sizes[g] and
               offsets[g] < (i + 1) * tm and offsets[g + 1] > i * tm]
      covered = set(range(int(first[i]), int(end[i])))
      assert set(meets) <= covered, (sizes, tm, i)
      # Only empty groups beyond the ones that meet the tile.
      assert all(sizes[g] == 0 for g in covered - set(meets)), (sizes, tm, i)


# --- gradients ---------------------------------------------------------------


def test_check_grads():
  _, lhs, rhs, grad = _operands(5, 20, 16, 16, 3)
  sizes = jnp.array([7, 0, 9], jnp.int32)
  kw = dict(tiling=SMALL, **GPU)
  # custom_vjp: reverse mode only. jit: check_grads calls each many times.
  check_grads(jax.jit(lambda a, b: gmm(a, b, sizes, **kw)), (lhs, rhs),
              order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
  check_grads(jax.jit(lambda a, b: gmm(a, b, sizes, transpose_rhs=True,
                                       **kw)),
              (lhs, jnp.swapaxes(rhs, 1, 2)), order=1, modes=("rev",),
              atol=1e-2, rtol=1e-2)
  check_grads(jax.jit(lambda a, g: tgmm(a, g, sizes, **kw)), (lhs, grad),
              order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_grads_equal_ragged_dot_autodiff():
  _, lhs, rhs, grad = _operands(6, 30, 16, 32, 4)
  sizes = jnp.array([9, 0, 13, 3], jnp.int32)  # 5 trailing rows

  def loss(fn):
    return lambda a, b: jnp.sum(fn(a, b) * grad)

  want = jax.grad(loss(lambda a, b: jax.lax.ragged_dot(a, b, sizes)),
                  argnums=(0, 1))(lhs, rhs)
  got = jax.jit(jax.grad(loss(lambda a, b: gmm(a, b, sizes, tiling=SMALL,
                                               **GPU)),
                         argnums=(0, 1)))(lhs, rhs)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)
  assert not np.asarray(got[0][25:]).any()


# --- lowering for real GPUs --------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_exports_for_cuda_forward_and_backward(dtype):
  m, k, n, num_groups = 1000, 256, 384, 8
  spec = jax.ShapeDtypeStruct
  lhs, rhs = spec((m, k), dtype), spec((num_groups, k, n), dtype)
  grad, sizes = spec((m, n), dtype), spec((num_groups,), jnp.int32)

  def forward(a, b, s):
    return gmm(a, b, s, implementation="pallas_gpu")

  def backward(a, b, s):
    loss = lambda a, b: jnp.sum(forward(a, b, s).astype(jnp.float32))
    return jax.grad(loss, argnums=(0, 1))(a, b)

  def tgmm_backward(a, g, s):
    loss = lambda a, g: jnp.sum(
        tgmm(a, g, s, implementation="pallas_gpu").astype(jnp.float32))
    return jax.grad(loss, argnums=(0, 1))(a, g)

  checks = [jax.export.DisabledSafetyCheck.custom_call(
      gmm_gpu.TRITON_CALL_TARGET)]
  # Under grad the forward value is dead code: only the backward kernels stay.
  for fn, args, kernels in (
      (forward, (lhs, rhs, sizes), ["gmm"]),
      (backward, (lhs, rhs, sizes), ["gmm", "tgmm"]),
      (tgmm_backward, (lhs, grad, sizes), ["gmm", "gmm"])):
    exported = jax.export.export(jax.jit(fn), platforms=["cuda"],
                                 disabled_checks=checks)(*args)
    assert exported.platforms == ("cuda",)
    text = exported.mlir_module()
    assert text.count(gmm_gpu.TRITON_CALL_TARGET) == len(kernels)
    found = re.findall(r"sparsejax_(t?gmm)_gpu", text)
    assert sorted(set(found)) == sorted(set(kernels)), fn.__name__


def test_export_without_disabled_check_names_the_triton_call():
  spec = jax.ShapeDtypeStruct
  with pytest.raises(ValueError, match="triton"):
    jax.export.export(jax.jit(lambda a, b, s: gmm(
        a, b, s, implementation="pallas_gpu")), platforms=["cuda"])(
            spec((64, 32), jnp.float32), spec((2, 32, 32), jnp.float32),
            spec((2,), jnp.int32))


# --- dispatch and bad input --------------------------------------------------


def _kernel_names(fn):
  return sorted(set(re.findall(r"sparsejax_t?gmm\w*",
                               str(jax.make_jaxpr(fn)()))))


def test_none_picks_pallas_gpu_on_a_gpu_backend(monkeypatch):
  lhs, rhs = jnp.ones((8, 16)), jnp.ones((2, 16, 16))
  sizes = jnp.array([4, 4], jnp.int32)
  assert "sparsejax_gmm_gpu" not in _kernel_names(lambda: gmm(lhs, rhs, sizes))
  monkeypatch.setattr(gmm_ops.jax, "default_backend", lambda: "gpu")
  assert _kernel_names(lambda: gmm(lhs, rhs, sizes)) == ["sparsejax_gmm_gpu"]
  assert _kernel_names(lambda: tgmm(lhs, lhs, sizes)) == [
      "sparsejax_tgmm_gpu"]
  assert _kernel_names(lambda: gmm(lhs, rhs, sizes, interpret=True)) == [
      "sparsejax_gmm_gpu"]
  assert _kernel_names(lambda: gmm(lhs, rhs, sizes, implementation="xla")) == []


@pytest.mark.parametrize("tiling", [(8, 16, 16), (16, 48, 16), (16, 16),
                                    (16, 16, 0)])
def test_bad_gpu_tiling_names_argument(tiling):
  with pytest.raises(ValueError, match="tiling"):
    gmm(jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([4, 4], jnp.int32),
        tiling=tiling, implementation="pallas_gpu")
  # The TPU rule's tiles are GPU tiles too.
  gmm(jnp.ones((8, 4)), jnp.ones((2, 4, 4)), jnp.array([4, 4], jnp.int32),
      tiling=(128, 128, 128), implementation="pallas_gpu", interpret=True)
