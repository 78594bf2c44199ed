# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""GraNet: gradual global magnitude pruning with zero-cost regeneration."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax import masks as _masks
from sparsejax.dst import _common


def granet(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    end_step: int,
    init_density: float = 0.5,
    update_every: int = 100,
    prune_begin: int = 0,
    prune_end: int | None = None,
    drop_fraction: Any = 0.5,
    distribution: str | Callable[[Any], Any] = "erk",
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""GraNet: gradual pruning plus neuroregeneration, sparse or dense start.

  Starts from a random mask at density ``init_density`` (per-leaf budgets from
  ``distribution``; ``init_density=1`` starts dense). Every ``update_every``
  steps after ``prune_begin``, after the optimizer step, as
  ``Masking.step`` in VITA-Group/GraNet (``method='GraNet'``, growth
  ``'gradient'``):

  1. while ``t <= prune_end`` (rounded down to an update step): global
     magnitude pruning, one :math:`|w|`
     threshold over all sparse leaves, to the overall sparsity of the cubic
     schedule from ``1 - init_density`` at ``prune_begin`` to ``sparsity`` at
     ``prune_end`` (``Masking.pruning``);
  2. zero-cost neuroregeneration (``truncate_weights``): each sparse leaf drops
     ``ceil(r_t * nnz)`` active weights of smallest :math:`|w|` and grows as
     many, those of largest :math:`|g|` among the positions not kept, with
     ``r_t`` cosine-annealed per step from ``drop_fraction`` to 0.005 over
     ``end_step`` (``CosineDecay``).

  Gradients are masked and the inner optimizer's slots are zeroed at grown
  positions (the reference multiplies the momentum buffer by the mask each
  step). The reference stops one pruning iteration short of the final density
  (its last iteration still has a cubic factor ``(1 / n)^3``); here the
  schedule reaches ``sparsity`` at ``prune_end``, with exactly that many
  weights kept (the reference keeps ``|w| >`` the threshold, fewer on ties).

  Args:
    inner: the optimizer to wrap.
    sparsity: final overall sparsity in ``[0, 1)``.
    end_step: the last step at which the masks may change (GraNet: the
      training length), and the span of the regeneration-rate cosine.
    init_density: density at the start, in ``(0, 1]`` (GraNet: 0.5 sparse to
      sparse, 1.0 dense to sparse).
    update_every: steps between updates (GraNet ``update_frequency``).
    prune_begin: first step of the pruning schedule.
    prune_end: last pruning step (default: ``0.6875 * end_step``, GraNet's
      ``final_prune_epoch=110`` of 160 epochs).
    drop_fraction: the regeneration fraction: a float, cosine-annealed from
      it to 0.005 over ``end_step``, or an optax schedule used as it is.
    distribution: initial per-leaf budgets (``"erk"``, ``"er"``,
      ``"uniform"``).
    granularity: ``"element"`` or a block shape ``(bm, bn)``.
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
    >>> tx = sj.granet(optax.sgd(0.1), sparsity=0.9, end_step=20,
    ...                update_every=10, prune_end=10, init_density=1.0)
    >>> state, update = tx.init(params), jax.jit(tx.update)
    >>> for _ in range(11):
    ...   updates, state = update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> int(sj.get_masks(state)['w'].sum())
    20

  References:
    Liu et al, `Sparse Training via Boosting Pruning Plasticity with
    Neuroregeneration <https://arxiv.org/abs/2106.10404>`_, 2021
  """
  _validate.check_sparsity(sparsity, allow_schedule=False)
  end_step = _validate.check_positive_int(end_step, "end_step")
  update_every = _validate.check_positive_int(update_every, "update_every")
  _validate.check_fraction(init_density, "init_density", allow_zero=False,
                           allow_one=True)
  if prune_end is None:
    prune_end = int(end_step * 110 / 160)
  if prune_end <= prune_begin:
    raise ValueError(
        f"`prune_end` ({prune_end}) must be greater than `prune_begin` "
        f"({prune_begin}).")
  if 1.0 - init_density > sparsity:
    raise ValueError(
        f"`init_density` {init_density} is sparser than the final "
        f"`sparsity` {sparsity}.")
  # The last pruning update lands on the target: GraNet prunes on its update
  # steps only.
  prune_end = prune_begin + update_every * max(
      1, (prune_end - prune_begin) // update_every)
  target = optax.polynomial_schedule(
      init_value=1.0 - init_density, end_value=sparsity, power=3,
      transition_steps=prune_end - prune_begin, transition_begin=prune_begin)
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  rate_at = (drop_fraction if callable(drop_fraction) else
             _common.cosine_annealing(drop_fraction, 0.005, end_step))

  def update_masks(u: _method.MaskUpdate):
    items = _method.sparse_items(
        u, u.masks, _method.pooled(u, jax.tree.map(jnp.abs, u.params)),
        _method.pooled(u, jax.tree.map(jnp.abs, u.grads)))
    if not items:
      return u.masks, u.method_state
    # 1. Global magnitude pruning to the scheduled overall sparsity.
    units = sum(m.size for _, _, m, _, _ in items)
    keep_total = jnp.minimum(_masks.budget(units, target(u.count)),
                             sum(_common.count(m) for _, _, m, _, _ in items))
    pruned = _masks.topk([jnp.where(m, w, _common.NEG_INF)
                          for _, _, m, w, _ in items], keep_total,
                         scope="global")
    # 2. Regeneration: drop ceil(r * nnz) by |w|, grow as many by |grad|.
    rate = rate_at(u.count)
    out = {}
    for (i, _, m, w, g), a in zip(items, pruned, strict=True):
      a = jnp.where(u.count <= prune_end, a, m)
      nnz = _common.count(a)
      n = _common.ceil_count(rate, nnz)
      kept, grown = _common.keep_and_grow(a, w, g, nnz - n, n)
      out[i] = kept | grown
    return _method.rebuild(u, out), u.method_state

  method = _method.Method(
      profile=_method.INNER_FIRST, init=_method.random_init,
      update=update_masks, reset_grown_slots=True)
  return _engine.sparse_transform(
      inner, method, sparsity=1.0 - init_density, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=prune_begin + update_every, end_step=end_step,
      granularity=granularity)
