# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Leaf specs on the models users train: decoders, scanned stacks, CNNs, MoE.

Oracles are independent: RigL's ERK written out in NumPy on the ``fan_in x
fan_out`` matrices, exact counts per layer slice, N:M groups counted along
the contraction axis by reshaping, and the unstacked twin of a stacked model.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sparsejax as sj
import transformer_models as tm
import transform_cases
from transform_cases import CASES as _CASES

L = 3


def _flat(tree):
  return {sj_path: leaf for sj_path, leaf in _paths(tree)}


def _paths(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: x is None or isinstance(x, sj.LeafSpec))
  for p, leaf in flat:
    yield "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p), leaf


@functools.cache
def _stacked(metadata=True):
  return tm.StackedDecoder(L, metadata=metadata)


def _matrix(x, spec):
  """Independent matrix view: ``[slices, fan_in, fan_out]`` by transpose."""
  x = np.asarray(x)
  order = spec.stack_axes + spec.in_axes + spec.out_axes
  y = np.transpose(x, order)
  s = int(np.prod([x.shape[a] for a in spec.stack_axes]))
  fi = int(np.prod([x.shape[a] for a in spec.in_axes]))
  return y.reshape(s, fi, -1)


def rigl_erk(shapes, sparsity):
  """google-research/rigl ``get_sparsities_erdos_renyi`` (ERK), in NumPy."""
  dense = set()
  while True:
    divisor, rhs, raw = 0.0, 0.0, {}
    for i, shape in enumerate(shapes):
      n = float(np.prod(shape))
      if i in dense:
        rhs -= n * sparsity
      else:
        rhs += n * (1 - sparsity)
        raw[i] = np.sum(shape) / np.prod(shape)
        divisor += raw[i] * n
    eps = rhs / divisor
    top = max(raw.values())
    if top * eps > 1:
      dense |= {i for i, r in raw.items() if r == top}
    else:
      break
  return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]


def test_default_selection_decoder_keeps_embedding_bias_norms_dense():
  model = tm.Decoder()
  params = tm.params_of(model)
  specs = _flat(sj.leaf_specs(model))
  tx = sj.magnitude_pruning(optax.adam(1e-3), sparsity=0.5)  # no config
  masks = _flat(sj.get_masks(tx.init(params)))
  for path, spec in specs.items():
    name = path.split("/")[-1]
    assert (spec is None) == (name in ("embedding", "bias", "scale")), path
    assert (masks[path] is None) == (spec is None), path
  assert specs["blocks/0/attn/query/kernel"] == sj.LeafSpec((0,), (1, 2))
  assert specs["blocks/0/attn/out/kernel"] == sj.LeafSpec((0, 1), (2,))


def test_erk_on_attention_matches_rigl_on_matrices():
  model = tm.Decoder()
  params = tm.params_of(model)
  got = _flat(sj.distributions.erk(0.8, specs=model)(params))
  specs = _flat(sj.leaf_specs(model))
  leaves = _flat(params)
  paths = [p for p, s in specs.items() if s is not None]
  shapes = [_matrix(leaves[p], specs[p]).shape[1:] for p in paths]
  want = rigl_erk(shapes, 0.8)
  for p, density in zip(paths, want):
    assert got[p] == pytest.approx(1 - density, abs=1e-6), p
  # The raw shape (d + heads + head_dim) would give a different budget.
  assert rigl_erk([(16, 2, 8), (16, 32)], 0.8)[0] != pytest.approx(
      rigl_erk([(16, 16), (16, 32)], 0.8)[0])


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_stacked_budgets_equal_unstacked_twin(distribution):
  stacked, flat = _stacked(), tm.Decoder(L)
  tx = functools.partial(sj.static_sparse, optax.sgd(0.1), sparsity=0.8,
                         distribution=distribution)
  ms = _flat(sj.get_masks(tx(specs=stacked).init(tm.params_of(stacked))))
  mf = _flat(sj.get_masks(tx(specs=flat).init(tm.params_of(flat))))
  for path, mask in ms.items():
    if not path.startswith("layers/"):
      assert (mask is None) == (mf[path] is None)
      continue
    rest = path[len("layers/"):]
    for i in range(L):
      twin = mf[f"blocks/{i}/{rest}"]
      if mask is None:
        assert twin is None, path
      else:
        assert int(np.asarray(mask[i]).sum()) == int(np.asarray(twin).sum())


