# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sequential one-shot pruning of the linear maps of a Flax NNX model.

Every ``nnx.Linear``, ``nnx.LinearGeneral`` (attention projections included)
and ``nnx.Einsum`` whose kernel has a spec is pruned on its ``[fan_in,
fan_out]`` matrix view (:meth:`sparsejax.LeafSpec.split`), one *unit* after
another: a unit is one layer, or one slice of a layer stacked with
``nnx.vmap`` (and run by ``nnx.scan`` or a loop). Inputs are recorded by
:mod:`sparsejax._capture`, which sees them per slice also inside
``nnx.scan`` and under ``nnx.jit``.
"""

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _capture
from sparsejax import _specs
from sparsejax import _tree


@dataclasses.dataclass
class Target:
  """One prunable layer: its module, kernel spec and input layout."""

  name: str
  module: Any
  spec: _specs.LeafSpec
  flatten: Callable[[np.ndarray], np.ndarray]
  slices: int

  def label(self, index: int) -> str:
    if not self.spec.stack_axes:
      return self.name
    return f"{self.name}/{index}" if self.name else str(index)


def _join(path) -> str:
  return "/".join(str(p) for p in path)


def _einsum_layout(module: Any, name: str):
  """``(base in axes, base out axes, input positions)`` of an nnx.Einsum."""
  text = module.einsum_str.replace(" ", "")
  try:
    lhs, out = text.split("->")
    x, kernel = lhs.split(",")
  except ValueError:
    raise ValueError(
        f"prune_model cannot read layer '{name}''s einsum {text!r}.") from None
  if "..." in kernel or len(set(kernel)) != len(kernel):
    raise ValueError(
        f"prune_model cannot prune layer '{name}': its einsum {text!r} has an "
        "ellipsis or a repeated letter in the kernel.")
  batch = [c for c in kernel if c in x and c in out]
  other = [c for c in kernel if c not in x and c not in out]
  if batch or other:
    raise ValueError(
        f"prune_model cannot prune layer '{name}': its einsum {text!r} has "
        f"kernel axes {batch + other} that are neither only contracted nor "
        "only output (batch or summed axes); exclude it with `where`.")
  ins = tuple(i for i, c in enumerate(kernel) if c in x)
  outs = tuple(i for i, c in enumerate(kernel) if c not in x)
  head, _, tail = x.partition("...")
  ellipsis = "..." in x

  def positions(ndim):
    where = []
    for c in (kernel[i] for i in ins):
      if c in head:
        where.append(head.index(c))
      elif ellipsis and c in tail:
        where.append(ndim - len(tail) + tail.index(c))
      else:
        raise ValueError(f"letter {c!r} of einsum {text!r} is not in x.")
    return where

  return ins, outs, positions


def _layout(nnx, module: Any, name: str):
  """``(base rank, in axes, out axes, flatten)`` of a supported module."""
  if isinstance(module, nnx.Linear):
    return 2, (0,), (1,), lambda x: x.reshape(-1, x.shape[-1])
  if isinstance(module, nnx.LinearGeneral):
    if module.batch_axis:
      raise ValueError(
          f"prune_model cannot prune layer '{name}': an nnx.LinearGeneral "
          "with `batch_axis` holds a separate map per batch index; exclude "
          "it with `where`.")
    n_in, n_out = len(module.in_features), len(module.out_features)
    axis = tuple(module.axis) if isinstance(module.axis, (tuple, list)) else (
        module.axis,)

    def flatten(x):
      # LinearGeneral contracts x's `axis`, sorted, with the kernel's
      # leading axes in order.
      moved = sorted(a % x.ndim for a in axis)
      y = np.moveaxis(x, moved, range(x.ndim - len(moved), x.ndim))
      return y.reshape(-1, int(np.prod(y.shape[x.ndim - len(moved):])))

    return (n_in + n_out, tuple(range(n_in)),
            tuple(range(n_in, n_in + n_out)), flatten)
  if isinstance(module, nnx.Einsum):
    ins, outs, positions = _einsum_layout(module, name)

    def flatten(x):
      where = positions(x.ndim)
      y = np.moveaxis(x, where, range(x.ndim - len(where), x.ndim))
      return y.reshape(-1, int(np.prod(y.shape[x.ndim - len(where):])))

    return len(ins) + len(outs), ins, outs, flatten
  return None


def find_targets(nnx, model: Any, rule, specs: Any) -> list[Target]:
  """The prunable layers of ``model`` that ``rule`` selects.

  Raises a ``ValueError`` for a selected layer with a sparse kernel that
  cannot be pruned (a convolution, a MoE expert weight, ...), and when no
  layer is selected: nothing is skipped silently.
  """
  by_path = _specs.specs_by_path(model if specs is None else specs)
  owners: dict[str, list[str]] = {}
  for path, spec in by_path.items():
    if spec is not None:
      parent, _, leaf = path.rpartition("/")
      owners.setdefault(parent, []).append(leaf)
  supported = (nnx.Linear, nnx.LinearGeneral, nnx.Einsum)
  targets, refused = [], []
  for path, module in nnx.iter_modules(model):
    name = _join(path)
    if not rule(name, module):
      continue
    if not isinstance(module, supported):
      if owners.get(name):
        refused.append(f"'{name}' ({type(module).__name__}: "
                       f"{', '.join(owners[name])})")
      continue
    kpath = f"{name}/kernel" if name else "kernel"
    spec = by_path.get(kpath)
    if spec is None:
      continue  # the specs keep this kernel dense
    base_rank, ins, outs, flatten = _layout(nnx, module, name)
    shape = tuple(module.kernel.get_value().shape)
    spec = spec.resolve(len(shape), kpath)
    rest = [a for a in range(len(shape)) if a not in spec.stack_axes]
    to_base = {a: i for i, a in enumerate(rest)}
    if (len(rest) != base_rank
        or tuple(to_base[a] for a in spec.in_axes) != ins
        or tuple(to_base[a] for a in spec.out_axes) != outs
        or spec.window_axes):
      raise ValueError(
          f"the spec of '{kpath}' ({spec}) does not match how its "
          f"{type(module).__name__} contracts its input (kernel axes {ins} "
          f"in, {outs} out, after the stacked axes); prune_model needs the "
          "layer's own axes.")
    targets.append(Target(name, module, spec, flatten,
                          spec.num_slices(shape)))
  if refused:
    raise ValueError(
        "prune_model cannot prune the selected layers "
        f"{', '.join(refused)}: it prunes nnx.Linear, nnx.LinearGeneral and "
        "nnx.Einsum layers; exclude the others with `where`.")
  if not targets:
    raise ValueError(
        "`where` selects no nnx.Linear, nnx.LinearGeneral or nnx.Einsum "
        "layer with a sparse kernel in the model: nothing to prune.")
  return targets


@contextlib.contextmanager
def _patched(nnx):
  classes = (nnx.Linear, nnx.LinearGeneral, nnx.Einsum)
  originals = {cls: cls.__dict__["__call__"] for cls in classes}

  def wrap(original):
    def recording(self, x, *args, **kwargs):
      text = args[0] if args else kwargs.get("einsum_str")
      if (isinstance(self, nnx.Einsum) and text is not None
          and text.replace(" ", "") != self.einsum_str.replace(" ", "")
          and hasattr(self, _capture.NAME_ATTR)):
        raise ValueError(
            "prune_model cannot prune layer "
            f"'{getattr(self, _capture.NAME_ATTR)}': it is called with an "
            f"einsum string ({text!r}) other than its own, so its kernel "
            "axes are not known beforehand; exclude it with `where`.")
      _capture.record(self, x)
      return original(self, x, *args, **kwargs)
    recording.__wrapped__ = original
    return recording

  for cls, original in originals.items():
    cls.__call__ = wrap(original)
  try:
    yield
  finally:
    for cls, original in originals.items():
      cls.__call__ = original


class _Group:
  """Keeps the inputs of a unit and of the units receiving the same arrays.

  Units that receive exactly the same input (q, k and v of one attention
  layer; gate and up of a gated FFN) cannot change each other's inputs, so
  they are pruned together from one recording, as in the references.
  """

  def __init__(self, first: tuple[str, int], candidates: set):
    self.first = first
    self.candidates = candidates
    self.batch = 0
    self.reference: dict[int, np.ndarray] = {}
    self.kept: dict[tuple[str, int], dict[int, int]] = {}

  def keep(self, name: str, index: int, arrays) -> bool:
    key = (name, index)
    if key == self.first:
      self.reference.setdefault(self.batch, arrays[0])
    elif key in self.candidates:
      ref = self.reference.get(self.batch)
      if ref is None or ref.shape != arrays[0].shape or not np.array_equal(
          ref, arrays[0]):
        return False
    else:
      return False
    counts = self.kept.setdefault(key, {})
    counts[self.batch] = counts.get(self.batch, 0) + 1
    return True

  def members(self, batches: int) -> list[tuple[str, int]]:
    want = self.kept.get(self.first, {})
    return [self.first] + [
        k for k in self.kept if k != self.first
        and all(self.kept[k].get(b) == want.get(b) for b in range(batches))]


def prune_sequentially(nnx, model: Any, batches: list, targets: list[Target],
                       prune) -> tuple[dict[str, Any], tuple[str, ...]]:
  """Prunes every unit of ``targets`` in forward order.

  Returns ``({kernel path: keep-mask of the whole kernel}, unit labels in
  pruning order)``.
  """
  by_name = {t.name: t for t in targets}

  def run(keep, on_batch=None):
    recorder = _capture.Recorder(keep)
    with _patched(nnx), _capture.recording(recorder):
      for b, batch in enumerate(batches):
        if on_batch is not None:
          on_batch(b)
        model(batch)
        # Callbacks of a compiled model may still be running.
        jax.effects_barrier()
    recorder.check()
    return recorder

  for t in targets:
    _capture.attach(t.module, t.name, t.module.kernel, t.spec.stack_axes)
  try:
    order = list(dict.fromkeys(run(lambda *_: False).arrivals))
    missing = [t.label(i) for t in targets for i in range(t.slices)
               if (t.name, i) not in order]
    if missing:
      raise ValueError(
          f"layers {missing} were not called by the model on the calibration "
          "batches, so they have no inputs to be pruned with; exclude them "
          "with `where`.")
    slice_masks: dict[str, dict[int, Any]] = {t.name: {} for t in targets}
    done, labels = set(), []
    for unit in order:
      if unit in done:
        continue
      group = _Group(unit, {u for u in order if u not in done} - {unit})
      recorder = run(group.keep,
                     on_batch=lambda b, group=group: setattr(group, "batch", b))
      chosen = set(group.members(len(batches)))
      members = [u for u in order if u in chosen]
      if unit not in recorder.arrays:
        raise ValueError(
            f"layer '{by_name[unit[0]].label(unit[1])}' was called on the "
            "first run over the calibration batches but not on a later one; "
            "prune_model needs a model that calls the same layers on every "
            "run.")
      inputs = [a[0] for a in recorder.arrays[unit]]
      for name, index in members:
        target = by_name[name]
        label = target.label(index)
        x = np.concatenate([target.flatten(a) for a in inputs], axis=0)
        slice_masks[name][index] = _prune_unit(target, index, x, prune, label)
        done.add((name, index))
        labels.append(label)
  finally:
    for t in targets:
      _capture.detach(t.module)
  masks = {}
  for t in targets:
    shape = tuple(t.module.kernel.get_value().shape)
    parts = [slice_masks[t.name][i] for i in range(t.slices)]
    view = tuple(parts) if t.spec.stack_axes else parts[0]
    kpath = f"{t.name}/kernel" if t.name else "kernel"
    masks[kpath] = t.spec.merge(view, shape)
  return masks, tuple(labels)


def _prune_unit(target: Target, index: int, x: np.ndarray, prune,
                label: str) -> Any:
  kernel = target.module.kernel.get_value()
  view = target.spec.split(kernel)
  stacked = bool(target.spec.stack_axes)
  w = view[index] if stacked else view
  if x.shape[-1] != w.shape[0]:
    raise ValueError(
        f"layer '{label}': its calibration inputs flatten to "
        f"[tokens, {x.shape[-1]}] but its kernel's matrix view is "
        f"{list(w.shape)}.")
  new, mask = prune(w, jnp.asarray(x), label)
  new = new.astype(kernel.dtype)
  if stacked:
    view = tuple(new if i == index else v for i, v in enumerate(view))
  else:
    view = new
  target.module.kernel.set_value(target.spec.merge(view, kernel.shape))
  return mask


def masks_like(params: Any, kernel_masks: dict[str, Any]) -> Any:
  return _tree.map_with_path(lambda path, leaf: kernel_masks.get(path),
                             params)
