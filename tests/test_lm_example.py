# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The language-model example: data, model, KV-cache decoding and the CLI."""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pallas_kernels import sparse_input_matmul

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm  # noqa: E402
import lm_model  # noqa: E402
import text_data  # noqa: E402

# ------------------------------------------------------------------ data


def _corpus(root: pathlib.Path, n: int = 60) -> pathlib.Path:
  for i in range(n):
    sub = root / f"part{i % 3}"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / f"doc{i}.rst.txt").write_text(f"Document {i}. " * 40)
  return root


def test_split_is_by_file_and_fixed(tmp_path):
  root = _corpus(tmp_path)
  data = text_data.load_dir(root)
  assert sum(data.files.values()) == 60
  assert all(n > 0 for n in data.files.values())
  expected = {s: 0 for s in text_data.SPLITS}
  for p in sorted(root.rglob("*.rst.txt")):
    expected[text_data.split_of(p.relative_to(root).as_posix())] += 1
  assert data.files == expected
  assert data.train.dtype == np.uint8
  again = text_data.load_dir(root)
  np.testing.assert_array_equal(again.validation, data.validation)


def test_loader_order_and_fallback(tmp_path, monkeypatch, capsys):
  root = _corpus(tmp_path / "corpus")
  monkeypatch.delenv(text_data.ENV_VAR, raising=False)
  assert text_data.load_text(root, verbose=False).source == str(root)
  monkeypatch.setenv(text_data.ENV_VAR, str(root))
  assert text_data.load_text(verbose=False).source == str(root)
  with pytest.raises(FileNotFoundError, match="data_dir"):
    text_data.load_text(tmp_path / "missing", verbose=False)
  monkeypatch.delenv(text_data.ENV_VAR)
  # No Debian folder: the interpreter's standard library, said loudly.
  fallback = text_data.load_text(debian_glob=str(tmp_path / "none*"),
                                 verbose=False)
  assert fallback.name == "stdlib-py"
  assert fallback.source == str(text_data.stdlib_dir())
  assert "FALLING BACK" in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match="python3-doc"):
    text_data.load_text(debian_glob=str(tmp_path / "none*"), fallback=False,
                        verbose=False)


def test_debian_location_is_found(tmp_path):
  # A folder laid out as python3-doc installs it, so that the test needs no
  # system package (.ci/run installs the real one for the examples).
  root = tmp_path / "python3.11" / "html" / "_sources"
  for i in range(200):
    page = root / ("library" if i % 2 else "howto") / f"page{i}.rst.txt"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"Page {i}\n" + "Some English prose. " * 20)
  glob = str(tmp_path / "python3*" / "html" / "_sources")
  assert text_data.debian_dir(glob) == root
  data = text_data.load_text(verbose=False, debian_glob=glob)
  assert data.name == "python-docs"
  assert data.train.size > 0 and data.validation.size > 0


def test_batches_are_seeded_and_windows_fixed():
  tokens = np.arange(1000, dtype=np.int64).astype(np.uint8)
  a = text_data.sample_batch(tokens, np.random.default_rng(3), batch_size=4,
                             seq_len=16)
  b = text_data.sample_batch(tokens, np.random.default_rng(3), batch_size=4,
                             seq_len=16)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (4, 17)
  np.testing.assert_array_equal(a[:, 1:], (a[:, :-1] + 1) % 256)
  w = text_data.eval_windows(tokens, seq_len=16, max_windows=10)
  np.testing.assert_array_equal(
      w, text_data.eval_windows(tokens, seq_len=16, max_windows=10))
  assert text_data.decode(text_data.encode("héllo")) == "héllo"


# ------------------------------------------------------------------ model


@pytest.fixture(scope="module")
def models():
  stacked = lm_model.TransformerLM(lm_model.LMConfig.tiny(),
                                   rngs=nnx.Rngs(0))
  unstacked = lm.relayout(stacked, lm_model.LMConfig.tiny(stacked=False))
  return stacked, unstacked


def _tokens(b=2, t=12, seed=1):
  return jax.random.randint(jax.random.key(seed), (b, t), 0, 256)


def test_stacked_and_unstacked_compute_the_same(models):
  stacked, unstacked = models
  assert stacked.blocks.q.kernel.shape == (2, 32, 2, 16)
  assert stacked.blocks.o.kernel.shape == (2, 2, 16, 32)
  assert len(unstacked.blocks) == 2
  meta = stacked.blocks.q.kernel.get_metadata()["out_sharding"]
  assert meta == ("layers", "embed", "heads", "kv")
  toks = _tokens()
  np.testing.assert_allclose(stacked(toks), unstacked(toks), atol=1e-5)
  # Causal: a later token does not change earlier logits.
  changed = toks.at[:, -1].set((toks[:, -1] + 1) % 256)
  np.testing.assert_allclose(stacked(changed)[:, :-1], stacked(toks)[:, :-1],
                             atol=1e-5)


# Layout 1 (the unstacked model) in the slow tier: the same cache code.
@pytest.mark.parametrize("layout",
                         [0, pytest.param(1, marks=pytest.mark.slow)])
