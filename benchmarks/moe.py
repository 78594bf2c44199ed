# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""MoE expert layer on CPU: dropless sort + gmm against the alternatives.

Four ways to run a top-k Mixture-of-Experts MLP (``gelu(x @ w1[e]) @ w2[e]``
per expert, outputs weighted by the router) on the same tokens and weights:

* ``ideal``: one dense MLP of hidden width ``k * d_ff``. It does exactly the
  useful FLOPs of the MoE layer with no routing; it is the baseline of every
  ratio, measured in the same run.
* ``sort+gmm``: dropless. Token copies sorted by expert (argsort), group sizes
  by bincount, rows gathered, two :func:`pallas_kernels.gmm` calls
  (``implementation=None``: XLA's ``ragged_dot`` on CPU), then un-permuted
  and combined.
* ``capacity``: the same sort, tokens scattered into a capacity-padded
  ``[E, C, d]`` buffer (``C = ceil(cf * T * k / E)``, overflow dropped), two
  batched einsums, gathered back.
* ``all-experts``: every expert on every token (``[T, E, d_ff]`` hidden),
  combined with a dense ``[T, E]`` weight matrix.

The router logits are random with a per-expert bias (``--router-skew``, the
std of the bias) so that the load is uneven, as early in training; the
``dropped`` column gives the share of token copies the capacity path drops.

For each path it prints the best and the median time over interleaved rounds
(the host is shared, so the best is the least perturbed), the ratio of best
times to ``ideal``, the bytes of the main intermediates (the activations a
fused kernel must hold: for ``sort+gmm`` the ``[T*k, d]`` and ``[T*k, d_ff]``
buffers a TPU gmm kernel works in) and XLA's compiled temporary memory on
this CPU (``memory_analysis().temp_size_in_bytes``), which shows what XLA
actually allocates: its CPU ``ragged_dot`` expands the ragged operand to
``[E, T*k, d]``. A path whose compiled temporaries exceed ``--max-temp-gib``
is compiled (for the memory figure) but not run.

Run: ``python benchmarks/moe.py`` (full grid: 4k, 16k, 64k tokens, 8 and 64
experts, d_model 64, d_ff 128, top-2, cf 1.25, float32; about 3-5 minutes on
a shared 2-core host) or ``--quick`` (4k tokens only, under a minute).
"""

import argparse
import functools
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import gmm

PATHS = ("ideal", "sort+gmm", "capacity", "all-experts")


def route(logits, k):
  """Softmax over the top-k logits of each token: ids and weights ``[T, k]``."""
  top, ids = jax.lax.top_k(logits, k)
  return ids, jax.nn.softmax(top, axis=-1)


def ideal(x, logits, w1, w2, dense_w1, dense_w2, *, k, capacity):
  del logits, w1, w2, k, capacity
  return jax.nn.gelu(x @ dense_w1) @ dense_w2


def _sort_by_expert(ids, num_experts):
  flat = ids.reshape(-1)
  order = jnp.argsort(flat, stable=True)
  group_sizes = jnp.bincount(flat, length=num_experts).astype(jnp.int32)
  # Position of each sorted copy in the original order: the inverse of order.
  inverse = jnp.zeros_like(order).at[order].set(
      jnp.arange(order.shape[0], dtype=order.dtype))
  return flat, order, inverse, group_sizes


def _combine(y_sorted, inverse, weights):
  num_tokens, k = weights.shape
  y = y_sorted[inverse].reshape(num_tokens, k, -1)
  return jnp.einsum("tkd,tk->td", y, weights.astype(y.dtype))


def sort_gmm(x, logits, w1, w2, dense_w1, dense_w2, *, k, capacity):
  del dense_w1, dense_w2, capacity
  ids, weights = route(logits, k)
  _, order, inverse, group_sizes = _sort_by_expert(ids, w1.shape[0])
  xs = x[order // k]
  h = jax.nn.gelu(gmm(xs, w1, group_sizes))
  return _combine(gmm(h, w2, group_sizes), inverse, weights)


def capacity_einsum(x, logits, w1, w2, dense_w1, dense_w2, *, k, capacity):
  del dense_w1, dense_w2
  num_experts, d_model = w1.shape[0], w1.shape[1]
  ids, weights = route(logits, k)
  flat, order, inverse, group_sizes = _sort_by_expert(ids, num_experts)
  expert = flat[order]
  starts = jnp.cumsum(group_sizes) - group_sizes
  position = jnp.arange(flat.shape[0]) - starts[expert]
  keep = position < capacity
  slot = jnp.where(keep, expert * capacity + position, num_experts * capacity)
  buf = jnp.zeros((num_experts * capacity, d_model), x.dtype)
  buf = buf.at[slot].set(x[order // k], mode="drop")
  buf = buf.reshape(num_experts, capacity, d_model)
  h = jax.nn.gelu(jnp.einsum("ecd,edf->ecf", buf, w1))
  y = jnp.einsum("ecf,efd->ecd", h, w2).reshape(num_experts * capacity, -1)
  y_sorted = jnp.where(keep[:, None],
                       y[jnp.minimum(slot, num_experts * capacity - 1)], 0)
  return _combine(y_sorted, inverse, weights)


def all_experts(x, logits, w1, w2, dense_w1, dense_w2, *, k, capacity):
  del dense_w1, dense_w2, capacity
  ids, weights = route(logits, k)
  h = jax.nn.gelu(jnp.einsum("td,edf->tef", x, w1))
  y = jnp.einsum("tef,efd->ted", h, w2)
  rows = jnp.arange(x.shape[0])[:, None]
  combine = jnp.zeros(logits.shape, y.dtype).at[rows, ids].add(weights)
  return jnp.einsum("ted,te->td", y, combine)


FUNCTIONS = {"ideal": ideal, "sort+gmm": sort_gmm,
             "capacity": capacity_einsum, "all-experts": all_experts}


def main_intermediate_bytes(path, tokens, experts, capacity, args, itemsize):
  d, f, k = args.d_model, args.d_ff, args.top_k
  rows = {"ideal": tokens, "sort+gmm": tokens * k,
          "capacity": experts * capacity}
  if path == "ideal":
    return tokens * k * f * itemsize
  if path == "all-experts":
    return tokens * experts * (f + d) * itemsize
  return rows[path] * (2 * d + f) * itemsize  # gathered x, hidden, output


def make_inputs(tokens, experts, args, seed=0):
  rng = np.random.default_rng(seed)
  d, f, k = args.d_model, args.d_ff, args.top_k
  dtype = jnp.dtype(args.dtype)
  # A per-expert bias makes the load uneven, as in a router early in
  # training; the capacity path then drops tokens.
  bias = args.router_skew * rng.normal(size=(1, experts))
  arrays = (rng.normal(size=(tokens, d)),
            rng.normal(size=(tokens, experts)) + bias,
            rng.normal(size=(experts, d, f)) / math.sqrt(d),
            rng.normal(size=(experts, f, d)) / math.sqrt(f),
            rng.normal(size=(d, k * f)) / math.sqrt(d),
            rng.normal(size=(k * f, d)) / math.sqrt(k * f))
  return tuple(jnp.asarray(a, dtype) for a in arrays)


def capacity_for(tokens, experts, args):
  return math.ceil(args.capacity_factor * tokens * args.top_k / experts)


def check(args):
  """Dropless equals every-expert-on-every-token; capacity equals it too
  when the capacity holds every token."""
  tokens, experts = 256, 8
  inputs = make_inputs(tokens, experts, args, seed=1)
  want = all_experts(*inputs, k=args.top_k, capacity=0)
  got = sort_gmm(*inputs, k=args.top_k, capacity=0)
  padded = capacity_einsum(*inputs, k=args.top_k, capacity=tokens)
  err = float(jnp.max(jnp.abs(got - want)))
  err_cap = float(jnp.max(jnp.abs(padded - want)))
  tol = 1e-4 if args.dtype == "float32" else 5e-2
  if not (err < tol and err_cap < tol):
    raise AssertionError(f"paths disagree: {err=}, {err_cap=}")
  return max(err, err_cap)


def run(args):
  token_grid = (4096,) if args.quick else (4096, 16384, 65536)
  expert_grid = (8, 64)
  itemsize = jnp.dtype(args.dtype).itemsize
  cap = args.max_temp_gib * 2**30
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{jax.devices()[0].device_kind}; d_model={args.d_model} "
        f"d_ff={args.d_ff} top_k={args.top_k} "
        f"capacity_factor={args.capacity_factor} dtype={args.dtype} "
        f"router_skew={args.router_skew} rounds>={args.rounds}")
  print(f"check on 256 tokens, 8 experts: max |path - all-experts| = "
        f"{check(args):.1e}")
  header = (f"{'tokens':>6} {'E':>3} {'path':<11} {'best ms':>9} "
            f"{'median ms':>10} {'x ideal':>8} {'main MiB':>9} "
            f"{'XLA temp MiB':>12} {'dropped':>7}")
  print(header)  # dropped: token copies over capacity (capacity path only)
  print("-" * len(header))
  for tokens in token_grid:
    for experts in expert_grid:
      capacity = capacity_for(tokens, experts, args)
      inputs = make_inputs(tokens, experts, args)
      ids, _ = route(inputs[1], args.top_k)
      load = np.bincount(np.asarray(ids).ravel(), minlength=experts)
      dropped = np.maximum(load - capacity, 0).sum() / load.sum()
      compiled, temps = {}, {}
      for path in PATHS:
        fn = jax.jit(functools.partial(FUNCTIONS[path], k=args.top_k,
                                       capacity=capacity))
        exe = fn.lower(*inputs).compile()
        temps[path] = exe.memory_analysis().temp_size_in_bytes
        if temps[path] <= cap:
          compiled[path] = exe
          exe(*inputs).block_until_ready()  # warm-up
      times = {path: [] for path in compiled}
      start_config, rounds = time.perf_counter(), 0
      # Interleaved rounds, so that load spikes of the shared host hit every
      # path; small configurations get more rounds within --min-seconds.
      while rounds < args.rounds or (
          time.perf_counter() - start_config < args.min_seconds and
          rounds < 50):
        rounds += 1
        for path, exe in compiled.items():
          start = time.perf_counter()
          exe(*inputs).block_until_ready()
          times[path].append(time.perf_counter() - start)
      base = min(times["ideal"])
      for path in PATHS:
        main = main_intermediate_bytes(path, tokens, experts, capacity, args,
                                       itemsize) / 2**20
        temp = temps[path] / 2**20
        drop = f"{dropped:7.1%}" if path == "capacity" else f"{'0':>7}"
        if path in times:
          best, median = min(times[path]), statistics.median(times[path])
          timing = (f"{best * 1e3:9.2f} {median * 1e3:10.2f} "
                    f"{best / base:8.2f}")
        else:
          timing = f"{'skipped':>9} {'-':>10} {'-':>8}"
        print(f"{tokens:>6} {experts:>3} {path:<11} {timing} {main:9.1f} "
              f"{temp:12.1f} {drop}")
      del compiled, inputs
  print(f"(skipped: compiled temporaries above --max-temp-gib="
        f"{args.max_temp_gib}; 'main' = bytes of the main activations: "
        "ideal [T, k*d_ff]; sort+gmm and capacity the gathered input, hidden "
        "and output rows; all-experts [T, E, d_ff + d_model])")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="4k tokens only")
  parser.add_argument("--d-model", type=int, default=64)
  parser.add_argument("--d-ff", type=int, default=128)
  parser.add_argument("--top-k", type=int, default=2)
  parser.add_argument("--capacity-factor", type=float, default=1.25)
  parser.add_argument("--dtype", default="float32",
                      choices=("float32", "bfloat16"))
  parser.add_argument("--rounds", type=int, default=5,
                      help="timed rounds per path (best and median shown)")
  parser.add_argument("--min-seconds", type=float, default=3.0,
                      help="keep adding rounds (up to 50) for this long")
  parser.add_argument("--router-skew", type=float, default=0.25,
                      help="std of a per-expert router bias (load imbalance)")
  parser.add_argument("--max-temp-gib", type=float, default=1.5,
                      help="do not run a path needing more XLA temporaries")
  return parser.parse_args(argv)


if __name__ == "__main__":
  run(parse_args())
