# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Dispatch tokens to experts and combine their outputs.

Two layouts:

- dropless, sort-based (MegaBlocks, MaxText): the ``T * k`` slots are sorted
  by expert into one ``[T * k, d]`` array whose rows are contiguous per
  expert, with ``group_sizes[E]`` rows each, ready for a grouped matmul
  (``jax.lax.ragged_dot`` / ``pallas_kernels.gmm``). Slots that are not kept
  sort to the end, past ``sum(group_sizes)``, where the grouped matmul
  neither reads nor writes them.
- capacity-padded: a ``[E, C, d]`` buffer with C slots per expert for a
  batched einsum; slots over capacity are dropped.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.moe import _routing
from sparsejax.moe._common import drop_over_capacity
from sparsejax.moe._common import positions_in_expert


@jax.custom_vjp
def _permute_rows(x, indices, inverse):
  """``x[indices]`` for a permutation ``indices`` whose inverse is given.

  Autodiff does not know that ``indices`` is a permutation, so the transpose
  of the gather would be a scatter-add into zeros (serialised, atomic on
  GPU/TPU). The transpose of a permutation is its inverse, so the backward
  pass is the gather ``g[inverse]`` instead: same cost as the forward.
  """
  return jnp.take(x, indices, axis=0)


def _permute_rows_fwd(x, indices, inverse):
  return jnp.take(x, indices, axis=0), (indices, inverse)


def _permute_rows_bwd(residuals, g):
  indices, inverse = residuals
  return jnp.take(g, inverse, axis=0), None, None


_permute_rows.defvjp(_permute_rows_fwd, _permute_rows_bwd)


class SortedDispatch(NamedTuple):
  """What :func:`sort_combine` needs to undo :func:`sort_dispatch`.

  Attributes:
    sort_indices: int32 ``[T * k]``: sorted row r holds slot
      ``sort_indices[r]`` (slot index ``t * k + j``).
    unsort_indices: int32 ``[T * k]``, the inverse permutation.
    group_sizes: int32 ``[E]``, kept rows per expert, in expert order.
  """

  sort_indices: jax.Array
  unsort_indices: jax.Array
  group_sizes: jax.Array


def _check_routing(x, routing):
  if not isinstance(routing, _routing.Routing):
    raise ValueError(f"routing must be a sparsejax.moe.Routing, got "
                     f"{type(routing).__name__}")
  x = jnp.asarray(x)
  num_tokens = routing.expert_ids.shape[0]
  if x.ndim != 2 or x.shape[0] != num_tokens:
    raise ValueError(f"x must have shape [{num_tokens}, d] (tokens as routed),"
                     f" got {x.shape}")
  return x


def _repeat_tokens(x, k):
  # A broadcast, whose transpose is a sum over k: no gather, no scatter.
  return jnp.broadcast_to(x[:, None, :], (x.shape[0], k, x.shape[1])).reshape(
      -1, x.shape[1])


