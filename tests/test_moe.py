# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Routers, losses and dispatch of sparsejax.moe against NumPy references."""

import functools
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import moe

_SETTINGS = dict(max_examples=6, deadline=None, derandomize=True)
# Few distinct shapes: every new shape recompiles every op.


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _logits(seed, t, e, scale=1.0):
  return jax.random.normal(jax.random.key(seed), (t, e)) * scale


def _dense_weights(routing):
  """[T, E] weight of each expert in each token's output, by loops."""
  ids = np.asarray(routing.expert_ids)
  w = np.asarray(routing.combine_weights)
  kept = np.asarray(routing.kept)
  out = np.zeros(routing.router_probs.shape, np.float64)
  for t in range(ids.shape[0]):
    for j in range(ids.shape[1]):
      if kept[t, j]:
        out[t, ids[t, j]] += w[t, j]
  return out


# ----------------------------------------------------------------- losses


@pytest.mark.parametrize("num_experts,k", [(4, 1), (8, 2), (6, 3)])
def test_load_balancing_loss_is_one_when_balanced(num_experts, k):
  t = 4 * num_experts
  probs = jnp.full((t, num_experts), 1.0 / num_experts)
  # Token i's slots go to experts i, i+1, ...: every expert gets 4k slots.
  ids = (jnp.arange(t)[:, None] + jnp.arange(k)[None, :]) % num_experts
  np.testing.assert_allclose(moe.load_balancing_loss(probs, ids), 1.0,
                             rtol=1e-6)


@pytest.mark.parametrize("num_experts,k", [(4, 1), (8, 1), (8, 2)])
def test_load_balancing_loss_is_e_when_collapsed(num_experts, k):
  t = 10
  probs = jax.nn.one_hot(jnp.zeros(t, int), num_experts)
  ids = jnp.zeros((t, k), jnp.int32)
  np.testing.assert_allclose(moe.load_balancing_loss(probs, ids),
                             num_experts, rtol=1e-6)


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(tek=st.sampled_from([(1, 1, 1), (12, 5, 2), (20, 9, 3)]),
                  seed=st.integers(0, 2**16))
def test_load_balancing_loss_matches_formula(tek, seed):
  t, e, k = tek
  rng = np.random.default_rng(seed)
  probs = _softmax(rng.normal(size=(t, e)))
  ids = rng.integers(0, e, size=(t, k))
  counts = np.array([(ids == i).sum() for i in range(e)])
  expected = e * sum(probs[:, i].mean() * counts[i] / (t * k)
                     for i in range(e))
  np.testing.assert_allclose(
      moe.load_balancing_loss(jnp.asarray(probs, jnp.float32), ids),
      expected, rtol=1e-5)


def test_load_balancing_loss_gradient_flows_through_probs_only():
  probs = jnp.full((4, 2), 0.5)
  ids = jnp.array([[0], [0], [0], [1]])
  g = jax.grad(moe.load_balancing_loss)(probs, ids)
  # d/dP[t, e] = E * f_e / T, with f = (3/4, 1/4).
  np.testing.assert_allclose(g, np.tile([[2 * 0.75 / 4, 2 * 0.25 / 4]],
                                        (4, 1)), rtol=1e-6)


@pytest.mark.parametrize("num_experts", [2, 8, 64])
def test_z_loss_of_zero_logits(num_experts):
  np.testing.assert_allclose(moe.z_loss(jnp.zeros((5, num_experts))),
                             math.log(num_experts) ** 2, rtol=1e-6)


def test_z_loss_matches_numpy():
  x = np.random.default_rng(0).normal(size=(7, 5)) * 3
  lse = np.log(np.exp(x).sum(-1))
  np.testing.assert_allclose(moe.z_loss(jnp.asarray(x, jnp.float32)),
                             np.mean(lse ** 2), rtol=1e-5)


