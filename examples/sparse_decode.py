# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Decoding with activation sparsity, the way TEAL does it.

At batch 1 a decoding step is bound by reading the weights: every projection
multiplies one token's activation vector by a whole weight matrix. When most
entries of that vector are zero, only the rows of the matrix that meet a
nonzero are needed. TEAL zeroes the small entries of each projection's input
with calibrated magnitude thresholds and multiplies from the active rows
only; this module does the same for the model of ``examples/lm_model.py``:

* **Prefill is dense** (the model's own :func:`lm_model.prefill`, activation
  sparsity off): a prompt is a batch of tokens whose union of active
  channels is nearly everything, and TEAL leaves it dense too.
* **Decoding** runs its own step over *decode weights* prepared once by
  :func:`decode_weights`: per layer (a Python loop, so no weight is ever
  sliced out of a stacked array), the q, k and v kernels concatenated into
  one ``[embed, 3 * heads * head_dim]`` matrix and gate and up into one
  ``[embed, 2 * mlp]`` matrix, so projections that share an input share one
  list of active rows and read contiguous rows of one matrix.
* **Thresholds** (the dict of ``examples/lm.py``'s
  ``calibrate_activation``: ``{"kind", "thresholds"}`` or
  ``{"kind": "topk", "topk_k"}``): per layer and per input, on the input of
  q/k/v (``attn_in``), of o (``attn_out``), of gate/up (``mlp_in``) and of
  down (``mlp_down``); CATS thresholds ``silu(gate)`` (``gate_act``), which
  zeroes the same entries of down's input; WINA's per-channel thresholds
  (its score ``|x_j| * ||W_j||`` folded into ``|x_j|``) apply unchanged.
* Each projection of a sparse step is
  ``pallas_kernels.sparse_input_matmul`` (on CPU its XLA loop over the
  active rows; the Pallas kernels on GPU and TPU); a dense step is
  ``x @ w`` on the same prepared weights, so the two differ only in the
  matmul. The LM head stays dense.

:func:`make_decoder` returns the jitted pieces: ``decoder.generate(prompt,
steps)`` (dense prefill, then a ``fori_loop`` of steps with the cache
donated) and ``decoder.step`` (one jitted step, cache donated). Every step
also counts the weight bytes an ideal sparse-input kernel reads (active
rows of each projection, the whole head), the figure that bounds the
speed-up.

Example::

  import sparse_decode, lm, lm_model
  setting = lm.calibrate_activation(model, "teal", 0.5, calib_batches)
  decoder = sparse_decode.make_decoder(model, setting)
  out = decoder.generate(prompt, steps=64)
  out.tokens, out.read_fraction       # [B, 64], about 0.5 + head

References:
  Liu et al, `Training-Free Activation Sparsity in Large Language Models
  <https://arxiv.org/abs/2408.14690>`_ (TEAL), 2024.

  Lee et al, `CATS: Contextually-Aware Thresholding for Sparsity in Large
  Language Models <https://arxiv.org/abs/2404.08763>`_, 2024.

  Chen et al, `WINA: Weight Informed Neuron Activation for Accelerating
  Large Language Model Inference <https://arxiv.org/abs/2505.19427>`_, 2025.
"""

from __future__ import annotations

import functools
import pathlib
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels import sparse_input_matmul
from sparsejax import activations as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lm_model  # noqa: E402  (examples/lm_model.py)

# The thresholded inputs, as in lm_model.GROUPS plus CATS's gate activation.
INPUTS = ("attn_in", "attn_out", "mlp_in", "mlp_down", "gate_act")
_RMS_EPSILON = 1e-6  # nnx.RMSNorm's default, used by lm_model


class LayerWeights(NamedTuple):
  """One block's weights laid out for decoding, in the compute dtype."""

  attn_norm: jax.Array  # [embed]
  qkv: jax.Array        # [embed, 3 * heads * head_dim]: q | k | v
  o: jax.Array          # [heads * head_dim, embed]
  mlp_norm: jax.Array   # [embed]
  gate_up: jax.Array    # [embed, 2 * mlp]: gate | up
  down: jax.Array       # [mlp, embed]


