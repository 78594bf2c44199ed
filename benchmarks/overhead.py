# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Per-step cost of the sparsity transforms against dense Adam, same run.

For each MLP (784-300-100-10 and 784-1024-1024-10, batch 128, 90 % sparsity)
and each transform, a jitted train step (forward, backward, ``tx.update``,
``apply_updates``, buffers donated) is timed in two variants built from the
same factory:

* ``update_every`` huge: after the first step no mask update happens, which
  times the steady-state step;
* ``update_every=1``: every step is a mask-update step.

Variants run interleaved, in a new random order in every repeat; a ratio is
the median over repeats of (method median / dense-Adam median of the same
repeat). The amortized ratio over ``update_every=f`` is
``((f - 1) * steady + update) / f``. Memory is the bytes of the optimizer
state's leaves; ``temp MB`` is the scratch memory XLA allocates for one call
of the step. The ``adam_in_loop`` row is a reference, not a method: dense
Adam with its step inside a loop of one trip, the floor of any exact skip of
the inner step (RigL, SRigL) on this backend.

On CPU that scratch is one ``malloc`` per call. glibc serves allocations
above its mmap threshold (at most 32 MiB by default) with fresh pages, so a
step whose scratch exceeds it page-faults every page it touches on every
call, dense Adam included once the model is large enough. The mask-update
loop's scratch counts even on steps that skip it: on the medium MLP (dense
7.6 MB) SET, MEST, SRigL and SNFS are past it (46-83 MB, steady steps
1.7-3.0x), RigL and magnitude pruning just under it (31-32 MB, 1.2x).
``MALLOC_MMAP_THRESHOLD_=1073741824`` in the environment removes the faults.

Run: ``python benchmarks/overhead.py [--quick] [--models small,medium]``
"""

import argparse
import pathlib
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import _training  # noqa: E402  (examples/_training.py)
import methods  # noqa: E402  (examples/methods.py)

NEVER = 10**9
SPARSITY = 0.9


def adam_in_loop(inner: optax.GradientTransformation,
                 update_every: int) -> optax.GradientTransformation:
  """Dense ``inner`` whose step runs in a loop of one (traced) trip.

  A reference row, not a sparsity method: RigL skips the inner step on a
  mask-update step, and an exact skip of an opaque optimizer puts its step
  under control flow. XLA then writes the updates out of the loop and reads
  them back in ``apply_updates`` instead of fusing them into it, so this row
  is the floor of any such skip on this backend.
  """
  del update_every

  def init_fn(params):
    return inner.init(params), jnp.zeros([], jnp.int32)

  def update_fn(grads, state, params=None):
    inner_state, count = state

    def body(_, carry):
      inner_state, buf = carry
      updates, inner_state = inner.update(buf, inner_state, params)
      return inner_state, updates

    # count >= 0 always holds, but XLA cannot fold it away.
    trips = (count >= 0).astype(jnp.int32)
    inner_state, updates = jax.lax.fori_loop(0, trips, body,
                                             (inner_state, grads))
    return updates, (inner_state, count + 1)

  return optax.GradientTransformation(init_fn, update_fn)


def _method(name: str) -> Callable[..., optax.GradientTransformation]:
  """``(inner, update_every) ->`` the registry's ``name`` at 90 % sparsity.

  No run length: the drop-and-grow schedules never end, the gradual
  pruners hold the target from step 0.
  """
  return lambda inner, update_every: methods.make(
      name, inner, sparsity=SPARSITY, total_steps=NEVER,
      update_every=update_every, ramp_steps=0)


def _takes_sparsity(name: str) -> bool:
  """Whether the registry's ``name`` runs at :data:`SPARSITY` (N:M: no)."""
  try:
    methods.kwargs(name, sparsity=SPARSITY, total_steps=NEVER)
  except ValueError:
    return False
  return True


# name -> factory(inner, update_every) returning the transform: every method
# of the shared registry (examples/methods.py) that runs at 90 %, a
# global-scope magnitude row and the reference row.
METHODS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam_in_loop": adam_in_loop,
    **{name: _method(name) for name in methods.METHODS
       if _takes_sparsity(name)},
    "magnitude_global": lambda inner, update_every: methods.make(
        "magnitude", inner, sparsity=SPARSITY, total_steps=NEVER,
        update_every=update_every, ramp_steps=0, scope="global"),
}
# Rows without mask updates (their update column stays empty).
WITHOUT_UPDATES = {"static", "adam_in_loop"}

MODELS = {"small": (784, 300, 100, 10), "medium": (784, 1024, 1024, 10)}


def make_step(tx):
  def step(params, opt_state, x, y):
    grads = jax.grad(_training.mlp_loss)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return jax.jit(step, donate_argnums=(0, 1))


