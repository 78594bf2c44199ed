# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""`BlockSparseMatrix`: a jit-stable block-sparse weight format.

The stored blocks are kept in block-CSC order (sorted by block column, then
block row), so that every kernel that writes the output ``x @ W`` column block
by column block revisits each output block on consecutive steps, the rule Pallas
TPU imposes. The transpose ``W.T`` is iterated without moving data through
``t_perm`` (the data index of each block in block-CSR order) and
``row_offsets``, as stk's ``Matrix`` does (research/kernels.md, section 3.1).

The number of stored-block slots (``capacity``) is static and the number of
blocks actually used (``nnz``) is a traced scalar, so that a topology changed by
pruning or drop-and-grow keeps every shape, and therefore every compiled
program, unchanged. Slots ``z >= nnz`` are padding: their data is zero and their
ids repeat the last stored block (kernels then issue no new copy for them).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ("BlockSparseMatrix",)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_block_shape(shape, block_shape) -> tuple[int, int]:
  if len(shape) != 2:
    raise ValueError(f"shape must be 2-D (K, N), got {shape}.")
  try:
    bk, bn = (int(b) for b in block_shape)
  except (TypeError, ValueError):
    raise ValueError(
        f"block_shape must be a pair of ints, got {block_shape!r}.") from None
  if bk <= 0 or bn <= 0:
    raise ValueError(f"block_shape must be positive, got {block_shape}.")
  if shape[0] % bk or shape[1] % bn:
    raise ValueError(
        f"block_shape {(bk, bn)} must divide the matrix shape {tuple(shape)}.")
  return bk, bn


@functools.partial(jax.jit, static_argnums=(1,))
def _topology(block_mask, capacity: int):
  """Ids, offsets and transpose permutation of a [Kb, Nb] block mask."""
  kb, nb = block_mask.shape
  # Block-CSC order: flatten the transposed mask (column major).
  flat = block_mask.T.reshape(-1)
  count = jnp.sum(flat, dtype=jnp.int32)
  (pos,) = jnp.nonzero(flat, size=capacity, fill_value=0)
  pos = pos.astype(jnp.int32)
  nnz = jnp.minimum(count, capacity)
  z = jnp.arange(capacity, dtype=jnp.int32)
  valid = z < nnz
  # Padding repeats the last stored block (or block (0, 0) when empty).
  last = pos[jnp.maximum(nnz - 1, 0)]
  pos = jnp.where(valid, pos, last)
  col_ids = pos // kb
  row_ids = pos % kb
  col_counts = jnp.zeros((nb,), jnp.int32).at[col_ids].add(
      valid.astype(jnp.int32))
  row_counts = jnp.zeros((kb,), jnp.int32).at[row_ids].add(
      valid.astype(jnp.int32))
  zero = jnp.zeros((1,), jnp.int32)
  col_offsets = jnp.concatenate([zero, jnp.cumsum(col_counts)])
  row_offsets = jnp.concatenate([zero, jnp.cumsum(row_counts)])
  # Row-major (block-CSR) order of the stored blocks, padding last.
  key = jnp.where(valid, row_ids * nb + col_ids, kb * nb)
  t_perm = jnp.argsort(key, stable=True).astype(jnp.int32)
  return row_ids, col_ids, col_offsets, row_offsets, t_perm, nnz, count


@functools.partial(jax.jit, static_argnums=(2,))
def _from_blocks(blocks, mask, capacity):
  rows, cols, coff, roff, tperm, nnz, count = _topology(mask, capacity)
  valid = (jnp.arange(capacity) < nnz)[:, None, None]
  data = jnp.where(valid, blocks[rows, cols], 0)
  data = jnp.where(count > capacity, jnp.nan, data).astype(blocks.dtype)
  return data, rows, cols, coff, roff, tperm, nnz


@functools.partial(jax.jit, static_argnums=(4, 5))
def _to_dense(data, rows, cols, nnz, shape, block_shape):
  bk, bn = block_shape
  kb, nb = shape[0] // bk, shape[1] // bn
  valid = jnp.arange(data.shape[0]) < nnz
  data = jnp.where(valid[:, None, None], data, 0)
  blocks = jnp.zeros((kb, nb, bk, bn), data.dtype).at[rows, cols].add(data)
  return blocks.transpose(0, 2, 1, 3).reshape(shape)


