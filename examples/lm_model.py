# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""A small decoder-only transformer in Flax NNX, with a KV-cache decode path.

The model of ``examples/lm.py``: byte tokens (vocabulary 256), an
``nnx.Embed``, ``num_layers`` pre-norm blocks (RMSNorm; causal multi-head
attention with rotary position embeddings and ``nnx.LinearGeneral``
projections, q/k/v kernels ``[embed, heads, head_dim]`` and the output kernel
``[heads, head_dim, embed]``; a SwiGLU feed-forward of three ``nnx.Linear``
without biases), a final RMSNorm and an untied ``nnx.Linear`` head.

* **Stacked layers** (``stacked=True``, the default): the blocks are created
  with ``nnx.vmap`` (``transform_metadata={nnx.PARTITION_NAME: "layers"}``)
  so every block parameter has a leading layer axis named ``"layers"``, and
  they run under ``nnx.scan``, the idiom of large JAX models (one compiled
  block, whatever the depth). ``stacked=False`` keeps a list of blocks.
* **Logical axis names**: every parameter carries its axis names through
  ``nnx.with_partitioning`` (``vocab``, ``embed``, ``heads``, ``kv``,
  ``mlp``, and ``layers`` for the stack), so a mesh can shard it.
* **Precision**: ``dtype`` is the compute dtype and ``param_dtype`` the
  storage dtype (``bfloat16`` compute with ``float32`` master weights).
* **Decoding**: :func:`prefill` runs the prompt and returns a
  :class:`KVCache`; :func:`decode_step` adds one token; :func:`generate`
  runs greedy or sampled decoding under ``jax.jit`` with the cache donated.
* **Pluggable projections**: every projection (q, k, v, o, gate, up, down,
  head) multiplies through :func:`project`, which reshapes the kernel to
  ``[fan_in, fan_out]`` and calls the active *matmul function* (``x @ w`` by
  default). :func:`use_matmul` installs another one, for example
  ``pallas_kernels.sparse_input_matmul``, which reads only the rows of ``w``
  whose input is active. The function is read when the model is *traced*:
  under ``jax.jit``, install it inside the traced function (as
  :func:`generate` does with its static ``matmul`` argument).
* **Mixture of experts** (``moe="top2" | "switch" | "expert_choice"``): the
  SwiGLU feed-forward of every block becomes a
  :class:`sparsejax.nn.MoE` of ``experts`` two-layer expert MLPs at equal
  *active* parameters (see :class:`LMConfig`); ``model(tokens,
  return_aux=True)`` also returns the layers' :class:`sparsejax.nn.MoEAux`
  stacked over a leading layer axis, out of ``nnx.scan`` (or the list) as a
  scan output, and :func:`moe_aux_loss` weighs them into the training loss.
* **Activation sparsity** (TEAL / WINA / CATS / top-k): optional per-layer
  thresholds on the inputs of the projections, set by
  :func:`set_activation_sparsity`; ``model(tokens, collect=True)`` also
  returns, per layer, what each group of projections received.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from sparsejax import activations as sa
from sparsejax import nn as sjnn

MatmulFn = Callable[[jax.Array, jax.Array], jax.Array]

# The inputs of the projections, in the order of the forward pass: what
# activation sparsity thresholds and what `collect=True` returns.
#   attn_in:  normed block input, read by q, k and v   [..., embed]
#   attn_out: attention output, read by o              [..., heads, head_dim]
#   mlp_in:   normed input, read by gate and up        [..., embed]
#   mlp_down: silu(gate) * up, read by down            [..., mlp]
#   gate_act: silu(gate), CATS's thresholded quantity  [..., mlp]
GROUPS = ("attn_in", "attn_out", "mlp_in", "mlp_down")
ACT_KINDS = ("threshold", "cats", "topk")

# The MoE feed-forwards: name -> (router of sparsejax.nn.MoE, k). k is the
# experts per token of the token-choice routers and expert choice's capacity
# factor c (each expert takes c * tokens / experts tokens, so a token meets
# c experts on average).
MOE_ROUTERS = {"top2": ("top_k", 2), "switch": ("switch", 1),
               "expert_choice": ("expert_choice", 2)}
