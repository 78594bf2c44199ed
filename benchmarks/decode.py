# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Tokens per second of sparse decoding against dense, and the bpb beside.

Batch-1 greedy decoding (``examples/sparse_decode.py``: dense prefill, then
a jitted ``fori_loop`` of decode steps with the KV cache donated) of

* **the example model** of ``examples/lm.py`` (4 layers, width 128): the
  trained checkpoint given by ``--from`` (``examples/lm.py --method dense``
  writes one), or with ``--tiny`` a tiny one trained here for a few steps
  (for tests), or else random weights (said in the output; no bpb then);
* **a Llama-shaped model** with random weights (``--llama-*``: by default
  d=2048, SwiGLU 5632, 16 heads, 4 layers, byte vocabulary so the head is
  small), in float32 and bfloat16: about 0.8 GB of float32 weights per
  token, far more than the caches, so a step is bound by reading them.

Thresholds: TEAL by default (``--rule``), calibrated per layer and per
projection input to each target sparsity: on training text for a trained
checkpoint, on random tokens otherwise. Dense decoding multiplies with
``x @ w`` and sparse decoding with ``pallas_kernels.sparse_input_matmul``
(on CPU its XLA loop over the active rows), on the same prepared weights.

Every variant of one model (dense and each sparsity) runs in this process,
in a new random order on every repeat, from a copy of the same prefilled
cache; the ratio to dense is taken per repeat (dense and sparse timed in
the same repeat) and its median and range over repeats are printed, beside
the *ideal*: dense time times the fraction of weight bytes read (the active
rows of every projection, the whole head), i.e. ``1 / read_fraction``.
With a checkpoint, the validation bits per byte at each sparsity are those
of the full-sequence masked model (``lm_model.set_activation_sparsity``,
the thresholds applied at every position) on ``examples/text_data.py``'s
validation windows.

Run from the repository root (the CPU is shared: run it alone)::

  python benchmarks/decode.py --quick --out runs/decode    # ~3-5 min
  python benchmarks/decode.py --from runs/lm_dense_0_ckpt --out runs/decode

The table is printed as Markdown; ``<out>/decode.json`` and
``<out>/decode.png`` (tokens/s and bpb against sparsity) are written.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import lm  # noqa: E402  (examples/lm.py)
import lm_model  # noqa: E402
import sparse_decode as sd  # noqa: E402
from pallas_kernels import sparse_input_matmul  # noqa: E402
import text_data  # noqa: E402

SPARSITIES = (0.25, 0.4, 0.5, 0.65, 0.8)


# ---------------------------------------------------------------- pieces


def calibrate(model, rule, targets, calib) -> dict[float, dict]:
  """The calibration setting of ``rule`` at each target (lm.py's rule)."""
  return {t: lm.calibrate_activation(model, rule, t, calib) for t in targets}


def _copy(tree):
  return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def time_variants(decoders: dict, prompt, *, tokens: int, repeats: int,
                  seed: int) -> tuple[dict, dict]:
  """Seconds per decode loop of ``tokens`` tokens, per variant and repeat.

  Every call starts from a copy of the same prefilled cache (the loop
  donates it); the first call of each variant compiles and is not timed.

  Returns:
    ``(seconds, read_fraction)``, dicts by variant name: the list of
    seconds per repeat and the fraction of the dense weight bytes read.
  """
  names = list(decoders)
  first_dec = decoders[names[0]]
  logits, cache0 = first_dec.prefill(prompt, prompt.shape[1] + tokens)
  first = jnp.argmax(logits, -1).astype(jnp.int32)
  pos = prompt.shape[1]
  dense_bytes = sd.dense_read_bytes(first_dec.weights, prompt.shape[0])
  reads = {}
  for name in names:
    _, _, read = decoders[name].loop(first, _copy(cache0), pos, tokens)
    reads[name] = float(read) / (dense_bytes * tokens)
  seconds = {name: [] for name in names}
  rng = np.random.default_rng(seed)
  for _ in range(repeats):
    for i in rng.permutation(len(names)):
      name = names[i]
      cache = jax.block_until_ready(_copy(cache0))
      start = time.perf_counter()
      jax.block_until_ready(decoders[name].loop(first, cache, pos, tokens))
      seconds[name].append(time.perf_counter() - start)
  return seconds, reads


