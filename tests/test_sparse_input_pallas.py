# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""sparse_input_matmul, Pallas paths: interpret-mode numerics and lowering.

The TPU kernel runs in the TPU simulator (`pltpu.InterpretParams()`), which
raises on out-of-bounds block indices and output blocks revisited out of
order. The GPU (Triton) kernel gathers rows at a vector of indices, which
the simulator does not support; it runs under `interpret=True`, which
clamps out-of-bounds indices silently, so its index arithmetic
(`gpu.split_range`) is checked separately. Both are compared with the XLA
implementation, and lowered for `tpu` / `cuda` with `jax.export`.
"""

import jax
import jax.numpy as jnp
from jax.experimental.pallas import tpu as pltpu
from jax.test_util import check_grads
import numpy as np
import pytest

from pallas_kernels import sparse_input_matmul
from pallas_kernels.sparse_input import gpu
from pallas_kernels.sparse_input import reference
from pallas_kernels.sparse_input import tpu

STRICT = pltpu.InterpretParams()
MODES = {"pallas_tpu": STRICT, "pallas_gpu": True}


@pytest.fixture(autouse=True)
def _reset_simulator():
  yield
  pltpu.reset_tpu_interpret_mode_state()


def _inputs(seed, b, d, n, sparsity, dtype):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((b, d)) * (rng.random((b, d)) >= sparsity)
  w = rng.standard_normal((d, n))
  return jnp.asarray(x, dtype), jnp.asarray(w, dtype)


def _close(got, want, dtype):
  got = np.asarray(got, np.float32)
  want = np.asarray(want, np.float32)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  scale = max(1.0, float(np.abs(want).max(initial=0.0)))
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# Batch 1 and 3 take the elementwise bodies, 12 the dot bodies of both
# kernels; the remaining two combinations run in the slow tier.
_FAST = [(1, jnp.float32), (1, jnp.bfloat16), (3, jnp.bfloat16),
         (12, jnp.float32)]
_SLOW = [pytest.param(3, jnp.float32, marks=pytest.mark.slow),
         pytest.param(12, jnp.bfloat16, marks=pytest.mark.slow)]


@pytest.mark.parametrize("impl", list(MODES))
@pytest.mark.parametrize("b,dtype", _FAST + _SLOW)
def test_interpret_matches_xla(impl, b, dtype):
  # Random shapes (d not a multiple of the row blocks, n not a multiple of
  # the GPU column tile) at 0, 50, 90 and 100 % sparsity, one jit per case.
  rng = np.random.default_rng(b)
  block_rows = 16 if impl == "pallas_gpu" else None
  f = jax.jit(lambda x, w: sparse_input_matmul(
      x, w, block_rows=block_rows, implementation=impl,
      interpret=MODES[impl]))
  ref = jax.jit(lambda x, w: sparse_input_matmul(x, w, implementation="xla"))
  for i, sparsity in enumerate((0.0, 0.5, 0.9, 1.0)):
    d, n = int(rng.integers(20, 90)), int(rng.integers(100, 300))
    x, w = _inputs(10 * b + i, b, d, n, sparsity, dtype)
    y = f(x, w)
    assert y.dtype == dtype and y.shape == (b, n)
    _close(y, ref(x, w), dtype)
    if sparsity == 1.0:
      np.testing.assert_array_equal(np.asarray(y, np.float32), 0.0)


@pytest.mark.parametrize("impl", list(MODES))
def test_clustered_blocks_and_gpu_splits(impl):
  # Active channels in a few runs (the TPU kernel then skips most row
  # blocks) and explicit K splits and column tiles for the GPU kernel.
  x, w = _inputs(5, 2, 200, 256, 0.0, jnp.float32)
  keep = np.zeros(200, bool)
  keep[[3, 4, 40, 41, 42, 150, 199]] = True
  x = x * keep
  if impl == "pallas_gpu":
    idx, count = reference.active_rows(x, 8)
    y = gpu.matmul(x, w, idx, count, block_rows=8, block_cols=64, splits=5,
                   interpret=True)
  else:
    ids, count = tpu.active_blocks(x, 8)
    assert int(count) == 4  # blocks 0, 5, 18 and 24 of 25
    y = tpu.matmul(x, w, block_rows=8, interpret=STRICT)
  _close(y, x @ w, jnp.float32)


@pytest.mark.parametrize("impl", list(MODES))
def test_batch_above_one_gpu_batch_tile(impl):
  # 70 rows: two GPU batch tiles of 64 (padded to 128 rows).
  x, w = _inputs(8, 70, 40, 64, 0.5, jnp.float32)
  y = sparse_input_matmul(x, w, block_rows=16, implementation=impl,
                          interpret=MODES[impl])
  _close(y, x @ w, jnp.float32)


@pytest.mark.parametrize("blocks_per_step", [1, 3])
def test_tpu_blocks_per_step(blocks_per_step):
  # About 14 of 25 row blocks active: several steps and a partial last one.
  x, w = _inputs(6, 1, 200, 128, 0.9, jnp.float32)
  ids, count = tpu.active_blocks(x, 8, blocks_per_step)
  ids, count = np.asarray(ids), int(count)
  assert count > 2 * blocks_per_step
  assert blocks_per_step == 1 or count % blocks_per_step  # a partial step
  assert len(ids) % blocks_per_step == 0 and ids.max() < 25
  active = np.asarray(jnp.any(x != 0, 0)).reshape(25, 8).any(1)
  np.testing.assert_array_equal(ids[:count], np.flatnonzero(active))
  last = -(-count // blocks_per_step) * blocks_per_step
  for p in range(count, last):  # idle copies keep their previous block
    assert ids[p] == ids[p - blocks_per_step]
  y = tpu.matmul(x, w, block_rows=8, blocks_per_step=blocks_per_step,
                 interpret=STRICT)
  _close(y, x @ w, jnp.float32)


def test_strict_simulator_catches_a_bad_block_table(monkeypatch):
  # The TPU numerics above mean something because the simulator rejects an
  # out-of-bounds block id (plain interpret=True would clamp it).
  listing = tpu.active_blocks

  def shifted(x, block_rows, blocks_per_step=1):
    ids, count = listing(x, block_rows, blocks_per_step)
    return ids + ids.shape[0], count

  monkeypatch.setattr(tpu, "active_blocks", shifted)
  x, w = _inputs(2, 1, 32, 128, 0.0, jnp.float32)
  with pytest.raises(Exception, match="(?i)out[- ]of[- ]bounds"):
    jax.block_until_ready(tpu.matmul(x, w, block_rows=8, interpret=STRICT))


@pytest.mark.parametrize("block_rows", [1, 8, 16])
@pytest.mark.parametrize("splits", [1, 3, 16])
def test_gpu_split_ranges_tile_the_list_in_bounds(block_rows, splits):
  # interpret=True would clamp an out-of-bounds index silently: check that
  # the splits cover [0, count) exactly once and load within the list.
  for d in (1, 5, 37, 64):
    length = -(-d // block_rows) * block_rows
    for count in range(d + 1):
      seen = np.zeros(count, int)
      for s in range(splits):
        lo, hi, steps = (int(v) for v in gpu.split_range(
            np.int32(count), s, splits, block_rows))
        if steps:
          assert lo % block_rows == 0
          assert lo + steps * block_rows <= length
          assert (steps - 1) * block_rows < hi - lo <= steps * block_rows
          seen[lo:hi] += 1
      np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("impl", list(MODES))
def test_gradients_match_xla(impl):
  x, w = _inputs(3, 3, 40, 130, 0.5, jnp.float32)
  g = jnp.asarray(np.random.default_rng(0).standard_normal((3, 130)),
                  jnp.float32)

  def grads(implementation, interpret):
    loss = lambda x, w: jnp.vdot(g, sparse_input_matmul(
        x, w, implementation=implementation, interpret=interpret))
    return jax.jit(jax.grad(loss, (0, 1)))(x, w)

  for got, want in zip(grads(impl, MODES[impl]), grads("xla", None)):
    _close(got, want, jnp.float32)
  dw = grads(impl, MODES[impl])[1]
  inactive = ~np.asarray(jnp.any(x != 0, axis=0))
  np.testing.assert_array_equal(np.asarray(dw)[inactive], 0.0)


def test_check_grads_through_the_tpu_kernel():
  x, w = _inputs(4, 2, 24, 128, 0.5, jnp.float32)
  f = lambda x, w: sparse_input_matmul(x, w, implementation="pallas_tpu",
                                       interpret=True)
  check_grads(f, (x, w), order=1, modes=("rev",), eps=1e-2, atol=1e-2,
              rtol=1e-2)


def test_dispatch_and_argument_checks():
  x, w = _inputs(0, 2, 16, 128, 0.5, jnp.float32)
  text = str(jax.make_jaxpr(lambda x, w: sparse_input_matmul(x, w))(x, w))
  assert "pallas_call" not in text  # CPU default: XLA
  text = str(jax.make_jaxpr(lambda x, w: sparse_input_matmul(
      x, w, interpret=True))(x, w))
  assert "sparse_input_row_blocks" in text  # interpret: the TPU kernel
  with pytest.raises(ValueError, match="implementation"):
    sparse_input_matmul(x, w, implementation="triton")
  with pytest.raises(ValueError, match="interpret"):
    sparse_input_matmul(x, w, implementation="xla", interpret=True)
  spec = (jax.ShapeDtypeStruct((1, 256), jnp.float32),
          jax.ShapeDtypeStruct((256, 128), jnp.float32))
  with pytest.raises(ValueError, match="multiple of 8"):
    jax.export.export(jax.jit(lambda x, w: sparse_input_matmul(
        x, w, block_rows=12, implementation="pallas_tpu")),
                      platforms=["tpu"])(*spec)
  with pytest.raises(ValueError, match="power of two"):
    jax.export.export(jax.jit(lambda x, w: sparse_input_matmul(
        x, w, block_rows=24, implementation="pallas_gpu")),
                      platforms=["cuda"])(*spec)
  # Empty operands never reach a kernel.
  for impl, mode in MODES.items():
    y = sparse_input_matmul(jnp.ones((0, 16)), w, implementation=impl,
                            interpret=mode)
    assert y.shape == (0, 128)


def _export(impl, d, n, backward, b=1, dtype=jnp.bfloat16):
  platform = "tpu" if impl == "pallas_tpu" else "cuda"
  checks = ([jax.export.DisabledSafetyCheck.custom_call(
      gpu.TRITON_CALL_TARGET)] if platform == "cuda" else [])

  def fwd(x, w):
    return sparse_input_matmul(x, w, implementation=impl)

  def fwd_bwd(x, w):
    y, vjp = jax.vjp(fwd, x, w)
    return vjp(y)

  exp = jax.export.export(jax.jit(fwd_bwd if backward else fwd),
                          platforms=[platform], disabled_checks=checks)(
                              jax.ShapeDtypeStruct((b, d), dtype),
                              jax.ShapeDtypeStruct((d, n), dtype))
  return exp.mlir_module()


@pytest.mark.parametrize("d,n,backward", [(4096, 11008, False),
                                          (11008, 4096, False),
                                          (4096, 4096, True)])
def test_export_tpu_kernel(d, n, backward):
  text = _export("pallas_tpu", d, n, backward)
  assert text.count("tpu_custom_call") == 1  # the backward pass is XLA
  assert "sparse_input_row_blocks" in text


@pytest.mark.parametrize("d,n,backward", [(4096, 11008, False),
                                          (11008, 4096, False),
                                          (4096, 4096, True)])
def test_export_gpu_kernel(d, n, backward):
  text = _export("pallas_gpu", d, n, backward)
  assert text.count(gpu.TRITON_CALL_TARGET) == 1


@pytest.mark.parametrize("impl", list(MODES))
def test_export_batched_bodies(impl):
  # The dot bodies (batch above the elementwise limit) lower too.
  text = _export(impl, 4096, 4096, False, b=16)
  assert ("tpu_custom_call" in text) or (gpu.TRITON_CALL_TARGET in text)
