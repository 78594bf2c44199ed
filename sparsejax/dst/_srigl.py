# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""SRigL: RigL with a constant fan-in per neuron and neuron ablation."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax.dst import _common


def _columns(x: jax.Array) -> jax.Array:
  """``[fan-in units, neurons]``: the output neurons are the last axis."""
  return x if x.ndim == 2 else x.reshape(-1, x.shape[-1])


def _kth_largest(values: jax.Array, k: int, upper: int) -> jax.Array:
  """The ``k``-th largest (0-based) of small non-negative integer values."""
  def body(_, bounds):
    lo, hi = bounds
    mid = (lo + hi + 1) // 2
    enough = jnp.sum(values >= mid, dtype=jnp.int32) >= k + 1
    return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid - 1)

  steps = max(1, int(upper).bit_length() + 1)
  lo, _ = lax.fori_loop(0, steps, body, (jnp.int32(0), jnp.int32(upper)))
  return lo


def _const_fan_in_init(i: _method.MaskInit):
  """Random masks with the same number of active units in every neuron."""
  def one(budget, scores):
    grid = _columns(scores)
    fan_in = budget // grid.shape[1]
    mask = _common.topk_columns(grid, jnp.full((grid.shape[1],), fan_in,
                                               jnp.int32))
    return mask.reshape(scores.shape)
  return _method.map_sparse(i, one, _method.random_scores(i.key, i)), ()


def srigl(
    inner: optax.GradientTransformation,
    *,
    sparsity: float,
    end_step: int,
    update_every: int = 100,
    drop_fraction: Any = 0.3,
    min_salient_weights_per_neuron: float = 0.3,
    ablation: bool = True,
    distribution: str | Callable[[Any], Any] = "erk",
    begin_step: int = 0,
    granularity: Any = "element",
    where: Any = None,
    specs: Any = None,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Structured RigL (SRigL): constant fan-in and dynamic neuron ablation.

  A neuron is an output unit: the last axis of a sparse leaf (a Flax kernel
  ``[in, out]`` or ``[h, w, in, out]``); its fan-in is its active entries over
  the other axes. Every neuron starts with the same fan-in ``budget //
  neurons`` at random. At each update (the schedule and drop fraction of
  :func:`rigl`), per sparse leaf, as ``RigLConstFanScheduler._rigl_step`` in
  calgaryml/condensed-sparsity with ``dynamic_ablation`` and
  ``use_sparse_const_fan_in_for_ablation``:

  1. ``n_prune = floor(f_t * nnz)``, ``n_keep = nnz - n_prune``, lowered to the
     number of nonzero weights if fewer;
  2. neuron ablation (every sparse leaf except the last one): a weight is
     salient if it is among the ``n_keep`` largest :math:`|w|` or the
     ``n_prune`` largest :math:`|g|` of the leaf; a neuron with fewer than
     ``max(1, int(gamma * budget // neurons))`` salient weights is ablated,
     the threshold lowered so that more than ``budget // dense_fan_in``
     neurons remain;
  3. fan-in ``k = budget // active neurons``; keep the ``n_keep`` largest
     :math:`|w|` of the active weights outside ablated neurons, at most ``k``
     per neuron (the largest); grow each active neuron back to exactly ``k``
     by largest :math:`|g|` among its positions not kept.

  Grown weights are 0, the inner optimizer's slots are zeroed there, and the
  optimizer does not step on a mask-update step (as :func:`rigl`). A leaf has
  ``k * active neurons <= budget`` nonzeros. The reference truncates each
  neuron to ``k`` by sorting its boolean mask (an arbitrary subset); this
  keeps the ``k`` largest weights. With block granularity a neuron is a column
  of blocks.

  Args:
    inner: the optimizer to wrap.
    sparsity: overall target sparsity in ``[0, 1)``.
    end_step: last step at which the mask may change.
    update_every: steps between mask updates.
    drop_fraction: ``alpha`` of the cosine drop fraction, or an optax
      schedule replacing the cosine one (still 0 from ``end_step`` on).
    min_salient_weights_per_neuron: ``gamma_sal`` (0.3).
    ablation: ablate neurons (``dynamic_ablation``).
    distribution: per-leaf budgets (``"erk"``).
    begin_step: first mask-update step.
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
    >>> params = {'w': jax.random.normal(jax.random.key(0), (16, 8))}
    >>> tx = sj.srigl(optax.adam(1e-2), sparsity=0.75, end_step=100,
    ...               update_every=1, distribution='uniform')
    >>> state = tx.init(params)
    >>> sj.get_masks(state)['w'].sum(axis=0)
    Array([4, 4, 4, 4, 4, 4, 4, 4], dtype=int32)

  References:
    Lasby et al, `Dynamic Sparse Training with Structured Sparsity
    <https://arxiv.org/abs/2305.02299>`_, 2024
  """
  _validate.check_sparsity(sparsity, allow_none=True, allow_schedule=False)
  end_step = _validate.check_step(end_step, "end_step", after=begin_step)
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  _validate.check_fraction(min_salient_weights_per_neuron,
                           "min_salient_weights_per_neuron", allow_one=True)
  schedule = _common.drop_schedule(drop_fraction, begin_step, end_step)
  gamma = float(min_salient_weights_per_neuron)

  def one_leaf(m, w, gr, budget, ablate_ok, fraction):
    shape = m.shape
    active, w, gr = _columns(m), _columns(w), _columns(gr)
    rows, neurons = active.shape
    nnz = _common.count(active)
    n_prune = _common.floor_count(fraction, nnz)
    n_keep = jnp.minimum(nnz - n_prune, _common.count(active & (w > 0)))
    n_prune = nnz - n_keep
    min_neurons = budget // rows
    if ablate_ok and gamma > 0 and min_neurons < neurons:
      salient = (_common.topk1(w, n_keep) | _common.topk1(gr, n_prune))
      counts = jnp.sum(salient, axis=0, dtype=jnp.int32)
      threshold = max(1, int(gamma * (budget // neurons)))
      threshold = jnp.minimum(threshold,
                              _kth_largest(counts, min_neurons, rows))
      ablated = counts < threshold
    else:
      ablated = jnp.zeros_like(active[0])
    fan_in = budget // jnp.maximum(neurons - _common.count(ablated), 1)
    live = active & ~ablated[None, :]
    kept = _common.topk1(jnp.where(live, w, _common.NEG_INF), n_keep)
    per_neuron = jnp.minimum(jnp.sum(kept, axis=0, dtype=jnp.int32), fan_in)
    kept = _common.topk_columns(jnp.where(kept, w, _common.NEG_INF),
                                per_neuron)
    need = jnp.where(ablated, 0,
                     fan_in - jnp.sum(kept, axis=0, dtype=jnp.int32))
    grown = _common.topk_columns(jnp.where(kept, _common.NEG_INF, gr), need)
    return (kept | grown).reshape(shape)

  def update_masks(u: _method.MaskUpdate):
    fraction = jnp.where(u.count >= end_step, 0.0, schedule(u.count))
    items = _method.sparse_items(
        u, u.masks, _method.pooled(u, jax.tree.map(jnp.abs, u.params)),
        _method.pooled(u, jax.tree.map(jnp.abs, u.grads)))
    return _method.rebuild(u, {
        i: one_leaf(m, w, g, b, ablation and j < len(items) - 1, fraction)
        for j, (i, b, m, w, g) in enumerate(items)}), u.method_state

  method = _method.Method(
      profile=_method.SKIP_INNER, init=_const_fan_in_init,
      update=update_masks, reset_grown_slots=True)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step, granularity=granularity)
