# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The training harness the Fashion-MNIST examples and benchmarks share.

* :class:`MLP`, LeNet-300-100 (LeCun et al, 1998) by default, in Flax NNX,
  with its functional twin :func:`mlp_apply` on the plain dict of its
  weights (for loops written with ``jax.grad`` and ``optax`` alone);
* :func:`cross_entropy`, :func:`loss_fn`, the jitted :func:`train_step`
  (``nnx.Optimizer``; the forward pass reads :func:`sparsejax.forward_params`
  when asked to, as the straight-through methods need) and
  :func:`evaluate`;
* :func:`batches`, the shuffled index batches of one epoch;
* :func:`add_run_args`, :func:`check_run_args` and :func:`load_data`, the
  command-line arguments and the data every example shares.

The lottery-ticket and one-shot examples rewind and re-mask a plain dict of
variables: for them, :class:`LeNet300100` in Flax Linen and the functional
:func:`train` loop below.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import sparsejax as sj

import datasets  # examples/datasets.py, beside this file


class MLP(nnx.Module):
  """``din -> hidden... -> classes`` with ReLU; layers ``fc1``, ``fc2``, ...

  The default widths are LeNet-300-100's.
  """

  def __init__(self, din: int, *, hidden: tuple[int, ...] = (300, 100),
               num_classes: int = 10, rngs: nnx.Rngs):
    widths = (din, *hidden, num_classes)
    self.depth = len(widths) - 1
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), 1):
      setattr(self, f"fc{i}", nnx.Linear(a, b, rngs=rngs))

  def __call__(self, x):
    for i in range(1, self.depth + 1):
      x = getattr(self, f"fc{i}")(x)
      if i < self.depth:
        x = jax.nn.relu(x)
    return x


def mlp_params(sizes: tuple[int, ...], seed: int = 0) -> dict:
  """:class:`MLP` ``sizes[0] -> ... -> sizes[-1]``'s weights as a dict."""
  model = MLP(sizes[0], hidden=tuple(sizes[1:-1]), num_classes=sizes[-1],
              rngs=nnx.Rngs(seed))
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
  """:class:`MLP`'s forward pass on its weights ``{"fc1": {...}, ...}``."""
  depth = len(params)
  for i in range(1, depth + 1):
    layer = params[f"fc{i}"]
    x = x @ layer["kernel"] + layer["bias"]
    if i < depth:
      x = jax.nn.relu(x)
  return x


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def mlp_loss(params: dict, x, y) -> jax.Array:
  """:func:`cross_entropy` of :func:`mlp_apply`."""
  return cross_entropy(mlp_apply(params, x), y)


def loss_fn(model: nnx.Module, x, y) -> jax.Array:
  return cross_entropy(model(x), y)


def _masked_loss_fn(weights, graphdef, rest, opt_state, x, y):
  fwd = sj.forward_params(weights, opt_state)
  return cross_entropy(nnx.merge(graphdef, fwd, rest)(x), y)


@nnx.jit(static_argnames="masked")
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x, y, *,
               masked: bool = False) -> jax.Array:
  """One step of ``optimizer`` on the loss of ``model``; returns the loss.

  Args:
    model: the model.
    optimizer: ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
    x: a batch of inputs.
    y: their integer labels.
    masked: the forward pass reads ``sj.forward_params`` of the weights (a
      straight-through method, whose weights stay dense); exact-zero
      methods need not.
  """
  if not masked:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
  else:
    graphdef, weights, rest = nnx.split(model, nnx.Param, ...)
    loss, grads = jax.value_and_grad(_masked_loss_fn)(
        weights, graphdef, rest, optimizer.opt_state, x, y)
  optimizer.update(model, grads)
  return loss


def forward_model(model: nnx.Module, opt_state: Any) -> nnx.Module:
  """A copy of ``model`` with the weights its forward pass uses."""
  graphdef, weights, rest = nnx.split(model, nnx.Param, ...)
  return nnx.merge(graphdef, sj.forward_params(weights, opt_state), rest)


@nnx.jit
def _num_correct(model, x, y):
  return jnp.sum(jnp.argmax(model(x), axis=-1) == y)


def accuracy(num_correct: Callable[[Any, Any], Any], x, y, *,
             batch_size: int = 5000) -> float:
  """Accuracy on ``(x, y)`` from ``num_correct(x_batch, y_batch)``."""
  correct = 0
  for i in range(0, len(x), batch_size):
    correct += int(num_correct(x[i:i + batch_size], y[i:i + batch_size]))
  return correct / len(x)


