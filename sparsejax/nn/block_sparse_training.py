# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse training: nnx.Linear kernels on the block-sparse kernels.

A model trained with a block-granular sparsity transform (``sj.rigl``,
``sj.set_``, ``sj.magnitude_pruning``, ... with ``granularity=(bm, bn)``)
keeps dense parameters with exact zeros at the pruned blocks, and its masks in
the optimizer state. On every ordinary step this module runs the masked
``nnx.Linear`` layers on :func:`pallas_kernels.block_sparse_matmul` instead:

- the topology is read from the transform's masks on every step and the
  ``BlockSparseMatrix`` is built inside the jitted step by gathering the kept
  blocks by index; its capacity (the number of block slots) is static, so a
  topology changed by drop-and-grow compiles nothing;
- the forward and backward products run over the stored blocks only, and the
  weight gradient is computed at the stored blocks only, then scattered into a
  params-shaped gradient with zeros elsewhere: exactly what a masked
  transform's inner optimizer sees;
- on a mask-update step (:func:`sparsejax.is_mask_update_step`) the layers run
  dense, so the transform gets the dense gradient that RigL's growth needs.

The training loop stays that of masked training; the loss function enters
:func:`block_sparse_kernels` around the forward pass, and the host picks one
of two compiled steps (sparse, or dense on mask-update steps)::

  masks = sj.get_masks(optimizer.opt_state)
  def loss_fn(model):
    with sj.nn.block_sparse_kernels(model, masks, block_shape=(64, 64),
                                    capacities=caps, enabled=not update):
      return loss(model(x), y)

Only 2-D ``[in, out]`` kernels (``nnx.Linear``) are handled: a kernel with
more axes (``nnx.LinearGeneral``, stacked layers, experts) needs its matrix
view (which axes are contracted, which are output or stacked; see the leaf
specs) and is refused with a ``ValueError`` naming the leaf.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul

__all__ = ("block_capacities", "block_sparse_apply", "block_sparse_kernels")


def _check_block_shape(block_shape, shape, path):
  try:
    bk, bn = (int(b) for b in block_shape)
  except (TypeError, ValueError):
    raise ValueError(
        f"block_shape must be a pair of ints, got {block_shape!r}.") from None
  if len(shape) != 2:
    raise ValueError(
        f"leaf '{path}' has shape {tuple(shape)}: block-sparse training runs "
        "2-D [in, out] kernels only; a kernel with more axes needs its "
        "matrix view (leaf specs) and is not supported yet.")
  if bk < 1 or bn < 1 or shape[0] % bk or shape[1] % bn:
    raise ValueError(
        f"block_shape {(bk, bn)} does not divide leaf '{path}' of shape "
        f"{tuple(shape)}.")
  return bk, bn


