# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Drop-and-grow rules checked against independent NumPy computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.dst import _common


def _top(scores, k):
  """NumPy top-k set: highest scores, ties to the lower flat index."""
  flat = np.asarray(scores, np.float64).ravel()
  order = np.lexsort((np.arange(flat.size), -flat))
  out = np.zeros(flat.size, bool)
  out[order[:k]] = True
  return out.reshape(np.shape(scores))


def _np_floor(x):
  return int(math.floor(x + 1e-9))


def _adam_state(state):
  adam = state.inner_state[0]
  assert isinstance(adam, optax.ScaleByAdamState)
  return adam


# ----------------------------------------------------------------- RigL


def test_rigl_one_update_matches_numpy():
  key_w, key_g, key_m = jax.random.split(jax.random.key(3), 3)
  params = {"w": jax.random.normal(key_w, (12, 10)), "b": jnp.ones((10,))}
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.7, end_step=1000,
               update_every=5, begin_step=5, distribution="uniform")
  state = tx.init(params)
  params = sj.masks.apply(params, sj.get_masks(state))
  update = jax.jit(tx.update)
  for i in range(5):  # counts 0..4: ordinary Adam steps
    grads = {"w": jax.random.normal(jax.random.fold_in(key_g, i), (12, 10)),
             "b": jnp.ones((10,))}
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  # Make every Adam slot nonzero, so that a reset is visible.
  adam = _adam_state(state)
  mu = {"w": jax.random.uniform(key_m, (12, 10)) + 1.0, "b": adam.mu["b"]}
  nu = {"w": jax.random.uniform(key_g, (12, 10)) + 1.0, "b": adam.nu["b"]}
  state = state._replace(inner_state=(adam._replace(mu=mu, nu=nu),)
                         + tuple(state.inner_state[1:]))

  w = np.asarray(params["w"])
  old = np.asarray(sj.get_masks(state)["w"])
  grads = {"w": jax.random.normal(jax.random.key(99), (12, 10)),
           "b": jnp.ones((10,))}
  g = np.asarray(grads["w"])
  nnz = int(old.sum())
  assert nnz == 36
  fraction = 0.3 / 2 * (1 + math.cos(math.pi * 0 / 995))  # count 5 = begin
  n = _np_floor(fraction * nnz)
  kept = _top(np.where(old, np.abs(w), -np.inf), nnz - n)
  grown = _top(np.where(kept, -np.inf, np.abs(g)), n)
  expected = kept | grown

  updates, new_state = update(grads, state, params)
  new_params = optax.apply_updates(params, updates)
  new = np.asarray(sj.get_masks(new_state)["w"])
  np.testing.assert_array_equal(new, expected)
  newly = new & ~old
  assert newly.sum() > 0
  assert (old & ~new).sum() == newly.sum()
  new_w = np.asarray(new_params["w"])
  np.testing.assert_array_equal(new_w[newly], 0.0)
  np.testing.assert_array_equal(new_w[kept], w[kept])  # did not move
  np.testing.assert_array_equal(new_w[~new], 0.0)
  new_adam = _adam_state(new_state)
  np.testing.assert_array_equal(np.asarray(new_adam.mu["w"])[newly], 0.0)
  np.testing.assert_array_equal(np.asarray(new_adam.nu["w"])[newly], 0.0)
  # Slots elsewhere are untouched and Adam did not step.
  np.testing.assert_array_equal(np.asarray(new_adam.mu["w"])[~newly],
                                np.asarray(mu["w"])[~newly])
  np.testing.assert_array_equal(np.asarray(new_adam.nu["w"])[~newly],
                                np.asarray(nu["w"])[~newly])
  assert int(new_adam.count) == int(adam.count)
  np.testing.assert_array_equal(new_params["b"], params["b"])


def test_rigl_regrown_position_keeps_weight_and_slots():
  w = jnp.arange(1.0, 17.0).reshape(4, 4)
  params = {"w": w}
  tx = sj.rigl(optax.sgd(0.1, momentum=0.9), sparsity=0.5, end_step=100,
               update_every=1, distribution="uniform")
  state = tx.init(params)
  mask = np.asarray(sj.get_masks(state)["w"])
  params = sj.masks.apply(params, sj.get_masks(state))
  # Gradient huge on the active weights: every dropped one is grown back.
  grads = {"w": jnp.where(mask, 100.0, 1.0)}
  trace = state.inner_state[0].trace
  state = state._replace(inner_state=(
      state.inner_state[0]._replace(trace={"w": jnp.ones((4, 4))}),)
      + tuple(state.inner_state[1:]))
  updates, new_state = tx.update(grads, state, params)
  del trace
  np.testing.assert_array_equal(sj.get_masks(new_state)["w"], mask)
  np.testing.assert_array_equal(optax.apply_updates(params, updates)["w"],
                                params["w"])
  np.testing.assert_array_equal(new_state.inner_state[0].trace["w"],
                                np.ones((4, 4)))