def test_cached_decoding_matches_full_forward(models, layout):
  model = models[layout]
  toks = _tokens(t=12)
  full = model(toks)
  logits, cache = lm_model.prefill(model, toks[:, :5], max_len=12)
  np.testing.assert_allclose(logits, full[:, :5], atol=1e-5)
  assert cache.k.shape == (2, 2, 12, 2, 16)
  for pos in range(5, 12):
    step_logits, cache = lm_model.decode_step(model, toks[:, pos], cache, pos)
    np.testing.assert_allclose(step_logits, full[:, pos], atol=1e-5)


def test_generate_is_greedy_decoding_of_the_full_model(models):
  model = models[0]
  prompt = _tokens(b=1, t=4)
  out = lm_model.generate(model, prompt, steps=6)
  seq = jnp.concatenate([prompt, out], axis=1)
  greedy = jnp.argmax(model(seq), -1)[0, 3:-1]
  np.testing.assert_array_equal(out[0], greedy)
  sampled = lm_model.generate(model, prompt, steps=6, temperature=1.0,
                              seed=3)
  np.testing.assert_array_equal(
      sampled, lm_model.generate(model, prompt, steps=6, temperature=1.0,
                                 seed=3))


def test_projections_go_through_the_matmul_hook(models):
  model = models[1]
  seen = []

  def spy(x, w):
    seen.append(w.shape)
    return x @ w

  toks = _tokens()
  with lm_model.use_matmul(spy):
    model(toks)
  # 7 projections per layer and the head, kernels viewed as 2-D.
  assert len(seen) == 2 * 7 + 1
  assert (32, 32) in seen and (32, 256) in seen and (64, 32) in seen
  prompt = _tokens(b=1, t=4)
  np.testing.assert_array_equal(
      lm_model.generate(model, prompt, steps=5),
      lm_model.generate(model, prompt, steps=5, matmul=sparse_input_matmul))


def test_bf16_compute_keeps_f32_master_weights():
  model = lm_model.TransformerLM(lm_model.LMConfig.tiny(dtype="bfloat16"),
                                 rngs=nnx.Rngs(0))
  assert model.blocks.gate.kernel[...].dtype == jnp.float32
  assert model(_tokens()).dtype == jnp.bfloat16


# ------------------------------------------------------------------ CLI

_FAST = ["--tiny", "--val-windows", "16", "--calibration", "16"]


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("lm")
  results = lm.main(["--method", "dense", "--steps", "25", "--out", str(out)]
                    + _FAST)
  return out, results


def test_train_dense_writes_json_png_checkpoint(dense_run, capsys):
  out, results = dense_run
  assert results["val_bpb"] < 8
  saved = json.loads((out / "lm_dense_0.json").read_text())
  for key in ("method", "sparsity", "steps", "val_bpb", "layer_sparsity",
              "tokens_per_s"):
    assert key in saved
  assert (out / "lm_dense_0.png").stat().st_size > 0
  model = lm.load_checkpoint(out / "lm_dense_0_ckpt")
  windows = text_data.eval_windows(text_data.load_text(verbose=False)
                                   .validation, seq_len=32, max_windows=16)
  assert abs(lm.evaluate_bpb(model, windows) - results["val_bpb"]) < 1e-4


@pytest.mark.parametrize("method,sparsity,layout", [
    ("rigl", 0.5, "--stacked"), ("static", 0.75, "--unstacked")])
def test_train_sparse_is_exact_per_layer(tmp_path, capsys, method, sparsity,
                                         layout):
  results = lm.main(["--method", method, "--sparsity", str(sparsity),
                     "--steps", "40", "--out", str(tmp_path), layout]
                    + _FAST)
  assert results["val_bpb"] < 8
  for name, per_layer in results["layer_sparsity"].items():
    assert per_layer == [sparsity] * 2, name
  for name, shares in results["layer_top_fan_in_share"].items():
    assert len(shares) == 2 and all(0.1 <= v <= 1 for v in shares), name
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last == f"val_bpb {results['val_bpb']:.4f}"


def test_top_fan_in_share_hand_worked():
  # Output unit j of ten has j + 1 nonzero inputs (of ten): the top unit
  # holds 10 of the 55 weights; the top 30 % (3 units) 8 + 9 + 10 of them.
  kernel = (np.arange(10)[:, None] <= np.arange(10)[None, :]).astype(float)
  assert lm.top_fan_in_share(kernel, 1) == pytest.approx(10 / 55)
  assert lm.top_fan_in_share(kernel, 1, top=0.3) == pytest.approx(27 / 55)
  # Two input axes ([heads, kv, embed], as the o projection): 4 inputs.
  o = np.zeros((2, 2, 5))
  o[:, :, 0] = 1
  o[0, 0, 1:] = 1
  assert lm.top_fan_in_share(o, 2, top=0.2) == pytest.approx(4 / 8)
  assert lm.top_fan_in_share(np.zeros((3, 4)), 1) == 0.0