def _projection_fraction(weights) -> float:
  """Share of the dense step's weight bytes that are projections."""
  proj = sum(a.size * a.dtype.itemsize for w in weights.layers
             for a in (w.qkv, w.o, w.gate_up, w.down))
  return proj / sd.dense_read_bytes(weights)


def sweep(model, *, weights, settings: dict, prompt, tokens, repeats, seed,
          block_rows=None, windows=None) -> list[dict]:
  """One table: dense and every target of ``settings``, timed together."""
  decoders = {0.0: sd.make_decoder(model, None, sparse=False,
                                   weights=weights)}
  for target, setting in settings.items():
    decoders[target] = sd.make_decoder(model, setting, weights=weights,
                                       block_rows=block_rows)
  seconds, reads = time_variants(decoders, prompt, tokens=tokens,
                                 repeats=repeats, seed=seed)
  proj = _projection_fraction(weights)
  dense_s = np.array(seconds[0.0])
  rows = []
  for target in decoders:
    s = np.array(seconds[target])
    ratios = dense_s / s
    read = reads[target]
    row = {"target": target,
           "realised": 1.0 - (read - (1.0 - proj)) / proj,
           "read_fraction": read,
           "tokens_per_s": tokens / float(np.median(s)),
           "tokens_per_s_range": [tokens / float(s.max()),
                                  tokens / float(s.min())],
           "speedup": float(np.median(ratios)),
           "speedup_range": [float(ratios.min()), float(ratios.max())],
           "ideal": 1.0 / read, "seconds": s.tolist(), "val_bpb": None}
    rows.append(row)
  if windows is not None:
    for row in rows:
      setting = settings.get(row["target"])
      if setting is not None:
        lm_model.set_activation_sparsity(
            model, setting["kind"], thresholds=setting.get("thresholds"),
            topk_k=setting.get("topk_k"))
      try:
        row["val_bpb"] = lm.evaluate_bpb(model, windows)
      finally:
        lm_model.set_activation_sparsity(model, None)
  return rows


def time_lm_model(model, prompt, *, tokens: int, repeats: int,
                  setting: dict | None = None) -> float:
  """Tokens/s of the example's own ``lm_model.generate`` (stacked layers
  under ``nnx.scan``), prefill subtracted.

  Dense (``setting=None``) it checks that the dense baseline above is not a
  slow one; with a setting it is the per-projection path through the
  model's matmul hook (``sparse_input_matmul`` on each of q, k, v, o, gate,
  up and down, thresholds applied by the model).
  """
  matmul = None
  if setting is not None:
    matmul = sparse_input_matmul
    lm_model.set_activation_sparsity(
        model, setting["kind"], thresholds=setting.get("thresholds"),
        topk_k=setting.get("topk_k"))

  def run(steps):
    start = time.perf_counter()
    jax.block_until_ready(lm_model.generate(model, prompt, steps=steps,
                                            matmul=matmul))
    return time.perf_counter() - start

  try:
    run(0), run(tokens)  # compile
    decode = [run(tokens) - run(0) for _ in range(repeats)]
  finally:
    lm_model.set_activation_sparsity(model, None)
  return tokens / float(np.median(decode))