def _slice_nnz(masks, specs):
  out = {}
  for path, spec in specs.items():
    if spec is None:
      continue
    m = _matrix(masks[path], spec) != 0
    out[path] = m.reshape(m.shape[0], -1).sum(1)
  return out


def test_magnitude_pruning_exact_per_layer_with_different_scales():
  model = _stacked()
  params = tm.with_layer_scales(tm.params_of(model), [10.0, 1.0, 0.1])
  specs = _flat(sj.leaf_specs(model))
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, specs=model)
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state,
                             params)
  new = optax.apply_updates(params, updates)
  for path, nnz in _slice_nnz(_flat(new), specs).items():
    per = _matrix(_flat(params)[path], specs[path])[0].size
    np.testing.assert_array_equal(nnz, [round(per * 0.5)] * len(nnz),
                                  err_msg=path)
  # Without specs or metadata a stacked kernel cannot be told from a
  # convolution kernel: an error, not one budget for the whole stack.
  bare = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5)
  with pytest.raises(ValueError, match=r"layers/.*stacked layers"):
    bare.init(params)
  with pytest.raises(ValueError, match=r"stacked layers"):
    sj.leaf_specs(params)
  told = sj.leaf_specs(params, stack_axes={"^layers/": 0})
  assert _flat(told)["layers/up/kernel"] == sj.LeafSpec((1,), (2,), (0,))


def test_rigl_stays_exact_per_layer_through_updates():
  model = _stacked()
  params = tm.with_layer_scales(tm.params_of(model), [10.0, 1.0, 0.1])
  specs = _flat(sj.leaf_specs(model))
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.9, end_step=100, update_every=1,
               distribution="uniform", specs=model)
  state = tx.init(params)
  want = _slice_nnz(_flat(sj.get_masks(state)), specs)
  step = jax.jit(tx.update)
  key = jax.random.key(0)
  for _ in range(4):
    key, sub = jax.random.split(key)
    grads = optax.tree.random_like(sub, params)
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    got = _slice_nnz(_flat(sj.get_masks(state)), specs)
    for path in want:
      np.testing.assert_array_equal(got[path], want[path], err_msg=path)
      size = _matrix(_flat(params)[path], specs[path])[0].size
      np.testing.assert_array_equal(got[path], round(0.1 * size))


