# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""A Mixture-of-Experts MLP on Fashion-MNIST: dense against three routers.

The model is ``input -> 128 -> block -> 10`` where the block is a residual
MLP: dense (hidden 128), or a :class:`sparsejax.nn.MoE` of 8 experts of
hidden 64 each, routed by

- ``top1``: Switch top-1 with capacity factor 1.25 (over-capacity tokens
  are dropped and pass through the residual only);
- ``top2``: softmax top-2, renormalised, dropless (sorted tokens and grouped
  matmuls);
- ``expert_choice``: each expert takes ``T * 2 / 8`` tokens of the batch.

Token-choice routers train with Switch's load-balancing loss (1e-2) and the
router z-loss (1e-3). The script prints the test accuracy and balance
figures of each model (expert load on the test set: largest and smallest
share of the routed slots, against 1/8 = 0.125 at perfect balance; its
CV^2; the dropped tokens) and plots the expert-load histogram over
training to ``--out/moe_expert_load.png`` (results also in
``--out/moe.json``).

Run: ``python examples/moe.py [--epochs 5] [--out out]``; the default run
takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sparsejax as sj
from sparsejax.nn import MoE

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import datasets  # noqa: E402  (examples/datasets.py)

WIDTH = 128
EXPERTS = 8
EXPERT_HIDDEN = 64
VARIANTS = {
    "dense": None,
    "top1": dict(router=sj.moe.switch(capacity_factor=1.25)),
    "top2": dict(router=sj.moe.top_k(2, capacity_factor=None)),
    "expert_choice": dict(router=sj.moe.expert_choice(capacity_factor=2.0)),
}


class Model(nnx.Module):
  """``din -> WIDTH -> residual (dense MLP | MoE) -> classes``."""

  def __init__(self, din, classes, variant, *, rngs):
    self.embed = nnx.Linear(din, WIDTH, rngs=rngs)
    self.variant = variant
    config = VARIANTS[variant]
    if config is None:
      self.fc1 = nnx.Linear(WIDTH, 2 * EXPERT_HIDDEN, rngs=rngs)
      self.fc2 = nnx.Linear(2 * EXPERT_HIDDEN, WIDTH, rngs=rngs)
      self.moe = nnx.data(None)
    else:
      self.moe = MoE(WIDTH, EXPERT_HIDDEN, EXPERTS, rngs=rngs, **config)
    self.head = nnx.Linear(WIDTH, classes, rngs=rngs)

  def __call__(self, x):
    h = jax.nn.gelu(self.embed(x))
    if self.moe is None:
      zero = jnp.zeros(())
      aux = sj.nn.MoEAux(zero, zero, zero, zero, zero,
                         jnp.full(EXPERTS, 1 / EXPERTS), zero)
      h = h + self.fc2(jax.nn.gelu(self.fc1(h)))
    else:
      y, aux = self.moe(h, return_aux=True)
      h = h + y
    return self.head(h), aux


def _loss(model, x, y):
  logits, aux = model(x)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + 1e-2 * aux.load_balancing + 1e-3 * aux.z_loss, aux


@nnx.jit
def _train_step(model, optimizer, x, y):
  (_, aux), grads = nnx.value_and_grad(_loss, has_aux=True)(model, x, y)
  optimizer.update(model, grads)
  return aux


@nnx.jit
def _eval_step(model, x, y):
  logits, aux = model(x)
  return jnp.sum(jnp.argmax(logits, -1) == y), aux


def evaluate(model, x, y, batch_size):
  """Accuracy, expert load and dropped fraction on ``(x, y)``."""
  correct, load, dropped, batches = 0, np.zeros(EXPERTS), 0.0, 0
  for i in range(0, len(x) - batch_size + 1, batch_size):
    c, aux = _eval_step(model, x[i:i + batch_size], y[i:i + batch_size])
    correct += int(c)
    load += np.asarray(aux.expert_load)
    dropped += float(aux.dropped)
    batches += 1
  return (correct / (batches * batch_size), load / batches,
          dropped / batches)


