# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparsity masks: pytrees of bool arrays with the structure of the params.

A mask tree has one bool array per sparse leaf (True = kept) and ``None`` for
a dense leaf. Every function here takes pytrees (an array is a pytree of one
leaf), works under :func:`jax.jit`, and keeps the sharding of sharded leaves:
top-k selection is a threshold bisection (comparisons and sums only), never a
sort of a flattened array, and it breaks ties deterministically (the lower
row-major index wins; across leaves, the earlier leaf).

Budgets follow one rounding rule everywhere in sparsejax: a leaf of ``n``
entries at sparsity ``s`` keeps ``round((1 - s) * n)`` entries (round half to
even, as :func:`numpy.round`).
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax import _blocks
from sparsejax import _specs
from sparsejax import _topk
from sparsejax import _tree
from sparsejax import _validate

__all__ = (
    "apply",
    "nnz",
    "sparsity",
    "budget",
    "topk",
    "magnitude",
    "random",
    "n_m",
    "block",
    "block_grid",
)


def apply(params: Any, masks: Any) -> Any:
  """Zeroes the pruned entries of ``params``.

  Args:
    params: a pytree of arrays.
    masks: a pytree with the structure of ``params``: bool arrays (True =
      kept) or ``None`` for leaves left dense.

  Returns:
    ``params`` with every entry whose mask is False set to zero; dense leaves
    are returned unchanged.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'w': jnp.array([[1., -2.], [3., 4.]]), 'b': jnp.ones(2)}
    >>> masks = {'w': jnp.array([[True, False], [False, True]]), 'b': None}
    >>> sj.masks.apply(params, masks)['w']
    Array([[1., 0.],
           [0., 4.]], dtype=float32)
  """
  params = _tree.unwrap_variables(params)
  masks = _tree.align(_tree.unwrap_variables(masks), params, name="masks")
  return jax.tree.map(
      lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros_like(p)),
      masks, params, is_leaf=_tree.is_none)


def nnz(tree: Any) -> Any:
  """Counts the nonzero (or True) entries of every leaf.

  Args:
    tree: a pytree of arrays (params or masks); ``None`` leaves stay ``None``.

  Returns:
    A pytree of int32 scalars with the structure of ``tree``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.masks.nnz({'a': jnp.array([0., 1., 2.]), 'b': None})
    {'a': Array(2, dtype=int32), 'b': None}
  """
  return jax.tree.map(
      lambda x: None if x is None else jnp.sum(x != 0, dtype=jnp.int32),
      tree, is_leaf=_tree.is_none)


def sparsity(tree: Any) -> Any:
  """The fraction of zero (or False) entries of every leaf.

  Args:
    tree: a pytree of arrays (params or masks); ``None`` leaves stay ``None``.

  Returns:
    A pytree of float32 scalars in ``[0, 1]`` with the structure of ``tree``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.masks.sparsity(jnp.array([[0., 1.], [0., 0.]]))
    Array(0.75, dtype=float32)
  """
  return jax.tree.map(
      lambda x: None if x is None else
      1.0 - jnp.sum(x != 0, dtype=jnp.int32) / max(int(np.size(x)), 1),
      tree, is_leaf=_tree.is_none)


def budget(size: int, sparsity_value: Any) -> Any:
  """Number of kept entries of a leaf of ``size`` entries at a sparsity.

  The one rounding rule of sparsejax: ``round((1 - sparsity) * size)``, round
  half to even. A concrete sparsity gives a Python int, a traced one an int32
  array.

  Args:
    size: the number of entries of the leaf.
    sparsity_value: the leaf's sparsity, in ``[0, 1]``.

  Returns:
    The number of entries to keep.

  Examples:
    >>> import sparsejax as sj
    >>> sj.masks.budget(1000, 0.9), sj.masks.budget(30000, 1 - 0.23019)
    (100, 6906)
  """
  if _tree.is_concrete(sparsity_value):
    _validate.check_fraction(sparsity_value, "sparsity", allow_one=True)
    return int(np.round((1.0 - float(sparsity_value)) * size))
  density = 1.0 - jnp.asarray(sparsity_value, jnp.float32)
  return jnp.round(density * size).astype(jnp.int32)


