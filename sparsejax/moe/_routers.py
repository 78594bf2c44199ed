# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Routers as values: one routing rule with its options, variables and losses.

A :class:`Router` bundles what a MoE layer needs to know about its routing
rule, so that the layer compares no router names: the rule's extra
parameters and state (:meth:`Router.init`), the routing itself
(:meth:`Router.route`), the rows per expert of the capacity buffer or None
for dropless dispatch (:meth:`Router.capacity`), its auxiliary losses
(:meth:`Router.losses`) and its state update (:meth:`Router.update`).
Routers are frozen dataclasses, so two routers built with the same options
compare equal (a Flax module holding one keeps a stable graph definition).
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.moe._common import check_factor
from sparsejax.moe._common import check_k
from sparsejax.moe._losses import load_balancing_loss
from sparsejax.moe._routing import batch_prioritized_router
from sparsejax.moe._routing import expert_capacity
from sparsejax.moe._routing import expert_choice_router
from sparsejax.moe._routing import noisy_top_k_router
from sparsejax.moe._routing import remoe_init
from sparsejax.moe._routing import remoe_l1_loss
from sparsejax.moe._routing import remoe_router
from sparsejax.moe._routing import remoe_update
from sparsejax.moe._routing import ReMoEState
from sparsejax.moe._routing import switch_router
from sparsejax.moe._routing import top_k_router


class RouterVariables(NamedTuple):
  """A router's own arrays, beside the router kernel ``W_r`` of the layer.

  Attributes:
    params: ``{name: array}`` trained by gradient (the noise projection of
      :func:`noisy_top_k`); :class:`sparsejax.nn.MoE` stores each as an
      ``nnx.Param`` attribute of that name.
    state: ``{name: array}`` not trained by gradient, changed by
      :meth:`Router.update` (ReMoE's coefficient); the layer stores each as a
      :class:`sparsejax.nn.RouterState` attribute of that name.
  """

  params: dict[str, Any]
  state: dict[str, Any]


class RouterLosses(NamedTuple):
  """A router's auxiliary losses, unscaled unless said otherwise.

  Attributes:
    load_balancing: Switch's :func:`load_balancing_loss`, or 0 for a router
      that is balanced by construction or has its own penalty.
    remoe_l1: ReMoE's :func:`remoe_l1_loss` (its adaptive coefficient
      already applied), else 0.
  """

  load_balancing: jax.Array
  remoe_l1: jax.Array


def _zero():
  return jnp.zeros((), jnp.float32)


def _check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Router:
  """Base class of the routing rules of :class:`sparsejax.nn.MoE`.

  Build one with a factory (:func:`top_k`, :func:`switch`,
  :func:`noisy_top_k`, :func:`batch_prioritized`, :func:`expert_choice`,
  :func:`remoe`), or write a new rule as a frozen dataclass that subclasses
  :class:`Router` and overrides :meth:`route` (and whichever of the other
  methods its rule changes). The defaults describe a deterministic,
  dropless token-choice router with no variables of its own.

  Attributes:
    stochastic: class attribute: the rule draws noise in training, so the
      layer passes it a PRNG key (from the ``noise`` stream of its
      :class:`flax.nnx.Rngs`).

  Examples:
    A rule that sends every token to its two best experts with equal
    weights:

    >>> import dataclasses, jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> @dataclasses.dataclass(frozen=True)
    ... class EqualTopTwo(moe.Router):
    ...   def route(self, logits, variables, *, tokens=None, key=None):
    ...     r = moe.top_k_router(logits, 2)
    ...     return r._replace(combine_weights=jnp.full_like(
    ...         r.combine_weights, 0.5))
    >>> router = EqualTopTwo()
    >>> variables = router.init(8, 4)
    >>> r = router.route(jnp.array([[0., 3., 1., 2.]]), variables)
    >>> r.expert_ids, r.combine_weights
    (Array([[1, 3]], dtype=int32), Array([[0.5, 0.5]], dtype=float32))
  """

  stochastic: ClassVar[bool] = False

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    """Checks the router against the layer and makes its variables.

    Args:
      in_features: width d of the tokens.
      num_experts: E.
      param_dtype: dtype of the parameters it makes.

    Returns:
      The :class:`RouterVariables` (default: none).

    Raises:
      ValueError: when the router cannot serve ``num_experts`` experts.
    """
    del in_features, num_experts, param_dtype
    return RouterVariables(params={}, state={})

  def route(self, logits, variables, *, tokens=None, key=None):
    """Routes the tokens.

    Args:
      logits: float32 ``[T, E]`` router logits ``tokens @ W_r``.
      variables: the :class:`RouterVariables` (current values).
      tokens: ``[T, d]`` the tokens, for rules with their own projections.
      key: a PRNG key in training for a :attr:`stochastic` rule, else None.

    Returns:
      A :class:`Routing`.
    """
    raise NotImplementedError(
        f"{type(self).__name__} must define route(logits, variables, *, "
        f"tokens, key)")

  def capacity(self, num_tokens, num_experts):
    """Rows per expert of the padded ``[E, C, d]`` buffer, or None.

    Args:
      num_tokens: T, the tokens routed together.
      num_experts: E.

    Returns:
      A positive int C, or None for dropless sort-based dispatch (default).
    """
    del num_tokens, num_experts
    return None

  def losses(self, routing, variables):
    """The auxiliary losses of one routing.

    Args:
      routing: the :class:`Routing` from :meth:`route`.
      variables: the :class:`RouterVariables` it was routed with.

    Returns:
      :class:`RouterLosses`; by default Switch's load-balancing loss and no
      ReMoE penalty.
    """
    del variables
    return RouterLosses(
        load_balancing=load_balancing_loss(routing.router_probs,
                                           routing.expert_ids),
        remoe_l1=_zero())

  def update(self, routing, variables):
    """The router state after a training step (default: unchanged).

    Args:
      routing: the step's :class:`Routing`.
      variables: the :class:`RouterVariables` it was routed with.

    Returns:
      The new ``state`` dict, with the keys of ``variables.state``.
    """
    del routing
    return variables.state


