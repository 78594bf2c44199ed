# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pruning at initialisation: SNIP, GraSP and SynFlow.

Each function scores every weight of the sparse leaves once (SynFlow:
iteratively) at initialisation and returns a mask pytree with the structure of
the params (``None`` for dense leaves) that keeps the best-scored weights over
all sparse leaves together (one global threshold). Train with it through
:func:`sparsejax.static_sparse`::

  masks = sj.snip(loss_fn, params, batch, sparsity=0.9)
  tx = sj.static_sparse(optax.adam(1e-3), masks=masks)
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _specs
from sparsejax import _tree
from sparsejax import _validate
from sparsejax import masks as _masks

__all__ = (
    "snip",
    "grasp",
    "synflow",
)


def _sparse_leaves(params: Any, where: Any, specs: Any) -> Any:
  """``params`` with ``None`` in place of the leaves left dense."""
  resolved = _specs.resolve(specs, where, params)
  leaves, treedef = jax.tree.flatten(params, is_leaf=_tree.is_none)
  live = jax.tree.unflatten(treedef, [
      None if s is None else p for s, p in zip(resolved, leaves, strict=True)])
  if not [x for x in jax.tree.leaves(live) if x is not None]:
    raise ValueError("`where` selects no leaf of `params` for sparsity.")
  return live


def _global_keep(scores: Any, sparsity: Any) -> Any:
  size = sum(int(np.size(s)) for s in jax.tree.leaves(scores))
  return _masks.topk(scores, _masks.budget(size, sparsity), scope="global")


def _check(sparsity: Any, params: Any) -> Any:
  # pylint: disable-next=protected-access
  _validate.check_fraction(sparsity, "sparsity")
  if params is None:
    raise ValueError("`params` is required.")
  return _tree.unwrap_variables(params)


def _scalar_loss(loss_fn: Callable[..., Any], params: Any, batch: Any):
  value = loss_fn(params, batch)
  if jnp.ndim(value) != 0:
    raise ValueError(
        f"`loss_fn` must return a scalar, got shape {jnp.shape(value)}.")
  return value


def snip(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    sparsity: float,
    *,
    where: Any = None,
    specs: Any = None,
) -> Any:
  r"""SNIP: keeps the weights with the largest connection sensitivity.

  The sensitivity of weight :math:`j` is :math:`|g_j w_j|`, with :math:`g`
  the gradient of the loss on one batch at initialisation (the paper
  normalises by the sum, which does not change the ranking). One threshold
  over all sparse leaves keeps ``round((1 - sparsity) * N)`` weights.

  Args:
    loss_fn: ``(params, batch) -> scalar loss``.
    params: the parameters at initialisation.
    batch: one batch, passed to ``loss_fn``.
    sparsity: fraction of the sparse leaves' weights to prune, in ``[0, 1)``.
    where: which leaves are sparse (see :mod:`sparsejax.distributions`);
      default: leaves with ``ndim >= 2``.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (see :func:`sparsejax.leaf_specs`): without ``where``, the leaves
      with a spec are sparse (on a Flax model: the linear-map kernels).

  Returns:
    A mask pytree (bool arrays, ``None`` for dense leaves) for
    :func:`sparsejax.static_sparse`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'w': jnp.array([[1., -2.], [3., 0.5]]), 'b': jnp.zeros(2)}
    >>> loss_fn = lambda p, x: jnp.sum(x @ p['w'] + p['b'])
    >>> masks = sj.snip(loss_fn, params, jnp.array([[1., 1.]]), 0.5)
    >>> masks['w'], masks['b']
    (Array([[False,  True],
           [ True, False]], dtype=bool), None)

  References:
    Lee et al, `SNIP: Single-shot Network Pruning based on Connection
    Sensitivity <https://arxiv.org/abs/1810.02340>`_, 2019
  """
  params = _check(sparsity, params)
  live = _sparse_leaves(params, where, specs)
  grads = jax.grad(lambda p: _scalar_loss(loss_fn, p, batch))(params)
  scores = jax.tree.map(
      lambda p, g, w: None if p is None else jnp.abs(g * w).astype(
          jnp.float32), live, grads, params, is_leaf=_tree.is_none)
  return _global_keep(scores, sparsity)


def grasp(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    sparsity: float,
    *,
    where: Any = None,
    specs: Any = None,
) -> Any:
  r"""GraSP: prunes the weights whose removal least reduces gradient flow.

  The score is :math:`S(-\theta) = -\theta \odot H g`, with :math:`g` the
  gradient and :math:`Hg` the Hessian-gradient product of the loss on one
  batch at initialisation; the ``sparsity`` fraction of weights with the
  *highest* scores is removed, over all sparse leaves together. The paper
  divides the logits by a temperature (200) when computing :math:`g` and
  :math:`Hg`: do so inside ``loss_fn``.

  Args:
    loss_fn: ``(params, batch) -> scalar loss``.
    params: the parameters at initialisation.
    batch: one batch (the paper: about 10 examples per class).
    sparsity: fraction of the sparse leaves' weights to prune, in ``[0, 1)``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (see :func:`sparsejax.leaf_specs`): without ``where``, the leaves
      with a spec are sparse (on a Flax model: the linear-map kernels).

  Returns:
    A mask pytree (bool arrays, ``None`` for dense leaves) for
    :func:`sparsejax.static_sparse`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import sparsejax as sj
    >>> params = {'w': jnp.array([[1., -2.], [3., 0.5]])}
    >>> loss_fn = lambda p, x: jnp.sum((x @ p['w']) ** 2)
    >>> masks = sj.grasp(loss_fn, params, jnp.eye(2), 0.5)
    >>> int(masks['w'].sum())
    2

  References:
    Wang et al, `Picking Winning Tickets Before Training by Preserving
    Gradient Flow <https://arxiv.org/abs/2002.07376>`_, 2020
  """
  params = _check(sparsity, params)
  live = _sparse_leaves(params, where, specs)

  def grad_fn(p):
    return jax.grad(lambda q: _scalar_loss(loss_fn, q, batch))(p)

  grads = grad_fn(params)
  _, hg = jax.jvp(grad_fn, (params,), (jax.lax.stop_gradient(grads),))
  # Keep the lowest -theta * Hg, i.e. the highest theta * Hg.
  scores = jax.tree.map(
      lambda p, h, w: None if p is None else (w * h).astype(jnp.float32),
      live, hg, params, is_leaf=_tree.is_none)
  return _global_keep(scores, sparsity)


