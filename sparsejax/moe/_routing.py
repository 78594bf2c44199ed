# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Token-choice and expert-choice routers over one :class:`Routing` structure.

Every router is a pure function of the router logits ``[T, E]`` (T tokens,
E experts). They all return a :class:`Routing`, so that the losses, the
dispatch and the combine steps never need to know which router made it.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.moe._common import check_factor
from sparsejax.moe._common import check_k
from sparsejax.moe._common import drop_over_capacity


class Routing(NamedTuple):
  """Assignment of tokens to experts, as every router in this module returns.

  Each token ``t`` has ``k`` assignment slots. Slot ``j`` sends the token to
  expert ``expert_ids[t, j]`` with weight ``combine_weights[t, j]`` if
  ``kept[t, j]``; a slot that is not kept (dropped over capacity, or not
  chosen by an expert-choice or ReLU router) has weight 0 and costs no expert
  compute. Expert-choice and ReLU routers use ``k = E`` slots with
  ``expert_ids[t, e] = e``, since a token can go to any number of experts.

  Attributes:
    expert_ids: int32 ``[T, k]``, the expert of each slot.
    combine_weights: float32 ``[T, k]``, the weight of each slot's expert
      output in the token's output; 0 where the slot is not kept.
    kept: bool ``[T, k]``, whether the slot is computed.
    router_probs: float32 ``[T, E]``, the router's per-token gate values
      (softmax probabilities, Shazeer's sparse gates, ReLU gates), read by
      :func:`load_balancing_loss` and :func:`importance_loss`.
    router_logits: float32 ``[T, E]``, the logits the router saw, read by
      :func:`z_loss`.
    load_probs: float32 ``[T, E]``, the probability that each expert
      receives the token: the smooth normal-CDF estimate for the noisy
      routers, the 0/1 indicator of the kept slots otherwise; read by
      :func:`load_loss`.
  """

  expert_ids: jax.Array
  combine_weights: jax.Array
  kept: jax.Array
  router_probs: jax.Array
  router_logits: jax.Array
  load_probs: jax.Array


class ReMoEState(NamedTuple):
  """State of ReMoE's adaptive L1 coefficient.

  Attributes:
    l1_coef: float32 scalar, the current coefficient ``lambda``.
  """

  l1_coef: jax.Array


def _check_logits(logits, name="logits"):
  logits = jnp.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(
        f"{name} must have shape [tokens, experts], got {logits.shape}")
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"{name} must be floating point, got {logits.dtype}")
  if logits.shape[0] < 1 or logits.shape[1] < 1:
    raise ValueError(f"{name} must have at least one token and one expert, "
                     f"got shape {logits.shape}")
  # Routers run in float32 whatever the model dtype (Switch Transformer:
  # bfloat16 routing is unstable).
  return logits.astype(jnp.float32)


