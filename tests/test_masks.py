# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""sparsejax.masks against NumPy references."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj


def numpy_topk(scores, k):
  """Reference: stable sort by descending score, ties to the lower index."""
  flat = np.asarray(scores, np.float64).ravel()
  order = np.lexsort((np.arange(flat.size), -flat))
  mask = np.zeros(flat.size, bool)
  mask[order[:k]] = True
  return mask.reshape(np.shape(scores))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    shape=st.sampled_from([(7,), (3, 5), (4, 4, 2), (1, 9)]),
    levels=st.integers(2, 50),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_topk_matches_numpy_with_ties(shape, levels, frac, seed):
  rng = np.random.default_rng(seed)
  # Few distinct levels force many ties; negatives exercise the order key.
  scores = rng.integers(-levels, levels, size=shape).astype(np.float32) / 7
  k = int(round(frac * scores.size))
  got = np.asarray(jax.jit(sj.masks.topk)(jnp.asarray(scores), k))
  np.testing.assert_array_equal(got, numpy_topk(scores, k))
  assert got.sum() == k


def test_topk_traced_k_and_special_values():
  x = jnp.array([jnp.nan, -0.0, 0.0, jnp.inf, -jnp.inf, 1e-30, -1e-30])
  for k in range(8):
    got = jax.jit(sj.masks.topk)(x, jnp.int32(k))
    # NaN ranks below -inf; -0.0 and 0.0 tie (lower index wins).
    order = [3, 5, 1, 2, 6, 4, 0]
    want = np.zeros(7, bool)
    want[order[:k]] = True
    np.testing.assert_array_equal(np.asarray(got), want)


def test_topk_global_matches_numpy_over_leaves():
  rng = np.random.default_rng(0)
  tree = {"a": rng.normal(size=(6, 5)).astype(np.float32),
          "b": None,
          "c": [rng.normal(size=(11,)).astype(np.float32)]}
  k = 13
  got = sj.masks.topk(jax.tree.map(jnp.asarray, tree), k, scope="global")
  flat = np.concatenate([tree["a"].ravel(), tree["c"][0].ravel()])
  want = numpy_topk(flat, k)
  assert got["b"] is None
  np.testing.assert_array_equal(np.asarray(got["a"]).ravel(), want[:30])
  np.testing.assert_array_equal(np.asarray(got["c"][0]), want[30:])


def test_topk_global_ties_prefer_earlier_leaf():
  tree = [jnp.ones((2, 2)), jnp.ones((3,))]
  got = sj.masks.topk(tree, 5, scope="global")
  assert int(got[0].sum()) == 4 and np.asarray(got[1]).tolist() == [
      True, False, False]


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(s=st.floats(0, 1), seed=st.integers(0, 1000))
def test_magnitude_layer_budget_and_largest(s, seed):
  w = np.random.default_rng(seed).normal(size=(12, 9)).astype(np.float32)
  m = np.asarray(sj.masks.magnitude(jnp.asarray(w), s))
  k = int(np.round((1 - s) * w.size))
  np.testing.assert_array_equal(m, numpy_topk(np.abs(w), k))


def test_magnitude_per_leaf_sparsity_and_dense_leaf():
  params = {"w": jnp.arange(1., 11.), "v": -jnp.arange(1., 5.), "b": jnp.ones(3)}
  m = sj.masks.magnitude(params, {"w": 0.5, "v": 0.25, "b": None})
  assert m["b"] is None
  np.testing.assert_array_equal(np.asarray(m["w"]), np.arange(10) >= 5)
  np.testing.assert_array_equal(np.asarray(m["v"]), np.arange(4) >= 1)


def test_magnitude_global_one_threshold():
  params = {"big": jnp.arange(10., 20.), "small": jnp.arange(0., 10.)}
  m = sj.masks.magnitude(params, 0.5, scope="global")
  assert bool(m["big"].all()) and not bool(m["small"].any())


