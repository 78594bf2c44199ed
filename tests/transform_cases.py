# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The weight-sparsity transforms every conformance test runs over.

Each case names a factory and its keyword arguments (the inner optimizer is
passed as ``inner``) so that tests can also build it through
``optax.inject_hyperparams``. Add a case for every new transform.
"""

from typing import Any, NamedTuple

import optax

import sparsejax as sj


class Case(NamedTuple):
  factory: Any
  kwargs: dict[str, Any]
  # Structural ints, which optax.inject_hyperparams must not trace.
  static_args: tuple[str, ...] = ("update_every", "begin_step", "end_step")
  # Whether pruned weights are exactly zero after each update (False for
  # straight-through transforms, whose weights stay dense).
  exact_zero: bool = True


CASES: dict[str, Case] = {
    "static_uniform": Case(sj.static_sparse,
                           dict(sparsity=0.7, distribution="uniform")),
    "static_erk": Case(sj.static_sparse, dict(sparsity=0.8)),
    "magnitude_one_shot": Case(sj.magnitude_pruning, dict(sparsity=0.75)),
    "magnitude_gradual": Case(
        sj.magnitude_pruning,
        dict(sparsity=optax.polynomial_schedule(
            init_value=0.0, end_value=0.8, power=3, transition_steps=4),
             update_every=2)),
    "magnitude_global": Case(sj.magnitude_pruning,
                             dict(sparsity=0.6, scope="global")),
    "magnitude_block": Case(sj.magnitude_pruning,
                            dict(sparsity=0.5, granularity=(2, 2))),
    "random_pruning": Case(
        sj.random_pruning,
        dict(sparsity=optax.linear_schedule(0.0, 0.5, 4), update_every=2)),
    "movement_hard": Case(
        sj.movement_pruning,
        dict(sparsity=optax.polynomial_schedule(
            init_value=0.0, end_value=0.8, power=3, transition_steps=4),
             update_every=2)),
    "movement_soft": Case(
        sj.movement_pruning,
        dict(variant="soft", update_every=1, threshold=0.45, score_lr=0.5)),
    "ste": Case(sj.ste, dict(sparsity=0.7), exact_zero=False),
    "ste_schedule": Case(
        sj.ste, dict(sparsity=optax.linear_schedule(0.0, 0.6, 4),
                     update_every=2, scope="global"), exact_zero=False),
    "top_kast": Case(sj.top_kast,
                     dict(forward_sparsity=0.8, backward_sparsity=0.5),
                     exact_zero=False),
    "nm_sparse": Case(sj.nm_sparse, dict(n=1, m=2),
                      static_args=("n", "m", "axis", "update_every"),
                      exact_zero=False),
    "nm_mdgf": Case(sj.nm_sparse,
                    dict(n=1, m=2, decay=optax.linear_schedule(1.0, 0.0, 4)),
                    static_args=("n", "m", "axis", "update_every"),
                    exact_zero=False),
}


def make(name: str, inner: optax.GradientTransformation):
  case = CASES[name]
  return case.factory(inner, **case.kwargs)
