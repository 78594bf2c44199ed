# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse momentum (SNFS): momentum-driven redistribution and growth."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax import _tree
from sparsejax.dst import _common


class SnfsState(NamedTuple):
  """Method state of :func:`snfs`.

  Attributes:
    shares: float32 ``[number of param leaves]``, in the order of
      ``jax.tree.leaves(params)``: each sparse leaf's share of the regrowth
      at the last mask update (mean absolute momentum of its active weights
      over the sum of those means; the shares sum to 1), 0 for dense leaves
      and before the first update.
  """

  shares: jax.Array


def momentum_of(inner_state: Any) -> Any:
  """The momentum SNFS reads from an inner optimizer state.

  As ``Masking.get_momentum_for_weight`` in TimDettmers/sparse_learning: for
  Adam-like states (``ScaleByAdamState``: ``mu`` and ``nu``) it is
  ``mu / (sqrt(nu) + 1e-8)``; for SGD with momentum (``TraceState``) the
  ``trace``; for a state with ``mu`` only (Lion) ``mu``. The first such state
  found in the (possibly wrapped) inner state is used.

  Raises:
    ValueError: if the inner state has no momentum.
  """
  def has(x, *names):
    fields = getattr(x, "_fields", ())  # NamedTuple states
    return all(n in fields for n in names)

  def is_leaf(x):
    return has(x, "mu") or has(x, "trace")

  for node in jax.tree.leaves(inner_state, is_leaf=is_leaf):
    if has(node, "mu", "nu"):
      return jax.tree.map(
          lambda m, v: None if m is None else m / (jnp.sqrt(v) + 1e-8),
          node.mu, node.nu, is_leaf=_tree.is_none)
    if has(node, "trace"):
      return node.trace
    if has(node, "mu"):
      return node.mu
  raise ValueError(
      "snfs grows by momentum: the inner optimizer needs a momentum slot "
      "(Adam-like `mu`/`nu`, SGD `trace` with momentum > 0, or Lion `mu`).")


def redistribute(shares: jax.Array, removed: jax.Array,
                 capacity: jax.Array, *, cap: float = 0.99,
                 iterations: int = 100) -> jax.Array:
  """Integer regrowth per layer from shares, capped, residual redistributed.

  The loop of ``Masking.calc_growth_redistribution``: each layer asks for
  ``share * total_removed``; a layer above ``cap * capacity`` is capped and
  the excess is spread evenly over all layers, until nothing is left over.
  The real-valued result is then made integer by largest remainders, among
  layers that stay within the cap, so that exactly ``total_removed`` weights
  regrow (the reference floors each layer and corrects the total over later
  updates with a smoothed residual).

  Args:
    shares: float ``[L]`` summing to 1.
    removed: int ``[L]``, weights removed per layer this update.
    capacity: int ``[L]``, free positions per layer after removal.
    cap: the fraction of a layer's free positions it may regrow.
    iterations: bound on the residual loop.

  Returns:
    int32 ``[L]``: the regrowth per layer; it sums to ``removed.sum()``
    whenever the layers have the room.
  """
  total = jnp.sum(removed).astype(jnp.float32)
  limit = cap * capacity.astype(jnp.float32)
  n = shares.shape[0]

  def body(_, carry):
    regrowth, mean_residual = carry
    want = regrowth + mean_residual
    capped = jnp.minimum(want, limit)
    residual = jnp.sum(want - capped)
    return capped, residual / n

  regrowth, _ = lax.fori_loop(
      0, iterations, body,
      (shares.astype(jnp.float32) * total, jnp.zeros([], jnp.float32)))
  base = jnp.floor(regrowth)
  frac = regrowth - base
  base = base.astype(jnp.int32)
  deficit = jnp.sum(removed) - jnp.sum(base)
  room = (base + 1).astype(jnp.float32) <= limit
  # Rank layers with room by fractional part (ties: lower index first).
  score = jnp.where(room, frac, -1.0)
  order = jnp.argsort(-score, stable=True)
  rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n,
                                                             dtype=jnp.int32))
  extra = (rank < deficit) & room
  return base + extra.astype(jnp.int32)


