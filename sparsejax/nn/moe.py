# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Flax NNX Mixture-of-Experts MLP layer and sparse upcycling."""

from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp

from sparsejax import moe

# The router names MoE accepts as shorthands for the router values.
ROUTERS = ("top_k", "switch", "noisy_top_k", "expert_choice", "remoe",
           "batch_prioritized")


class MoEAux(NamedTuple):
  """Auxiliary losses and balance statistics of one :class:`MoE` call.

  The losses are unscaled: multiply each by its coefficient (e.g. 1e-2 for
  ``load_balancing``, 1e-3 for ``z_loss``) before adding it to the training
  loss, except ``remoe_l1``, which already carries ReMoE's adaptive
  coefficient.

  Attributes:
    load_balancing: the router's load-balancing loss
      (:meth:`sparsejax.moe.Router.losses`): Switch's
      :func:`sparsejax.moe.load_balancing_loss` for the token-choice
      routers; 0 for expert choice (balanced by construction) and ReMoE
      (which has ``remoe_l1``).
    z_loss: :func:`sparsejax.moe.z_loss` of the router logits.
    importance: :func:`sparsejax.moe.importance_loss` of the gates.
    load: :func:`sparsejax.moe.load_loss` (smooth for ``noisy_top_k``).
    remoe_l1: :func:`sparsejax.moe.remoe_l1_loss` for ReMoE, else 0.
    expert_load: ``[E]`` fraction of the computed slots that each expert
      received.
    dropped: fraction of tokens that reached no expert.
  """

  load_balancing: jax.Array
  z_loss: jax.Array
  importance: jax.Array
  load: jax.Array
  remoe_l1: jax.Array
  expert_load: jax.Array
  dropped: jax.Array


class RouterState(nnx.Variable):
  """Router state not trained by gradient (ReMoE's L1 coefficient): the
  ``state`` of :class:`sparsejax.moe.RouterVariables` in the layer."""


def _positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def _router_from_name(name, num_experts, *, k, capacity_factor, renormalize,
                      remoe_l1_coef, noise_std):
  """The :class:`sparsejax.moe.Router` that a router name stands for."""
  if name not in ROUTERS:
    raise ValueError(f"router must be a sparsejax.moe.Router or one of "
                     f"{ROUTERS}, got {name!r}")
  if k is None:
    k = 1 if name == "switch" else 2
  if isinstance(k, bool) or not isinstance(k, int) or not (
      1 <= k <= num_experts):
    raise ValueError(f"k must be an int in [1, num_experts={num_experts}],"
                     f" got {k!r}")
  if capacity_factor is not None and (
      isinstance(capacity_factor, bool)
      or not isinstance(capacity_factor, (int, float))
      or not capacity_factor > 0):
    raise ValueError(f"capacity_factor must be None or a positive number, "
                     f"got {capacity_factor!r}")
  if name == "switch" and k != 1:
    raise ValueError(f"k must be 1 for the switch router, got {k}")
  factories = {
      "top_k": lambda: moe.top_k(
          k, renormalize=True if renormalize is None else renormalize,
          capacity_factor=capacity_factor),
      "switch": lambda: moe.switch(capacity_factor=capacity_factor),
      "noisy_top_k": lambda: moe.noisy_top_k(
          k, capacity_factor=capacity_factor),
      "expert_choice": lambda: moe.expert_choice(
          capacity_factor=k if capacity_factor is None else capacity_factor),
      # ReMoE is dropless: a capacity factor is ignored, as it always was.
      "remoe": lambda: moe.remoe(
          k, l1_coef=1e-8 if remoe_l1_coef is None else remoe_l1_coef),
      "batch_prioritized": lambda: moe.batch_prioritized(
          k, capacity_factor=capacity_factor, noise_std=noise_std),
  }
  return factories[name]()


