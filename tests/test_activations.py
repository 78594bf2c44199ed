# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of sparsejax.activations against NumPy and hand-worked values."""

import math
from statistics import NormalDist

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import activations as act

_SETTINGS = dict(max_examples=10, deadline=None)


def _np_topk_mask(x, k, axis):
  """Reference: stable argsort of -|x| keeps the lowest index on ties."""
  xm = np.moveaxis(np.abs(x), axis, -1)
  order = np.argsort(-xm, axis=-1, kind="stable")[..., :k]
  mask = np.zeros(xm.shape, bool)
  np.put_along_axis(mask, order, True, axis=-1)
  return np.moveaxis(mask, -1, axis)


# ---------------------------------------------------------------- topk


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    data=st.data(),
    ties=st.booleans(),
)
def test_topk_matches_numpy_and_keeps_exactly_k(shape, data, ties):
  axis = data.draw(st.integers(-len(shape), len(shape) - 1))
  k = data.draw(st.integers(0, shape[axis]))
  rng = np.random.default_rng(sum(shape) + k)
  x = rng.normal(size=shape).astype(np.float32)
  if ties:  # Few distinct magnitudes and both signs: many ties.
    x = np.round(x).astype(np.float32)
  mask = np.asarray(act.topk_mask(jnp.asarray(x), k, axis=axis))
  np.testing.assert_array_equal(mask.sum(axis=axis), k)
  np.testing.assert_array_equal(mask, _np_topk_mask(x, k, axis))
  y = np.asarray(act.topk(jnp.asarray(x), k, axis=axis))
  np.testing.assert_array_equal(y, np.where(mask, x, 0))


def test_topk_tie_break_is_lowest_index():
  x = jnp.array([[2., -2., 2., 1.], [0., 0., 0., 0.]])
  np.testing.assert_array_equal(
      act.topk_mask(x, 2), [[True, True, False, False],
                            [True, True, False, False]])


def test_topk_gradients():
  x = jax.random.normal(jax.random.key(0), (3, 10))
  g = jax.random.normal(jax.random.key(1), (3, 10))
  mask = np.asarray(act.topk_mask(x, 4))
  _, vjp = jax.vjp(lambda v: act.topk(v, 4), x)
  np.testing.assert_allclose(vjp(g)[0], np.where(mask, g, 0))
  # STE: the op's Jacobian is the identity, so any loss's gradient through
  # it is the dense gradient of the loss at the op's output.
  _, vjp_ste = jax.vjp(lambda v: act.topk(v, 4, ste=True), x)
  np.testing.assert_array_equal(vjp_ste(g)[0], g)
  jac = jax.jacobian(lambda v: act.topk(v, 2, ste=True))(x[0])
  np.testing.assert_array_equal(jac, np.eye(10))
  loss = lambda y: jnp.sum(jnp.sin(y) * y)
  y = act.topk(x, 4)
  np.testing.assert_allclose(
      jax.grad(lambda v: loss(act.topk(v, 4, ste=True)))(x),
      jax.grad(loss)(y), rtol=1e-6)
  # The STE forward value is exactly the masked value.
  np.testing.assert_array_equal(act.topk(x, 4, ste=True), y)


def test_topk_under_jit_and_bfloat16():
  x = jax.random.normal(jax.random.key(2), (5, 64)).astype(jnp.bfloat16)
  y = jax.jit(lambda v: act.topk(v, 7, ste=True))(x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.sum(np.asarray(y) != 0, axis=-1), 7)


@pytest.mark.parametrize("k", [-1, 5, 2.0, True])
def test_topk_rejects_bad_k(k):
  with pytest.raises(ValueError, match="k must"):
    act.topk(jnp.ones((2, 4)), k)


def test_topk_rejects_bad_axis():
  with pytest.raises(ValueError, match="axis"):
    act.topk(jnp.ones((2, 4)), 1, axis=2)


# ---------------------------------------------------------- statistical


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_statistical_topk_realises_target_on_gaussian(sparsity):
  x = jax.random.normal(jax.random.key(3), (32, 4096)) * 3.0 + 1.5
  y = act.statistical_topk(x, sparsity)
  realised = float(jnp.mean(y == 0))
  assert abs(realised - sparsity) < 0.01
  # Every row separately, too.
  per_row = np.asarray(jnp.mean(y == 0, axis=-1))
  assert np.all(np.abs(per_row - sparsity) < 0.03)


