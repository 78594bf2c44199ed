# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Auxiliary router losses: Switch load balancing, z-loss, importance, load.

Every loss is returned unscaled; the caller multiplies it by its coefficient
(Switch: 1e-2 for load balancing, ST-MoE: 1e-3 for the z-loss, Shazeer: 0.1
for importance and load, V-MoE: 0.005 each).
"""

import jax
import jax.numpy as jnp


def _check_probs(router_probs, name="router_probs"):
  router_probs = jnp.asarray(router_probs)
  if router_probs.ndim != 2 or not jnp.issubdtype(router_probs.dtype,
                                                  jnp.floating):
    raise ValueError(f"{name} must be a floating array [tokens, experts], "
                     f"got {router_probs.dtype} {router_probs.shape}")
  return router_probs


def load_balancing_loss(router_probs, expert_ids):
  """Switch Transformer's auxiliary load-balancing loss, top-k form.

  ``E * sum_e P_e * f_e`` where ``P_e`` is the mean router probability of
  expert e over tokens and ``f_e`` the fraction of the ``T * k`` assignments
  that go to e (Megatron's top-k generalisation; Switch is ``k = 1``). It is
  1 when the probabilities are uniform and the assignment balanced, and E
  when every token goes to one expert with probability 1. Only ``P`` carries
  a gradient. Returned unscaled: multiply by the coefficient (1e-2 in
  Switch).

  Args:
    router_probs: ``[T, E]`` router probabilities.
    expert_ids: int ``[T, k]`` chosen experts (before any capacity drop, as
      Switch counts them).

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> probs = jnp.full((4, 4), 0.25)
    >>> moe.load_balancing_loss(probs, jnp.array([[0], [1], [2], [3]]))
    Array(1., dtype=float32)

  References:
    Fedus et al, `Switch Transformers: Scaling to Trillion Parameter Models
    with Simple and Efficient Sparsity <https://arxiv.org/abs/2101.03961>`_,
    2021.
  """
  router_probs = _check_probs(router_probs)
  expert_ids = jnp.asarray(expert_ids)
  num_tokens, num_experts = router_probs.shape
  if (expert_ids.ndim != 2 or expert_ids.shape[0] != num_tokens
      or not jnp.issubdtype(expert_ids.dtype, jnp.integer)):
    raise ValueError(f"expert_ids must be an int array [{num_tokens}, k], "
                     f"got {expert_ids.dtype} {expert_ids.shape}")
  counts = jnp.bincount(expert_ids.reshape(-1), length=num_experts)
  fraction = counts / expert_ids.size
  mean_probs = jnp.mean(router_probs.astype(jnp.float32), axis=0)
  return (num_experts * jnp.sum(mean_probs * fraction)).astype(jnp.float32)


def z_loss(logits):
  """ST-MoE router z-loss: mean over tokens of ``logsumexp(logits)^2``.

  It keeps the router logits small, which keeps the softmax stable in low
  precision. Returned unscaled (ST-MoE uses 1e-3).

  Args:
    logits: ``[..., E]`` router logits; every leading index is a token.

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> moe.z_loss(jnp.zeros((3, 8)))  # (log 8)^2
    Array(4.3241..., dtype=float32)

  References:
    Zoph et al, `ST-MoE: Designing Stable and Transferable Sparse Expert
    Models <https://arxiv.org/abs/2202.08906>`_, 2022.
  """
  logits = jnp.asarray(logits)
  if logits.ndim < 1 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"logits must be a floating array [..., experts], got "
                     f"{logits.dtype} {logits.shape}")
  lse = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  return jnp.mean(jnp.square(lse))


def _cv_squared(x):
  # Population variance over experts, and the small epsilon of Shazeer's
  # tensor2tensor code so that an all-zero vector gives 0, not NaN.
  return jnp.var(x) / (jnp.square(jnp.mean(x)) + 1e-10)


def importance_loss(router_probs):
  """Shazeer's importance loss: ``CV(sum_t gates[t])^2``.

  The squared coefficient of variation, over experts, of each expert's total
  gate value in the batch. 0 when every expert has the same importance.
  Returned unscaled (0.1 in Shazeer et al., 0.005 in V-MoE).

  Args:
    router_probs: ``[T, E]`` gate values (``Routing.router_probs``).

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> moe.importance_loss(jnp.array([[1., 0.], [1., 0.]]))
    Array(1., dtype=float32)

  References:
    Shazeer et al, `Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer <https://arxiv.org/abs/1701.06538>`_, 2017.
  """
  router_probs = _check_probs(router_probs)
  return _cv_squared(jnp.sum(router_probs.astype(jnp.float32), axis=0))


def load_loss(load_probs):
  """Shazeer's load loss: ``CV(sum_t P(t, e))^2``.

  The squared coefficient of variation, over experts, of the expected number
  of tokens each expert receives. With a noisy router
  (:func:`noisy_top_k_router`, :func:`batch_prioritized_router` with a key)
  ``P`` is the smooth normal-CDF estimate and the loss has a gradient; with
  the other routers it is the 0/1 assignment and the loss only measures.
  Returned unscaled (0.1 in Shazeer et al., 0.005 in V-MoE).

  Args:
    load_probs: ``[T, E]`` (``Routing.load_probs``).

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> moe.load_loss(jnp.array([[1., 0.], [0., 1.]]))
    Array(0., dtype=float32)

  References:
    Shazeer et al, `Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer <https://arxiv.org/abs/1701.06538>`_, 2017.
  """
  load_probs = _check_probs(load_probs, "load_probs")
  return _cv_squared(jnp.sum(load_probs.astype(jnp.float32), axis=0))
