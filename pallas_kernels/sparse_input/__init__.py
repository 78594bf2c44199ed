# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sparse-input matmul: `x @ W` from the rows of `W` that `x` activates.

`reference` is the XLA implementation (active-row listing, then a loop
over the active rows: a fused row sum for small batches, a blocked gather
and dot for larger ones), `gpu` a Triton split-K kernel over the active
rows (TEAL-style), `tpu` a Mosaic kernel over the active row blocks
(scalar prefetch), `ops` the custom VJP and `api` the public
:func:`sparse_input_matmul` with its argument checks;
`pallas_kernels._dispatch` chooses the implementation.
"""

from pallas_kernels.sparse_input.api import sparse_input_matmul

__all__ = ("sparse_input_matmul",)