def _groups_along_contraction(mask, spec, m):
  """Kept counts of groups of ``m`` along the innermost contraction axis."""
  x = np.asarray(mask)
  axis = spec.in_axes[-1]
  x = np.moveaxis(x, axis, -1)
  return x.reshape(x.shape[:-1] + (x.shape[-1] // m, m)).sum(-1)


@pytest.mark.parametrize("make", [tm.Decoder, tm.CNN, _stacked],
                         ids=["decoder", "cnn", "stacked"])
def test_nm_groups_run_along_the_contraction_axis(make):
  model = make()
  params = tm.params_of(model)
  specs = _flat(sj.leaf_specs(model))
  masks = _flat(sj.masks.n_m(params, 2, 4, specs=model))
  tx = sj.nm_sparse(optax.sgd(0.1), n=2, m=4, specs=model)
  tx_masks = _flat(sj.get_masks(tx.init(params)))
  checked = 0
  for path, spec in specs.items():
    if spec is None:
      assert masks[path] is None and tx_masks[path] is None
      continue
    counts = _groups_along_contraction(masks[path], spec, 4)
    assert (counts == 2).all(), path
    np.testing.assert_array_equal(np.asarray(masks[path]),
                                  np.asarray(tx_masks[path]))
    checked += 1
  assert checked >= 3


def test_blocks_are_whole_tiles_of_the_matrix_view():
  model = tm.Decoder()
  params = tm.params_of(model)
  specs = _flat(sj.leaf_specs(model))
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, granularity=(4, 8),
                            specs=model)
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state,
                             params)
  masks = _flat(sj.get_masks(state))
  for path, spec in specs.items():
    if spec is None:
      continue
    m = _matrix(masks[path], spec)[0]
    tiles = m.reshape(m.shape[0] // 4, 4, m.shape[1] // 8, 8)
    per_tile = tiles.sum((1, 3))
    assert set(np.unique(per_tile)) <= {0, 32}, path
    assert per_tile.sum() == m.size // 2, path


def test_srigl_constant_fan_in_on_3d_and_stacked_kernels():
  model = _stacked()
  params = tm.params_of(model)
  specs = _flat(sj.leaf_specs(model))
  tx = sj.srigl(optax.adam(1e-2), sparsity=0.75, end_step=100,
                update_every=1, distribution="uniform", specs=model)
  state = tx.init(params)
  grads = optax.tree.random_like(jax.random.key(1), params)
  _, state = tx.update(grads, state, params)
  masks = _flat(sj.get_masks(state))
  for path, spec in specs.items():
    if spec is None:
      continue
    for s in _matrix(masks[path], spec):
      fan = s.sum(0)
      live = fan[fan > 0]
      assert len(set(live.tolist())) == 1, (path, fan)


def test_moe_experts_get_their_own_budgets():
  model = tm.MoEModel()
  params = tm.params_of(model)
  params["moe"]["w_in"] = params["moe"]["w_in"] * jnp.asarray(
      [100.0, 1.0, 0.01, 1.0])[:, None, None]
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5, specs=model)
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state,
                             params)
  w = np.asarray(optax.apply_updates(params, updates)["moe"]["w_in"])
  np.testing.assert_array_equal((w != 0).reshape(4, -1).sum(1),
                                [w[0].size // 2] * 4)
  assert sj.get_masks(state)["moe"]["router_kernel"] is None


# Every method of the shared registry and the conformance variants.
_ALL = {n: (lambda inner, c=c, **kw: c.factory(inner, **c.kwargs, **kw),
            c.exact_zero) for n, c in _CASES.items()}


@pytest.mark.parametrize("name", transform_cases.names(_ALL))
def test_every_transform_on_the_scanned_stack(name):
  make, exact_zero = _ALL[name]
  model = _stacked()
  params = tm.with_layer_scales(tm.params_of(model), [4.0, 1.0, 0.25])
  tx = make(optax.adam(1e-2), specs=model)
  state = tx.init(params)
  step = jax.jit(tx.update)
  key = jax.random.key(0)
  for _ in range(3):
    key, sub = jax.random.split(key)
    grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16),
                         optax.tree.random_like(sub, params))
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
  masks = sj.get_masks(state)
  assert masks["embed"]["embedding"] is None
  assert masks["layers"]["norm1"]["scale"] is None
  if exact_zero:  # bf16 gradients on f32 params: exactly zero where pruned
    for p, m in zip(jax.tree.leaves(params),
                    jax.tree.leaves(masks, is_leaf=lambda x: x is None)):
      if m is not None:
        assert not np.asarray(p)[~np.asarray(m)].any(), name


