# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The one rule by which every kernel family chooses its implementation.

Every public kernel takes ``implementation=None | "xla" | "pallas_tpu" |
"pallas_gpu"`` and ``interpret=``. :func:`backend` checks the pair once and
returns a :class:`Backend`, a hashable value that the family's custom VJP
carries as a static argument and asks for its kernels
(:meth:`Backend.kernel`), so that no family compares implementation names
itself.

The rule:

* ``None`` chooses by :func:`jax.default_backend`: ``"pallas_gpu"`` on a GPU,
  ``"pallas_tpu"`` on a TPU, and elsewhere (CPU) ``"xla"``, or
  ``"pallas_tpu"`` when ``interpret`` is given, since the TPU kernels run on
  any host under the TPU simulator.
* An explicit name is used as given, whatever the default backend, so that a
  CPU host can lower a Pallas path for its target with
  :func:`jax.export.export`.
* ``interpret`` (``True`` or a ``pltpu.InterpretParams``) applies to the
  Pallas paths only: with ``"xla"`` it is an error. ``None`` and ``False``
  mean compiled kernels and are stored as ``False``.
"""

import functools
from typing import Any, NamedTuple

import jax

__all__ = ("IMPLEMENTATIONS", "Backend", "backend", "resolve")

IMPLEMENTATIONS = ("xla", "pallas_tpu", "pallas_gpu")


def _given(interpret):
  return interpret is not None and interpret is not False


def resolve(implementation: str | None, interpret: Any = None) -> str:
  """The name of the implementation a kernel call runs (see the module rule).

  Args:
    implementation: ``None``, ``"xla"``, ``"pallas_tpu"`` or ``"pallas_gpu"``.
    interpret: ``None``, ``False``, ``True`` or a ``pltpu.InterpretParams``.

  Returns:
    One of :data:`IMPLEMENTATIONS`.

  Raises:
    ValueError: for an unknown ``implementation``, or ``interpret`` given
      with ``implementation="xla"``.

  Examples:
    >>> from pallas_kernels import _dispatch
    >>> _dispatch.resolve(None)  # on this CPU host
    'xla'
    >>> _dispatch.resolve(None, interpret=True)
    'pallas_tpu'
    >>> _dispatch.resolve("pallas_gpu")
    'pallas_gpu'
  """
  if implementation is not None and implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be None or one of "
                     f"{IMPLEMENTATIONS}, got {implementation!r}.")
  if implementation == "xla" and _given(interpret):
    raise ValueError("interpret applies to the Pallas implementations only; "
                     "got it with implementation='xla'.")
  if implementation is not None:
    return implementation
  platform = jax.default_backend()
  if platform == "gpu":
    return "pallas_gpu"
  if platform == "tpu" or _given(interpret):
    return "pallas_tpu"
  return "xla"


class Backend(NamedTuple):
  """A checked choice of implementation; hashable, so a static argument.

  Attributes:
    implementation: one of :data:`IMPLEMENTATIONS`.
    interpret: ``False`` (compiled kernels), ``True`` or a
      ``pltpu.InterpretParams``; always ``False`` for ``"xla"``.
  """
  implementation: str
  interpret: Any = False

  @property
  def is_pallas(self) -> bool:
    return self.implementation != "xla"

  def select(self, *, xla, pallas_tpu, pallas_gpu):
    """The one of three values that belongs to this implementation."""
    return {"xla": xla, "pallas_tpu": pallas_tpu,
            "pallas_gpu": pallas_gpu}[self.implementation]

  def kernel(self, *, xla, pallas_tpu, pallas_gpu):
    """The callable of this implementation, ``interpret=`` bound for Pallas.

    Args:
      xla: the reference callable; it takes no ``interpret``.
      pallas_tpu: the Mosaic TPU callable, taking ``interpret=``.
      pallas_gpu: the Triton callable, taking ``interpret=``.

    Returns:
      A callable with the arguments of the chosen one, less ``interpret``.
    """
    fn = self.select(xla=xla, pallas_tpu=pallas_tpu, pallas_gpu=pallas_gpu)
    if not self.is_pallas:
      return fn
    return functools.partial(fn, interpret=self.interpret)


def backend(implementation: str | None = None, interpret: Any = None
            ) -> Backend:
  """Checks ``implementation`` and ``interpret`` once (see the module rule).

  Args:
    implementation: ``None``, ``"xla"``, ``"pallas_tpu"`` or ``"pallas_gpu"``.
    interpret: ``None``, ``False``, ``True`` or a ``pltpu.InterpretParams``.

  Returns:
    The :class:`Backend` a kernel call runs on.

  Raises:
    ValueError: as :func:`resolve`; the message names the argument.

  Examples:
    >>> from pallas_kernels import _dispatch
    >>> _dispatch.backend()  # on this CPU host
    Backend(implementation='xla', interpret=False)
    >>> b = _dispatch.backend("pallas_tpu", interpret=True)
    >>> b.kernel(xla=min, pallas_tpu=lambda a, *, interpret: (a, interpret),
    ...          pallas_gpu=None)(1)
    (1, True)
  """
  name = resolve(implementation, interpret)
  return Backend(name, interpret if _given(interpret) else False)
