# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Records what chosen NNX layers receive, per layer slice, also when traced.

One-shot pruning and activation calibration need the inputs of individual
layers on calibration data, slice by slice for a layer stacked with
``nnx.vmap`` and run by ``nnx.scan``, and also when the model's ``__call__``
is under ``nnx.jit``. Inside such transforms the layer is a fresh copy
holding one slice, and its inputs are tracers, so neither the module's
identity nor a Python list can collect them. Instead:

* :func:`attach` gives each chosen module a static name and a *slice marker*:
  a variable of the same type and metadata as one of the module's own
  stacked variables, holding each slice's index. Every transform that slices
  the module's variables slices the marker the same way, so inside the call
  the marker holds the index of the slice being run. The new attributes also
  change the module's graph definition, so ``nnx.jit`` traces the model again
  instead of reusing a compilation made without the recording.
* :func:`record`, called from the layer, delivers its arrays to the active
  :class:`Recorder` directly when they are concrete, else through an ordered
  ``jax.debug.callback`` (in program order, inside ``jit`` and ``scan``).

The recorded slice index is the flat index over the stacked axes in
row-major order, the order of :meth:`sparsejax.LeafSpec.split`.
"""

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _tree

NAME_ATTR = "_sj_capture_name"
SLICE_ATTR = "_sj_capture_slice"

Keep = Callable[[str, int, tuple[np.ndarray, ...]], bool]


class Recorder:
  """Collects the arrays delivered by :func:`record`.

  Attributes:
    arrivals: every delivery in arrival order, as ``(name, slice)``.
    arrays: ``{(name, slice): [deliveries]}``, each delivery a tuple of host
      arrays, for the deliveries that ``keep`` accepted.
    errors: messages of deliveries whose slice could not be told; the caller
      raises them after the run (an exception inside a callback would come
      out as a runtime error of the compiled computation).
  """

  def __init__(self, keep: Keep | None = None):
    self.keep = keep
    self.arrivals: list[tuple[str, int]] = []
    self.arrays: dict[tuple[str, int], list[tuple[np.ndarray, ...]]] = {}
    self.errors: list[str] = []

  def add(self, name: str, low: Any, high: Any, *arrays: Any) -> None:
    low, high = int(np.asarray(low)), int(np.asarray(high))
    if low != high:
      self.errors.append(
          f"layer '{name}' ran on several slices of its stacked axes at once "
          f"(slices {low} to {high} in one call, e.g. under nnx.vmap), so "
          "its inputs cannot be told apart per slice")
      return
    arrays = tuple(np.asarray(a) for a in arrays)
    self.arrivals.append((name, low))
    if self.keep is None or self.keep(name, low, arrays):
      self.arrays.setdefault((name, low), []).append(arrays)

  def check(self) -> None:
    if self.errors:
      raise ValueError(self.errors[0] + ".")


_ACTIVE: list[Recorder] = []


@contextlib.contextmanager
def recording(recorder: Recorder):
  """Makes ``recorder`` receive what :func:`record` delivers meanwhile."""
  _ACTIVE.append(recorder)
  try:
    yield recorder
  finally:
    _ACTIVE.pop()


def _deliver(name: str, low: Any, high: Any, *arrays: Any) -> None:
  # Looked up at run time: a compiled model reused across recordings sends
  # to the recorder active now, not the one active when it was traced.
  if _ACTIVE:
    _ACTIVE[-1].add(name, low, high, *arrays)


def record(module: Any, *arrays: Any) -> None:
  """Delivers ``arrays`` as the inputs of ``module``'s current slice."""
  name = getattr(module, NAME_ATTR, None)
  marker = getattr(module, SLICE_ATTR, None)
  if name is None or marker is None:
    return
  index = marker.get_value()
  low, high = jnp.min(index), jnp.max(index)
  values = (low, high, *arrays)
  if all(_tree.is_concrete(v) for v in values):
    _deliver(name, *values)
    return
  callback = functools.partial(_deliver, name)
  try:
    jax.debug.callback(callback, *values, ordered=True)
  except ValueError:
    # Ordered effects cannot be batched (nnx.vmap); order then does not
    # matter to the caller, and `Recorder.add` checks the slice.
    jax.debug.callback(callback, *values)


def attach(module: Any, name: str, reference: Any,
           stack_axes: Sequence[int]) -> None:
  """Gives ``module`` its capture name and a slice marker.

  Args:
    module: an NNX module.
    name: the name deliveries from this module carry.
    reference: one of the module's variables whose ``stack_axes`` are the
      stacked (layer) axes; the marker copies its type and metadata, so that
      transforms slice both alike.
    stack_axes: the stacked axes of ``reference`` (may be empty).
  """
  shape = tuple(reference.get_value().shape)
  stack_axes = tuple(a % len(shape) for a in stack_axes)
  sizes = [shape[a] for a in stack_axes]
  index = np.arange(int(np.prod(sizes, dtype=np.int64)),
                    dtype=np.int32).reshape(sizes)
  index = np.transpose(index, np.argsort(stack_axes))
  index = index.reshape([shape[a] if a in stack_axes else 1
                         for a in range(len(shape))])
  marker = type(reference)(jnp.asarray(index), **reference.get_metadata())
  setattr(module, NAME_ATTR, name)
  setattr(module, SLICE_ATTR, marker)


def detach(module: Any) -> None:
  """Removes what :func:`attach` added."""
  for attr in (NAME_ATTR, SLICE_ATTR):
    if hasattr(module, attr):
      delattr(module, attr)