class DecodeWeights(NamedTuple):
  """The model's weights for :func:`decode_step` (see the module doc)."""

  embed: jax.Array                 # [vocab, embed]
  layers: tuple[LayerWeights, ...]
  final_norm: jax.Array            # [embed]
  head: jax.Array                  # [embed, vocab]


class LayerThresholds(NamedTuple):
  """One layer's thresholds on ``|x|``: a scalar, a per-channel vector
  (flattened) or None (that input stays as it is)."""

  attn_in: jax.Array | None = None
  attn_out: jax.Array | None = None
  mlp_in: jax.Array | None = None
  mlp_down: jax.Array | None = None
  gate_act: jax.Array | None = None


class DecodeOutput(NamedTuple):
  """What :meth:`Decoder.generate` returns.

  Attributes:
    tokens: ``int32 [B, steps]``, the new tokens.
    read_fraction: weight bytes an ideal sparse-input kernel reads over the
      decode steps (active rows of every projection, all of the head and
      one embedding row per token), over the bytes a dense step reads.
  """

  tokens: jax.Array
  read_fraction: jax.Array


class Decoder(NamedTuple):
  """Jitted decoding of one model (from :func:`make_decoder`).

  Attributes:
    weights: the :class:`DecodeWeights`.
    thresholds: per layer, the :class:`LayerThresholds`.
    prefill: ``(prompt [B, T], max_len) -> (logits [B, vocab], cache)``:
      dense, the model's own prefill; the logits of the last position.
    step: ``(token [B], cache, pos) -> (logits [B, vocab], cache,
      read_bytes)``, jitted with the cache donated.
    generate: ``(prompt [B, T], steps, *, temperature=0., seed=0) ->
      DecodeOutput``.
    loop: ``(first [B], cache, pos, steps) -> (tokens, cache, read_bytes)``,
      the jitted decode loop alone (cache donated), for timing.
  """

  weights: DecodeWeights
  thresholds: tuple[LayerThresholds, ...]
  prefill: object
  step: object
  generate: object
  loop: object


# ---------------------------------------------------------------- weights


def decode_weights(model: lm_model.TransformerLM, *,
                   dtype=None) -> DecodeWeights:
  """The model's weights, per layer, with q/k/v and gate/up concatenated.

  Args:
    model: a :class:`lm_model.TransformerLM`, stacked or not.
    dtype: storage dtype of the result (default the model's compute dtype,
      ``cfg.dtype``: what its projections multiply in).

  Returns:
    A :class:`DecodeWeights`; the arrays are new (concatenated) copies, so
    the model may be dropped afterwards.
  """
  cfg = model.cfg
  dtype = jnp.dtype(cfg.dtype if dtype is None else dtype)
  cast = lambda a: jnp.asarray(a[...], dtype)  # noqa: E731
  d = cfg.d_model
  layers = []
  for block in lm_model.block_list(model):
    qkv = jnp.concatenate(
        [cast(getattr(block, n).kernel).reshape(d, -1) for n in "qkv"], 1)
    layers.append(LayerWeights(
        attn_norm=cast(block.attn_norm.scale),
        qkv=qkv,
        o=cast(block.o.kernel).reshape(-1, d),
        mlp_norm=cast(block.mlp_norm.scale),
        gate_up=jnp.concatenate([cast(block.gate.kernel),
                                 cast(block.up.kernel)], 1),
        down=cast(block.down.kernel)))
  return DecodeWeights(embed=cast(model.embed.embedding), layers=tuple(layers),
                       final_norm=cast(model.final_norm.scale),
                       head=cast(model.head.kernel))