class MoE(nnx.Module):
  """A sparse Mixture-of-Experts MLP: a router and E two-layer expert MLPs.

  Each token (every index of ``x`` but the last) is routed by the
  :class:`sparsejax.moe.Router` ``router`` from its logits ``x @ W_r``,
  and its output is the routing-weighted sum of its experts'
  ``activation(x W_in[e] + b_in[e]) W_out[e] + b_out[e]``. A router whose
  :meth:`~sparsejax.moe.Router.capacity` is None (token choice without a
  capacity factor, ReMoE) is dropless: tokens are sorted by expert and the
  experts run as grouped matmuls (:func:`pallas_kernels.gmm`). Otherwise
  (a capacity factor, expert choice) the experts run as one batched einsum
  over a ``[E, C, d]`` buffer; dropped tokens get 0 (keep a residual
  connection around the layer). The router runs in float32.

  The router is a value, as ``kernel_init`` or ``dot_general`` are in
  :class:`flax.nnx.Linear`: ``router=moe.top_k(2)``,
  ``moe.switch(capacity_factor=1.25)``, ``moe.noisy_top_k(2)``,
  ``moe.batch_prioritized(2, capacity_factor=1.0)``,
  ``moe.expert_choice(capacity_factor=2.0)``, ``moe.remoe(2)``, or a
  subclass of :class:`sparsejax.moe.Router` of your own. Its variables
  become attributes of the layer (``noise_kernel``, an ``nnx.Param``, for
  noisy top-k; ``remoe_l1_coef``, a :class:`RouterState`, for ReMoE).

  A router name is a shorthand, resolved once at construction into the
  router value with the keywords ``k``, ``capacity_factor``,
  ``renormalize``, ``remoe_l1_coef`` and ``noise_std``; a keyword that a
  named router does not use is ignored. With a router value these keywords
  must be left out (they belong to the value).

  The auxiliary losses and balance statistics (:class:`MoEAux`) are
  returned with ``return_aux=True`` and, with ``sow_aux=True``, sown as
  ``nnx.Intermediate`` under ``"moe_aux"`` (collect them with
  ``nnx.capture``), so that a model with many MoE layers need not thread
  them through its own call. ``model.eval()`` (or
  ``deterministic=True``) turns off the router noise and the router state
  update (ReMoE's coefficient).

  Args:
    in_features: input width d.
    hidden_features: hidden width of each expert.
    num_experts: E.
    k: with a router name: experts per token (token choice; default 2, and
      1 for ``"switch"``, which takes no other), the target number of active
      experts (``"remoe"``), or the default capacity factor
      (``"expert_choice"``).
    out_features: output width, default ``in_features``.
    router: a :class:`sparsejax.moe.Router`, or one of the names
      ``"top_k"`` (:func:`~sparsejax.moe.top_k`, the default),
      ``"switch"``, ``"noisy_top_k"``, ``"expert_choice"``, ``"remoe"``,
      ``"batch_prioritized"``.
    capacity_factor: with a router name: None (dropless) or a positive
      float, the expert capacity of token-choice routing or expert choice's
      ``c`` (default k); required by ``"batch_prioritized"``; ignored by
      ``"remoe"``.
    renormalize: with ``"top_k"``: make each token's k weights sum to 1
      (default True).
    activation: the experts' nonlinearity.
    use_bias: give the experts biases.
    router_init_std: standard deviation of the router kernel's normal init.
    remoe_l1_coef: with ``"remoe"``: the initial coefficient ``lambda_0``
      (default 1e-8).
    noise_std: with ``"batch_prioritized"``: the noise std (default
      ``1 / E``).
    mesh: optional mesh for expert parallelism; with ``expert_axis``, experts
      and tokens are split over that axis and exchanged by all-to-all
      (:func:`sparsejax.moe.expert_parallel`). The output is split over
      the axis by token when ``x`` is ``[T, d]``, else replicated.
    expert_axis: the mesh axis name.
    gmm_implementation: ``implementation`` of :func:`pallas_kernels.gmm`.
    gmm_interpret: ``interpret`` of :func:`pallas_kernels.gmm` (Pallas
      interpret mode, to run the TPU kernel on CPU).
    deterministic: default of the call's ``deterministic``.
    sow_aux: sow the :class:`MoEAux` of every call.
    dtype: computation dtype of the experts (default: that of ``x``).
    param_dtype: parameter dtype.
    rngs: :class:`flax.nnx.Rngs` for init (and the ``noise`` stream, or the
      default one, for a :attr:`~sparsejax.moe.Router.stochastic` router).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from sparsejax import moe
    >>> from sparsejax.nn import MoE
    >>> layer = MoE(8, 16, num_experts=4, router=moe.top_k(2),
    ...             rngs=nnx.Rngs(0))
    >>> y, aux = layer(jnp.ones((2, 5, 8)), return_aux=True)
    >>> y.shape, aux.expert_load.shape
    ((2, 5, 8), (4,))
    >>> same = MoE(8, 16, num_experts=4, k=2, router="top_k",
    ...            rngs=nnx.Rngs(0))
    >>> same.router == layer.router
    True

  References:
    Shazeer et al, `Outrageously Large Neural Networks: The Sparsely-Gated
    Mixture-of-Experts Layer <https://arxiv.org/abs/1701.06538>`_, 2017
    (noisy top-k).
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional
    Computation and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_,
    2020 (top-k with capacity).
    Fedus et al, `Switch Transformers: Scaling to Trillion Parameter Models
    with Simple and Efficient Sparsity <https://arxiv.org/abs/2101.03961>`_,
    2021.
    Riquelme et al, `Scaling Vision with Sparse Mixture of Experts
    <https://arxiv.org/abs/2106.05974>`_, 2021 (batch prioritized).
    Zhou et al, `Mixture-of-Experts with Expert Choice Routing
    <https://arxiv.org/abs/2202.09368>`_, 2022.
    Gale et al, `MegaBlocks: Efficient Sparse Training with
    Mixture-of-Experts <https://arxiv.org/abs/2211.15841>`_, 2022.
    Wang et al, `ReMoE: Fully Differentiable Mixture-of-Experts with ReLU
    Routing <https://arxiv.org/abs/2412.14711>`_, 2024.
  """

  def __init__(self, in_features, hidden_features, num_experts, *, k=None,
               out_features=None, router="top_k", capacity_factor=None,
               renormalize=None, activation=jax.nn.gelu, use_bias=True,
               router_init_std=0.02, remoe_l1_coef=None, noise_std=None,
               mesh=None, expert_axis=None, gmm_implementation=None,
               gmm_interpret=None, deterministic=False, sow_aux=False,
               dtype=None, param_dtype=jnp.float32, rngs):
    _positive_int("in_features", in_features)
    _positive_int("hidden_features", hidden_features)
    _positive_int("num_experts", num_experts)
    out_features = in_features if out_features is None else out_features
    _positive_int("out_features", out_features)
    router_options = dict(k=k, capacity_factor=capacity_factor,
                          renormalize=renormalize,
                          remoe_l1_coef=remoe_l1_coef, noise_std=noise_std)
    if isinstance(router, str):
      router = _router_from_name(router, num_experts, **router_options)
    elif isinstance(router, moe.Router):
      for name, value in router_options.items():
        if value is not None:
          raise ValueError(
              f"{name} belongs to the router value; give it to the router's "
              f"factory (e.g. sparsejax.moe.top_k(k, capacity_factor=...)), "
              f"not to MoE, got {name}={value!r} with router={router!r}")
    else:
      raise ValueError(f"router must be a sparsejax.moe.Router or one of "
                       f"{ROUTERS}, got {router!r}")
    if (mesh is None) != (expert_axis is None):
      raise ValueError("mesh and expert_axis must be given together")
    router_variables = router.init(in_features, num_experts, param_dtype)
    if not isinstance(router_variables, moe.RouterVariables):
      raise ValueError(f"router.init must return a sparsejax.moe."
                       f"RouterVariables, got {router_variables!r} from "
                       f"router={router!r}")
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.out_features = out_features
    self.num_experts = num_experts
    self.router = router
    self.activation = activation
    self.mesh = mesh
    self.expert_axis = expert_axis
    self.gmm_implementation = gmm_implementation
    self.gmm_interpret = gmm_interpret
    self.deterministic = deterministic
    self.sow_aux = sow_aux
    self.dtype = dtype

    init = nnx.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1,
        batch_axis=(0,))
    self.router_kernel = nnx.Param(nnx.initializers.normal(router_init_std)(
        rngs.params(), (in_features, num_experts), param_dtype))
    self.w_in = nnx.Param(init(
        rngs.params(), (num_experts, in_features, hidden_features),
        param_dtype))
    self.w_out = nnx.Param(init(
        rngs.params(), (num_experts, hidden_features, out_features),
        param_dtype))
    if use_bias:
      self.b_in = nnx.Param(
          jnp.zeros((num_experts, hidden_features), param_dtype))
      self.b_out = nnx.Param(jnp.zeros((num_experts, out_features),
                                       param_dtype))
    else:
      self.b_in = nnx.data(None)
      self.b_out = nnx.data(None)
    # The router's variables become attributes named as the router names
    # them, so that optimizers, checkpoints and users see them by name.
    self.router_param_names = tuple(router_variables.params)
    self.router_state_names = tuple(router_variables.state)
    for names, wrap in ((router_variables.params, nnx.Param),
                        (router_variables.state, RouterState)):
      for name, value in names.items():
        if not name.isidentifier() or hasattr(self, name):
          raise ValueError(f"router={router!r} names a variable {name!r} "
                           f"that is not a free attribute name of MoE")
        setattr(self, name, wrap(value))
    if router.stochastic:
      self.rngs = rngs["noise"].fork()

  def _router_variables(self):
    return moe.RouterVariables(
        params={name: getattr(self, name)[...]
                for name in self.router_param_names},
        state={name: getattr(self, name)[...]
               for name in self.router_state_names})

  def __call__(self, x, *, deterministic=None, return_aux=False):
    """Applies the layer.

    Args:
      x: ``[..., in_features]``; every leading index is a token, and all
        tokens of the call are routed together (capacities and expert choice
        count over all of them).
      deterministic: no router noise and no router state update; default:
        the attribute set at construction or by ``eval()``.
      return_aux: also return the :class:`MoEAux`.

    Returns:
      ``[..., out_features]``, or ``(y, aux)`` with ``return_aux``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != self.in_features:
      raise ValueError(f"x must have shape [..., {self.in_features}], got "
                       f"{x.shape}")
    if deterministic is None:
      deterministic = self.deterministic
    lead = x.shape[:-1]
    tokens = x.reshape(-1, self.in_features)
    num_tokens = tokens.shape[0]
    logits = tokens.astype(jnp.float32) @ self.router_kernel[...].astype(
        jnp.float32)
    variables = self._router_variables()
    key = None
    if self.router.stochastic and not deterministic:
      key = self.rngs()
    routing = self.router.route(logits, variables, tokens=tokens, key=key)

    dtype = self.dtype or x.dtype
    tokens = tokens.astype(dtype)
    w_in = self.w_in[...].astype(dtype)
    w_out = self.w_out[...].astype(dtype)
    b_in = None if self.b_in is None else self.b_in[...].astype(dtype)
    b_out = None if self.b_out is None else self.b_out[...].astype(dtype)
    capacity = self.router.capacity(num_tokens, self.num_experts)
    if self.mesh is not None:
      params = {"w_in": w_in, "w_out": w_out, "b_in": b_in, "b_out": b_out}
      y = moe.expert_parallel(
          lambda p, rows: moe.expert_mlp(
              rows, p["w_in"], p["w_out"], b_in=p["b_in"], b_out=p["b_out"],
              activation=self.activation),
          params, tokens, routing, mesh=self.mesh,
          axis_name=self.expert_axis)
      if len(lead) != 1:
        # Tokens come back split over the expert axis; an Explicit mesh
        # cannot reshape that split into several leading axes.
        y = jax.device_put(y, jax.sharding.NamedSharding(
            self.mesh, jax.sharding.PartitionSpec()))
    elif capacity is None:
      rows, dispatch = moe.sort_dispatch(tokens, routing)
      rows = moe.expert_mlp(
          rows, w_in, w_out, group_sizes=dispatch.group_sizes, b_in=b_in,
          b_out=b_out, activation=self.activation,
          implementation=self.gmm_implementation,
          interpret=self.gmm_interpret)
      y = moe.sort_combine(rows, routing, dispatch)
    else:
      buffer, dispatch = moe.capacity_dispatch(tokens, routing, capacity)
      buffer = moe.expert_mlp(buffer, w_in, w_out, b_in=b_in, b_out=b_out,
                              activation=self.activation)
      y = moe.capacity_combine(buffer, routing, dispatch)
    y = y.astype(dtype).reshape(*lead, self.out_features)

    aux = self._aux(routing, variables, deterministic)
    if self.sow_aux:
      self.sow(nnx.Intermediate, "moe_aux", aux)
    return (y, aux) if return_aux else y

  def _aux(self, routing, variables, deterministic):
    losses = self.router.losses(routing, variables)
    if not deterministic:
      for name, value in self.router.update(routing, variables).items():
        getattr(self, name)[...] = value
    num_tokens = routing.kept.shape[0]
    # [T, E]: 1 where expert e computes token t (ids are distinct per token).
    received = jnp.zeros((num_tokens, self.num_experts), jnp.float32).at[
        jnp.arange(num_tokens)[:, None], routing.expert_ids].add(
            routing.kept.astype(jnp.float32))
    per_expert = jnp.sum(received, axis=0)
    return MoEAux(
        load_balancing=losses.load_balancing,
        z_loss=moe.z_loss(routing.router_logits),
        importance=moe.importance_loss(routing.router_probs),
        load=moe.load_loss(routing.load_probs),
        remoe_l1=losses.remoe_l1,
        expert_load=per_expert / jnp.maximum(jnp.sum(per_expert), 1.0),
        dropped=jnp.mean(jnp.sum(received, axis=1) == 0))


def upcycle_mlp(linear_in, linear_out, num_experts, *, rngs, **moe_kwargs):
  """Sparse upcycling: a :class:`MoE` whose E experts copy a dense MLP.

  Every expert starts as the dense MLP ``linear_out(act(linear_in(x)))``
  (kernels and biases copied), and the router is new (normal init with
  ``router_init_std``). With weights that sum to 1 per token (``"top_k"``
  with ``renormalize=True``, the default) the upcycled layer computes
  exactly the dense MLP until training moves the experts apart.

  Args:
    linear_in: the dense MLP's first :class:`flax.nnx.Linear`.
    linear_out: its second :class:`flax.nnx.Linear`.
    num_experts: E.
    rngs: :class:`flax.nnx.Rngs` for the router.
    **moe_kwargs: the other :class:`MoE` arguments (``k``, ``router``,
      ``capacity_factor``, ``activation``, ...); the activation must be the
      dense MLP's.

  Returns:
    The :class:`MoE`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from sparsejax.nn import upcycle_mlp
    >>> fc1, fc2 = nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.Linear(
    ...     8, 4, rngs=nnx.Rngs(1))
    >>> layer = upcycle_mlp(fc1, fc2, 4, k=2, rngs=nnx.Rngs(2))
    >>> x = jnp.ones((3, 4))
    >>> bool(jnp.allclose(layer(x), fc2(jax.nn.gelu(fc1(x))), atol=1e-6))
    True

  References:
    Komatsuzaki et al, `Sparse Upcycling: Training Mixture-of-Experts from
    Dense Checkpoints <https://arxiv.org/abs/2212.05055>`_, 2023.
  """
  for name, layer in (("linear_in", linear_in), ("linear_out", linear_out)):
    if not isinstance(layer, nnx.Linear):
      raise ValueError(f"{name} must be a flax.nnx.Linear, got "
                       f"{type(layer).__name__}")
  if linear_out.in_features != linear_in.out_features:
    raise ValueError(
        f"linear_out.in_features ({linear_out.in_features}) must equal "
        f"linear_in.out_features ({linear_in.out_features})")
  for name in ("in_features", "hidden_features", "out_features", "use_bias"):
    if name in moe_kwargs:
      raise ValueError(f"{name} is taken from the dense MLP; do not pass it")
  has_bias = linear_in.bias is not None or linear_out.bias is not None
  layer = MoE(linear_in.in_features, linear_in.out_features, num_experts,
              out_features=linear_out.out_features, use_bias=has_bias,
              param_dtype=linear_in.kernel[...].dtype, rngs=rngs,
              **moe_kwargs)

  def tile(value):
    return jnp.broadcast_to(value[None], (num_experts, *value.shape))

  layer.w_in[...] = tile(linear_in.kernel[...])
  layer.w_out[...] = tile(linear_out.kernel[...])
  if has_bias:
    for bias, target in ((linear_in.bias, layer.b_in),
                         (linear_out.bias, layer.b_out)):
      if bias is not None:
        target[...] = tile(bias[...])
  return layer
