# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Activation thresholds calibrated per layer slice of a scanned stack."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import nn as sjnn

D, LAYERS, TOKENS = 16, 3, 96
SCALES = (3.0, 30.0, 0.3)   # very different activation scales per layer


class Layer(nnx.Module):
  """A residual-free layer whose output is thresholded (TEAL / WINA)."""

  def __init__(self, rngs, *, per="tensor", score="magnitude"):
    self.fc = nnx.Linear(D, D, rngs=rngs)
    self.t = sjnn.Threshold(D, 0.5, per=per, score=score)
    self.wina = score == "wina"

  def hidden(self, x):
    return jnp.tanh(x) + self.fc(x)

  def __call__(self, x):
    weight = self.fc.kernel[...] if self.wina else None
    return self.t(self.hidden(x), weight=weight)


def _stack(**kw):
  @nnx.split_rngs(splits=LAYERS)
  @nnx.vmap(in_axes=(0,), out_axes=0,
            transform_metadata={nnx.PARTITION_NAME: "layers"})
  def make(rngs):
    return Layer(rngs, **kw)
  stack = make(nnx.Rngs(0))
  kernel = stack.fc.kernel
  kernel[...] = kernel[...] * jnp.asarray(SCALES)[:, None, None]
  return stack


def _scan(stack, x):
  @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
  def body(x, layer):
    return layer(x)
  return body(x, stack)


def _loop(layers, x):
  for layer in layers:
    x = layer(x)
  return x


def _unstacked(stack):
  graphdef, state = nnx.split(stack)
  return nnx.List([nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i],
                                                    state))
                   for i in range(LAYERS)])


def _batches():
  keys = jax.random.split(jax.random.key(1), 2)
  return [jax.random.normal(k, (TOKENS // 2, D)) for k in keys]


def _run(fn):
  def forward(model, batches):
    for b in batches:
      fn(model, b)
  return forward


def _dense_inputs(layers, x):
  """Each layer's thresholded quantity with every threshold off (TEAL)."""
  out = []
  for layer in layers:
    h = layer.hidden(x)
    out.append(np.asarray(h))
    x = h
  return out


@pytest.mark.parametrize("per", ["tensor", "channel"])
def test_each_slice_realises_the_target_and_matches_its_unstacked_twin(per):
  stack = _stack(per=per)
  twin = _unstacked(stack)
  batches = _batches()
  x = jnp.concatenate(batches)
  inputs = _dense_inputs(twin, x)
  scales = [np.abs(h).mean() for h in inputs]
  assert max(scales) / min(scales) > 10
  got = sjnn.calibrate_thresholds(stack, _run(_scan), batches)
  t = np.asarray(stack.t.threshold[...])
  assert t.shape == ((LAYERS,) if per == "tensor" else (LAYERS, D))
  np.testing.assert_array_equal(got[("t",)], t)
  for i, h in enumerate(inputs):
    realised = np.abs(h) <= t[i]
    if per == "tensor":
      # The calibration resolution: 1 / (2 n) with n samples.
      assert abs(realised.mean() - 0.5) <= 0.5 / h.size, i
    else:
      assert (np.abs(realised.mean(0) - 0.5) <= 0.5 / len(h)).all(), i
  # The unstacked twin, run by a Python loop, gets the same thresholds.
  sjnn.calibrate_thresholds(twin, _run(_loop), batches)
  for i, layer in enumerate(twin):
    np.testing.assert_allclose(layer.t.threshold[...], t[i], rtol=1e-6)


def test_wina_per_slice_under_jit():
  stack = _stack(score="wina")
  twin = _unstacked(stack)
  batches = _batches()
  sjnn.calibrate_thresholds(stack, _run(nnx.jit(_scan)), batches)
  t = np.asarray(stack.t.threshold[...])
  assert t.shape == (LAYERS, D)
  sjnn.calibrate_thresholds(twin, _run(_loop), batches)
  inputs = _dense_inputs(twin, jnp.concatenate(batches))
  for i, layer in enumerate(twin):
    np.testing.assert_allclose(layer.t.threshold[...], t[i], rtol=1e-6)
    # WINA's score |x_j| * ||W_j|| realises the target on the slice.
    realised = np.mean(np.abs(inputs[i]) <= t[i])
    assert abs(realised - 0.5) <= 0.5 / inputs[i].size, i
  # Calibrated, the stack thresholds (jit and eager alike).
  y = _scan(stack, batches[0])
  np.testing.assert_array_equal(nnx.jit(_scan)(stack, batches[0]), y)
  assert float(jnp.mean(y == 0)) >= 0.4


def test_a_slice_never_called_is_an_error():
  stack = _stack()

  def first_layer_only(stack, x):
    graphdef, state = nnx.split(stack)
    nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))(x)

  with pytest.raises(ValueError, match=r"slice 1 of its stacked axes"):
    sjnn.calibrate_thresholds(stack, first_layer_only, _batches()[0])
  assert not stack.t.calibrating
