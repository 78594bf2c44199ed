# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The one engine behind every weight-sparsity transform.

A method (magnitude pruning, RigL, SET, ...) is a :class:`Method` value
(:mod:`sparsejax._method`): how to make the first masks, how to make new
ones, and which of four step profiles it uses. This module does everything
else once: budgets from the sparsity and its distribution, the leaf views
and units (entries or blocks), the update schedule, the PRNG key in the
state, masking the gradients, running (or skipping) the inner optimizer,
resetting the inner optimizer's slots where weights are grown, and the
updates that keep pruned weights exactly zero (``jnp.where(mask, u, -p)``).
One step function per profile; all share :func:`run_if`.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from sparsejax import _blocks
from sparsejax import _method
from sparsejax import _specs
from sparsejax import _tree
from sparsejax import _validate
from sparsejax import distributions as _distributions
from sparsejax import masks as _masks

NO_PARAMS_MSG = (
    "sparsejax transforms need the current parameters: call "
    "`tx.update(grads, state, params)`.")

MaskUpdate = _method.MaskUpdate
MaskInit = _method.MaskInit
Method = _method.Method


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


def leaf_sparsities(distribution: Callable[[Any], Any], params: Any) -> Any:
  """Evaluates a distribution and checks its result against ``params``."""
  sparsities = _tree.align(distribution(params), params,
                           name="distribution(params)", check_shapes=False)

  def check(path, s, p):
    if s is None:
      return None
    if _tree.is_concrete(s):
      _validate.check_fraction(s, "sparsity", path=path)
    if not jnp.issubdtype(jnp.result_type(p), jnp.floating):
      raise ValueError(
          f"leaf '{path}' of dtype {jnp.result_type(p)} is selected for "
          "sparsity; only floating-point leaves can be sparse.")
    return s

  return _tree.map_with_path(check, sparsities, params)


