# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""Sphinx configuration for the sparsejax documentation.

Build (from the repository root; warnings are errors, no network needed):

  sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

# Import the checkout, not an installed copy, so that the pages document the
# code next to them.
sys.path.insert(0, os.path.abspath(".."))

project = "sparsejax"
author = "The sparsejax Authors"
copyright = "2026, The sparsejax Authors"  # pylint: disable=redefined-builtin

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: `{eval-rst}` blocks carry the autodoc directives; `$...$` math and
# `:::` fences are handy in prose pages.
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# Google-style docstrings (Args:, Returns:, Examples:, References:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Render a class docstring's `Attributes:` as a field list, not as attribute
# entries: NamedTuple fields documented there and listed by `:members:` would
# otherwise be described twice (a warning, so an error here).
napoleon_use_ivar = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"show-inheritance": False}

# No intersphinx: the build must work offline, and intersphinx fetches its
# inventories over the network.

# Furo (the `docs` and `test` extras install it): a readable single-column
# page with a sidebar, a light and a dark mode, and code blocks and tables
# that scroll sideways instead of being cut at the right edge.
html_theme = "furo"
html_title = "sparsejax"
html_theme_options = {"navigation_with_keys": True}
# The gallery's figures live in `_static/` and are referenced as images, so
# Sphinx copies them itself; nothing else needs to be served as is.
html_static_path = []
