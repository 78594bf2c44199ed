# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""One-shot pruning of trained models: Wanda, SparseGPT and a model driver.

The per-layer functions take a Flax kernel ``[in, out]`` and the layer's
calibration inputs ``[tokens, in]``; :func:`prune_model` captures every
dense layer's inputs of a Flax NNX or Linen model on calibration batches and
prunes the layers one after another, each with the inputs produced by the
already pruned layers before it.
"""

from sparsejax.oneshot._driver import OneShotResult
from sparsejax.oneshot._driver import prune_model
from sparsejax.oneshot._sparsegpt import sparsegpt
from sparsejax.oneshot._wanda import wanda

__all__ = (
    "OneShotResult",
    "prune_model",
    "sparsegpt",
    "wanda",
)
