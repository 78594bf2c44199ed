# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-leaf sparsity budgets: which leaves are sparse, and how sparse.

A *distribution* is a callable ``params -> per-leaf sparsities``: a pytree
with the structure of ``params`` holding a float in ``[0, 1)`` for each sparse
leaf and ``None`` for each dense one. The factories here take the overall
target sparsity and the ``where`` rule that picks the sparse leaves:

* ``where=None`` (the default): leaves with ``ndim >= 2`` (kernels, not biases
  or norm scales);
* a string: a regular expression searched in the leaf's ``/``-joined path
  (``"kernel"``, ``"^params/Dense_[0-2]/kernel$"``); Flax NNX's trailing
  ``.value`` is dropped from paths;
* a callable ``(path, leaf) -> bool``.

The target may be a traced value (a scheduled sparsity inside
:func:`jax.jit`); the result then holds traced scalars.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _rules
from sparsejax import _specs
from sparsejax import _tree

__all__ = (
    "Distribution",
    "uniform",
    "er",
    "erk",
    "by_path",
    "select",
    "resolve",
)

Distribution = Callable[[Any], Any]
Where = Callable[[str, Any], bool] | str | None


def select(params: Any, where: Where = None, *, specs: Any = None) -> Any:
  """Which leaves are sparse: a pytree of Python bools.

  Args:
    params: a pytree of arrays.
    where: the leaf rule (see the module docstring).
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (see :func:`sparsejax.leaf_specs`); without ``where``, the leaves with
      a spec are sparse.

  Returns:
    A pytree of bools with the structure of ``params`` (``False`` for
    ``None`` leaves).

  Raises:
    ValueError: if ``where`` selects a leaf that is not floating point.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'dense': {'kernel': jnp.zeros((4, 3)), 'bias': jnp.zeros(3)}}
    >>> sj.distributions.select(params)
    {'dense': {'bias': False, 'kernel': True}}
    >>> sj.distributions.select(params, 'bias')
    {'dense': {'bias': True, 'kernel': False}}
  """
  resolved = _specs.resolve(specs, where, params)
  treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
  return jax.tree.unflatten(treedef, [s is not None for s in resolved])


def _on_view(params: Any, where: Where, specs: Any, compute,
             resolved: Any = None) -> Any:
  """Per-leaf sparsities computed on the view of ``params`` (one per leaf).

  ``compute(view_params, rule, fixed)`` gives a sparsity per slice of the
  view, where ``rule`` selects the sparse slices and ``fixed`` holds the
  sparsities that ``sj.Rule`` entries of ``where`` fix (one per view leaf,
  ``None`` elsewhere). The slices of a stacked leaf have one shape, hence
  one value, which becomes the leaf's. ``resolved`` gives the leaves' specs
  when the caller has them already.
  """
  raw = _tree.unwrap_variables(params)
  if resolved is None:
    resolved = _specs.resolve(specs, where, params)
  view = _specs.View(resolved, raw)
  paths = [p for p, _ in _tree.leaves_with_paths(raw)]
  fixed = view.expand(jax.tree.unflatten(
      view.treedef, _rules.fixed_sparsities(where, paths)))
  fixed = jax.tree.leaves(fixed, is_leaf=_tree.is_none)
  per_slice = compute(view.to(raw), view.sparse_rule(), fixed)
  parts = view.treedef.flatten_up_to(per_slice)
  return jax.tree.unflatten(view.treedef, [
      p[0] if isinstance(p, tuple) else p for p in parts])


def _chosen_view_leaves(params: Any, rule) -> list[bool]:
  return [leaf is not None and rule(path, leaf)
          for path, leaf in _tree.leaves_with_paths(params)]


def _check_target(sparsity: Any, name: str = "sparsity") -> None:
  if _tree.is_concrete(sparsity):
    try:
      v = float(sparsity)
    except (TypeError, ValueError):
      raise ValueError(
          f"`{name}` must be a number in [0, 1), got {sparsity!r}.") from None
    if not 0.0 <= v < 1.0:
      raise ValueError(f"`{name}` must be in [0, 1), got {v}.")


def _xp(sparsity: Any):
  return np if _tree.is_concrete(sparsity) else jnp


def uniform(sparsity: Any, *, where: Where = None,
            specs: Any = None) -> Distribution:
  """The same sparsity for every sparse leaf.

  Args:
    sparsity: the target, in ``[0, 1)``.
    where: the leaf rule (see the module docstring).
    specs: the leaves' axes (see :func:`sparsejax.leaf_specs`); without
      ``where``, the leaves with a spec are sparse.

  Returns:
    A distribution: ``params -> per-leaf sparsities``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'w': jnp.zeros((4, 3)), 'b': jnp.zeros(3)}
    >>> sj.distributions.uniform(0.8)(params)
    {'b': None, 'w': 0.8}

  References:
    Zhu & Gupta, `To prune, or not to prune
    <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  _check_target(sparsity)

  return lambda params: _on_view(params, where, specs,
                                 _uniform_on_view(sparsity))


def _uniform_on_view(sparsity: Any):
  def on_view(params, rule, fixed):
    chosen = _chosen_view_leaves(params, rule)
    treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
    return jax.tree.unflatten(treedef, [
        None if not c else (sparsity if f is None else f)
        for c, f in zip(chosen, fixed, strict=True)])
  return on_view


def _erdos_renyi(sparsity: Any, where: Where, specs: Any, power_scale: float,
                 kernel: bool) -> Distribution:
  """RigL's Erdős–Rényi(-Kernel) budgets with the dense-promotion loop."""
  return lambda params: _on_view(
      params, where, specs, _erdos_renyi_on_view(sparsity, power_scale,
                                                 kernel))


