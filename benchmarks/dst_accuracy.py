# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Fashion-MNIST test accuracy of LeNet-300-100 under every sparse method.

Trains the 784-300-100-10 ReLU MLP with Adam (lr 1e-3, batch 128) for a few
epochs, dense and at each sparsity with: static random (ERK), gradual
magnitude pruning (cubic, 10% to 75% of training), SET, RigL, SNFS, SRigL,
MEST and GraNet (all starting from or keeping ERK budgets; each method's
schedule in its own units, below), and prints a Markdown table of the test
accuracy (mean and spread over seeds). Run::

  python benchmarks/dst_accuracy.py --epochs 10 --seeds 0 1

The literature's ordering at 98% sparsity: gradual magnitude above RigL, RigL
at or above SET, SET above static random.
"""

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] /
                       "examples"))
import datasets  # noqa: E402  pylint: disable=wrong-import-position

import sparsejax as sj  # noqa: E402  pylint: disable=wrong-import-position

METHODS = ("dense", "static", "gmp", "set", "rigl", "snfs", "srigl", "mest",
           "granet")


def init_mlp(key, sizes):
  params = {}
  keys = jax.random.split(key, len(sizes) - 1)
  for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
    bound = np.sqrt(6.0 / (n_in + n_out))
    params[f"layer{i}"] = {
        "kernel": jax.random.uniform(k, (n_in, n_out), jnp.float32, -bound,
                                     bound),
        "bias": jnp.zeros((n_out,), jnp.float32)}
  return params


def forward(params, x):
  n = len(params)
  for i in range(n):
    layer = params[f"layer{i}"]
    x = x @ layer["kernel"] + layer["bias"]
    if i < n - 1:
      x = jax.nn.relu(x)
  return x


def loss_fn(params, x, y):
  logits = forward(params, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_tx(method, sparsity, steps, steps_per_epoch, seed, lr=1e-3):
  inner = optax.adam(lr)
  if method == "dense":
    return inner
  if method == "static":
    return sj.static_sparse(inner, sparsity=sparsity, seed=seed)
  if method == "gmp":
    schedule = optax.polynomial_schedule(
        init_value=0.0, end_value=sparsity, power=3,
        transition_steps=int(0.65 * steps),
        transition_begin=int(0.1 * steps))
    return sj.magnitude_pruning(inner, sparsity=schedule, update_every=100,
                                distribution="erk",
                                end_step=int(0.75 * steps) + 100)
  if method == "set":
    return sj.set_(inner, sparsity=sparsity, update_every=steps_per_epoch,
                   distribution="erk", seed=seed)
  if method == "rigl":
    return sj.rigl(inner, sparsity=sparsity, end_step=int(0.75 * steps),
                   update_every=100, seed=seed)
  if method == "snfs":
    return sj.snfs(inner, sparsity=sparsity, update_every=steps_per_epoch,
                   total_steps=steps, distribution="erk", seed=seed)
  if method == "srigl":
    return sj.srigl(inner, sparsity=sparsity, end_step=int(0.75 * steps),
                    update_every=100, seed=seed)
  if method == "mest":
    return sj.mest(inner, sparsity=sparsity, update_every=steps_per_epoch,
                   total_steps=steps, distribution="erk", seed=seed)
  if method == "granet":
    return sj.granet(inner, sparsity=sparsity, total_steps=steps,
                     update_every=100, seed=seed)
  raise ValueError(f"unknown method {method!r}")


def train(data, method, sparsity, *, epochs, seed, batch_size=128):
  x_train = jnp.asarray(data.x_train)
  y_train = jnp.asarray(data.y_train)
  steps_per_epoch = len(data.x_train) // batch_size
  steps = epochs * steps_per_epoch
  params = init_mlp(jax.random.key(seed),
                    (data.x_train.shape[1], 300, 100, 10))
  tx = make_tx(method, sparsity, steps, steps_per_epoch, seed)
  state = tx.init(params)
  if method != "dense":
    params = sj.masks.apply(params, sj.get_masks(state))

  def step(carry, idx):
    params, state = carry
    x, y = x_train[idx], y_train[idx]
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  @jax.jit
  def epoch(params, state, order):
    batches = order[:steps_per_epoch * batch_size].reshape(
        steps_per_epoch, batch_size)
    (params, state), _ = jax.lax.scan(step, (params, state), batches)
    return params, state

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    order = jnp.asarray(rng.permutation(len(data.x_train)))
    params, state = epoch(params, state, order)
  logits = jax.jit(forward)(params, jnp.asarray(data.x_test))
  acc = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(data.y_test)))
  if method == "dense":
    nnz = sum(int(l["kernel"].size) for l in params.values())
  else:
    nnz = sum(int(m.sum()) for m in jax.tree.leaves(sj.get_masks(state)))
  return acc, nnz


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--sparsities", type=float, nargs="+",
                      default=[0.95, 0.98])
  parser.add_argument("--methods", nargs="+", default=list(METHODS))
  parser.add_argument("--data-dir", default=None)
  args = parser.parse_args(argv)
  data = datasets.load_fashion_mnist(args.data_dir)
  print(f"# {data.name}: {len(data.x_train)} train, {len(data.x_test)} test; "
        f"{args.epochs} epochs, seeds {args.seeds}", flush=True)
  results = {}
  for method in args.methods:
    for sparsity in ([0.0] if method == "dense" else args.sparsities):
      accs = []
      for seed in args.seeds:
        start = time.perf_counter()
        acc, nnz = train(data, method, sparsity, epochs=args.epochs,
                         seed=seed)
        accs.append(acc)
        print(f"{method:7s} s={sparsity:.2f} seed={seed} acc={acc:.4f} "
              f"mask_nnz={nnz} ({time.perf_counter() - start:.0f}s)",
              flush=True)
      results[(method, sparsity)] = accs
  print("\n| method | " + " | ".join(f"{s:.0%}" for s in args.sparsities)
        + " |")
  print("|---|" + "---|" * len(args.sparsities))
  for method in args.methods:
    cells = []
    for s in args.sparsities:
      accs = results.get((method, 0.0 if method == "dense" else s))
      cells.append(f"{100 * np.mean(accs):.2f} ± {50 * np.ptp(accs):.2f}")
    print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
