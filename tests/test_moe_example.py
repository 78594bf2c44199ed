# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/moe.py runs end to end (slow: it trains four small models)."""

import importlib.util
import json
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "moe.py"


def _load_example():
  spec = importlib.util.spec_from_file_location("moe_example", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_moe_example_runs_and_reports_balance(tmp_path):
  example = _load_example()
  results = example.main(["--limit", "2000", "--epochs", "2", "--out",
                          str(tmp_path)])
  by_name = {r["variant"]: r for r in results}
  assert set(by_name) == {"dense", "top1", "top2", "expert_choice"}
  for r in results:
    assert r["test_accuracy"] > 0.5, r  # 10 classes: chance is 0.1
  # Expert choice is balanced by construction; top-2 here is dropless.
  assert by_name["expert_choice"]["max_load_share"] == pytest.approx(1 / 8)
  assert by_name["expert_choice"]["min_load_share"] == pytest.approx(1 / 8)
  assert by_name["top2"]["test_dropped"] == 0.0
  assert json.loads((tmp_path / "moe.json").read_text()) == results
  png = (tmp_path / "moe_expert_load.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
