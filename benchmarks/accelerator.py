# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Every kernel and training step on the accelerator JAX finds, in one run.

Written for the first few minutes of a lent GPU or TPU: it installs nothing,
runs in a few minutes, guards every part (a failure prints its error and the
rest still runs), prints one table and writes everything to one JSON file.
On the machine, from the repository root::

  pip install -U "jax[cuda12]"     # GPU; on a TPU VM: pip install -U "jax[tpu]"
  python benchmarks/accelerator.py --out out/accelerator.json

Parts (``--parts``, default all):

- ``checks``: each kernel against its XLA / dense reference on this backend,
  forward and backward, float32 and bfloat16, at a few shapes including
  ragged rows and empty groups / block columns: ``block_sparse_matmul``,
  ``gmm`` / ``tgmm`` and ``sparse_input_matmul``, for every implementation
  that applies to the backend (``"xla"`` plus ``"pallas_gpu"`` on GPU or
  ``"pallas_tpu"`` on TPU; an implementation the library refuses with
  ``ValueError`` is listed as not offered).
- ``kernels``: each kernel timed against its dense baseline in the same
  process (variants in a new random order every repeat; ratio = median over
  repeats of kernel / baseline) at the shapes of the roofline tables in the
  docs, bf16: block-sparse 4096^3 at 5-50 % density with 128x128 blocks
  (baseline ``x @ W``); ``gmm`` and ``tgmm`` at 8 and 64 experts (baselines
  ``jax.lax.ragged_dot`` and one dense matmul of the same FLOPs); the
  sparse-input GEMV at d = 4096 and 8192, batch 1 (baseline ``x @ W``).
  Achieved TFLOP/s or GB/s are printed beside the device's peak (a small
  table of datasheet figures; an unknown device prints n/a).
- ``train``: a transformer-FFN training step (stacked residual FFN blocks,
  Adam) dense, with ``sj.rigl`` (masked, element and block granularity) and,
  when the library offers it (``sparsejax.nn.block_sparse_apply``),
  block-granular RigL through the block-sparse kernel; ratios to dense.
- ``decode``: a Llama-shaped stack of batch-1 GEMVs (d = 4096, ffn 11008,
  4 layers; q, k, v, o, gate, up, down per layer) dense against 50 %
  activation-sparse inputs through ``sparse_input_matmul``; ratio to dense.

``--dry-run`` uses tiny shapes and times nothing (each step runs once); on a
CPU backend it is the test suite's check (tests/test_accelerator_dryrun.py)
that the script still runs. The exit status is 1 when a check fails or a part
raises.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

# Datasheet peaks: dense bf16 FLOP/s (no 2:4 sparsity) and HBM bytes/s. H100,
# TPU v5e and v5p as in research/kernels.md, section 6; the others from the
# vendors' datasheets (H200 SXM, A100 SXM 80 GB, B200, TPU v4, TPU v6e).
PEAKS = {
    "H200": dict(name="NVIDIA H200 SXM", flops=989.4e12, bw=4.8e12),
    "H100": dict(name="NVIDIA H100 SXM5", flops=989.4e12, bw=3.35e12),
    "A100": dict(name="NVIDIA A100 SXM 80GB", flops=312e12, bw=2.039e12),
    "B200": dict(name="NVIDIA B200", flops=2250e12, bw=8.0e12),
    "TPU v5 lite": dict(name="TPU v5e", flops=197e12, bw=819e9),
    "TPU v5e": dict(name="TPU v5e", flops=197e12, bw=819e9),
    "TPU v5p": dict(name="TPU v5p", flops=459e12, bw=2765e9),
    "TPU v6 lite": dict(name="TPU v6e", flops=918e12, bw=1640e9),
    "TPU v6e": dict(name="TPU v6e", flops=918e12, bw=1640e9),
    "TPU v4": dict(name="TPU v4", flops=275e12, bw=1228e9),
}

PALLAS = {"gpu": "pallas_gpu", "tpu": "pallas_tpu"}
TOL = {"float32": 2e-2, "bfloat16": 5e-2}  # relative to max |reference|


def device_info():
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", "") or ""
  peak = None
  for key, value in PEAKS.items():
    if key.lower() in kind.lower():
      peak = value
      break
  return dict(backend=jax.default_backend(), device_kind=kind,
              device_count=jax.device_count(), jax=jax.__version__,
              peak=peak)


def implementations(backend):
  """The implementations that apply on ``backend``: XLA, then its Pallas."""
  return ["xla"] + ([PALLAS[backend]] if backend in PALLAS else [])


