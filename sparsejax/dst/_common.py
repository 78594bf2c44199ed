# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Drop-and-grow building blocks shared by the dynamic sparse methods.

Every method works on a leaf's *grid*: the leaf itself with element
granularity, or the per-block sums of its last two dimensions with a block
shape ``(bm, bn)``. Counts (``nnz``, how many to drop) are then in grid units
(entries or whole blocks) and the selected grid is expanded back, so block
granularity keeps whole blocks without any method-specific code.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from sparsejax import _topk
from sparsejax import _tree
from sparsejax import masks as _masks

NEG_INF = -jnp.inf

# float32 products such as 0.15 * 1000 can land just below the integer; the
# floor/ceil rules of the reference codes are meant on the exact value.
_EPS = 1e-3


def floor_count(fraction: Any, n: Any) -> jax.Array:
  """``floor(fraction * n)`` as int32, tolerant to float32 rounding."""
  x = jnp.asarray(fraction, jnp.float32) * jnp.asarray(n, jnp.float32)
  return jnp.floor(x + _EPS).astype(jnp.int32)


def ceil_count(fraction: Any, n: Any) -> jax.Array:
  """``ceil(fraction * n)`` as int32, tolerant to float32 rounding."""
  x = jnp.asarray(fraction, jnp.float32) * jnp.asarray(n, jnp.float32)
  return jnp.ceil(x - _EPS).astype(jnp.int32)


def to_grid(x: jax.Array, block_shape: tuple[int, int] | None) -> jax.Array:
  """Per-block sums of ``x`` (``x`` itself with element granularity)."""
  if block_shape is None:
    return x
  return _masks._block_sum(x, block_shape, "")  # pylint: disable=protected-access


def from_grid(g: jax.Array, block_shape: tuple[int, int] | None) -> jax.Array:
  """Expands a grid mask back to the leaf's shape."""
  if block_shape is None:
    return g
  return _masks._expand_blocks(g, block_shape)  # pylint: disable=protected-access


def grid_mask(mask: jax.Array, block_shape: tuple[int, int] | None):
  """The active units of a leaf's mask (a block is active as a whole)."""
  if block_shape is None:
    return mask
  return to_grid(mask.astype(jnp.float32), block_shape) > 0


def count(mask: jax.Array) -> jax.Array:
  return jnp.sum(mask, dtype=jnp.int32)


def topk1(scores: jax.Array, k: Any) -> jax.Array:
  """Exactly ``k`` highest entries of one array, ties to the lower index."""
  return _masks.topk(scores.astype(jnp.float32), k)


def keep_and_grow(active, drop_score, grow_score, n_keep, n_grow):
  """The RigL selection on one grid.

  Keeps the ``n_keep`` active units of highest ``drop_score`` and grows the
  ``n_grow`` units of highest ``grow_score`` among those not kept (so a unit
  just dropped may be grown again: it then keeps its weight and slots).

  Returns:
    ``(kept, grown)`` bool grids; the new mask is ``kept | grown``.
  """
  kept = topk1(jnp.where(active, drop_score, NEG_INF), n_keep)
  grown = topk1(jnp.where(kept, NEG_INF, grow_score), n_grow)
  return kept, grown


def cosine_drop_fraction(alpha: float, begin_step: int,
                         end_step: int) -> Callable[[Any], jax.Array]:
  """RigL's ``alpha / 2 * (1 + cos(pi * (t - t0) / (t_end - t0)))``, 0 after."""
  span = max(end_step - begin_step, 1)

  def schedule(step):
    t = jnp.clip((jnp.asarray(step, jnp.float32) - begin_step) / span, 0., 1.)
    value = 0.5 * alpha * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(jnp.asarray(step) >= end_step, 0.0, value)

  return schedule


def cosine_annealing(start: float, end: float,
                     total_steps: int) -> Callable[[Any], jax.Array]:
  """PyTorch's ``CosineAnnealingLR`` from ``start`` to ``end`` over steps."""
  span = max(total_steps, 1)

  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / span, 0., 1.)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))

  return schedule


def check_fraction(value: Any, name: str, *, allow_one: bool = False) -> None:
  """A float in ``[0, 1)`` (``[0, 1]`` with ``allow_one``) or a schedule."""
  if callable(value) or not _tree.is_concrete(value):
    return
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(
        f"`{name}` must be a float or an optax schedule, got {value!r}."
    ) from None
  hi_ok = v <= 1.0 if allow_one else v < 1.0
  if not (v >= 0.0 and hi_ok):
    bound = "]" if allow_one else ")"
    raise ValueError(f"`{name}` must be in [0, 1{bound}, got {v}.")


def as_schedule(value: Any) -> Callable[[Any], Any]:
  return value if callable(value) else (lambda step: value)


def check_end_step(end_step: Any, begin_step: int = 0) -> int:
  if isinstance(end_step, bool) or not isinstance(end_step,
                                                  (int, np.integer)):
    raise ValueError(f"`end_step` must be an int, got {end_step!r}.")
  if end_step <= begin_step:
    raise ValueError(
        f"`end_step` ({end_step}) must be greater than `begin_step` "
        f"({begin_step}).")
  return int(end_step)


