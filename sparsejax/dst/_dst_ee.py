# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""DST-EE: drop by magnitude, grow by gradient plus an exploration bonus."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import _engine
from sparsejax import _method
from sparsejax import _validate
from sparsejax.dst import _common


class DstEEState(NamedTuple):
  """Steps each unit has been active; the step of the last mask update."""

  active_steps: Any
  last_update: jax.Array


def dst_ee(inner: optax.GradientTransformation, *, sparsity: float,
           end_step: int, update_every: int = 100, drop_fraction: Any = 0.3,
           exploration: float = 1e-3, distribution: Any = "erk",
           begin_step: int = 0, granularity: Any = "element",
           where: Any = None, specs: Any = None,
           seed: int | jax.Array = 0) -> optax.GradientTransformationExtraArgs:
  r"""Dynamic sparse training balancing exploitation and exploration.

  RigL's schedule and drop (the cosine drop fraction, the ``n`` active units
  of smallest :math:`|w|`, no optimizer step on a mask-update step), with
  growth by the UCB-style score :math:`|g_i| + c \sqrt{\ln t / (N_i + 1)}`:
  the dense gradient plus a bonus for units that have rarely been active,
  :math:`N_i` the steps unit ``i`` has been active, ``t`` the step.

  The paper's exact function could not be checked (no public code): this is
  the UCB form its abstract describes, ``N_i + 1`` keeping the bonus finite.

  Every argument but ``exploration`` is :func:`rigl`'s (same meaning).

  Args:
    inner: the optimizer to wrap.
    exploration: ``c``, the weight of the exploration bonus.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jax.random.normal(jax.random.key(0), (20, 10))}
    >>> tx = sj.dst_ee(optax.adam(1e-2), sparsity=0.8, end_step=100,
    ...                update_every=1, distribution='uniform')
    >>> state = tx.init(params)
    >>> _, state = tx.update({'w': jnp.ones((20, 10))}, state, params)
    >>> int(sj.get_masks(state)['w'].sum())
    40

  References:
    Huang et al, `Dynamic Sparse Training via Balancing the
    Exploration-Exploitation Trade-off <https://arxiv.org/abs/2211.16667>`_,
    DAC 2023
  """
  _validate.check_sparsity(sparsity, allow_none=True, allow_schedule=False)
  end_step = _validate.check_step(end_step, "end_step", after=begin_step)
  _validate.check_fraction(drop_fraction, "drop_fraction", allow_one=True,
                           allow_schedule=True)
  _validate.check_nonnegative(exploration, "exploration")
  schedule = _common.drop_schedule(drop_fraction, begin_step, end_step)

  def init(i: _method.MaskInit):
    masks, _ = _method.random_init(i)
    steps = jax.tree.map(lambda m: jnp.zeros_like(m, jnp.float32), masks)
    return masks, DstEEState(steps, jnp.zeros([], jnp.int32))

  def update(u: _method.MaskUpdate):
    state = u.method_state
    since = (u.count - state.last_update).astype(jnp.float32)
    steps = jax.tree.map(lambda n, m: n + since * m, state.active_steps,
                         u.masks)
    log_t = jnp.log(jnp.maximum(u.count, 1).astype(jnp.float32))
    grow = jax.tree.map(
        lambda g, n: g + exploration * jnp.sqrt(log_t / (n + 1.0)),
        _method.pooled(u, jax.tree.map(jnp.abs, u.grads)), steps)
    fraction = jnp.where(u.count >= end_step, 0.0, schedule(u.count))
    new = _common.drop_and_grow(
        u, _method.pooled(u, jax.tree.map(jnp.abs, u.params)), grow, fraction)
    return new, DstEEState(steps, u.count)

  method = _method.Method(profile=_method.SKIP_INNER, init=init,
                          update=update, reset_grown_slots=True)
  return _engine.sparse_transform(
      inner, method, sparsity=sparsity, distribution=distribution,
      where=where, specs=specs, seed=seed, update_every=update_every,
      begin_step=begin_step, end_step=end_step, granularity=granularity)
