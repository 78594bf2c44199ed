# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""DST-EE against a NumPy reference of its rule, and a hand-worked case."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _top(scores, k):
  """Bool mask of the ``k`` highest scores, ties to the lower index."""
  flat = scores.ravel()
  order = np.argsort(-flat, kind="stable")
  out = np.zeros(flat.size, bool)
  out[order[:k]] = True
  return out.reshape(scores.shape)


def _reference_update(w, g, m, steps, t, c, fraction):
  """One DST-EE mask update of one leaf (NumPy, float32 scores)."""
  nnz = int(m.sum())
  n = math.floor(np.float32(fraction) * np.float32(nnz) + 1e-3)
  kept = _top(np.where(m, np.abs(w), -np.inf), nnz - n)
  bonus = np.float32(c) * np.sqrt(
      np.float32(math.log(max(t, 1))) / (steps + np.float32(1.0)))
  grow = np.where(kept, -np.inf, np.abs(g).astype(np.float32) + bonus)
  return kept | _top(grow, n)


def _cosine(alpha, end, t):
  return 0.0 if t >= end else 0.5 * alpha * (1 + math.cos(math.pi * t / end))


@pytest.mark.parametrize("exploration", [
    pytest.param(0.0, marks=pytest.mark.slow), 0.05])
def test_masks_match_numpy_reference(exploration):
  shapes = {"a": (12, 8), "b": (8, 6)}
  end, every, alpha = 12, 2, 0.5
  tx = sj.dst_ee(optax.sgd(0.1), sparsity=0.75, end_step=end,
                 update_every=every, drop_fraction=alpha,
                 exploration=exploration, distribution="uniform", seed=3)
  rng = np.random.default_rng(0)
  params = {k: jnp.asarray(rng.normal(size=s), jnp.float32)
            for k, s in shapes.items()}
  state = tx.init(params)
  masks = {k: np.asarray(v) for k, v in sj.get_masks(state).items()}
  steps = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
  last = 0
  update = jax.jit(tx.update)
  for t in range(end + 2):
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) * masks[k]
              for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.normal(size=s) * 0.01, jnp.float32)
             for k, s in shapes.items()}
    _, state = update(grads, state, params)
    if t % every == 0 and t <= end:
      for k in shapes:
        steps[k] = steps[k] + np.float32(t - last) * masks[k]
        masks[k] = _reference_update(
            np.asarray(params[k]), np.asarray(grads[k]), masks[k], steps[k],
            t, exploration, _cosine(alpha, end, t))
      last = t
    got = sj.get_masks(state)
    for k in shapes:
      np.testing.assert_array_equal(np.asarray(got[k]), masks[k],
                                    err_msg=f"{k} at step {t}")
      assert got[k].sum() == 0.25 * np.prod(shapes[k])


def test_bonus_grows_the_never_active_unit():
  """Equal gradients: the exploration bonus breaks the tie toward the unit
  that has never been active, where RigL takes the lowest index."""
  w = jnp.asarray([[0.0, 0.0, 3.0, 0.1]])  # active: 2 and 3 (|w| > 0)
  masks = {"w": jnp.asarray([[True, False, True, True]])}
  grads = {"w": jnp.ones((1, 4))}

  def masks_after(exploration):
    tx = sj.dst_ee(optax.sgd(0.0), sparsity=0.25, end_step=100,
                   update_every=5, begin_step=0,
                   drop_fraction=optax.constant_schedule(1 / 3),
                   exploration=exploration, distribution="uniform")
    state = tx.init({"w": w})
    # Start from the masks above: unit 0 has been active, unit 1 never.
    state = state._replace(masks=masks)
    for _ in range(6):  # updates at steps 0 and 5
      _, state = tx.update(grads, state, {"w": w * masks["w"]})
    return np.asarray(sj.get_masks(state)["w"])[0]

  # Step 0 (no bonus: ln 1 = 0) drops unit 0 (|w| = 0, lowest) and regrows
  # the lowest-index tie, unit 0 itself. At step 5 the bonus of unit 0
  # (active 5 steps) is smaller than that of unit 1 (never active).
  np.testing.assert_array_equal(masks_after(0.0), [True, False, True, True])
  np.testing.assert_array_equal(masks_after(1.0), [False, True, True, True])


def test_bad_exploration():
  with pytest.raises(ValueError, match="exploration"):
    sj.dst_ee(optax.sgd(0.1), sparsity=0.5, end_step=10, exploration=-1.0)
