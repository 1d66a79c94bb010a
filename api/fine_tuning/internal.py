"""Endpoints the trainer calls, authenticated by its per-job token: it can write that job's events
and complete that job, nothing else. Not part of the OpenAI surface (hidden from the schema)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel
from sqlalchemy import select

from api.db.tables import FileRow, FineTuningJobRow, ProjectRow
from api.deps import SessionDep, StoreDep
from api.errors import AuthenticationFailed, InvalidRequest, NotFound
from api.fine_tuning.repository import add_event, transition
from api.ids import hash_api_key, new_id, now_us, random_base62

router = APIRouter(prefix="/internal/v1/fine_tuning/jobs/{job_id}", include_in_schema=False)


class TrainerEvent(BaseModel):
    type: Literal["message", "metrics"] = "message"
    level: Literal["info", "warn", "error"] = "info"
    message: str
    data: dict[str, Any] | None = None


class TrainerCompletion(BaseModel):
    trained_tokens: int
    train_loss: float | None = None
    steps: int | None = None
    model_keys: list[str] = []


async def _running_job(session: SessionDep, job_id: str, authorization: str | None) -> FineTuningJobRow:
    job = await session.get(FineTuningJobRow, job_id)
    token = (authorization or "")[7:] if (authorization or "").lower().startswith("bearer ") else ""
    if job is None or job.token_hash is None or not hmac.compare_digest(job.token_hash, hash_api_key(token)):
        raise AuthenticationFailed("Invalid job token.")
    if job.status != "running":
        raise InvalidRequest(f"Job {job_id} is {job.status}.")
    return job


def model_name(base: str, project: str, suffix: str | None) -> str:
    return f"ft:{base}:{project}:{suffix or ''}:{random_base62(8)}"


@router.post("/events", status_code=204)
async def trainer_event(
    job_id: str,
    event: TrainerEvent,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    await _running_job(session, job_id, authorization)
    add_event(session, job_id, event.message, level=event.level, type=event.type, data=event.data)
    await session.commit()


@router.post("/complete", status_code=204)
async def trainer_complete(
    job_id: str,
    body: TrainerCompletion,
    session: SessionDep,
    store: StoreDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    job = await _running_job(session, job_id, authorization)
    project = await session.scalar(select(ProjectRow.name).where(ProjectRow.id == job.project_id))
    if project is None:
        raise NotFound("No such project.")
    name = model_name(job.model, project, job.suffix)
    result_file = new_id("file-", 22)
    metrics_key = f"jobs/{job.project_id}/{job.id}/step_metrics.csv"
    session.add(
        FileRow(
            id=result_file,
            project_id=job.project_id,
            filename="step_metrics.csv",
            purpose="fine-tune-results",
            bytes=await store.size(metrics_key),
            status="processed",
            status_details=None,
            storage_key=metrics_key,
            created_at_us=now_us(),
            expires_at=None,
            idempotency_key=None,
        )
    )
    await session.flush()
    moved = await transition(
        session,
        job_id,
        {"running"},
        status="succeeded",
        fine_tuned_model=name,
        trained_tokens=body.trained_tokens,
        result_files=[result_file],
        finished_at=int(time.time()),
        estimated_finish=None,
    )
    if not moved:
        await session.rollback()
        raise InvalidRequest(f"Job {job_id} is no longer running.")
    add_event(session, job_id, f"New fine-tuned model created: {name}")
    add_event(session, job_id, "The job has successfully completed")
    await session.commit()
