# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul: the custom VJPs of ``gmm`` and ``tgmm``.

The backward passes are again ``gmm`` / ``tgmm`` calls on the same backend,
so every order of derivative runs on the chosen kernels:

* ``out = gmm(lhs, rhs)``: ``d lhs = gmm(grad, rhs, transpose_rhs=True)``
  and ``d rhs = tgmm(lhs, grad)``;
* ``out = tgmm(lhs, grad)``: ``d lhs = gmm(grad, out', transpose_rhs=True)``
  and ``d grad = gmm(lhs, out')``.

The public functions with their argument checks are in
:mod:`pallas_kernels.gmm.api`.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels import _dispatch
from pallas_kernels.gmm import gpu
from pallas_kernels.gmm import reference
from pallas_kernels.gmm import tpu

__all__ = ("Config", "gmm", "tgmm")


class Config(NamedTuple):
  """Static (hashable) options of one gmm / tgmm call."""
  backend: _dispatch.Backend
  out_dtype: Any
  transpose_rhs: bool
  tiling: tuple[int, int, int]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def gmm(lhs, rhs, group_sizes, config):
  n = rhs.shape[1] if config.transpose_rhs else rhs.shape[2]
  return _forward("gmm", lhs, rhs, group_sizes, (lhs.shape[0], n), config,
                  transpose_rhs=config.transpose_rhs)


def _gmm_fwd(lhs, rhs, group_sizes, config):
  return gmm(lhs, rhs, group_sizes, config), (lhs, rhs, group_sizes)


def _gmm_bwd(config, residuals, grad):
  lhs, rhs, group_sizes = residuals
  dlhs = gmm(grad, rhs, group_sizes, config._replace(
      out_dtype=lhs.dtype, transpose_rhs=not config.transpose_rhs))
  drhs_config = config._replace(out_dtype=rhs.dtype, transpose_rhs=False)
  if config.transpose_rhs:  # out = lhs @ rhs[g].T, so d rhs[g] = grad.T @ lhs
    drhs = tgmm(grad, lhs, group_sizes, drhs_config)
  else:
    drhs = tgmm(lhs, grad, group_sizes, drhs_config)
  return dlhs, drhs, None


gmm.defvjp(_gmm_fwd, _gmm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def tgmm(lhs, grad, group_sizes, config):
  out_shape = (group_sizes.shape[0], lhs.shape[1], grad.shape[1])
  return _forward("tgmm", lhs, grad, group_sizes, out_shape, config)


def _tgmm_fwd(lhs, grad, group_sizes, config):
  return tgmm(lhs, grad, group_sizes, config), (lhs, grad, group_sizes)


def _tgmm_bwd(config, residuals, dout):
  lhs, grad, group_sizes = residuals
  # out[g] = lhs_g.T @ grad_g: d lhs_g = grad_g @ dout[g].T and
  # d grad_g = lhs_g @ dout[g]; rows in no group get zeros from gmm.
  dlhs = gmm(grad, dout, group_sizes, config._replace(
      out_dtype=lhs.dtype, transpose_rhs=True))
  dgrad = gmm(lhs, dout, group_sizes, config._replace(
      out_dtype=grad.dtype, transpose_rhs=False))
  return dlhs, dgrad, None


tgmm.defvjp(_tgmm_fwd, _tgmm_bwd)


def _forward(name, a, b, group_sizes, out_shape, config, **options):
  """``reference``, ``tpu`` or ``gpu`` ``.name(a, b, group_sizes)``."""
  backend = config.backend
  kernel = backend.kernel(xla=getattr(reference, name),
                          pallas_tpu=getattr(tpu, name),
                          pallas_gpu=getattr(gpu, name))
  if backend.is_pallas:
    if 0 in a.shape + b.shape:  # no tile to run; G >= 1 is checked
      return jnp.zeros(out_shape, config.out_dtype)
    # The kernels multiply two tiles of one dtype; a float32 cotangent
    # meeting bfloat16 weights is computed in float32.
    dtype = jnp.result_type(a.dtype, b.dtype)
    a, b = a.astype(dtype), b.astype(dtype)
    options["tiling"] = config.tiling
  return kernel(a, b, group_sizes, preferred_element_type=config.out_dtype,
                **options)