def test_rigl_drop_fraction_schedule_as_changed_positions():
  # alpha 0.3, end_step 1000: 0.3, 0.25607, 0.15, 0.04393, 0 of 1000 active.
  params = {"w": jax.random.normal(jax.random.key(0), (40, 50))}
  tx = sj.rigl(optax.sgd(0.1), sparsity=0.5, end_step=1000,
               update_every=250, distribution="uniform")
  state0 = tx.init(params)
  params = sj.masks.apply(params, sj.get_masks(state0))
  old = np.asarray(sj.get_masks(state0)["w"])
  assert old.sum() == 1000
  # Zero gradient on active weights, large elsewhere: nothing dropped is
  # grown back, so the changed positions are exactly the dropped ones.
  grads = {"w": jnp.where(old, 0.0, 1.0 + jax.random.uniform(
      jax.random.key(1), (40, 50)))}
  update = jax.jit(tx.update)
  for t, expected in [(0, 300), (250, 256), (500, 150), (750, 43),
                      (1000, 0)]:
    assert expected == _np_floor(0.15 * (1 + math.cos(math.pi * t / 1000))
                                 * 1000)
    state = state0._replace(count=jnp.asarray(t, jnp.int32))
    _, state = update(grads, state, params)
    new = np.asarray(sj.get_masks(state)["w"])
    assert int((new & ~old).sum()) == expected, t
    assert int((old & ~new).sum()) == expected, t
    assert int(new.sum()) == 1000


def test_cosine_drop_fraction_values():
  schedule = _common.cosine_drop_fraction(0.3, 0, 1000)
  got = [float(schedule(t)) for t in (0, 250, 500, 750, 1000, 1200)]
  np.testing.assert_allclose(got, [0.3, 0.25607, 0.15, 0.04393, 0., 0.],
                             atol=1e-5)


def test_rigl_nothing_changes_after_end_step_and_nnz_constant():
  params = {"a": jax.random.normal(jax.random.key(0), (10, 12)),
            "b": jax.random.normal(jax.random.key(1), (12, 6)),
            "bias": jnp.zeros((6,))}
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.8, end_step=12, update_every=3)
  state = tx.init(params)
  budgets = {k: int(m.sum()) for k, m in sj.get_masks(state).items()
             if m is not None}
  params = sj.masks.apply(params, sj.get_masks(state))
  update = jax.jit(tx.update)
  history = []
  for i in range(24):
    grads = optax.tree.random_like(jax.random.key(i), params,
                                   sampler=jax.random.normal)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    masks = sj.get_masks(state)
    assert {k: int(masks[k].sum()) for k in budgets} == budgets
    history.append({k: np.asarray(masks[k]) for k in budgets})
  changes = [i for i in range(1, 24)
             if any(np.any(history[i][k] != history[i - 1][k])
                    for k in budgets)]
  assert changes and max(changes) < 12  # count 12 has drop fraction 0


# ------------------------------------------------------------------ SET


def test_set_sign_split_counts_match_numpy():
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(10, 20)).astype(np.float32)
  params = {"w": jnp.asarray(w0)}
  tx = sj.set_(optax.sgd(0.0), sparsity=0.5, update_every=1, begin_step=0,
               distribution="uniform", drop_fraction=0.3)
  state = tx.init(params)
  mask = np.asarray(sj.get_masks(state)["w"])
  w = w0 * mask
  params = {"w": jnp.asarray(w)}
  n_pos, n_neg = int((w > 0).sum()), int((w < 0).sum())
  keep_pos = _top(np.where(w > 0, w, -np.inf), _np_floor(0.7 * n_pos))
  keep_neg = _top(np.where(w < 0, -w, -np.inf), _np_floor(0.7 * n_neg))
  kept = keep_pos | keep_neg
  _, new_state = tx.update({"w": jnp.ones((10, 20))}, state, params)
  new = np.asarray(sj.get_masks(new_state)["w"])
  assert new.sum() == 100
  np.testing.assert_array_equal(new & kept, kept)
  dropped_pos = int((mask & (w > 0) & ~kept).sum())
  dropped_neg = int((mask & (w < 0) & ~kept).sum())
  assert dropped_pos == n_pos - _np_floor(0.7 * n_pos)
  assert dropped_neg == n_neg - _np_floor(0.7 * n_neg)
  grown = new & ~kept
  assert grown.sum() == dropped_pos + dropped_neg