def _per_leaf(value: Any, tree: Any, name: str) -> Any:
  """Broadcasts a scalar to every leaf, or checks a matching per-leaf tree."""
  if isinstance(value, (int, float, np.number)) or (
      isinstance(value, jax.Array) and value.ndim == 0):
    return jax.tree.map(lambda _: value, tree, is_leaf=_tree.is_none)
  return _tree.align(value, tree, name=name, reference_name="scores",
                     check_shapes=False)


def _in_view(fn, tree: Any, specs: Any, *per_leaf: Any) -> Any:
  """``fn(view, *per_slice)`` on the view of ``tree``, masks moved back.

  The leaves without a spec are ``None`` in the view (dense: no mask);
  per-leaf values (a scalar, or a tree matching ``tree``) are repeated for
  every slice of a stacked leaf.
  """
  raw = _tree.unwrap_variables(tree)
  resolved = _specs.resolve(specs, None, tree)
  view = _specs.View(resolved, raw)
  leaves, treedef = jax.tree.flatten(raw, is_leaf=_tree.is_none)
  live = jax.tree.unflatten(treedef, [
      None if s is None else x for s, x in zip(resolved, leaves, strict=True)])
  values = []
  for v in per_leaf:
    if _tree.is_concrete(v) and np.ndim(v) == 0 and not isinstance(v, dict):
      values.append(v)
    else:
      values.append(view.expand(_tree.align(v, raw, name="per-leaf values",
                                            check_shapes=False)))
  return view.back(fn(view.to(live), *values))


def _select_one(scores: jax.Array, k: Any) -> jax.Array:
  """Top-k of one array: radix select if unsharded, else bisection."""
  keys = _topk.order_key(scores)
  if _topk.is_unsharded(keys):
    return _topk.radix_topk(keys, k)
  return _topk.topk_keys([keys], k)[0]


def topk(
    scores: Any,
    k: Any,
    *,
    scope: str = "layer",
    block_shape: Sequence[int] | None = None,
    specs: Any = None,
) -> Any:
  """Masks of the ``k`` highest scores, per leaf or across all leaves.

  Selection is exact: exactly ``k`` entries are kept, ties broken in favour of
  the lower row-major index (and, with ``scope="global"``, the earlier leaf).
  It uses only comparisons and sums, so it keeps the sharding of sharded
  scores and accepts a traced ``k``.

  Args:
    scores: a pytree of float arrays; ``None`` leaves give ``None`` masks.
    k: with ``scope="layer"``, an int (the same for every leaf) or a pytree of
      ints matching ``scores``; with ``scope="global"``, one int for all
      leaves together. With ``block_shape``, ``k`` counts entries and must be
      a multiple of the block size.
    scope: ``"layer"`` (top-k within each leaf) or ``"global"`` (one top-k
      over the union of all leaves).
    block_shape: if given, ``(bm, bn)``: scores are summed over blocks of the
      last two dimensions and whole blocks are kept.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`:
      then only leaves with a spec get masks, selection runs on each leaf's
      view (blocks tile the ``fan_in x fan_out`` matrix) and per slice of
      stacked leaves, with a per-leaf ``k`` counting per slice.

  Returns:
    A pytree of bool masks with the structure of ``scores``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.masks.topk(jnp.array([3., 1., 3., 2.]), 2)
    Array([ True, False,  True, False], dtype=bool)
    >>> sj.masks.topk(jnp.array([1., 5., 5., 5.]), 2)  # ties: lower index
    Array([False,  True,  True, False], dtype=bool)
  """
  if scope not in ("layer", "global"):
    raise ValueError(f"`scope` must be 'layer' or 'global', got {scope!r}.")
  if specs is not None:
    if scope == "global":
      return _in_view(lambda v: topk(v, k, scope=scope,
                                     block_shape=block_shape), scores, specs)
    return _in_view(lambda v, kk: topk(v, kk, block_shape=block_shape),
                    scores, specs, k)
  paths_leaves = _tree.leaves_with_paths(scores)
  treedef = jax.tree.structure(scores, is_leaf=_tree.is_none)
  block = 1
  if block_shape is not None:
    if (len(block_shape) != 2 or any(int(b) < 1 for b in block_shape)):
      raise ValueError(
          f"`block_shape` must be two positive ints, got {block_shape!r}.")
    block = int(block_shape[0]) * int(block_shape[1])
  for path, leaf in paths_leaves:
    if leaf is not None and not jnp.issubdtype(jnp.asarray(leaf).dtype,
                                               jnp.floating):
      raise ValueError(
          f"`scores` leaf '{path}' must be floating point, got "
          f"{jnp.asarray(leaf).dtype}.")

  def grid(path, x):
    x = jnp.asarray(x)
    return (x if block_shape is None
            else _blocks.block_sum(x, block_shape, path))

  if scope == "global":
    live = [(i, p, grid(p, x)) for i, (p, x) in enumerate(paths_leaves)
            if x is not None]
    total = sum(int(np.size(g)) for _, _, g in live)
    keys = [_topk.order_key(g) for _, _, g in live]
    kept = _topk.topk_keys(keys, _units("<all>", k, total, block)) if keys else []
  else:
    ks = jax.tree.leaves(_per_leaf(k, scores, "k"), is_leaf=_tree.is_none)
    live = [(i, p, grid(p, x), kk)
            for i, ((p, x), kk) in enumerate(zip(paths_leaves, ks,
                                                 strict=True))
            if x is not None and kk is not None]
    kept = [_select_one(g, _units(p, kk, int(np.size(g)), block))
            for _, p, g, kk in live]
  if block_shape is not None:
    kept = [_blocks.with_sharding_of(_blocks.expand_blocks(m, block_shape),
                              jnp.asarray(paths_leaves[entry[0]][1]))
            for m, entry in zip(kept, live, strict=True)]
  by_index = dict(zip([entry[0] for entry in live], kept, strict=True))
  out = [by_index.get(i) for i in range(len(paths_leaves))]
  return jax.tree.unflatten(treedef, out)


