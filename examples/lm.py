# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
r"""Sparsity on a byte-level language model trained on the Python docs.

The model is :class:`lm_model.TransformerLM` (4 layers, width 128, 4 heads,
SwiGLU 384, context 128; ``--tiny``: 2 layers, width 32, context 32), the
data the reStructuredText sources of the Python documentation
(``examples/text_data.py``: ``--data-dir``, ``$SPARSEJAX_TEXT_DIR``, Debian's
``python3-doc``, else this interpreter's standard library). Quality is
validation **bits per byte** (bpb; cross-entropy in bits, one byte per token)
on fixed validation windows.

Commands, from the repository root::

  # sparse training (or dense); Adam with warmup + cosine decay
  python examples/lm.py --method rigl --sparsity 0.9 --steps 2000 --out runs/
  # one-shot pruning of a trained dense checkpoint
  python examples/lm.py --oneshot wanda --sparsity 2:4 \
      --from runs/lm_dense_0_ckpt --out runs/
  # training-free activation sparsity, calibrated on training text
  python examples/lm.py --activation teal --target 0.5 \
      --from runs/lm_dense_0_ckpt --out runs/
  # mixture of experts in the FFN, at the dense model's active parameters
  python examples/lm.py --moe top2 --experts 8 --steps 2000 --out runs/
  # decoding with the KV cache (optionally activation-sparse, TEAL-style)
  python examples/lm.py generate --from runs/lm_dense_0_ckpt \
      --prompt "The list type" --tokens 200 [--activation teal --target 0.5]

Options: ``--tiny``, ``--seed``, ``--stacked`` / ``--unstacked`` (blocks
under ``nnx.scan`` or a list; checkpoints load in either layout), ``--bf16``
(bfloat16 compute, float32 master weights), ``--batch-size``, ``--lr``,
``--update-every`` (mask-update period of every method), ``--mesh
data=D,model=M`` (training on a device mesh: every parameter, its masks
and its Adam slots sharded by the model's logical axis names, vocab /
heads / mlp over ``model``, batches over ``data``; GSPMD auto axes).

Sparse training (``--method``): ``dense``, ``static``, ``magnitude``
(Zhu & Gupta's cubic schedule over the first half), ``set``, ``rigl``,
``srigl``, ``snfs``, ``mest``, ``granet``; all with uniform budgets on
the kernels of the attention and FFN projections, per layer (the leaf specs
of ``sj.leaf_specs`` give every slice of a stacked kernel its own budget;
the embedding, the LM head and the norms stay dense). It reports the
validation bpb, the realised sparsity of every projection **per layer**
(per slice of the stacked kernels) and tokens/s; writes
``<out>/lm_<method>_<sparsity>.json`` and ``.png`` (training loss and
validation bpb), and an Orbax checkpoint
``<out>/lm_<method>_<sparsity>_ckpt/`` of the trained model (forward weights,
exactly sparse) with its ``config.json``.

Activation sparsity (``--activation``), per layer, on the inputs of the
projections: ``teal`` (one magnitude threshold per layer for each of the
four inputs: of q/k/v, of o, of gate/up and of down, each the ``--target``
quantile of the dense model's inputs on training text), ``wina`` (the same
inputs scored by ``|x_j| * ||W_j||`` with ``W`` the consuming kernel(s)),
``cats`` (the threshold on ``silu(gate)`` only) and ``topk`` (the largest
``(1 - target) * width`` magnitudes of every token's inputs).

Mixture of experts (``--moe top2|switch|expert_choice --experts E``):
every block's SwiGLU feed-forward becomes a dropless
:class:`sparsejax.nn.MoE` (``top2``: top-2 token choice, sorted by expert;
``switch``: top-1; ``expert_choice``: each expert takes ``2 * tokens / E``
tokens, so a token meets 2 experts on average and may meet none) of silu
MLP experts sized so that a token's active feed-forward weights equal the
dense SwiGLU's (``lm_model.LMConfig``). Training adds the load-balancing
loss (1e-2) and the router z-loss (1e-3), summed over layers, to the
cross-entropy. It reports the validation bpb, every layer's expert load on
the validation windows (min / max against the uniform ``1/E``, coefficient
of variation), the fraction of tokens that met no expert, the active and
total parameters; writes ``<out>/lm_moe_<router>_<E>.json``, ``.png``
(expert load per layer and expert, and the training curve) and a
checkpoint. The weight-sparsity, one-shot, activation and mesh options are
refused with ``--moe``.

The last line printed by the training, one-shot, activation and MoE
commands is ``val_bpb <value>``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import pallas_kernels
import sparsejax as sj
from sparsejax import activations as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _training  # noqa: E402  (examples/_training.py)
import lm_model  # noqa: E402  (examples/lm_model.py)
import methods  # noqa: E402  (examples/methods.py)
import text_data  # noqa: E402  (examples/text_data.py)

# The projections as modules, for `sj.prune_model`'s `where` (the LM head
# stays dense, as in weight-sparse training).
MODULE_RE = r"^blocks/(\d+/)?(q|k|v|o|gate|up|down)$"
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")


# ---------------------------------------------------------------- methods


def _every(total_steps: int) -> int:
  """Mask updates every 100 steps (RigL), ten per run on short runs."""
  return max(1, min(100, total_steps // 10))


def sparse_specs(model) -> dict:
  """The leaf specs of the model with the LM head kept dense.

  ``sj.leaf_specs`` reads the model: the projection kernels are linear maps
  (q/k/v ``[embed | heads, kv]``, o ``[heads, kv | embed]``, stacked kernels
  with the ``layers`` axis as a stack axis, so every layer has its own
  budget); the embedding and the norms are dense. The head is a linear map
  too; it is kept dense here, as the sparse-training literature on
  transformers does with the embeddings and the output layer.
  """
  return sj.leaf_specs(model, overrides={r"^head/": None})


def make_optimizer(method: str, *, lr, sparsity: float, total_steps: int,
                   seed: int, specs: dict, update_every: int | None = None,
                   **method_args) -> optax.GradientTransformation:
  """Clipped Adam, wrapped by the chosen method of the shared registry.

  ``examples/methods.py`` gives each method its arguments for a run of
  ``total_steps``; here every method gets uniform budgets (each projection
  kernel of each layer, each slice of a stacked kernel, at ``sparsity``),
  the model's leaf specs and one mask-update period, ``update_every`` or
  :func:`_every`. ``method_args`` replace the method's own arguments (the
  ablations' ``drop_fraction`` and ``begin_step``).
  """
  inner = optax.adam(lr, b2=0.95)
  if method == "dense":
    tx = inner
  elif method in METHODS:
    overrides = dict(distribution="uniform", specs=specs)
    if method == "set":
      # Mask updates stop at 3/4 of training, as RigL's: SET's constant 30 %
      # drop, applied up to the last steps, leaves freshly grown zero
      # weights too few steps to train in a short run (it then fell below
      # static).
      overrides["end_step"] = max(1, total_steps * 3 // 4)
    tx = methods.make(method, inner, sparsity=sparsity,
                      total_steps=total_steps, seed=seed,
                      update_every=update_every or _every(total_steps),
                      **overrides, **method_args)
  else:
    raise ValueError(f"method: unknown {method!r}; expected one of {METHODS}")
  return optax.chain(optax.clip_by_global_norm(1.0), tx)


METHODS = ("dense", "static", "magnitude", "set", "rigl", "srigl", "snfs",
           "mest", "granet", "dst_ee")


# Factory arguments a drop-and-grow run may override from the command line
# (--drop-fraction, --begin-step), for ablations.
METHOD_FLAGS = ("drop_fraction", "begin_step")


def method_overrides(args) -> dict:
  """The :data:`METHOD_FLAGS` given on the command line, by argument name."""
  given = {k: getattr(args, k, None) for k in METHOD_FLAGS}
  return {k: v for k, v in given.items() if v is not None}


class Regrowth:
  """How much of each drop-and-grow round undoes the round before.

  Drop-and-grow methods grow new weights at zero and drop the smallest ones;
  a grown weight that has not outgrown the established ones by the next
  update is dropped again. ``record`` compares the masks after a step with
  those of the last call and keeps, per update that changed them, the
  weights dropped and grown and how many of the dropped had been grown at
  the previous update.
  """

  def __init__(self, masks):
    self._masks = self._flat(masks)
    self._grown_at = {k: np.full(m.shape, -1, np.int32)
                      for k, m in self._masks.items()}
    self._last = -1
    self.updates: list[dict] = []

  @staticmethod
  def _flat(masks) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves_with_path(
        masks, is_leaf=lambda x: x is None)
    return {jax.tree_util.keystr(p): np.asarray(m) for p, m in leaves
            if m is not None}

  def record(self, step: int, masks) -> None:
    new = self._flat(masks)
    dropped = grown = recent = 0
    for key, mask in new.items():
      old, born = self._masks[key], self._grown_at[key]
      drop, grow = old & ~mask, mask & ~old
      dropped += int(drop.sum())
      grown += int(grow.sum())
      recent += int((drop & (born == self._last) & (self._last >= 0)).sum())
      born[grow] = step
    self._masks = new
    if dropped or grown:
      self.updates.append(dict(step=step, dropped=dropped, grown=grown,
                               dropped_grown_last_update=recent))
      self._last = step

  def table(self) -> str:
    rows = ["| step | dropped | of them grown at the update before |",
            "|---:|---:|---:|"]
    for u in self.updates:
      share = u["dropped_grown_last_update"] / max(u["dropped"], 1)
      rows.append(f"| {u['step']} | {u['dropped']} | {share:.0%} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- helpers


def merge(graphdef, template, params, rest):
  """The model with the weights of ``params``, a plain nested dict."""
  state = jax.tree.map(lambda x: x, template)
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state, rest)


def make_train_step(graphdef, template, rest, tx, sparse: bool, *,
                    moe: bool = False):
  """A jitted step ``(params, opt_state, batch) -> (params, state, loss)``.

  ``loss`` is the cross-entropy; with ``moe`` the gradient is that of the
  cross-entropy plus :func:`lm_model.moe_aux_loss` (the layers' auxiliary
  losses, out of ``nnx.scan`` as scan outputs).
  """

  def loss_fn(params, opt_state, batch):
    fwd = sj.forward_params(params, opt_state) if sparse else params
    model = merge(graphdef, template, fwd, rest)
    if not moe:
      ce, _ = lm_model.loss_and_bits(model(batch[:, :-1]), batch[:, 1:])
      return ce, ce
    logits, aux = model(batch[:, :-1], return_aux=True)
    ce, _ = lm_model.loss_and_bits(logits, batch[:, 1:])
    return ce + lm_model.moe_aux_loss(aux), ce

  def step(params, opt_state, batch):
    (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, opt_state, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


@nnx.jit
def _eval_batch(model, batch):
  ce, _ = lm_model.loss_and_bits(model(batch[:, :-1]), batch[:, 1:])
  return ce


def evaluate_bpb(model, windows: np.ndarray, *, batch_size: int = 64) -> float:
  """Validation bits per byte over fixed ``windows`` (every window weighs
  the same; the last partial batch is padded by repeating windows and the
  repeats are not counted)."""
  total, count = 0.0, 0
  for i in range(0, len(windows), batch_size):
    chunk = windows[i:i + batch_size]
    n = len(chunk)
    if n < batch_size and len(windows) > batch_size:
      chunk = np.concatenate([chunk, windows[:batch_size - n]])
    ce = np.asarray(jax.device_get(_per_window_ce(model, chunk)))[:n]
    total += float(ce.sum())
    count += n
  return total / count / math.log(2.0)


@nnx.jit
def _per_window_ce(model, batch):
  logits = model(batch[:, :-1]).astype(jnp.float32)
  logp = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(logp, batch[:, 1:, None], -1)[..., 0]
  return nll.mean(-1)


def param_dict(model) -> dict:
  """The model's parameters as a plain nested dict of arrays."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def layer_sparsity(model) -> dict[str, list[float]]:
  """Realised sparsity (fraction of exact zeros) of every projection kernel,
  per layer: ``{"q": [layer0, layer1, ...], ...}``."""
  out = {name: [] for name in PROJECTIONS}
  for block in lm_model.block_list(model):
    for name in PROJECTIONS:
      w = np.asarray(getattr(block, name).kernel[...])
      out[name].append(float(1.0 - np.count_nonzero(w) / w.size))
  return out


