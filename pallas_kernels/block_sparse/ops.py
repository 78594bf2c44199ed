# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""`block_sparse_matmul`: the custom VJP and the dispatch over implementations.

Forward ``y = x @ W``; backward ``dx = dy @ W.T`` through the transposed
topology and ``dW`` only at the stored blocks (``sdd``), as stk and MegaBlocks
do (research/kernels.md, sections 3.1 and 7). The integer leaves of the
``BlockSparseMatrix`` get ``float0`` cotangents.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.block_sparse import reference
from pallas_kernels.block_sparse.format import BlockSparseMatrix

__all__ = ("block_sparse_matmul",)

_IMPLEMENTATIONS = ("xla", "pallas_tpu", "pallas_gpu")


def _resolve(implementation, interpret):
  if implementation is not None and implementation not in _IMPLEMENTATIONS:
    raise ValueError(
        f"implementation must be None or one of {_IMPLEMENTATIONS}, got "
        f"{implementation!r}.")
  if implementation == "xla" and interpret not in (None, False):
    raise ValueError(
        "interpret applies to the Pallas implementations only, not 'xla'.")
  if implementation is not None:
    return implementation
  backend = jax.default_backend()
  if interpret not in (None, False):
    return "pallas_gpu" if backend == "gpu" else "pallas_tpu"
  if backend == "tpu":
    return "pallas_tpu"
  if backend == "gpu":
    return "pallas_gpu"
  return "xla"


def _kernels(implementation, interpret):
  """(matmul, matmul_t, sdd) callables ``f(a, [b,] w)`` for one backend."""
  if implementation == "xla":
    return reference.matmul, reference.matmul_t, reference.sdd
  if implementation == "pallas_tpu":
    from pallas_kernels.block_sparse import tpu as mod
  else:
    from pallas_kernels.block_sparse import gpu as mod
  return (functools.partial(mod.matmul, interpret=interpret),
          functools.partial(mod.matmul_t, interpret=interpret),
          functools.partial(mod.sdd, interpret=interpret))


# Three products, each a custom VJP whose backward pass calls the other two,
# so the system is closed under differentiation (any order):
#   y = mm(x, W)        dx = mm_t(dy, W)   dW = sdd(x, dy)
#   u = mm_t(v, W)      dv = mm(du, W)     dW = sdd(du, v)
#   D = sdd(x, v)@W     dx = mm_t(v, G)    dv = mm(x, G)    (G = W with data dD)


def _float0_like(a):
  return np.zeros(np.shape(a), dtype=jax.dtypes.float0)