def _token_choice_capacity(num_tokens, num_experts, k, capacity_factor):
  if capacity_factor is None:
    return None
  return expert_capacity(num_tokens, num_experts, k, capacity_factor)


@dataclasses.dataclass(frozen=True)
class TopKRouter(Router):
  """Softmax top-k token choice; see :func:`top_k`."""

  k: int = 2
  renormalize: bool = True
  capacity_factor: float | None = None

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    check_k(self.k, num_experts)
    return super().init(in_features, num_experts, param_dtype)

  def route(self, logits, variables, *, tokens=None, key=None):
    del variables, tokens, key
    return top_k_router(logits, self.k, renormalize=self.renormalize,
                        capacity_factor=self.capacity_factor)

  def capacity(self, num_tokens, num_experts):
    return _token_choice_capacity(num_tokens, num_experts, self.k,
                                  self.capacity_factor)


@dataclasses.dataclass(frozen=True)
class SwitchRouter(Router):
  """Switch Transformer top-1; see :func:`switch`."""

  capacity_factor: float | None = 1.25

  def route(self, logits, variables, *, tokens=None, key=None):
    del variables, tokens, key
    return switch_router(logits, capacity_factor=self.capacity_factor)

  def capacity(self, num_tokens, num_experts):
    return _token_choice_capacity(num_tokens, num_experts, 1,
                                  self.capacity_factor)


@dataclasses.dataclass(frozen=True)
class NoisyTopKRouter(Router):
  """Shazeer's noisy top-k gating; see :func:`noisy_top_k`."""

  stochastic: ClassVar[bool] = True
  k: int = 2
  capacity_factor: float | None = None

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    check_k(self.k, num_experts)
    # Shazeer et al. start the noise projection at 0.
    return RouterVariables(
        params={"noise_kernel": jnp.zeros((in_features, num_experts),
                                          param_dtype)},
        state={})

  def route(self, logits, variables, *, tokens=None, key=None):
    if tokens is None:
      raise ValueError("tokens are required by the noisy_top_k router")
    noise_logits = jnp.asarray(tokens).astype(jnp.float32) @ (
        variables.params["noise_kernel"].astype(jnp.float32))
    return noisy_top_k_router(logits, noise_logits, self.k, key=key,
                              capacity_factor=self.capacity_factor)

  def capacity(self, num_tokens, num_experts):
    return _token_choice_capacity(num_tokens, num_experts, self.k,
                                  self.capacity_factor)


@dataclasses.dataclass(frozen=True)
class BatchPrioritizedRouter(Router):
  """V-MoE's batch prioritized routing; see :func:`batch_prioritized`."""

  stochastic: ClassVar[bool] = True
  k: int = 1
  capacity_factor: float = 1.0
  noise_std: float | None = None

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    check_k(self.k, num_experts)
    return super().init(in_features, num_experts, param_dtype)

  def route(self, logits, variables, *, tokens=None, key=None):
    del variables, tokens
    return batch_prioritized_router(
        logits, self.k, capacity_factor=self.capacity_factor, key=key,
        noise_std=self.noise_std)

  def capacity(self, num_tokens, num_experts):
    return _token_choice_capacity(num_tokens, num_experts, self.k,
                                  self.capacity_factor)