def _units(path: str, k: Any, size: int, block: int) -> Any:
  """Converts a kept count in entries to blocks, checking a concrete one."""
  if _tree.is_concrete(k):
    k = int(k)
    if not 0 <= k <= size * block:
      raise ValueError(
          f"`k` for leaf '{path}' must be in [0, {size * block}], got {k}.")
    if k % block:
      raise ValueError(
          f"`k` for leaf '{path}' ({k}) must be a multiple of the block size "
          f"{block}.")
    return k // block
  return jnp.asarray(k, jnp.int32) // block


def _budgets(tree: Any, sparsity_value: Any, *, block: int = 1) -> Any:
  """Per-leaf kept counts (in entries) for a scalar or per-leaf sparsity."""
  per_leaf = _per_leaf(sparsity_value, tree, "sparsity")

  def one(path, x, s):
    if x is None or s is None:
      return None
    if _tree.is_concrete(s):
      _validate.check_fraction(s, "sparsity", allow_one=True, path=path)
    units = int(np.size(x)) // block
    return budget(units, s) * block

  return _tree.map_with_path(one, tree, per_leaf)


def magnitude(
    params: Any,
    sparsity: Any,
    *,
    scope: str = "layer",
    block_shape: Sequence[int] | None = None,
    specs: Any = None,
) -> Any:
  """Keeps the entries of largest magnitude.

  Args:
    params: a pytree of float arrays.
    sparsity: the fraction of entries to prune, in ``[0, 1]``. With
      ``scope="layer"`` a float for every leaf or a pytree of floats (``None``
      for a dense leaf); with ``scope="global"`` one float for all leaves.
    scope: ``"layer"`` keeps ``round((1 - s) n)`` entries of each leaf;
      ``"global"`` keeps ``round((1 - s) N)`` entries over all ``N`` entries,
      with one threshold.
    block_shape: if given, ``(bm, bn)``: whole blocks of the last two
      dimensions are kept, ranked by the sum of their absolute values.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`:
      then only leaves with a spec are pruned, each on its view and with
      ``scope="layer"`` per slice of a stacked leaf (every layer of an
      ``nnx.scan`` stack at its own sparsity).

  Returns:
    A pytree of bool masks (``None`` for dense leaves).

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> sj.masks.magnitude(jnp.array([0.1, -3., 2., -0.5]), 0.5)
    Array([False,  True,  True, False], dtype=bool)

  References:
    Han et al, `Learning both Weights and Connections for Efficient Neural
    Networks <https://arxiv.org/abs/1506.02626>`_, 2015
  """
  if specs is not None:
    if scope == "global":
      return _in_view(lambda v: magnitude(v, sparsity, scope=scope,
                                          block_shape=block_shape),
                      params, specs)
    return _in_view(lambda v, s: magnitude(v, s, block_shape=block_shape),
                    params, specs, sparsity)
  scores = jax.tree.map(lambda p: None if p is None else jnp.abs(p), params,
                        is_leaf=_tree.is_none)
  block = 1 if block_shape is None else int(np.prod(block_shape))
  if scope == "global":
    if not _tree.is_concrete(sparsity) or np.ndim(sparsity) == 0:
      total = sum(int(np.size(x)) for x in jax.tree.leaves(params)) // block
      if _tree.is_concrete(sparsity):
        _validate.check_fraction(sparsity, "sparsity", allow_one=True)
      k = budget(total, sparsity) * block
      return topk(scores, k, scope="global", block_shape=block_shape)
    raise ValueError("`sparsity` must be a single number with "
                     "scope='global'.")
  ks = _budgets(scores, sparsity, block=block)
  scores = jax.tree.map(lambda s, k: None if k is None else s, scores, ks,
                        is_leaf=_tree.is_none)
  return topk(scores, ks, scope=scope, block_shape=block_shape)


