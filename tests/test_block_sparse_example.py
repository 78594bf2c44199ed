# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/block_sparse.py on the small digits data: train, convert, check."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent
                       / "examples"))
import block_sparse as example  # noqa: E402  (examples/block_sparse.py)
import datasets  # noqa: E402  (examples/datasets.py)

from sparsejax.nn import BlockSparseLinear  # noqa: E402


@pytest.mark.slow
def test_example_runs_and_block_sparse_model_predicts_the_same():
  data = datasets.load_digits_split()
  logs = []
  out = example.run(data, sparsity=0.5, epochs=1, batch_size=64, rounds=1,
                    log=logs.append)
  assert out["identical_predictions"]
  assert out["max_logit_diff"] < 1e-3
  # 50 % of fc2's 8 x 8 blocks pruned; fc1 (128 x 1024 after padding) has
  # 1 x 8 blocks, of which 4 are kept.
  assert out["kept_blocks"] == {"fc1": 0.5, "fc2": 0.5}
  assert out["accuracy_sparse"] > 0.5  # 10 classes: chance is 0.1
  assert any("identical predictions" in line for line in logs)


def test_convert_builds_block_sparse_layers():
  from flax import nnx
  import jax.numpy as jnp
  model = example.MLP(128, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  masks = {}
  for name, (k, n) in (("fc1", (128, 1024)), ("fc2", (1024, 1024))):
    grid = rng.random((k // 128, n // 128)) < 0.5
    elem = np.kron(grid, np.ones((128, 128))).astype(bool)
    lin = getattr(model, name)
    lin.kernel.set_value(lin.kernel[...] * elem)
    masks[name] = {"kernel": jnp.asarray(elem)}
  sparse = example.convert(model, masks)
  assert isinstance(sparse.fc1, BlockSparseLinear)
  assert isinstance(sparse.fc2, BlockSparseLinear)
  x = jnp.asarray(rng.standard_normal((16, 128)), jnp.float32)
  np.testing.assert_allclose(sparse(x), model(x), rtol=1e-4, atol=1e-4)