def _w_cotangent(w, ddata):
  leaves, aux = w.tree_flatten()
  return BlockSparseMatrix.tree_unflatten(
      aux, (ddata,) + tuple(_float0_like(a) for a in leaves[1:]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mm(x, w, implementation, interpret):
  return _kernels(implementation, interpret)[0](x, w)


def _mm_fwd(x, w, implementation, interpret):
  return _mm(x, w, implementation, interpret), (x, w)


def _mm_bwd(implementation, interpret, res, dy):
  x, w = res
  dx = _mm_t(dy, w, implementation, interpret)
  return dx, _w_cotangent(w, _sdd(x, dy, w, implementation, interpret))


_mm.defvjp(_mm_fwd, _mm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mm_t(v, w, implementation, interpret):
  return _kernels(implementation, interpret)[1](v, w)


def _mm_t_fwd(v, w, implementation, interpret):
  return _mm_t(v, w, implementation, interpret), (v, w)


def _mm_t_bwd(implementation, interpret, res, du):
  v, w = res
  dv = _mm(du, w, implementation, interpret)
  return dv, _w_cotangent(w, _sdd(du, v, w, implementation, interpret))


_mm_t.defvjp(_mm_t_fwd, _mm_t_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _sdd(x, v, w, implementation, interpret):
  return _kernels(implementation, interpret)[2](x, v, w)


def _sdd_fwd(x, v, w, implementation, interpret):
  return _sdd(x, v, w, implementation, interpret), (x, v, w)


def _sdd_bwd(implementation, interpret, res, dd):
  x, v, w = res
  g = w.with_data(dd.astype(w.dtype))
  dx = _mm_t(v, g, implementation, interpret)
  dv = _mm(x, g, implementation, interpret)
  # D does not depend on the block data, only on the topology.
  return dx, dv, _w_cotangent(w, jnp.zeros_like(w.data))


_sdd.defvjp(_sdd_fwd, _sdd_bwd)


def block_sparse_matmul(x, w: BlockSparseMatrix, *, implementation=None,
                        interpret=None):
  """``x @ w.to_dense()`` computed over the stored blocks only.

  Differentiable in ``x`` and in ``w.data`` (a ``jax.custom_vjp``): ``dx`` runs
  through the transposed topology and the gradient of ``w`` is computed only at
  its stored blocks (zero in the padding slots). The backward products are
  custom VJPs too, so higher-order derivatives (Hessian-vector products) run on
  the same kernels; forward-mode (``jax.jvp``) is not supported. ``w``'s integer
  leaves get ``float0`` cotangents, so ``jax.grad`` with respect to the whole
  matrix needs ``allow_int=True``; to differentiate only the blocks, close over
  the topology and differentiate ``lambda d: f(w.with_data(d))`` at ``w.data``.

  Args:
    x: dense ``[..., K]``; leading dimensions are flattened into rows.
    w: a :class:`BlockSparseMatrix` of shape ``[K, N]``.
    implementation: ``None`` (choose by backend: ``"pallas_tpu"`` on TPU,
      ``"pallas_gpu"`` on GPU, ``"xla"`` elsewhere; with ``interpret`` set,
      the Pallas path of the backend, TPU on CPU), ``"xla"`` (gather, batched
      matmul and segment-sum over the stored blocks), ``"pallas_tpu"`` (Mosaic
      TPU kernels; blocks must obey the (8, 128) rule) or ``"pallas_gpu"``
      (Triton kernels). An explicit choice never checks the backend, so a CPU
      host can lower it for its target with ``jax.export``.
    interpret: for the Pallas paths, ``True`` or
      ``jax.experimental.pallas.tpu.InterpretParams()`` runs the kernel in
      interpret mode on any backend (the latter simulates the TPU and raises
      on out-of-bounds block indices and out-of-order output revisits).

  Returns:
    ``[..., N]`` with dtype ``result_type(x, w.dtype)``; products accumulate
    in float32 for 16-bit inputs.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from pallas_kernels import BlockSparseMatrix, block_sparse_matmul
    >>> w = jnp.arange(16.0).reshape(4, 4)
    >>> m = BlockSparseMatrix.from_dense(w, (2, 2), jnp.eye(2, dtype=bool))
    >>> x = jnp.ones((1, 4))
    >>> block_sparse_matmul(x, m).tolist()
    [[4.0, 6.0, 24.0, 26.0]]
    >>> g = jax.grad(lambda d: block_sparse_matmul(x, m.with_data(d)).sum())
    >>> g(m.data)[0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with Mixture-of-Experts
    <https://arxiv.org/abs/2211.15841>`_, 2022 (the DDS / DSD / SDD
    decomposition of the backward pass).
  """
  if not isinstance(w, BlockSparseMatrix):
    raise ValueError(
        f"w must be a BlockSparseMatrix, got {type(w).__name__}.")
  x = jnp.asarray(x)
  k, n = w.shape
  if x.ndim < 1 or x.shape[-1] != k:
    raise ValueError(
        f"x must have shape [..., {k}] to multiply w of shape {w.shape}, got "
        f"{x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x must have a floating dtype, got {x.dtype}.")
  implementation = _resolve(implementation, interpret)
  if interpret is False:
    interpret = None
  lead = x.shape[:-1]
  x2 = x.reshape(-1, k)
  # One dtype inside the kernels: promote both operands.
  dtype = jnp.result_type(x.dtype, w.dtype)
  x2 = x2.astype(dtype)
  if w.dtype != dtype:
    w = w.with_data(w.data.astype(dtype))
  y = _mm(x2, w, implementation, interpret)
  return y.reshape(*lead, n)