def _erdos_renyi_on_view(sparsity: Any, power_scale: float, kernel: bool):
  """The ER(K) solve on view leaves; leaves with a fixed sparsity are left
  out of it (RigL's ``custom_sparsity_map``)."""

  def raw_probability(shape):
    if kernel:
      score = sum(shape) / np.prod(shape)
    else:
      score = (shape[-2] + shape[-1]) / (shape[-2] * shape[-1])
    return score ** power_scale

  def on_view(params, rule, fixed):
    flat = _chosen_view_leaves(params, rule)
    leaves = jax.tree.leaves(params, is_leaf=_tree.is_none)
    treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
    sparse = [i for i, c in enumerate(flat) if c and fixed[i] is None]
    if not sparse:
      return jax.tree.unflatten(treedef, [
          fixed[i] if c else None for i, c in enumerate(flat)])
    shapes = [tuple(np.shape(leaves[i])) for i in sparse]
    for i, shape in zip(sparse, shapes, strict=True):
      if len(shape) < 2:
        raise ValueError(
            f"ER/ERK budgets need leaves with ndim >= 2; leaf "
            f"{_tree.leaves_with_paths(params)[i][0]!r} has shape {shape}.")
    xp = _xp(sparsity)
    n = xp.asarray([float(np.prod(s)) for s in shapes])
    raw = xp.asarray([float(raw_probability(s)) for s in shapes])
    dense = xp.zeros(len(shapes), dtype=bool)
    eps = xp.asarray(0.0)
    # Each pass promotes to dense the layers whose density would exceed 1;
    # one layer per pass at least, so len(shapes) passes always suffice.
    for _ in range(len(shapes)):
      rhs = xp.sum(xp.where(dense, -n * sparsity, n * (1 - sparsity)))
      divisor = xp.sum(xp.where(dense, 0.0, raw * n))
      eps = rhs / xp.maximum(divisor, 1e-30)
      max_raw = xp.max(xp.where(dense, -1.0, raw))
      dense = dense | ((eps * max_raw > 1) & (raw == max_raw))
    densities = xp.where(dense, 1.0, xp.minimum(eps * raw, 1.0))
    out = [None] * len(flat)
    for j, i in enumerate(sparse):
      d = densities[j]
      out[i] = float(1.0 - d) if xp is np else 1.0 - d
    for i, c in enumerate(flat):
      if c and fixed[i] is not None:
        out[i] = fixed[i]
    return jax.tree.unflatten(treedef, out)

  return on_view


def erk(sparsity: Any, *, where: Where = None, specs: Any = None,
        power_scale: float = 1.0) -> Distribution:
  """Erdős–Rényi-Kernel budgets (RigL): denser layers where fan-in is small.

  Each sparse leaf gets density ``eps * (sum(shape) / prod(shape)) **
  power_scale``, with ``eps`` solved so that the total number of kept weights
  is ``(1 - sparsity)`` of all sparse leaves. A leaf whose density would
  exceed 1 is made dense, the budget it takes is removed from the rest, and
  ``eps`` is solved again, until every density is at most 1 (as
  ``get_sparsities_erdos_renyi`` in google-research/rigl).

  Shapes are those of each leaf's view (see :func:`sparsejax.leaf_specs`):
  an attention kernel ``[d, heads, head_dim]`` is scored as the matrix
  ``[d, heads * head_dim]``, a convolution as ``[*window, c_in, c_out]``
  (RigL's rule), and every slice of a stacked leaf as its own layer, so a
  stacked model gets the budgets of its unstacked twin.

  Args:
    sparsity: the overall target, in ``[0, 1)``.
    where: the leaf rule (see the module docstring); selected leaves need
      ``ndim >= 2``.
    specs: the leaves' axes (see :func:`sparsejax.leaf_specs`).
    power_scale: exponent on the raw ERK score (1 is ERK; 0 is uniform).

  Returns:
    A distribution: ``params -> per-leaf sparsities``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = [jnp.zeros((784, 300)), jnp.zeros((300, 100)),
    ...           jnp.zeros((100, 10))]
    >>> [round(1 - s, 5) for s in sj.distributions.erk(0.9)(params)]
    [0.07957, 0.23019, 1.0]

  References:
    Evci et al, `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, 2020
  """
  _check_target(sparsity)
  return _erdos_renyi(sparsity, where, specs, power_scale, kernel=True)


