# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""IMP helpers: pruning rates, monotone masks, overrides, rewinding."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _np_keep(x, k):
  flat = np.asarray(x, np.float64).ravel()
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(-flat, kind="stable")[:k]] = True
  return keep.reshape(np.shape(x))


def _params(seed=0):
  k = jax.random.split(jax.random.key(seed), 3)
  return {"fc1": {"kernel": jax.random.normal(k[0], (20, 30)),
                  "bias": jnp.ones(30)},
          "fc2": {"kernel": jax.random.normal(k[1], (30, 10)),
                  "bias": jnp.ones(10)}}


def test_layerwise_rounds_with_output_override():
  masks = None
  expected = {"fc1": np.ones((20, 30), bool), "fc2": np.ones((30, 10), bool)}
  for r in range(1, 6):
    # New weights every round, as after retraining.
    params = _params(r)
    masks = sj.imp_prune(params, masks, rate=0.2, overrides={"fc2": 0.1})
    for name, rate in (("fc1", 0.2), ("fc2", 0.1)):
      w = np.abs(np.asarray(params[name]["kernel"]))
      keep = int(np.round((1 - rate) * expected[name].sum()))
      expected[name] = _np_keep(np.where(expected[name], w, -1.0), keep)
      np.testing.assert_array_equal(masks[name]["kernel"], expected[name])
    assert masks["fc1"]["bias"] is None
  assert int(masks["fc1"]["kernel"].sum()) == 197  # 600 -> 480 ... -> 197
  assert int(masks["fc2"]["kernel"].sum()) == 177  # 300 -> 270 ... -> 177
  np.testing.assert_allclose(sj.fraction_remaining(masks), 374 / 900)


def test_global_scope_keeps_one_threshold():
  params = _params(7)
  masks = sj.imp_prune(params, rate=0.2)
  masks = sj.imp_prune(params, masks, rate=0.5, scope="global")
  # Layer-wise first round: 480 + 240; then global: 360 kept of 720.
  w = {n: np.abs(np.asarray(params[n]["kernel"])) for n in ("fc1", "fc2")}
  first = {n: _np_keep(w[n], int(0.8 * w[n].size)) for n in w}
  flat = np.concatenate([np.where(first[n], w[n], -1.0).ravel()
                         for n in ("fc1", "fc2")])
  keep = _np_keep(flat, 360)
  np.testing.assert_array_equal(masks["fc1"]["kernel"].ravel(), keep[:600])
  np.testing.assert_array_equal(masks["fc2"]["kernel"].ravel(), keep[600:])


def test_rewind_and_training_with_the_ticket():
  theta0 = _params(0)
  masks = sj.imp_prune(_params(1), rate=0.5)
  ticket = sj.rewind(theta0, masks)
  for n in ("fc1", "fc2"):
    np.testing.assert_array_equal(
        ticket[n]["kernel"],
        np.where(masks[n]["kernel"], theta0[n]["kernel"], 0))
    np.testing.assert_array_equal(ticket[n]["bias"], theta0[n]["bias"])
  tx = sj.static_sparse(optax.adam(1e-2), masks=masks)
  state = tx.init(ticket)
  grads = jax.tree.map(jnp.ones_like, ticket)
  updates, state = tx.update(grads, state, ticket)
  new = optax.apply_updates(ticket, updates)
  for n in ("fc1", "fc2"):
    np.testing.assert_array_equal(np.asarray(new[n]["kernel"]) != 0,
                                  masks[n]["kernel"])


def test_bad_input():
  params = _params()
  with pytest.raises(ValueError, match="rate"):
    sj.imp_prune(params, rate=1.0)
  with pytest.raises(ValueError, match="scope"):
    sj.imp_prune(params, scope="net")
  with pytest.raises(ValueError, match="overrides"):
    sj.imp_prune(params, overrides={"fc2": 2.0})
  with pytest.raises(ValueError, match="masks"):
    sj.imp_prune(params, {"fc1": None})
  with pytest.raises(ValueError, match="no mask"):
    sj.fraction_remaining({"a": None})
