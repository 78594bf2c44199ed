# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul `x @ W`: the public function and its checks.

It chooses the implementation with `pallas_kernels._dispatch.backend` and
calls the custom VJP of `pallas_kernels.sparse_input.ops`.
"""

import numbers

import jax
import jax.numpy as jnp

from pallas_kernels import _dispatch
from pallas_kernels.sparse_input import gpu
from pallas_kernels.sparse_input import ops
from pallas_kernels.sparse_input import reference
from pallas_kernels.sparse_input import tpu

__all__ = ("sparse_input_matmul",)


def sparse_input_matmul(x: jax.Array, w: jax.Array, *,
                        block_rows: int | None = None,
                        implementation: str | None = None,
                        interpret=None) -> jax.Array:
  """`x @ w` computed from the rows of `w` that meet a nonzero of `x`.

  For activation-sparse inputs (ReLU, top-k, TEAL/CATS thresholds) most rows
  of `w` are multiplied by zeros. This op lists the columns of `x` that are
  nonzero in at least one row of the batch and multiplies only by those rows
  of `w`. The result equals `x @ w` (up to summation order) for every input:
  there is no capacity to overflow.

  Three implementations:

  * `"xla"` (the CPU default): a loop over the active rows, `block_rows`
    rows per step, with a trip count that follows the number of active
    rows. For a batch of at most 4 rows each step adds `x[:, j] * w[j]` for
    its rows as one fused elementwise pass that reads the rows of `w`
    straight from memory; larger batches gather each step's rows and call
    one dot, which shares the gather across the batch; above 70 % active
    rows that loop loses to the dense product, which is then used
    (`lax.cond` on the active count; one compiled function either way). The
    small-batch row sum stays within a few percent of dense even with every
    row active and runs on all cores. On a 2-core CPU with `w` of
    4096x4096 float32 the batch-1 op takes 0.20-0.25x the dense time at
    90 % sparsity; on the matrices of a Llama-shaped decoder (d=2048)
    about 0.54x at 50 % (`benchmarks/decode.py`).
  * `"pallas_gpu"` (the GPU default): a Triton split-K kernel in the style
    of TEAL; the active rows are listed in XLA and each program of the grid
    (output column tiles x K splits) loads only the rows of `w` of its share
    of active channels, `block_rows` (a power of two) per step, and
    accumulates in float32; XLA sums the splits (see
    `pallas_kernels.sparse_input.gpu`).
  * `"pallas_tpu"` (the TPU default): a Mosaic kernel over *row blocks* of
    `block_rows` rows (a multiple of 8; default one HBM tile: 8 rows for
    float32, 16 for bfloat16): the ids of the blocks that contain an active
    channel reach the index maps through scalar prefetch, one grid step per
    active block. For independent channels of sparsity `s` a fraction
    `1 - s**block_rows` of the blocks is active, much more than `1 - s`;
    clustered activations do better (see `pallas_kernels.sparse_input.tpu`).

  The gain is bounded by the *union* of the active columns over the batch:
  at batch 1 and 90 % sparsity it reads about a tenth of `w`; with 16 rows of
  independent 90 %-sparse patterns the union is about 81 % of the columns and
  nothing is saved. See `benchmarks/activation_sparsity.py`, and
  `benchmarks/sparse_input_roofline.py` for the accelerator roofline.

  Differentiable through a custom VJP, the same for every implementation:
  `dx = g @ w.T` (dense and exact; a zero activation still has a gradient)
  and `dw = x.T @ g` computed by the XLA loop only at the active rows,
  which are the only nonzero rows of `dw`.

  Args:
    x: activations, shape `(..., d)`; leading axes are flattened into one
      batch.
    w: weight, shape `(d, n)`.
    block_rows: a positive Python int, or `None` for the implementation's
      default. `"xla"`: active rows of `w` read per loop step (default 32
      for a batch of at most 4 rows, where the step is unrolled into one
      fused pass, so large values compile slowly: about 1 s for 128; 128
      above). `"pallas_gpu"`: active rows per kernel loop step, a power of
      two, at least 16 for a batch above 4 (default 32). `"pallas_tpu"`:
      rows per row block, a multiple of 8 (default 8 for 32-bit and 16 for
      16-bit `w`). In interpret mode the Pallas constraints are unchecked.
    implementation: `None` (by backend: `"pallas_gpu"` on GPU,
      `"pallas_tpu"` on TPU, `"xla"` elsewhere; with `interpret` set,
      `"pallas_tpu"` off GPU), `"xla"`, `"pallas_gpu"` or `"pallas_tpu"`.
      An explicit choice never checks the backend, so a CPU host can lower
      a Pallas path for its target with `jax.export`.
    interpret: for the Pallas paths, `True` (the HLO interpreter; the only
      mode that runs the GPU kernel on CPU) or
      `jax.experimental.pallas.tpu.InterpretParams()` (the TPU simulator,
      for the TPU kernel: it raises on out-of-bounds block indices) runs the
      kernel in interpret mode on any backend.

  Returns:
    `x @ w`, shape `(..., n)`, dtype promoted from `x` and `w`; the
    accumulation is in float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> from pallas_kernels import sparse_input_matmul
    >>> x = jnp.array([[0., 2., 0., 0.], [1., 0., 0., 0.]])
    >>> w = jnp.arange(12.).reshape(4, 3)
    >>> sparse_input_matmul(x, w, block_rows=1)
    Array([[ 6.,  8., 10.],
           [ 0.,  1.,  2.]], dtype=float32)
    >>> sparse_input_matmul(x, w, implementation="pallas_tpu",
    ...                     interpret=True).tolist()
    [[6.0, 8.0, 10.0], [0.0, 1.0, 2.0]]

  References:
    Liu et al, `Deja Vu: Contextual Sparsity for Efficient LLMs at Inference
    Time <https://arxiv.org/abs/2310.17157>`_, 2023.

    Liu et al, `Training-Free Activation Sparsity in Large Language Models
    <https://arxiv.org/abs/2408.14690>`_ (TEAL), 2024.
  """
  backend = _dispatch.backend(implementation, interpret)
  if block_rows is not None and (
      not isinstance(block_rows, numbers.Integral)
      or isinstance(block_rows, bool) or block_rows <= 0):
    raise ValueError(f"block_rows must be None or a positive int, got "
                     f"{block_rows!r}.")
  x = jnp.asarray(x)
  w = jnp.asarray(w)
  if w.ndim != 2:
    raise ValueError(f"w must be a matrix (d, n), got shape {w.shape}.")
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"x must have shape (..., {w.shape[0]}) to multiply w "
                     f"of shape {w.shape}, got {x.shape}.")
  for name, a in (("x", x), ("w", w)):
    if not jnp.issubdtype(a.dtype, jnp.floating):
      raise ValueError(f"{name} must be floating point, got {a.dtype}.")
  lead = x.shape[:-1]
  x2 = x.reshape(-1, x.shape[-1])
  if backend.is_pallas and 0 in x2.shape + w.shape:
    # Nothing to read; the kernels need at least one row and column.
    return jnp.dot(x2, w).reshape(lead + (w.shape[1],))
  if block_rows is None:
    block_rows = backend.select(
        xla=reference.default_block_rows(x2.shape[0]),
        pallas_tpu=tpu.default_block_rows(w.dtype),
        pallas_gpu=gpu.BLOCK_ROWS)
  if not backend.is_pallas:
    block_rows = min(int(block_rows), max(w.shape[0], 1))
  y = ops.matmul(x2, w, int(block_rows), backend)
  return y.reshape(lead + (w.shape[1],))
