# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Straight-through transforms: ste, top_kast, nm_sparse (SR-STE, MDGF).

References are NumPy: per-group argsort for N:M, a flat argsort for top-k,
and the SR-STE / Top-KAST gradient formulas written out by hand.
"""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj


def _np_n_m(w, n, m):
  """Keeps the n largest |w| of every m consecutive rows (axis 0)."""
  w = np.asarray(w)
  rows, cols = w.shape
  keep = np.zeros_like(w, dtype=bool)
  for g in range(rows // m):
    for c in range(cols):
      block = np.abs(w[g * m:(g + 1) * m, c])
      top = np.argsort(-block, kind="stable")[:n]
      keep[g * m + top, c] = True
  return keep


def _np_topk(x, k):
  flat = np.abs(np.asarray(x)).ravel()
  keep = np.zeros(flat.size, bool)
  keep[np.argsort(-flat, kind="stable")[:k]] = True
  return keep.reshape(np.shape(x))


def _params(seed=0, shapes=((16, 8), (8, 4))):
  keys = jax.random.split(jax.random.key(seed), len(shapes) + 1)
  params = {f"w{i}": jax.random.normal(k, s)
            for i, (k, s) in enumerate(zip(keys, shapes))}
  params["b"] = jax.random.normal(keys[-1], (4,))
  return params


def _loss(fparams, x, y):
  h = jnp.tanh(x @ fparams["w0"])
  return jnp.mean((h @ fparams["w1"] + fparams["b"] - y) ** 2)


def _data(seed=1):
  kx, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (32, 16)), jax.random.normal(ky, (32, 4))


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(
    nm=st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8), (4, 8), (1, 2)]),
    groups=st.integers(1, 4), cols=st.integers(1, 5),
    seed=st.integers(0, 2**16))
def test_nm_masks_exact_count_and_largest(nm, groups, cols, seed):
  n, m = nm
  w = np.random.default_rng(seed).standard_normal((groups * m, cols))
  w = jnp.asarray(w, jnp.float32)
  state = sj.nm_sparse(optax.sgd(0.1), n=n, m=m).init({"w": w})
  mask = np.asarray(sj.get_masks(state)["w"])
  per_group = mask.reshape(groups, m, cols).sum(axis=1)
  assert (per_group == n).all()
  np.testing.assert_array_equal(mask, _np_n_m(w, n, m))
  fwd = np.asarray(sj.forward_params({"w": w}, state)["w"])
  np.testing.assert_array_equal(fwd, np.where(mask, w, 0))


def test_nm_axis_and_bad_shape():
  w = jax.random.normal(jax.random.key(0), (3, 8))
  state = sj.nm_sparse(optax.sgd(0.1), n=2, m=4, axis=-1).init({"w": w})
  mask = np.asarray(sj.get_masks(state)["w"])
  np.testing.assert_array_equal(mask, _np_n_m(np.asarray(w).T, 2, 4).T)
  with pytest.raises(ValueError, match="does not divide"):
    sj.nm_sparse(optax.sgd(0.1), n=2, m=4).init({"w": w})
  with pytest.raises(ValueError, match="`n` and `m`"):
    sj.nm_sparse(optax.sgd(0.1), n=5, m=4)
  with pytest.raises(ValueError, match="sr_ste"):
    sj.nm_sparse(optax.sgd(0.1), sr_ste=-1.0)


@pytest.mark.parametrize("lam", [2e-4, 0.3])
def test_sr_ste_gradient(lam):
  params = _params()
  x, y = _data()
  tx = sj.nm_sparse(optax.sgd(1.0), n=2, m=4, sr_ste=lam)
  state = tx.init(params)
  grads = jax.grad(lambda p: _loss(sj.forward_params(p, state), x, y))(params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  for name in ("w0", "w1"):
    w = np.asarray(params[name])
    mask = _np_n_m(w, 2, 4)
    # The straight-through gradient: the gradient at the N:M weights.
    fwd = {k: (np.where(_np_n_m(v, 2, 4), v, 0) if k != "b" else v)
           for k, v in params.items()}
    g = np.asarray(jax.grad(_loss)(jax.tree.map(jnp.asarray, fwd), x,
                                   y)[name])
    expected = g + lam * (1 - mask) * w
    np.testing.assert_allclose(np.asarray(updates[name]), -expected,
                               rtol=1e-5, atol=1e-7)
    assert np.abs(g[~mask]).min() > 0  # gradients reach pruned weights
  np.testing.assert_allclose(updates["b"], -grads["b"], rtol=1e-6)


def test_mdgf_beta_one_is_dense_and_zero_is_hard():
  params = _params()
  dense = sj.nm_sparse(optax.sgd(0.1), decay=1.0).init(params)
  hard = sj.nm_sparse(optax.sgd(0.1), decay=0.0).init(params)
  plain = sj.nm_sparse(optax.sgd(0.1)).init(params)
  for name in ("w0", "w1"):
    w = np.asarray(params[name])
    np.testing.assert_array_equal(sj.forward_params(params, dense)[name], w)
    expected = np.where(_np_n_m(w, 2, 4), w, 0)
    np.testing.assert_array_equal(sj.forward_params(params, hard)[name],
                                  expected)
    np.testing.assert_array_equal(sj.forward_params(params, plain)[name],
                                  expected)


def test_mdgf_schedule_scales_pruned_weights():
  params = _params()
  x, y = _data()
  tx = sj.nm_sparse(optax.sgd(0.01), sr_ste=0.0,
                    decay=optax.linear_schedule(1.0, 0.0, 10))
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: _loss(sj.forward_params(p, state), x, y))(
        params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for k in range(1, 13):
    params, state = step(params, state)
    beta = max(0.0, 1.0 - k / 10)
    w = np.asarray(params["w0"])
    mask = np.asarray(sj.get_masks(state)["w0"])
    np.testing.assert_array_equal(mask, _np_n_m(w, 2, 4))
    np.testing.assert_allclose(sj.forward_params(params, state)["w0"],
                               w * (mask + beta * (1 - mask)), rtol=1e-6,
                               atol=1e-7)
  assert (np.asarray(sj.forward_params(params, state)["w0"]) != 0).sum() == (
      w.size // 2)


def _train(tx, steps=5, seed=0):
  params = _params(seed)
  x, y = _data()
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: _loss(sj.forward_params(p, state), x, y))(
        params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, grads

  params0 = params
  for _ in range(steps):
    params, state, grads = step(params, state)
  return params0, params, state, grads


@pytest.mark.parametrize("name,make,kept", [
    ("ste", lambda: sj.ste(optax.adam(1e-2), sparsity=0.75), (32, 8)),
    ("ste_global", lambda: sj.ste(optax.adam(1e-2), sparsity=0.75,
                                  scope="global"), None),
    ("top_kast", lambda: sj.top_kast(optax.adam(1e-2), forward_sparsity=0.75,
                                     backward_sparsity=0.5), (32, 8)),
    ("nm", lambda: sj.nm_sparse(optax.adam(1e-2), n=1, m=4), (32, 8)),
])
def test_dense_weights_exact_forward_sparsity_gradients_reach(name, make,
                                                              kept):
  params0, params, state, grads = _train(make())
  fwd = sj.forward_params(params, state)
  masks = sj.get_masks(state)
  # Weights stay dense.
  for leaf in jax.tree.leaves(params):
    assert int((leaf != 0).sum()) == leaf.size
  counts = (int((fwd["w0"] != 0).sum()), int((fwd["w1"] != 0).sum()))
  if kept is None:
    assert sum(counts) == 40  # global: 25 % of 160
  else:
    assert counts == kept
  np.testing.assert_array_equal(fwd["b"], params["b"])
  # Gradients reach pruned weights: the gradient through forward_params is
  # the gradient of the loss at the forward weights, at every entry.
  x, y = _data()
  g = jax.grad(lambda p: _loss(sj.forward_params(p, state), x, y))(params)
  g_ref = jax.grad(_loss)(fwd_ref(params, masks, name), x, y)
  for leaf in ("w0", "w1"):
    np.testing.assert_allclose(g[leaf], g_ref[leaf], rtol=1e-5, atol=1e-8)
    pruned = ~np.asarray(masks[leaf])
    assert (np.asarray(g[leaf])[pruned] != 0).mean() > 0.5
    if name != "top_kast":  # outside the backward set nothing moves
      moved = np.asarray(params[leaf] != params0[leaf])[pruned]
      assert moved.mean() > 0.5


def fwd_ref(params, masks, name):
  del name
  return {k: (v if masks[k] is None else jnp.where(masks[k], v, 0))
          for k, v in params.items()}


def test_ste_masks_follow_updated_weights_and_gradient_is_dense():
  params = _params()
  x, y = _data()
  tx = sj.ste(optax.sgd(0.5), sparsity=0.5)
  state = tx.init(params)
  np.testing.assert_array_equal(sj.get_masks(state)["w0"],
                                _np_topk(params["w0"], 64))
  grads = jax.grad(lambda p: _loss(sj.forward_params(p, state), x, y))(params)
  fwd = sj.masks.apply(params, sj.get_masks(state))
  np.testing.assert_allclose(grads["w0"], jax.grad(_loss)(fwd, x, y)["w0"],
                             rtol=1e-6)
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["w0"], -0.5 * grads["w0"], rtol=1e-6)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(sj.get_masks(state)["w0"],
                                _np_topk(new["w0"], 64))


def test_ste_schedule():
  schedule = optax.linear_schedule(0.0, 0.5, 4)
  _, params, state, _ = _train(sj.ste(optax.sgd(0.1), sparsity=schedule),
                               steps=6)
  # The masks of the last step come from the sparsity at its count (5).
  assert int(sj.get_masks(state)["w0"].sum()) == 64


def test_top_kast_sets_and_penalty():
  params = _params()
  lam = 0.1
  tx = sj.top_kast(optax.sgd(1.0), forward_sparsity=0.75,
                   backward_sparsity=0.5, penalty=lam)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, new_state = jax.jit(tx.update)(grads, state, params)
  for name, size in (("w0", 128), ("w1", 32)):
    w = np.asarray(params[name])
    a = _np_topk(w, size // 4)
    b = _np_topk(w, size // 2)
    assert (a <= b).all()
    np.testing.assert_array_equal(sj.get_masks(state)[name], a)
    np.testing.assert_array_equal(state.method_state.backward[name], b)
    coef = np.where(a, 1.0, np.where(b, 4.0, 0.0))  # 1/D with D = 1/4
    expected = np.where(b, 0.5 + lam * coef * w, 0.0)
    np.testing.assert_allclose(updates[name], -expected, rtol=1e-6, atol=1e-7)
    stepped = w + np.asarray(updates[name])
    np.testing.assert_array_equal(sj.get_masks(new_state)[name],
                                  _np_topk(stepped, size // 4))
  np.testing.assert_allclose(updates["b"], -grads["b"])


def test_top_kast_bad_args():
  with pytest.raises(ValueError, match="backward_sparsity"):
    sj.top_kast(optax.sgd(1.0), forward_sparsity=0.5, backward_sparsity=0.8)
  with pytest.raises(ValueError, match="forward_sparsity"):
    sj.top_kast(optax.sgd(1.0), forward_sparsity=1.0, backward_sparsity=0.5)
  with pytest.raises(ValueError, match="penalty"):
    sj.top_kast(optax.sgd(1.0), forward_sparsity=0.5, backward_sparsity=0.2,
                penalty=-1.0)


def test_ste_with_nnx_optimizer():
  nnx = pytest.importorskip("flax.nnx")
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  tx = sj.nm_sparse(optax.adam(1e-2), n=2, m=4, decay=0.5)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.ones((2, 8))

  @nnx.jit
  def step(model, opt):
    def loss(model):
      params = nnx.state(model, nnx.Param)
      fwd = sj.forward_params(params, opt.opt_state)
      return jnp.sum((x @ fwd["kernel"] + fwd["bias"]) ** 2)

    grads = nnx.grad(loss)(model)
    opt.update(model, grads)

  step(model, opt)
  kernel = np.asarray(model.kernel[...])
  assert (kernel != 0).all()
  params = nnx.state(model, nnx.Param)
  fwd = np.asarray(sj.forward_params(params, opt.opt_state)["kernel"])
  mask = _np_n_m(kernel, 2, 4)
  np.testing.assert_allclose(fwd, kernel * np.where(mask, 1.0, 0.5),
                             rtol=1e-6)
