# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Expert parallelism: experts sharded over a mesh axis, tokens by all-to-all.

Tokens and experts are both split over one mesh axis of D devices: each
device holds T / D tokens (with their routing) and E / D experts. Each device
packs its tokens into a ``[E, C, d]`` buffer, one all-to-all sends the rows
for expert e to the device that holds e, the local experts run on the
``[E / D, D * C, d]`` rows they received, and a second all-to-all returns the
outputs to the tokens' devices, where they are combined.
"""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sparsejax.moe import _dispatch
from sparsejax.moe import _routing


def expert_parallel(expert_fn, expert_params, x, routing, *, mesh,
                    axis_name, capacity=None):
  """Applies routed experts sharded over ``axis_name`` of ``mesh``.

  The result equals the single-device
  ``capacity_combine(expert_fn(expert_params, buffer), ...)`` on the same
  routing: with ``capacity=None`` every kept slot of the routing reaches its
  expert, so the output is exactly that of dropless dispatch. Each device's
  buffer then has ``T / D`` rows per expert, the worst case, because every
  router of this module sends a token's slots to distinct experts (pass a
  ``capacity`` of ``T / D * k`` for a hand-made routing that repeats an
  expert within a token). A smaller
  ``capacity`` bounds the all-to-all traffic and drops, per device, the
  slots that arrive after a buffer is full, as :func:`capacity_dispatch`
  does.

  Args:
    expert_fn: ``expert_fn(params, rows) -> outputs`` with rows
      ``[E_local, N, d]`` and outputs ``[E_local, N, n]``, for the leading
      ``E_local`` experts of ``params``, e.g.
      ``lambda p, r: expert_mlp(r, p["w_in"], p["w_out"])``.
    expert_params: pytree whose leaves all have the expert axis E first; they
      are split over ``axis_name``.
    x: ``[T, d]`` tokens, split over ``axis_name``.
    routing: the :class:`Routing` of these tokens (made on all T tokens
      before the call, or per device).
    mesh: a :class:`jax.sharding.Mesh`.
    axis_name: the mesh axis over which experts and tokens are split; its
      size D must divide E and T.
    capacity: rows per expert per device, or None for no drop.

  Returns:
    ``[T, n]`` combined outputs, split over ``axis_name``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from sparsejax import moe
    >>> mesh = jax.make_mesh((8,), ("expert",))
    >>> w = jnp.arange(1., 9.)[:, None, None] * jnp.ones((8, 1, 1))
    >>> logits = jnp.log(jax.nn.one_hot(jnp.arange(16) % 8, 8) + 1e-9)
    >>> r = moe.top_k_router(logits, 1)
    >>> @jax.jit
    ... def apply(w, x, r):
    ...   return moe.expert_parallel(lambda p, rows: rows @ p, w, x, r,
    ...                              mesh=mesh, axis_name="expert")
    >>> out = apply(w, jnp.ones((16, 1)), r)
    >>> print(jax.device_get(out)[:8, 0])
    [1. 2. 3. 4. 5. 6. 7. 8.]

  References:
    Lepikhin et al, `GShard: Scaling Giant Models with Conditional Computation
    and Automatic Sharding <https://arxiv.org/abs/2006.16668>`_, 2020.
  """
  if not isinstance(routing, _routing.Routing):
    raise ValueError(f"routing must be a sparsejax.moe.Routing, got "
                     f"{type(routing).__name__}")
  if axis_name not in mesh.axis_names:
    raise ValueError(f"axis_name {axis_name!r} is not an axis of the mesh "
                     f"{mesh.axis_names}")
  devices = mesh.shape[axis_name]
  num_tokens = routing.expert_ids.shape[0]
  num_experts = routing.router_probs.shape[-1]
  x = jnp.asarray(x)
  if x.ndim != 2 or x.shape[0] != num_tokens:
    raise ValueError(f"x must have shape [{num_tokens}, d], got {x.shape}")
  if num_experts % devices or num_tokens % devices:
    raise ValueError(
        f"the size {devices} of mesh axis {axis_name!r} must divide the "
        f"number of experts ({num_experts}) and of tokens ({num_tokens})")
  for path, leaf in jax.tree_util.tree_leaves_with_path(expert_params):
    if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != num_experts:
      raise ValueError(
          f"expert_params leaf {jax.tree_util.keystr(path)} must have the "
          f"{num_experts} experts as its first axis, got {jnp.shape(leaf)}")
  local_experts = num_experts // devices
  if capacity is None:
    capacity = num_tokens // devices

  def local(params, x, routing):
    buffer, dispatch = _dispatch.capacity_dispatch(x, routing, capacity)
    d = buffer.shape[-1]
    # [E, C, d] -> [D, E_local, C, d]: block i goes to device i, and the
    # received blocks stack on axis 0 by source device.
    buffer = buffer.reshape(devices, local_experts, capacity, d)
    received = jax.lax.all_to_all(buffer, axis_name, 0, 0)
    rows = received.transpose(1, 0, 2, 3).reshape(
        local_experts, devices * capacity, d)
    out = expert_fn(params, rows)
    n = out.shape[-1]
    out = out.reshape(local_experts, devices, capacity, n).transpose(
        1, 0, 2, 3)
    returned = jax.lax.all_to_all(out, axis_name, 0, 0)
    return _dispatch.capacity_combine(
        returned.reshape(num_experts, capacity, n), routing, dispatch)

  spec = P(axis_name)
  # Put the inputs where the shard_map expects them; under an Explicit mesh
  # shard_map refuses inputs sharded otherwise.
  placed = jax.device_put((expert_params, x, routing),
                          NamedSharding(mesh, spec))
  return jax.shard_map(
      local, mesh=mesh,
      in_specs=(jax.tree.map(lambda _: spec, expert_params), spec,
                jax.tree.map(lambda _: spec, routing)),
      out_specs=spec)(*placed)
