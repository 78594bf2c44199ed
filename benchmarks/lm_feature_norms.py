# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""How unequal the projection inputs' feature norms are in a trained LM.

Wanda scores a weight by ``|W_ij| * ||X_j||``: it differs from magnitude
pruning only as far as the input features' norms ``||X_j||`` differ. In
large language models a few features are 10-100x larger than the rest
(Dettmers et al. 2022), which is where Wanda gains. This prints, for every
projection input of a checkpoint of ``examples/lm.py`` and every layer, the
coefficient of variation of the per-feature norms over calibration windows
of training text and the largest norm over the median one.

Run: ``python benchmarks/lm_feature_norms.py --from runs/lm_dense_0_ckpt``
"""

import argparse
import pathlib
import sys

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm  # noqa: E402
import lm_model  # noqa: E402
import text_data  # noqa: E402


def feature_norm_spread(model, windows) -> dict[str, list[tuple]]:
  """``{group: [(cv, max / median) per layer]}`` of the input norms."""
  lm_model.set_activation_sparsity(model, None)
  collected = [model(jnp.asarray(w), collect=True)[1] for w in windows]
  out = {}
  for group in collected[0]:
    x = np.concatenate([np.asarray(c[group], np.float32) for c in collected],
                       axis=1)  # [layers, tokens..., *features]
    features = int(np.prod(x.shape[3:]))
    rows = []
    for layer in x:
      norms = np.linalg.norm(layer.reshape(-1, features), axis=0)
      rows.append((norms.std() / norms.mean(),
                   norms.max() / np.median(norms)))
    out[group] = rows
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--from", dest="from_", required=True)
  parser.add_argument("--batches", type=int, default=4)
  args = parser.parse_args(argv)
  model = lm.load_checkpoint(args.from_)
  data = text_data.load_text(verbose=False)
  rng = np.random.default_rng(0)
  windows = [text_data.sample_batch(data.train, rng, batch_size=16,
                                    seq_len=model.cfg.seq_len)[:, :-1]
             for _ in range(args.batches)]
  print("| input | CV of feature norms, per layer | max / median, per layer |")
  print("|---|---|---|")
  for group, rows in feature_norm_spread(model, windows).items():
    print(f"| {group} | " + ", ".join(f"{cv:.2f}" for cv, _ in rows)
          + " | " + ", ".join(f"{r:.1f}" for _, r in rows) + " |")


if __name__ == "__main__":
  main()
