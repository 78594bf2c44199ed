# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Hypothesis properties of every weight-sparsity transform (semantics 1-4).

Over random pytrees (dicts, lists, tuples, None leaves), dtypes and
sparsities: after any sequence of updates every masked-out entry is exactly
zero, every sparse leaf keeps exactly its budget (computed here with NumPy
from the documented rule), masks are bool, and a seed fixes the masks.
"""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj

SHAPES = [(4, 6), (6,), (2, 4, 6), (8, 2), (3,), (4, 4)]


@st.composite
def pytrees(draw, depth=2):
  """Nested dicts / lists / tuples of shapes, with some None leaves."""
  kind = draw(st.sampled_from(["dict", "list", "tuple"] if depth else
                              ["leaf"]))
  if kind == "leaf" or (depth < 2 and draw(st.booleans())):
    return draw(st.sampled_from(SHAPES + [None]))
  n = draw(st.integers(1, 3))
  children = [draw(pytrees(depth=depth - 1)) for _ in range(n)]
  if kind == "dict":
    return {f"k{i}": c for i, c in enumerate(children)}
  return children if kind == "list" else tuple(children)


def materialise(shapes, dtype, seed):
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(
      x, tuple) and all(isinstance(d, int) for d in x))
  keys = jax.random.split(jax.random.key(seed), max(len(leaves), 1))
  arrays = [jax.random.normal(k, s, dtype) for k, s in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, arrays)


def expected_budgets(params, sparsity):
  """Uniform budgets over ndim >= 2 leaves: round((1 - s) n), half to even."""
  return jax.tree.map(
      lambda p: int(np.round((1 - sparsity) * p.size)) if p.ndim >= 2
      else None, params)


# name -> (factory(sparsity, seed), sparsity in force after `steps` updates).
FACTORIES = {
    "static": (lambda s, seed: sj.static_sparse(
        optax.adam(1e-2), sparsity=s, distribution="uniform", seed=seed),
               lambda s, steps: s),
    "magnitude": (lambda s, seed: sj.magnitude_pruning(
        optax.sgd(0.1, momentum=0.9), sparsity=s, seed=seed),
                  lambda s, steps: s),
    # Masks follow s * min(t / 3, 1) at every step t = 0, ..., steps - 1.
    "gradual": (lambda s, seed: sj.magnitude_pruning(
        optax.adam(1e-2), sparsity=optax.linear_schedule(0.0, s, 3),
        update_every=1, seed=seed),
                lambda s, steps: s * min((steps - 1) / 3, 1.0)),
    # Masks update at t = 0, 2 (every 2 steps) to s * min(t / 2, 1).
    "random": (lambda s, seed: sj.random_pruning(
        optax.adam(1e-2), sparsity=optax.linear_schedule(0.0, s, 2),
        update_every=2, seed=seed),
               lambda s, steps: s * min(2 * ((steps - 1) // 2) / 2, 1.0)),
}


@hypothesis.settings(max_examples=12, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow],
                     phases=[hypothesis.Phase.explicit, hypothesis.Phase.reuse,
                             hypothesis.Phase.generate])
@hypothesis.given(
    shapes=pytrees(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
    sparsity=st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.97]),
    method=st.sampled_from(sorted(FACTORIES)),
    steps=st.integers(1, 4),
    seed=st.integers(0, 100),
)
def test_exact_zeros_budgets_bool_masks_determinism(shapes, dtype, sparsity,
                                                    method, steps, seed):
  params = materialise(shapes, dtype, seed)
  hypothesis.assume(jax.tree.leaves(params))
  factory, sparsity_after = FACTORIES[method]
  tx = factory(sparsity, seed)
  update = jax.jit(tx.update)

  def train(params):
    state = tx.init(params)
    for i in range(steps):
      grads = optax.tree.random_like(jax.random.key(1000 + i), params,
                                     sampler=jax.random.normal)
      updates, state = update(grads, state, params)
      params = optax.apply_updates(params, updates)
    return params, state

  final, state = train(params)
  masks = sj.get_masks(state)
  budgets = expected_budgets(params, np.float32(sparsity_after(sparsity,
                                                                steps)))
  none = lambda x: x is None  # noqa: E731
  flat_masks = jax.tree.leaves(
      jax.tree.map(lambda m, _: m, masks, params, is_leaf=none), is_leaf=none)
  for p, m, b in zip(jax.tree.leaves(final, is_leaf=none), flat_masks,
                     jax.tree.leaves(budgets, is_leaf=none), strict=True):
    if p is not None:
      assert p.dtype == dtype
    if b is None:
      assert m is None
      continue
    assert m.dtype == jnp.bool_
    assert int(m.sum()) == b
    assert not np.any(np.asarray(p, np.float32)[~np.asarray(m)])
  _, state_again = train(params)
  jax.tree.map(np.testing.assert_array_equal, masks,
               sj.get_masks(state_again))