def random(key: jax.Array, params: Any, sparsity: Any, *,
           specs: Any = None) -> Any:
  """Random masks with exactly the budgeted number of kept entries per leaf.

  Args:
    key: a PRNG key (typed or raw) or an int seed.
    params: a pytree of arrays (only shapes and shardings are used).
    sparsity: a float for every leaf, or a pytree of floats (``None`` for a
      dense leaf).
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`:
      then only leaves with a spec get masks, each slice of a stacked leaf
      with its own exact count.

  Returns:
    A pytree of bool masks; each leaf keeps ``round((1 - s) n)`` entries
    chosen uniformly at random.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import sparsejax as sj
    >>> m = sj.masks.random(0, jnp.zeros((10, 10)), 0.9)
    >>> int(m.sum())
    10
  """
  if isinstance(key, int):
    key = jax.random.key(key)
  if specs is not None:
    return _in_view(lambda v, s: random(key, v, s), params, specs, sparsity)
  ks = _budgets(params, sparsity)
  uniform = optax.tree.random_like(
      key, jax.tree.map(lambda p, k: None if k is None else p, params, ks,
                        is_leaf=_tree.is_none),
      sampler=jax.random.uniform)
  return topk(uniform, ks)


def _check_axis(x: jax.Array, axis: int, path: str) -> int:
  if not -x.ndim <= axis < x.ndim:
    raise ValueError(
        f"`axis` {axis} is out of range for leaf '{path}' with shape "
        f"{tuple(x.shape)}.")
  return axis % x.ndim


