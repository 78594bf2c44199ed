# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Flax NNX layers for activation sparsity: top-k, statistical top-k,
calibrated thresholds and a CATS-gated feed-forward block."""

from collections.abc import Callable
import numbers
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from pallas_kernels.sparse_input import sparse_input_matmul
from sparsejax import _capture
from sparsejax import activations as _act
from sparsejax import _validate

__all__ = (
    "ActivationThreshold",
    "GatedFFN",
    "StatisticalTopK",
    "Threshold",
    "TopK",
    "calibrate_thresholds",
)


class TopK(nnx.Module):
  """Keeps the `k` largest-magnitude activations of every row.

  A layer around :func:`sparsejax.activations.topk`; with `ste=True` it is
  Q-Sparse's top-k with a straight-through gradient, for training sparse.

  Args:
    k: entries kept per row (a Python int).
    axis: the feature axis.
    ste: straight-through gradient (the gradient of the identity).

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import nn as sjnn
    >>> sjnn.TopK(2)(jnp.array([[0.5, -2., 1., 3.]]))
    Array([[ 0., -2.,  0.,  3.]], dtype=float32)

  References:
    Wang et al, `Q-Sparse: All Large Language Models can be Fully Sparsely-
    Activated <https://arxiv.org/abs/2407.10969>`_, 2024.
  """

  def __init__(self, k: int, *, axis: int = -1, ste: bool = False):
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 0:
      raise ValueError(f"k must be a non-negative int, got {k!r}.")
    self.k = int(k)
    self.axis = axis
    self.ste = bool(ste)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies top-k along `axis`."""
    return _act.topk(x, self.k, axis=self.axis, ste=self.ste)


