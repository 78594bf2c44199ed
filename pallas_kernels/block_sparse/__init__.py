# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Block-sparse matmul ``x @ W`` with ``W`` a :class:`BlockSparseMatrix`.

Modules (megablox layout): ``format`` (the matrix pytree), ``reference`` (the
XLA path), ``tpu`` (Mosaic TPU Pallas kernels), ``gpu`` (Triton Pallas
kernels), ``ops`` (the custom VJPs) and ``api`` (the public function and its
checks); :mod:`pallas_kernels._dispatch` chooses the implementation.
"""

from pallas_kernels.block_sparse.format import BlockSparseMatrix
from pallas_kernels.block_sparse.api import block_sparse_matmul

__all__ = ("BlockSparseMatrix", "block_sparse_matmul")