def test_random_exact_count_and_seed_determinism():
  params = {"w": jnp.zeros((17, 13)), "b": jnp.zeros(4)}
  m1 = sj.masks.random(jax.random.key(3), params, {"w": 0.8, "b": None})
  m2 = sj.masks.random(jax.random.key(3), params, {"w": 0.8, "b": None})
  m3 = sj.masks.random(jax.random.key(4), params, {"w": 0.8, "b": None})
  assert int(m1["w"].sum()) == round(0.2 * 17 * 13)
  np.testing.assert_array_equal(m1["w"], m2["w"])
  assert not np.array_equal(m1["w"], m3["w"])


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    n=st.integers(0, 4), m=st.sampled_from([4, 8]),
    axis=st.sampled_from([0, 1, -2]), seed=st.integers(0, 1000),
    ties=st.booleans())
def test_n_m_exact_groups(n, m, axis, seed, ties):
  n = min(n, m)
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(16, 8)).astype(np.float32)
  if ties:
    w = np.round(w)
  got = np.asarray(sj.masks.n_m(jnp.asarray(w), n, m, axis=axis))
  moved = np.moveaxis(np.abs(w), axis, -1)
  gm = np.moveaxis(got, axis, -1)
  for row in range(moved.shape[0]):
    for g in range(moved.shape[1] // m):
      block = moved[row, g * m:(g + 1) * m]
      np.testing.assert_array_equal(gm[row, g * m:(g + 1) * m],
                                    numpy_topk(block, n))


def test_n_m_rejects_non_dividing_axis():
  with pytest.raises(ValueError, match=r"`m`=4 does not divide .* leaf 'w'"):
    sj.masks.n_m({"w": jnp.ones((6, 3))}, 2, 4)


def test_block_keeps_whole_blocks_of_largest_norm():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(8, 12)).astype(np.float32)
  m = np.asarray(sj.masks.block(jnp.asarray(w), (2, 3), 0.75))
  norms = (w.reshape(4, 2, 4, 3) ** 2).sum(axis=(1, 3))
  want_grid = numpy_topk(norms, 4)
  np.testing.assert_array_equal(
      m, np.repeat(np.repeat(want_grid, 2, 0), 3, 1))
  np.testing.assert_array_equal(
      np.asarray(sj.masks.block_grid(jnp.asarray(m), (2, 3))), want_grid)


def test_block_shape_must_divide():
  with pytest.raises(ValueError, match=r"block_shape.*leaf 'k'"):
    sj.masks.block({"k": jnp.ones((5, 4))}, (2, 2), 0.5)


def test_apply_nnz_sparsity():
  params = {"w": jnp.arange(6.).reshape(2, 3), "b": jnp.arange(2.)}
  masks = {"w": jnp.array([[1, 1, 0], [0, 1, 1]], bool), "b": None}
  out = sj.masks.apply(params, masks)
  np.testing.assert_array_equal(out["w"], [[0, 1, 0], [0, 4, 5]])
  np.testing.assert_array_equal(out["b"], params["b"])
  assert int(sj.masks.nnz(out)["w"]) == 3
  assert float(sj.masks.sparsity(masks)["w"]) == pytest.approx(2 / 6)


def test_apply_rejects_mismatched_masks():
  params = {"w": jnp.ones((2, 3))}
  with pytest.raises(ValueError, match=r"`masks` leaf 'w' has shape"):
    sj.masks.apply(params, {"w": jnp.ones((3, 2), bool)})
  with pytest.raises(ValueError, match="tree structure"):
    sj.masks.apply(params, {"v": jnp.ones((2, 3), bool)})


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_magnitude_rejects_bad_sparsity(bad):
  with pytest.raises(ValueError, match=r"`sparsity` \(leaf 'w'\)"):
    sj.masks.magnitude({"w": jnp.ones((2, 2))}, bad)


def test_topk_rejects_integer_scores_and_bad_k():
  with pytest.raises(ValueError, match="floating point"):
    sj.masks.topk({"i": jnp.ones((3,), jnp.int32)}, 1)
  with pytest.raises(ValueError, match=r"`k` for leaf 'w'"):
    sj.masks.topk({"w": jnp.ones((3,))}, 4)


def test_budget_rounding_rule():
  assert sj.masks.budget(10, 0.25) == 8  # 7.5 rounds half to even
  assert sj.masks.budget(10, 0.35) == 6  # 6.5 -> 6
  assert int(jax.jit(lambda s: sj.masks.budget(10, s))(0.35)) == 6