def top_fan_in_share(kernel, in_ndim: int, *, top: float = 0.1) -> float:
  """The share of a kernel's nonzero weights that the ``top`` fraction of
  its output units with the most nonzero inputs hold (``top`` for a mask
  with equal fan-in, up to 1 when the budget sits on few units).

  ``in_ndim`` leading axes are the inputs, the rest the output units.
  """
  nonzero = np.asarray(kernel) != 0
  fan_in = nonzero.reshape(int(np.prod(nonzero.shape[:in_ndim])), -1).sum(0)
  count = max(1, round(top * fan_in.size))
  total = fan_in.sum()
  return float(np.sort(fan_in)[-count:].sum() / total) if total else 0.0


def layer_fan_in_share(model, *, top: float = 0.1) -> dict[str, list[float]]:
  """:func:`top_fan_in_share` of every projection kernel, per layer, with
  each kernel's input axes from its leaf spec (``o``: heads and kv)."""
  out = {name: [] for name in PROJECTIONS}
  for block in lm_model.block_list(model):
    specs = sj.leaf_specs(block)
    for name in PROJECTIONS:
      in_axes = specs[name]["kernel"].in_axes
      if in_axes != tuple(range(len(in_axes))):
        raise ValueError(f"model: {name}/kernel's input axes {in_axes} are "
                         "not its leading axes")
      out[name].append(top_fan_in_share(getattr(block, name).kernel[...],
                                        len(in_axes), top=top))
  return out


