# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Flax NNX layers for sparse models (requires the ``flax`` extra)."""

# Each area adds its own import lines here.
from sparsejax.nn.block_sparse import BlockSparseLinear
from sparsejax.nn.block_sparse import BlockTopology
from sparsejax.nn.block_sparse import block_sparse_linear
from sparsejax.nn.block_sparse_training import block_capacities
from sparsejax.nn.block_sparse_training import block_sparse_apply
from sparsejax.nn.block_sparse_training import block_sparse_kernels
from sparsejax.nn.activations import ActivationThreshold
from sparsejax.nn.activations import GatedFFN
from sparsejax.nn.activations import StatisticalTopK
from sparsejax.nn.activations import Threshold
from sparsejax.nn.activations import TopK
from sparsejax.nn.activations import calibrate_thresholds
from sparsejax.nn.moe import MoE
from sparsejax.nn.moe import MoEAux
from sparsejax.nn.moe import RouterState
from sparsejax.nn.moe import upcycle_mlp

__all__ = (
    "BlockSparseLinear",
    "BlockTopology",
    "block_sparse_linear",
    "block_capacities",
    "block_sparse_apply",
    "block_sparse_kernels",
    "ActivationThreshold",
    "GatedFFN",
    "StatisticalTopK",
    "Threshold",
    "TopK",
    "calibrate_thresholds",
    "MoE",
    "MoEAux",
    "RouterState",
    "upcycle_mlp",
)