@dataclasses.dataclass(frozen=True)
class ExpertChoiceRouter(Router):
  """Expert Choice routing; see :func:`expert_choice`."""

  capacity_factor: float = 2.0

  def route(self, logits, variables, *, tokens=None, key=None):
    del variables, tokens, key
    return expert_choice_router(logits, capacity_factor=self.capacity_factor)

  def capacity(self, num_tokens, num_experts):
    return round(num_tokens * self.capacity_factor / num_experts)

  def losses(self, routing, variables):
    del routing, variables  # balanced by construction
    return RouterLosses(load_balancing=_zero(), remoe_l1=_zero())


@dataclasses.dataclass(frozen=True)
class ReMoERouter(Router):
  """ReMoE's ReLU routing with its adaptive L1 penalty; see :func:`remoe`."""

  k: int = 2
  l1_coef: float = 1e-8
  multiplier: float = 1.2

  def init(self, in_features, num_experts, param_dtype=jnp.float32):
    del in_features, param_dtype
    check_k(self.k, num_experts)
    return RouterVariables(
        params={}, state={"remoe_l1_coef": remoe_init(self.l1_coef).l1_coef})

  def route(self, logits, variables, *, tokens=None, key=None):
    del variables, tokens, key
    return remoe_router(logits)

  def losses(self, routing, variables):
    state = ReMoEState(variables.state["remoe_l1_coef"])
    return RouterLosses(load_balancing=_zero(),
                        remoe_l1=remoe_l1_loss(routing, state, k=self.k))

  def update(self, routing, variables):
    state = ReMoEState(variables.state["remoe_l1_coef"])
    new = remoe_update(state, routing, k=self.k, multiplier=self.multiplier)
    return {"remoe_l1_coef": new.l1_coef}


def top_k(k=2, *, renormalize=True, capacity_factor=None):
  """Softmax top-k token choice (:func:`top_k_router`) as a :class:`Router`.

  Each token goes to its k most probable experts, weighted by their
  probabilities (divided by their sum with ``renormalize``, as in Mixtral).
  Dropless by default; with a ``capacity_factor`` each expert keeps at most
  :func:`expert_capacity` slots, first choices before second choices
  (GShard).

  Args:
    k: experts per token.
    renormalize: make each token's k weights sum to 1.
    capacity_factor: None for dropless routing, else a positive float.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.top_k(2)
    >>> r = router.route(jnp.log(jnp.array([[.1, .2, .7]])), router.init(5, 3))
    >>> r.expert_ids, r.combine_weights.round(3)
    (Array([[2, 1]], dtype=int32), Array([[0.778, 0.222]], dtype=float32))

  References:
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional Computation
    and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_, 2020.
  """
  _check_positive_int("k", k)
  if not isinstance(renormalize, bool):
    raise ValueError(f"renormalize must be a bool, got {renormalize!r}")
  check_factor(capacity_factor)
  return TopKRouter(k=k, renormalize=renormalize,
                    capacity_factor=capacity_factor)


def switch(*, capacity_factor=1.25):
  """Switch Transformer top-1 routing (:func:`switch_router`) as a
  :class:`Router`.

  Each token goes to its most probable expert, weighted by that
  probability; each expert keeps at most ``ceil(capacity_factor * T / E)``
  tokens, earlier tokens first.

  Args:
    capacity_factor: positive float (1.0 to 1.25 to train in the paper), or
      None for dropless top-1.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.switch(capacity_factor=1.0)
    >>> logits = jnp.array([[2., 0.], [3., 0.], [0., 1.], [4., 0.]])
    >>> router.route(logits, router.init(3, 2)).kept[:, 0]
    Array([ True,  True,  True, False], dtype=bool)
    >>> router.capacity(4, 2)
    2

  References:
    Fedus et al, `Switch Transformers: Scaling to Trillion Parameter Models
    with Simple and Efficient Sparsity <https://arxiv.org/abs/2101.03961>`_,
    2021.
  """
  check_factor(capacity_factor)
  return SwitchRouter(capacity_factor=capacity_factor)


def noisy_top_k(k=2, *, capacity_factor=None):
  """Shazeer's noisy top-k gating (:func:`noisy_top_k_router`) as a
  :class:`Router`.

  The router owns a noise projection ``W_noise`` (``params["noise_kernel"]``,
  ``[d, E]``, initialised to 0) and adds ``eps * softplus(x W_noise)`` to the
  logits in training (it is :attr:`~Router.stochastic`); ``router_probs``
  holds the sparse gates and ``load_probs`` the paper's smooth load.

  Args:
    k: experts per token.
    capacity_factor: None for dropless routing, else a positive float.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.noisy_top_k(2)
    >>> variables = router.init(3, 4)
    >>> variables.params["noise_kernel"].shape
    (3, 4)
    >>> r = router.route(jnp.array([[0., 1., 2., 3.]]), variables,
    ...                  tokens=jnp.ones((1, 3)), key=None)  # evaluation
    >>> r.expert_ids
    Array([[3, 2]], dtype=int32)

  References:
    Shazeer et al, `Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer <https://arxiv.org/abs/1701.06538>`_, 2017.
  """
  _check_positive_int("k", k)
  check_factor(capacity_factor)
  return NoisyTopKRouter(k=k, capacity_factor=capacity_factor)


