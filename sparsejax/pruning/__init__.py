# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pruning transforms: the weight-sparsity transforms that do not regrow.

Exact-zero pruners (:func:`static_sparse`, :func:`magnitude_pruning`,
:func:`random_pruning`, :func:`movement_pruning`) keep pruned weights at
exactly zero through their updates; straight-through pruners (:func:`ste`,
:func:`top_kast`, :func:`nm_sparse`) keep the weights dense and mask them in
the forward pass (:func:`sparsejax.forward_params`). All run on the engine
of :mod:`sparsejax.dst`'s drop-and-grow methods (``docs/engine.md``).
"""

from sparsejax.pruning._magnitude import magnitude_pruning
from sparsejax.pruning._magnitude import random_pruning
from sparsejax.pruning._magnitude import static_sparse
from sparsejax.pruning._movement import movement_pruning
from sparsejax.pruning._straight_through import nm_sparse
from sparsejax.pruning._straight_through import ste
from sparsejax.pruning._straight_through import top_kast

__all__ = (
    "magnitude_pruning",
    "movement_pruning",
    "nm_sparse",
    "random_pruning",
    "static_sparse",
    "ste",
    "top_kast",
)