def sparsity_table(per_layer: dict[str, list[float]]) -> str:
  names = list(per_layer)
  lines = ["| layer | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
  for i in range(len(per_layer[names[0]])):
    lines.append(f"| {i} | " + " | ".join(
        f"{per_layer[n][i]:.4f}" for n in names) + " |")
  return "\n".join(lines)


def _config(args) -> lm_model.LMConfig:
  base = lm_model.LMConfig.tiny() if args.tiny else lm_model.LMConfig()
  kw = {}
  if args.stacked is not None:
    kw["stacked"] = args.stacked
  if args.bf16:
    kw["dtype"] = "bfloat16"
  if getattr(args, "moe", None):
    kw["moe"], kw["experts"] = args.moe, args.experts
  if args.batch_size:
    kw["batch_size"] = args.batch_size
  return lm_model.LMConfig(**{**base.__dict__, **kw})


def save_checkpoint(model, path: pathlib.Path) -> None:
  """Writes the model's parameters (Orbax) and its config (JSON)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = path.resolve()
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(json.dumps(model.cfg.__dict__, indent=1))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path / "params", param_dict(model), force=True)


def load_checkpoint(path, *, stacked: bool | None = None,
                    dtype: str | None = None) -> lm_model.TransformerLM:
  """The model saved by :func:`save_checkpoint` (optionally re-laid out:
  a stacked checkpoint loads as a list of blocks with ``stacked=False``)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path).resolve()
  if not (path / "config.json").is_file():
    raise FileNotFoundError(f"--from: {path} holds no config.json (not a "
                            "checkpoint written by examples/lm.py)")
  saved = lm_model.LMConfig(**json.loads((path / "config.json").read_text()))
  model = lm_model.TransformerLM(saved, rngs=nnx.Rngs(0))
  target = param_dict(model)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(path / "params", target)
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
  want = dict(saved.__dict__)
  if stacked is not None:
    want["stacked"] = stacked
  if dtype is not None:
    want["dtype"] = dtype
  if want == saved.__dict__:
    return model
  return relayout(model, lm_model.LMConfig(**want))


def relayout(model, cfg: lm_model.LMConfig) -> lm_model.TransformerLM:
  """The same weights in a model of config ``cfg`` (stacked <-> list)."""
  new = lm_model.TransformerLM(cfg, rngs=nnx.Rngs(0))
  src = param_dict(model)
  dst = param_dict(new)
  blocks = src["blocks"]
  if model.cfg.stacked and not cfg.stacked:
    blocks = {i: jax.tree.map(lambda a, i=i: a[i], blocks)
              for i in range(cfg.num_layers)}
  elif not model.cfg.stacked and cfg.stacked:
    blocks = jax.tree.map(lambda *xs: jnp.stack(xs),
                          *[blocks[i] for i in range(cfg.num_layers)])
  src = {**src, "blocks": blocks}
  state = nnx.state(new, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda a, b: a.astype(b.dtype),
                                               src, dst))
  nnx.update(new, state)
  return new


