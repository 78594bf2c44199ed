# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The documentation: API coverage, the Sphinx build, the quick start's code.

* Every name in the ``__all__`` of a public module has an autodoc entry on a
  ``docs/api/*.md`` page (a public submodule counts when it has a page of its
  own, and its own ``__all__`` is then checked too).
* ``sphinx-build -W`` (warnings are errors) succeeds, offline.
* Every ``python`` block of ``docs/quickstart.md`` runs, top to bottom, and
  so does the landing page's example.
* The site uses the Furo theme; every image the pages show exists and is
  small enough to commit (gallery figures are PNGs under 100 KB).

The docstring examples of the library run as doctests through pytest's
``--doctest-modules`` (pyproject.toml), so they are not repeated here.
"""

import contextlib
import importlib
import importlib.util
import io
import pathlib
import re
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_PAGES = DOCS / "api"

# The public modules whose `__all__` must be documented (those that exist).
PUBLIC_MODULES = (
    "sparsejax",
    "sparsejax.masks",
    "sparsejax.distributions",
    "sparsejax.nn",
    "sparsejax.activations",
    "sparsejax.moe",
    "pallas_kernels",
)

_DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(auto\w+|currentmodule|module|py:module|py:currentmodule)"
    r"::\s*(\S+)",
    re.MULTILINE,
)


class ApiPages(types.SimpleNamespace):
  """What the API pages document.

  Attributes:
    names: fully qualified names with an autodoc entry.
    modules: modules with a page of their own (an ``automodule``, ``module``
      or ``currentmodule`` directive).
  """


def read_api_pages(pages) -> ApiPages:
  """Collects the autodoc entries of markdown/rst pages."""
  names, modules = set(), set()
  for page in pages:
    current = None
    for match in _DIRECTIVE.finditer(pathlib.Path(page).read_text()):
      kind, target = match.group(1), match.group(2)
      if kind in ("currentmodule", "module", "py:module",
                  "py:currentmodule"):
        current = None if target == "None" else target
        if current:
          modules.add(current)
      elif kind == "automodule":
        modules.add(target)
        names.add(target)
      else:
        names.add(target)
        if current:
          names.add(f"{current}.{target}")
  return ApiPages(names=names, modules=modules)


def _resolve(qualname):
  """The object named `qualname` (a module or a module attribute), or None."""
  parts = qualname.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    try:
      for attr in parts[i:]:
        obj = getattr(obj, attr)
    except AttributeError:
      return None
    return obj
  return None


def _is_identifiable(obj):
  """Objects safe to match by identity (not ints, strings, ...)."""
  return isinstance(obj, (types.FunctionType, types.ModuleType, type)) or (
      callable(obj) and not isinstance(obj, (int, float, str, bytes, tuple)))


def undocumented(module_names, pages: ApiPages):
  """Public names (``module.name``) without an entry on the API pages.

  A name counts as documented when its fully qualified name has an entry, or
  when the same function/class is documented under another public path (a
  re-export). A public submodule counts when it has a page of its own; its
  ``__all__`` is then checked too.
  """
  documented_ids = set()
  for name in pages.names:
    obj = _resolve(name)
    if obj is not None and _is_identifiable(obj):
      documented_ids.add(id(obj))

  missing = []
  seen = set()
  queue = list(module_names)
  while queue:
    module_name = queue.pop(0)
    if module_name in seen:
      continue
    seen.add(module_name)
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", ()):
      qualname = f"{module_name}.{name}"
      if not hasattr(module, name):
        missing.append(f"{qualname} (in __all__ but not defined)")
        continue
      obj = getattr(module, name)
      if isinstance(obj, types.ModuleType):
        if obj.__name__ in pages.modules or qualname in pages.modules:
          queue.append(obj.__name__)
        else:
          missing.append(f"{qualname} (a submodule without a page)")
        continue
      if qualname in pages.names:
        continue
      if _is_identifiable(obj) and id(obj) in documented_ids:
        continue
      missing.append(qualname)
  return missing


def _existing_modules():
  present = []
  for name in PUBLIC_MODULES:
    try:
      spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
      spec = None
    if spec is not None:
      present.append(name)
  return present


def test_every_public_name_is_documented():
  modules = _existing_modules()
  assert "sparsejax" in modules and "sparsejax.masks" in modules
  pages = read_api_pages(sorted(API_PAGES.glob("*.md")))
  missing = undocumented(modules, pages)
  assert not missing, (
      "public names without an autodoc entry in docs/api/*.md (add "
      "`.. autofunction:: name` / `.. autoclass:: name` under the module's "
      "`.. currentmodule::`):\n  " + "\n  ".join(missing))


def test_coverage_check_reports_missing_names(tmp_path, monkeypatch):
  # A throwaway package: `pkg` exports a function, a class, a constant and a
  # submodule; the page documents only some of them.
  pkg = tmp_path / "docs_cov_pkg"
  pkg.mkdir()
  (pkg / "__init__.py").write_text(
      "from docs_cov_pkg import sub\n"
      "from docs_cov_pkg.sub import g as g_alias\n"
      "def f(): pass\n"
      "class C: pass\n"
      "LIMIT = 3\n"
      "__all__ = ('f', 'C', 'LIMIT', 'sub', 'g_alias', 'ghost')\n")
  (pkg / "sub.py").write_text(
      "def g(): pass\n"
      "def h(): pass\n"
      "__all__ = ('g', 'h')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  page = tmp_path / "page.md"
  page.write_text(
      "# docs_cov_pkg\n\n```{eval-rst}\n"
      ".. currentmodule:: docs_cov_pkg\n\n"
      ".. autofunction:: f\n"
      "```\n")
  missing = undocumented(["docs_cov_pkg"], read_api_pages([page]))
  assert sorted(missing) == sorted([
      "docs_cov_pkg.C",
      "docs_cov_pkg.LIMIT",
      "docs_cov_pkg.sub (a submodule without a page)",
      "docs_cov_pkg.g_alias",
      "docs_cov_pkg.ghost (in __all__ but not defined)",
  ])

  # A page for the submodule documents `g`, which also covers the re-export
  # `g_alias`; `h` is then reported, and a data entry covers LIMIT.
  sub_page = tmp_path / "sub.md"
  sub_page.write_text(
      "```{eval-rst}\n.. currentmodule:: docs_cov_pkg.sub\n\n"
      ".. autofunction:: g\n```\n")
  page.write_text(
      "```{eval-rst}\n.. currentmodule:: docs_cov_pkg\n\n"
      ".. autofunction:: f\n.. autoclass:: C\n   :members:\n"
      ".. autodata:: LIMIT\n```\n")
  missing = undocumented(["docs_cov_pkg"], read_api_pages([page, sub_page]))
  assert sorted(missing) == [
      "docs_cov_pkg.ghost (in __all__ but not defined)",
      "docs_cov_pkg.sub.h",
  ]


def test_api_index_picks_up_every_page():
  index = (API_PAGES / "index.md").read_text()
  assert ":glob:" in index and re.search(r"^\*$", index, re.MULTILINE)


def test_sphinx_build_warnings_as_errors(tmp_path):
  pytest.importorskip("sphinx")
  pytest.importorskip("myst_parser")
  cmd = [
      sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
      "-q", "-d", str(tmp_path / "doctrees"), str(DOCS),
      str(tmp_path / "html"),
  ]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, (
      f"sphinx-build failed ({result.returncode}):\n{result.stdout}\n"
      f"{result.stderr}")
  for page in ["index", "quickstart", "examples", "api/index"] + [
      f"api/{p.stem}" for p in API_PAGES.glob("*.md")]:
    assert (tmp_path / "html" / f"{page}.html").is_file(), page
  assert "furo" in (tmp_path / "html" / "index.html").read_text()


def test_images_exist_and_are_small():
  shown = set()
  for page in DOCS.rglob("*.md"):
    for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
      path = (page.parent / target).resolve()
      assert path.is_file(), f"{page.name} shows a missing image {target}"
      shown.add(path)
  assert len(shown) >= 2, shown  # the gallery has figures
  for path in shown:
    assert path.suffix == ".png", path
    assert path.stat().st_size < 100_000, (
        f"{path.name} is {path.stat().st_size} bytes; shrink it (dpi, or a "
        "palette PNG) below 100 KB")


def test_index_example_runs():
  blocks = _python_blocks((DOCS / "index.md").read_text())
  assert len(blocks) == 1
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(blocks[0], "index.md", "exec"), {"__name__": "index"})  # pylint: disable=exec-used
  printed = out.getvalue()
  assert "hidden/kernel" in printed and "total" in printed


def _python_blocks(markdown):
  return re.findall(r"^```python\n(.*?)^```", markdown,
                    re.MULTILINE | re.DOTALL)


def test_quickstart_code_runs():
  pytest.importorskip("flax")
  blocks = _python_blocks((DOCS / "quickstart.md").read_text())
  assert len(blocks) >= 5
  namespace = {"__name__": "quickstart"}
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    for i, block in enumerate(blocks):
      try:
        exec(compile(block, f"quickstart.md block {i}", "exec"), namespace)  # pylint: disable=exec-used
      except Exception as e:
        raise AssertionError(
            f"docs/quickstart.md python block {i} failed:\n{block}") from e
  printed = out.getvalue()
  # The summary table of the static-sparse MLP, then its rows.
  assert "dense0/kernel" in printed and "total" in printed
  # One-shot magnitude pruning at 0.8 after clipping, and the NNX model.
  assert "\n0.80\n" in printed
  assert "fc1 sparsity: 0.9" in printed
  kernel = namespace["params"]["dense0"]["kernel"]
  assert int((kernel != 0).sum()) == round(0.2 * kernel.size)
