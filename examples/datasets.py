# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Fashion-MNIST for the examples, found offline where possible.

:func:`load_fashion_mnist` looks for the four IDX files of Fashion-MNIST
(Xiao, Rasul and Vollgraf, 2017; MIT licence) in this order:

1. the ``data_dir`` argument;
2. the directory named by the environment variable ``SPARSEJAX_DATA_DIR``;
3. ``/usr/share/datasets/fashion-mnist/``, where Debian's package
   ``dataset-fashion-mnist`` installs them (``apt-get install -y
   dataset-fashion-mnist``);
4. a cache directory (``$XDG_CACHE_HOME/sparsejax/fashion-mnist`` or
   ``~/.cache/sparsejax/fashion-mnist``), filled by
5. a download from the dataset's official source, when a network exists;
   every downloaded file is checked against the SHA-256 of its decompressed
   content before it is kept.

When all of these fail it falls back to scikit-learn's bundled digits
(1,797 images of 8x8 pixels, so ``D = 64``), says so, and lists what it tried.
Models must therefore take their input width from the data.

Each directory may hold the files gzipped (``*-ubyte.gz``, as distributed) or
decompressed (``*-ubyte``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import sys
import tempfile
import urllib.error
import urllib.request
from typing import NamedTuple

import numpy as np

ENV_VAR = "SPARSEJAX_DATA_DIR"
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
# The dataset's own distribution point, as given in its README
# (github.com/zalandoresearch/fashion-mnist, "Get the Data").
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT_S = 10.0

# Field of `Dataset` -> file stem.
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the decompressed IDX files. The gzip archives themselves differ
# between distributors (Debian recompressed them), the content does not: these
# are the hashes of both the official archives' and Debian's content.
RAW_SHA256 = {
    "train-images-idx3-ubyte":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# SHA-256 of the gzip files shipped by Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (research notes, section 9.1).
DEBIAN_GZ_SHA256 = {
    "train-images-idx3-ubyte":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class Dataset(NamedTuple):
  """A train/test split of flattened images.

  Attributes:
    x_train: ``float32 [N_train, D]`` in ``[0, 1]``.
    y_train: ``int32 [N_train]`` class ids.
    x_test: ``float32 [N_test, D]`` in ``[0, 1]``.
    y_test: ``int32 [N_test]`` class ids.
    name: ``"fashion_mnist"`` or ``"digits"`` (the fallback).
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  name: str

  def head(self, limit: int | None) -> "Dataset":
    """The first ``limit`` training and test examples (all of them if None)."""
    if limit is None:
      return self
    return self._replace(
        x_train=self.x_train[:limit], y_train=self.y_train[:limit],
        x_test=self.x_test[:limit], y_test=self.y_test[:limit])


class DownloadError(RuntimeError):
  """A download failed or did not match its expected SHA-256."""


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
  """Decodes an IDX file (the MNIST container format) into an array.

  Args:
    data: the whole file, decompressed.
    source: a name for error messages.

  Returns:
    An array with the file's shape and element type (native byte order).

  Raises:
    ValueError: when the header is malformed or the size does not match.
  """
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{source}: not an IDX file (bad magic number)")
  code, ndim = data[2], data[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{source}: unknown IDX element type 0x{code:02x}")
  if ndim == 0 or len(data) < 4 + 4 * ndim:
    raise ValueError(f"{source}: truncated IDX header")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  dtype = _IDX_DTYPES[code]
  offset = 4 + 4 * ndim
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(data) - offset != expected:
    raise ValueError(
        f"{source}: IDX header says shape {shape} ({expected} bytes of data) "
        f"but the file has {len(data) - offset} bytes of data"
    )
  array = np.frombuffer(data, dtype, offset=offset).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def _read_idx_file(path: pathlib.Path) -> bytes:
  if path.suffix == ".gz":
    with gzip.open(path, "rb") as f:
      return f.read()
  return path.read_bytes()


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
  for name in (stem + ".gz", stem):
    if (directory / name).is_file():
      return directory / name
  return None


def _images_and_labels(images, labels, source):
  if images.ndim < 2:
    raise ValueError(f"{source}: images must have a sample axis and pixels")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise ValueError(
        f"{source}: {images.shape[0]} images but labels of shape "
        f"{labels.shape}"
    )
  if images.dtype != np.uint8:
    raise ValueError(f"{source}: images must be uint8, got {images.dtype}")
  x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
  return x, labels.astype(np.int32)


def _load_dir(directory: pathlib.Path) -> Dataset:
  """Loads the four files from `directory`; FileNotFoundError if absent."""
  paths = {}
  missing = []
  for field, stem in FILES.items():
    path = _find_file(directory, stem)
    if path is None:
      missing.append(stem)
    paths[field] = path
  if missing:
    raise FileNotFoundError("missing " + ", ".join(f"{m}[.gz]" for m in missing))
  arrays = {
      field: parse_idx(_read_idx_file(path), source=str(path))
      for field, path in paths.items()
  }
  x_train, y_train = _images_and_labels(
      arrays["x_train"], arrays["y_train"], str(directory)
  )
  x_test, y_test = _images_and_labels(
      arrays["x_test"], arrays["y_test"], str(directory)
  )
  return Dataset(x_train, y_train, x_test, y_test, "fashion_mnist")


def default_cache_dir() -> pathlib.Path:
  """The directory where downloads are kept."""
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "sparsejax" / "fashion-mnist"


def _download_verified(url, destination, raw_sha256, timeout):
  """Fetches `url` to `destination` if its content has SHA-256 `raw_sha256`.

  The hash is taken over the decompressed bytes; nothing is left at
  `destination` unless it matches.
  """
  destination.parent.mkdir(parents=True, exist_ok=True)
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
      payload = response.read()
  except (urllib.error.URLError, OSError, ValueError) as e:
    raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from e
  try:
    content = gzip.decompress(payload)
  except (OSError, EOFError) as e:
    raise DownloadError(f"{url}: not a gzip file ({e})") from e
  digest = hashlib.sha256(content).hexdigest()
  if digest != raw_sha256:
    raise DownloadError(
        f"{url}: SHA-256 of the content is {digest}, expected {raw_sha256}"
    )
  # Write then rename, so that an interrupted download leaves nothing behind.
  fd, tmp = tempfile.mkstemp(dir=destination.parent, suffix=".part")
  with os.fdopen(fd, "wb") as f:
    f.write(payload)
  os.replace(tmp, destination)


def _download_all(base_url, cache_dir, timeout):
  for stem in FILES.values():
    destination = cache_dir / (stem + ".gz")
    if destination.is_file():
      continue
    _download_verified(base_url + stem + ".gz", destination, RAW_SHA256[stem],
                       timeout)


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """scikit-learn's bundled digits (8x8, ``D = 64``), split per class.

  Args:
    test_fraction: share of each class held out for the test set.
    seed: seed of the per-class shuffle.

  Returns:
    A :class:`Dataset` named ``"digits"`` with pixels scaled to ``[0, 1]``.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  x, y = load_digits(return_X_y=True)
  rng = np.random.default_rng(seed)
  train_idx, test_idx = [], []
  for label in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == label))
    n_test = int(round(test_fraction * idx.size))
    test_idx.append(idx[:n_test])
    train_idx.append(idx[n_test:])
  train_idx = np.sort(np.concatenate(train_idx))
  test_idx = np.sort(np.concatenate(test_idx))
  x = (x / 16.0).astype(np.float32)
  y = y.astype(np.int32)
  return Dataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx],
                 "digits")


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    verbose: bool = True,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    fallback: bool = True,
) -> Dataset:
  """Loads Fashion-MNIST, or scikit-learn's digits when it cannot be found.

  Args:
    data_dir: a directory holding the four IDX files (``.gz`` or not); tried
      first.
    verbose: print where the data came from (to stderr).
    download: try the official source when the files are nowhere local.
    cache_dir: where downloads go (default :func:`default_cache_dir`).
    fallback: return the digits when Fashion-MNIST cannot be had; if False,
      raise instead.

  Returns:
    A :class:`Dataset`: 60,000 + 10,000 images with ``D = 784`` named
    ``"fashion_mnist"``, or the digits (``D = 64``) named ``"digits"``.

  Raises:
    FileNotFoundError: when nothing worked and ``fallback`` is False; the
      message lists every place tried and why it failed.
    ValueError: when a file exists but is not a valid IDX file.
  """
  tried = []

  def attempt(label, directory):
    try:
      data = _load_dir(directory)
    except FileNotFoundError as e:
      tried.append(f"{label} {directory}: {e}")
      return None
    if verbose:
      for failure in tried:
        if failure.startswith(("data_dir ", f"${ENV_VAR} ")):
          print(f"Fashion-MNIST: skipped {failure}", file=sys.stderr)
      print(f"Fashion-MNIST: loaded from {directory} ({label})",
            file=sys.stderr)
    return data

  candidates = []
  if data_dir is not None:
    candidates.append(("data_dir", pathlib.Path(data_dir)))
  else:
    tried.append("data_dir: not given")
  env_dir = os.environ.get(ENV_VAR)
  if env_dir:
    candidates.append((f"${ENV_VAR}", pathlib.Path(env_dir)))
  else:
    tried.append(f"${ENV_VAR}: not set")
  candidates.append(("Debian dataset-fashion-mnist", DEBIAN_DIR))
  cache = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
  candidates.append(("download cache", cache))

  for label, directory in candidates:
    data = attempt(label, directory)
    if data is not None:
      return data

  if download:
    if verbose:
      print(f"Fashion-MNIST: downloading from {BASE_URL} into {cache}",
            file=sys.stderr)
    try:
      _download_all(BASE_URL, cache, DOWNLOAD_TIMEOUT_S)
    except (DownloadError, OSError) as e:
      tried.append(f"download from {BASE_URL}: {e}")
    else:
      data = attempt("downloaded", cache)
      if data is not None:
        return data
  else:
    tried.append("download: disabled")

  message = (
      "Fashion-MNIST was not found. Tried:\n"
      + "".join(f"  - {t}\n" for t in tried)
      + "Install it with `apt-get install -y dataset-fashion-mnist`, or pass "
      f"a directory with the IDX files (data_dir / ${ENV_VAR})."
  )
  if not fallback:
    raise FileNotFoundError(message)
  if verbose:
    print(
        message + "\nFalling back to scikit-learn's digits (1,797 images of "
        "8x8 pixels, D = 64): accuracies are NOT Fashion-MNIST numbers.",
        file=sys.stderr,
    )
  return load_digits_split()
