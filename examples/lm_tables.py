# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Runs every command of one table of the language-model issue.

Each command is one ``examples/lm.py`` run (in this process); the JSONs it
writes are collected into one markdown table (``<out>/table_<name>.md``,
also printed) and one PNG (``<out>/table_<name>.png``: validation bpb
against sparsity, one line per method).

Tables::

  sparse      dense + static / magnitude (GMP) / SET / RigL at 50, 75 and
              90 % sparsity, --seeds seeds (default 2), same step budget
              (--more adds SRigL, SNFS, MEST, GraNet, DST-EE)
  oneshot     magnitude / Wanda / SparseGPT at 0.5, 0.6, 4:8 and 2:4 from
              a trained dense checkpoint (trained first if --from is absent)
  activation  TEAL / WINA / CATS / top-k at 25, 40, 50 and 65 % target
              from a trained dense checkpoint
  moe         dense FFN against top-2 (dropless), expert choice (c = 2) and
              Switch (top-1, dropless) with --experts experts (default 8)
              at equal active parameters, same step budget, --seeds seeds
              (default 1): validation bpb and load balance; the PNG has the
              bpb of each model and every layer's load coefficient of
              variation. A control row: Switch with one expert, the dense
              model with a plain silu MLP in place of the SwiGLU (same
              weights), which separates what the gating is worth from what
              the experts are

Run: ``python examples/lm_tables.py sparse --steps 2000 --out runs/``;
``--tiny`` uses the test-size model.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lm  # noqa: E402

SPARSE = ("static", "magnitude", "set", "rigl")
MORE = ("srigl", "snfs", "mest", "granet", "dst_ee")
SPARSITIES = ("0.5", "0.75", "0.9")
ONESHOT = ("magnitude", "wanda", "sparsegpt")
ONESHOT_SPARSITIES = ("0.5", "0.6", "4:8", "2:4")
ACTIVATION = ("teal", "wina", "cats", "topk")
TARGETS = ("0.25", "0.4", "0.5", "0.65")
MOE = ("top2", "expert_choice", "switch")
TABLES = ("sparse", "oneshot", "activation", "moe")


def commands(args) -> list[list[str]]:
  """The ``lm.py`` argument lists of the table, in order."""
  common = ["--out", str(args.out)] + (["--tiny"] if args.tiny else [])
  if args.val_windows:
    common += ["--val-windows", str(args.val_windows)]
  train = ["--steps", str(args.steps)] + common
  ckpt = args.from_ or str(pathlib.Path(args.out) / "lm_dense_0_ckpt")
  runs = []
  if args.table == "moe":
    for seed in range(args.seeds or 1):
      runs.append(["--method", "dense", "--seed", str(seed)] + train)
      for router in MOE:
        runs.append(["--moe", router, "--experts", str(args.experts),
                     "--seed", str(seed)] + train)
      runs.append(["--moe", "switch", "--experts", "1", "--seed",
                   str(seed)] + train)
    return runs
  if args.table == "sparse":
    methods = SPARSE + (MORE if args.more else ())
    for seed in range(args.seeds or 2):
      runs.append(["--method", "dense", "--seed", str(seed)] + train)
      for m in methods:
        for s in SPARSITIES:
          runs.append(["--method", m, "--sparsity", s, "--seed", str(seed)]
                      + train)
    return runs
  if not args.from_:
    runs.append(["--method", "dense"] + train)
  if args.table == "oneshot":
    for m in ONESHOT:
      for s in ONESHOT_SPARSITIES:
        runs.append(["--oneshot", m, "--sparsity", s, "--from", ckpt]
                    + common)
  else:
    for m in ACTIVATION:
      for t in TARGETS:
        runs.append(["--activation", m, "--target", t, "--from", ckpt]
                    + common)
  return runs


