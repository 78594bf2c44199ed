# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""What a weight-sparsity method is: one small value the engine runs.

A method says how it makes its first masks and its own state
(:attr:`Method.init`), how it updates them (:attr:`Method.update`), which of
the four step profiles it uses and whether grown positions get fresh
optimizer slots. Everything else (budgets, the schedule of updates, the
PRNG key, exact zeros, slot resets, leaf specs, block granularity) is the
engine's (:mod:`sparsejax._engine`).

Methods work in **units**: an entry of a leaf's view with element
granularity, a whole ``(bm, bn)`` block with block granularity. The masks
and budgets a method is given and the masks it returns are per unit;
:attr:`MaskUpdate.pool` sums an entry-shaped array (weights, gradients,
scores) over each unit. So no method contains block code.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import _tree
from sparsejax import masks as _masks

PRUNE = "prune"
SKIP_INNER = "skip_inner"
INNER_FIRST = "inner_first"
STRAIGHT_THROUGH = "straight_through"
PROFILES = (PRUNE, SKIP_INNER, INNER_FIRST, STRAIGHT_THROUGH)


class MaskInit(NamedTuple):
  """What a method's :attr:`Method.init` is given.

  Attributes:
    key: a PRNG key for the initial masks.
    params: the parameters, every sparse leaf in its view (``[*window,
      fan_in, fan_out]``, one array per stacked slice).
    budgets: kept units per sparse leaf of the view, ``None`` for dense
      leaves.
    pool: sums an entry-shaped array over each unit (identity with element
      granularity).
    sparse_rule: a ``where`` rule selecting the sparse leaves of the view.
  """

  key: jax.Array
  params: Any
  budgets: Any
  pool: Callable[[jax.Array], jax.Array]
  sparse_rule: Callable[[str, Any], bool]


class MaskUpdate(NamedTuple):
  """What a method's :attr:`Method.update` is given.

  Attributes:
    params: the current parameters in their view (pruned entries are zero
      for exact-zero transforms).
    grads: the incoming updates (gradients) as the transform received them
      (after :attr:`Method.before_step`), unmasked: for an exact-zero
      transform, the dense gradient with respect to the masked weights.
    masks: the current masks, per unit.
    budgets: kept units per sparse leaf (int or int32 scalar), ``None`` for
      dense leaves.
    sparsity: the overall target sparsity at this step (``None`` when a
      callable distribution gives per-leaf values directly).
    key: a fresh PRNG key for this update.
    count: the step count of this update.
    inner_state: the wrapped optimizer's state.
    method_state: the method's own state.
    block_shape: ``None`` for element granularity, else ``(bm, bn)``.
    to_view: moves another params-shaped tree (e.g. an optimizer slot) into
      the view the other fields are in (see :mod:`sparsejax._specs`).
    pool: sums an entry-shaped array over each unit (identity with element
      granularity).
  """

  params: Any
  grads: Any
  masks: Any
  budgets: Any
  sparsity: Any
  key: jax.Array
  count: jax.Array
  inner_state: Any
  method_state: Any
  block_shape: tuple[int, int] | None
  to_view: Callable[[Any], Any] = lambda tree: tree
  pool: Callable[[jax.Array], jax.Array] = lambda x: x


class Method(NamedTuple):
  """A weight-sparsity method, as the engine runs it.

  Attributes:
    profile: how a step with a mask update is ordered:

      * ``"prune"``: new masks first, then the optimizer step with them
        (magnitude and movement pruning, static masks);
      * ``"skip_inner"``: a mask-update step takes no optimizer step
        (RigL, SRigL);
      * ``"inner_first"``: the optimizer step with the old masks, then new
        masks from the stepped weights and state; grown weights stay 0
        on that step (SET, SNFS, MEST, GraNet);
      * ``"straight_through"``: as ``"inner_first"``, but the weights stay
        dense and the inner optimizer sees every gradient entry;
        :func:`sparsejax.forward_params` applies the masks (STE, Top-KAST,
        SR-STE).
    init: ``MaskInit -> (masks, method_state)``, masks per unit.
    update: ``MaskUpdate -> (masks, method_state)``, or ``None`` for masks
      that never change.
    reset_grown_slots: zero every params-shaped slot of the inner optimizer
      at newly grown positions (RigL's rule).
    before_step: ``(grads, params, masks, method_state) -> (grads,
      method_state)``, run first on every step, in the view with the masks
      per entry (movement scores, SR-STE's gradient decay); ``None``: none.
    dense_gradients: the inner optimizer sees the gradients at pruned
      positions too (SNFS's dense momentum); implied by
      ``"straight_through"``.
    pruned_scale: ``None``, or a float or schedule ``count -> beta``: pruned
      entries take part in the forward pass as ``beta * W``
      (``"straight_through"`` only).
  """

  profile: str
  init: Callable[[MaskInit], tuple[Any, Any]]
  update: Callable[[MaskUpdate], tuple[Any, Any]] | None = None
  reset_grown_slots: bool = False
  before_step: Callable[[Any, Any, Any, Any], tuple[Any, Any]] | None = None
  dense_gradients: bool = False
  pruned_scale: Any = None

  @property
  def exact_zero(self) -> bool:
    """Pruned weights are set to exactly 0 by the updates."""
    return self.profile != STRAIGHT_THROUGH

  @property
  def masks_gradients(self) -> bool:
    """The inner optimizer sees gradients zeroed at pruned positions."""
    return self.exact_zero and not self.dense_gradients


