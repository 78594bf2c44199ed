# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse training through the kernels gives masked training's numbers.

A small MLP is trained twice with the same seed and data: masked-dense (the
plain model) and with its masked ``nnx.Linear`` layers on the block-sparse
kernels (``sj.nn.block_sparse_kernels``; dense on mask-update steps). Masks
must agree at every step and losses to float tolerance, through several mask
updates, and the topology changes must compile nothing.
"""

from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
import sparsejax.nn  # noqa: F401  (sj.nn)

BLOCK = (8, 8)
STEPS = 200
EVERY = 25


class MLP(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(16, 64, rngs=rngs)
    self.fc2 = nnx.Linear(64, 64, rngs=rngs)
    self.fc3 = nnx.Linear(64, 8, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.fc1(x))
    x = jax.nn.relu(self.fc2(x))
    return self.fc3(x)


WHERE = r"^fc[12]/kernel$"
TRANSFORMS = {
    "rigl": (lambda: sj.rigl(
        optax.adam(1e-2), sparsity=0.75, end_step=160, update_every=EVERY,
        granularity=BLOCK, where=WHERE, seed=1),
             dict(update_every=EVERY, end_step=160)),
    "set": (lambda: sj.set_(
        optax.adam(1e-2), sparsity=0.75, update_every=EVERY, begin_step=0,
        granularity=BLOCK, where=WHERE, distribution="uniform", seed=2),
            dict(update_every=EVERY)),
    "magnitude": (lambda: sj.magnitude_pruning(
        optax.adam(1e-2), sparsity=0.5, update_every=EVERY,
        granularity=BLOCK, where=WHERE),
                  dict(update_every=EVERY)),
}


def _data(steps):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(steps, 32, 16)).astype(np.float32)
  teacher = rng.normal(size=(16, 8)).astype(np.float32)
  return x, np.tanh(x @ teacher)


def _update(model, optimizer, x, y, *, caps, sparse):
  """One step, on the block-sparse kernels when ``sparse``; the loss."""
  masks = sj.get_masks(optimizer.opt_state)

  def loss_fn(model):
    with sj.nn.block_sparse_kernels(model, masks, block_shape=BLOCK,
                                    capacities=caps, enabled=sparse):
      return jnp.mean((model(x) - y) ** 2)

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


def _train(name, *, kernel):
  make_tx, schedule = TRANSFORMS[name]
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, make_tx(), wrt=nnx.Param)
  masks = sj.get_masks(optimizer.opt_state)
  # Pruned weights are zero from the start, so both runs see the same model.
  nnx.update(model, sj.masks.apply(nnx.state(model, nnx.Param), masks))
  caps = sj.nn.block_capacities(masks, BLOCK)
  sparse_step = nnx.jit(functools.partial(_update, caps=caps, sparse=True))
  dense_step = nnx.jit(functools.partial(_update, caps=caps, sparse=False))
  xs, ys = _data(STEPS)
  losses, history, updates = [], [], 0
  for t in range(STEPS):
    update = sj.is_mask_update_step(optimizer.opt_state, **schedule)
    assert update == sj.is_mask_update_step(t, **schedule)
    updates += update
    fn = dense_step if (update or not kernel) else sparse_step
    losses.append(float(fn(model, optimizer, xs[t], ys[t])))
    m = sj.get_masks(optimizer.opt_state)
    history.append((np.asarray(m["fc1"]["kernel"]),
                    np.asarray(m["fc2"]["kernel"])))
  return np.array(losses), history, updates, (sparse_step, dense_step)


@pytest.mark.parametrize("name", [
    "rigl", pytest.param("magnitude", marks=pytest.mark.slow),
    pytest.param("set", marks=pytest.mark.slow)])
def test_kernel_training_matches_masked_training(name):
  masked_losses, masked_masks, updates, _ = _train(name, kernel=False)
  losses, masks, _, (sparse_step, dense_step) = _train(name, kernel=True)
  assert updates >= 5
  changed = sum(
      not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
      for a, b in zip(masks[:-1], masks[1:]))
  if name != "magnitude":
    assert changed >= 3  # drop-and-grow moved blocks several times
  for t, (a, b) in enumerate(zip(masked_masks, masks)):
    np.testing.assert_array_equal(a[0], b[0], err_msg=f"fc1, step {t}")
    np.testing.assert_array_equal(a[1], b[1], err_msg=f"fc2, step {t}")
  np.testing.assert_allclose(losses, masked_losses, rtol=2e-4, atol=1e-6)
  assert losses[-20:].mean() < 0.8 * losses[:20].mean()  # it learns


def test_topology_changes_compile_nothing():
  compiles = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    # Two programs (sparse, dense on mask-update steps), each compiled once;
    # the rest of the loop (get_masks, the host checks) compiles a few tiny
    # helpers once, on the first steps.
    model = MLP(nnx.Rngs(0))
    tx = sj.rigl(optax.adam(1e-2), sparsity=0.75, end_step=1000,
                 update_every=3, granularity=BLOCK, where=WHERE)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    caps = sj.nn.block_capacities(sj.get_masks(optimizer.opt_state), BLOCK)
    step = nnx.jit(functools.partial(_update, caps=caps),
                   static_argnames="sparse")

    xs, ys = _data(30)
    seen = []
    for t in range(30):
      update = sj.is_mask_update_step(t, update_every=3, end_step=1000)
      step(model, optimizer, xs[t], ys[t], sparse=not update)
      m = sj.get_masks(optimizer.opt_state)
      seen.append(np.concatenate([np.asarray(m["fc1"]["kernel"]).ravel(),
                                  np.asarray(m["fc2"]["kernel"]).ravel()]))
      if t == 5:
        warm = len(compiles)
    assert len(compiles) == warm  # 24 more steps, 8 new topologies: none
    assert sum(not np.array_equal(a, b)
               for a, b in zip(seen[5:-1], seen[6:])) >= 4
  finally:
    jax.monitoring.clear_event_listeners()


def test_gradient_is_zero_outside_the_kept_blocks_and_dense_inside():
  rng = np.random.default_rng(3)
  kernel = jnp.asarray(rng.normal(size=(32, 48)), jnp.float32)
  bmask = jnp.asarray(rng.random((4, 6)) < 0.4)
  mask = jnp.repeat(jnp.repeat(bmask, 8, axis=0), 8, axis=1)
  kernel = jnp.where(mask, kernel, 0.0)
  x = jnp.asarray(rng.normal(size=(5, 32)), jnp.float32)

  def sparse(x, k):
    return jnp.sum(jnp.sin(sj.nn.block_sparse_apply(
        x, k, mask, block_shape=(8, 8), capacity=12)))

  def dense(x, k):
    return jnp.sum(jnp.sin(x @ k))

  gx, gk = jax.grad(sparse, argnums=(0, 1))(x, kernel)
  dx, dk = jax.grad(dense, argnums=(0, 1))(x, kernel)
  np.testing.assert_allclose(gx, dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gk, jnp.where(mask, dk, 0.0), rtol=1e-5,
                             atol=1e-5)
  # The block mask is accepted as well.
  np.testing.assert_allclose(
      sj.nn.block_sparse_apply(x, kernel, bmask, block_shape=(8, 8),
                               capacity=12), x @ kernel, rtol=1e-5,
      atol=1e-5)


def test_overflowing_capacity_gives_nan_not_a_wrong_result():
  mask = jnp.ones((16, 16), bool)
  y = jax.jit(lambda m: sj.nn.block_sparse_apply(
      jnp.ones((2, 16)), jnp.ones((16, 16)), m, block_shape=(8, 8),
      capacity=3))(mask)
  assert bool(jnp.all(jnp.isnan(y)))


def test_errors_name_the_leaf():
  class Conv(nnx.Module):

    def __init__(self, rngs):
      self.lin = nnx.Linear(16, 16, rngs=rngs)
      self.gen = nnx.LinearGeneral(16, (2, 8), rngs=rngs)

    def __call__(self, x):
      return self.lin(x) + self.gen(x).reshape(x.shape)

  model = Conv(nnx.Rngs(0))
  masks = {"lin": {"kernel": jnp.ones((16, 16), bool), "bias": None},
           "gen": {"kernel": jnp.ones((16, 2, 8), bool), "bias": None}}
  with pytest.raises(ValueError, match="'gen/kernel'"):
    with sj.nn.block_sparse_kernels(model, masks, block_shape=(8, 8),
                                    capacities=4):
      pass
  with sj.nn.block_sparse_kernels(model, masks, block_shape=(8, 8),
                                  capacities=4, where=r"^lin/"):
    y = model(jnp.ones((1, 16)))
  assert y.shape == (1, 16)
  assert model.lin.dot_general is jax.lax.dot_general  # restored
  with pytest.raises(ValueError, match="2-D"):
    sj.nn.block_sparse_apply(jnp.ones((1, 16)), jnp.ones((16, 2, 8)),
                             jnp.ones((16, 2, 8), bool), block_shape=(8, 8),
                             capacity=1, path="gen/kernel")
  with pytest.raises(ValueError, match="does not divide leaf 'lin/kernel'"):
    sj.nn.block_capacities({"lin": {"kernel": jnp.ones((16, 12), bool)}},
                           (8, 8))
  with pytest.raises(ValueError, match="capacities has no entry"):
    with sj.nn.block_sparse_kernels(model, masks, block_shape=(8, 8),
                                    capacities={"x": 1}, where=r"^lin/"):
      pass


@pytest.mark.parametrize("max_piece", [1, 2, 8])
@pytest.mark.parametrize("block", [(8, 8), (4, 16)])
def test_xla_backward_piece_sizes_match_dense(max_piece, block):
  from pallas_kernels import BlockSparseMatrix
  from pallas_kernels.block_sparse import reference
  rng = np.random.default_rng(max_piece)
  bk, bn = block
  kb, nb = 12, 5
  bmask = rng.random((kb, nb)) < 0.5
  bmask[:, 0] = True  # a long column and a long row
  bmask[1, :] = True
  bmask[:, 3] = False  # an empty column
  w = rng.normal(size=(kb * bk, nb * bn)).astype(np.float32)
  wm = BlockSparseMatrix.from_dense(jnp.asarray(w), block, jnp.asarray(bmask),
                                    capacity=int(bmask.sum()) + 3)
  dense = np.asarray(wm.to_dense())
  x = rng.normal(size=(9, kb * bk)).astype(np.float32)
  dy = rng.normal(size=(9, nb * bn)).astype(np.float32)
  got_t = jax.jit(lambda d, w: reference.matmul_t(d, w, _max_piece=max_piece))(
      dy, wm)
  np.testing.assert_allclose(got_t, dy @ dense.T, rtol=1e-5, atol=1e-4)
  got = jax.jit(lambda a, d, w: reference.sdd(a, d, w, _max_piece=max_piece))(
      x, dy, wm)
  full = (x.T @ dy).reshape(kb, bk, nb, bn)
  rows, cols = np.asarray(wm.row_ids), np.asarray(wm.col_ids)
  nnz = int(wm.nnz)
  want = np.zeros((wm.capacity, bk, bn), np.float32)
  want[:nnz] = full[rows[:nnz], :, cols[:nnz], :]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _two_layer_loss(block, caps, **kw):
  def loss(params, masks, x):
    h = jax.nn.relu(sj.nn.block_sparse_apply(
        x, params["w1"], masks["w1"], block_shape=block, capacity=caps[0],
        **kw))
    y = sj.nn.block_sparse_apply(h, params["w2"], masks["w2"],
                                 block_shape=block, capacity=caps[1], **kw)
    return jnp.mean(jnp.sin(y))
  return loss


@pytest.mark.parametrize("impl", ["pallas_tpu", "pallas_gpu"])
def test_training_step_on_pallas_strict_interpret_matches_xla(impl):
  # Forward, dx through the transposed topology (second layer) and the block
  # gradient of both layers, scattered into params-shaped gradients, on the
  # TPU simulator; the dense gradient of update steps is XLA's dense matmul.
  from jax.experimental.pallas import tpu as pltpu
  rng = np.random.default_rng(5)
  block = (8, 16)
  masks = {"w1": jnp.asarray(rng.random((3, 4)) < 0.5).at[:, 1].set(False),
           "w2": jnp.asarray(rng.random((8, 2)) < 0.5).at[0].set(True)}
  params = {"w1": jnp.asarray(rng.normal(size=(24, 64)), jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)}
  x = jnp.asarray(rng.normal(size=(10, 24)), jnp.float32)
  caps = (int(masks["w1"].sum()) + 1, int(masks["w2"].sum()) + 2)
  ref = jax.jit(jax.value_and_grad(_two_layer_loss(
      block, caps, implementation="xla")))(params, masks, x)
  try:
    got = jax.jit(jax.value_and_grad(_two_layer_loss(
        block, caps, implementation=impl,
        interpret=pltpu.InterpretParams())))(params, masks, x)
  finally:
    pltpu.reset_tpu_interpret_mode_state()
  np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)
  for name in ("w1", "w2"):
    np.testing.assert_allclose(got[1][name], ref[1][name], rtol=1e-5,
                               atol=1e-6)
    expand = np.kron(np.asarray(masks[name]), np.ones(block)).astype(bool)
    assert np.all(np.asarray(got[1][name])[~expand] == 0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_training_step_exports_for_hardware(platform, dtype):
  from pallas_kernels.block_sparse.gpu import TRITON_CALL_TARGET
  impl = "pallas_tpu" if platform == "tpu" else "pallas_gpu"
  block = (128, 128)
  spec = jax.ShapeDtypeStruct
  params = {"w1": spec((256, 512), dtype), "w2": spec((512, 256), dtype)}
  masks = {"w1": spec((2, 4), jnp.bool_), "w2": spec((4, 2), jnp.bool_)}
  x = spec((512, 256), dtype)
  step = jax.jit(jax.grad(_two_layer_loss(block, (4, 4),
                                          implementation=impl)))
  checks = ([jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL_TARGET)]
            if platform == "cuda" else [])
  text = jax.export.export(step, platforms=[platform],
                           disabled_checks=checks)(params, masks,
                                                   x).mlir_module()
  # Two forwards, the second layer's dx, two block gradients (the first
  # layer's dx is not needed: its input is data).
  target = "tpu_custom_call" if platform == "tpu" else TRITON_CALL_TARGET
  assert text.count(target) == 5
  if platform == "tpu":
    assert text.count("block_sparse_sdd") >= 2