@functools.partial(jax.jit, static_argnums=(3,))
def _block_mask(rows, cols, nnz, grid):
  valid = jnp.arange(rows.shape[0]) < nnz
  return jnp.zeros(grid, jnp.bool_).at[rows, cols].max(valid)


@jax.tree_util.register_pytree_node_class
class BlockSparseMatrix:
  """A ``[K, N]`` matrix stored as ``bk x bn`` blocks with a fixed capacity.

  Static (part of the tree structure, so changing them retraces): ``shape``,
  ``block_shape`` and ``capacity`` (the number of block slots). Leaves:

  - ``data``: ``[capacity, bk, bn]``, the stored blocks in block-CSC order;
  - ``row_ids``, ``col_ids``: ``int32[capacity]``, block row and column of each
    slot;
  - ``col_offsets``: ``int32[N // bn + 1]``, slots ``col_offsets[j]`` to
    ``col_offsets[j + 1]`` hold block column ``j``;
  - ``row_offsets``: ``int32[K // bk + 1]``, the same for block rows in the
    block-CSR order given by ``t_perm``;
  - ``t_perm``: ``int32[capacity]``, slot indices in block-CSR order (the
    transpose's iteration order; padding slots last);
  - ``nnz``: ``int32[]``, how many slots hold blocks; slots from ``nnz`` on are
    padding with zero data.

  Because ``capacity`` is static and ``nnz`` is a leaf, a new topology of the
  same capacity (from :meth:`from_dense` with a new ``mask``) reuses every
  compiled program. The integer leaves have no gradient: differentiate with
  respect to ``data`` (``w.with_data(d)``) or pass ``allow_int=True`` to
  ``jax.grad`` (their cotangents are then ``float0`` zeros).

  Build instances with :meth:`from_dense` or :meth:`from_block_mask`; the
  constructor takes the leaves as they are and checks only their shapes.

  Examples:
    >>> import jax.numpy as jnp
    >>> from pallas_kernels import BlockSparseMatrix
    >>> w = jnp.arange(16.0).reshape(4, 4)
    >>> mask = jnp.array([[True, False], [False, True]])
    >>> m = BlockSparseMatrix.from_dense(w, (2, 2), mask)
    >>> m.capacity, int(m.nnz), m.row_ids.tolist(), m.col_ids.tolist()
    (2, 2, [0, 1], [0, 1])
    >>> m.to_dense()[:, 2:].tolist()
    [[0.0, 0.0], [0.0, 0.0], [10.0, 11.0], [14.0, 15.0]]

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with Mixture-of-Experts
    <https://arxiv.org/abs/2211.15841>`_, 2022 (stk's hybrid blocked CSR-COO
    format with transpose metadata).
  """

  __slots__ = ("data", "row_ids", "col_ids", "col_offsets", "row_offsets",
               "t_perm", "nnz", "shape", "block_shape")

  def __init__(self, data, row_ids, col_ids, col_offsets, row_offsets,
               t_perm, nnz, *, shape, block_shape):
    shape = tuple(int(s) for s in shape)
    bk, bn = _check_block_shape(shape, block_shape)
    kb, nb = shape[0] // bk, shape[1] // bn
    if getattr(data, "ndim", None) != 3 or tuple(data.shape[1:]) != (bk, bn):
      raise ValueError(
          f"data must have shape [capacity, {bk}, {bn}], got "
          f"{getattr(data, 'shape', None)}.")
    cap = data.shape[0]
    expect = dict(row_ids=(cap,), col_ids=(cap,), t_perm=(cap,),
                  col_offsets=(nb + 1,), row_offsets=(kb + 1,), nnz=())
    given = dict(row_ids=row_ids, col_ids=col_ids, t_perm=t_perm,
                 col_offsets=col_offsets, row_offsets=row_offsets, nnz=nnz)
    for name, want in expect.items():
      leaf = given[name]
      if tuple(getattr(leaf, "shape", ())) != want:
        raise ValueError(f"{name} must have shape {want}, got "
                         f"{getattr(leaf, 'shape', None)}.")
      if not jnp.issubdtype(getattr(leaf, "dtype", np.float32), jnp.integer):
        raise ValueError(f"{name} must be an integer array, got "
                         f"{getattr(leaf, 'dtype', None)}.")
    self._set(data, row_ids, col_ids, col_offsets, row_offsets, t_perm, nnz,
              shape, (bk, bn))

  def _set(self, data, row_ids, col_ids, col_offsets, row_offsets, t_perm,
           nnz, shape, block_shape):
    object.__setattr__(self, "data", data)
    object.__setattr__(self, "row_ids", row_ids)
    object.__setattr__(self, "col_ids", col_ids)
    object.__setattr__(self, "col_offsets", col_offsets)
    object.__setattr__(self, "row_offsets", row_offsets)
    object.__setattr__(self, "t_perm", t_perm)
    object.__setattr__(self, "nnz", nnz)
    object.__setattr__(self, "shape", shape)
    object.__setattr__(self, "block_shape", block_shape)

  def __setattr__(self, name, value):
    raise AttributeError("BlockSparseMatrix is immutable; use with_data().")

  # Pytree protocol. Unflattening skips validation: transformations put
  # placeholders (None, object()) in the leaves.
  def tree_flatten(self):
    leaves = (self.data, self.row_ids, self.col_ids, self.col_offsets,
              self.row_offsets, self.t_perm, self.nnz)
    return leaves, (self.shape, self.block_shape)

  @classmethod
  def tree_unflatten(cls, aux, leaves):
    obj = object.__new__(cls)
    obj._set(*leaves, *aux)
    return obj

  # Static properties.
  @property
  def capacity(self) -> int:
    """Number of block slots (static)."""
    return int(self.data.shape[0])

  @property
  def block_grid(self) -> tuple[int, int]:
    """``(K // bk, N // bn)``: the number of block rows and block columns."""
    return (self.shape[0] // self.block_shape[0],
            self.shape[1] // self.block_shape[1])

  @property
  def dtype(self):
    return self.data.dtype

  def __repr__(self):
    return (f"BlockSparseMatrix(shape={self.shape}, "
            f"block_shape={self.block_shape}, capacity={self.capacity}, "
            f"dtype={self.dtype})")

  # Constructors.
  @classmethod
  def from_dense(cls, w, block_shape, mask=None, *,
                 capacity: int | None = None) -> "BlockSparseMatrix":
    """Stores the blocks of a dense ``[K, N]`` matrix that ``mask`` selects.

    Args:
      w: dense ``[K, N]`` array.
      block_shape: ``(bk, bn)``, dividing ``(K, N)``.
      mask: bool ``[K // bk, N // bn]`` block mask; ``None`` keeps every block
        that holds a nonzero. Entries of ``w`` inside a selected block are kept
        as they are (zeros included); entries outside are dropped.
      capacity: number of block slots. Default: the number of selected blocks
        (at least 1), which needs a concrete ``mask`` (or ``w``). Under
        ``jax.jit`` pass it explicitly. When the mask selects more blocks than
        ``capacity``, a concrete mask raises ``ValueError``; a traced one (where
        nothing can be raised) sets every block of ``data`` to NaN so that the
        overflow cannot go unnoticed.

    Returns:
      A ``BlockSparseMatrix`` with ``to_dense() == w * mask`` (blockwise).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> w = jnp.ones((4, 6)).at[:2, :2].set(0.0)
      >>> m = BlockSparseMatrix.from_dense(w, (2, 2))
      >>> m.capacity, int(m.nnz)
      (5, 5)
      >>> f = jax.jit(lambda w, mk: BlockSparseMatrix.from_dense(
      ...     w, (2, 2), mk, capacity=3).nnz)
      >>> int(f(w, jnp.eye(2, 3, dtype=bool)))
      2
    """
    w = jnp.asarray(w)
    if w.ndim != 2:
      raise ValueError(f"w must be 2-D [K, N], got shape {w.shape}.")
    if not jnp.issubdtype(w.dtype, jnp.floating):
      raise ValueError(f"w must have a floating dtype, got {w.dtype}.")
    bk, bn = _check_block_shape(w.shape, block_shape)
    kb, nb = w.shape[0] // bk, w.shape[1] // bn
    blocks = w.reshape(kb, bk, nb, bn).transpose(0, 2, 1, 3)
    if mask is None:
      mask = jnp.any(blocks != 0, axis=(2, 3))
    else:
      mask = jnp.asarray(mask)
      if mask.shape != (kb, nb):
        raise ValueError(
            f"mask must be a bool block mask of shape {(kb, nb)} "
            f"(K // bk, N // bn), got {mask.shape}.")
      if mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be bool, got {mask.dtype}.")
    capacity = cls._capacity(mask, capacity)
    leaves = _from_blocks(blocks, mask, capacity)
    return cls(*leaves, shape=w.shape, block_shape=(bk, bn))

  @classmethod
  def from_block_mask(cls, block_mask, block_shape, *,
                      capacity: int | None = None,
                      dtype: Any = jnp.float32) -> "BlockSparseMatrix":
    """Topology of a ``[Kb, Nb]`` block mask with zero blocks.

    Args:
      block_mask: bool ``[Kb, Nb]``; the matrix shape is
        ``(Kb * bk, Nb * bn)``.
      block_shape: ``(bk, bn)``.
      capacity: number of block slots; default the mask's block count (at
        least 1, concrete mask only). Overflow is handled as in
        :meth:`from_dense`.
      dtype: dtype of the (zero) block data.

    Returns:
      A ``BlockSparseMatrix`` whose stored blocks are zero; fill them with
      :meth:`with_data`.

    Examples:
      >>> import jax.numpy as jnp
      >>> m = BlockSparseMatrix.from_block_mask(
      ...     jnp.array([[False, True], [True, True]]), (8, 128), capacity=4)
      >>> m.shape, m.capacity, int(m.nnz), m.col_offsets.tolist()
      ((16, 256), 4, 3, [0, 1, 3])
    """
    block_mask = jnp.asarray(block_mask)
    if block_mask.ndim != 2 or block_mask.dtype != jnp.bool_:
      raise ValueError(
          f"block_mask must be a 2-D bool array, got {block_mask.dtype}"
          f"{list(block_mask.shape)}.")
    bk, bn = (int(b) for b in block_shape)
    shape = (block_mask.shape[0] * bk, block_mask.shape[1] * bn)
    return cls.from_dense(jnp.zeros(shape, dtype), (bk, bn), block_mask,
                          capacity=capacity)

  @staticmethod
  def _capacity(mask, capacity):
    if capacity is None:
      if not _is_concrete(mask):
        raise ValueError(
            "capacity must be given when the mask (or w) is traced, e.g. "
            "under jax.jit.")
      return max(int(np.sum(np.asarray(mask))), 1)
    capacity = int(capacity)
    if capacity < 1:
      raise ValueError(f"capacity must be >= 1, got {capacity}.")
    if _is_concrete(mask):
      count = int(np.sum(np.asarray(mask)))
      if count > capacity:
        raise ValueError(
            f"mask selects {count} blocks, more than capacity={capacity}.")
    return capacity

  # Views.
  def with_data(self, data) -> "BlockSparseMatrix":
    """The same topology with new block data of the same shape."""
    if tuple(data.shape) != tuple(self.data.shape):
      raise ValueError(
          f"data must have shape {tuple(self.data.shape)}, got {data.shape}.")
    leaves, aux = self.tree_flatten()
    return self.tree_unflatten(aux, (data,) + tuple(leaves[1:]))

  def valid(self):
    """Bool ``[capacity]``: which slots hold stored blocks."""
    return jnp.arange(self.capacity) < self.nnz

  def block_mask(self):
    """Bool ``[K // bk, N // bn]`` mask of the stored blocks."""
    return _block_mask(self.row_ids, self.col_ids, self.nnz, self.block_grid)

  def to_dense(self):
    """The dense ``[K, N]`` matrix (padding slots contribute nothing).

    Examples:
      >>> import jax.numpy as jnp
      >>> w = jnp.arange(8.0).reshape(2, 4)
      >>> m = BlockSparseMatrix.from_dense(w, (1, 2), jnp.eye(2, dtype=bool))
      >>> m.to_dense().tolist()
      [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 6.0, 7.0]]
    """
    return _to_dense(self.data, self.row_ids, self.col_ids, self.nnz,
                     self.shape, self.block_shape)