def decode_thresholds(num_layers: int, setting: dict | None
                      ) -> tuple[tuple[LayerThresholds, ...], tuple]:
  """Per-layer thresholds (and top-k sizes) from a calibration ``setting``.

  Args:
    num_layers: the model's number of layers.
    setting: None (dense), or the dict of ``examples/lm.py``'s
      ``calibrate_activation``: ``{"kind": "threshold" | "cats",
      "thresholds": {input: [layers, *features] or [layers]}}`` or
      ``{"kind": "topk", "topk_k": {input: k}}``.

  Returns:
    ``(thresholds, topk_k)``: a :class:`LayerThresholds` per layer and a
    sorted tuple of ``(input, k)`` pairs (empty unless top-k).
  """
  empty = tuple(LayerThresholds() for _ in range(num_layers))
  if setting is None:
    return empty, ()
  kind = setting.get("kind")
  if kind == "topk":
    topk_k = dict(setting.get("topk_k") or {})
    unknown = set(topk_k) - set(INPUTS)
    if unknown:
      raise ValueError(f"setting: unknown inputs {sorted(unknown)} in "
                       f"topk_k; expected some of {INPUTS}")
    return empty, tuple(sorted(topk_k.items()))
  if kind not in ("threshold", "cats"):
    raise ValueError(f"setting: kind must be 'threshold', 'cats' or 'topk', "
                     f"got {kind!r}")
  given = dict(setting.get("thresholds") or {})
  unknown = set(given) - set(INPUTS)
  if unknown:
    raise ValueError(f"setting: unknown inputs {sorted(unknown)} in "
                     f"thresholds; expected some of {INPUTS}")
  per_layer = []
  for layer in range(num_layers):
    fields = {}
    for name, t in given.items():
      t = jnp.asarray(t, jnp.float32)
      if t.ndim < 1 or t.shape[0] != num_layers:
        raise ValueError(f"setting: thresholds[{name!r}] must have a "
                         f"leading axis of {num_layers} layers, got shape "
                         f"{t.shape}")
      t = t[layer].reshape(-1)
      fields[name] = t[0] if t.size == 1 else t
    per_layer.append(LayerThresholds(**fields))
  return tuple(per_layer), ()


# ---------------------------------------------------------------- the step


def _rms_norm(x, scale, dtype):
  # nnx.RMSNorm as lm_model uses it: float32 statistics, scale folded in.
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
  return (x32 * (jax.lax.rsqrt(var + _RMS_EPSILON) * scale)).astype(dtype)


def _sparsify(x, t, k):
  """``x [B, F]`` with its entries at or below ``t`` (or outside the top
  ``k``) zeroed; None and None leave it as it is."""
  if k is not None:
    return sa.topk(x, k)
  if t is None:
    return x
  return sa.threshold(x, t.astype(x.dtype))


def _project(x, w, *, sparse, block_rows):
  """``x [B, fan_in] @ w``, and the bytes of ``w``'s active rows."""
  active = jnp.sum(jnp.any(x != 0, axis=0), dtype=jnp.float32)
  read = active * (w.shape[1] * w.dtype.itemsize)
  if sparse:
    y = sparse_input_matmul(x, w, block_rows=block_rows)
  else:
    y = jnp.dot(x, w, preferred_element_type=jnp.result_type(x, w))
  return y.astype(x.dtype), read