def _plot(path, series, *, title, xlabel, ylabel):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for label, (x, y, style) in series.items():
    ax.plot(x, y, style, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _write(out: pathlib.Path, stem: str, results: dict) -> pathlib.Path:
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"{stem}.json"
  path.write_text(json.dumps(results, indent=1))
  return path


def _write_per_layer(out, stem: str, results: dict,
                     per_layer: dict[str, list[float]], *, title: str,
                     ylabel: str) -> None:
  """Writes a post-training command's JSON and its per-layer plot."""
  out = pathlib.Path(out)
  path = _write(out, stem, results)
  png = out / f"{stem}.png"
  _plot(png, {name: (range(len(values)), values, "o-")
              for name, values in per_layer.items()},
        title=title, xlabel="layer", ylabel=ylabel)
  print(f"wrote {path} and {png}")


def _label(sparsity) -> str:
  return f"{sparsity[0]}of{sparsity[1]}" if isinstance(
      sparsity, tuple) else f"{sparsity:g}"


# ---------------------------------------------------------------- mesh

# Logical axis names of the model (``nnx.with_partitioning``) -> mesh axes:
# tensor parallelism over ``model`` on the vocabulary, the heads and the
# FFN width; the layer stack, the width ``embed`` and the head dimension
# ``kv`` replicated; batches split over ``data``.
LOGICAL_RULES = {"layers": None, "embed": None, "kv": None,
                 "vocab": "model", "heads": "model", "mlp": "model",
                 "batch": "data"}


def parse_mesh(text: str) -> dict[str, int]:
  """``"data=4,model=2"`` -> ``{"data": 4, "model": 2}``."""
  sizes = {}
  for part in text.split(","):
    name, _, size = part.partition("=")
    if name not in ("data", "model") or not size.isdigit() or int(size) < 1:
      raise ValueError(f"--mesh: expected data=D,model=M, got {text!r}")
    sizes[name] = int(size)
  return {"data": sizes.get("data", 1), "model": sizes.get("model", 1)}


def make_mesh(sizes: dict[str, int]) -> jax.sharding.Mesh:
  """A ``(data, model)`` mesh of ``D * M`` devices, auto axes (GSPMD)."""
  need = sizes["data"] * sizes["model"]
  if need > jax.device_count():
    raise ValueError(f"--mesh: {sizes} needs {need} devices, "
                     f"{jax.device_count()} available")
  return jax.make_mesh((sizes["data"], sizes["model"]), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=jax.devices()[:need])


def param_shardings(template, mesh) -> dict:
  """A ``NamedSharding`` per parameter from its logical axis names.

  A dimension that the mesh axis does not divide is replicated.
  """
  specs = nnx.to_pure_dict(nnx.get_partition_spec(template))
  shapes = nnx.to_pure_dict(template)

  def one(spec, x):
    axes = []
    for name, dim in zip(tuple(spec) + (None,) * x.ndim, x.shape):
      axis = LOGICAL_RULES.get(name) if name else None
      if axis is not None and dim % mesh.shape[axis]:
        axis = None
      axes.append(axis)
    return jax.sharding.NamedSharding(mesh, jax.P(*axes))

  return jax.tree.map(one, specs, shapes,
                      is_leaf=lambda x: isinstance(x, jax.P))


# ---------------------------------------------------------------- train


def train(args, data: text_data.TextData, *, keep_state: bool = False
          ) -> dict:
  """Trains one model with ``--method``; returns the results dict.

  With ``--mesh`` the parameters, the optimizer state (masks and Adam
  slots) and the batches live on a device mesh (:func:`param_shardings`).
  ``keep_state`` adds the final ``params`` and ``opt_state`` to the
  returned dict (not to the JSON).
  """
  if not getattr(args, "mesh", None):
    return _train(args, data, None, keep_state)
  mesh = make_mesh(parse_mesh(args.mesh))
  with jax.set_mesh(mesh):
    return _train(args, data, mesh, keep_state)


def _train(args, data, mesh, keep_state) -> dict:
  cfg = _config(args)
  model = lm_model.TransformerLM(cfg, rngs=nnx.Rngs(args.seed))
  steps = args.steps
  warmup = max(1, min(200, steps // 10))
  lr = optax.warmup_cosine_decay_schedule(
      0.0, args.lr, warmup_steps=warmup, decay_steps=max(steps, warmup + 1),
      end_value=args.lr * 0.1)
  every = getattr(args, "update_every", None) or _every(steps)
  overrides = method_overrides(args)
  tx = make_optimizer(args.method, lr=lr, sparsity=args.sparsity,
                      total_steps=steps, seed=args.seed,
                      specs=None if cfg.moe else sparse_specs(model),
                      update_every=every, **overrides)
  # The loop trains a plain nested dict of arrays (paths like
  # "blocks/q/kernel"), the form every Optax and sparsejax transform takes.
  graphdef, template, rest = nnx.split(model, nnx.Param, ...)
  params = nnx.to_pure_dict(template)
  shardings = None
  if mesh is not None:
    shardings = param_shardings(template, mesh)
    params = jax.device_put(params, shardings)
    if cfg.batch_size % mesh.shape["data"]:
      raise ValueError(f"--mesh: batch size {cfg.batch_size} is not a "
                       f"multiple of data={mesh.shape['data']}")
  opt_state = tx.init(params)
  sparse = _training.uses_sparsejax(opt_state)
  if sparse:
    # Start from the sparse network (the transforms zero pruned weights
    # through their updates; doing it now makes step 0's gradient sparse).
    params = sj.forward_params(params, opt_state)
  step = make_train_step(graphdef, template, rest, tx, sparse,
                         moe=cfg.moe is not None)
  regrowth = Regrowth(sj.get_masks(opt_state)) if sparse else None
  # Masks change at begin_step + i * every (the registry's own begin steps
  # are multiples of `every`); record right after those steps.
  phase = overrides.get("begin_step", 0) % every
  rng = np.random.default_rng(args.seed)
  windows = text_data.eval_windows(data.validation, seq_len=cfg.seq_len,
                                   max_windows=args.val_windows)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"model: {cfg.num_layers} layers, d={cfg.d_model}, {cfg.num_heads} "
        f"heads, ffn {cfg.d_ff}, context {cfg.seq_len}, "
        f"{'stacked (nnx.scan)' if cfg.stacked else 'list of blocks'}, "
        f"compute {cfg.dtype}; {n_params:,} parameters; batch "
        f"{cfg.batch_size}; {steps} steps of "
        + (f"MoE {cfg.moe}, {cfg.experts} experts of width "
           f"{cfg.expert_hidden}" if cfg.moe else args.method)
        + ("" if args.method == "dense" else f" at sparsity {args.sparsity}"),
        file=sys.stderr)

  history = {"step": [], "loss": [], "val_step": [], "val_bpb": []}
  eval_every = args.eval_every or max(1, steps // 5)
  losses = []
  timed_start, timed_steps = None, 0
  for i in range(steps):
    batch = text_data.sample_batch(data.train, rng,
                                   batch_size=cfg.batch_size,
                                   seq_len=cfg.seq_len)
    if mesh is not None:
      batch = jax.device_put(batch, jax.sharding.NamedSharding(
          mesh, jax.P(LOGICAL_RULES["batch"])))
    if i == 1:
      jax.block_until_ready(params)
      timed_start = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, batch)
    if regrowth is not None and i % every == phase:
      regrowth.record(i, sj.get_masks(opt_state))
    if i >= 1:
      timed_steps += 1
    losses.append(loss)
    if (i + 1) % eval_every == 0 or i + 1 == steps:
      jax.block_until_ready(params)
      pause = time.perf_counter()
      history["step"].extend(range(i + 2 - len(losses), i + 2))
      history["loss"].extend(float(x) for x in losses)
      losses = []
      model = merge(graphdef, template, params, rest)
      bpb = evaluate_bpb(model, windows)
      history["val_step"].append(i + 1)
      history["val_bpb"].append(bpb)
      print(f"step {i + 1}: loss {history['loss'][-1]:.4f}, val bpb "
            f"{bpb:.4f}", file=sys.stderr)
      if timed_start is not None:
        timed_start += time.perf_counter() - pause
  jax.block_until_ready(params)
  seconds = time.perf_counter() - timed_start if timed_start else float("nan")
  step_s = seconds / max(timed_steps, 1)
  tokens_per_s = cfg.batch_size * cfg.seq_len / step_s
  model = merge(graphdef, template, params, rest)
  if cfg.moe:
    return _finish_moe(args, cfg, model, history, windows, data,
                       tokens_per_s=tokens_per_s, step_s=step_s)
  # Realised sparsity is the masks' (a weight RigL grew at zero and has not
  # moved yet is kept, not pruned); the exact zeros of the weights beside.
  zeros = layer_sparsity(model)
  per_layer, fan_in = zeros, {}
  if sparse:
    kept = jax.tree.map(lambda m, p: p if m is None else m.astype(p.dtype),
                        sj.get_masks(opt_state), params,
                        is_leaf=lambda x: x is None)
    kept_model = merge(graphdef, template, kept, rest)
    per_layer = layer_sparsity(kept_model)
    # How evenly each mask spreads its budget over output units: a
    # gradient-guided grower may pile it onto a few (docs, "Sparse training").
    fan_in = layer_fan_in_share(kept_model)
  val_bpb = history["val_bpb"][-1]

  if args.method == "dense":
    args.sparsity = 0.0
  tuned = "".join(f"_{k}{v}" for k, v in overrides.items())
  stem = f"lm_{args.method}_{_label(args.sparsity)}{tuned}" + (
      f"_s{args.seed}" if args.seed else "")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  ckpt = out / f"{stem}_ckpt"
  save_checkpoint(model, ckpt)
  png = out / f"{stem}.png"
  _plot(png, {"train loss (bits/byte)": (
      history["step"], np.array(history["loss"]) / math.log(2), "-"),
              "validation bpb": (history["val_step"], history["val_bpb"],
                                 "o-")},
        title=f"{args.method}" + ("" if args.method == "dense"
                                  else f", sparsity {args.sparsity}"),
        xlabel="step", ylabel="bits per byte")
  results = {
      "command": "train", "method": args.method, "sparsity": args.sparsity,
      "steps": steps,
      "seed": args.seed, "val_bpb": val_bpb, "data": data.name,
      "total_params": int(sum(x.size for x in jax.tree.leaves(params))),
      "config": cfg.__dict__, "layer_sparsity": per_layer,
      "layer_zeros": zeros, "layer_top_fan_in_share": fan_in,
      "tokens_per_s": tokens_per_s, "step_seconds": step_s,
      "history": history, "checkpoint": str(ckpt), "png": str(png)}
  if mesh is not None:
    results["mesh"] = dict(mesh.shape)
  if regrowth is not None and regrowth.updates:
    results["regrowth"] = regrowth.updates
    results.update(overrides)
  path = _write(out, stem, results)
  if keep_state:
    results["params"], results["opt_state"] = params, opt_state
    results["param_shardings"] = shardings
  print(f"\n{args.method}: realised sparsity of the projection kernels per "
        "layer")
  print(sparsity_table(per_layer))
  if regrowth is not None and regrowth.updates:
    print("\nmask updates: weights dropped, and the share of them grown at "
          "the update before")
    print(regrowth.table())
  print(f"\ntokens/s {tokens_per_s:,.0f} ({1000 * step_s:.1f} ms per step "
        f"of {cfg.batch_size}x{cfg.seq_len} tokens, compile excluded)")
  print(f"wrote {path}, {png} and {ckpt}")
  return results


# ---------------------------------------------------------------- MoE


@nnx.jit
def _moe_aux_batch(model, batch):
  return model(batch[:, :-1], return_aux=True)[1]


def moe_stats(model, windows: np.ndarray, *, batch_size: int = 64) -> dict:
  """The layers' :class:`sparsejax.nn.MoEAux` on ``windows``, per layer.

  Every statistic is averaged over the batches (a partial last batch is
  left out when there is a full one); expert choice routes the tokens of a
  batch together, as in training.

  Returns:
    ``{"expert_load": [layers][experts], "dropped": [layers],
    "load_balancing": [layers], "z_loss": [layers]}``.
  """
  n = len(windows)
  starts = range(0, max(n - batch_size, 0) + 1, batch_size)
  auxes = [_moe_aux_batch(model, windows[i:i + batch_size]) for i in starts]
  mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *auxes)
  return {k: np.asarray(getattr(mean, k)).tolist() for k in
          ("expert_load", "dropped", "load_balancing", "z_loss")}


def load_summary(expert_load) -> dict:
  """Per layer: min and max load as multiples of the uniform ``1/E``, and
  the coefficient of variation (std / mean) of the load over experts."""
  load = np.asarray(expert_load)
  e = load.shape[-1]
  return {"min_x_uniform": (load.min(-1) * e).tolist(),
          "max_x_uniform": (load.max(-1) * e).tolist(),
          "cv": (load.std(-1) / load.mean(-1)).tolist()}


def param_counts(model) -> tuple[int, int]:
  """``(active, total)`` parameters per token: an MoE expert's weights
  count ``k / experts`` of theirs (``k`` experts per token; expert
  choice's capacity factor), the router and the rest count fully."""
  cfg = model.cfg
  total = active = 0
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(p, "key", None) for p in path]
    size = math.prod(x.shape)
    total += size
    expert = "moe" in keys and keys[-1] in ("w_in", "w_out", "b_in", "b_out")
    active += size * cfg.moe_k // cfg.experts if expert else size
  return active, total