def test_regrowth_counts_a_hand_worked_case():
  # Weights 0-5 of one leaf (the other is dense): which are dropped at each
  # update, and whether they were grown at the update just before.
  m = lambda *on: {"a": np.isin(np.arange(6), on), "b": None}  # noqa: E731
  r = lm.Regrowth(m(0, 1))
  r.record(0, m(0, 2))    # drop 1 (initial), grow 2
  r.record(5, m(0, 2))    # no change: not an update
  r.record(10, m(0, 3))   # drop 2 (grown at step 0), grow 3
  r.record(15, m(3, 4))   # drop 0 (initial), grow 4
  r.record(20, m(4, 5))   # drop 3 (grown at 10, not at 15), grow 5
  assert r.updates == [
      dict(step=0, dropped=1, grown=1, dropped_grown_last_update=0),
      dict(step=10, dropped=1, grown=1, dropped_grown_last_update=1),
      dict(step=15, dropped=1, grown=1, dropped_grown_last_update=0),
      dict(step=20, dropped=1, grown=1, dropped_grown_last_update=0)]


def test_drop_and_grow_ablation_flags(tmp_path, capsys):
  results = lm.main(["--method", "rigl", "--sparsity", "0.75", "--steps",
                     "40", "--update-every", "10", "--drop-fraction", "0.1",
                     "--begin-step", "10", "--out", str(tmp_path)] + _FAST)
  saved = json.loads((tmp_path / "lm_rigl_0.75_drop_fraction0.1"
                      "_begin_step10.json").read_text())
  assert saved["drop_fraction"] == 0.1 and saved["begin_step"] == 10
  updates = results["regrowth"]
  assert updates and updates[0]["step"] == 10  # none at step 0
  for u in updates:
    assert u["step"] % 10 == 0 and 10 <= u["step"] <= 30
    assert u["dropped"] == u["grown"] > 0
  # At most a tenth of the kept projection weights change at the first
  # update (the drop fraction's start; the default 0.3 is three times that).
  model = lm.load_checkpoint(results["checkpoint"])
  flat = jax.tree_util.tree_leaves_with_path(lm.param_dict(model))
  n_kept = sum(0.25 * v.size for p, v in flat
               if jax.tree_util.keystr(p).endswith("['kernel']")
               and any(f"['{name}']" in jax.tree_util.keystr(p)
                       for name in lm.PROJECTIONS))
  assert n_kept > 0
  assert updates[0]["dropped"] <= 0.1 * n_kept
  for flags in (["--method", "static", "--drop-fraction", "0.1"],
                ["--method", "granet", "--begin-step", "5"]):
    with pytest.raises(SystemExit):
      lm.parse_args(flags)


def test_oneshot_2_4(dense_run, tmp_path):
  out, _ = dense_run
  results = lm.main(["--oneshot", "wanda", "--sparsity", "2:4", "--from",
                     str(out / "lm_dense_0_ckpt"), "--out", str(tmp_path),
                     "--unstacked"] + _FAST)
  assert results["val_bpb"] < 8
  for per_layer in results["layer_sparsity"].values():
    assert per_layer == [0.5, 0.5]


@pytest.mark.parametrize("rule", ["teal", "wina", "cats", "topk"])
def test_activation_sparsity(dense_run, tmp_path, rule):
  out, _ = dense_run
  results = lm.main(["--activation", rule, "--target", "0.5", "--from",
                     str(out / "lm_dense_0_ckpt"), "--out", str(tmp_path)]
                    + _FAST)
  assert results["val_bpb"] < 8
  realised = results["layer_sparsity"]
  if rule == "topk":
    assert all(v == [0.5, 0.5] for v in realised.values())
  elif rule == "cats":
    assert realised["attn_in"] == [0.0, 0.0]
    assert all(0.3 < s < 0.7 for s in realised["mlp_down"])
  else:
    assert all(0.3 < s < 0.8 for v in realised.values() for s in v)


def test_generate_command(dense_run, capsys):
  out, _ = dense_run
  results = lm.main(["generate", "--from", str(out / "lm_dense_0_ckpt"),
                     "--prompt", "The ", "--tokens", "8"])
  assert len(results["tokens"]) == 8 and results["tokens_per_s"] > 0
  assert "tokens/s" in capsys.readouterr().out


def test_zero_thresholds_decode_the_dense_tokens(models):
  model = lm.relayout(models[0], models[0].cfg)  # a copy to modify
  prompt = _tokens(b=1, t=4)
  dense = lm_model.generate(model, prompt, steps=6)
  zeros = {"attn_in": jnp.zeros((2, 32)), "attn_out": jnp.zeros((2, 2, 16)),
           "mlp_in": jnp.zeros((2, 32)), "mlp_down": jnp.zeros((2, 64))}
  lm_model.set_activation_sparsity(model, "threshold", thresholds=zeros)
  np.testing.assert_array_equal(
      lm_model.generate(model, prompt, steps=6, matmul=sparse_input_matmul),
      dense)


def test_generate_with_activation_sparsity(dense_run, capsys):
  out, _ = dense_run
  results = lm.main(["generate", "--from", str(out / "lm_dense_0_ckpt"),
                     "--prompt", "The ", "--tokens", "8", "--activation",
                     "teal", "--target", "0.5", "--calibration", "8"])
  assert len(results["tokens"]) == 8
