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
from sparsejax import distributions
from sparsejax import masks
from sparsejax._engine import MaskUpdate
from sparsejax._engine import SparseState
from sparsejax._engine import forward_params
from sparsejax._engine import get_masks
from sparsejax.pruning import magnitude_pruning
from sparsejax.pruning import random_pruning
from sparsejax.pruning import static_sparse
from sparsejax.summary import Summary
from sparsejax.summary import SummaryRow
from sparsejax.summary import summarize

__all__ = (
    "__version__",
    "activations",
    "distributions",
    "masks",
    "MaskUpdate",
    "SparseState",
    "forward_params",
    "get_masks",
    "magnitude_pruning",
    "random_pruning",
    "static_sparse",
    "Summary",
    "SummaryRow",
    "summarize",
)
