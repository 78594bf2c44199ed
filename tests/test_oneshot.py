# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Wanda, SparseGPT and the model driver against NumPy and the OBS formula."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj


def _np_keep_per_column(scores, keep):
  out = np.zeros(scores.shape, bool)
  for j in range(scores.shape[1]):
    out[np.argsort(-scores[:, j], kind="stable")[:keep], j] = True
  return out


def _np_n_m_rows(scores, n, m):
  out = np.zeros(scores.shape, bool)
  for g in range(scores.shape[0] // m):
    for j in range(scores.shape[1]):
      top = np.argsort(-scores[g * m:(g + 1) * m, j], kind="stable")[:n]
      out[g * m + top, j] = True
  return out


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(din=st.sampled_from([8, 12, 16]), dout=st.integers(1, 6),
                  sparsity=st.sampled_from([0.25, 0.5, 0.7, 0.9]),
                  seed=st.integers(0, 2**16))
def test_wanda_keeps_target_per_output_and_matches_numpy(din, dout, sparsity,
                                                         seed):
  rng = np.random.default_rng(seed)
  w = rng.standard_normal((din, dout)).astype(np.float32)
  x = (rng.standard_normal((20, din)) * rng.lognormal(0, 1, din)).astype(
      np.float32)
  mask = np.asarray(sj.wanda(w, x, sparsity))
  keep = int(np.round((1 - sparsity) * din))
  assert (mask.sum(axis=0) == keep).all()
  scores = np.abs(w) * np.sqrt((x.astype(np.float64) ** 2).sum(0))[:, None]
  np.testing.assert_array_equal(mask, _np_keep_per_column(scores, keep))


def test_wanda_equal_norms_is_magnitude_per_output():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((32, 10)).astype(np.float32)
  # +-1 entries: every input feature has norm sqrt(tokens).
  x = rng.choice([-1.0, 1.0], size=(50, 32)).astype(np.float32)
  for sparsity in (0.5, 0.75):
    keep = int(np.round((1 - sparsity) * 32))
    np.testing.assert_array_equal(sj.wanda(w, x, sparsity),
                                  _np_keep_per_column(np.abs(w), keep))
  np.testing.assert_array_equal(sj.wanda(w, x, (2, 4)),
                                _np_n_m_rows(np.abs(w), 2, 4))


def test_wanda_n_m():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((16, 5)).astype(np.float32)
  x = (rng.standard_normal((40, 16)) * rng.lognormal(0, 1, 16)).astype(
      np.float32)
  mask = np.asarray(sj.wanda(w, x, (2, 4)))
  assert (mask.reshape(4, 4, 5).sum(1) == 2).all()
  scores = np.abs(w) * np.linalg.norm(x.astype(np.float64), axis=0)[:, None]
  np.testing.assert_array_equal(mask, _np_n_m_rows(scores, 2, 4))


def _hessian(x, percdamp):
  x = np.asarray(x, np.float64)
  h = 2.0 / x.shape[0] * x.T @ x
  return h + percdamp * np.mean(np.diag(h)) * np.eye(h.shape[0])


@pytest.mark.parametrize("percdamp", [0.0, 0.01])
def test_sparsegpt_single_weight_is_obs(percdamp):
  rng = np.random.default_rng(2)
  din, dout = 10, 4
  w = rng.standard_normal((din, dout)).astype(np.float32)
  x = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, din))
       + 0.3 * rng.standard_normal((200, din))).astype(np.float32)
  hinv = np.linalg.inv(_hessian(x, percdamp))
  q, j = 0, 2  # prune input 0 of output 2
  mask = np.ones((din, dout), bool)
  mask[q, j] = False
  new, got_mask = sj.sparsegpt(w, x, 0.1, percdamp=percdamp, mask=mask)
  np.testing.assert_array_equal(got_mask, mask)
  expected = w.astype(np.float64).copy()
  expected[:, j] += -(w[q, j] / hinv[q, q]) * hinv[:, q]
  np.testing.assert_allclose(new, expected, rtol=2e-4, atol=2e-5)
  assert new[q, j] == 0
  # A later column: the OBS update over the columns not yet processed
  # (those before it are fixed), i.e. with the inverse of H[q:, q:].
  q = 6
  mask = np.ones((din, dout), bool)
  mask[q, j] = False
  new, _ = sj.sparsegpt(w, x, 0.1, percdamp=percdamp, mask=mask)
  sub = np.linalg.inv(_hessian(x, percdamp)[q:, q:])
  expected = w.astype(np.float64).copy()
  expected[q:, j] += -(w[q, j] / sub[0, 0]) * sub[:, 0]
  np.testing.assert_allclose(new, expected, rtol=2e-4, atol=2e-5)


