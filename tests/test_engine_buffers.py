# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""What XLA makes of a train step with a sparsity transform (no timing).

The engine runs a mask update as a loop of 0 or 1 trips so that, with donated
buffers, the optimizer state is updated in place, and it hides the loop's
read-only inputs behind an optimization barrier so that the mask selection is
not hoisted out of the loop (which would run it on every step). Both are
properties of the compiled step and are checked here on its optimized HLO:
the top level of the step copies no more float buffers than a dense Adam step
does, and holds no scatter (every selection scatters into histograms; the
step's loss below has none).
"""

import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest

from transform_cases import methods

NEVER = 10**9

# Every method of the shared registry (examples/methods.py), with mask
# updates so rare that the compiled step is the steady one; the gradual
# methods hold their target from step 0 (0.75: N:M is 1:4).
TRANSFORMS = {
    name: functools.partial(methods.make, name, sparsity=0.75,
                            total_steps=NEVER, update_every=NEVER,
                            ramp_steps=0)
    for name in methods.METHODS}


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {"w1": jax.random.normal(k1, (64, 48)), "b1": jnp.zeros(48),
          "w2": jax.random.normal(k2, (48, 16))}


def _entry_hlo(tx):
  """The top-level computation of a jitted, donated train step."""
  params = _params()
  x = jnp.ones((8, 64))

  def loss(p):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"]) ** 2)

  def step(p, s):
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, updates), s

  text = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, tx.init(params)).compile().as_text()
  return text[text.index("\nENTRY"):]


@functools.cache
def _dense_entry_hlo():
  return _entry_hlo(optax.adam(1e-3))


def _float_copies(entry):
  return len(re.findall(r"= f32\[[0-9,]*\]\S* copy\(", entry))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_steady_step_copies_no_state_and_hoists_no_selection(name):
  dense = _dense_entry_hlo()
  sparse = _entry_hlo(TRANSFORMS[name](optax.adam(1e-3)))
  assert "scatter" not in dense
  # Loop bodies are computations of their own: a scatter at the top level is
  # a selection hoisted out of the mask-update loop.
  assert "scatter" not in sparse
  assert _float_copies(sparse) <= _float_copies(dense)
