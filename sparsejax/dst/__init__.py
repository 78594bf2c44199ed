# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Dynamic sparse training: drop-and-grow methods on the shared engine.

Each method is one small mask-update rule plugged into the engine of
:mod:`sparsejax.pruning`'s transforms (``docs/engine.md``): the masks live in the optimizer state,
pruned weights stay exactly zero, and every method accepts element or block
granularity.
"""

from sparsejax.dst._dst_ee import DstEEState
from sparsejax.dst._dst_ee import dst_ee
from sparsejax.dst._granet import granet
from sparsejax.dst._mest import mest
from sparsejax.dst._mest import mest_mutation_schedule
from sparsejax.dst._rigl import rigl
from sparsejax.dst._set import set_
from sparsejax.dst._snfs import SnfsState
from sparsejax.dst._snfs import momentum_of
from sparsejax.dst._snfs import redistribute
from sparsejax.dst._snfs import snfs
from sparsejax.dst._srigl import srigl

__all__ = (
    "DstEEState",
    "dst_ee",
    "granet",
    "mest",
    "mest_mutation_schedule",
    "momentum_of",
    "redistribute",
    "rigl",
    "set_",
    "SnfsState",
    "snfs",
    "srigl",
)
