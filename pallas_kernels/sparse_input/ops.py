# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul: the custom VJP of ``x @ w``.

The forward pass runs the chosen implementation; the backward pass is the
same for all three: ``dx = g @ w.T`` (dense and exact: a zero activation
still has a gradient) and ``dw = x.T @ g`` by the XLA loop over the active
rows, the only nonzero rows of ``dw``. The public function with its argument
checks is in :mod:`pallas_kernels.sparse_input.api`.
"""

import functools

import jax
import jax.numpy as jnp

from pallas_kernels.sparse_input import gpu
from pallas_kernels.sparse_input import reference
from pallas_kernels.sparse_input import tpu

__all__ = ("matmul",)


# Each forward returns ``(y, listing)``: the active rows ``(idx, count)`` it
# listed in XLA, or None where the kernel lists row blocks itself.


def _xla_forward(x, w, *, block_rows, out_dtype):
  idx, count = reference.active_rows(x, block_rows)
  return reference.forward(x, w, idx, count, block_rows=block_rows,
                           out_dtype=out_dtype), (idx, count)


def _gpu_forward(x, w, *, block_rows, out_dtype, interpret):
  idx, count = reference.active_rows(x, block_rows)
  return gpu.matmul(x, w, idx, count, block_rows=block_rows,
                    out_dtype=out_dtype, interpret=interpret), (idx, count)


def _tpu_forward(x, w, *, block_rows, out_dtype, interpret):
  return tpu.matmul(x, w, block_rows=block_rows, out_dtype=out_dtype,
                    interpret=interpret), None


def _forward(x, w, block_rows, backend):
  kernel = backend.kernel(xla=_xla_forward, pallas_tpu=_tpu_forward,
                          pallas_gpu=_gpu_forward)
  return kernel(x, w, block_rows=block_rows, out_dtype=jnp.result_type(x, w))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def matmul(x, w, block_rows, backend):
  return _forward(x, w, block_rows, backend)[0]


def _matmul_fwd(x, w, block_rows, backend):
  y, listing = _forward(x, w, block_rows, backend)
  # The XLA forward's active-row listing is reused by the backward pass.
  return y, (x, w, None if backend.is_pallas else listing)


def _matmul_bwd(block_rows, backend, res, g):
  x, w, listing = res
  if backend.is_pallas:
    # The kernels' block_rows mean something else; list rows for XLA.
    block_rows = min(reference.default_block_rows(x.shape[0]), w.shape[0])
    listing = reference.active_rows(x, block_rows)
  idx, count = listing
  # d x is dense: a zero activation still has the gradient g @ W_j^T.
  acc = jnp.promote_types(jnp.result_type(g, w), jnp.float32)
  dx = jnp.dot(g.astype(acc), w.T.astype(acc)).astype(x.dtype)
  dw = reference.weight_grad(x, g, idx, count, block_rows=block_rows,
                             d=w.shape[0], out_dtype=w.dtype)
  return dx, dw


matmul.defvjp(_matmul_fwd, _matmul_bwd)
