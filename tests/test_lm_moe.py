# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The MoE feed-forward of the language-model example (``lm.py --moe``)."""

import json
import math
import pathlib
import sys

import jax
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm  # noqa: E402
import lm_model  # noqa: E402
import lm_tables  # noqa: E402

ROUTERS = ("top2", "switch", "expert_choice")


def _sizes(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("moe", ROUTERS)
def test_equal_active_parameters(moe):
  # From the weights' shapes: the SwiGLU's gate/up/down against the k
  # experts (expert choice: c = 2 on average) a token meets.
  cfg = lm_model.LMConfig.tiny()
  dense = nnx.eval_shape(lambda: lm_model.TransformerLM(
      cfg, rngs=nnx.Rngs(0)))
  model = nnx.eval_shape(lambda: lm_model.TransformerLM(
      lm_model.LMConfig.tiny(moe=moe, experts=8), rngs=nnx.Rngs(0)))
  blocks = dense.blocks
  swiglu = sum(getattr(blocks, n).kernel.size for n in ("gate", "up", "down"))
  layer = model.blocks.moe
  e, d, h = layer.w_in.shape[1:]
  assert e == 8 and layer.w_out.shape[1:] == (8, h, d)
  k = {"top2": 2, "switch": 1, "expert_choice": 2}[moe]
  per_expert = (layer.w_in.size + layer.w_out.size) // e
  assert k * per_expert == swiglu
  assert layer.b_in is None and layer.b_out is None
  # The example's count: everything else equal, the router on top.
  active, total = lm.param_counts(model)
  dense_total = _sizes(nnx.state(dense, nnx.Param))
  router = layer.router_kernel.size
  assert active == dense_total + router
  assert total == dense_total - swiglu + e * per_expert + router
  assert lm_model.ffn_param_counts(model.cfg) == (
      (swiglu + router) // cfg.num_layers,
      (e * per_expert + router) // cfg.num_layers)


def test_bad_moe_config():
  with pytest.raises(ValueError, match="moe"):
    lm_model.LMConfig.tiny(moe="top3")
  with pytest.raises(ValueError, match="experts"):
    lm_model.LMConfig.tiny(moe="top2", experts=1)
  with pytest.raises(ValueError, match="d_ff"):
    lm_model.LMConfig.tiny(moe="top2", d_ff=66)


@pytest.mark.parametrize("moe", ("top2", "expert_choice"))
def test_aux_out_of_scan_and_list(moe):
  """The layers' aux come out of nnx.scan as in the list layout, with the
  auxiliary loss's gradient reaching every layer's router."""
  model = lm_model.TransformerLM(lm_model.LMConfig.tiny(moe=moe),
                                 rngs=nnx.Rngs(0))
  unstacked = lm.relayout(model, lm_model.LMConfig.tiny(moe=moe,
                                                        stacked=False))
  tokens = jax.random.randint(jax.random.key(1), (4, 8), 0, 256)
  forward = nnx.jit(lambda m, t: m(t, return_aux=True))
  logits, aux = forward(model, tokens)
  logits_l, aux_l = forward(unstacked, tokens)
  np.testing.assert_allclose(logits, logits_l, atol=1e-5)
  assert aux.expert_load.shape == (2, 8)
  np.testing.assert_allclose(aux.expert_load, aux_l.expert_load, atol=1e-6)
  np.testing.assert_allclose(aux.expert_load.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(lm_model.moe_aux_loss(aux),
                             lm_model.moe_aux_loss(aux_l), rtol=1e-5)
  expected = (1e-2 * np.sum(aux.load_balancing)
              + 1e-3 * np.sum(aux.z_loss))
  np.testing.assert_allclose(lm_model.moe_aux_loss(aux), expected,
                             rtol=1e-6)
  if moe == "top2":
    assert np.all(np.asarray(aux.load_balancing) > 0)
    assert np.all(np.asarray(aux.dropped) == 0)  # dropless

  def aux_loss(m):
    return lm_model.moe_aux_loss(m(tokens, return_aux=True)[1])

  grads = nnx.jit(nnx.grad(aux_loss))(model)
  router = np.asarray(grads.blocks.moe.router_kernel[...])
  assert router.shape[0] == 2
  assert all(np.abs(router[i]).max() > 0 for i in range(2))
  assert lm_model.moe_aux_loss(None) == 0


def _run(tmp_path, capsys, *extra):
  argv = ["--tiny", "--steps", "12", "--eval-every", "12", "--val-windows",
          "8", "--out",
          str(tmp_path)] + list(extra)
  results = lm.main(argv)
  last = capsys.readouterr().out.strip().splitlines()[-1]
  return results, last


@pytest.mark.parametrize("moe,layout", [("top2", "--stacked"),
                                        ("switch", "--stacked"),
                                        ("expert_choice", "--unstacked")])
def test_moe_command_tiny(tmp_path, capsys, moe, layout):
  results, last = _run(tmp_path, capsys, "--moe", moe, "--experts", "8",
                       layout)
  assert last == f"val_bpb {results['val_bpb']:.4f}"
  assert math.isfinite(results["val_bpb"]) and results["val_bpb"] < 8
  saved = json.loads((tmp_path / f"lm_moe_{moe}_8.json").read_text())
  for key in ("method", "sparsity", "steps", "val_bpb", "layer_sparsity",
              "expert_load", "active_params", "total_params", "dropped"):
    assert key in saved, key
  assert saved["steps"] == 12 and saved["sparsity"] == 0.0
  load = np.asarray(saved["expert_load"])
  assert load.shape == (2, 8)
  np.testing.assert_allclose(load.sum(-1), 1.0, atol=1e-5)
  if moe != "expert_choice":
    assert saved["dropped"] == [0.0, 0.0]
  assert saved["active_params"] < saved["total_params"]
  assert (tmp_path / f"lm_moe_{moe}_8.png").stat().st_size > 0


@pytest.mark.parametrize("flags", [["--method", "rigl"],
                                   ["--sparsity", "0.5"],
                                   ["--mesh", "data=2"],
                                   ["--update-every", "5"]])
def test_weight_sparsity_flags_refused(flags, capsys):
  with pytest.raises(SystemExit):
    lm.parse_args(["--moe", "top2"] + flags)
  assert "--moe" in capsys.readouterr().err


def test_moe_table_commands_and_resume(tmp_path, capsys):
  lm_tables.main(["moe", "--dry-run", "--steps", "50"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 5
  assert "--method dense" in lines[0]
  assert {l.split("--moe ")[1].split()[0] for l in lines[1:4]} == set(
      ROUTERS)
  assert all("--experts 8" in l for l in lines[1:4])
  assert "--moe switch --experts 1" in lines[4]  # the plain-MLP control
  argv = ["--moe", "switch", "--experts", "8", "--seed", "0", "--steps",
          "50", "--out", str(tmp_path)]
  assert lm_tables._finished(argv, tmp_path) is None
  run = {"moe": "switch", "experts": 8, "steps": 50, "seed": 0}
  (tmp_path / "lm_moe_switch_8.json").write_text(json.dumps(run))
  assert lm_tables._finished(argv, tmp_path) == run
  other = list(argv)
  other[other.index("50")] = "60"
  assert lm_tables._finished(other, tmp_path) is None


# Five tiny runs (dense, three routers, the control): about 40 s.
@pytest.mark.slow
def test_moe_table_tiny(tmp_path):
  text = lm_tables.main(["moe", "--tiny", "--steps", "3", "--val-windows",
                         "8", "--out", str(tmp_path)])
  rows = [l for l in text.splitlines() if l.startswith("| ")][1:]
  assert len(rows) == 5 and rows[0].startswith("| dense")
  assert rows[4].startswith("| dense silu MLP")
  assert (tmp_path / "table_moe.png").stat().st_size > 0
  saved = json.loads((tmp_path / "table_moe.json").read_text())
  assert [r["method"] for r in saved] == [
      "dense", "moe_top2", "moe_expert_choice", "moe_switch", "moe_switch"]