def expert_capacity(num_tokens, num_experts, k=1, capacity_factor=1.0):
  """Buffer size per expert for token-choice routing with a capacity factor.

  ``ceil(capacity_factor * num_tokens * k / num_experts)``: Switch
  Transformer's rule for ``k = 1``, and the top-k generalisation of GShard and
  V-MoE (which round instead of taking the ceiling) otherwise.

  Args:
    num_tokens: number of tokens T routed together.
    num_experts: number of experts E.
    k: number of experts per token.
    capacity_factor: positive multiplier of the perfectly balanced load
      ``T * k / E``.

  Returns:
    The capacity C, a Python int >= 1.

  Examples:
    >>> from sparsejax import moe
    >>> moe.expert_capacity(1000, 8, k=2, capacity_factor=1.25)
    313

  References:
    Fedus et al, `Switch Transformers: Scaling to Trillion Parameter Models
    with Simple and Efficient Sparsity <https://arxiv.org/abs/2101.03961>`_,
    2021.
  """
  check_factor(capacity_factor)
  if capacity_factor is None:
    raise ValueError("capacity_factor must be a positive number, got None")
  for name, value in (("num_tokens", num_tokens), ("num_experts", num_experts),
                      ("k", k)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  return math.ceil(capacity_factor * num_tokens * k / num_experts)


def _indicator(expert_ids, kept, num_experts):
  """``[T, E]`` 0/1: which experts receive each token."""
  one_hot = jax.nn.one_hot(expert_ids, num_experts, dtype=jnp.float32)
  return jnp.sum(one_hot * kept[..., None], axis=1)


def _finish(expert_ids, weights, kept, probs, logits, load_probs):
  return Routing(
      expert_ids=expert_ids.astype(jnp.int32),
      combine_weights=jnp.where(kept, weights, 0.0).astype(jnp.float32),
      kept=kept,
      router_probs=probs,
      router_logits=logits,
      load_probs=load_probs)


def _token_choice(logits, probs, weights, expert_ids, priority,
                  capacity_factor, load_probs=None):
  num_tokens, num_experts = probs.shape
  k = expert_ids.shape[1]
  kept = jnp.ones(expert_ids.shape, bool)
  if capacity_factor is not None:
    capacity = expert_capacity(num_tokens, num_experts, k, capacity_factor)
    kept = drop_over_capacity(expert_ids, kept, priority, num_experts,
                               capacity)
  if load_probs is None:
    load_probs = _indicator(expert_ids, kept, num_experts)
  return _finish(expert_ids, weights, kept, probs, logits, load_probs)


def top_k_router(logits, k, *, renormalize=False, capacity_factor=None):
  """Softmax top-k routing: each token goes to its k most probable experts.

  ``p = softmax(logits)``; the token's experts are the top-k of ``p`` and
  their combine weights are those probabilities, divided by their sum when
  ``renormalize`` (Mixtral, MaxText's default). With a ``capacity_factor``
  each expert keeps at most :func:`expert_capacity` slots; the others are
  dropped, first choices before second choices and earlier tokens first
  (GShard, Switch); without one the routing is dropless.

  Args:
    logits: ``[T, E]`` router logits.
    k: experts per token, in ``[1, E]``.
    renormalize: make each token's k weights sum to 1.
    capacity_factor: None for dropless routing, else a positive float.

  Returns:
    A :class:`Routing` with ``k`` slots per token.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.top_k_router(jnp.log(jnp.array([[.1, .2, .7]])), 2,
    ...                      renormalize=True)
    >>> r.expert_ids, r.combine_weights.round(3)
    (Array([[2, 1]], dtype=int32), Array([[0.778, 0.222]], dtype=float32))

  References:
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional Computation
    and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_, 2020.
  """
  logits = _check_logits(logits)
  check_k(k, logits.shape[1])
  check_factor(capacity_factor)
  probs = jax.nn.softmax(logits, axis=-1)
  weights, expert_ids = jax.lax.top_k(probs, k)
  if renormalize:
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  priority = -jnp.arange(logits.shape[0], dtype=jnp.float32)
  return _token_choice(logits, probs, weights, expert_ids, priority,
                       capacity_factor)


def switch_router(logits, *, capacity_factor=1.25):
  """Switch Transformer top-1 routing with a capacity factor.

  Each token goes to ``argmax softmax(logits)`` with its probability as
  combine weight. Each expert keeps at most
  ``ceil(capacity_factor * T / E)`` tokens, earlier tokens first; the rest
  are dropped (the caller's residual connection carries them).

  Args:
    logits: ``[T, E]`` router logits.
    capacity_factor: positive float (1.0-1.25 to train, 2.0 to evaluate in
      the paper), or None for dropless top-1.

  Returns:
    A :class:`Routing` with one slot per token.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> logits = jnp.array([[2., 0.], [3., 0.], [0., 1.], [4., 0.]])
    >>> moe.switch_router(logits, capacity_factor=1.0).kept[:, 0]
    Array([ True,  True,  True, False], dtype=bool)

  References:
    Fedus et al, `Switch Transformers: Scaling to Trillion Parameter Models
    with Simple and Efficient Sparsity <https://arxiv.org/abs/2101.03961>`_,
    2021.
  """
  return top_k_router(logits, 1, capacity_factor=capacity_factor)


def _normal_cdf(x):
  return 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def _load_probability(clean, noisy, noise_std, k):
  """Shazeer's smooth load: P(expert i in the top-k if its noise is redrawn).

  Token t picks expert i when its noisy logit beats the k-th largest noisy
  logit among the other experts: the (k+1)-th largest overall if i is in the
  top-k now, the k-th largest otherwise. With Gaussian noise of std
  ``noise_std`` that probability is ``Phi((clean_i - threshold) / std)``.
  """
  num_experts = clean.shape[-1]
  if k == num_experts:
    return jnp.ones_like(clean)
  top = jax.lax.top_k(noisy, k + 1)[0]
  in_top_k = noisy >= top[:, k - 1:k]
  threshold = jnp.where(in_top_k, top[:, k:k + 1], top[:, k - 1:k])
  return _normal_cdf((clean - threshold) / noise_std)


def noisy_top_k_router(logits, noise_logits, k, *, key=None,
                       capacity_factor=None):
  """Shazeer's noisy top-k gating.

  ``H = logits + eps * softplus(noise_logits)`` with ``eps ~ N(0, 1)``
  (no noise when ``key`` is None, as at evaluation); the token's experts are
  the top-k of H and their weights the softmax over those k values
  (``Softmax(KeepTopK(H, k))``). ``router_probs`` holds these sparse gates
  ``G`` for :func:`importance_loss`, and ``load_probs`` the paper's smooth
  estimate ``Phi((logits_i - kth_excluding(H, k, i)) / softplus(noise_i))``
  for :func:`load_loss`.

  Args:
    logits: ``[T, E]`` clean router logits ``x W_g``.
    noise_logits: ``[T, E]`` noise logits ``x W_noise``.
    k: experts per token, in ``[1, E]``.
    key: a PRNG key for the noise, or None for no noise.
    capacity_factor: None for dropless routing, else a positive float
      (dropping as in :func:`top_k_router`).

  Returns:
    A :class:`Routing` with ``k`` slots per token.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> logits = jnp.array([[0., 1., 2., 3.]])
    >>> r = moe.noisy_top_k_router(logits, jnp.zeros((1, 4)), 2)
    >>> r.expert_ids
    Array([[3, 2]], dtype=int32)
    >>> [round(float(g), 3) for g in r.router_probs[0]]
    [0.0, 0.0, 0.269, 0.731]

  References:
    Shazeer et al, `Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer <https://arxiv.org/abs/1701.06538>`_, 2017.
  """
  logits = _check_logits(logits)
  noise_logits = _check_logits(noise_logits, "noise_logits")
  if noise_logits.shape != logits.shape:
    raise ValueError(f"noise_logits must have the shape of logits "
                     f"{logits.shape}, got {noise_logits.shape}")
  num_experts = logits.shape[1]
  check_k(k, num_experts)
  check_factor(capacity_factor)
  noise_std = jax.nn.softplus(noise_logits)
  noisy = logits
  if key is not None:
    noisy = logits + noise_std * jax.random.normal(key, logits.shape)
  top_values, expert_ids = jax.lax.top_k(noisy, k)
  weights = jax.nn.softmax(top_values, axis=-1)
  gates = jnp.sum(
      jax.nn.one_hot(expert_ids, num_experts) * weights[..., None], axis=1)
  load = _load_probability(logits, noisy, noise_std, k)
  priority = -jnp.arange(logits.shape[0], dtype=jnp.float32)
  return _token_choice(logits, gates, weights, expert_ids, priority,
                       capacity_factor, load)


def batch_prioritized_router(logits, k, *, capacity_factor=1.0, key=None,
                             noise_std=None):
  """V-MoE top-k routing with Batch Prioritized Routing.

  ``p = softmax(logits + eps)`` with ``eps ~ N(0, noise_std^2)`` (default
  std ``1 / E``; no noise when ``key`` is None). Each token goes to the
  top-k of ``p``. Tokens are ranked by priority, their largest routing
  weight, and the buffers of :func:`expert_capacity` slots fill first
  choices first, highest priority first, so that over capacity the
  lowest-priority tokens are the ones dropped.

  Args:
    logits: ``[T, E]`` router logits.
    k: experts per token, in ``[1, E]``.
    capacity_factor: positive float; below 1 it trades compute for accuracy
      at inference.
    key: a PRNG key for the noise, or None for no noise.
    noise_std: standard deviation of the noise, default ``1 / E``.

  Returns:
    A :class:`Routing` with ``k`` slots per token. ``load_probs`` holds the
    smooth load estimate when there is noise.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> logits = jnp.array([[1., 0.], [3., 0.], [0., 0.5], [2., 0.]])
    >>> moe.batch_prioritized_router(logits, 1, capacity_factor=1.0).kept[:, 0]
    Array([False,  True,  True,  True], dtype=bool)

  References:
    Riquelme et al, `Scaling Vision with Sparse Mixture of Experts
    <https://arxiv.org/abs/2106.05974>`_, 2021.
  """
  logits = _check_logits(logits)
  num_experts = logits.shape[1]
  check_k(k, num_experts)
  check_factor(capacity_factor)
  if capacity_factor is None:
    raise ValueError("capacity_factor must be a positive number for batch "
                     "prioritized routing, got None")
  if noise_std is None:
    noise_std = 1.0 / num_experts
  check_factor(noise_std, "noise_std")
  noisy = logits
  if key is not None:
    noisy = logits + noise_std * jax.random.normal(key, logits.shape)
  probs = jax.nn.softmax(noisy, axis=-1)
  weights, expert_ids = jax.lax.top_k(probs, k)
  load = None
  if key is not None:
    load = _load_probability(logits, noisy, noise_std, k)
  return _token_choice(logits, probs, weights, expert_ids, weights[:, 0],
                       capacity_factor, load)


def _all_experts(num_tokens, num_experts):
  return jnp.broadcast_to(
      jnp.arange(num_experts, dtype=jnp.int32), (num_tokens, num_experts))


def expert_choice_router(logits, *, capacity_factor=2.0):
  """Expert Choice routing: each expert picks its top ``T * c / E`` tokens.

  ``S = softmax(logits)`` over experts; expert e takes the
  ``C = T * capacity_factor / E`` tokens with the largest ``S[:, e]``, with
  those scores as combine weights. Every expert gets exactly C tokens (perfect
  balance by construction); a token may get 0 to E experts. The routing has
  ``k = E`` slots per token, slot e kept when expert e chose the token.

  Args:
    logits: ``[T, E]`` router logits.
    capacity_factor: ``c``, the average number of experts per token.
      ``T * c / E`` must be a whole number between 1 and T.

  Returns:
    A :class:`Routing` with ``E`` slots per token.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> logits = jax.random.normal(jax.random.key(0), (16, 4))
    >>> r = moe.expert_choice_router(logits, capacity_factor=1.0)
    >>> r.kept.sum(axis=0)
    Array([4, 4, 4, 4], dtype=int32)

  References:
    Zhou et al, `Mixture-of-Experts with Expert Choice Routing
    <https://arxiv.org/abs/2202.09368>`_, 2022.
  """
  logits = _check_logits(logits)
  check_factor(capacity_factor)
  if capacity_factor is None:
    raise ValueError("capacity_factor must be a positive number for expert "
                     "choice routing, got None")
  num_tokens, num_experts = logits.shape
  exact = num_tokens * capacity_factor / num_experts
  capacity = round(exact)
  if abs(exact - capacity) > 1e-9 or not 1 <= capacity <= num_tokens:
    raise ValueError(
        f"capacity_factor * tokens / experts must be a whole number in "
        f"[1, tokens]; got capacity_factor={capacity_factor!r} with "
        f"{num_tokens} tokens and {num_experts} experts ({exact})")
  probs = jax.nn.softmax(logits, axis=-1)
  _, tokens = jax.lax.top_k(probs.T, capacity)  # [E, C]
  kept = jnp.zeros((num_tokens, num_experts), bool).at[
      tokens, jnp.arange(num_experts)[:, None]].set(True, unique_indices=True)
  return _finish(_all_experts(num_tokens, num_experts), probs, kept, probs,
                 logits, kept.astype(jnp.float32))


def remoe_router(logits):
  """ReMoE's ReLU routing: every expert with a positive gate is used.

  The gates are ``R = relu(logits)``; the token goes to every expert with
  ``R > 0``, weighted by R. The number of active experts is steered toward k
  by :func:`remoe_l1_loss` with a coefficient adapted by
  :func:`remoe_update`. The routing has ``k = E`` slots per token.

  Args:
    logits: ``[T, E]`` router logits.

  Returns:
    A :class:`Routing` with ``E`` slots per token and
    ``router_probs = relu(logits)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.remoe_router(jnp.array([[-1., 0.5, 2.]]))
    >>> r.kept
    Array([[False,  True,  True]], dtype=bool)
    >>> r.combine_weights
    Array([[0. , 0.5, 2. ]], dtype=float32)

  References:
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """
  logits = _check_logits(logits)
  gates = jax.nn.relu(logits)
  kept = gates > 0
  num_tokens, num_experts = logits.shape
  return _finish(_all_experts(num_tokens, num_experts), gates, kept, gates,
                 logits, kept.astype(jnp.float32))


def remoe_init(l1_coef=1e-8):
  """Initial state of ReMoE's adaptive L1 coefficient.

  Args:
    l1_coef: the starting coefficient ``lambda_0`` (the paper's 1e-8).

  Returns:
    A :class:`ReMoEState`.

  Examples:
    >>> from sparsejax import moe
    >>> moe.remoe_init()
    ReMoEState(l1_coef=Array(1.e-08, dtype=float32))

  References:
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """
  check_factor(l1_coef, "l1_coef")
  if l1_coef is None:
    raise ValueError("l1_coef must be a positive number, got None")
  return ReMoEState(l1_coef=jnp.asarray(l1_coef, jnp.float32))


def _check_remoe_k(k, routing):
  check_k(k, routing.router_probs.shape[1])


def remoe_l1_loss(routing, state, *, k):
  """ReMoE's load-balanced L1 penalty on the ReLU gates, times lambda.

  ``lambda * E * sum_e P_e * f_e`` with ``P_e`` the mean gate of expert e
  over tokens and ``f_e = (tokens with a positive gate for e) / (T * k)``:
  the Switch load-balancing form with the ReLU gates as probabilities, so
  that busy experts are pushed toward zero hardest. The coefficient is
  already applied; add the result to the training loss as is.

  Args:
    routing: the :class:`Routing` of :func:`remoe_router`.
    state: a :class:`ReMoEState`.
    k: the target number of active experts per token.

  Returns:
    A float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.remoe_router(jnp.array([[1., -1.], [-1., 1.]]))
    >>> moe.remoe_l1_loss(r, moe.remoe_init(1.0), k=1)
    Array(1., dtype=float32)

  References:
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """
  _check_remoe_k(k, routing)
  gates = routing.router_probs
  num_tokens, num_experts = gates.shape
  mean_gate = jnp.mean(gates, axis=0)
  fraction = jnp.sum(jax.lax.stop_gradient(gates) > 0, axis=0) / (
      num_tokens * k)
  return state.l1_coef * num_experts * jnp.sum(mean_gate * fraction)


def remoe_update(state, routing, *, k, multiplier=1.2):
  """One step of ReMoE's coefficient control toward sparsity ``1 - k / E``.

  The measured sparsity is the fraction of zero gates. Below the target the
  coefficient grows, ``lambda * multiplier``, to zero out more gates; at or
  above it, it shrinks, ``lambda / multiplier``.

  Args:
    state: a :class:`ReMoEState`.
    routing: the step's :class:`Routing` from :func:`remoe_router`.
    k: the target number of active experts per token.
    multiplier: the paper's alpha, > 1.

  Returns:
    The new :class:`ReMoEState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> r = moe.remoe_router(jnp.ones((4, 8)))  # every gate open: too dense
    >>> moe.remoe_update(moe.remoe_init(1.0), r, k=2).l1_coef
    Array(1.2, dtype=float32)

  References:
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """
  _check_remoe_k(k, routing)
  check_factor(multiplier, "multiplier")
  if multiplier is None or multiplier <= 1:
    raise ValueError(f"multiplier must be > 1, got {multiplier!r}")
  gates = jax.lax.stop_gradient(routing.router_probs)
  sparsity = jnp.mean(gates == 0)
  target = 1.0 - k / gates.shape[1]
  coef = jnp.where(sparsity < target, state.l1_coef * multiplier,
                   state.l1_coef / multiplier)
  return ReMoEState(l1_coef=coef.astype(jnp.float32))


class SoftRouting(NamedTuple):
  """Soft MoE's dispatch and combine weights.

  Attributes:
    dispatch_weights: ``[..., T, S]``, softmax over tokens: slot s's input
      is ``sum_t dispatch_weights[t, s] * x[t]``.
    combine_weights: ``[..., T, S]``, softmax over slots: token t's output is
      ``sum_s combine_weights[t, s] * y[s]``.
  """

  dispatch_weights: jax.Array
  combine_weights: jax.Array


def soft_moe_weights(logits):
  """Soft MoE's dispatch and combine weights from the slot logits.

  With ``S = E * p`` slots (p per expert) and logits ``X Phi`` of shape
  ``[..., T, S]`` per group of tokens (one sequence or image), the dispatch
  weights are the softmax over tokens (each slot is a convex combination of
  tokens) and the combine weights the softmax over slots (each output a
  convex combination of slot outputs). Fully differentiable; no token is
  dropped.

  Args:
    logits: ``[..., T, S]`` slot logits.

  Returns:
    A :class:`SoftRouting`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> w = moe.soft_moe_weights(jax.random.normal(jax.random.key(0), (5, 6)))
    >>> w.dispatch_weights.sum(axis=0).round(5)  # over tokens
    Array([1., 1., 1., 1., 1., 1.], dtype=float32)
    >>> w.combine_weights.sum(axis=1).round(5)  # over slots
    Array([1., 1., 1., 1., 1.], dtype=float32)

  References:
    Puigcerver et al, `From Sparse to Soft Mixtures of Experts
    <https://arxiv.org/abs/2308.00951>`_, 2023.
  """
  logits = jnp.asarray(logits)
  if logits.ndim < 2 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"logits must be a floating array [..., tokens, slots], "
                     f"got {logits.dtype} {logits.shape}")
  logits = logits.astype(jnp.float32)
  return SoftRouting(
      dispatch_weights=jax.nn.softmax(logits, axis=-2),
      combine_weights=jax.nn.softmax(logits, axis=-1))


