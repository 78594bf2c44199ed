# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul in plain XLA: touch only the active rows of `W`.

`y = x @ W` needs row `j` of `W` only where column `j` of `x` has a nonzero.
The active rows (nonzero in any row of the batch) are listed once (a cumsum
and a scatter), and a loop with a *dynamic* trip count walks them,
`block_rows` rows per step. The work is bounded by the number of active rows
and there is no static capacity that could overflow.

Two loop bodies, chosen by the (static) batch size:

* **Row sum** (batch <= `ROW_SUM_MAX_BATCH`): each step adds
  `x[:, j] * W[j, :]` for `block_rows` rows `j`, written as an unrolled sum
  of `dynamic_slice`s. XLA fuses the whole step into one elementwise loop
  that reads the rows of `W` straight from memory into the accumulator:
  nothing is gathered into a temporary buffer.
* **Blocked dot** (larger batches): each step gathers `block_rows` rows of
  `W` and the matching columns of `x` and calls one dot, which amortises the
  gather over the batch.

Measured on the 2-core CPU (jax 0.10.2, W 4096x4096 float32, batch 1, 90 %
sparsity, each call timed right after a dense `x @ W` so that the rows of
`W` come from DRAM as they would in a network; best of 20 rounds):

* the row sum with 8 rows per step: 0.40-0.43 ms, about 0.22x the dense
  time (1.8-1.9 ms in those runs). 4, 16 and 32 rows per step were within
  noise of 8;
* the blocked dot (the previous formulation) with 32-128 rows per step:
  0.64-0.77 ms (0.29-0.41x). Each step's gather writes its rows to a buffer
  before the dot reads them again, and the dot of a 1-row batch is a small
  single-threaded gemv;
* one gather of all active rows and one dot, with static capacities chosen
  by `lax.switch` on the active count: 0.57-0.67 ms for the gather and dot
  alone even with the indices given. Inside `lax.switch` it was far worse
  (3.7 ms): XLA:CPU allocates the temporary buffer for the largest branch
  (all of `W`) on every call and pays ~2000 page faults for it. A capacity
  of a few hundred rows already costs ~150 page faults per call once the
  dense call has run in between;
* the row sum as a `reduce` over a gathered block (`sum(x_j * W[idx])`):
  0.62-0.99 ms; XLA's column reduction is slower than the unrolled sum;
* splitting the row-sum loop into two independent loops (over halves of the
  columns or of the active rows), hoping XLA runs them on both cores: no
  gain;
* the listing itself: 0.06 ms over an empty jitted call (0.12 ms vs
  0.06 ms cold). `jnp.nonzero`, `lax.associative_scan`, a two-level cumsum,
  `searchsorted` and `lax.sort` listings were the same or slower; `top_k`
  3.5x slower.

Both loops lose to the dense product once most rows are active: at batch
1 the row sum broke even with dense at 25 % sparsity (1.00x; 1.40x with
every row active), at batch 16 the blocked dot at 70 % active rows (0.99x;
1.17-1.35x with every row active). `forward` therefore switches the blocked
dot to the dense product (`lax.cond` on the active count) above
`DENSE_ABOVE` of the rows.