def run(variant, data, *, epochs, batch_size, eval_batch_size, lr, seed,
        samples_per_epoch=20):
  """Trains one variant; returns its results and its load over training."""
  model = Model(data.x_train.shape[1], 10, variant, rngs=nnx.Rngs(seed))
  model.train()
  optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  steps = len(data.x_train) // batch_size
  every = max(1, steps // samples_per_epoch)
  history, window, balance = [], [], []
  start = time.perf_counter()
  for _ in range(epochs):
    order = rng.permutation(len(data.x_train))
    for step in range(steps):
      idx = order[step * batch_size:(step + 1) * batch_size]
      aux = _train_step(model, optimizer, data.x_train[idx],
                        data.y_train[idx])
      window.append(np.asarray(aux.expert_load))
      balance.append(float(aux.load_balancing))
      if len(window) == every:
        history.append(np.mean(window, axis=0))
        window = []
  train_s = time.perf_counter() - start
  model.eval()
  acc, load, dropped = evaluate(model, data.x_test, data.y_test,
                                eval_batch_size)
  share = load / load.sum()
  return {
      "variant": variant,
      "test_accuracy": acc,
      "test_expert_load": share.tolist(),
      "max_load_share": float(share.max()),
      "min_load_share": float(share.min()),
      "load_cv2": float(share.var() / share.mean() ** 2),
      "test_dropped": dropped,
      "final_epoch_load_balancing_loss": float(np.mean(balance[-steps:])),
      "train_seconds": train_s,
  }, np.array(history)


def plot(histories, epochs, path):
  """Expert-load heatmaps over training, one row per MoE variant."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = [n for n in histories if n != "dense"]
  fig, axes = plt.subplots(len(names), 2, figsize=(11, 2.8 * len(names)),
                           gridspec_kw={"width_ratios": [3, 1]},
                           squeeze=False)
  vmax = max(h.max() for n, h in histories.items() if n != "dense")
  for row, name in enumerate(names):
    history = histories[name]
    ax = axes[row, 0]
    image = ax.imshow(history.T, aspect="auto", origin="lower",
                      cmap="viridis", vmin=0, vmax=vmax,
                      interpolation="nearest",
                      extent=(0, epochs, -0.5, history.shape[1] - 0.5))
    ax.set_ylabel(f"{name}\nexpert")
    ax.set_xlabel("epoch")
    fig.colorbar(image, ax=ax, label="share of routed slots")
    ax = axes[row, 1]
    ax.bar(np.arange(history.shape[1]), history[-1])
    ax.axhline(1 / history.shape[1], color="k", linestyle="--", lw=1)
    ax.set_xlabel("expert")
    ax.set_title("load at the end of training", fontsize=9)
  fig.suptitle("Expert load over training (Fashion-MNIST)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                      default=list(VARIANTS))
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--eval-batch-size", type=int, default=1000)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--limit", type=int, default=None,
                      help="use only the first N training and test examples")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"),
                      help="directory for the PNG and the JSON of results")
  args = parser.parse_args(argv)

  data = datasets.load_fashion_mnist(args.data_dir).head(args.limit)
  eval_batch = min(args.eval_batch_size, len(data.x_test))
  # Expert choice needs T * 2 / E whole; round the batches down to that.
  eval_batch -= eval_batch % (EXPERTS // 2)
  batch = args.batch_size - args.batch_size % (EXPERTS // 2)

  results, histories = [], {}
  print(f"{data.name}: {len(data.x_train)} train, {len(data.x_test)} test; "
        f"{EXPERTS} experts of hidden {EXPERT_HIDDEN}, {args.epochs} epochs")
  for variant in args.variants:
    result, history = run(variant, data, epochs=args.epochs,
                          batch_size=batch, eval_batch_size=eval_batch,
                          lr=args.lr, seed=args.seed)
    results.append(result)
    histories[variant] = history
    balance = "(no experts)"
    if variant != "dense":
      balance = (f"load share max {result['max_load_share']:.3f} "
                 f"min {result['min_load_share']:.3f}  "
                 f"CV^2 {result['load_cv2']:.4f}  "
                 f"dropped {result['test_dropped']:.4f}")
      if variant != "expert_choice":  # balanced by construction, no loss
        balance += (f"  LB loss "
                    f"{result['final_epoch_load_balancing_loss']:.4f}")
    print(f"{variant:>14}: test accuracy {result['test_accuracy']:.4f}  "
          f"{balance}  ({result['train_seconds']:.0f} s)", flush=True)

  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "moe.json").write_text(json.dumps(results, indent=2))
  if len(histories) > ("dense" in histories):
    plot(histories, args.epochs, args.out / "moe_expert_load.png")
    print(f"wrote {args.out / 'moe_expert_load.png'}")
  return results


if __name__ == "__main__":
  main()
