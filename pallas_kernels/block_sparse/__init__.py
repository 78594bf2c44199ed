# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse matmul ``x @ W`` with ``W`` a :class:`BlockSparseMatrix`.

Modules (megablox layout): ``format`` (the matrix pytree), ``reference`` (the
XLA path), ``tpu`` (Mosaic TPU Pallas kernels), ``gpu`` (Triton Pallas
kernels) and ``ops`` (the custom VJP and the dispatch).
"""

from pallas_kernels.block_sparse.format import BlockSparseMatrix
from pallas_kernels.block_sparse.ops import block_sparse_matmul

__all__ = ("BlockSparseMatrix", "block_sparse_matmul")