def test_set_magnitude_drop_and_random_regrowth():
  rng = np.random.default_rng(1)
  w0 = rng.normal(size=(20, 20)).astype(np.float32)
  params = {"w": jnp.asarray(w0)}
  tx = sj.set_(optax.sgd(0.0), sparsity=0.75, update_every=1, begin_step=0,
               distribution="uniform", drop="magnitude", seed=3)
  state = tx.init(params)
  mask = np.asarray(sj.get_masks(state)["w"])
  params = {"w": jnp.asarray(w0 * mask)}
  kept = _top(np.where(mask, np.abs(w0), -np.inf), 100 - 30)
  _, s1 = tx.update({"w": jnp.zeros((20, 20))}, state, params)
  new = np.asarray(sj.get_masks(s1)["w"])
  assert new.sum() == 100
  np.testing.assert_array_equal(new & kept, kept)
  # Random growth does not follow the gradient and depends on the seed.
  tx2 = sj.set_(optax.sgd(0.0), sparsity=0.75, update_every=1, begin_step=0,
                distribution="uniform", drop="magnitude", seed=4)
  state2 = tx2.init(params)._replace(masks={"w": jnp.asarray(mask)})
  _, s2 = tx2.update({"w": jnp.zeros((20, 20))}, state2, params)
  assert np.any(np.asarray(sj.get_masks(s2)["w"]) != new)


# ----------------------------------------------------------------- SNFS


def _np_redistribution(shares, removed, capacity, cap=0.99):
  """The residual loop of sparse_learning's calc_growth_redistribution."""
  total = float(np.sum(removed))
  regrowth = {}
  residual, mean_residual, i = 9999.0, 0.0, 0
  while residual > 0 and i < 1000:
    residual = 0.0
    for j, share in enumerate(shares):
      r = regrowth.get(j, share * total) + mean_residual
      if r > cap * capacity[j]:
        regrowth[j] = cap * capacity[j]
        residual += r - regrowth[j]
      else:
        regrowth[j] = r
    mean_residual = residual / len(shares)
    i += 1
  return np.array([regrowth[j] for j in range(len(shares))])


def test_snfs_shares_caps_and_total():
  params = {"a": jax.random.normal(jax.random.key(0), (10, 10)),
            "b": jax.random.normal(jax.random.key(1), (20, 20))}

  def dist(p):
    del p
    return {"a": 0.1, "b": 0.9}

  tx = sj.snfs(optax.sgd(0.0, momentum=0.9), sparsity=None,
               distribution=dist, update_every=1, begin_step=0,
               end_step=1000)
  state = tx.init(params)
  old = {k: np.asarray(m) for k, m in sj.get_masks(state).items()}
  params = sj.masks.apply(params, sj.get_masks(state))
  ga = 100.0 * np.abs(np.random.default_rng(0).normal(size=(10, 10)))
  gb = np.abs(np.random.default_rng(1).normal(size=(20, 20)))
  grads = {"a": jnp.asarray(ga, jnp.float32),
           "b": jnp.asarray(gb, jnp.float32)}
  _, state = jax.jit(tx.update)(grads, state, params)
  new = {k: np.asarray(m) for k, m in sj.get_masks(state).items()}

  # NumPy: momentum after one step is the dense gradient.
  nnz = np.array([old["a"].sum(), old["b"].sum()])
  assert tuple(nnz) == (90, 40)
  means = np.array([np.abs(ga)[old["a"]].mean(), np.abs(gb)[old["b"]].mean()])
  shares = means / means.sum()
  np.testing.assert_allclose(state.method_state.shares, shares, rtol=1e-5)
  assert abs(float(np.sum(state.method_state.shares)) - 1.0) < 1e-6
  rate = 0.005 + (0.5 - 0.005) * 0.5 * (1 + math.cos(0.0))
  size = np.array([100, 400])
  sparsity = (size - nnz) / size
  rates = np.where((sparsity < 0.2) & (shares > 0.5),
                   np.minimum(sparsity, rate), rate)
  removed = np.ceil(rates * nnz - 1e-9).astype(int)
  assert tuple(removed) == (9, 20)
  capacity = size - nnz + removed
  expected = _np_redistribution(shares, removed, capacity)
  # Regrowth per layer: what the layer holds beyond its magnitude survivors
  # (a just-removed position may be regrown).
  grown = np.array([new["a"].sum(), new["b"].sum()]) - (nnz - removed)
  # Magnitude prune: the kept weights are the largest of each layer.
  w = {k: np.asarray(params[k]) for k in params}
  for j, k in enumerate(("a", "b")):
    top = _top(np.where(old[k], np.abs(w[k]), -np.inf), nnz[j] - removed[j])
    np.testing.assert_array_equal(top & new[k], top)
  # Caps respected, total kept exact, integer split within 1 of the loop's.
  assert np.all(grown <= 0.99 * capacity)
  assert grown.sum() == removed.sum()
  assert np.all(np.abs(grown - expected) < 1.0 + 1e-6)
  assert expected[0] == pytest.approx(0.99 * capacity[0])  # capped layer