# Coefficients of the auxiliary losses, summed over layers (Switch
# Transformer's 1e-2 load balancing, ST-MoE's 1e-3 router z-loss).
LOAD_BALANCING_COEF = 1e-2
Z_LOSS_COEF = 1e-3


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Sizes of the model and of a training batch.

  The default (4 layers, width 128, 4 heads, SwiGLU width 384, context 128,
  batch 16) is sized for a 2-core CPU; :meth:`tiny` is for tests.

  ``moe`` (a key of :data:`MOE_ROUTERS`) replaces every SwiGLU feed-forward
  by a :class:`sparsejax.nn.MoE` of ``experts`` experts, dropless
  (``capacity_factor=None``: token choice sorts tokens by expert; expert
  choice drops by construction the tokens no expert picks). The experts are
  two-layer MLPs without biases, ``silu(x W_in) W_out``, of hidden width
  :attr:`expert_hidden` ``= 3 d_ff / (2 k)``, so that the ``k`` experts a
  token meets hold ``k * 2 * d * h = 3 * d * d_ff`` weights, the SwiGLU's
  (equal active parameters; the router's ``d * experts`` weights per layer
  come on top). silu is the SwiGLU's own nonlinearity, so the two models
  differ by the gating product and the routing only.
  """

  vocab_size: int = 256
  num_layers: int = 4
  d_model: int = 128
  num_heads: int = 4
  d_ff: int = 384
  seq_len: int = 128
  batch_size: int = 16
  stacked: bool = True
  dtype: str = "float32"
  param_dtype: str = "float32"
  rope_base: float = 10_000.0
  moe: str | None = None
  experts: int = 8

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def moe_router(self) -> str:
    """The ``router`` of :class:`sparsejax.nn.MoE` (``moe`` must be set)."""
    return MOE_ROUTERS[self.moe][0]

  @property
  def moe_k(self) -> int:
    """Experts per token (token choice) or capacity factor (expert choice)."""
    return MOE_ROUTERS[self.moe][1]

  @property
  def expert_hidden(self) -> int:
    """Hidden width h of an expert: ``k * 2 * d * h == 3 * d * d_ff``."""
    return 3 * self.d_ff // (2 * self.moe_k)

  @classmethod
  def tiny(cls, **overrides) -> "LMConfig":
    """2 layers, width 32, 2 heads, SwiGLU 64, context 32, batch 8."""
    sizes = dict(num_layers=2, d_model=32, num_heads=2, d_ff=64, seq_len=32,
                 batch_size=8)
    sizes.update(overrides)
    return cls(**sizes)

  def __post_init__(self):
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model: {self.d_model} is not a multiple of "
                       f"num_heads={self.num_heads}")
    if self.head_dim % 2:
      raise ValueError(f"d_model / num_heads = {self.head_dim} must be even "
                       "(rotary embeddings rotate pairs)")
    if self.moe is not None:
      if self.moe not in MOE_ROUTERS:
        raise ValueError(f"moe: expected one of {tuple(MOE_ROUTERS)} or "
                         f"None, got {self.moe!r}")
      if not 1 <= self.moe_k <= self.experts:
        raise ValueError(f"experts: {self.experts} is fewer than the "
                         f"{self.moe_k} experts per token of {self.moe!r}")
      if 3 * self.d_ff % (2 * self.moe_k):
        raise ValueError(f"d_ff: 3 * {self.d_ff} is not a multiple of "
                         f"2 * k = {2 * self.moe_k} (expert width for equal "
                         "active parameters)")


# ---------------------------------------------------------------- matmuls

_MATMUL: list[MatmulFn] = []


def dense_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """The default matmul function: ``x @ w``."""
  return x @ w


def current_matmul() -> MatmulFn:
  """The matmul function projections use now."""
  return _MATMUL[-1] if _MATMUL else dense_matmul


@contextlib.contextmanager
def use_matmul(fn: MatmulFn | None):
  """Makes projections traced inside the block multiply with ``fn``.

  Args:
    fn: ``(x [..., fan_in], w [fan_in, fan_out]) -> [..., fan_out]``;
      ``None`` keeps the current one.
  """
  if fn is None:
    yield
    return
  _MATMUL.append(fn)
  try:
    yield
  finally:
    _MATMUL.pop()


def project(lhs, rhs, dimension_numbers, precision=None, **kwargs):
  """A ``dot_general`` that sends plain projections to the matmul function.

  Flax's ``LinearGeneral`` and ``Linear`` contract trailing input axes with
  leading kernel axes; such products become ``matmul(x [..., fan_in],
  w [fan_in, fan_out])``. Anything else goes to ``lax.dot_general``.
  """
  (lc, rc), (lb, rb) = dimension_numbers
  n = len(lc)
  plain = (not lb and not rb
           and tuple(lc) == tuple(range(lhs.ndim - n, lhs.ndim))
           and tuple(rc) == tuple(range(n)))
  if not plain:
    return jax.lax.dot_general(lhs, rhs, dimension_numbers,
                               precision=precision, **kwargs)
  fan_in = 1
  for d in rhs.shape[:n]:
    fan_in *= d
  out_shape = rhs.shape[n:]
  x = lhs.reshape(*lhs.shape[:lhs.ndim - n], fan_in)
  y = current_matmul()(x, rhs.reshape(fan_in, -1))
  pref = kwargs.get("preferred_element_type")
  y = y.astype(pref) if pref is not None else y
  return y.reshape(*lhs.shape[:lhs.ndim - n], *out_shape)


# ---------------------------------------------------------------- layers


class ActThreshold(nnx.Variable):
  """A calibrated activation threshold (not trained, not a Param)."""


def _init(names):
  return nnx.with_partitioning(nnx.initializers.lecun_normal(), names)


def rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
  """Rotary position embedding of ``x [B, T, H, D]`` at ``positions [T]``."""
  half = x.shape[-1] // 2
  freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions.astype(jnp.float32)[:, None] * freq
  sin = jnp.sin(angle)[:, None, :]
  cos = jnp.cos(angle)[:, None, :]
  x1 = x[..., :half].astype(jnp.float32)
  x2 = x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
  return out.astype(x.dtype)


def attend(q, k, v, q_pos, k_pos):
  """Causal attention: query at ``q_pos`` sees keys at ``k_pos <= q_pos``."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k,
                      preferred_element_type=jnp.float32) * scale
  mask = k_pos[None, :] <= q_pos[:, None]
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class Block(nnx.Module):
  """Pre-norm transformer block: causal attention then a SwiGLU FFN."""

  def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
    d, h, hd, ff = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff
    common = dict(use_bias=False, dtype=cfg.dtype,
                  param_dtype=cfg.param_dtype, dot_general=project,
                  rngs=rngs)
    norm = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs,
                scale_init=nnx.with_partitioning(nnx.initializers.ones,
                                                 ("embed",)))
    self.rope_base = cfg.rope_base
    self.attn_norm = nnx.RMSNorm(d, **norm)
    self.q = nnx.LinearGeneral(d, (h, hd),
                               kernel_init=_init(("embed", "heads", "kv")),
                               **common)
    self.k = nnx.LinearGeneral(d, (h, hd),
                               kernel_init=_init(("embed", "heads", "kv")),
                               **common)
    self.v = nnx.LinearGeneral(d, (h, hd),
                               kernel_init=_init(("embed", "heads", "kv")),
                               **common)
    self.o = nnx.LinearGeneral((h, hd), d, axis=(-2, -1),
                               kernel_init=_init(("heads", "kv", "embed")),
                               **common)
    self.mlp_norm = nnx.RMSNorm(d, **norm)
    if cfg.moe is None:
      self.moe = nnx.data(None)
      self.gate = nnx.Linear(d, ff, kernel_init=_init(("embed", "mlp")),
                             **common)
      self.up = nnx.Linear(d, ff, kernel_init=_init(("embed", "mlp")),
                           **common)
      self.down = nnx.Linear(ff, d, kernel_init=_init(("mlp", "embed")),
                             **common)
    else:
      self.moe = sjnn.MoE(
          d, cfg.expert_hidden, cfg.experts, k=cfg.moe_k,
          router=cfg.moe_router, capacity_factor=None, use_bias=False,
          activation=jax.nn.silu, dtype=cfg.dtype,
          param_dtype=cfg.param_dtype, rngs=rngs)
    # Activation sparsity, off until set_activation_sparsity.
    self.act_kind = None
    self.topk_k = ()
    for group in GROUPS + ("gate_act",):
      setattr(self, f"thr_{group}", nnx.data(None))

  def _sparsify(self, group, x):
    if self.act_kind is None:
      return x
    # Inputs of o are [B, T, heads, head_dim]: one feature axis per token.
    flat = x.reshape(*x.shape[:2], -1)
    if self.act_kind == "topk":
      k = dict(self.topk_k).get(group)
      return x if k is None else sa.topk(flat, k).reshape(x.shape)
    t = getattr(self, f"thr_{group}")
    if t is None:
      return x
    t = t[...].astype(x.dtype).reshape(-1)
    return sa.threshold(flat, t if t.size > 1 else t[0]).reshape(x.shape)

  def __call__(self, x, *, q_pos, cache=None, pos=None, want_kv=False,
               collect=False):
    """One block.

    Args:
      x: ``[B, T, embed]``.
      q_pos: positions of the ``T`` tokens, ``int32 [T]``.
      cache: ``(k, v)`` of this layer, ``[B, S, heads, head_dim]`` each, to
        write the new keys and values into at ``pos`` and attend over; or
        None to attend within ``x`` (causally).
      pos: where ``x`` starts in the cache.
      want_kv: return this layer's keys and values (for a prefill).
      collect: return what each projection group received.

    Returns:
      ``(x, kv, inputs, aux)``: ``kv`` is the updated cache, the keys and
      values (``want_kv``) or None; ``inputs`` a dict by group (``collect``)
      or None; ``aux`` the :class:`sparsejax.nn.MoEAux` of an MoE block, else
      None. An MoE block's ``inputs`` stop at ``"mlp_in"``.
    """
    inputs = {}
    h = self._sparsify("attn_in", self.attn_norm(x))
    inputs["attn_in"] = h
    q = rope(self.q(h), q_pos, self.rope_base)
    k = rope(self.k(h), q_pos, self.rope_base)
    v = self.v(h)
    if cache is None:
      kv = (k, v) if want_kv else None
      a = attend(q, k, v, q_pos, q_pos)
    else:
      ck = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(
          cache[0].dtype), pos, axis=1)
      cv = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(
          cache[1].dtype), pos, axis=1)
      kv = (ck, cv)
      a = attend(q, ck.astype(q.dtype), cv.astype(q.dtype), q_pos,
                 jnp.arange(ck.shape[1]))
    a = self._sparsify("attn_out", a)
    inputs["attn_out"] = a
    x = x + self.o(a)
    h = self._sparsify("mlp_in", self.mlp_norm(x))
    inputs["mlp_in"] = h
    if self.moe is not None:
      y, aux = self.moe(h, return_aux=True)
      return x + y, kv, (inputs if collect else None), aux
    act = jax.nn.silu(self.gate(h))
    inputs["gate_act"] = act
    act = self._sparsify("gate_act", act)
    m = self._sparsify("mlp_down", act * self.up(h))
    inputs["mlp_down"] = m
    x = x + self.down(m)
    return x, kv, (inputs if collect else None), None


