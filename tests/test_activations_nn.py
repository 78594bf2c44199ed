# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of the activation-sparsity NNX layers against direct computation."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import nn as sjnn


def _silu(a):
  return a / (1 + np.exp(-a))


def test_topk_and_statistical_layers():
  x = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
  y = np.asarray(sjnn.TopK(5)(jnp.asarray(x)))
  np.testing.assert_array_equal(np.sum(y != 0, axis=-1), 5)
  kept = np.abs(x) >= np.sort(np.abs(x), axis=-1)[:, -5:-4]
  np.testing.assert_array_equal(y, np.where(kept, x, 0))
  layer = sjnn.TopK(3, ste=True)
  g = nnx.grad(lambda m, v: jnp.sum(m(v) * jnp.arange(16.)), argnums=1)(
      layer, jnp.asarray(x))
  np.testing.assert_array_equal(g, np.broadcast_to(np.arange(16.), x.shape))
  cutoff = x.mean(-1, keepdims=True) + x.std(-1, keepdims=True) * 0.0
  np.testing.assert_allclose(sjnn.StatisticalTopK(0.5)(jnp.asarray(x)),
                             np.maximum(x - cutoff, 0), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="k must"):
    sjnn.TopK(-1)
  with pytest.raises(ValueError, match="sparsity"):
    sjnn.StatisticalTopK(1.0)


class _MLP(nnx.Module):
  """Two thresholded hidden layers; the second is WINA-scored."""

  def __init__(self, rngs):
    self.l1 = nnx.Linear(6, 32, rngs=rngs)
    self.t1 = sjnn.Threshold(32, 0.7)
    self.l2 = nnx.Linear(32, 16, rngs=rngs)
    self.t2 = sjnn.Threshold(16, 0.5, score="wina")
    self.l3 = nnx.Linear(16, 3, rngs=rngs)

  def hidden(self, x):
    h1 = jax.nn.relu(self.l1(x)) + 0.1   # no exact zeros: exact quantiles
    return h1, jnp.tanh(self.l2(self.t1(h1)))

  def __call__(self, x):
    _, h2 = self.hidden(x)
    return self.l3(self.t2(h2, weight=self.l3.kernel[...]))


def test_threshold_calibration_pass():
  model = _MLP(nnx.Rngs(0))
  xs = [jax.random.normal(jax.random.key(i), (50, 6)) for i in range(3)]
  # Uncalibrated thresholds are zero: the model is its dense self.
  dense = [model(x) for x in xs]
  x_all = jnp.concatenate(xs)
  h1_dense, h2_dense = model.hidden(x_all)   # t1 is the identity here

  def run(m, batches):
    for b in batches:
      m(b)

  out = sjnn.calibrate_thresholds(model, run, xs)
  assert set(out) == {("t1",), ("t2",)}
  assert not model.t1.calibrating
  # t1: the exact 70 % order statistic of |h1| over the 150 x 32 samples.
  v = np.sort(np.abs(np.asarray(h1_dense)).ravel())
  assert float(model.t1.threshold[...]) == pytest.approx(
      v[round(0.7 * v.size) - 1])
  realised = np.mean(np.abs(np.asarray(h1_dense)) <= float(
      model.t1.threshold[...]))
  assert abs(realised - 0.7) <= 0.5 / v.size
  # t2 was calibrated on *dense* h2 (t1 recorded, did not threshold).
  w3 = np.asarray(model.l3.kernel[...])
  score = np.abs(np.asarray(h2_dense)) * np.linalg.norm(w3, axis=1)
  cut = np.sort(score.ravel())[round(0.5 * score.size) - 1]
  t2 = np.asarray(model.t2.threshold[...])
  assert t2.shape == (16,)
  mism = np.sum((np.abs(np.asarray(h2_dense)) > t2) != (score > cut))
  assert mism <= 1
  # Thresholds are state but not parameters.
  assert not any("threshold" in str(p) for p, _ in
                 nnx.to_flat_state(nnx.state(model, nnx.Param)))
  assert len(nnx.to_flat_state(
      nnx.state(model, sjnn.ActivationThreshold))) == 2
  # The calibrated model thresholds, and works under nnx.jit.
  y = nnx.jit(lambda m, x: m(x))(model, xs[0])
  assert not np.allclose(y, dense[0])


def test_threshold_errors():
  layer = sjnn.Threshold(4, 0.5, score="wina")
  with pytest.raises(ValueError, match="weight"):
    sjnn.calibrate_thresholds(layer, lambda m: m(jnp.ones((2, 4))))
  with pytest.raises(ValueError, match="features"):
    layer(jnp.ones((2, 5)))
  with pytest.raises(ValueError, match="no Threshold"):
    sjnn.calibrate_thresholds(sjnn.TopK(1), lambda m: None)
  with pytest.raises(ValueError, match="not called"):
    sjnn.calibrate_thresholds(sjnn.Threshold(4, 0.5), lambda m: None)
  with pytest.raises(ValueError, match="per"):
    sjnn.Threshold(4, 0.5, per="row")


def test_gated_ffn_cats():
  ffn = sjnn.GatedFFN(8, 64, cats_sparsity=0.6, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(2), (40, 8))
  wg, wu, wd = (np.asarray(l.kernel[...]) for l in (ffn.gate, ffn.up,
                                                    ffn.down))
  xn = np.asarray(x, np.float64)
  gate = _silu(xn @ wg)
  # Before calibration: the dense SwiGLU block.
  np.testing.assert_allclose(ffn(x), (gate * (xn @ wu)) @ wd, rtol=1e-4,
                             atol=1e-5)
  sjnn.calibrate_thresholds(ffn, lambda m: m(x))
  t = float(ffn.cats.threshold[...])
  assert abs(np.mean(np.abs(gate) <= t) - 0.6) <= 1 / gate.size
  sparse_gate = np.where(np.abs(gate) > t, gate, 0)
  expected = (sparse_gate * (xn @ wu)) @ wd
  np.testing.assert_allclose(ffn(x), expected, rtol=1e-4, atol=1e-5)
  # The sparse-input kernel for the down projection gives the same result.
  ffn.sparse_kernel = True
  np.testing.assert_allclose(nnx.jit(lambda m, v: m(v))(ffn, x), expected,
                             rtol=1e-4, atol=1e-5)
  # Gradients flow to the weights through the kernel's custom VJP.
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(ffn)
  ffn.sparse_kernel = False
  grads_dense = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(ffn)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_dense)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Dense variant has no threshold layer.
  assert sjnn.GatedFFN(4, 8, cats_sparsity=None, rngs=nnx.Rngs(0)).cats is None