def test_statistical_topk_matches_formula():
  x = np.random.default_rng(0).normal(size=(4, 33)).astype(np.float32)
  s = 0.7
  cutoff = (x.mean(-1, keepdims=True)
            + x.std(-1, keepdims=True) * NormalDist().inv_cdf(s))
  np.testing.assert_allclose(act.statistical_topk(x, s),
                             np.maximum(x - cutoff, 0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(act.statistical_topk(x, s, hard=True),
                             np.where(x > cutoff, x, 0), rtol=1e-6)
  # Along another axis.
  np.testing.assert_allclose(
      act.statistical_topk(x.T, s, axis=0),
      np.maximum(x - cutoff, 0).T, rtol=1e-5, atol=1e-5)
  # Traced sparsity under jit.
  np.testing.assert_allclose(
      jax.jit(act.statistical_topk)(x, jnp.float32(s)),
      np.maximum(x - cutoff, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_statistical_topk_misses_target_after_relu(sparsity):
  # The documented failure: ReLU outputs of N(0, 1) pre-activations.
  nd = NormalDist()
  mean = nd.pdf(0)                     # E[relu(z)]
  var = 0.5 - mean ** 2                # E[relu(z)^2] - mean^2
  cutoff = mean + math.sqrt(var) * nd.inv_cdf(sparsity)
  expected = nd.cdf(cutoff)            # P(relu(z) <= cutoff)
  x = jax.nn.relu(jax.random.normal(jax.random.key(4), (64, 4096)))
  realised = float(jnp.mean(act.statistical_topk_mask(x, sparsity) == 0))
  assert abs(realised - expected) < 0.005
  assert abs(realised - sparsity) > 0.02   # it does not hit the target


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, float("nan")])
def test_statistical_topk_rejects_bad_sparsity(sparsity):
  with pytest.raises(ValueError, match="sparsity"):
    act.statistical_topk(jnp.ones((2, 4)), sparsity)


# ------------------------------------------------- threshold/calibrate


def test_threshold_matches_numpy():
  x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
  np.testing.assert_array_equal(act.threshold(x, 0.5),
                                np.where(np.abs(x) > 0.5, x, 0))
  t = np.array([0., 0.5, 1., 2., 10.], np.float32)
  np.testing.assert_array_equal(act.threshold(x, t),
                                np.where(np.abs(x) > t, x, 0))
  np.testing.assert_array_equal(act.threshold(x.T, t, axis=0),
                                np.where(np.abs(x) > t, x, 0).T)
  g = jax.grad(lambda v: act.threshold(v, 0.5).sum())(jnp.asarray(x))
  np.testing.assert_array_equal(g, (np.abs(x) > 0.5).astype(np.float32))


def test_threshold_rejects_wrong_shape():
  with pytest.raises(ValueError, match="t must"):
    act.threshold(jnp.ones((3, 4)), jnp.ones(3))


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(
    sparsity=st.floats(0.0, 0.99),
    rows=st.integers(1, 50),
    d=st.integers(1, 40),
    seed=st.integers(0, 2 ** 16),
)
def test_calibrated_threshold_realises_target(sparsity, rows, d, seed):
  x = np.random.default_rng(seed).standard_t(3, size=(rows, d))
  x = x.astype(np.float32)
  n = x.size
  t = act.calibrate(jnp.asarray(x), sparsity)
  assert t.shape == ()
  realised = np.mean(np.abs(x) <= float(t)) if round(sparsity * n) else 0.0
  assert abs(realised - sparsity) <= 0.5 / n + 1e-9
  # Per channel: every channel hits the target over its `rows` samples.
  tc = np.asarray(act.calibrate(jnp.asarray(x), sparsity, per="channel"))
  assert tc.shape == (d,)
  m = int(math.floor(sparsity * rows + 0.5))
  per_channel = np.sum(np.abs(x) <= tc, axis=0) if m else np.zeros(d)
  np.testing.assert_array_equal(per_channel, m)


def test_calibrate_resolution_and_ties():
  # 1000 distinct values: sparsity 0.3 zeroes exactly 300 of them.
  x = np.random.default_rng(2).permutation(np.arange(1, 1001)).astype(
      np.float32).reshape(100, 10)
  t = act.calibrate(x, 0.3)
  assert float(t) == 300.0
  assert int(jnp.sum(act.threshold(x, t) == 0)) == 300
  # Inputs that are already half zeros keep them: more sparsity than asked.
  z = np.where(np.arange(1000) % 2 == 0, 0., x.ravel()).reshape(100, 10)
  t = act.calibrate(z, 0.2)
  assert float(t) == 0.0
  assert int(jnp.sum(act.threshold(z, t) == 0)) == 500


def test_calibrate_wina_matches_numpy_scores():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(200, 16)).astype(np.float32)
  w = rng.normal(size=(16, 8)).astype(np.float32) * rng.uniform(
      0.1, 3., size=(16, 1)).astype(np.float32)
  w[5] = 0.0   # a channel the output never reads: always dropped
  s = 0.6
  t = np.asarray(act.calibrate(x, s, score="wina", weight=w))
  assert t.shape == (16,) and np.isinf(t[5])
  scores = np.abs(x) * np.linalg.norm(w, axis=1)
  cut = np.sort(scores.ravel())[round(s * scores.size) - 1]
  expected = scores > cut
  got = np.abs(x) > t
  assert np.sum(got != expected) <= 1     # a rounding tie at most
  assert abs(np.mean(~got) - s) <= 1.5 / scores.size
  # The per-tensor magnitude rule keeps a different set.
  tm = act.calibrate(x, s)
  assert np.sum((np.abs(x) > float(tm)) != expected) > 100


def test_calibrate_rejects_bad_arguments():
  x = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="per"):
    act.calibrate(x, 0.5, per="row")
  with pytest.raises(ValueError, match="score"):
    act.calibrate(x, 0.5, score="l2")
  with pytest.raises(ValueError, match="weight"):
    act.calibrate(x, 0.5, score="wina")
  with pytest.raises(ValueError, match="weight"):
    act.calibrate(x, 0.5, score="wina", weight=jnp.ones((4, 2)))
  with pytest.raises(ValueError, match="sparsity"):
    act.calibrate(x, 1.0)


