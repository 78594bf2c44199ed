# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Sparse training of LeNet-300-100 on Fashion-MNIST with sparsejax.

The model is the classic 784-300-100-10 ReLU MLP (LeCun et al, 1998) in Flax
NNX, trained with Adam through ``nnx.Optimizer``. A sparsity method wraps the
Adam optimizer; the model itself stays an ordinary dense module, and the
transform keeps the pruned weights exactly zero.

Run, from the repository root::

  python examples/fashion_mnist.py --method static --sparsity 0.9 --out runs/

Methods (``--method``): ``dense`` (plain Adam, the baseline) and every
method of the shared registry, ``examples/methods.py``, with its arguments
for the run's length: ``static`` (a random ERK mask fixed at
initialisation), ``magnitude`` (Zhu & Gupta's gradual cubic schedule, from
dense to ``--sparsity`` over the first half of training, layer by layer),
``random_pruning``, ``movement``; the drop-and-grow methods ``rigl``,
``srigl``, ``granet`` (mask updates every 100 steps) and ``set``, ``snfs``,
``mest`` (ten over training, once an epoch at the default 10 epochs), whose
figure gains a panel with, per layer, the fraction of its connections that
changed at each mask update; the straight-through methods ``ste``,
``top_kast`` and ``nm_sparse`` (dense weights, masked forward pass; N:M
needs ``--sparsity`` 0.5, 0.75, ...).

Data: see ``examples/datasets.py`` (``--data-dir``, ``$SPARSEJAX_DATA_DIR``,
Debian's ``dataset-fashion-mnist``, a download, else scikit-learn's digits).

At the end it prints the test accuracy and the per-layer sparsity table, and
writes ``<out>/fashion_mnist_<method>.png`` (accuracy curve, per-layer
densities over epochs) and ``<out>/fashion_mnist_<method>.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import sparsejax as sj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)
import datasets  # noqa: E402  (examples/datasets.py)
import methods  # noqa: E402  (examples/methods.py)


# ---------------------------------------------------------------------------
# Methods: every transform of the shared registry (examples/methods.py), and
# plain Adam as the dense baseline.

METHODS = ("dense", *methods.METHODS)
# Methods whose masks change at a fixed budget: the figure shows how much.
DST_METHODS = tuple(name for name, m in methods.METHODS.items()
                    if m.profile in methods.DROP_AND_GROW)
magnitude_update_every = methods.mask_update_every


def make_optimizer(method: str, *, lr: float, sparsity: float,
                   total_steps: int, seed: int) -> optax.GradientTransformation:
  """Adam wrapped by the chosen sparsity method."""
  if method == "dense":
    return optax.adam(lr)
  return methods.make(method, optax.adam(lr), sparsity=sparsity,
                      total_steps=total_steps, seed=seed)


# ---------------------------------------------------------------------------
# Training.


def _params(model):
  """The model's weights as a plain nested dict of arrays."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _layer_densities(params) -> dict[str, float]:
  """Measured fraction of nonzero entries of every weight matrix."""
  densities = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if leaf.ndim >= 2:
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      densities[name] = float(np.count_nonzero(np.asarray(leaf)) / leaf.size)
  return densities


def _forward(model, optimizer, *, masked):
  """The model with the weights its forward pass uses."""
  return (_training.forward_model(model, optimizer.opt_state) if masked
          else model)


def _masks(optimizer):
  """The optimizer's masks as a plain dict shaped like :func:`_params`."""
  masks = sj.get_masks(optimizer.opt_state)
  return nnx.to_pure_dict(masks) if isinstance(masks, nnx.State) else masks


@jax.jit
def _changed_fractions(new, old):
  """Per layer: connections active now that were not, over those before."""
  def one(n, o):
    if n is None:
      return None
    return jnp.sum(n & ~o) / jnp.maximum(jnp.sum(o), 1)
  return jax.tree.map(one, new, old, is_leaf=lambda x: x is None)


def _layer_values(tree) -> dict[str, float]:
  """A per-layer value tree as ``{"fc1/kernel": value, ...}``."""
  return {"/".join(str(getattr(k, "key", k)) for k in path): float(v)
          for path, v in jax.tree_util.tree_leaves_with_path(tree)}


