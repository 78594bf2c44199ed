# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""SparseGPT: one-shot pruning with optimal-brain-surgeon weight updates."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from sparsejax import masks as _masks
from sparsejax.oneshot import _common


def _inverse_hessian_factor(h: jax.Array) -> jax.Array:
  """Upper Cholesky factor ``U`` of ``H^-1`` (``H^-1 = U^T U``)."""
  lower = jnp.linalg.cholesky(h)
  eye = jnp.eye(h.shape[0], dtype=h.dtype)
  hinv = jax.scipy.linalg.cho_solve((lower, True), eye)
  return jnp.linalg.cholesky(hinv).T


def _prune_block(w1, keep1, u1, nm):
  """Processes the columns of one block left to right (rows = outputs).

  ``w1``: ``[rows, B]`` weights; ``keep1``: their keep-mask (chosen here for
  N:M); ``u1``: the ``[B, B]`` block of the factor. Returns the pruned block,
  its keep-mask and the scaled errors that update the columns to the right.
  """
  rows, width = w1.shape
  diag = jnp.diagonal(u1)

  def body(i, carry):
    w1, keep1, err1 = carry
    if nm is not None:
      n, m = nm
      start = (i // m) * m
      group = lax.dynamic_slice_in_dim(w1, start, m, axis=1)
      d = lax.dynamic_slice_in_dim(diag, start, m)
      saliency = jnp.square(group) / jnp.square(d)[None, :]
      chosen = _masks.n_m(saliency, n, m, axis=-1)
      updated = lax.dynamic_update_slice_in_dim(keep1, chosen, start, axis=1)
      keep1 = jnp.where(i % m == 0, updated, keep1)
    w = lax.dynamic_index_in_dim(w1, i, axis=1, keepdims=False)
    k = lax.dynamic_index_in_dim(keep1, i, axis=1, keepdims=False)
    q = jnp.where(k, w, jnp.zeros_like(w))
    err = (w - q) / u1[i, i]
    # U is upper triangular: row i touches only columns >= i.
    w1 = w1 - err[:, None] * u1[i][None, :]
    w1 = lax.dynamic_update_index_in_dim(w1, q, i, axis=1)
    err1 = lax.dynamic_update_index_in_dim(err1, err, i, axis=1)
    return w1, keep1, err1

  err1 = jnp.zeros((rows, width), w1.dtype)
  w1, keep1, err1 = lax.fori_loop(0, width, body, (w1, keep1, err1))
  return jnp.where(keep1, w1, jnp.zeros_like(w1)), keep1, err1


def sparsegpt(
    w: Any,
    x: Any,
    sparsity: Any,
    *,
    blocksize: int = 128,
    percdamp: float = 0.01,
    mask: Any = None,
    per_output: bool = False,
) -> tuple[jax.Array, jax.Array]:
  r"""SparseGPT: prunes a layer and updates its remaining weights.

  With the layer's calibration inputs ``x`` the Hessian of the squared
  reconstruction error is :math:`H = \frac{2}{N} X^\top X + \lambda I`
  (:math:`\lambda` = ``percdamp`` times the mean diagonal). Input columns are
  processed left to right in blocks of ``blocksize``: at the start of a
  block, every output keeps the weights of highest saliency
  :math:`w^2 / [H^{-1}]_{cc}^2` (unstructured: over the whole block; N:M:
  ``n`` of every ``m`` inputs), and each pruned weight's error
  :math:`w_c / [H^{-1}]_{cc}` is spread over the columns to its right by the
  optimal-brain-surgeon update, using the Cholesky factor of :math:`H^{-1}`
  (so that :math:`H^{-1}` of the remaining columns is never re-inverted).
  For the first column this is exactly
  :math:`\delta w = -(w_q / [H^{-1}]_{qq}) H^{-1}_{:, q}`. Inputs that are
  zero on every calibration token get their weights zeroed, as in the
  reference. With ``per_output=True`` (not in the reference) the
  unstructured selection compares within each output instead of over the
  whole block, Wanda's comparison group: every output keeps
  ``round((1 - sparsity) * blocksize)`` weights of every block, so each
  output unit is at the target when ``sparsity * blocksize`` is whole.

  Args:
    w: a kernel ``[in, out]``.
    x: calibration inputs ``[tokens, in]`` (leading dimensions are
      flattened).
    sparsity: a float in ``[0, 1)``, or an ``(n, m)`` pair for N:M (``m``
      must divide ``blocksize``).
    blocksize: columns per block (the paper's lazy batch and adaptive mask
      block, both 128).
    percdamp: the dampening, as a fraction of the mean diagonal of ``H``.
    mask: optional keep-mask ``[in, out]`` to use instead of choosing one
      (``sparsity`` is then only checked).
    per_output: unstructured sparsity only: choose the kept weights of each
      block per output (column of ``w``) instead of over the block.

  Returns:
    ``(w_pruned, mask)``: the compensated kernel, zero where pruned, and its
    bool keep-mask.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import sparsejax as sj
    >>> w = jax.random.normal(jax.random.key(0), (8, 3))
    >>> x = jax.random.normal(jax.random.key(1), (64, 8))
    >>> w2, mask = sj.sparsegpt(w, x, (2, 4), blocksize=8)
    >>> mask.reshape(2, 4, 3).sum(axis=1)
    Array([[2, 2, 2],
           [2, 2, 2]], dtype=int32)
    >>> bool(jnp.all((w2 != 0) == mask))
    True

  References:
    Frantar & Alistarh, `SparseGPT: Massive Language Models Can Be
    Accurately Pruned in One-Shot <https://arxiv.org/abs/2301.00774>`_, 2023
  """
  fraction, nm = _common.parse_sparsity(sparsity)
  w, x = _common.check_layer(w, x, nm)
  if isinstance(blocksize, bool) or not isinstance(blocksize, int) or (
      blocksize < 1):
    raise ValueError(f"`blocksize` must be a positive int, got {blocksize!r}.")
  if nm is not None and blocksize % nm[1]:
    raise ValueError(
        f"`blocksize` ({blocksize}) must be a multiple of m ({nm[1]}).")
  if not percdamp >= 0:
    raise ValueError(f"`percdamp` must be >= 0, got {percdamp!r}.")
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.shape != w.shape or mask.dtype != jnp.bool_:
      raise ValueError(
          f"`mask` must be a bool array of shape {w.shape}, got "
          f"{mask.dtype}{list(mask.shape)}.")
  return _sparsegpt(w, x, fraction=fraction, nm=nm, blocksize=blocksize,
                    percdamp=float(percdamp), mask=mask,
                    per_output=bool(per_output))


@functools.partial(
    jax.jit, static_argnames=("fraction", "nm", "blocksize", "percdamp",
                              "per_output"))
def _sparsegpt(w, x, *, fraction, nm, blocksize, percdamp, mask,
               per_output):
  dtype = w.dtype
  # Torch layout: rows are outputs, columns are inputs.
  wt = w.T.astype(jnp.float32)
  xf = x.astype(jnp.float32)
  h = 2.0 / xf.shape[0] * (xf.T @ xf)
  dead = jnp.diagonal(h) == 0
  h = jnp.where(jnp.diag(dead), 1.0, h)
  wt = jnp.where(dead[None, :], 0.0, wt)
  damp = percdamp * jnp.mean(jnp.diagonal(h))
  h = h + damp * jnp.eye(h.shape[0], dtype=h.dtype)
  u = _inverse_hessian_factor(h)
  keep_given = None if mask is None else mask.T
  rows, cols = wt.shape
  out_blocks, keep_blocks = [], []
  for i1 in range(0, cols, blocksize):
    i2 = min(i1 + blocksize, cols)
    w1 = wt[:, i1:i2]
    u1 = u[i1:i2, i1:i2]
    if keep_given is not None:
      keep1 = keep_given[:, i1:i2]
    elif nm is None:
      saliency = jnp.square(w1) / jnp.square(jnp.diagonal(u1))[None, :]
      if per_output:
        keep1 = _common.keep_per_column(
            saliency.T, _masks.budget(saliency.shape[1], fraction)).T
      else:
        keep1 = _masks.topk(saliency, _masks.budget(saliency.size, fraction))
    else:
      keep1 = jnp.zeros(w1.shape, jnp.bool_)
    q1, keep1, err1 = _prune_block(
        w1, keep1, u1, None if keep_given is not None else nm)
    out_blocks.append(q1)
    keep_blocks.append(keep1)
    if i2 < cols:
      wt = wt.at[:, i2:].add(-(err1 @ u[i1:i2, i2:]))
  pruned = jnp.concatenate(out_blocks, axis=1).T.astype(dtype)
  keep = jnp.concatenate(keep_blocks, axis=1).T
  return pruned, keep
