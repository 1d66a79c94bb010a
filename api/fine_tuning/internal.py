"""Endpoints the trainer calls, authenticated by its per-job token: it can write that job's events
and complete that job, nothing else. Not part of the OpenAI surface (hidden from the schema)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from api.db.tables import (
    FileRow,
    FineTuningJobCheckpointRow,
    FineTuningJobEventRow,
    FineTuningJobRow,
    ProjectRow,
)
from api.deps import SessionDep, StoreDep
from api.errors import AuthenticationFailed, FtapiError, InvalidRequest, NotFound, ServiceUnavailable
from api.fine_tuning.estimate import update_estimated_finish
from api.fine_tuning.repository import add_event, checkpoints_newest_first, fail_job, transition
from api.fine_tuning.results import evaluation_csv, job_prefix, step_metrics_csv
from api.fine_tuning.schemas import Metrics
from api.ids import hash_api_key, new_id, now_us, random_base62
from api.models.resolver import base_model_id
from api.models.router import RegistryDep, ResolverDep
from serving.errors import EngineError, EngineUnavailable

KEPT_CHECKPOINTS = 3  # OpenAI keeps the last three; older ones are deleted with their files
router = APIRouter(prefix="/internal/v1/fine_tuning/jobs/{job_id}", include_in_schema=False)


class TrainerEvent(BaseModel):
    type: Literal["message", "metrics"] = "message"
    level: Literal["info", "warn", "error"] = "info"
    message: str
    data: dict[str, Any] | None = None


class TrainerCheckpoint(BaseModel):
    step: int = Field(ge=1)
    storage_prefix: str
    metrics: dict[str, Any] = {}


class TrainerReportAnswer(BaseModel):
    """What the API answers a trainer's event or checkpoint: whether to stop after the step it is on.

    The job may have been paused (or paused and resumed) while the trainer was mid-step or mid-save:
    the SIGTERM the worker sends comes only at its next round, and a trainer that has just finished
    saving would train, and save, one step more before noticing it. The answer tells it at once."""

    stop: bool


class TrainerCompletion(BaseModel):
    trained_tokens: int
    train_loss: float | None = None
    steps: int | None = None
    model_keys: list[str] = []
    evaluation: dict[str, dict[str, Any]] | None = None


# A paused job's trainer is saving its checkpoint (and the job may be resumed, so queued, before
# it is done): it may still report until it exits, and each answer tells it to stop (a resumed
# job's next attempt starts only once this trainer has exited: api/dispatch/runs.py keeps the run's
# lease while it lives). A re-queued job's old token is revoked, and every attempt has its own.
REPORTING = frozenset({"running", "paused", "queued"})
RUNNING = frozenset({"running"})


async def _reporting_job(
    session: SessionDep,
    job_id: str,
    authorization: str | None,
    statuses: frozenset[str] = REPORTING,
    *,
    lock: bool = True,
) -> FineTuningJobRow:
    """The job a trainer reports on, if its token is the job's and its status one of `statuses`.

    With `lock`, the check is a conditional write of the job row (its status set to itself) in this
    transaction: the row stays locked until the report commits, so a concurrent cancel (itself a
    conditional update of that row) either comes first and the report is refused, or waits and comes
    after it. Nothing is written to a job after it reached a final state. On PostgreSQL that is the
    row lock (the WHERE is re-checked on the committed row after the wait); on SQLite the update opens
    the write transaction (the driver's implicit BEGIN before a write), which serialises all writers.
    """
    token = (authorization or "")[7:] if (authorization or "").lower().startswith("bearer ") else ""
    locked = True
    if lock:
        result = await session.execute(
            update(FineTuningJobRow)
            .where(
                FineTuningJobRow.id == job_id,
                FineTuningJobRow.token_hash == hash_api_key(token),
                FineTuningJobRow.status.in_(statuses),
            )
            .values(status=FineTuningJobRow.status)
            .execution_options(synchronize_session=False)
        )
        locked = bool(result.rowcount)  # type: ignore[attr-defined]
    job = await session.get(FineTuningJobRow, job_id, populate_existing=True)
    if job is None or job.token_hash is None or not hmac.compare_digest(job.token_hash, hash_api_key(token)):
        raise AuthenticationFailed("Invalid job token.")
    if not locked or job.status not in statuses:
        raise InvalidRequest(f"Job {job_id} is {job.status}.")
    return job


async def _model_name(session: SessionDep, job: FineTuningJobRow) -> str:
    project = await session.scalar(select(ProjectRow.name).where(ProjectRow.id == job.project_id))
    if project is None:
        raise NotFound("No such project.")
    # Named after the catalogue model underneath, also when the job continued a tuned model (as at OpenAI).
    return f"ft:{base_model_id(job)}:{project}:{job.suffix or ''}:{random_base62(8)}"


def _answer(job: FineTuningJobRow) -> TrainerReportAnswer:
    # The status as the locked report read it: a pause that committed first is seen here.
    return TrainerReportAnswer(stop=job.status not in RUNNING)


@router.post("/events")
async def trainer_event(
    job_id: str,
    event: TrainerEvent,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> TrainerReportAnswer:
    job = await _reporting_job(session, job_id, authorization)
    add_event(session, job_id, event.message, level=event.level, type=event.type, data=event.data)
    if event.type == "metrics" and event.data:
        await update_estimated_finish(session, job, event.data)
    answer = _answer(job)
    await session.commit()
    return answer


@router.post("/checkpoints")
async def trainer_checkpoint(
    job_id: str,
    body: TrainerCheckpoint,
    session: SessionDep,
    store: StoreDep,
    authorization: Annotated[str | None, Header()] = None,
) -> TrainerReportAnswer:
    job = await _reporting_job(session, job_id, authorization)
    answer = _answer(job)  # read before the commit below expires the row
    if (
        not body.storage_prefix.startswith(job_prefix(job.project_id, job.id) + "checkpoints/")
        or ".." in body.storage_prefix
    ):
        raise InvalidRequest("A checkpoint must be stored under its job's prefix.", param="storage_prefix")
    metrics = {k: v for k, v in body.metrics.items() if k in Metrics.model_fields}
    row = await session.scalar(
        select(FineTuningJobCheckpointRow).where(
            FineTuningJobCheckpointRow.job_id == job_id, FineTuningJobCheckpointRow.step_number == body.step
        )
    )
    if row is not None:  # the same step saved again by a later attempt: the newer files win
        row.storage_prefix, row.metrics = body.storage_prefix, metrics
    else:
        name = f"{await _model_name(session, job)}:ckpt-step-{body.step}"
        session.add(
            FineTuningJobCheckpointRow(
                id=new_id("ftckpt_"),
                job_id=job_id,
                step_number=body.step,
                fine_tuned_model_checkpoint=name,
                metrics=metrics,
                storage_prefix=body.storage_prefix,
                created_at_us=now_us(),
            )
        )
        add_event(session, job_id, f"Checkpoint created at step {body.step} with Snapshot ID: {name}")
    await session.flush()
    stale = (await session.scalars(checkpoints_newest_first(job_id).offset(KEPT_CHECKPOINTS))).all()
    for old in stale:
        await session.delete(old)
    await session.commit()
    for old in stale:  # after the commit: a crash here leaves unreferenced files, never a dangling row
        await store.delete_prefix(old.storage_prefix)
    return answer


async def _result_file(
    session: SessionDep, store: StoreDep, job: FineTuningJobRow, filename: str, data: bytes
) -> str:
    key = job_prefix(job.project_id, job.id) + filename
    await store.put_bytes(key, data)
    file_id = new_id("file-", 22)
    session.add(
        FileRow(
            id=file_id,
            project_id=job.project_id,
            filename=filename,
            purpose="fine-tune-results",
            bytes=len(data),
            status="processed",
            status_details=None,
            storage_key=key,
            created_at_us=now_us(),
            expires_at=None,
            idempotency_key=None,
        )
    )
    return file_id


@router.post("/complete", status_code=204)
async def trainer_complete(
    job_id: str,
    body: TrainerCompletion,
    session: SessionDep,
    store: StoreDep,
    resolver: ResolverDep,
    registry: RegistryDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    # Checked without the lock first: the probe may take seconds, and the lock would hold back every
    # writer of this job (every writer at all on SQLite) meanwhile; it is taken after the probe.
    job = await _reporting_job(session, job_id, authorization, RUNNING, lock=False)
    name = await _model_name(session, job)
    # A model that cannot answer is not a finished model: load it and complete one token first.
    try:
        await registry.probe(await resolver.final_model(job, name))
    except EngineUnavailable as exc:  # the trainer retries; a later attempt resumes at the last step
        raise ServiceUnavailable(f"The serving engine is not ready: {exc.message}") from exc
    except (EngineError, FtapiError) as exc:
        await _reporting_job(session, job_id, authorization, RUNNING)
        await fail_job(
            session, job_id, {"running"}, "model_not_servable", f"The trained model cannot be served: {exc}"
        )
        return
    job = await _reporting_job(session, job_id, authorization, RUNNING)
    metrics = await session.scalars(
        select(FineTuningJobEventRow.data)
        .where(FineTuningJobEventRow.job_id == job_id, FineTuningJobEventRow.type == "metrics")
        .order_by(FineTuningJobEventRow.seq)
    )
    result_files = [
        await _result_file(session, store, job, "step_metrics.csv", step_metrics_csv(m for m in metrics if m))
    ]
    if body.evaluation:
        data = evaluation_csv(job.model, name, body.evaluation)
        result_files.append(await _result_file(session, store, job, "evaluation.csv", data))
    await session.flush()
    moved = await transition(
        session,
        job_id,
        {"running"},
        status="succeeded",
        fine_tuned_model=name,
        trained_tokens=body.trained_tokens,
        result_files=result_files,
        finished_at=int(time.time()),
        estimated_finish=None,
    )
    if not moved:
        await session.rollback()
        raise InvalidRequest(f"Job {job_id} is no longer running.")
    # The final checkpoint is the model itself: it carries the job's model name (as at OpenAI).
    # The name its event announced stays with it as an alias (SET reads the old column value).
    await session.execute(
        update(FineTuningJobCheckpointRow)
        .where(
            FineTuningJobCheckpointRow.job_id == job_id, FineTuningJobCheckpointRow.step_number == body.steps
        )
        .values(
            announced_name=FineTuningJobCheckpointRow.fine_tuned_model_checkpoint,
            fine_tuned_model_checkpoint=name,
        )
    )
    add_event(session, job_id, f"New fine-tuned model created: {name}")
    add_event(session, job_id, "The job has successfully completed")
    await session.commit()