class Report:
  """Rows of checks and timings, errors of parts; printed and saved."""

  def __init__(self, info, dry_run):
    self.info, self.dry_run = info, dry_run
    self.checks, self.timings, self.errors, self.skipped = [], [], [], []

  def check(self, kernel, case, impl, dtype, what, err, tol):
    ok = bool(np.isfinite(err) and err <= tol)
    self.checks.append(dict(kernel=kernel, case=case, impl=impl,
                            dtype=dtype, what=what, rel_err=float(err),
                            tol=tol, ok=ok))
    if not ok:
      print(f"CHECK FAILED: {kernel} {case} {impl} {dtype} {what}: rel err "
            f"{err:.3g} > {tol}", flush=True)

  def timing(self, part, case, variant, **fields):
    self.timings.append(dict(part=part, case=case, variant=variant, **fields))

  def skip(self, part, what, reason):
    self.skipped.append(dict(part=part, what=what, reason=reason))
    print(f"SKIPPED {part}: {what}: {reason}", flush=True)

  @property
  def failed(self):
    return [c for c in self.checks if not c["ok"]]

  def as_dict(self):
    return dict(device=self.info, dry_run=self.dry_run, checks=self.checks,
                timings=self.timings, skipped=self.skipped,
                errors=self.errors, failed=len(self.failed))

  def print_table(self):
    info = self.info
    peak = info["peak"]
    print(f"\nbackend {info['backend']} | device {info['device_kind']!r} | "
          f"jax {info['jax']} | peak: "
          + (f"{peak['flops'] / 1e12:.0f} TFLOP/s bf16, "
             f"{peak['bw'] / 1e9:.0f} GB/s ({peak['name']})" if peak
             else "n/a (unknown device)"))
    by = {}
    for c in self.checks:
      key = (c["kernel"], c["impl"])
      n, bad, worst = by.get(key, (0, 0, 0.0))
      by[key] = (n + 1, bad + (not c["ok"]), max(worst, c["rel_err"]))
    print("\n| check | impl | passed | worst rel err |")
    print("|---|---|---:|---:|")
    for (kernel, impl), (n, bad, worst) in by.items():
      print(f"| {kernel} | {impl} | {n - bad}/{n} | {worst:.2e} |")
    if self.timings:
      print("\n| part | case | variant | ms | ratio | ideal | achieved "
            "| roofline |")
      print("|---|---|---|---:|---:|---:|---:|---:|")
      for t in self.timings:
        print(f"| {t['part']} | {t['case']} | {t['variant']} | "
              f"{_fmt(t.get('ms'), '.3f')} | {_fmt(t.get('ratio'), '.3f')} | "
              f"{_fmt(t.get('ideal'), '.3f')} | {t.get('achieved', 'n/a')} | "
              f"{t.get('roofline', 'n/a')} |")
    for s in self.skipped:
      print(f"skipped {s['part']}: {s['what']}: {s['reason']}")
    for e in self.errors:
      print(f"ERROR in part {e['part']}: {e['error']}")
    print(f"\n{len(self.checks) - len(self.failed)}/{len(self.checks)} checks "
          f"passed, {len(self.errors)} parts raised")


def _fmt(value, spec):
  return "n/a" if value is None else format(value, spec)


def _rel_err(got, want):
  got = np.asarray(jnp.asarray(got, jnp.float32), np.float64)
  want = np.asarray(jnp.asarray(want, jnp.float32), np.float64)
  if got.shape != want.shape:
    return float("inf")
  scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-6)
  return float(np.max(np.abs(got - want), initial=0.0)) / scale


def _hi(a):
  return jnp.asarray(a, jnp.float32)


HIGHEST = jax.lax.Precision.HIGHEST


# --- checks ------------------------------------------------------------------


def check_block_sparse(report, dry_run):
  from pallas_kernels import BlockSparseMatrix, block_sparse_matmul
  b = 16 if dry_run else 128
  # (rows, K blocks, N blocks, density): ragged rows, empty block columns,
  # an all-empty matrix.
  cases = [(3 * b + 5, 4, 3, 0.4), (2 * b, 3, 5, 0.2), (b - 3, 2, 2, 0.0)]
  if not dry_run:
    cases.append((1000, 8, 8, 0.25))
  rng = np.random.default_rng(0)
  for impl in implementations(jax.default_backend()):
    for m, kb, nb, density in cases:
      k, n = kb * b, nb * b
      bmask = rng.random((kb, nb)) < density
      bmask[:, -1] = False  # an empty block column
      for dtype in (jnp.float32, jnp.bfloat16):
        x = jnp.asarray(rng.normal(size=(m, k)), dtype)
        w = jnp.asarray(rng.normal(size=(k, n)), dtype)
        g = jnp.asarray(rng.normal(size=(m, n)), dtype)
        mat = BlockSparseMatrix.from_dense(w, (b, b), bmask)
        dense = mat.to_dense()
        case = f"m={m} k={k} n={n} b={b} d={bmask.mean():.2f}"

        def f(x, data, mat=mat):
          return block_sparse_matmul(x, mat.with_data(data),
                                     implementation=impl)

        y, vjp = jax.vjp(jax.jit(f), x, mat.data)
        dx, ddata = vjp(g)
        y_ref = jnp.dot(_hi(x), _hi(dense), precision=HIGHEST)
        dx_ref = jnp.dot(_hi(g), _hi(dense).T, precision=HIGHEST)
        dw_ref = jnp.dot(_hi(x).T, _hi(g), precision=HIGHEST)
        dw_ref = dw_ref * np.kron(bmask, np.ones((b, b)))
        name = jnp.dtype(dtype).name
        tol = TOL[name]
        report.check("block_sparse_matmul", case, impl, name, "forward",
                     _rel_err(y, y_ref), tol)
        report.check("block_sparse_matmul", case, impl, name, "dx",
                     _rel_err(dx, dx_ref), tol)
        report.check("block_sparse_matmul", case, impl, name, "dw",
                     _rel_err(mat.with_data(ddata).to_dense(), dw_ref), tol)