def test_snfs_grows_by_momentum():
  params = {"w": jax.random.normal(jax.random.key(0), (10, 10))}
  tx = sj.snfs(optax.sgd(0.0, momentum=0.9), sparsity=0.7, update_every=1,
               begin_step=0, end_step=1000)
  state = tx.init(params)
  old = np.asarray(sj.get_masks(state)["w"])
  params = sj.masks.apply(params, sj.get_masks(state))
  g = np.random.default_rng(0).normal(size=(10, 10)).astype(np.float32)
  _, state = tx.update({"w": jnp.asarray(g)}, state, params)
  new = np.asarray(sj.get_masks(state)["w"])
  w = np.asarray(params["w"])
  kept = _top(np.where(old, np.abs(w), -np.inf), 30 - 15)
  grown = _top(np.where(kept, -np.inf, np.abs(g)), 15)
  np.testing.assert_array_equal(new, kept | grown)


def test_snfs_needs_momentum():
  tx = sj.snfs(optax.sgd(0.1), sparsity=0.5, update_every=1, begin_step=0,
               end_step=10)
  params = {"w": jnp.ones((4, 4))}
  state = tx.init(params)
  with pytest.raises(ValueError, match="momentum"):
    tx.update(params, state, params)


# ---------------------------------------------------------------- SRigL


def test_srigl_constant_fan_in_and_ablation():
  # Neurons (columns) 0-2 of the first layer have no weight and no gradient:
  # they are not salient and get ablated; the last layer is never ablated.
  rng = np.random.default_rng(0)
  w1 = rng.normal(size=(16, 8)).astype(np.float32)
  g1 = rng.normal(size=(16, 8)).astype(np.float32)
  w1[:, :3] = 0.0
  g1[:, :3] = 0.0
  w2 = rng.normal(size=(8, 4)).astype(np.float32)
  g2 = np.zeros((8, 4), np.float32)
  g2[:, 0] = 0.0
  params = {"l1": jnp.asarray(w1), "l2": jnp.asarray(w2)}
  tx = sj.srigl(optax.adam(1e-2), sparsity=0.75, end_step=100,
                update_every=1, distribution="uniform")
  state = tx.init(params)
  m0 = sj.get_masks(state)
  np.testing.assert_array_equal(np.asarray(m0["l1"]).sum(0), [4] * 8)
  np.testing.assert_array_equal(np.asarray(m0["l2"]).sum(0), [2] * 4)
  params = sj.masks.apply(params, m0)
  grads = {"l1": jnp.asarray(g1), "l2": jnp.asarray(g2)}
  _, state = tx.update(grads, state, params)
  m = {k: np.asarray(v) for k, v in sj.get_masks(state).items()}
  fan1 = m["l1"].sum(0)
  # 32 kept weights over the 5 live neurons: fan-in 32 // 5 = 6.
  np.testing.assert_array_equal(fan1[:3], 0)
  np.testing.assert_array_equal(fan1[3:], 6)
  np.testing.assert_array_equal(m["l2"].sum(0), [2] * 4)


