# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/fashion_mnist.py with the drop-and-grow methods.

Runs the example's ``main`` on scikit-learn's digits written as IDX files,
two epochs, and checks the budgets it reports and the record of mask updates
behind the "connections changed" panel against the masks themselves.
"""

import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("matplotlib")

from test_fashion_mnist_example import digits_dir  # noqa: F401  pylint: disable=unused-import
from test_fashion_mnist_example import example


@pytest.mark.parametrize(
    "method", ["rigl", pytest.param("set", marks=pytest.mark.slow)])
def test_example_runs_dst_method(method, digits_dir, tmp_path):  # noqa: F811
  out = tmp_path / "out"
  results = example.main([
      "--method", method, "--sparsity", "0.8", "--epochs", "2",
      "--data-dir", str(digits_dir), "--out", str(out), "--no-progress"])
  assert (out / f"fashion_mnist_{method}.png").stat().st_size > 0
  saved = json.loads((out / f"fashion_mnist_{method}.json").read_text())
  history = saved["history"]
  steps = history["mask_update_step"]
  assert steps and steps == sorted(steps)
  layers = [r for r in results["layers"] if len(r["shape"]) == 2]
  # Drop-and-grow keeps the ERK budgets at 80%; the reported nonzeros can be
  # fewer (a weight grown from an always-zero input pixel stays 0).
  nnz = sum(r["nnz"] for r in layers)
  budget = round(0.2 * sum(r["size"] for r in layers))
  assert 0.9 * budget <= nnz <= budget
  # RigL replaces at most 30% of a layer; SET also drops every active
  # weight that is exactly zero.
  limit = 0.3 + 1e-6 if method == "rigl" else 1.0
  for changed in history["changed"]:
    assert set(changed) == {r["path"] for r in layers}
    assert all(0.0 <= v <= limit for v in changed.values())
  if method == "rigl":
    # RigL's first update replaces floor(0.3 * nnz) connections of a layer
    # (grow by gradient, the dropped ones are not re-grown unless tied).
    assert max(history["changed"][0].values()) > 0.1
  assert np.isfinite(saved["test_accuracy"])
