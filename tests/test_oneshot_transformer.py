# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""prune_model on transformers: attention projections, scanned stacks, jit."""

from flax import linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj

D, HEADS, FF, VOCAB, LAYERS, T = 16, 2, 32, 32, 3, 8
HD = D // HEADS
PROJECTIONS = ("attn/query", "attn/key", "attn/value", "attn/out", "gate",
               "up", "down")


class Block(nnx.Module):
  """Pre-norm block: causal nnx.MultiHeadAttention and a SwiGLU FFN."""

  def __init__(self, rngs):
    self.attn_norm = nnx.RMSNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=D,
                                       decode=False, rngs=rngs)
    self.mlp_norm = nnx.RMSNorm(D, rngs=rngs)
    self.gate = nnx.Linear(D, FF, use_bias=False, rngs=rngs)
    self.up = nnx.Linear(D, FF, use_bias=False, rngs=rngs)
    self.down = nnx.Linear(FF, D, use_bias=False, rngs=rngs)

  def __call__(self, x):
    mask = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + self.attn(self.attn_norm(x), mask=mask)
    h = self.mlp_norm(x)
    return x + self.down(jax.nn.silu(self.gate(h)) * self.up(h))


class Decoder(nnx.Module):
  """Embed, LAYERS blocks (a list, or nnx.vmap-stacked under nnx.scan), head."""

  def __init__(self, stacked, rngs):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.stacked = stacked
    if stacked:
      @nnx.split_rngs(splits=LAYERS)
      @nnx.vmap(in_axes=(0,), out_axes=0,
                transform_metadata={nnx.PARTITION_NAME: "layers"})
      def make(rngs):
        return Block(rngs)
      self.blocks = make(rngs)
    else:
      self.blocks = nnx.List([Block(rngs) for _ in range(LAYERS)])
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, VOCAB, use_bias=False, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    if self.stacked:
      @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry,
                transform_metadata={nnx.PARTITION_NAME: "layers"})
      def body(x, block):
        return block(x)
      x = body(x, self.blocks)
    else:
      for block in self.blocks:
        x = block(x)
    return self.head(self.norm(x))


class JitDecoder(Decoder):

  @nnx.jit
  def __call__(self, tokens):
    return super().__call__(tokens)


def _models(cls=Decoder):
  """A scanned stack and its unstacked twin with the same weights."""
  stacked = cls(True, nnx.Rngs(0))
  twin = Decoder(False, nnx.Rngs(1))
  graphdef, state = nnx.split(stacked.blocks)
  twin.blocks = nnx.List([
      nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
      for i in range(LAYERS)])
  for name in ("embed", "norm", "head"):
    nnx.update(getattr(twin, name), nnx.state(getattr(stacked, name)))
  return stacked, twin


def _batches():
  keys = jax.random.split(jax.random.key(5), 2)
  return [jax.random.randint(k, (4, T), 0, VOCAB) for k in keys]


def _views(model, path):
  """The matrix views of a kernel: one [fan_in, fan_out] per slice."""
  specs = sj.leaf_specs(model)
  node, kernel = specs, model
  for part in path.split("/"):
    node = node[part]
    kernel = kernel[int(part)] if part.isdigit() else getattr(kernel, part)
  view = node["kernel"].split(kernel.kernel[...])
  return [np.asarray(v) for v in (view if isinstance(view, tuple)
                                  else (view,))]


def _np_keep_per_column(scores, keep):
  out = np.zeros(scores.shape, bool)
  for j in range(scores.shape[1]):
    out[np.argsort(-scores[:, j], kind="stable")[:keep], j] = True
  return out


def _rms(x, scale, eps=1e-6):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * scale