def soft_moe_dispatch(x, soft_routing, num_experts):
  """Soft MoE's slot inputs ``D^T X``, grouped per expert.

  Args:
    x: ``[..., T, d]`` tokens.
    soft_routing: a :class:`SoftRouting` with ``S = E * p`` slots.
    num_experts: E; S must be a multiple of it.

  Returns:
    ``[..., E, p, d]``: expert e gets slots ``e * p`` to ``e * p + p - 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> w = moe.soft_moe_weights(jnp.zeros((4, 2)))
    >>> moe.soft_moe_dispatch(jnp.arange(8.).reshape(4, 2), w, 2)
    Array([[[3., 4.]],
    <BLANKLINE>
           [[3., 4.]]], dtype=float32)

  References:
    Puigcerver et al, `From Sparse to Soft Mixtures of Experts
    <https://arxiv.org/abs/2308.00951>`_, 2023.
  """
  weights = soft_routing.dispatch_weights
  num_slots = weights.shape[-1]
  if (isinstance(num_experts, bool) or not isinstance(num_experts, int)
      or num_experts < 1 or num_slots % num_experts):
    raise ValueError(f"num_experts must be a positive int dividing the "
                     f"{num_slots} slots, got {num_experts!r}")
  x = jnp.asarray(x)
  if x.shape[:-1] != weights.shape[:-1]:
    raise ValueError(f"x must have shape [..., T, d] with [..., T] = "
                     f"{weights.shape[:-1]}, got {x.shape}")
  slots = jnp.einsum("...ts,...td->...sd", weights.astype(x.dtype), x)
  return slots.reshape(
      *slots.shape[:-2], num_experts, num_slots // num_experts, x.shape[-1])


def soft_moe_combine(y, soft_routing):
  """Soft MoE's outputs ``C Y`` from the expert outputs per slot.

  Args:
    y: ``[..., E, p, n]`` slot outputs, as :func:`soft_moe_dispatch` groups
      them.
    soft_routing: the :class:`SoftRouting` used to dispatch.

  Returns:
    ``[..., T, n]`` token outputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> w = moe.soft_moe_weights(jnp.zeros((3, 2)))
    >>> moe.soft_moe_combine(jnp.array([[[1.]], [[3.]]]), w)
    Array([[2.],
           [2.],
           [2.]], dtype=float32)

  References:
    Puigcerver et al, `From Sparse to Soft Mixtures of Experts
    <https://arxiv.org/abs/2308.00951>`_, 2023.
  """
  weights = soft_routing.combine_weights
  y = jnp.asarray(y)
  if y.ndim < 3 or y.shape[-3] * y.shape[-2] != weights.shape[-1]:
    raise ValueError(f"y must have shape [..., E, p, n] with E * p = "
                     f"{weights.shape[-1]} slots, got {y.shape}")
  y = y.reshape(*y.shape[:-3], -1, y.shape[-1])
  return jnp.einsum("...ts,...sn->...tn", weights.astype(y.dtype), y)
