# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Exact top-k selection without sorting.

Both selections find the k-th largest 32-bit order key of the scores and keep
the entries above it, plus the entries equal to it of lowest linear index;
``k`` may be a traced value (a scheduled sparsity).

* :func:`topk_keys` bisects with comparisons and sums only. Sorting or
  flattening a sharded array fails under explicit sharding (and all-gathers it
  otherwise), so this is the path for sharded arrays and for a top-k across
  several arrays.
* :func:`radix_topk` finds the key by a three-digit radix select over
  histograms, in a few passes instead of over thirty; the histograms scatter
  into a flattened array, so it serves one unsharded array.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_KEY_BITS = 32


def order_key(scores: jax.Array) -> jax.Array:
  """Maps float scores to ``uint32`` keys with the same order.

  NaN sorts below every number, and ``-0.0`` ties with ``0.0``.
  """
  x = scores.astype(jnp.float32)
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  bits = lax.bitcast_convert_type(x, jnp.uint32)
  negative = (bits >> 31) == 1
  key = jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))
  # -inf maps to 0x007FFFFF, so 0 is free for NaN.
  return jnp.where(jnp.isnan(x), jnp.uint32(0), key)


def _linear_index(shape: Sequence[int], offset: int) -> jax.Array:
  index = jnp.full(shape, offset, jnp.int32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + lax.broadcasted_iota(jnp.int32, shape, axis) * stride
    stride *= shape[axis]
  return index


def _count(arrays: Sequence[jax.Array]) -> jax.Array:
  return sum(jnp.sum(a, dtype=jnp.int32) for a in arrays)


@jax.jit
def topk_keys(keys: Sequence[jax.Array], k: jax.Array) -> list[jax.Array]:
  """Masks of the ``k`` largest entries across all ``keys`` arrays.

  Args:
    keys: ``uint32`` order keys (see :func:`order_key`), any shapes.
    k: how many entries to keep in total; a scalar (may be traced) with
      ``0 <= k <= total size``.

  Returns:
    Bool masks shaped like ``keys`` with exactly ``k`` True entries in total;
    among equal keys, lower linear index (leaf order, then row-major) wins.
  """
  k = jnp.asarray(k, jnp.int32)
  sizes = [int(np.prod(a.shape)) for a in keys]
  total = sum(sizes)

  def body(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = _count([a >= mid for a in keys]) >= k
    return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

  # Invariant: count(key >= lo) >= k > count(key >= hi).
  lo, _ = lax.fori_loop(
      0, _KEY_BITS, body, (jnp.uint32(0), jnp.uint32(0xFFFFFFFF)))
  above = [a > lo for a in keys]
  ties = [a == lo for a in keys]
  needed = k - _count(above)

  def all_ties():
    return [a | t for a, t in zip(above, ties, strict=True)]

  def first_ties():
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    index = [_linear_index(a.shape, o) for a, o in zip(keys, offsets,
                                                      strict=True)]

    def index_body(_, bounds):
      lo, hi = bounds
      mid = lo + (hi - lo) // 2
      enough = _count([t & (i < mid) for t, i in zip(ties, index,
                                                      strict=True)]) >= needed
      return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

    # Smallest j with count(tie & index < j) >= needed lies in (lo, hi].
    steps = max(1, int(np.ceil(np.log2(total + 1))))
    _, j = lax.fori_loop(
        0, steps, index_body, (jnp.int32(0), jnp.int32(total)))
    return [a | (t & (i < j))
            for a, t, i in zip(above, ties, index, strict=True)]

  masks = lax.cond(_count(ties) == needed, all_ties, first_ties)
  return [jnp.where(k <= 0, False, jnp.where(k >= total, True, m))
          for m in masks]


def is_unsharded(x: jax.Array) -> bool:
  """True when ``x`` carries no explicit sharding over a mesh axis."""
  spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
  return spec is None or all(e is None for e in spec)


@jax.jit
def radix_topk(keys: jax.Array, k: jax.Array) -> jax.Array:
  """Mask of the ``k`` largest ``keys`` of one unsharded array.

  The same selection as :func:`topk_keys` (ties to the lower row-major
  index). Histograms of 11, 11 and 10 key bits give the k-th largest key
  exactly; a running count picks among ties only when some must be left out.

  Args:
    keys: ``uint32`` order keys (see :func:`order_key`).
    k: how many entries to keep, ``0 <= k <= keys.size`` (may be traced).

  Returns:
    A bool mask shaped like ``keys`` with exactly ``k`` True entries.
  """
  size = keys.size
  k = jnp.asarray(k, jnp.int32)
  prefix = jnp.uint32(0)
  remaining = k
  for shift, width in ((21, 11), (10, 11), (0, 10)):
    bins = 1 << width
    digit = ((keys >> shift) & jnp.uint32(bins - 1)).astype(jnp.int32)
    if shift + width < 32:
      match = (keys >> (shift + width)) == prefix
    else:
      match = jnp.ones_like(keys, jnp.bool_)
    hist = jnp.zeros((bins,), jnp.int32).at[digit.ravel()].add(
        match.ravel().astype(jnp.int32))
    # at_least[d]: entries with this prefix whose digit is >= d.
    at_least = jnp.cumsum(hist[::-1])[::-1]
    d = jnp.sum(at_least >= remaining, dtype=jnp.int32) - 1
    above_d = jnp.where(d + 1 < bins,
                        at_least[jnp.minimum(d + 1, bins - 1)], 0)
    remaining = remaining - above_d
    prefix = (prefix << width) | d.astype(jnp.uint32)
    # After the last digit, the entries equal to the k-th key.
    tie_count = hist[jnp.clip(d, 0, bins - 1)]
  above = keys > prefix
  ties = keys == prefix
  # The histograms already give both counts (`remaining` ties are needed):
  # no pass over the keys to count them.

  def first_ties():
    rank = jnp.cumsum(ties.ravel().astype(jnp.int32)).reshape(keys.shape)
    return above | (ties & (rank <= remaining))

  out = lax.cond(tie_count == remaining, lambda: above | ties, first_ties)
  return jnp.where(k <= 0, False, jnp.where(k >= size, True, out))
