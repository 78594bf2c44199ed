# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Argument checks shared by the activation-sparsity functions."""

import numbers

import jax
import numpy as np


def is_concrete(value) -> bool:
  """True when `value` can be inspected in Python (not a tracer)."""
  return not isinstance(value, jax.core.Tracer)


def check_fraction(value, name: str, *, allow_zero: bool = True,
                   allow_one: bool = False) -> None:
  """Raises ValueError unless a concrete `value` lies in the allowed range.

  Traced values pass unchecked: under `jax.jit` the caller owns the range.
  """
  if not is_concrete(value):
    return
  arr = np.asarray(value)
  if arr.dtype.kind not in "fiu":
    raise ValueError(f"{name} must be a real number, got {value!r}.")
  if np.any(np.isnan(arr)):
    raise ValueError(f"{name} must not be NaN, got {value!r}.")
  low_ok = arr >= 0 if allow_zero else arr > 0
  high_ok = arr <= 1 if allow_one else arr < 1
  if not np.all(low_ok & high_ok):
    lo = "[0" if allow_zero else "(0"
    hi = "1]" if allow_one else "1)"
    raise ValueError(f"{name} must lie in {lo}, {hi}, got {value!r}.")


def check_axis(ndim: int, axis: int, name: str = "axis") -> int:
  """Normalises `axis` for an array of rank `ndim`."""
  if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
    raise ValueError(f"{name} must be an int, got {axis!r}.")
  if ndim == 0:
    raise ValueError("x must have at least one dimension, got a scalar.")
  if not -ndim <= axis < ndim:
    raise ValueError(f"{name}={axis} is out of range for an array of rank "
                     f"{ndim}.")
  return axis % ndim