def check_method(method: Any) -> Method:
  """Validates a method's combination of choices, once."""
  if not isinstance(method, Method):
    raise ValueError(f"`method` must be a Method, got {type(method)!r}.")
  if method.profile not in PROFILES:
    raise ValueError(f"`method.profile` must be one of {PROFILES}, got "
                     f"{method.profile!r}.")
  if not callable(method.init):
    raise ValueError("`method.init` must be a callable.")
  if method.update is None and method.profile != PRUNE:
    raise ValueError(f"profile {method.profile!r} updates masks: "
                     "`method.update` is required.")
  if method.profile == STRAIGHT_THROUGH and method.reset_grown_slots:
    raise ValueError("`reset_grown_slots` needs exact zeros: a "
                     "straight-through method keeps every weight and slot.")
  if method.pruned_scale is not None and method.profile != STRAIGHT_THROUGH:
    raise ValueError("`pruned_scale` is for straight-through methods only: "
                     "exact-zero weights have nothing to scale.")
  if method.dense_gradients and method.profile == STRAIGHT_THROUGH:
    raise ValueError("`dense_gradients` is implied by 'straight_through'.")
  return method


# ------------------------------------------------ helpers for method code


def sparse_items(u: Any, *trees: Any) -> list[tuple]:
  """``(index, budget, leaf, *leaves)`` for every sparse leaf of ``u``.

  ``u`` is a :class:`MaskInit` or :class:`MaskUpdate`; ``trees`` have the
  structure of its params.
  """
  budgets = jax.tree.leaves(u.budgets, is_leaf=_tree.is_none)
  flat = [jax.tree.leaves(t, is_leaf=_tree.is_none) for t in trees]
  return [(i, b, *(f[i] for f in flat)) for i, b in enumerate(budgets)
          if b is not None]


def rebuild(u: Any, new_by_index: dict[int, jax.Array]) -> Any:
  """A masks tree: ``new_by_index`` at the sparse leaves, ``None`` elsewhere."""
  leaves, treedef = jax.tree.flatten(u.budgets, is_leaf=_tree.is_none)
  return jax.tree.unflatten(
      treedef, [new_by_index.get(i) if b is not None else None
                for i, b in enumerate(leaves)])


def map_sparse(u: Any, fn: Callable[..., jax.Array], *trees: Any) -> Any:
  """The masks ``fn(budget, *leaves)`` of every sparse leaf of ``u``."""
  return rebuild(u, {i: fn(b, *leaves)
                     for i, b, *leaves in sparse_items(u, *trees)})


def live(u: Any, tree: Any) -> Any:
  """``tree`` with ``None`` at the dense leaves of ``u``."""
  return jax.tree.map(lambda x, b: None if b is None else x, tree,
                      u.budgets, is_leaf=_tree.is_none)


def pooled(u: Any, tree: Any) -> Any:
  """:attr:`MaskUpdate.pool` of every sparse leaf of ``tree``."""
  return jax.tree.map(lambda x: None if x is None else u.pool(x),
                      live(u, tree), is_leaf=_tree.is_none)


def random_scores(key: jax.Array, u: Any) -> Any:
  """Uniform random scores per unit of the sparse leaves (sharding kept).

  Drawn per entry and pooled, so that a key gives the same choice as the
  entry-level draw of earlier releases.
  """
  noise = optax.tree.random_like(key, live(u, u.params),
                                 sampler=jax.random.uniform)
  return pooled(u, noise)


def random_init(i: MaskInit) -> tuple[Any, tuple]:
  """Exactly ``budget`` random units per sparse leaf; no method state."""
  return _masks.topk(random_scores(i.key, i), i.budgets), ()


def all_kept(u: Any) -> Any:
  """Masks that keep every unit of the sparse leaves."""
  # `ones_like` keeps each leaf's sharding.
  return jax.tree.map(lambda x: None if x is None else jnp.ones_like(
      x, jnp.bool_), pooled(u, u.params), is_leaf=_tree.is_none)


def budgeted_rule(budgets: Any) -> Callable[[str, Any], bool]:
  """A ``where`` rule selecting the leaves that have a budget."""
  chosen = {p for p, b in _tree.leaves_with_paths(budgets) if b is not None}
  return lambda path, leaf: path in chosen