def test_importance_and_load_loss_match_numpy():
  x = np.random.default_rng(1).uniform(size=(9, 4))
  total = x.sum(0)
  expected = total.var() / total.mean() ** 2
  np.testing.assert_allclose(moe.importance_loss(jnp.asarray(x, jnp.float32)),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(moe.load_loss(jnp.asarray(x, jnp.float32)),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(moe.importance_loss(jnp.ones((3, 4))), 0.0,
                             atol=1e-7)


def test_loss_arguments_are_checked():
  with pytest.raises(ValueError, match="router_probs"):
    moe.load_balancing_loss(jnp.ones(4), jnp.zeros((4, 1), jnp.int32))
  with pytest.raises(ValueError, match="expert_ids"):
    moe.load_balancing_loss(jnp.ones((4, 2)), jnp.zeros((3, 1), jnp.int32))
  with pytest.raises(ValueError, match="expert_ids"):
    moe.load_balancing_loss(jnp.ones((4, 2)), jnp.zeros((4, 1)))
  with pytest.raises(ValueError, match="logits"):
    moe.z_loss(jnp.zeros((3, 2), jnp.int32))
  with pytest.raises(ValueError, match="load_probs"):
    moe.load_loss(jnp.ones((2, 2, 2)))


# ---------------------------------------------------------------- routers


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(tek=st.sampled_from([(1, 2, 1), (16, 8, 3)]),
                  renormalize=st.booleans(), seed=st.integers(0, 2**16))
def test_top_k_router_matches_numpy(tek, renormalize, seed):
  t, e, k = tek
  logits = np.asarray(_logits(seed, t, e, 2.0))
  r = jax.jit(moe.top_k_router, static_argnames=("k", "renormalize"))(
      jnp.asarray(logits), k=k, renormalize=renormalize)
  p = _softmax(logits.astype(np.float64))
  order = np.argsort(-p, axis=1, kind="stable")[:, :k]
  w = np.take_along_axis(p, order, 1)
  if renormalize:
    w = w / w.sum(1, keepdims=True)
  np.testing.assert_array_equal(r.expert_ids, order)
  np.testing.assert_allclose(r.combine_weights, w, rtol=1e-5, atol=1e-7)
  assert bool(np.all(r.kept))
  np.testing.assert_allclose(r.router_probs, p, rtol=1e-5, atol=1e-7)


def test_switch_drops_later_tokens_first():
  # All 6 tokens prefer expert 0; capacity ceil(1.0 * 6 / 3) = 2.
  logits = jnp.array([[3., 0., 0.]] * 6)
  r = moe.switch_router(logits, capacity_factor=1.0)
  np.testing.assert_array_equal(r.kept[:, 0], [1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(r.combine_weights[2:], 0.0)
  assert moe.switch_router(logits, capacity_factor=None).kept.all()


def test_top_k_capacity_fills_first_choices_before_second():
  # Expert 0 is token 0's second choice and tokens 1, 2's first choice.
  logits = jnp.array([[1., 2., -9.], [2., -9., 1.], [2., 1., -9.]])
  r = moe.top_k_router(logits, 2, capacity_factor=2 / 3)  # capacity 2
  ids, kept = np.asarray(r.expert_ids), np.asarray(r.kept)
  assert kept[1, 0] and kept[2, 0] and ids[1, 0] == ids[2, 0] == 0
  assert ids[0, 1] == 0 and not kept[0, 1]
  for e in range(3):
    assert ((ids == e) & kept).sum() <= 2


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(te=st.sampled_from([(2, 1), (24, 3)]),
                  cf=st.sampled_from([0.25, 0.5, 1.0, 1.5]),
                  seed=st.integers(0, 2**16))
def test_batch_prioritized_routing_drops_lowest_priority_first(te, cf, seed):
  t, e = te
  logits = np.asarray(_logits(seed, t, e, 3.0))
  r = jax.jit(moe.batch_prioritized_router,
              static_argnames=("k", "capacity_factor"))(
                  jnp.asarray(logits), k=1, capacity_factor=cf)
  capacity = math.ceil(cf * t / e)
  p = _softmax(logits.astype(np.float64))
  expert, priority = p.argmax(1), p.max(1)
  kept = np.asarray(r.kept[:, 0])
  for i in range(e):
    members = np.flatnonzero(expert == i)
    ranked = members[np.argsort(-priority[members], kind="stable")]
    assert kept[ranked[:capacity]].all()
    assert not kept[ranked[capacity:]].any()
    # Every dropped token has a lower priority than every kept one.
    if kept[members].any() and (~kept[members]).any():
      assert (priority[members][~kept[members]].max()
              <= priority[members][kept[members]].min())


def test_batch_prioritized_top2_second_choices_after_all_first():
  logits = jnp.array([[5., 4., 0.], [0., 5., 4.], [4., 0., 5.]])
  r = moe.batch_prioritized_router(logits, 2, capacity_factor=0.5)  # C=1
  # Every expert is one token's first choice: all first choices kept, no
  # second choice finds room.
  np.testing.assert_array_equal(r.kept, [[1, 0], [1, 0], [1, 0]])


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(tec=st.sampled_from([(8, 2, 0.5), (16, 4, 2.0),
                                       (24, 8, 1.0)]),
                  seed=st.integers(0, 2**16))
def test_expert_choice_gives_every_expert_exactly_tc_over_e(tec, seed):
  t, e, c = tec
  logits = np.asarray(_logits(seed, t, e))
  r = jax.jit(moe.expert_choice_router, static_argnames="capacity_factor")(
      jnp.asarray(logits), capacity_factor=c)
  capacity = int(t * c / e)
  kept = np.asarray(r.kept)
  np.testing.assert_array_equal(kept.sum(0), np.full(e, capacity))
  p = _softmax(logits.astype(np.float64))
  for i in range(e):
    chosen = np.sort(np.argsort(-p[:, i], kind="stable")[:capacity])
    np.testing.assert_array_equal(np.flatnonzero(kept[:, i]), chosen)
  np.testing.assert_allclose(r.combine_weights, np.where(kept, p, 0),
                             rtol=1e-5, atol=1e-7)


def test_expert_choice_rejects_fractional_capacity():
  with pytest.raises(ValueError, match="capacity_factor"):
    moe.expert_choice_router(jnp.zeros((10, 4)), capacity_factor=1.0)
  with pytest.raises(ValueError, match="capacity_factor"):
    moe.expert_choice_router(jnp.zeros((8, 2)), capacity_factor=3.0)


def _phi(x):
  return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_noisy_top_k_matches_shazeer():
  t, e, k = 6, 5, 2
  logits = np.asarray(_logits(1, t, e))
  noise_logits = np.asarray(_logits(2, t, e))
  key = jax.random.key(3)
  r = moe.noisy_top_k_router(jnp.asarray(logits), jnp.asarray(noise_logits),
                             k, key=key)
  std = np.log1p(np.exp(noise_logits))
  h = logits + std * np.asarray(jax.random.normal(key, (t, e)))
  top = np.argsort(-h, axis=1, kind="stable")[:, :k]
  np.testing.assert_array_equal(r.expert_ids, top)
  gates = np.zeros((t, e))
  for i in range(t):
    v = h[i, top[i]]
    gates[i, top[i]] = np.exp(v - v.max()) / np.exp(v - v.max()).sum()
  np.testing.assert_allclose(r.router_probs, gates, rtol=1e-5, atol=1e-6)
  load = np.zeros((t, e))
  for i in range(t):
    for j in range(e):
      others = np.delete(h[i], j)
      kth = np.sort(others)[::-1][k - 1]
      load[i, j] = _phi((logits[i, j] - kth) / std[i, j])
  np.testing.assert_allclose(r.load_probs, load, rtol=1e-4, atol=1e-6)
  # The load loss has a gradient through the smooth estimate.
  g = jax.grad(lambda z: moe.load_loss(moe.noisy_top_k_router(
      z, jnp.asarray(noise_logits), k, key=key).load_probs))(
          jnp.asarray(logits))
  assert np.abs(np.asarray(g)).sum() > 0


def test_noisy_top_k_without_key_is_top_k_renormalized():
  logits = _logits(4, 7, 6)
  a = moe.noisy_top_k_router(logits, jnp.zeros_like(logits), 3)
  b = moe.top_k_router(logits, 3, renormalize=True)
  np.testing.assert_array_equal(a.expert_ids, b.expert_ids)
  np.testing.assert_allclose(a.combine_weights, b.combine_weights, rtol=1e-5)


def test_remoe_router_and_l1_loss():
  logits = np.asarray(_logits(5, 10, 4))
  r = moe.remoe_router(jnp.asarray(logits))
  gates = np.maximum(logits, 0)
  np.testing.assert_allclose(_dense_weights(r), gates, rtol=1e-6)
  state = moe.remoe_init(0.5)
  k = 2
  expected = 0.5 * 4 * sum(gates[:, i].mean() * (gates[:, i] > 0).sum()
                           / (10 * k) for i in range(4))
  np.testing.assert_allclose(moe.remoe_l1_loss(r, state, k=k), expected,
                             rtol=1e-5)


def test_remoe_coefficient_grows_by_1_2_per_step_below_target():
  dense = moe.remoe_router(jnp.ones((6, 8)))  # sparsity 0 < 1 - 2/8
  state = moe.remoe_init()
  update = jax.jit(moe.remoe_update, static_argnames="k")
  for _ in range(7):
    state = update(state, dense, k=2)
  np.testing.assert_allclose(state.l1_coef, 1e-8 * 1.2 ** 7, rtol=1e-5)
  sparse = moe.remoe_router(-jnp.ones((6, 8)))  # sparsity 1 >= target
  for _ in range(3):
    state = update(state, sparse, k=2)
  np.testing.assert_allclose(state.l1_coef, 1e-8 * 1.2 ** 4, rtol=1e-5)


def test_soft_moe_weights_normalise_and_match_numpy():
  logits = np.asarray(_logits(6, 5, 6))
  x = np.asarray(_logits(7, 5, 3))
  w = moe.soft_moe_weights(jnp.asarray(logits))
  d = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
  c = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  np.testing.assert_allclose(w.dispatch_weights, d, rtol=1e-5)
  np.testing.assert_allclose(w.combine_weights, c, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(w.dispatch_weights).sum(0), 1,
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(w.combine_weights).sum(1), 1,
                             rtol=1e-6)
  slots = moe.soft_moe_dispatch(jnp.asarray(x), w, 3)  # 3 experts, p = 2
  np.testing.assert_allclose(slots.reshape(6, 3), d.T @ x, rtol=1e-5,
                             atol=1e-6)
  y = np.asarray(_logits(8, 6, 2)).reshape(3, 2, 2)
  np.testing.assert_allclose(moe.soft_moe_combine(jnp.asarray(y), w),
                             c @ y.reshape(6, 2), rtol=1e-5, atol=1e-6)


def test_router_arguments_are_checked():
  logits = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match="k must"):
    moe.top_k_router(logits, 4)
  with pytest.raises(ValueError, match="k must"):
    moe.top_k_router(logits, 0)
  with pytest.raises(ValueError, match="logits"):
    moe.top_k_router(jnp.zeros(4), 1)
  with pytest.raises(ValueError, match="logits"):
    moe.top_k_router(jnp.zeros((4, 3), jnp.int32), 1)
  with pytest.raises(ValueError, match="capacity_factor"):
    moe.switch_router(logits, capacity_factor=-1.0)
  with pytest.raises(ValueError, match="capacity_factor"):
    moe.batch_prioritized_router(logits, 1, capacity_factor=None)
  with pytest.raises(ValueError, match="noise_logits"):
    moe.noisy_top_k_router(logits, jnp.zeros((4, 2)), 1)
  with pytest.raises(ValueError, match="multiplier"):
    moe.remoe_update(moe.remoe_init(), moe.remoe_router(logits), k=1,
                     multiplier=1.0)
  with pytest.raises(ValueError, match="num_experts"):
    moe.soft_moe_dispatch(jnp.zeros((4, 2)), moe.soft_moe_weights(logits), 2)


# --------------------------------------------------------------- dispatch


def _routings(logits, k):
  t, e = logits.shape
  routings = {
      "top_k": moe.top_k_router(logits, k),
      "top_k_capacity": moe.top_k_router(logits, k, capacity_factor=0.5),
      "switch": moe.switch_router(logits, capacity_factor=1.0),
      "remoe": moe.remoe_router(logits),
      "batch_prioritized": moe.batch_prioritized_router(
          logits, k, capacity_factor=0.75),
  }
  if (t * 2) % e == 0 and e >= 2:
    routings["expert_choice"] = moe.expert_choice_router(
        logits, capacity_factor=2.0)
  return routings


@functools.partial(jax.jit, static_argnums=2)
def _identity_round_trips(x, logits, k):
  results = {}
  for name, r in _routings(logits, k).items():
    xs, d = moe.sort_dispatch(x, r)
    buf, cd = moe.capacity_dispatch(x, r, x.shape[0] * r.expert_ids.shape[1])
    results[name] = (r.combine_weights, moe.sort_combine(xs, r, d),
                     moe.capacity_combine(buf, r, cd))
  return results


@hypothesis.settings(**_SETTINGS)
@hypothesis.given(tek=st.sampled_from([(1, 1, 1), (12, 4, 3)]),
                  seed=st.integers(0, 2**16))
def test_dispatch_identity_combine_scales_by_weight_sum(tek, seed):
  t, e, k = tek
  x = np.asarray(_logits(seed + 1, t, 3))
  results = _identity_round_trips(jnp.asarray(x), _logits(seed, t, e, 2.0), k)
  for name, (weights, sorted_out, padded_out) in results.items():
    expected = x * np.asarray(weights).sum(1, keepdims=True)
    np.testing.assert_allclose(sorted_out, expected, rtol=1e-5, atol=1e-6,
                               err_msg=name)
    np.testing.assert_allclose(padded_out, expected, rtol=1e-5, atol=1e-6,
                               err_msg=name)


def test_sort_dispatch_groups_rows_by_expert():
  r = moe.top_k_router(_logits(3, 9, 4, 2.0), 2, capacity_factor=0.5)
  x = jnp.arange(9.0)[:, None]
  xs, d = moe.sort_dispatch(x, r)
  ids, kept = np.asarray(r.expert_ids), np.asarray(r.kept)
  np.testing.assert_array_equal(
      d.group_sizes, [((ids == e) & kept).sum() for e in range(4)])
  start = 0
  for e, size in enumerate(np.asarray(d.group_sizes)):
    rows = np.sort(np.asarray(xs[start:start + size, 0]))
    tokens = np.sort(np.nonzero((ids == e) & kept)[0].astype(float))
    np.testing.assert_array_equal(rows, tokens)
    start += size


def test_capacity_dispatch_drops_overflow_and_zero_pads():
  r = moe.top_k_router(jnp.array([[2., 0.]] * 3), 1)  # all to expert 0
  buf, d = moe.capacity_dispatch(jnp.array([[1.], [2.], [3.]]), r, 2)
  np.testing.assert_array_equal(buf[..., 0], [[1., 2.], [0., 0.]])
  np.testing.assert_array_equal(d.kept[:, 0], [1, 1, 0])
  with pytest.raises(ValueError, match="capacity"):
    moe.capacity_dispatch(jnp.ones((3, 1)), r, 0)
  with pytest.raises(ValueError, match="x must"):
    moe.sort_dispatch(jnp.ones((4, 1)), r)


def _float_scatter_adds(jaxpr):
  """Floating-point scatter-adds in a jaxpr and its sub-jaxprs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scatter-add" and jnp.issubdtype(
        eqn.outvars[0].aval.dtype, jnp.floating):
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _float_scatter_adds(sub)
  return found


def test_sort_dispatch_backward_is_a_gather_not_a_scatter():
  r = moe.top_k_router(_logits(0, 8, 4), 2)

  def f(x):
    xs, d = moe.sort_dispatch(x, r)
    return jnp.sum(jnp.sin(xs) * jnp.arange(xs.size).reshape(xs.shape))

  x = _logits(1, 8, 3)
  assert not _float_scatter_adds(jax.make_jaxpr(jax.grad(f))(x).jaxpr)
  # Against the same loss written with an ordinary gather.
  ids = np.asarray(r.expert_ids).reshape(-1)
  perm = np.argsort(ids, kind="stable")
  tok = np.repeat(np.arange(8), 2)[perm]

  def ref(x):
    xs = x[tok]
    return jnp.sum(jnp.sin(xs) * jnp.arange(xs.size).reshape(xs.shape))

  np.testing.assert_allclose(jax.grad(f)(x), jax.grad(ref)(x), rtol=1e-5)
  # The check above can fail: the ordinary gather's gradient scatter-adds.
  assert _float_scatter_adds(jax.make_jaxpr(jax.grad(ref))(x).jaxpr)


def _naive_moe(x, dense_weights, w_in, w_out, b_in, b_out, act):
  """Every expert on every token, weighted by the routing."""
  h = act(jnp.einsum("td,edh->eth", x, w_in) + b_in[:, None])
  y = jnp.einsum("eth,ehn->etn", h, w_out) + b_out[:, None]
  return jnp.einsum("etn,te->tn", y, dense_weights)


def _dense(routing):
  e = routing.router_probs.shape[1]
  return jnp.einsum("tke,tk->te", jax.nn.one_hot(routing.expert_ids, e),
                    routing.combine_weights)


# tests/test_moe_layer.py checks the dropless layer against the naive MoE in
# the default run; these add the padded path and the other routers.
@pytest.mark.slow
@pytest.mark.parametrize("router", ["top_k", "remoe", "expert_choice"])
def test_dropless_mlp_equals_naive_with_gradients(router):
  t, d, h, n, e, k = 16, 5, 7, 3, 4, 2
  keys = jax.random.split(jax.random.key(11), 7)
  x = jax.random.normal(keys[0], (t, d))
  params = dict(
      w_r=jax.random.normal(keys[1], (d, e)),
      w_in=jax.random.normal(keys[2], (e, d, h)) / 2,
      w_out=jax.random.normal(keys[3], (e, h, n)) / 2,
      b_in=jax.random.normal(keys[4], (e, h)),
      b_out=jax.random.normal(keys[5], (e, n)))
  route = {"top_k": lambda z: moe.top_k_router(z, k, renormalize=True),
           "remoe": moe.remoe_router,
           "expert_choice": lambda z: moe.expert_choice_router(
               z, capacity_factor=2.0)}[router]

  def sparse(params, x):
    r = route(x @ params["w_r"])
    xs, disp = moe.sort_dispatch(x, r)
    ys = moe.expert_mlp(xs, params["w_in"], params["w_out"],
                        group_sizes=disp.group_sizes, b_in=params["b_in"],
                        b_out=params["b_out"], activation=jnp.tanh)
    return moe.sort_combine(ys, r, disp)

  def padded(params, x):
    r = route(x @ params["w_r"])
    buf, disp = moe.capacity_dispatch(x, r, t)
    ys = moe.expert_mlp(buf, params["w_in"], params["w_out"],
                        b_in=params["b_in"], b_out=params["b_out"],
                        activation=jnp.tanh)
    return moe.capacity_combine(ys, r, disp)

  def naive(params, x):
    r = route(x @ params["w_r"])
    return _naive_moe(x, _dense(r), params["w_in"], params["w_out"],
                      params["b_in"], params["b_out"], jnp.tanh)

  cot = jax.random.normal(keys[6], (t, n))
  want = naive(params, x)
  want_grads = jax.grad(lambda p, x: jnp.sum(naive(p, x) * cot),
                        argnums=(0, 1))(params, x)
  for fn in (sparse, padded):
    np.testing.assert_allclose(jax.jit(fn)(params, x), want, rtol=1e-5,
                               atol=1e-5)
    grads = jax.jit(jax.grad(lambda p, x: jnp.sum(fn(p, x) * cot),
                             argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_expert_mlp_checks_shapes():
  w_in, w_out = jnp.ones((2, 3, 4)), jnp.ones((2, 4, 5))
  with pytest.raises(ValueError, match="w_in and w_out"):
    moe.expert_mlp(jnp.ones((2, 3)), w_in, jnp.ones((3, 4, 5)),
                   group_sizes=jnp.array([1, 1]))
  with pytest.raises(ValueError, match="group_sizes"):
    moe.expert_mlp(jnp.ones((2, 3)), w_in, w_out, group_sizes=jnp.array([2]))
  with pytest.raises(ValueError, match="b_in"):
    moe.expert_mlp(jnp.ones((2, 3, 3)), w_in, w_out, b_in=jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="x must"):
    moe.expert_mlp(jnp.ones((2, 3)), w_in, w_out)
