# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The one backend-dispatch rule shared by every kernel family."""

import functools

import jax
from jax.experimental.pallas import tpu as pltpu
import jax.numpy as jnp
import pytest

from pallas_kernels import BlockSparseMatrix
from pallas_kernels import _dispatch
from pallas_kernels import block_sparse_matmul
from pallas_kernels import gmm
from pallas_kernels import sparse_input_matmul
from pallas_kernels import tgmm


def _calls():
  """One small call of every public kernel, taking the two options."""
  x = jnp.ones((2, 4))
  w = BlockSparseMatrix.from_dense(jnp.ones((4, 4)), (2, 2),
                                   jnp.eye(2, dtype=bool))
  sizes = jnp.array([1, 1], jnp.int32)
  return {
      "gmm": functools.partial(gmm, x, jnp.ones((2, 4, 3)), sizes),
      "tgmm": functools.partial(tgmm, x, x, sizes),
      "block_sparse_matmul": functools.partial(block_sparse_matmul, x, w),
      "sparse_input_matmul": functools.partial(sparse_input_matmul, x,
                                               jnp.ones((4, 3))),
  }


def test_automatic_choice_on_this_cpu_is_the_xla_reference():
  assert jax.default_backend() == "cpu"
  assert _dispatch.resolve(None) == "xla"
  assert _dispatch.backend() == _dispatch.Backend("xla", False)
  assert _dispatch.backend(None, False) == _dispatch.Backend("xla", False)


@pytest.mark.parametrize("platform,automatic,interpreted", [
    ("cpu", "xla", "pallas_tpu"),
    ("tpu", "pallas_tpu", "pallas_tpu"),
    ("gpu", "pallas_gpu", "pallas_gpu"),
])
def test_automatic_choice_by_backend(monkeypatch, platform, automatic,
                                     interpreted):
  monkeypatch.setattr(jax, "default_backend", lambda: platform)
  assert _dispatch.resolve(None) == automatic
  assert _dispatch.resolve(None, interpret=True) == interpreted
  assert _dispatch.resolve(None, pltpu.InterpretParams()) == interpreted
  for name in _dispatch.IMPLEMENTATIONS:  # an explicit name is kept
    assert _dispatch.resolve(name) == name


@pytest.mark.parametrize("bad", ["cuda", "triton", "XLA", ""])
def test_unknown_implementation_names_the_argument(bad):
  with pytest.raises(ValueError, match="implementation must be None or one"):
    _dispatch.backend(bad)
  for name, call in _calls().items():
    with pytest.raises(ValueError, match="implementation"):
      call(implementation=bad)
    assert call(implementation="xla").shape, name


@pytest.mark.parametrize("interpret", [True, pltpu.InterpretParams()])
def test_interpret_with_xla_names_the_argument(interpret):
  with pytest.raises(ValueError, match="interpret"):
    _dispatch.backend("xla", interpret)
  for call in _calls().values():
    with pytest.raises(ValueError, match="interpret"):
      call(implementation="xla", interpret=interpret)


def test_interpret_is_forwarded_to_pallas_kernels_only():
  def pallas(a, *, interpret):
    return a, interpret

  params = pltpu.InterpretParams()
  for name in ("pallas_tpu", "pallas_gpu"):
    kernels = dict(xla=None, pallas_tpu=None, pallas_gpu=None)
    kernels[name] = pallas
    for given, bound in ((None, False), (False, False), (True, True),
                         (params, params)):
      b = _dispatch.backend(name, given)
      assert b.interpret is bound or b.interpret == bound
      assert b.kernel(**kernels)(1) == (1, bound)
  b = _dispatch.backend("xla")
  assert b.kernel(xla=abs, pallas_tpu=pallas, pallas_gpu=pallas) is abs
  assert b.select(xla=1, pallas_tpu=2, pallas_gpu=3) == 1
  assert not b.is_pallas and _dispatch.backend("pallas_gpu").is_pallas


def test_backend_is_a_static_argument():
  # The families pass it through jax.custom_vjp's nondiff_argnums.
  a = _dispatch.backend("pallas_tpu", pltpu.InterpretParams())
  assert hash(a) == hash(_dispatch.backend("pallas_tpu",
                                           pltpu.InterpretParams()))