def _synthetic_layer(seed, din=64, dout=32, tokens=512, rank=8):
  """Correlated features (low rank plus noise) with heavy-tailed norms."""
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((tokens, rank))
  x = z @ rng.standard_normal((rank, din)) + 0.1 * rng.standard_normal(
      (tokens, din))
  x *= rng.pareto(1.5, din) + 0.1  # heavy-tailed feature scales
  w = rng.standard_normal((din, dout))
  return w.astype(np.float32), x.astype(np.float32)


def _error(x, w, w_new):
  x = np.asarray(x, np.float64)
  return float(np.sum((x @ (np.asarray(w, np.float64)
                            - np.asarray(w_new, np.float64))) ** 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sparsity", [0.5, 0.75, (2, 4)])
def test_reconstruction_error_ordering(seed, sparsity):
  w, x = _synthetic_layer(seed)
  if isinstance(sparsity, tuple):
    mag = np.asarray(sj.masks.n_m(w, 2, 4))
  else:
    mag = np.asarray(sj.masks.magnitude(w, sparsity))
  wanda = np.asarray(sj.wanda(w, x, sparsity))
  new, mask = sj.sparsegpt(w, x, sparsity, blocksize=32)
  e_mag = _error(x, w, np.where(mag, w, 0))
  e_wanda = _error(x, w, np.where(wanda, w, 0))
  e_gpt = _error(x, w, new)
  assert e_gpt <= e_wanda <= e_mag
  # The same number of kept weights for all three.
  assert int(mask.sum()) == int(wanda.sum()) == int(mag.sum())


def test_sparsegpt_masks_are_exact():
  w, x = _synthetic_layer(3, din=48, dout=8)
  new, mask = sj.sparsegpt(w, x, (2, 4), blocksize=16)
  assert (np.asarray(mask).reshape(12, 4, 8).sum(1) == 2).all()
  np.testing.assert_array_equal(np.asarray(new) != 0, mask)
  new, mask = sj.sparsegpt(w, x, 0.75, blocksize=16)
  # Every block of 16 inputs keeps round(0.25 * 16 * 8) = 32 weights.
  assert (np.asarray(mask).reshape(3, 16, 8).sum((1, 2)) == 32).all()
  assert int((np.asarray(new) != 0).sum()) == 96
  # A dead input (zero on every token) is pruned.
  x0 = np.array(x)
  x0[:, 5] = 0
  new, mask = sj.sparsegpt(w, x0, 0.5, blocksize=16)
  assert not np.asarray(mask)[5].any()


def test_bad_input():
  w = jnp.ones((8, 4))
  x = jnp.ones((3, 8))
  with pytest.raises(ValueError, match="sparsity"):
    sj.wanda(w, x, 1.0)
  with pytest.raises(ValueError, match="sparsity"):
    sj.wanda(w, x, (2, 4, 1))
  with pytest.raises(ValueError, match="`x`"):
    sj.wanda(w, jnp.ones((3, 7)), 0.5)
  with pytest.raises(ValueError, match="divide"):
    sj.sparsegpt(jnp.ones((6, 4)), jnp.ones((3, 6)), (2, 4))
  with pytest.raises(ValueError, match="blocksize"):
    sj.sparsegpt(w, x, (2, 4), blocksize=6)
  with pytest.raises(ValueError, match="mask"):
    sj.sparsegpt(w, x, 0.5, mask=jnp.ones((8, 4)))


def _mlp_data():
  rng = np.random.default_rng(4)
  z = rng.standard_normal((128, 4))
  x = (z @ rng.standard_normal((4, 16)) + 0.1 * rng.standard_normal(
      (128, 16))).astype(np.float32)
  return [x[:64], x[64:]]


def test_driver_nnx_is_sequential():
  nnx = pytest.importorskip("flax.nnx")

  class MLP(nnx.Module):

    def __init__(self):
      self.fc1 = nnx.Linear(16, 32, rngs=nnx.Rngs(0))
      self.fc2 = nnx.Linear(32, 8, rngs=nnx.Rngs(1))
      self.head = nnx.Linear(8, 4, rngs=nnx.Rngs(2))

    def __call__(self, x):
      return self.head(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x)))))

  model = MLP()
  w1, b1 = np.asarray(model.fc1.kernel[...]), np.asarray(model.fc1.bias[...])
  w2 = np.asarray(model.fc2.kernel[...])
  head = np.asarray(model.head.kernel[...])
  batches = _mlp_data()
  result = sj.prune_model(model, batches, method="sparsegpt", sparsity=0.5,
                          where="^fc", blocksize=16)
  assert result.layers == ("fc1", "fc2")
  x = np.concatenate(batches)
  # Independent: layer 1 with the raw inputs, layer 2 with the inputs that
  # the pruned layer 1 produces.
  p1, m1 = sj.sparsegpt(w1, x, 0.5, blocksize=16)
  h = np.maximum(x @ np.asarray(p1) + b1, 0)
  p2, m2 = sj.sparsegpt(w2, h, 0.5, blocksize=16)
  np.testing.assert_allclose(model.fc1.kernel[...], p1, rtol=1e-6)
  np.testing.assert_allclose(model.fc2.kernel[...], p2, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(model.head.kernel[...], head)
  np.testing.assert_array_equal(result.masks["fc1"]["kernel"], m1)
  np.testing.assert_array_equal(result.masks["fc2"]["kernel"], m2)
  assert result.masks["head"]["kernel"] is None
  assert result.masks["fc1"]["bias"] is None
  np.testing.assert_allclose(result.params["fc2"]["kernel"], p2, rtol=1e-4,
                             atol=1e-6)


def test_driver_linen_is_sequential():
  nn = pytest.importorskip("flax.linen")

  class MLP(nn.Module):

    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(32)(x))
      return nn.Dense(4, name="head")(x)

  module = MLP()
  batches = _mlp_data()
  variables = module.init(jax.random.key(0), batches[0])
  result = sj.prune_model(module, batches, variables=variables,
                          method="wanda", sparsity=(2, 4))
  assert result.layers == ("Dense_0", "head")
  x = np.concatenate(batches)
  params = variables["params"]
  m1 = sj.wanda(params["Dense_0"]["kernel"], x, (2, 4))
  k1 = np.where(m1, params["Dense_0"]["kernel"], 0)
  h = np.maximum(x @ k1 + np.asarray(params["Dense_0"]["bias"]), 0)
  m2 = sj.wanda(params["head"]["kernel"], h, (2, 4))
  new = result.params["params"]
  np.testing.assert_array_equal(new["Dense_0"]["kernel"], k1)
  np.testing.assert_array_equal(result.masks["params"]["head"]["kernel"], m2)
  np.testing.assert_array_equal(
      new["head"]["kernel"], np.where(m2, params["head"]["kernel"], 0))
  assert result.masks["params"]["head"]["bias"] is None
  # The original variables are left untouched.
  assert int((variables["params"]["head"]["kernel"] == 0).sum()) == 0


def test_driver_bad_input():
  nnx = pytest.importorskip("flax.nnx")
  model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="method"):
    sj.prune_model(model, jnp.ones((2, 4)), method="obs", sparsity=0.5)
  with pytest.raises(ValueError, match="no batch"):
    sj.prune_model(model, [], method="wanda", sparsity=0.5)
  with pytest.raises(ValueError, match="variables"):
    sj.prune_model(model, jnp.ones((2, 4)), method="wanda", sparsity=0.5,
                   variables={})
  with pytest.raises(ValueError, match="layer ''"):
    sj.prune_model(model, jnp.ones((2, 4)), method="wanda", sparsity=(2, 3))
  with pytest.raises(ValueError, match="`model`"):
    sj.prune_model(lambda x: x, jnp.ones((2, 4)), method="wanda",
                   sparsity=0.5)
