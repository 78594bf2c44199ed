# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-step cost of the weight-sparsity transforms on the example LM.

The model is ``examples/lm_model.py``'s default (4 layers, width 128,
context 128, batch 16, blocks stacked under ``nnx.scan``), trained as in
``examples/lm.py`` (clipped Adam; the transforms on the projection kernels
through ``sj.leaf_specs``, the head dense; the loss reads
``sj.forward_params``). As in ``benchmarks/overhead.py``, each transform is
timed in one process beside dense Adam, buffers donated, in two variants:

* ``steady``: ``update_every`` huge, so after the first step no mask update
  happens;
* ``update``: ``update_every=1``, every step a mask-update step.

Variants run interleaved, in a new random order every repeat; a ratio is the
median over repeats of (variant median / dense median of the same repeat),
with the range over repeats beside it. The amortized ratio over
``update_every=f`` (default 100) is ``((f - 1) * steady + update) / f``.
The ideal of every ratio is 1.00 (the issue asks for at most 1.05 steady
and 1.10 amortized).

Run: ``python benchmarks/lm_step.py [--quick] [--tiny] [--methods ...]``
"""

import argparse
import pathlib
import sys
import time

import jax
import numpy as np
import optax
from flax import nnx

import sparsejax as sj

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import _training  # noqa: E402
import lm  # noqa: E402
import lm_model  # noqa: E402
import methods  # noqa: E402

NEVER = 10**9
SPARSITY = 0.9


def factories(specs):
  """``name -> (update_every -> transform of Adam)``: every sparse method
  of ``examples/lm.py``, from the shared registry (``examples/methods.py``),
  with a constant target (no ramp) and uniform budgets."""
  inner = optax.adam(1e-3, b2=0.95)

  def factory(name):
    return lambda f: methods.make(
        name, inner, sparsity=SPARSITY, total_steps=NEVER, update_every=f,
        ramp_steps=0, distribution="uniform", specs=specs)

  table = {name: factory(name) for name in lm.METHODS if name != "dense"}
  return table, inner


WITHOUT_UPDATES = {"static"}


class Runner:
  """One variant: its own params, optimizer state and compiled step."""

  def __init__(self, tx, model, batches):
    graphdef, template, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(lambda x: x.copy(), nnx.to_pure_dict(template))
    tx = optax.chain(optax.clip_by_global_norm(1.0), tx)
    self.state = tx.init(params)
    sparse = _training.uses_sparsejax(self.state)
    self.params = sj.forward_params(params, self.state) if sparse else params
    self.step = lm.make_train_step(graphdef, template, rest, tx, sparse)
    self.batches = batches
    self.i = 0

  def run(self, n):
    times = []
    for _ in range(n):
      batch = self.batches[self.i % len(self.batches)]
      self.i += 1
      start = time.perf_counter()
      self.params, self.state, loss = self.step(self.params, self.state,
                                                batch)
      jax.block_until_ready(loss)
      jax.block_until_ready(self.params)
      times.append(time.perf_counter() - start)
    return times


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods",
                      default="static,magnitude,set,rigl,srigl,snfs,mest,"
                      "granet,dst_ee")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--amortize", type=int, default=100)
  parser.add_argument("--quick", action="store_true",
                      help="2 repeats x 3 steps")
  parser.add_argument("--tiny", action="store_true",
                      help="the test-size model")
  args = parser.parse_args(argv)
  if args.quick:
    args.repeats, args.steps = 2, 3
  cfg = lm_model.LMConfig.tiny() if args.tiny else lm_model.LMConfig()
  model = lm_model.TransformerLM(cfg, rngs=nnx.Rngs(0))
  specs = lm.sparse_specs(model)
  table, inner = factories(specs)
  names = [m for m in args.methods.split(",") if m]
  for m in names:
    if m not in table:
      raise ValueError(f"--methods: unknown {m!r}; expected {list(table)}")
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, (cfg.batch_size, cfg.seq_len + 1),
                          dtype=np.int32) for _ in range(4)]
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; model "
        f"{cfg.num_layers} layers, d={cfg.d_model}, ffn {cfg.d_ff}, context "
        f"{cfg.seq_len}, batch {cfg.batch_size}, stacked; sparsity "
        f"{SPARSITY}; {args.repeats} repeats x {args.steps} steps")
  runners = {"dense": Runner(inner, model, batches)}
  for m in names:
    runners[m + "/steady"] = Runner(table[m](NEVER), model, batches)
    if m not in WITHOUT_UPDATES:
      runners[m + "/update"] = Runner(table[m](1), model, batches)
  for r in runners.values():  # compile, and pass the first (update) step
    r.run(2)
  ratios = {name: [] for name in runners}
  dense_ms = []
  order = np.random.default_rng(0)
  for _ in range(args.repeats):
    shuffled = list(order.permutation(list(runners)))
    medians = {n: float(np.median(runners[n].run(args.steps)))
               for n in shuffled}
    dense_ms.append(medians["dense"] * 1e3)
    for name, t in medians.items():
      ratios[name].append(t / medians["dense"])
  f = args.amortize
  print(f"\ndense Adam {np.median(dense_ms):.1f} ms/step (range "
        f"{min(dense_ms):.1f}-{max(dense_ms):.1f}); ratios to dense, "
        "median [range] over repeats; ideal 1.00\n")
  print(f"| method | steady | mask update | amortized /{f} |")
  print("|---|---|---|---|")

  def cell(xs):
    return f"{np.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"

  for m in names:
    steady = np.array(ratios[m + "/steady"])
    if m in WITHOUT_UPDATES:
      print(f"| {m} | {cell(steady)} | - | {cell(steady)} |")
      continue
    update = np.array(ratios[m + "/update"])
    amort = ((f - 1) * steady + update) / f
    print(f"| {m} | {cell(steady)} | {cell(update)} | {cell(amort)} |")


if __name__ == "__main__":
  main()