def _plot_moe(path, load, history, *, title):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  load = np.asarray(load)
  layers, experts = load.shape
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
  im = ax.imshow(load * experts, cmap="viridis", aspect="auto",
                 vmin=0.0, vmax=max(2.0, float(load.max() * experts)))
  for i in range(layers):
    for j in range(experts):
      ax.text(j, i, f"{load[i, j] * experts:.2f}", ha="center",
              va="center", color="w", fontsize=7)
  ax.set_xticks(range(experts))
  ax.set_yticks(range(layers))
  ax.set_xlabel("expert")
  ax.set_ylabel("layer")
  ax.set_title("expert load / uniform (validation)")
  fig.colorbar(im, ax=ax)
  bx.plot(history["step"], np.array(history["loss"]) / math.log(2), "-",
          label="train loss (bits/byte)")
  bx.plot(history["val_step"], history["val_bpb"], "o-",
          label="validation bpb")
  bx.set_xlabel("step")
  bx.set_ylabel("bits per byte")
  bx.grid(alpha=0.3)
  bx.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _finish_moe(args, cfg, model, history, windows, data, *, tokens_per_s,
                step_s) -> dict:
  """Reports, plots and saves a trained MoE model (``--moe``)."""
  stats = moe_stats(model, windows)
  summary = load_summary(stats["expert_load"])
  active, total = param_counts(model)
  val_bpb = history["val_bpb"][-1]
  stem = f"lm_moe_{cfg.moe}_{cfg.experts}" + (
      f"_s{args.seed}" if args.seed else "")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  ckpt = out / f"{stem}_ckpt"
  save_checkpoint(model, ckpt)
  png = out / f"{stem}.png"
  _plot_moe(png, stats["expert_load"], history,
            title=f"MoE {cfg.moe}, {cfg.experts} experts: val bpb "
            f"{val_bpb:.3f}")
  results = {
      "command": "moe", "method": f"moe_{cfg.moe}", "moe": cfg.moe,
      "router": cfg.moe_router, "experts": cfg.experts, "k": cfg.moe_k,
      "expert_hidden": cfg.expert_hidden,
      # No weight is pruned; the experts' inactive share is below.
      "sparsity": 0.0, "active_fraction": cfg.moe_k / cfg.experts,
      "steps": args.steps, "seed": args.seed, "val_bpb": val_bpb,
      "data": data.name, "config": cfg.__dict__, "layer_sparsity": {},
      "expert_load": stats["expert_load"], "load": summary,
      "dropped": stats["dropped"],
      "load_balancing": stats["load_balancing"], "z_loss": stats["z_loss"],
      "active_params": active, "total_params": total,
      "tokens_per_s": tokens_per_s, "step_seconds": step_s,
      "history": history, "checkpoint": str(ckpt), "png": str(png)}
  path = _write(out, stem, results)
  print(f"\nMoE {cfg.moe} ({cfg.moe_router}, k={cfg.moe_k}), {cfg.experts} "
        f"experts of width {cfg.expert_hidden}: {active:,} active of "
        f"{total:,} parameters")
  print("| layer | load min x uniform | load max x uniform | load CV | "
        "dropped | load-balancing loss | z-loss |")
  print("|---|---|---|---|---|---|---|")
  for i in range(cfg.num_layers):
    print(f"| {i} | {summary['min_x_uniform'][i]:.3f} | "
          f"{summary['max_x_uniform'][i]:.3f} | {summary['cv'][i]:.3f} | "
          f"{stats['dropped'][i]:.4f} | {stats['load_balancing'][i]:.4f} | "
          f"{stats['z_loss'][i]:.4f} |")
  print(f"\nval bpb {val_bpb:.4f}; tokens/s {tokens_per_s:,.0f} "
        f"({1000 * step_s:.1f} ms per step of {cfg.batch_size}x"
        f"{cfg.seq_len} tokens, compile excluded)")
  print(f"wrote {path}, {png} and {ckpt}")
  return results


