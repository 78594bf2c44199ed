# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""SNIP, GraSP and SynFlow against NumPy and hand-derived scores."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.oneshot import _at_init as init_pruning


def _np_global_topk(scores, k):
  """Masks of the k largest scores over a dict of arrays (stable order)."""
  names = sorted(scores)
  flat = np.concatenate([np.asarray(scores[n], np.float64).ravel()
                         for n in names])
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(-flat, kind="stable")[:k]] = True
  out, start = {}, 0
  for n in names:
    size = np.size(scores[n])
    out[n] = keep[start:start + size].reshape(np.shape(scores[n]))
    start += size
  return out


def _mlp():
  k = jax.random.split(jax.random.key(0), 4)
  params = {
      "w1": jax.random.normal(k[0], (12, 20)) / np.sqrt(12),
      "b1": jnp.zeros(20),
      "w2": jax.random.normal(k[1], (20, 5)) / np.sqrt(20),
      "b2": jnp.zeros(5),
  }
  x = jax.random.normal(k[2], (16, 12))
  y = jax.random.randint(k[3], (16,), 0, 5)

  def loss_fn(p, batch):
    x, y = batch
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    logits = h @ p["w2"] + p["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return params, (x, y), loss_fn


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_snip_matches_numpy_topk(sparsity):
  params, batch, loss_fn = _mlp()
  masks = sj.snip(loss_fn, params, batch, sparsity)
  assert masks["b1"] is None and masks["b2"] is None
  # Independent gradient: the MLP written out in NumPy.
  x, y = (np.asarray(a) for a in batch)
  w1, w2 = np.asarray(params["w1"], np.float64), np.asarray(params["w2"],
                                                            np.float64)
  pre = x @ w1
  h = np.maximum(pre, 0)
  logits = h @ w2
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  d = p.copy()
  d[np.arange(len(y)), y] -= 1
  d /= len(y)
  g2 = h.T @ d
  g1 = x.T @ ((d @ w2.T) * (pre > 0))
  scores = {"w1": np.abs(g1 * w1), "w2": np.abs(g2 * w2)}
  k = int(np.round((1 - sparsity) * (w1.size + w2.size)))
  expected = _np_global_topk(scores, k)
  for n in ("w1", "w2"):
    np.testing.assert_array_equal(masks[n], expected[n])


def test_snip_feeds_static_sparse():
  params, batch, loss_fn = _mlp()
  masks = sj.snip(loss_fn, params, batch, 0.8)
  tx = sj.static_sparse(optax.sgd(0.1), masks=masks)
  state = tx.init(params)
  grads = jax.grad(loss_fn)(params, batch)
  updates, state = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  nnz = int((new["w1"] != 0).sum() + (new["w2"] != 0).sum())
  assert nnz == int(masks["w1"].sum() + masks["w2"].sum()) == 68


def test_grasp_matches_hessian_gradient_product():
  # Quadratic loss: L = 0.5 * ||X W||^2, so g = X^T X W and Hg = X^T X g.
  w = jax.random.normal(jax.random.key(3), (6, 3))
  x = jax.random.normal(jax.random.key(4), (10, 6))
  loss_fn = lambda p, x: 0.5 * jnp.sum((x @ p["w"]) ** 2)
  masks = sj.grasp(loss_fn, {"w": w}, x, 0.5)
  xtx = np.asarray(x, np.float64).T @ np.asarray(x, np.float64)
  wn = np.asarray(w, np.float64)
  hg = xtx @ (xtx @ wn)
  score = -wn * hg
  # Remove the 9 highest scores, keep the 9 lowest.
  expected = _np_global_topk({"w": -score}, 9)["w"]
  np.testing.assert_array_equal(masks["w"], expected)


def test_synflow_score_two_layer_linear_net():
  k1, k2 = jax.random.split(jax.random.key(5))
  w1 = jax.random.normal(k1, (5, 7))
  w2 = jax.random.normal(k2, (7, 3))
  params = {"w1": w1, "w2": w2}
  apply_fn = lambda p, x: x @ p["w1"] @ p["w2"]
  a1, a2 = np.abs(np.asarray(w1, np.float64)), np.abs(np.asarray(w2,
                                                                 np.float64))
  # R = 1^T |W1| |W2| 1: dR/dW1[i, j] = sum_k |W2|[j, k],
  # dR/dW2[j, k] = sum_i |W1|[i, j]; the score is (dR/dtheta) * theta.
  s1 = a1 * a2.sum(axis=1)[None, :]
  s2 = a1.sum(axis=0)[:, None] * a2
  live = {"w1": w1, "w2": w2}
  masks = {"w1": jnp.ones((5, 7), bool), "w2": jnp.ones((7, 3), bool)}
  got = init_pruning._synflow_scores(apply_fn, params, live, masks,
                                     jnp.ones((1, 5)))
  np.testing.assert_allclose(got["w1"], s1, rtol=1e-5)
  np.testing.assert_allclose(got["w2"], s2, rtol=1e-5)
  one_shot = sj.synflow(apply_fn, params, (1, 5), 0.7, iterations=1)
  expected = _np_global_topk({"w1": s1, "w2": s2}, 17)
  for n in ("w1", "w2"):
    np.testing.assert_array_equal(one_shot[n], expected[n])


def test_synflow_iterative_rescoring_and_budget():
  k1, k2 = jax.random.split(jax.random.key(6))
  params = {"w1": jax.random.normal(k1, (5, 7)),
            "w2": jax.random.normal(k2, (7, 3))}
  apply_fn = lambda p, x: x @ p["w1"] @ p["w2"]
  masks = sj.synflow(apply_fn, params, (1, 5), 0.8, iterations=2)
  # Round 1 keeps round(56 * 0.2 ** 0.5) = 25 by the dense scores, round 2
  # rescores with the pruned weights removed and keeps 11 of those.
  a1 = np.abs(np.asarray(params["w1"], np.float64))
  a2 = np.abs(np.asarray(params["w2"], np.float64))
  m = _np_global_topk({"w1": a1 * a2.sum(1)[None], "w2": a1.sum(0)[:, None]
                       * a2}, 25)
  b1, b2 = a1 * m["w1"], a2 * m["w2"]
  s = {"w1": np.where(m["w1"], b1 * b2.sum(1)[None], -1.0),
       "w2": np.where(m["w2"], b1.sum(0)[:, None] * b2, -1.0)}
  expected = _np_global_topk(s, 11)
  for n in ("w1", "w2"):
    np.testing.assert_array_equal(masks[n], expected[n])


def test_synflow_avoids_layer_collapse():
  # A narrow bottleneck layer: one-shot global magnitude pruning at high
  # sparsity would empty it; SynFlow keeps a path through every layer.
  k = jax.random.split(jax.random.key(7), 3)
  params = {"w1": jax.random.normal(k[0], (64, 64)) * 0.1,
            "w2": jax.random.normal(k[1], (64, 4)) * 0.01,
            "w3": jax.random.normal(k[2], (4, 64)) * 0.1}
  apply_fn = lambda p, x: jax.nn.relu(jax.nn.relu(x @ p["w1"]) @ p["w2"]) @ (
      p["w3"])
  magnitude = sj.masks.magnitude(params, 0.99, scope="global")
  assert int(magnitude["w2"].sum()) == 0  # collapsed
  masks = sj.synflow(apply_fn, params, (1, 64), 0.99, iterations=10)
  for n in ("w1", "w2", "w3"):
    assert int(masks[n].sum()) > 0
  assert sum(int(m.sum()) for m in masks.values()) == 46


def test_bad_input():
  params, batch, loss_fn = _mlp()
  with pytest.raises(ValueError, match="sparsity"):
    sj.snip(loss_fn, params, batch, 1.0)
  with pytest.raises(ValueError, match="scalar"):
    sj.snip(lambda p, b: p["w1"], params, batch, 0.5)
  with pytest.raises(ValueError, match="iterations"):
    sj.synflow(lambda p, x: x, params, (1, 12), 0.5, iterations=0)
  with pytest.raises(ValueError, match="selects no leaf"):
    sj.grasp(loss_fn, params, batch, 0.5, where="nothing")
