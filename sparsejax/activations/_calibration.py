# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Calibrated activation thresholds and TEAL's greedy sparsity allocation."""

from collections.abc import Callable, Sequence
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _validate

_PER = ("tensor", "channel")
_SCORES = ("magnitude", "wina")


def _order_statistic(values: jax.Array, sparsity: float) -> jax.Array:
  """Smallest t with `round(sparsity * n)` of `values` (along -1) `<= t`."""
  n = values.shape[-1]
  m = int(math.floor(sparsity * n + 0.5))
  if m == 0:
    # Nothing needs zeroing: t = 0 keeps every nonzero entry.
    return jnp.zeros(values.shape[:-1], values.dtype)
  return jnp.sort(values, axis=-1)[..., m - 1]


def calibrate(samples: jax.Array, sparsity: float, *, per: str = "tensor",
              score: str = "magnitude", weight: jax.Array | None = None,
              axis: int = -1) -> jax.Array:
  """Thresholds on `|x|` that zero a `sparsity` fraction of calibration data.

  The rule is the one of TEAL: the threshold is the `sparsity` quantile of
  the calibration distribution of `|x|`, so that :func:`threshold` zeroes
  that fraction of activations distributed like the samples. Three variants:

  * `per="tensor", score="magnitude"` (TEAL, CATS): one scalar threshold, the
    quantile over all entries.
  * `per="channel"` (CHESS-style channel-wise thresholds): one threshold per
    channel, the quantile of that channel's entries, so that every channel
    is zeroed in a `sparsity` fraction of the samples.
  * `score="wina"` (WINA): entries are ranked by `|x_j| * ||W_j||_2`, where
    `W_j` is row `j` of the consuming weight `weight` (shape `(d, n_out)`,
    used as `x @ weight`); the score quantile `t` is returned as the
    per-channel thresholds `t / ||W_j||` on `|x_j|` (`inf` for an all-zero
    row), so :func:`threshold` applies it unchanged. With `per="channel"`
    the weight norm is constant within a channel and WINA equals the
    magnitude rule.

  The quantile is the exact order statistic, not a histogram: with `n`
  scores, exactly `round(sparsity * n)` of them are `<= t`, so on the
  calibration set the realised sparsity equals the target to within
  `1 / (2n)` (the calibration's resolution) when the scores have no ties.
  Scores tied at `t` are all zeroed, and entries that are exactly zero stay
  zero, so inputs with many zeros (ReLU outputs) may realise more sparsity
  than asked.

  Args:
    samples: calibration activations, shape `(..., d)` with the channel axis
      at `axis`; every other axis indexes samples (tokens).
    sparsity: target fraction of zeros in `[0, 1)`, a Python float.
    per: `"tensor"` or `"channel"`.
    score: `"magnitude"` or `"wina"`.
    weight: the consuming weight, shape `(d, n_out)`; required for WINA.
    axis: the channel axis of `samples`.

  Returns:
    A float array: shape `()` for `per="tensor", score="magnitude"`,
    otherwise shape `(d,)`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import activations
    >>> x = jnp.arange(1., 11.).reshape(5, 2)
    >>> t = activations.calibrate(x, 0.3)
    >>> t, float(1 - activations.threshold_mask(x, t).mean())
    (Array(3., dtype=float32), 0.3)
    >>> activations.calibrate(x, 0.4, per="channel")
    Array([3., 4.], dtype=float32)
    >>> activations.calibrate(x, 0.5, score="wina",
    ...                       weight=jnp.array([[1.], [2.]]))
    Array([7. , 3.5], dtype=float32)

  References:
    Liu et al, `Training-Free Activation Sparsity in Large Language Models
    <https://arxiv.org/abs/2408.14690>`_, 2024.

    Lee et al, `CATS: Contextually-Aware Thresholding for Sparsity in Large
    Language Models <https://arxiv.org/abs/2404.08763>`_, 2024.

    Wang et al, `CHESS: Optimizing LLM Inference via Channel-Wise
    Thresholding and Selective Sparsification
    <https://arxiv.org/abs/2409.01366>`_, 2024.

    Chen et al, `WINA: Weight Informed Neuron Activation for Accelerating
    Large Language Model Inference <https://arxiv.org/abs/2505.19427>`_, 2025.
  """
  if per not in _PER:
    raise ValueError(f"per must be one of {_PER}, got {per!r}.")
  if score not in _SCORES:
    raise ValueError(f"score must be one of {_SCORES}, got {score!r}.")
  if not isinstance(sparsity, numbers.Real) or isinstance(sparsity, bool):
    raise ValueError("sparsity must be a Python float (it fixes the order "
                     f"statistic), got {sparsity!r}.")
  _validate.check_fraction(sparsity, "sparsity")
  samples = jnp.asarray(samples)
  if not jnp.issubdtype(samples.dtype, jnp.floating):
    raise ValueError(f"samples must be floating point, got {samples.dtype}.")
  axis = _validate.check_axis(samples.ndim, axis)
  d = samples.shape[axis]
  mag = jnp.moveaxis(jnp.abs(samples), axis, -1).reshape(-1, d)
  if mag.shape[0] == 0:
    raise ValueError("samples must hold at least one sample.")

  norms = None
  if score == "wina":
    if weight is None:
      raise ValueError('weight is required for score="wina".')
    weight = jnp.asarray(weight)
    if weight.ndim != 2 or weight.shape[0] != d:
      raise ValueError(f"weight must have shape ({d}, n_out) to consume "
                       f"samples with {d} channels, got {weight.shape}.")
    norms = jnp.linalg.norm(weight.astype(mag.dtype), axis=1)
  elif weight is not None:
    raise ValueError(f'weight is only used with score="wina", got score='
                     f'{score!r}.')

  if per == "channel":
    return _order_statistic(mag.T, sparsity)
  if norms is None:
    return _order_statistic(mag.reshape(-1), sparsity)
  t = _order_statistic((mag * norms).reshape(-1), sparsity)
  safe = jnp.where(norms > 0, norms, 1)
  return jnp.where(norms > 0, t / safe, jnp.inf)


