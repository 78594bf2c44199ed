# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The README's quick start runs as written, and its commands match CI's."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quick_start_runs(capsys):
  blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
  assert blocks
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "total" in out  # the summarize table was printed


def test_test_command_is_the_one_ci_runs():
  ci = (ROOT / ".ci" / "run").read_text()
  assert "TEST_CMD=(python -m pytest -n 2)" in ci
  assert ".venv/bin/python -m pytest -n 2" in README
  assert "examples/fashion_mnist.py" in README.split("## Quick start")[0]
