# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Lottery tickets on Fashion-MNIST: iterative magnitude pruning, rewinding.

Frankle & Carbin's experiment on LeNet-300-100 (Flax Linen): train, prune
20 % of the remaining weights of each hidden layer and 10 % of the output
layer's by magnitude (:func:`sparsejax.imp_prune`), reset the survivors to
their initial values (or, with ``--rewind-step k``, to their values after
``k`` steps of the dense run; :func:`sparsejax.rewind`), and train again with
the mask fixed (:func:`sparsejax.static_sparse`, which starts a fresh Adam
state). The control re-initialises the surviving weights at random (a new
draw of the same initialiser) with the same masks. Adam with learning rate
1.2e-3 and batches of 60, as in the paper; fewer epochs per round.

It prints a table of test accuracy against the fraction of weights
remaining, for the winning tickets and the random re-initialisations, and
writes ``<out>/lottery_ticket.png`` and ``<out>/lottery_ticket.json``.

Run, from the repository root::

  python examples/lottery_ticket.py --rounds 12 --epochs 3 --out runs/
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import optax

import sparsejax as sj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)


def run(data, *, rounds: int, epochs: int, rate: float, output_rate: float,
        batch_size: int, lr: float, seed: int, rewind_step: int = 0,
        log: bool = True) -> dict:
  """Runs IMP; returns per-round accuracies of tickets and controls."""
  module = _training.LeNet300100(
      num_classes=int(max(data.y_train.max(), data.y_test.max())) + 1)
  din = data.x_train.shape[1]
  theta0 = _training.init_variables(module, din, seed)["params"]

  def train(params, masks, *, tag):
    tx = (optax.adam(lr) if masks is None else
          sj.static_sparse(optax.adam(lr), masks=masks))
    start = time.perf_counter()
    trained, history = _training.train(
        module, {"params": params}, data, tx=tx, epochs=epochs,
        batch_size=batch_size, seed=seed, log=False,
        checkpoint_step=rewind_step if masks is None else None)
    if log:
      curve = " ".join(f"{a:.4f}" for a in history["test_accuracy"])
      print(f"  {tag}: {curve} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr)
    return trained["params"], history

  trained, history = train(theta0, None, tag="dense")
  rewind_to = (theta0 if rewind_step == 0 else
               history["checkpoint"]["params"])
  rows = [{"round": 0, "remaining": 1.0,
           "ticket": history["test_accuracy"],
           "random": history["test_accuracy"]}]
  masks = None
  overrides = {"fc3": output_rate}
  for r in range(1, rounds + 1):
    masks = sj.imp_prune(trained, masks, rate=rate, overrides=overrides)
    remaining = sj.fraction_remaining(masks)
    if log:
      print(f"round {r}: {100 * remaining:.1f}% of weights remain",
            file=sys.stderr)
    trained, ticket = train(sj.rewind(rewind_to, masks), masks, tag="ticket")
    fresh = _training.init_variables(module, din, seed + 1000 + r)["params"]
    _, control = train(sj.rewind(fresh, masks), masks, tag="random reinit")
    rows.append({"round": r, "remaining": remaining,
                 "ticket": ticket["test_accuracy"],
                 "random": control["test_accuracy"],
                 "layers": {k: float(v["kernel"].mean())
                            for k, v in masks.items()}})
  return {"rows": rows}


def table(results: dict) -> str:
  lines = ["| round | remaining (%) | ticket: final | ticket: best | "
           "random reinit: final | random reinit: best |",
           "|---|---|---|---|---|---|"]
  for row in results["rows"]:
    t, c = row["ticket"], row["random"]
    lines.append(
        f"| {row['round']} | {100 * row['remaining']:.1f} | "
        f"{100 * t[-1]:.2f} | {100 * max(t):.2f} | {100 * c[-1]:.2f} | "
        f"{100 * max(c):.2f} |")
  return "\n".join(lines)


def plot(results: dict, path: pathlib.Path, *, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = results["rows"]
  remaining = [100 * r["remaining"] for r in rows]
  fig, (ax, ax_curve) = plt.subplots(1, 2, figsize=(11, 4))
  for key, name, style in (("ticket", "winning ticket (rewound)", "o-"),
                           ("random", "random reinitialisation", "s--")):
    ax.plot(remaining, [100 * r[key][-1] for r in rows], style, label=name)
  ax.axhline(100 * rows[0]["ticket"][-1], color="gray", lw=0.8,
             label="dense")
  ax.set_xscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("weights remaining (%)")
  ax.set_ylabel("test accuracy at the end of training (%)")
  ax.set_title("accuracy per IMP round")
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  shown = sorted({0, len(rows) // 3, 2 * len(rows) // 3, len(rows) - 1})
  for i in shown:
    row = rows[i]
    epochs = range(1, len(row["ticket"]) + 1)
    line, = ax_curve.plot(epochs, [100 * a for a in row["ticket"]], "o-",
                          label=f"ticket {100 * row['remaining']:.1f}%")
    if i:
      ax_curve.plot(epochs, [100 * a for a in row["random"]], "s--",
                    color=line.get_color(),
                    label=f"random {100 * row['remaining']:.1f}%")
  ax_curve.set_xlabel("epoch")
  ax_curve.set_ylabel("test accuracy (%)")
  ax_curve.set_title("learning curves")
  ax_curve.grid(alpha=0.3)
  ax_curve.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=12)
  parser.add_argument("--epochs", type=int, default=3,
                      help="epochs of training per round")
  parser.add_argument("--rate", type=float, default=0.2,
                      help="fraction of the remaining hidden weights pruned "
                      "per round")
  parser.add_argument("--output-rate", type=float, default=0.1,
                      help="the same for the output layer")
  parser.add_argument("--rewind-step", type=int, default=0,
                      help="rewind to the dense run's weights after this "
                      "many steps (0: the initialisation)")
  parser.add_argument("--batch-size", type=int, default=60)
  parser.add_argument("--lr", type=float, default=1.2e-3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--limit", type=int, default=None,
                      help="use only the first N train and test examples")
  args = parser.parse_args(argv)
  if args.rounds < 1 or args.epochs < 1:
    parser.error("--rounds and --epochs must be >= 1")
  for name in ("rate", "output_rate"):
    if not 0 <= getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be in [0, 1)")
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  data = _training.load_data(args)
  print(f"{args.rounds} rounds of {args.epochs} epochs, "
        f"rate {args.rate} (output layer {args.output_rate}), rewind step "
        f"{args.rewind_step}")
  results = run(data, rounds=args.rounds, epochs=args.epochs, rate=args.rate,
                output_rate=args.output_rate, batch_size=args.batch_size,
                lr=args.lr, seed=args.seed, rewind_step=args.rewind_step)
  print(f"\nTest accuracy (%) of LeNet-300-100 on {data.name} per IMP round:"
        "\n")
  print(table(results))
  args.out.mkdir(parents=True, exist_ok=True)
  png = args.out / "lottery_ticket.png"
  plot(results, png, title=f"Lottery tickets, LeNet-300-100 on {data.name}")
  results.update(dataset=data.name, epochs=args.epochs, rate=args.rate,
                 output_rate=args.output_rate, rewind_step=args.rewind_step,
                 seed=args.seed, png=str(png))
  path = args.out / "lottery_ticket.json"
  path.write_text(json.dumps(results, indent=2))
  print(f"\nwrote {png} and {path}")
  jax.clear_caches()
  return results


if __name__ == "__main__":
  main()
