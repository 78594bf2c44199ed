# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""SET: drop the weights closest to zero, regrow at random."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax.dst import _common


def _sign_split_keep(active, signed, drop_fraction):
  """Keeps ``floor((1 - zeta) n)`` of each sign, the ones farthest from 0."""
  pos = active & (signed > 0)
  neg = active & (signed < 0)
  keep_pos = _common.topk1(
      jnp.where(pos, signed, _common.NEG_INF),
      _common.floor_count(1.0 - drop_fraction, _common.count(pos)))
  keep_neg = _common.topk1(
      jnp.where(neg, -signed, _common.NEG_INF),
      _common.floor_count(1.0 - drop_fraction, _common.count(neg)))
  return keep_pos | keep_neg


def set_(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    update_every: int = 100,
    drop_fraction: Any = 0.3,
    drop: str = "sign_split",
    distribution: str | Callable[[Any], Any] = "er",
    begin_step: int = 0,
    end_step: int | None = None,
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Sparse Evolutionary Training (SET).

  Starts from a random mask at each sparse leaf's budget (``"er"``, the
  Erdős–Rényi distribution of SET, by default). Every ``update_every`` steps
  (SET: once per epoch), after the optimizer step, each sparse leaf removes
  the fraction ``zeta = drop_fraction`` of its positive weights closest to
  zero and the same fraction of its negative weights closest to zero, and
  regrows as many connections at uniformly random positions that are not
  kept. New weights and every params-shaped inner optimizer slot there start
  at 0.

  As in dcmocanu/sparse-evolutionary-artificial-neural-networks
  (``weightsEvolution``): per sign, the kept weights are those beyond the
  ``largestNegative`` / ``smallestPositive`` thresholds; here exactly
  ``floor((1 - zeta) * n_pos)`` positive and ``floor((1 - zeta) * n_neg)``
  negative weights are kept (the reference derives its thresholds from the
  sorted values and the position of the value closest to zero, which can be
  one entry off this count), and active weights that are exactly zero are
  dropped (they lie between the two thresholds there too). Regrowth draws
  from every position that is not kept, including those just dropped; such a
  position keeps its weight and slots (the engine's rule), where the
  reference draws a fresh random weight. ``drop="magnitude"`` instead drops
  the ``floor(zeta * nnz)`` active weights of smallest :math:`|w|` (one
  ranking, as JaxPruner's SET). With block granularity a block's sign is the
  sign of the sum of its weights.

  Args:
    inner: the optimizer to wrap.
    sparsity: overall target sparsity in ``[0, 1)``.
    update_every: steps between mask updates (SET: the steps of one epoch).
    drop_fraction: ``zeta`` in ``[0, 1]``, or an optax schedule of the step.
    drop: ``"sign_split"`` (SET) or ``"magnitude"``.
    distribution: per-leaf budgets: ``"er"``, ``"erk"``, ``"uniform"`` or a
      callable ``params -> per-leaf sparsities``.
    begin_step: first mask-update step. The reference's first update ends
      the first epoch: ``begin_step=update_every``.
    end_step: last step at which the mask may change (default: none).
    granularity: ``"element"`` or a block shape ``(bm, bn)``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key (initial mask and random regrowth).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.linspace(-1., 1., 40).reshape(8, 5)}
    >>> tx = sj.set_(optax.sgd(0.0), sparsity=0.5, update_every=1,
    ...              begin_step=0, distribution='uniform')
    >>> state = tx.init(params)
    >>> params = optax.apply_updates(
    ...     params, tx.update(params, state, params)[0])
    >>> int(sj.get_masks(state)['w'].sum())
    20

  References:
    Mocanu et al, `Scalable training of artificial neural networks with
    adaptive sparse connectivity inspired by network science
    <https://arxiv.org/abs/1707.04780>`_, 2018
  """
  _validate.check_sparsity(sparsity, allow_none=True, allow_schedule=False)
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  _validate.check_choice(drop, "drop", ("sign_split", "magnitude"))
  update_every = _validate.check_positive_int(update_every, "update_every")
  schedule = _common.as_schedule(drop_fraction)

  def update_masks(u: _method.MaskUpdate):
    fraction = schedule(u.count)

    def one(budget, active, signed, noise):
      del budget
      nnz = _common.count(active)
      if drop == "sign_split":
        kept = _sign_split_keep(active, signed, fraction)
      else:
        n = _common.floor_count(fraction, nnz)
        kept = _common.topk1(
            jnp.where(active, jnp.abs(signed), _common.NEG_INF), nnz - n)
      grown = _common.topk1(jnp.where(kept, _common.NEG_INF, noise),
                            nnz - _common.count(kept))
      return kept | grown

    return _method.map_sparse(
        u, one, u.masks, _method.pooled(u, u.params),
        _method.random_scores(u.key, u)), u.method_state

  method = _method.Method(
      profile=_method.INNER_FIRST, init=_method.random_init,
      update=update_masks, reset_grown_slots=True)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step, granularity=granularity)
