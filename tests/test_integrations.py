# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The transforms inside Flax NNX, Linen TrainState, Orbax and on a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sparsejax as sj


class MLP(nnx.Module):

  def __init__(self, rngs):
    self.l1 = nnx.Linear(12, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))


def batch(seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (32, 12)), jax.random.randint(k2, (32,), 0, 4)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_nnx_optimizer_keeps_model_sparse():
  model = MLP(nnx.Rngs(0))
  tx = sj.magnitude_pruning(optax.adam(1e-2), sparsity=optax.linear_schedule(
      0.0, 0.75, 4), update_every=2)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, x, y):
    grads = nnx.grad(lambda m: cross_entropy(m(x), y))(model)
    opt.update(model, grads)

  x, y = batch()
  for _ in range(6):
    step(model, opt, x, y)
  masks = sj.get_masks(opt.opt_state)
  params = nnx.state(model, nnx.Param)
  summary = sj.summarize(params, masks)
  rows = {r.path: r for r in summary.rows}
  assert rows["l1/kernel"].nnz == 48 and rows["l2/kernel"].nnz == 16
  assert not rows["l1/bias"].masked
  kernel = np.asarray(model.l1.kernel[...])
  assert not kernel[~np.asarray(masks["l1"]["kernel"])].any()


def test_linen_train_state_apply_gradients():
  linen = pytest.importorskip("flax.linen")
  from flax.training import train_state  # pylint: disable=g-import-not-at-top

  class Net(linen.Module):
    @linen.compact
    def __call__(self, x):
      return linen.Dense(4)(jax.nn.relu(linen.Dense(16)(x)))

  net = Net()
  x, y = batch()
  variables = net.init(jax.random.key(0), x)
  state = train_state.TrainState.create(
      apply_fn=net.apply, params=variables["params"],
      tx=sj.static_sparse(optax.sgd(0.1, momentum=0.9), sparsity=0.8))

  @jax.jit
  def step(state):
    grads = jax.grad(lambda p: cross_entropy(
        state.apply_fn({"params": p}, x), y))(state.params)
    return state.apply_gradients(grads=grads)

  for _ in range(3):
    state = step(state)
  masks = sj.get_masks(state.opt_state)
  kernel = state.params["Dense_0"]["kernel"]
  mask = masks["Dense_0"]["kernel"]
  assert not np.asarray(kernel)[~np.asarray(mask)].any()
  assert masks["Dense_0"]["bias"] is None


def test_orbax_resume_is_bit_identical(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  tx = sj.magnitude_pruning(
      optax.adam(1e-2), sparsity=optax.polynomial_schedule(
          init_value=0.0, end_value=0.9, power=3, transition_steps=6),
      update_every=2)
  params = {"w": jax.random.normal(jax.random.key(0), (16, 8)),
            "b": jnp.zeros(8)}

  @jax.jit
  def step(params, state, i):
    grads = optax.tree.random_like(jax.random.fold_in(jax.random.key(1), i),
                                   params, sampler=jax.random.normal)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  def run(params, state, start, stop):
    for i in range(start, stop):
      params, state = step(params, state, i)
    return params, state

  state = tx.init(params)
  mid_params, mid_state = run(params, state, 0, 4)
  final_params, final_state = run(mid_params, mid_state, 4, 9)

  path = tmp_path / "ckpt"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, {"params": mid_params, "opt_state": mid_state})
  checkpointer.wait_until_finished()
  target = {"params": jax.eval_shape(lambda: params),
            "opt_state": jax.eval_shape(tx.init, params)}
  restored = checkpointer.restore(path, target)
  assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(
      mid_state)
  resumed_params, resumed_state = run(restored["params"],
                                      restored["opt_state"], 4, 9)
  jax.tree.map(np.testing.assert_array_equal, resumed_params, final_params)
  jax.tree.map(np.testing.assert_array_equal, sj.get_masks(resumed_state),
               sj.get_masks(final_state))
  np.testing.assert_array_equal(jax.random.key_data(resumed_state.key),
                                jax.random.key_data(final_state.key))


def test_global_magnitude_on_sharded_params_equals_single_device():
  rng = np.random.default_rng(0)
  params = {"a": rng.normal(size=(16, 32)).astype(np.float32),
            "b": rng.normal(size=(32, 8)).astype(np.float32),
            "bias": np.ones(8, np.float32)}
  # Ties across leaves exercise the deterministic tie-break.
  params["b"][:4] = params["a"][0, :8]
  single = sj.masks.magnitude(
      {k: jnp.asarray(v) for k, v in params.items() if k != "bias"}, 0.8,
      scope="global")
  mesh = jax.make_mesh((2, 4), ("x", "y"),
                       axis_types=(jax.sharding.AxisType.Explicit,) * 2)
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.8, scope="global")
  with jax.set_mesh(mesh):
    sharded = {
        "a": jax.sharding.reshard(jnp.asarray(params["a"]), jax.P("x", "y")),
        "b": jax.sharding.reshard(jnp.asarray(params["b"]), jax.P("y", None)),
        "bias": jnp.asarray(params["bias"]),
    }
    state = tx.init(sharded)
    _, state = jax.jit(tx.update)(sharded, state, sharded)
    masks = sj.get_masks(state)
    assert jax.typeof(masks["a"]).sharding.spec == jax.P("x", "y")
    hlo = jax.jit(tx.update).lower(sharded, tx.init(sharded),
                                   sharded).compile().as_text()
  assert "sort" not in hlo
  np.testing.assert_array_equal(masks["a"], single["a"])
  np.testing.assert_array_equal(masks["b"], single["b"])
  assert int(masks["a"].sum() + masks["b"].sum()) == round(0.2 * 768)


def test_sharded_state_follows_params_in_nnx():
  mesh = jax.make_mesh((8,), ("model",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    layer = nnx.Linear(8, 16, rngs=nnx.Rngs(0),
                       kernel_metadata={"out_sharding": (None, "model")})
    opt = nnx.Optimizer(
        layer, sj.static_sparse(optax.adam(1e-3), sparsity=0.5),
        wrt=nnx.Param)
    mask = sj.get_masks(opt.opt_state)["kernel"]
    assert jax.typeof(mask).sharding.spec == jax.P(None, "model")


def test_nnx_optimizer_with_given_plain_dict_masks():
  model = MLP(nnx.Rngs(0))
  kernel_mask = np.zeros((12, 16), bool)
  kernel_mask[::2] = True
  masks = {"l1": {"kernel": jnp.asarray(kernel_mask), "bias": None},
           "l2": {"kernel": None, "bias": None}}
  opt = nnx.Optimizer(model, sj.static_sparse(optax.adam(1e-2), masks=masks),
                      wrt=nnx.Param)
  x, y = batch()
  grads = nnx.grad(lambda m: cross_entropy(m(x), y))(model)
  opt.update(model, grads)
  kernel = np.asarray(model.l1.kernel[...])
  assert not kernel[~kernel_mask].any() and kernel[kernel_mask].all()
  np.testing.assert_array_equal(
      sj.forward_params(nnx.state(model, nnx.Param), opt.opt_state)["l1"][
          "kernel"], kernel)
