# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Every weight-sparsity transform of sparsejax, built from a run's facts.

One registry read by the examples (``fashion_mnist.py --method``), the
benchmarks (``overhead.py``) and the tests (the Optax conformance suite, the
drop-and-grow suite on a mesh, the compiled-buffer test). A new method is its
own file in the library plus one line in :data:`METHODS` here; every reader
then runs it.

Each entry says how to call its factory for a run of ``total_steps`` steps at
a target ``sparsity`` (:func:`kwargs`, :func:`make`) and two facts the tests
check against: its step profile (:data:`PROFILES`) and whether pruned
weights are exact zeros. This is the only place that spells out a
transform's arguments; callers name run facts, and keyword ``overrides``
only for what their check is about (a distribution, a granularity, specs).

The run facts map to arguments as follows:

* ``sparsity``: the target. Gradual methods (magnitude, random, movement,
  STE) ramp to it with Zhu & Gupta's cubic schedule over ``ramp_steps``
  (half the run by default; ``ramp_steps=0`` holds the target from step 0);
  ``top_kast`` prunes its backward set half as much (twice the density, as
  Jayakumar et al. do); ``nm_sparse`` takes the N:M pattern with the
  smallest M whose N / M is exactly ``1 - sparsity`` (0.5 is 1:2, 0.75 is
  1:4) and refuses a sparsity without one.
* ``update_every``: every mask update's period; ``None`` gives each method
  its own cadence for the run (see :func:`mask_update_every`): 100 steps
  (fewer on short runs) for magnitude, random and movement pruning, RigL,
  SRigL and GraNet, ten updates over the run for SET, SNFS and MEST (once an
  epoch at 10 epochs), every step for the straight-through methods.
* ``total_steps``: RigL and SRigL stop changing masks after 3/4 of it; SNFS,
  MEST and GraNet take it as their ``end_step`` and decay their rates over
  it; SET and SNFS make their first update after one epoch (``begin_step``
  = their ``update_every``), as their references do.
* ``seed``: the masks' seed (magnitude pruning takes none: it is
  deterministic).

Example::

  >>> import optax, methods
  >>> tx = methods.make("rigl", optax.adam(1e-3), sparsity=0.9,
  ...                   total_steps=1000)
  >>> methods.kwargs("rigl", sparsity=0.9, total_steps=1000)["end_step"]
  750
  >>> methods.METHODS["rigl"].profile
  'skip-inner-on-update'
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any, NamedTuple

import optax

import sparsejax as sj

# The four step profiles of the shared engine.
PRUNE_ONLY = "prune-only"  # the inner step always runs, then the masks
SKIP_INNER = "skip-inner-on-update"  # no inner step on mask updates
INNER_FIRST = "inner-first"  # the inner step, then drop and grow
STRAIGHT_THROUGH = "straight-through"  # dense weights, masked forward
PROFILES = (PRUNE_ONLY, SKIP_INNER, INNER_FIRST, STRAIGHT_THROUGH)
# Profiles whose masks move at a fixed budget (drop and grow).
DROP_AND_GROW = (SKIP_INNER, INNER_FIRST)

# Structural integers of the factories: optax.inject_hyperparams must not
# turn them into traced hyperparameters.
STATIC_ARGS = ("update_every", "begin_step", "end_step", "prune_begin",
               "prune_end", "n", "m", "axis", "seed")


class Run(NamedTuple):
  """The facts of a run that a method's arguments are derived from."""

  sparsity: float
  total_steps: int
  update_every: int | None
  ramp_steps: int | None
  seed: int


class Method(NamedTuple):
  """One registry entry.

  Attributes:
    factory: the sparsejax factory, called as ``factory(inner, **kwargs)``.
    arguments: ``Run -> kwargs`` of ``factory``.
    profile: one of :data:`PROFILES`.
    exact_zero: whether pruned weights are exactly zero after every update
      (False for the straight-through methods, whose weights stay dense).
    static_args: hyperparameters besides :data:`STATIC_ARGS` that the
      factory reads in Python when it is built, so that
      ``optax.inject_hyperparams`` must hold them static (a gap: DESIGN.md
      asks only structural integers to be static).
  """

  factory: Callable[..., optax.GradientTransformationExtraArgs]
  arguments: Callable[[Run], dict[str, Any]]
  profile: str
  exact_zero: bool = True
  static_args: tuple[str, ...] = ()