def _dense_ffn_only(model, flag: str) -> None:
  if model.cfg.moe:
    raise ValueError(f"--from: {flag} needs a dense-FFN checkpoint; this "
                     f"one is MoE ({model.cfg.moe})")


# ---------------------------------------------------------------- one-shot


def parse_sparsity(text):
  """``"0.5"`` -> 0.5, ``"2:4"`` -> (2, 4)."""
  text = str(text)
  if ":" in text:
    n, m = text.split(":")
    return int(n), int(m)
  return float(text)


def calibration_batches(data, cfg, *, windows: int, seed: int):
  rng = np.random.default_rng(seed + 12345)
  batch = text_data.sample_batch(data.train, rng, batch_size=windows,
                                 seq_len=cfg.seq_len)[:, :-1]
  size = max(1, min(cfg.batch_size, windows))
  return [batch[i:i + size] for i in range(0, windows, size)]


def oneshot(args, data) -> dict:
  """Prunes a trained checkpoint in one shot with ``sj.prune_model``."""
  model = load_checkpoint(args.from_, stacked=args.stacked)
  _dense_ffn_only(model, "--oneshot")
  cfg = model.cfg
  windows = text_data.eval_windows(data.validation, seq_len=cfg.seq_len,
                                   max_windows=args.val_windows)
  before = evaluate_bpb(model, windows)
  sparsity = parse_sparsity(args.sparsity)
  calib = calibration_batches(data, cfg, windows=args.calibration,
                              seed=args.seed)
  start = time.perf_counter()
  result = sj.prune_model(model, calib, method=args.oneshot,
                          sparsity=sparsity, where=MODULE_RE)
  seconds = time.perf_counter() - start
  after = evaluate_bpb(model, windows)
  per_layer = layer_sparsity(model)
  print(f"\n{args.oneshot} at {args.sparsity}: realised sparsity per layer "
        f"({len(result.layers)} layers pruned in {seconds:.1f} s)")
  print(sparsity_table(per_layer))
  print(f"\nval bpb: dense {before:.4f}, pruned {after:.4f}")
  results = {"command": "oneshot", "method": args.oneshot,
             "sparsity": str(args.sparsity), "steps": 0, "val_bpb": after,
             "val_bpb_dense": before, "layer_sparsity": per_layer,
             "pruned_layers": list(result.layers),
             "checkpoint": str(args.from_), "seconds": seconds}
  _write_per_layer(
      args.out, f"lm_oneshot_{args.oneshot}_{_label(sparsity)}", results,
      per_layer, title=f"{args.oneshot} {args.sparsity}: bpb {before:.3f} "
      f"-> {after:.3f}", ylabel="weight sparsity")
  return results


