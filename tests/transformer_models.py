# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Small models of the kinds users train, shared by the leaf-spec tests.

An NNX decoder (Embed, MultiHeadAttention with 3-D kernels, RMSNorm and
LayerNorm, SwiGLU FFN, head), the same blocks stacked with ``nnx.vmap`` and
run with ``nnx.scan`` (with and without logical-axis metadata), a CNN, and a
model with a sparsejax MoE layer.
"""

import jax
import jax.numpy as jnp
from flax import nnx

import sparsejax as sj

D, HEADS, FF, VOCAB = 16, 2, 32, 40


class Block(nnx.Module):
  """A pre-norm transformer block: attention and a SwiGLU FFN."""

  def __init__(self, rngs: nnx.Rngs, *, partitioned: bool = False):
    init = nnx.initializers.lecun_normal()

    def kinit(*names):
      return nnx.with_partitioning(init, names) if partitioned else init

    self.norm1 = nnx.RMSNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=HEADS, in_features=D, decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(D, rngs=rngs)
    self.gate = nnx.Linear(D, FF, use_bias=False,
                           kernel_init=kinit("embed", "mlp"), rngs=rngs)
    self.up = nnx.Linear(D, FF, use_bias=False,
                         kernel_init=kinit("embed", "mlp"), rngs=rngs)
    self.down = nnx.Linear(FF, D, kernel_init=kinit("mlp", "embed"),
                           rngs=rngs)

  def __call__(self, x):
    h = self.norm1(x)
    x = x + self.attn(h, h, h)
    h = self.norm2(x)
    return x + self.down(nnx.silu(self.gate(h)) * self.up(h))


class Decoder(nnx.Module):
  """Embed, ``layers`` blocks (a list), a final norm and an LM head."""

  def __init__(self, layers: int = 2, *, seed: int = 0):
    rngs = nnx.Rngs(seed)
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.blocks = nnx.List([Block(rngs) for _ in range(layers)])
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, VOCAB, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x))


class StackedDecoder(nnx.Module):
  """The same blocks stacked with ``nnx.vmap``, run with ``nnx.scan``."""

  def __init__(self, layers: int = 3, *, seed: int = 0,
               metadata: bool = True):
    rngs = nnx.Rngs(seed)
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    kwargs = ({"transform_metadata": {nnx.PARTITION_NAME: "layers"}}
              if metadata else {})

    @nnx.vmap(in_axes=0, out_axes=0, **kwargs)
    def make(key):
      return Block(nnx.Rngs(key), partitioned=metadata)

    with nnx.use_eager_sharding(False):
      self.layers = make(jax.random.split(jax.random.key(seed + 1), layers))
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, VOCAB, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def run(block, x):
      return block(x)

    return self.head(self.norm(run(self.layers, x)))


class CNN(nnx.Module):
  def __init__(self, seed: int = 0):
    rngs = nnx.Rngs(seed)
    self.conv1 = nnx.Conv(4, 8, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, (3, 3), rngs=rngs)
    self.out = nnx.Linear(16, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.conv1(x))
    x = nnx.relu(self.conv2(x))
    return self.out(x.mean(axis=(1, 2)))


class MoEModel(nnx.Module):
  def __init__(self, seed: int = 0):
    rngs = nnx.Rngs(seed)
    self.moe = sj.nn.MoE(D, FF, num_experts=4, k=2, rngs=rngs)
    self.head = nnx.Linear(D, 4, rngs=rngs)

  def __call__(self, x):
    y = self.moe(x)
    y = y[0] if isinstance(y, tuple) else y
    return self.head(y)


def params_of(model) -> dict:
  """The model's ``nnx.Param`` values as a plain nested dict."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def with_layer_scales(params: dict, scales) -> dict:
  """Multiplies layer ``i`` of every stacked leaf by ``scales[i]``."""
  s = jnp.asarray(scales, jnp.float32)

  def one(x):
    return x * s.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)

  return {**params, "layers": jax.tree.map(one, params["layers"])}
