# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Every weight-sparsity transform takes ``granularity`` or refuses it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj

BLOCK = (2, 4)


def _block_sums(x, block):
  bm, bn = block
  r, c = x.shape
  return np.abs(x).reshape(r // bm, bm, c // bn, bn).sum(axis=(1, 3))


def _whole_blocks(mask, block):
  grid = mask.reshape(mask.shape[0] // block[0], block[0],
                      mask.shape[1] // block[1], block[1])
  return np.all(grid.all(axis=(1, 3)) | ~grid.any(axis=(1, 3)))


def _top_blocks(w, k, block):
  """Bool grid of the k blocks of largest sum |w| (NumPy, ties low index)."""
  sums = _block_sums(w, block).ravel()
  order = np.argsort(-sums, kind="stable")
  grid = np.zeros(sums.size, bool)
  grid[order[:k]] = True
  return grid.reshape(w.shape[0] // block[0], w.shape[1] // block[1])


@pytest.mark.parametrize("make", [
    lambda: sj.static_sparse(optax.sgd(0.1), sparsity=0.5, seed=1,
                             distribution="uniform", granularity=BLOCK),
    lambda: sj.ste(optax.sgd(0.1), sparsity=0.5, granularity=BLOCK),
    lambda: sj.movement_pruning(optax.sgd(0.1), sparsity=0.5,
                                update_every=1, granularity=BLOCK),
], ids=["static_sparse", "ste", "movement_pruning"])
def test_block_granularity_keeps_whole_blocks(make):
  w = np.asarray(jax.random.normal(jax.random.key(0), (8, 16)))
  params = {"w": jnp.asarray(w)}
  tx = make()
  state = tx.init(params)
  _, state = tx.update(params, state, params)
  mask = np.asarray(sj.get_masks(state)["w"])
  assert mask.sum() == 64 and _whole_blocks(mask, BLOCK)


def test_ste_blocks_are_the_largest_by_block_magnitude():
  w = np.asarray(jax.random.normal(jax.random.key(2), (8, 16)))
  tx = sj.ste(optax.sgd(0.1), sparsity=0.75, granularity=BLOCK)
  state = tx.init({"w": jnp.asarray(w)})
  grid = _top_blocks(w, 4, BLOCK)  # 16 blocks, 25 % kept
  expected = np.kron(grid, np.ones(BLOCK, bool))
  np.testing.assert_array_equal(np.asarray(sj.get_masks(state)["w"]),
                                expected)


@pytest.mark.parametrize("make,name", [
    (lambda g: sj.top_kast(optax.sgd(0.1), forward_sparsity=0.5,
                           backward_sparsity=0.2, granularity=g), "top_kast"),
    (lambda g: sj.nm_sparse(optax.sgd(0.1), granularity=g), "nm_sparse"),
    (lambda g: sj.movement_pruning(optax.sgd(0.1), variant="soft",
                                   granularity=g), "the soft movement"),
    (lambda g: sj.static_sparse(
        optax.sgd(0.1), masks={"w": jnp.ones((8, 16), bool)},
        granularity=g), "static_sparse with `masks`"),
])
def test_element_only_methods_refuse_blocks(make, name):
  make("element")
  with pytest.raises(ValueError, match=f"`granularity` of {name}"):
    make(BLOCK)
