# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul against dense `x @ W` on CPU.

`pallas_kernels.sparse_input_matmul(x, W)` multiplies only by the rows of
`W` whose column of `x` is nonzero somewhere in the batch. This script times
it against the dense `x @ W` (the baseline of every ratio, measured in the
same run) for `W` of shape `(d, d)`, `d = 4096` by default, float32, at
batch 1 and 16 and activation sparsity 50 %, 90 % and 95 %.

At batch 16 two activation patterns are timed:

* `shared`: every row has the same active columns (the best case, e.g.
  neurons that are active for every token of a prompt);
* `independent`: every row draws its own active columns, so the union over
  the batch is `1 - s^16` of the columns (81 % at s = 0.9).

`ideal` is the fraction of the rows of `W` that must be read (the union of
the active columns over the batch): with the op memory-bound, as a
batch-1 or batch-16 matmul is, that is the best ratio any row-skipping
method can reach. Timings are interleaved round-robin (dense, sparse, dense,
...). The host is shared, so the best of the rounds is the least perturbed
figure: `ratio` is the best sparse time over the best dense time of the
same batch size (dense `x @ W` does not depend on the zeros of `x`, so every
case of a batch size shares one dense baseline, the best over all its
rounds). `paired` is the median over rounds of sparse / dense measured
back to back, a cross-check that is less sensitive to one lucky round.

Run: `python benchmarks/activation_sparsity.py` (about a minute) or with
`--rounds 10 --d 2048` for a quicker look.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import sparse_input_matmul


def _activations(key, batch, d, sparsity, pattern):
  k1, k2 = jax.random.split(key)
  x = jax.random.normal(k1, (batch, d), jnp.float32)
  n_active = int(round((1 - sparsity) * d))
  rows = 1 if pattern == "shared" else batch
  # Exactly n_active random columns per row (or one pattern for all rows).
  scores = jax.random.uniform(k2, (rows, d))
  kth = jax.lax.top_k(scores, n_active)[0][:, -1:]
  return x * (scores >= kth)


def _time(fn, *args):
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--d", type=int, default=4096)
  parser.add_argument("--rounds", type=int, default=40)
  parser.add_argument("--block-rows", type=int, default=None,
                      help="rows of W per loop step (default: the op's "
                      "own choice for the batch size)")
  args = parser.parse_args()

  d = args.d
  w = jax.random.normal(jax.random.key(0), (d, d), jnp.float32) / np.sqrt(d)
  dense = jax.jit(lambda x, w: x @ w)
  sparse = jax.jit(
      lambda x, w: sparse_input_matmul(x, w, block_rows=args.block_rows))

  print(f"backend {jax.default_backend()}, {jax.device_count()} devices, "
        f"W {d}x{d} float32, block_rows {args.block_rows or 'auto'}, "
        f"{args.rounds} interleaved rounds")
  header = (f"{'batch':>5} {'pattern':>11} {'sparsity':>8} {'dense ms':>9} "
            f"{'sparse ms':>9} {'ratio':>6} {'paired':>7} {'ideal':>6}")
  print(header)
  print("-" * len(header))
  cases = [(1, "shared", s) for s in (0.5, 0.9, 0.95)]
  cases += [(16, p, s) for p in ("shared", "independent")
            for s in (0.5, 0.9, 0.95)]
  rows = []
  for i, (batch, pattern, s) in enumerate(cases):
    x = _activations(jax.random.key(i + 1), batch, d, s, pattern)
    err = float(jnp.max(jnp.abs(sparse(x, w) - dense(x, w))))
    scale = float(jnp.max(jnp.abs(dense(x, w))))
    if not err <= 1e-4 * max(scale, 1.0):
      raise AssertionError(f"sparse result differs from dense by {err}")
    ideal = float(jnp.mean(jnp.any(x != 0, axis=0)))
    t_dense, t_sparse = [], []
    for _ in range(args.rounds):
      t_dense.append(_time(dense, x, w))
      t_sparse.append(_time(sparse, x, w))
    paired = statistics.median(a / b for a, b in zip(t_sparse, t_dense))
    rows.append((batch, pattern, s, t_dense, t_sparse, paired, ideal))
  best_dense = {b: min(min(r[3]) for r in rows if r[0] == b)
                for b in (1, 16)}
  for batch, pattern, s, t_dense, t_sparse, paired, ideal in rows:
    base = best_dense[batch]
    label = "-" if batch == 1 else pattern
    print(f"{batch:>5} {label:>11} {s:>8.0%} {base * 1e3:>9.3f} "
          f"{min(t_sparse) * 1e3:>9.3f} {min(t_sparse) / base:>6.2f} "
          f"{paired:>7.2f} {ideal:>6.2f}")
  print("dense ms = best dense time of the batch size; ratio = best sparse / "
        "best dense; paired = median of back-to-back sparse / dense; ideal = "
        "fraction of W's rows that must be read")


if __name__ == "__main__":
  main()