# ----------------------------------------------------- greedy allocation


def test_greedy_allocation_hand_worked():
  # Worked by hand: (0,0) -> (.25,0) -> (.5,0) -> (.5,.25) -> (.75,.25),
  # two candidates per round.
  calls = []

  def err(s):
    calls.append(s)
    return s[0] ** 2 + 4 * s[1] ** 2

  assert act.greedy_allocation(err, [1, 1], 0.5, step=0.25) == (0.75, 0.25)
  assert len(calls) == 8


def test_greedy_allocation_weights_by_size_and_clips():
  # Layer 1 is 3x smaller: its step is 3x larger and it is clipped at 1.
  sizes = [3, 1]
  err = lambda s: 10 * s[0] + s[1]          # layer 1 is cheap to sparsify
  out = act.greedy_allocation(err, sizes, 0.4, step=0.1)
  # By hand: layer 1 takes 0.3, 0.6, 0.9, 1.0 (clipped); layer 0 then
  # takes two steps of 0.1 and (3 * 0.2 + 1) / 4 = 0.4.
  np.testing.assert_allclose(out, (0.2, 1.0), atol=1e-9)
  assert abs(act.weighted_sparsity(out, sizes) - 0.4) < 1e-9
  with pytest.raises(ValueError, match="target"):
    act.greedy_allocation(err, sizes, 0.9, max_sparsity=0.8)
  with pytest.raises(ValueError, match="sizes"):
    act.greedy_allocation(err, [1, 0], 0.5)


# --------------------------------------------------------- ProSparse


def test_prosparse_schedule_formula():
  peaks, steps = [0.01, 0.05, 0.2], [10, 20, 5]
  sched = act.prosparse_schedule(peaks, steps, init_value=0.001)

  def reference(t):
    lo, start = 0.001, 0
    for peak, n in zip(peaks, steps):
      if t < start + n:
        return lo + (peak - lo) * math.sin(math.pi / 2 * (t - start) / n)
      lo, start = peak, start + n
    return peaks[-1]

  ts = np.arange(0, 50)
  got = jax.jit(jax.vmap(sched))(ts)
  np.testing.assert_allclose(got, [reference(t) for t in ts], rtol=1e-5,
                             atol=1e-8)
  with pytest.raises(ValueError, match="stage_steps"):
    act.prosparse_schedule([1.0], [0])


def test_l1_penalty_and_fatrelu():
  tree = {"a": jnp.array([[1., -2.], [0.5, 1.]]), "b": jnp.array([-4.])}
  assert float(act.l1_penalty(tree)) == pytest.approx(4.5 / 4 + 4.0)
  g = jax.grad(act.l1_penalty)(tree)
  np.testing.assert_allclose(g["a"], np.sign(tree["a"]) / 4)
  np.testing.assert_array_equal(
      act.fatrelu(jnp.array([-1., 0.1, 0.25, 3.]), 0.15), [0., 0., 0.25, 3.])
  with pytest.raises(ValueError, match="threshold"):
    act.fatrelu(jnp.ones(2), -1.0)


# ---------------------------------------------------------- measuring


def test_measurement():
  x = jnp.array([[0., 1., 0., 2.], [3., 0., 0., 0.]])
  s = act.activation_sparsity({"h": x, "d": jnp.ones(5)})
  assert float(s["h"]) == 0.625 and float(s["d"]) == 0.0
  f = act.sparse_input_flops(x, jax.ShapeDtypeStruct((4, 7), jnp.float32))
  assert float(f.dense) == 2 * 2 * 4 * 7
  assert float(f.sparse) == 2 * 3 * 7
  assert float(f.skipped) == 2 * 5 * 7
  with pytest.raises(ValueError, match="weight"):
    act.sparse_input_flops(x, jnp.ones((3, 7)))


def test_sharded_rows_keep_their_sharding():
  # Rows sharded over the 8 CPU devices: every rule is row-local.
  mesh = jax.make_mesh((8,), ("batch",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      "batch"))
  x = jax.random.normal(jax.random.key(5), (16, 64))
  xs = jax.device_put(x, sharding)
  fns = {
      "topk": lambda v: act.topk(v, 8),
      "statistical": lambda v: act.statistical_topk(v, 0.8),
      "threshold": lambda v: act.threshold(v, 0.5),
  }
  for name, fn in fns.items():
    y = jax.jit(fn)(xs)
    np.testing.assert_array_equal(y, fn(x), err_msg=name)
    assert y.sharding.is_equivalent_to(sharding, 2), name