class KVCache(NamedTuple):
  """Keys and values of every layer, ``[layers, B, max_len, heads, hd]``."""

  k: jax.Array
  v: jax.Array


class TransformerLM(nnx.Module):
  """Decoder-only byte-level language model (see the module docstring).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> model = TransformerLM(LMConfig.tiny(), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 5), jnp.int32)).shape
    (2, 5, 256)
    >>> model.blocks.q.kernel.shape  # stacked: [layers, embed, heads, kv]
    (2, 32, 2, 16)
  """

  def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
    # The axis names are metadata for a later sharding (nnx.get_partition_spec
    # and logical rules); nothing is placed on a mesh while building.
    with nnx.use_eager_sharding(False):
      self._build(cfg, rngs)

  def _build(self, cfg, rngs):
    self.cfg = cfg
    self.embed = nnx.Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, rngs=rngs,
        embedding_init=nnx.with_partitioning(
            nnx.initializers.normal(1.0), ("vocab", "embed")))
    if cfg.stacked:
      @nnx.split_rngs(splits=cfg.num_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0,
                transform_metadata={nnx.PARTITION_NAME: "layers"})
      def make(rngs):
        return Block(cfg, rngs=rngs)
      self.blocks = make(rngs)
    else:
      self.blocks = nnx.List([Block(cfg, rngs=rngs)
                              for _ in range(cfg.num_layers)])
    self.final_norm = nnx.RMSNorm(
        cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        rngs=rngs, scale_init=nnx.with_partitioning(nnx.initializers.ones,
                                                    ("embed",)))
    self.head = nnx.Linear(
        cfg.d_model, cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, dot_general=project, rngs=rngs,
        kernel_init=_init(("embed", "vocab")))

  def layers(self):
    """The blocks as a list (one per layer; only when not stacked)."""
    return list(self.blocks)

  def run(self, tokens, *, q_pos, cache=None, pos=None, want_kv=False,
          collect=False):
    """Logits, the new cache (or keys/values) and the collected inputs."""
    return self.run_with_aux(tokens, q_pos=q_pos, cache=cache, pos=pos,
                             want_kv=want_kv, collect=collect)[:3]

  def run_with_aux(self, tokens, *, q_pos, cache=None, pos=None,
                   want_kv=False, collect=False):
    """:meth:`run` and the MoE layers' aux (``[layers, ...]`` or None).

    Under ``nnx.scan`` the aux of every layer is a scan output (stacked
    like the caches); with a list of blocks the same stacking is done here.
    """
    x = self.embed(tokens)
    kw = dict(q_pos=q_pos, pos=pos, want_kv=want_kv, collect=collect)
    if self.cfg.stacked:
      @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=(nnx.Carry, 0),
                transform_metadata={nnx.PARTITION_NAME: "layers"})
      def body(x, block, layer_cache):
        x, kv, inputs, aux = block(x, cache=layer_cache, **kw)
        return x, (kv, inputs, aux)
      layer_caches = None if cache is None else (cache.k, cache.v)
      x, (kv, inputs, aux) = body(x, self.blocks, layer_caches)
    else:
      kvs, per_layer, auxes = [], [], []
      for i, block in enumerate(self.blocks):
        layer_cache = None if cache is None else (cache.k[i], cache.v[i])
        x, kv_i, inputs_i, aux_i = block(x, cache=layer_cache, **kw)
        kvs.append(kv_i)
        per_layer.append(inputs_i)
        auxes.append(aux_i)
      stack = lambda *xs: jnp.stack(xs)  # noqa: E731
      kv = jax.tree.map(stack, *kvs) if kvs[0] is not None else None
      inputs = jax.tree.map(stack, *per_layer) if collect else None
      aux = jax.tree.map(stack, *auxes) if auxes[0] is not None else None
    logits = self.head(self.final_norm(x))
    if kv is not None:
      kv = KVCache(*kv)
    return logits, kv, inputs, aux

  def __call__(self, tokens, *, collect=False, return_aux=False):
    """Logits ``[B, T, vocab]``, then the per-layer inputs (``collect``),
    then the MoE aux stacked over layers (``return_aux``; None if dense)."""
    q_pos = jnp.arange(tokens.shape[1])
    logits, _, inputs, aux = self.run_with_aux(tokens, q_pos=q_pos,
                                               collect=collect)
    if not (collect or return_aux):
      return logits
    return ((logits,) + ((inputs,) if collect else ())
            + ((aux,) if return_aux else ()))


