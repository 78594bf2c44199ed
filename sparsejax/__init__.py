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
from sparsejax import dst
from sparsejax import masks
from sparsejax import moe
from sparsejax._engine import MaskUpdate
from sparsejax._engine import MaskInit
from sparsejax._engine import Method
from sparsejax._engine import sparse_transform
from sparsejax._engine import SparseState
from sparsejax._engine import forward_params
from sparsejax._engine import get_masks
from sparsejax._rules import Rule
from sparsejax._specs import LeafSpec
from sparsejax._specs import leaf_specs
from sparsejax._mask_schedule import is_mask_update_step
from sparsejax.dst import dst_ee
from sparsejax.dst import granet
from sparsejax.dst import mest
from sparsejax.dst import rigl
from sparsejax.dst import set_
from sparsejax.dst import snfs
from sparsejax.dst import srigl
from sparsejax.pruning import magnitude_pruning
from sparsejax.pruning import random_pruning
from sparsejax.pruning import static_sparse
from sparsejax.oneshot import grasp
from sparsejax.oneshot import snip
from sparsejax.oneshot import synflow
from sparsejax.oneshot import fraction_remaining
from sparsejax.oneshot import imp_prune
from sparsejax.oneshot import rewind
from sparsejax.pruning import movement_pruning
from sparsejax.oneshot import OneShotResult
from sparsejax.oneshot import prune_model
from sparsejax.oneshot import sparsegpt
from sparsejax.oneshot import wanda
from sparsejax.pruning import nm_sparse
from sparsejax.pruning import ste
from sparsejax.pruning import top_kast
from sparsejax.summary import Summary
from sparsejax.summary import SummaryRow
from sparsejax.summary import summarize

__all__ = (
    "__version__",
    "activations",
    "distributions",
    "dst",
    "masks",
    "moe",
    "MaskUpdate",
    "MaskInit",
    "Method",
    "sparse_transform",
    "SparseState",
    "forward_params",
    "get_masks",
    "Rule",
    "LeafSpec",
    "leaf_specs",
    "is_mask_update_step",
    "dst_ee",
    "granet",
    "mest",
    "rigl",
    "set_",
    "snfs",
    "srigl",
    "magnitude_pruning",
    "random_pruning",
    "static_sparse",
    "grasp",
    "snip",
    "synflow",
    "fraction_remaining",
    "imp_prune",
    "rewind",
    "movement_pruning",
    "OneShotResult",
    "prune_model",
    "sparsegpt",
    "wanda",
    "nm_sparse",
    "ste",
    "top_kast",
    "Summary",
    "SummaryRow",
    "summarize",
)
