# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Activation sparsity: top-k, statistical top-k, calibrated thresholds.

Pure functions that work under `jax.jit` and `jax.grad`:

* per-token top-k (Lazy Neuron, Q-Sparse with a straight-through gradient):
  :func:`topk`, :func:`topk_mask`;
* statistical top-k (Spark Transformer, Gemma 3n): :func:`statistical_topk`;
* calibrated magnitude thresholds (TEAL, CATS, CHESS, WINA): :func:`threshold`,
  :func:`calibrate`, and TEAL's model-wide :func:`greedy_allocation`;
* ProSparse's L1 penalty, sine-ramped coefficient schedule and FATReLU;
* measurement: :func:`activation_sparsity`, :func:`sparse_input_flops`.

Flax layers live in :mod:`sparsejax.nn`; the sparse-input matmul that turns
sparse activations into speed is :func:`pallas_kernels.sparse_input_matmul`.
"""

from sparsejax.activations._calibration import calibrate
from sparsejax.activations._calibration import greedy_allocation
from sparsejax.activations._calibration import weighted_sparsity
from sparsejax.activations._measure import activation_sparsity
from sparsejax.activations._measure import MatmulFlops
from sparsejax.activations._measure import sparse_input_flops
from sparsejax.activations._prosparse import fatrelu
from sparsejax.activations._prosparse import l1_penalty
from sparsejax.activations._prosparse import prosparse_schedule
from sparsejax.activations._statistical import statistical_topk
from sparsejax.activations._statistical import statistical_topk_cutoff
from sparsejax.activations._statistical import statistical_topk_mask
from sparsejax.activations._threshold import threshold
from sparsejax.activations._threshold import threshold_mask
from sparsejax.activations._topk import topk
from sparsejax.activations._topk import topk_mask

__all__ = (
    "MatmulFlops",
    "activation_sparsity",
    "calibrate",
    "fatrelu",
    "greedy_allocation",
    "l1_penalty",
    "prosparse_schedule",
    "sparse_input_flops",
    "statistical_topk",
    "statistical_topk_cutoff",
    "statistical_topk_mask",
    "threshold",
    "threshold_mask",
    "topk",
    "topk_mask",
    "weighted_sparsity",
)
