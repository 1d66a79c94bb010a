"""bench/gpu_train.py must not rot: its CPU variant (--tiny) runs both sides and reports every figure.
Only the report's structure is checked, never times. Slow (two short training runs)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
FIGURES = {"tokens_per_second", "train_seconds", "peak_memory_mb", "mfu", "train_loss"}


def test_the_tiny_cpu_variant_reports_both_sides() -> None:
    # --peak-tflops: a CPU has no entry in the GPU table; with a stated peak, MFU is computed too.
    command = ["-m", "bench.gpu_train", "--tiny", "--examples", "12", "--peak-tflops", "1", "--json"]
    done = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["device"] == "cpu" and report["peak_tflops"] == 1 and report["examples"] == 12
    tiny = report["shapes"]["tiny"]
    assert tiny["parameters"] > 0 and tiny["mean_tokens_per_example"] > 10
    for side in ("baseline", "ours"):
        figures = tiny[side]
        assert set(figures) == FIGURES
        assert figures["tokens_per_second"] > 0 and figures["train_seconds"] > 0
        assert figures["peak_memory_mb"] is None  # GPU memory only
        assert 0 < figures["mfu"] < 1 and math.isfinite(figures["train_loss"])
    assert tiny["tokens_per_second_ratio"] > 0
    lines = done.stdout.splitlines()
    assert any(line.startswith("tiny") and "ours / baseline tokens/s" in line for line in lines)
