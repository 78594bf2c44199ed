"""Test-wide JAX set-up: 8 fake CPU devices, before any backend starts.

It sits at the repository root so that it runs before the doctests of the
library modules as well as before ``tests/``.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)
