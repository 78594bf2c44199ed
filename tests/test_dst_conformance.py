# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Every drop-and-grow method with every kind of inner optimizer.

Each (method, inner optimizer) pair runs jitted updates, with mask updates,
on an explicit 8-device mesh with the kernel sharded over its columns: the
state types are identical after ``init`` and after the updates, the masks
keep the kernel's sharding, pruned weights are exactly zero, and the nonzero
counts follow each method's rule.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from transform_cases import methods

# Every drop-and-grow method of the shared registry (examples/methods.py).
# Uniform budgets, so that each leaf's count is known; GraNet reaches its
# final sparsity at step 4.
METHODS = {
    name: functools.partial(
        methods.make, name, sparsity=0.75, total_steps=100, update_every=2,
        distribution="uniform", **({"prune_end": 4} if name == "granet"
                                   else {}))
    for name, method in methods.METHODS.items()
    if method.profile in methods.DROP_AND_GROW}

INNERS = {
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-2),
    "sgd_momentum": lambda: optax.sgd(1e-2, momentum=0.9),
    "lion": lambda: optax.lion(1e-3),
    "inject_adam": lambda: optax.inject_hyperparams(optax.adam)(
        learning_rate=1e-2),
    "multisteps_adam": lambda: optax.MultiSteps(optax.adam(1e-2), 2),
}


def _params(mesh_spec=None):
  k1, k2 = jax.random.split(jax.random.key(0))
  w1 = jax.random.normal(k1, (16, 16))
  w2 = jax.random.normal(k2, (16, 8))
  if mesh_spec is not None:
    w1 = jax.sharding.reshard(w1, mesh_spec)
    w2 = jax.sharding.reshard(w2, mesh_spec)
  return {"w1": w1, "b": jnp.ones((16,)), "w2": w2}


def _grads(params, i):
  return optax.tree.random_like(jax.random.key(100 + i), params,
                                sampler=jax.random.normal)


def _total(masks):
  return sum(int(m.sum()) for m in jax.tree.leaves(masks))


def _pairs(shift):
  """Each method with a different inner optimizer, rotated by ``shift``."""
  methods, inners = sorted(METHODS), sorted(INNERS)
  return [(m, inners[(i + shift) % len(inners)])
          for i, m in enumerate(methods)]


# Two rotations (every method twice, every inner optimizer twice) by default;
# the full matrix in the slow tier.
FAST = _pairs(0) + _pairs(3)
SLOW = [pytest.param(m, i, marks=pytest.mark.slow) for m in sorted(METHODS)
        for i in sorted(INNERS) if (m, i) not in FAST]


@pytest.mark.parametrize("method,inner", FAST + SLOW)
def test_method_inner_on_mesh(method, inner):
  mesh = jax.make_mesh((8,), ("x",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  tx = METHODS[method](INNERS[inner]())
  with jax.set_mesh(mesh):
    params = _params(jax.P(None, "x"))
    state0 = tx.init(params)
    masks0 = sj.get_masks(state0)
    params = sj.masks.apply(params, masks0)
    update = jax.jit(tx.update)
    state = state0
    changed = False
    for i in range(5):
      updates, state = update(_grads(params, i), state, params)
      params = optax.apply_updates(params, updates)
      masks = sj.get_masks(state)
      for name in ("w1", "w2"):
        assert not np.any(np.asarray(params[name])[~np.asarray(masks[name])])
      changed |= any(bool(np.any(masks[n] != masks0[n]))
                     for n in ("w1", "w2"))
    assert jax.tree.map(jax.typeof, state0) == jax.tree.map(jax.typeof,
                                                            state)
    assert jax.typeof(masks["w1"]).sharding.spec == jax.P(None, "x")
    assert masks["b"] is None
  assert changed
  budget = {"w1": 64, "w2": 32}
  if method in ("rigl", "set", "mest"):
    assert {n: int(masks[n].sum()) for n in budget} == budget
  elif method == "snfs":
    assert _total(masks) == 96
  elif method == "srigl":
    for n in budget:
      fan_in = np.asarray(masks[n]).sum(axis=0)
      active = fan_in[fan_in > 0]
      assert np.all(active == active[0]), fan_in
      assert int(masks[n].sum()) <= budget[n]
  elif method == "granet":
    assert _total(masks) == 96  # 25% of 384, reached at step 4


@pytest.mark.parametrize("method", ["rigl", "snfs"])  # both engine paths
def test_method_under_multisteps_and_chain(method):
  tx = optax.MultiSteps(
      optax.chain(optax.clip_by_global_norm(1.0),
                  METHODS[method](optax.adam(1e-2))), 2)
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update)
  for i in range(6):
    updates, state = update(_grads(params, i), state, params)
    params = optax.apply_updates(params, updates)
  masks = sj.get_masks(state)
  for name in ("w1", "w2"):
    assert not np.any(np.asarray(params[name])[~np.asarray(masks[name])])
