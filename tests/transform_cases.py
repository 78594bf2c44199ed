# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The weight-sparsity transforms every conformance test runs over.

Every method of the shared registry (``examples/methods.py``, also read by
the examples and the benchmarks) is a case, built at test scale; a new
method added there is tested here with no edit. ``VARIANTS`` adds the
configurations of a method that its registry entry does not cover (global
scope, blocks, soft movement, a decaying N:M mask, ...). Each case names a
factory and its keyword arguments (the inner optimizer is passed as
``inner``) so that tests can also build it through
``optax.inject_hyperparams``.
"""

import pathlib
import sys
from typing import Any, NamedTuple

import optax

import sparsejax as sj

_EXAMPLES = str(pathlib.Path(__file__).resolve().parents[1] / "examples")
if _EXAMPLES not in sys.path:
  sys.path.append(_EXAMPLES)
import methods  # noqa: E402  (examples/methods.py)  pylint: disable=g-import-not-at-top


class Case(NamedTuple):
  factory: Any
  kwargs: dict[str, Any]
  # Structural ints, which optax.inject_hyperparams must not trace.
  static_args: tuple[str, ...] = ("update_every", "begin_step", "end_step")
  # Whether pruned weights are exactly zero after each update (False for
  # straight-through transforms, whose weights stay dense).
  exact_zero: bool = True


def registry_case(name: str, **run: Any) -> Case:
  """``methods.METHODS[name]`` at test scale (``run`` overrides the scale)."""
  method = methods.METHODS[name]
  # 0.5 is the one sparsity every method takes on these small leaves (N:M
  # is 1:2); the gradual methods ramp over 4 steps, masks update every 2.
  run = dict(sparsity=0.5, total_steps=8, update_every=2, **run)
  return Case(method.factory, methods.kwargs(name, **run),
              static_args=methods.STATIC_ARGS + method.static_args,
              exact_zero=method.exact_zero)


VARIANTS: dict[str, Case] = {
    "static_uniform": Case(sj.static_sparse,
                           dict(sparsity=0.7, distribution="uniform")),
    "magnitude_one_shot": Case(sj.magnitude_pruning, dict(sparsity=0.75)),
    "magnitude_global": Case(sj.magnitude_pruning,
                             dict(sparsity=0.6, scope="global")),
    "magnitude_block": Case(sj.magnitude_pruning,
                            dict(sparsity=0.5, granularity=(2, 2))),
    "movement_soft": Case(
        sj.movement_pruning,
        dict(variant="soft", update_every=1, threshold=0.45, score_lr=0.5)),
    "ste_float": Case(sj.ste, dict(sparsity=0.7), exact_zero=False),
    "ste_schedule": Case(
        sj.ste, dict(sparsity=optax.linear_schedule(0.0, 0.6, 4),
                     update_every=2, scope="global"), exact_zero=False),
    "top_kast_80_50": Case(sj.top_kast,
                           dict(forward_sparsity=0.8, backward_sparsity=0.5),
                           exact_zero=False),
    "nm_mdgf": Case(sj.nm_sparse,
                    dict(n=1, m=2, decay=optax.linear_schedule(1.0, 0.0, 4)),
                    static_args=("n", "m", "axis", "update_every"),
                    exact_zero=False),
}

# The engine runs every method of a step profile through the same step
# function, so the default tier of the suites that run every case checks one
# or two methods per profile; these (same profile as RigL, SET or magnitude
# pruning) run in the slow tier.
SLOW_CASES = frozenset({"srigl", "dst_ee", "mest", "granet",
                        "random_pruning"})


def names(cases) -> list:
  """``pytest`` parameters of ``cases``' names, the slow ones marked."""
  import pytest  # pylint: disable=g-import-not-at-top
  return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n
          for n in sorted(cases)]


CASES: dict[str, Case] = {
    **{name: registry_case(name) for name in methods.METHODS}, **VARIANTS}


def make(name: str, inner: optax.GradientTransformation):
  case = CASES[name]
  return case.factory(inner, **case.kwargs)
