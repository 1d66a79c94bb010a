"""A succeeded job's result files, written by the API from what the trainer reported.

`step_metrics.csv` is built from the job's metrics events, not by the trainer: a job that resumed
from a checkpoint ran in several trainer processes, and only the API saw all of their steps.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any


def job_prefix(project_id: str, job_id: str) -> str:
    """Where a job's outputs live in storage: the trainer's output_prefix (model, checkpoints) and
    the result files."""
    return f"jobs/{project_id}/{job_id}/"


# OpenAI's five columns first, in their order; the full-validation columns after them.
STEP_COLUMNS = (
    ("step", "step"),
    ("train_loss", "train_loss"),
    ("train_accuracy", "train_mean_token_accuracy"),
    ("valid_loss", "valid_loss"),
    ("valid_mean_token_accuracy", "valid_mean_token_accuracy"),
    ("full_valid_loss", "full_valid_loss"),
    ("full_valid_mean_token_accuracy", "full_valid_mean_token_accuracy"),
)
EVALUATION_COLUMNS = ("model", "examples", "loss", "mean_token_accuracy", "exact_match")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{round(value, 5)}"
    return str(value)


def _csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue().encode()


def step_metrics_csv(metrics: Iterable[dict[str, Any]]) -> bytes:
    """One row per step, oldest first. A step reported twice (an attempt that crashed after it and
    resumed from an earlier checkpoint) keeps the later report, which is the run that finished."""
    by_step: dict[int, dict[str, Any]] = {}
    for data in metrics:
        if isinstance(data.get("step"), int):
            by_step[data["step"]] = data
    return _csv(
        (name for name, _ in STEP_COLUMNS),
        ([by_step[s].get(key) for _, key in STEP_COLUMNS] for s in sorted(by_step)),
    )


def evaluation_csv(base_model: str, tuned_model: str, evaluation: dict[str, dict[str, Any]]) -> bytes:
    """Base vs tuned on the validation file: the honest measure of what the fine-tune changed."""
    rows = []
    for model, which in ((base_model, "base"), (tuned_model, "tuned")):
        result = evaluation.get(which, {})
        rows.append([model, *(result.get(c) for c in EVALUATION_COLUMNS[1:])])
    return _csv(EVALUATION_COLUMNS, rows)