def decode_step(weights: DecodeWeights,
                thresholds: tuple[LayerThresholds, ...], token: jax.Array,
                cache: tuple, pos, *, num_heads: int,
                rope_base: float = 10_000.0, topk_k: tuple = (),
                sparse: bool = True, block_rows: int | None = None):
  """One decoding step: the logits of ``token`` at position ``pos``.

  Args:
    weights: from :func:`decode_weights`.
    thresholds: per layer, from :func:`decode_thresholds`.
    token: ``int32 [B]``.
    cache: per layer, ``(k, v)`` of shape ``[B, max_len, heads,
      head_dim]``; the new key and value are written at ``pos``.
    pos: int32 scalar position of ``token``.
    num_heads: the model's heads.
    rope_base: the model's rotary base.
    topk_k: ``(input, k)`` pairs: keep the ``k`` largest magnitudes of that
      input per token instead of thresholding.
    sparse: multiply with ``sparse_input_matmul`` (True) or ``x @ w``.
    block_rows: ``sparse_input_matmul``'s rows per loop step (None: its
      default).

  Returns:
    ``(logits [B, vocab], cache, read_bytes)`` where ``read_bytes`` is the
    weight bytes of the active rows of every projection plus the head and
    one embedding row per token.
  """
  pos = jnp.asarray(pos, jnp.int32)
  dtype = weights.embed.dtype  # the compute dtype (see decode_weights)
  ks = dict(topk_k)
  proj = functools.partial(_project, sparse=sparse, block_rows=block_rows)
  x = jnp.take(weights.embed, token, axis=0).astype(dtype)  # [B, d]
  b, d = x.shape
  read = jnp.float32(token.shape[0] * d * weights.embed.dtype.itemsize)
  new_cache = []
  for w, t, (ck, cv) in zip(weights.layers, thresholds, cache):
    h = _sparsify(_rms_norm(x, w.attn_norm, dtype), t.attn_in,
                  ks.get("attn_in"))
    qkv, r = proj(h, w.qkv)
    read += r
    q, k, v = jnp.split(qkv.reshape(b, 1, 3 * num_heads, -1), 3, axis=2)
    q = lm_model.rope(q, pos[None], rope_base)
    k = lm_model.rope(k, pos[None], rope_base)
    ck = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), pos, 1)
    cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), pos, 1)
    new_cache.append((ck, cv))
    a = lm_model.attend(q, ck.astype(dtype), cv.astype(dtype), pos[None],
                        jnp.arange(ck.shape[1]))
    a = _sparsify(a.reshape(b, -1), t.attn_out, ks.get("attn_out"))
    o, r = proj(a, w.o)
    read += r
    x = x + o
    h = _sparsify(_rms_norm(x, w.mlp_norm, dtype), t.mlp_in,
                  ks.get("mlp_in"))
    gu, r = proj(h, w.gate_up)
    read += r
    gate, up = jnp.split(gu, 2, axis=-1)
    act = _sparsify(jax.nn.silu(gate), t.gate_act, ks.get("gate_act"))
    m = _sparsify(act * up, t.mlp_down, ks.get("mlp_down"))
    y, r = proj(m, w.down)
    read += r
    x = x + y
  h = _rms_norm(x, weights.final_norm, dtype)
  logits = jnp.dot(h, weights.head,
                   preferred_element_type=jnp.result_type(h, weights.head))
  read += weights.head.size * weights.head.dtype.itemsize
  return logits, tuple(new_cache), read


def dense_read_bytes(weights: DecodeWeights, batch: int = 1) -> int:
  """Weight bytes one dense step reads (every projection, the head, the
  embedding rows of ``batch`` tokens)."""
  total = batch * weights.embed.shape[1] * weights.embed.dtype.itemsize
  for w in weights.layers:
    for a in (w.qkv, w.o, w.gate_up, w.down):
      total += a.size * a.dtype.itemsize
  return total + weights.head.size * weights.head.dtype.itemsize


# ---------------------------------------------------------------- jitted


def _pick(logits, key, temperature):
  if temperature == 0:
    return jnp.argmax(logits, -1).astype(jnp.int32)
  return jax.random.categorical(
      key, logits.astype(jnp.float32) / temperature).astype(jnp.int32)


def _split_cache(cache: lm_model.KVCache) -> tuple:
  return tuple((cache.k[i], cache.v[i]) for i in range(cache.k.shape[0]))


# Module-level jitted functions: decoders with the same static settings
# share their compiled code (thresholds are traced arguments, so every
# sparsity level of one model runs the same executable).
_STATIC = ("num_heads", "rope_base", "topk_k", "sparse", "block_rows")


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _prefill(graphdef, state, prompt, max_len, dtype):
  model = nnx.merge(graphdef, state)
  lm_model.set_activation_sparsity(model, None)
  logits, cache = lm_model.prefill(model, prompt, max_len=max_len)
  cache = jax.tree.map(lambda c: c.astype(dtype), _split_cache(cache))
  return logits[:, -1], cache


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnums=(3,))
def _step(weights, thresholds, token, cache, pos, **static):
  return decode_step(weights, thresholds, token, cache, pos, **static)


