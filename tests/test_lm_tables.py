# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/lm_tables.py: the table commands and their --tiny form."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm_tables  # noqa: E402


def test_sparse_table_commands(capsys):
  lm_tables.main(["sparse", "--dry-run", "--steps", "100"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2 * (1 + 4 * 3)  # 2 seeds x (dense + 4 x 3)
  assert all("--steps 100" in line for line in lines)
  lm_tables.main(["sparse", "--dry-run", "--steps", "100", "--more"])
  more = capsys.readouterr().out.strip().splitlines()
  assert len(more) == 2 * (1 + 9 * 3)  # and SRigL ... DST-EE
  assert sum("--method dst_ee" in line for line in more) == 6


def test_moe_table_load_covers_every_seed():
  def run(seed, bpb, low, high, cv, dropped):
    return {"command": "moe", "method": "top2", "moe": "top2",
            "router": "top_k", "experts": 8, "k": 2, "seed": seed,
            "active_params": 10, "total_params": 40, "val_bpb": bpb,
            "load": {"min_x_uniform": low, "max_x_uniform": high, "cv": cv},
            "dropped": dropped}
  text, series = lm_tables.collect_moe([
      run(0, 2.0, [0.9, 0.7], [1.1, 1.2], [0.1, 0.3], [0.0, 0.2]),
      run(1, 3.0, [0.6, 0.8], [1.5, 1.1], [0.3, 0.5], [0.0, 0.0])])
  row = text.splitlines()[-1].split(" | ")
  # mean bpb, both seeds, worst min / max over seeds and layers, the mean CV
  # over layers and seeds (0.3), the mean dropped fraction (0.05).
  assert row[5:] == ["2.5000", "2.0000, 3.0000", "0.60 / 1.50", "0.300",
                     "0.0500 |"]
  assert series["top2"]["cv"] == pytest.approx([0.2, 0.4])


# 140 s on the shared 2-core CPU (17 tiny lm.py runs): the slow tier.
@pytest.mark.slow
def test_activation_table_tiny(tmp_path):
  text = lm_tables.main(["activation", "--tiny", "--steps", "10",
                         "--val-windows", "8", "--out", str(tmp_path)])
  rows = [l for l in text.splitlines() if l.startswith("| activation")]
  assert len(rows) == 16
  assert (tmp_path / "table_activation.md").read_text().startswith("|")
  assert (tmp_path / "table_activation.png").stat().st_size > 0


def test_feature_norm_spread_matches_numpy():
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                         / "benchmarks"))
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import lm_feature_norms  # pylint: disable=g-import-not-at-top
  import lm_model  # pylint: disable=g-import-not-at-top
  model = lm_model.TransformerLM(lm_model.LMConfig.tiny(), rngs=nnx.Rngs(0))
  windows = [np.arange(64, dtype=np.int32).reshape(2, 32) % 97]
  got = lm_feature_norms.feature_norm_spread(model, windows)
  x = np.asarray(model(jnp.asarray(windows[0]), collect=True)[1]["mlp_in"],
                 np.float32)
  norms = np.sqrt((x[1].reshape(-1, x.shape[-1]) ** 2).sum(axis=0))
  assert len(got["mlp_in"]) == 2  # one row per layer
  np.testing.assert_allclose(got["mlp_in"][1],
                             (norms.std() / norms.mean(),
                              norms.max() / np.median(norms)), rtol=1e-5)


# Compiles five tiny training steps (about 20 s): the slow tier.
@pytest.mark.slow
def test_step_cost_benchmark_tiny(capsys):
  import importlib.util  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(__file__).resolve().parents[1]
  spec = importlib.util.spec_from_file_location(
      "lm_step", root / "benchmarks" / "lm_step.py")
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  bench.main(["--tiny", "--methods", "static,rigl,set", "--repeats", "1",
              "--steps", "1"])
  rows = [line.split("|")[1].strip()
          for line in capsys.readouterr().out.splitlines()
          if line.startswith("| ") and not line.startswith("| method")]
  assert rows == ["static", "rigl", "set"]
