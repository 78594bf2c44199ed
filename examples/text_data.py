# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Byte-level English text for the language-model example, found offline.

:func:`load_text` reads a folder of text files and splits it **by file** into
train / validation / test. It looks, in this order, at:

1. the ``data_dir`` argument (``--data-dir``);
2. the directory named by the environment variable ``SPARSEJAX_TEXT_DIR``;
3. the reStructuredText sources of the Python documentation that Debian's
   ``python3-doc`` installs (``/usr/share/doc/python3*/html/_sources/``,
   about 11 MB of English prose in ``*.rst.txt`` files; ``apt-get install -y
   python3-doc``);
4. the running interpreter's own standard-library sources (``*.py`` under
   ``sysconfig.get_paths()["stdlib"]``), which are always present. This is
   code, not prose: bits per byte measured on it are NOT comparable with
   those on the documentation, and the loader says so.

The split rule is fixed and documented so that every run and every machine
agree: a file goes to validation when the first 8 bytes of the SHA-256 of its
path relative to the data folder (``/``-separated, UTF-8), read as a
big-endian integer, are 90 to 94 modulo 100, to test when 95 to 99, and to
train otherwise (about 90 / 5 / 5 % of the files). Files are read as bytes,
sorted by relative path within a split, and joined with one ``\\n`` each; the
tokens are the bytes (vocabulary 256), so no tokenizer is needed.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pathlib
import sys
import sysconfig
from typing import NamedTuple

import numpy as np

ENV_VAR = "SPARSEJAX_TEXT_DIR"
DEBIAN_GLOB = "/usr/share/doc/python3*/html/_sources"
VOCAB_SIZE = 256
# Files taken from a folder given by the user (and from the Debian one).
TEXT_SUFFIXES = (".txt", ".rst", ".md", ".py")
SPLITS = ("train", "validation", "test")


class TextData(NamedTuple):
  """Byte tokens of the three splits.

  Attributes:
    train: ``uint8 [N_train]`` byte tokens.
    validation: ``uint8 [N_val]``.
    test: ``uint8 [N_test]``.
    source: the folder the text came from.
    name: ``"python-docs"``, ``"stdlib-py"`` (the fallback) or ``"custom"``.
    files: number of files per split, ``{"train": n, ...}``.
  """

  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  source: str
  name: str
  files: dict


def split_of(relative_path: str) -> str:
  """The split a file belongs to, from its ``/``-separated relative path.

  Examples:
    >>> [split_of(p) for p in ("library/functions.rst.txt", "bugs.rst.txt",
    ...                        "c-api/memory.rst.txt")]
    ['train', 'validation', 'test']
  """
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  bucket = int.from_bytes(digest[:8], "big") % 100
  if bucket >= 95:
    return "test"
  if bucket >= 90:
    return "validation"
  return "train"


def _text_files(root: pathlib.Path, suffixes) -> list[pathlib.Path]:
  return sorted(p for p in root.rglob("*")
                if p.is_file() and p.name.endswith(suffixes)
                and "site-packages" not in p.parts)


def load_dir(root: str | os.PathLike, *, suffixes=TEXT_SUFFIXES,
             name: str = "custom") -> TextData:
  """Reads every text file under ``root`` and splits it by file.

  Args:
    root: the folder.
    suffixes: file name endings to read.
    name: the :attr:`TextData.name` to give.

  Returns:
    A :class:`TextData`.

  Raises:
    FileNotFoundError: when ``root`` holds no such file, or one of the three
      splits would be empty.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(f"{root} is not a directory")
  files = _text_files(root, tuple(suffixes))
  if not files:
    raise FileNotFoundError(
        f"{root} holds no file ending in {', '.join(suffixes)}")
  parts = {s: [] for s in SPLITS}
  for path in files:
    parts[split_of(path.relative_to(root).as_posix())].append(path)
  empty = [s for s in SPLITS if not parts[s]]
  if empty:
    raise FileNotFoundError(
        f"{root}: only {len(files)} files, the {'/'.join(empty)} split would "
        "be empty (the split is by file; give a folder with more files)")
  arrays = {}
  for split, paths in parts.items():
    blob = b"\n".join(p.read_bytes() for p in paths) + b"\n"
    arrays[split] = np.frombuffer(blob, np.uint8)
  return TextData(arrays["train"], arrays["validation"], arrays["test"],
                  str(root), name, {s: len(parts[s]) for s in SPLITS})


def debian_dir(pattern: str = DEBIAN_GLOB) -> pathlib.Path | None:
  """The first folder matching ``pattern`` that holds ``*.rst.txt`` files.

  Debian installs the same folder under several names (symbolic links for
  ``python3``, ``python3.11``, ``python3-doc``...); they are resolved and
  the first real one is taken.
  """
  for candidate in sorted(glob.glob(pattern)):
    path = pathlib.Path(candidate).resolve()
    if path.is_dir() and next(path.rglob("*.rst.txt"), None) is not None:
      return path
  return None


def stdlib_dir() -> pathlib.Path:
  """The running interpreter's standard-library folder."""
  return pathlib.Path(sysconfig.get_paths()["stdlib"])


