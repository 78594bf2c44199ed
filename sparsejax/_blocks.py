# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Blocks of a leaf's last two dimensions, keeping explicit shardings.

One module for the block arithmetic that masks, drop-and-grow and the
layers share: split and merge dimensions with the sharding kept, per-block
sums, and the expansion of a block grid back to entries.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def dim_specs(x: jax.Array):
  """Per-dimension mesh axes of an explicitly sharded array, else None."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if spec is None or all(e is None for e in spec):
    return None
  entries = tuple(spec) + (None,) * (x.ndim - len(spec))
  return entries, sharding.mesh


def _shards(entry, mesh) -> int:
  if entry is None:
    return 1
  names = entry if isinstance(entry, tuple) else (entry,)
  return int(np.prod([mesh.shape[n] for n in names]))


def split_dim(x: jax.Array, axis: int, factor: int) -> jax.Array:
  """Reshapes ``axis`` into ``(size // factor, factor)``, keeping sharding."""
  axis %= x.ndim
  shape = x.shape[:axis] + (x.shape[axis] // factor, factor) + x.shape[
      axis + 1:]
  specs = dim_specs(x)
  if specs is None:
    return x.reshape(shape)
  entries, mesh = specs
  if shape[axis] % _shards(entries[axis], mesh):
    # The sharded dimension cannot stay sharded after the split: gather it.
    entries = entries[:axis] + (None,) + entries[axis + 1:]
    x = jax.sharding.reshard(x, jax.P(*entries))
  out = entries[:axis] + (entries[axis], None) + entries[axis + 1:]
  return jax.lax.reshape(x, shape, out_sharding=jax.P(*out))


def merge_dims(x: jax.Array, axis: int) -> jax.Array:
  """Merges ``axis`` and ``axis + 1`` (the inverse of :func:`split_dim`)."""
  axis %= x.ndim
  shape = x.shape[:axis] + (x.shape[axis] * x.shape[axis + 1],) + x.shape[
      axis + 2:]
  specs = dim_specs(x)
  if specs is None:
    return x.reshape(shape)
  entries, mesh = specs
  if entries[axis + 1] is not None:
    entries = entries[:axis + 1] + (None,) + entries[axis + 2:]
    x = jax.sharding.reshard(x, jax.P(*entries))
  out = entries[:axis] + (entries[axis],) + entries[axis + 2:]
  return jax.lax.reshape(x, shape, out_sharding=jax.P(*out))


def with_sharding_of(out: jax.Array, x: jax.Array) -> jax.Array:
  """Gives ``out`` the explicit sharding of ``x`` if a reshape dropped it."""
  specs = dim_specs(x)
  if specs is None or dim_specs(out) == specs:
    return out
  return jax.sharding.reshard(out, jax.P(*specs[0]))


def block_sum(x: jax.Array, block_shape: Sequence[int], path: str = ""):
  """Sums ``x`` over blocks of its last two dimensions."""
  bm, bn = block_shape
  if x.ndim < 2 or x.shape[-2] % bm or x.shape[-1] % bn:
    raise ValueError(
        f"`block_shape` {tuple(block_shape)} does not divide the last two "
        f"dimensions of leaf '{path}' with shape {tuple(x.shape)}.")
  blocks = split_dim(split_dim(x, -1, bn), -3, bm)
  return blocks.sum(axis=(-3, -1))


def expand_blocks(grid: jax.Array, block_shape: Sequence[int]) -> jax.Array:
  """Repeats every entry of ``grid`` over a block (the inverse layout of
  :func:`block_sum`)."""
  bm, bn = block_shape
  lead = grid.shape[:-2]
  gm, gn = grid.shape[-2:]
  tiles = jnp.broadcast_to(grid[..., :, None, :, None],
                           lead + (gm, bm, gn, bn))
  return merge_dims(merge_dims(tiles, -2), -3)
