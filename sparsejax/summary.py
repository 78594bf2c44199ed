# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-leaf sparsity tables."""

from typing import Any, NamedTuple

import jax
import numpy as np

from sparsejax import _specs
from sparsejax import _tree

__all__ = ("Summary", "SummaryRow", "summarize")


class SummaryRow(NamedTuple):
  """One leaf of a :class:`Summary`."""

  path: str
  shape: tuple[int, ...]
  dtype: str
  size: int
  nnz: int
  sparsity: float
  masked: bool  # whether a mask was given for the leaf
  slice_index: int | None = None  # the slice of a stacked leaf, or None


class Summary(NamedTuple):
  """Per-leaf sparsity figures and totals; ``str()`` is an aligned table.

  Attributes:
    rows: one :class:`SummaryRow` per leaf, in flattening order; with
      ``specs``, a stacked leaf's row (the stack total) is followed by one
      row per slice (``path[i]``), which the totals do not count again.
    total_size: entries over all leaves.
    total_nnz: nonzero entries over all leaves.
    total_sparsity: ``1 - total_nnz / total_size``.
    sparse_size: entries over the masked leaves only.
    sparse_nnz: nonzero entries over the masked leaves only.
  """

  rows: tuple[SummaryRow, ...]
  total_size: int
  total_nnz: int
  total_sparsity: float
  sparse_size: int
  sparse_nnz: int

  def __str__(self) -> str:
    header = ("path", "shape", "dtype", "nnz", "size", "sparsity")
    lines = [header] + [
        (r.path + ("" if r.masked or not self.sparse_size else " (dense)"),
         str(r.shape), r.dtype,
         str(r.nnz), str(r.size), f"{r.sparsity:.4f}") for r in self.rows]
    lines.append(("total", "", "", str(self.total_nnz), str(self.total_size),
                  f"{self.total_sparsity:.4f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = (False, False, False, True, True, True)

    def fmt(line):
      return "  ".join(c.rjust(w) if num else c.ljust(w)
                       for c, w, num in zip(line, widths, numeric,
                                            strict=True)).rstrip()

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(lines[0]), rule] + [fmt(x) for x in lines[1:-1]]
                     + [rule, fmt(lines[-1])])


def summarize(params: Any, masks: Any = None, *,
              specs: Any = None) -> Summary:
  """Tabulates shape, dtype, nonzeros and sparsity of every leaf.

  Counts are of the nonzero entries of ``params`` where a leaf is unmasked,
  and of the kept entries that are also nonzero where a mask is given (so a
  weight that is exactly zero although kept counts as zero).

  Args:
    params: a pytree of arrays.
    masks: optional masks (bool arrays, ``None`` for dense leaves), e.g.
      :func:`sparsejax.get_masks` of the optimizer state.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (:func:`sparsejax.leaf_specs`): leaves with stacked axes (the layers
      of an ``nnx.scan`` stack, MoE experts) get a row per slice as well.

  Returns:
    A :class:`Summary`; ``print`` it for the table.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'b': jnp.ones(2), 'w': jnp.array([[0., 1.], [2., 0.]])}
    >>> s = sj.summarize(params)
    >>> s.total_nnz, s.rows[1].sparsity
    (4, 0.5)
    >>> print(s)
    path   shape   dtype    nnz  size  sparsity
    -------------------------------------------
    b      (2,)    float32    2     2    0.0000
    w      (2, 2)  float32    2     4    0.5000
    -------------------------------------------
    total                     4     6    0.3333
  """
  stacked = [None] * len(jax.tree.leaves(params, is_leaf=_tree.is_none))
  if specs is not None:
    stacked = [s if s is not None and s.stack_axes else None
               for s in _specs.resolve(specs, None, params)]
  params = _tree.unwrap_variables(params)
  if masks is None:
    masks = jax.tree.map(lambda _: None, params)
  masks = _tree.align(_tree.unwrap_variables(masks), params, name="masks")
  rows = []
  flat_masks = jax.tree.leaves(masks, is_leaf=_tree.is_none)
  for (path, leaf), mask, spec in zip(_tree.leaves_with_paths(params),
                                      flat_masks, stacked, strict=True):
    if leaf is None:
      continue
    values = np.asarray(jax.device_get(leaf))
    nonzero = values != 0
    if mask is not None:
      nonzero = nonzero & np.asarray(jax.device_get(mask))
    rows.append(_row(path, values, nonzero, mask is not None))
    if spec is not None:
      order = spec.stack_axes + tuple(
          a for a in range(values.ndim) if a not in spec.stack_axes)
      lead = spec.num_slices(values.shape)
      by_slice = np.transpose(values, order).reshape(lead, -1)
      nz_slice = np.transpose(nonzero, order).reshape(lead, -1)
      rows.extend(_row(f"{path}[{i}]", by_slice[i], nz_slice[i],
                       mask is not None, i) for i in range(lead))
  whole = [r for r in rows if r.slice_index is None]
  total_size = sum(r.size for r in whole)
  total_nnz = sum(r.nnz for r in whole)
  return Summary(
      rows=tuple(rows), total_size=total_size, total_nnz=total_nnz,
      total_sparsity=1.0 - total_nnz / total_size if total_size else 0.0,
      sparse_size=sum(r.size for r in whole if r.masked),
      sparse_nnz=sum(r.nnz for r in whole if r.masked))


def _row(path: str, values: np.ndarray, nonzero: np.ndarray, masked: bool,
         slice_index: int | None = None) -> SummaryRow:
  size = int(values.size)
  nnz = int(nonzero.sum())
  return SummaryRow(
      path=path, shape=tuple(values.shape), dtype=str(values.dtype),
      size=size, nnz=nnz, sparsity=1.0 - nnz / size if size else 0.0,
      masked=masked, slice_index=slice_index)