def _finished(argv: list[str], out) -> dict | None:
  """The JSON an earlier training run of ``argv`` wrote, if it matches
  (same method or MoE router and experts, sparsity, seed and steps)."""
  if "--method" not in argv and "--moe" not in argv:
    return None
  a = lm.parse_args(argv)
  seed = f"_s{a.seed}" if a.seed else ""
  if a.moe:
    path = pathlib.Path(out) / f"lm_moe_{a.moe}_{a.experts}{seed}.json"
    want = {"moe": a.moe, "experts": a.experts}
  else:
    sparsity = 0.0 if a.method == "dense" else a.sparsity
    path = pathlib.Path(out) / f"lm_{a.method}_{sparsity:g}{seed}.json"
    want = {"method": a.method, "sparsity": sparsity}
  if not path.is_file():
    return None
  r = json.loads(path.read_text())
  same = (r.get("steps") == a.steps and r.get("seed") == a.seed
          and all(r.get(k) == v for k, v in want.items()))
  return r if same else None


def _mean_sparsity(per_layer: dict) -> float:
  values = [v for vs in per_layer.values() for v in vs]
  return sum(values) / max(len(values), 1)


def collect(results: list[dict], table: str) -> tuple[str, dict]:
  """Markdown table of ``results`` and the series for the plot."""
  rows = {}
  for r in results:
    key = (r.get("command"), r["method"], str(r["sparsity"]))
    rows.setdefault(key, []).append(r)
  lines = ["| command | method | sparsity / target | seeds | val bpb "
           "(mean) | per seed | realised (mean over layers) |",
           "|---|---|---|---|---|---|---|"]
  series = {}
  for (command, method, sparsity), rs in rows.items():
    bpbs = [r["val_bpb"] for r in rs]
    mean = sum(bpbs) / len(bpbs)
    real = _mean_sparsity(rs[0]["layer_sparsity"])
    lines.append(f"| {command} | {method} | {sparsity} | {len(rs)} | "
                 f"{mean:.4f} | " + ", ".join(f"{b:.4f}" for b in bpbs)
                 + f" | {real:.3f} |")
    series.setdefault(method if command != "train" or method != "dense"
                      else "dense", []).append((sparsity, real, mean))
  if table != "sparse":
    dense = [r for r in results if r.get("command") == "train"]
    if dense:
      lines.append(f"\ndense checkpoint: val bpb {dense[0]['val_bpb']:.4f}")
  return "\n".join(lines), series


