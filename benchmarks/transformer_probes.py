# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The probes of issue 12 on small transformers: what each method does.

Builds the models of ``tests/transformer_models.py`` (an NNX decoder with
3-D attention kernels, the same blocks stacked with ``nnx.vmap`` and run with
``nnx.scan``, a sparsejax MoE layer) and prints, for every probe of issue 12,
the measured figure: which leaves are sparse by default, ER budgets of
attention against FFN kernels, N:M groups, block tiles and SRigL fan-in on
3-D kernels, per-layer sparsity of stacked kernels under magnitude pruning
and RigL, ``summarize`` rows, and exact zeros with bf16 gradients.

The script runs on code before leaf specs (no ``specs=``, no
``sj.leaf_specs``) and after. On new code every probe runs twice: with no
configuration (exactly the call of the issue, on a plain dict of params) and
with ``specs=model`` where the call takes it. Correct figures are given in
the probe's name (``want``).

Run, on new code::

  python benchmarks/transformer_probes.py --json /tmp/new.json

on the commit before leaf specs (a git worktree)::

  git worktree add /tmp/sj_old 1c3ca0d
  cd /tmp/sj_old && PYTHONPATH=/tmp/sj_old python \\
      /work/main/benchmarks/transformer_probes.py --json /tmp/old.json