def _group_sizes(rng, m, num_groups, *, fill=True, empty=0.3):
  total = m if fill else int(rng.integers(0, m + 1))
  cuts = np.sort(rng.integers(0, total + 1, size=num_groups - 1))
  sizes = np.diff(np.concatenate([[0], cuts, [total]]))
  sizes[rng.random(num_groups) < empty] = 0
  return jnp.asarray(sizes, jnp.int32)


def check_gmm(report, dry_run):
  from pallas_kernels import gmm, tgmm
  rng = np.random.default_rng(1)
  if dry_run:
    shapes = [(40, 16, 32, 4), (33, 16, 16, 3)]
  else:
    shapes = [(1000, 256, 384, 8), (777, 512, 256, 64), (256, 128, 128, 4)]

  def ref(a, b, sizes):
    return jax.lax.ragged_dot(a, b, sizes, precision=HIGHEST)

  @jax.jit
  def ref_all(a, b, g, sizes):
    y, vjp = jax.vjp(lambda a, b: ref(a, b, sizes), a, b)
    return (y,) + vjp(g)

  for impl in implementations(jax.default_backend()):
    # Group sizes are arguments, so each shape and dtype compiles once.
    @jax.jit
    def run_all(a, b, g, sizes, impl=impl):
      y, vjp = jax.vjp(lambda a, b: gmm(a, b, sizes, implementation=impl),
                       a, b)
      yt = gmm(a, jnp.swapaxes(b, 1, 2), sizes, transpose_rhs=True,
               implementation=impl)
      return (y,) + vjp(g) + (yt, tgmm(a, g, sizes, implementation=impl))

    for idx, (m, k, n, num_groups) in enumerate(shapes):
      sizes_list = [_group_sizes(rng, m, num_groups),
                    _group_sizes(rng, m, num_groups, fill=False)]
      if idx == 0:
        sizes_list.append(jnp.zeros((num_groups,), jnp.int32))
      for sizes in sizes_list:
        for dtype in (jnp.float32, jnp.bfloat16):
          lhs = jnp.asarray(rng.normal(size=(m, k)), dtype)
          rhs = jnp.asarray(rng.normal(size=(num_groups, k, n)), dtype)
          g = jnp.asarray(rng.normal(size=(m, n)), dtype)
          case = (f"m={m} k={k} n={n} G={num_groups} "
                  f"rows={int(sizes.sum())} empty={int((sizes == 0).sum())}")
          name = jnp.dtype(dtype).name
          tol = TOL[name]
          y_ref, dl_ref, dr_ref = ref_all(_hi(lhs), _hi(rhs), _hi(g), sizes)
          y, dl, dr, yt, tg = run_all(lhs, rhs, g, sizes)
          for kernel, what, got, want in (
              ("gmm", "forward", y, y_ref), ("gmm", "dlhs", dl, dl_ref),
              ("gmm", "drhs", dr, dr_ref), ("gmm", "transpose_rhs", yt, y_ref),
              ("tgmm", "forward", tg, dr_ref)):
            report.check(kernel, case, impl, name, what,
                         _rel_err(got, want), tol)


def sparse_input_implementations(backend):
  """Implementations of sparse_input_matmul the library offers here."""
  from pallas_kernels import sparse_input_matmul
  offered, refused = [], {}
  x, w = jnp.ones((1, 32)), jnp.ones((32, 32))
  for impl in ["xla"] + ([PALLAS[backend]] if backend in PALLAS else []):
    try:
      jax.block_until_ready(sparse_input_matmul(x, w, implementation=impl))
      offered.append(impl)
    except ValueError as e:
      refused[impl] = str(e).splitlines()[0]
  return offered, refused