def _total_params(r: dict) -> int:
  """A run's parameter count: its JSON's, else its config's model's (a
  dense run written before the count was recorded)."""
  if "total_params" in r:
    return r["total_params"]
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  cfg = lm.lm_model.LMConfig(**r["config"])
  model = nnx.eval_shape(lambda: lm.lm_model.TransformerLM(
      cfg, rngs=nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def collect_moe(results: list[dict]) -> tuple[str, dict]:
  """Markdown table of the moe runs and the series for :func:`plot_moe`.

  Load balance per model, over all its seeds: the worst layer's min and
  max expert load as multiples of the uniform ``1 / E``, the coefficient
  of variation of the load over experts (mean over layers and seeds) and
  the fraction of tokens that met no expert (mean over layers and seeds);
  the dense model has none.
  """
  rows = {}
  for r in results:
    rows.setdefault((r["method"], r.get("experts")), []).append(r)
  lines = ["| model | experts | k (EC: c) | active params | total params | "
           "val bpb (mean) | per seed | load min / max x uniform (worst "
           "layer) | load CV (mean over layers) | dropped (mean) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  series = {}
  for (method, experts), rs in rows.items():
    r = rs[0]
    if experts == 1:
      method = "dense silu MLP (switch, 1 expert)"
    bpbs = [x["val_bpb"] for x in rs]
    mean = sum(bpbs) / len(bpbs)
    per_seed = ", ".join(f"{b:.4f}" for b in bpbs)
    if r.get("command") != "moe":
      total = _total_params(r)
      lines.append(f"| dense SwiGLU | - | - | {total:,} | {total:,} | "
                   f"{mean:.4f} | {per_seed} | - | - | - |")
      series[method] = {"val_bpb": mean, "cv": None}
      continue
    low = min(v for x in rs for v in x["load"]["min_x_uniform"])
    high = max(v for x in rs for v in x["load"]["max_x_uniform"])
    # Per layer, the mean over seeds (the plot's series), then over layers.
    cv = [sum(v) / len(rs) for v in zip(*(x["load"]["cv"] for x in rs))]
    dropped = [v for x in rs for v in x["dropped"]]
    name = method if experts == 1 else f"{r['moe']} ({r['router']})"
    lines.append(
        f"| {name} | {r['experts']} | {r['k']} | "
        f"{r['active_params']:,} | {r['total_params']:,} | {mean:.4f} | "
        f"{per_seed} | {low:.2f} / {high:.2f} | {sum(cv) / len(cv):.3f} | "
        f"{sum(dropped) / len(dropped):.4f} |")
    series[method] = {"val_bpb": mean, "cv": None if experts == 1 else cv}
  return "\n".join(lines), series


def plot_moe(path, series):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
  names = list(series)
  bpbs = [series[n]["val_bpb"] for n in names]
  ax.bar(range(len(names)), bpbs, color="tab:blue")
  for i, b in enumerate(bpbs):
    ax.text(i, b, f"{b:.3f}", ha="center", va="bottom", fontsize=8)
  ax.set_xticks(range(len(names)),
                [n.split(" (")[0] for n in names], rotation=15)
  ax.set_ylim(min(bpbs) * 0.95, max(bpbs) * 1.02)
  ax.set_ylabel("validation bits per byte")
  ax.set_title("equal active parameters")
  for n in names:
    cv = series[n]["cv"]
    if cv is not None:
      bx.plot(range(len(cv)), cv, "o-", label=n)
  bx.set_xlabel("layer")
  bx.set_ylabel("expert load CV (std / mean)")
  bx.set_title("load balance (validation)")
  bx.grid(alpha=0.3)
  bx.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot(path, series, table):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for method, points in series.items():
    xs = list(range(len(points)))
    ax.plot(xs, [p[2] for p in points], "o-", label=method)
  labels = [p[0] for p in max(series.values(), key=len)]
  ax.set_xticks(range(len(labels)), labels)
  ax.set_xlabel("target" if table == "activation" else "sparsity")
  ax.set_ylabel("validation bits per byte")
  ax.set_title(f"{table} table")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> str:
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("table", choices=TABLES)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--seeds", type=int, default=None,
                      help="seeds per run (default: 2; moe: 1)")
  parser.add_argument("--experts", type=int, default=8,
                      help="moe: experts per layer")
  parser.add_argument("--more", action="store_true",
                      help="sparse: also srigl, snfs, mest, granet, dst_ee")
  parser.add_argument("--from", dest="from_", default=None,
                      help="oneshot/activation: the dense checkpoint")
  parser.add_argument("--tiny", action="store_true")
  parser.add_argument("--val-windows", type=int, default=None)
  parser.add_argument("--out", default="runs")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the lm.py commands only")
  parser.add_argument("--resume", action="store_true",
                      help="reuse a run's JSON in --out when it has the "
                      "same method, sparsity, seed and steps")
  args = parser.parse_args(argv)
  runs = commands(args)
  if args.dry_run:
    for r in runs:
      print("python examples/lm.py " + " ".join(r))
    return ""
  results = []
  for i, argv_i in enumerate(runs):
    print(f"[{i + 1}/{len(runs)}] lm.py " + " ".join(argv_i),
          file=sys.stderr)
    done = _finished(argv_i, args.out) if args.resume else None
    results.append(done if done is not None else lm.main(argv_i))
  moe = args.table == "moe"
  text, series = collect_moe(results) if moe else collect(results,
                                                           args.table)
  out = pathlib.Path(args.out)
  (out / f"table_{args.table}.md").write_text(text + "\n")
  keys = ("command", "method", "sparsity", "val_bpb", "layer_sparsity")
  if moe:
    keys += ("seed", "steps", "experts", "k", "expert_load", "load",
             "dropped", "active_params", "total_params")
  (out / f"table_{args.table}.json").write_text(json.dumps(
      [{k: r[k] for k in keys if k in r} for r in results], indent=1))
  if moe:
    plot_moe(out / f"table_{args.table}.png", series)
  else:
    plot(out / f"table_{args.table}.png", series, args.table)
  print(text)
  return text


if __name__ == "__main__":
  main()
