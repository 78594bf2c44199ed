# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Model-level one-shot pruning for Flax NNX and Linen models.

Like the reference implementations of Wanda and SparseGPT, the driver prunes
the dense layers one after another in the order the forward pass calls them;
each layer is pruned with the inputs it receives on the calibration batches
from the layers before it, already pruned (sequential pruning). Inputs are
captured by intercepting the layers' calls (eagerly, outside ``jit``): NNX
``nnx.Linear`` calls are recorded by a temporary wrapper of its
``__call__``, Linen ``nn.Dense`` calls with ``nn.intercept_methods``.
"""

import contextlib
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import _tree
from sparsejax import masks as _masks
from sparsejax.oneshot import _common
from sparsejax.oneshot._sparsegpt import sparsegpt
from sparsejax.oneshot._wanda import wanda

_METHODS = ("magnitude", "wanda", "sparsegpt")


class OneShotResult(NamedTuple):
  """What :func:`prune_model` returns.

  Attributes:
    params: NNX: the model's parameters after pruning, as a plain nested
      dict (``nnx.to_pure_dict``; the model itself is updated in place);
      Linen: the new variables.
    masks: the structure of ``params``: a bool keep-mask for every pruned
      kernel, ``None`` for every other leaf.
    layers: the pruned layers' paths, in the order they were pruned.
  """

  params: Any
  masks: Any
  layers: tuple[str, ...]


def _prune_layer(method, w, x, sparsity, nm, *, blocksize, percdamp):
  if method == "sparsegpt":
    return sparsegpt(w, x, sparsity, blocksize=blocksize, percdamp=percdamp)
  if method == "wanda":
    mask = wanda(w, x, sparsity)
  elif nm is not None:
    mask = _masks.n_m(w, nm[0], nm[1], axis=-2)
  else:
    mask = _masks.magnitude(w, sparsity)
  return jnp.where(mask, w, jnp.zeros_like(w)), mask


def _compile_where(where: Any) -> Callable[[str, Any], bool]:
  if where is None:
    return lambda path, module: True
  if isinstance(where, str):
    try:
      pattern = re.compile(where)
    except re.error as e:
      raise ValueError(f"`where` is not a valid regular expression: {e}")
    return lambda path, module: pattern.search(path) is not None
  if callable(where):
    return lambda path, module: bool(where(path, module))
  raise ValueError(
      "`where` must be None, a regular expression or a callable "
      f"(path, module) -> bool, got {type(where).__name__}.")


def _batches(calibration: Any) -> list[Any]:
  if isinstance(calibration, jax.Array) or hasattr(calibration, "__array__"):
    batches = [calibration]
  elif isinstance(calibration, Iterable):
    batches = list(calibration)
  else:
    raise ValueError(
        "`calibration` must be an array (one batch) or an iterable of "
        f"batches, got {type(calibration).__name__}.")
  if not batches:
    raise ValueError("`calibration` holds no batch.")
  return batches


def _flat_inputs(inputs: list[jax.Array], path: str) -> jax.Array:
  arrays = [jnp.asarray(a) for a in inputs]
  din = arrays[0].shape[-1]
  if any(a.shape[-1] != din for a in arrays):
    raise ValueError(f"layer '{path}' got inputs of different widths.")
  return jnp.concatenate([a.reshape(-1, din) for a in arrays], axis=0)


def _set_path(tree: dict, path: list[str], value: Any) -> dict:
  """A copy of nested dict ``tree`` with ``value`` at ``path``."""
  out = dict(tree)
  if len(path) == 1:
    out[path[0]] = value
  else:
    out[path[0]] = _set_path(tree[path[0]], path[1:], value)
  return out


def _masks_like(params: Any, kernel_masks: dict[str, jax.Array]) -> Any:
  return _tree.map_with_path(
      lambda path, leaf: kernel_masks.get(path), params)


@contextlib.contextmanager
def _record_nnx(nnx, targets: dict[int, str], store: dict[str, list]):
  original = nnx.Linear.__call__

  def recording(self, x, *args, **kwargs):
    name = targets.get(id(self))
    if name is not None:
      store.setdefault(name, []).append(x)
    return original(self, x, *args, **kwargs)

  nnx.Linear.__call__ = recording
  try:
    yield
  finally:
    nnx.Linear.__call__ = original


def _prune_nnx(nnx, model, batches, *, rule, prune):
  modules = {}
  for path, module in nnx.iter_modules(model):
    name = "/".join(str(p) for p in path)
    if isinstance(module, nnx.Linear) and rule(name, module):
      modules[id(module)] = (name, module)

  def capture(targets):
    store = {}
    with _record_nnx(nnx, targets, store):
      for batch in batches:
        model(batch)
    return store

  # The call order decides the pruning order.
  order = list(capture({k: n for k, (n, _) in modules.items()}))
  by_name = {n: m for n, m in modules.values()}
  kernel_masks = {}
  for name in order:
    module = by_name[name]
    inputs = capture({id(module): name})[name]
    kernel = module.kernel.get_value()
    new, mask = prune(kernel, _flat_inputs(inputs, name), name)
    module.kernel.set_value(new.astype(kernel.dtype))
    kernel_masks[f"{name}/kernel" if name else "kernel"] = mask
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return OneShotResult(params, _masks_like(params, kernel_masks), tuple(order))


def _prune_linen(nn, module, variables, batches, *, rule, prune):
  if variables is None:
    raise ValueError("`variables` are required to prune a Linen module.")
  variables = jax.tree.map(lambda x: x, dict(variables))
  if "params" not in variables:
    raise ValueError("`variables` must hold a 'params' collection.")

  def capture(only):
    store = {}

    def interceptor(next_fun, args, kwargs, context):
      mod = context.module
      if isinstance(mod, nn.Dense) and context.method_name == "__call__":
        name = "/".join(str(p) for p in mod.path)
        if (only is None and rule(name, mod)) or name == only:
          store.setdefault(name, []).append(args[0])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
      for batch in batches:
        module.apply(variables, batch)
    return store

  order = list(capture(None))
  kernel_masks = {}
  for name in order:
    inputs = capture(name)[name]
    parts = name.split("/") if name else []
    node = variables["params"]
    for part in parts:
      node = node[part]
    kernel = jnp.asarray(node["kernel"])
    new, mask = prune(kernel, _flat_inputs(inputs, name), name)
    variables = _set_path(variables, ["params", *parts, "kernel"],
                          new.astype(kernel.dtype))
    kernel_masks["/".join(["params", *parts, "kernel"])] = mask
  return OneShotResult(variables, _masks_like(variables, kernel_masks),
                       tuple(order))


def prune_model(
    model: Any,
    calibration: Any,
    *,
    method: str,
    sparsity: Any,
    variables: Any = None,
    where: Any = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> OneShotResult:
  """Prunes every dense layer of a trained Flax model in one shot.

  The layers (``nnx.Linear`` in an NNX model, ``nn.Dense`` in a Linen
  module) are pruned one after another in the order of the forward pass;
  each with its inputs on the calibration batches, as produced by the layers
  before it after they were pruned (so later layers compensate for the
  earlier ones, as in the references). ``method`` chooses the per-layer
  rule: ``"magnitude"`` (the smallest ``|w|`` of the layer, or of every
  ``m`` inputs for N:M), ``"wanda"`` (:func:`sparsejax.wanda`) or
  ``"sparsegpt"`` (:func:`sparsejax.sparsegpt`, which also updates the
  remaining weights). A model with ``nnx.jit``-free ``__call__`` is run
  eagerly.

  Args:
    model: an ``nnx.Module`` (updated in place) or a Linen ``nn.Module``.
    calibration: one batch of model inputs, or an iterable of batches; each
      is passed as ``model(batch)`` (NNX) or ``model.apply(variables,
      batch)`` (Linen).
    method: ``"magnitude"``, ``"wanda"`` or ``"sparsegpt"``.
    sparsity: a float in ``[0, 1)`` (per layer), or an ``(n, m)`` pair.
    variables: the Linen variables (with a ``'params'`` collection); not
      for NNX.
    where: which layers to prune: ``None`` (all), a regular expression
      searched in the layer's ``/``-joined path (e.g. ``'^(?!head)'``), or a
      callable ``(path, module) -> bool``.
    blocksize: SparseGPT's block size.
    percdamp: SparseGPT's dampening.

  Returns:
    A :class:`OneShotResult` with the pruned parameters, their masks and
    the pruned layers in order.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> import sparsejax as sj
    >>> model = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)),
    ...                        jax.nn.relu,
    ...                        nnx.Linear(16, 4, rngs=nnx.Rngs(1)))
    >>> x = jax.random.normal(jax.random.key(0), (32, 8))
    >>> result = sj.prune_model(model, x, method='wanda', sparsity=0.5)
    >>> result.layers
    ('layers/0', 'layers/2')
    >>> int(sj.masks.nnz(model.layers[0].kernel[...]))
    64

  References:
    Sun et al, `A Simple and Effective Pruning Approach for Large Language
    Models <https://arxiv.org/abs/2306.11695>`_, 2024

    Frantar & Alistarh, `SparseGPT: Massive Language Models Can Be
    Accurately Pruned in One-Shot <https://arxiv.org/abs/2301.00774>`_, 2023
  """
  if method not in _METHODS:
    raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
  _, nm = _common.parse_sparsity(sparsity)
  rule = _compile_where(where)
  batches = _batches(calibration)

  def prune(w, x, name):
    try:
      return _prune_layer(method, w, x, sparsity, nm, blocksize=blocksize,
                          percdamp=percdamp)
    except ValueError as e:
      raise ValueError(f"layer '{name}': {e}") from None

  from flax import nnx  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  if isinstance(model, nnx.Module):
    if variables is not None:
      raise ValueError("`variables` is for Linen modules; an NNX model "
                       "holds its own parameters.")
    return _prune_nnx(nnx, model, batches, rule=rule, prune=prune)
  if isinstance(model, nn.Module):
    return _prune_linen(nn, model, variables, batches, rule=rule, prune=prune)
  raise ValueError(
      "`model` must be a Flax NNX or Linen module, got "
      f"{type(model).__name__}.")
