# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Whether the next ``update`` of a sparsity transform updates its masks."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsejax import _engine
from sparsejax import _validate
from sparsejax import _tree


def is_mask_update_step(opt_state: Any, *, update_every: int,
                        begin_step: int = 0,
                        end_step: int | None = None) -> bool:
  """Whether the next ``tx.update`` with this state updates the masks.

  The step schedule of every weight-sparsity transform: masks change at
  steps ``begin_step + i * update_every`` up to ``end_step`` inclusive, the
  step being the state's ``count`` (updates so far). Pass the same
  ``update_every``, ``begin_step`` and ``end_step`` as to the transform (the
  schedule is not held in the state). A training loop uses it on the host to
  choose the step to run, e.g. the dense-gradient step of block-sparse
  training (:func:`sparsejax.nn.block_sparse_kernels`) on mask-update steps
  and the kernel step on the others. It reads the count from the device (a
  synchronization); a loop that keeps its own step counter can call it with
  that instead, as an int.

  Args:
    opt_state: an optimizer state holding one sparsejax transform (anywhere
      inside a chain or wrapper), or the step count as an int.
    update_every: the transform's ``update_every``.
    begin_step: the transform's ``begin_step``.
    end_step: the transform's ``end_step`` (``None``: no end).

  Returns:
    A Python bool.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import sparsejax as sj
    >>> params = {'w': jnp.ones((4, 4))}
    >>> tx = sj.rigl(optax.sgd(0.1), sparsity=0.5, end_step=10,
    ...              update_every=2)
    >>> state = tx.init(params)
    >>> sj.is_mask_update_step(state, update_every=2, end_step=10)
    True
    >>> _, state = tx.update(params, state, params)
    >>> sj.is_mask_update_step(state, update_every=2, end_step=10)
    False
    >>> [sj.is_mask_update_step(s, update_every=2, end_step=3)
    ...  for s in range(6)]
    [True, False, True, False, False, False]
  """
  update_every = _validate.check_positive_int(update_every, "update_every")
  if isinstance(opt_state, (int, np.integer)) and not isinstance(
      opt_state, bool):
    count = int(opt_state)
  else:
    found = _engine.find_states(opt_state)
    if len(found) != 1:
      _engine.get_masks(opt_state)  # raises the error that explains it
    count = int(np.asarray(_tree.unwrap_variables(found[0].count)))
  since = count - int(begin_step)
  ok = since >= 0 and since % update_every == 0
  if end_step is not None:
    ok = ok and count <= int(end_step)
  return bool(ok)
