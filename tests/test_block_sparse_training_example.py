# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/block_sparse_training.py on the small digits data."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent
                       / "examples"))
import block_sparse_training as example  # noqa: E402
import datasets  # noqa: E402  (examples/datasets.py)


# Two example training runs (about 30 s): slow.
@pytest.mark.slow
def test_example_kernel_and_masked_runs_agree():
  data = datasets.load_digits_split()
  logs = []
  out = example.run(data, sparsity=0.5, block=(8, 8), hidden=64, epochs=2,
                    batch_size=64, lr=1e-2, update_every=5, log=logs.append)
  assert out["same_masks"]
  assert abs(out["kernel"]["accuracy"] - out["masked"]["accuracy"]) < 0.02
  assert out["kernel"]["accuracy"] > 0.5  # 10 classes: chance is 0.1
  assert out["ratio"] > 0
  assert any("median ordinary step" in line for line in logs)
