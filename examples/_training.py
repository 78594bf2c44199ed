# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""A small functional training loop for the pruning examples.

LeNet-300-100 as a Flax Linen module (its variables are a plain dict, which
the lottery-ticket rounds rewind and re-mask), trained with any Optax
optimizer. The loss uses :func:`sparsejax.forward_params` when the optimizer
holds a sparsejax transform, so the same loop serves dense and sparse runs.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj


class LeNet300100(nn.Module):
  """LeNet-300-100: ``din -> 300 -> 100 -> classes`` with ReLU."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(300, name="fc1")(x))
    x = nn.relu(nn.Dense(100, name="fc2")(x))
    return nn.Dense(self.num_classes, name="fc3")(x)


def init_variables(module: nn.Module, din: int, seed: int) -> dict:
  """The module's variables for inputs of width ``din``."""
  return module.init(jax.random.key(seed), jnp.zeros((1, din)))


def _uses_sparsejax(state: Any) -> bool:
  return bool(sj._engine.find_states(state))  # pylint: disable=protected-access


def evaluate(module: nn.Module, variables: dict, x: np.ndarray,
             y: np.ndarray, *, batch_size: int = 5000) -> float:
  """Accuracy of ``module`` with ``variables`` on ``(x, y)``."""
  apply = jax.jit(module.apply)
  correct = 0
  for i in range(0, len(x), batch_size):
    logits = apply(variables, x[i:i + batch_size])
    correct += int(jnp.sum(jnp.argmax(logits, -1) == y[i:i + batch_size]))
  return correct / len(x)


def train(module: nn.Module, variables: dict, data: Any, *,
          tx: optax.GradientTransformation, epochs: int, batch_size: int,
          seed: int, log: bool = True,
          checkpoint_step: int | None = None) -> tuple[dict, dict]:
  """Trains ``variables['params']`` with ``tx``; returns them and a history.

  Args:
    module: the model.
    variables: its initial variables.
    data: a dataset with ``x_train, y_train, x_test, y_test``.
    tx: the optimizer (a sparsejax transform or a plain Optax one).
    epochs: passes over the training set.
    batch_size: examples per step.
    seed: seeds the data order.
    log: print one line per epoch to stderr.
    checkpoint_step: if given, also return the parameters after this many
      steps (for rewinding to an early point of training).

  Returns:
    ``(variables, history)``; ``history`` has per-epoch ``test_accuracy``
    and, with ``checkpoint_step``, ``checkpoint`` (the variables then).
  """
  params = variables["params"]
  state = tx.init(params)
  sparse = _uses_sparsejax(state)

  def loss_fn(params, state, x, y):
    fwd = sj.forward_params(params, state) if sparse else params
    logits = module.apply({"params": fwd}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, state, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  n = len(data.x_train)
  steps_per_epoch = n // batch_size
  rng = np.random.default_rng(seed)
  history = {"test_accuracy": [], "train_loss": []}
  count = 0
  for epoch in range(1, epochs + 1):
    order = rng.permutation(n)
    start = time.perf_counter()
    losses = []
    for i in range(steps_per_epoch):
      if checkpoint_step is not None and count == checkpoint_step:
        history["checkpoint"] = {"params": params}
      idx = order[i * batch_size:(i + 1) * batch_size]
      params, state, loss = step(params, state, data.x_train[idx],
                                 data.y_train[idx])
      losses.append(loss)
      count += 1
    fwd = sj.forward_params(params, state) if sparse else params
    accuracy = evaluate(module, {"params": fwd}, data.x_test, data.y_test)
    history["test_accuracy"].append(accuracy)
    history["train_loss"].append(float(jnp.mean(jnp.stack(losses))))
    if log:
      print(f"  epoch {epoch}: loss {history['train_loss'][-1]:.4f}, test "
            f"accuracy {accuracy:.4f} ({time.perf_counter() - start:.1f} s)",
            file=sys.stderr)
  final = sj.forward_params(params, state) if sparse else params
  return {"params": final}, history
