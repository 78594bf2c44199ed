# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""End-to-end runs of examples/activation_sparsity.py (slow tier).

Both modes run on a 3,000-image slice of the training set for one epoch: the
test checks that the tables are printed, the plot is written, and that the
magnitude rules beat random dropping at 90 % sparsity, the ordering the
example exists to show.
"""

import importlib.util
import pathlib
import re
import sys

import pytest

pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_example():
  spec = importlib.util.spec_from_file_location(
      "sparsejax_examples_activation_sparsity",
      ROOT / "examples" / "activation_sparsity.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def _row(text, rule):
  line = next(l for l in text.splitlines() if l.startswith(f"| {rule} |"))
  return [float(v) for v in re.findall(r"(\d\.\d{4}) \(", line)]


@pytest.mark.slow
def test_sweep_mode(tmp_path, capsys):
  example = _load_example()
  example.main(["--epochs", "1", "--limit-train", "3000", "--acts", "relu",
                "--sparsities", "0.5", "0.9", "--out", str(tmp_path)])
  out = capsys.readouterr().out
  assert (tmp_path / "activation_sparsity.png").stat().st_size > 0
  random_acc = _row(out, "random")
  for rule in ("TEAL", "WINA", "top-k", "stat. top-k"):
    acc = _row(out, rule)
    assert len(acc) == 2
    assert acc[1] > random_acc[1] + 0.05, (rule, acc, random_acc)


@pytest.mark.slow
def test_ste_mode(capsys):
  example = _load_example()
  example.main(["--mode", "ste", "--epochs", "1", "--limit-train", "3000",
                "--ste-sparsities", "0.9"])
  out = capsys.readouterr().out
  assert "| 0.90 | (30, 10) |" in out
