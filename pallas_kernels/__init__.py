# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Pallas kernels for sparse compute: block-sparse matmul and grouped matmul.

Every kernel has a pure-XLA reference (the CPU default and the test oracle),
Pallas TPU / GPU implementations, an ``ops`` module with the custom VJP only,
and an ``api`` module with the public function and its argument checks. One
rule, in ``_dispatch``, chooses the implementation for every kernel from
``implementation=None | "xla" | "pallas_tpu" | "pallas_gpu"`` and
``interpret=``.
"""

from pallas_kernels.block_sparse import BlockSparseMatrix
from pallas_kernels.block_sparse import block_sparse_matmul
from pallas_kernels.gmm import gmm
from pallas_kernels.gmm import tgmm
from pallas_kernels.sparse_input import sparse_input_matmul

__all__ = (
    "BlockSparseMatrix",
    "block_sparse_matmul",
    "gmm",
    "sparse_input_matmul",
    "tgmm",
)
