# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Flax NNX block-sparse linear layer running on ``block_sparse_matmul``."""

from __future__ import annotations

from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul

__all__ = ("BlockSparseLinear", "BlockTopology", "block_sparse_linear")


class BlockTopology(nnx.Variable):
  """The integer leaves of a block-sparse kernel (ids, offsets, ``nnz``).

  A separate variable type, so that ``nnx.Optimizer(model, tx, wrt=nnx.Param)``
  trains only the block data and a new topology can be written in place.
  """


def _block_grid_mask(mask, kernel_shape, block_shape):
  """A ``[K // bk, N // bn]`` block mask from a block or element mask."""
  kb, nb = kernel_shape[0] // block_shape[0], kernel_shape[1] // block_shape[1]
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise ValueError(f"block_mask must be bool, got {mask.dtype}.")
  if mask.shape == (kb, nb):
    return mask
  if mask.shape == tuple(kernel_shape):
    blocks = mask.reshape(kb, block_shape[0], nb, block_shape[1])
    anyb, allb = blocks.any(axis=(1, 3)), blocks.all(axis=(1, 3))
    if not isinstance(mask, jax.core.Tracer) and bool(jnp.any(anyb != allb)):
      raise ValueError(
          f"block_mask of shape {mask.shape} is an element mask whose blocks "
          f"{tuple(block_shape)} are not all-True or all-False; pass a "
          f"block-granular mask (e.g. sparsejax.masks.block).")
    return anyb
  raise ValueError(
      f"block_mask must have shape {(kb, nb)} (blocks) or "
      f"{tuple(kernel_shape)} (elements), got {mask.shape}.")


class BlockSparseLinear(nnx.Module):
  """A linear layer ``y = x @ W + b`` whose kernel ``W`` is block-sparse.

  ``W`` is a :class:`pallas_kernels.BlockSparseMatrix`: the stored blocks are
  an ``nnx.Param`` (``data``, ``[capacity, bk, bn]``) and the topology is a
  :class:`BlockTopology` variable, so optimizers built with ``wrt=nnx.Param``
  train the blocks only. The product runs on
  :func:`pallas_kernels.block_sparse_matmul` (choose the kernel with
  ``implementation`` / ``interpret``). Build one from a trained dense kernel
  and its block mask with :func:`block_sparse_linear`.

  Args:
    in_features: ``K``.
    out_features: ``N``.
    block_shape: ``(bk, bn)`` dividing ``(K, N)``.
    block_mask: bool ``[K // bk, N // bn]`` mask of the stored blocks, or
      ``None`` for a random mask with ``density`` of the blocks (drawn from
      ``rngs``).
    density: fraction of blocks kept when ``block_mask`` is ``None``.
    capacity: number of block slots (static); default the number of stored
      blocks. Set it larger to let a topology change keep the same shapes.
    use_bias: whether to add a bias.
    kernel_init: initializer of the dense ``[K, N]`` kernel before its blocks
      are taken (so fan-in scaling matches ``nnx.Linear``).
    bias_init: initializer of the bias.
    param_dtype: dtype of the parameters.
    implementation: passed to ``block_sparse_matmul``.
    interpret: passed to ``block_sparse_matmul``.
    rngs: ``nnx.Rngs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from sparsejax.nn import BlockSparseLinear
    >>> mask = jnp.array([[True, False], [False, True]])
    >>> layer = BlockSparseLinear(4, 6, block_shape=(2, 3), block_mask=mask,
    ...                           rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((5, 4))).shape, layer.data.shape
    ((5, 6), (2, 2, 3))

  References:
    Gray et al, `GPU Kernels for Block-Sparse Weights
    <https://cdn.openai.com/blocksparse/blocksparsepaper.pdf>`_, 2017
  """

  def __init__(self, in_features: int, out_features: int, *,
               block_shape, block_mask=None, density: float = 0.25,
               capacity: int | None = None, use_bias: bool = True,
               kernel_init=nnx.initializers.lecun_normal(),
               bias_init=nnx.initializers.zeros_init(),
               param_dtype: Any = jnp.float32, implementation=None,
               interpret=None, rngs: nnx.Rngs):
    shape = (int(in_features), int(out_features))
    if block_mask is None:
      if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}.")
      kb, nb = shape[0] // block_shape[0], shape[1] // block_shape[1]
      block_mask = jax.random.uniform(rngs.params(), (kb, nb)) < density
    kernel = kernel_init(rngs.params(), shape, param_dtype)
    block_mask = _block_grid_mask(block_mask, shape, block_shape)
    matrix = BlockSparseMatrix.from_dense(kernel, block_shape, block_mask,
                                          capacity=capacity)
    bias = (bias_init(rngs.params(), (shape[1],), param_dtype) if use_bias
            else None)
    self.shape = matrix.shape
    self.block_shape = matrix.block_shape
    self.implementation = implementation
    self.interpret = interpret
    self.data = nnx.Param(matrix.data)
    leaves, _ = matrix.tree_flatten()
    self.topology = BlockTopology(tuple(leaves[1:]))
    self.bias = None if bias is None else nnx.Param(bias)

  @property
  def matrix(self) -> BlockSparseMatrix:
    """The kernel as a :class:`pallas_kernels.BlockSparseMatrix`."""
    return BlockSparseMatrix.tree_unflatten(
        (self.shape, self.block_shape),
        (self.data[...],) + tuple(self.topology.get_value()))

  def set_topology(self, matrix: BlockSparseMatrix) -> None:
    """Replaces blocks and topology by ``matrix`` (same shape and capacity)."""
    if (matrix.shape, matrix.block_shape, matrix.capacity) != (
        self.shape, self.block_shape, self.data.shape[0]):
      raise ValueError(
          f"matrix must have shape {self.shape}, block_shape "
          f"{self.block_shape} and capacity {self.data.shape[0]}, got "
          f"{matrix!r}.")
    leaves, _ = matrix.tree_flatten()
    self.data.set_value(leaves[0])
    self.topology.set_value(tuple(leaves[1:]))

  def __call__(self, x):
    y = block_sparse_matmul(x, self.matrix, implementation=self.implementation,
                            interpret=self.interpret)
    if self.bias is not None:
      y = y + self.bias[...]
    return y