def batch_prioritized(k=1, *, capacity_factor=1.0, noise_std=None):
  """V-MoE's Batch Prioritized Routing (:func:`batch_prioritized_router`)
  as a :class:`Router`.

  Top-k of ``softmax(logits + eps)`` (noise only in training: it is
  :attr:`~Router.stochastic`); the capacity buffers fill highest-priority
  tokens first, so the tokens dropped over capacity are those the router is
  least sure of.

  Args:
    k: experts per token.
    capacity_factor: positive float (required; below 1 it saves compute at
      inference).
    noise_std: standard deviation of the noise, default ``1 / E``.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.batch_prioritized(1, capacity_factor=1.0)
    >>> logits = jnp.array([[1., 0.], [3., 0.], [0., 0.5], [2., 0.]])
    >>> router.route(logits, router.init(3, 2)).kept[:, 0]
    Array([False,  True,  True,  True], dtype=bool)

  References:
    Riquelme et al, `Scaling Vision with Sparse Mixture of Experts
    <https://arxiv.org/abs/2106.05974>`_, 2021.
  """
  _check_positive_int("k", k)
  check_factor(capacity_factor)
  if capacity_factor is None:
    raise ValueError("capacity_factor must be a positive number for batch "
                     "prioritized routing, got None")
  check_factor(noise_std, "noise_std")
  return BatchPrioritizedRouter(k=k, capacity_factor=capacity_factor,
                                noise_std=noise_std)


def expert_choice(*, capacity_factor=2.0):
  """Expert Choice routing (:func:`expert_choice_router`) as a
  :class:`Router`.

  Each expert takes its ``C = T * capacity_factor / E`` highest-scoring
  tokens, so every expert is exactly full (no load-balancing loss: its
  :meth:`~Router.losses` are 0) and a token gets 0 to E experts. It always
  runs on the ``[E, C, d]`` buffer.

  Args:
    capacity_factor: ``c``, the average number of experts per token;
      ``T * c / E`` must be a whole number in ``[1, T]`` for the T tokens
      routed together.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.expert_choice(capacity_factor=1.0)
    >>> logits = jax.random.normal(jax.random.key(0), (16, 4))
    >>> router.route(logits, router.init(3, 4)).kept.sum(axis=0)
    Array([4, 4, 4, 4], dtype=int32)
    >>> router.capacity(16, 4)
    4

  References:
    Zhou et al, `Mixture-of-Experts with Expert Choice Routing
    <https://arxiv.org/abs/2202.09368>`_, 2022.
  """
  check_factor(capacity_factor)
  if capacity_factor is None:
    raise ValueError("capacity_factor must be a positive number for expert "
                     "choice routing, got None")
  return ExpertChoiceRouter(capacity_factor=capacity_factor)


def remoe(k=2, *, l1_coef=1e-8, multiplier=1.2):
  """ReMoE's ReLU routing (:func:`remoe_router`) as a :class:`Router`.

  Every expert with a positive ``relu(logit)`` is used, dropless. The router
  state ``state["remoe_l1_coef"]`` is the adaptive coefficient of
  :func:`remoe_l1_loss` (reported as ``remoe_l1`` by :meth:`~Router.losses`),
  which :meth:`~Router.update` moves by :func:`remoe_update` toward k active
  experts per token.

  Args:
    k: the target number of active experts per token.
    l1_coef: the initial coefficient ``lambda_0``.
    multiplier: the paper's alpha (> 1), the coefficient's step factor.

  Returns:
    A :class:`Router`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from sparsejax import moe
    >>> router = moe.remoe(2, l1_coef=1.0)
    >>> variables = router.init(3, 8)
    >>> r = router.route(jnp.ones((4, 8)), variables)  # all open: too dense
    >>> router.update(r, variables)["remoe_l1_coef"]
    Array(1.2, dtype=float32)

  References:
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """
  _check_positive_int("k", k)
  check_factor(l1_coef, "l1_coef")
  if l1_coef is None:
    raise ValueError("l1_coef must be a positive number, got None")
  check_factor(multiplier, "multiplier")
  if multiplier is None or multiplier <= 1:
    raise ValueError(f"multiplier must be > 1, got {multiplier!r}")
  return ReMoERouter(k=k, l1_coef=l1_coef, multiplier=multiplier)