def er(sparsity: Any, *, where: Where = None, specs: Any = None,
       power_scale: float = 1.0) -> Distribution:
  """Erdős–Rényi budgets (SET): density proportional to ``(n_in + n_out) /
  (n_in * n_out)`` over the last two dimensions.

  Same solution of ``eps`` and dense promotion as :func:`erk`; only the raw
  score differs (it ignores the leading, e.g. spatial, dimensions). Shapes
  are those of each leaf's view, as for :func:`erk`.

  Args:
    sparsity: the overall target, in ``[0, 1)``.
    where: the leaf rule (see the module docstring); selected leaves need
      ``ndim >= 2``.
    specs: the leaves' axes (see :func:`sparsejax.leaf_specs`).
    power_scale: exponent on the raw score.

  Returns:
    A distribution: ``params -> per-leaf sparsities``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = [jnp.zeros((3, 3, 16, 32)), jnp.zeros((16, 32))]
    >>> [round(s, 4) for s in sj.distributions.er(0.5)(params)]
    [0.5, 0.5]

  References:
    Mocanu et al, `Scalable training of artificial neural networks with
    adaptive sparse connectivity inspired by network science
    <https://arxiv.org/abs/1707.04780>`_, 2018
  """
  _check_target(sparsity)
  return _erdos_renyi(sparsity, where, specs, power_scale, kernel=False)


def by_path(rules: Mapping[str, Any], *,
            default: Any = None) -> Distribution:
  """Custom budgets: per-leaf sparsities chosen by path patterns.

  Args:
    rules: a mapping from regular expression (searched in the leaf's
      ``/``-joined path) to sparsity in ``[0, 1)``; the first matching
      pattern wins. A value of ``None`` keeps the matching leaves dense.
    default: the sparsity of leaves no pattern matches (``None``: dense).

  Returns:
    A distribution: ``params -> per-leaf sparsities``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'l1': {'kernel': jnp.zeros((4, 4))},
    ...           'out': {'kernel': jnp.zeros((4, 2))}}
    >>> sj.distributions.by_path({'out': 0.5}, default=0.9)(params)
    {'l1': {'kernel': 0.9}, 'out': {'kernel': 0.5}}
  """
  compiled = _rules.compile_patterns(rules, "rules")
  for pattern, value in compiled:
    if value is not None:
      _check_target(value, f"rules[{pattern.pattern!r}]")
  if default is not None:
    _check_target(default, "default")

  def distribution(params):
    def one(path, leaf):
      if leaf is None:
        return None
      value = next((v for pattern, v in compiled if pattern.search(path)),
                   default)
      if value is not None and not jnp.issubdtype(jnp.result_type(leaf),
                                                  jnp.floating):
        raise ValueError(
            f"`rules` make leaf '{path}' of dtype {jnp.result_type(leaf)} "
            "sparse; only floating-point leaves can be sparse.")
      return value
    return _tree.map_with_path(one, params)

  return distribution


_NAMED = {"uniform": uniform, "er": er, "erk": erk}


def named_on_resolved(name: str, sparsity: Any, where: Where,
                      resolved: Any, params: Any) -> Any:
  """Per-leaf sparsities of a named distribution for given leaf specs.

  The transforms resolve each leaf's spec once (at ``init``, where NNX
  metadata is visible) and pass it here, with the ``where`` whose rules may
  fix some leaves' sparsities.
  """
  _check_target(sparsity)
  compute = (_uniform_on_view(sparsity) if name == "uniform" else
             _erdos_renyi_on_view(sparsity, 1.0, kernel=name == "erk"))
  return _on_view(params, where, None, compute, resolved=resolved)


def resolve(distribution: str | Distribution, sparsity: Any, *,
            where: Where = None, specs: Any = None) -> Distribution:
  """Turns a distribution name or callable into a distribution.

  Args:
    distribution: ``"uniform"``, ``"er"``, ``"erk"`` or a callable
      ``params -> per-leaf sparsities`` (then ``sparsity`` must be ``None``).
    sparsity: the overall target for a named distribution.
    where: the leaf rule for a named distribution.
    specs: the leaves' axes for a named distribution.

  Returns:
    A distribution: ``params -> per-leaf sparsities``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.distributions.resolve('uniform', 0.5)({'w': jnp.zeros((2, 2))})
    {'w': 0.5}
  """
  if callable(distribution):
    if sparsity is not None:
      raise ValueError(
          "`sparsity` must be None when `distribution` is a callable: the "
          "callable gives the per-leaf sparsities itself.")
    return distribution
  if distribution not in _NAMED:
    raise ValueError(
        f"`distribution` must be one of {sorted(_NAMED)} or a callable, got "
        f"{distribution!r}.")
  if sparsity is None:
    raise ValueError(f"`sparsity` is required with distribution "
                     f"{distribution!r}.")
  return _NAMED[distribution](sparsity, where=where, specs=specs)
