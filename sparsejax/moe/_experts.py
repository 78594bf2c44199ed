# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Expert MLPs on either dispatch layout: grouped rows or a padded buffer."""

import jax
import jax.numpy as jnp

import pallas_kernels


def _gmm(lhs, rhs, group_sizes, implementation, interpret):
  """Grouped matmul: rows of group g of ``lhs [m, k]`` times ``rhs[g]``.

  The one place the MoE code calls a grouped matmul: the Pallas kernel on
  TPU, XLA's ``ragged_dot`` elsewhere, both under a custom VJP whose weight
  gradient is ``tgmm``. Rows past ``sum(group_sizes)`` come out zero.
  """
  return pallas_kernels.gmm(lhs, rhs, group_sizes,
                            implementation=implementation,
                            interpret=interpret)


def _row_experts(group_sizes, num_rows):
  # Rows past sum(group_sizes) repeat the last expert; they are dropped slots
  # and the combine step ignores them.
  return jnp.repeat(jnp.arange(group_sizes.shape[0]), group_sizes,
                    total_repeat_length=num_rows)


def expert_mlp(x, w_in, w_out, *, group_sizes=None, b_in=None, b_out=None,
               activation=jax.nn.gelu, implementation=None, interpret=None):
  """E two-layer MLPs ``activation(x W_in[e] + b_in[e]) W_out[e] + b_out[e]``.

  With ``group_sizes`` the input is the dropless layout of
  :func:`sort_dispatch` (rows grouped by expert) and both layers are grouped
  matmuls (:func:`pallas_kernels.gmm`); without it, the ``[E, C, d]`` buffer
  of :func:`capacity_dispatch` and both layers are batched einsums.

  Args:
    x: ``[N, d]`` rows grouped by expert, or a ``[E, C, d]`` buffer.
    w_in: ``[E, d, h]``.
    w_out: ``[E, h, n]``.
    group_sizes: int ``[E]`` rows per expert, or None for the buffer layout.
    b_in: optional ``[E, h]``.
    b_out: optional ``[E, n]``.
    activation: elementwise nonlinearity.
    implementation: the grouped-matmul kernel, as in
      :func:`pallas_kernels.gmm` (None: by backend).
    interpret: Pallas interpret mode, as in :func:`pallas_kernels.gmm`.

  Returns:
    ``[N, n]`` or ``[E, C, n]``, matching ``x``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> w_in = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
    >>> x = jnp.ones((3, 2))
    >>> moe.expert_mlp(x, w_in, w_in, group_sizes=jnp.array([1, 2]),
    ...                activation=lambda h: h)
    Array([[1., 1.],
           [4., 4.],
           [4., 4.]], dtype=float32)

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with
    Mixture-of-Experts <https://arxiv.org/abs/2211.15841>`_, 2022.
  """
  x, w_in, w_out = jnp.asarray(x), jnp.asarray(w_in), jnp.asarray(w_out)
  if w_in.ndim != 3 or w_out.ndim != 3 or w_in.shape[0] != w_out.shape[0] or (
      w_in.shape[2] != w_out.shape[1]):
    raise ValueError(f"w_in and w_out must have shapes [E, d, h] and "
                     f"[E, h, n], got {w_in.shape} and {w_out.shape}")
  num_experts = w_in.shape[0]
  for name, b, size in (("b_in", b_in, w_in.shape[2]),
                        ("b_out", b_out, w_out.shape[2])):
    if b is not None and jnp.shape(b) != (num_experts, size):
      raise ValueError(f"{name} must have shape {(num_experts, size)}, got "
                       f"{jnp.shape(b)}")
  if group_sizes is None:
    if x.ndim != 3 or x.shape[0] != num_experts or x.shape[2] != w_in.shape[1]:
      raise ValueError(f"x must have shape [{num_experts}, C, {w_in.shape[1]}]"
                       f" without group_sizes, got {x.shape}")
    h = jnp.einsum("ecd,edh->ech", x, w_in)
    if b_in is not None:
      h = h + b_in[:, None, :]
    y = jnp.einsum("ech,ehn->ecn", activation(h), w_out)
    if b_out is not None:
      y = y + b_out[:, None, :]
    return y
  group_sizes = jnp.asarray(group_sizes)
  if group_sizes.shape != (num_experts,):
    raise ValueError(f"group_sizes must have shape ({num_experts},), got "
                     f"{group_sizes.shape}")
  if x.ndim != 2 or x.shape[1] != w_in.shape[1]:
    raise ValueError(f"x must have shape [N, {w_in.shape[1]}] with "
                     f"group_sizes, got {x.shape}")
  rows = None
  if b_in is not None or b_out is not None:
    rows = _row_experts(group_sizes, x.shape[0])
  h = _gmm(x, w_in, group_sizes, implementation, interpret)
  if b_in is not None:
    h = h + jnp.take(b_in, rows, axis=0)
  y = _gmm(activation(h), w_out, group_sizes, implementation, interpret)
  if b_out is not None:
    y = y + jnp.take(b_out, rows, axis=0)
  return y