def train(data: datasets.Dataset, *, method: str = "dense",
          sparsity: float = 0.9, epochs: int = 10, batch_size: int = 128,
          lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
  """Trains LeNet-300-100 on `data` and returns the model and a history.

  Args:
    data: the dataset (input width taken from ``data.x_train``).
    method: a key of :data:`METHODS`.
    sparsity: target sparsity of the sparse methods.
    epochs: passes over the training set.
    batch_size: examples per step (the last partial batch is dropped).
    lr: Adam's learning rate.
    seed: seeds the model's initialisation, the data order and the masks.
    progress: show a tqdm bar per epoch.

  Returns:
    A dict with ``model``, ``optimizer`` and ``history`` (per-epoch lists).
  """
  n_train, din = data.x_train.shape
  batch_size = min(batch_size, n_train)
  steps_per_epoch = n_train // batch_size
  total_steps = steps_per_epoch * epochs
  num_classes = int(max(data.y_train.max(), data.y_test.max())) + 1

  model = _training.MLP(din, num_classes=num_classes, rngs=nnx.Rngs(seed))
  tx = make_optimizer(method, lr=lr, sparsity=sparsity,
                      total_steps=total_steps, seed=seed)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  # Straight-through methods keep dense weights: their forward pass, the
  # evaluation and the densities read the masked ones.
  masked = method != "dense" and not methods.METHODS[method].exact_zero
  forward = functools.partial(_forward, masked=masked)
  if method != "dense" and not masked:
    # The transform zeroes pruned weights through its updates, from the
    # first step on; zeroing them now as well makes that first step's
    # gradient the sparse network's, not the dense initialisation's.
    weights = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(
        weights, sj.masks.apply(nnx.to_pure_dict(weights), _masks(optimizer)))
    nnx.update(model, weights)
  rng = np.random.default_rng(seed)

  history = {
      "epoch": [0],
      "test_accuracy": [_training.evaluate(forward(model, optimizer),
                                           data.x_test, data.y_test)],
      "train_loss": [float("nan")],
      "epoch_seconds": [0.0],
      # Densities are sampled ~10 times per epoch to show pruning schedules;
      # `density_epoch` holds when (in fractional epochs).
      "density_epoch": [0.0],
      "densities": [_layer_densities(_params(forward(model, optimizer)))],
      # Drop-and-grow methods: at each mask update, its step and per layer
      # the fraction of the active connections that were replaced.
      "steps_per_epoch": steps_per_epoch,
      "mask_update_step": [],
      "changed": [],
  }
  track_masks = method in DST_METHODS
  masks = _masks(optimizer) if track_masks else None
  density_every = max(1, steps_per_epoch // 10)
  for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    losses = []
    bar = tqdm(_training.batches(rng, n_train, batch_size),
               total=steps_per_epoch, desc=f"epoch {epoch}/{epochs}",
               disable=not progress, leave=True, file=sys.stderr,
               mininterval=0.5)
    for step, idx in enumerate(bar):
      losses.append(_training.train_step(
          model, optimizer, data.x_train[idx], data.y_train[idx],
          masked=masked))
      if track_masks:
        new_masks = _masks(optimizer)
        changed = _layer_values(_changed_fractions(new_masks, masks))
        if any(v > 0 for v in changed.values()):
          history["mask_update_step"].append(
              (epoch - 1) * steps_per_epoch + step)
          history["changed"].append(changed)
        masks = new_masks
      if step % 50 == 0:
        bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
      if (step + 1) % density_every == 0 or step + 1 == steps_per_epoch:
        history["density_epoch"].append(epoch - 1 + (step + 1) /
                                        steps_per_epoch)
        history["densities"].append(
            _layer_densities(_params(forward(model, optimizer))))
    train_loss = float(jnp.mean(jnp.stack(losses)))
    seconds = time.perf_counter() - start
    accuracy = _training.evaluate(forward(model, optimizer), data.x_test,
                                  data.y_test)
    history["epoch"].append(epoch)
    history["test_accuracy"].append(accuracy)
    history["train_loss"].append(train_loss)
    history["epoch_seconds"].append(seconds)
    tqdm.write(f"epoch {epoch}: loss {train_loss:.4f}, test accuracy "
               f"{accuracy:.4f} ({seconds:.1f} s)", file=sys.stderr)
  return {"model": model, "optimizer": optimizer, "history": history}


def plot(history: dict, path: pathlib.Path, *, title: str) -> None:
  """Writes the accuracy curve and the per-layer densities to a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top

  changes = history.get("changed") or []
  fig, axes = plt.subplots(1, 3 if changes else 2,
                           figsize=(15 if changes else 10, 4))
  ax_acc, ax_den = axes[:2]
  epochs = history["epoch"]
  ax_acc.plot(epochs, [100 * a for a in history["test_accuracy"]], "o-")
  ax_acc.set_xlabel("epoch")
  ax_acc.set_ylabel("test accuracy (%)")
  ax_acc.set_title("accuracy")
  ax_acc.grid(alpha=0.3)
  styles = ("-", "--", ":", "-.")
  for i, layer in enumerate(history["densities"][0]):
    ax_den.plot(history["density_epoch"],
                [d[layer] for d in history["densities"]],
                linestyle=styles[i % len(styles)], linewidth=2, label=layer)
  ax_den.set_xlabel("epoch")
  ax_den.set_ylabel("density (nonzero fraction)")
  ax_den.set_ylim(0, 1.05)
  ax_den.set_title("per-layer density")
  ax_den.legend()
  ax_den.grid(alpha=0.3)
  if changes:
    ax_chg = axes[2]
    steps_per_epoch = history.get("steps_per_epoch", 1)
    at = [s / steps_per_epoch for s in history["mask_update_step"]]
    for i, layer in enumerate(changes[0]):
      ax_chg.plot(at, [c[layer] for c in changes], marker="o",
                  linestyle=styles[i % len(styles)], label=layer)
    ax_chg.set_xlabel("epoch")
    ax_chg.set_ylabel("fraction of connections changed")
    ax_chg.set_title("changed at each mask update")
    ax_chg.legend()
    ax_chg.grid(alpha=0.3)
  for ax in axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description="Train LeNet-300-100 on Fashion-MNIST with sparsejax.")
  parser.add_argument("--method", choices=sorted(METHODS), default="dense")
  _training.add_run_args(parser, sparsity=0.9, epochs=10, batch_size=128,
                         sparsity_help="target sparsity of the sparse "
                         "methods")
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"),
                      help="directory for the PNG and the JSON of results")
  parser.add_argument("--no-progress", action="store_true",
                      help="hide the progress bars")
  return _training.check_run_args(parser, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the example; returns the results written to the JSON file."""
  args = parse_args(argv)
  data = _training.load_data(args)
  print(f"method {args.method}, sparsity {args.sparsity}, {args.epochs} "
        "epochs")

  run = train(data, method=args.method, sparsity=args.sparsity,
              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              seed=args.seed, progress=not args.no_progress)
  history = run["history"]
  masked = args.method != "dense" and not methods.METHODS[
      args.method].exact_zero
  params = _params(_forward(run["model"], run["optimizer"], masked=masked))
  masks = None if args.method == "dense" else _masks(run["optimizer"])
  summary = sj.summarize(params, masks)
  accuracy = history["test_accuracy"][-1]
  print(f"\ntest accuracy: {100 * accuracy:.2f}%  ({data.name}, "
        f"{args.method}, sparsity {args.sparsity})\n")
  print(summary)

  args.out.mkdir(parents=True, exist_ok=True)
  stem = f"fashion_mnist_{args.method}"
  png = args.out / f"{stem}.png"
  plot(history, png, title=f"LeNet-300-100 on {data.name}: {args.method}"
       + ("" if args.method == "dense" else f", sparsity {args.sparsity}"))
  results = {
      "dataset": data.name,
      "method": args.method,
      "sparsity": args.sparsity,
      "epochs": args.epochs,
      "seed": args.seed,
      "batch_size": args.batch_size,
      "lr": args.lr,
      "num_train": len(data.x_train),
      "num_test": len(data.x_test),
      "test_accuracy": accuracy,
      "history": history,
      "layers": [
          {"path": str(row.path), "shape": list(row.shape),
           "nnz": int(row.nnz), "size": int(row.size),
           "sparsity": float(row.sparsity)}
          for row in summary.rows
      ],
      "png": str(png),
  }
  json_path = args.out / f"{stem}.json"
  json_path.write_text(json.dumps(results, indent=2))
  print(f"\nwrote {png} and {json_path}")
  return results


if __name__ == "__main__":
  main()