def evaluate(model: nnx.Module, x, y, *, batch_size: int = 5000) -> float:
  """Accuracy of the NNX ``model`` on ``(x, y)``."""
  return accuracy(functools.partial(_num_correct, model), x, y,
                  batch_size=batch_size)


def batches(rng: np.random.Generator, n: int, batch_size: int
            ) -> Iterator[np.ndarray]:
  """One epoch's shuffled index batches (the last partial one dropped)."""
  order = rng.permutation(n)
  for i in range(n // batch_size):
    yield order[i * batch_size:(i + 1) * batch_size]


def load_data(args: argparse.Namespace) -> datasets.Dataset:
  """Fashion-MNIST from ``args.data_dir`` (or where :mod:`datasets` finds
  it), cut to ``args.limit`` examples; prints its size."""
  data = datasets.load_fashion_mnist(args.data_dir).head(args.limit)
  print(f"data: {data.name}, {len(data.x_train)} train / "
        f"{len(data.x_test)} test examples of {data.x_train.shape[1]} "
        "features")
  return data


def add_run_args(parser: argparse.ArgumentParser, *, sparsity: float,
                 epochs: int, batch_size: int, sparsity_help: str) -> None:
  """The arguments every Fashion-MNIST example takes."""
  parser.add_argument("--sparsity", type=float, default=sparsity,
                      help=sparsity_help)
  parser.add_argument("--epochs", type=int, default=epochs)
  parser.add_argument("--batch-size", type=int, default=batch_size)
  parser.add_argument("--lr", type=float, default=1e-3,
                      help="Adam's learning rate")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data-dir", default=None,
                      help="directory with the Fashion-MNIST IDX files")
  parser.add_argument("--limit", type=int, default=None,
                      help="use only the first N training and test examples "
                      "(quick checks)")


def check_run_args(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> argparse.Namespace:
  """Exits with a usage error on an argument of :func:`add_run_args` out of
  range; returns ``args``."""
  if not 0.0 <= args.sparsity < 1.0:
    parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
  for name in ("epochs", "batch_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1, got "
                   f"{getattr(args, name)}")
  if args.limit is not None and args.limit < 1:
    parser.error(f"--limit must be >= 1, got {args.limit}")
  return args


# ---------------------------------------------------------------------------
# Flax Linen and a functional loop, for the examples that rewind variables.


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


def uses_sparsejax(opt_state: Any) -> bool:
  """Whether ``opt_state`` holds a sparsejax transform's state (then the
  loss reads ``sj.forward_params``, which raises if it holds several)."""
  is_state = lambda x: isinstance(x, sj.SparseState)  # noqa: E731
  return any(is_state(x) for x in jax.tree.leaves(opt_state,
                                                    is_leaf=is_state))


def evaluate_variables(module: nn.Module, variables: dict, x: np.ndarray,
                       y: np.ndarray, *, batch_size: int = 5000) -> float:
  """Accuracy of ``module`` with ``variables`` on ``(x, y)``."""
  apply = jax.jit(module.apply)
  return accuracy(
      lambda xb, yb: jnp.sum(jnp.argmax(apply(variables, xb), -1) == yb),
      x, y, batch_size=batch_size)


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
  sparse = uses_sparsejax(state)

  def loss_fn(params, state, x, y):
    fwd = sj.forward_params(params, state) if sparse else params
    return cross_entropy(module.apply({"params": fwd}, x), y)

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, state, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  n = len(data.x_train)
  rng = np.random.default_rng(seed)
  history = {"test_accuracy": [], "train_loss": []}
  count = 0
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    losses = []
    for idx in batches(rng, n, batch_size):
      if checkpoint_step is not None and count == checkpoint_step:
        history["checkpoint"] = {"params": params}
      params, state, loss = step(params, state, data.x_train[idx],
                                 data.y_train[idx])
      losses.append(loss)
      count += 1
    fwd = sj.forward_params(params, state) if sparse else params
    acc = evaluate_variables(module, {"params": fwd}, data.x_test,
                             data.y_test)
    history["test_accuracy"].append(acc)
    history["train_loss"].append(float(jnp.mean(jnp.stack(losses))))
    if log:
      print(f"  epoch {epoch}: loss {history['train_loss'][-1]:.4f}, test "
            f"accuracy {acc:.4f} ({time.perf_counter() - start:.1f} s)",
            file=sys.stderr)
  final = sj.forward_params(params, state) if sparse else params
  return {"params": final}, history
