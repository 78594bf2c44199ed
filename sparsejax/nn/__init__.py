# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Flax NNX layers for sparse models (requires the ``flax`` extra)."""

# Each area adds its own import lines here.

__all__ = ()