def test_topk_columns_matches_numpy():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, size=(9, 6)).astype(np.float32)  # many ties
  k = np.array([0, 1, 3, 9, 4, 2])
  got = np.asarray(_common.topk_columns(jnp.asarray(scores), jnp.asarray(k)))
  for j in range(6):
    np.testing.assert_array_equal(got[:, j], _top(scores[:, j], k[j]))


def test_radix_topk_matches_numpy_with_ties():
  rng = np.random.default_rng(0)
  topk = jax.jit(_common.topk1)
  for trial in range(24):
    shape = (8, 9)
    if trial % 3:
      x = rng.integers(-3, 4, size=shape).astype(np.float32)  # many ties
    else:
      x = rng.normal(size=shape).astype(np.float32)
    if trial % 4 == 0:
      x[x < 0] = -np.inf  # the sentinel of inactive positions
    k = [0, x.size, int(rng.integers(0, x.size + 1))][trial % 3]
    got = np.asarray(topk(jnp.asarray(x), k))
    np.testing.assert_array_equal(got, _top(x, k), err_msg=f"{x}, k={k}")


def test_radix_topk_two_digit_path_matches_numpy():
  # From 2**16 entries the selection takes two 16-bit digits.
  rng = np.random.default_rng(2)
  topk = jax.jit(_common.topk1)
  x = rng.normal(size=(256, 300)).astype(np.float32)
  x[:, :100] = rng.integers(-2, 3, size=(256, 100))  # many ties
  x[:64] = -np.inf  # inactive rows, all in one bin
  for k in (0, 1, 5000, 25600, 51199, 51200, 60000, x.size - 1, x.size):
    got = np.asarray(topk(jnp.asarray(x), k))
    np.testing.assert_array_equal(got, _top(x, k), err_msg=f"k={k}")


def test_radix_topk_tie_counts_from_histograms():
  # The tie count comes from the last histogram: check every k on arrays
  # whose ties are all taken, none taken, or split (many equal keys).
  rng = np.random.default_rng(1)
  topk = jax.jit(_common.topk1)
  for values in (rng.integers(0, 3, size=(5, 7)), rng.normal(size=(5, 7))):
    x = values.astype(np.float32)
    x[0, :3] = -0.0  # ties with 0.0
    for k in range(x.size + 1):
      got = np.asarray(topk(jnp.asarray(x), k))
      np.testing.assert_array_equal(got, _top(x, k), err_msg=f"k={k}")


# ------------------------------------------------------------ MEST, GraNet


def test_mest_prunes_by_magnitude_and_keeps_nnz():
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(10, 10)).astype(np.float32)
  g0 = rng.normal(size=(10, 10)).astype(np.float32)
  tx = sj.mest(optax.sgd(0.0), sparsity=0.6, update_every=1, end_step=100,
               drop_fraction=0.25, grad_weight=0.5)
  state = tx.init({"w": jnp.asarray(w0)})
  old = np.asarray(sj.get_masks(state)["w"])
  w = w0 * old
  _, state = tx.update({"w": jnp.asarray(g0)}, state, {"w": jnp.asarray(w)})
  new = np.asarray(sj.get_masks(state)["w"])
  kept = _top(np.where(old, np.abs(w) + 0.5 * np.abs(g0), -np.inf), 40 - 10)
  assert new.sum() == 40
  np.testing.assert_array_equal(new & kept, kept)
  assert (new & ~kept).sum() == 10


def test_mest_default_schedule():
  schedule = sj.dst.mest_mutation_schedule(1600)
  assert [float(schedule(t)) for t in (0, 899, 900, 1199, 1200)] == [
      pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.1),
      pytest.approx(0.1), 0.0]


def test_granet_global_cubic_schedule_and_regeneration():
  params = {"a": jax.random.normal(jax.random.key(0), (20, 20)),
            "b": jax.random.normal(jax.random.key(1), (20, 11)),
            "bias": jnp.zeros((11,))}
  tx = sj.granet(optax.adam(1e-2), sparsity=0.9, init_density=1.0,
                 end_step=100, update_every=5, prune_end=30)
  state = tx.init(params)
  update = jax.jit(tx.update)
  total = 620  # no budget falls on a rounding tie
  for i in range(36):
    grads = optax.tree.random_like(jax.random.key(i), params,
                                   sampler=jax.random.normal)
    before = state.count
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    t = int(before)
    masks = sj.get_masks(state)
    nnz = int(masks["a"].sum() + masks["b"].sum())
    if t >= 5 and t % 5 == 0 and t <= 30:
      s = 0.9 * (1 - (1 - t / 30) ** 3)
      assert nnz == int(np.round((1 - s) * total)), t
  assert nnz == 62
  for k in ("a", "b"):
    assert not np.any(np.asarray(params[k])[~np.asarray(masks[k])])