def block_sparse_linear(kernel, bias=None, *, block_shape, block_mask=None,
                        capacity: int | None = None, implementation=None,
                        interpret=None) -> BlockSparseLinear:
  """Converts a dense kernel (and bias) into a :class:`BlockSparseLinear`.

  Use it on a model trained with block-granular sparsity (block magnitude
  pruning, block drop-and-grow): the mask the optimizer left selects the
  blocks, and inference then runs on the block-sparse kernel with the same
  outputs as ``x @ (kernel * mask) + bias``.

  Args:
    kernel: dense ``[K, N]`` array (e.g. ``nnx.Linear.kernel.value``).
    bias: ``[N]`` array or ``None``.
    block_shape: ``(bk, bn)`` dividing ``(K, N)``.
    block_mask: bool mask of the blocks to keep, either ``[K // bk, N // bn]``
      or element-level ``[K, N]`` with whole blocks True or False (as
      ``sparsejax.masks.block`` returns); ``None`` keeps every block that has
      a nonzero.
    capacity: number of block slots; default the number of kept blocks.
    implementation: passed to ``block_sparse_matmul``.
    interpret: passed to ``block_sparse_matmul``.

  Returns:
    A ``BlockSparseLinear`` holding the selected blocks of ``kernel``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax.nn import block_sparse_linear
    >>> w = jnp.arange(16.0).reshape(4, 4)
    >>> layer = block_sparse_linear(w, jnp.ones(4), block_shape=(2, 2),
    ...                             block_mask=jnp.eye(2, dtype=bool))
    >>> layer(jnp.ones((1, 4))).tolist()
    [[5.0, 7.0, 25.0, 27.0]]
  """
  kernel = jnp.asarray(kernel)
  if kernel.ndim != 2:
    raise ValueError(f"kernel must be 2-D [K, N], got shape {kernel.shape}.")
  if block_mask is not None:
    block_mask = _block_grid_mask(block_mask, kernel.shape, block_shape)
  matrix = BlockSparseMatrix.from_dense(kernel, block_shape, block_mask,
                                        capacity=capacity)
  if bias is not None:
    bias = jnp.asarray(bias)
    if bias.shape != (kernel.shape[1],):
      raise ValueError(
          f"bias must have shape {(kernel.shape[1],)}, got {bias.shape}.")
  # Build an empty layer of the right static shape, then write the blocks in.
  layer = BlockSparseLinear(
      kernel.shape[0], kernel.shape[1], block_shape=matrix.block_shape,
      block_mask=np.zeros(matrix.block_grid, bool), capacity=matrix.capacity,
      use_bias=bias is not None, param_dtype=kernel.dtype,
      implementation=implementation, interpret=interpret, rngs=nnx.Rngs(0))
  layer.set_topology(matrix)
  if bias is not None:
    layer.bias.set_value(bias.astype(kernel.dtype))
  return layer
