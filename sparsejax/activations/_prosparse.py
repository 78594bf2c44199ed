# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""ProSparse: progressive L1 activation penalty and FATReLU."""

from collections.abc import Sequence
import numbers

import jax
import jax.numpy as jnp
import optax

from sparsejax import _validate


def l1_penalty(activations) -> jax.Array:
  """L1 activation penalty: the sum over leaves of the mean `|a|`.

  ProSparse adds `lambda * L1` on the FFN intermediate activations to the
  loss so that ReLU-fied models become sparser. Taking the mean within each
  leaf makes the penalty independent of batch size and width; multiply by a
  coefficient from :func:`prosparse_schedule`.

  Args:
    activations: an array or a pytree of arrays (e.g. the sown hidden
      activations of every layer).

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.l1_penalty({"a": jnp.array([1., -3.]), "b": jnp.ones(4)})
    Array(3., dtype=float32)

  References:
    Song et al, `ProSparse: Introducing and Enhancing Intrinsic Activation
    Sparsity within Large Language Models
    <https://arxiv.org/abs/2402.13516>`_, 2024.
  """
  leaves = jax.tree.leaves(activations)
  if not leaves:
    raise ValueError("activations must contain at least one array.")
  return sum(jnp.mean(jnp.abs(a.astype(jnp.float32))) for a in leaves)


def prosparse_schedule(peak_values: Sequence[float],
                       stage_steps: Sequence[int], *,
                       init_value: float = 0.0) -> optax.Schedule:
  """ProSparse's sine-ramped, stage-wise L1 coefficient schedule.

  Stage `k` (of length `T_k = stage_steps[k]`) moves the coefficient from the
  previous stage's value `lam_{k-1}` (`init_value` before the first stage)
  to `lam_k = peak_values[k]` along a quarter sine,
  `lam = lam_{k-1} + (lam_k - lam_{k-1}) * sin(pi/2 * tau / T_k)`, with
  `tau` the step within the stage; after the last stage it stays at the last
  peak. Like every Optax schedule it maps a step count to a value and works
  under `jax.jit`.

  Args:
    peak_values: the coefficient reached at the end of each stage.
    stage_steps: the positive length of each stage, in steps.
    init_value: the coefficient at step 0.

  Returns:
    An `optax.Schedule`.

  Examples:
    >>> from sparsejax import activations
    >>> sched = activations.prosparse_schedule([1e-2, 5e-2], [100, 100])
    >>> [round(float(sched(t)), 4) for t in (0, 50, 100, 150, 200, 900)]
    [0.0, 0.0071, 0.01, 0.0383, 0.05, 0.05]

  References:
    Song et al, `ProSparse: Introducing and Enhancing Intrinsic Activation
    Sparsity within Large Language Models
    <https://arxiv.org/abs/2402.13516>`_, 2024.
  """
  peaks = [float(v) for v in peak_values]
  steps = list(stage_steps)
  if not peaks or len(peaks) != len(steps):
    raise ValueError("peak_values and stage_steps must be non-empty and of "
                     f"equal length, got {len(peaks)} and {len(steps)}.")
  for i, t in enumerate(steps):
    if not isinstance(t, numbers.Integral) or isinstance(t, bool) or t <= 0:
      raise ValueError(f"stage_steps[{i}] must be a positive int, got {t!r}.")
  starts = [0]
  for t in steps:
    starts.append(starts[-1] + int(t))
  lows = [float(init_value)] + peaks[:-1]

  def schedule(count):
    count = jnp.asarray(count, jnp.float32)
    value = jnp.asarray(peaks[-1], jnp.float32)
    # Walk the stages from the last: the first one containing `count` wins.
    for k in reversed(range(len(peaks))):
      tau = jnp.clip(count - starts[k], 0, steps[k])
      ramp = lows[k] + (peaks[k] - lows[k]) * jnp.sin(
          jnp.pi / 2 * tau / steps[k])
      value = jnp.where(count < starts[k + 1], ramp, value)
    return value

  return schedule


def fatrelu(x: jax.Array, threshold=0.0) -> jax.Array:
  """FATReLU: `x` where `x > threshold`, else 0 (ProSparse's final stage).

  Args:
    x: array.
    threshold: a non-negative scalar; 0 gives ReLU.

  Returns:
    An array like `x`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> activations.fatrelu(jnp.array([-1., 0.05, 0.5]), 0.1)
    Array([0. , 0. , 0.5], dtype=float32)

  References:
    Kurtz et al, `Inducing and Exploiting Activation Sparsity for Fast
    Inference on Deep Neural Networks
    <https://proceedings.mlr.press/v119/kurtz20a.html>`_, 2020.
  """
  if _validate.is_concrete(threshold) and jnp.any(
      jnp.asarray(threshold) < 0):
    raise ValueError(f"threshold must be non-negative, got {threshold!r}.")
  x = jnp.asarray(x)
  return jnp.where(x > threshold, x, jnp.zeros_like(x))