class StatisticalTopK(nnx.Module):
  """Statistical top-k (Spark Transformer): `relu(x - (mean + std * z_s))`.

  A layer around :func:`sparsejax.activations.statistical_topk`; meant for
  pre-activations, where the Gaussian assumption holds (see that function
  for how it misses the target on post-activation inputs).

  Args:
    sparsity: target fraction of zeros, in (0, 1).
    axis: the feature axis.
    hard: keep survivors unshifted (`x * (x > cutoff)`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import nn as sjnn
    >>> sjnn.StatisticalTopK(0.5)(jnp.array([-1., 1., -1., 1.]))
    Array([0., 1., 0., 1.], dtype=float32)

  References:
    You et al, `Spark Transformer: Reactivating Sparsity in FFN and Attention
    <https://arxiv.org/abs/2506.06644>`_, 2025.
  """

  def __init__(self, sparsity: float, *, axis: int = -1, hard: bool = False):
    _validate.check_fraction(sparsity, "sparsity", allow_zero=False)
    self.sparsity = float(sparsity)
    self.axis = axis
    self.hard = bool(hard)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies statistical top-k along `axis`."""
    return _act.statistical_topk(x, self.sparsity, axis=self.axis,
                                 hard=self.hard)


class ActivationThreshold(nnx.Variable):
  """A calibrated activation threshold: state, but not a trainable `Param`.

  Optimizers that select `nnx.Param` leave it alone; select it with
  `nnx.state(model, ActivationThreshold)` to save or inspect it.
  """


class Threshold(nnx.Module):
  """Calibrated magnitude threshold (TEAL, CATS, CHESS, WINA) on activations.

  The threshold is an :class:`ActivationThreshold` variable, zero (keep every
  nonzero, i.e. the identity) until :func:`calibrate_thresholds` fills it
  from calibration data with :func:`sparsejax.activations.calibrate`. During
  calibration the layer passes its input through unchanged and records it,
  so every later layer is calibrated on dense activations, as in TEAL.
  Built inside `nnx.vmap` (a stack of layers run by `nnx.scan`), the
  threshold variable gets the stack's leading axes and every layer slice is
  calibrated on its own inputs.

  Args:
    num_features: size of the feature axis.
    sparsity: target fraction of zeros on the calibration data, in [0, 1).
    per: `"tensor"` (one threshold; TEAL, CATS) or `"channel"` (one per
      feature; CHESS-style).
    score: `"magnitude"` or `"wina"` (ranks `|x_j| * ||W_j||`; then the layer
      must be called with `weight=`, the consuming weight `(d, n_out)`).
    axis: the feature axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import nn as sjnn
    >>> layer = sjnn.Threshold(2, sparsity=0.5)
    >>> x = jnp.array([[1., -4.], [3., 2.]])
    >>> _ = sjnn.calibrate_thresholds(layer, lambda m: m(x))
    >>> layer(x)
    Array([[ 0., -4.],
           [ 3.,  0.]], dtype=float32)

  References:
    Liu et al, `Training-Free Activation Sparsity in Large Language Models
    <https://arxiv.org/abs/2408.14690>`_, 2024.
  """

  def __init__(self, num_features: int, sparsity: float, *,
               per: str = "tensor", score: str = "magnitude",
               axis: int = -1):
    if (not isinstance(num_features, numbers.Integral)
        or isinstance(num_features, bool) or num_features <= 0):
      raise ValueError(f"num_features must be a positive int, got "
                       f"{num_features!r}.")
    _validate.check_fraction(sparsity, "sparsity")
    if per not in ("tensor", "channel"):
      raise ValueError(f'per must be "tensor" or "channel", got {per!r}.')
    if score not in ("magnitude", "wina"):
      raise ValueError(f'score must be "magnitude" or "wina", got '
                       f'{score!r}.')
    shape = () if (per == "tensor" and score == "magnitude") else (
        int(num_features),)
    self.num_features = int(num_features)
    self.sparsity = float(sparsity)
    self.per = per
    self.score = score
    self.axis = axis
    self.calibrating = False
    self.threshold = ActivationThreshold(jnp.zeros(shape, jnp.float32))

  def __call__(self, x: jax.Array, *,
               weight: jax.Array | None = None) -> jax.Array:
    """Thresholds `x` (records it instead while calibrating).

    Args:
      x: activations with `num_features` entries along `axis`.
      weight: the consuming weight; needed while calibrating a WINA layer,
        ignored otherwise.

    Returns:
      `x` with the entries at or below the threshold set to zero.
    """
    if x.shape[self.axis] != self.num_features:
      raise ValueError(f"x must have {self.num_features} features along axis "
                       f"{self.axis}, got shape {x.shape}.")
    if self.calibrating:
      if self.score == "wina":
        if weight is None:
          raise ValueError('weight is required to calibrate a score="wina" '
                           "Threshold.")
        _capture.record(self, x, weight)
      else:
        _capture.record(self, x)
      return x
    return _act.threshold(x, self.threshold[...], axis=self.axis)


def calibrate_thresholds(model: nnx.Module, forward: Callable[..., Any],
                         *args, **kwargs) -> dict[tuple, jax.Array]:
  """Fills every :class:`Threshold` in `model` from one calibration pass.

  Switches the thresholds to recording, runs `forward(model, *args,
  **kwargs)` (which should push the calibration data through the model; it
  may loop over batches, and may run the model under `nnx.jit`), and sets
  each layer's threshold with :func:`sparsejax.activations.calibrate` on all
  the inputs it saw, at its own `sparsity`, `per` and `score`. Change a
  layer's `sparsity` and call this again to recalibrate (e.g. after
  :func:`sparsejax.activations.greedy_allocation`).

  A :class:`Threshold` built inside `nnx.vmap` (a stack of layers run by
  `nnx.scan` or a loop) holds one threshold per layer slice, along the
  leading axes of its threshold variable, and each slice is calibrated on
  that slice's own inputs, so that every layer realises its target whatever
  the scale of its activations; the thresholds of the stack are those of
  its unstacked twin, layer by layer. (:class:`StatisticalTopK` has nothing
  to calibrate: its cutoff comes from each row's own statistics.)

  Args:
    model: an NNX module containing one or more :class:`Threshold` layers.
    forward: called as `forward(model, *args, **kwargs)`.
    *args: passed to `forward`.
    **kwargs: passed to `forward`.

  Returns:
    A dict from each threshold layer's path in `model` to its new threshold
    (with the stacked axes first for a stacked layer).

  Raises:
    ValueError: when `model` has no :class:`Threshold`, or `forward` never
      calls one of them (or one of its slices).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from sparsejax import nn as sjnn
    >>> layer = sjnn.Threshold(4, sparsity=0.25, per="channel")
    >>> x = jnp.arange(16.).reshape(4, 4)
    >>> sjnn.calibrate_thresholds(layer, lambda m: m(x))
    {(): Array([0., 1., 2., 3.], dtype=float32)}

    Three stacked layers run by `nnx.scan`, each scaling its input by a
    different factor, get one threshold each:

    >>> class Layer(nnx.Module):
    ...   def __init__(self, scale):
    ...     self.scale = nnx.Variable(scale)
    ...     self.t = sjnn.Threshold(4, sparsity=0.5)
    ...   def __call__(self, x):
    ...     return self.t(x * self.scale[...])
    >>> stack = nnx.vmap(Layer)(jnp.array([1., 10., 100.]))
    >>> def run(stack, x):
    ...   body = nnx.scan(lambda x, layer: (x, layer(x)),
    ...                   in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    ...   return body(x, stack)[1]
    >>> sjnn.calibrate_thresholds(stack, run, x)
    {('t',): Array([  7.,  70., 700.], dtype=float32)}
  """
  layers = {tuple(path): m for path, m in nnx.iter_modules(model)
            if isinstance(m, Threshold)}
  if not layers:
    raise ValueError("model contains no Threshold layer to calibrate.")
  names = {path: "/".join(str(p) for p in path) for path in layers}
  stacked = {}
  for path, m in layers.items():
    base = 0 if (m.per == "tensor" and m.score == "magnitude") else 1
    stacked[path] = tuple(range(m.threshold[...].ndim - base))
  recorder = _capture.Recorder()
  for path, m in layers.items():
    _capture.attach(m, names[path], m.threshold, stacked[path])
    m.calibrating = True
  try:
    with _capture.recording(recorder):
      forward(model, *args, **kwargs)
      # Callbacks of a compiled forward may still be running.
      jax.effects_barrier()
  finally:
    for m in layers.values():
      m.calibrating = False
      _capture.detach(m)
  recorder.check()
  return {path: _set_thresholds(m, path, stacked[path], recorder.arrays,
                                names[path])
          for path, m in layers.items()}


def _set_thresholds(m: Threshold, path: tuple, stack_axes: tuple[int, ...],
                    recorded: dict, name: str) -> jax.Array:
  """Calibrates every slice of one Threshold layer from its recordings."""
  shape = m.threshold[...].shape
  count = 1
  for a in stack_axes:
    count *= shape[a]
  values = []
  for index in range(count):
    deliveries = recorded.get((name, index))
    if not deliveries:
      where = f" (slice {index} of its stacked axes)" if stack_axes else ""
      raise ValueError(f"the Threshold at path {path}{where} was not called "
                       "by forward, so it has no calibration data.")
    inputs = [d[0] for d in deliveries]
    axis = _validate.check_axis(inputs[0].ndim, m.axis)
    samples = jnp.concatenate(
        [jnp.moveaxis(jnp.asarray(s), axis, -1).reshape(-1, m.num_features)
         for s in inputs])
    weight = deliveries[-1][1] if m.score == "wina" else None
    values.append(_act.calibrate(samples, m.sparsity, per=m.per,
                                 score=m.score, weight=weight))
  new = jnp.stack(values).reshape(shape) if stack_axes else values[0]
  m.threshold[...] = new.astype(jnp.float32)
  return m.threshold[...]


class GatedFFN(nnx.Module):
  """Gated (SwiGLU) feed-forward block with CATS thresholding on the gate.

  `y = (CATS(silu(x @ W_gate)) * (x @ W_up)) @ W_down`, where
  `CATS(a) = a * 1[|a| > t]` and `t` is a :class:`Threshold` calibrated on
  `|silu(x @ W_gate)|` at the target sparsity (the `cats` submodule; fill it
  with :func:`calibrate_thresholds`). The hidden activation is zero wherever
  the gate is, so with `sparse_kernel=True` the down projection runs on
  :func:`pallas_kernels.sparse_input_matmul`, which reads only the rows of
  `W_down` that are needed (the result is the same). With
  `cats_sparsity=None` the block is the dense SwiGLU FFN.

  Args:
    d_model: input and output width.
    d_hidden: hidden width.
    cats_sparsity: target gate sparsity, in [0, 1), or None for dense.
    sparse_kernel: use the sparse-input matmul for the down projection.
    rngs: NNX random streams for the weights.
    dtype: parameter dtype.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from sparsejax import nn as sjnn
    >>> ffn = sjnn.GatedFFN(8, 32, cats_sparsity=0.5, rngs=nnx.Rngs(0))
    >>> x = jax.random.normal(jax.random.key(1), (64, 8))
    >>> _ = sjnn.calibrate_thresholds(ffn, lambda m: m(x))
    >>> gate = ffn.cats(jax.nn.silu(ffn.gate(x)))
    >>> print(float(jnp.mean(gate == 0)))
    0.5

  References:
    Lee et al, `CATS: Contextually-Aware Thresholding for Sparsity in Large
    Language Models <https://arxiv.org/abs/2404.08763>`_, 2024.
  """

  def __init__(self, d_model: int, d_hidden: int, *,
               cats_sparsity: float | None = 0.5,
               sparse_kernel: bool = False, rngs: nnx.Rngs,
               dtype: Any = jnp.float32):
    linear = lambda i, o: nnx.Linear(i, o, use_bias=False, rngs=rngs,
                                     param_dtype=dtype)
    self.gate = linear(d_model, d_hidden)
    self.up = linear(d_model, d_hidden)
    self.down = linear(d_hidden, d_model)
    self.cats = (None if cats_sparsity is None
                 else Threshold(d_hidden, cats_sparsity))
    self.sparse_kernel = bool(sparse_kernel)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the block to `x` of shape `(..., d_model)`."""
    gate = jax.nn.silu(self.gate(x))
    if self.cats is not None:
      gate = self.cats(gate)
    hidden = gate * self.up(x)
    if self.sparse_kernel:
      return sparse_input_matmul(hidden, self.down.kernel[...])
    return self.down(hidden)
