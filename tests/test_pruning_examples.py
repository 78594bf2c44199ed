# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""End-to-end runs of examples/oneshot_prune.py and examples/lottery_ticket.py.

Both train on Fashion-MNIST (or the loader's fallback) for minutes, so they
are in the slow tier (``pytest -m slow``).
"""

import importlib.util
import json
import pathlib
import sys

import pytest

pytest.importorskip("flax")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name):
  sys.path.insert(0, str(ROOT / "examples"))
  spec = importlib.util.spec_from_file_location(
      f"sparsejax_examples_{name}", ROOT / "examples" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_oneshot_prune_orders_methods(tmp_path):
  example = _load("oneshot_prune")
  results = example.main(["--epochs", "5", "--out", str(tmp_path)])
  acc = {(r["sparsity"], r["method"]): r["test_accuracy"]
         for r in results["rows"]}
  assert json.loads((tmp_path / "oneshot_prune.json").read_text())["rows"]
  for s in ("50%", "70%", "2:4"):
    assert acc[(s, "sparsegpt")] >= acc[(s, "magnitude")]
    assert acc[(s, "sparsegpt")] >= acc[(s, "wanda")] - 0.005
  for r in results["rows"]:
    expected = {"50%": 0.5, "70%": 0.7, "2:4": 0.5}[r["sparsity"]]
    assert abs(r["weight_sparsity"] - expected) < 0.01
  # SparseGPT at 50 % stays within 2 points of the dense model.
  assert acc[("50%", "sparsegpt")] >= results["dense"] - 0.02


@pytest.mark.slow
def test_lottery_ticket_rounds(tmp_path):
  example = _load("lottery_ticket")
  results = example.main(["--rounds", "3", "--epochs", "1", "--limit",
                          "6000", "--out", str(tmp_path)])
  # Hidden layers lose 20 % of their remaining weights per round, the output
  # layer 10 %.
  for row in results["rows"][1:]:
    r = row["round"]
    assert abs(row["layers"]["fc1"] - 0.8 ** r) < 1e-3
    assert abs(row["layers"]["fc2"] - 0.8 ** r) < 1e-3
    assert abs(row["layers"]["fc3"] - 0.9 ** r) < 2e-3
    assert row["remaining"] < 1.0
  assert (tmp_path / "lottery_ticket.png").stat().st_size > 0