def weighted_sparsity(sparsities: Sequence[float],
                      sizes: Sequence[float]) -> float:
  """Model-wide sparsity: per-layer sparsities weighted by parameter count.

  Args:
    sparsities: activation sparsity of the input of each layer.
    sizes: parameter count of each layer's weight (the FLOPs it saves).

  Returns:
    `sum(s_i * n_i) / sum(n_i)` as a Python float.

  Examples:
    >>> from sparsejax import activations
    >>> activations.weighted_sparsity([0.5, 1.0], [3, 1])
    0.625
  """
  s = np.asarray(sparsities, np.float64)
  n = np.asarray(sizes, np.float64)
  return float(np.sum(s * n) / np.sum(n))


def greedy_allocation(error_fn: Callable[[tuple[float, ...]], float],
                      sizes: Sequence[float], target: float, *,
                      step: float = 0.05,
                      max_sparsity: float = 1.0) -> tuple[float, ...]:
  """TEAL's greedy allocation of activation sparsity across layers.

  All layers start dense. At every round each layer that is not full is
  offered a larger sparsity, and the one whose increase gives the smallest
  `error_fn` (an output reconstruction error measured on calibration data,
  e.g. the L2 distance between the sparse and dense outputs) takes it, until
  the parameter-weighted sparsity (:func:`weighted_sparsity`) reaches
  `target`. As in TEAL the increase of layer `i` is `step / w_i` with
  `w_i = sizes[i] / max(sizes)`, so that every candidate adds the same amount
  to the model-wide sparsity. Two departures from TEAL's script, both so that
  the result lands exactly on a feasible target: an increase is clipped at
  `max_sparsity`, and the last one is shortened so that the weighted sparsity
  equals `target` instead of passing it. Ties go to the lowest layer index.
  A layer much smaller than the largest one takes big steps (a layer 30x
  smaller moves by `30 * step`, clipped at `max_sparsity`), so it is
  sparsified all at once or not at all; lower `step` for a finer allocation.

  `error_fn` is called from Python, once per candidate and round, and may
  run jitted code.

  Args:
    error_fn: maps a tuple of per-layer sparsities to a scalar error.
    sizes: positive parameter count of each layer's weight.
    target: model-wide sparsity to reach, in `[0, max_sparsity]`.
    step: increase of the largest layer's sparsity per round, in (0, 1].
    max_sparsity: per-layer cap, in (0, 1].

  Returns:
    A tuple of per-layer sparsities whose weighted sparsity equals `target`.

  Examples:
    >>> from sparsejax import activations
    >>> err = lambda s: s[0] ** 2 + 4 * s[1] ** 2
    >>> activations.greedy_allocation(err, [1, 1], 0.5, step=0.25)
    (0.75, 0.25)

  References:
    Liu et al, `Training-Free Activation Sparsity in Large Language Models
    <https://arxiv.org/abs/2408.14690>`_, 2024.
  """
  sizes = [float(n) for n in sizes]
  if not sizes or any(not n > 0 for n in sizes):
    raise ValueError(f"sizes must be a non-empty list of positive numbers, "
                     f"got {sizes!r}.")
  _validate.check_fraction(step, "step", allow_zero=False, allow_one=True)
  _validate.check_fraction(max_sparsity, "max_sparsity", allow_zero=False,
                             allow_one=True)
  _validate.check_fraction(target, "target", allow_one=True)
  if target > max_sparsity:
    raise ValueError(f"target={target} exceeds max_sparsity={max_sparsity}, "
                     "so it cannot be reached.")
  total = sum(sizes)
  largest = max(sizes)
  current = [0.0] * len(sizes)
  eps = 1e-12
  while weighted_sparsity(current, sizes) < target - eps:
    missing = target - weighted_sparsity(current, sizes)
    best, best_err = None, math.inf
    for i, n in enumerate(sizes):
      if current[i] >= max_sparsity - eps:
        continue
      delta = min(step * largest / n, max_sparsity - current[i],
                  missing * total / n)
      candidate = list(current)
      candidate[i] = current[i] + delta
      err = float(error_fn(tuple(candidate)))
      if math.isnan(err):
        raise ValueError(f"error_fn returned NaN for sparsities {candidate}.")
      if err < best_err:
        best, best_err = (i, candidate[i]), err
    if best is None:
      break
    current[best[0]] = best[1]
  return tuple(current)
