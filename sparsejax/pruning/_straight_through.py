# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Straight-through sparse training: dense weights, sparse forward pass.

These transforms keep every weight (the updates do not zero pruned entries)
and keep a mask in the state that the forward pass applies through
:func:`sparsejax.forward_params`, whose gradient is the identity: gradients
reach pruned weights, which can therefore come back. Masks are recomputed
from the weights after each step's update, so the state always holds the
masks of the weights the next forward pass sees. At the end of training,
``sj.forward_params(params, state)`` is the sparse model.
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
from sparsejax import distributions as _distributions
from sparsejax import masks as _masks

__all__ = (
    "ste",
    "top_kast",
    "nm_sparse",
)


class TopKastState(NamedTuple):
  """Top-KAST's backward set: bool masks (``None`` for dense leaves) of the
  entries that receive gradients, a superset of the forward masks."""

  backward: Any


def _live(params: Any, budgets: Any) -> Any:
  """``|params|`` for the sparse leaves, ``None`` for the dense ones."""
  return jax.tree.map(
      lambda p, b: None if b is None else jnp.abs(_tree.unwrap_variables(p)),
      params, budgets, is_leaf=_tree.is_none)


def _magnitude_masks(params: Any, budgets: Any, scope: str,
                     pool: Any = lambda x: x) -> Any:
  scores = jax.tree.map(lambda x: None if x is None else pool(x),
                        _live(params, budgets), is_leaf=_tree.is_none)
  if scope == "global":
    total = sum(b for b in jax.tree.leaves(budgets))
    return _masks.topk(scores, total, scope="global")
  return _masks.topk(scores, budgets)


def _check_scope(scope: str, distribution: Any) -> None:
  if scope not in ("layer", "global"):
    raise ValueError(f"`scope` must be 'layer' or 'global', got {scope!r}.")
  if scope == "global" and distribution != "uniform":
    raise ValueError(
        "`distribution` must be 'uniform' with scope='global': the single "
        "threshold decides the per-leaf budgets.")


