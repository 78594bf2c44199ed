# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Lottery tickets: iterative magnitude pruning (IMP) with rewinding.

One IMP round is: train to completion, prune a fraction of the weights that
remain by magnitude (:func:`imp_prune`), reset the surviving weights to their
initial values or to an early checkpoint (:func:`rewind`), and train again
with the new masks fixed (``sj.static_sparse(inner, masks=masks)``, whose
fresh ``init`` also clears the optimizer state). After ``r`` rounds at rate
``p`` a fraction ``(1 - p) ** r`` of the weights remains::

  masks = None
  for _ in range(rounds):
    params = train(rewind(theta_0, masks), masks)
    masks = sj.imp_prune(params, masks, rate=0.2, overrides={"fc3": 0.1})
"""

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _specs
from sparsejax import _tree
from sparsejax import _rules
from sparsejax import masks as _masks

__all__ = (
    "imp_prune",
    "rewind",
    "fraction_remaining",
)


def _check_rate(rate: Any, name: str) -> float:
  try:
    v = float(rate)
  except (TypeError, ValueError):
    raise ValueError(f"`{name}` must be a float in [0, 1), got {rate!r}."
                     ) from None
  if not 0.0 <= v < 1.0:
    raise ValueError(f"`{name}` must be in [0, 1), got {v}.")
  return v


def _rate_rules(overrides: Any) -> list[tuple[re.Pattern, float]]:
  return [(pattern, _check_rate(rate, f"overrides[{pattern.pattern!r}]"))
          for pattern, rate in _rules.compile_patterns(overrides,
                                                       "overrides")]


def imp_prune(
    params: Any,
    masks: Any = None,
    *,
    rate: float = 0.2,
    scope: str = "layer",
    overrides: dict[str, float] | None = None,
    where: Any = None,
    specs: Any = None,
) -> Any:
  """Prunes a fraction of the remaining weights by magnitude (one IMP round).

  Among the weights each mask still keeps, the ``rate`` fraction of smallest
  magnitude is removed: per leaf (``scope="layer"``, each leaf keeps
  ``round((1 - rate) * remaining)``) or with one threshold over all sparse
  leaves (``scope="global"``). Leaves whose path matches a key of
  ``overrides`` are pruned on their own at that rate (Frankle & Carbin prune
  LeNet's output layer at half the rate of the hidden layers). Masks only
  shrink from round to round.

  Args:
    params: the trained parameters.
    masks: the current masks (bool arrays, ``None`` for dense leaves), or
      ``None`` for the first round (every leaf chosen by ``where`` is full).
    rate: fraction of the remaining weights to prune, in ``[0, 1)``.
    scope: ``"layer"`` or ``"global"``.
    overrides: ``{regex over the leaf's '/'-joined path: rate}``; the first
      matching key wins, and such leaves are pruned per leaf.
    where: with ``masks=None``, which leaves are sparse (see
      :mod:`sparsejax.distributions`); default: leaves with ``ndim >= 2``.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (:func:`sparsejax.leaf_specs`): with ``masks=None`` the leaves with a
      spec are sparse, and ``scope="layer"`` prunes every slice of a stacked
      leaf (each layer of an ``nnx.scan`` stack) by its own survivors.

  Returns:
    The new masks, with the structure of ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'w': jnp.arange(1., 11.).reshape(2, 5), 'b': jnp.ones(5)}
    >>> masks = sj.imp_prune(params, rate=0.2)
    >>> masks = sj.imp_prune(params, masks, rate=0.5)
    >>> masks['w'].astype(int), masks['b']
    (Array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1]], dtype=int32), None)

  References:
    Frankle & Carbin, `The Lottery Ticket Hypothesis: Finding Sparse,
    Trainable Neural Networks <https://arxiv.org/abs/1803.03635>`_, 2019
  """
  rate = _check_rate(rate, "rate")
  if scope not in ("layer", "global"):
    raise ValueError(f"`scope` must be 'layer' or 'global', got {scope!r}.")
  rules = _rate_rules(overrides)
  view = None
  if specs is not None:
    resolved = _specs.resolve(specs, where if masks is None else None, params)
    params = _tree.unwrap_variables(params)
    view = _specs.View(resolved, params)
    if masks is None:
      masks = jax.tree.unflatten(view.treedef, [
          None if sp is None else jnp.ones_like(p, jnp.bool_)
          for sp, p in zip(resolved, jax.tree.leaves(
              params, is_leaf=_tree.is_none), strict=True)])
    masks = _tree.align(_tree.unwrap_variables(masks), params, name="masks")
    params, masks = view.to(params), view.to(masks)
  params = _tree.unwrap_variables(params)
  if masks is None:
    rule = _tree.compile_where(where)
    masks = _tree.map_with_path(
        lambda path, p: jnp.ones_like(p, dtype=jnp.bool_)
        if p is not None and rule(path, p) else None, params)
  masks = _tree.unwrap_variables(masks)
  _tree.check_same_structure(masks, params, name="masks")

  def leaf_rate(path):
    for pattern, r in rules:
      if pattern.search(path):
        return r
    return None

  paths = [p for p, _ in _tree.leaves_with_paths(params)]
  flat_masks = jax.tree.leaves(
      jax.tree.map(lambda _, m: m, params, masks, is_leaf=_tree.is_none),
      is_leaf=_tree.is_none)
  flat_params = jax.tree.leaves(params, is_leaf=_tree.is_none)
  # Survivors score |w| >= 0, pruned weights -1: they are never re-chosen.
  scores = [None if m is None else jnp.where(
      m, jnp.abs(p).astype(jnp.float32), -1.0)
            for p, m in zip(flat_params, flat_masks, strict=True)]
  new = list(flat_masks)
  pooled = []
  for i, (path, s, m) in enumerate(zip(paths, scores, flat_masks,
                                       strict=True)):
    if s is None:
      continue
    own = leaf_rate(path)
    if own is None and scope == "global":
      pooled.append(i)
      continue
    remaining = int(jnp.sum(m))
    keep = int(np.round((1.0 - (rate if own is None else own)) * remaining))
    new[i] = _masks.topk(s, keep)
  if pooled:
    remaining = sum(int(jnp.sum(flat_masks[i])) for i in pooled)
    keep = int(np.round((1.0 - rate) * remaining))
    kept = _masks.topk([scores[i] for i in pooled], keep, scope="global")
    for i, k in zip(pooled, kept, strict=True):
      new[i] = k
  treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
  out = jax.tree.unflatten(treedef, new)
  return out if view is None else view.back(out)


def rewind(params: Any, masks: Any) -> Any:
  """Resets the surviving weights to ``params`` (``theta_0`` or ``theta_k``).

  The lottery-ticket reset: the weights the masks keep take their values
  from ``params`` (the initialisation, or an early checkpoint for rewinding),
  the pruned ones are zero, and dense leaves are taken from ``params``.

  Args:
    params: the parameters to rewind to.
    masks: the masks of the ticket (``None`` leaves are dense).

  Returns:
    ``params`` with the pruned entries zeroed.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> theta0 = {'w': jnp.array([[0.1, -0.2], [0.3, 0.4]])}
    >>> sj.rewind(theta0, {'w': jnp.array([[True, False], [False, True]])})
    {'w': Array([[0.1, 0. ],
           [0. , 0.4]], dtype=float32)}

  References:
    Frankle et al, `Linear Mode Connectivity and the Lottery Ticket
    Hypothesis <https://arxiv.org/abs/1912.05671>`_, 2020
  """
  return _masks.apply(params, masks)


def fraction_remaining(masks: Any) -> float:
  """Fraction of the masked leaves' entries that the masks keep.

  Args:
    masks: a mask pytree (``None`` leaves are ignored).

  Returns:
    Kept entries over the total size of the non-``None`` leaves.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.fraction_remaining({'a': jnp.ones((4,), bool), 'b': None,
    ...                        'c': jnp.zeros((4,), bool)})
    0.5
  """
  leaves = [m for m in jax.tree.leaves(_tree.unwrap_variables(masks))
            if m is not None]
  if not leaves:
    raise ValueError("`masks` has no mask leaf.")
  return sum(int(jnp.sum(m)) for m in leaves) / sum(
      int(np.size(m)) for m in leaves)
