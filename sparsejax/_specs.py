# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Leaf specs: what each parameter is, and the matrix view every method uses.

A sparsity method must know, for each parameter, whether it is a linear map at
all and which of its axes are contraction (input) axes, output axes and
stacked axes (the layer axis of an ``nnx.scan`` stack, the expert axis of MoE
weights). :class:`LeafSpec` says so for one leaf; :func:`leaf_specs` infers a
tree of them from an NNX model (its module graph and variable metadata) or
from a bare pytree (its paths and shapes).

Every part of sparsejax consumes specs through one idea, the *view*: each
sparse leaf is shown to budgets, selections and drop-and-grow rules as

* an array ``[*window, fan_in, fan_out]`` (``window`` only for convolutions,
  ``fan_in`` the product of the other contraction axes, ``fan_out`` the
  product of the output axes), or
* for a leaf with stacked axes, a tuple of such arrays, one per slice (layer
  or expert), each with its own budget and its own selection.

A two-dimensional ``[in, out]`` kernel is its own view, so MLP code sees no
difference at all. Because a stacked leaf becomes separate slices, every
per-leaf rule (exact top-k, ERK, N:M along the contraction axis, blocks of the
matrix, SRigL's fan-in) is automatically per layer, and the budgets of a
stacked model are exactly those of its unstacked twin.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _rules
from sparsejax import _tree

__all__ = ("LeafSpec", "leaf_specs", "STACK_AXIS_NAMES")

# Logical axis names that mark a stacked axis (Flax's `nnx.PARTITION_NAME`
# given to `nnx.vmap`, MaxText's layer and expert axes).
STACK_AXIS_NAMES = frozenset({
    "layers", "layer", "stack", "stage", "stages", "blocks", "exp", "expert",
    "experts", "num_experts"})

# Path components that name an attention projection whose kernel is
# [embed, heads, head_dim] (in bare trees, where no module says so).
_QKV_NAMES = frozenset({"query", "key", "value", "q", "k", "v", "q_proj",
                        "k_proj", "v_proj", "wq", "wk", "wv"})

_ATTENTION_OUT_NAMES = frozenset({"out", "o_proj", "wo", "out_proj"})


def _axes(value: Any, name: str) -> tuple[int, ...]:
  if isinstance(value, (int, np.integer)):
    return (int(value),)
  try:
    return tuple(int(a) for a in value)
  except TypeError:
    raise ValueError(f"`{name}` must be an int or a sequence of ints, got "
                     f"{value!r}.") from None


@dataclasses.dataclass(frozen=True)
class LeafSpec:
  """Which axes of a parameter are contraction, output and stacked axes.

  Attributes:
    in_axes: the contraction (input) axes, in the order they are flattened
      into ``fan_in`` (row-major: the last one is innermost).
    out_axes: the output axes, flattened into ``fan_out``.
    stack_axes: axes along which the leaf holds independent layers (an
      ``nnx.scan`` stack, MoE experts): every slice along them is its own
      layer with its own budget and selection.
    window_axes: the contraction axes that are convolution window axes (a
      subset of ``in_axes``); they stay separate in the view, so that ERK
      scores a convolution as RigL does (``(h + w + c_in + c_out) / (h w
      c_in c_out)``) and N:M groups and blocks run along ``c_in``.

  Negative axes count from the end; :meth:`resolve` makes them non-negative
  for a given rank.

  Examples:
    >>> import sparsejax as sj
    >>> q = sj.LeafSpec(in_axes=(0,), out_axes=(1, 2))   # [d, heads, hd]
    >>> q.view_shape((64, 4, 16))
    (64, 64)
    >>> stacked = sj.LeafSpec(in_axes=(1,), out_axes=(2,), stack_axes=(0,))
    >>> stacked.num_slices((3, 8, 32)), stacked.view_shape((3, 8, 32))
    (3, (8, 32))
  """

  in_axes: tuple[int, ...]
  out_axes: tuple[int, ...]
  stack_axes: tuple[int, ...] = ()
  window_axes: tuple[int, ...] = ()

  def __post_init__(self):
    for name in ("in_axes", "out_axes", "stack_axes", "window_axes"):
      object.__setattr__(self, name, _axes(getattr(self, name), name))
    if not set(self.window_axes) <= set(self.in_axes):
      raise ValueError(
          f"`window_axes` {self.window_axes} must be among `in_axes` "
          f"{self.in_axes}.")

  def resolve(self, ndim: int, path: str = "") -> "LeafSpec":
    """This spec with non-negative axes, checked against a rank."""
    where = f" of leaf '{path}'" if path else ""

    def norm(axes):
      out = []
      for a in axes:
        if not -ndim <= a < ndim:
          raise ValueError(
              f"spec {self} names axis {a}, out of range for the rank {ndim}"
              f"{where}.")
        out.append(a % ndim)
      return tuple(out)

    spec = LeafSpec(norm(self.in_axes), norm(self.out_axes),
                    norm(self.stack_axes), norm(self.window_axes))
    every = spec.stack_axes + spec.in_axes + spec.out_axes
    if sorted(every) != list(range(ndim)) or not spec.out_axes:
      raise ValueError(
          f"spec {self} must name every axis of the rank-{ndim} leaf{where} "
          "exactly once as a stack, input or output axis, with at least one "
          "output axis.")
    return spec

  def _order(self) -> tuple[int, ...]:
    rest = tuple(a for a in self.in_axes if a not in self.window_axes)
    return self.stack_axes + self.window_axes + rest + self.out_axes

  def num_slices(self, shape) -> int:
    """The number of independent layers (1 without stacked axes)."""
    s = self.resolve(len(shape))
    return int(np.prod([shape[a] for a in s.stack_axes], dtype=np.int64))

  def view_shape(self, shape) -> tuple[int, ...]:
    """The shape of one slice's view: ``(*window, fan_in, fan_out)``."""
    s = self.resolve(len(shape))
    rest = [a for a in s.in_axes if a not in s.window_axes]
    return (tuple(shape[a] for a in s.window_axes)
            + (int(np.prod([shape[a] for a in rest], dtype=np.int64)),
               int(np.prod([shape[a] for a in s.out_axes], dtype=np.int64))))

  def fan_in(self, shape) -> int:
    """The number of contraction entries per output unit of one slice."""
    return int(np.prod(self.view_shape(shape)[:-1], dtype=np.int64))

  def fan_out(self, shape) -> int:
    """The number of output units of one slice."""
    return self.view_shape(shape)[-1]

  def is_identity(self, ndim: int) -> bool:
    """True when a leaf of this rank is its own view (no copy is made)."""
    s = self.resolve(ndim)
    return (not s.stack_axes and s._order() == tuple(range(ndim))
            and len(s.out_axes) == 1
            and len(s.in_axes) - len(s.window_axes) <= 1)

  def split(self, x: jax.Array) -> Any:
    """The view of ``x``: one array, or a tuple of one array per slice."""
    s = self.resolve(x.ndim)
    if s.is_identity(x.ndim):
      return x
    order = s._order()
    y = x if order == tuple(range(x.ndim)) else jnp.transpose(x, order)
    view = self.view_shape(x.shape)
    if not s.stack_axes:
      return y.reshape(view)
    y = y.reshape((self.num_slices(x.shape),) + view)
    return tuple(y[i] for i in range(y.shape[0]))

  def merge(self, view: Any, shape) -> jax.Array:
    """The inverse of :meth:`split` for a leaf of ``shape``."""
    s = self.resolve(len(shape))
    if s.is_identity(len(shape)):
      return view
    order = s._order()
    moved = tuple(shape[a] for a in order)
    y = jnp.stack(view) if s.stack_axes else view
    y = y.reshape(moved)
    if order == tuple(range(len(shape))):
      return y
    return jnp.transpose(y, np.argsort(order))


def plain_spec(ndim: int) -> LeafSpec:
  """The bare-pytree rule: last axis output, the others input.

  For ``ndim > 2`` the leading axes are window axes, so a convolution kernel
  ``[*window, c_in, c_out]`` is scored as RigL does and a plain MLP sees its
  leaves unchanged.
  """
  if ndim == 0:
    raise ValueError("a scalar leaf has no matrix view.")
  return LeafSpec(in_axes=tuple(range(ndim - 1)), out_axes=(ndim - 1,),
                  window_axes=tuple(range(max(ndim - 2, 0))))


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


def _metadata(leaf: Any) -> dict:
  get = getattr(leaf, "get_metadata", None)
  if _tree.is_variable(leaf) and callable(get):
    try:
      return dict(get())
    except TypeError:
      return {}
  return {}


def _logical_names(leaf: Any, ndim: int) -> tuple[Any, ...] | None:
  meta = _metadata(leaf)
  for key in ("out_sharding", "sharding_names", "sharding"):
    names = meta.get(key)
    if names is not None:
      try:
        names = tuple(names)
      except TypeError:
        continue
      if len(names) == ndim:
        return names
  return None


def _named_stack_axes(leaf: Any, ndim: int) -> tuple[int, ...]:
  names = _logical_names(leaf, ndim)
  if names is None:
    return ()
  return tuple(i for i, n in enumerate(names)
               if isinstance(n, str) and n in STACK_AXIS_NAMES)


def _shape(leaf: Any) -> tuple[int, ...]:
  if _tree.is_variable(leaf):
    leaf = leaf.get_value()
  return tuple(np.shape(leaf))


def _is_float(leaf: Any) -> bool:
  if _tree.is_variable(leaf):
    leaf = leaf.get_value()
  return leaf is not None and jnp.issubdtype(jnp.result_type(leaf),
                                             jnp.floating)


def _with_stack(stack: tuple[int, ...], in_count: int, ndim: int,
                window: int = 0) -> LeafSpec:
  """Stack axes first as given; of the rest, ``in_count`` inputs, then out."""
  rest = [a for a in range(ndim) if a not in stack]
  ins, outs = tuple(rest[:in_count]), tuple(rest[in_count:])
  return LeafSpec(in_axes=ins, out_axes=outs, stack_axes=stack,
                  window_axes=ins[:window])


def _bare_axes(path: str, leaf: Any, ndim: int,
               stack: tuple[int, ...] | None = None) -> LeafSpec:
  """Axes of a leaf from its path, metadata and rank (no module known)."""
  if stack is None:
    stack = _named_stack_axes(leaf, ndim)
  parts = path.split("/")
  if not stack and ndim == 3 and parts[-1] in _EXPERT_NAMES:
    stack = (0,)  # sparsejax.nn.MoE: [experts, in, out]
  rest = ndim - len(stack)
  if rest < 1:
    raise ValueError(f"leaf '{path}' has only stacked axes.")
  parent = parts[-2] if len(parts) >= 2 else ""
  if rest == 3 and parent in _QKV_NAMES:
    return _with_stack(stack, 1, ndim)
  if rest == 3 and parent in _ATTENTION_OUT_NAMES:
    return _with_stack(stack, 2, ndim)
  return _with_stack(stack, rest - 1, ndim, window=max(rest - 2, 0))


_EXPERT_NAMES = frozenset({"w_in", "w_out"})
AMBIGUOUS = ("no module or metadata says which of its axes are stacked "
             "layers or convolution window axes")


def _ambiguous(path: str, ndim: int, stack: tuple[int, ...]) -> bool:
  """A Flax kernel of 3+ non-stacked axes that is no convolution or
  attention projection by name: an ``nnx.scan`` stack without metadata
  looks just like a convolution kernel."""
  parts = path.split("/")
  rest = ndim - len(stack)
  if parts[-1] != "kernel" or rest < 3:
    return False
  if any("conv" in p.lower() for p in parts[:-1]):
    return False
  parent = parts[-2] if len(parts) >= 2 else ""
  return not (rest == 3 and parent in _QKV_NAMES | _ATTENTION_OUT_NAMES)


# Leaf names that are never linear-map kernels in Flax (embeddings, norm
# parameters and statistics, biases) or that a sparse model keeps dense (MoE
# routers): a bare tree keeps them dense by default, also when stacked.
_DENSE_NAMES = frozenset({"embedding", "scale", "bias", "mean", "var",
                          "router_kernel", "noise_kernel", "b_in", "b_out"})


def _shared_stack(pairs) -> tuple[str, tuple[int, ...]] | None:
  """The subtree stacked by ``nnx.vmap``, from the leaves that say so.

  ``nnx.vmap(..., transform_metadata={nnx.PARTITION_NAME: 'layers'})``
  names the stacked axis only in variables that carry logical names already
  (``nnx.with_partitioning``); its other variables (attention kernels built
  without names, norm scales) are stacked all the same. Returns the common
  path prefix of the named leaves and their stacked axes, or ``None``.
  """
  named = [(p.split("/"), _named_stack_axes(x, len(_shape(x))))
           for p, x in pairs if x is not None and _shape(x)]
  named = [(parts, st) for parts, st in named if st]
  if not named or len({st for _, st in named}) != 1:
    return None
  prefix = named[0][0][:-1]
  for parts, _ in named[1:]:
    k = 0
    while k < min(len(prefix), len(parts) - 1) and prefix[k] == parts[k]:
      k += 1
    prefix = prefix[:k]
  if not prefix:
    return None
  return "/".join(prefix) + "/", named[0][1]


def _bare_specs(params: Any, strict: bool = True,
                ) -> list[tuple[str, LeafSpec | None, LeafSpec]]:
  """``(path, default spec or None, axes)`` for every leaf of a pytree.

  ``strict``: a non-floating leaf that the default rule would select is an
  error (else it is left dense, for a caller that selects by its own rule).
  """
  pairs = _tree.leaves_with_paths_variables(params)
  shared = _shared_stack(pairs)
  out = []
  for path, leaf in pairs:
    ndim = len(_shape(leaf)) if leaf is not None else 0
    if leaf is None or ndim == 0:
      out.append((path, None, None))
      continue
    stack = _named_stack_axes(leaf, ndim)
    if not stack and shared is not None and path.startswith(shared[0]):
      stack = tuple(a for a in shared[1] if a < ndim - 1)
    axes = (_bare_axes(path, leaf, ndim, stack) if ndim >= 2 else
            LeafSpec((), (0,)))
    stacked = len(axes.stack_axes)
    matrix = ndim - stacked >= 2
    chosen = matrix and path.split("/")[-1] not in _DENSE_NAMES
    if chosen and not _is_float(leaf) and strict:
      value = leaf.get_value() if _tree.is_variable(leaf) else leaf
      raise ValueError(
          f"leaf '{path}' of dtype {jnp.result_type(value)} is selected for "
          "sparsity by the default rule (two or more axes); only "
          "floating-point leaves can be sparse: exclude it with `where=` or "
          "`specs=`.")
    chosen = chosen and _is_float(leaf)
    if ndim >= 2 and _ambiguous(path, ndim, axes.stack_axes):
      out.append((path, axes if chosen else None, None))
    else:
      out.append((path, axes if chosen else None, axes))
  return out


def _module_axes(module: Any, name: str, ndim: int, leaf: Any,
                 path: str) -> tuple[LeafSpec | None, LeafSpec | None]:
  """``(default spec or None, axes or None)`` of a param from its module.

  ``None`` axes means the module type is not one this function knows.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from sparsejax import nn as sj_nn  # pylint: disable=import-outside-toplevel

  def stacked(base_ndim: int) -> tuple[int, ...]:
    extra = ndim - base_ndim
    if extra < 0:
      raise ValueError(
          f"leaf '{path}' has rank {ndim}, below the rank {base_ndim} its "
          f"module {type(module).__name__} gives it.")
    named = _named_stack_axes(leaf, ndim)
    if len(named) == extra:
      return named
    if named:
      raise ValueError(
          f"leaf '{path}': its logical axis names mark {named} as stacked "
          f"but {extra} axes are stacked by rank; pass `stack_axes=`.")
    return tuple(range(extra))  # nnx.vmap stacks along axis 0 by default

  def linear(in_count: int, base_ndim: int, window: int = 0):
    st = stacked(base_ndim)
    return _with_stack(st, in_count, ndim, window)

  norms = tuple(getattr(nnx, n) for n in (
      "LayerNorm", "RMSNorm", "BatchNorm", "GroupNorm", "InstanceNorm")
                if hasattr(nnx, n))
  if isinstance(module, norms):
    return None, LeafSpec((), (ndim - 1,), tuple(range(ndim - 1)))
  if name == "bias":
    return None, None
  if isinstance(module, nnx.Embed):
    return None, linear(1, 2)
  if isinstance(module, nnx.Linear) and name == "kernel":
    return linear(1, 2), linear(1, 2)
  if isinstance(module, nnx.LinearGeneral) and name == "kernel":
    batch = len(getattr(module, "batch_axis", {}) or {})
    n_in = len(module.in_features)
    n_out = len(module.out_features)
    st = stacked(batch + n_in + n_out)
    # The batch axes of LinearGeneral are independent maps: stacked too.
    st = st + tuple(range(len(st), len(st) + batch))
    spec = _with_stack(st, n_in, ndim)
    return spec, spec
  if isinstance(module, nnx.Conv) and name == "kernel":
    window = len(module.kernel_size)
    spec = linear(window + 1, window + 2, window)
    return spec, spec
  if isinstance(module, nnx.Einsum) and name == "kernel":
    spec = _einsum_axes(module.einsum_str, ndim, path)
    return spec, spec
  if isinstance(module, sj_nn.MoE) and name in ("w_in", "w_out"):
    spec = linear(1, 2)  # the expert axis is the (first) stacked axis
    return spec, spec
  if isinstance(module, sj_nn.MoE):
    return None, linear(1, 2) if ndim >= 2 else None
  if isinstance(module, sj_nn.BlockSparseLinear):
    return None, LeafSpec((), (ndim - 1,), tuple(range(ndim - 1)))
  return None, None


def _einsum_axes(einsum_str: str, ndim: int, path: str) -> LeafSpec:
  """Kernel axes of ``nnx.Einsum``: contracted, output, and batch (stacked)."""
  try:
    lhs, out = einsum_str.replace(" ", "").split("->")
    x, kernel = lhs.split(",")
  except ValueError:
    raise ValueError(
        f"cannot read the kernel axes of leaf '{path}' from einsum "
        f"{einsum_str!r}; pass its spec in `overrides=`.") from None
  kernel = kernel.replace("...", "")
  if len(kernel) != ndim:
    raise ValueError(
        f"cannot read the kernel axes of leaf '{path}' (rank {ndim}) from "
        f"einsum {einsum_str!r}; pass its spec in `overrides=`.")
  ins = tuple(i for i, c in enumerate(kernel) if c in x and c not in out)
  outs = tuple(i for i, c in enumerate(kernel) if c in out and c not in x)
  stack = tuple(i for i, c in enumerate(kernel) if c in out and c in x)
  if len(ins) + len(outs) + len(stack) != ndim or not ins or not outs:
    raise ValueError(
        f"cannot read the kernel axes of leaf '{path}' from einsum "
        f"{einsum_str!r}; pass its spec in `overrides=`.")
  return LeafSpec(in_axes=ins, out_axes=outs, stack_axes=stack)


def _nnx_specs(model: Any):
  """``(path, spec, axes, unknown)`` per param of an NNX model.

  ``unknown`` names the module type of a matrix-shaped param whose module
  this file does not know (``None`` otherwise).
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  modules = {}
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      modules["/".join(str(p) for p in path)] = node
  out = []
  for path, leaf in _tree.leaves_with_paths_variables(
      nnx.state(model, nnx.Param)):
    ndim = len(_shape(leaf))
    parent, _, name = path.rpartition("/")
    module = modules.get(parent)
    spec, axes = (None, None) if module is None else _module_axes(
        module, name, ndim, leaf, path)
    unknown = None
    if axes is None:
      if ndim >= 2 and _is_float(leaf) and name != "bias":
        unknown = type(module).__name__
        axes = _bare_axes(path, leaf, ndim)
      elif ndim >= 1:
        axes = LeafSpec((), (ndim - 1,), tuple(range(ndim - 1)))
    out.append((path, spec, axes, unknown))
  return out


def leaf_specs(
    model_or_params: Any,
    *,
    stack_axes: Mapping[str, Any] | None = None,
    overrides: Mapping[str, LeafSpec | None] | None = None,
) -> Any:
  """Infers, for every parameter, ``None`` (dense) or its :class:`LeafSpec`.

  Inference order: the NNX module graph (``Linear``, ``LinearGeneral``
  including attention projections, ``Conv``, ``Einsum``, ``Embed``, norms,
  biases, :class:`sparsejax.nn.MoE` experts), then Flax variable metadata
  (logical axis names such as ``layers`` written by ``nnx.vmap(...,
  transform_metadata={nnx.PARTITION_NAME: 'layers'})`` or
  ``nnx.with_partitioning``), then paths and shapes, then the explicit
  ``stack_axes`` and ``overrides``.

  Default selection: on a Flax model (or a tree with Flax names), linear-map
  kernels only; embeddings, biases, norm parameters and MoE routers are dense.
  On a plain pytree without Flax names, floating leaves with at least two
  non-stacked axes, last axis output and the others input.

  Args:
    model_or_params: a Flax NNX module, or a pytree of params (arrays, or NNX
      variables whose metadata is read).
    stack_axes: ``{path regex: axis or axes}``: the stacked axes of matching
      leaves, for a model without metadata (``{r'^layers/': 0}``).
    overrides: ``{path regex: LeafSpec or None}``, applied last (first match
      wins): the spec of matching leaves, or ``None`` to keep them dense.

  Returns:
    A nested dict keyed by path components, with the leaves of the model's
    ``nnx.Param`` state (or of the pytree): a :class:`LeafSpec` or ``None``.

  Raises:
    ValueError: for a parameter of two or more axes in a module this function
      does not know (say its spec in ``overrides``), a stack axis that does
      not fit a leaf, or a pattern that matches no leaf.

  Examples:
    >>> import sparsejax as sj
    >>> from flax import nnx
    >>> attn = nnx.MultiHeadAttention(num_heads=2, in_features=8,
    ...                               decode=False, rngs=nnx.Rngs(0))
    >>> specs = sj.leaf_specs(attn)
    >>> specs['query']['kernel']
    LeafSpec(in_axes=(0,), out_axes=(1, 2), stack_axes=(), window_axes=())
    >>> specs['out']['kernel'].view_shape((2, 4, 8)), specs['query']['bias']
    ((8, 8), None)

  References:
    Evci et al, `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, 2020 (ERK on the ``fan_in x
    fan_out`` view)
  """
  entries = _infer(model_or_params)
  from_model = is_nnx_module(model_or_params)
  stack_rules = _rules.compile_patterns(stack_axes, "stack_axes")
  override_rules = _rules.compile_patterns(overrides, "overrides")
  used = set()
  result = []
  for path, spec, axes, unknown, shape, is_float in entries:
    for i, (pattern, value) in enumerate(stack_rules):
      if pattern.search(path) and shape and len(shape) >= 1:
        used.add(("stack_axes", i))
        st = tuple(a % len(shape) for a in _axes(value, "stack_axes"))
        if any(not 0 <= a < len(shape) for a in _axes(value, "stack_axes")
               if a >= 0):
          raise ValueError(f"`stack_axes` {value!r} does not fit leaf "
                           f"'{path}' with shape {shape}.")
        rest = len(shape) - len(st)
        if rest < 1:
          raise ValueError(f"`stack_axes` {value!r} leaves no axis of leaf "
                           f"'{path}' with shape {shape}.")
        if from_model and spec is not None:
          # The module said how many contraction axes a slice has.
          base = spec.resolve(len(shape))
          n_in = len(base.in_axes) - max(0, len(st) - len(base.stack_axes))
          spec = _with_stack(st, max(min(n_in, rest - 1), 1), len(shape),
                             len(base.window_axes) if n_in == len(
                                 base.in_axes) else 0)
        else:
          axes = _bare_axes(path, None, len(shape), stack=st)
          name = path.split("/")[-1]
          if rest >= 2 and is_float and name not in _DENSE_NAMES:
            spec = axes
          elif spec is not None:
            spec = None if rest < 2 else axes
        unknown = None
        break
    for i, (pattern, value) in enumerate(override_rules):
      if pattern.search(path):
        used.add(("overrides", i))
        if value is not None and not isinstance(value, LeafSpec):
          raise ValueError(f"`overrides` values must be LeafSpec or None, "
                           f"got {value!r} for {pattern.pattern!r}.")
        if value is not None:
          if not is_float:
            raise ValueError(
                f"`overrides` make leaf '{path}' of a non-floating dtype "
                "sparse; only floating-point leaves can be sparse.")
          value.resolve(len(shape), path)
        spec, unknown = value, None
        break
    if unknown is not None:
      raise ValueError(
          f"leaf_specs: cannot tell the axes of leaf '{path}' with shape "
          f"{shape} ({unknown}); say its stacked axes with `stack_axes=` or "
          "its spec with "
          f"`overrides={{{path!r}: sj.LeafSpec(...)}}` (or None to keep it "
          "dense).")
    if spec is not None:
      spec = spec.resolve(len(shape), path)
    result.append((path, spec))
  for name, rules in (("stack_axes", stack_rules),
                      ("overrides", override_rules)):
    for i, (pattern, _) in enumerate(rules):
      if (name, i) not in used:
        raise ValueError(f"`{name}` pattern {pattern.pattern!r} matches no "
                         "leaf.")
  return _nest(result)


def _infer(model_or_params: Any):
  """``(path, spec, axes, unknown, shape, is_float)`` per leaf."""
  if is_nnx_module(model_or_params):
    rows = _nnx_specs(model_or_params)
    state = _tree.leaves_with_paths_variables(
        _nnx_state(model_or_params))
    leaves = dict(state)
    return [(p, s, a, (f"in a module of type {u}" if u else None),
             _shape(leaves[p]), _is_float(leaves[p])) for p, s, a, u in rows]
  pairs = dict(_tree.leaves_with_paths_variables(model_or_params))
  return [(p, s, a, AMBIGUOUS if s is not None and a is None else None,
           _shape(pairs[p]) if pairs[p] is not None else (),
           _is_float(pairs[p])) for p, s, a in _bare_specs(model_or_params)]


def is_nnx_module(x: Any) -> bool:
  try:
    from flax import nnx  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  return isinstance(x, nnx.Module)


def _nnx_state(model):
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return nnx.state(model, nnx.Param)


def _nest(pairs: list[tuple[str, Any]]) -> dict:
  out: dict = {}
  for path, spec in pairs:
    node = out
    parts = path.split("/")
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = spec
  return out


def is_spec_or_none(x: Any) -> bool:
  return x is None or isinstance(x, LeafSpec)


def specs_by_path(specs: Any) -> dict[str, LeafSpec | None]:
  """``{path: spec}`` of a spec tree (or of the specs of an NNX model)."""
  if is_nnx_module(specs):
    specs = leaf_specs(specs)
  flat, _ = jax.tree_util.tree_flatten_with_path(specs,
                                                 is_leaf=is_spec_or_none)
  out = {}
  for p, s in flat:
    if not is_spec_or_none(s):
      raise ValueError(
          f"`specs` leaf '{_tree.path_str(p)}' must be a LeafSpec or None, "
          f"got {type(s).__name__}.")
    out[_tree.path_str(p)] = s
  return out


# ---------------------------------------------------------------------------
# Selection and views for the transforms
# ---------------------------------------------------------------------------


def resolve(specs: Any, where: Any, params: Any,
            chosen: list[bool] | None = None) -> list[LeafSpec | None]:
  """The spec (``None``: dense) of every leaf of ``params``, flattened.

  Args:
    specs: ``None`` (infer from ``params``), an NNX model, or a spec tree
      matched to ``params`` by path.
    where: ``None``, or the ``where`` rule (regex or callable) that selects
      the sparse leaves; a selected leaf keeps its inferred axes, or takes
      the bare rule (last axis output) when none are known.
    params: the params (arrays or NNX variables).
    chosen: instead of ``where``, the selection itself: one bool per leaf
      (a callable distribution says which leaves it makes sparse).

  Returns:
    One entry per leaf of ``params`` (``None`` leaves included), in
    flattening order.
  """
  pairs = _tree.leaves_with_paths_variables(params)
  if specs is None:
    by_rule = where is not None or chosen is not None
    known = {p: (s, a) for p, s, a in _bare_specs(params, strict=not by_rule)}
  else:
    by_path = specs_by_path(specs)
    missing = [p for p, leaf in pairs
               if p not in by_path and leaf is not None and _is_float(leaf)]
    if missing:
      raise ValueError(
          f"`specs` has no entry for the params leaves {missing}; pass the "
          "specs of the same model (sj.leaf_specs(model)).")
    known = {p: (by_path.get(p), by_path.get(p)) for p, _ in pairs}
  rules = where if _rules.is_rules(where) else None
  if rules is not None:
    _rules.check_all_used(rules, [p for p, _ in pairs])
    rule = None
  else:
    _rules.check_rules(where)
    rule = None if where is None else _tree.compile_where(where)
  if chosen is not None:
    rule = dict(zip([p for p, _ in pairs], chosen, strict=True))
    rule = lambda path, leaf, flags=rule: flags[path]
  out = []
  for path, leaf in pairs:
    spec, axes = known.get(path, (None, None))
    if rules is not None:
      matched = _rules.first_match(rules, path)
      if matched is not None and matched.dense:
        spec = None
      elif matched is not None:
        rule = lambda p, leaf: True  # the leaf is sparse: take its axes
    if rule is not None:
      value = leaf.get_value() if _tree.is_variable(leaf) else leaf
      selected = rule(path, value)
      if selected and not _is_float(leaf):
        raise ValueError(
            f"`where` selects leaf '{path}' of dtype "
            f"{jnp.result_type(value)}; only floating-point leaves can be "
            "sparse.")
      if not selected:
        spec = None
      elif spec is None:
        ndim = len(_shape(leaf))
        spec = axes if axes is not None else (
            plain_spec(ndim) if ndim >= 1 else None)
        if spec is None:
          raise ValueError(f"`where` selects the scalar leaf '{path}'.")
    if spec is not None:
      spec = spec.resolve(len(_shape(leaf)), path)
      if specs is None and _ambiguous(path, len(_shape(leaf)),
                                      spec.stack_axes):
        raise ValueError(
            f"leaf '{path}' with shape {_shape(leaf)}: {AMBIGUOUS}. Pass "
            "`specs=model` (or `specs=sj.leaf_specs(params, stack_axes="
            "{...})`), or exclude the leaf with `where=`.")
    out.append(spec)
    if rules is not None:
      rule = None
  return out


class View:
  """Moves trees shaped like the params to and from their views.

  The view of a dense leaf (spec ``None``) and of a leaf that is its own
  view is the leaf itself; a stacked leaf becomes a tuple of slices.
  """

  def __init__(self, specs: list[LeafSpec | None], params: Any):
    self.specs = specs
    self.treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
    leaves = jax.tree.leaves(params, is_leaf=_tree.is_none)
    self.shapes = [None if x is None else tuple(np.shape(x)) for x in leaves]
    self.identity = all(
        s is None or s.is_identity(len(shape))
        for s, shape in zip(specs, self.shapes, strict=True))

  def to(self, tree: Any) -> Any:
    """The view of a params-shaped tree (``None`` leaves stay ``None``)."""
    if self.identity:
      return tree
    leaves = self.treedef.flatten_up_to(tree)
    return jax.tree.unflatten(self.treedef, [
        x if (s is None or x is None) else s.split(x)
        for s, x in zip(self.specs, leaves, strict=True)])

  def back(self, view: Any) -> Any:
    """The params-shaped tree of a view (the inverse of :meth:`to`)."""
    if self.identity:
      return view
    parts = self.treedef.flatten_up_to(view)
    return jax.tree.unflatten(self.treedef, [
        x if (s is None or x is None) else s.merge(x, shape)
        for s, x, shape in zip(self.specs, parts, self.shapes, strict=True)])

  def expand(self, per_leaf: Any) -> Any:
    """A per-leaf value tree (one value per leaf) repeated for each slice."""
    leaves = self.treedef.flatten_up_to(per_leaf)
    out = []
    for s, v, shape in zip(self.specs, leaves, self.shapes, strict=True):
      if s is None or not s.resolve(len(shape)).stack_axes:
        out.append(v)
      else:
        out.append((v,) * s.num_slices(shape))
    return jax.tree.unflatten(self.treedef, out)

  def sparse_rule(self) -> Callable[[str, Any], bool]:
    """A ``where`` rule over view paths that selects the sparse slices."""
    marks = []
    for s, shape in zip(self.specs, self.shapes, strict=True):
      if s is None:
        marks.append(False)
      elif s.resolve(len(shape)).stack_axes:
        marks.append((True,) * s.num_slices(shape))
      else:
        marks.append(True)
    chosen = {p for p, m in _tree.leaves_with_paths(
        jax.tree.unflatten(self.treedef, marks)) if m}
    return lambda path, leaf: path in chosen
