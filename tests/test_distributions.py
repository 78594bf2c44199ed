# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-leaf budgets: ERK/ER against RigL's published LeNet-300-100 values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj

LENET = {
    "l1": {"kernel": jnp.zeros((784, 300)), "bias": jnp.zeros(300)},
    "l2": {"kernel": jnp.zeros((300, 100)), "bias": jnp.zeros(100)},
    "l3": {"kernel": jnp.zeros((100, 10)), "bias": jnp.zeros(10)},
}


def densities(sparsities):
  return [1 - sparsities[k]["kernel"] for k in ("l1", "l2", "l3")]


@pytest.mark.parametrize("target, want, nnz", [
    (0.9, [0.07957, 0.23019, 1.0], [18714, 6906, 1000]),
    (0.95, [0.03848, 0.11133, 0.91851], [9051, 3340, 919]),
    (0.98, [0.01539, 0.04453, 0.36740], [3621, 1336, 367]),
])
def test_erk_lenet_table(target, want, nnz):
  s = sj.distributions.erk(target)(LENET)
  assert s["l1"]["bias"] is None
  np.testing.assert_allclose(densities(s), want, atol=5e-6)
  got = [sj.masks.budget(LENET[k]["kernel"].size, s[k]["kernel"])
         for k in ("l1", "l2", "l3")]
  assert got == nnz
  assert sum(got) == round((1 - target) * 266200)


def test_erk_independent_closed_form():
  # Without promotion: density_l = eps * (n_in + n_out) / (n_in n_out), with
  # eps solving sum_l density_l n_l = (1 - s) sum_l n_l.
  shapes = [(64, 32), (32, 48)]
  params = [jnp.zeros(s) for s in shapes]
  raw = np.array([sum(s) / np.prod(s) for s in shapes])
  n = np.array([np.prod(s) for s in shapes], float)
  eps = 0.7 * n.sum() / (raw * n).sum()
  got = sj.distributions.erk(0.3)(params)
  np.testing.assert_allclose([1 - g for g in got], eps * raw, rtol=1e-12)


def test_erk_traced_matches_concrete():
  f = jax.jit(lambda s: densities(sj.distributions.erk(s)(LENET)))
  np.testing.assert_allclose(f(0.98), [0.01539, 0.04453, 0.36740], atol=1e-4)


def test_er_ignores_spatial_dims_and_power_scale_zero_is_uniform():
  params = [jnp.zeros((3, 3, 16, 32)), jnp.zeros((16, 32))]
  assert sj.distributions.er(0.5)(params) == pytest.approx([0.5, 0.5])
  k = sj.distributions.erk(0.5)(params)
  assert k[0] > k[1]  # ERK counts the 3x3 window, ER does not
  assert sj.distributions.erk(0.5, power_scale=0.0)(params) == pytest.approx(
      [0.5, 0.5])


def test_uniform_default_where_and_regex_and_callable():
  assert sj.distributions.uniform(0.5)(LENET)["l2"] == {
      "kernel": 0.5, "bias": None}
  s = sj.distributions.uniform(0.5, where=r"^l[12]/kernel$")(LENET)
  assert s["l3"]["kernel"] is None and s["l1"]["kernel"] == 0.5
  s = sj.distributions.uniform(
      0.5, where=lambda path, leaf: leaf.shape == (100, 10))(LENET)
  assert s["l3"]["kernel"] == 0.5 and s["l1"]["kernel"] is None


def test_where_drops_nnx_value_suffix():
  nnx = pytest.importorskip("flax.nnx")

  class Net(nnx.Module):
    def __init__(self):
      self.dense = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

  state = nnx.state(Net(), nnx.Param)
  paths = {p for p, _ in sj._tree.leaves_with_paths(state)}  # pylint: disable=protected-access
  assert paths == {"dense/kernel", "dense/bias"}
  s = sj.distributions.uniform(0.5, where="^dense/kernel$")(state)
  flat = [x for x in jax.tree.leaves(s)]
  assert flat == [0.5]


def test_by_path_rules():
  s = sj.distributions.by_path({"l3": 0.5, "bias": None}, default=0.9)(LENET)
  assert s["l3"]["kernel"] == 0.5 and s["l1"]["kernel"] == 0.9
  assert s["l1"]["bias"] is None


def test_errors():
  with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\)"):
    sj.distributions.erk(1.0)
  with pytest.raises(ValueError, match="`sparsity` must be in"):
    sj.distributions.uniform(float("nan"))
  with pytest.raises(ValueError, match="distribution"):
    sj.distributions.resolve("erx", 0.5)
  with pytest.raises(ValueError, match=r"leaf 'step'.*int32"):
    sj.distributions.uniform(0.5, where=".*")({"step": jnp.zeros((2, 2),
                                                                 jnp.int32)})
  with pytest.raises(ValueError, match="regular expression"):
    sj.distributions.uniform(0.5, where="(")(LENET)