def n_m(x: Any, n: int, m: int, *, axis: int = -2,
        specs: Any = None) -> Any:
  """N:M masks: the ``n`` largest-magnitude entries of every ``m`` in a row.

  Groups are ``m`` consecutive entries along ``axis``; the default ``-2`` is
  the input dimension of a Flax kernel ``[in, out]``, the layout sparse tensor
  cores expect for 2:4 sparsity.

  Args:
    x: a pytree of float arrays (weights or scores).
    n: entries kept per group, ``0 <= n <= m``.
    m: group size; must divide the size of ``axis`` of every leaf.
    axis: the axis along which groups are formed.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`:
      then only leaves with a spec get masks, and groups run along the
      innermost contraction axis of each (``d`` for q/k/v ``[d, heads,
      head_dim]``, ``head_dim`` for the output projection, ``c_in`` for a
      convolution), per slice of stacked leaves; ``axis`` must stay -2.

  Returns:
    A pytree of bool masks with exactly ``n`` True entries in every group;
    ties go to the lower index.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> w = jnp.array([[1.], [-4.], [3.], [2.]])
    >>> sj.masks.n_m(w, 2, 4)[:, 0]
    Array([False,  True,  True, False], dtype=bool)

  References:
    Mishra et al, `Accelerating Sparse Deep Neural Networks
    <https://arxiv.org/abs/2104.08378>`_, 2021
  """
  if not (isinstance(m, int) and isinstance(n, int) and m >= 1
          and 0 <= n <= m):
    raise ValueError(
        f"`n` and `m` must be ints with 0 <= n <= m and m >= 1, got n={n!r}, "
        f"m={m!r}.")
  if specs is not None:
    if axis != -2:
      raise ValueError("`axis` must be -2 with `specs`: groups run along the "
                       "innermost contraction axis of each leaf's view.")
    return _in_view(lambda v: n_m(v, n, m), x, specs)

  def one(path, leaf):
    if leaf is None:
      return None
    leaf = jnp.asarray(leaf)
    ax = _check_axis(leaf, axis, path)
    if leaf.shape[ax] % m:
      raise ValueError(
          f"`m`={m} does not divide axis {axis} (size {leaf.shape[ax]}) of "
          f"leaf '{path}' with shape {tuple(leaf.shape)}.")
    mag = jnp.moveaxis(jnp.abs(leaf).astype(jnp.float32), ax, -1)
    groups = _blocks.split_dim(mag, -1, m)
    a = groups[..., :, None]   # entry i
    b = groups[..., None, :]   # entry j
    i = jnp.arange(m)[:, None]
    j = jnp.arange(m)[None, :]
    # Rank of entry i in its group: entries strictly larger, or equal and
    # earlier. Exactly n entries have rank < n.
    rank = jnp.sum((b > a) | ((b == a) & (j < i)), axis=-1)
    keep = jnp.moveaxis(_blocks.merge_dims(rank < n, -2), -1, ax)
    return _blocks.with_sharding_of(keep, leaf)

  return _tree.map_with_path(one, x)


def block(x: Any, block_shape: Sequence[int], sparsity: Any, *,
          specs: Any = None) -> Any:
  """Block masks: keeps the blocks of largest L2 norm.

  Blocks tile the last two dimensions of each leaf (``[in, out]`` for a Flax
  kernel). This is the mask a block-sparse kernel can run
  (:class:`pallas_kernels.BlockSparseMatrix`).

  Args:
    x: a pytree of float arrays.
    block_shape: ``(bm, bn)``; must divide the last two dimensions.
    sparsity: fraction of blocks to prune: a float, or a pytree of floats
      (``None`` for a dense leaf).
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`:
      then blocks tile each leaf's ``fan_in x fan_out`` view, per slice of
      stacked leaves.

  Returns:
    A pytree of element-level bool masks (whole blocks True or False), each
    keeping ``round((1 - s) * number_of_blocks)`` blocks.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> w = jnp.array([[1., 1., 0., 9.], [1., 1., 0., 0.]])
    >>> sj.masks.block(w, (2, 2), 0.5).astype(int)
    Array([[0, 0, 1, 1],
           [0, 0, 1, 1]], dtype=int32)

  References:
    Gray et al, `GPU Kernels for Block-Sparse Weights
    <https://cdn.openai.com/blocksparse/blocksparsepaper.pdf>`_, 2017
  """
  squares = jax.tree.map(
      lambda p: None if p is None else jnp.square(p.astype(jnp.float32)),
      _tree.unwrap_variables(x), is_leaf=_tree.is_none)
  return magnitude(squares, sparsity, block_shape=block_shape, specs=specs)


def block_grid(masks: Any, block_shape: Sequence[int]) -> Any:
  """Reduces element masks to block masks: True where a block has any entry.

  Args:
    masks: a pytree of bool arrays whose last two dimensions ``block_shape``
      divides.
    block_shape: ``(bm, bn)``.

  Returns:
    A pytree of bool arrays of shape ``[..., M // bm, N // bn]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> m = jnp.array([[0, 0, 1, 0], [0, 0, 0, 0]], bool)
    >>> sj.masks.block_grid(m, (2, 2))
    Array([[False,  True]], dtype=bool)
  """
  return _tree.map_with_path(
      lambda path, m: None if m is None else
      _blocks.block_sum(jnp.asarray(m).astype(jnp.int32), block_shape,
                        path) > 0,
      masks)
