# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Model-level one-shot pruning for Flax NNX and Linen models.

Like the reference implementations of Wanda and SparseGPT, the driver prunes
the linear maps one after another in the order the forward pass calls them;
each is pruned with the inputs it receives on the calibration batches from
the layers before it, already pruned (sequential pruning). NNX models: see
:mod:`sparsejax.oneshot._nnx` (``Linear``, ``LinearGeneral``, ``Einsum``, per
slice of ``nnx.vmap`` stacks, inside ``nnx.scan`` and under ``nnx.jit``).
Linen modules: ``nn.Dense`` calls are recorded eagerly with
``nn.intercept_methods``.
"""

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax import _tree
from sparsejax import masks as _masks
from sparsejax.oneshot import _common
from sparsejax.oneshot import _nnx
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


def _prune_layer(method, w, x, sparsity, nm, *, blocksize, percdamp,
                 per_output):
  if method == "sparsegpt":
    return sparsegpt(w, x, sparsity, blocksize=blocksize, percdamp=percdamp,
                     per_output=per_output)
  if method == "wanda":
    mask = wanda(w, x, sparsity)
  elif nm is not None:
    mask = _masks.n_m(w, nm[0], nm[1], axis=-2)
  else:
    mask = _masks.magnitude(w, sparsity)
  return jnp.where(mask, w, jnp.zeros_like(w)), mask


def _compile_where(where: Any) -> Callable[[str, Any], bool]:
  """A ``(path, module) -> bool`` rule; ``None`` selects every module."""
  return _tree.compile_where(where, default=lambda path, module: True)


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


def _prune_nnx(nnx, model, batches, *, rule, prune, specs):
  targets = _nnx.find_targets(nnx, model, rule, specs)
  kernel_masks, labels = _nnx.prune_sequentially(nnx, model, batches,
                                                 targets, prune)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return OneShotResult(params, _nnx.masks_like(params, kernel_masks), labels)


def _prune_linen(nn, module, variables, batches, *, rule, prune):
  if variables is None:
    raise ValueError("`variables` are required to prune a Linen module.")
  variables = jax.tree.map(lambda x: x, dict(variables))
  if "params" not in variables:
    raise ValueError("`variables` must hold a 'params' collection.")

  refused = (nn.DenseGeneral, nn.Einsum, nn.Conv, nn.ConvTranspose)

  def capture(only):
    store = {}

    def interceptor(next_fun, args, kwargs, context):
      mod = context.module
      if context.method_name == "__call__" and isinstance(
          mod, (nn.Dense,) + refused):
        name = "/".join(str(p) for p in mod.path)
        if only is None and rule(name, mod) and isinstance(mod, refused):
          raise ValueError(
              f"prune_model cannot prune the Linen {type(mod).__name__} "
              f"layer '{name}' (it prunes nn.Dense layers of Linen modules); "
              "exclude it with `where`, or use Flax NNX.")
        if (only is None and rule(name, mod)) or name == only:
          if not _tree.is_concrete(args[0]):
            raise ValueError(
                f"prune_model cannot record the inputs of the Linen layer "
                f"'{name}': it runs inside a JAX transformation (nn.scan, "
                "nn.jit, jax.jit, ...), and Linen layers are pruned only "
                "when called eagerly; use Flax NNX for scanned or jitted "
                "models.")
          store.setdefault(name, []).append(args[0])
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
      for batch in batches:
        module.apply(variables, batch)
    return store

  order = list(capture(None))
  if not order:
    raise ValueError(
        "`where` selects no nn.Dense layer that the module calls on the "
        "calibration batches: nothing to prune.")
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
  return OneShotResult(variables, _nnx.masks_like(variables, kernel_masks),
                       tuple(order))


def prune_model(
    model: Any,
    calibration: Any,
    *,
    method: str,
    sparsity: Any,
    variables: Any = None,
    where: Any = None,
    specs: Any = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    per_output: bool = False,
) -> OneShotResult:
  """Prunes every linear map of a trained Flax model in one shot.

  NNX models: every ``nnx.Linear``, ``nnx.LinearGeneral`` (the q/k/v/out
  projections of ``nnx.MultiHeadAttention`` included) and ``nnx.Einsum``
  layer. Each is pruned on the ``[fan_in, fan_out]`` matrix view of its
  kernel (:meth:`sparsejax.LeafSpec.split`; q/k/v ``[d, heads, head_dim]``
  -> ``[d, heads * head_dim]``, out ``[heads, head_dim, d]`` ->
  ``[heads * head_dim, d]``), with its calibration inputs flattened to
  ``[tokens, fan_in]`` the same way. A layer stacked with ``nnx.vmap`` (run
  by ``nnx.scan`` or a loop) is pruned slice by slice, each layer slice with
  its own inputs and its own budget; models whose ``__call__`` is under
  ``nnx.jit`` work too. Linen modules: ``nn.Dense`` layers called eagerly.

  The layers (slices) are pruned one after another in the order of the
  forward pass, each with its inputs on the calibration batches as produced
  by the layers before it after they were pruned (so later layers compensate
  for the earlier ones, as in the references). Layers that receive exactly
  the same inputs (q, k and v; the gate and up projections) are pruned
  together from one recording. ``method`` chooses the per-layer rule:
  ``"magnitude"`` (the smallest ``|w|`` of the layer, or of every ``m``
  inputs for N:M), ``"wanda"`` (:func:`sparsejax.wanda`: every output unit
  keeps its share) or ``"sparsegpt"`` (:func:`sparsejax.sparsegpt`, which
  also updates the remaining weights). N:M groups run along the flattened
  contraction axes. The model is run ``1 + (number of groups)`` times over
  the calibration batches.

  Nothing is skipped silently: a ``where`` or model that selects no layer, a
  selected layer that is a linear map this function cannot prune (a
  convolution, an expert weight, a ``LinearGeneral`` with ``batch_axis``),
  or a selected layer the calibration batches never reach is a
  ``ValueError``.

  Args:
    model: an ``nnx.Module`` (updated in place) or a Linen ``nn.Module``.
    calibration: one batch of model inputs, or an iterable of batches; each
      is passed as ``model(batch)`` (NNX) or ``model.apply(variables,
      batch)`` (Linen).
    method: ``"magnitude"``, ``"wanda"`` or ``"sparsegpt"``.
    sparsity: a float in ``[0, 1)`` (per layer slice), or an ``(n, m)``
      pair.
    variables: the Linen variables (with a ``'params'`` collection); not
      for NNX.
    where: which layers to prune: ``None`` (all), a regular expression
      searched in the layer's ``/``-joined module path (e.g.
      ``'^(?!head)'``), or a callable ``(path, module) -> bool``.
    specs: NNX only: the model's leaf specs (:func:`sparsejax.leaf_specs`,
      e.g. with ``stack_axes=`` for a stack without axis names); ``None``
      infers them. A kernel whose spec is ``None`` is left dense.
    blocksize: SparseGPT's block size.
    percdamp: SparseGPT's dampening.
    per_output: SparseGPT's unstructured selection per output unit (as
      Wanda) instead of over each block (the reference).

  Returns:
    A :class:`OneShotResult` with the pruned parameters, their masks and
    the pruned layers in order (a slice of a stacked layer as
    ``'path/index'``).

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
                          percdamp=percdamp, per_output=per_output)
    except ValueError as e:
      raise ValueError(f"layer '{name}': {e}") from None

  from flax import nnx  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  if isinstance(model, nnx.Module):
    if variables is not None:
      raise ValueError("`variables` is for Linen modules; an NNX model "
                       "holds its own parameters.")
    return _prune_nnx(nnx, model, batches, rule=rule, prune=prune,
                      specs=specs)
  if isinstance(model, nn.Module):
    if specs is not None:
      raise ValueError("`specs` is for NNX models; Linen nn.Dense kernels "
                       "are their own [in, out] matrices.")
    return _prune_linen(nn, model, variables, batches, rule=rule, prune=prune)
  raise ValueError(
      "`model` must be a Flax NNX or Linen module, got "
      f"{type(model).__name__}.")
