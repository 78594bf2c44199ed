# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Argument checks, written once for every public function.

Every check raises ``ValueError`` naming the argument (and the leaf path
where there is one). A traced value (``optax.inject_hyperparams``, an
argument under ``jax.jit``) cannot be inspected and passes: the caller's
program owns its range.
"""

import numbers
from typing import Any

import jax
import numpy as np

from sparsejax._tree import is_concrete


def _where(path: str | None) -> str:
  return f" (leaf '{path}')" if path else ""


def check_fraction(value: Any, name: str, *, allow_zero: bool = True,
                   allow_one: bool = False, allow_schedule: bool = False,
                   path: str | None = None) -> None:
  """A number (or array of numbers) in ``[0, 1)``; bounds as allowed.

  Args:
    value: the value to check.
    name: the argument's name, for the error.
    allow_zero: accept 0 (``[0, ...``); else ``(0, ...``.
    allow_one: accept 1 (``..., 1]``); else ``..., 1)``.
    allow_schedule: accept a callable (an optax schedule) unchecked.
    path: the leaf the value belongs to, for the error.
  """
  if (allow_schedule and callable(value)) or not is_concrete(value):
    return
  kind = "a float or an optax schedule" if allow_schedule else "a number"
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"`{name}`{_where(path)} must be {kind}, got "
                     f"{value!r}.") from None
  low_ok = arr >= 0 if allow_zero else arr > 0
  high_ok = arr <= 1 if allow_one else arr < 1
  if not np.all(low_ok & high_ok):  # also rejects NaN
    bounds = ("[0" if allow_zero else "(0") + ", " + ("1]" if allow_one
                                                      else "1)")
    shown = float(arr) if arr.ndim == 0 else value
    raise ValueError(f"`{name}`{_where(path)} must be in {bounds}, got "
                     f"{shown}.")


def check_nonnegative(value: Any, name: str) -> None:
  """A number ``>= 0`` (a traced value passes)."""
  if is_concrete(value) and not value >= 0:  # also rejects NaN
    raise ValueError(f"`{name}` must be >= 0, got {value!r}.")


def check_sparsity(sparsity: Any, *, allow_none: bool = False,
                   allow_schedule: bool = True) -> None:
  """A sparsity: a float in ``[0, 1)``, an optax schedule, or ``None``."""
  if sparsity is None:
    if not allow_none:
      raise ValueError("`sparsity` is required.")
    return
  if callable(sparsity) and not allow_schedule:
    raise ValueError(
        "`sparsity` must be a float here: drop-and-grow keeps each leaf's "
        "number of nonzeros.")
  check_fraction(sparsity, "sparsity", allow_schedule=allow_schedule)


def check_positive_int(value: Any, name: str) -> int:
  """A Python int ``>= 1`` (a structural value: never traced)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(
        f"`{name}` must be a positive int, got {value!r}; with "
        f"optax.inject_hyperparams list it in `static_args`.")
  if value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value}.")
  return int(value)


def check_step(value: Any, name: str, *, after: int | None = None) -> int:
  """A step number: an int ``>= 0`` (``> after`` when given)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int, got {value!r}.")
  if value < 0:
    raise ValueError(f"`{name}` must be >= 0, got {value}.")
  if after is not None and value <= after:
    raise ValueError(f"`{name}` ({value}) must be greater than `begin_step` "
                     f"({after}).")
  return int(value)


def check_seed(seed: Any) -> None:
  """An int or a PRNG key."""
  if isinstance(seed, bool) or not isinstance(seed,
                                              (int, np.integer, jax.Array)):
    raise ValueError(
        f"`seed` must be an int or a PRNG key, got {type(seed).__name__}.")


def check_granularity(granularity: Any) -> tuple[int, int] | None:
  """``"element"`` (returns ``None``) or a block shape ``(bm, bn)``."""
  message = ("`granularity` must be 'element' or a block shape (bm, bn), got "
             f"{granularity!r}.")
  if isinstance(granularity, str):
    if granularity != "element":
      raise ValueError(message)
    return None
  try:
    bm, bn = (int(b) for b in granularity)
  except (TypeError, ValueError):
    raise ValueError(message) from None
  if bm < 1 or bn < 1:
    raise ValueError(f"`granularity` block sizes must be >= 1, got "
                     f"{granularity!r}.")
  return bm, bn


def check_element_only(granularity: Any, method: str, why: str) -> None:
  """Refuses block granularity for a method that selects single entries."""
  if check_granularity(granularity) is not None:
    raise ValueError(f"`granularity` of {method} must be 'element' ({why}), "
                     f"got {granularity!r}.")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
  """One of ``choices``."""
  if value not in choices:
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"`{name}` must be one of {listed}, got {value!r}.")


def check_axis(ndim: int, axis: Any, name: str = "axis") -> int:
  """``axis`` normalised for an array of rank ``ndim``."""
  if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
    raise ValueError(f"`{name}` must be an int, got {axis!r}.")
  if ndim == 0:
    raise ValueError("x must have at least one dimension, got a scalar.")
  if not -ndim <= axis < ndim:
    raise ValueError(f"`{name}`={axis} is out of range for an array of rank "
                     f"{ndim}.")
  return axis % ndim
