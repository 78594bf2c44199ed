# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Exact top-k selection without sorting.

Both selections find the k-th largest 32-bit order key of the scores and keep
the entries above it, plus the entries equal to it of lowest linear index;
``k`` may be a traced value (a scheduled sparsity).

* :func:`topk_keys` bisects with comparisons and sums only. Sorting or
  flattening a sharded array fails under explicit sharding (and all-gathers it
  otherwise), so this is the path for sharded arrays and for a top-k across
  several arrays.
* :func:`radix_topk` finds the key by a radix select over histograms of two
  or three digits, in a few passes instead of over thirty; the histograms
  scatter from a flattened array, so it serves one unsharded array.
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


# Key bits per radix pass. Two passes of 16 bits are faster from about 2**16
# entries up (one scatter fewer); below, 65536-bin histograms cost more than
# the entries do.
_SMALL_DIGITS = ((21, 11), (10, 11), (0, 10))
_LARGE_DIGITS = ((16, 16), (0, 16))
_LARGE_SIZE = 1 << 16


def _pick_digit(hist: jax.Array,
                remaining: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The digit holding the ``remaining``-th largest entry of a histogram.

  Returns ``(d, above)``: the largest ``d`` with ``count(digit >= d) >=
  remaining``, and ``count(digit > d)``. Suffix sums run over rows of the
  histogram, then within the chosen row only, not over all its bins.
  """
  rows = hist.reshape(min(256, hist.size), -1)
  n_cols = rows.shape[1]

  def last_reaching(at_least):  # the largest i with at_least[i] >= remaining
    i = jnp.sum(at_least >= remaining, dtype=jnp.int32) - 1
    return jnp.clip(i, 0, at_least.size - 1)

  def after(at_least, i, default):  # at_least[i + 1], or default at the end
    return jnp.where(i + 1 < at_least.size,
                     at_least[jnp.minimum(i + 1, at_least.size - 1)], default)

  rows_at_least = jnp.cumsum(jnp.sum(rows, axis=1)[::-1])[::-1]
  r = last_reaching(rows_at_least)
  above_row = after(rows_at_least, r, 0)
  row = lax.dynamic_index_in_dim(rows, r, keepdims=False)
  at_least = jnp.cumsum(row[::-1])[::-1] + above_row
  c = last_reaching(at_least)
  return r * n_cols + c, after(at_least, c, above_row)


@jax.jit
def radix_topk(keys: jax.Array, k: jax.Array) -> jax.Array:
  """Mask of the ``k`` largest ``keys`` of one unsharded array.

  The same selection as :func:`topk_keys` (ties to the lower row-major
  index). Histograms of the key's digits (two of 16 bits, or 11, 11 and 10
  bits for arrays under 65536 entries) give the k-th largest key exactly; a
  running count picks among ties only when some must be left out.

  Args:
    keys: ``uint32`` order keys (see :func:`order_key`).
    k: how many entries to keep, ``0 <= k <= keys.size`` (may be traced).

  Returns:
    A bool mask shaped like ``keys`` with exactly ``k`` True entries.
  """
  size = keys.size
  flat = keys.ravel()
  k = jnp.asarray(k, jnp.int32)
  prefix = jnp.uint32(0)
  remaining = k
  for shift, width in _LARGE_DIGITS if size >= _LARGE_SIZE else _SMALL_DIGITS:
    bins = 1 << width
    digit = ((flat >> shift) & jnp.uint32(bins - 1)).astype(jnp.int32)
    if shift + width < 32:
      # Entries off the prefix found so far go to an extra bin, dropped.
      digit = jnp.where((flat >> (shift + width)) == prefix, digit, bins)
    hist = jnp.zeros((bins + 1,), jnp.int32).at[digit].add(
        1, mode="promise_in_bounds")[:bins]
    d, above_d = _pick_digit(hist, remaining)
    remaining = remaining - above_d
    prefix = (prefix << width) | d.astype(jnp.uint32)
  # After the last digit: the entries equal to the k-th key, of which
  # `remaining` are kept. The histograms give both counts, so no pass over
  # the keys counts them.
  tie_count = hist[d]
  above = keys > prefix
  ties = keys == prefix

  def first_ties():
    rank = jnp.cumsum(ties.ravel().astype(jnp.int32)).reshape(keys.shape)
    return above | (ties & (rank <= remaining))

  out = lax.cond(tie_count == remaining, lambda: above | ties, first_ties)
  return jnp.where(k <= 0, False, jnp.where(k >= size, True, out))
