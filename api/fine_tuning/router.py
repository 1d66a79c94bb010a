"""HTTP for /v1/fine_tuning/jobs."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query, Request

from api.deps import CatalogueDep, IdempotencyKey, PrincipalDep, SessionDep, SettingsDep, StoreDep
from api.errors import InvalidRequest
from api.fine_tuning.estimate import FineTuningJobEstimate
from api.fine_tuning.schemas import (
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobCreateParams,
    FineTuningJobEventList,
    FineTuningJobList,
    JobStatus,
)
from api.fine_tuning.service import JobService
from api.models.router import ResolverDep

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def job_service(
    session: SessionDep,
    settings: SettingsDep,
    catalogue: CatalogueDep,
    principal: PrincipalDep,
    resolver: ResolverDep,
) -> JobService:
    return JobService(session, settings, catalogue, principal, resolver)


Jobs = Annotated[JobService, Depends(job_service)]


def metadata_filter(request: Request) -> dict[str, str] | None:
    """`metadata[k]=v` query parameters, as the SDK sends them."""
    found = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.multi_items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    if any(not k for k in found):
        raise InvalidRequest("metadata filter keys must not be empty.", param="metadata")
    return found or None


def status_filter(status: str | None) -> str | None:
    # Checked here rather than by a Literal query type: the message names the valid statuses.
    if status is not None and status not in get_args(JobStatus):
        raise InvalidRequest(
            f"Invalid status {status!r}: expected one of {', '.join(get_args(JobStatus))}.", param="status"
        )
    return status


@router.post("", response_model=FineTuningJob)
async def create_job(
    params: FineTuningJobCreateParams, jobs: Jobs, idempotency_key: IdempotencyKey = None
) -> FineTuningJob:
    """Create a fine-tuning job; its files are validated asynchronously."""
    return await jobs.create(params, idempotency_key)


@router.post("/estimate", response_model=FineTuningJobEstimate)
async def estimate_job(
    params: FineTuningJobCreateParams, jobs: Jobs, store: StoreDep
) -> FineTuningJobEstimate:
    """ftapi extension: what a job with this body would do (tokens, steps, resolved `auto` values,
    an estimated duration from this deployment's measured throughput); nothing is created."""
    return await jobs.estimate(params, store)


@router.get("", response_model=FineTuningJobList)
async def list_jobs(
    request: Request,
    jobs: Jobs,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[
        str | None,
        Query(description="ftapi extension: only jobs in this status (the dashboard's filter)."),
    ] = None,
) -> FineTuningJobList:
    """List this project's jobs, newest first; filter with `metadata[k]=v` and `status`."""
    return await jobs.list(
        after=after, limit=limit, metadata=metadata_filter(request), status=status_filter(status)
    )


@router.get("/{job_id}", response_model=FineTuningJob)
async def retrieve_job(job_id: str, jobs: Jobs) -> FineTuningJob:
    """Retrieve a fine-tuning job."""
    return await jobs.retrieve(job_id)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
async def cancel_job(job_id: str, jobs: Jobs) -> FineTuningJob:
    """Cancel a job that has not finished."""
    return await jobs.cancel(job_id)


@router.post("/{job_id}/pause", response_model=FineTuningJob)
async def pause_job(job_id: str, jobs: Jobs) -> FineTuningJob:
    """Pause a running job."""
    return await jobs.pause(job_id)


@router.post("/{job_id}/resume", response_model=FineTuningJob)
async def resume_job(job_id: str, jobs: Jobs) -> FineTuningJob:
    """Resume a paused job."""
    return await jobs.resume(job_id)


@router.get("/{job_id}/events", response_model=FineTuningJobEventList)
async def list_events(
    job_id: str, jobs: Jobs, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> FineTuningJobEventList:
    """A job's events, newest first."""
    return await jobs.events(job_id, after=after, limit=limit)


@router.get("/{job_id}/checkpoints", response_model=FineTuningJobCheckpointList)
async def list_checkpoints(
    job_id: str, jobs: Jobs, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> FineTuningJobCheckpointList:
    """A job's checkpoints (the last three saved), newest first."""
    return await jobs.checkpoints(job_id, after=after, limit=limit)
