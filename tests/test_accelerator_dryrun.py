# Copyright 2026 The sparsejax Authors. Licensed under the Apache License 2.0.
"""The accelerator script (benchmarks/accelerator.py) as a CPU dry run.

On CPU the script runs every check with the XLA implementations at tiny
shapes and each training / decode step once, without timing, so that it
cannot rot between loans of an accelerator. Any failed check or any part that
raises fails this test.
"""

import importlib.util
import json
import pathlib

import jax
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / (
    "accelerator.py")


@pytest.fixture(scope="module")
def accelerator():
  spec = importlib.util.spec_from_file_location("accelerator", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# About a minute on two CPU cores (every device check, interpreted): slow.
@pytest.mark.slow
def test_dry_run_passes_every_check(accelerator, tmp_path):
  assert jax.default_backend() == "cpu"
  out = tmp_path / "accelerator.json"
  result = accelerator.run(dry_run=True, out=str(out))
  assert result["errors"] == []
  assert result["failed"] == 0
  kernels = {c["kernel"] for c in result["checks"]}
  assert {"block_sparse_matmul", "gmm", "tgmm", "sparse_input_matmul",
          "decode stack"} <= kernels
  assert {c["impl"] for c in result["checks"]
          if c["kernel"] != "train step"} == {"xla"}
  assert {c["dtype"] for c in result["checks"]} == {"float32", "bfloat16"}
  assert json.loads(out.read_text())["failed"] == 0
  # No timing in a dry run: only the loss row of the training part.
  assert all("ms" not in t for t in result["timings"])


def test_a_wrong_result_fails_the_run(accelerator, monkeypatch):
  import pallas_kernels
  real = pallas_kernels.gmm

  def wrong(*args, **kwargs):
    return real(*args, **kwargs) * 1.5

  monkeypatch.setattr(pallas_kernels, "gmm", wrong)
  report = accelerator.Report(accelerator.device_info(), dry_run=True)
  accelerator.check_gmm(report, dry_run=True)
  assert report.failed
  monkeypatch.setitem(accelerator.PARTS, "checks", [accelerator.check_gmm])
  assert accelerator.main(["--dry-run", "--parts", "checks", "--out", ""]) == 1


def test_a_raising_part_is_reported_and_the_rest_runs(accelerator,
                                                      monkeypatch):
  def boom(report, dry_run):
    raise RuntimeError("boom")

  monkeypatch.setitem(accelerator.PARTS, "checks",
                      [boom, accelerator.check_block_sparse])
  result = accelerator.run(dry_run=True, parts=("checks",))
  assert [e["error"] for e in result["errors"]] == ["RuntimeError: boom"]
  assert result["checks"] and result["failed"] == 0
