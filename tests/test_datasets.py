# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Tests of examples/datasets.py, the Fashion-MNIST loader of the examples."""

import gzip
import hashlib
import importlib.util
import pathlib
import struct

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_module():
  spec = importlib.util.spec_from_file_location(
      "sparsejax_examples_datasets", ROOT / "examples" / "datasets.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


datasets = _load_module()

STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _idx_bytes(array):
  """IDX encoding written independently of the loader: header then data."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim])
  header += b"".join(struct.pack(">I", d) for d in array.shape)
  return header + array.tobytes()


def _tiny_arrays(seed=0, n_train=12, n_test=5, rows=3, cols=4):
  rng = np.random.default_rng(seed)
  return {
      "x_train": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
      "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
      "x_test": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
      "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
  }


def _write(directory, arrays, *, compress=True):
  directory.mkdir(parents=True, exist_ok=True)
  for field, stem in STEMS.items():
    data = _idx_bytes(arrays[field])
    if compress:
      (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
    else:
      (directory / stem).write_bytes(data)
  return directory


def _check_matches(data, arrays):
  assert data.name == "fashion_mnist"
  for field in ("x_train", "x_test"):
    x = getattr(data, field)
    assert x.dtype == np.float32
    n = arrays[field].shape[0]
    expected = arrays[field].reshape(n, -1).astype(np.float64) / 255.0
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-7)
  for field in ("y_train", "y_test"):
    y = getattr(data, field)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, arrays[field])


@pytest.fixture
def isolated(monkeypatch, tmp_path):
  """No env var, no Debian files, no download, an empty cache."""
  monkeypatch.delenv(datasets.ENV_VAR, raising=False)
  monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "no-debian")
  monkeypatch.setattr(datasets, "BASE_URL",
                      (tmp_path / "no-server").as_uri() + "/")
  return tmp_path


def test_parse_idx_decodes_header_and_data():
  images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  np.testing.assert_array_equal(datasets.parse_idx(_idx_bytes(images)),
                                images)
  # A big-endian int32 file: header type 0x0C.
  values = np.array([1, -2, 70000], np.int32)
  data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3)
  data += struct.pack(">3i", *values)
  np.testing.assert_array_equal(datasets.parse_idx(data), values)


@pytest.mark.parametrize("data, match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "element type"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "3 bytes of data"),
])
def test_parse_idx_rejects_malformed_files(data, match):
  with pytest.raises(ValueError, match=match):
    datasets.parse_idx(data, source="bad.idx")


@pytest.mark.parametrize("compress", [True, False])
def test_loads_gzipped_and_raw_files_from_data_dir(isolated, compress):
  arrays = _tiny_arrays()
  directory = _write(isolated / "data", arrays, compress=compress)
  data = datasets.load_fashion_mnist(directory, verbose=False)
  _check_matches(data, arrays)
  assert data.x_train.shape == (12, 12)


def test_data_dir_comes_before_env_var(isolated, monkeypatch):
  first, second = _tiny_arrays(seed=1), _tiny_arrays(seed=2)
  first_dir = _write(isolated / "first", first)
  second_dir = _write(isolated / "second", second)
  monkeypatch.setenv(datasets.ENV_VAR, str(second_dir))
  _check_matches(datasets.load_fashion_mnist(first_dir, verbose=False),
                 first)
  _check_matches(datasets.load_fashion_mnist(verbose=False), second)


def test_env_var_comes_before_debian(isolated, monkeypatch):
  env_arrays, debian_arrays = _tiny_arrays(seed=3), _tiny_arrays(seed=4)
  monkeypatch.setenv(datasets.ENV_VAR, str(_write(isolated / "env",
                                                  env_arrays)))
  monkeypatch.setattr(datasets, "DEBIAN_DIR",
                      _write(isolated / "debian", debian_arrays))
  _check_matches(datasets.load_fashion_mnist(verbose=False), env_arrays)
  monkeypatch.delenv(datasets.ENV_VAR)
  _check_matches(datasets.load_fashion_mnist(verbose=False), debian_arrays)


def test_missing_data_dir_is_reported_then_next_source_used(isolated,
                                                            monkeypatch,
                                                            capsys):
  arrays = _tiny_arrays(seed=5)
  monkeypatch.setattr(datasets, "DEBIAN_DIR", _write(isolated / "deb", arrays))
  data = datasets.load_fashion_mnist(isolated / "nowhere")
  _check_matches(data, arrays)
  err = capsys.readouterr().err
  assert "skipped data_dir" in err and "nowhere" in err
  assert f"loaded from {isolated / 'deb'}" in err


def test_mismatched_image_and_label_counts_raise(isolated):
  arrays = _tiny_arrays()
  arrays["y_test"] = arrays["y_test"][:-1]
  directory = _write(isolated / "data", arrays)
  with pytest.raises(ValueError, match="5 images but labels of shape"):
    datasets.load_fashion_mnist(directory, verbose=False)


def test_falls_back_to_digits_and_says_what_was_tried(isolated, capsys):
  data = datasets.load_fashion_mnist(cache_dir=isolated / "cache")
  assert data.name == "digits"
  assert data.x_train.shape[1] == data.x_test.shape[1] == 64
  assert len(data.x_train) + len(data.x_test) == 1797
  assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
  assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
  # Every class is in both splits, in the proportions of the whole set.
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  _, y = load_digits(return_X_y=True)
  np.testing.assert_array_equal(
      np.bincount(data.y_train) + np.bincount(data.y_test), np.bincount(y))
  assert np.all(np.bincount(data.y_test) >= 30)
  err = capsys.readouterr().err
  for expected in ("Fashion-MNIST was not found", "data_dir: not given",
                   f"${datasets.ENV_VAR}: not set", "no-debian",
                   str(isolated / "cache"), "download from",
                   "scikit-learn's digits", "D = 64"):
    assert expected in err, expected


def test_no_fallback_raises_with_the_list_of_attempts(isolated, monkeypatch):
  monkeypatch.setenv(datasets.ENV_VAR, str(isolated / "env-dir"))
  with pytest.raises(FileNotFoundError) as info:
    datasets.load_fashion_mnist(isolated / "given", verbose=False,
                                download=False, cache_dir=isolated / "c",
                                fallback=False)
  message = str(info.value)
  for expected in (f"data_dir {isolated / 'given'}: missing",
                   f"${datasets.ENV_VAR} {isolated / 'env-dir'}: missing",
                   f"{isolated / 'no-debian'}: missing",
                   f"download cache {isolated / 'c'}: missing",
                   "download: disabled",
                   "apt-get install -y dataset-fashion-mnist"):
    assert expected in message, expected


def _serve(directory, arrays, monkeypatch):
  """Puts gzipped files in `directory` and points the loader's URL at it."""
  _write(directory, arrays)
  monkeypatch.setattr(datasets, "BASE_URL", directory.as_uri() + "/")
  hashes = {
      stem: hashlib.sha256(_idx_bytes(arrays[field])).hexdigest()
      for field, stem in STEMS.items()
  }
  monkeypatch.setattr(datasets, "RAW_SHA256", hashes)
  return hashes


def test_download_verifies_hashes_and_fills_the_cache(isolated, monkeypatch):
  arrays = _tiny_arrays(seed=6)
  _serve(isolated / "server", arrays, monkeypatch)
  cache = isolated / "cache"
  data = datasets.load_fashion_mnist(verbose=False, cache_dir=cache,
                                     fallback=False)
  _check_matches(data, arrays)
  assert sorted(p.name for p in cache.iterdir()) == sorted(
      stem + ".gz" for stem in STEMS.values())
  # The cache is now a source of its own.
  monkeypatch.setattr(datasets, "BASE_URL",
                      (isolated / "gone").as_uri() + "/")
  _check_matches(datasets.load_fashion_mnist(verbose=False, cache_dir=cache,
                                             fallback=False), arrays)


def test_download_with_a_wrong_hash_is_rejected(isolated, monkeypatch):
  arrays = _tiny_arrays(seed=7)
  hashes = _serve(isolated / "server", arrays, monkeypatch)
  bad = dict(hashes, **{STEMS["y_train"]: "0" * 64})
  monkeypatch.setattr(datasets, "RAW_SHA256", bad)
  cache = isolated / "cache"
  with pytest.raises(FileNotFoundError) as info:
    datasets.load_fashion_mnist(verbose=False, cache_dir=cache,
                                fallback=False)
  message = str(info.value)
  assert "train-labels-idx1-ubyte.gz: SHA-256 of the content is " in message
  assert hashes[STEMS["y_train"]] in message
  assert not (cache / "train-labels-idx1-ubyte.gz").exists()
  assert not list(cache.glob("*.part"))


def test_download_of_a_non_gzip_file_is_rejected(isolated, monkeypatch):
  arrays = _tiny_arrays(seed=8)
  server = isolated / "server"
  _serve(server, arrays, monkeypatch)
  (server / "train-images-idx3-ubyte.gz").write_bytes(b"<html>moved</html>")
  with pytest.raises(FileNotFoundError, match="not a gzip file"):
    datasets.load_fashion_mnist(verbose=False, cache_dir=isolated / "cache",
                                fallback=False)


DEBIAN = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(monkeypatch):
  monkeypatch.delenv(datasets.ENV_VAR, raising=False)
  for stem in STEMS.values():
    archive = (DEBIAN / (stem + ".gz")).read_bytes()
    assert hashlib.sha256(archive).hexdigest() == datasets.DEBIAN_GZ_SHA256[stem]
    content = gzip.decompress(archive)
    assert hashlib.sha256(content).hexdigest() == datasets.RAW_SHA256[stem]
  data = datasets.load_fashion_mnist(verbose=False, download=False,
                                     fallback=False)
  assert data.name == "fashion_mnist"
  assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000,
                                                                        784)
  assert data.x_train.dtype == np.float32 and data.y_test.dtype == np.int32
  assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
  np.testing.assert_array_equal(np.bincount(data.y_train), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(data.y_test), [1000] * 10)
