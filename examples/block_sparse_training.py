# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Block-granular RigL on Fashion-MNIST through the block-sparse kernels.

An MLP ``D -> 2048 -> 2048 -> 10`` (the input zero-padded to a multiple of
the block) is trained twice with the same seed and batches, Adam wrapped by
:func:`sparsejax.rigl` at block granularity on the two hidden kernels:

- ``masked``: the usual masked-dense training (dense products, exact zeros);
- ``kernel``: the masked layers run on
  :func:`pallas_kernels.block_sparse_matmul`
  (:func:`sparsejax.nn.block_sparse_kernels`) on ordinary steps, with the
  topology read from the optimizer's masks on every step, and dense on the
  mask-update steps (:func:`sparsejax.is_mask_update_step`), where RigL grows
  by the dense gradient.

It prints both runs' losses and test accuracies, whether their masks agree,
and the wall time per training step of each (the ideal ratio is the kept
fraction of the hidden layers' FLOPs).

Run, from the repository root::

  python examples/block_sparse_training.py --sparsity 0.9 --epochs 2

Data: see ``examples/datasets.py`` (``--data-dir``, ``$SPARSEJAX_DATA_DIR``,
Debian's ``dataset-fashion-mnist``, a download, else scikit-learn's digits).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
import sparsejax.nn  # noqa: F401  (sj.nn)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)
import methods  # noqa: E402  (examples/methods.py)


def make_step(block, caps, *, kernel):
  """The jitted train step: on the kernels when ``kernel``, else dense."""

  @nnx.jit
  def step(model, optimizer, x, y):
    masks = sj.get_masks(optimizer.opt_state)

    def loss_fn(model):
      with sj.nn.block_sparse_kernels(model, masks, block_shape=block,
                                      capacities=caps, enabled=kernel):
        return _training.loss_fn(model, x, y)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  return step


def train(data, *, kernel, block, sparsity, hidden, epochs, batch_size, lr,
          update_every, seed, log):
  """One run; returns (model, optimizer, per-epoch logs, step seconds)."""
  n_train, din = data.x_train.shape
  batch_size = min(batch_size, n_train)
  steps_per_epoch = n_train // batch_size
  total = steps_per_epoch * epochs
  num_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
  model = _training.MLP(din, hidden=(hidden, hidden), num_classes=num_classes,
                        rngs=nnx.Rngs(seed))
  kw = methods.kwargs("rigl", sparsity=sparsity, total_steps=total,
                      update_every=update_every, seed=seed, granularity=block,
                      where=r"^fc[12]/kernel$", distribution="uniform")
  tx = methods.METHODS["rigl"].factory(optax.adam(lr), **kw)
  # The steps that update masks run the dense step.
  schedule = {k: kw[k] for k in ("update_every", "end_step")}
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  masks = sj.get_masks(optimizer.opt_state)
  # Exact zeros from the start, so that both runs see the same model.
  nnx.update(model, sj.masks.apply(nnx.state(model, nnx.Param), masks))
  caps = sj.nn.block_capacities(masks, block)
  sparse_step = make_step(block, caps, kernel=kernel)
  dense_step = make_step(block, caps, kernel=False)
  rng = np.random.default_rng(seed)
  ordinary, t = [], 0
  for epoch in range(1, epochs + 1):
    losses = []
    for idx in _training.batches(rng, n_train, batch_size):
      update = sj.is_mask_update_step(t, **schedule)
      fn = dense_step if update else sparse_step
      start = time.perf_counter()
      losses.append(jax.block_until_ready(
          fn(model, optimizer, data.x_train[idx], data.y_train[idx])))
      if t >= 2 and not update:  # Not the compiling calls.
        ordinary.append(time.perf_counter() - start)
      t += 1
    acc = _training.evaluate(model, data.x_test, data.y_test)
    log(f"  {'kernel' if kernel else 'masked'} epoch {epoch}: loss "
        f"{float(np.mean(losses)):.4f}, test accuracy {acc:.4f}")
  return model, optimizer, acc, ordinary


def run(data, *, sparsity=0.9, block=(64, 64), hidden=2048, epochs=2,
        batch_size=1024, lr=1e-3, update_every=20, seed=0, log=print):
  width = -(-data.x_train.shape[1] // block[0]) * block[0]
  pad = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1])))  # noqa: E731
  data = data._replace(x_train=pad(data.x_train), x_test=pad(data.x_test))
  kw = dict(block=block, sparsity=sparsity, hidden=hidden, epochs=epochs,
            batch_size=batch_size, lr=lr, update_every=update_every,
            seed=seed, log=log)
  out = {}
  for kernel in (False, True):
    _, optimizer, acc, times = train(data, kernel=kernel, **kw)
    name = "kernel" if kernel else "masked"
    out[name] = dict(accuracy=acc, masks=nnx.to_pure_dict(
        sj.get_masks(optimizer.opt_state)),
                     step_ms=1e3 * float(np.median(times)) if times else None)
  same = all(np.array_equal(out["masked"]["masks"][n]["kernel"],
                            out["kernel"]["masks"][n]["kernel"])
             for n in ("fc1", "fc2"))
  out["same_masks"] = same
  log(f"final masks identical in both runs: {'yes' if same else 'no'}")
  ms_m, ms_k = out["masked"]["step_ms"], out["kernel"]["step_ms"]
  if ms_m and ms_k:
    out["ratio"] = ms_k / ms_m
    log(f"median ordinary step at batch {batch_size}: masked {ms_m:.1f} ms, "
        f"kernel {ms_k:.1f} ms: ratio {ms_k / ms_m:.2f} (ideal "
        f"{1 - sparsity:.2f} for the hidden layers; {block[0]} x {block[1]} "
        "blocks)")
  return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  _training.add_run_args(p, sparsity=0.9, epochs=2, batch_size=1024,
                         sparsity_help="fraction of the blocks of fc1 and "
                         "fc2 pruned")
  p.add_argument("--block", type=int, default=64)
  p.add_argument("--hidden", type=int, default=2048)
  p.add_argument("--update-every", type=int, default=20)
  args = _training.check_run_args(p, p.parse_args(argv))
  if args.hidden % args.block:
    p.error(f"--block {args.block} must divide --hidden {args.hidden}")
  return args


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  data = _training.load_data(args)
  print(f"MLP -> {args.hidden} -> {args.hidden} -> 10, RigL "
        f"on {args.block} x {args.block} blocks at sparsity {args.sparsity}")
  return run(data, sparsity=args.sparsity, block=(args.block, args.block),
             hidden=args.hidden, epochs=args.epochs,
             batch_size=args.batch_size, lr=args.lr,
             update_every=args.update_every, seed=args.seed)


if __name__ == "__main__":
  main()