def budgets_for(sparsities: Any, params: Any,
                block_shape: tuple[int, int] | None) -> Any:
  """Kept units per sparse leaf (``None`` for dense leaves).

  A unit is an entry, or a ``block_shape`` block of the last two axes.
  """

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
    return _masks.budget(size // (bm * bn), s)

  return _tree.map_with_path(one, sparsities, params)


def promoted(params: Any, updates: Any) -> Any:
  """``updates`` in the wider of each leaf's param and update dtypes."""
  return jax.tree.map(
      lambda p, u: u if u is None else u.astype(jnp.promote_types(p.dtype,
                                                                  u.dtype)),
      params, updates, is_leaf=_tree.is_none)


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


class _Units(NamedTuple):
  """Entries or ``(bm, bn)`` blocks: the units a method selects."""

  block_shape: tuple[int, int] | None

  def pool(self, x: jax.Array) -> jax.Array:
    """Sums of ``x`` per unit."""
    if self.block_shape is None:
      return x
    return _blocks.block_sum(x, self.block_shape)

  def of(self, masks: Any) -> Any:
    """Masks per entry -> per unit (a block is kept as a whole)."""
    if self.block_shape is None:
      return masks
    return jax.tree.map(
        lambda m: None if m is None else self.pool(m.astype(jnp.float32)) > 0,
        masks, is_leaf=_tree.is_none)

  def expand(self, masks: Any, like: Any) -> Any:
    """Masks per unit -> per entry, with the sharding of ``like``."""
    def one(m, x):
      if m is None:
        return None
      m = jnp.asarray(m, jnp.bool_)
      if self.block_shape is None:
        return m
      return _blocks.with_sharding_of(
          _blocks.expand_blocks(m, self.block_shape), x)
    return jax.tree.map(one, masks, like, is_leaf=_tree.is_none)


class _Config(NamedTuple):
  """Everything a transform is configured with, validated."""

  inner: optax.GradientTransformationExtraArgs
  method: Method
  sparsity: Any
  distribution: Any
  where: Any
  specs: Any
  seed: Any
  update_every: int
  begin_step: int
  end_step: int | None
  units: _Units
  # The specs `init` resolved, by the params' structure and shapes. `init`
  # may see NNX variables whose metadata names stacked axes, `update` only
  # raw arrays: both must use one view of every leaf. (Not in the state: a
  # structure that depends on the params breaks `optax.tree.map_params`.)
  resolved: dict

  def sparsity_at(self, count):
    return self.sparsity(count) if callable(self.sparsity) else self.sparsity

  def scale_at(self, count):
    scale = self.method.pruned_scale
    if scale is None:
      return None
    beta = scale(count) if callable(scale) else scale
    return jnp.asarray(beta, jnp.float32)

  def is_update_step(self, count):
    if self.method.update is None:
      return jnp.zeros([], jnp.bool_)
    since = count - self.begin_step
    ok = (since >= 0) & (since % self.update_every == 0)
    if self.end_step is not None:
      ok = ok & (count <= self.end_step)
    return ok


def sparse_transform(
    inner: optax.GradientTransformation,
    method: Method,
    *,
    sparsity: Any,
    distribution: str | Callable[[Any], Any],
    where: Any,
    seed: Any,
    update_every: int = 1,
    begin_step: int = 0,
    end_step: int | None = None,
    granularity: Any = "element",
    specs: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Builds the weight-sparsity transform that runs ``method`` on ``inner``.

  Args:
    inner: the optimizer whose updates are sparsified.
    method: the :class:`sparsejax._method.Method` (what to do); the
      arguments below say where and when.
    sparsity: a float in ``[0, 1)``, an optax schedule of the step count, or
      ``None`` (a callable ``distribution`` decides).
    distribution: ``"uniform"``, ``"er"``, ``"erk"`` or a callable
      ``params -> per-leaf sparsities``.
    where: the leaf rule (see :mod:`sparsejax.distributions`).
    seed: an int or a PRNG key; the key lives in the state.
    update_every: masks are updated at steps ``begin_step + i * update_every``
      (``i = 0, 1, ...``) up to ``end_step`` inclusive.
    begin_step: the first mask-update step.
    end_step: the last step at which masks may change (``None``: no end).
    granularity: ``"element"`` or a block shape ``(bm, bn)``: the unit the
      method selects.
    specs: ``None`` (infer each leaf's axes from the params at ``init``,
      NNX metadata included), an NNX model, or a tree of
      :class:`sparsejax.LeafSpec` (see :func:`sparsejax.leaf_specs`). The
      method sees every sparse leaf in its view: ``[*window, fan_in,
      fan_out]``, one array per stacked slice.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    A method that keeps the largest weights and grows by gradient, every
    10 steps (RigL's rule without its schedule):

    >>> import jax, jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> def update(u):
    ...   def one(m, w, g, k):
    ...     if k is None:
    ...       return None
    ...     n = k // 4
    ...     keep = sj.masks.topk(jnp.where(m, u.pool(jnp.abs(w)), -jnp.inf),
    ...                          k - n)
    ...     grow = jnp.where(keep, -jnp.inf, u.pool(jnp.abs(g)))
    ...     return keep | sj.masks.topk(grow, n)
    ...   return jax.tree.map(one, u.masks, u.params, u.grads, u.budgets,
    ...                       is_leaf=lambda x: x is None), u.method_state
    >>> def init(i):
    ...   return sj.masks.topk(jax.tree.map(jnp.abs, i.params), i.budgets), ()
    >>> method = sj.Method(profile='skip_inner', init=init, update=update,
    ...                    reset_grown_slots=True)
    >>> tx = sj.sparse_transform(optax.adam(1e-2), method, sparsity=0.75,
    ...                          distribution='uniform', where=None, seed=0,
    ...                          update_every=10)
    >>> params = {'w': jax.random.normal(jax.random.key(0), (8, 8))}
    >>> state = tx.init(params)
    >>> _, state = tx.update(params, state, params)
    >>> int(sj.get_masks(state)['w'].sum())
    16

  References:
    Evci et al, `Rigging the Lottery: Making All Tickets Winners
    <https://arxiv.org/abs/1911.11134>`_, 2020 (the step profiles follow
    the reference implementations of each method; see
    :class:`sparsejax.Method`)
  """
  _validate.check_sparsity(sparsity, allow_none=True)
  _validate.check_seed(seed)
  if callable(distribution) and sparsity is not None:
    raise ValueError(
        "`sparsity` must be None when `distribution` is a callable: the "
        "callable gives the per-leaf sparsities itself.")
  if not callable(distribution):
    _validate.check_choice(distribution, "distribution",
                           ("uniform", "er", "erk"))
  cfg = _Config(
      inner=optax.with_extra_args_support(inner),
      method=_method.check_method(method), sparsity=sparsity,
      distribution=distribution, where=where, specs=check_specs(specs),
      seed=seed,
      update_every=_validate.check_positive_int(update_every, "update_every"),
      begin_step=begin_step, end_step=end_step,
      units=_Units(_validate.check_granularity(granularity)), resolved={})
  return optax.GradientTransformationExtraArgs(
      lambda params: _init(cfg, params),
      lambda updates, state, params=None, **extra: _update(
          cfg, updates, state, params, extra))


def _budgets(cfg: _Config, view: _specs.View, params: Any, count) -> Any:
  """Kept units per sparse slice, in the view."""
  if callable(cfg.distribution):
    per_leaf = view.expand(_tree.align(
        leaf_sparsities(cfg.distribution, params), params,
        name="distribution(params)", check_shapes=False))
  else:
    per_leaf = view.expand(_distributions.named_on_resolved(
        cfg.distribution, cfg.sparsity_at(count), cfg.where, view.specs,
        params))
    per_leaf = leaf_sparsities(lambda _: per_leaf, view.to(params))
  return budgets_for(per_leaf, view.to(params), cfg.units.block_shape)


def _signature(raw: Any) -> tuple:
  return (jax.tree.structure(raw, is_leaf=_tree.is_none),
          tuple(None if x is None else tuple(np.shape(x))
                for x in jax.tree.leaves(raw, is_leaf=_tree.is_none)))


def _chosen_by(cfg: _Config, raw: Any) -> list[bool] | None:
  """The leaves a callable distribution makes sparse (else None)."""
  if not callable(cfg.distribution):
    return None
  return [s is not None for s in jax.tree.leaves(
      _tree.align(leaf_sparsities(cfg.distribution, raw), raw,
                  name="distribution(params)", check_shapes=False),
      is_leaf=_tree.is_none)]


def _view_of(cfg: _Config, params: Any) -> _specs.View:
  """The view of ``params`` with the specs ``init`` resolved for them."""
  found = cfg.resolved.get(_signature(params))
  if found is None:
    found = tuple(_specs.resolve(cfg.specs, cfg.where, params,
                                 _chosen_by(cfg, params)))
  return _specs.View(found, params)


def _init(cfg: _Config, params: Any) -> SparseState:
  key, init_key = jax.random.split(canonical_key(cfg.seed))
  raw = _tree.unwrap_variables(params)
  resolved = tuple(_specs.resolve(cfg.specs, cfg.where, params,
                                  _chosen_by(cfg, raw)))
  cfg.resolved[_signature(raw)] = resolved
  view = _specs.View(resolved, raw)
  zero = jnp.zeros([], jnp.int32)
  view_params = view.to(raw)
  unit_masks, method_state = cfg.method.init(_method.MaskInit(
      key=init_key, params=view_params,
      budgets=_budgets(cfg, view, raw, zero), pool=cfg.units.pool,
      sparse_rule=view.sparse_rule()))
  view_masks = cfg.units.expand(
      _tree.align(unit_masks, view_params, name="masks", check_shapes=False),
      view_params)
  masks = _tree.align(view.back(view_masks), params, name="masks")
  return SparseState(
      count=zero, masks=masks, key=key,
      inner_state=cfg.inner.init(params), method_state=method_state,
      pruned_scale=cfg.scale_at(zero))


class _Step(NamedTuple):
  """The pieces every step profile is made of, for one ``update`` call."""

  inner_step: Callable[..., Any]
  finish: Callable[..., Any]
  stepped_params: Callable[..., Any]
  mask_update: Callable[..., Any]


def _update(cfg: _Config, updates, state: SparseState, params, extra):
  if params is None:
    raise ValueError(NO_PARAMS_MSG)
  _tree.check_same_structure(updates, params, name="updates")
  _tree.check_same_structure(state.masks, params, name="masks")
  count = state.count
  key, step_key = jax.random.split(state.key)
  view = _view_of(cfg, params)
  method_state = state.method_state
  if cfg.method.before_step is not None:
    view_grads, method_state = cfg.method.before_step(
        view.to(updates), view.to(params), view.to(state.masks),
        method_state)
    updates = view.back(view_grads)
  masks, method_state, inner_state, out = _profile_step(cfg.method)(
      _step_pieces(cfg, view, count), cfg.is_update_step(count),
      state.masks, method_state,
      state.inner_state, updates, params, extra, step_key)
  new_count = optax.safe_increment(count)
  return out, SparseState(
      count=new_count, masks=masks, key=key, inner_state=inner_state,
      method_state=method_state, pruned_scale=cfg.scale_at(new_count))


def _step_pieces(cfg: _Config, view: _specs.View, count) -> _Step:
  """The inner step, the exact-zero finish and the mask update."""
  method, units = cfg.method, cfg.units

  def inner_step(params, masks, inner_state, grads, extra):
    if method.masks_gradients:
      grads = _zero_where_pruned(masks, grads)
    return cfg.inner.update(grads, inner_state, params, **extra)

  def finish(params, kept, inner_updates):
    # Only positions kept through this step take the inner update: pruned
    # and newly grown weights are set to exactly 0 (grown ones even when the
    # params passed in were not yet zero there, e.g. dense at step 0).
    if not method.exact_zero:
      return inner_updates
    # `-p` in the wider of the two dtypes: f32 weights with bf16 updates
    # must receive exactly -p, or `apply_updates` leaves a rounding error.
    return _where_tree(kept, promoted(params, inner_updates),
                       jax.tree.map(lambda p: -p, params))

  def stepped_params(params, masks, inner_updates):
    # The weights after the optimizer step with `masks` (grown weights are
    # still 0 there).
    if method.exact_zero:
      inner_updates = _zero_where_pruned(masks, inner_updates)
    return jax.tree.map(lambda p, u: p + u.astype(p.dtype), params,
                        inner_updates)

  def mask_update(old, mstate, inner_state, mask_params, grads, key):
    view_params = view.to(mask_params)
    new, mstate = method.update(_method.MaskUpdate(
        params=view_params, grads=view.to(grads),
        masks=units.of(view.to(old)),
        budgets=_budgets(cfg, view, mask_params, count),
        sparsity=cfg.sparsity_at(count), key=key, count=count,
        inner_state=inner_state, method_state=mstate,
        block_shape=units.block_shape, to_view=view.to, pool=units.pool))
    new = view.back(units.expand(new, view_params))
    if method.reset_grown_slots:
      inner_state = reset_slots(cfg.inner, inner_state,
                                grown_positions(new, old))
    return new, mstate, inner_state

  return _Step(inner_step, finish, stepped_params, mask_update)


def _prune_step(s: _Step, update_now, masks, mstate, inner_state, grads,
                params, extra, key):
  """New masks first, then the optimizer step with them (pruning)."""
  def masks_step(carry, consts):
    return s.mask_update(*carry, *consts)

  # A mask update runs in a loop of 0 or 1 trips (`run_if`), not a
  # `lax.cond`, so that the inner state and the other large buffers are
  # updated in place.
  new, mstate, inner_state = run_if(update_now, masks_step,
                                    (masks, mstate, inner_state),
                                    (params, grads, key))
  inner_updates, inner_state = s.inner_step(params, new, inner_state, grads,
                                            extra)
  return new, mstate, inner_state, s.finish(
      params, kept_positions(new, masks), inner_updates)


def _static_step(s: _Step, update_now, masks, mstate, inner_state, grads,
                 params, extra, key):
  """Fixed masks: the optimizer step and the exact zeros only."""
  del update_now, key
  inner_updates, inner_state = s.inner_step(params, masks, inner_state,
                                            grads, extra)
  return masks, mstate, inner_state, s.finish(params, masks, inner_updates)


def _skip_inner_step(s: _Step, update_now, masks, mstate, inner_state,
                     grads, params, extra, key):
  """A step that takes no optimizer step when it updates the masks (RigL).

  Two loops of 0 or 1 trips, one per branch. The gradients' buffer carries
  the updates out of both (when their shapes and dtypes allow), so that
  neither branch copies it.
  """
  out_struct = jax.eval_shape(lambda: promoted(params, s.inner_step(
      params, masks, inner_state, grads, extra)[0]))
  in_place = all(jax.tree.leaves(jax.tree.map(
      lambda g, o: g.shape == o.shape and g.dtype == o.dtype, grads,
      out_struct)))
  # Read-only inputs; the gradients are one only when their buffer cannot
  # hold the updates.
  grads_const = None if in_place else grads

  def update_step(carry, consts):
    old, mstate, inner_state, buf = carry
    params, grads, key = consts
    new, mstate, inner_state = s.mask_update(
        old, mstate, inner_state, params, buf if in_place else grads, key)
    zeros = jax.tree.map(jnp.zeros_like, out_struct)
    return (new, mstate, inner_state,
            s.finish(params, kept_positions(new, old), zeros))

  buf = grads if in_place else jax.tree.map(
      lambda o: jnp.zeros(o.shape, o.dtype), out_struct)
  masks, mstate, inner_state, buf = run_if(
      update_now, update_step, (masks, mstate, inner_state, buf),
      (params, grads_const, key))

  def ordinary_step(carry, consts):
    inner_state, buf = carry
    params, grads, masks, extra = consts
    inner_updates, inner_state = s.inner_step(
        params, masks, inner_state, buf if in_place else grads, extra)
    return inner_state, promoted(params, inner_updates)

  inner_state, buf = run_if(~update_now, ordinary_step, (inner_state, buf),
                            (params, grads_const, masks, extra))
  # Outside the loops, where it fuses with the caller's `apply_updates`; on a
  # mask-update step it changes nothing (the first loop applied it).
  return masks, mstate, inner_state, s.finish(params, masks, buf)


def _inner_first_step(s: _Step, update_now, masks, mstate, inner_state,
                      grads, params, extra, key):
  """The optimizer step with the old masks, then new masks from the stepped
  weights and state (SET, SNFS, MEST, GraNet; straight-through methods).

  The loop takes the optimizer step again for itself rather than reading
  the one below: a loop operand is a buffer on every step, so the updates
  would be written out instead of fused into `apply_updates`. (Not with
  slot resets: see :func:`_inner_first_reset_step`.)
  """
  def step_then_masks(carry, consts):
    old, mstate, inner_state = carry
    params, grads, key, extra = consts
    inner_updates, stepped_state = s.inner_step(params, old, inner_state,
                                                grads, extra)
    new, mstate, _ = s.mask_update(
        old, mstate, stepped_state,
        s.stepped_params(params, old, inner_updates), grads, key)
    # The state passes through the loop, which orders the in-place step
    # below after it; the barrier keeps XLA from seeing the pass-through
    # and taking the state out of the loop.
    return new, mstate, lax.optimization_barrier(inner_state)

  new, new_mstate, inner_state = run_if(
      update_now, step_then_masks, (masks, mstate, inner_state),
      (params, grads, key, extra))
  inner_updates, inner_state = s.inner_step(params, masks, inner_state,
                                            grads, extra)
  return new, new_mstate, inner_state, s.finish(
      params, kept_positions(new, masks), inner_updates)


def _inner_first_reset_step(s: _Step, update_now, masks, mstate,
                            inner_state, grads, params, extra, key):
  """:func:`_inner_first_step` with the grown slots reset after the step.

  The updates go through the loop: read beside an in-place reset, the
  stepped state would be recomputed from the old one (a copy).
  """
  inner_updates, inner_state = s.inner_step(params, masks, inner_state,
                                            grads, extra)
  inner_updates = promoted(params, inner_updates)

  def masks_after_step(carry, consts):
    old, mstate, inner_state, inner_updates = carry
    params, grads, key = consts
    new, mstate, inner_state = s.mask_update(
        old, mstate, inner_state,
        s.stepped_params(params, old, inner_updates), grads, key)
    return (new, mstate, inner_state,
            s.finish(params, kept_positions(new, old), inner_updates))

  masks, mstate, inner_state, inner_updates = run_if(
      update_now, masks_after_step,
      (masks, mstate, inner_state, inner_updates), (params, grads, key))
  # Applying the new masks again changes nothing on a mask-update step (the
  # loop already did) and is the whole work on the others.
  return masks, mstate, inner_state, s.finish(params, masks, inner_updates)


def _profile_step(method: Method) -> Callable[..., Any]:
  """The step function of ``method``'s profile."""
  if method.update is None:
    return _static_step
  if method.profile == _method.PRUNE:
    return _prune_step
  if method.profile == _method.SKIP_INNER:
    return _skip_inner_step
  if method.reset_grown_slots:
    return _inner_first_reset_step
  return _inner_first_step  # also "straight_through"


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
