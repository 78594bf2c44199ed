# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pytree helpers shared by the library: leaf paths, None-aware maps, checks."""

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_none(x: Any) -> bool:
  return x is None


def is_variable(x: Any) -> bool:
  # Flax NNX variables (Param, OptVariable, ...) without importing flax.
  return (not isinstance(x, jax.Array | np.ndarray)
          and callable(getattr(x, "get_value", None))
          and hasattr(x, "replace"))


def unwrap_variables(tree: Any) -> Any:
  """Replaces Flax NNX variables by the arrays they hold (like nnx.as_pure)."""
  return jax.tree.map(
      lambda x: x.get_value() if is_variable(x) else x, tree,
      is_leaf=lambda x: x is None or is_variable(x))


def path_str(path: tuple[Any, ...]) -> str:
  """Joins a key path with ``/``, dropping a trailing NNX ``.value``.

  ``nnx.Optimizer`` calls ``init`` on ``Param``-wrapped leaves (paths ending
  in ``.value``) and ``update`` on raw arrays, so both must name a leaf alike.
  """
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(str(key.name))
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      parts.append(str(key.key))
    else:
      parts.append(str(key))
  if parts and parts[-1] == "value" and path and isinstance(
      path[-1], jax.tree_util.GetAttrKey):
    parts.pop()
  return "/".join(parts)


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
  """``(path, leaf)`` pairs in flattening order, ``None`` leaves included."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
  return [(path_str(p), leaf) for p, leaf in flat]


def leaves_with_paths_variables(tree: Any) -> list[tuple[str, Any]]:
  """Like :func:`leaves_with_paths`, with NNX variables kept as leaves."""
  flat, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: x is None or is_variable(x))
  return [(path_str(p), leaf) for p, leaf in flat]


def map_with_path(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
  """``jax.tree.map`` whose ``fn(path, leaf, *rest_leaves)`` sees the path.

  ``None`` leaves of ``tree`` are passed to ``fn`` (not skipped), so the
  function decides what a dense (``None``) leaf becomes.
  """
  return jax.tree_util.tree_map_with_path(
      lambda p, x, *r: fn(path_str(p), x, *r), tree, *rest, is_leaf=is_none)


def align(
    tree: Any, reference: Any, *, name: str, reference_name: str = "params",
    check_shapes: bool = True,
) -> Any:
  """``tree``'s leaves in ``reference``'s structure, matched by leaf path.

  Matching by path (with NNX's ``.value`` dropped) lets a plain dict of masks
  go with an ``nnx.State`` of params, and vice versa.

  Args:
    tree: the tree to check and rearrange; ``None`` leaves stand for dense
      leaves and match any leaf.
    reference: the tree whose structure is the reference.
    name: the argument name of ``tree`` for error messages.
    reference_name: the argument name of ``reference``.
    check_shapes: also require equal shapes leaf by leaf.

  Returns:
    The leaves of ``tree`` unflattened with the structure of ``reference``.

  Raises:
    ValueError: naming the missing, unexpected or mis-shaped leaves.
  """
  ref = leaves_with_paths(reference)
  got = leaves_with_paths(tree)
  ref_paths = [p for p, _ in ref]
  if ref_paths == [p for p, _ in got]:
    values = [x for _, x in got]
  else:
    lookup = dict(got)
    missing = [p for p in ref_paths if p not in lookup]
    extra = sorted(set(lookup) - set(ref_paths))
    if missing or extra or len(lookup) != len(got):
      raise ValueError(
          f"`{name}` does not have the tree structure of `{reference_name}`: "
          f"missing leaves {missing}, unexpected leaves {extra}.")
    values = [lookup[p] for p in ref_paths]
  if check_shapes:
    for (path, r), m in zip(ref, values, strict=True):
      if m is None or r is None:
        continue
      if tuple(np.shape(m)) != tuple(np.shape(r)):
        raise ValueError(
            f"`{name}` leaf '{path}' has shape {tuple(np.shape(m))} but the "
            f"`{reference_name}` leaf has shape {tuple(np.shape(r))}.")
  return jax.tree.unflatten(jax.tree.structure(reference, is_leaf=is_none),
                            values)


def check_same_structure(
    tree: Any, reference: Any, *, name: str, reference_name: str = "params",
    check_shapes: bool = True,
) -> None:
  """Raises ``ValueError`` if ``tree``'s leaves do not match ``reference``'s.

  See :func:`align`, which also returns the rearranged tree.
  """
  align(tree, reference, name=name, reference_name=reference_name,
        check_shapes=check_shapes)


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds a value known at trace time."""
  if isinstance(x, jax.core.Tracer):
    return False
  return True


def compile_where(
    where: Callable[[str, Any], bool] | str | None,
    default: Callable[[str, Any], bool] | None = None,
) -> Callable[[str, Any], bool]:
  """Normalises a leaf rule into ``(path, leaf) -> bool``.

  Args:
    where: ``None`` (``default``), a regular expression searched in the
      leaf's ``/``-joined path, or a callable ``(path, leaf) -> bool``.
    default: the rule for ``where=None``; default: leaves with
      ``ndim >= 2``.

  Returns:
    A callable ``(path, leaf) -> bool``.
  """
  if where is None:
    return default or (lambda path, leaf: leaf is not None and
                       np.ndim(leaf) >= 2)
  if isinstance(where, str):
    try:
      pattern = re.compile(where)
    except re.error as e:
      raise ValueError(f"`where` is not a valid regular expression: {e}")
    return lambda path, leaf: (
        leaf is not None and pattern.search(path) is not None)
  if callable(where):
    return lambda path, leaf: leaf is not None and bool(where(path, leaf))
  raise ValueError(
      "`where` must be None, a regular expression string or a callable "
      f"(path, leaf) -> bool, got {type(where).__name__}.")