def block_list(model: TransformerLM) -> list[Block]:
  """The model's blocks as separate modules (views of a stacked model)."""
  if not model.cfg.stacked:
    return list(model.blocks)
  graphdef, state = nnx.split(model.blocks)
  return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
          for i in range(model.cfg.num_layers)]


# ---------------------------------------------------------------- loss


def loss_and_bits(logits, targets):
  """Mean cross-entropy in nats and in bits per byte (one byte per token)."""
  ce = jnp.mean(
      -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)),
                           targets[..., None], -1))
  return ce, ce / jnp.log(2.0)


def moe_aux_loss(aux) -> jax.Array:
  """The auxiliary loss added to the cross-entropy of an MoE model.

  ``LOAD_BALANCING_COEF`` times the load-balancing loss plus
  ``Z_LOSS_COEF`` times the router z-loss, each summed over layers (``aux``
  is the stacked :class:`sparsejax.nn.MoEAux` of ``model(...,
  return_aux=True)``); 0 for a dense model (``aux`` None).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> model = TransformerLM(LMConfig.tiny(moe="top2", experts=4),
    ...                       rngs=nnx.Rngs(0))
    >>> logits, aux = model(jnp.zeros((2, 5), jnp.int32), return_aux=True)
    >>> aux.expert_load.shape  # [layers, experts]
    (2, 4)
    >>> bool(moe_aux_loss(aux) > 0)
    True
  """
  if aux is None:
    return jnp.zeros((), jnp.float32)
  return (LOAD_BALANCING_COEF * jnp.sum(aux.load_balancing)
          + Z_LOSS_COEF * jnp.sum(aux.z_loss))


