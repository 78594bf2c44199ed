# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Helpers shared by the routing, dispatch and router modules of
:mod:`sparsejax.moe`: argument checks and the capacity-buffer slot order."""

import math

import jax.numpy as jnp


def check_k(k, num_experts):
  """Raises unless ``k`` is an int in ``[1, num_experts]``."""
  if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_experts:
    raise ValueError(f"k must be an int in [1, {num_experts}] (the number of "
                     f"experts), got {k!r}")


def check_factor(capacity_factor, name="capacity_factor"):
  """Raises unless the factor is None or a positive finite number."""
  if capacity_factor is None:
    return
  if (isinstance(capacity_factor, bool)
      or not isinstance(capacity_factor, (int, float))
      or not math.isfinite(capacity_factor) or capacity_factor <= 0):
    raise ValueError(
        f"{name} must be a positive finite number or None, got "
        f"{capacity_factor!r}")


def positions_in_expert(experts, num_experts):
  """Rank of each entry among the earlier entries with the same expert.

  ``experts`` is int ``[A]`` in priority order, with ``num_experts`` marking
  entries that go nowhere. A stable sort groups the entries by expert; an
  entry's rank is its sorted index minus its group's start. This costs
  O(A log A) and O(A) memory, where the one-hot cumulative sum would take
  O(A * E) memory.
  """
  order = jnp.argsort(experts, stable=True)
  counts = jnp.bincount(experts, length=num_experts + 1)
  starts = jnp.cumsum(counts) - counts
  sorted_experts = experts[order]
  ranks = jnp.arange(experts.shape[0]) - starts[sorted_experts]
  return jnp.zeros_like(ranks).at[order].set(ranks, unique_indices=True)


def drop_over_capacity(expert_ids, kept, priority, num_experts, capacity):
  """Keeps at most ``capacity`` slots per expert, by priority.

  Buffers fill choice by choice (all tokens' first choices before any second
  choice, as in GShard and V-MoE), and within one choice by decreasing
  ``priority`` (ties: lower token index first). The slots that arrive after an
  expert's buffer is full are dropped.
  """
  num_tokens, k = expert_ids.shape
  token_order = jnp.argsort(-priority, stable=True)
  # Flat slot index t * k + j, choice-major, tokens by priority.
  order = (token_order[None, :] * k + jnp.arange(k)[:, None]).reshape(-1)
  flat_experts = jnp.where(kept, expert_ids, num_experts).reshape(-1)[order]
  positions = positions_in_expert(flat_experts, num_experts)
  fits = (flat_experts < num_experts) & (positions < capacity)
  flat_kept = jnp.zeros(num_tokens * k, bool).at[order].set(
      fits, unique_indices=True)
  return flat_kept.reshape(num_tokens, k)