def ste(
    inner: optax.GradientTransformation,
    *,
    sparsity: Any,
    update_every: int = 1,
    begin_step: int = 0,
    end_step: int | None = None,
    scope: str = "layer",
    distribution: str | Callable[[Any], Any] = "uniform",
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Straight-through magnitude pruning: dense weights, top-k forward.

  The forward pass uses :math:`W \odot M` with :math:`M = \mathrm{TopK}(|W|)`
  (:func:`sparsejax.forward_params`); the backward pass gives the dense
  gradient to every weight, so the inner optimizer updates all of ``W`` and
  a pruned weight that grows large enough comes back. Masks are recomputed
  from the updated weights every ``update_every`` steps, at the (possibly
  scheduled) sparsity.

  Args:
    inner: the optimizer to wrap.
    sparsity: target sparsity in ``[0, 1)``, or a schedule ``step ->
      sparsity``.
    update_every: steps between mask updates.
    begin_step: first mask-update step.
    end_step: last step at which masks may change (``None``: no end).
    scope: ``"layer"`` (each leaf to its budget) or ``"global"`` (one
      magnitude threshold over all sparse leaves).
    distribution: per-leaf budgets: ``"uniform"``, ``"er"``, ``"erk"`` or a
      callable ``params -> per-leaf sparsities``.
    granularity: ``"element"`` or a block shape ``(bm, bn)``: magnitudes
      are summed per block and whole blocks are kept.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: the axes of each leaf (see :func:`sparsejax.leaf_specs`): ``None``
      infers them from the params at ``init``; an NNX model or a spec tree
      makes budgets, selections, N:M groups and blocks per layer slice and
      on the ``fan_in x fan_out`` view of attention and stacked kernels.
    seed: an int or a PRNG key (kept in the state; unused by the rule).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.arange(1., 17.).reshape(4, 4)}
    >>> tx = sj.ste(optax.sgd(0.1), sparsity=0.75)
    >>> state = tx.init(params)
    >>> loss = lambda p: jnp.sum(sj.forward_params(p, state)['w'])
    >>> grads = jax.grad(loss)(params)  # reaches every weight
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> int((params['w'] != 0).sum()), int(sj.masks.nnz(
    ...     sj.forward_params(params, state)['w']))
    (16, 4)

  References:
    Bengio et al, `Estimating or Propagating Gradients Through Stochastic
    Neurons for Conditional Computation <https://arxiv.org/abs/1308.3432>`_,
    2013
  """
  _validate.check_sparsity(sparsity)
  _check_scope(scope, distribution)
  block_shape = _validate.check_granularity(granularity)

  def init(i: _method.MaskInit):
    return _magnitude_masks(i.params, i.budgets, scope, i.pool), ()

  def update_masks(u: _method.MaskUpdate):
    return (_magnitude_masks(u.params, u.budgets, scope, u.pool),
            u.method_state)

  method = _method.Method(profile=_method.STRAIGHT_THROUGH, init=init,
                          update=update_masks)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step,
      granularity=block_shape or "element")


def top_kast(
    inner: optax.GradientTransformation,
    *,
    forward_sparsity: float,
    backward_sparsity: float,
    penalty: float = 1e-4,
    update_every: int = 1,
    distribution: str | Callable[[Any], Any] = "uniform",
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Top-KAST: a sparse forward set inside a larger backward set.

  The forward set :math:`A = \mathrm{TopK}(|\theta|, D)` (density
  ``D = 1 - forward_sparsity``) gives the forward parameters
  (:func:`sparsejax.forward_params`); the backward set
  :math:`B = \mathrm{TopK}(|\theta|, D + M) \supseteq A` (density
  ``1 - backward_sparsity``) receives the gradients, computed through the
  forward-sparse parameters; entries outside ``B`` get no gradient. The
  exploration penalty is an L2 term :math:`\frac{\lambda}{2} \sum_i c_i
  \theta_i^2` with :math:`c_i = 1` on ``A``, :math:`1 / D` on
  :math:`B \setminus A` and 0 elsewhere: it makes weights that are not used
  in the forward pass shrink faster, so entering ``A`` takes a sustained
  gradient. Both sets are recomputed from the updated weights every
  ``update_every`` steps.

  Args:
    inner: the optimizer to wrap.
    forward_sparsity: sparsity of the forward set, in ``[0, 1)``.
    backward_sparsity: sparsity of the backward set, in
      ``[0, forward_sparsity]``.
    penalty: the coefficient :math:`\lambda` of the exploration penalty.
    update_every: steps between updates of the two sets.
    distribution: per-leaf budgets of both sets: ``"uniform"``, ``"er"`` or
      ``"erk"``.
    granularity: ``"element"`` only (its backward set is chosen per entry;
      anything else is an error).
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
    >>> params = {'w': jnp.arange(1., 17.).reshape(4, 4)}
    >>> tx = sj.top_kast(optax.sgd(1.0), forward_sparsity=0.75,
    ...                  backward_sparsity=0.5, penalty=0.0)
    >>> state = tx.init(params)
    >>> grads = {'w': jnp.ones((4, 4))}
    >>> updates, state = tx.update(grads, state, params)
    >>> (updates['w'] != 0).astype(int)  # only the backward set moves
    Array([[0, 0, 0, 0],
           [0, 0, 0, 0],
           [1, 1, 1, 1],
           [1, 1, 1, 1]], dtype=int32)
    >>> int(sj.masks.nnz(sj.forward_params(params, state)['w']))
    4

  References:
    Jayakumar et al, `Top-KAST: Top-K Always Sparse Training
    <https://arxiv.org/abs/2106.03517>`_, 2020
  """
  _validate.check_element_only(granularity, "top_kast",
                               "its backward set is chosen per entry")
  for name, value in (("forward_sparsity", forward_sparsity),
                      ("backward_sparsity", backward_sparsity)):
    if callable(value):
      raise ValueError(f"`{name}` must be a float, got a callable.")
    if _tree.is_concrete(value):  # else traced by optax.inject_hyperparams
      _validate.check_fraction(value, name)
  if _tree.is_concrete(forward_sparsity) and _tree.is_concrete(
      backward_sparsity) and backward_sparsity > forward_sparsity:
    raise ValueError(
        f"`backward_sparsity` ({backward_sparsity}) must not exceed "
        f"`forward_sparsity` ({forward_sparsity}): the backward set contains "
        "the forward set.")
  if callable(distribution):
    raise ValueError(
        "`distribution` of top_kast must be 'uniform', 'er' or 'erk'.")
  _validate.check_nonnegative(penalty, "penalty")

  def backward_set(params, sparse_rule):
    dist = _distributions.resolve(distribution, backward_sparsity,
                                  where=sparse_rule)
    budgets = _engine.budgets_for(
        _engine.leaf_sparsities(dist, params), params, None)
    return _masks.topk(_live(params, budgets), budgets)

  def init(i: _method.MaskInit):
    return (_masks.topk(_live(i.params, i.budgets), i.budgets),
            TopKastState(backward_set(i.params, i.sparse_rule)))

  def update_masks(u: _method.MaskUpdate):
    return (_masks.topk(_live(u.params, u.budgets), u.budgets),
            TopKastState(backward_set(u.params,
                                      _method.budgeted_rule(u.budgets))))

  def penalised(grads, params, masks, state):
    def one(g, p, a, b):
      if a is None:
        return g
      # 1 / D with D the leaf's forward density.
      inv_density = a.size / jnp.maximum(jnp.sum(a, dtype=jnp.int32), 1)
      coef = jnp.where(a, 1.0, jnp.where(b, inv_density, 0.0))
      g = g + (penalty * coef * p).astype(g.dtype)
      return jnp.where(b, g, jnp.zeros_like(g))

    return jax.tree.map(one, grads, params, masks, state.backward,
                        is_leaf=_tree.is_none), state

  method = _method.Method(profile=_method.STRAIGHT_THROUGH, init=init,
                          update=update_masks, before_step=penalised)
  return _engine.sparse_transform(
      inner, method, sparsity=forward_sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every)