def _block_mask(mask, shape, block_shape, path):
  """A ``[K // bk, N // bn]`` bool mask: True where a block keeps anything."""
  bk, bn = block_shape
  kb, nb = shape[0] // bk, shape[1] // bn
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise ValueError(f"mask of leaf '{path}' must be bool, got {mask.dtype}.")
  if mask.shape == (kb, nb):
    return mask
  if mask.shape != tuple(shape):
    raise ValueError(
        f"mask of leaf '{path}' must have the kernel's shape {tuple(shape)} "
        f"or the block grid's {(kb, nb)}, got {mask.shape}.")
  # `any` rather than one entry per block: with a mask that is not block
  # granular the kernel then still computes `x @ W` for exact-zero weights.
  return mask.reshape(kb, bk, nb, bn).any(axis=(1, 3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _gather_blocks(kernel, rows, cols, block_shape):
  """``data[z] = kernel`` block ``(rows[z], cols[z])``; ``rows[z] < 0``: 0."""
  bk, bn = block_shape
  kb, nb = kernel.shape[0] // bk, kernel.shape[1] // bn
  blocks = kernel.reshape(kb, bk, nb, bn)
  data = blocks[jnp.maximum(rows, 0), :, cols, :]
  return jnp.where((rows >= 0)[:, None, None], data, 0)


def _gather_fwd(kernel, rows, cols, block_shape):
  return _gather_blocks(kernel, rows, cols, block_shape), (rows, cols,
                                                          kernel.shape)


def _gather_bwd(block_shape, res, ddata):
  rows, cols, shape = res
  bk, bn = block_shape
  kb, nb = shape[0] // bk, shape[1] // bn
  cap = rows.shape[0]
  # The kernel-shaped gradient as a gather from the blocks (slot ``cap`` is a
  # zero block), not zeros plus a scatter: XLA fuses the gather into the
  # optimizer's elementwise update, so no kernel-sized buffer is written and
  # first touched on every step. Padding slots (rows < 0) index out of
  # bounds and are dropped.
  rows = jnp.where(rows >= 0, rows, kb)
  slot = jnp.full((kb, nb), cap, jnp.int32).at[rows, cols].set(
      jnp.arange(cap, dtype=jnp.int32), mode="drop", unique_indices=True)
  blocks = jnp.concatenate([ddata, jnp.zeros((1, bk, bn), ddata.dtype)])
  dk = blocks[slot].transpose(0, 2, 1, 3)
  zero = np.zeros(rows.shape, jax.dtypes.float0)
  return dk.reshape(shape), zero, zero


_gather_blocks.defvjp(_gather_fwd, _gather_bwd)


def block_sparse_apply(x, kernel, mask, *, block_shape, capacity: int,
                       implementation: str | None = None,
                       interpret: Any = None, path: str = "kernel"):
  """``x @ (kernel * mask)`` on the block-sparse kernels, blocks kept by mask.

  Builds a :class:`pallas_kernels.BlockSparseMatrix` of ``capacity`` block
  slots from the blocks of ``kernel`` that ``mask`` keeps (a gather by block
  index, no pass over the dropped blocks) and multiplies on
  :func:`pallas_kernels.block_sparse_matmul`. Differentiable in ``x`` and in
  ``kernel``: the gradient of ``kernel`` is computed at the kept blocks only
  and is zero elsewhere, what a masked transform feeds its inner optimizer.
  Use it inside a custom layer; :func:`block_sparse_kernels` applies it to the
  ``nnx.Linear`` layers of a model.

  Args:
    x: ``[..., K]``.
    kernel: ``[K, N]`` (2-D only; a kernel with more axes needs its matrix
      view and raises ``ValueError``).
    mask: bool, the element mask ``[K, N]`` of the sparsity transform (a block
      is kept when any of its entries is) or a block mask
      ``[K // bk, N // bn]``.
    block_shape: ``(bk, bn)``, the transform's ``granularity``.
    capacity: block slots, static (see :func:`block_capacities`). A mask
      keeping more blocks than ``capacity`` makes the result NaN (no error
      can be raised under ``jax.jit``).
    implementation: passed to ``block_sparse_matmul`` (``None``: by backend).
    interpret: passed to ``block_sparse_matmul``.
    path: the leaf's name in error messages.

  Returns:
    ``[..., N]``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax.nn import block_sparse_apply
    >>> w = jnp.arange(16.0).reshape(4, 4)
    >>> mask = jnp.kron(jnp.eye(2), jnp.ones((2, 2))).astype(bool)
    >>> x = jnp.ones((1, 4))
    >>> block_sparse_apply(x, w, mask, block_shape=(2, 2), capacity=2)
    Array([[ 4.,  6., 24., 26.]], dtype=float32)
    >>> g = jax.grad(lambda w: block_sparse_apply(
    ...     x, w, mask, block_shape=(2, 2), capacity=2).sum())(w)
    >>> g[0].tolist()
    [1.0, 1.0, 0.0, 0.0]
  """
  kernel = jnp.asarray(kernel)
  block_shape = _check_block_shape(block_shape, kernel.shape, path)
  if isinstance(capacity, bool) or not isinstance(capacity,
                                                  (int, np.integer)):
    raise ValueError(
        f"capacity of leaf '{path}' must be an int (static), got "
        f"{capacity!r}.")
  bmask = _block_mask(mask, kernel.shape, block_shape, path)
  topo = BlockSparseMatrix.from_block_mask(
      bmask, block_shape, capacity=int(capacity), dtype=kernel.dtype)
  rows = jnp.where(topo.valid(), topo.row_ids, -1)
  data = _gather_blocks(kernel, rows, topo.col_ids, block_shape)
  overflow = jnp.sum(bmask, dtype=jnp.int32) > capacity
  data = jnp.where(overflow, jnp.nan, data).astype(kernel.dtype)
  return block_sparse_matmul(x, topo.with_data(data),
                             implementation=implementation,
                             interpret=interpret)


def _path_str(path) -> str:
  parts = []
  for k in path:
    k = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
    parts.append(str(k))
  return "/".join(parts)


def _mask_leaves(masks) -> list[tuple[str, tuple, Any]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(
      masks, is_leaf=lambda x: x is None)
  out = []
  for path, m in flat:
    if m is None:
      continue
    m = getattr(m, "value", m)
    keys = tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
                 for k in path)
    # nnx states seen by an optimizer may end in `.value`.
    if keys and keys[-1] == "value":
      keys = keys[:-1]
    out.append(("/".join(str(k) for k in keys), keys, m))
  return out


def block_capacities(masks: Any, block_shape) -> Any:
  """Block slots per sparse leaf: how many blocks its (concrete) mask keeps.

  Read once on the host, e.g. from ``sj.get_masks(opt_state)`` after
  ``init``: drop-and-grow (RigL, SET) keeps each leaf's block count constant,
  so that count is the capacity for the whole run. For a schedule whose
  sparsity grows (gradual magnitude pruning) take the masks of the densest
  step, or pass a larger capacity.

  Args:
    masks: a mask pytree (``None`` for dense leaves), as the sparsity
      transforms hold.
    block_shape: ``(bk, bn)``.

  Returns:
    The same structure with an ``int`` per sparse leaf, ``None`` elsewhere.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax.nn import block_capacities
    >>> masks = {'w': jnp.kron(jnp.eye(2), jnp.ones((2, 2))).astype(bool),
    ...          'b': None}
    >>> block_capacities(masks, (2, 2))
    {'b': None, 'w': 2}
  """
  def one(path, m):
    if m is None:
      return None
    m = getattr(m, "value", m)
    if isinstance(m, jax.core.Tracer):
      raise ValueError(
          f"mask of leaf '{_path_str(path)}' is traced: compute the "
          "capacities on the host, outside jax.jit.")
    name = _path_str(path)
    shape = np.shape(m)
    bs = _check_block_shape(block_shape, shape, name)
    bmask = np.asarray(_block_mask(m, shape, bs, name))
    return max(int(bmask.sum()), 1)

  return jax.tree_util.tree_map_with_path(one, masks,
                                          is_leaf=lambda x: x is None)


def _routed_dot_general(inputs, kernel, dimension_numbers, *, mask,
                        block_shape, capacity, implementation, interpret,
                        path, precision=None, preferred_element_type=None,
                        out_sharding=None, **kwargs):
  del precision, kwargs  # the kernels accumulate in float32
  if out_sharding is not None:
    raise ValueError(
        f"leaf '{path}': block-sparse training does not take out_sharding.")
  want = (((inputs.ndim - 1,), (0,)), ((), ()))
  if tuple(map(lambda t: tuple(map(tuple, t)), dimension_numbers)) != want:
    raise ValueError(
        f"leaf '{path}': expected the nnx.Linear contraction {want}, got "
        f"{dimension_numbers}.")
  y = block_sparse_apply(inputs, kernel, mask, block_shape=block_shape,
                         capacity=capacity, implementation=implementation,
                         interpret=interpret, path=path)
  if preferred_element_type is not None:
    y = y.astype(preferred_element_type)
  return y


def _capacity_of(capacities, keys, name):
  if isinstance(capacities, (int, np.integer)) and not isinstance(
      capacities, bool):
    return int(capacities)
  node = capacities
  try:
    for k in keys:
      node = node[k]
  except (KeyError, IndexError, TypeError):
    raise ValueError(
        f"capacities has no entry for leaf '{name}'; build it with "
        "sparsejax.nn.block_capacities(masks, block_shape).") from None
  node = getattr(node, "value", node)
  if node is None:
    raise ValueError(f"capacities gives None for the sparse leaf '{name}'.")
  return int(node)


@contextlib.contextmanager
def block_sparse_kernels(
    model: nnx.Module, masks: Any, *, block_shape, capacities: Any,
    enabled: bool = True, where: str | Callable[[str], bool] | None = None,
    implementation: str | None = None, interpret: Any = None,
) -> Iterator[None]:
  """Runs the masked ``nnx.Linear`` layers of ``model`` on the kernels.

  Inside the ``with`` block every ``nnx.Linear`` whose kernel has a mask in
  ``masks`` computes ``x @ (kernel * mask) + bias`` with
  :func:`block_sparse_apply`: forward and backward over the kept blocks, the
  kernel's gradient at the kept blocks only (zeros elsewhere). Enter it in
  the loss function, around the forward pass of the model that function
  receives (``nnx.grad`` passes a copy). With ``enabled=False`` it does
  nothing, so the same loss function gives the dense gradient on mask-update
  steps (see :func:`sparsejax.is_mask_update_step`).

  The numbers are those of masked training (the same masks, losses to float
  tolerance) when the transform keeps pruned weights exactly zero (every
  exact-zero transform does after its first update; before it, masked
  training must use ``sj.forward_params``). A method that reads the dense
  gradient on ordinary steps (SNFS's momentum, movement pruning) needs the
  dense path on those steps too.

  Only 2-D ``[in, out]`` kernels of ``nnx.Linear`` run on the kernels. A
  masked leaf of any other layer (``nnx.LinearGeneral``, ``nnx.Conv``,
  ``nnx.Einsum``, stacked or expert kernels, which need the matrix view of
  their leaf specs) raises ``ValueError`` naming it; leave it out with
  ``where``.

  Args:
    model: the NNX model (the one the loss function receives).
    masks: ``sj.get_masks(opt_state)`` of an optimizer over
      ``nnx.state(model, nnx.Param)``; paths must match the model's.
    block_shape: ``(bk, bn)``, the transform's ``granularity``.
    capacities: block slots per leaf: a pytree like ``masks``
      (:func:`block_capacities`) or one int for every leaf.
    enabled: ``False`` leaves the layers dense (mask-update steps).
    where: only leaves whose path (``"fc1/kernel"``) matches this regex or
      callable run on the kernels; default every masked leaf.
    implementation: passed to ``block_sparse_matmul``.
    interpret: passed to ``block_sparse_matmul``.

  Yields:
    Nothing; the layers are restored on exit.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> import sparsejax as sj
    >>> model = nnx.Linear(8, 8, rngs=nnx.Rngs(0))
    >>> tx = sj.rigl(optax.adam(1e-3), sparsity=0.5, end_step=100,
    ...              granularity=(4, 4))
    >>> opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    >>> masks = sj.get_masks(opt.opt_state)
    >>> caps = sj.nn.block_capacities(masks, (4, 4))
    >>> x = jnp.ones((2, 8))
    >>> def loss_fn(model):
    ...   with sj.nn.block_sparse_kernels(model, masks, block_shape=(4, 4),
    ...                                   capacities=caps):
    ...     return (model(x) ** 2).mean()
    >>> g = nnx.grad(loss_fn)(model)
    >>> bool(jnp.all(jnp.where(masks['kernel'], True, g['kernel'][...] == 0)))
    True
  """
  if not enabled:
    yield
    return
  if isinstance(where, str):
    pattern = re.compile(where)
    where = lambda name: pattern.search(name) is not None  # noqa: E731
  modules = {tuple(p): m for p, m in nnx.iter_modules(model)}
  routes = []
  for name, keys, mask in _mask_leaves(masks):
    if where is not None and not where(name):
      continue
    module = modules.get(tuple(keys[:-1]))
    if not isinstance(module, nnx.Linear) or keys[-1] != "kernel":
      kind = type(module).__name__ if module is not None else "no module"
      raise ValueError(
          f"leaf '{name}' ({kind}) is masked but only nnx.Linear kernels run "
          "on the block-sparse kernels; exclude it with `where`.")
    shape = module.kernel.shape
    bs = _check_block_shape(block_shape, shape, name)
    route = functools.partial(
        _routed_dot_general, mask=mask, block_shape=bs,
        capacity=_capacity_of(capacities, keys, name),
        implementation=implementation, interpret=interpret, path=name)
    routes.append((module, module.dot_general, route))
  if where is not None and not routes:
    raise ValueError("`where` matches no masked nnx.Linear kernel.")
  try:
    for module, _, route in routes:
      module.dot_general = route
    yield
  finally:
    for module, original, _ in routes:
      module.dot_general = original
