# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Optax conformance suite, run on every weight-sparsity transform.

Adapted from the checks optax runs on its own optimizers: unknown extra
arguments, no recompilation, ``map_params`` over the state,
``inject_hyperparams`` equality, ``MultiSteps``, dtype preservation, type
stability through ``lax.cond`` and on an explicit 8-device mesh.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
import transform_cases
from transform_cases import CASES
from transform_cases import make

NAMES = transform_cases.names(CASES)


def params_tree(dtype=jnp.float32):
  key = jax.random.key(42)
  k1, k2, k3 = jax.random.split(key, 3)
  return {
      "dense": {"kernel": jax.random.normal(k1, (8, 6), dtype),
                "bias": jnp.full((6,), 0.1, dtype)},
      "conv": [jax.random.normal(k2, (2, 4, 8), dtype)],
      "out": (jax.random.normal(k3, (6, 4), dtype), None),
  }


def grads_like(params, step):
  return optax.tree.random_like(jax.random.key(step), params,
                                sampler=jax.random.normal)


def run(tx, params, steps, *, jit=True):
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  for i in range(steps):
    updates, state = update(grads_like(params, i), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def assert_pruned_are_zero(params, masks):
  none = lambda x: x is None  # noqa: E731
  for p, m in zip(jax.tree.leaves(params, is_leaf=none), jax.tree.leaves(
      jax.tree.map(lambda m, _: m, masks, params, is_leaf=none),
      is_leaf=none), strict=True):
    if m is not None:
      assert m.dtype == jnp.bool_
      assert not np.any(np.asarray(p, np.float32)[~np.asarray(m)])


@pytest.mark.parametrize("name", NAMES)
def test_unknown_extra_args_and_exact_zeros(name):
  tx = make(name, optax.adam(1e-2))
  params = params_tree()
  state = tx.init(params)
  updates, state = tx.update(grads_like(params, 0), state, params,
                             some_unknown_arg=3)
  params = optax.apply_updates(params, updates)
  if CASES[name].exact_zero:
    assert_pruned_are_zero(params, sj.get_masks(state))


@pytest.mark.parametrize("name", NAMES)
def test_no_recompilation_and_cond_type_stability(name):
  tx = make(name, optax.adam(1e-2))
  params = params_tree()
  update = jax.jit(tx.update)
  state0 = tx.init(params)
  _, state1 = update(grads_like(params, 0), state0, params)
  _, state2 = update(grads_like(params, 1), state1, params)
  assert update._cache_size() == 1  # pylint: disable=protected-access
  assert jax.tree.map(jax.typeof, state0) == jax.tree.map(jax.typeof, state2)
  # lax.cond forces identical types between the two branches.
  jax.jit(lambda c: jax.lax.cond(c, lambda: state0, lambda: state2))(True)


@pytest.mark.parametrize("name", NAMES)
def test_map_params_over_state(name):
  tx = make(name, optax.adam(1e-2))
  params = params_tree()
  state = tx.init(params)
  mapped = optax.tree.map_params(tx, lambda x: x, state)
  assert jax.tree.structure(mapped) == jax.tree.structure(state)
  # The masks are recognised as a params-shaped part of the state.
  shapes = optax.tree.map_params(
      tx, lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float16), state,
      transform_non_params=lambda x: x)
  masks = sj.get_masks(shapes)
  assert all(m.dtype == jnp.float16 for m in jax.tree.leaves(masks))


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_gives_identical_results(name):
  case = CASES[name]
  plain = make(name, optax.adam(1e-2))
  numeric = {k: v for k, v in case.kwargs.items()
             if k not in case.static_args}
  static = {k: v for k, v in case.kwargs.items() if k in case.static_args}
  accepted = inspect.signature(case.factory).parameters
  injected = optax.inject_hyperparams(
      case.factory,
      static_args=tuple(a for a in case.static_args if a in accepted))(
          inner=optax.adam(1e-2), **numeric, **static)
  params = params_tree()
  p1, s1 = run(plain, params, 4)
  p2, s2 = run(injected, params, 4)
  jax.tree.map(np.testing.assert_array_equal, p1, p2)
  jax.tree.map(np.testing.assert_array_equal, sj.get_masks(s1),
               sj.get_masks(s2))


@pytest.mark.parametrize("name", NAMES)
def test_multi_steps(name):
  tx = optax.MultiSteps(make(name, optax.adam(1e-2)), every_k_schedule=2)
  params, state = run(tx, params_tree(), 6)
  masks = sj.get_masks(state)
  assert all(m.dtype == jnp.bool_ for m in jax.tree.leaves(masks))
  if CASES[name].exact_zero:
    assert_pruned_are_zero(params, masks)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_preserved_bf16(name):
  tx = make(name, optax.sgd(1e-2, momentum=0.9))
  params = params_tree(jnp.bfloat16)
  state0 = tx.init(params)
  updates, state1 = jax.jit(tx.update)(grads_like(params, 0), state0, params)
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(
      lambda p: p.dtype, params)
  assert jax.tree.map(jax.typeof, state0) == jax.tree.map(jax.typeof, state1)
  if CASES[name].exact_zero:
    assert_pruned_are_zero(optax.apply_updates(params, updates),
                           sj.get_masks(state1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spec", [jax.P(), jax.P(None, "x")])
def test_sharded_state_types_stable(name, spec):
  mesh = jax.make_mesh((8,), ("x",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  tx = make(name, optax.adam(1e-2))
  with jax.set_mesh(mesh):
    params = {
        "w": jax.sharding.reshard(
            jnp.arange(1., 129.).reshape(8, 16) / 100, spec),
        "b": jnp.ones((16,)),
    }
    state0 = tx.init(params)
    update = jax.jit(tx.update)
    _, state1 = update(params, state0, params)
    _, state2 = update(params, state1, params)
    assert jax.tree.map(jax.typeof, state0) == jax.tree.map(
        jax.typeof, state2)
    mask = sj.get_masks(state2)["w"]
    assert jax.typeof(mask).sharding.spec == jax.typeof(
        params["w"]).sharding.spec
