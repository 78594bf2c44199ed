# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The one wrapper behind every weight-sparsity transform.

A method (magnitude pruning, RigL, SET, ...) supplies two small functions:
how to make the first masks, and how to make new masks from the current
weights, gradients and state. This module does everything else once: budgets
from the sparsity and its distribution, the update schedule, the PRNG key in
the state, masking the gradients, running (or skipping) the inner optimizer,
resetting the inner optimizer's slots where weights are grown, and the
updates that keep pruned weights exactly zero (``jnp.where(mask, u, -p)``).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from sparsejax import _specs
from sparsejax import _tree
from sparsejax import distributions as _distributions
from sparsejax import masks as _masks

NO_PARAMS_MSG = (
    "sparsejax transforms need the current parameters: call "
    "`tx.update(grads, state, params)`.")


class SparseState(NamedTuple):
  """State of every sparsejax weight-sparsity transform.

  Attributes:
    count: number of ``update`` calls so far (int32 scalar).
    masks: bool arrays (True = kept) for the sparse leaves, ``None`` for the
      dense ones; the structure of the params.
    key: the typed PRNG key the method draws from.
    inner_state: the state of the wrapped optimizer.
    method_state: method-specific state (e.g. movement scores); ``()`` when
      the method keeps none.
    pruned_scale: ``None``, or the factor (float32 scalar) by which
      :func:`forward_params` multiplies pruned entries instead of zeroing
      them (decaying-mask methods such as MDGF).
  """

  count: jax.Array  # shape=(), dtype=jnp.int32.
  masks: Any
  key: jax.Array  # a typed key, shape=().
  inner_state: Any
  method_state: Any
  pruned_scale: Any = None  # None, or shape=(), dtype=jnp.float32.



class MaskUpdate(NamedTuple):
  """What a method's mask-update function is given.

  Attributes:
    params: the current parameters (pruned entries are zero for exact-zero
      transforms).
    grads: the incoming updates (gradients) as the transform received them,
      unmasked: for an exact-zero transform, the dense gradient with respect
      to the masked weights.
    masks: the current masks.
    budgets: kept entries per sparse leaf (int or int32 scalar, a multiple of
      the block size with block granularity), ``None`` for dense leaves.
    sparsity: the overall target sparsity at this step (``None`` when a
      callable distribution gives per-leaf values directly).
    key: a fresh PRNG key for this update.
    count: the step count of this update.
    inner_state: the wrapped optimizer's state.
    method_state: the method's own state.
    block_shape: ``None`` for element granularity, else ``(bm, bn)``.
    to_view: moves another params-shaped tree (e.g. an optimizer slot) into
      the view the other fields are in (see :mod:`sparsejax._specs`).
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


InitMasksFn = Callable[[jax.Array, Any, Any, Any], Any]
UpdateMasksFn = Callable[[MaskUpdate], tuple[Any, Any]]


def canonical_key(seed: Any) -> jax.Array:
  """An int seed or a key, as a typed key with the mesh's replicated type."""
  if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype,
                                                    jax.dtypes.prng_key):
    key = seed
  elif isinstance(seed, jax.Array) and seed.dtype == jnp.uint32 and (
      seed.shape == (2,)):
    key = jax.random.wrap_key_data(seed)
  else:
    key = jax.random.key(seed)
  # A key made outside `jax.set_mesh` has an empty-mesh type that changes after
  # a jitted update under the mesh; re-typing it keeps init/update types equal.
  if not jax.sharding.get_abstract_mesh().empty:
    key = jax.sharding.reshard(key, jax.P())
  return key


def check_seed(seed: Any) -> None:
  if isinstance(seed, bool) or not (
      isinstance(seed, (int, np.integer, jax.Array))):
    raise ValueError(
        f"`seed` must be an int or a PRNG key, got {type(seed).__name__}.")


def check_sparsity_arg(sparsity: Any, *, allow_none: bool) -> None:
  """Validates a float-or-schedule sparsity at construction time."""
  if sparsity is None:
    if not allow_none:
      raise ValueError("`sparsity` is required.")
    return
  if callable(sparsity):
    return
  if not _tree.is_concrete(sparsity):
    return  # traced by optax.inject_hyperparams; checked by the caller's jit
  try:
    v = float(sparsity)
  except (TypeError, ValueError):
    raise ValueError(
        "`sparsity` must be a float in [0, 1) or an optax schedule, got "
        f"{sparsity!r}.") from None
  if not 0.0 <= v < 1.0:  # also rejects NaN
    raise ValueError(f"`sparsity` must be in [0, 1), got {v}.")