def _sparsify(x, fraction, rng):
  keep = rng.random(x.shape) >= fraction
  return x * jnp.asarray(keep, x.dtype)


def check_sparse_input(report, dry_run):
  from pallas_kernels import sparse_input_matmul
  offered, refused = sparse_input_implementations(jax.default_backend())
  for impl, why in refused.items():
    report.skip("checks", f"sparse_input_matmul {impl}", f"not offered: {why}")
  rng = np.random.default_rng(2)
  shapes = ([(1, 40, 24), (3, 100, 48)] if dry_run else
            [(1, 4096, 1024), (1, 1000, 512), (16, 512, 768), (4, 333, 256)])
  for impl in offered:
    for batch, d, n in shapes:
      for fraction in (0.5, 0.9, 1.0):  # 1.0: no active input at all
        for dtype in (jnp.float32, jnp.bfloat16):
          x = _sparsify(jnp.asarray(rng.normal(size=(batch, d)), dtype),
                        fraction, rng)
          w = jnp.asarray(rng.normal(size=(d, n)), dtype)
          g = jnp.asarray(rng.normal(size=(batch, n)), dtype)
          name = jnp.dtype(dtype).name
          case = f"batch={batch} d={d} n={n} sparsity={fraction}"
          fn = jax.jit(lambda a, b: sparse_input_matmul(a, b,
                                                        implementation=impl))
          y, vjp = jax.vjp(fn, x, w)
          dx, dw = vjp(g)
          tol = TOL[name]
          report.check("sparse_input_matmul", case, impl, name, "forward",
                       _rel_err(y, jnp.dot(_hi(x), _hi(w), precision=HIGHEST)),
                       tol)
          report.check("sparse_input_matmul", case, impl, name, "dx",
                       _rel_err(dx, jnp.dot(_hi(g), _hi(w).T,
                                            precision=HIGHEST)), tol)
          report.check("sparse_input_matmul", case, impl, name, "dw",
                       _rel_err(dw, jnp.dot(_hi(x).T, _hi(g),
                                            precision=HIGHEST)), tol)


# --- timing ------------------------------------------------------------------


def compare(variants, baseline, *, repeats=5, iters=10, seed=0):
  """Median seconds per call and median ratio to ``baseline`` per variant.

  ``variants`` maps a name to ``(jitted fn, args)``. Each repeat runs every
  variant (``iters`` calls dispatched back to back, then one wait) in a new
  random order; a ratio is taken within each repeat.
  """
  rng = np.random.default_rng(seed)
  names = list(variants)
  for name in names:  # compile and warm up
    fn, args = variants[name]
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
  per = {name: [] for name in names}
  ratios = {name: [] for name in names}
  for _ in range(repeats):
    now = {}
    for name in rng.permutation(names):
      fn, args = variants[name]
      start = time.perf_counter()
      out = None
      for _ in range(iters):
        out = fn(*args)
      jax.block_until_ready(out)
      now[name] = (time.perf_counter() - start) / iters
    for name in names:
      per[name].append(now[name])
      ratios[name].append(now[name] / now[baseline])
  return {name: (statistics.median(per[name]), statistics.median(ratios[name]))
          for name in names}


def _rate(value, unit, peak_key, info):
  peak = info["peak"]
  if unit == "TFLOP/s":
    text = f"{value / 1e12:.1f} TFLOP/s"
    ref = f"{peak[peak_key] / 1e12:.0f} TFLOP/s" if peak else "n/a"
  else:
    text = f"{value / 1e9:.0f} GB/s"
    ref = f"{peak[peak_key] / 1e9:.0f} GB/s" if peak else "n/a"
  return text, ref


def _roofline_ms(flops, bytes_, info):
  peak = info["peak"]
  if not peak:
    return "n/a"
  return f"{1e3 * max(flops / peak['flops'], bytes_ / peak['bw']):.3f} ms"


def time_block_sparse(report, info, dry_run):
  from pallas_kernels import BlockSparseMatrix, block_sparse_matmul
  if dry_run:
    return
  backend = info["backend"]
  m = k = n = 4096
  b = 128
  rng = np.random.default_rng(3)
  dtype = jnp.bfloat16
  x = jnp.asarray(rng.normal(size=(m, k)), dtype)
  w = jnp.asarray(rng.normal(size=(k, n)), dtype)
  variants = {"dense x@W": (jax.jit(jnp.dot), (x, w))}
  meta = {"dense x@W": (2.0 * m * k * n, 2.0 * (m * k + k * n + m * n), 1.0)}
  for density in (0.05, 0.10, 0.25, 0.50):
    kb, nb = k // b, n // b
    count = round(density * kb * nb)
    flat = np.zeros(kb * nb, bool)
    flat[rng.choice(kb * nb, count, replace=False)] = True
    mat = BlockSparseMatrix.from_dense(w, (b, b), flat.reshape(kb, nb))
    for impl in implementations(backend):
      name = f"{impl} d={density:.2f}"
      fn = jax.jit(lambda x, mat, impl=impl: block_sparse_matmul(
          x, mat, implementation=impl))
      variants[name] = (fn, (x, mat))
      flops = 2.0 * m * b * b * count
      meta[name] = (flops, 2.0 * (m * k + count * b * b + m * n),
                    count / (kb * nb))
  _report_compare(report, info, "kernels", f"block-sparse {m}^3 b={b} bf16",
                  variants, "dense x@W", meta)