def ffn_param_counts(cfg: LMConfig) -> tuple[int, int]:
  """``(active, total)`` feed-forward weights per layer, from the sizes.

  Dense SwiGLU: ``3 d d_ff`` both. MoE: ``k`` experts of ``2 d h`` active
  (expert choice: ``c = k`` on average), ``experts`` of them in all, plus
  the router's ``d * experts`` in both.
  """
  d = cfg.d_model
  if cfg.moe is None:
    return 3 * d * cfg.d_ff, 3 * d * cfg.d_ff
  expert = 2 * d * cfg.expert_hidden
  router = d * cfg.experts
  return cfg.moe_k * expert + router, cfg.experts * expert + router


# ---------------------------------------------------------------- activation
# sparsity


def set_activation_sparsity(model: TransformerLM, kind: str | None, *,
                            thresholds: dict | None = None,
                            topk_k: dict | None = None) -> None:
  """Switches activation sparsity on (or off, ``kind=None``), in place.

  Args:
    model: the model.
    kind: ``"threshold"`` (TEAL, WINA: zero the entries of each group's
      input whose magnitude is at most its threshold), ``"cats"`` (the same
      on ``silu(gate)``, group ``"gate_act"``), ``"topk"`` (keep the ``k``
      largest magnitudes per token) or None.
    thresholds: by group, an array ``[layers, *feature_shape]`` (or
      ``[layers]``) of thresholds; groups left out stay dense.
    topk_k: by group, the ``k`` kept per token (same for every layer).
  """
  if kind is not None and kind not in ACT_KINDS:
    raise ValueError(f"kind: expected one of {ACT_KINDS} or None, got "
                     f"{kind!r}")
  thresholds = thresholds or {}
  groups = GROUPS + ("gate_act",)
  unknown = set(thresholds) | set(topk_k or {})
  unknown -= set(groups)
  if unknown:
    raise ValueError(f"thresholds/topk_k: unknown groups {sorted(unknown)}; "
                     f"expected some of {groups}")

  def apply(block, layer):
    block.act_kind = kind
    block.topk_k = tuple(sorted((topk_k or {}).items()))
    for group in groups:
      t = thresholds.get(group)
      if t is not None:
        t = jnp.asarray(t)
        t = t if layer is None else t[layer]
      setattr(block, f"thr_{group}",
              nnx.data(None) if t is None else ActThreshold(t))

  if model.cfg.stacked:
    apply(model.blocks, None)
  else:
    for i, block in enumerate(model.blocks):
      apply(block, i)


