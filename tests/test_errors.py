# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Bad input fails early with a ValueError naming the argument and leaf."""

import jax.numpy as jnp
import optax
import pytest

import sparsejax as sj

PARAMS = {"dense": {"kernel": jnp.ones((4, 6)), "bias": jnp.zeros(6)}}


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan")])
@pytest.mark.parametrize("factory", [sj.static_sparse, sj.magnitude_pruning,
                                     sj.random_pruning])
def test_sparsity_out_of_range_or_nan(factory, bad):
  with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\)"):
    factory(optax.sgd(0.1), sparsity=bad)


def test_scheduled_sparsity_leaving_range():
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=lambda count: 1.2)
  with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\), "
                     "got 1.2"):
    tx.init(PARAMS)


def test_callable_distribution_value_out_of_range_names_leaf():
  tx = sj.static_sparse(
      optax.sgd(0.1),
      distribution=lambda p: {"dense": {"kernel": 1.0, "bias": None}})
  with pytest.raises(ValueError, match=r"leaf 'dense/kernel'"):
    tx.init(PARAMS)


def test_schedule_with_callable_distribution_is_refused():
  with pytest.raises(ValueError, match="`sparsity` must be None when "
                     "`distribution` is a callable"):
    sj.magnitude_pruning(optax.sgd(0.1), sparsity=lambda count: 0.5,
                         distribution=lambda p: {"w": 0.5})


def test_block_granularity_not_dividing_names_leaf():
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, granularity=(4, 4))
  with pytest.raises(ValueError,
                     match=r"`granularity` \(4, 4\) does not divide .*"
                     r"'dense/kernel' with shape \(4, 6\)"):
    tx.init(PARAMS)


def test_bad_granularity_value():
  with pytest.raises(ValueError, match="`granularity`"):
    sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, granularity="row")


def test_n_m_not_dividing_names_leaf():
  with pytest.raises(ValueError, match=r"`m`=4 .* leaf 'dense/kernel'"):
    sj.masks.n_m({"dense": {"kernel": jnp.ones((6, 4))}}, 2, 4)


def test_masks_not_matching_params():
  wrong_shape = {"dense": {"kernel": jnp.ones((6, 4), bool), "bias": None}}
  tx = sj.static_sparse(optax.sgd(0.1), masks=wrong_shape)
  with pytest.raises(ValueError, match=r"`masks` leaf 'dense/kernel' has "
                     r"shape \(6, 4\)"):
    tx.init(PARAMS)
  wrong_tree = {"other": {"kernel": jnp.ones((4, 6), bool)}}
  with pytest.raises(ValueError, match="`masks` does not have the tree"):
    sj.static_sparse(optax.sgd(0.1), masks=wrong_tree).init(PARAMS)
  not_bool = {"dense": {"kernel": jnp.ones((4, 6)), "bias": None}}
  with pytest.raises(ValueError, match=r"`masks` leaf 'dense/kernel' must "
                     "be bool"):
    sj.static_sparse(optax.sgd(0.1), masks=not_bool).init(PARAMS)


def test_update_with_other_params_tree():
  tx = sj.static_sparse(optax.sgd(0.1), sparsity=0.5)
  state = tx.init(PARAMS)
  other = {"dense": {"kernel": jnp.ones((6, 4)), "bias": jnp.zeros(4)}}
  with pytest.raises(ValueError, match=r"leaf 'dense/kernel'"):
    tx.update(other, state, other)


@pytest.mark.parametrize("factory", [
    lambda: sj.static_sparse(optax.sgd(0.1), sparsity=0.5),
    lambda: sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5),
])
def test_params_none(factory):
  tx = factory()
  state = tx.init(PARAMS)
  with pytest.raises(ValueError, match="need the current parameters"):
    tx.update(PARAMS, state, None)


def test_unknown_distribution_name():
  with pytest.raises(ValueError, match=r"`distribution` must be .*'erx'"):
    sj.static_sparse(optax.sgd(0.1), sparsity=0.5, distribution="erx")


def test_integer_leaf_selected():
  params = {"kernel": jnp.ones((4, 4)), "table": jnp.ones((4, 4), jnp.int32)}
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5)
  with pytest.raises(ValueError, match=r"leaf 'table' of dtype int32"):
    tx.init(params)


def test_other_arguments():
  with pytest.raises(ValueError, match="`update_every` must be a positive"):
    sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, update_every=0)
  with pytest.raises(ValueError, match="`seed` must be an int"):
    sj.static_sparse(optax.sgd(0.1), sparsity=0.5, seed="0")
  with pytest.raises(ValueError, match="`scope` must be"):
    sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, scope="net")
  with pytest.raises(ValueError, match="either `sparsity` or `masks`"):
    sj.static_sparse(optax.sgd(0.1), sparsity=0.5, masks={})
  with pytest.raises(ValueError, match="`where` must be"):
    sj.static_sparse(optax.sgd(0.1), sparsity=0.5, where=3).init(PARAMS)
