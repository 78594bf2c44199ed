# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Movement pruning against scores and masks recomputed in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _np_topk(x, k):
  flat = np.asarray(x, np.float64).ravel()
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(-flat, kind="stable")[:k]] = True
  return keep.reshape(np.shape(x))


def _problem(seed=0):
  k = jax.random.split(jax.random.key(seed), 3)
  params = {"w": jax.random.normal(k[0], (8, 6)), "b": jnp.zeros(6)}
  x = jax.random.normal(k[1], (32, 8))
  # A teacher whose first four input rows are 3x the initial weights and
  # the rest 0: training moves the first rows away from zero.
  teacher = jnp.where(jnp.arange(8)[:, None] < 4, 3 * params["w"], 0.0)
  y = x @ teacher + 0.1 * jax.random.normal(k[2], (32, 6))

  def loss(p):
    return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

  return params, loss


def test_hard_scores_and_masks_follow_numpy():
  params, loss = _problem()
  lr, steps, every = 0.05, 7, 3
  schedule = optax.linear_schedule(0.0, 0.5, 6)
  tx = sj.movement_pruning(optax.sgd(lr), sparsity=schedule,
                           update_every=every)
  state = tx.init(params)
  step = jax.jit(tx.update)
  # Reference, in NumPy: scores from the same gradients, masks by top-k of
  # the scores among survivors, pruned weights zeroed, masked SGD.
  w = np.asarray(params["w"], np.float64)
  mask = np.ones_like(w, bool)
  s = np.zeros_like(w)
  for t in range(steps):
    grads = jax.grad(loss)(params)
    g = np.asarray(grads["w"], np.float64)
    s -= g * w
    if t % every == 0:
      keep = int(np.round((1 - float(schedule(t))) * w.size))
      mask = _np_topk(np.where(mask, s, -np.inf), keep)
    w = np.where(mask, w - lr * g, 0.0)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(state.method_state.scores["w"], s, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_array_equal(sj.get_masks(state)["w"], mask)
    np.testing.assert_allclose(params["w"], w, rtol=1e-5, atol=1e-6)
  assert int((params["w"] != 0).sum()) == 24
  assert state.method_state.scores["b"] is None


def test_movement_differs_from_magnitude():
  # Large weights pushed toward zero, small ones pushed away.
  w = jnp.array([[4.0, 3.0, 0.2, 0.1]])
  g = jnp.array([[1.0, 1.0, -1.0, -1.0]])
  params = {"w": w}
  move = sj.movement_pruning(optax.sgd(0.0), sparsity=0.5)
  mag = sj.magnitude_pruning(optax.sgd(0.0), sparsity=0.5)
  u, _ = move.update({"w": g}, move.init(params), params)
  np.testing.assert_array_equal(optax.apply_updates(params, u)["w"],
                                np.float32([[0.0, 0.0, 0.2, 0.1]]))
  u, _ = mag.update({"w": g}, mag.init(params), params)
  np.testing.assert_array_equal(optax.apply_updates(params, u)["w"],
                                np.float32([[4.0, 3.0, 0.0, 0.0]]))


def test_soft_threshold_and_penalty():
  params, loss = _problem(1)
  lr, eta, lam, tau = 0.05, 0.5, 0.5, 0.45
  tx = sj.movement_pruning(optax.sgd(lr), variant="soft", update_every=1,
                           threshold=tau, penalty=lam, score_lr=eta)
  state = tx.init(params)
  step = jax.jit(tx.update)
  w = np.asarray(params["w"], np.float64)
  s = np.zeros_like(w)
  mask = np.ones_like(w, bool)
  for _ in range(6):
    grads = jax.grad(loss)(params)
    g = np.asarray(grads["w"], np.float64)
    sig = 1 / (1 + np.exp(-s))
    s = s - eta * (g * w + lam * sig * (1 - sig))
    mask = mask & (1 / (1 + np.exp(-s)) > tau)
    w = np.where(mask, w - lr * g, 0.0)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(state.method_state.scores["w"], s, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_array_equal(sj.get_masks(state)["w"], mask)
  # The penalty prunes the weights that do not move away from zero: some
  # but not all are gone, mostly in the rows the teacher zeroes.
  assert 0 < int(mask.sum()) < mask.size
  assert mask[:4].sum() > mask[4:].sum()
  np.testing.assert_array_equal(np.asarray(params["w"]) != 0, mask)


def test_bad_args():
  with pytest.raises(ValueError, match="variant"):
    sj.movement_pruning(optax.sgd(0.1), sparsity=0.5, variant="medium")
  with pytest.raises(ValueError, match="sparsity"):
    sj.movement_pruning(optax.sgd(0.1), sparsity=0.5, variant="soft")
  with pytest.raises(ValueError, match="sparsity"):
    sj.movement_pruning(optax.sgd(0.1))
  with pytest.raises(ValueError, match="threshold"):
    sj.movement_pruning(optax.sgd(0.1), variant="soft", threshold=1.5)