# ---------------------------------------------------- block granularity


@pytest.mark.parametrize("method", ["rigl", "set", "snfs", "srigl", "mest",
                                    "granet"])
def test_block_granularity_keeps_whole_blocks(method):
  make = {
      "rigl": lambda: sj.rigl(optax.adam(1e-2), sparsity=0.75, end_step=50,
                              update_every=1, granularity=(2, 4)),
      "set": lambda: sj.set_(optax.adam(1e-2), sparsity=0.75, update_every=1,
                             granularity=(2, 4)),
      "snfs": lambda: sj.snfs(optax.adam(1e-2), sparsity=0.75, update_every=1,
                              end_step=50, granularity=(2, 4)),
      "srigl": lambda: sj.srigl(optax.adam(1e-2), sparsity=0.75, end_step=50,
                                update_every=1, granularity=(2, 4)),
      "mest": lambda: sj.mest(optax.adam(1e-2), sparsity=0.75, update_every=1,
                              end_step=50, drop_fraction=0.3,
                              granularity=(2, 4)),
      "granet": lambda: sj.granet(optax.adam(1e-2), sparsity=0.75,
                                  end_step=50, update_every=1,
                                  prune_end=4, granularity=(2, 4)),
  }[method]
  tx = make()
  params = {"a": jax.random.normal(jax.random.key(0), (8, 16)),
            "b": jax.random.normal(jax.random.key(1), (16, 8))}
  state = tx.init(params)
  m0 = {k: np.asarray(v) for k, v in sj.get_masks(state).items()}
  params = sj.masks.apply(params, sj.get_masks(state))
  update = jax.jit(tx.update)
  changed = False
  for i in range(6):
    grads = optax.tree.random_like(jax.random.key(i), params,
                                   sampler=jax.random.normal)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for k, mask in sj.get_masks(state).items():
      blocks = np.asarray(mask).reshape(mask.shape[0] // 2, 2,
                                        mask.shape[1] // 4, 4)
      per_block = blocks.sum(axis=(1, 3))
      assert np.all((per_block == 0) | (per_block == 8)), per_block
      changed |= bool(np.any(np.asarray(mask) != m0[k]))
      assert not np.any(np.asarray(params[k])[~np.asarray(mask)])
  assert changed


# ------------------------------------------------------------ bad input


def test_bad_arguments_raise():
  inner = optax.adam(1e-3)
  with pytest.raises(ValueError, match="end_step"):
    sj.rigl(inner, sparsity=0.9, end_step=0)
  with pytest.raises(ValueError, match="drop_fraction"):
    sj.rigl(inner, sparsity=0.9, end_step=10, drop_fraction=1.5)
  with pytest.raises(ValueError, match="grow_init"):
    sj.rigl(inner, sparsity=0.9, end_step=10, grow_init="random_normal")
  with pytest.raises(ValueError, match="sparsity"):
    sj.rigl(inner, sparsity=optax.constant_schedule(0.5), end_step=10)
  with pytest.raises(ValueError, match="drop"):
    sj.set_(inner, sparsity=0.9, update_every=10, drop="sign")
  with pytest.raises(ValueError, match="update_every"):
    sj.set_(inner, sparsity=0.9, update_every=0)
  with pytest.raises(ValueError, match="cap"):
    sj.snfs(inner, sparsity=0.9, update_every=1, end_step=10, cap=0.0)
  with pytest.raises(ValueError, match="init_density"):
    sj.granet(inner, sparsity=0.5, end_step=10, init_density=0.2)
  with pytest.raises(ValueError, match="granularity"):
    sj.rigl(inner, sparsity=0.5, end_step=10, granularity=(3, 3)).init(
        {"w": jnp.ones((4, 4))})
  with pytest.raises(ValueError, match="drop_fraction"):
    sj.mest(inner, sparsity=0.5, update_every=1, end_step=10,
            drop_fraction=-0.1)
