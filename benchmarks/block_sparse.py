# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse matmul: XLA path against dense ``x @ W``, plus a roofline.

Usage::

  python benchmarks/block_sparse.py                  # the CPU table
  python benchmarks/block_sparse.py --roofline       # H100 / TPU v5e table
  python benchmarks/block_sparse.py --variants       # alternative layouts

For each size ``M = N = K``, block ``b x b`` and block density ``d`` the mask
keeps exactly ``round(d * (K/b) * (N/b))`` blocks at random positions (not
column-balanced, as block magnitude pruning leaves them). Dense ``x @ W`` and
the block-sparse product are jitted and timed interleaved, round-robin, in the
same run (``block_until_ready``); the table gives the best-of-rounds time
ratio to dense (the least perturbed on a shared host) and the median ratio,
beside the ideal, the density.

``--variants`` also times alternative XLA formulations (ratios to dense):
"per-block": one ``fori_loop`` step per stored block, ``[M, b] @ [b, b]``
added into its output column block in place (the library path before the
pieces); "col-acc": per output block column, a loop over its blocks summing
into a ``[M, b]`` accumulator written once; "pieces<=2", "pieces<=4": the
library path with pieces of at most 2 or 4 blocks; "gather+bmm": gather the
``x`` column blocks of every slot, one batched matmul, a sorted segment-sum
into the output columns (materializes ``capacity x M x b`` twice);
"col-ELL": per output block column, one matmul contracting over its blocks,
padded to the largest block count of any column (fast for column-balanced
masks, but its width depends on the topology, so it is not jit-stable); "to
dense": scatter the blocks into a dense matrix, then one dense matmul. The
library path (``pallas_kernels/block_sparse/reference.py``) cuts each output
block column's stored blocks into pieces of ``min(8, 256 // b)`` blocks (and
smaller powers of two for the remainder), one matmul per piece added into the
output column block in place.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax

from pallas_kernels import BlockSparseMatrix
from pallas_kernels import block_sparse_matmul
from pallas_kernels.block_sparse import reference

# Hardware limits (research/kernels.md, section 6).
DEVICES = {
    "H100 SXM5": dict(peak=989.4e12, bw=3.35e12),
    "TPU v5e": dict(peak=197e12, bw=819e9),
}


