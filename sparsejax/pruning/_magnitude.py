# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Static sparsity and pruning to a schedule, as Optax wrappers.

Each transform wraps an inner optimizer, keeps its masks in the optimizer
state, and returns updates that leave every pruned weight exactly zero after
``optax.apply_updates`` (no extra call needed).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _tree
from sparsejax import _validate
from sparsejax import masks as _masks

__all__ = (
    "static_sparse",
    "magnitude_pruning",
    "random_pruning",
)


def _all_kept_init(i: _method.MaskInit):
  return _method.all_kept(i), ()


def static_sparse(
    inner: optax.GradientTransformation,
    *,
    sparsity: float | None = None,
    masks: Any = None,
    distribution: str | Callable[[Any], Any] = "erk",
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  """Trains with a fixed sparsity mask: random from a budget, or given.

  With ``sparsity``, ``init`` draws for every sparse leaf a uniformly random
  mask with exactly its budgeted number of kept entries (per-leaf budgets from
  ``distribution``). With ``masks`` (e.g. from :func:`sparsejax.snip` or a
  lottery ticket), those masks are used. The masks never change; gradients at
  pruned positions are dropped before the inner optimizer, and the updates set
  pruned weights to exactly zero.

  Args:
    inner: the optimizer to wrap.
    sparsity: overall target sparsity in ``[0, 1)``; mutually exclusive with
      ``masks``.
    masks: a pytree with the structure of the params: bool arrays (True =
      kept) or ``None`` for dense leaves.
    distribution: how ``sparsity`` is spread over leaves: ``"erk"``,
      ``"er"``, ``"uniform"`` or a callable ``params -> per-leaf
      sparsities`` (then ``sparsity`` is ``None``).
    granularity: ``"element"`` or a block shape ``(bm, bn)``: the random
      masks keep whole blocks (given ``masks`` are used as they are, so
      only ``"element"``).
    where: which leaves are sparse (see :mod:`sparsejax.distributions`);
      default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key for the random masks.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.ones((10, 10)), 'b': jnp.ones(10)}
    >>> tx = sj.static_sparse(optax.adam(1e-2), sparsity=0.9,
    ...                       distribution='uniform')
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> int((params['w'] != 0).sum()), int((params['b'] != 0).sum())
    (10, 10)

  References:
    Liu et al, `The Unreasonable Effectiveness of Random Pruning
    <https://arxiv.org/abs/2202.02643>`_, 2022
  """
  if masks is not None:
    if sparsity is not None:
      raise ValueError("Give either `sparsity` or `masks`, not both.")
    given = masks

    def check_given(params):
      _tree.check_same_structure(given, params, name="masks")
      for path, m in _tree.leaves_with_paths(given):
        if m is not None and jnp.asarray(m).dtype != jnp.bool_:
          raise ValueError(
              f"`masks` leaf '{path}' must be bool, got {jnp.asarray(m).dtype}.")

    def given_distribution(params):
      # Called first by the engine's init: validates the masks, and gives the
      # masked leaves a placeholder sparsity (their budget is their nnz).
      check_given(params)
      return jax.tree.map(lambda m: None if m is None else 0.0,
                          _tree.align(given, params, name="masks"),
                          is_leaf=_tree.is_none)

    def init(i: _method.MaskInit):
      # Given per entry of the params as the user wrote them (element units).
      return _tree.align(given, i.params, name="masks"), ()

    _validate.check_element_only(granularity, "static_sparse with `masks`",
                                 "the given masks are used as they are")
    return _engine.sparse_transform(
        inner, _method.Method(profile=_method.PRUNE, init=init),
        sparsity=None, distribution=given_distribution, where=where,
        specs=specs, seed=seed)
  if callable(sparsity):
    raise ValueError(
        "`sparsity` of static_sparse must be a float; use magnitude_pruning or "
        "random_pruning for a schedule.")
  if sparsity is None and not callable(distribution):
    raise ValueError("static_sparse needs `sparsity` or `masks`.")
  _validate.check_sparsity(sparsity, allow_none=callable(distribution))
  return _engine.sparse_transform(
      inner, _method.Method(profile=_method.PRUNE, init=_method.random_init),
      sparsity=sparsity, distribution=distribution, where=where,
      specs=specs, seed=seed, granularity=granularity)


def _end_step(sparsity: Any, begin_step: int, end_step: int | None):
  """A float sparsity prunes once, at ``begin_step``; a schedule keeps on.

  ``optax.inject_hyperparams`` evaluates a schedule itself and passes a traced
  value, so a traced sparsity is treated as scheduled. For a constant target
  that changes nothing: weights pruned to zero stay the smallest.
  """
  if end_step is not None:
    return end_step
  if callable(sparsity) or not _tree.is_concrete(sparsity):
    return None
  return begin_step


def magnitude_pruning(
    inner: optax.GradientTransformation,
    *,
    sparsity: Any,
    update_every: int = 100,
    begin_step: int = 0,
    end_step: int | None = None,
    scope: str = "layer",
    distribution: str | Callable[[Any], Any] = "uniform",
    where: Any = None,
    specs: Any = None,
    granularity: Any = "element",
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Prunes the weights of smallest magnitude, once or to a schedule.

  With a float ``sparsity`` the masks are computed once, at the first update
  (one-shot pruning of the weights as they are then). With an Optax schedule
  of the step count, the masks are recomputed every ``update_every`` steps
  from ``begin_step`` to ``end_step`` at the scheduled sparsity: gradual
  magnitude pruning. Zhu & Gupta's cubic ramp from ``s_i`` to ``s_f`` over
  ``n`` steps starting at ``t0`` is exactly::

    optax.polynomial_schedule(init_value=s_i, end_value=s_f, power=3,
                              transition_steps=n, transition_begin=t0)

  Pruned weights are exactly zero after every update; between mask updates
  the inner optimizer sees gradients masked to the kept weights.

  Args:
    inner: the optimizer to wrap.
    sparsity: target sparsity in ``[0, 1)``, or a schedule ``step ->
      sparsity``.
    update_every: steps between mask updates (a schedule only); with
      ``optax.inject_hyperparams`` list it in ``static_args``.
    begin_step: first mask-update step.
    end_step: last step at which masks may change (default: none for a
      schedule).
    scope: ``"layer"``: each leaf is pruned to its own budget (from
      ``distribution``); ``"global"``: one magnitude threshold over all
      sparse leaves, keeping ``round((1 - s) N)`` of their ``N`` weights.
    distribution: per-leaf budgets with ``scope="layer"``: ``"uniform"``,
      ``"er"``, ``"erk"`` or a callable ``params -> per-leaf sparsities``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    granularity: ``"element"`` or a block shape ``(bm, bn)`` (whole blocks of
      the last two dimensions, ranked by the sum of their magnitudes).
    seed: an int or a PRNG key (kept in the state; unused by the rule).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.arange(1., 17.).reshape(4, 4)}
    >>> tx = sj.magnitude_pruning(optax.sgd(0.0), sparsity=0.75)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> optax.apply_updates(params, updates)['w']
    Array([[ 0.,  0.,  0.,  0.],
           [ 0.,  0.,  0.,  0.],
           [ 0.,  0.,  0.,  0.],
           [13., 14., 15., 16.]], dtype=float32)

  References:
    Zhu & Gupta, `To prune, or not to prune: exploring the efficacy of pruning
    for model compression <https://arxiv.org/abs/1710.01878>`_, 2017
  """
  _validate.check_sparsity(sparsity)
  _validate.check_choice(scope, "scope", ("layer", "global"))
  if scope == "global" and distribution != "uniform":
    raise ValueError(
        "`distribution` must be 'uniform' with scope='global': the single "
        "threshold decides the per-leaf budgets.")

  def update_masks(u: _method.MaskUpdate):
    scores = _method.pooled(u, jax.tree.map(jnp.abs, u.params))
    if scope == "global":
      units = sum(x.size for x in jax.tree.leaves(scores))
      return _masks.topk(scores, _masks.budget(units, u.sparsity),
                         scope="global"), u.method_state
    return _masks.topk(scores, u.budgets), u.method_state

  method = _method.Method(profile=_method.PRUNE, init=_all_kept_init,
                          update=update_masks)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step,
      end_step=_end_step(sparsity, begin_step, end_step),
      granularity=granularity)


def random_pruning(
    inner: optax.GradientTransformation,
    *,
    sparsity: Any,
    update_every: int = 100,
    begin_step: int = 0,
    end_step: int | None = None,
    distribution: str | Callable[[Any], Any] = "uniform",
    where: Any = None,
    specs: Any = None,
    granularity: Any = "element",
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  """Prunes randomly chosen surviving weights, once or to a schedule.

  At each mask update, every sparse leaf keeps a uniformly random subset of
  its currently kept entries, of the budgeted size (so masks only shrink, as
  magnitude pruning's do). The control against which score-based pruning is
  judged.

  Args:
    inner: the optimizer to wrap.
    sparsity: target sparsity in ``[0, 1)``, or a schedule ``step ->
      sparsity``.
    update_every: steps between mask updates (a schedule only).
    begin_step: first mask-update step.
    end_step: last step at which masks may change.
    distribution: per-leaf budgets: ``"uniform"``, ``"er"``, ``"erk"`` or a
      callable ``params -> per-leaf sparsities``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    granularity: ``"element"`` or a block shape ``(bm, bn)``.
    seed: an int or a PRNG key.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.ones((8, 8))}
    >>> tx = sj.random_pruning(optax.sgd(0.1), sparsity=0.5)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)
    >>> int((optax.apply_updates(params, updates)['w'] != 0).sum())
    32

  References:
    Liu et al, `The Unreasonable Effectiveness of Random Pruning
    <https://arxiv.org/abs/2202.02643>`_, 2022
  """
  _validate.check_sparsity(sparsity)

  def update_masks(u: _method.MaskUpdate):
    # A unit of n entries scores n for being kept plus the sum of n uniform
    # draws in [0, 1): a random subset of the survivors.
    scores = jax.tree.map(
        lambda r, m, n: None if r is None else r + n * m.astype(r.dtype),
        _method.random_scores(u.key, u), u.masks,
        _method.pooled(u, jax.tree.map(jnp.ones_like, u.params)),
        is_leaf=_tree.is_none)
    return _masks.topk(scores, u.budgets), u.method_state

  method = _method.Method(profile=_method.PRUNE, init=_all_kept_init,
                          update=update_masks)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step,
      end_step=_end_step(sparsity, begin_step, end_step),
      granularity=granularity)