@functools.partial(jax.jit, static_argnames=_STATIC + ("steps",
                                                       "temperature"),
                   donate_argnums=(3,))
def _loop(weights, thresholds, first, cache, pos, key, *, steps,
          temperature, **static):
  def body(i, carry):
    token, cache, out, read = carry
    logits, cache, r = decode_step(weights, thresholds, token, cache,
                                   pos + i, **static)
    nxt = _pick(logits, jax.random.fold_in(key, pos + i), temperature)
    return nxt, cache, out.at[:, i].set(token), read + r

  out = jnp.zeros((first.shape[0], steps), jnp.int32)
  _, cache, out, read = jax.lax.fori_loop(
      0, steps, body, (first, cache, out, jnp.float32(0)))
  return out, cache, read


def make_decoder(model: lm_model.TransformerLM, setting: dict | None = None,
                 *, sparse: bool = True, block_rows: int | None = None,
                 dtype=None, weights: DecodeWeights | None = None
                 ) -> Decoder:
  """Jitted dense prefill and (sparse) decoding for ``model``.

  Args:
    model: a :class:`lm_model.TransformerLM` (its own activation sparsity
      setting is ignored: prefill runs dense).
    setting: the calibration dict (see :func:`decode_thresholds`) or None
      for no thresholds.
    sparse: decode with ``sparse_input_matmul`` (True) or ``x @ w``
      (False: with a setting, the masked-dense computation).
    block_rows: ``sparse_input_matmul``'s ``block_rows``.
    dtype: the decode weights' dtype (default the compute dtype).
    weights: decode weights already made by :func:`decode_weights` (shared
      between decoders of one model; ``dtype`` is then ignored).

  Returns:
    A :class:`Decoder`. Decoders of one model that differ only in their
    thresholds run the same compiled code.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> model = lm_model.TransformerLM(lm_model.LMConfig.tiny(),
    ...                                rngs=nnx.Rngs(0))
    >>> out = make_decoder(model).generate(jnp.zeros((1, 3), jnp.int32), 4)
    >>> out.tokens.shape, float(out.read_fraction) <= 1.0
    ((1, 4), True)
  """
  cfg = model.cfg
  if weights is None:
    weights = decode_weights(model, dtype=dtype)
  thresholds, topk_k = decode_thresholds(cfg.num_layers, setting)
  static = dict(num_heads=cfg.num_heads, rope_base=float(cfg.rope_base),
                topk_k=topk_k, sparse=bool(sparse), block_rows=block_rows)
  graphdef, state = nnx.split(model)
  cache_dtype = weights.embed.dtype

  def prefill(prompt, max_len):
    return _prefill(graphdef, state, jnp.asarray(prompt, jnp.int32),
                    int(max_len), cache_dtype)

  def step(token, cache, pos):
    return _step(weights, thresholds, token, cache, jnp.int32(pos),
                 **static)

  def loop(first, cache, pos, steps, temperature=0.0, seed=0):
    return _loop(weights, thresholds, first, cache, jnp.int32(pos),
                 jax.random.key(seed), steps=int(steps),
                 temperature=float(temperature), **static)

  def generate(prompt, steps, *, temperature=0.0, seed=0):
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
      raise ValueError(f"prompt: expected [batch, tokens>=1], got shape "
                       f"{prompt.shape}")
    if steps < 1:
      raise ValueError(f"steps: expected >= 1, got {steps}")
    logits, cache = prefill(prompt, prompt.shape[1] + steps)
    # The same key rule as lm_model.generate.
    first = _pick(logits, jax.random.key(seed), float(temperature))
    out, _, read = loop(first, cache, prompt.shape[1], steps, temperature,
                        seed)
    dense = dense_read_bytes(weights, prompt.shape[0]) * steps
    return DecodeOutput(out, read / dense)

  return Decoder(weights=weights, thresholds=thresholds, prefill=prefill,
                 step=step, generate=generate, loop=loop)
