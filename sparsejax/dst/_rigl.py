# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""RigL: drop by weight magnitude, grow by dense gradient magnitude."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax.dst import _common


def rigl(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    end_step: int,
    update_every: int = 100,
    drop_fraction: Any = 0.3,
    distribution: str | Callable[[Any], Any] = "erk",
    grow_init: str = "zeros",
    begin_step: int = 0,
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Rigged Lottery (RigL) dynamic sparse training.

  Starts from a random mask with each sparse leaf at its budget (per-leaf
  sparsities from ``distribution``). Every ``update_every`` steps from
  ``begin_step`` up to ``end_step``, each sparse leaf drops
  ``n = floor(f_t * nnz)`` of its active weights, those of smallest
  :math:`|w|`, and grows the ``n`` inactive positions of largest
  :math:`|g|`, where ``g`` is the gradient the transform receives: the dense
  gradient with respect to the masked weights (pruned weights are exactly
  zero, so the loss is evaluated at :math:`W \odot M`). The drop fraction is
  :math:`f_t = \alpha / 2 \, (1 + \cos(\pi (t - t_0) / (t_{end} - t_0)))` and 0
  from ``end_step`` on.

  As in google-research/rigl (``SparseRigLOptimizer``, with its defaults
  ``grow_init='zeros'``, ``initial_acc_scale=0``, ``reinit_when_same=False``):

  * grown weights start at 0 and every params-shaped slot of the inner
    optimizer (momentum, Adam ``mu`` and ``nu``, ...) is reset to 0 at newly
    grown positions; Adam's step ``count`` is kept;
  * a position dropped and grown again in the same update is not new: it
    keeps its weight and its slots;
  * on a mask-update step the inner optimizer does not step (the weights do
    not move, the inner state is not advanced).

  Differences, all deliberate: ties are broken by the lower row-major index
  instead of RigL's ``N(0, 1e-5)`` noise (so equal inputs give equal masks);
  ``t`` is the number of ``update`` calls, including mask-update steps (RigL's
  global step does not advance on them); ``n`` is counted in whole blocks with
  block granularity.

  Args:
    inner: the optimizer to wrap.
    sparsity: overall target sparsity in ``[0, 1)``.
    end_step: last step at which the mask may change (RigL: about 75% of
      training).
    update_every: steps between mask updates (RigL's ``ΔT``).
    drop_fraction: ``alpha``, the drop fraction at ``begin_step`` (the
      cosine decays it to 0 at ``end_step``), or an optax schedule
      ``step -> fraction`` replacing the cosine one (still 0 from
      ``end_step`` on).
    distribution: per-leaf budgets: ``"erk"``, ``"er"``, ``"uniform"`` or a
      callable ``params -> per-leaf sparsities`` (then ``sparsity=None``).
    grow_init: initial value of grown weights; ``"zeros"`` only.
    begin_step: first mask-update step.
    granularity: ``"element"`` or a block shape ``(bm, bn)``: scores are summed
      per block and whole blocks are dropped and grown.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key for the initial random mask.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jax.random.normal(jax.random.key(0), (20, 10))}
    >>> tx = sj.rigl(optax.adam(1e-2), sparsity=0.8, end_step=100,
    ...              update_every=1, distribution='uniform')
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.ones((20, 10))}
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> int((params['w'] != 0).sum()), int(sj.get_masks(state)['w'].sum())
    (28, 40)

  References:
    Evci et al, `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, 2020
  """
  _validate.check_sparsity(sparsity, allow_none=True, allow_schedule=False)
  end_step = _validate.check_step(end_step, "end_step", after=begin_step)
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  _common.check_grow_init(grow_init)
  schedule = _common.drop_schedule(drop_fraction, begin_step, end_step)

  def update_masks(u: _method.MaskUpdate):
    fraction = schedule(u.count)
    fraction = jnp.where(u.count >= end_step, 0.0, fraction)
    new = _common.drop_and_grow(
        u, _method.pooled(u, jax.tree.map(jnp.abs, u.params)),
        _method.pooled(u, jax.tree.map(jnp.abs, u.grads)), fraction)
    return new, u.method_state

  method = _method.Method(
      profile=_method.SKIP_INNER, init=_method.random_init,
      update=update_masks, reset_grown_slots=True)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step, granularity=granularity)

