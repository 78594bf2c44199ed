# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Roofline of the sparse-input GEMV kernels for a Llama-7B-like model.

No GPU or TPU is available to this project, so the accelerator speed of
`sparse_input_matmul(..., implementation="pallas_gpu" | "pallas_tpu")` is
argued from the bandwidth roofline: at batch 1 a decoding step reads every
weight once and does 2 FLOPs per weight read, far below the ridge point of
either chip (research/kernels.md, section 6), so its time is the weight
bytes read over the HBM bandwidth.

Model: 32 layers of 7 matrices, q, k, v, o (4096 x 4096), gate and up
(4096 x 11008) and down (11008 x 4096), bf16; every matrix reads only the
rows of its active input channels, with the same activation sparsity `s`
at every input (TEAL's model-wide sparsity). Not counted: the embedding
and LM head (0.26 GB of bf16 read densely per token), the KV cache, norms
and the kernel launches; all of them lower the real speed-ups.

Columns:

* `GB/token`: weight bytes read per token. The GPU kernel reads single
  rows, so `(1 - s)` of the weights.
* H100 SXM (3.35 TB/s) and TPU v5e (819 GB/s): milliseconds per token,
  tokens per second and speed-up over dense at that bandwidth.
* TPU rows: the TPU kernel reads row blocks of `--block-rows` rows (16 for
  bf16). With independent channels a block is active with probability
  `1 - s**b`; `random` uses that fraction, `clustered` the best case where
  the active channels are contiguous, `1 - s` (rounded up to whole blocks
  per matrix).
* `+step`: the random case with a fixed cost per grid step (`--step-us`,
  0.35 us by default, an assumed figure: no TPU here): a step of
  `blocks_per_step` blocks takes the larger of its copy time and that
  cost.

Run: `python benchmarks/sparse_input_roofline.py` (pure arithmetic,
instant); `--block-rows 8` for the float32 block size.
"""

import argparse
import math

D_MODEL, D_FFN, LAYERS = 4096, 11008, 32
MATRICES = (("q", D_MODEL, D_MODEL), ("k", D_MODEL, D_MODEL),
            ("v", D_MODEL, D_MODEL), ("o", D_MODEL, D_MODEL),
            ("gate", D_MODEL, D_FFN), ("up", D_MODEL, D_FFN),
            ("down", D_FFN, D_MODEL))
BYTES = 2  # bf16
H100_BW = 3.35e12
V5E_BW = 819e9
SPARSITIES = (0.0, 0.25, 0.40, 0.50, 0.65, 0.80)
# As pallas_kernels.sparse_input.tpu: about 0.5 MB of W per step, <= 8.
STEP_BYTES = 512 * 1024


def blocks_per_step(block_rows, n):
  return max(1, min(8, math.ceil(STEP_BYTES / (block_rows * n * BYTES))))


def row_bytes(s):
  """Weight bytes per token when single rows are read."""
  return LAYERS * sum((1 - s) * d * n * BYTES for _, d, n in MATRICES)


def block_bytes(s, b, clustered):
  """Weight bytes per token when row blocks of `b` rows are read."""
  total = 0.0
  for _, d, n in MATRICES:
    nb = math.ceil(d / b)
    active = (math.ceil((1 - s) * d / b) if clustered
              else nb * (1 - s ** b))
    total += active * b * n * BYTES
  return LAYERS * total


def block_time_with_steps(s, b, bw, step_s, group=None):
  """Seconds per token for random masks with a cost per grid step."""
  total = 0.0
  for _, d, n in MATRICES:
    g = group or blocks_per_step(b, n)
    active = math.ceil(d / b) * (1 - s ** b)
    steps = math.ceil(active / g)
    total += steps * max(g * b * n * BYTES / bw, step_s)
  return LAYERS * total


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--block-rows", type=int, default=16)
  parser.add_argument("--step-us", type=float, default=0.35)
  args = parser.parse_args()
  b = args.block_rows
  dense = row_bytes(0.0)
  print(f"Llama-7B-like: {LAYERS} layers x 7 matrices, bf16, batch 1; "
        f"dense weights {dense / 1e9:.2f} GB/token.\n")

  print("H100 SXM (3.35 TB/s), GPU kernel (single rows):\n")
  print("| sparsity | GB/token | ms/token | tokens/s | speed-up |")
  print("|---:|---:|---:|---:|---:|")
  for s in SPARSITIES:
    t = row_bytes(s) / H100_BW
    print(f"| {s:.0%} | {row_bytes(s) / 1e9:.2f} | {t * 1e3:.2f} | "
          f"{1 / t:.0f} | {dense / row_bytes(s):.2f}x |")

  print(f"\nTPU v5e (819 GB/s), TPU kernel (row blocks of {b} rows):\n")
  print("| sparsity | blocks active, random (1-s^b) | GB/token random | "
        "tokens/s random | speed-up random | GB/token clustered | "
        "tokens/s clustered | speed-up clustered | "
        f"speed-up random +{args.step_us} us/step |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  dense_steps = block_time_with_steps(0.0, b, V5E_BW, args.step_us * 1e-6)
  for s in SPARSITIES:
    rnd, clu = block_bytes(s, b, False), block_bytes(s, b, True)
    stepped = block_time_with_steps(s, b, V5E_BW, args.step_us * 1e-6)
    print(f"| {s:.0%} | {1 - s ** b:.1%} | {rnd / 1e9:.2f} | "
          f"{V5E_BW / rnd:.1f} | {dense / rnd:.2f}x | {clu / 1e9:.2f} | "
          f"{V5E_BW / clu:.1f} | {dense / clu:.2f}x | "
          f"{dense_steps / stepped:.2f}x |")
  single = block_time_with_steps(0.0, b, V5E_BW, args.step_us * 1e-6, 1)
  print(f"\nDense at {args.step_us} us/step: "
        f"{dense_steps * 1e3:.2f} ms/token with the default blocks per step "
        f"({blocks_per_step(b, D_MODEL)} for 4096 columns, "
        f"{blocks_per_step(b, D_FFN)} for 11008), {single * 1e3:.2f} ms "
        f"with one block per step, {dense / V5E_BW * 1e3:.2f} ms at the "
        f"bandwidth alone.")


if __name__ == "__main__":
  main()