def sort_dispatch(x, routing):
  """Dropless dispatch: the token copies sorted by expert, and group sizes.

  Each token is repeated once per slot, and the ``T * k`` copies are
  permuted so that expert e's kept slots occupy rows
  ``sum(group_sizes[:e])`` to ``sum(group_sizes[:e + 1]) - 1`` (a stable
  argsort of the expert ids, with the slots that are not kept sorted last).
  The permutation is a gather whose backward pass is the gather with the
  inverse permutation (a custom VJP), not the scatter-add that autodiff
  would emit. Shapes are static: ``T * k`` rows whatever the routing.

  Args:
    x: ``[T, d]`` tokens.
    routing: a :class:`Routing` for these T tokens.

  Returns:
    ``(x_sorted, dispatch)``: ``[T * k, d]`` rows grouped by expert, and the
    :class:`SortedDispatch` for :func:`sort_combine`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.top_k_router(jnp.log(jnp.array([[.6, .4], [.1, .9]])), 1)
    >>> xs, d = moe.sort_dispatch(jnp.array([[1.], [2.]]), r)
    >>> xs[:, 0], d.group_sizes
    (Array([1., 2.], dtype=float32), Array([1, 1], dtype=int32))

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with
    Mixture-of-Experts <https://arxiv.org/abs/2211.15841>`_, 2022.
  """
  x = _check_routing(x, routing)
  num_experts = routing.router_probs.shape[-1]
  k = routing.expert_ids.shape[1]
  keys = jnp.where(routing.kept, routing.expert_ids, num_experts).reshape(-1)
  sort_indices = jnp.argsort(keys, stable=True).astype(jnp.int32)
  unsort_indices = jnp.zeros_like(sort_indices).at[sort_indices].set(
      jnp.arange(sort_indices.shape[0], dtype=jnp.int32), unique_indices=True)
  group_sizes = jnp.bincount(keys, length=num_experts + 1)[:num_experts]
  x_sorted = _permute_rows(_repeat_tokens(x, k), sort_indices, unsort_indices)
  return x_sorted, SortedDispatch(sort_indices, unsort_indices,
                                  group_sizes.astype(jnp.int32))


def _weighted_sum(y_slots, routing):
  """``sum_j combine_weights[t, j] * y[t, j]``, exactly 0 for dropped slots."""
  num_tokens, k = routing.expert_ids.shape
  y_slots = y_slots.reshape(num_tokens, k, -1)
  # Rows of dropped slots are whatever the experts made of padding; select
  # them away rather than multiply, so that a NaN there cannot leak.
  y_slots = jnp.where(routing.kept[..., None], y_slots, 0)
  weights = routing.combine_weights.astype(y_slots.dtype)
  return jnp.einsum("tkn,tk->tn", y_slots, weights)


def sort_combine(y_sorted, routing, dispatch):
  """Undoes :func:`sort_dispatch` and sums each token's weighted outputs.

  ``out[t] = sum_j combine_weights[t, j] * y[row of slot (t, j)]`` over the
  kept slots. The un-permutation is the same inverse-gather custom VJP as
  the dispatch.

  Args:
    y_sorted: ``[T * k, n]`` expert outputs, rows as :func:`sort_dispatch`
      ordered them.
    routing: the :class:`Routing` used to dispatch.
    dispatch: the :class:`SortedDispatch` it returned.

  Returns:
    ``[T, n]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.top_k_router(jnp.zeros((3, 2)), 2)  # weights 0.5, 0.5
    >>> xs, d = moe.sort_dispatch(jnp.array([[1.], [2.], [3.]]), r)
    >>> moe.sort_combine(xs, r, d)[:, 0]  # identity experts
    Array([1., 2., 3.], dtype=float32)

  References:
    Gale et al, `MegaBlocks: Efficient Sparse Training with
    Mixture-of-Experts <https://arxiv.org/abs/2211.15841>`_, 2022.
  """
  y_sorted = jnp.asarray(y_sorted)
  rows = routing.expert_ids.size
  if y_sorted.ndim != 2 or y_sorted.shape[0] != rows:
    raise ValueError(f"y_sorted must have shape [{rows}, n] (one row per "
                     f"slot), got {y_sorted.shape}")
  y_slots = _permute_rows(y_sorted, dispatch.unsort_indices,
                          dispatch.sort_indices)
  return _weighted_sum(y_slots, routing)


class CapacityDispatch(NamedTuple):
  """What :func:`capacity_combine` needs to undo :func:`capacity_dispatch`.

  Attributes:
    slots: int32 ``[T, k]``, the flat buffer row ``e * C + position`` of each
      slot, ``E * C`` (a discarded row) where the slot is dropped.
    kept: bool ``[T, k]``, the slots that found room: the routing's kept
      slots, less those over ``capacity``.
  """

  slots: jax.Array
  kept: jax.Array


