# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Masks made once, without optimizer state.

Pruning at initialization (:func:`snip`, :func:`grasp`, :func:`synflow`),
iterative magnitude pruning with rewinding (:func:`imp_prune`, lottery
tickets), and one-shot pruning of trained models (:func:`wanda`,
:func:`sparsegpt`, :func:`prune_model`).

The per-layer functions take a Flax kernel ``[in, out]`` and the layer's
calibration inputs ``[tokens, in]``; :func:`prune_model` captures the inputs
of every linear map of a Flax NNX model (``Linear``, ``LinearGeneral``
attention projections, ``Einsum``, per slice of ``nnx.scan`` stacks) or of
every ``nn.Dense`` of a Linen model on calibration batches and prunes them
one after another on their ``[fan_in, fan_out]`` matrix views, each with the
inputs produced by the already pruned layers before it.
"""

from sparsejax.oneshot._at_init import grasp
from sparsejax.oneshot._at_init import snip
from sparsejax.oneshot._at_init import synflow
from sparsejax.oneshot._driver import OneShotResult
from sparsejax.oneshot._driver import prune_model
from sparsejax.oneshot._lottery import fraction_remaining
from sparsejax.oneshot._lottery import imp_prune
from sparsejax.oneshot._lottery import rewind
from sparsejax.oneshot._sparsegpt import sparsegpt
from sparsejax.oneshot._wanda import wanda

__all__ = (
    "OneShotResult",
    "fraction_remaining",
    "grasp",
    "imp_prune",
    "prune_model",
    "rewind",
    "snip",
    "sparsegpt",
    "synflow",
    "wanda",
)