def load_text(data_dir: str | os.PathLike | None = None, *,
              verbose: bool = True, debian_glob: str = DEBIAN_GLOB,
              fallback: bool = True) -> TextData:
  """Loads the text corpus (see the module docstring for the search order).

  Args:
    data_dir: a folder of text files, tried first.
    verbose: print where the text came from (to stderr).
    debian_glob: where to look for Debian's ``python3-doc`` sources.
    fallback: use the interpreter's standard library when nothing else is
      found; if False, raise instead.

  Returns:
    A :class:`TextData`.

  Raises:
    FileNotFoundError: when ``data_dir`` or ``$SPARSEJAX_TEXT_DIR`` is given
      but unusable (a folder the user named is never silently skipped), or
      when nothing was found and ``fallback`` is False.
  """
  def say(message):
    if verbose:
      print(f"text data: {message}", file=sys.stderr)

  for label, value in (("data_dir", data_dir),
                       (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
    if value:
      try:
        data = load_dir(value)
      except FileNotFoundError as e:
        raise FileNotFoundError(f"{label}: {e}") from None
      say(f"loaded {data.files} files from {value} ({label})")
      return data

  found = debian_dir(debian_glob)
  if found is not None:
    data = load_dir(found, suffixes=(".rst.txt",), name="python-docs")
    say(f"loaded the Python documentation sources from {found} "
        f"({data.train.size + data.validation.size + data.test.size:,} "
        f"bytes, files per split {data.files})")
    return data

  message = (f"no Python documentation sources under {debian_glob} "
             "(apt-get install -y python3-doc), no data_dir, "
             f"${ENV_VAR} not set")
  if not fallback:
    raise FileNotFoundError(message)
  root = stdlib_dir()
  data = load_dir(root, suffixes=(".py",), name="stdlib-py")
  print(f"text data: {message}.\ntext data: FALLING BACK to this "
        f"interpreter's standard-library sources ({root}, *.py, files per "
        f"split {data.files}): bits per byte on Python code are NOT "
        "comparable with those on the documentation.", file=sys.stderr)
  return data


def sample_batch(tokens: np.ndarray, rng: np.random.Generator, *,
                 batch_size: int, seq_len: int) -> np.ndarray:
  """Random windows of ``seq_len + 1`` tokens (inputs and shifted targets).

  Args:
    tokens: a split, ``uint8 [N]``.
    rng: the NumPy generator that draws the window starts.
    batch_size: windows per batch.
    seq_len: the model's context length.

  Returns:
    ``int32 [batch_size, seq_len + 1]``: ``batch[:, :-1]`` are the inputs,
    ``batch[:, 1:]`` the targets.

  Examples:
    >>> import numpy as np
    >>> tokens = np.arange(100, dtype=np.uint8)
    >>> sample_batch(tokens, np.random.default_rng(0), batch_size=2,
    ...              seq_len=4).shape
    (2, 5)
  """
  if tokens.size < seq_len + 1:
    raise ValueError(f"tokens: {tokens.size} tokens, fewer than seq_len + 1 "
                     f"= {seq_len + 1}")
  starts = rng.integers(0, tokens.size - seq_len, size=batch_size)
  return np.stack([tokens[s:s + seq_len + 1] for s in starts]).astype(
      np.int32)


def eval_windows(tokens: np.ndarray, *, seq_len: int,
                 max_windows: int = 512) -> np.ndarray:
  """Fixed windows for a deterministic loss: evenly spaced over the split.

  Args:
    tokens: a split.
    seq_len: the model's context length.
    max_windows: at most this many windows (non-overlapping when the split
      is long enough).

  Returns:
    ``int32 [n, seq_len + 1]``, the same on every call.

  Examples:
    >>> import numpy as np
    >>> w = eval_windows(np.arange(50, dtype=np.uint8), seq_len=4,
    ...                  max_windows=3)
    >>> w[:, 0].tolist()
    [0, 22, 45]
  """
  span = seq_len + 1
  if tokens.size < span:
    raise ValueError(f"tokens: {tokens.size} tokens, fewer than seq_len + 1 "
                     f"= {span}")
  n = min(max_windows, max(1, tokens.size // span))
  starts = np.linspace(0, tokens.size - span, n).astype(np.int64)
  return np.stack([tokens[s:s + span] for s in starts]).astype(np.int32)


def decode(tokens) -> str:
  """Byte tokens to text (invalid UTF-8 replaced)."""
  return bytes(np.asarray(tokens, np.uint8).tolist()).decode(
      "utf-8", errors="replace")


def encode(text: str) -> np.ndarray:
  """Text to byte tokens, ``int32``."""
  return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