def capacity_dispatch(x, routing, capacity):
  """Capacity-padded dispatch into a ``[E, C, d]`` buffer.

  Each kept slot gets the next free row of its expert's buffer, first choices
  before second choices and earlier tokens first; slots that find the buffer
  full are dropped (none are, if the router already applied this capacity or
  ``capacity >= T * k``). Unused rows are zero.

  Args:
    x: ``[T, d]`` tokens.
    routing: a :class:`Routing` for these T tokens.
    capacity: C, rows per expert (a positive int).

  Returns:
    ``(buffer, dispatch)``: the ``[E, C, d]`` buffer and the
    :class:`CapacityDispatch` for :func:`capacity_combine`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.top_k_router(jnp.log(jnp.array([[.6, .4], [.1, .9]])), 1)
    >>> buf, d = moe.capacity_dispatch(jnp.array([[1.], [2.]]), r, 2)
    >>> buf[..., 0]
    Array([[1., 0.],
           [2., 0.]], dtype=float32)

  References:
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional Computation
    and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_, 2020.
  """
  x = _check_routing(x, routing)
  if isinstance(capacity, bool) or not isinstance(capacity, int) or (
      capacity < 1):
    raise ValueError(f"capacity must be a positive int, got {capacity!r}")
  num_experts = routing.router_probs.shape[-1]
  num_tokens, k = routing.expert_ids.shape
  kept = drop_over_capacity(
      routing.expert_ids, routing.kept,
      -jnp.arange(num_tokens, dtype=jnp.float32), num_experts, capacity)
  # Positions in the same order as drop_over_capacity fills the buffers.
  order = (jnp.arange(num_tokens)[None, :] * k
           + jnp.arange(k)[:, None]).reshape(-1)
  experts = jnp.where(kept, routing.expert_ids, num_experts).reshape(-1)
  positions = jnp.zeros_like(order).at[order].set(
      positions_in_expert(experts[order], num_experts),
      unique_indices=True)
  dump = num_experts * capacity
  slots = jnp.where(experts < num_experts,
                    experts * capacity + positions, dump).astype(jnp.int32)
  # One spare row takes the dropped slots and is cut off: the gradient of
  # this scatter is a gather that reads exactly 0 for them.
  buffer = jnp.zeros((dump + 1, x.shape[1]), x.dtype).at[slots].add(
      _repeat_tokens(x, k))
  buffer = buffer[:dump].reshape(num_experts, capacity, x.shape[1])
  return buffer, CapacityDispatch(slots.reshape(num_tokens, k), kept)


def capacity_combine(y, routing, dispatch):
  """Undoes :func:`capacity_dispatch` and sums each token's weighted outputs.

  Args:
    y: ``[E, C, n]`` expert outputs on the buffer.
    routing: the :class:`Routing` used to dispatch.
    dispatch: the :class:`CapacityDispatch` it returned.

  Returns:
    ``[T, n]``; tokens whose slots were all dropped get 0 (a residual
    connection around the layer carries them).

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.switch_router(jnp.zeros((3, 1)), capacity_factor=0.5)
    >>> buf, d = moe.capacity_dispatch(jnp.array([[1.], [2.], [3.]]), r, 2)
    >>> moe.capacity_combine(buf, r, d)[:, 0]
    Array([1., 2., 0.], dtype=float32)

  References:
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional Computation
    and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_, 2020.
  """
  y = jnp.asarray(y)
  num_experts = routing.router_probs.shape[-1]
  if y.ndim != 3 or y.shape[0] != num_experts:
    raise ValueError(f"y must have shape [{num_experts}, C, n], got {y.shape}")
  flat = y.reshape(-1, y.shape[-1])
  flat = jnp.concatenate([flat, jnp.zeros((1, flat.shape[1]), flat.dtype)])
  y_slots = jnp.take(flat, dispatch.slots.reshape(-1), axis=0)
  return _weighted_sum(y_slots, routing._replace(kept=dispatch.kept))