def _report_compare(report, info, part, case, variants, baseline, meta,
                    unit="TFLOP/s", repeats=5, iters=10):
  results = compare(variants, baseline, repeats=repeats, iters=iters)
  for name, (sec, ratio) in results.items():
    flops, bytes_, ideal = meta.get(name, (None, None, None))
    fields = dict(ms=1e3 * sec, ratio=ratio, ideal=ideal)
    if flops is not None:
      if unit == "TFLOP/s":
        fields["achieved"], fields["peak"] = _rate(flops / sec, unit,
                                                   "flops", info)
      else:
        fields["achieved"], fields["peak"] = _rate(bytes_ / sec, unit, "bw",
                                                   info)
      fields["roofline"] = _roofline_ms(flops, bytes_, info)
      fields["achieved"] = f"{fields['achieved']} of {fields['peak']}"
    report.timing(part, case, name, **fields)
    print(f"{part} | {case} | {name}: {1e3 * sec:.3f} ms, ratio {ratio:.3f}",
          flush=True)


def time_gmm(report, info, dry_run):
  from pallas_kernels import gmm, tgmm
  if dry_run:
    return
  backend = info["backend"]
  m, k, n = 8192, 2048, 4096
  rng = np.random.default_rng(4)
  dtype = jnp.bfloat16
  lhs = jnp.asarray(rng.normal(size=(m, k)), dtype)
  grad = jnp.asarray(rng.normal(size=(m, n)), dtype)
  flops = 2.0 * m * k * n
  for num_groups in (8, 64):
    rhs = jnp.asarray(rng.normal(size=(num_groups, k, n)) / 30, dtype)
    # Router-like imbalance: multinomial over Dirichlet expert weights.
    probs = rng.dirichlet(np.full(num_groups, 2.0))
    sizes = jnp.asarray(rng.multinomial(m, probs), jnp.int32)
    byte_count = 2.0 * (m * k + num_groups * k * n + m * n)
    variants = {
        "dense x@W[0]": (jax.jit(jnp.dot), (lhs, rhs[0])),
        "ragged_dot": (jax.jit(jax.lax.ragged_dot), (lhs, rhs, sizes)),
    }
    meta = {name: (flops, byte_count, 1.0) for name in variants}
    gmm_work, tgmm_work = _tile_work(np.asarray(sizes), m, 128)
    for impl in implementations(backend)[1:]:
      variants[f"gmm {impl}"] = (
          jax.jit(lambda a, b, s, impl=impl: gmm(a, b, s,
                                                 implementation=impl)),
          (lhs, rhs, sizes))
      # ideal: the tile products the kernel does over those of dense.
      meta[f"gmm {impl}"] = (flops, byte_count, gmm_work)
    _report_compare(report, info, "kernels",
                    f"gmm m={m} k={k} n={n} G={num_groups} bf16", variants,
                    "ragged_dot", meta)
    # The weight gradient: ragged_dot's own transpose against tgmm.
    zeros = jnp.zeros((num_groups, k, n), dtype)

    def ragged_wgrad(a, g, s):
      return jax.vjp(lambda w: jax.lax.ragged_dot(a, w, s), zeros)[1](g)[0]

    variants = {"dense x.T@g": (jax.jit(lambda a, g: a.T @ g), (lhs, grad)),
                "ragged_dot vjp": (jax.jit(ragged_wgrad), (lhs, grad, sizes))}
    byte_count = 2.0 * (m * k + m * n + num_groups * k * n)
    meta = {name: (flops, byte_count, 1.0) for name in variants}
    for impl in implementations(backend)[1:]:
      variants[f"tgmm {impl}"] = (
          jax.jit(lambda a, g, s, impl=impl: tgmm(a, g, s,
                                                  implementation=impl)),
          (lhs, grad, sizes))
      meta[f"tgmm {impl}"] = (flops, byte_count, tgmm_work)
    _report_compare(report, info, "kernels",
                    f"tgmm m={m} k={k} n={n} G={num_groups} bf16", variants,
                    "ragged_dot vjp", meta)