def table(title: str, rows: list[dict]) -> str:
  lines = [f"### {title}", "",
           "| target | realised | bytes read | tokens/s (range) | vs dense "
           "(range) | ideal | val bpb |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lo, hi = r["tokens_per_s_range"]
    slo, shi = r["speedup_range"]
    bpb = "-" if r["val_bpb"] is None else f"{r['val_bpb']:.4f}"
    name = "dense" if r["target"] == 0 else f"{r['target']:.0%}"
    lines.append(
        f"| {name} | {r['realised']:.1%} | {r['read_fraction']:.1%} | "
        f"{r['tokens_per_s']:,.1f} ({lo:,.1f}-{hi:,.1f}) | "
        f"{r['speedup']:.2f}x ({slo:.2f}-{shi:.2f}) | {r['ideal']:.2f}x | "
        f"{bpb} |")
  return "\n".join(lines)


def plot(path: pathlib.Path, results: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_s, ax_q) = plt.subplots(1, 2, figsize=(11, 4))
  for key, res in results.items():
    if not isinstance(res, dict) or "rows" not in res:
      continue
    rows = res["rows"]
    x = [100 * r["target"] for r in rows]
    line, = ax_s.plot(x, [r["tokens_per_s"] for r in rows], "o-",
                      label=res["label"])
    dense = rows[0]["tokens_per_s"]
    ax_s.plot(x, [dense * r["ideal"] for r in rows], ":",
              color=line.get_color())
    if rows[0]["val_bpb"] is not None:
      ax_q.plot(x, [r["val_bpb"] for r in rows], "o-", label=res["label"])
  ax_s.set_yscale("log")
  ax_s.set_xlabel("activation sparsity target (%)")
  ax_s.set_ylabel("tokens/s, batch 1 (dotted: ideal)")
  ax_s.set_title("decoding speed on this CPU")
  ax_s.grid(alpha=0.3, which="both")
  ax_s.legend(fontsize=8)
  ax_q.set_xlabel("activation sparsity target (%)")
  ax_q.set_ylabel("validation bits per byte")
  ax_q.set_title("quality (masked model, all positions)")
  ax_q.grid(alpha=0.3)
  if ax_q.lines:
    ax_q.legend(fontsize=8)
  else:
    ax_q.text(0.5, 0.5, "no trained checkpoint (--from)", ha="center",
              transform=ax_q.transAxes)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ---------------------------------------------------------------- models


def example_model(args, out: pathlib.Path) -> dict:
  """The example model's sweep (trained, tiny-trained or random)."""
  ckpt = args.from_
  if args.tiny and not ckpt:
    argv = ["--tiny", "--method", "dense", "--steps", str(args.tiny_steps),
            "--out", str(out / "tiny"), "--val-windows", "16"]
    if args.data_dir:
      argv += ["--data-dir", args.data_dir]
    trained = lm.main(argv)
    ckpt = trained["checkpoint"]
  rng = np.random.default_rng(args.seed)
  windows = None
  if ckpt:
    model = lm.load_checkpoint(ckpt)
    cfg = model.cfg
    data = text_data.load_text(args.data_dir)
    calib = lm.calibration_batches(data, cfg, windows=args.calibration,
                                   seed=args.seed)
    windows = text_data.eval_windows(data.validation, seq_len=cfg.seq_len,
                                     max_windows=args.val_windows)
    prompt = jnp.asarray(windows[:1, :args.prompt])
    label = f"example ({pathlib.Path(ckpt).name})"
  else:
    cfg = lm_model.LMConfig()
    model = lm_model.TransformerLM(cfg, rngs=nnx.Rngs(args.seed))
    calib = [rng.integers(0, 256, (cfg.batch_size, cfg.seq_len))
             .astype(np.int32)]
    prompt = jnp.asarray(rng.integers(0, 256, (1, args.prompt)), jnp.int32)
    label = "example (random weights)"
    print("example model: no --from checkpoint, RANDOM weights (no bpb)",
          file=sys.stderr)
  tokens = min(args.tokens, cfg.seq_len - args.prompt)
  settings = calibrate(model, args.rule, args.sparsities, calib)
  weights = sd.decode_weights(model)
  rows = sweep(model, weights=weights, settings=settings, prompt=prompt,
               tokens=tokens, repeats=args.repeats, seed=args.seed,
               block_rows=args.block_rows, windows=windows)
  return {"label": label, "checkpoint": ckpt, "config": cfg.__dict__,
          "rule": args.rule, "tokens": tokens, "rows": rows,
          "dtype": cfg.dtype,
          "lm_model_generate_tokens_per_s": time_lm_model(
              model, prompt, tokens=tokens, repeats=3)}


def llama_models(args) -> dict:
  """The Llama-shaped model's sweeps, one per dtype (random weights)."""
  cfg = lm_model.LMConfig(num_layers=args.llama_layers,
                          d_model=args.llama_d, num_heads=args.llama_heads,
                          d_ff=args.llama_ff, seq_len=256, batch_size=1)
  start = time.perf_counter()
  model = lm_model.TransformerLM(cfg, rngs=nnx.Rngs(args.seed))
  rng = np.random.default_rng(args.seed)
  calib = [rng.integers(0, 256, (1, 64)).astype(np.int32)]
  settings = calibrate(model, "teal", args.sparsities, calib)
  print(f"llama-shaped: built and calibrated in "
        f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
  prompt = jnp.asarray(rng.integers(0, 256, (1, args.prompt)), jnp.int32)
  out = {}
  for dtype in args.dtypes:
    weights = sd.decode_weights(model, dtype=dtype)
    gb = sd.dense_read_bytes(weights) / 1e9
    rows = sweep(model, weights=weights, settings=settings, prompt=prompt,
                 tokens=args.llama_tokens, repeats=args.repeats,
                 seed=args.seed, block_rows=args.block_rows)
    out[f"llama_{dtype}"] = {
        "label": f"llama-shaped {dtype}", "config": cfg.__dict__,
        "dtype": dtype, "rule": "teal", "tokens": args.llama_tokens,
        "gb_per_token": gb, "rows": rows}
    if dtype == cfg.dtype:
      res = out[f"llama_{dtype}"]
      res["lm_model_generate_tokens_per_s"] = time_lm_model(
          model, prompt, tokens=args.llama_tokens, repeats=3)
      if 0.5 in settings:
        res["lm_model_hook_50_tokens_per_s"] = time_lm_model(
            model, prompt, tokens=args.llama_tokens, repeats=3,
            setting=settings[0.5])
    del weights
  return out


# ---------------------------------------------------------------- main


def parse_args(argv):
  p = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", choices=("all", "example", "llama"),
                 default="all")
  p.add_argument("--from", dest="from_", default=None,
                 help="trained example checkpoint (examples/lm.py)")
  p.add_argument("--tiny", action="store_true",
                 help="train a tiny example checkpoint here (tests)")
  p.add_argument("--tiny-steps", type=int, default=30)
  p.add_argument("--quick", action="store_true",
                 help="fewer repeats and tokens (about 3-5 minutes)")
  p.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)))
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--rule", choices=("teal", "wina", "cats", "topk"),
                 default="teal", help="example model's thresholds")
  p.add_argument("--repeats", type=int, default=None)
  p.add_argument("--tokens", type=int, default=None,
                 help="decode tokens per timed call (example model)")
  p.add_argument("--llama-tokens", type=int, default=None)
  p.add_argument("--llama-layers", type=int, default=4)
  p.add_argument("--llama-d", type=int, default=2048)
  p.add_argument("--llama-heads", type=int, default=16)
  p.add_argument("--llama-ff", type=int, default=5632)
  p.add_argument("--block-rows", type=int, default=None)
  p.add_argument("--prompt", type=int, default=8, help="prompt tokens")
  p.add_argument("--calibration", type=int, default=32)
  p.add_argument("--val-windows", type=int, default=None)
  p.add_argument("--data-dir", default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="runs/decode")
  args = p.parse_args(argv)
  args.sparsities = tuple(float(s) for s in args.sparsities.split(","))
  if any(not 0.0 < s < 1.0 for s in args.sparsities):
    p.error(f"--sparsities: each in (0, 1), got {args.sparsities}")
  args.dtypes = tuple(args.dtypes.split(","))
  quick = args.quick or args.tiny
  if args.repeats is None:
    args.repeats = 5 if quick else 10
  if args.tokens is None:
    args.tokens = 32 if quick else 64
  if args.llama_tokens is None:
    args.llama_tokens = 8 if quick else 16
  if args.val_windows is None:
    args.val_windows = 32 if quick else 256
  return args


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = {"command": "python benchmarks/decode.py " + " ".join(
      argv if argv is not None else sys.argv[1:]),
             "host": f"{platform.machine()}, {jax.device_count()} "
                     f"{jax.default_backend()} devices, jax {jax.__version__}",
             "repeats": args.repeats}
  if args.model in ("all", "example"):
    results["example"] = example_model(args, out)
  if args.model in ("all", "llama"):
    results.update(llama_models(args))
  for key, res in results.items():
    if isinstance(res, dict) and "rows" in res:
      title = (f"{res['label']}, {res['rule']}, {res['tokens']} tokens per "
               f"call, {args.repeats} repeats")
      print("\n" + table(title, res["rows"]))
      if "gb_per_token" in res:
        print(f"\n{res['gb_per_token']:.3f} GB of weights per dense token.")
      if "lm_model_generate_tokens_per_s" in res:
        print(f"\nlm_model.generate, dense, same model: "
              f"{res['lm_model_generate_tokens_per_s']:,.1f} tokens/s "
              "(prefill subtracted).")
      if "lm_model_hook_50_tokens_per_s" in res:
        print(f"lm_model.generate at 50 % through its matmul hook "
              f"(sparse_input_matmul per projection, stacked layers): "
              f"{res['lm_model_hook_50_tokens_per_s']:,.1f} tokens/s.")
  (out / "decode.json").write_text(json.dumps(results, indent=1))
  plot(out / "decode.png", results)
  print(f"\nwrote {out / 'decode.json'} and {out / 'decode.png'}")
  return results


if __name__ == "__main__":
  main()