def check_positive_int(value: Any, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(
        f"`{name}` must be a positive int, got {value!r}; with "
        f"optax.inject_hyperparams list it in `static_args`.")
  if value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value}.")
  return int(value)


def check_granularity(granularity: Any) -> tuple[int, int] | None:
  if isinstance(granularity, str):
    if granularity != "element":
      raise ValueError(
          "`granularity` must be 'element' or a block shape (bm, bn), got "
          f"{granularity!r}.")
    return None
  try:
    bm, bn = (int(b) for b in granularity)
  except (TypeError, ValueError):
    raise ValueError(
        "`granularity` must be 'element' or a block shape (bm, bn), got "
        f"{granularity!r}.") from None
  if bm < 1 or bn < 1:
    raise ValueError(f"`granularity` block sizes must be >= 1, got "
                     f"{granularity!r}.")
  return bm, bn


def leaf_sparsities(distribution: Callable[[Any], Any], params: Any) -> Any:
  """Evaluates a distribution and checks its result against ``params``."""
  sparsities = _tree.align(distribution(params), params,
                           name="distribution(params)", check_shapes=False)

  def check(path, s, p):
    if s is None:
      return None
    if _tree.is_concrete(s):
      _masks._check_sparsity(s, "sparsity", path=path)  # pylint: disable=protected-access
    if not jnp.issubdtype(jnp.result_type(p), jnp.floating):
      raise ValueError(
          f"leaf '{path}' of dtype {jnp.result_type(p)} is selected for "
          "sparsity; only floating-point leaves can be sparse.")
    return s

  return _tree.map_with_path(check, sparsities, params)


