# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Which leaves are sparse, and how sparse: an ordered list of path rules.

The one configuration language of the weight-sparsity transforms, in the way
qwix configures quantization: a list of small frozen rules, each matched by a
regular expression searched in the leaf's ``/``-joined path, the first match
winning. It is given as ``where=`` (a plain regex or callable stays the
simple case).
"""

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ("Rule",)


@dataclasses.dataclass(frozen=True)
class Rule:
  """One rule of a ``where=[...]`` list: the leaves whose path matches.

  Attributes:
    pattern: a regular expression searched in the leaf's path
      (``"attn/(query|key|value)/kernel"``, ``"^head/"``).
    dense: keep the matching leaves dense (the LM head, a router).
    sparsity: a fixed sparsity for the matching leaves, which the
      distribution respects: ERK and ER solve their scale over the other
      leaves only, as RigL's ``custom_sparsity_map`` does; ``uniform`` gives
      the other leaves the target. ``None``: the distribution decides.

  A leaf that no rule matches follows the default selection (the leaf specs:
  on a Flax model, the linear-map kernels). Every rule must match at least
  one leaf.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'embed': {'kernel': jnp.ones((8, 4))},
    ...           'mlp': {'kernel': jnp.ones((4, 4))},
    ...           'head': {'kernel': jnp.ones((4, 8))}}
    >>> rules = [sj.Rule('^head/', dense=True),
    ...          sj.Rule('^embed/', sparsity=0.5)]
    >>> sj.distributions.uniform(0.75, where=rules)(params)
    {'embed': {'kernel': 0.5}, 'head': {'kernel': None}, 'mlp': {'kernel': 0.75}}

  References:
    Evci et al, `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, 2020 (``custom_sparsity_map``)
  """

  pattern: str
  dense: bool = False
  sparsity: float | None = None

  def __post_init__(self):
    if not isinstance(self.pattern, str):
      raise ValueError(f"`pattern` of a Rule must be a string, got "
                       f"{self.pattern!r}.")
    try:
      re.compile(self.pattern)
    except re.error as e:
      raise ValueError(f"Rule pattern {self.pattern!r} is invalid: {e}"
                       ) from None
    if self.sparsity is not None:
      if self.dense:
        raise ValueError(f"Rule {self.pattern!r}: `dense=True` and a "
                         "`sparsity` exclude each other.")
      try:
        v = float(self.sparsity)
      except (TypeError, ValueError):
        raise ValueError(f"Rule {self.pattern!r}: `sparsity` must be a "
                         f"float in [0, 1), got {self.sparsity!r}.") from None
      if not 0.0 <= v < 1.0:
        raise ValueError(f"Rule {self.pattern!r}: `sparsity` must be in "
                         f"[0, 1), got {v}.")

  def matches(self, path: str) -> bool:
    return re.search(self.pattern, path) is not None


def is_rules(where: Any) -> bool:
  """True for a ``where`` given as a list of :class:`Rule`."""
  return (isinstance(where, Sequence) and not isinstance(where, str)
          and len(where) > 0 and all(isinstance(r, Rule) for r in where))


def check_rules(where: Any) -> None:
  if isinstance(where, Sequence) and not isinstance(where, str):
    if not is_rules(where):
      raise ValueError("`where` given as a list must hold sj.Rule values "
                       f"only, got {where!r}.")


def first_match(rules: Sequence[Rule], path: str) -> Rule | None:
  return next((r for r in rules if r.matches(path)), None)


def check_all_used(rules: Sequence[Rule], paths: Sequence[str]) -> None:
  """Every rule must match a leaf: a rule that matches none is a mistake."""
  for rule in rules:
    if not any(rule.matches(p) for p in paths):
      raise ValueError(f"`where` rule {rule.pattern!r} matches no leaf of "
                       f"the params (paths such as {list(paths)[:4]}).")


def fixed_sparsities(rules: Any, paths: Sequence[str]) -> list[Any]:
  """The fixed sparsity of each path (``None``: the distribution decides)."""
  if not is_rules(rules):
    return [None] * len(paths)
  out = []
  for p in paths:
    r = first_match(rules, p)
    out.append(None if r is None or r.sparsity is None else
               float(np.float64(r.sparsity)))
  return out


def compile_patterns(rules: Mapping[str, Any] | None,
                      name: str) -> list[tuple[re.Pattern, Any]]:
  """``[(compiled regex, value)]`` of a ``{path regex: value}`` mapping."""
  if rules is None:
    return []
  if not isinstance(rules, Mapping):
    raise ValueError(f"`{name}` must be a mapping from a path regex to a "
                     f"value, got {type(rules).__name__}.")
  out = []
  for pattern, value in rules.items():
    try:
      out.append((re.compile(pattern), value))
    except re.error as e:
      raise ValueError(f"`{name}` pattern {pattern!r} is invalid: {e}") from None
  return out