# ---------------------------------------------------------------- activation


def _consumers(block) -> dict[str, jax.Array]:
  """Per input group, the kernel(s) reading it as ``[width, fan_out]``."""
  d = block.q.kernel.shape[0]
  return {
      "attn_in": jnp.concatenate(
          [getattr(block, n).kernel[...].reshape(d, -1) for n in "qkv"], 1),
      "attn_out": block.o.kernel[...].reshape(-1, block.o.kernel.shape[-1]),
      "mlp_in": jnp.concatenate([block.gate.kernel[...],
                                 block.up.kernel[...]], 1),
      "mlp_down": block.down.kernel[...],
  }


def calibrate_activation(model, rule: str, target: float, calib) -> dict:
  """Per-layer thresholds (or top-k sizes) of ``rule`` at ``target``."""
  lm_model.set_activation_sparsity(model, None)
  collected = [model(jnp.asarray(b), collect=True)[1] for b in calib]
  inputs = {g: jnp.concatenate([c[g] for c in collected], axis=1)
            for g in collected[0]}  # [layers, tokens..., *features]
  blocks = lm_model.block_list(model)
  if rule == "topk":
    k = {g: int(round((1 - target) * math.prod(inputs[g].shape[3:])))
         for g in lm_model.GROUPS}
    return {"kind": "topk", "topk_k": k}
  groups = ("gate_act",) if rule == "cats" else lm_model.GROUPS
  thresholds = {}
  for g in groups:
    feat = inputs[g].shape[3:]
    per_layer = []
    for layer, block in enumerate(blocks):
      x = inputs[g][layer].reshape(-1, math.prod(feat)).astype(jnp.float32)
      if rule == "wina":
        t = sa.calibrate(x, target, score="wina",
                         weight=_consumers(block)[g].astype(jnp.float32))
      else:
        t = jnp.broadcast_to(sa.calibrate(x, target), x.shape[-1:])
      per_layer.append(t.reshape(feat))
    thresholds[g] = jnp.stack(per_layer)
  return {"kind": "cats" if rule == "cats" else "threshold",
          "thresholds": thresholds}


def activation(args, data) -> dict:
  """Training-free activation sparsity on a trained checkpoint."""
  model = load_checkpoint(args.from_, stacked=args.stacked)
  _dense_ffn_only(model, "--activation")
  cfg = model.cfg
  windows = text_data.eval_windows(data.validation, seq_len=cfg.seq_len,
                                   max_windows=args.val_windows)
  before = evaluate_bpb(model, windows)
  calib = calibration_batches(data, cfg, windows=args.calibration,
                              seed=args.seed)
  setting = calibrate_activation(model, args.activation, args.target, calib)
  lm_model.set_activation_sparsity(model, setting["kind"],
                                   thresholds=setting.get("thresholds"),
                                   topk_k=setting.get("topk_k"))
  after = evaluate_bpb(model, windows)
  # Realised sparsity of what each projection group reads, per layer.
  _, seen = model(jnp.asarray(windows[:min(len(windows), 32), :-1]),
                  collect=True)
  realised = {g: [float(jnp.mean(seen[g][layer] == 0))
                  for layer in range(cfg.num_layers)]
              for g in lm_model.GROUPS}
  print(f"\n{args.activation} at target {args.target}: realised sparsity of "
        "the projections' inputs per layer (validation windows)")
  print(sparsity_table(realised))
  print(f"\nval bpb: dense {before:.4f}, sparse {after:.4f}")
  results = {"command": "activation", "method": args.activation,
             "sparsity": args.target, "target": args.target, "steps": 0,
             "val_bpb": after, "val_bpb_dense": before,
             "layer_sparsity": realised, "checkpoint": str(args.from_)}
  _write_per_layer(
      args.out, f"lm_activation_{args.activation}_{args.target:g}", results,
      realised, title=f"{args.activation} target {args.target}: bpb "
      f"{before:.3f} -> {after:.3f}", ylabel="realised input sparsity")
  return results


# ---------------------------------------------------------------- generate