def budgets_for(sparsities: Any, params: Any,
                block_shape: tuple[int, int] | None) -> Any:
  """Kept entries per sparse leaf (``None`` for dense leaves)."""

  def one(path, s, p):
    if s is None:
      return None
    size = int(np.size(p))
    if block_shape is None:
      return _masks.budget(size, s)
    bm, bn = block_shape
    shape = np.shape(p)
    if len(shape) < 2 or shape[-2] % bm or shape[-1] % bn:
      raise ValueError(
          f"`granularity` {block_shape} does not divide the last two "
          f"dimensions of leaf '{path}' with shape {tuple(shape)}.")
    return _masks.budget(size // (bm * bn), s) * (bm * bn)

  return _tree.map_with_path(one, sparsities, params)


def promoted(params: Any, updates: Any) -> Any:
  """``updates`` in the wider of each leaf's param and update dtypes."""
  return jax.tree.map(
      lambda p, u: u if u is None else u.astype(jnp.promote_types(p.dtype,
                                                                  u.dtype)),
      params, updates, is_leaf=_tree.is_none)


def budgeted_rule(budgets: Any) -> Callable[[str, Any], bool]:
  """A ``where`` rule selecting the leaves that have a budget."""
  chosen = {p for p, b in _tree.leaves_with_paths(budgets) if b is not None}
  return lambda path, leaf: path in chosen


def check_specs(specs: Any) -> Any:
  """``specs`` as given (``None``, a spec tree) or inferred from a model."""
  if specs is None:
    return None
  if _specs.is_nnx_module(specs):
    return _specs.leaf_specs(specs)
  _specs.specs_by_path(specs)  # raises for leaves that are not specs
  return specs


def _where_tree(cond_tree: Any, true_tree: Any, false_tree: Any) -> Any:
  """``jnp.where`` per leaf; a ``None`` condition keeps ``true_tree``."""
  return jax.tree.map(
      lambda c, t, f: t if c is None else jnp.where(c, t, f),
      cond_tree, true_tree, false_tree, is_leaf=_tree.is_none)


def _zero_where_pruned(masks: Any, tree: Any) -> Any:
  """``tree`` with its sparse leaves set to 0 where ``masks`` is False."""
  return _where_tree(masks, tree, jax.tree.map(jnp.zeros_like, tree))


def run_if(pred: jax.Array, fn: Callable[[Any, Any], Any], operand: Any,
           consts: Any = ()) -> Any:
  """``fn(operand, consts)`` if the scalar ``pred`` holds, else ``operand``.

  A loop of 0 or 1 trips rather than ``lax.cond``: XLA updates a loop's
  carry in place, whereas a cond copies every operand its untaken branch
  returns, and with donated buffers it also copies the buffers that the
  taken branch reads twice. ``fn`` must read the operand from its first
  argument, and every large array it only reads (params, gradients) from
  ``consts``: those pass through an optimization barrier tied to the trip
  index, which stops XLA from hoisting work on them out of the loop (and so
  running it on every step).
  """
  def body(i, carry):
    _, c = lax.optimization_barrier((i, consts))
    # The carry keeps its dtypes: an inner optimizer may promote a slot (bf16
    # moments of bf16 params meeting f32 gradients) that the state holds in
    # its own dtype.
    return jax.tree.map(lambda new, old: new.astype(old.dtype),
                        fn(carry, c), carry)
  return lax.fori_loop(0, jnp.asarray(pred).astype(jnp.int32), body,
                       operand)


def _combine_masks(fn: Callable[[jax.Array, jax.Array], jax.Array],
                   new_masks: Any, old_masks: Any) -> Any:
  return jax.tree.map(
      lambda n, o: None if n is None else fn(n, o), new_masks, old_masks,
      is_leaf=_tree.is_none)


def grown_positions(new_masks: Any, old_masks: Any) -> Any:
  """Positions that became active: ``new & ~old`` (``None`` for dense)."""
  return _combine_masks(lambda n, o: n & ~o, new_masks, old_masks)


def kept_positions(new_masks: Any, old_masks: Any) -> Any:
  """Positions active before and after: ``new & old`` (``None`` for dense)."""
  return _combine_masks(lambda n, o: n & o, new_masks, old_masks)


def reset_slots(inner: optax.GradientTransformation, inner_state: Any,
                grown: Any) -> Any:
  """Zeroes every params-shaped slot of any inner optimizer where grown."""
  def reset(slot, g):
    if g is None or not hasattr(slot, "shape") or slot.shape != g.shape:
      return slot
    return jnp.where(g, jnp.zeros_like(slot), slot)
  return optax.tree.map_params(inner, reset, inner_state, grown,
                               is_leaf=_tree.is_none)


def sparse_wrapper(
    inner: optax.GradientTransformation,
    *,
    sparsity: Any,
    distribution: str | Callable[[Any], Any],
    where: Any,
    seed: Any,
    update_every: int,
    init_masks: InitMasksFn,
    update_masks: UpdateMasksFn | None,
    begin_step: int = 0,
    end_step: int | None = None,
    init_method_state: Callable[[Any], Any] | None = None,
    accumulate: Callable[[Any, Any, Any, Any], Any] | None = None,
    skip_inner_on_update: bool = False,
    mask_gradients: bool = True,
    reset_grown_slots: bool = True,
    granularity: Any = "element",
    exact_zero: bool = True,
    transform_grads: Callable[[Any, Any, Any, Any], Any] | None = None,
    pruned_scale: Any = None,
    update_after_inner: bool = False,
    specs: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Builds a weight-sparsity transform that wraps ``inner``.

  Args:
    inner: the optimizer whose updates are sparsified.
    sparsity: a float in ``[0, 1)``, an optax schedule of the step count, or
      ``None`` (a callable ``distribution`` or given masks decide).
    distribution: ``"uniform"``, ``"er"``, ``"erk"`` or a callable
      ``params -> per-leaf sparsities``.
    where: the leaf rule (see :mod:`sparsejax.distributions`).
    seed: an int or a PRNG key; the key lives in the state.
    update_every: masks are updated at steps ``begin_step + i * update_every``
      (``i = 0, 1, ...``) up to ``end_step`` inclusive.
    init_masks: ``(key, params, budgets, block_shape) -> masks``.
    update_masks: ``MaskUpdate -> (masks, method_state)``, or ``None`` for
      masks that never change.
    begin_step: the first mask-update step.
    end_step: the last step at which masks may change (``None``: no end).
    init_method_state: ``(params, where) -> method_state`` (default:
      ``()``), given the params in their view and the rule that selects the
      sparse leaves of the view.
    accumulate: ``(method_state, grads, params, masks) -> method_state``, run
      on every step before the mask update (e.g. movement scores).
    skip_inner_on_update: on a mask-update step, apply no optimizer step (and
      leave the inner state as it is but for the reset slots), as RigL does.
    mask_gradients: feed the inner optimizer gradients zeroed at pruned
      positions, so its moments do not accumulate there.
    reset_grown_slots: zero every params-shaped slot of the inner state at
      positions that become active.
    granularity: ``"element"`` or a block shape ``(bm, bn)``.
    exact_zero: make the updates zero every pruned weight (``where(mask, u,
      -p)``); ``False`` leaves the weights dense (straight-through training,
      where only the forward pass is masked).
    transform_grads: ``(grads, params, masks, method_state) -> grads``,
      applied to the incoming gradients (with the masks of this step) before
      they are masked and fed to the inner optimizer (e.g. SR-STE's decay
      ``g + lambda * (1 - M) * W``); ``None`` leaves them as they are.
    pruned_scale: ``None``, or a float or schedule ``count -> beta``: the
      state then carries ``beta`` at the current count and
      :func:`forward_params` gives pruned entries ``beta * W`` instead of 0.
    update_after_inner: on a mask-update step, first take the inner step with
      the current masks, then compute the new masks from the stepped weights
      and the stepped inner state (optimizer step, then mask update, as SET,
      SNFS, MEST and GraNet do); grown weights stay 0 on that step.
    specs: ``None`` (infer each leaf's axes from the params at ``init``,
      NNX metadata included), an NNX model, or a tree of
      :class:`sparsejax.LeafSpec` (see :func:`sparsejax.leaf_specs`). The
      method functions see every sparse leaf in its view: ``[*window,
      fan_in, fan_out]``, one array per stacked slice.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.
  """
  inner = optax.with_extra_args_support(inner)
  check_sparsity_arg(sparsity, allow_none=True)
  check_seed(seed)
  update_every = check_positive_int(update_every, "update_every")
  block_shape = check_granularity(granularity)
  if callable(distribution) and sparsity is not None:
    raise ValueError(
        "`sparsity` must be None when `distribution` is a callable: the "
        "callable gives the per-leaf sparsities itself.")
  if not callable(distribution) and distribution not in ("uniform", "er",
                                                          "erk"):
    raise ValueError(
        "`distribution` must be 'uniform', 'er', 'erk' or a callable, got "
        f"{distribution!r}.")
  specs = check_specs(specs)

  def sparsity_at(count):
    return sparsity(count) if callable(sparsity) else sparsity

  def budgets(view, params, count):
    """Kept entries per sparse slice, in the view."""
    if callable(distribution):
      per_leaf = view.expand(_tree.align(
          leaf_sparsities(distribution, params), params,
          name="distribution(params)", check_shapes=False))
    else:
      per_leaf = view.expand(_distributions.named_on_resolved(
          distribution, sparsity_at(count), where, view.specs, params))
      per_leaf = leaf_sparsities(lambda _: per_leaf, view.to(params))
    return budgets_for(per_leaf, view.to(params), block_shape)

  def scale_at(count):
    if pruned_scale is None:
      return None
    beta = pruned_scale(count) if callable(pruned_scale) else pruned_scale
    return jnp.asarray(beta, jnp.float32)

  # The specs `init` resolved, by the params' structure and shapes. `init`
  # may see NNX variables whose metadata names stacked axes, `update` only
  # raw arrays: both must use one view of every leaf. (Not in the state: a
  # structure that depends on the params breaks `optax.tree.map_params`.)
  resolved_specs = {}

  def signature(raw):
    return (jax.tree.structure(raw, is_leaf=_tree.is_none),
            tuple(None if x is None else tuple(np.shape(x))
                  for x in jax.tree.leaves(raw, is_leaf=_tree.is_none)))

  def specs_of(params):
    found = resolved_specs.get(signature(params))
    if found is not None:
      return found
    return tuple(_specs.resolve(specs, where, params, chosen_by(params)))

  def chosen_by(raw):
    """The leaves a callable distribution makes sparse (else None)."""
    if not callable(distribution):
      return None
    return [s is not None for s in jax.tree.leaves(
        _tree.align(leaf_sparsities(distribution, raw), raw,
                    name="distribution(params)", check_shapes=False),
        is_leaf=_tree.is_none)]

  def init_fn(params):
    key = canonical_key(seed)
    key, init_key = jax.random.split(key)
    raw = _tree.unwrap_variables(params)
    resolved = tuple(_specs.resolve(specs, where, params, chosen_by(raw)))
    resolved_specs[signature(raw)] = resolved
    view = _specs.View(resolved, raw)
    b = budgets(view, raw, jnp.zeros([], jnp.int32))
    view_params = view.to(raw)
    view_masks = _tree.align(init_masks(init_key, view_params, b,
                                        block_shape), view_params,
                             name="masks")
    masks = _tree.align(view.back(view_masks), params, name="masks")
    masks = jax.tree.map(
        lambda m: None if m is None else jnp.asarray(m, jnp.bool_), masks,
        is_leaf=_tree.is_none)
    method_state = (init_method_state(view_params, view.sparse_rule())
                    if init_method_state else ())
    return SparseState(
        count=jnp.zeros([], jnp.int32), masks=masks, key=key,
        inner_state=inner.init(params), method_state=method_state,
        pruned_scale=scale_at(jnp.zeros([], jnp.int32)))

  def is_update_step(count):
    since = count - begin_step
    ok = (since >= 0) & (since % update_every == 0)
    if end_step is not None:
      ok = ok & (count <= end_step)
    return ok

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(NO_PARAMS_MSG)
    _tree.check_same_structure(updates, params, name="updates")
    _tree.check_same_structure(state.masks, params, name="masks")
    count = state.count
    key, step_key = jax.random.split(state.key)
    method_state = state.method_state
    view = _specs.View(specs_of(params), params)
    if accumulate is not None:
      method_state = accumulate(method_state, view.to(updates),
                                view.to(params), view.to(state.masks))
    update_now = (jnp.zeros([], jnp.bool_) if update_masks is None
                  else is_update_step(count))

    def inner_step(params, masks, inner_state, mstate, grads, extra):
      if transform_grads is not None:
        grads = view.back(transform_grads(view.to(grads), view.to(params),
                                          view.to(masks), mstate))
      if mask_gradients:
        grads = _zero_where_pruned(masks, grads)
      return inner.update(grads, inner_state, params, **extra)

    def finish(params, kept, inner_updates):
      # Only positions kept through this step take the inner update: pruned
      # and newly grown weights are set to exactly 0 (grown ones even when the
      # params passed in were not yet zero there, e.g. dense at step 0).
      if not exact_zero:
        return inner_updates
      # `-p` in the wider of the two dtypes: f32 weights with bf16 updates
      # must receive exactly -p, or `apply_updates` leaves a rounding error.
      return _where_tree(kept, promoted(params, inner_updates),
                         jax.tree.map(lambda p: -p, params))

    def stepped_params(params, masks, inner_updates):
      # The weights after the optimizer step with `masks` (grown weights are
      # still 0 there).
      if exact_zero:
        inner_updates = _zero_where_pruned(masks, inner_updates)
      return jax.tree.map(lambda p, u: p + u.astype(p.dtype), params,
                          inner_updates)

    if update_masks is None:
      masks = state.masks
      inner_updates, inner_state = inner_step(
          params, masks, state.inner_state, method_state, updates,
          extra_args)
      out = finish(params, masks, inner_updates)
    else:
      # A mask update runs in a loop of 0 or 1 trips (`run_if`), not a
      # `lax.cond`, so that the inner state and the other large buffers are
      # updated in place.
      def new_masks(old, mstate, inner_state, mask_params, grads, key):
        new, mstate = update_masks(MaskUpdate(
            params=view.to(mask_params), grads=view.to(grads),
            masks=view.to(old), budgets=budgets(view, params, count),
            sparsity=sparsity_at(count), key=key, count=count,
            inner_state=inner_state, method_state=mstate,
            block_shape=block_shape, to_view=view.to))
        return view.back(new), mstate

      def reset_grown(inner_state, new, old):
        if not reset_grown_slots:
          return inner_state
        return reset_slots(inner, inner_state, grown_positions(new, old))

      def mask_update(old, mstate, inner_state, mask_params, grads, key):
        new, mstate = new_masks(old, mstate, inner_state, mask_params, grads,
                                key)
        return new, mstate, reset_grown(inner_state, new, old)

      if skip_inner_on_update:
        masks, method_state, inner_state, out = _skip_inner_step(
            update_now, state, method_state, updates, params, extra_args,
            step_key, inner_step=inner_step, finish=finish,
            mask_update=mask_update)
      elif update_after_inner and not reset_grown_slots:
        # Optimizer step with the old masks, then new masks from the stepped
        # weights and state. The loop takes the optimizer step again for
        # itself rather than reading the one below: a loop operand is a
        # buffer on every step, so the updates would be written out instead
        # of fused into `apply_updates`. (Not with slot resets: a reset after
        # the in-place step makes XLA copy the state; see below.)
        def step_then_masks(carry, consts):
          old, mstate, inner_state = carry
          params, grads, key, extra = consts
          inner_updates, stepped_state = inner_step(
              params, old, inner_state, mstate, grads, extra)
          new, mstate = new_masks(old, mstate, stepped_state,
                                  stepped_params(params, old, inner_updates),
                                  grads, key)
          # The state passes through the loop, which orders the in-place step
          # below after it; the barrier keeps XLA from seeing the pass-through
          # and taking the state out of the loop.
          return new, mstate, lax.optimization_barrier(inner_state)

        masks, new_method_state, inner_state = run_if(
            update_now, step_then_masks,
            (state.masks, method_state, state.inner_state),
            (params, updates, step_key, extra_args))
        inner_updates, inner_state = inner_step(
            params, state.masks, inner_state, method_state, updates,
            extra_args)
        method_state = new_method_state
        out = finish(params, kept_positions(masks, state.masks),
                     inner_updates)
      elif update_after_inner:
        # As above, with the grown slots reset after the optimizer step. The
        # updates go through the loop: read beside an in-place reset, the
        # stepped state would be recomputed from the old one (a copy).
        inner_updates, inner_state = inner_step(
            params, state.masks, state.inner_state, method_state, updates,
            extra_args)
        inner_updates = promoted(params, inner_updates)

        def masks_after_step(carry, consts):
          old, mstate, inner_state, inner_updates = carry
          params, grads, key = consts
          new, mstate, inner_state = mask_update(
              old, mstate, inner_state,
              stepped_params(params, old, inner_updates), grads, key)
          return (new, mstate, inner_state,
                  finish(params, kept_positions(new, old), inner_updates))

        masks, method_state, inner_state, inner_updates = run_if(
            update_now, masks_after_step,
            (state.masks, method_state, inner_state, inner_updates),
            (params, updates, step_key))
        # Applying the new masks again changes nothing on a mask-update step
        # (the loop already did) and is the whole work on the others.
        out = finish(params, masks, inner_updates)
      else:
        def masks_step(carry, consts):
          params, grads, key = consts
          return mask_update(*carry, params, grads, key)

        masks, method_state, inner_state = run_if(
            update_now, masks_step,
            (state.masks, method_state, state.inner_state),
            (params, updates, step_key))
        inner_updates, inner_state = inner_step(
            params, masks, inner_state, method_state, updates, extra_args)
        out = finish(params, kept_positions(masks, state.masks),
                     inner_updates)
    new_count = optax.safe_increment(count)
    return out, SparseState(
        count=new_count, masks=masks, key=key,
        inner_state=inner_state, method_state=method_state,
        pruned_scale=scale_at(new_count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _skip_inner_step(update_now, state, method_state, updates, params,
                     extra_args, key, *, inner_step, finish, mask_update):
  """A step that takes no optimizer step when it updates the masks (RigL).

  Two loops of 0 or 1 trips, one per branch. The gradients' buffer carries
  the updates out of both (when their shapes and dtypes allow), so that
  neither branch copies it.

  Returns:
    ``(masks, method_state, inner_state, updates)``.
  """
  inner = state.inner_state
  out_struct = jax.eval_shape(lambda: promoted(params, inner_step(
      params, state.masks, inner, method_state, updates, extra_args)[0]))
  in_place = all(jax.tree.leaves(jax.tree.map(
      lambda g, o: g.shape == o.shape and g.dtype == o.dtype, updates,
      out_struct)))
  # Read-only inputs; the gradients are one only when their buffer cannot
  # hold the updates.
  grads_const = None if in_place else updates

  def update_step(carry, consts):
    old, mstate, inner_state, buf = carry
    params, grads, key = consts
    grads = buf if in_place else grads
    new, mstate, inner_state = mask_update(old, mstate, inner_state, params,
                                           grads, key)
    zeros = jax.tree.map(jnp.zeros_like, out_struct)
    return (new, mstate, inner_state,
            finish(params, kept_positions(new, old), zeros))

  buf = updates if in_place else jax.tree.map(
      lambda o: jnp.zeros(o.shape, o.dtype), out_struct)
  masks, method_state, inner, buf = run_if(
      update_now, update_step, (state.masks, method_state, inner, buf),
      (params, grads_const, key))

  def ordinary_step(carry, consts):
    inner_state, buf = carry
    params, grads, masks, mstate, extra = consts
    grads = buf if in_place else grads
    inner_updates, inner_state = inner_step(params, masks, inner_state,
                                            mstate, grads, extra)
    return inner_state, promoted(params, inner_updates)

  inner, buf = run_if(~update_now, ordinary_step, (inner, buf),
                      (params, grads_const, masks, method_state, extra_args))
  # Outside the loops, where it fuses with the caller's `apply_updates`; on a
  # mask-update step it changes nothing (the first loop applied it).
  return masks, method_state, inner, finish(params, masks, buf)


def find_states(state: Any) -> list[SparseState]:
  """Every :class:`SparseState` inside a (chained, wrapped) optimizer state."""
  return [s for s in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, SparseState))
          if isinstance(s, SparseState)]


def get_masks(opt_state: Any) -> Any:
  """The sparsity masks held by an optimizer state.

  Finds the state of the sparsejax transform anywhere inside a chained or
  wrapped state (``optax.chain``, ``optax.MultiSteps``,
  ``optax.inject_hyperparams``, ``nnx.Optimizer.opt_state``).

  Args:
    opt_state: the optimizer state.

  Returns:
    A pytree with the structure of the params: bool arrays for sparse leaves,
    ``None`` for dense ones.

  Raises:
    ValueError: if the state holds no sparsejax transform, or more than one.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.ones((4, 4)), 'b': jnp.ones(4)}
    >>> tx = optax.chain(optax.clip(1.0),
    ...                  sj.static_sparse(optax.sgd(0.1), sparsity=0.75))
    >>> masks = sj.get_masks(tx.init(params))
    >>> masks['b'], int(masks['w'].sum())
    (None, 4)
  """
  found = find_states(opt_state)
  if not found:
    raise ValueError(
        "`opt_state` holds no sparsejax transform state (SparseState).")
  if len(found) > 1:
    raise ValueError(
        f"`opt_state` holds {len(found)} sparsejax transform states; pass the "
        "one you mean.")
  return _tree.unwrap_variables(found[0].masks)


def forward_params(params: Any, opt_state: Any) -> Any:
  """The parameters the forward pass must use.

  The one helper for every sparsejax transform; calling it in every loss
  function makes a training loop independent of the method. For the
  exact-zero transforms (:func:`static_sparse`, :func:`magnitude_pruning`,
  drop-and-grow methods) pruned weights are already zero and this returns
  ``params`` unchanged in value; for straight-through transforms
  (:func:`ste`, :func:`top_kast`, :func:`nm_sparse`), whose weights stay
  dense, it applies the masks; for a decaying mask (:func:`nm_sparse` with
  ``decay``) it returns ``W * (M + beta * (1 - M))`` with the state's
  current ``beta``.

  Its gradient is the identity (straight-through): differentiating a loss of
  ``forward_params(params, state)`` with respect to ``params`` gives the
  gradient with respect to the forward parameters at every entry, pruned or
  not, which is what straight-through training and gradient-based growth
  need.

  Args:
    params: the current parameters.
    opt_state: the optimizer state holding one sparsejax transform.

  Returns:
    ``params`` with the masks of ``opt_state`` applied.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.arange(1., 5.).reshape(2, 2)}
    >>> tx = sj.static_sparse(optax.sgd(0.1), sparsity=0.5)
    >>> state = tx.init(params)
    >>> int((sj.forward_params(params, state)['w'] != 0).sum())
    2
  """
  found = find_states(opt_state)
  if len(found) != 1:
    get_masks(opt_state)  # raises the error that explains the problem
  state = found[0]
  masks = _tree.unwrap_variables(state.masks)
  params = _tree.unwrap_variables(params)
  _tree.check_same_structure(masks, params, name="masks")
  beta = _tree.unwrap_variables(state.pruned_scale)  # NNX wraps it

  def one(m, p):
    if m is None:
      return p
    if beta is None:
      value = jnp.where(m, p, jnp.zeros_like(p))
    else:
      value = jnp.where(m, p, (beta * p).astype(p.dtype))
    # Forward value `value`, gradient the identity (straight-through).
    return p + lax.stop_gradient(value - p)

  return jax.tree.map(one, masks, params, is_leaf=_tree.is_none)