def mask_update_every(total_steps: int) -> int:
  """100 steps between mask updates (Zhu & Gupta, RigL); fewer on short runs.

  >>> mask_update_every(10_000), mask_update_every(30)
  (100, 1)
  """
  return max(1, min(100, total_steps // 20))


def _every_100(run: Run) -> int:
  return run.update_every or mask_update_every(run.total_steps)


def _ten_times(run: Run) -> int:
  return run.update_every or max(1, run.total_steps // 10)


def _ramp(run: Run) -> optax.Schedule:
  """Cubic from dense to ``run.sparsity`` (Zhu & Gupta), then constant."""
  steps = run.total_steps // 2 if run.ramp_steps is None else run.ramp_steps
  if steps <= 0:
    return optax.constant_schedule(run.sparsity)
  return optax.polynomial_schedule(init_value=0.0, end_value=run.sparsity,
                                   power=3, transition_steps=steps,
                                   transition_begin=0)


def n_of_m(sparsity: float) -> tuple[int, int]:
  """The N:M pattern with the smallest M (at most 64) of this sparsity.

  >>> n_of_m(0.5), n_of_m(0.75), n_of_m(0.875)
  ((1, 2), (1, 4), (1, 8))
  """
  density = fractions.Fraction(1 - sparsity).limit_denominator(64)
  if not 0 < density < 1 or float(density) != 1 - sparsity:
    raise ValueError(
        f"sparsity: nm_sparse needs 1 - sparsity = N / M with M <= 64 "
        f"(0.5 is 1:2, 0.75 is 1:4), got {sparsity}")
  return density.numerator, density.denominator


METHODS: dict[str, Method] = {
    "static": Method(sj.static_sparse, lambda r: dict(
        sparsity=r.sparsity, distribution="erk", seed=r.seed), PRUNE_ONLY),
    "magnitude": Method(sj.magnitude_pruning, lambda r: dict(
        sparsity=_ramp(r), update_every=_every_100(r),
        distribution="uniform"), PRUNE_ONLY),
    "random_pruning": Method(sj.random_pruning, lambda r: dict(
        sparsity=_ramp(r), update_every=_every_100(r), seed=r.seed),
                             PRUNE_ONLY),
    "movement": Method(sj.movement_pruning, lambda r: dict(
        sparsity=_ramp(r), update_every=_every_100(r), seed=r.seed),
                       PRUNE_ONLY),
    "rigl": Method(sj.rigl, lambda r: dict(
        sparsity=r.sparsity, end_step=max(1, r.total_steps * 3 // 4),
        update_every=_every_100(r), seed=r.seed), SKIP_INNER),
    "srigl": Method(sj.srigl, lambda r: dict(
        sparsity=r.sparsity, end_step=max(1, r.total_steps * 3 // 4),
        update_every=_every_100(r), seed=r.seed), SKIP_INNER,
                    static_args=("ablation", "min_salient_weights_per_neuron",
                                 "sparsity")),
    "dst_ee": Method(sj.dst_ee, lambda r: dict(
        sparsity=r.sparsity, end_step=max(1, r.total_steps * 3 // 4),
        update_every=_every_100(r), seed=r.seed), SKIP_INNER),
    "set": Method(sj.set_, lambda r: dict(
        sparsity=r.sparsity, distribution="erk", seed=r.seed,
        update_every=_ten_times(r), begin_step=_ten_times(r)), INNER_FIRST),
    "snfs": Method(sj.snfs, lambda r: dict(
        sparsity=r.sparsity, distribution="erk", seed=r.seed,
        update_every=_ten_times(r), begin_step=_ten_times(r),
        end_step=r.total_steps), INNER_FIRST, static_args=("cap",)),
    "mest": Method(sj.mest, lambda r: dict(
        sparsity=r.sparsity, distribution="erk", seed=r.seed,
        update_every=_ten_times(r), end_step=r.total_steps), INNER_FIRST,
                   static_args=("grad_weight",)),
    "granet": Method(sj.granet, lambda r: dict(
        sparsity=r.sparsity, end_step=r.total_steps,
        update_every=_every_100(r), seed=r.seed), INNER_FIRST,
                     static_args=("init_density", "sparsity")),
    "ste": Method(sj.ste, lambda r: dict(
        sparsity=_ramp(r), update_every=r.update_every or 1, seed=r.seed),
                  STRAIGHT_THROUGH, exact_zero=False),
    "top_kast": Method(sj.top_kast, lambda r: dict(
        forward_sparsity=r.sparsity,
        backward_sparsity=max(0.0, 2 * r.sparsity - 1),
        update_every=r.update_every or 1, seed=r.seed),
                       STRAIGHT_THROUGH, exact_zero=False),
    "nm_sparse": Method(sj.nm_sparse, lambda r: dict(
        zip(("n", "m"), n_of_m(r.sparsity)),
        update_every=r.update_every or 1, seed=r.seed),
                        STRAIGHT_THROUGH, exact_zero=False),
}


def kwargs(name: str, *, sparsity: float, total_steps: int,
           update_every: int | None = None, ramp_steps: int | None = None,
           seed: int = 0, **overrides: Any) -> dict[str, Any]:
  """The keyword arguments of ``METHODS[name].factory`` for this run.

  Args:
    name: a key of :data:`METHODS`.
    sparsity: the target sparsity.
    total_steps: the run's length in steps.
    update_every: steps between mask updates; ``None``: the method's own.
    ramp_steps: steps of the gradual methods' ramp; ``None``: half the run.
    seed: the masks' seed.
    **overrides: factory arguments that replace the derived ones.

  Returns:
    The keyword arguments (without the inner optimizer).
  """
  if name not in METHODS:
    raise ValueError(
        f"method: unknown {name!r}; expected one of {sorted(METHODS)}")
  run = Run(sparsity, total_steps, update_every, ramp_steps, seed)
  return {**METHODS[name].arguments(run), **overrides}


def make(name: str, inner: optax.GradientTransformation, **run: Any
         ) -> optax.GradientTransformationExtraArgs:
  """``METHODS[name]`` wrapping ``inner``; ``run`` as for :func:`kwargs`."""
  arguments = kwargs(name, **run)  # checks the name
  return METHODS[name].factory(inner, **arguments)
