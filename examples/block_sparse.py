# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Block-sparse training on Fashion-MNIST, then inference on the kernel.

An MLP ``D -> 1024 -> 1024 -> 10`` (the input zero-padded to a multiple of
128) is trained with Adam wrapped by :func:`sparsejax.magnitude_pruning` at
block granularity: whole 128 x 128 blocks of the two hidden kernels are
pruned, gradually (Zhu & Gupta's cubic schedule) to ``--sparsity`` of their
blocks. The trained kernels and the optimizer's block masks are then converted
to :class:`sparsejax.nn.BlockSparseLinear` layers
(:func:`sparsejax.nn.block_sparse_linear`), so that inference runs on
:func:`pallas_kernels.block_sparse_matmul`.

The script checks that the block-sparse model predicts exactly what the
masked dense model predicts on the whole test set, and times both at batch 256
(interleaved, best of ``--rounds``), printing the speed ratio beside the ideal
(the fraction of the hidden layers' FLOPs that remains).

Run, from the repository root::

  python examples/block_sparse.py --sparsity 0.9 --epochs 5

Data: see ``examples/datasets.py`` (``--data-dir``, ``$SPARSEJAX_DATA_DIR``,
Debian's ``dataset-fashion-mnist``, a download, else scikit-learn's digits).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax.nn import block_sparse_linear

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)
import methods  # noqa: E402  (examples/methods.py)

BLOCK = (128, 128)


def padded_width(din: int, multiple: int = BLOCK[0]) -> int:
  return -(-din // multiple) * multiple


def pad_inputs(x: np.ndarray, width: int) -> np.ndarray:
  """Zero-pads the features to ``width`` (zero inputs change no output)."""
  return np.pad(x, ((0, 0), (0, width - x.shape[1])))


# ``din -> 1024 -> 1024 -> classes`` with ReLU; dense layers.
MLP = functools.partial(_training.MLP, hidden=(1024, 1024))


def make_optimizer(*, lr, sparsity, total_steps):
  """Adam under gradual block-magnitude pruning of fc1 and fc2's kernels."""
  return methods.make("magnitude", optax.adam(lr), sparsity=sparsity,
                      total_steps=total_steps, where=r"^fc[12]/kernel$",
                      granularity=BLOCK)


@nnx.jit
def _logits(model, x):
  return model(x)


def predict(model, x, batch_size=2000):
  return np.concatenate([np.asarray(_logits(model, x[i:i + batch_size]))
                         for i in range(0, len(x), batch_size)])


def train(data, *, sparsity, epochs, batch_size=128, lr=1e-3, seed=0,
          log=print):
  n_train, din = data.x_train.shape
  steps_per_epoch = n_train // min(batch_size, n_train)
  batch_size = min(batch_size, n_train)
  total_steps = steps_per_epoch * epochs
  num_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
  model = MLP(din, num_classes=num_classes, rngs=nnx.Rngs(seed))
  tx = make_optimizer(lr=lr, sparsity=sparsity, total_steps=total_steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    losses = [_training.train_step(model, optimizer, data.x_train[idx],
                                   data.y_train[idx])
              for idx in _training.batches(rng, n_train, batch_size)]
    acc = _training.evaluate(model, data.x_test, data.y_test)
    log(f"epoch {epoch}: loss {float(jnp.mean(jnp.stack(losses))):.4f}, test "
        f"accuracy {acc:.4f} ({time.perf_counter() - start:.1f} s)")
  return model, optimizer


def convert(model, masks, *, implementation=None):
  """Block-sparse copy of ``model`` from its kernels and block masks."""
  sparse = nnx.clone(model)
  for name in ("fc1", "fc2"):
    lin = getattr(model, name)
    setattr(sparse, name, block_sparse_linear(
        lin.kernel[...], lin.bias[...], block_shape=BLOCK,
        block_mask=masks[name]["kernel"], implementation=implementation))
  return sparse


def time_ratio(dense_model, sparse_model, x, rounds):
  """Best and median wall times and best CPU times of both forwards.

  Interleaved round-robin; process CPU time is less sensitive than wall time
  to other jobs on a shared host.
  """
  fns = {"dense": nnx.jit(lambda m, x: m(x)),
         "sparse": nnx.jit(lambda m, x: m(x))}
  models = {"dense": dense_model, "sparse": sparse_model}
  for k in fns:
    jax.block_until_ready(fns[k](models[k], x))
  times = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  for _ in range(rounds):
    for k in fns:
      t, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(fns[k](models[k], x))
      times[k].append(time.perf_counter() - t)
      cpu[k].append(time.process_time() - c)
  return ({k: min(v) for k, v in times.items()},
          {k: statistics.median(v) for k, v in times.items()},
          {k: min(v) for k, v in cpu.items()})


def run(data, *, sparsity=0.9, epochs=5, batch_size=128, lr=1e-3, seed=0,
        rounds=30, log=print) -> dict:
  """Trains, converts, checks predictions and times inference at batch 256."""
  width = padded_width(data.x_train.shape[1])
  data = data._replace(x_train=pad_inputs(data.x_train, width),
                       x_test=pad_inputs(data.x_test, width))
  model, optimizer = train(data, sparsity=sparsity, epochs=epochs,
                           batch_size=batch_size, lr=lr, seed=seed, log=log)
  masks = nnx.to_pure_dict(sj.get_masks(optimizer.opt_state))
  sparse = convert(model, masks)

  dense_logits = predict(model, data.x_test)
  sparse_logits = predict(sparse, data.x_test)
  dense_pred, sparse_pred = dense_logits.argmax(-1), sparse_logits.argmax(-1)
  kept = {n: float(sj.masks.block_grid(masks[n]["kernel"], BLOCK).mean())
          for n in ("fc1", "fc2")}
  for n in ("fc1", "fc2"):
    kernel = np.asarray(getattr(model, n).kernel[...])
    mask = np.asarray(masks[n]["kernel"])
    assert not np.any(kernel[~mask]), f"{n}: pruned weights are not zero"
  flops_dense = sum(getattr(model, n).kernel.size for n in ("fc1", "fc2"))
  flops_sparse = sum(kept[n] * getattr(model, n).kernel.size
                     for n in ("fc1", "fc2"))
  x256 = jnp.asarray(data.x_test[:256])
  best, median, cpu = time_ratio(model, sparse, x256, rounds)
  out = dict(
      accuracy_dense=float(np.mean(dense_pred == data.y_test)),
      accuracy_sparse=float(np.mean(sparse_pred == data.y_test)),
      identical_predictions=bool(np.array_equal(dense_pred, sparse_pred)),
      max_logit_diff=float(np.max(np.abs(dense_logits - sparse_logits))),
      kept_blocks=kept,
      # Hidden layers only; fc3 (1024 x 10) stays dense.
      ideal_ratio=flops_sparse / flops_dense,
      ratio_best=best["sparse"] / best["dense"],
      ratio_median=median["sparse"] / median["dense"],
      ratio_cpu=cpu["sparse"] / cpu["dense"],
      ms_dense=1e3 * best["dense"], ms_sparse=1e3 * best["sparse"])
  log(f"\nkept blocks: fc1 {100 * kept['fc1']:.1f} %, fc2 "
      f"{100 * kept['fc2']:.1f} % (128 x 128 blocks)")
  log(f"test accuracy: masked dense {100 * out['accuracy_dense']:.2f} %, "
      f"block-sparse {100 * out['accuracy_sparse']:.2f} % ({data.name})")
  log(f"identical predictions on all {len(dense_pred)} test examples: "
      f"{'yes' if out['identical_predictions'] else 'no'} (max |logit "
      f"difference| {out['max_logit_diff']:.2e})")
  log(f"inference at batch 256, best of {rounds}: masked dense "
      f"{out['ms_dense']:.3f} ms, block-sparse {out['ms_sparse']:.3f} ms: "
      f"ratio {out['ratio_best']:.3f} (median {out['ratio_median']:.3f}, CPU "
      f"time {out['ratio_cpu']:.3f}), ideal {out['ideal_ratio']:.3f} for the "
      f"hidden layers")
  return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  _training.add_run_args(p, sparsity=0.9, epochs=5, batch_size=128,
                         sparsity_help="fraction of 128 x 128 blocks pruned "
                         "in fc1 and fc2")
  p.add_argument("--rounds", type=int, default=30,
                 help="timing rounds at batch 256")
  return _training.check_run_args(p, p.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  data = _training.load_data(args)
  print(f"MLP {data.x_train.shape[1]} (padded to "
        f"{padded_width(data.x_train.shape[1])}) -> 1024 -> 1024 -> 10, "
        f"block sparsity {args.sparsity}, {args.epochs} epochs")
  return run(data, sparsity=args.sparsity, epochs=args.epochs,
             batch_size=args.batch_size, lr=args.lr, seed=args.seed,
             rounds=args.rounds)


if __name__ == "__main__":
  main()