# ---------------------------------------------------------------- decoding


def prefill(model: TransformerLM, tokens: jax.Array, *,
            max_len: int | None = None) -> tuple[jax.Array, KVCache]:
  """Runs the prompt; returns its logits and a cache of ``max_len`` slots.

  Args:
    model: the model.
    tokens: ``int32 [B, T]``.
    max_len: cache length (default ``cfg.seq_len``); at least ``T``.

  Returns:
    ``(logits [B, T, vocab], cache)``; the cache holds the prompt's keys and
    values at positions ``0 .. T-1`` and zeros after.
  """
  b, t = tokens.shape
  max_len = model.cfg.seq_len if max_len is None else max_len
  if t > max_len:
    raise ValueError(f"tokens: prompt of {t} tokens exceeds max_len="
                     f"{max_len}")
  logits, kv, _ = model.run(tokens, q_pos=jnp.arange(t), want_kv=True)
  pad = ((0, 0), (0, 0), (0, max_len - t), (0, 0), (0, 0))
  dtype = jnp.dtype(model.cfg.dtype)
  cache = KVCache(jnp.pad(kv.k.astype(dtype), pad),
                  jnp.pad(kv.v.astype(dtype), pad))
  return logits, cache


def decode_step(model: TransformerLM, token: jax.Array, cache: KVCache,
                pos) -> tuple[jax.Array, KVCache]:
  """One token ``[B]`` at position ``pos``: its logits ``[B, vocab]``."""
  pos = jnp.asarray(pos, jnp.int32)
  logits, cache, _ = model.run(token[:, None], q_pos=pos[None], cache=cache,
                               pos=pos)
  return logits[:, 0], cache


