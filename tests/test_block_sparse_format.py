# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""BlockSparseMatrix: construction, metadata and round trips against NumPy."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import BlockSparseMatrix


def _numpy_topology(mask):
  """Independent oracle: block-CSC ids, offsets and block-CSR order."""
  kb, nb = mask.shape
  csc = [(r, c) for c in range(nb) for r in range(kb) if mask[r, c]]
  csr = sorted(range(len(csc)), key=lambda z: (csc[z][0], csc[z][1]))
  col_offsets = np.concatenate([[0], np.cumsum(mask.sum(0))])
  row_offsets = np.concatenate([[0], np.cumsum(mask.sum(1))])
  return csc, csr, col_offsets, row_offsets


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(
    kb=st.integers(1, 5), nb=st.integers(1, 5),
    bk=st.sampled_from([1, 2, 3, 4]), bn=st.sampled_from([1, 2, 5]),
    density=st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]),
    extra=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_from_dense_matches_numpy(kb, nb, bk, bn, density, extra, seed):
  rng = np.random.default_rng(seed)
  mask = rng.random((kb, nb)) < density
  w = rng.standard_normal((kb * bk, nb * bn)).astype(np.float32)
  cap = max(int(mask.sum()), 1) + extra
  m = BlockSparseMatrix.from_dense(w, (bk, bn), mask, capacity=cap)
  csc, csr, col_off, row_off = _numpy_topology(mask)
  nnz = len(csc)
  assert m.capacity == cap and int(m.nnz) == nnz
  np.testing.assert_array_equal(m.col_offsets, col_off)
  np.testing.assert_array_equal(m.row_offsets, row_off)
  rows, cols = np.asarray(m.row_ids), np.asarray(m.col_ids)
  data = np.asarray(m.data)
  for z, (r, c) in enumerate(csc):
    assert (rows[z], cols[z]) == (r, c)
    np.testing.assert_array_equal(
        data[z], w[r * bk:(r + 1) * bk, c * bn:(c + 1) * bn])
  # Padding: zero data, ids of the last stored block, in-range.
  np.testing.assert_array_equal(data[nnz:], 0)
  if nnz:
    assert (rows[nnz:] == csc[-1][0]).all() and (cols[nnz:] == csc[-1][1]).all()
  np.testing.assert_array_equal(np.sort(m.t_perm), np.arange(cap))
  np.testing.assert_array_equal(np.asarray(m.t_perm)[:nnz], csr)
  dense = w * np.kron(mask, np.ones((bk, bn), np.float32))
  np.testing.assert_array_equal(m.to_dense(), dense)
  np.testing.assert_array_equal(m.block_mask(), mask)


def test_mask_none_keeps_nonzero_blocks():
  w = np.zeros((4, 6), np.float32)
  w[0, 5] = 1.0
  w[3, 0] = -2.0
  m = BlockSparseMatrix.from_dense(w, (2, 2))
  np.testing.assert_array_equal(
      m.block_mask(), [[False, False, True], [True, False, False]])
  assert m.capacity == 2
  np.testing.assert_array_equal(m.to_dense(), w)


def test_empty_mask_has_one_padding_slot():
  m = BlockSparseMatrix.from_dense(np.ones((4, 4), np.float32), (2, 2),
                                   np.zeros((2, 2), bool))
  assert m.capacity == 1 and int(m.nnz) == 0
  np.testing.assert_array_equal(m.to_dense(), 0)
  np.testing.assert_array_equal(m.col_offsets, [0, 0, 0])


def test_from_block_mask_and_with_data():
  mask = np.array([[True, False], [True, True]])
  m = BlockSparseMatrix.from_block_mask(mask, (2, 3), capacity=4,
                                        dtype=jnp.bfloat16)
  assert m.shape == (4, 6) and m.dtype == jnp.bfloat16 and int(m.nnz) == 3
  d = jnp.arange(4 * 2 * 3, dtype=jnp.bfloat16).reshape(4, 2, 3)
  dense = np.asarray(m.with_data(d).to_dense(), np.float32)
  # CSC order: (0, 0), (1, 0), (1, 1); slot 3 is padding and ignored.
  np.testing.assert_array_equal(dense[0:2, 0:3], np.asarray(d[0], np.float32))
  np.testing.assert_array_equal(dense[2:4, 0:3], np.asarray(d[1], np.float32))
  np.testing.assert_array_equal(dense[2:4, 3:6], np.asarray(d[2], np.float32))
  np.testing.assert_array_equal(dense[0:2, 3:6], 0)


def test_jit_construction_and_traced_overflow_poisons_data():
  f = jax.jit(lambda w, mk: BlockSparseMatrix.from_dense(
      w, (2, 2), mk, capacity=2))
  w = jnp.ones((4, 4))
  ok = f(w, jnp.eye(2, dtype=bool))
  assert int(ok.nnz) == 2 and not np.isnan(ok.data).any()
  over = f(w, jnp.ones((2, 2), bool))
  assert np.isnan(over.data).all()


def test_pytree_round_trip_and_static_aux():
  m = BlockSparseMatrix.from_dense(np.ones((4, 4), np.float32), (2, 2))
  leaves, treedef = jax.tree.flatten(m)
  assert len(leaves) == 7
  m2 = jax.tree.unflatten(treedef, leaves)
  assert m2.shape == m.shape and m2.block_shape == m.block_shape
  ms = jax.eval_shape(lambda: m)
  assert ms.data.shape == (4, 2, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(w=np.ones((4, 4)), block_shape=(3, 2)), "block_shape"),
    (dict(w=np.ones((4, 4)), block_shape=(2, 2),
          mask=np.ones((2, 3), bool)), "mask"),
    (dict(w=np.ones((4, 4)), block_shape=(2, 2),
          mask=np.ones((2, 2), np.int32)), "mask"),
    (dict(w=np.ones((4, 4)), block_shape=(2, 2),
          mask=np.ones((2, 2), bool), capacity=3), "capacity"),
    (dict(w=np.ones((4, 4)), block_shape=(2, 2), capacity=0), "capacity"),
    (dict(w=np.ones((4,)), block_shape=(2, 2)), "w"),
    (dict(w=np.ones((4, 4), np.int32), block_shape=(2, 2)), "w"),
])
def test_bad_input_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    BlockSparseMatrix.from_dense(**kwargs)


def test_traced_mask_without_capacity_raises():
  with pytest.raises(ValueError, match="capacity"):
    jax.jit(lambda mk: BlockSparseMatrix.from_dense(
        jnp.ones((4, 4)), (2, 2), mk).nnz)(jnp.eye(2, dtype=bool))


def test_constructor_checks_leaf_shapes():
  m = BlockSparseMatrix.from_dense(np.ones((4, 4), np.float32), (2, 2))
  leaves, _ = m.tree_flatten()
  with pytest.raises(ValueError, match="col_offsets"):
    BlockSparseMatrix(leaves[0], leaves[1], leaves[2], leaves[3][:2],
                      *leaves[4:], shape=(4, 4), block_shape=(2, 2))
  with pytest.raises(ValueError, match="data"):
    m.with_data(jnp.ones((1, 2, 2)))
