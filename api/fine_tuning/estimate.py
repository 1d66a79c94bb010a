"""Estimates before training (an ftapi extension; Mistral and Together have one) and while it runs.

Before: the tokens, steps and resolved `auto` hyperparameters a job would get, and how long it would
take at the throughput this deployment measured for that base model on its finished jobs (trained
tokens / time from the trainer's start to the job's end, the median of the last ones); "unknown"
without such history. While running: `estimated_finish` from the job's own progress events.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.catalogue import BaseModelEntry
from api.db.tables import FineTuningJobEventRow, FineTuningJobRow
from api.fine_tuning.hyperparameters import resolve
from trainer.data.validate import ValidationReport

STARTED = "Fine-tuning job started"
_RESUMED = re.compile(r"^Fine-tuning job resumed from the checkpoint at step (\d+)$")
HISTORY_JOBS = 20  # finished jobs per base model the throughput is measured on


class Throughput(BaseModel):
    tokens_per_second: float | None
    jobs: int  # finished jobs it was measured on (0: unknown)
    source: str


class FineTuningJobEstimate(BaseModel):
    """What a job with this body would do; nothing is created."""

    object: Literal["fine_tuning.job.estimate"] = "fine_tuning.job.estimate"
    model: str
    base_model: str
    method: str
    n_examples: int
    tokens_per_epoch: int
    tokens_counted: bool  # False: estimated as bytes / 4 (no tokenizer for this base model here)
    trained_tokens: int
    hyperparameters: dict[str, Any]  # `auto` resolved as the job would resolve it
    steps_per_epoch: int
    total_steps: int
    estimated_duration_seconds: float | None  # None: unknown (no finished job of this base model yet)
    estimated_duration: str  # "about 3 min", or "unknown"
    throughput: Throughput


async def measured_throughput(session: AsyncSession, base_model: str) -> Throughput:
    """Trained tokens per second of this base model's last finished jobs on this deployment."""
    jobs = (
        await session.scalars(
            select(FineTuningJobRow)
            .where(
                FineTuningJobRow.status == "succeeded",
                FineTuningJobRow.trained_tokens.is_not(None),
                FineTuningJobRow.finished_at.is_not(None),
                func.coalesce(FineTuningJobRow.base_model, FineTuningJobRow.model) == base_model,
            )
            .order_by(FineTuningJobRow.finished_at.desc())
            .limit(HISTORY_JOBS)
        )
    ).all()
    rates = []
    for job in jobs:
        started = await session.scalar(
            select(func.min(FineTuningJobEventRow.created_at_us)).where(
                FineTuningJobEventRow.job_id == job.id, FineTuningJobEventRow.message == STARTED
            )
        )
        if started is None or job.finished_at is None or not job.trained_tokens:
            continue
        seconds = job.finished_at - started / 1_000_000
        if seconds > 0:
            rates.append(job.trained_tokens / seconds)
    if not rates:
        return Throughput(
            tokens_per_second=None, jobs=0, source=f"no finished job of {base_model} on this deployment yet"
        )
    rate = statistics.median(rates)
    return Throughput(
        tokens_per_second=round(rate, 1),
        jobs=len(rates),
        source=f"median of the last {len(rates)} finished job(s) of {base_model} on this deployment",
    )


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def estimate(
    *,
    model: str,
    entry: BaseModelEntry,
    method: str,
    requested: dict[str, Any],
    n_examples: int,
    tokens_per_epoch: int,
    tokens_counted: bool,
    throughput: Throughput,
) -> FineTuningJobEstimate:
    hp = resolve(requested, n_examples, entry, method)
    steps_per_epoch = math.ceil(n_examples / int(hp["batch_size"]))
    trained = tokens_per_epoch * int(hp["n_epochs"])
    seconds = trained / throughput.tokens_per_second if throughput.tokens_per_second else None
    return FineTuningJobEstimate(
        model=model,
        base_model=entry.id,
        method=method,
        n_examples=n_examples,
        tokens_per_epoch=tokens_per_epoch,
        tokens_counted=tokens_counted,
        trained_tokens=trained,
        hyperparameters=hp,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * int(hp["n_epochs"]),
        estimated_duration_seconds=round(seconds, 1) if seconds is not None else None,
        estimated_duration=human_duration(seconds),
        throughput=throughput,
    )


def estimate_from_report(
    *,
    model: str,
    entry: BaseModelEntry,
    method: str,
    requested: dict[str, Any],
    report: ValidationReport,
    throughput: Throughput,
) -> FineTuningJobEstimate:
    """The estimate for a training file the validator read (its example and token counts)."""
    return estimate(
        model=model,
        entry=entry,
        method=method,
        requested=requested,
        n_examples=report.stats.n_examples,
        tokens_per_epoch=report.stats.total_tokens,
        tokens_counted=report.stats.tokens_counted,
        throughput=throughput,
    )


async def update_estimated_finish(session: AsyncSession, job: FineTuningJobRow, data: dict[str, Any]) -> None:
    """From a metrics event (`step`, `total_steps`): the job's pace since its current trainer began
    (its "started" or "resumed from step N" event), projected over the steps left."""
    step, total = data.get("step"), data.get("total_steps")
    if not isinstance(step, int) or not isinstance(total, int) or job.status != "running":
        return
    latest = (
        await session.execute(
            select(FineTuningJobEventRow.created_at_us, FineTuningJobEventRow.message)
            .where(
                FineTuningJobEventRow.job_id == job.id,
                FineTuningJobEventRow.message.startswith("Fine-tuning job "),
            )
            .order_by(FineTuningJobEventRow.seq.desc())
            .limit(20)
        )
    ).all()
    begin: tuple[int, int] | None = None
    for created, message in latest:
        if message == STARTED:
            begin = (created, 0)
        elif (match := _RESUMED.match(message)) is not None:
            begin = (created, int(match.group(1)))
        if begin is not None:
            break
    if begin is None or step <= begin[1]:
        return
    now = time.time()
    per_step = (now - begin[0] / 1_000_000) / (step - begin[1])
    job.estimated_finish = int(now + per_step * max(0, total - step))