**Both cores for the row sum** (added for batch-1 decoding,
`benchmarks/decode.py`). The figures above come from a row sum whose
accumulator was `[b, n]`: XLA:CPU splits a fusion over its threads by the
outer dimension of its output, 1 at batch 1, so the loop ran on one core
and read about 14 GB/s where the two-thread dense gemv read 25-30 GB/s.
The accumulator is now `[b, P, n / P]` (:func:`row_sum_split`; a free
reshape of the rows of `W`), which both threads share. Measured on the
Llama-shaped matrices of the decode benchmark (16 float32 matrices of
2048x6144, 2048x2048, 2048x11264 and 5632x2048 in one jitted function, 50 %
of rows active, median of 10 interleaved rounds): 1.71x dense with 16 rows
per step and 1.86x with 32 (1.31x, for one 2048x11264 matrix, with the old
`[1, n]` accumulator); with 75 % active 1.12x and 1.21x; 90 % 0.98x and
1.01x; every row active 0.93x and 0.97x. Those runs shared the CPU with
other jobs (the dense product got about one core); on a quiet CPU the
whole decode step of `benchmarks/decode.py` gained less: 1.38x at 50 %
and 1.16x at 40 % (1.79x and 1.52x with the CPU shared), because the
dense gemv then uses both cores fully and the loop's small parallel steps
less well. The `lax.cond` to the dense
product cost about 0.3 ms per call in that setting (1.38x instead of
1.71x at 50 %), far more than the 3 % it saves with every row active, so
the row sum (batch <= `ROW_SUM_MAX_BATCH`) no longer switches to dense; a
0-or-1-trip loop in its place was worse still (0.60x).

**Row groups.** One row-sum step that sums `k` rows reads `k` rows of `W`
side by side, element by element: `k` memory streams per thread. More rows
per step amortise the step's fixed cost, but past about 32 streams the
step got slower, not faster (on the 2048x11264 matrix at 50 %, 64 rows
per step ran at 0.96x dense against 1.68x for 32). The step therefore
splits its rows into `ROW_GROUPS` independent groups, each over its own
contiguous share of the active rows and with its own accumulator (`[b,
groups, P, n / P]`, summed once at the end). Each thread then streams the
rows of one group at a time. Whole decode step of `benchmarks/decode.py`
(Llama-shaped, float32, quiet 2-core CPU, median of 10 interleaved
repeats): 1 group of 32 rows 1.33-1.38x dense at 50 % and 1.14-1.16x at
40 %; 2 groups of 16: 1.40x / 1.18x; 8 groups of 8: 1.45x / 1.22x; **4
groups of 16 (64 rows per step, the default): 1.51-1.57x / 1.29-1.34x**;
4 groups of 32: 1.36x / 1.17x.

**bfloat16 weights.** XLA:CPU has no bfloat16 `dynamic-slice` or `gather`:
its float normalisation converts the whole operand to float32 first, and
that conversion, loop-invariant, is hoisted before the loop, so every call
wrote and then read a float32 copy of all of `W` (a whole decode step at
95 % sparsity took 16 ms against 3 ms in float32). The loops slice the
16-bit words instead (:func:`_rows_view`) and widen only the rows they read
(:func:`_widen`, exact).

At batch 4 and 90 % the row sum still wins (0.32x against 0.43x for the
blocked dot with a shared pattern, 0.68x against 0.78x with independent
ones). At batch 16 the two are level when the pattern is shared (0.30x) and
the blocked dot with 128 rows per step wins once the union of active rows
is large (1.17x against 1.75x with every row active), because the row sum
costs one multiply-add per batch row per element of `W` read.

