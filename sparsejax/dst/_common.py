# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Drop-and-grow building blocks shared by the dynamic sparse methods.

Every method works in units (:mod:`sparsejax._method`): the engine gives it
masks and budgets per unit (an entry, or a whole block with block
granularity) and ``u.pool`` to sum scores per unit, so counts (``nnz``, how
many to drop) are in units and no method contains block code.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from sparsejax import _method
from sparsejax import _topk
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


def drop_and_grow(u: _method.MaskUpdate, drop_scores: Any,
                  grow_scores: Any, fraction: Any) -> Any:
  """Per sparse leaf: drop ``floor(fraction * nnz)`` units, grow as many.

  The kept units are the ``nnz - n`` active ones of highest drop score; the
  grown ones the ``n`` of highest grow score among those not kept (RigL's
  rule; MEST's with its own scores).
  """
  def one(budget, active, drop, grow):
    del budget
    nnz = count(active)
    n = floor_count(fraction, nnz)
    kept, grown = keep_and_grow(active, drop, grow, nnz - n, n)
    return kept | grown
  return _method.map_sparse(u, one, u.masks, drop_scores, grow_scores)


def check_grow_init(grow_init: Any) -> None:
  if grow_init != "zeros":
    raise ValueError(
        f"`grow_init` must be 'zeros' (RigL's default), got {grow_init!r}.")


def cosine_drop_fraction(alpha: float, begin_step: int,
                         end_step: int) -> Callable[[Any], jax.Array]:
  """RigL's ``alpha / 2 * (1 + cos(pi * (t - t0) / (t_end - t0)))``, 0 after."""
  span = max(end_step - begin_step, 1)

  def schedule(step):
    t = jnp.clip((jnp.asarray(step, jnp.float32) - begin_step) / span, 0., 1.)
    value = 0.5 * alpha * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(jnp.asarray(step) >= end_step, 0.0, value)

  return schedule


def drop_schedule(drop_fraction: Any, begin_step: int,
                  end_step: int) -> Callable[[Any], Any]:
  """A schedule as given, else RigL's cosine decay from a float."""
  if callable(drop_fraction):
    return drop_fraction
  return cosine_drop_fraction(drop_fraction, begin_step, end_step)


def cosine_annealing(start: float, end: float,
                     total_steps: int) -> Callable[[Any], jax.Array]:
  """PyTorch's ``CosineAnnealingLR`` from ``start`` to ``end`` over steps."""
  span = max(total_steps, 1)

  def schedule(step):
    t = jnp.clip(jnp.asarray(step, jnp.float32) / span, 0., 1.)
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))

  return schedule


def as_schedule(value: Any) -> Callable[[Any], Any]:
  return value if callable(value) else (lambda step: value)


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
