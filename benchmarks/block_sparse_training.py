# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Whole training step: block-sparse kernels against masked-dense and dense.

Usage::

  python benchmarks/block_sparse_training.py                 # the CPU table
  python benchmarks/block_sparse_training.py --blocks 64 --densities 0.1
  python benchmarks/block_sparse_training.py --roofline      # H100 / TPU v5e

The model is an FFN block ``d -> 4d -> d`` (``nnx.Linear`` layers, ReLU,
``d = 1024``, 2048 tokens per step, mean squared error to a fixed target),
float32. Three ways to train it, each a whole step (forward, backward, Adam,
the sparsity transform):

- ``dense``: ``optax.adam``;
- ``masked``: ``sj.rigl(optax.adam, granularity=(b, b))`` on both kernels,
  the usual masked-dense training (dense products, exact zeros);
- ``kernel``: the same transform, the layers on the block-sparse kernels
  (``sj.nn.block_sparse_kernels``) on ordinary steps and dense on the
  mask-update steps (the dense gradient RigL's growth needs).

The mask update is amortized over ``update_every`` (100): a step costs
``((U - 1) * ordinary + update) / U``, with ``ordinary`` timed on a transform
whose schedule never updates and ``update`` on one that updates on every step
(the same compiled code but for the loop trip counts). For each block size
``b x b`` and block density ``d`` the three are built in the same process and
timed in a shuffled order per repeat; a ratio is the variant's amortized
step time over dense's in the same repeat, and the table gives the median
and the range over repeats, beside the ideal (the density: the matmuls'
share of FLOPs that remains).

``--roofline`` prints the accelerator estimate of a training step's matmuls
on the Pallas paths (forward, ``dx`` through the transposed topology, the
block gradient ``sdd``; the dense gradient on update steps), see
``docs/api/block_sparse.md``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
import sparsejax.nn  # noqa: F401  (sj.nn)

# Hardware limits (research/kernels.md, section 6).
DEVICES = {
    "H100 SXM5": dict(peak=989.4e12, bw=3.35e12),
    "TPU v5e": dict(peak=197e12, bw=819e9),
}


class FFN(nnx.Module):
  """``d -> 4d -> d`` with ReLU."""

  def __init__(self, d, hidden, *, rngs):
    self.fc1 = nnx.Linear(d, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, d, rngs=rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.relu(self.fc1(x)))


def _make(kind, *, d, hidden, block, density, update_every, seed=0):
  """(model, optimizer, step function) for one variant."""
  model = FFN(d, hidden, rngs=nnx.Rngs(seed))
  if kind == "dense":
    optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
  else:
    # update_every=None: never (begin after any run), else every step.
    tx = sj.rigl(optax.adam(1e-4), sparsity=1.0 - density,
                 end_step=10**9, update_every=1,
                 begin_step=0 if update_every else 10**8,
                 granularity=(block, block), where=r"kernel$",
                 distribution="uniform")
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    masks = sj.get_masks(optimizer.opt_state)
    nnx.update(model, sj.masks.apply(nnx.state(model, nnx.Param), masks))
  sparse = kind == "kernel" and not update_every
  caps = (sj.nn.block_capacities(sj.get_masks(optimizer.opt_state),
                                 (block, block)) if sparse else None)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      if not sparse:
        return jnp.mean((model(x) - y) ** 2)
      masks = sj.get_masks(optimizer.opt_state)
      with sj.nn.block_sparse_kernels(model, masks, block_shape=(block, block),
                                      capacities=caps):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  return model, optimizer, step


def _time(fn, args, calls):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return min(times)


def run_config(*, d, hidden, tokens, block, density, repeats, calls,
               update_every, rng):
  x = jnp.asarray(rng.normal(size=(tokens, d)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(tokens, d)), jnp.float32)
  kw = dict(d=d, hidden=hidden, block=block, density=density)
  variants = {
      "dense": _make("dense", update_every=None, **kw),
      "masked": _make("masked", update_every=None, **kw),
      "masked/update": _make("masked", update_every=1, **kw),
      "kernel": _make("kernel", update_every=None, **kw),
      "kernel/update": _make("kernel", update_every=1, **kw),
  }
  for _, (model, opt, step) in variants.items():  # compile
    jax.block_until_ready(step(model, opt, x, y))
  ratios = {"masked": [], "kernel": []}
  ms = {"dense": [], "masked": [], "kernel": []}
  for _ in range(repeats):
    order = list(variants)
    rng.shuffle(order)
    t = {name: _time(variants[name][2], (*variants[name][:2], x, y), calls)
         for name in order}
    u = update_every
    ms["dense"].append(t["dense"] * 1e3)
    for name in ("masked", "kernel"):
      amortized = ((u - 1) * t[name] + t[name + "/update"]) / u
      ms[name].append(amortized * 1e3)
      ratios[name].append(amortized / t["dense"])
  return ms, ratios


def _fmt(values):
  med = statistics.median(values)
  return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def print_table(args):
  rng = np.random.default_rng(0)
  random.seed(0)
  print(f"FFN {args.d} -> {4 * args.d} -> {args.d}, {args.tokens} tokens, "
        f"float32, Adam, RigL update_every={args.update_every} amortized; "
        f"{args.repeats} repeats, best of {args.calls} calls each; "
        f"jax {jax.__version__}, {jax.devices()[0].platform}")
  print("| block | density | dense ms | masked ms | kernel ms | masked/dense "
        "| kernel/dense | kernel/masked | ideal |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for block in args.blocks:
    for density in args.densities:
      ms, ratios = run_config(
          d=args.d, hidden=4 * args.d, tokens=args.tokens, block=block,
          density=density, repeats=args.repeats, calls=args.calls,
          update_every=args.update_every, rng=rng)
      km = [k / m for k, m in zip(ratios["kernel"], ratios["masked"])]
      print(f"| {block} | {density:.0%} | {statistics.median(ms['dense']):.1f}"
            f" | {statistics.median(ms['masked']):.1f} | "
            f"{statistics.median(ms['kernel']):.1f} | {_fmt(ratios['masked'])}"
            f" | {_fmt(ratios['kernel'])} | {_fmt(km)} | {density:.2f} |",
            flush=True)


def step_roofline(dev, *, m, d, hidden, b, density, row_tile, itemsize=2,
                  update_every=100):
  """Accelerator estimate of one FFN training step's matmuls over dense's.

  Per layer ``[K, N]``: forward ``x @ W``, ``dx = dy @ W.T`` (the first
  layer's only when its input needs it: counted, as in a deeper model) and
  ``dW`` at the stored blocks, each ``2 * m * b * b * nnz`` FLOPs. With
  ``row_tile`` set, every visit of a stored block reads a ``row_tile x b``
  tile of the dense operand and the block (no reuse, the kernels as written);
  ``row_tile=None`` is perfect reuse (each operand crosses HBM once). Dense is
  taken at peak; the update step (dense products) is amortized over
  ``update_every``.
  """
  t_sparse = 0.0
  t_dense = 0.0
  for k, n in ((d, hidden), (hidden, d)):
    nnz = round(density * (k // b) * (n // b))
    flops = 2.0 * m * b * b * nnz
    dense_flops = 2.0 * m * k * n
    for _ in range(3):  # forward, dx, dW
      if row_tile is None:
        bytes_ = itemsize * (m * k + nnz * b * b + m * n)
      else:
        visits = nnz * -(-m // row_tile)
        bytes_ = itemsize * (visits * (row_tile * b + b * b) + m * n)
      t_sparse += max(flops / dev["peak"], bytes_ / dev["bw"])
      t_dense += dense_flops / dev["peak"]
  amortized = ((update_every - 1) * t_sparse + t_dense) / update_every
  return amortized / t_dense


def print_roofline(m=8192, d=4096):
  hidden = 4 * d
  print(f"Roofline: FFN {d} -> {hidden} -> {d}, {m} tokens, bf16; the three "
        "products of both layers per step, the dense update step amortized "
        "over 100; ratio to a dense step at peak")
  print("| device | HBM traffic model | block | 5 % | 10 % | 25 % | 50 % |")
  print("|---|---|---:|---:|---:|---:|---:|")
  for name, dev in DEVICES.items():
    tile = 512 if name.startswith("TPU") else 128
    impl = "pallas_tpu" if name.startswith("TPU") else "pallas_gpu"
    for label, row_tile in (
        (f"{impl} as written: {tile}-row tile and block re-read per visit",
         tile), ("each operand crosses HBM once", None)):
      for b in (128, 256):
        cells = [step_roofline(dev, m=m, d=d, hidden=hidden, b=b, density=dd,
                               row_tile=row_tile)
                 for dd in (0.05, 0.1, 0.25, 0.5)]
        print(f"| {name} | {label} | {b} | "
              + " | ".join(f"{c:.2f}" for c in cells) + " |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--roofline", action="store_true")
  parser.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128])
  parser.add_argument("--densities", type=float, nargs="+",
                      default=[0.05, 0.1, 0.25, 0.5])
  parser.add_argument("--d", type=int, default=1024)
  parser.add_argument("--tokens", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--calls", type=int, default=3)
  parser.add_argument("--update-every", type=int, default=100)
  args = parser.parse_args(argv)
  if args.roofline:
    print_roofline()
  else:
    print_table(args)


if __name__ == "__main__":
  main()