def generate(args) -> dict:
  """Greedy or sampled continuation of ``--prompt`` with the KV cache."""
  model = load_checkpoint(args.from_, stacked=args.stacked,
                          dtype="bfloat16" if args.bf16 else None)
  prompt = text_data.encode(args.prompt)[None]
  if prompt.shape[1] == 0:
    raise ValueError("--prompt: must not be empty")
  kw = dict(steps=args.tokens, temperature=args.temperature, seed=args.seed)
  if args.activation:
    # TEAL-style decoding: thresholds calibrated on training text, every
    # projection of a decode step computed from its active input rows.
    data = text_data.load_text(args.data_dir)
    calib = calibration_batches(data, model.cfg, windows=args.calibration,
                                seed=args.seed)
    setting = calibrate_activation(model, args.activation, args.target,
                                   calib)
    lm_model.set_activation_sparsity(model, setting["kind"],
                                     thresholds=setting.get("thresholds"),
                                     topk_k=setting.get("topk_k"))
    kw["matmul"] = pallas_kernels.sparse_input_matmul
    print(f"decoding with {args.activation} activation sparsity at target "
          f"{args.target} (sparse_input_matmul)", file=sys.stderr)
  start = time.perf_counter()
  out = jax.block_until_ready(lm_model.generate(model, prompt, **kw))
  first = time.perf_counter() - start
  start = time.perf_counter()
  out = jax.block_until_ready(lm_model.generate(model, prompt, **kw))
  seconds = time.perf_counter() - start
  tokens_per_s = args.tokens / seconds
  print(args.prompt + text_data.decode(np.asarray(out[0])))
  print(f"\n{args.tokens} tokens in {seconds:.3f} s ({first:.1f} s with "
        f"compilation): tokens/s {tokens_per_s:,.1f}")
  return {"command": "generate", "tokens": np.asarray(out[0]).tolist(),
          "tokens_per_s": tokens_per_s}


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("command", nargs="?", choices=("train", "generate"),
                      default="train",
                      help="train (also --oneshot/--activation) or generate")
  parser.add_argument("--method", choices=METHODS, default="dense")
  parser.add_argument("--sparsity", default=None,
                      help="weight sparsity (default 0.9); for --oneshot "
                      "also n:m")
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--lr", type=float, default=3e-3, help="peak Adam lr")
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--tiny", action="store_true",
                      help="the test-size model (2 layers, d=32, seq 32)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="out")
  parser.add_argument("--data-dir", default=None)
  layout = parser.add_mutually_exclusive_group()
  layout.add_argument("--stacked", dest="stacked", action="store_true",
                      default=None, help="blocks stacked, run by nnx.scan")
  layout.add_argument("--unstacked", dest="stacked", action="store_false",
                      help="a list of blocks")
  parser.add_argument("--bf16", action="store_true",
                      help="bfloat16 compute, float32 master weights")
  parser.add_argument("--val-windows", type=int, default=256,
                      help="fixed validation windows for the bpb")
  parser.add_argument("--eval-every", type=int, default=None)
  parser.add_argument("--mesh", default=None,
                      help="train on a device mesh: data=D,model=M")
  parser.add_argument("--update-every", type=int, default=None,
                      help="steps between mask updates (default: every "
                      "100, ten per run on short runs)")
  parser.add_argument("--drop-fraction", type=float, default=None,
                      help="a drop-and-grow method's drop fraction (default: "
                      "its own, 0.3)")
  parser.add_argument("--begin-step", type=int, default=None,
                      help="a drop-and-grow method's first mask update "
                      "(default: its own)")
  parser.add_argument("--oneshot", choices=("magnitude", "wanda",
                                            "sparsegpt"))
  parser.add_argument("--activation", choices=("teal", "wina", "cats",
                                               "topk"))
  parser.add_argument("--target", type=float, default=0.5,
                      help="activation sparsity target")
  parser.add_argument("--calibration", type=int, default=64,
                      help="training windows for calibration")
  parser.add_argument("--from", dest="from_", default=None,
                      help="checkpoint directory written by a training run")
  parser.add_argument("--moe", choices=tuple(lm_model.MOE_ROUTERS),
                      help="train with a mixture-of-experts FFN")
  parser.add_argument("--experts", type=int, default=8,
                      help="experts per MoE layer")
  parser.add_argument("--prompt", default="The ")
  parser.add_argument("--tokens", type=int, default=200)
  parser.add_argument("--temperature", type=float, default=0.0)
  args = parser.parse_args(argv)
  if args.moe:
    given = [flag for flag, on in (
        ("--method", args.method != "dense"),
        ("--sparsity", args.sparsity is not None),
        ("--update-every", args.update_every is not None),
        ("--oneshot", args.oneshot), ("--activation", args.activation),
        ("--mesh", args.mesh), ("--from", args.from_),
        ("generate", args.command == "generate")) if on]
    if given:
      parser.error(f"--moe trains a dense-weight MoE model; it does not "
                   f"combine with {', '.join(given)}")
    if args.experts < 1:
      parser.error(f"--experts must be >= 1, got {args.experts}")
  tuned = {"--" + name.replace("_", "-"): name
           for name in method_overrides(args)}
  if tuned:
    entry = methods.METHODS.get(args.method)
    if entry is None or entry.profile not in methods.DROP_AND_GROW:
      parser.error(f"{', '.join(tuned)} only apply to a drop-and-grow "
                   f"method, not --method {args.method}")
    takes = inspect.signature(entry.factory).parameters
    for flag, name in tuned.items():
      if name not in takes:
        parser.error(f"{flag}: --method {args.method} has no {name}")
  if args.sparsity is None:
    args.sparsity = "0.9"
  needs_ckpt = args.command == "generate" or args.oneshot or args.activation
  if needs_ckpt and not args.from_:
    parser.error("--from CKPT is required by generate, --oneshot and "
                 "--activation")
  if args.command == "generate" and args.oneshot:
    parser.error("generate takes --activation, not --oneshot")
  if args.oneshot and args.activation:
    parser.error("--oneshot and --activation are separate commands")
  if args.oneshot:
    try:
      parse_sparsity(args.sparsity)
    except ValueError:
      parser.error(f"--sparsity: expected a fraction or n:m, got "
                   f"{args.sparsity!r}")
  elif args.command == "train" and not args.activation:
    args.sparsity = float(args.sparsity)
    if not 0.0 <= args.sparsity < 1.0:
      parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.steps < 1:
      parser.error(f"--steps must be >= 1, got {args.steps}")
  if not 0.0 <= args.target < 1.0:
    parser.error(f"--target must be in [0, 1), got {args.target}")
  return args


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs one command; returns its results (those written to the JSON)."""
  args = parse_args(argv)
  if args.command == "generate":
    return generate(args)
  data = text_data.load_text(args.data_dir)
  if args.oneshot:
    results = oneshot(args, data)
  elif args.activation:
    results = activation(args, data)
  else:
    results = train(args, data)
  print(f"val_bpb {results['val_bpb']:.4f}")
  return results


if __name__ == "__main__":
  main()
