# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""One-shot pruning of a trained Fashion-MNIST MLP: magnitude/Wanda/SparseGPT.

Trains LeNet-300-100 (Flax Linen) densely with Adam, then prunes every layer
in one shot, without retraining, with :func:`sparsejax.prune_model`:

* ``magnitude``: the smallest ``|w|`` of each layer (N:M: of every ``m``
  inputs);
* ``wanda``: :func:`sparsejax.wanda`, ``|w|`` times the input feature's norm
  on the calibration set, per output neuron;
* ``sparsegpt``: :func:`sparsejax.sparsegpt`, saliency-chosen masks and
  optimal-brain-surgeon updates of the remaining weights.

Layers are pruned one after another with the inputs produced by the already
pruned layers before them, as the reference implementations do. Sparsities:
50 %, 70 % and 2:4 by default. Prints the test-accuracy table and writes it
to ``<out>/oneshot_prune.json``.

Run, from the repository root::

  python examples/oneshot_prune.py --epochs 5 --out runs/
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np
import optax

import sparsejax as sj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)

METHODS = ("magnitude", "wanda", "sparsegpt")


def parse_sparsity(text: str):
  """``"0.5"`` -> 0.5; ``"2:4"`` -> (2, 4)."""
  if ":" in text:
    n, m = text.split(":")
    return int(n), int(m)
  return float(text)


def label(sparsity) -> str:
  if isinstance(sparsity, tuple):
    return f"{sparsity[0]}:{sparsity[1]}"
  return f"{100 * sparsity:.0f}%"


def run(data, *, epochs: int, batch_size: int, lr: float, seed: int,
        sparsities: Sequence, calibration: int, calibration_batch: int,
        methods: Sequence[str] = METHODS, log: bool = True) -> dict:
  """Trains the dense model, prunes it every way, returns the accuracies."""
  module = _training.LeNet300100(
      num_classes=int(max(data.y_train.max(), data.y_test.max())) + 1)
  variables = _training.init_variables(module, data.x_train.shape[1], seed)
  start = time.perf_counter()
  trained, _ = _training.train(module, variables, data, tx=optax.adam(lr),
                               epochs=epochs, batch_size=batch_size,
                               seed=seed, log=log)
  dense = _training.evaluate_variables(module, trained, data.x_test,
                                       data.y_test)
  if log:
    print(f"dense: test accuracy {dense:.4f} ({time.perf_counter() - start:.0f}"
          " s of training)", file=sys.stderr)
  rng = np.random.default_rng(seed + 1)
  idx = rng.choice(len(data.x_train), min(calibration, len(data.x_train)),
                   replace=False)
  calib = [data.x_train[idx[i:i + calibration_batch]]
           for i in range(0, len(idx), calibration_batch)]
  results = {"dense": dense, "rows": []}
  for sparsity in sparsities:
    for method in methods:
      start = time.perf_counter()
      pruned = sj.prune_model(module, calib, variables=trained, method=method,
                              sparsity=sparsity)
      accuracy = _training.evaluate_variables(module, pruned.params,
                                              data.x_test, data.y_test)
      kept = sum(int(m.sum()) for m in jax.tree.leaves(pruned.masks))
      size = sum(int(m.size) for m in jax.tree.leaves(pruned.masks))
      results["rows"].append({
          "sparsity": label(sparsity), "method": method,
          "test_accuracy": accuracy, "weight_sparsity": 1 - kept / size,
          "seconds": time.perf_counter() - start})
      if log:
        print(f"{label(sparsity):>5} {method:>10}: {accuracy:.4f}",
              file=sys.stderr)
  return results


def table(results: dict, methods: Sequence[str] = METHODS) -> str:
  """The accuracy table: one row per sparsity, one column per method."""
  lines = ["| sparsity | " + " | ".join(methods) + " |",
           "|---|" + "---|" * len(methods),
           f"| dense | {100 * results['dense']:.2f} |"
           + " |" * (len(methods) - 1)]
  by = {(r["sparsity"], r["method"]): r for r in results["rows"]}
  for s in dict.fromkeys(r["sparsity"] for r in results["rows"]):
    cells = [f"{100 * by[(s, m)]['test_accuracy']:.2f}" for m in methods]
    lines.append(f"| {s} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sparsities", default="0.5,0.7,2:4",
                      help="comma-separated: fractions or n:m")
  parser.add_argument("--calibration", type=int, default=2048,
                      help="calibration examples drawn from the train set")
  parser.add_argument("--calibration-batch", type=int, default=256)
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--limit", type=int, default=None,
                      help="use only the first N train and test examples")
  args = parser.parse_args(argv)
  if args.epochs < 1:
    parser.error(f"--epochs must be >= 1, got {args.epochs}")
  try:
    args.sparsities = [parse_sparsity(s) for s in args.sparsities.split(",")]
  except ValueError:
    parser.error(f"--sparsities: cannot parse {args.sparsities!r}")
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  data = _training.load_data(args)
  print(f"{args.epochs} epochs of dense training")
  results = run(data, epochs=args.epochs, batch_size=args.batch_size,
                lr=args.lr, seed=args.seed, sparsities=args.sparsities,
                calibration=args.calibration,
                calibration_batch=args.calibration_batch)
  print(f"\nTest accuracy (%) of LeNet-300-100 on {data.name} after one-shot "
        "pruning of every layer, no retraining:\n")
  print(table(results))
  args.out.mkdir(parents=True, exist_ok=True)
  path = args.out / "oneshot_prune.json"
  results.update(dataset=data.name, epochs=args.epochs, seed=args.seed,
                 calibration=args.calibration)
  path.write_text(json.dumps(results, indent=2))
  print(f"\nwrote {path}")
  return results


if __name__ == "__main__":
  main()