`benchmarks/activation_sparsity.py` (40 interleaved rounds, best sparse over
best dense) gave 0.20x, 0.25x and 0.22x at batch 1 and 90 % sparsity in
three runs of the final code (0.40-0.50x before), 0.12-0.25x at 95 %, and
1.04x for batch 16 with independent 90 %-sparse rows (the dense branch, in
both runs after it was added; 1.20-1.33x before). Its batch-16 rows at
50 % vary from 0.74x to 1.30x between runs: the blocked dot is
compute-bound there and close to break-even with dense.
"""

import jax.numpy as jnp
from jax import lax

__all__ = ("DENSE_ABOVE", "ROW_SUM_MAX_BATCH", "active_rows",
           "default_block_rows", "forward", "row_sum_split", "weight_grad")

# Largest batch that uses the row-sum body (see the module docstring).
ROW_SUM_MAX_BATCH = 4
# Fraction of active rows above which the dense `x @ w` is used: both loop
# bodies broke even with it at 70-75 % active rows.
DENSE_ABOVE = 0.7
# Independent row groups (and accumulators) per row-sum step: see "Row
# groups" in the module docstring.
ROW_GROUPS = 4


def default_block_rows(batch):
  """Rows of `W` per loop step when the caller gives none."""
  return 64 if batch <= ROW_SUM_MAX_BATCH else 128


def _acc_dtype(a, b):
  # Accumulate in at least float32; the blocks are upcast before the dot
  # because XLA:CPU has no bf16 x bf16 -> f32 dot.
  return jnp.promote_types(jnp.result_type(a, b), jnp.float32)


def _gather_rows(w, idx):
  # The indices are sorted and in bounds by construction (listing + fill 0).
  dims = lax.GatherDimensionNumbers(
      offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
  return lax.gather(w, idx[:, None], dims, slice_sizes=(1, w.shape[1]),
                    indices_are_sorted=True,
                    mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def active_rows(x, block_rows):
  """Indices of the columns of `x` [b, d] that are nonzero in any row.

  Returns:
    `(idx, count)`: `idx` int32 of length `d` rounded up to a multiple of
    `block_rows`, the active indices first in increasing order and then
    zeros; `count` the number of active indices.
  """
  d = x.shape[1]
  active = jnp.any(x != 0, axis=0)
  size = d + (-d) % block_rows
  # jnp.nonzero(size=...) by hand: the j-th active column goes to slot j,
  # inactive ones are dropped (a third cheaper than jnp.nonzero on CPU).
  slot = jnp.where(active, jnp.cumsum(active, dtype=jnp.int32) - 1, size)
  idx = jnp.zeros(size, jnp.int32).at[slot].set(
      jnp.arange(d, dtype=jnp.int32), mode="drop", unique_indices=True)
  return idx, jnp.sum(active, dtype=jnp.int32)


def _n_steps(count, block_rows):
  return (count + block_rows - 1) // block_rows


def _block(x, idx, count, i, block_rows):
  start = i * block_rows
  ii = lax.dynamic_slice(idx, (start,), (block_rows,))
  valid = start + jnp.arange(block_rows) < count
  xg = jnp.where(valid, jnp.take(x, ii, axis=1), jnp.zeros((), x.dtype))
  return ii, xg


def row_sum_split(n):
  """Pieces the row-sum accumulator's `n` output columns are viewed in.

  The row-sum step is one elementwise fusion whose output is the
  accumulator. XLA:CPU spreads a large fusion over its threads by the
  outer dimension of that output, which for a batch-1 `[1, n]` accumulator
  is 1: the whole loop ran on one core, at about half the memory bandwidth
  of the (two-thread) dense product. Viewing the columns as `[P, n / P]`
  (a free reshape of `W`'s rows) gives the fusion an outer dimension that
  the threads can share.
  """
  for p in (8, 4, 2):
    if n % p == 0 and n // p >= 128:
      return p
  return 1


def _rows_view(w):
  """`w` as the row sum slices it: bfloat16 as its raw 16-bit words.

  XLA:CPU has no bfloat16 dynamic-slice: its float normalisation converts
  the *whole* operand to float32 before slicing, and the conversion, being
  loop-invariant, is then hoisted out of every loop around it: each call
  wrote (and the row sum then read) a float32 copy of all of `w`. Slicing
  the 16-bit words and widening only the slice (:func:`_widen`) keeps the
  reads at the active bfloat16 rows.
  """
  if w.dtype == jnp.bfloat16:
    return lax.bitcast_convert_type(w, jnp.uint16)
  return w


def _widen(rows, dtype):
  """Rows from :func:`_rows_view` in `dtype` (bfloat16 words: exact)."""
  if rows.dtype == jnp.uint16:
    bits = rows.astype(jnp.uint32) << 16
    return lax.bitcast_convert_type(bits, jnp.float32).astype(dtype)
  return rows.astype(dtype)


def _row_sum_forward(x, w, idx, count, block_rows, acc_dtype):
  b, n = x.shape[0], w.shape[1]
  p = row_sum_split(n)
  w3 = _rows_view(w).reshape(w.shape[0], p, n // p)
  xt = x.T  # [d, b]: one active column of x is one contiguous row here.
  groups = ROW_GROUPS if block_rows % ROW_GROUPS == 0 else 1
  g = block_rows // groups
  per = (count + groups - 1) // groups  # active rows per group
  last = idx.shape[0] - 1

  def body(i, acc):
    parts = []
    for h in range(groups):
      step = None
      for u in range(g):
        k = i * g + u
        q = h * per + k
        j = idx[jnp.minimum(q, last)]
        # Slots past a group's share or past count add a zero weight.
        xj = jnp.where((k < per) & (q < count),
                       lax.dynamic_slice(xt, (j, 0), (1, b)),
                       jnp.zeros((), x.dtype))
        wj = lax.dynamic_slice(w3, (j, 0, 0), (1, p, n // p))
        term = (xj.reshape(b, 1, 1, 1).astype(acc_dtype)
                * _widen(wj, acc_dtype)[None])  # [b, 1, p, n / p]
        step = term if step is None else step + term
      parts.append(step)
    return acc + jnp.concatenate(parts, 1)

  acc = lax.fori_loop(0, _n_steps(per, g), body,
                      jnp.zeros((b, groups, p, n // p), acc_dtype))
  return acc.sum(1).reshape(b, n)


def _dot_forward(x, w, idx, count, block_rows, acc_dtype):
  rows = _rows_view(w)

  def body(i, acc):
    ii, xg = _block(x, idx, count, i, block_rows)
    return acc + jnp.dot(xg.astype(acc_dtype),
                         _widen(_gather_rows(rows, ii), acc_dtype))

  return lax.fori_loop(0, _n_steps(count, block_rows), body,
                       jnp.zeros((x.shape[0], w.shape[1]), acc_dtype))


def forward(x, w, idx, count, *, block_rows, out_dtype):
  """`x @ w` for `x` [b, d] from the rows `idx[:count]` of `w` [d, n].

  `idx` must have a length that is a multiple of `block_rows` (as
  :func:`active_rows` returns it). Batches up to `ROW_SUM_MAX_BATCH` rows
  use the row-sum body at every density (it is within a few percent of the
  dense product with every row active, and the `lax.cond` that would switch
  to dense cost more than that at every density); larger batches use the
  blocked dot, and above `DENSE_ABOVE * d` active rows the plain dense
  product, which is cheaper there.
  """
  acc_dtype = _acc_dtype(x, w)
  if x.shape[0] <= ROW_SUM_MAX_BATCH:
    y = _row_sum_forward(x, w, idx, count, block_rows, acc_dtype)
    return y.astype(out_dtype)

  def sparse():
    return _dot_forward(x, w, idx, count, block_rows, acc_dtype)

  def dense():
    return jnp.dot(x, w, preferred_element_type=acc_dtype)

  y = lax.cond(count > int(DENSE_ABOVE * x.shape[1]), dense, sparse)
  return y.astype(out_dtype)


def weight_grad(x, g, idx, count, *, block_rows, d, out_dtype):
  """`x.T @ g` [d, n], computed only at the rows `idx[:count]`."""
  acc_dtype = _acc_dtype(x, g)

  def body(i, dw):
    ii, xg = _block(x, idx, count, i, block_rows)
    rows = jnp.dot(xg.T.astype(acc_dtype), g.astype(acc_dtype))
    # Padding slots carry zero columns of x and index 0: they add 0.
    return dw.at[ii].add(rows, indices_are_sorted=True)

  dw = jnp.zeros((d, g.shape[1]), acc_dtype)
  return lax.fori_loop(0, _n_steps(count, block_rows), body,
                       dw).astype(out_dtype)