def roofline_ratio(dev, m, k, n, b, d, *, row_tile, itemsize=2):
  """Roofline time of the forward kernel over that of a peak dense matmul.

  With ``row_tile`` set, each stored block is visited once per row tile and a
  visit reads an ``x`` tile (``row_tile x b``) and the block (``b x b``) from
  HBM: no cache reuse, the pessimistic bound for the kernels as written. With
  ``row_tile=None``, ``x``, the stored blocks and ``y`` each cross HBM once
  (perfect on-chip reuse), the optimistic bound. Each output tile is written
  once; dense is taken at peak (compute-bound).

  Returns:
    ``(ratio to dense, arithmetic intensity in FLOP/B)``.
  """
  nnz = round(d * (k // b) * (n // b))
  flops = 2.0 * m * b * b * nnz
  if row_tile is None:
    bytes_ = itemsize * (m * k + nnz * b * b + m * n)
  else:
    visits = nnz * -(-m // row_tile)
    bytes_ = itemsize * (visits * (row_tile * b + b * b) + m * n)
  sparse = max(flops / dev["peak"], bytes_ / dev["bw"])
  dense = 2.0 * m * k * n / dev["peak"]
  return sparse / dense, flops / bytes_


def print_roofline(m=8192, k=8192, n=8192):
  print(f"Roofline, forward, bf16, M = {m}, K = N = {k}: kernel time / dense "
        f"time at peak (ideal = density)")
  print("| device | HBM traffic model | block | FLOP/B at 10 % | 10 % | 25 % "
        "| 50 % |")
  print("|---|---|---:|---:|---:|---:|---:|")
  kernels = {"H100 SXM5": ("pallas_gpu", 128), "TPU v5e": ("pallas_tpu", 512)}
  for name, dev in DEVICES.items():
    kname, tile = kernels[name]
    for label, rt in ((f"{kname} as written: x tile ({tile} rows) and block "
                       f"re-read per visit", tile),
                      ("x, blocks, y cross HBM once", None)):
      for b in (128, 256):
        cells, ais = [], []
        for d in (0.10, 0.25, 0.50):
          r, ai = roofline_ratio(dev, m, k, n, b, d, row_tile=rt)
          cells.append(f"{r:.2f}")
          ais.append(ai)
        print(f"| {name} | {label} | {b} | {ais[0]:.0f} | "
              + " | ".join(cells) + " |")


def _mask(rng, kb, nb, d):
  count = max(1, round(d * kb * nb))
  mask = np.zeros(kb * nb, bool)
  mask[rng.choice(kb * nb, count, replace=False)] = True
  return mask.reshape(kb, nb)


def _time_interleaved(fns, rounds):
  """Wall-clock and process CPU seconds of each call, round-robin."""
  for f in fns.values():
    jax.block_until_ready(f())
  wall = {k: [] for k in fns}
  cpu = {k: [] for k in fns}
  keys = list(fns)
  for r in range(rounds):
    # Rotate the order so that no variant always runs right after dense.
    for k in keys[r % len(keys):] + keys[:r % len(keys)]:
      t, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(fns[k]())
      wall[k].append(time.perf_counter() - t)
      cpu[k].append(time.process_time() - c)
  return wall, cpu


def _ell_variant(w: BlockSparseMatrix):
  """Column-ELL padded to the widest column (host-side, not jit-stable)."""
  kb, nb = w.block_grid
  bk, bn = w.block_shape
  mask = np.asarray(w.block_mask())
  width = max(1, int(mask.sum(0).max()))
  krow = np.zeros((nb, width), np.int32)
  slot = np.zeros((nb, width), np.int32)
  live = np.zeros((nb, width), bool)
  rows, cols = np.asarray(w.row_ids), np.asarray(w.col_ids)
  fill = np.zeros(nb, int)
  for z in range(int(w.nnz)):
    j = cols[z]
    krow[j, fill[j]], slot[j, fill[j]], live[j, fill[j]] = rows[z], z, True
    fill[j] += 1
  data = jnp.where(jnp.asarray(live)[..., None, None], w.data[slot], 0)
  krow = jnp.asarray(krow)

  @jax.jit
  def f(x, data, krow):
    m = x.shape[0]
    xt = x.reshape(m, kb, bk).transpose(1, 0, 2)
    y = jnp.einsum("jtmk,jtkn->jmn", xt[krow], data)
    return y.transpose(1, 0, 2).reshape(m, nb * bn)

  return lambda x: f(x, data, krow)


def _per_block_variant(w: BlockSparseMatrix):
  """One loop step per stored block, accumulating into ``[M, N]`` in place."""
  bk, bn = w.block_shape

  @jax.jit
  def f(x, w):
    def body(z, out):
      xb = lax.dynamic_slice_in_dim(x, w.row_ids[z] * bk, bk, axis=1)
      col = w.col_ids[z] * bn
      ob = lax.dynamic_slice_in_dim(out, col, bn, axis=1)
      return lax.dynamic_update_slice_in_dim(out, ob + xb @ w.data[z], col,
                                             axis=1)

    return lax.fori_loop(0, w.nnz, body,
                         jnp.zeros((x.shape[0], w.shape[1]), x.dtype))

  return lambda x: f(x, w)


def _col_acc_variant(w: BlockSparseMatrix):
  """Per output block column, a ``[M, bn]`` accumulator written once."""
  bk, bn = w.block_shape
  nb = w.block_grid[1]

  @jax.jit
  def f(x, w):
    m, off = x.shape[0], w.col_offsets

    def column(j, out):
      def inner(z, acc):
        xb = lax.dynamic_slice_in_dim(x, w.row_ids[z] * bk, bk, axis=1)
        return acc + xb @ w.data[z]

      acc = lax.fori_loop(off[j], off[j + 1], inner,
                          jnp.zeros((m, bn), x.dtype))
      return lax.dynamic_update_slice_in_dim(out, acc, j * bn, axis=1)

    return lax.fori_loop(0, nb, column,
                         jnp.zeros((m, w.shape[1]), x.dtype))

  return lambda x: f(x, w)


def _gather_bmm_variant(w: BlockSparseMatrix):
  kb, nb = w.block_grid
  bk, bn = w.block_shape

  @jax.jit
  def f(x, w):
    m = x.shape[0]
    data = jnp.where(w.valid()[:, None, None], w.data, 0)
    xt = x.reshape(m, kb, bk).transpose(1, 0, 2)
    prods = jnp.einsum("zmk,zkn->zmn", xt[w.row_ids], data)
    y = jax.ops.segment_sum(prods, w.col_ids, num_segments=nb,
                            indices_are_sorted=True)
    return y.transpose(1, 0, 2).reshape(m, nb * bn)

  return lambda x: f(x, w)


def run_table(sizes, blocks, densities, rounds, seed, variants):
  rng = np.random.default_rng(seed)
  print(f"XLA block-sparse x @ W vs dense x @ W, float32, "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} at start; {rounds} interleaved "
        f"rounds: ratio of best wall times, of median wall times, and of best "
        f"process CPU times (less sensitive to other jobs on the host)")
  head = ("| M=N=K | block | density | dense ms | sparse ms | ratio | "
          "median ratio | CPU-time ratio | ideal |")
  if variants:
    head += (" per-block | col-acc | pieces<=2 | pieces<=4 | gather+bmm |"
             " col-ELL | to dense |")
  print(head)
  print("|" + "---:|" * (head.count("|") - 1))
  dense_fn = jax.jit(lambda x, w: x @ w)
  sparse_fn = jax.jit(lambda x, w: block_sparse_matmul(
      x, w, implementation="xla"))
  for n in sizes:
    x = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    for b in blocks:
      for d in densities:
        mask = _mask(rng, n // b, n // b, d)
        wm = BlockSparseMatrix.from_dense(w, (b, b), mask)
        wd = wm.to_dense()
        fns = {"dense": lambda: dense_fn(x, wd),
               "sparse": lambda: sparse_fn(x, wm)}
        if variants:
          gather = _gather_bmm_variant(wm)
          ell = _ell_variant(wm)
          todense = jax.jit(lambda x, w: x @ w.to_dense())
          per_block = _per_block_variant(wm)
          col_acc = _col_acc_variant(wm)
          pieces2 = jax.jit(lambda x, w: reference.matmul(x, w, _max_piece=2))
          pieces4 = jax.jit(lambda x, w: reference.matmul(x, w, _max_piece=4))
          fns.update(per_block=lambda: per_block(x), col_acc=lambda: col_acc(x),
                     pieces2=lambda: pieces2(x, wm),
                     pieces4=lambda: pieces4(x, wm),
                     gather=lambda: gather(x), ell=lambda: ell(x),
                     todense=lambda: todense(x, wm))
        ref = np.asarray(fns["dense"]())
        for k, f in fns.items():
          err = np.max(np.abs(np.asarray(f()) - ref)) / np.max(np.abs(ref))
          assert err < 1e-4, (k, err)
        t, c = _time_interleaved(fns, rounds)
        best = {k: min(v) for k, v in t.items()}
        med = {k: statistics.median(v) for k, v in t.items()}
        cbest = {k: min(v) for k, v in c.items()}
        dens = mask.mean()
        row = (f"| {n} | {b} | {100 * dens:.1f} % | {1e3 * best['dense']:.2f} "
               f"| {1e3 * best['sparse']:.2f} "
               f"| {best['sparse'] / best['dense']:.3f} "
               f"| {med['sparse'] / med['dense']:.3f} "
               f"| {cbest['sparse'] / cbest['dense']:.3f} | {dens:.3f} |")
        if variants:
          row += "".join(f" {best[k] / best['dense']:.3f} |"
                         for k in ("per_block", "col_acc", "pieces2", "pieces4",
                                   "gather", "ell", "todense"))
        print(row, flush=True)
  print(f"load average {os.getloadavg()[0]:.1f} at the end")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
  p.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 128])
  p.add_argument("--densities", type=float, nargs="+",
                 default=[0.05, 0.10, 0.25, 0.50])
  p.add_argument("--rounds", type=int, default=20)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--variants", action="store_true",
                 help="also time alternative XLA formulations")
  p.add_argument("--roofline", action="store_true",
                 help="print the H100 / TPU v5e roofline table and exit")
  args = p.parse_args()
  if args.roofline:
    print_roofline()
    return
  run_table(args.sizes, args.blocks, args.densities, args.rounds, args.seed,
            args.variants)


if __name__ == "__main__":
  main()
