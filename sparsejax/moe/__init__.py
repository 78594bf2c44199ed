# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse Mixture-of-Experts: routers, auxiliary losses, dispatch and combine,
expert MLPs and expert parallelism.

A token-choice MoE step is ``routing = router(logits)``, then either the
dropless ``sort_dispatch`` / grouped-matmul ``expert_mlp`` / ``sort_combine``
or the capacity-padded ``capacity_dispatch`` / einsum / ``capacity_combine``,
plus the losses the caller adds to its objective. The Flax layer is
:class:`sparsejax.nn.MoE`; it takes its routing rule as a :class:`Router`
value (``top_k``, ``switch``, ``noisy_top_k``, ``batch_prioritized``,
``expert_choice``, ``remoe``, or a user-written subclass).
"""

from sparsejax.moe._dispatch import capacity_combine
from sparsejax.moe._dispatch import capacity_dispatch
from sparsejax.moe._dispatch import CapacityDispatch
from sparsejax.moe._dispatch import sort_combine
from sparsejax.moe._dispatch import sort_dispatch
from sparsejax.moe._dispatch import SortedDispatch
from sparsejax.moe._expert_parallel import expert_parallel
from sparsejax.moe._experts import expert_mlp
from sparsejax.moe._losses import importance_loss
from sparsejax.moe._losses import load_balancing_loss
from sparsejax.moe._losses import load_loss
from sparsejax.moe._losses import z_loss
from sparsejax.moe._routers import batch_prioritized
from sparsejax.moe._routers import expert_choice
from sparsejax.moe._routers import noisy_top_k
from sparsejax.moe._routers import remoe
from sparsejax.moe._routers import Router
from sparsejax.moe._routers import RouterLosses
from sparsejax.moe._routers import RouterVariables
from sparsejax.moe._routers import switch
from sparsejax.moe._routers import top_k
from sparsejax.moe._routing import batch_prioritized_router
from sparsejax.moe._routing import expert_capacity
from sparsejax.moe._routing import expert_choice_router
from sparsejax.moe._routing import noisy_top_k_router
from sparsejax.moe._routing import remoe_init
from sparsejax.moe._routing import remoe_l1_loss
from sparsejax.moe._routing import remoe_router
from sparsejax.moe._routing import remoe_update
from sparsejax.moe._routing import ReMoEState
from sparsejax.moe._routing import Routing
from sparsejax.moe._routing import soft_moe_combine
from sparsejax.moe._routing import soft_moe_dispatch
from sparsejax.moe._routing import soft_moe_weights
from sparsejax.moe._routing import SoftRouting
from sparsejax.moe._routing import switch_router
from sparsejax.moe._routing import top_k_router

__all__ = (
    "batch_prioritized",
    "batch_prioritized_router",
    "capacity_combine",
    "capacity_dispatch",
    "CapacityDispatch",
    "expert_capacity",
    "expert_choice",
    "expert_choice_router",
    "expert_mlp",
    "expert_parallel",
    "importance_loss",
    "load_balancing_loss",
    "load_loss",
    "noisy_top_k",
    "noisy_top_k_router",
    "remoe",
    "remoe_init",
    "remoe_l1_loss",
    "remoe_router",
    "remoe_update",
    "ReMoEState",
    "Router",
    "RouterLosses",
    "RouterVariables",
    "Routing",
    "soft_moe_combine",
    "soft_moe_dispatch",
    "soft_moe_weights",
    "SoftRouting",
    "sort_combine",
    "sort_dispatch",
    "SortedDispatch",
    "switch",
    "switch_router",
    "top_k",
    "top_k_router",
    "z_loss",
)