and the table of both: ``python benchmarks/transformer_probes.py --merge
/tmp/old.json /tmp/new.json``. Each run takes two to three minutes on CPU.
"""

import argparse
import json
import pathlib
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import sparsejax as sj
import sparsejax.nn  # noqa: F401  (the old code did not import it)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import transformer_models as tm  # pylint: disable=wrong-import-position

NEW = hasattr(sj, "leaf_specs")
QKV = ("query", "key", "value")
FFN = ("gate", "up", "down")


# ---------------------------------------------------------------------------
# Helpers, independent of sparsejax's own view code
# ---------------------------------------------------------------------------


def flat(tree) -> dict:
  leaves, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: x is None)
  return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p):
          x for p, x in leaves}


def matrix(x, path: str) -> np.ndarray:
  """``[slices, fan_in, fan_out]`` of a kernel of these models, by reshape."""
  x = np.asarray(x)
  stacked = path.startswith("layers/")
  if not stacked:
    x = x[None]
  name = path.split("/")[-2]
  if name in QKV:                       # [L, d, heads, head_dim]
    return x.reshape(x.shape[0], x.shape[1], -1)
  if name == "out" and x.ndim == 4:     # [L, heads, head_dim, d]
    return x.reshape(x.shape[0], -1, x.shape[-1])
  if name in ("w_in", "w_out"):         # MoE [E, d, h]: experts are slices
    return x[0]
  return x                              # [L, in, out]


def kw(model, use_specs: bool) -> dict:
  return {"specs": model} if use_specs else {}


def step_n(tx, params, grads_fn, steps: int):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for i in range(steps):
    updates, state = update(grads_fn(i, params), state, params)
    params = optax.apply_updates(params, updates)
  return params, sj.get_masks(state)


def zeros(_, params):
  return jax.tree.map(jnp.zeros_like, params)


def random_grads(seed: int = 0, dtype=None):
  def fn(i, params):
    g = optax.tree.random_like(jax.random.key(seed * 1000 + i), params)
    return g if dtype is None else jax.tree.map(lambda x: x.astype(dtype), g)
  return fn


def sparsity(masks: dict, paths) -> float:
  kept = sum(int(np.asarray(masks[p]).sum()) for p in paths)
  size = sum(np.asarray(masks[p]).size for p in paths)
  return 1 - kept / size


def pct(x: float) -> str:
  return f"{100 * x:.1f}"


def output(model, params, tokens):
  m = nnx.clone(model)
  state = nnx.state(m, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(m, state)
  return m(tokens)


def per_layer(params: dict, path: str) -> list[float]:
  m = matrix(params[path], path) != 0
  return [1 - s.mean() for s in m]


def set_params(model, params):
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)


# ---------------------------------------------------------------------------
# Probes: each returns its figure as a string
# ---------------------------------------------------------------------------


def default_sparse_leaves(use_specs):
  out = []
  for model in (tm.Decoder(), tm.StackedDecoder(3)):
    params = tm.params_of(model)
    tx = sj.magnitude_pruning(optax.adam(1e-3), sparsity=0.5,
                              **kw(model, use_specs))
    masks = flat(sj.get_masks(tx.init(params)))
    groups = {
        "embed": [p for p in masks if p.endswith("embedding")],
        "qkv bias": [p for p in masks if p.endswith("bias")
                     and p.split("/")[-2] in QKV],
        "stacked norm": [p for p in masks if p.startswith("layers/norm")],
    }
    for name, paths in groups.items():
      if paths:
        sparse = sum(masks[p] is not None for p in paths)
        out.append(f"{name} {sparse}/{len(paths)}")
  return "sparse: " + ", ".join(out)


def scanned_pruning(use_specs):
  model = tm.StackedDecoder(3)
  params = tm.params_of(model)
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5,
                            **kw(model, use_specs))
  new, masks = step_n(tx, params, zeros, 1)
  masks = flat(masks)

  def pruned(suffix):
    paths = [p for p in masks if p.endswith(suffix)]
    got = [masks[p] for p in paths if masks[p] is not None]
    if not got:
      return "dense"
    return pct(1 - sum(int(np.asarray(m).sum()) for m in got)
               / sum(np.asarray(m).size for m in got)) + " %"

  tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, tm.VOCAB)
  y0, y = output(model, params, tokens), output(model, new, tokens)
  rel = float(jnp.linalg.norm(y - y0) / jnp.linalg.norm(y0))
  return (f"out bias pruned {pruned('attn/out/bias')}, norm scales pruned "
          f"{pruned('scale')}, |y-y0|/|y0| {pct(rel)} %")


def set_er_budgets(use_specs):
  model = tm.Decoder()
  params = tm.params_of(model)
  tx = sj.set_(optax.sgd(0.1), sparsity=0.8, update_every=100,
               **kw(model, use_specs))
  masks = flat(sj.get_masks(tx.init(params)))
  attn = [p for p in masks if "/attn/" in p and p.endswith("kernel")]
  ffn = [p for p in masks
         if p.split("/")[-2] in FFN and p.endswith("kernel")]
  sparse = [p for p, m in masks.items() if m is not None]
  return (f"attention {pct(sparsity(masks, attn))} %, FFN "
          f"{pct(sparsity(masks, ffn))} %, all sparse leaves "
          f"{pct(sparsity(masks, sparse))} %")


def nm_qkv(use_specs, heads=tm.HEADS, d=tm.D):
  if heads == tm.HEADS:
    model = tm.Decoder()
  else:
    model = nnx.MultiHeadAttention(num_heads=heads, in_features=d,
                                   decode=False, rngs=nnx.Rngs(0))
  params = tm.params_of(model)
  tx = sj.nm_sparse(optax.sgd(0.1), n=2, m=4, **kw(model, use_specs))
  _, masks = step_n(tx, params, zeros, 1)
  masks = flat(masks)
  ok = total = 0
  for p, m in masks.items():
    if p.endswith("kernel") and p.split("/")[-2] in QKV:
      groups = np.asarray(m).reshape(d // 4, 4, -1).sum(1)  # along d
      ok += int((groups == 2).sum())
      total += groups.size
  return f"{ok}/{total} groups keep 2 ({pct(ok / total)} %)"


def nm_qkv_4_heads(use_specs):
  return nm_qkv(use_specs, heads=4, d=32)


def blocks_attention(use_specs, block=(2, 8)):
  model = tm.Decoder()
  params = tm.params_of(model)
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, granularity=block,
                            **kw(model, use_specs))
  _, masks = step_n(tx, params, zeros, 1)
  masks = flat(masks)
  out = {}
  for kind, names in (("q/k/v", QKV), ("out", ("out",))):
    whole = total = 0
    for p, m in masks.items():
      if p.endswith("kernel") and p.split("/")[-2] in names:
        x = matrix(m, p)[0]
        bm, bn = block
        tiles = x.reshape(x.shape[0] // bm, bm, x.shape[1] // bn, bn).sum(
            (1, 3))
        whole += int(((tiles == 0) | (tiles == bm * bn)).sum())
        total += tiles.size
    out[kind] = f"{whole}/{total}"
  return (f"whole {block[0]}x{block[1]} tiles of [d, heads*head_dim]: q/k/v "
          f"{out['q/k/v']}, out {out['out']}")


def srigl_fan_in(use_specs, stacked=False):
  model = tm.StackedDecoder(3) if stacked else tm.Decoder()
  params = tm.params_of(model)
  tx = sj.srigl(optax.adam(1e-2), sparsity=0.5, end_step=100,
                update_every=1, distribution="uniform",
                **kw(model, use_specs))
  _, masks = step_n(tx, params, random_grads(1), 1)
  masks = flat(masks)
  fans = []
  for p, m in masks.items():
    if m is not None and p.endswith("kernel") and p.split("/")[-2] in QKV:
      fans.extend(matrix(m, p).sum(1).ravel().tolist())
  live = [f for f in fans if f > 0]
  return (f"fan-in {min(live)}..{max(live)} (want 8), "
          f"{len(fans) - len(live)}/{len(fans)} units ablated")


def srigl_fan_in_stacked(use_specs):
  return srigl_fan_in(use_specs, stacked=True)


SCALES4 = [10.0, 1.0, 0.1, 0.01]


def stacked_magnitude(use_specs):
  model = tm.StackedDecoder(4)
  params = tm.with_layer_scales(tm.params_of(model), SCALES4)
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5,
                            **kw(model, use_specs))
  new, _ = step_n(tx, params, zeros, 1)
  new = flat(new)
  return "up kernel per layer: " + "/".join(
      pct(s) for s in per_layer(new, "layers/up/kernel")) + " %"


def stacked_magnitude_nnx_optimizer(use_specs):
  model = tm.StackedDecoder(4)
  set_params(model, tm.with_layer_scales(tm.params_of(model), SCALES4))
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5,
                            **kw(model, use_specs))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  opt.update(model, jax.tree.map(jnp.zeros_like,
                                 nnx.state(model, nnx.Param)))
  new = flat(tm.params_of(model))
  return "up kernel per layer: " + "/".join(
      pct(s) for s in per_layer(new, "layers/up/kernel")) + " %"


def rigl_drift(use_specs):
  model = tm.StackedDecoder(3)
  params = tm.with_layer_scales(tm.params_of(model), [10.0, 1.0, 0.1])
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.9, end_step=100, update_every=1,
               distribution="uniform", **kw(model, use_specs))
  _, masks = step_n(tx, params, random_grads(2), 10)
  masks = flat(masks)
  up = [1 - s.mean() for s in matrix(masks["layers/up/kernel"],
                                     "layers/up/kernel")]
  exact = total = 0
  for p, m in masks.items():
    if m is not None and p.startswith("layers/") and p.endswith("kernel"):
      for s in matrix(m, p):
        exact += int(s.sum()) == round(0.1 * s.size)
        total += 1
  return ("up kernel per layer " + "/".join(pct(s) for s in up)
          + f" %; stacked kernel slices at budget round(0.1 n): "
          f"{exact}/{total}")


def erk_stack_vs_twin(use_specs):
  stacked, twin = tm.StackedDecoder(3), tm.Decoder(3)
  got = flat(sj.distributions.erk(0.8, **kw(stacked, use_specs))(
      tm.params_of(stacked)))
  want = flat(sj.distributions.erk(0.8, **kw(twin, use_specs))(
      tm.params_of(twin)))
  worst = 0.0
  for p, s in got.items():
    if p.startswith("layers/") and p.endswith("kernel"):
      for i in range(3):
        w = want[f"blocks/{i}/{p[len('layers/'):]}"]
        worst = max(worst, abs(float(np.mean(s)) - float(w)))
  return f"max |sparsity - twin's| over stacked kernels {pct(worst)} points"


def summarize_rows(use_specs):
  model = tm.StackedDecoder(3)
  params = tm.params_of(model)
  tx = sj.static_sparse(optax.sgd(0.1), sparsity=0.5, distribution="uniform",
                        **kw(model, use_specs))
  masks = sj.get_masks(tx.init(params))
  s = sj.summarize(sj.masks.apply(params, masks), masks,
                   **kw(model, use_specs))
  rows = [r.path for r in s.rows if r.path.startswith("layers/up/kernel")]
  return f"{len(rows)} rows for layers/up/kernel (3 layers)"


def moe_experts(use_specs):
  model = tm.MoEModel()
  params = tm.params_of(model)
  params["moe"]["w_in"] = params["moe"]["w_in"] * jnp.asarray(
      [100.0, 1.0, 0.01, 1.0])[:, None, None]
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5,
                            **kw(model, use_specs))
  new, masks = step_n(tx, params, zeros, 1)
  w = np.asarray(new["moe"]["w_in"]) != 0
  router = "sparse" if masks["moe"]["router_kernel"] is not None else "dense"
  return ("w_in per expert " + "/".join(pct(1 - e.mean()) for e in w)
          + f" %; router {router}")


def mixed_precision(use_specs):
  model = tm.Decoder()
  params = tm.params_of(model)
  # Plain SGD: its updates keep the gradients' dtype (bf16), the case where
  # `-p` in the updates' dtype is not exactly `-p`.
  make = {
      "magnitude": lambda: sj.magnitude_pruning(
          optax.sgd(0.1), sparsity=0.5, **kw(model, use_specs)),
      "set_": lambda: sj.set_(optax.sgd(0.1), sparsity=0.8,
                              update_every=2, **kw(model, use_specs)),
      "rigl": lambda: sj.rigl(optax.sgd(0.1), sparsity=0.8, end_step=20,
                              update_every=2, **kw(model, use_specs)),
  }
  out = []
  for name, tx in make.items():
    new, masks = step_n(tx(), params, random_grads(3, jnp.bfloat16), 3)
    worst = 0.0
    for p, m in zip(jax.tree.leaves(new),
                    jax.tree.leaves(masks, is_leaf=lambda x: x is None)):
      if m is not None:
        pruned = np.abs(np.asarray(p, np.float32))[~np.asarray(m)]
        worst = max(worst, float(pruned.max(initial=0.0)))
    out.append(f"{name} {worst:.1e}")
  return ", ".join(out)


# (name, function, takes specs=)
PROBES = [
    ("default sparse leaves, magnitude 50 % (want: none)",
     default_sparse_leaves, True),
    ("magnitude 50 % on 3 scanned blocks (want: bias/norms dense)",
     scanned_pruning, True),
    ("set_ default ER at 80 % (before: 41 % attn / 93 % FFN)",
     set_er_budgets, True),
    ("nm_sparse 2:4 on q/k/v, d=16, 2 heads: groups along d",
     nm_qkv, True),
    ("nm_sparse 2:4 on q/k/v, d=32, 4 heads: groups along d",
     nm_qkv_4_heads, True),
    ("blocks (2, 8) on attention (want: all whole)",
     blocks_attention, True),
    ("SRigL 50 % fan-in per unit, q/k/v [d, heads, hd] (before: 5..12)",
     srigl_fan_in, True),
    ("SRigL 50 % fan-in per unit, stacked q/k/v [L, d, heads, hd]",
     srigl_fan_in_stacked, True),
    ("magnitude 50 %, stacked, scales 10/1/0.1/0.01 (before: 87/55/33/26)",
     stacked_magnitude, True),
    ("  same, through nnx.Optimizer (variable metadata)",
     stacked_magnitude_nnx_optimizer, True),
    ("RigL 90 % uniform, 10 updates, scales 10/1/0.1 (before: 99.2/79.5)",
     rigl_drift, True),
    ("ERK 80 %: 3-layer stack against its unstacked twin (want 0)",
     erk_stack_vs_twin, True),
    ("summarize rows of a 3-layer stack (want 1 + 3)",
     summarize_rows, True),
    ("MoE magnitude 50 %, expert scales 100/1/0.01/1 (want 50 each)",
     moe_experts, True),
    ("f32 params, bf16 grads, SGD, 3 steps: max |w| pruned (want 0)",
     mixed_precision, True),
]


def run(args) -> dict:
  rows = {}
  for name, fn, takes_specs in PROBES:
    if args.only and args.only not in name:
      continue
    figures = []
    for use_specs in ((False, True) if NEW and takes_specs else (False,)):
      try:
        figures.append(fn(use_specs))
      except Exception as e:  # pylint: disable=broad-except
        if args.verbose:
          traceback.print_exc()
        msg = str(e).splitlines()[0] if str(e) else ""
        figures.append(f"{type(e).__name__}: {msg[:110]}")
    rows[name] = figures
    print(f"{name} | " + " | ".join(figures), flush=True)
  return {"version": "new" if NEW else "old", "sparsejax": sj.__file__,
          "rows": rows}


def merge(old_path: str, new_path: str) -> None:
  old = json.loads(pathlib.Path(old_path).read_text())["rows"]
  new = json.loads(pathlib.Path(new_path).read_text())["rows"]
  print("| probe | before (old code) | after, no config | after, "
        "specs=model |")
  print("|---|---|---|---|")
  for name in new:
    after = new[name] + ["n/a"] * (2 - len(new[name]))
    before = old.get(name, ["not run"])[0]
    cells = [c.replace("|", "\\|") for c in (name, before, *after)]
    print("| " + " | ".join(cells) + " |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", help="also write the figures to this file")
  parser.add_argument("--merge", nargs=2, metavar=("OLD", "NEW"),
                      help="print the table of two --json files and exit")
  parser.add_argument("--only", help="run the probes whose name has this")
  parser.add_argument("--verbose", action="store_true",
                      help="print the traceback of a probe that fails")
  args = parser.parse_args()
  if args.merge:
    merge(*args.merge)
    return
  print(f"sparsejax from {sj.__file__} ({'new' if NEW else 'old'} code)")
  result = run(args)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
