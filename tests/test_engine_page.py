# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The worked example of docs/engine.md runs and checks what it claims."""

import pathlib
import re

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def test_writing_a_method_example_runs():
  text = (DOCS / "engine.md").read_text()
  blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
            if "def greedy" in b]
  assert len(blocks) == 1
  # The block asserts the budgets, the exact zeros and that masks changed.
  exec(compile(blocks[0], "engine.md", "exec"), {"__name__": "engine_md"})  # pylint: disable=exec-used


def test_every_profile_is_in_the_table():
  import sparsejax as sj  # pylint: disable=g-import-not-at-top
  from sparsejax import _method  # pylint: disable=g-import-not-at-top
  text = (DOCS / "engine.md").read_text()
  for profile in _method.PROFILES:
    assert f'| `"{profile}"` |' in text, profile
  assert sj.Method is _method.Method
