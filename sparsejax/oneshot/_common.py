# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Argument checks shared by the one-shot pruners."""

from typing import Any

import jax
import jax.numpy as jnp

from sparsejax import _validate
from sparsejax import masks as _masks


def parse_sparsity(
    sparsity: Any) -> tuple[float | None, tuple[int, int] | None]:
  """``(fraction, None)`` for a float, ``(None, (n, m))`` for an N:M pair."""
  if isinstance(sparsity, (tuple, list)):
    if len(sparsity) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in sparsity):
      raise ValueError(
          f"`sparsity` must be a float or an (n, m) pair of ints, got "
          f"{sparsity!r}.")
    n, m = sparsity
    if not 0 <= n <= m or m < 1:
      raise ValueError(
          f"`sparsity` (n, m) needs 0 <= n <= m and m >= 1, got {sparsity!r}.")
    return None, (n, m)
  # pylint: disable-next=protected-access
  _validate.check_fraction(sparsity, "sparsity")
  return float(sparsity), None


def check_layer(w: Any, x: Any, nm: tuple[int, int] | None) -> tuple[
    jax.Array, jax.Array]:
  """Checks a kernel ``[in, out]`` and calibration inputs ``[tokens, in]``."""
  w = jnp.asarray(w)
  x = jnp.asarray(x)
  if w.ndim != 2:
    raise ValueError(f"`w` must be a kernel [in, out], got shape {w.shape}.")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise ValueError(f"`w` must be floating point, got {w.dtype}.")
  if x.ndim < 2 or x.shape[-1] != w.shape[0]:
    raise ValueError(
        f"`x` must be calibration inputs [tokens, {w.shape[0]}] (leading "
        f"dimensions are flattened), got shape {x.shape}.")
  if nm is not None and w.shape[0] % nm[1]:
    raise ValueError(
        f"`sparsity` {nm[0]}:{nm[1]} needs m to divide the input dimension "
        f"{w.shape[0]} of `w`.")
  return w, x.reshape(-1, x.shape[-1])


def keep_per_column(scores: jax.Array, keep: int) -> jax.Array:
  """Keeps the ``keep`` highest scores of every column (ties: lower row)."""
  order = jnp.argsort(-scores, axis=0, stable=True)
  rank = jnp.argsort(order, axis=0, stable=True)
  return rank < keep
