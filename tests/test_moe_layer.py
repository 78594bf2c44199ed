# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""sparsejax.nn.MoE against the naive every-expert-on-every-token MoE."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import moe
from sparsejax.nn import MoE
from sparsejax.nn import MoEAux
from sparsejax.nn import RouterState
from sparsejax.nn import upcycle_mlp

D, H, E, T = 6, 8, 4, 12


def _x(seed=0, t=T):
  return jax.random.normal(jax.random.key(seed), (t, D))


def _params(layer):
  return {name: getattr(layer, name)[...]
          for name in ("router_kernel", "w_in", "w_out", "b_in", "b_out")}


def _naive(params, x, dense_weights_fn, act=jax.nn.gelu):
  """Every expert on every token, summed with ``dense_weights_fn(logits)``.

  Written without any sparsejax routing, dispatch or grouped matmul.
  """
  logits = x @ params["router_kernel"]
  h = act(jnp.einsum("td,edh->eth", x, params["w_in"])
          + params["b_in"][:, None])
  y = jnp.einsum("eth,ehn->etn", h, params["w_out"]) + params["b_out"][:, None]
  return jnp.einsum("etn,te->tn", y, dense_weights_fn(logits))


def _top_k_weights(k):
  def weights(logits):
    p = jax.nn.softmax(logits, axis=-1)
    kth = jnp.sort(p, axis=-1)[:, -k][:, None]
    w = jnp.where(p >= kth, p, 0.0)
    return w / jnp.sum(w, axis=-1, keepdims=True)
  return weights


def _randomize(layer, seed=1):
  """Nonzero biases and a sharper router, so that every term is exercised."""
  keys = jax.random.split(jax.random.key(seed), 3)
  layer.router_kernel[...] = jax.random.normal(keys[0], (D, E))
  layer.b_in[...] = jax.random.normal(keys[1], layer.b_in.shape)
  layer.b_out[...] = jax.random.normal(keys[2], layer.b_out.shape)
  return layer


def test_dropless_layer_equals_naive_with_gradients():
  layer = _randomize(MoE(D, H, E, k=2, rngs=nnx.Rngs(0)))
  x = _x()
  cot = jax.random.normal(jax.random.key(5), (T, D))
  naive = lambda p, x: _naive(p, x, _top_k_weights(2))
  np.testing.assert_allclose(layer(x), naive(_params(layer), x),
                             rtol=1e-5, atol=1e-5)

  def loss(layer, x):
    return jnp.sum(layer(x) * cot)

  grads, x_grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(layer, x)
  want, want_x = jax.grad(lambda p, x: jnp.sum(naive(p, x) * cot),
                          argnums=(0, 1))(_params(layer), x)
  for name, value in want.items():
    np.testing.assert_allclose(getattr(grads, name)[...], value, rtol=1e-5,
                               atol=1e-5, err_msg=name)
  np.testing.assert_allclose(x_grad, want_x, rtol=1e-5, atol=1e-5)


def test_switch_layer_drops_over_capacity():
  layer = _randomize(MoE(D, H, E, k=1, router="switch",
                         capacity_factor=1.0, rngs=nnx.Rngs(0)))
  x = _x(2, 16)
  y, aux = layer(x, return_aux=True)
  r = moe.switch_router(x @ layer.router_kernel[...], capacity_factor=1.0)

  def weights(logits):
    del logits
    return jnp.einsum("tke,tk->te", jax.nn.one_hot(r.expert_ids, E),
                      r.combine_weights)

  np.testing.assert_allclose(y, _naive(_params(layer), x, weights),
                             rtol=1e-5, atol=1e-5)
  kept = np.asarray(r.kept[:, 0])
  np.testing.assert_array_equal(np.asarray(y)[~kept], 0.0)
  np.testing.assert_allclose(aux.dropped, 1 - kept.mean(), rtol=1e-6)
  assert np.bincount(np.asarray(r.expert_ids[kept, 0]), minlength=E).max() <= 4