def check_float_sparsity(sparsity: Any, method: str) -> None:
  if callable(sparsity):
    raise ValueError(
        f"`sparsity` of {method} must be a float: drop-and-grow keeps each "
        "leaf's number of nonzeros.")


def check_grow_init(grow_init: Any) -> None:
  if grow_init != "zeros":
    raise ValueError(
        f"`grow_init` must be 'zeros' (RigL's default), got {grow_init!r}.")


def sparse_items(u, *trees):
  """``(index, budget, leaf, *leaves)`` for every sparse leaf of ``u``."""
  budgets = jax.tree.leaves(u.budgets, is_leaf=_tree.is_none)
  flat = [jax.tree.leaves(t, is_leaf=_tree.is_none) for t in trees]
  return [(i, b, *(f[i] for f in flat)) for i, b in enumerate(budgets)
          if b is not None]


def rebuild(u, new_by_index: dict[int, jax.Array]) -> Any:
  """The masks of ``u`` with the leaves of ``new_by_index`` replaced."""
  leaves, treedef = jax.tree.flatten(u.masks, is_leaf=_tree.is_none)
  return jax.tree.unflatten(
      treedef, [new_by_index.get(i, m) for i, m in enumerate(leaves)])


def random_scores(key: jax.Array, u) -> Any:
  """Uniform random scores shaped like the sparse leaves (sharding kept)."""
  live = jax.tree.map(lambda p, b: None if b is None else p, u.params,
                      u.budgets, is_leaf=_tree.is_none)
  return optax.tree.random_like(key, live, sampler=jax.random.uniform)


def rigl_like_update(u, drop_scores: Any, grow_scores: Any,
                     drop_fraction: Any, *, ceil: bool = False) -> Any:
  """Per leaf: drop ``fraction * nnz`` by ``drop_scores``, grow as many.

  ``nnz`` and the count are in grid units; ``floor`` (RigL) or ``ceil``
  (SNFS / GraNet) rounding.
  """
  bs = u.block_shape
  out = {}
  for i, _, m, ds, gs in sparse_items(u, u.masks, drop_scores, grow_scores):
    active = grid_mask(m, bs)
    nnz = count(active)
    n = (ceil_count if ceil else floor_count)(drop_fraction, nnz)
    kept, grown = keep_and_grow(active, to_grid(ds, bs), to_grid(gs, bs),
                                nnz - n, n)
    out[i] = from_grid(kept | grown, bs)
  return rebuild(u, out)


def abs_tree(tree: Any, u) -> Any:
  return jax.tree.map(lambda x, b: None if b is None else jnp.abs(x), tree,
                      u.budgets, is_leaf=_tree.is_none)


def random_init_masks(key, params, budgets, block_shape):
  """Exactly ``budget`` random entries (or whole blocks) per sparse leaf."""
  live = jax.tree.map(lambda p, b: None if b is None else p, params, budgets,
                      is_leaf=_tree.is_none)
  scores = optax.tree.random_like(key, live, sampler=jax.random.uniform)
  return _masks.topk(scores, budgets, block_shape=block_shape)


def topk_columns(scores: jax.Array, k: jax.Array) -> jax.Array:
  """Per column of a 2-D array, exactly ``k[j]`` highest entries.

  The same exact threshold bisection as :func:`sparsejax.masks.topk`, run for
  every column at once with reductions along the rows only (so a
  column-sharded array stays sharded). Ties go to the lower row index.

  Args:
    scores: float ``[R, C]``.
    k: int ``[C]`` (may be traced), clipped to ``[0, R]``.

  Returns:
    Bool ``[R, C]`` with ``min(max(k[j], 0), R)`` True entries in column j.
  """
  rows = scores.shape[0]
  keys = _topk.order_key(scores)
  # Give k the columns' sharding (a column-sharded array stays sharded).
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, rows) + jnp.zeros_like(
      keys[0], jnp.int32)

  def col_count(x):
    return jnp.sum(x, axis=0, dtype=jnp.int32)

  def body(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = col_count(keys >= mid[None, :]) >= k
    return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

  lo0 = jnp.zeros_like(k, jnp.uint32)
  hi0 = lo0 + jnp.uint32(0xFFFFFFFF)
  lo, _ = lax.fori_loop(0, 32, body, (lo0, hi0))
  above = keys > lo[None, :]
  ties = keys == lo[None, :]
  needed = k - col_count(above)
  row = lax.broadcasted_iota(jnp.int32, scores.shape, 0)

  def index_body(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = col_count(ties & (row < mid[None, :])) >= needed
    return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

  steps = max(1, math.ceil(math.log2(rows + 1)))
  _, j = lax.fori_loop(0, steps, index_body,
                       (jnp.zeros_like(k), jnp.zeros_like(k) + rows))
  out = above | (ties & (row < j[None, :]))
  return jnp.where(k[None, :] <= 0, False, out)