def nm_sparse(
    inner: optax.GradientTransformation,
    *,
    n: int = 2,
    m: int = 4,
    axis: int = -2,
    sr_ste: float = 2e-4,
    decay: Any = None,
    update_every: int = 1,
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""N:M sparse training with SR-STE and decaying masks (MDGF).

  Every group of ``m`` consecutive entries along ``axis`` (default: the
  input dimension of a Flax kernel ``[in, out]``) keeps its ``n``
  largest-magnitude weights in the forward pass
  (:func:`sparsejax.masks.n_m`, recomputed from the updated weights every
  ``update_every`` steps). Weights stay dense and receive the
  straight-through gradient plus SR-STE's sparse-refined decay of the pruned
  ones:

  .. math::

    g_W = g(\widetilde W) + \lambda_W (1 - M) \odot W.

  With ``decay`` (a float or a schedule of the step count giving
  :math:`\beta_t`), the forward pass uses
  :math:`W \odot (M + \beta_t (1 - M))` (Progressive Gradient Flow's MDGF):
  at :math:`\beta = 1` the dense model, at :math:`\beta = 0` hard N:M. A
  linear decay over ``T`` steps is ``optax.linear_schedule(1.0, 0.0, T)``,
  an exponential one ``optax.exponential_decay(1.0, 1, math.exp(-c))``.

  Args:
    inner: the optimizer to wrap.
    n: entries kept per group, ``1 <= n <= m``.
    m: group size; must divide the size of ``axis`` of every sparse leaf.
    axis: the axis along which groups are formed.
    sr_ste: the decay :math:`\lambda_W` of pruned weights (0 for plain STE).
    decay: ``None`` (hard masks), or a float or schedule :math:`\beta_t`.
    update_every: steps between mask updates.
    granularity: ``"element"`` only (the N:M groups are the structure;
      anything else is an error).
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
    >>> params = {'w': jnp.array([[1.], [-4.], [3.], [2.]])}
    >>> tx = sj.nm_sparse(optax.sgd(1.0), n=2, m=4, sr_ste=0.5)
    >>> state = tx.init(params)
    >>> sj.forward_params(params, state)['w'][:, 0]
    Array([ 0., -4.,  3.,  0.], dtype=float32)
    >>> grads = {'w': jnp.zeros((4, 1))}
    >>> updates, state = tx.update(grads, state, params)
    >>> updates['w'][:, 0]  # -(0 + 0.5 * (1 - M) * W)
    Array([-0.5, -0. , -0. , -1. ], dtype=float32)

  References:
    Zhou et al, `Learning N:M Fine-grained Structured Sparse Neural Networks
    From Scratch <https://arxiv.org/abs/2102.04010>`_, 2021

    Bambhaniya et al, `Progressive Gradient Flow for Robust N:M Sparsity
    Training in Transformers <https://arxiv.org/abs/2402.04744>`_, 2024
  """
  _validate.check_element_only(granularity, "nm_sparse",
                               "the N:M groups are the structure")
  if not (isinstance(n, int) and isinstance(m, int) and m >= 1
          and 1 <= n <= m):
    raise ValueError(
        f"`n` and `m` must be ints with 1 <= n <= m, got n={n!r}, m={m!r}.")
  _validate.check_nonnegative(sr_ste, "sr_ste")
  if (decay is not None and not callable(decay) and _tree.is_concrete(decay)
      and not 0 <= decay <= 1):
    raise ValueError(f"`decay` must be in [0, 1] or a schedule, got "
                     f"{decay!r}.")

  def n_m_masks(params, budgets):
    return _masks.n_m(_live(params, budgets), n, m, axis=axis)

  def init(i: _method.MaskInit):
    return n_m_masks(i.params, i.budgets), ()

  def update_masks(u: _method.MaskUpdate):
    return n_m_masks(u.params, u.budgets), u.method_state

  def sr_ste_decay(grads, params, masks, method_state):
    return jax.tree.map(
        lambda g, p, k: g if k is None else
        g + (sr_ste * jnp.where(k, 0, p)).astype(g.dtype),
        grads, params, masks, is_leaf=_tree.is_none), method_state

  method = _method.Method(profile=_method.STRAIGHT_THROUGH, init=init,
                          update=update_masks, before_step=sr_ste_decay,
                          pruned_scale=decay)
  return _engine.sparse_transform(
      inner, method, sparsity=1.0 - n / m, distribution="uniform",
      where=where, specs=specs, seed=seed, update_every=update_every)