def _synflow_scores(apply_fn: Callable[[Any, jax.Array], Any], params: Any,
                    live: Any, masks: Any, ones: jax.Array) -> Any:
  """``|(dR/dtheta) * theta|`` at ``|theta|`` (masked), ``R = sum f(1)``."""
  def objective(p):
    out = apply_fn(p, ones)
    return sum(jnp.sum(o) for o in jax.tree.leaves(out))

  def masked_abs(p, m):
    a = jnp.abs(p)
    return a if m is None else jnp.where(m, a, jnp.zeros_like(a))

  theta = jax.tree.map(lambda m, p: masked_abs(p, m), masks, params,
                       is_leaf=_tree.is_none)
  grads = jax.grad(objective)(theta)
  return jax.tree.map(
      lambda l, g, t: None if l is None else jnp.abs(g * t).astype(
          jnp.float32), live, grads, theta, is_leaf=_tree.is_none)


def synflow(
    apply_fn: Callable[[Any, jax.Array], Any],
    params: Any,
    input_shape: Sequence[int],
    sparsity: float,
    *,
    iterations: int = 100,
    where: Any = None,
    specs: Any = None,
) -> Any:
  r"""SynFlow: data-free, iterative pruning by synaptic flow.

  With every parameter replaced by its absolute value and an all-ones input,
  :math:`R = \mathbf{1}^\top f(\mathbf{1})` (for a network of linear layers,
  :math:`\mathbf{1}^\top \prod_l |\theta^{[l]}| \mathbf{1}`), and the score of
  a weight is :math:`(\partial R / \partial \theta) \odot \theta`. Pruning is
  global and iterative: at round :math:`k` of :math:`n` the weights with the
  lowest scores are removed so that a fraction
  :math:`(1 - s)^{k/n}` remains (exponential schedule), and scores are
  recomputed with the pruned weights removed; this conserves flow and avoids
  layer collapse. Put batch normalisation in inference mode inside
  ``apply_fn``. Computed in the dtype of ``params`` (the paper recommends
  float64 for deep networks, ``jax.config.update("jax_enable_x64", True)``).

  Args:
    apply_fn: ``(params, x) -> output`` (any pytree of arrays).
    params: the parameters at initialisation.
    input_shape: shape of the all-ones input, batch dimension included
      (e.g. ``(1, 784)``).
    sparsity: final fraction of the sparse leaves' weights to prune, in
      ``[0, 1)``.
    iterations: number of pruning rounds ``n``.
    where: which leaves are sparse; default: leaves with ``ndim >= 2``.
    specs: ``None``, an NNX model or a tree of :class:`sparsejax.LeafSpec`
      (see :func:`sparsejax.leaf_specs`): without ``where``, the leaves
      with a spec are sparse (on a Flax model: the linear-map kernels).

  Returns:
    A mask pytree (bool arrays, ``None`` for dense leaves) for
    :func:`sparsejax.static_sparse`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import sparsejax as sj
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> params = {'w1': jax.random.normal(k1, (8, 16)),
    ...           'w2': jax.random.normal(k2, (16, 4))}
    >>> apply_fn = lambda p, x: x @ p['w1'] @ p['w2']
    >>> masks = sj.synflow(apply_fn, params, (1, 8), 0.9, iterations=10)
    >>> int(masks['w1'].sum() + masks['w2'].sum())
    19

  References:
    Tanaka et al, `Pruning neural networks without any data by iteratively
    conserving synaptic flow <https://arxiv.org/abs/2006.05467>`_, 2020
  """
  params = _check(sparsity, params)
  if isinstance(iterations, bool) or not isinstance(iterations, int) or (
      iterations < 1):
    raise ValueError(f"`iterations` must be a positive int, got "
                     f"{iterations!r}.")
  try:
    shape = tuple(int(d) for d in input_shape)
  except (TypeError, ValueError):
    raise ValueError(
        f"`input_shape` must be a sequence of ints, got {input_shape!r}."
    ) from None
  live = _sparse_leaves(params, where, specs)
  dtype = jnp.result_type(*[p for p in jax.tree.leaves(live)])
  ones = jnp.ones(shape, dtype)
  size = sum(int(np.size(p)) for p in jax.tree.leaves(live))
  density = 1.0 - float(sparsity)

  @jax.jit
  def prune_round(masks, k):
    scores = _synflow_scores(apply_fn, params, live, masks, ones)
    # Pruned weights stay pruned: they score below every live weight.
    scores = jax.tree.map(
        lambda s, m: None if s is None else jnp.where(m, s, -1.0),
        scores, masks, is_leaf=_tree.is_none)
    return _masks.topk(scores, k, scope="global")

  masks = jax.tree.map(
      lambda l: None if l is None else jnp.ones_like(l, dtype=jnp.bool_),
      live, is_leaf=_tree.is_none)
  for k in range(1, iterations + 1):
    keep = _masks.budget(size, 1.0 - density ** (k / iterations))
    masks = prune_round(masks, jnp.asarray(keep, jnp.int32))
  return masks