def state_bytes(state) -> int:
  total = 0
  for leaf in jax.tree.leaves(state):
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    total += leaf.size * leaf.dtype.itemsize
  return total


class Runner:
  """One transform variant with its own params, state and compiled step."""

  def __init__(self, tx, params, batches):
    self.step = make_step(tx)
    self.params = jax.tree.map(jnp.copy, params)
    self.state = tx.init(self.params)
    self.bytes = state_bytes(self.state)
    x, y = batches[0]
    self.temp = self.step.lower(self.params, self.state, x, y).compile(
    ).memory_analysis().temp_size_in_bytes
    self.batches = batches
    self.i = 0

  def run(self, n: int) -> list[float]:
    times = []
    for _ in range(n):
      x, y = self.batches[self.i % len(self.batches)]
      self.i += 1
      start = time.perf_counter()
      self.params, self.state = self.step(self.params, self.state, x, y)
      jax.block_until_ready(self.params)
      times.append(time.perf_counter() - start)
    return times


def interleaved_ratios(runners: dict, repeats: int, steps: int
                       ) -> tuple[dict[str, list[float]], list[float]]:
  """Per variant, its median step time over ``runners["dense"]``'s.

  Every repeat runs each variant for ``steps`` steps (``runner.run(steps)``
  returns their times), in a fresh random order, so that a slow spell of
  the machine does not always fall on the same variants. Returns the ratios
  of every repeat and dense's median milliseconds of every repeat.
  """
  ratios = {name: [] for name in runners}
  dense_ms = []
  order = np.random.default_rng(0)
  for _ in range(repeats):
    names = list(order.permutation(list(runners)))
    medians = {name: float(np.median(runners[name].run(steps)))
               for name in names}
    dense_ms.append(medians["dense"] * 1e3)
    for name, t in medians.items():
      ratios[name].append(t / medians["dense"])
  return ratios, dense_ms


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="small,medium")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--quick", action="store_true",
                      help="small model, 2 repeats, 20 steps")
  parser.add_argument("--amortize", type=int, default=100)
  args = parser.parse_args()
  if args.quick:
    args.models, args.repeats, args.steps = "small", 2, 20
  methods = [m for m in args.methods.split(",") if m]
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch 128, "
        f"sparsity {SPARSITY}; {args.repeats} repeats x {args.steps} steps")
  for model in args.models.split(","):
    sizes = MODELS[model]
    params = _training.mlp_params(sizes)
    rng = np.random.default_rng(0)
    batches = [(jnp.asarray(rng.normal(size=(128, sizes[0])), jnp.float32),
                jnp.asarray(rng.integers(0, sizes[-1], 128)))
               for _ in range(8)]
    inner = optax.adam(1e-3)
    runners = {"dense": Runner(inner, params, batches)}
    for m in methods:
      runners[m + "/steady"] = Runner(METHODS[m](inner, NEVER), params,
                                      batches)
      if m not in WITHOUT_UPDATES:
        runners[m + "/update"] = Runner(METHODS[m](inner, 1), params, batches)
    for r in runners.values():  # compile, and pass the first (update) step
      r.run(3)
    ratios, dense_ms = interleaved_ratios(runners, args.repeats, args.steps)
    dense = float(np.median(dense_ms))
    dense_bytes = runners["dense"].bytes
    print(f"\n{model} MLP {'-'.join(map(str, sizes))}: dense Adam "
          f"{dense:.2f} ms/step, optimizer state {dense_bytes:,} bytes, "
          f"temp {runners['dense'].temp / 2**20:.1f} MB")
    header = (f"{'method':<18}{'steady':>9}{'update':>9}"
              f"{'amort/' + str(args.amortize):>12}{'state':>8}"
              f"{'steady ms':>11}{'update ms':>11}{'temp MB':>9}")
    print(header)
    print("-" * len(header))
    for m in methods:
      steady = float(np.median(ratios[m + "/steady"]))
      row = f"{m:<18}{steady:>9.3f}"
      if m + "/update" in ratios:
        update = float(np.median(ratios[m + "/update"]))
        f = args.amortize
        amort = ((f - 1) * steady + update) / f
        row += f"{update:>9.2f}{amort:>12.3f}"
      else:
        update = None
        row += f"{'-':>9}{'-':>12}"
      row += f"{runners[m + '/steady'].bytes / dense_bytes:>8.3f}"
      row += f"{steady * dense:>11.2f}"
      row += f"{update * dense:>11.2f}" if update else f"{'-':>11}"
      row += f"{runners[m + '/steady'].temp / 2**20:>9.1f}"
      print(row)


if __name__ == "__main__":
  main()
