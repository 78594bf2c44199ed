# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Expert parallelism on the 8 CPU devices equals the single-device MoE."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import moe
from sparsejax.nn import MoE

D, H, N, E, T = 5, 6, 3, 16, 64


def _mesh():
  assert jax.device_count() == 8
  return jax.make_mesh((8,), ("expert",))


def _setup(seed=0):
  keys = jax.random.split(jax.random.key(seed), 6)
  x = jax.random.normal(keys[0], (T, D))
  params = dict(
      w_in=jax.random.normal(keys[1], (E, D, H)),
      w_out=jax.random.normal(keys[2], (E, H, N)),
      b_in=jax.random.normal(keys[3], (E, H)),
      b_out=jax.random.normal(keys[4], (E, N)))
  w_r = jax.random.normal(keys[5], (D, E))
  return x, params, w_r


def _expert_fn(p, rows):
  return moe.expert_mlp(rows, p["w_in"], p["w_out"], b_in=p["b_in"],
                        b_out=p["b_out"], activation=jnp.tanh)


def _single_device(params, x, routing):
  rows, d = moe.sort_dispatch(x, routing)
  rows = moe.expert_mlp(rows, params["w_in"], params["w_out"],
                        group_sizes=d.group_sizes, b_in=params["b_in"],
                        b_out=params["b_out"], activation=jnp.tanh)
  return moe.sort_combine(rows, routing, d)


_ROUTERS = {
    "top_2": lambda z: moe.top_k_router(z, 2, renormalize=True),
    "switch_capacity": lambda z: moe.switch_router(z, capacity_factor=1.0),
    "expert_choice": lambda z: moe.expert_choice_router(
        z, capacity_factor=2.0),
}


@pytest.mark.parametrize("router", [
    "top_2", "switch_capacity",
    pytest.param("expert_choice", marks=pytest.mark.slow)])
def test_expert_parallel_equals_single_device(router):
  mesh = _mesh()
  x, params, w_r = _setup()
  route = _ROUTERS[router]
  cot = jax.random.normal(jax.random.key(9), (T, N))

  def parallel(params, x):
    r = route(x @ w_r)
    return moe.expert_parallel(_expert_fn, params, x, r, mesh=mesh,
                               axis_name="expert")

  def single(params, x):
    return _single_device(params, x, route(x @ w_r))

  want = jax.jit(single)(params, x)
  got = jax.jit(parallel)(params, x)
  assert got.sharding.spec[0] == "expert"
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  if router == "top_2":
    grad = lambda f: jax.jit(jax.grad(
        lambda p, x: jnp.sum(f(p, x) * cot), argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(grad(parallel)),
                    jax.tree.leaves(grad(single))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_expert_parallel_capacity_drops_per_device():
  mesh = _mesh()
  x, params, _ = _setup(1)
  # Every token to expert 0: each device holds 8 tokens, keeps 2.
  r = moe.top_k_router(jnp.zeros((T, E)).at[:, 0].set(10.0), 1)
  got = jax.jit(lambda p, x, r: moe.expert_parallel(
      _expert_fn, p, x, r, mesh=mesh, axis_name="expert", capacity=2))(
          params, x, r)
  want = np.asarray(jax.jit(_single_device)(params, x, r))
  kept = np.tile(np.arange(8) < 2, 8)
  np.testing.assert_allclose(np.asarray(got)[kept], want[kept], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(np.asarray(got)[~kept], 0.0)


def test_moe_layer_with_mesh_equals_without():
  mesh = _mesh()
  x = jax.random.normal(jax.random.key(3), (4, 16, D))
  plain = MoE(D, H, E, k=2, rngs=nnx.Rngs(0))
  sharded = MoE(D, H, E, k=2, mesh=mesh, expert_axis="expert",
                rngs=nnx.Rngs(0))
  np.testing.assert_allclose(nnx.jit(sharded)(x), plain(x), rtol=1e-5,
                             atol=1e-5)
  flat = x.reshape(-1, D)
  np.testing.assert_allclose(nnx.jit(sharded)(flat), plain(flat), rtol=1e-5,
                             atol=1e-5)


def test_expert_parallel_checks_arguments():
  mesh = _mesh()
  x, params, w_r = _setup()
  r = moe.top_k_router(x @ w_r, 2)
  with pytest.raises(ValueError, match="axis_name"):
    moe.expert_parallel(_expert_fn, params, x, r, mesh=mesh, axis_name="x")
  with pytest.raises(ValueError, match="divide"):
    r12 = moe.top_k_router(jnp.zeros((T, 12)), 2)
    moe.expert_parallel(_expert_fn, params, x, r12, mesh=mesh,
                        axis_name="expert")
  with pytest.raises(ValueError, match="expert_params leaf"):
    moe.expert_parallel(_expert_fn, {"w": jnp.ones((3, 2))}, x, r,
                        mesh=mesh, axis_name="expert")
