# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Router values of sparsejax.moe and sparsejax.nn.MoE taking them."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import moe
from sparsejax.nn import MoE
from sparsejax.nn import RouterState

D, H, E, T = 6, 8, 4, 12

# (name, MoE keywords with the name, the router value they stand for)
_EQUIVALENT = [
    ("top_k", dict(k=2), moe.top_k(2)),
    ("top_k", dict(k=3, renormalize=False, capacity_factor=1.0),
     moe.top_k(3, renormalize=False, capacity_factor=1.0)),
    ("switch", dict(k=1, capacity_factor=1.0),
     moe.switch(capacity_factor=1.0)),
    ("noisy_top_k", dict(k=2), moe.noisy_top_k(2)),
    ("expert_choice", dict(k=2), moe.expert_choice(capacity_factor=2)),
    ("remoe", dict(k=1, remoe_l1_coef=1e-3), moe.remoe(1, l1_coef=1e-3)),
    ("batch_prioritized", dict(k=2, capacity_factor=1.5, noise_std=0.5),
     moe.batch_prioritized(2, capacity_factor=1.5, noise_std=0.5)),
]


def _plain(tree):
  """Key arrays as their raw data, so that NumPy can compare them."""
  return jax.tree.map(
      lambda a: jax.random.key_data(a)
      if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a, tree)


def _x(seed=0):
  return jax.random.normal(jax.random.key(seed), (T, D))


@pytest.mark.parametrize("name,kwargs,router", _EQUIVALENT,
                         ids=[f"{n}-{i}" for i, (n, _, _) in
                              enumerate(_EQUIVALENT)])
def test_router_value_equals_router_name(name, kwargs, router):
  by_name = MoE(D, H, E, router=name, rngs=nnx.Rngs(0), **kwargs)
  by_value = MoE(D, H, E, router=router, rngs=nnx.Rngs(0))
  assert by_name.router == router
  assert nnx.graphdef(by_name) == nnx.graphdef(by_value)
  keys = jax.random.split(jax.random.key(1), 2)
  for layer in (by_name, by_value):  # a sharp router: every path is used
    layer.router_kernel[...] = 3 * jax.random.normal(keys[0], (D, E))
    if name == "noisy_top_k":
      layer.noise_kernel[...] = jax.random.normal(keys[1], (D, E))
  x = _x()
  for deterministic in (False, False, True):  # noise and state updates too
    want = by_name(x, deterministic=deterministic, return_aux=True)
    got = by_value(x, deterministic=deterministic, return_aux=True)
    jax.tree.map(np.testing.assert_array_equal, got, want)
  # Every variable too: router state, router params and the noise stream.
  jax.tree.map(np.testing.assert_array_equal, _plain(nnx.state(by_value)),
               _plain(nnx.state(by_name)))


@dataclasses.dataclass(frozen=True)
class _BiasedTop1(moe.Router):
  """Top-1 of ``logits + bias`` (a learned per-expert bias), weight 1, and a
  state that counts the training calls."""

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    del in_features
    return moe.RouterVariables(
        params={"expert_bias": jnp.zeros(num_experts, param_dtype)},
        state={"calls": jnp.zeros((), jnp.int32)})

  def route(self, logits, variables, *, tokens=None, key=None):
    scores = logits + variables.params["expert_bias"]
    ids = jnp.argmax(scores, axis=-1)[:, None]
    probs = jax.nn.softmax(scores, axis=-1)
    weights = jnp.take_along_axis(probs, ids, axis=-1) / jax.lax.stop_gradient(
        jnp.take_along_axis(probs, ids, axis=-1))  # 1, with a gradient
    return moe.Routing(
        expert_ids=ids.astype(jnp.int32), combine_weights=weights,
        kept=jnp.ones_like(ids, bool), router_probs=probs,
        router_logits=logits, load_probs=jax.nn.one_hot(ids[:, 0], E))

  def update(self, routing, variables):
    return {"calls": variables.state["calls"] + 1}


