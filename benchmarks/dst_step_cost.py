# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Step cost of the drop-and-grow methods against a dense Adam step.

On the small MLP (784-300-100-10, batch 128, 90% sparsity, ERK), times a
whole jitted training step (forward, backward, optimizer, apply) for dense
Adam and for each method wrapping the same Adam, with and without a mask
update, and prints the ratios to dense and the cost amortized over
``update_every=100`` steps. Targets for RigL: at most 1.05x without a mask
update, 5x with one, 1.10x amortized. Timings interleave the variants
(round robin, median of rounds) so that a busy machine slows all alike.

  python benchmarks/dst_step_cost.py --rounds 30
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj

UPDATE_EVERY = 100


def init_mlp(key, sizes=(784, 300, 100, 10)):
  keys = jax.random.split(key, len(sizes) - 1)
  return {f"layer{i}": {"kernel": 0.05 * jax.random.normal(k, (a, b)),
                        "bias": jnp.zeros((b,))}
          for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}


def loss_fn(params, x, y):
  n = len(params)
  for i in range(n):
    x = x @ params[f"layer{i}"]["kernel"] + params[f"layer{i}"]["bias"]
    if i < n - 1:
      x = jax.nn.relu(x)
  return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


def methods(total=10_000):
  adam = optax.adam(1e-3)
  return {
      "rigl": sj.rigl(adam, sparsity=0.9, end_step=total,
                      update_every=UPDATE_EVERY),
      "set": sj.set_(adam, sparsity=0.9, update_every=UPDATE_EVERY,
                     distribution="erk"),
      "snfs": sj.snfs(adam, sparsity=0.9, update_every=UPDATE_EVERY,
                      total_steps=total, distribution="erk"),
      "srigl": sj.srigl(adam, sparsity=0.9, end_step=total,
                        update_every=UPDATE_EVERY),
      "mest": sj.mest(adam, sparsity=0.9, update_every=UPDATE_EVERY,
                      total_steps=total, distribution="erk"),
      "granet": sj.granet(adam, sparsity=0.9, total_steps=total,
                          update_every=UPDATE_EVERY, init_density=0.2),
  }


def make_step(tx):
  @jax.jit
  def step(params, state, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--rounds", type=int, default=30)
  parser.add_argument("--reps", type=int, default=20)
  parser.add_argument("--methods", nargs="+", default=None)
  args = parser.parse_args(argv)
  key = jax.random.key(0)
  params = init_mlp(key)
  x = jax.random.normal(key, (128, 784))
  y = jax.random.randint(key, (128,), 0, 10)
  variants = {}
  dense_tx = optax.adam(1e-3)
  variants["dense"] = (make_step(dense_tx), params, dense_tx.init(params))
  chosen = methods()
  for name in args.methods or chosen:
    tx = chosen[name]
    state = tx.init(params)
    p = sj.masks.apply(params, sj.get_masks(state))
    step = make_step(tx)
    # A step count off the update schedule, and one on it (mid-training, so
    # that the drop fraction is nonzero and GraNet's pruning has begun).
    no_update = state._replace(count=jnp.asarray(2 * UPDATE_EVERY + 1,
                                                 jnp.int32))
    on_update = state._replace(count=jnp.asarray(2 * UPDATE_EVERY,
                                                 jnp.int32))
    variants[f"{name}/no-update"] = (step, p, no_update)
    variants[f"{name}/update"] = (step, p, on_update)
  for step, p, s in variants.values():  # compile and warm up
    jax.block_until_ready(step(p, s, x, y))
  times = {k: [] for k in variants}
  for _ in range(args.rounds):
    for name, (step, p, s) in variants.items():
      start = time.perf_counter()
      for _ in range(args.reps):
        out = step(p, s, x, y)
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - start) / args.reps)
  med = {k: float(np.median(v)) for k, v in times.items()}
  dense = med["dense"]
  print(f"dense Adam step: {1e3 * dense:.3f} ms "
        f"(median of {args.rounds} rounds x {args.reps} steps)")
  print("\n| method | no update | mask update | amortized "
        f"(every {UPDATE_EVERY}) |")
  print("|---|---|---|---|")
  for name in args.methods or chosen:
    a = med[f"{name}/no-update"] / dense
    b = med[f"{name}/update"] / dense
    amort = ((UPDATE_EVERY - 1) * a + b) / UPDATE_EVERY
    print(f"| {name} | {a:.3f}x | {b:.2f}x | {amort:.3f}x |")


if __name__ == "__main__":
  main()