def test_expert_choice_layer_equals_naive():
  layer = _randomize(MoE(D, H, E, k=2, router="expert_choice",
                         rngs=nnx.Rngs(0)))
  x = _x(3)

  def weights(logits):
    p = jax.nn.softmax(logits, axis=-1)
    capacity = T * 2 // E
    kth = jnp.sort(p, axis=0)[-capacity][None, :]
    return jnp.where(p >= kth, p, 0.0)

  y, aux = layer(x, return_aux=True)
  np.testing.assert_allclose(y, _naive(_params(layer), x, weights),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(aux.expert_load, np.full(E, 1 / E), rtol=1e-6)


def test_remoe_layer_updates_coefficient_in_training_only():
  layer = _randomize(MoE(D, H, E, k=1, router="remoe", rngs=nnx.Rngs(0)))
  x = _x(4)
  gates = np.maximum(np.asarray(x @ layer.router_kernel[...]), 0)
  # A random router opens about half the gates: denser than 1 - 1/4.
  assert (gates == 0).mean() < 0.75
  y, aux = layer(x, return_aux=True)
  np.testing.assert_allclose(
      y, _naive(_params(layer), x, jax.nn.relu), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer.remoe_l1_coef[...], 1.2e-8, rtol=1e-6)
  assert float(aux.remoe_l1) > 0
  layer.eval()
  layer(x)
  np.testing.assert_allclose(layer.remoe_l1_coef[...], 1.2e-8, rtol=1e-6)
  assert isinstance(layer.remoe_l1_coef, RouterState)


def test_noisy_layers_are_random_in_training_only():
  for router, kwargs in (("noisy_top_k", {}),
                         ("batch_prioritized", {"capacity_factor": 2.0,
                                                "noise_std": 5.0})):
    layer = MoE(D, H, E, k=2, router=router, rngs=nnx.Rngs(0), **kwargs)
    if router == "noisy_top_k":
      layer.noise_kernel[...] = jnp.ones((D, E))
    x = _x(5)
    a, b = layer(x), layer(x)
    assert not np.allclose(a, b), router
    layer.eval()
    np.testing.assert_array_equal(layer(x), layer(x))


def test_upcycled_layer_equals_dense_mlp():
  fc1 = nnx.Linear(D, H, rngs=nnx.Rngs(0))
  fc2 = nnx.Linear(H, D, rngs=nnx.Rngs(1))
  fc1.bias[...] = jax.random.normal(jax.random.key(2), (H,))
  fc2.bias[...] = jax.random.normal(jax.random.key(3), (D,))
  x = _x(6)
  dense = fc2(jax.nn.gelu(fc1(x)))
  layer = upcycle_mlp(fc1, fc2, E, k=2, rngs=nnx.Rngs(4))
  np.testing.assert_allclose(layer(x), dense, rtol=1e-5, atol=1e-5)
  # Not renormalised, top-1: the dense output times the top probability.
  switch = upcycle_mlp(fc1, fc2, E, k=1, router="switch",
                       capacity_factor=None, rngs=nnx.Rngs(4))
  p = jax.nn.softmax(x @ switch.router_kernel[...], axis=-1).max(-1)
  np.testing.assert_allclose(switch(x), dense * p[:, None], rtol=1e-5,
                             atol=1e-5)
  # The experts are copies, not views of the dense layer.
  layer.w_in[...] = layer.w_in[...] + 1
  np.testing.assert_allclose(fc2(jax.nn.gelu(fc1(x))), dense)
  with pytest.raises(ValueError, match="hidden_features"):
    upcycle_mlp(fc1, fc2, E, hidden_features=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="linear_out"):
    upcycle_mlp(fc1, fc1, E, rngs=nnx.Rngs(0))


def test_aux_is_returned_and_sown():
  layer = MoE(D, H, E, k=2, sow_aux=True, rngs=nnx.Rngs(0))
  x = _x(7).reshape(3, 4, D)
  (y, aux), sown = nnx.capture(
      lambda m, x: m(x, return_aux=True), nnx.Intermediate)(layer, x)
  assert y.shape == (3, 4, D) and isinstance(aux, MoEAux)
  np.testing.assert_allclose(sown["moe_aux"][0].load_balancing,
                             aux.load_balancing)
  np.testing.assert_allclose(np.sum(aux.expert_load), 1.0, rtol=1e-6)
  probs = jax.nn.softmax(x.reshape(-1, D) @ layer.router_kernel[...], -1)
  ids = jax.lax.top_k(probs, 2)[1]
  counts = np.bincount(np.asarray(ids).reshape(-1), minlength=E)
  np.testing.assert_allclose(
      aux.load_balancing, E * np.sum(np.mean(probs, 0) * counts / (T * 2)),
      rtol=1e-5)
  np.testing.assert_allclose(aux.expert_load, counts / counts.sum(),
                             rtol=1e-6)


def test_training_step_reduces_loss():
  layer = MoE(D, H, E, k=2, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)
  x = _x(8, 32)
  target = jnp.sin(x)

  @nnx.jit
  def step(layer, optimizer):
    def loss_fn(layer):
      y, aux = layer(x, return_aux=True)
      return (jnp.mean((y - target) ** 2) + 1e-2 * aux.load_balancing
              + 1e-3 * aux.z_loss)
    loss, grads = nnx.value_and_grad(loss_fn)(layer)
    optimizer.update(layer, grads)
    return loss

  losses = [float(step(layer, optimizer)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]


def test_bad_arguments_raise():
  rngs = nnx.Rngs(0)
  with pytest.raises(ValueError, match="router"):
    MoE(D, H, E, router="hash", rngs=rngs)
  with pytest.raises(ValueError, match="k must"):
    MoE(D, H, E, k=5, rngs=rngs)
  with pytest.raises(ValueError, match="k must be 1"):
    MoE(D, H, E, k=2, router="switch", rngs=rngs)
  with pytest.raises(ValueError, match="capacity_factor"):
    MoE(D, H, E, capacity_factor=-1.0, rngs=rngs)
  with pytest.raises(ValueError, match="capacity_factor"):
    MoE(D, H, E, router="batch_prioritized", rngs=rngs)
  with pytest.raises(ValueError, match="num_experts"):
    MoE(D, H, 0, rngs=rngs)
  with pytest.raises(ValueError, match="x must"):
    MoE(D, H, E, rngs=rngs)(jnp.ones((2, D + 1)))


@pytest.mark.slow  # the Pallas interpreter: about 20 s of CPU
def test_dropless_layer_on_the_pallas_kernel_in_interpret_mode():
  layer = _randomize(MoE(D, H, E, k=2, gmm_implementation="pallas_tpu",
                         gmm_interpret=True, rngs=nnx.Rngs(0)))
  x = _x(9)
  cot = jax.random.normal(jax.random.key(10), (T, D))
  naive = lambda p, x: _naive(p, x, _top_k_weights(2))
  np.testing.assert_allclose(layer(x), naive(_params(layer), x), rtol=1e-5,
                             atol=1e-5)
  grads = nnx.grad(lambda m: jnp.sum(m(x) * cot))(layer)
  want = jax.grad(lambda p: jnp.sum(naive(p, x) * cot))(_params(layer))
  for name, value in want.items():
    np.testing.assert_allclose(getattr(grads, name)[...], value, rtol=1e-5,
                               atol=1e-5, err_msg=name)