def test_wanda_attention_per_output_against_numpy():
  _, model = _models()
  tokens = np.concatenate([np.asarray(b) for b in _batches()])
  block = model.blocks[0]
  embed = np.asarray(model.embed.embedding[...], np.float64)
  flat = _rms(embed[tokens], np.asarray(block.attn_norm.scale[...]))
  flat = flat.reshape(-1, D)
  dense = {n: _views(model, f"blocks/0/attn/{n}")[0]
           for n in ("query", "key", "value", "out")}
  b = {n: np.asarray(getattr(block.attn, n).bias[...]).reshape(-1)
       for n in ("query", "key", "value")}
  result = sj.prune_model(model, _batches(), method="wanda", sparsity=0.5)
  assert len(result.layers) == LAYERS * len(PROJECTIONS) + 1
  assert result.layers[:5] == ("blocks/0/attn/query", "blocks/0/attn/key",
                               "blocks/0/attn/value", "blocks/0/attn/out",
                               "blocks/0/gate")
  # Every output unit of every projection keeps half of its fan-in.
  for i in range(LAYERS):
    for proj in PROJECTIONS:
      (view,) = _views(model, f"blocks/{i}/{proj}")
      assert ((view != 0).sum(0) == view.shape[0] // 2).all(), (i, proj)
  out_mask = np.asarray(result.masks["blocks"][0]["attn"]["out"]["kernel"])
  assert out_mask.shape == (HEADS, HD, D)
  assert result.masks["blocks"][0]["attn"]["query"]["bias"] is None
  # q, k, v: inputs are the normed embeddings.
  norms = np.linalg.norm(flat, axis=0)
  pruned = {}
  for n in ("query", "key", "value"):
    expected = _np_keep_per_column(np.abs(dense[n]) * norms[:, None], D // 2)
    pruned[n] = _views(model, f"blocks/0/attn/{n}")[0]
    np.testing.assert_array_equal(pruned[n] != 0, expected)
  # out: the attention of the pruned q, k, v, heads and head_dim flattened.
  shape = tokens.shape + (HEADS, HD)
  qh = (flat @ pruned["query"] + b["query"]).reshape(shape) / np.sqrt(HD)
  kh = (flat @ pruned["key"] + b["key"]).reshape(shape)
  vh = (flat @ pruned["value"] + b["value"]).reshape(shape)
  logits = np.einsum("bqhd,bkhd->bhqk", qh, kh)
  logits = np.where(np.tril(np.ones((T, T), bool)), logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out_in = np.einsum("bhqk,bkhd->bqhd", weights, vh).reshape(-1, HEADS * HD)
  scores = np.abs(dense["out"]) * np.linalg.norm(out_in, axis=0)[:, None]
  expected = _np_keep_per_column(scores, HEADS * HD // 2)
  np.testing.assert_array_equal(
      _views(model, "blocks/0/attn/out")[0] != 0, expected)


def _slices(model, proj):
  return _views(model, f"blocks/{proj}")


def test_scanned_stack_prunes_every_slice_like_its_unstacked_twin():
  stacked, twin = _models()
  got = sj.prune_model(stacked, _batches(), method="wanda", sparsity=0.5)
  want = sj.prune_model(twin, _batches(), method="wanda", sparsity=0.5)
  assert got.layers == tuple(
      f"blocks/{p}/{i}" for i in range(LAYERS) for p in PROJECTIONS) + (
          "head",)
  assert len(want.layers) == len(got.layers)
  for proj in PROJECTIONS:
    views = _slices(stacked, proj)
    assert len(views) == LAYERS
    for i, view in enumerate(views):
      # Each slice: every output unit at its target, and the same weights
      # as the unstacked layer pruned with its own inputs.
      assert ((view != 0).sum(0) == view.shape[0] // 2).all(), (proj, i)
      (twin_view,) = _views(twin, f"blocks/{i}/{proj}")
      np.testing.assert_array_equal(view, twin_view)
  mask = got.masks["blocks"]["attn"]["query"]["kernel"]
  assert mask.shape == (LAYERS, D, HEADS, HD)
  assert got.masks["blocks"]["attn_norm"]["scale"] is None


def test_sparsegpt_on_a_jitted_scanned_stack():
  stacked, twin = _models(JitDecoder)
  stacked(_batches()[0])  # compiled before pruning: must be traced again
  kw = dict(method="sparsegpt", sparsity=0.5, blocksize=8, per_output=True)
  got = sj.prune_model(stacked, _batches(), **kw)
  sj.prune_model(twin, _batches(), **kw)
  assert len(got.layers) == LAYERS * len(PROJECTIONS) + 1
  for proj in PROJECTIONS:
    for i, view in enumerate(_slices(stacked, proj)):
      assert ((view != 0).sum(0) == view.shape[0] // 2).all(), (proj, i)
      (twin_view,) = _views(twin, f"blocks/{i}/{proj}")
      np.testing.assert_allclose(view, twin_view, rtol=2e-4, atol=2e-5)
  # The reference selection (over each block): every slice at its budget.
  stacked, _ = _models(JitDecoder)
  sj.prune_model(stacked, _batches(), method="sparsegpt", sparsity=0.75,
                 blocksize=8)
  for proj in PROJECTIONS:
    for view in _slices(stacked, proj):
      assert (view != 0).sum() == view.size // 4, proj


def test_jitted_unstacked_model_compiled_before():
  model = JitDecoder(False, nnx.Rngs(0))
  dense = model(_batches()[0])
  result = sj.prune_model(model, _batches(), method="wanda", sparsity=0.5)
  assert len(result.layers) == LAYERS * len(PROJECTIONS) + 1
  (view,) = _views(model, "blocks/2/attn/out")
  assert ((view != 0).sum(0) == view.shape[0] // 2).all()
  # The compiled model sees the pruned weights.
  assert not np.allclose(model(_batches()[0]), dense)


def test_n_m_along_the_contraction_axis_of_every_slice():
  stacked, _ = _models(JitDecoder)
  for method in ("wanda", "sparsegpt", "magnitude"):
    sj.prune_model(stacked, _batches(), method=method, sparsity=(2, 4),
                   blocksize=8)
    for proj in PROJECTIONS:
      for view in _slices(stacked, proj):
        groups = (view != 0).reshape(view.shape[0] // 4, 4, -1).sum(1)
        assert (groups == 2).all(), (method, proj)


def test_sparsegpt_per_output_keeps_each_outputs_share_of_every_block():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((32, 6)).astype(np.float32)
  x = (rng.standard_normal((64, 32)) * rng.lognormal(0, 1, 32)).astype(
      np.float32)
  new, mask = sj.sparsegpt(w, x, 0.75, blocksize=8, per_output=True)
  assert (np.asarray(mask).reshape(4, 8, 6).sum(1) == 2).all()
  np.testing.assert_array_equal(np.asarray(new) != 0, mask)
  # The reference selection differs: over the whole block.
  _, ref = sj.sparsegpt(w, x, 0.75, blocksize=8)
  assert (np.asarray(ref).reshape(4, -1).sum(1) == 12).all()
  assert not (np.asarray(ref).reshape(4, 8, 6).sum(1) == 2).all()


class _EinsumModel(nnx.Module):

  def __init__(self, rngs):
    self.proj = nnx.Einsum("btd,dnh->btnh", (D, HEADS, HD), rngs=rngs)
    self.out = nnx.Einsum("btnh,nhd->btd", (HEADS, HD, D), rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.proj(x)))


def test_einsum_layers_on_their_matrix_view():
  model = _EinsumModel(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, T, D))
  dense = np.asarray(model.proj.kernel[...]).reshape(D, -1)
  result = sj.prune_model(model, x, method="wanda", sparsity=0.75)
  assert result.layers == ("proj", "out")
  scores = np.abs(dense) * np.linalg.norm(np.asarray(x).reshape(-1, D),
                                          axis=0)[:, None]
  np.testing.assert_array_equal(
      np.asarray(model.proj.kernel[...]).reshape(D, -1) != 0,
      _np_keep_per_column(scores, D // 4))
  out = np.asarray(model.out.kernel[...]).reshape(HEADS * HD, D)
  assert ((out != 0).sum(0) == HEADS * HD // 4).all()


def test_refusals_are_errors():
  batch = _batches()[0]
  with pytest.raises(ValueError, match="selects no"):
    sj.prune_model(Decoder(False, nnx.Rngs(0)), batch, method="wanda",
                   sparsity=0.5, where="^nothing")
  conv = nnx.Sequential(nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0)),
                        lambda y: y.reshape(y.shape[0], -1),
                        nnx.Linear(4 * 8 * 8, 2, rngs=nnx.Rngs(1)))
  images = jnp.ones((2, 8, 8, 3))
  with pytest.raises(ValueError, match=r"'layers/0' \(Conv: kernel\)"):
    sj.prune_model(conv, images, method="wanda", sparsity=0.5)
  result = sj.prune_model(conv, images, method="wanda", sparsity=0.5,
                          where="layers/2")
  assert result.layers == ("layers/2",)
  batched = nnx.LinearGeneral(D, 4, batch_axis={0: 2}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="batch_axis"):
    sj.prune_model(batched, jnp.ones((2, 3, D)), method="wanda",
                   sparsity=0.5)

  class Unused(nnx.Module):

    def __init__(self, rngs):
      self.used = nnx.Linear(D, D, rngs=rngs)
      self.decode_only = nnx.Linear(D, D, rngs=rngs)

    def __call__(self, x):
      return self.used(x)

  with pytest.raises(ValueError, match="decode_only.*not called"):
    sj.prune_model(Unused(nnx.Rngs(0)), jnp.ones((4, D)), method="wanda",
                   sparsity=0.5)
  einsum = nnx.Einsum("btd,dh->bth", (D, 4), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="other than its own"):
    sj.prune_model(_CallTimeEinsum(einsum), jnp.ones((2, 3, D)),
                   method="wanda", sparsity=0.5)

  class LinenScan(nn.Module):

    @nn.compact
    def __call__(self, x):
      body = nn.scan(lambda mdl, c, _: (nn.Dense(D)(c), None),
                     variable_axes={"params": 0}, split_rngs={"params": True},
                     length=2)
      return body(self, x, None)[0]

  module = LinenScan()
  variables = module.init(jax.random.key(0), jnp.ones((2, D)))
  with pytest.raises(ValueError, match="inside a JAX transformation"):
    sj.prune_model(module, jnp.ones((2, D)), variables=variables,
                   method="wanda", sparsity=0.5)


class _CallTimeEinsum(nnx.Module):
  """Calls an einsum with an einsum string of its own."""

  def __init__(self, layer):
    self.layer = layer

  def __call__(self, x):
    return self.layer(x.transpose(1, 0, 2), "tbd,dh->tbh")