def _tile_work(sizes, m, tm):
  """Row-tile products of the kernels over ``m / tm`` (dense = 1).

  ``gmm`` (both Pallas kernels) multiplies a row tile once per non-empty group
  meeting it; the GPU ``tgmm`` takes ``cdiv(size, tm)`` row steps per group.
  """
  ends = np.cumsum(sizes)
  starts = ends - sizes
  tiles = -(-m // tm)
  visits = sum(int(e > s) * ((e - 1) // tm - s // tm + 1)
               for s, e in zip(starts, ends))
  steps = sum(-(-int(size) // tm) for size in sizes)
  return visits / tiles, steps / tiles


def _stacked_gemv(fn):
  """``fn(x[1, d], w)`` over R stacked inputs inside one call (``lax.map``),
  so that launch overhead does not dominate microsecond GEMVs."""
  return jax.jit(lambda xs, w: jax.lax.map(lambda x: fn(x, w), xs))


def time_sparse_input(report, info, dry_run):
  from pallas_kernels import sparse_input_matmul
  if dry_run:
    return
  offered, _ = sparse_input_implementations(info["backend"])
  rng = np.random.default_rng(5)
  reps = 32
  dtype = jnp.bfloat16
  for d in (4096, 8192):
    w = jnp.asarray(rng.normal(size=(d, d)), dtype)
    for fraction in (0.5, 0.9):
      xs = _sparsify(jnp.asarray(rng.normal(size=(reps, 1, d)), dtype),
                     fraction, rng)
      variants = {"dense x@W": (_stacked_gemv(jnp.dot), (xs, w))}
      meta = {"dense x@W": (2.0 * d * d * reps, 2.0 * d * d * reps, 1.0)}
      active = float(np.mean(np.asarray(xs) != 0))
      for impl in offered:
        name = f"{impl}"
        variants[name] = (_stacked_gemv(
            lambda x, w, impl=impl: sparse_input_matmul(
                x, w, implementation=impl)), (xs, w))
        meta[name] = (2.0 * d * d * active * reps,
                      2.0 * d * d * active * reps, active)
      results = compare(variants, "dense x@W", repeats=5, iters=5)
      case = f"GEMV d={d} n={d} batch 1 sparsity {fraction} bf16"
      for name, (sec, ratio) in results.items():
        flops, bytes_, ideal = meta[name]
        achieved, peak = _rate(bytes_ / sec, "GB/s", "bw", info)
        report.timing("kernels", case, name, ms=1e3 * sec / reps, ratio=ratio,
                      ideal=ideal, achieved=f"{achieved} of {peak}",
                      roofline=_roofline_ms(flops / reps, bytes_ / reps,
                                            info))
        print(f"kernels | {case} | {name}: {1e3 * sec / reps:.4f} ms, ratio "
              f"{ratio:.3f}", flush=True)


# --- training step -----------------------------------------------------------


def _ffn_params(rng, layers, d, f, dtype=jnp.float32):
  params = {}
  for i in range(layers):
    params[f"layer{i}"] = {
        "w_in": jnp.asarray(rng.normal(size=(d, f)) / np.sqrt(d), dtype),
        "w_out": jnp.asarray(rng.normal(size=(f, d)) / np.sqrt(f), dtype),
    }
  return params


def _ffn_loss(params, x, y, matmul):
  h = x
  for name in sorted(params):
    p = params[name]
    u = jax.nn.gelu(matmul(h, p["w_in"], f"{name}/w_in"))
    h = h + matmul(u, p["w_out"], f"{name}/w_out")
  return jnp.mean((h - y) ** 2)


def run_train(report, info, dry_run):
  import optax
  import sparsejax as sj
  if dry_run:
    layers, d, f, tokens, block = 2, 64, 256, 32, 16
  else:
    layers, d, f, tokens, block = 4, 2048, 8192, 4096, 128
  sparsity, never = 0.9, 10**9
  rng = np.random.default_rng(6)
  params = _ffn_params(rng, layers, d, f)
  x = jnp.asarray(rng.normal(size=(tokens, d)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(tokens, d)), jnp.float32)
  dense_mm = lambda a, w, path: a @ w.astype(a.dtype)  # noqa: E731
  case = (f"FFN {layers}x({d}->{f}->{d}) tokens={tokens} f32 Adam "
          f"sparsity {sparsity}")

  def make_step(tx, matmul):
    def step(params, state, x, y):
      loss, grads = jax.value_and_grad(
          lambda p: _ffn_loss(p, x, y, matmul(state)))(params)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state, loss
    return jax.jit(step, donate_argnums=(0, 1))

  adam = optax.adam(1e-3)
  rigl = dict(sparsity=sparsity, end_step=never, update_every=never)
  txs = {
      "dense adam": adam,
      "sj.rigl element (masked)": sj.rigl(adam, **rigl),
      f"sj.rigl block {block} (masked)": sj.rigl(
          adam, granularity=(block, block), **rigl),
  }
  steps = {name: (make_step(tx, lambda state: dense_mm), tx)
           for name, tx in txs.items()}
  try:
    import sparsejax.nn as sjnn  # Flax; the kernel training path lives here
  except ImportError as e:
    sjnn = None
    print(f"sparsejax.nn not importable: {e}")
  block_apply = getattr(sjnn, "block_sparse_apply", None)
  kernel_name = f"sj.rigl block {block} (block-sparse kernel)"
  if block_apply is None:
    report.skip("train", kernel_name,
                "sparsejax.nn.block_sparse_apply is absent in this version")
  else:
    tx = txs[f"sj.rigl block {block} (masked)"]
    caps = sjnn.block_capacities(sj.get_masks(tx.init(params)),
                                  (block, block))

    def kernel_matmul(state):
      masks = sj.get_masks(state)

      def mm(a, w, path):
        layer, leaf = path.split("/")
        return block_apply(a, w, masks[layer][leaf],
                           block_shape=(block, block),
                           capacity=caps[layer][leaf], path=path)
      return mm

    steps[kernel_name] = (make_step(tx, kernel_matmul), tx)

  masked_step = steps[f"sj.rigl block {block} (masked)"][0]
  if kernel_name in steps:
    # After the (dense) mask-update step, a kernel step and a masked step from
    # the same state must give the same loss and parameters.
    tx = steps[kernel_name][1]
    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731 (donated)
    p0, s0, _ = masked_step(copy(params), tx.init(copy(params)), x, y)
    p_m, _, loss_m = masked_step(copy(p0), copy(s0), x, y)
    p_k, _, loss_k = steps[kernel_name][0](copy(p0), copy(s0), x, y)
    tol = TOL["float32"]
    report.check("train step", case, "block-sparse kernel", "float32",
                 "loss vs masked", _rel_err(loss_k, loss_m), tol)
    report.check("train step", case, "block-sparse kernel", "float32",
                 "params vs masked",
                 max(_rel_err(a, b) for a, b in zip(jax.tree.leaves(p_k),
                                                    jax.tree.leaves(p_m))),
                 tol)
  variants, losses = {}, {}
  for name, (step, tx) in steps.items():
    p = jax.tree.map(jnp.array, params)
    state = tx.init(p)
    if name == kernel_name:
      # Step 0 is a mask-update step: run it dense, as a training loop does.
      p, state, _ = masked_step(p, state, x, y)
    p, state, loss = step(p, state, x, y)
    losses[name] = float(loss)
    holder = {"p": p, "s": state}

    def run(step=step, holder=holder):
      holder["p"], holder["s"], loss = step(holder["p"], holder["s"], x, y)
      return loss

    variants[name] = (run, ())
  for name, loss in losses.items():
    if not np.isfinite(loss):
      raise FloatingPointError(f"train: {name} gave loss {loss}")
  report.timing("train", case, "loss of the first timed step",
                achieved=json.dumps({k: round(v, 5) for k, v in
                                     losses.items()}))
  if dry_run:
    return
  results = compare(variants, "dense adam", repeats=5, iters=5)
  for name, (sec, ratio) in results.items():
    report.timing("train", case, name, ms=1e3 * sec, ratio=ratio)
    print(f"train | {name}: {1e3 * sec:.3f} ms, ratio {ratio:.3f}", flush=True)


# --- decode step -------------------------------------------------------------


def _decode_params(rng, layers, d, f, dtype):
  shapes = dict(q=(d, d), k=(d, d), v=(d, d), o=(d, d), gate=(d, f),
                up=(d, f), down=(f, d))
  return [{name: jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), dtype)
           for name, s in shapes.items()} for _ in range(layers)]


def _decode(x, params, matmul, sparsify):
  """One token through GEMV-only Llama-shaped layers (no attention scores:
  the value projection stands in for the attention output)."""
  h = x
  for p in params:
    a = h * jax.lax.rsqrt(jnp.mean(jnp.square(h.astype(jnp.float32)))
                          + 1e-6).astype(h.dtype)
    a = sparsify(a)
    q, k, v = matmul(a, p["q"]), matmul(a, p["k"]), matmul(a, p["v"])
    attn = sparsify(v + 0 * (q + k))
    h = h + matmul(attn, p["o"])
    a = h * jax.lax.rsqrt(jnp.mean(jnp.square(h.astype(jnp.float32)))
                          + 1e-6).astype(h.dtype)
    a = sparsify(a)
    m = jax.nn.silu(matmul(a, p["gate"])) * matmul(a, p["up"])
    h = h + matmul(sparsify(m), p["down"])
  return h


def _half_sparse(a):
  # 0.6745 is the median of |N(0, 1)|: about half of an RMS-normalized
  # Gaussian-like activation is zeroed (TEAL's magnitude threshold). The
  # FFN product is rescaled by its own RMS first.
  rms = jax.lax.rsqrt(jnp.mean(jnp.square(a.astype(jnp.float32))) + 1e-12)
  return jnp.where(jnp.abs(a.astype(jnp.float32)) * rms > 0.6745, a,
                   jnp.zeros_like(a))


def run_decode(report, info, dry_run):
  from pallas_kernels import sparse_input_matmul
  if dry_run:
    layers, d, f = 2, 64, 160
  else:
    layers, d, f = 4, 4096, 11008
  offered, _ = sparse_input_implementations(info["backend"])
  rng = np.random.default_rng(7)
  dtype = jnp.bfloat16
  params = _decode_params(rng, layers, d, f, dtype)
  reps = 1 if dry_run else 8
  xs = jnp.asarray(rng.normal(size=(reps, 1, d)), dtype)
  identity = lambda a: a  # noqa: E731

  def stacked(matmul, sparsify):
    return jax.jit(lambda xs, params: jax.lax.map(
        lambda x: _decode(x, params, matmul, sparsify), xs))

  variants = {"dense": (stacked(jnp.dot, identity), (xs, params))}
  for impl in offered:
    variants[f"50% sparse {impl}"] = (stacked(
        lambda a, w, impl=impl: sparse_input_matmul(a, w,
                                                    implementation=impl),
        _half_sparse), (xs, params))
  case = f"Llama-shaped decode {layers} layers d={d} ffn={f} batch 1 bf16"
  # Check: the sparse paths equal the dense product of the same sparse inputs.
  want = jax.jit(lambda xs, params: jax.lax.map(
      lambda x: _decode(x, params, jnp.dot, _half_sparse), xs))(xs, params)
  for impl in offered:
    got = variants[f"50% sparse {impl}"][0](xs, params)
    report.check("decode stack", case, impl, "bfloat16", "vs dense of the "
                 "same sparse inputs", _rel_err(got, want), 0.1)
  if dry_run:
    return
  weight_bytes = 2.0 * layers * (4 * d * d + 3 * d * f)
  results = compare(variants, "dense", repeats=5, iters=3)
  for name, (sec, ratio) in results.items():
    per_token = sec / reps
    achieved, peak = _rate(weight_bytes / per_token, "GB/s", "bw", info)
    report.timing("decode", case, name, ms=1e3 * per_token, ratio=ratio,
                  ideal=1.0 if name == "dense" else 0.5,
                  achieved=(f"{achieved} of {peak} (dense-equivalent weight "
                            "bytes)"),
                  roofline=_roofline_ms(0.0, weight_bytes, info))
    print(f"decode | {name}: {1e3 * per_token:.3f} ms/token, ratio "
          f"{ratio:.3f}", flush=True)


# --- driver ------------------------------------------------------------------

PARTS = {
    "checks": [check_block_sparse, check_gmm, check_sparse_input],
    "kernels": [time_block_sparse, time_gmm, time_sparse_input],
    "train": [run_train],
    "decode": [run_decode],
}


def run(*, dry_run=False, parts=tuple(PARTS), out=None):
  """Runs the parts; returns the report as a dict (also written to ``out``)."""
  info = device_info()
  report = Report(info, dry_run)
  start = time.perf_counter()
  for part in parts:
    for fn in PARTS[part]:
      t0 = time.perf_counter()
      print(f"== {part}: {fn.__name__}", flush=True)
      try:
        if part == "checks":
          fn(report, dry_run)
        else:
          fn(report, info, dry_run)
      except Exception as e:  # noqa: BLE001 -- every part is guarded
        traceback.print_exc()
        report.errors.append(dict(part=part, step=fn.__name__,
                                  error=f"{type(e).__name__}: {e}"))
      print(f"   {fn.__name__}: {time.perf_counter() - t0:.1f} s", flush=True)
  report.print_table()
  result = report.as_dict()
  result["wall_s"] = time.perf_counter() - start
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
      json.dump(result, fh, indent=1, default=str)
    print(f"wrote {out}")
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="out/accelerator.json",
                      help="JSON file for every result")
  parser.add_argument("--dry-run", action="store_true",
                      help="tiny shapes, no timing")
  parser.add_argument("--parts", default=",".join(PARTS),
                      help=f"comma-separated subset of {','.join(PARTS)}")
  args = parser.parse_args(argv)
  parts = [p for p in args.parts.split(",") if p]
  unknown = sorted(set(parts) - set(PARTS))
  if unknown:
    parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
  result = run(dry_run=args.dry_run, parts=parts, out=args.out)
  return 1 if result["failed"] or result["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
