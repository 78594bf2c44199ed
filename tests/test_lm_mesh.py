# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/lm.py --mesh: sharded RigL training equals the one-device run."""

import pathlib
import sys

import jax
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax._tree import leaves_with_paths

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm  # noqa: E402
import text_data  # noqa: E402

# 6 steps, masks updated at steps 2 and 4 (RigL's end_step is 4).
_ARGS = ["--method", "rigl", "--sparsity", "0.5", "--steps", "6",
         "--update-every", "2", "--tiny", "--val-windows", "16",
         "--eval-every", "6"]


def _adam_states(opt_state):
  return [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)]


def _same(x, sharding):
  # P(None, 'model') and P(None, 'model', None) lay out the same.
  return x.sharding.is_equivalent_to(sharding, x.ndim)


def test_parse_mesh():
  assert lm.parse_mesh("data=4,model=2") == {"data": 4, "model": 2}
  assert lm.parse_mesh("model=8") == {"data": 1, "model": 8}
  with pytest.raises(ValueError, match="--mesh"):
    lm.parse_mesh("data=4,tensor=2")


@pytest.mark.slow  # 35 s alone, 2 min on a shared CPU
def test_sharded_rigl_matches_one_device(tmp_path):
  assert jax.device_count() >= 8, "the root conftest.py gives 8 CPU devices"
  data = text_data.load_text(verbose=False)
  one = lm.train(lm.parse_args(_ARGS + ["--out", str(tmp_path / "one")]),
                 data, keep_state=True)
  mesh = lm.train(lm.parse_args(_ARGS + ["--out", str(tmp_path / "mesh"),
                                         "--mesh", "data=4,model=2"]),
                  data, keep_state=True)
  assert mesh["mesh"] == {"data": 4, "model": 2}
  np.testing.assert_allclose(mesh["history"]["loss"],
                             one["history"]["loss"], rtol=2e-5)
  masks_one = sj.get_masks(one["opt_state"])
  masks = sj.get_masks(mesh["opt_state"])
  shardings = mesh["param_shardings"]
  flat_s = dict(leaves_with_paths(shardings))
  flat_one = dict(leaves_with_paths(masks_one))
  n = 0
  for path, m in leaves_with_paths(masks):
    if m is None:
      continue
    n += 1
    np.testing.assert_array_equal(np.asarray(m),
                                  np.asarray(flat_one[path]))
    assert _same(m, flat_s[path]), path
  assert n == 7  # q, k, v, o, gate, up, down (stacked)
  # The tensor-parallel axis is used: q's heads and the FFN width.
  assert flat_s["blocks/q/kernel"].spec == jax.P(None, None, "model", None)
  assert flat_s["blocks/gate/kernel"].spec == jax.P(None, None, "model")
  for path, p in leaves_with_paths(mesh["params"]):
    assert _same(p, flat_s[path]), path
  for adam in _adam_states(mesh["opt_state"]):
    for slot in (adam.mu, adam.nu):
      for path, x in leaves_with_paths(slot):
        assert _same(x, flat_s[path]), path
