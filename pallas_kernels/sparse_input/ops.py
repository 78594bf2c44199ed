# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul `x @ W` for activations with few nonzeros."""

import functools
import numbers

import jax
import jax.numpy as jnp

from pallas_kernels.sparse_input import reference

__all__ = ("sparse_input_matmul",)

_IMPLEMENTATIONS = ("xla",)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x, w, block_rows):
  idx, count = reference.active_rows(x, block_rows)
  return reference.forward(x, w, idx, count, block_rows=block_rows,
                           out_dtype=jnp.result_type(x, w))


def _matmul_fwd(x, w, block_rows):
  idx, count = reference.active_rows(x, block_rows)
  y = reference.forward(x, w, idx, count, block_rows=block_rows,
                        out_dtype=jnp.result_type(x, w))
  return y, (x, w, idx, count)


def _matmul_bwd(block_rows, res, g):
  x, w, idx, count = res
  # d x is dense: a zero activation still has the gradient g @ W_j^T.
  acc = jnp.promote_types(jnp.result_type(g, w), jnp.float32)
  dx = jnp.dot(g.astype(acc), w.T.astype(acc)).astype(x.dtype)
  dw = reference.weight_grad(x, g, idx, count, block_rows=block_rows,
                             d=w.shape[0], out_dtype=w.dtype)
  return dx, dw


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def sparse_input_matmul(x: jax.Array, w: jax.Array, *,
                        block_rows: int | None = None,
                        implementation: str | None = None) -> jax.Array:
  """`x @ w` computed from the rows of `w` that meet a nonzero of `x`.

  For activation-sparse inputs (ReLU, top-k, TEAL/CATS thresholds) most rows
  of `w` are multiplied by zeros. This op lists the columns of `x` that are
  nonzero in at least one row of the batch and multiplies only by those rows
  of `w`, `block_rows` rows per step of a loop whose trip count follows the
  number of active rows. The result equals `x @ w` (up to summation order)
  for every input: there is no capacity to overflow.

  For a batch of at most 4 rows each step adds `x[:, j] * w[j]` for its
  rows as one fused elementwise pass that reads the rows of `w` straight
  from memory; larger batches gather each step's rows and call one dot,
  which shares the gather across the batch. Above 70 % active rows both
  loops lose to the dense product, which is then used (`lax.cond` on the
  active count; one compiled function either way). On a 2-core CPU with `w`
  of 4096x4096 float32 the batch-1 op takes 0.20-0.25x the dense time at
  90 % sparsity.

  The gain is bounded by the *union* of the active columns over the batch:
  at batch 1 and 90 % sparsity it reads about a tenth of `w`; with 16 rows of
  independent 90 %-sparse patterns the union is about 81 % of the columns and
  nothing is saved. See `benchmarks/activation_sparsity.py`.

  Differentiable through a custom VJP: `dx = g @ w.T` (dense and exact; a
  zero activation still has a gradient) and `dw = x.T @ g` computed only at
  the active rows, which are the only nonzero rows of `dw`.

  Only an XLA implementation exists. A Pallas kernel would have to gather
  single rows of `w`, which is below the (8, 128) tile granularity of TPU
  DMAs and cannot be checked for speed without the hardware.

  Args:
    x: activations, shape `(..., d)`; leading axes are flattened into one
      batch.
    w: weight, shape `(d, n)`.
    block_rows: active rows of `w` read per loop step, a positive Python
      int, or `None` for the measured defaults: 8 for a batch of at most 4
      rows (the step is unrolled into one fused pass, so large values
      compile slowly: about 1 s for 128), 128 (one gather and one dot per
      step) above.
    implementation: `None` or `"xla"`.

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

  References:
    Liu et al, `Deja Vu: Contextual Sparsity for Efficient LLMs at Inference
    Time <https://arxiv.org/abs/2310.17157>`_, 2023.
  """
  if implementation not in (None,) + _IMPLEMENTATIONS:
    raise ValueError(f"implementation must be None or one of "
                     f"{_IMPLEMENTATIONS} (no Pallas path exists), got "
                     f"{implementation!r}.")
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
  if block_rows is None:
    block_rows = reference.default_block_rows(x2.shape[0])
  y = _matmul(x2, w, min(int(block_rows), max(w.shape[0], 1)))
  return y.reshape(lead + (w.shape[1],))