def test_bf16_params_with_f32_updates_exact_zero():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16),
                        tm.params_of(tm.Decoder()))
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.8, end_step=20, update_every=2)
  state = tx.init(params)
  for i in range(3):
    grads = jax.tree.map(lambda p: jnp.ones(p.shape, jnp.float32) * (i + 1),
                         params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  for p, m in zip(jax.tree.leaves(params),
                  jax.tree.leaves(sj.get_masks(state),
                                  is_leaf=lambda x: x is None)):
    if m is not None:
      assert p.dtype == jnp.bfloat16
      assert not np.asarray(p.astype(jnp.float32))[~np.asarray(m)].any()


def test_nnx_optimizer_without_config_reads_the_layer_axis():
  model = tm.StackedDecoder(L)
  tx = sj.magnitude_pruning(optax.adam(1e-3), sparsity=0.5)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  specs = _flat(sj.leaf_specs(model))
  grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
  opt.update(model, grads)
  params = _flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  for path, spec in specs.items():
    if spec is None or not spec.stack_axes:
      continue
    m = _matrix(params[path], spec)
    np.testing.assert_array_equal((m != 0).reshape(L, -1).sum(1),
                                  [m[0].size // 2] * L, err_msg=path)


def test_linen_attention_and_scan():
  from flax import linen as nn

  class LBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _):
      h = nn.LayerNorm()(x)
      x = x + nn.MultiHeadDotProductAttention(num_heads=2)(h, h)
      return x + nn.Dense(16)(nn.gelu(nn.Dense(32)(x))), None

  class LStack(nn.Module):
    @nn.compact
    def __call__(self, x):
      x, _ = nn.scan(LBlock, variable_axes={"params": 0},
                     split_rngs={"params": True}, length=L)()(x, None)
      return x

  variables = LStack().init(jax.random.key(0), jnp.ones((2, 4, 16)))
  params = variables["params"]
  specs = sj.leaf_specs(params, stack_axes={r"^ScanLBlock_0/": 0})
  flat = _flat(specs)
  q = flat["ScanLBlock_0/MultiHeadDotProductAttention_0/query/kernel"]
  assert q == sj.LeafSpec((1,), (2, 3), (0,))
  assert flat["ScanLBlock_0/LayerNorm_0/scale"] is None
  assert flat["ScanLBlock_0/MultiHeadDotProductAttention_0/out/kernel"] == (
      sj.LeafSpec((1, 2), (3,), (0,)))
  tx = sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.75, specs=specs)
  state = tx.init(params)
  up, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  new = _flat(optax.apply_updates(params, up))
  for path, spec in flat.items():
    if spec is not None:
      m = _matrix(new[path], spec)
      np.testing.assert_array_equal((m != 0).reshape(L, -1).sum(1),
                                    [m[0].size // 4] * L, err_msg=path)


def test_summarize_has_a_row_per_layer_slice():
  model = _stacked()
  params = tm.params_of(model)
  tx = sj.static_sparse(optax.sgd(0.1), sparsity=0.5, distribution="uniform",
                        specs=model)
  masks = sj.get_masks(tx.init(params))
  s = sj.summarize(sj.masks.apply(params, masks), masks, specs=model)
  rows = [r for r in s.rows if r.path.startswith("layers/up/kernel")]
  assert [r.path for r in rows] == ["layers/up/kernel"] + [
      f"layers/up/kernel[{i}]" for i in range(L)]
  assert all(r.sparsity == 0.5 for r in rows)
  assert s.total_size == sum(x.size for x in jax.tree.leaves(params))


def test_errors_name_the_leaf():
  class Custom(nnx.Module):
    def __init__(self):
      self.w = nnx.Param(jnp.ones((4, 4)))

  with pytest.raises(ValueError, match=r"leaf 'w'.*overrides"):
    sj.leaf_specs(Custom())
  assert sj.leaf_specs(Custom(), overrides={"^w$": None}) == {"w": None}
  with pytest.raises(ValueError, match="matches no leaf"):
    sj.leaf_specs(tm.Decoder(), stack_axes={"^nothing/": 0})
  with pytest.raises(ValueError, match=r"`specs` has no entry"):
    sj.magnitude_pruning(optax.sgd(0.1), sparsity=0.5,
                         specs={"a": None}).init({"b": jnp.ones((2, 2))})


def test_init_pruning_and_lottery_follow_the_specs():
  model = _stacked()
  params = tm.with_layer_scales(tm.params_of(model), [10.0, 1.0, 0.1])
  specs = _flat(sj.leaf_specs(model))

  def loss(p, tokens):
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    m = nnx.merge(graphdef, p, rest)
    return jnp.mean(m(tokens) ** 2)

  tokens = jnp.arange(8).reshape(2, 4)
  masks = _flat(sj.snip(loss, params, tokens, 0.5, specs=model))
  for path, spec in specs.items():
    assert (masks[path] is None) == (spec is None), path
  ticket = _flat(sj.imp_prune(params, None, rate=0.5, specs=model))
  for path, nnz in _slice_nnz(ticket, specs).items():
    size = _matrix(_flat(params)[path], specs[path])[0].size
    np.testing.assert_array_equal(nnz, [round(size / 2)] * len(nnz))


def test_rules_exclude_fix_and_erk_solves_over_the_rest():
  model = tm.Decoder()
  params = tm.params_of(model)
  rules = [sj.Rule(r"^head/", dense=True),
           sj.Rule(r"attn/(query|key|value)/kernel", sparsity=0.5)]
  got = _flat(sj.distributions.erk(0.8, where=rules, specs=model)(params))
  specs = _flat(sj.leaf_specs(model))
  leaves = _flat(params)
  assert got["head/kernel"] is None and got["embed/embedding"] is None
  qkv = [p for p in got if re_qkv(p)]
  assert qkv and all(got[p] == 0.5 for p in qkv)
  rest = [p for p, s in specs.items()
          if s is not None and p not in qkv and not p.startswith("head/")]
  shapes = [_matrix(leaves[p], specs[p]).shape[1:] for p in rest]
  for p, density in zip(rest, rigl_erk(shapes, 0.8)):
    assert got[p] == pytest.approx(1 - density, abs=1e-6), p
  tx = sj.rigl(optax.adam(1e-2), sparsity=0.8, end_step=10, where=rules,
               specs=model)
  masks = _flat(sj.get_masks(tx.init(params)))
  assert masks["head/kernel"] is None
  q = np.asarray(masks["blocks/0/attn/query/kernel"])
  assert q.sum() == q.size // 2
  with pytest.raises(ValueError, match="matches no leaf"):
    sj.rigl(optax.adam(1e-2), sparsity=0.8, end_step=10,
            where=[sj.Rule("nothing")]).init(params)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    sj.Rule("x", sparsity=1.5)


def re_qkv(path):
  import re
  return re.search(r"attn/(query|key|value)/kernel", path) is not None


def test_transformer_guide_code_runs():
  import pathlib
  import re
  text = (pathlib.Path(__file__).parent.parent / "docs" /
          "transformers.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert len(blocks) >= 4
  namespace = {}
  for i, block in enumerate(blocks):
    exec(compile(block, f"transformers.md block {i}", "exec"), namespace)  # pylint: disable=exec-used


def test_sharded_stacked_attention_kernels_keep_sharding_and_budgets():
  from jax.sharding import AxisType
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(AxisType.Explicit,) * 2)
  specs = {"q": sj.LeafSpec((1,), (2, 3), (0,)),
           "o": sj.LeafSpec((1, 2), (3,), (0,)),
           "up": sj.LeafSpec((1,), (2,), (0,))}
  shardings = {"q": jax.P(None, None, "model", None),
               "o": jax.P(None, "model", None, None),
               "up": jax.P(None, None, "model")}
  shapes = {"q": (3, 16, 4, 8), "o": (3, 4, 8, 16), "up": (3, 16, 32)}
  with jax.set_mesh(mesh):
    params = {k: jax.device_put(
        jax.random.normal(jax.random.key(i), shapes[k]), shardings[k])
              for i, k in enumerate(shapes)}
    tx = sj.rigl(optax.adam(1e-2), sparsity=0.75, end_step=10,
                 update_every=1, distribution="uniform", specs=specs)
    state0 = tx.init(params)
    step = jax.jit(tx.update)
    state = state0
    for _ in range(2):
      updates, state = step(jax.tree.map(lambda x: x * 0.1, params), state,
                            params)
      params = optax.apply_updates(params, updates)
    assert jax.tree.all(jax.tree.map(
        lambda a, b: jax.typeof(a) == jax.typeof(b), state0, state))
    for k, m in sj.get_masks(state).items():
      assert m.sharding.spec == shardings[k]
      per = np.asarray(_matrix(np.asarray(m), specs[k])).reshape(3, -1)
      np.testing.assert_array_equal(per.sum(1), [per.shape[1] // 4] * 3)
