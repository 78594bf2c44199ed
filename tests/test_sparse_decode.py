# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse decoding (examples/sparse_decode.py) against dense decoding.

* Thresholds of zero: the sparse decode path produces exactly the greedy
  tokens of the example model's own dense ``lm_model.generate``.
* Calibrated TEAL / WINA / CATS / top-k settings: every step's logits equal
  (to float tolerance) those of ``lm_model.decode_step`` on the same model
  with ``set_activation_sparsity`` (the model masks the projection inputs
  and multiplies densely: an independent masked-dense computation), after
  the same dense prefill.
* ``benchmarks/decode.py --tiny`` trains a tiny checkpoint with
  ``examples/lm.py`` (Orbax), loads it with ``--from`` and reports the
  validation bits per byte at every sparsity beside the tokens/s.
"""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import lm  # noqa: E402
import lm_model  # noqa: E402
import sparse_decode as sd  # noqa: E402

PROMPT = jnp.array([[3, 1, 4, 1, 5, 9, 2, 6]], jnp.int32)


@pytest.fixture(scope="module")
def model():
  return lm_model.TransformerLM(lm_model.LMConfig.tiny(), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def calib():
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (4, 32)).astype(np.int32)]


def _zero_setting(cfg):
  sizes = {"attn_in": cfg.d_model, "attn_out": cfg.d_model,
           "mlp_in": cfg.d_model, "mlp_down": cfg.d_ff}
  return {"kind": "threshold",
          "thresholds": {g: jnp.zeros((cfg.num_layers, n))
                         for g, n in sizes.items()}}


def test_zero_thresholds_give_the_dense_tokens(model):
  steps = 20
  dense = lm_model.generate(model, PROMPT, steps=steps)
  decoder = sd.make_decoder(model, _zero_setting(model.cfg))
  out = decoder.generate(PROMPT, steps)
  np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(dense))
  # Nothing is zero at a zero threshold: every row is read.
  assert float(out.read_fraction) == pytest.approx(1.0)


@pytest.mark.parametrize("rule", ["teal", "wina", "cats", "topk"])
def test_logits_match_masked_dense(model, calib, rule):
  setting = lm.calibrate_activation(model, rule, 0.5, calib)
  # 16 rows per loop step (4 groups of 4) compiles faster than the default
  # 64 and exercises the same grouped loop.
  decoder = sd.make_decoder(model, setting, block_rows=16)
  logits, cache = decoder.prefill(PROMPT, 16)
  # The reference: the model's own (stacked, scanned) decode step with its
  # projection inputs masked, dense matmuls, after a dense prefill.
  lm_model.set_activation_sparsity(model, None)
  _, ref_cache = lm_model.prefill(model, PROMPT, max_len=16)
  lm_model.set_activation_sparsity(model, setting["kind"],
                                   thresholds=setting.get("thresholds"),
                                   topk_k=setting.get("topk_k"))
  try:
    token = jnp.argmax(logits, -1).astype(jnp.int32)
    reads = []
    for pos in range(PROMPT.shape[1], 16):
      got, cache, read = decoder.step(token, cache, pos)
      want, ref_cache = lm_model.decode_step(model, token, ref_cache, pos)
      np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                                 rtol=1e-4, atol=1e-4)
      reads.append(float(read) / sd.dense_read_bytes(decoder.weights))
      token = jnp.argmax(want, -1).astype(jnp.int32)
  finally:
    lm_model.set_activation_sparsity(model, None)
  # Some rows were skipped (CATS and top-k leave some inputs dense).
  assert max(reads) < 0.95, reads


def test_masked_dense_decoder_equals_sparse(model, calib):
  setting = lm.calibrate_activation(model, "teal", 0.65, calib)
  sparse = sd.make_decoder(model, setting).generate(PROMPT, 8)
  dense = sd.make_decoder(model, setting, sparse=False).generate(PROMPT, 8)
  np.testing.assert_array_equal(np.asarray(sparse.tokens),
                                np.asarray(dense.tokens))
  assert float(sparse.read_fraction) == pytest.approx(
      float(dense.read_fraction))


def test_bad_setting_is_an_error(model):
  with pytest.raises(ValueError, match="unknown inputs"):
    sd.make_decoder(model, {"kind": "threshold",
                            "thresholds": {"mlp": jnp.zeros((2,))}})
  with pytest.raises(ValueError, match="leading axis of 2 layers"):
    sd.make_decoder(model, {"kind": "threshold",
                            "thresholds": {"mlp_in": jnp.zeros((3, 32))}})
  with pytest.raises(ValueError, match="kind"):
    sd.make_decoder(model, {"kind": "relu"})


@pytest.mark.slow  # trains a checkpoint: 50 s on a shared CPU
def test_benchmark_tiny_checkpoint_reports_bpb(tmp_path):
  spec = importlib.util.spec_from_file_location(
      "decode_benchmark", ROOT / "benchmarks" / "decode.py")
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  results = bench.main(["--tiny", "--tiny-steps", "5", "--model", "example",
                        "--out", str(tmp_path), "--repeats", "1", "--tokens",
                        "4", "--sparsities", "0.5,0.8"])
  rows = results["example"]["rows"]
  assert [r["target"] for r in rows] == [0.0, 0.5, 0.8]
  assert all(np.isfinite(r["val_bpb"]) for r in rows)
  assert rows[0]["read_fraction"] == pytest.approx(1.0)
  assert rows[2]["read_fraction"] < rows[1]["read_fraction"] < 1.0
  saved = json.loads((tmp_path / "decode.json").read_text())
  assert saved["example"]["checkpoint"].endswith("_ckpt")
  assert (tmp_path / "decode.png").is_file()