def _pick(logits, key, temperature):
  if temperature == 0:
    return jnp.argmax(logits, -1).astype(jnp.int32)
  return jax.random.categorical(key, logits.astype(jnp.float32)
                                / temperature).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _prefill_jit(graphdef, state, tokens, key, max_len, temperature, matmul):
  del matmul  # dense prefill (TEAL sparsifies decoding only)
  model = nnx.merge(graphdef, state)
  logits, cache = prefill(model, tokens, max_len=max_len)
  return _pick(logits[:, -1], key, temperature), cache


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8), donate_argnums=(3,))
def _decode_jit(graphdef, state, token, cache, pos, key, steps, temperature,
                matmul):
  def body(i, carry):
    token, cache, out, state = carry
    # NNX variables may not cross trace levels: the weights ride in the
    # carry (unchanged) and the model is merged inside the loop body.
    model = nnx.merge(graphdef, state)
    with use_matmul(matmul):
      logits, cache = decode_step(model, token, cache, pos + i)
    nxt = _pick(logits, jax.random.fold_in(key, pos + i),
                temperature)
    return nxt, cache, out.at[:, i].set(token), state

  out = jnp.zeros((token.shape[0], steps), jnp.int32)
  token, cache, out, _ = jax.lax.fori_loop(0, steps, body,
                                           (token, cache, out, state))
  return out, token, cache


def generate(model: TransformerLM, prompt: jax.Array, *, steps: int,
             temperature: float = 0.0, seed: int = 0,
             matmul: MatmulFn | None = None) -> jax.Array:
  """Greedy (``temperature=0``) or sampled continuation of ``prompt``.

  The prompt runs through a dense prefill; the ``steps`` new tokens are
  produced by one jitted ``fori_loop`` of :func:`decode_step` whose cache
  argument is donated (updated in place). ``matmul`` (hashable, e.g.
  ``pallas_kernels.sparse_input_matmul``) is used for the projections of the
  decode steps.

  Args:
    model: the model.
    prompt: ``int32 [B, T]`` with ``T >= 1``.
    steps: new tokens to produce; ``T + steps <= cfg.seq_len`` is not
      required, but rotary positions beyond the training length extrapolate.
    temperature: 0 for greedy, else the softmax temperature.
    seed: sampling seed.
    matmul: the decode steps' matmul function (default ``x @ w``).

  Returns:
    ``int32 [B, steps]``: the new tokens.
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError(f"prompt: expected [batch, tokens>=1], got shape "
                     f"{prompt.shape}")
  graphdef, state = nnx.split(model)
  max_len = prompt.shape[1] + steps
  key = jax.random.key(seed)
  first, cache = _prefill_jit(graphdef, state, prompt, key, max_len,
                              float(temperature), matmul)
  if steps == 0:
    return jnp.zeros((prompt.shape[0], 0), jnp.int32)
  out, _, _ = _decode_jit(graphdef, state, first, cache,
                          jnp.int32(prompt.shape[1]), key, steps,
                          float(temperature), matmul)
  return out