def test_user_defined_router():
  layer = MoE(D, H, E, router=_BiasedTop1(), rngs=nnx.Rngs(0))
  assert isinstance(layer.expert_bias, nnx.Param)
  assert isinstance(layer.calls, RouterState)
  layer.expert_bias[...] = jnp.array([0., 0., 0., 5.])  # all to expert 3
  x = _x(2)
  y, aux = layer(x, return_aux=True)
  h = jax.nn.gelu(x @ layer.w_in[3] + layer.b_in[3])
  np.testing.assert_allclose(y, h @ layer.w_out[3] + layer.b_out[3],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(aux.expert_load, [0, 0, 0, 1])
  assert int(layer.calls[...]) == 1
  layer.eval()
  layer(x)
  assert int(layer.calls[...]) == 1
  grads = nnx.grad(lambda m: m(x).sum())(layer)
  assert float(jnp.abs(grads["expert_bias"][...]).sum()) > 0


def test_bad_router_values_raise():
  rngs = nnx.Rngs(0)
  for bad in (None, 42, moe.top_k_router, ("top_k",)):
    with pytest.raises(ValueError, match="router must be"):
      MoE(D, H, E, router=bad, rngs=rngs)
  with pytest.raises(ValueError, match="k must"):
    MoE(D, H, E, router=moe.top_k(E + 1), rngs=rngs)
  with pytest.raises(ValueError, match="^k belongs to the router"):
    MoE(D, H, E, router=moe.top_k(2), k=2, rngs=rngs)
  with pytest.raises(ValueError, match="^capacity_factor belongs"):
    MoE(D, H, E, router=moe.switch(), capacity_factor=1.0, rngs=rngs)

  @dataclasses.dataclass(frozen=True)
  class Clashing(moe.Router):
    def init(self, in_features, num_experts, param_dtype=jnp.float32):
      return moe.RouterVariables({"w_in": jnp.zeros(())}, {})

  with pytest.raises(ValueError, match="router=.*w_in"):
    MoE(D, H, E, router=Clashing(), rngs=rngs)
  with pytest.raises(NotImplementedError, match="route"):
    MoE(D, H, E, router=moe.Router(), rngs=rngs)(_x())


def test_router_factories_check_their_arguments():
  for call, name in (
      (lambda: moe.top_k(0), "k"),
      (lambda: moe.top_k(2, renormalize="yes"), "renormalize"),
      (lambda: moe.top_k(2, capacity_factor=-1.0), "capacity_factor"),
      (lambda: moe.switch(capacity_factor=0), "capacity_factor"),
      (lambda: moe.noisy_top_k(True), "k"),
      (lambda: moe.batch_prioritized(1, capacity_factor=None),
       "capacity_factor"),
      (lambda: moe.batch_prioritized(1, noise_std=-1.0), "noise_std"),
      (lambda: moe.expert_choice(capacity_factor=None), "capacity_factor"),
      (lambda: moe.remoe(2, l1_coef=0.0), "l1_coef"),
      (lambda: moe.remoe(2, multiplier=1.0), "multiplier")):
    with pytest.raises(ValueError, match=f"^{name}"):
      call()


def test_router_values_are_plain_comparable_values():
  assert moe.top_k(2) == moe.top_k(2) and moe.top_k(2) != moe.top_k(1)
  assert hash(moe.remoe(2)) == hash(moe.remoe(2))
  assert moe.noisy_top_k().stochastic and moe.batch_prioritized().stochastic
  assert not moe.top_k().stochastic
  # The capacity that decides the dispatch path, without a layer.
  assert moe.top_k(2).capacity(12, 4) is None
  assert moe.top_k(2, capacity_factor=1.0).capacity(12, 4) == 6
  assert moe.expert_choice(capacity_factor=1.0).capacity(12, 4) == 3
  assert moe.remoe(2).capacity(12, 4) is None
  # A switch router given by name defaults to k = 1.
  assert MoE(D, H, E, router="switch", rngs=nnx.Rngs(0)).router == (
      moe.switch(capacity_factor=None))
