# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Movement pruning: keep the weights that move away from zero.

Magnitude pruning keeps the weights that are large; movement pruning keeps
those that training pushes away from zero, scored by the straight-through
gradient of a mask score, :math:`\\partial L / \\partial S = (\\partial L /
\\partial W') \\odot W`. The scores live in the transform's state and are
accumulated on every step from the gradients and weights the transform
receives, so no model change is needed.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _tree
from sparsejax import _validate
from sparsejax import masks as _masks

__all__ = ("movement_pruning",)


class MovementState(NamedTuple):
  """Movement scores, one per entry of every sparse leaf (``None`` for dense
  leaves): ``-sum_t g * w`` (hard) or the soft variant's trained scores."""

  scores: Any


def _zeros_scores(params: Any, where: Any) -> Any:
  rule = _tree.compile_where(where)
  params = _tree.unwrap_variables(params)
  return _tree.map_with_path(
      lambda path, p: jnp.zeros_like(p, dtype=jnp.float32)
      if p is not None and rule(path, p) else None, params)


def movement_pruning(
    inner: optax.GradientTransformation,
    *,
    sparsity: Any = None,
    variant: str = "hard",
    update_every: int = 100,
    begin_step: int = 0,
    end_step: int | None = None,
    threshold: float = 0.1,
    penalty: float = 1.0,
    score_lr: float = 1e-2,
    distribution: str | Callable[[Any], Any] = "uniform",
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Movement pruning (hard top-k to a schedule, or soft by threshold).

  Every step the movement scores of the sparse leaves are updated from the
  gradients ``g`` and weights ``w`` the transform receives:

  * ``variant="hard"``: :math:`S \leftarrow S - g \odot w`, i.e.
    :math:`S = -\sum_t g^{(t)} \odot w^{(t)}`; every ``update_every`` steps
    each leaf keeps the top-k scores among its surviving weights, at the
    (possibly scheduled, e.g. cubic) ``sparsity``.
  * ``variant="soft"``: the scores descend the paper's regularised
    objective with step ``score_lr``,
    :math:`S \leftarrow S - \eta (g \odot w + \lambda\, \sigma'(S))`
    (the penalty :math:`\lambda \sum \sigma(S)` with :math:`\lambda` =
    ``penalty``), and a weight survives while :math:`\sigma(S) >` ``threshold``;
    the final sparsity follows from :math:`\lambda` (``sparsity`` must be
    ``None``).

  As with :func:`sparsejax.magnitude_pruning`, pruned weights are exactly
  zero after every step, masks only shrink, and the inner optimizer sees
  gradients masked to the kept weights; pruned weights' scores stop moving
  (their :math:`w = 0`).

  Args:
    inner: the optimizer to wrap.
    sparsity: hard variant: target sparsity in ``[0, 1)`` (pruned once, at
      ``begin_step``) or a schedule ``step -> sparsity``; soft: ``None``.
    variant: ``"hard"`` or ``"soft"``.
    update_every: steps between mask updates.
    begin_step: first mask-update step.
    end_step: last step at which masks may change.
    threshold: soft variant: the threshold :math:`\tau` on
      :math:`\sigma(S)`, in ``(0, 1)``; scores start at 0
      (:math:`\sigma = 0.5`).
    penalty: soft variant: :math:`\lambda`, the weight of the sparsity
      penalty on :math:`\sigma(S)`.
    score_lr: soft variant: the scores' learning rate :math:`\eta`.
    distribution: hard variant: per-leaf budgets (``"uniform"``, ``"er"``,
      ``"erk"`` or a callable).
    granularity: ``"element"`` or, for the hard variant, a block shape
      ``(bm, bn)``: scores are summed per block and whole blocks are kept.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key (kept in the state; unused by the rule).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.array([[3.0, 0.1]])}
    >>> tx = sj.movement_pruning(optax.sgd(0.0), sparsity=0.5)
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.array([[1.0, -1.0]])}  # 3.0 shrinks, 0.1 grows
    >>> updates, state = tx.update(grads, state, params)
    >>> optax.apply_updates(params, updates)['w']  # magnitude would keep 3.0
    Array([[0. , 0.1]], dtype=float32)

  References:
    Sanh et al, `Movement Pruning: Adaptive Sparsity by Fine-Tuning
    <https://arxiv.org/abs/2005.07683>`_, 2020
  """
  if variant not in ("hard", "soft"):
    raise ValueError(f"`variant` must be 'hard' or 'soft', got {variant!r}.")
  if variant == "soft":
    if sparsity is not None:
      raise ValueError(
          "`sparsity` must be None with variant='soft': the penalty decides "
          "the sparsity.")
    # Traced values (optax.inject_hyperparams) are not checked.
    concrete = _tree.is_concrete
    if concrete(threshold) and not 0.0 < threshold < 1.0:
      raise ValueError(f"`threshold` must be in (0, 1), got {threshold!r}.")
    _validate.check_nonnegative(penalty, "penalty")
    if concrete(score_lr) and not score_lr > 0:
      raise ValueError(f"`score_lr` must be > 0, got {score_lr!r}.")
    if distribution != "uniform":
      raise ValueError("`distribution` is for the hard variant only.")
    _validate.check_element_only(
        granularity, "the soft movement variant",
        "it thresholds the score of every entry")
  else:
    _validate.check_sparsity(sparsity)

  def init(i: _method.MaskInit):
    return _method.all_kept(i), MovementState(
        _zeros_scores(i.params, i.sparse_rule))

  def accumulate(grads, params, masks, state):
    del masks

    def one(s, g, w):
      if s is None:
        return None
      step = (g * w).astype(jnp.float32)
      if variant == "hard":
        return s - step
      sig = jax.nn.sigmoid(s)
      return s - score_lr * (step + penalty * sig * (1.0 - sig))

    return grads, MovementState(jax.tree.map(one, state.scores, grads,
                                             params, is_leaf=_tree.is_none))

  def update_masks(u: _method.MaskUpdate):
    if variant == "soft":
      masks = jax.tree.map(
          lambda m, s: None if m is None else
          m & (jax.nn.sigmoid(s) > threshold),
          u.masks, u.method_state.scores, is_leaf=_tree.is_none)
      return masks, u.method_state
    # Survivors only: pruned weights score below every kept one.
    live = jax.tree.map(
        lambda m, s: None if m is None else jnp.where(m, u.pool(s), -jnp.inf),
        u.masks, u.method_state.scores, is_leaf=_tree.is_none)
    return _masks.topk(live, u.budgets), u.method_state

  # A float sparsity prunes once; a schedule (or a value traced by
  # optax.inject_hyperparams, which evaluates schedules itself) keeps on.
  end = end_step
  if variant == "hard" and end is None and not callable(sparsity) and (
      _tree.is_concrete(sparsity)):
    end = begin_step
  method = _method.Method(profile=_method.PRUNE, init=init,
                          update=update_masks, before_step=accumulate)
  return _engine.sparse_transform(
      inner, method, sparsity=0.0 if variant == "soft" else sparsity,
      distribution=distribution, where=where, specs=specs, seed=seed,
      update_every=update_every, begin_step=begin_step, end_step=end,
      granularity=granularity)
