# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Grouped matmul (``jax.lax.ragged_dot``) for Mixture-of-Experts.

``reference`` is the XLA implementation, ``tpu`` the Mosaic TPU Pallas
kernels, ``gpu`` the Pallas Triton kernels for GPUs, and ``ops`` the public
:func:`gmm` / :func:`tgmm` with their custom VJP and the dispatch between
them.
"""

from pallas_kernels.gmm.ops import gmm
from pallas_kernels.gmm.ops import tgmm

__all__ = ("gmm", "tgmm")