def snfs(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    end_step: int,
    update_every: int = 100,
    drop_fraction: Any = 0.5,
    distribution: str | Callable[[Any], Any] = "uniform",
    cap: float = 0.99,
    begin_step: int = 0,
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Sparse momentum (SNFS): prune by magnitude, regrow by momentum.

  Every ``update_every`` steps (SNFS: at the end of every epoch), after the
  optimizer step, as ``Masking.truncate_weights`` in
  TimDettmers/sparse_learning with its defaults (``prune='magnitude'``,
  ``redistribution='momentum'``, ``growth='momentum'``):

  1. the share of each sparse leaf is the mean :math:`|m|` over its active
     weights, normalised to sum to 1, where ``m`` is the inner optimizer's
     momentum (see :func:`momentum_of`: ``mu / (sqrt(nu) + 1e-8)`` for Adam,
     the ``trace`` for SGD with momentum);
  2. each leaf removes ``ceil(p_t * nnz)`` active weights of smallest
     :math:`|w|`, where ``p_t`` is the prune rate, cosine-annealed per step
     from ``drop_fraction`` to 0.005 over ``end_step``
     (``CosineDecay``); a leaf less than 20% sparse whose share is above
     average removes at most its sparsity (``adjust_prune_rate``);
  3. the removed total is regrown across leaves in proportion to the shares,
     each capped at ``cap`` of its free positions, the excess redistributed
     (:func:`redistribute`);
  4. each leaf grows its regrowth at the positions of largest :math:`|m|`
     that are not kept; new weights are 0.

  Pruned weights keep accumulating momentum from their dense gradients (the
  reference masks the weights, not the optimizer's buffers), so the inner
  optimizer receives unmasked gradients and its slots are not reset. Each
  leaf's number of nonzeros therefore changes across updates while the total
  is kept exactly (the reference's rounding leaves it off by a few weights,
  corrected later).

  Args:
    inner: the optimizer to wrap; it must keep a momentum.
    sparsity: overall target sparsity in ``[0, 1)``.
    update_every: steps between mask updates (the steps of one epoch).
    end_step: the last step at which the masks may change (SNFS: the
      training length), and the span of the prune-rate cosine.
    drop_fraction: the prune rate: a float, cosine-annealed from it to
      0.005 (the reference's ``eta_min``) over ``end_step``, or an optax
      schedule used as it is.
    distribution: initial per-leaf budgets (SNFS: ``"uniform"``).
    cap: fraction of a leaf's free positions it may regrow (0.99).
    begin_step: first mask-update step. The reference's first update ends
      the first epoch: ``begin_step=update_every``.
    granularity: ``"element"`` or a block shape ``(bm, bn)``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key for the initial random mask.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`. Its
    ``method_state`` is a :class:`SnfsState`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'a': jax.random.normal(jax.random.key(0), (10, 10)),
    ...           'b': jax.random.normal(jax.random.key(1), (10, 10))}
    >>> tx = sj.snfs(optax.sgd(0.1, momentum=0.9), sparsity=0.8,
    ...              update_every=1, begin_step=0, end_step=10)
    >>> state = tx.init(params)
    >>> grads = {'a': jnp.ones((10, 10)), 'b': 3 * jnp.ones((10, 10))}
    >>> _, state = tx.update(grads, state, params)
    >>> masks = sj.get_masks(state)
    >>> int(masks['a'].sum()), int(masks['b'].sum())
    (15, 25)

  References:
    Dettmers & Zettlemoyer, `Sparse Networks from Scratch: Faster Training
    without Losing Performance <https://arxiv.org/abs/1907.04840>`_, 2019
  """
  _validate.check_sparsity(sparsity, allow_none=True, allow_schedule=False)
  update_every = _validate.check_positive_int(update_every, "update_every")
  end_step = _validate.check_positive_int(end_step, "end_step")
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  _validate.check_fraction(cap, "cap", allow_zero=False, allow_one=True)
  rate_at = (drop_fraction if callable(drop_fraction) else
             _common.cosine_annealing(drop_fraction, 0.005, end_step))

  def update_masks(u: _method.MaskUpdate):
    momentum = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32),
                            u.to_view(momentum_of(u.inner_state)))
    items = _method.sparse_items(u, u.masks, _method.pooled(u, u.params),
                                 _method.pooled(u, momentum))
    if not items:
      return u.masks, u.method_state
    active = [m for _, _, m, _, _ in items]
    mom = [jnp.abs(v) for *_, v in items]
    weight = [jnp.abs(p) for _, _, _, p, _ in items]
    nnz = jnp.stack([_common.count(a) for a in active])
    size = jnp.asarray([a.size for a in active], jnp.int32)
    means = jnp.stack([
        jnp.sum(jnp.where(a, v, 0.0)) / jnp.maximum(n, 1)
        for a, v, n in zip(active, mom, nnz, strict=True)])
    total = jnp.sum(means)
    shares = jnp.where(total > 0, means / jnp.where(total > 0, total, 1.0),
                       1.0 / len(items))
    rate = rate_at(u.count)
    sparsity_l = (size - nnz).astype(jnp.float32) / size
    growing = (sparsity_l < 0.2) & (shares > 1.0 / len(items))
    rates = jnp.where(growing, jnp.minimum(sparsity_l, rate), rate)
    removed = _common.ceil_count(rates, nnz)
    kept = [_common.topk1(jnp.where(a, w, _common.NEG_INF), n - r)
            for a, w, n, r in zip(active, weight, nnz, removed, strict=True)]
    capacity = size - nnz + removed
    regrowth = redistribute(shares, removed, capacity, cap=cap)
    out = {}
    for j, (i, *_rest) in enumerate(items):
      grown = _common.topk1(jnp.where(kept[j], _common.NEG_INF, mom[j]),
                            regrowth[j])
      out[i] = kept[j] | grown
    index = jnp.asarray([i for i, *_r in items], jnp.int32)
    all_shares = u.method_state.shares.at[index].set(shares)
    return _method.rebuild(u, out), SnfsState(shares=all_shares)

  def init(i: _method.MaskInit):
    masks, _ = _method.random_init(i)
    return masks, SnfsState(shares=jnp.zeros(
        (len(jax.tree.leaves(i.params)),), jnp.float32))

  # Pruned weights keep their momentum: dense gradients, no slot resets.
  method = _method.Method(
      profile=_method.INNER_FIRST, init=init, update=update_masks,
      dense_gradients=True)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step, granularity=granularity)
