# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""End-to-end tests of examples/fashion_mnist.py.

The fast tests run the example's ``main`` on scikit-learn's digits written as
IDX files (so the Fashion-MNIST code path is the one exercised) for one epoch
per method. The slow test trains on the real Fashion-MNIST for 10 epochs and
compares the sparse methods with the dense baseline.
"""

import gzip
import importlib.util
import json
import pathlib
import struct
import sys

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEBIAN = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _load_example():
  spec = importlib.util.spec_from_file_location(
      "sparsejax_examples_fashion_mnist", ROOT / "examples" / "fashion_mnist.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


example = _load_example()


def _write_idx(path, array):
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  path.write_bytes(gzip.compress(header + array.tobytes()))


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  """scikit-learn's digits as 8x8 IDX files: 1,437 train / 360 test."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  images = np.minimum(x * 16, 255).reshape(-1, 8, 8)
  directory = tmp_path_factory.mktemp("digits_idx")
  n_train = 1437
  _write_idx(directory / "train-images-idx3-ubyte.gz", images[:n_train])
  _write_idx(directory / "train-labels-idx1-ubyte.gz", y[:n_train])
  _write_idx(directory / "t10k-images-idx3-ubyte.gz", images[n_train:])
  _write_idx(directory / "t10k-labels-idx1-ubyte.gz", y[n_train:])
  return directory


def _kernel_rows(results):
  return {row["path"]: row for row in results["layers"]
          if len(row["shape"]) == 2}


@pytest.mark.parametrize("method", ["dense", "static", "magnitude"])
def test_example_runs_each_method(method, digits_dir, tmp_path, capsys):
  out = tmp_path / "out"
  results = example.main([
      "--method", method, "--sparsity", "0.9", "--epochs", "3",
      "--batch-size", "64", "--lr", "3e-3", "--data-dir", str(digits_dir),
      "--out", str(out), "--no-progress",
  ])
  printed = capsys.readouterr().out
  assert "test accuracy:" in printed and "total" in printed

  png = out / f"fashion_mnist_{method}.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((out / f"fashion_mnist_{method}.json").read_text())
  assert saved["test_accuracy"] == results["test_accuracy"]
  assert saved["num_train"] == 1437 and saved["num_test"] == 360
  assert len(saved["history"]["test_accuracy"]) == 4  # initial + 3 epochs
  # Ten balanced classes, 10 % by chance: three short epochs (66 steps)
  # reach about 0.88 (sparse) to 0.93 (dense).
  assert results["test_accuracy"] > 0.6, results["test_accuracy"]

  kernels = _kernel_rows(results)
  assert [tuple(r["shape"]) for r in kernels.values()] == [
      (64, 300), (300, 100), (100, 10)]
  # The per-epoch densities are measured on the weights themselves; they
  # must agree with the summary's counts.
  final = results["history"]["densities"][-1]
  assert sorted(final) == sorted(kernels)
  for path, row in kernels.items():
    assert final[path] == pytest.approx(row["nnz"] / row["size"])

  total = sum(r["size"] for r in kernels.values())
  nnz = sum(r["nnz"] for r in kernels.values())
  if method == "dense":
    assert nnz == total
  elif method == "static":
    # ERK (no layer needs promoting to dense here): density of an n_in x
    # n_out kernel = eps * (n_in + n_out) / (n_in * n_out), with eps set so
    # that 10 % of all kernel weights are kept.
    eps = 0.1 * total / sum(sum(r["shape"]) for r in kernels.values())
    for row in kernels.values():
      assert abs(row["nnz"] - eps * sum(row["shape"])) <= 1, (row, eps)
    # Static: the masks at the end are those of the start.
    assert results["history"]["densities"][0] == final
  else:
    # Uniform: every kernel ends at 90 % sparsity (nnz rounded per layer).
    for row in kernels.values():
      assert abs(row["nnz"] - 0.1 * row["size"]) <= 1, row


def test_method_table_and_bad_arguments():
  assert set(example.METHODS) >= {"dense", "static", "magnitude"}
  with pytest.raises(ValueError, match="method"):
    example.make_optimizer("nope", lr=1e-3, sparsity=0.9, total_steps=10,
                           seed=0)
  with pytest.raises(SystemExit):
    example.parse_args(["--sparsity", "1.0"])
  with pytest.raises(SystemExit):
    example.parse_args(["--method", "nope"])


def test_magnitude_update_interval():
  assert example.magnitude_update_every(10_000) == 100
  assert example.magnitude_update_every(30) == 1


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_accuracies(tmp_path):
  accuracies = {}
  for method in ("dense", "static", "magnitude"):
    results = example.main([
        "--method", method, "--sparsity", "0.9", "--epochs", "10",
        "--data-dir", str(DEBIAN), "--out", str(tmp_path), "--no-progress"])
    assert results["dataset"] == "fashion_mnist"
    accuracies[method] = results["test_accuracy"]
  print(accuracies)
  # A dense LeNet-300-100 with Adam reaches about 88-89 % in 10 epochs.
  assert 0.875 <= accuracies["dense"] <= 0.91, accuracies
  # Gradual magnitude pruning to 90 % keeps close to dense; a fixed random
  # mask at 90 % costs more.
  assert accuracies["magnitude"] >= accuracies["dense"] - 0.015, accuracies
  assert accuracies["static"] >= accuracies["dense"] - 0.035, accuracies
