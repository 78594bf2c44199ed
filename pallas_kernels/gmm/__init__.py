# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul (``jax.lax.ragged_dot``) for Mixture-of-Experts.

``reference`` is the XLA implementation, ``tpu`` the Mosaic TPU Pallas
kernels, ``gpu`` the Pallas Triton kernels for GPUs, ``ops`` the custom
VJPs and ``api`` the public :func:`gmm` / :func:`tgmm` with their argument
checks; :mod:`pallas_kernels._dispatch` chooses the implementation.
"""

from pallas_kernels.gmm.api import gmm
from pallas_kernels.gmm.api import tgmm

__all__ = ("gmm", "tgmm")
