# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""BlockSparseLinear and block_sparse_linear against masked dense layers."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pallas_kernels import BlockSparseMatrix
from sparsejax.nn import BlockSparseLinear
from sparsejax.nn import block_sparse_linear


def _dense_case(seed=0, k=16, n=24, bk=4, bn=8):
  rng = np.random.default_rng(seed)
  mask = rng.random((k // bk, n // bn)) < 0.5
  mask[0, 0] = True
  kernel = rng.standard_normal((k, n)).astype(np.float32)
  bias = rng.standard_normal((n,)).astype(np.float32)
  x = rng.standard_normal((7, k)).astype(np.float32)
  dense = kernel * np.kron(mask, np.ones((bk, bn), np.float32))
  return mask, kernel, bias, x, dense


def test_conversion_matches_masked_dense():
  mask, kernel, bias, x, dense = _dense_case()
  layer = block_sparse_linear(kernel, bias, block_shape=(4, 8),
                              block_mask=mask)
  np.testing.assert_allclose(layer(x), x @ dense + bias, rtol=1e-5, atol=1e-5)
  assert layer.data.shape == (int(mask.sum()), 4, 8)
  np.testing.assert_array_equal(layer.matrix.block_mask(), mask)


def test_conversion_from_element_mask_and_from_zeros():
  mask, kernel, _, x, dense = _dense_case(1)
  elem = np.kron(mask, np.ones((4, 8))).astype(bool)
  layer = block_sparse_linear(kernel, block_shape=(4, 8), block_mask=elem,
                              capacity=12)
  assert layer.bias is None and layer.data.shape[0] == 12
  np.testing.assert_allclose(layer(x), x @ dense, rtol=1e-5, atol=1e-5)
  # No mask: the zero blocks of a pruned kernel are dropped.
  layer2 = block_sparse_linear(dense, block_shape=(4, 8))
  np.testing.assert_array_equal(layer2.matrix.block_mask(), mask)
  bad = elem.copy()
  bad[0, 0] = not bad[0, 0]
  with pytest.raises(ValueError, match="block_mask"):
    block_sparse_linear(kernel, block_shape=(4, 8), block_mask=bad)
  with pytest.raises(ValueError, match="bias"):
    block_sparse_linear(kernel, np.ones(3), block_shape=(4, 8))


def test_layer_trains_only_the_blocks_and_keeps_topology():
  mask, _, _, x, _ = _dense_case(2)
  layer = BlockSparseLinear(16, 24, block_shape=(4, 8), block_mask=mask,
                            rngs=nnx.Rngs(0))
  topo_before = jax.tree.map(np.asarray, layer.topology.get_value())
  opt = nnx.Optimizer(layer, optax.sgd(0.1), wrt=nnx.Param)
  y_target = jnp.ones((7, 24))

  @nnx.jit
  def step(layer, opt, x):
    loss, grads = nnx.value_and_grad(
        lambda m: jnp.mean((m(x) - y_target) ** 2))(layer)
    opt.update(layer, grads)
    return loss

  losses = [float(step(layer, opt, x)) for _ in range(5)]
  assert losses[-1] < losses[0]
  for a, b in zip(topo_before, layer.topology.get_value()):
    np.testing.assert_array_equal(a, b)
  # The result is still exactly x @ to_dense() + b.
  np.testing.assert_allclose(
      layer(x), x @ layer.matrix.to_dense() + layer.bias[...], rtol=1e-5,
      atol=1e-5)


def test_set_topology_same_capacity():
  layer = BlockSparseLinear(8, 8, block_shape=(4, 4), density=0.5, capacity=3,
                            rngs=nnx.Rngs(1))
  new = BlockSparseMatrix.from_dense(jnp.ones((8, 8)), (4, 4),
                                     jnp.array([[0, 1], [1, 1]], bool),
                                     capacity=3)
  layer.set_topology(new)
  np.testing.assert_allclose(layer(jnp.eye(8)) - layer.bias[...],
                             new.to_dense(), atol=1e-6)
  with pytest.raises(ValueError, match="capacity"):
    layer.set_topology(BlockSparseMatrix.from_dense(jnp.ones((8, 8)), (4, 4)))
