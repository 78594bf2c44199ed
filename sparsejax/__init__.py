# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""sparsejax: sparse neural networks in JAX.

Weight sparsity as Optax transforms (pruning, dynamic sparse training),
activation sparsity, sparse Mixture-of-Experts routing, and Pallas kernels
(in the sibling package :mod:`pallas_kernels`).
"""

__version__ = "0.1.0"

# Submodules that are part of the public surface (``sj.masks.apply``, ...).
# Each area adds its own line here.
from sparsejax import activations

__all__ = (
    "__version__",
    "activations",
)
