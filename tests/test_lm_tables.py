# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""examples/lm_tables.py: the table commands and their --tiny form."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]
                       / "examples"))
import lm_tables  # noqa: E402


def test_sparse_table_commands(capsys):
  lm_tables.main(["sparse", "--dry-run", "--steps", "100"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2 * (1 + 4 * 3)  # 2 seeds x (dense + 4 x 3)
  assert all("--steps 100" in line for line in lines)


# 140 s on the shared 2-core CPU (17 tiny lm.py runs): the slow tier.
@pytest.mark.slow
def test_activation_table_tiny(tmp_path):
  text = lm_tables.main(["activation", "--tiny", "--steps", "10",
                         "--val-windows", "8", "--out", str(tmp_path)])
  rows = [l for l in text.splitlines() if l.startswith("| activation")]
  assert len(rows) == 16
  assert (tmp_path / "table_activation.md").read_text().startswith("|")
  assert (tmp_path / "table_activation.png").stat().st_size > 0
